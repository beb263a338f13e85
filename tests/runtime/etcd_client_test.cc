// EtcdClient against a real etcd (tests/runtime/etcd_process.h). Every wait
// runs the loop with a bound, so a broken client fails a check instead of
// hanging the test.
#include "runtime/etcd/etcd_client.h"

#include <doctest.h>

#include <functional>
#include <optional>

#include "proxy/base/uv_handle.h"
#include "tests/runtime/etcd_process.h"
#include "tests/testing/run_loop.h"

namespace podless::runtime {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::EtcdProcess;

using testing::RunFor;
using testing::RunUntil;

// A started etcd and a client on it.
// `endpoints` maps etcd's URL to the client's endpoint list (default: just it).
// With kTls, options.tls is filled with the test PKI's CA and client
// certificate unless the caller set a CA.
struct Fixture {
  explicit Fixture(EtcdOptions options = {},
                   std::function<std::vector<std::string>(const std::string&)> endpoints = {},
                   EtcdProcess::Mode mode = EtcdProcess::kPlain)
      : etcd(mode) {
    const Status started = etcd.Start();
    REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message));
    if (mode == EtcdProcess::kTls && options.tls.ca_file.empty()) options.tls = ClientFiles();
    options.endpoints =
        endpoints ? endpoints(etcd.client_url()) : std::vector<std::string>{etcd.client_url()};
    auto created = EtcdClient::Create(loop.get(), std::move(options));
    REQUIRE(created.ok());
    client = std::move(*created);
  }

  // Runs one unary call to completion (10 s at most).
  template <typename Resp, typename Req>
  Result<Resp> Call(void (EtcdKv::*method)(const Req&, EtcdCallback<Resp>), const Req& req) {
    std::optional<Result<Resp>> out;
    ((*client).*method)(req, [&](Result<Resp> r) { out.emplace(std::move(r)); });
    REQUIRE(RunUntil(
        loop.get(), [&] { return out.has_value(); }, 10s));
    return std::move(*out);
  }
  Result<etcdpb::PutResponse> Put(const std::string& key, const std::string& value,
                                  int64_t lease = 0) {
    etcdpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    request.set_lease(lease);
    return Call(&EtcdClient::Put, request);
  }
  Result<etcdpb::RangeResponse> Get(const std::string& key, const std::string& range_end = "") {
    etcdpb::RangeRequest request;
    request.set_key(key);
    request.set_range_end(range_end);
    return Call(&EtcdClient::Range, request);
  }
  int64_t Grant(int64_t ttl) {
    etcdpb::LeaseGrantRequest request;
    request.set_ttl(ttl);
    auto granted = Call(&EtcdClient::LeaseGrant, request);
    REQUIRE(granted.ok());
    return granted->id();
  }

  // The test PKI's CA bundle, client certificate and key (kTls).
  EtcdTlsFiles ClientFiles() const {
    const testing::EtcdTestPki& pki = etcd.pki();
    return {.ca_file = pki.ca_cert, .cert_file = pki.client_cert, .key_file = pki.client_key};
  }

  // One Put on a new client with `options`: its error, or "ok".
  std::string PutWith(EtcdOptions options) {
    auto other = EtcdClient::Create(loop.get(), std::move(options));
    REQUIRE_MESSAGE(other.ok(), (other.ok() ? "" : other.error().message));
    std::optional<Result<etcdpb::PutResponse>> out;
    etcdpb::PutRequest request;
    request.set_key("/other");
    (*other)->Put(request, [&](auto r) { out.emplace(std::move(r)); });
    REQUIRE(RunUntil(
        loop.get(), [&] { return out.has_value(); }, 10s));
    if (out->ok()) return "ok";
    CHECK(out->error().code == ErrorCode::kUnavailable);
    CHECK_FALSE((*other)->connected());
    return out->error().message;
  }

  proxy::UvLoop loop;  // declared first: outlives the client
  EtcdProcess etcd;
  EtcdClientPtr client;
};

