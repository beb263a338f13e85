// KubeServer over real sockets: a blocking BoringSSL client in a thread while
// the test runs the server's loop.
#include "api/kube/kube_server.h"

#include <arpa/inet.h>
#include <doctest.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "api/kube/request_body.h"
#include "proxy/base/nghttp2_nv.h"
#include "proxy/base/uv_handle.h"
#include "tests/api/kube/test_objects.h"
#include "tests/testing/run_loop.h"

namespace podless::api::kube {
namespace {

using namespace std::chrono_literals;
namespace wl = workloads;

class OneDeployment final : public ObjectSource {
 public:
  Result<v1::ListResponse> List(v1::Kind kind, const std::string&) override {
    v1::ListResponse out;
    if (kind == v1::WORKLOAD) *out.add_objects() = testing::WebDeployment("shop");
    return out;
  }
};

struct Client {
  const wl::Svid* identity = nullptr;  // the client certificate, if any
  std::string alpn = "http/1.1";
};

struct Exchange {
  std::string response;  // everything the server sent
  std::string alpn;      // what the server selected
};

// Connects, sends one HTTP/1.1 request with Connection: close (or `raw`,
// as it is), reads to EOF (at most 5 s).
Exchange Fetch(uint16_t port, const Client& client, const std::string& path,
               const std::string& raw = "") {
  Exchange out;
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  const uint8_t alpn[] = {static_cast<uint8_t>(client.alpn.size())};
  std::string protos(reinterpret_cast<const char*>(alpn), 1);
  protos += client.alpn;
  SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const uint8_t*>(protos.data()),
                          protos.size());
  bssl::UniquePtr<SSL> ssl(SSL_new(ctx.get()));
  if (client.identity != nullptr) {
    CRYPTO_BUFFER* chain[] = {client.identity->leaf.get()};
    SSL_set_chain_and_key(ssl.get(), chain, 1, client.identity->private_key.get(), nullptr);
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return out;
  }
  timeval limit{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  SSL_set_fd(ssl.get(), fd);
  if (SSL_connect(ssl.get()) == 1) {
    const uint8_t* selected = nullptr;
    unsigned selected_len = 0;
    SSL_get0_alpn_selected(ssl.get(), &selected, &selected_len);
    out.alpn.assign(reinterpret_cast<const char*>(selected), selected_len);
    const std::string request =
        !raw.empty() ? raw
                     : "GET " + path +
                           " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
                           "Connection: close\r\n\r\n";
    SSL_write(ssl.get(), request.data(), static_cast<int>(request.size()));
    char buf[4096];
    int n = 0;
    while ((n = SSL_read(ssl.get(), buf, sizeof buf)) > 0) out.response.append(buf, n);
  }
  ::close(fd);
  return out;
}

struct Fixture {
  proxy::UvLoop loop;
  OneDeployment source;
  wl::CertificateAuthorityPtr ca =
      wl::CertificateAuthority::CreateInMemory("cluster.local").value();
  KubeServerPtr server;

  explicit Fixture(uint64_t body_timeout_ms = 30'000) {
    KubeServerOptions options;
    options.address = "127.0.0.1:0";
    options.body_timeout_ms = body_timeout_ms;
    auto started = KubeServer::Start(loop.get(), source, *ca, options);
    REQUIRE(started.ok());
    server = std::move(started).value();
  }
  ~Fixture() {
    server->Close();
    podless::testing::RunFor(loop.get(), 10ms);
    server.reset();
    podless::testing::RunFor(loop.get(), 10ms);
  }

