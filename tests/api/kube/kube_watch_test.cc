// WatchHub and ResponseStream without sockets: a fake agent state that
// tells the hub of each change, and the streams read directly.
#include "api/kube/kube_watch.h"

#include <doctest.h>

#include <map>
#include <string>
#include <vector>

#include "api/output_format.h"
#include "proxy/base/uv_handle.h"
#include "tests/api/kube/fake_state.h"
#include "tests/api/kube/test_objects.h"
#include "tests/testing/run_loop.h"

namespace podless::api::kube {
namespace {

using testing::FakeState;
using testing::Service;

const Resource& Res(const std::string& group, const std::string& name) {
  const Resource* r = FindResource(group, group.empty() ? "v1" : "v1", name);
  REQUIRE(r != nullptr);
  return *r;
}

// The web Deployment with `replicas` replicas.
v1::Object Web(int replicas) {
  v1::Object d = testing::WebDeployment("shop");
  d.mutable_workload()->mutable_status()->clear_replicas();
  for (int i = 0; i < replicas; ++i) {
    testing::AddReplica(d, "127.64.0." + std::to_string(i + 1), true);
  }
  return d;
}

// The lines queued on a watch's stream, taken off it.
std::vector<std::string> Lines(const KubeResponse& response) {
  REQUIRE(response.stream != nullptr);
  const std::string text = response.stream->Take(1 << 30);
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    REQUIRE(nl != std::string::npos);  // every event is a whole line
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

bool Has(const std::string& line, const std::string& part) {
  return line.find(part) != std::string::npos;
}

struct Hub {
  proxy::UvLoop loop;
  FakeState state;
  std::unique_ptr<WatchHub> hub;
  explicit Hub(WatchOptions options = {}) {
    options.bookmark_interval_ms = 0;  // bookmarks sent by the test
    hub = std::make_unique<WatchHub>(
        loop.get(), state, state, [] { return int64_t{2000}; }, options);
  }
  KubeResponse Watch(const Resource& resource, const std::string& rv, bool bookmarks = false,
                     const std::string& table = "") {
    WatchParams p;
    p.resource = &resource;
    p.ns = "shop";
    p.resource_version = rv;
    p.bookmarks = bookmarks;
    p.table_version = table;
    return hub->Watch(std::move(p));
  }
};

TEST_CASE("WatchHub: events in order from a resourceVersion; older than the ring is 410") {
  WatchOptions options;
  options.ring_size = 3;
  Hub h(options);
  h.hub->Start();  // the ring starts at revision 0
  for (int i = 1; i <= 5; ++i) h.state.Apply(Service("s" + std::to_string(i)));
  CHECK(h.hub->ring_count() == 3);
  CHECK(h.hub->oldest_version() == 2);

  // From 2: the changes 3, 4, 5, in order, each at its revision.
  std::vector<std::string> lines = Lines(h.Watch(Res("", "services"), "2"));
  REQUIRE(lines.size() == 3);
  for (int i = 0; i < 3; ++i) {
    const std::string n = std::to_string(i + 3);
    CHECK(lines[i].rfind("{\"type\":\"ADDED\",\"object\":{", 0) == 0);
    CHECK(Has(lines[i], "\"name\":\"s" + n + "\""));
    CHECK(Has(lines[i], "\"resourceVersion\":\"" + n + "\""));
  }

  // From 1: the change 2 is no longer kept: one ERROR event, then the end.
  KubeResponse old = h.Watch(Res("", "services"), "1");
  lines = Lines(old);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] ==
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{}"
        ",\"status\":\"Failure\",\"message\":\"too old resource version: 1 (3)\",\"reason\":"
        "\"Expired\",\"code\":410}}");
  CHECK(old.stream->finished());