std::string ErrorText(const Status& s) { return s.ok() ? "ok" : s.error().message; }
template <typename T>
std::string ErrorText(const Result<T>& r) {
  return r.ok() ? "ok" : r.error().message;
}

TEST_CASE("EtcdPrefixEnd: increments the last byte that can grow") {
  CHECK(EtcdPrefixEnd("/podless/") == "/podless0");
  CHECK(EtcdPrefixEnd("a\xff") == "b");
  CHECK(EtcdPrefixEnd("\xff\xff") == std::string(1, '\0'));
  CHECK(EtcdPrefixEnd("") == std::string(1, '\0'));
}

TEST_CASE("EtcdClient: rejects malformed endpoints, naming them") {
  proxy::UvLoop loop;
  for (const char* bad :
       {"127.0.0.1:2379", "http://:2379", "http://host:0", "http://host:x", "http://host:2379/v3",
        "http://::1:2379", "https://:2379", "https://host:2379/v3", "ftp://host:2379"}) {
    auto created = EtcdClient::Create(loop.get(), {.endpoints = {bad}});
    CHECK_MESSAGE(!created.ok(), bad);
    if (!created.ok()) CHECK(created.error().message.find(bad) != std::string::npos);
  }
  CHECK_FALSE(EtcdClient::Create(loop.get(), {}).ok());
  CHECK(EtcdClient::Create(loop.get(), {.endpoints = {"http://[::1]:2379", "http://etcd"}}).ok());
}

TEST_CASE("EtcdClient: no endpoint answering fails the call UNAVAILABLE, naming each") {
  proxy::UvLoop loop;
  const std::string a = "http://127.0.0.1:" + std::to_string(testing::FreePort());
  const std::string b = "http://localhost:" + std::to_string(testing::FreePort());
  auto client = EtcdClient::Create(loop.get(), {.endpoints = {a, b}});
  REQUIRE(client.ok());
  std::optional<Result<etcdpb::PutResponse>> out;
  (*client)->Put(etcdpb::PutRequest(), [&](auto r) { out.emplace(std::move(r)); });
  REQUIRE(RunUntil(
      loop.get(), [&] { return out.has_value(); }, 5s));
  REQUIRE_FALSE(out->ok());
  CHECK(out->error().code == ErrorCode::kUnavailable);
  CHECK(out->error().message.find(a) != std::string::npos);
  CHECK(out->error().message.find(b) != std::string::npos);
  CHECK_FALSE((*client)->connected());
}

TEST_CASE("EtcdClient: put, range and delete round trip; callbacks are never synchronous") {
  Fixture f;
  bool returned = false;
  std::optional<Result<etcdpb::PutResponse>> put;
  etcdpb::PutRequest request;
  request.set_key("/t/a");
  request.set_value("1");
  f.client->Put(request, [&](auto r) {
    CHECK(returned);  // not inside Put()
    put.emplace(std::move(r));
  });
  returned = true;
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return put.has_value(); }, 10s));
  REQUIRE_MESSAGE(put->ok(), ErrorText(*put));
  CHECK(f.client->connected());
  CHECK(f.client->current_endpoint() == f.etcd.client_url());
  REQUIRE(f.Put("/t/b", "2").ok());
  REQUIRE(f.Put("/u", "other").ok());

  auto one = f.Get("/t/a");
  REQUIRE_MESSAGE(one.ok(), ErrorText(one));
  REQUIRE(one->kvs_size() == 1);
  CHECK(one->kvs(0).value() == "1");
  auto prefix = f.Get("/t/", EtcdPrefixEnd("/t/"));
  REQUIRE(prefix.ok());
  REQUIRE(prefix->kvs_size() == 2);
  CHECK(prefix->kvs(0).key() == "/t/a");
  CHECK(prefix->kvs(1).key() == "/t/b");

  etcdpb::DeleteRangeRequest del;
  del.set_key("/t/");
  del.set_range_end(EtcdPrefixEnd("/t/"));
  auto deleted = f.Call(&EtcdClient::DeleteRange, del);
  REQUIRE(deleted.ok());
  CHECK(deleted->deleted() == 2);
  CHECK(f.Get("/t/", EtcdPrefixEnd("/t/"))->kvs_size() == 0);
  CHECK(f.Get("/u")->kvs_size() == 1);
}

