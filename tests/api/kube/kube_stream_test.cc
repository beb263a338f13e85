// Streamed responses through KubeServer over real sockets: a watch over
// HTTP/1.1 (chunked) and HTTP/2 (DATA frames as events come), a client that
// goes away freeing its watcher, and a client that does not read being cut.
// The client is a blocking BoringSSL socket in a thread (nghttp2's client
// session for HTTP/2) while the test runs the server's loop.
#include <arpa/inet.h>
#include <doctest.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "api/kube/kube_server.h"
#include "api/kube/kube_watch.h"
#include "proxy/base/uv_handle.h"
#include "tests/api/kube/fake_state.h"
#include "tests/testing/run_loop.h"

namespace podless::api::kube {
namespace {

using namespace std::chrono_literals;
namespace wl = workloads;
using testing::FakeState;
using testing::Service;

// A TLS connection to the server as the admin, ALPN `alpn`.
struct TlsClient {
  bssl::UniquePtr<SSL_CTX> ctx{SSL_CTX_new(TLS_method())};
  bssl::UniquePtr<SSL> ssl;
  int fd = -1;

  TlsClient(uint16_t port, const wl::Svid& identity, const std::string& alpn,
            int receive_buffer = 0) {
    std::string protos(1, static_cast<char>(alpn.size()));
    protos += alpn;
    SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const uint8_t*>(protos.data()),
                            protos.size());
    ssl.reset(SSL_new(ctx.get()));
    CRYPTO_BUFFER* chain[] = {identity.leaf.get()};
    SSL_set_chain_and_key(ssl.get(), chain, 1, identity.private_key.get(), nullptr);
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) {
      // A small window: the server's writes pile up in its own queue soon.
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    timeval tv{10, 0};  // no read hangs the test
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    SSL_set_fd(ssl.get(), fd);
    if (SSL_connect(ssl.get()) != 1) ssl.reset();
  }
  ~TlsClient() {
    if (fd >= 0) ::close(fd);
  }
  bool ok() const { return ssl != nullptr; }
  void Write(const std::string& bytes) {
    SSL_write(ssl.get(), bytes.data(), static_cast<int>(bytes.size()));
  }
  // Reads into `out` until it contains `part` (true) or the stream ends.
  bool ReadUntil(std::string& out, const std::string& part) {
    char buf[4096];
    while (out.find(part) == std::string::npos) {
      const int n = SSL_read(ssl.get(), buf, sizeof buf);
      if (n <= 0) return false;
      out.append(buf, n);
    }
    return true;
  }
};

struct Fixture {
  proxy::UvLoop loop;
  FakeState state;
  wl::CertificateAuthorityPtr ca =
      wl::CertificateAuthority::CreateInMemory("cluster.local").value();
  wl::SvidPtr admin;
  KubeServerPtr server;
  std::unique_ptr<WatchHub> hub;