  // Not a number: 400.
  CHECK(h.Watch(Res("", "services"), "x1").status == 400);
}

TEST_CASE("WatchHub: \"0\" is the current state as ADDED, then the changes live") {
  Hub h;
  h.state.Apply(Service("a"));
  KubeResponse watch = h.Watch(Res("", "services"), "0");
  std::vector<std::string> lines = Lines(watch);
  REQUIRE(lines.size() == 1);
  CHECK(Has(lines[0], "\"type\":\"ADDED\""));
  CHECK(Has(lines[0], "\"name\":\"a\""));
  h.state.Apply(Service("b"));
  v1::Object a = Service("a", "{tier: front}");
  h.state.Apply(a);
  h.state.Delete(a);
  lines = Lines(watch);
  REQUIRE(lines.size() == 3);
  CHECK(Has(lines[0], "\"type\":\"ADDED\""));
  CHECK(Has(lines[0], "\"name\":\"b\""));
  CHECK(Has(lines[1], "\"type\":\"MODIFIED\""));
  CHECK(Has(lines[1], "\"tier\":\"front\""));
  CHECK(Has(lines[2], "\"type\":\"DELETED\""));
  CHECK(Has(lines[2], "\"resourceVersion\":\"4\""));  // the delete's revision
  CHECK(h.hub->watch_count() == 1);
}

TEST_CASE("WatchHub: a scale is Pods ADDED and DELETED, and the Deployment MODIFIED") {
  Hub h;
  h.state.Apply(Web(2));
  KubeResponse pods = h.Watch(Res("", "pods"), "0");
  KubeResponse deployments = h.Watch(Res("apps", "deployments"), "1");
  CHECK(Lines(pods).size() == 2);  // web-0, web-1
  CHECK(Lines(deployments).empty());

  h.state.Apply(Web(3));
  std::vector<std::string> lines = Lines(pods);
  // web-0 and web-1 are unchanged (their rows and JSON are the same).
  REQUIRE(lines.size() == 1);
  CHECK(Has(lines[0], "\"type\":\"ADDED\""));
  CHECK(Has(lines[0], "\"name\":\"web-2\""));
  lines = Lines(deployments);
  REQUIRE(lines.size() == 1);
  CHECK(Has(lines[0], "\"type\":\"MODIFIED\""));
  CHECK(Has(lines[0], "\"kind\":\"Deployment\""));

  h.state.Apply(Web(1));
  lines = Lines(pods);
  REQUIRE(lines.size() == 2);
  CHECK(Has(lines[0], "\"type\":\"DELETED\""));
  CHECK(Has(lines[0], "\"name\":\"web-1\""));
  CHECK(Has(lines[1], "\"name\":\"web-2\""));

  h.state.Delete(Web(1));
  lines = Lines(pods);
  REQUIRE(lines.size() == 1);
  CHECK(Has(lines[0], "\"type\":\"DELETED\""));
  CHECK(Has(lines[0], "\"name\":\"web-0\""));
  lines = Lines(deployments);
  REQUIRE(lines.size() == 2);
  CHECK(Has(lines[1], "\"type\":\"DELETED\""));

  // A watch from before the scale replays the same, from the ring.
  lines = Lines(h.Watch(Res("", "pods"), "1"));
  REQUIRE(lines.size() == 4);
  CHECK(Has(lines[0], "\"ADDED\""));
  CHECK(Has(lines[3], "\"name\":\"web-0\""));
}

TEST_CASE("WatchHub: Pods a scale to 0 removed are DELETED, rebuilt from the workload now") {
  Hub h;
  h.state.Apply(Web(2));
  KubeResponse pods = h.Watch(Res("", "pods"), "0");
  KubeResponse table = h.Watch(Res("", "pods"), "1", false, "v1");
  CHECK(Lines(pods).size() == 2);
  h.state.Apply(Web(0));  // the status has no replica left to show them from
  std::vector<std::string> lines = Lines(pods);
  REQUIRE(lines.size() == 2);
  for (int i = 0; i < 2; ++i) {
    CHECK(lines[i].rfind("{\"type\":\"DELETED\",\"object\":{", 0) == 0);
    CHECK(Has(lines[i], "\"kind\":\"Pod\""));
    CHECK(Has(lines[i], "\"name\":\"web-" + std::to_string(i) + "\""));
    CHECK(Has(lines[i], "\"resourceVersion\":\"2\""));
    CHECK(Has(lines[i], "\"app\":\"web\""));  // its labels, for selectors
  }
  lines = Lines(table);
  REQUIRE(lines.size() == 2);
  CHECK(Has(lines[1], "\"cells\":[\"web-1\""));
}

TEST_CASE("WatchHub: a Table watch's events are each a Table of one row") {
  Hub h;
  h.state.Apply(Web(2));
  std::vector<std::string> lines = Lines(h.Watch(Res("", "pods"), "", false, "v1"));
  REQUIRE(lines.size() == 2);
  for (const std::string& line : lines) {
    CHECK(line.rfind("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Table\"", 0) == 0);
    CHECK(Has(line, "\"columnDefinitions\""));
    // One row: one PartialObjectMetadata.
    const size_t first = line.find("PartialObjectMetadata");
    CHECK(first != std::string::npos);
    CHECK(line.find("PartialObjectMetadata", first + 1) == std::string::npos);
  }
  CHECK(Has(lines[0], "\"cells\":[\"web-0\""));
  CHECK(Has(lines[1], "\"cells\":[\"web-1\""));
}

TEST_CASE("WatchHub: bookmarks only to the watches that allow them") {
  Hub h;
  h.state.Apply(Service("a"));
  KubeResponse with = h.Watch(Res("", "services"), "1", /*bookmarks=*/true);
  KubeResponse without = h.Watch(Res("", "services"), "1");
  h.hub->SendBookmarks();
  std::vector<std::string> lines = Lines(with);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] ==
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Service\",\"apiVersion\":\"v1\","
        "\"metadata\":{\"resourceVersion\":\"1\"}}}");
  CHECK(Lines(without).empty());
}