TEST_CASE("EtcdClient: a create_revision==0 transaction succeeds once, then fails") {
  Fixture f;
  etcdpb::TxnRequest txn;
  auto* compare = txn.add_compare();
  compare->set_key("/claims/10.1.0.0-24");
  compare->set_target(etcdpb::Compare::CREATE);
  compare->set_result(etcdpb::Compare::EQUAL);
  compare->set_create_revision(0);
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key("/claims/10.1.0.0-24");
  put->set_value("node-a");
  txn.add_failure()->mutable_request_range()->set_key("/claims/10.1.0.0-24");

  auto first = f.Call(&EtcdClient::Txn, txn);
  REQUIRE_MESSAGE(first.ok(), ErrorText(first));
  CHECK(first->succeeded());
  put->set_value("node-b");
  auto second = f.Call(&EtcdClient::Txn, txn);
  REQUIRE(second.ok());
  CHECK_FALSE(second->succeeded());
  REQUIRE(second->responses_size() == 1);
  REQUIRE(second->responses(0).response_range().kvs_size() == 1);
  CHECK(second->responses(0).response_range().kvs(0).value() == "node-a");
}

TEST_CASE("EtcdClient: etcd's own errors keep their code and message") {
  Fixture f;
  etcdpb::LeaseRevokeRequest revoke;
  revoke.set_id(0x1234567);
  auto revoked = f.Call(&EtcdClient::LeaseRevoke, revoke);
  REQUIRE_FALSE(revoked.ok());
  CHECK(revoked.error().code == ErrorCode::kNotFound);
  CHECK(revoked.error().message.find("lease not found") != std::string::npos);
}

TEST_CASE("EtcdClient: a kept-alive lease outlives its TTL; a lease left alone expires") {
  Fixture f;
  const int64_t kept = f.Grant(2);
  const int64_t left = f.Grant(2);
  REQUIRE(f.Put("/lease/kept", "x", kept).ok());
  REQUIRE(f.Put("/lease/left", "x", left).ok());
  int responses = 0;
  int64_t last_ttl = 0;
  std::optional<Status> ended;
  EtcdStreamPtr keepalive = f.client->KeepAlive(
      kept, 500ms,
      [&](const etcdpb::LeaseKeepAliveResponse& r) {
        ++responses;
        last_ttl = r.ttl();
        CHECK(r.id() == kept);
      },
      [&](Status s) { ended.emplace(std::move(s)); });
  RunFor(f.loop.get(), 5s);
  CHECK_MESSAGE(!ended.has_value(), (ended ? ErrorText(*ended) : ""));
  CHECK(responses >= 5);
  CHECK(last_ttl > 0);
  CHECK(f.Get("/lease/kept")->kvs_size() == 1);
  CHECK(f.Get("/lease/left")->kvs_size() == 0);

  // Once the lease is revoked, etcd answers keep-alives with ttl 0.
  etcdpb::LeaseRevokeRequest revoke;
  revoke.set_id(kept);
  REQUIRE(f.Call(&EtcdClient::LeaseRevoke, revoke).ok());
  CHECK(f.Get("/lease/kept")->kvs_size() == 0);
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return last_ttl <= 0; }, 3s));
}

