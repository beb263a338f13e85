// The router's side of watch and logs: query parameters parsed and checked
// as the API server checks them, the pod log subresource path, and the
// Accept header choosing Table events. The hub and a recording log source
// stand behind KubeApi; no sockets.
#include <doctest.h>

#include <string>

#include "api/kube/kube_api.h"
#include "api/kube/kube_logs.h"
#include "api/kube/kube_watch.h"
#include "proxy/base/uv_handle.h"
#include "tests/api/kube/fake_state.h"

namespace podless::api::kube {
namespace {

using testing::FakeState;
using testing::Service;

// Records what the router asked for.
class RecordingLogs final : public LogSource {
 public:
  KubeResponse Logs(const LogParams& params) override {
    last = params;
    ++calls;
    return {200, "text/plain", "log of " + params.pod};
  }
  LogParams last;
  int calls = 0;
};

struct Api {
  proxy::UvLoop loop;
  FakeState state;
  WatchHub hub{loop.get(), state, state, [] { return int64_t{2000}; },
               [] {
                 WatchOptions o;
                 o.bookmark_interval_ms = 0;
                 return o;
               }()};
  RecordingLogs logs;
  KubeApi api{state, "127.0.0.1:6443", [] { return int64_t{2000}; }};
  Api() {
    api.SetWatchHub(&hub);
    api.SetLogSource(&logs);
  }
  KubeResponse Get(const std::string& target, const std::string& accept = "application/json") {
    return api.Handle({"GET", target, accept, "", ""});
  }
};

bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_CASE("KubeApi watch: parameters checked as the API server checks them") {
  Api a;
  const std::string base = "/api/v1/namespaces/shop/services?watch=1";
  KubeResponse r = a.Get(base + "&timeoutSeconds=soon");
  CHECK(r.status == 400);
  CHECK(r.stream == nullptr);
  CHECK(Has(r.body, "\"field\":\"timeoutSeconds\""));
  CHECK(Has(r.body, "\"reason\":\"BadRequest\""));
  r = a.Get(base + "&timeoutSeconds=-1");
  CHECK(r.status == 400);
  r = a.Get(base + "&resourceVersionMatch=NotOlderThan");
  CHECK(r.status == 400);
  CHECK(Has(r.body, "resourceVersionMatch is forbidden for watch unless sendInitialEvents"));
  CHECK(Has(r.body, "\"field\":\"resourceVersionMatch\""));
  r = a.Get(base + "&sendInitialEvents=true&resourceVersionMatch=Exact");
  CHECK(r.status == 400);
  CHECK(Has(r.body, "Unsupported value: \\\"Exact\\\""));
  r = a.Get(base + "&labelSelector=a%20in%20(");
  CHECK(r.status == 400);
  CHECK(Has(r.body, "\"field\":\"labelSelector\""));
  r = a.Get(base + "&fieldSelector=spec.nodeName%3Dx");
  CHECK(r.status == 400);
  CHECK(Has(r.body, "\"field\":\"fieldSelector\""));
  CHECK(a.hub.watch_count() == 0);  // none of them opened a watch
  r = a.Get(base + "&timeoutSeconds=5&allowWatchBookmarks=true");
  CHECK(r.status == 200);
  REQUIRE(r.stream != nullptr);
  CHECK(a.hub.watch_count() == 1);
}

TEST_CASE("KubeApi watch: selectors, a name, and a Table by the Accept header") {
  Api a;
  a.state.Apply(Service("a", "{tier: front}"));
  a.state.Apply(Service("b"));
  KubeResponse r = a.Get("/api/v1/namespaces/shop/services?watch=true&labelSelector=tier%3Dfront");
  REQUIRE(r.stream != nullptr);
  std::string text = r.stream->Take(1 << 20);
  CHECK(Has(text, "\"name\":\"a\""));
  CHECK_FALSE(Has(text, "\"name\":\"b\""));
  r = a.Get("/api/v1/namespaces/shop/services?watch=1&fieldSelector=metadata.name%3Db");
  text = r.stream->Take(1 << 20);
  CHECK(Has(text, "\"name\":\"b\""));
  CHECK_FALSE(Has(text, "\"name\":\"a\""));
  // kubectl get -w's Accept: Tables first.
  r = a.Get("/api/v1/namespaces/shop/services?watch=true",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
            "g=meta.k8s.io,application/json");
  CHECK(r.content_type == "application/json;as=Table;v=v1;g=meta.k8s.io");
  text = r.stream->Take(1 << 20);
  CHECK(text.rfind("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Table\"", 0) == 0);
}

TEST_CASE("KubeApi watch: sendInitialEvents ends the current state with the marked bookmark") {
  Api a;
  a.state.Apply(Service("a"));
  KubeResponse r = a.Get(
      "/api/v1/namespaces/shop/services?watch=1&sendInitialEvents=true"
      "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=");
  REQUIRE(r.stream != nullptr);
  const std::string text = r.stream->Take(1 << 20);
  const size_t added = text.find("\"type\":\"ADDED\"");
  const size_t bookmark = text.find("\"type\":\"BOOKMARK\"");
  CHECK(added != std::string::npos);
  REQUIRE(bookmark != std::string::npos);
  CHECK(added < bookmark);
  CHECK(Has(text.substr(bookmark), "\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}"));
}

TEST_CASE("KubeApi logs: the pod log subresource, its parameters, and no other subresource") {
  Api a;
  KubeResponse r = a.Get(
      "/api/v1/namespaces/shop/pods/web-1/log?container=side&follow=true&tailLines=5"
      "&previous=true&timestamps=true&limitBytes=100&sinceSeconds=60");
  CHECK(r.status == 200);
  CHECK(r.content_type == "text/plain");
  CHECK(r.body == "log of web-1");
  CHECK(a.logs.last.ns == "shop");
  CHECK(a.logs.last.container == "side");
  CHECK(a.logs.last.follow);
  CHECK(a.logs.last.previous);
  CHECK(a.logs.last.timestamps);
  CHECK(a.logs.last.tail_lines == 5);
  CHECK(a.logs.last.limit_bytes == 100);
  CHECK(a.logs.last.since_seconds == 60);
  a.Get("/api/v1/namespaces/shop/pods/web-1/log");
  CHECK(a.logs.last.tail_lines == -1);  // all
  CHECK(a.logs.last.limit_bytes == 0);  // no limit
  CHECK_FALSE(a.logs.last.follow);

  r = a.Get("/api/v1/namespaces/shop/pods/web-1/log?tailLines=-2");
  CHECK(r.status == 400);
  CHECK(Has(r.body, "\"field\":\"tailLines\""));
  r = a.Get("/api/v1/namespaces/shop/pods/web-1/log?limitBytes=0");
  CHECK(r.status == 400);
  CHECK(Has(r.body, "\"field\":\"limitBytes\""));
  const int calls = a.logs.calls;
  CHECK(a.Get("/api/v1/namespaces/shop/pods/web-1/exec").status == 404);
  CHECK(a.Get("/api/v1/namespaces/shop/services/web/log").status == 404);
  CHECK(a.Get("/apis/apps/v1/namespaces/shop/deployments/web/log").status == 404);
  CHECK(a.logs.calls == calls);
}

}  // namespace
}  // namespace podless::api::kube