TEST_CASE("WatchHub: selectors apply to events; a label change moves an object in or out") {
  Hub h;
  WatchParams p;
  p.resource = &Res("", "services");
  p.resource_version = "0";
  p.matches = [](const Item& item) {
    auto it = item.labels.find("tier");
    return it != item.labels.end() && it->second == "front";
  };
  KubeResponse watch = h.hub->Watch(std::move(p));
  h.state.Apply(Service("a"));                   // not selected
  h.state.Apply(Service("a", "{tier: front}"));  // selected now: ADDED
  h.state.Apply(Service("a"));                   // not any more: DELETED
  std::vector<std::string> lines = Lines(watch);
  REQUIRE(lines.size() == 2);
  CHECK(Has(lines[0], "\"type\":\"ADDED\""));
  CHECK(Has(lines[1], "\"type\":\"DELETED\""));
}

TEST_CASE("WatchHub: a watcher that does not read is cut; one whose client goes is freed") {
  WatchOptions options;
  options.stream_limit = 4096;
  Hub h(options);
  KubeResponse slow = h.Watch(Res("", "services"), "0");
  KubeResponse gone = h.Watch(Res("", "services"), "0");
  KubeResponse reader = h.Watch(Res("", "services"), "0");
  CHECK(h.hub->watch_count() == 3);
  gone.stream->Cancel();  // the connection closed
  CHECK(h.hub->watch_count() == 2);
  for (int i = 0; i < 40 && !slow.stream->cut(); ++i) {
    h.state.Apply(Service("s" + std::to_string(i)));
    reader.stream->Take(1 << 20);  // this one reads
  }
  CHECK(slow.stream->cut());
  CHECK(slow.stream->finished());  // nothing kept to send: the response ends
  CHECK(slow.stream->queued() == 0);
  CHECK(h.hub->watch_count() == 1);
  CHECK_FALSE(reader.stream->cut());
}

TEST_CASE("WatchHub: at most max_watches open (429 beyond); the hub follows only once watched") {
  WatchOptions options;
  options.max_watches = 2;
  Hub h(options);
  CHECK(h.state.subscribers() == 0);
  KubeResponse a = h.Watch(Res("", "services"), "");
  CHECK(h.state.subscribers() == 1);
  KubeResponse b = h.Watch(Res("", "services"), "");
  KubeResponse c = h.Watch(Res("", "services"), "");
  CHECK(c.status == 429);
  CHECK(c.stream == nullptr);
  a.stream->Cancel();
  CHECK(h.Watch(Res("", "services"), "").status == 200);
  h.hub.reset();
  CHECK(h.state.subscribers() == 0);
}

TEST_CASE("WatchHub: a watch ends by its default time, which also caps timeoutSeconds") {
  WatchOptions options;
  options.min_timeout_s = 1;  // ends within [1, 2) s
  Hub h(options);
  WatchParams p;
  p.resource = &Res("", "services");
  p.timeout_seconds = 3600;
  KubeResponse watch = h.hub->Watch(std::move(p));
  REQUIRE(watch.stream != nullptr);
  CHECK(podless::testing::RunUntil(
      h.loop.get(), [&] { return watch.stream->finished(); }, 3000));
  CHECK_FALSE(watch.stream->cut());
  CHECK(h.hub->watch_count() == 0);
}

TEST_CASE("ResponseStream: queue, take, end; the producer is released once") {
  ResponseStream s(10);
  int released = 0, readable = 0;
  s.OnRelease([&] { ++released; });
  s.SetReadable([&] { ++readable; });
  CHECK(s.Write("abcd"));
  CHECK(s.Take(2) == "ab");
  CHECK(s.Write("efghij"));  // 8 queued
  CHECK(readable == 2);
  CHECK_FALSE(s.Write("klm"));  // 11 > 10: cut
  CHECK(s.cut());
  CHECK(released == 1);
  CHECK(s.finished());
  CHECK_FALSE(s.Write("x"));
  s.Cancel();
  CHECK(released == 1);

  // One write larger than the limit into an empty queue is taken.
  ResponseStream big(10);
  CHECK(big.Write(std::string(25, 'x')));
  CHECK_FALSE(big.Write("y"));
  CHECK(big.cut());
}

}  // namespace
}  // namespace podless::api::kube