TEST_CASE("EtcdClient: a watch from a revision sees puts and deletes in order") {
  Fixture f;
  auto first = f.Put("/w/a", "1");
  REQUIRE(first.ok());
  const int64_t from = first->header().revision();
  REQUIRE(f.Put("/w/b", "2").ok());

  std::vector<std::string> seen;
  bool created = false;
  int64_t last_revision = 0;
  std::optional<Status> ended;
  etcdpb::WatchCreateRequest create;
  create.set_key("/w/");
  create.set_range_end(EtcdPrefixEnd("/w/"));
  create.set_start_revision(from);
  EtcdStreamPtr watch = f.client->Watch(
      create,
      [&](const etcdpb::WatchResponse& r) {
        if (r.created()) created = true;
        for (const auto& event : r.events()) {
          CHECK(event.kv().mod_revision() > last_revision);
          last_revision = event.kv().mod_revision();
          seen.push_back((event.type() == mvccpb::Event::PUT ? "PUT " : "DELETE ") +
                         event.kv().key());
        }
      },
      [&](Status s) { ended.emplace(std::move(s)); });
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return seen.size() == 2; }, 5s));
  CHECK(created);
  etcdpb::DeleteRangeRequest del;
  del.set_key("/w/a");
  REQUIRE(f.Call(&EtcdClient::DeleteRange, del).ok());
  REQUIRE(f.Put("/x", "outside the prefix").ok());
  REQUIRE(f.Put("/w/c", "3").ok());
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return seen.size() >= 4; }, 5s));
  CHECK(seen == std::vector<std::string>{"PUT /w/a", "PUT /w/b", "DELETE /w/a", "PUT /w/c"});
  CHECK_FALSE(ended.has_value());

  // Dropping the handle stops the watch: no callback for later changes.
  watch.reset();
  REQUIRE(f.Put("/w/d", "4").ok());
  RunFor(f.loop.get(), 300ms);
  CHECK(seen.size() == 4);
  CHECK_FALSE(ended.has_value());
}

TEST_CASE("EtcdClient: a watch at a compacted revision reports compact_revision and ends") {
  Fixture f;
  REQUIRE(f.Put("/c/k", "1").ok());
  REQUIRE(f.Put("/c/k", "2").ok());
  auto last = f.Put("/c/k", "3");
  REQUIRE(last.ok());
  const int64_t compacted = last->header().revision();
  const Status compact = f.etcd.Compact(compacted);
  REQUIRE_MESSAGE(compact.ok(), ErrorText(compact));

  int64_t reported = 0;
  int after_end = 0;
  std::optional<Status> ended;
  etcdpb::WatchCreateRequest create;
  create.set_key("/c/k");
  create.set_start_revision(1);
  EtcdStreamPtr watch = f.client->Watch(
      create,
      [&](const etcdpb::WatchResponse& r) {
        if (ended) ++after_end;
        if (r.compact_revision() != 0) reported = r.compact_revision();
      },
      [&](Status s) { ended.emplace(std::move(s)); });
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return ended.has_value(); }, 5s));
  CHECK(reported == compacted);
  REQUIRE_FALSE(ended->ok());
  CHECK(ended->error().code == ErrorCode::kFailedPrecondition);
  CHECK(ended->error().message.find("compacted") != std::string::npos);
  RunFor(f.loop.get(), 200ms);
  CHECK(after_end == 0);
}

TEST_CASE("EtcdClient: a call etcd does not answer fails DEADLINE_EXCEEDED") {
  Fixture f({.endpoints = {}, .call_timeout = 500ms});
  REQUIRE(f.Put("/d", "1").ok());
  f.etcd.Pause();
  const auto start = Clock::now();
  auto put = f.Put("/d", "2");
  f.etcd.Resume();
  REQUIRE_FALSE(put.ok());
  CHECK(put.error().code == ErrorCode::kDeadlineExceeded);
  CHECK(Clock::now() - start < 3s);
  // The connection is still good for the next call.
  CHECK(f.Put("/d", "3").ok());
}