  explicit Fixture(WatchOptions options = {}) {
    auto issued = ca->IssueTlsCertificate(kAdminCommonName, {}, {}, 1h);
    REQUIRE(issued.ok());
    admin = std::move(issued).value();
    KubeServerOptions server_options;
    server_options.address = "127.0.0.1:0";
    auto started = KubeServer::Start(loop.get(), state, *ca, server_options);
    REQUIRE(started.ok());
    server = std::move(started).value();
    options.bookmark_interval_ms = 0;
    hub = std::make_unique<WatchHub>(
        loop.get(), state, state, [] { return int64_t{2000}; }, options);
    server->api().SetWatchHub(hub.get());
  }
  ~Fixture() {
    server->Close();
    podless::testing::RunFor(loop.get(), 10ms);
    server.reset();
    hub.reset();
    podless::testing::RunFor(loop.get(), 10ms);
  }
};

constexpr const char* kWatchRequest =
    "GET /api/v1/namespaces/shop/services?watch=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "Accept: application/json\r\n\r\n";

TEST_CASE(
    "KubeServer: a watch over HTTP/1.1 is chunked, event by event; the client going "
    "frees its watcher") {
  Fixture f;
  f.state.Apply(Service("a"));
  std::atomic<int> step{0};
  std::string seen;
  std::thread client([&] {
    TlsClient c(f.server->port(), *f.admin, "http/1.1");
    if (!c.ok()) return step.store(-1);
    c.Write(kWatchRequest);
    if (!c.ReadUntil(seen, "\"name\":\"a\"")) return step.store(-1);
    step = 1;  // the current state came; now a change
    if (!c.ReadUntil(seen, "\"name\":\"b\"")) return step.store(-1);
    step = 2;  // and the client goes (the socket closes)
  });
  REQUIRE(podless::testing::RunUntil(f.loop.get(), [&] { return step != 0; }));
  REQUIRE(step == 1);
  CHECK(f.hub->watch_count() == 1);
  f.state.Apply(Service("b"));
  REQUIRE(podless::testing::RunUntil(f.loop.get(), [&] { return step != 1; }));
  client.join();
  CHECK(step == 2);
  CHECK(seen.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(seen.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(seen.find("Content-Length") == std::string::npos);
  // Each event its own chunk: size line, the event's line.
  CHECK(
      seen.find("\r\n{\"type\":\"ADDED\",\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Service\"") !=
      std::string::npos);
  CHECK(podless::testing::RunUntil(f.loop.get(), [&] { return f.hub->watch_count() == 0; }));
}

TEST_CASE("KubeServer: a watch's timeoutSeconds ends the response; the connection stays usable") {
  Fixture f;
  std::string seen;
  std::atomic<int> step{0};
  std::thread client([&] {
    TlsClient c(f.server->port(), *f.admin, "http/1.1");
    if (!c.ok()) return step.store(-1);
    c.Write(
        "GET /api/v1/namespaces/shop/services?watch=true&timeoutSeconds=1 HTTP/1.1\r\n"
        "Host: x\r\n\r\n");
    if (!c.ReadUntil(seen, "\r\n0\r\n\r\n")) return step.store(-1);
    // The same connection serves the next request.
    c.Write("GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if (!c.ReadUntil(seen, "\"gitVersion\"")) return step.store(-1);
    step = 1;
  });
  REQUIRE(podless::testing::RunUntil(
      f.loop.get(), [&] { return step != 0; }, 8000));
  client.join();
  CHECK(step == 1);
  CHECK(f.hub->watch_count() == 0);
}

TEST_CASE("KubeServer: a watcher that does not read is cut, as the API server cuts it") {
  WatchOptions options;
  options.stream_limit = 64 << 10;
  Fixture f(options);
  std::atomic<int> step{0};
  std::string seen;
  std::thread client([&] {
    TlsClient c(f.server->port(), *f.admin, "http/1.1", /*receive_buffer=*/4096);
    if (!c.ok()) return step.store(-1);
    c.Write(kWatchRequest);
    if (!c.ReadUntil(seen, "\r\n\r\n")) return step.store(-1);
    step = 1;
    // Reads nothing until the server cut the watch.
    while (step == 1) std::this_thread::sleep_for(5ms);
    // Then what was sent before the cut, and the end of the response.
    c.ReadUntil(seen, "\r\n0\r\n\r\n");
    step = 3;
  });
  REQUIRE(podless::testing::RunUntil(f.loop.get(), [&] { return step != 0; }));
  REQUIRE(step == 1);
  REQUIRE(f.hub->watch_count() == 1);
  // Changes until the server's queue passes the limit (bounded: the kernel
  // buffers, the TLS queue's high watermark and 64 KiB are well below).
  for (int i = 0; i < 20000 && f.hub->watch_count() == 1; ++i) {
    f.state.Apply(Service("s" + std::to_string(i)));
    if (i % 50 == 0) podless::testing::RunFor(f.loop.get(), 1ms);
  }
  CHECK(f.hub->watch_count() == 0);
  step = 2;
  REQUIRE(podless::testing::RunUntil(f.loop.get(), [&] { return step == 3; }));
  client.join();
  CHECK(seen.size() > (64 << 10));
  CHECK(seen.find("\r\n0\r\n\r\n") != std::string::npos);  // the response ended
}

// HTTP/2: nghttp2's client session over the blocking TLS socket.
struct H2Client {
  TlsClient& tls;
  nghttp2_session* session = nullptr;
  std::string data;  // the DATA of the stream
  bool closed = false;
  int32_t stream_id = -1;

  // `peer_max_streams`: how many concurrent streams the client assumes the
  // server allows until its SETTINGS arrive (a client that floods streams
  // before reading them).
  explicit H2Client(TlsClient& t, uint32_t peer_max_streams = 100) : tls(t) {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session*, uint8_t, int32_t, const uint8_t* d, size_t len, void* self) {
          static_cast<H2Client*>(self)->data.append(reinterpret_cast<const char*>(d), len);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, [](nghttp2_session*, int32_t, uint32_t, void* self) {
          static_cast<H2Client*>(self)->closed = true;
          return 0;
        });
    nghttp2_option* option = nullptr;
    nghttp2_option_new(&option);
    nghttp2_option_set_peer_max_concurrent_streams(option, peer_max_streams);
    nghttp2_session_client_new2(&session, cb, this, option);
    nghttp2_option_del(option);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~H2Client() { nghttp2_session_del(session); }

  void Get(const std::string& path, bool send = true) {
    auto nv = [](const char* n, const std::string& v) {
      return nghttp2_nv{(uint8_t*)n, (uint8_t*)v.data(), strlen(n), v.size(), NGHTTP2_NV_FLAG_NONE};
    };
    const std::string method = "GET", scheme = "https", authority = "127.0.0.1";
    const nghttp2_nv headers[] = {nv(":method", method), nv(":scheme", scheme),
                                  nv(":authority", authority), nv(":path", path)};
    stream_id = nghttp2_submit_request(session, nullptr, headers, 4, nullptr, nullptr);
    if (send) Send();
  }
  void Send() {
    const uint8_t* out = nullptr;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(session, &out)) > 0) {
      tls.Write(std::string(reinterpret_cast<const char*>(out), n));
    }
  }
  bool ReadUntil(const std::string& part) {
    char buf[4096];
    while (data.find(part) == std::string::npos) {
      const int n = SSL_read(tls.ssl.get(), buf, sizeof buf);
      if (n <= 0) return false;
      nghttp2_session_mem_recv(session, reinterpret_cast<uint8_t*>(buf), n);
      Send();
    }
    return true;
  }
};