  // Runs the loop while the client talks to the server in a thread.
  Exchange Run(const Client& client, const std::string& path, const std::string& raw = "") {
    Exchange result;
    std::atomic<bool> done{false};
    std::thread thread([&] {
      result = Fetch(server->port(), client, path, raw);
      done = true;
    });
    podless::testing::RunUntil(loop.get(), [&] { return done.load(); });
    thread.join();
    return result;
  }
};

TEST_CASE("KubeServer: the admin's certificate is served over HTTP/1.1") {
  Fixture f;
  auto admin = f.ca->IssueTlsCertificate(kAdminCommonName, {}, {}, 1h);
  REQUIRE(admin.ok());
  Exchange e = f.Run({admin->get(), "http/1.1"}, "/api/v1/namespaces/shop/pods/web-0");
  CHECK(e.alpn == "http/1.1");
  CHECK(e.response.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(e.response.find("\"name\":\"web-0\"") != std::string::npos);
  CHECK(f.server->address() == "127.0.0.1:" + std::to_string(f.server->port()));
}

TEST_CASE("KubeServer: without a certificate, 401 and nothing else") {
  Fixture f;
  Exchange e = f.Run({nullptr, "http/1.1"}, "/api/v1/pods");
  CHECK(e.response.rfind("HTTP/1.1 401 Unauthorized\r\n", 0) == 0);
  CHECK(e.response.find("web-0") == std::string::npos);
  CHECK(e.response.find("\"reason\":\"Unauthorized\"") != std::string::npos);
}

TEST_CASE("KubeServer: another CA's admin certificate is 401, a workload's SVID 403") {
  Fixture f;
  auto other = wl::CertificateAuthority::CreateInMemory("cluster.local").value();
  auto foreign = other->IssueTlsCertificate(kAdminCommonName, {}, {}, 1h);
  REQUIRE(foreign.ok());
  Exchange e = f.Run({foreign->get(), "http/1.1"}, "/api/v1/pods");
  CHECK(e.response.rfind("HTTP/1.1 401 ", 0) == 0);
  CHECK(e.response.find("web-0") == std::string::npos);

  auto svid = f.ca->IssueSvid(wl::SpiffeId{"cluster.local", "/ns/shop/sa/web"}, 1h);
  REQUIRE(svid.ok());
  e = f.Run({svid->get(), "http/1.1"}, "/api/v1/pods");
  CHECK(e.response.rfind("HTTP/1.1 403 Forbidden\r\n", 0) == 0);
  CHECK(e.response.find("spiffe://cluster.local/ns/shop/sa/web") != std::string::npos);
  CHECK(e.response.find("web-0") == std::string::npos);
}

TEST_CASE("KubeServer: a refused client's body is not read") {
  Fixture f;
  // The head announces 1000 bytes and 10 come: 401 at once, and closed.
  const auto start = std::chrono::steady_clock::now();
  Exchange e = f.Run({nullptr, "http/1.1"}, "",
                     "POST /api/v1/namespaces/shop/serviceaccounts HTTP/1.1\r\nHost: x\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n0123456789");
  CHECK(e.response.rfind("HTTP/1.1 401 Unauthorized\r\n", 0) == 0);
  CHECK(e.response.find("Connection: close") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < 3s);
}

TEST_CASE("KubeServer: the admin's bodies: Content-Length, chunked, over the limit") {
  Fixture f;
  auto admin = f.ca->IssueTlsCertificate(kAdminCommonName, {}, {}, 1h);
  REQUIRE(admin.ok());
  const std::string body = R"({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"a"}})";
  const std::string head =
      "POST /api/v1/namespaces/shop/serviceaccounts HTTP/1.1\r\nHost: x\r\n"
      "Content-Type: application/json\r\nConnection: close\r\n";
  // This source takes no writes: its 403 shows the body was read and parsed.
  Exchange e = f.Run({admin->get(), "http/1.1"}, "",
                     head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  CHECK(e.response.rfind("HTTP/1.1 403 ", 0) == 0);
  CHECK(e.response.find("serves reads only") != std::string::npos);
  char size[16];
  snprintf(size, sizeof size, "%zx", body.size());
  e = f.Run({admin->get(), "http/1.1"}, "",
            head + "Transfer-Encoding: chunked\r\n\r\n" + size + "\r\n" + body + "\r\n0\r\n\r\n");
  CHECK(e.response.rfind("HTTP/1.1 403 ", 0) == 0);
  CHECK(e.response.find("serves reads only") != std::string::npos);
  // Expect: 100-continue is answered before the body (curl sends it for large bodies).
  e = f.Run({admin->get(), "http/1.1"}, "",
            head + "Expect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\n\r\n" + body);
  CHECK(e.response.rfind("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 ", 0) == 0);
  e = f.Run({admin->get(), "http/1.1"}, "",
            head + "Content-Length: " + std::to_string(kMaxRequestBodyBytes + 1) + "\r\n\r\n");
  CHECK(e.response.rfind("HTTP/1.1 413 ", 0) == 0);
  CHECK(e.response.find("RequestEntityTooLarge") != std::string::npos);
  e = f.Run({admin->get(), "http/1.1"}, "", head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n");
  CHECK(e.response.rfind("HTTP/1.1 400 ", 0) == 0);
}

TEST_CASE("KubeServer: a body that trickles is cut off") {
  Fixture f(/*body_timeout_ms=*/200);
  auto admin = f.ca->IssueTlsCertificate(kAdminCommonName, {}, {}, 1h);
  REQUIRE(admin.ok());
  const auto start = std::chrono::steady_clock::now();
  Exchange e = f.Run({admin->get(), "http/1.1"}, "",
                     "POST /api/v1/namespaces/shop/serviceaccounts HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 100\r\n\r\n0123456789");
  CHECK(e.response.empty());  // reset, never answered
  CHECK(std::chrono::steady_clock::now() - start < 3s);
}

// HTTP/2: a POST whose body stops after 10 bytes (the data provider
// defers), on nghttp2's client session over a blocking TLS socket. The
// response's :status, or "" when none came within 5 s.
std::string TrickleOverHttp2(uint16_t port, const wl::Svid& identity) {
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  static const uint8_t kH2[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kH2, sizeof kH2);
  bssl::UniquePtr<SSL> ssl(SSL_new(ctx.get()));
  CRYPTO_BUFFER* chain[] = {identity.leaf.get()};
  SSL_set_chain_and_key(ssl.get(), chain, 1, identity.private_key.get(), nullptr);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval limit{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  SSL_set_fd(ssl.get(), fd);
  struct State {
    SSL* ssl;
    std::string status;
    bool closed = false;
    bool sent_some = false;
  } state{ssl.get()};
  if (SSL_connect(ssl.get()) != 1) {
    ::close(fd);
    return "";
  }
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_send_callback(
      callbacks,
      [](nghttp2_session*, const uint8_t* data, size_t length, int, void* user) -> ssize_t {
        return SSL_write(static_cast<State*>(user)->ssl, data, static_cast<int>(length));
      });
  nghttp2_session_callbacks_set_on_header_callback(
      callbacks,
      [](nghttp2_session*, const nghttp2_frame*, const uint8_t* name, size_t name_len,
         const uint8_t* value, size_t value_len, uint8_t, void* user) -> int {
        if (std::string_view(reinterpret_cast<const char*>(name), name_len) == ":status") {
          static_cast<State*>(user)->status.assign(reinterpret_cast<const char*>(value), value_len);
        }
        return 0;
      });
  nghttp2_session_callbacks_set_on_stream_close_callback(
      callbacks, [](nghttp2_session*, int32_t, uint32_t, void* user) -> int {
        static_cast<State*>(user)->closed = true;
        return 0;
      });
  nghttp2_session* session = nullptr;
  nghttp2_session_client_new(&session, callbacks, &state);
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
  const nghttp2_nv headers[] = {
      proxy::MakeNv(":method", "POST"),
      proxy::MakeNv(":scheme", "https"),
      proxy::MakeNv(":authority", "127.0.0.1"),
      proxy::MakeNv(":path", "/api/v1/namespaces/shop/serviceaccounts"),
      proxy::MakeNv("content-type", "application/json"),
  };
  nghttp2_data_provider provider{};
  provider.source.ptr = &state;
  provider.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t*,
                              nghttp2_data_source* source, void*) -> ssize_t {
    auto* s = static_cast<State*>(source->ptr);
    if (s->sent_some) return NGHTTP2_ERR_DEFERRED;  // and never resumed
    s->sent_some = true;
    const size_t n = std::min<size_t>(length, 10);
    std::memset(buf, '{', n);
    return static_cast<ssize_t>(n);
  };
  nghttp2_submit_request(session, nullptr, headers, std::size(headers), &provider, nullptr);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!state.closed && std::chrono::steady_clock::now() < deadline) {
    if (nghttp2_session_send(session) != 0) break;
    uint8_t buf[4096];
    const int n = SSL_read(ssl.get(), buf, sizeof buf);
    if (n <= 0) break;
    if (nghttp2_session_mem_recv(session, buf, static_cast<size_t>(n)) < 0) break;
  }
  nghttp2_session_del(session);
  ::close(fd);
  return state.status;
}

TEST_CASE("KubeServer: an HTTP/2 body that trickles is answered 408") {
  Fixture f(/*body_timeout_ms=*/200);
  auto admin = f.ca->IssueTlsCertificate(kAdminCommonName, {}, {}, 1h);
  REQUIRE(admin.ok());
  std::string status;
  std::atomic<bool> done{false};
  const auto start = std::chrono::steady_clock::now();
  std::thread thread([&] {
    status = TrickleOverHttp2(f.server->port(), *admin->get());
    done = true;
  });
  podless::testing::RunUntil(f.loop.get(), [&] { return done.load(); });
  thread.join();
  CHECK(status == "408");
  CHECK(std::chrono::steady_clock::now() - start < 3s);
}

TEST_CASE("KubeServer: ALPN selects h2 when the client offers it") {
  Fixture f;
  // Only the selection is checked here (the client then speaks HTTP/1.1,
  // which the h2 session rejects); HTTP/2 requests are kubectl_get.py's.
  Exchange e = f.Run({nullptr, "h2"}, "/version");
  CHECK(e.alpn == "h2");
  CHECK(e.response.find("HTTP/1.1 200") == std::string::npos);
}

}  // namespace
}  // namespace podless::api::kube