TEST_CASE(
    "EtcdClient: etcd dies -> calls fail UNAVAILABLE, streams end; it returns -> calls work") {
  Fixture f({.endpoints = {}, .connect_timeout = 1000ms, .call_timeout = 5000ms});
  REQUIRE(f.Put("/r/a", "1").ok());
  std::optional<Status> watch_end, keepalive_end;
  bool watch_created = false;
  etcdpb::WatchCreateRequest create;
  create.set_key("/r/");
  create.set_range_end(EtcdPrefixEnd("/r/"));
  EtcdStreamPtr watch = f.client->Watch(
      create, [&](const etcdpb::WatchResponse& r) { watch_created |= r.created(); },
      [&](Status s) { watch_end.emplace(std::move(s)); });
  EtcdStreamPtr keepalive = f.client->KeepAlive(
      f.Grant(10), 1s, [](const etcdpb::LeaseKeepAliveResponse&) {},
      [&](Status s) { keepalive_end.emplace(std::move(s)); });
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return watch_created; }, 5s));

  // A call in flight when etcd dies: freeze etcd so it cannot answer, then kill it.
  f.etcd.Pause();
  std::optional<Result<etcdpb::PutResponse>> pending;
  etcdpb::PutRequest request;
  request.set_key("/r/b");
  f.client->Put(request, [&](auto r) { pending.emplace(std::move(r)); });
  RunFor(f.loop.get(), 200ms);
  CHECK_FALSE(pending.has_value());
  const auto killed = Clock::now();
  f.etcd.Stop();
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return pending && watch_end && keepalive_end; }, 4s));
  CHECK(Clock::now() - killed < 4s);  // well within the 5 s call timeout
  REQUIRE_FALSE(pending->ok());
  CHECK(pending->error().code == ErrorCode::kUnavailable);
  REQUIRE_FALSE(watch_end->ok());
  CHECK(watch_end->error().code == ErrorCode::kUnavailable);
  REQUIRE_FALSE(keepalive_end->ok());
  CHECK(keepalive_end->error().code == ErrorCode::kUnavailable);
  CHECK_FALSE(f.client->connected());

  // While it is down, a call fails fast, naming the endpoint.
  auto down = f.Put("/r/c", "1");
  REQUIRE_FALSE(down.ok());
  CHECK(down.error().code == ErrorCode::kUnavailable);
  CHECK(down.error().message.find(f.etcd.client_url()) != std::string::npos);

  const Status restarted = f.etcd.Start();
  REQUIRE_MESSAGE(restarted.ok(), ErrorText(restarted));
  auto again = f.Put("/r/d", "1");
  CHECK_MESSAGE(again.ok(), ErrorText(again));
  CHECK(f.client->connected());
  CHECK(f.Get("/r/a")->kvs_size() == 1);  // same data directory
}

TEST_CASE("EtcdClient: an endpoint that refuses connections is skipped") {
  const std::string refusing = "http://127.0.0.1:" + std::to_string(testing::FreePort());
  std::string by_name;
  // By name, too: "localhost" may resolve to ::1 first, where etcd is not.
  Fixture f({}, [&](const std::string& url) {
    by_name = "http://localhost:" + url.substr(url.rfind(':') + 1);
    return std::vector<std::string>{refusing, by_name};
  });
  auto put = f.Put("/s", "1");
  REQUIRE_MESSAGE(put.ok(), ErrorText(put));
  CHECK(f.client->current_endpoint() == by_name);
}