TEST_CASE("KubeServer: a watch over HTTP/2 sends each event as it comes; RST_STREAM frees it") {
  Fixture f;
  f.state.Apply(Service("a"));
  std::atomic<int> step{0};
  std::thread client([&] {
    TlsClient c(f.server->port(), *f.admin, "h2");
    if (!c.ok()) return step.store(-1);
    H2Client h2(c);
    h2.Get("/api/v1/namespaces/shop/services?watch=1");
    if (!h2.ReadUntil("\"name\":\"a\"")) return step.store(-1);
    step = 1;
    if (!h2.ReadUntil("\"name\":\"b\"")) return step.store(-1);
    // The client cancels the watch; the connection stays.
    nghttp2_submit_rst_stream(h2.session, NGHTTP2_FLAG_NONE, h2.stream_id, NGHTTP2_CANCEL);
    h2.Send();
    step = 2;
    while (step == 2) std::this_thread::sleep_for(5ms);
  });
  REQUIRE(podless::testing::RunUntil(f.loop.get(), [&] { return step != 0; }));
  REQUIRE(step == 1);
  f.state.Apply(Service("b"));
  REQUIRE(podless::testing::RunUntil(f.loop.get(), [&] { return step != 1; }));
  CHECK(step == 2);
  CHECK(podless::testing::RunUntil(f.loop.get(), [&] { return f.hub->watch_count() == 0; }));
  CHECK(f.server->connection_count() == 1);  // only the stream went
  step = 3;
  client.join();
}

TEST_CASE("KubeServer: one HTTP/2 connection holds at most 100 watches") {
  Fixture f;
  std::atomic<int> step{0};
  std::thread client([&] {
    TlsClient c(f.server->port(), *f.admin, "h2");
    if (!c.ok()) return step.store(-1);
    H2Client h2(c, /*peer_max_streams=*/1000);
    // 150 watches in the first flight, before the server's SETTINGS are read.
    for (int i = 0; i < 150; ++i) h2.Get("/api/v1/namespaces/shop/services?watch=1", false);
    h2.Send();
    step = 1;
    h2.ReadUntil("never");  // until the server closes
    step = 2;
  });
  REQUIRE(podless::testing::RunUntil(f.loop.get(), [&] { return step != 0; }));
  REQUIRE(step == 1);
  CHECK(podless::testing::RunUntil(f.loop.get(), [&] { return f.hub->watch_count() == 100; }));
  podless::testing::RunFor(f.loop.get(), 200ms);
  CHECK(f.hub->watch_count() == 100);  // the other 50 were refused
  f.server->Close();
  CHECK(f.hub->watch_count() == 0);
  REQUIRE(podless::testing::RunUntil(f.loop.get(), [&] { return step == 2; }));
  client.join();
}

TEST_CASE("KubeServer: Close() ends every watch and frees its watcher") {
  Fixture f;
  std::atomic<int> step{0};
  std::string seen;
  std::thread client([&] {
    TlsClient c(f.server->port(), *f.admin, "http/1.1");
    if (!c.ok()) return step.store(-1);
    c.Write(kWatchRequest);
    if (!c.ReadUntil(seen, "\r\n\r\n")) return step.store(-1);
    step = 1;
    c.ReadUntil(seen, "never");  // until the server closes
    step = 2;
  });
  REQUIRE(podless::testing::RunUntil(f.loop.get(), [&] { return step != 0; }));
  CHECK(f.hub->watch_count() == 1);
  f.server->Close();
  CHECK(f.hub->watch_count() == 0);
  REQUIRE(podless::testing::RunUntil(f.loop.get(), [&] { return step == 2; }));
  client.join();
}

}  // namespace
}  // namespace podless::api::kube