TEST_CASE("EtcdClient: Close fails pending calls and ends streams; destruction silences all") {
  Fixture f;
  REQUIRE(f.Put("/z", "1").ok());
  std::optional<Status> watch_end;
  EtcdStreamPtr watch = f.client->Watch(
      [] {
        etcdpb::WatchCreateRequest c;
        c.set_key("/z");
        return c;
      }(),
      [](const etcdpb::WatchResponse&) {}, [&](Status s) { watch_end.emplace(std::move(s)); });
  std::optional<Result<etcdpb::RangeResponse>> range;
  etcdpb::RangeRequest request;
  request.set_key("/z");
  f.client->Range(request, [&](auto r) { range.emplace(std::move(r)); });
  f.client->Close();
  REQUIRE(range.has_value());
  CHECK_FALSE(range->ok());
  REQUIRE(watch_end.has_value());
  CHECK_FALSE(watch_end->ok());

  // A second client destroyed with a call in flight: its callback never
  // runs. The loop stops as soon as the connection is up; the request went
  // out in that same callback, so its answer cannot have been read yet (and
  // etcd is frozen besides).
  auto other = EtcdClient::Create(f.loop.get(), {.endpoints = {f.etcd.client_url()}});
  REQUIRE(other.ok());
  bool called = false;
  f.etcd.Pause();
  (*other)->Range(request, [&](auto) { called = true; });
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return (*other)->connected(); }, 5s));
  REQUIRE_FALSE(called);
  other->reset();
  f.etcd.Resume();
  RunFor(f.loop.get(), 300ms);
  CHECK_FALSE(called);

  // Stream handles may outlive their client, ended or not.
  auto third = EtcdClient::Create(f.loop.get(), {.endpoints = {f.etcd.client_url()}});
  REQUIRE(third.ok());
  bool live_called = false;
  etcdpb::WatchCreateRequest create;
  create.set_key("/z");
  EtcdStreamPtr live = (*third)->Watch(
      create, [&](const etcdpb::WatchResponse&) { live_called = true; },
      [&](Status) { live_called = true; });
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return live_called; }, 5s));  // "created"
  live_called = false;
  f.client.reset();
  third->reset();
  watch.reset();
  live.reset();
  RunFor(f.loop.get(), 100ms);
  CHECK_FALSE(live_called);
}

// --- https:// ---------------------------------------------------------------

bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_CASE("EtcdClient: the TLS flags must fit the endpoints; the files are checked at once") {
  proxy::UvLoop loop;
  auto error = [&](EtcdOptions options) {
    auto created = EtcdClient::Create(loop.get(), std::move(options));
    return created.ok() ? std::string("ok") : created.error().message;
  };
  const EtcdTlsFiles ca_only{.ca_file = "/nonexistent/ca.crt"};
  CHECK(
      Has(error({.endpoints = {"http://127.0.0.1:2379", "https://127.0.0.1:2380"}, .tls = ca_only}),
          "mixes http:// and https://"));
  const std::string no_ca = error({.endpoints = {"https://127.0.0.1:2379"}});
  CHECK(Has(no_ca, "--etcd-ca"));
  CHECK(Has(no_ca, "system"));  // says there is no fallback to the system trust store
  CHECK(Has(error({.endpoints = {"https://e:2379"}, .tls = {.ca_file = "/x", .cert_file = "/c"}}),
            "--etcd-cert and --etcd-key go together"));
  CHECK(Has(error({.endpoints = {"https://e:2379"}, .tls = {.ca_file = "/x", .key_file = "/k"}}),
            "--etcd-cert and --etcd-key go together"));
  CHECK(Has(error({.endpoints = {"http://e:2379"}, .tls = ca_only}), "are for https://"));
  const std::string missing = error({.endpoints = {"https://e:2379"}, .tls = ca_only});
  CHECK(Has(missing, "--etcd-ca"));
  CHECK(Has(missing, "/nonexistent/ca.crt"));

  EtcdProcess unstarted(EtcdProcess::kTls);
  const Status made = unstarted.MakeCertificates();
  REQUIRE_MESSAGE(made.ok(), ErrorText(made));
  const testing::EtcdTestPki& pki = unstarted.pki();
  const EtcdTlsFiles good{
      .ca_file = pki.ca_cert, .cert_file = pki.client_cert, .key_file = pki.client_key};
  CHECK(error({.endpoints = {"https://127.0.0.1:2379", "https://[::1]:2379"}, .tls = good}) ==
        "ok");
  CHECK(error({.endpoints = {"https://localhost:2379"}, .tls = {.ca_file = pki.ca_cert}}) == "ok");
  // A key others may read is refused, naming the file and the fix.
  REQUIRE(chmod(pki.client_key.c_str(), 0640) == 0);
  const std::string readable = error({.endpoints = {"https://e:2379"}, .tls = good});
  CHECK(Has(readable, "--etcd-key"));
  CHECK(Has(readable, pki.client_key));
  CHECK(Has(readable, "chmod 0600"));
  REQUIRE(chmod(pki.client_key.c_str(), 0600) == 0);
  CHECK(Has(error({.endpoints = {"https://e:2379"},
                   .tls = {.ca_file = pki.ca_cert,
                           .cert_file = pki.client_cert,
                           .key_file = pki.other_ca_key}}),
            "is not the private key of --etcd-cert"));
}

TEST_CASE("EtcdClient over TLS: put, range and watch with a client certificate") {
  Fixture f({}, {}, EtcdProcess::kTls);
  REQUIRE(f.etcd.client_url().starts_with("https://127.0.0.1:"));
  auto first = f.Put("/tls/a", "1");
  REQUIRE_MESSAGE(first.ok(), ErrorText(first));
  CHECK(f.client->connected());
  CHECK(f.client->current_endpoint() == f.etcd.client_url());

  std::vector<std::string> seen;
  std::optional<Status> ended;
  etcdpb::WatchCreateRequest create;
  create.set_key("/tls/");
  create.set_range_end(EtcdPrefixEnd("/tls/"));
  create.set_start_revision(first->header().revision());
  EtcdStreamPtr watch = f.client->Watch(
      create,
      [&](const etcdpb::WatchResponse& r) {
        for (const auto& event : r.events()) {
          seen.push_back(event.kv().key() + " " + std::to_string(event.kv().value().size()));
        }
      },
      [&](Status s) { ended.emplace(std::move(s)); });
  // 200 KB: many TLS records and HTTP/2 frames each way.
  const std::string big(200'000, 'x');
  REQUIRE(f.Put("/tls/b", big).ok());
  REQUIRE(RunUntil(
      f.loop.get(), [&] { return seen.size() >= 2; }, 5s));
  CHECK(seen == std::vector<std::string>{"/tls/a 1", "/tls/b 200000"});
  auto got = f.Get("/tls/", EtcdPrefixEnd("/tls/"));
  REQUIRE_MESSAGE(got.ok(), ErrorText(got));
  REQUIRE(got->kvs_size() == 2);
  CHECK(got->kvs(1).value() == big);
  CHECK_FALSE(ended.has_value());
}

TEST_CASE("EtcdClient over TLS: without a client certificate etcd's refusal is named") {
  Fixture f({}, {}, EtcdProcess::kTls);
  const std::string url = f.etcd.client_url();
  EtcdOptions options{.endpoints = {url}, .tls = {.ca_file = f.etcd.pki().ca_cert}};
  const std::string first = f.PutWith(options);
  INFO(first);
  CHECK(Has(first, "etcd at " + url));
  CHECK(Has(first, "TLS"));
  CHECK(Has(first, "certificate"));
  CHECK(Has(first, "--etcd-cert"));
  // The client certificate works where the lack of one failed.
  CHECK(f.PutWith({.endpoints = {url}, .tls = f.ClientFiles()}) == "ok");
}

TEST_CASE("EtcdClient over TLS: a CA that did not sign etcd's certificate is refused") {
  Fixture f({}, {}, EtcdProcess::kTls);
  const std::string url = f.etcd.client_url();
  EtcdTlsFiles tls = f.ClientFiles();
  tls.ca_file = f.etcd.pki().other_ca_cert;
  const std::string message = f.PutWith({.endpoints = {url}, .tls = tls});
  INFO(message);
  CHECK(Has(message, "etcd at " + url));
  CHECK(Has(message, "certificate verify failed"));
  CHECK(Has(message, f.etcd.pki().other_ca_cert));  // names the --etcd-ca that did not fit
}

TEST_CASE("EtcdClient over TLS: a host the certificate does not name is refused; calls retry") {
  Fixture f({}, {}, EtcdProcess::kTls);
  // etcd's certificate names only IP:127.0.0.1. "localhost" may resolve to
  // ::1 first (refused), then 127.0.0.1, where the handshake fails.
  const std::string port = f.etcd.client_url().substr(f.etcd.client_url().rfind(':') + 1);
  const std::string by_name = "https://localhost:" + port;
  auto client = EtcdClient::Create(f.loop.get(), {.endpoints = {by_name}, .tls = f.ClientFiles()});
  REQUIRE(client.ok());
  for (int attempt = 0; attempt < 2; ++attempt) {  // the second call connects again
    std::optional<Result<etcdpb::RangeResponse>> out;
    etcdpb::RangeRequest request;
    request.set_key("/x");
    (*client)->Range(request, [&](auto r) { out.emplace(std::move(r)); });
    REQUIRE(RunUntil(
        f.loop.get(), [&] { return out.has_value(); }, 10s));
    REQUIRE_FALSE(out->ok());
    INFO(out->error().message);
    CHECK(out->error().code == ErrorCode::kUnavailable);
    CHECK(Has(out->error().message, "etcd at " + by_name));
    CHECK(Has(out->error().message, "certificate verify failed: hostname mismatch"));
    CHECK(Has(out->error().message, "\"localhost\""));
  }
  // The IP the certificate names works, on the same etcd.
  CHECK(f.PutWith({.endpoints = {f.etcd.client_url()}, .tls = f.ClientFiles()}) == "ok");
}

TEST_CASE("EtcdClient: https:// to a cleartext etcd, and http:// to a TLS one, fail clearly") {
  Fixture plain;
  REQUIRE(plain.etcd.MakeCertificates().ok());
  const std::string as_https =
      "https://" + plain.etcd.client_url().substr(std::string_view("http://").size());
  const std::string tls_to_plain =
      plain.PutWith({.endpoints = {as_https}, .tls = {.ca_file = plain.etcd.pki().ca_cert}});
  INFO(tls_to_plain);
  CHECK(Has(tls_to_plain, "etcd at " + as_https));
  CHECK(Has(tls_to_plain, "during the TLS handshake"));

  Fixture secure({}, {}, EtcdProcess::kTls);
  const std::string as_http =
      "http://" + secure.etcd.client_url().substr(std::string_view("https://").size());
  const std::string plain_to_tls = secure.PutWith({.endpoints = {as_http}});
  INFO(plain_to_tls);
  CHECK(Has(plain_to_tls, "etcd at " + as_http));
  CHECK(Has(plain_to_tls, "use https://"));
}

TEST_CASE("EtcdClient over TLS: etcd dies and returns; the client reconnects with TLS") {
  Fixture f({.endpoints = {}, .connect_timeout = 1000ms}, {}, EtcdProcess::kTls);
  REQUIRE(f.Put("/r/a", "1").ok());
  f.etcd.Stop();
  auto down = f.Put("/r/b", "1");
  REQUIRE_FALSE(down.ok());
  CHECK(down.error().code == ErrorCode::kUnavailable);
  const Status restarted = f.etcd.Start();
  REQUIRE_MESSAGE(restarted.ok(), ErrorText(restarted));
  auto again = f.Put("/r/c", "1");
  CHECK_MESSAGE(again.ok(), ErrorText(again));
  CHECK(f.Get("/r/a")->kvs_size() == 1);
}

}  // namespace
}  // namespace podless::runtime
