#include "runtime/node/admin_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace podless::runtime {
namespace {

using namespace std::chrono_literals;

// A blocking TCP client for the test thread. Every read has a timeout so a
// broken server fails the test instead of hanging it.
class Client {
 public:
  // `receive_buffer`, when not 0, caps the socket's receive buffer (and so
  // how much the server can send before the client reads).
  explicit Client(uint16_t port, int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (receive_buffer != 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() { close(fd_); }

  bool connected() const { return connected_; }

  void Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  struct Response {
    int status = 0;
    std::string head;
    std::string body;
  };

  // Reads one response: the head, then Content-Length bytes of body (none
  // for a HEAD request). status 0 when the connection ended first.
  Response Read(bool head_request = false) {
    Response r;
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return r;
    }
    r.head = buffer_.substr(0, end + 4);
    buffer_.erase(0, end + 4);
    r.status = std::stoi(r.head.substr(9, 3));
    size_t length = 0;
    size_t cl = r.head.find("Content-Length: ");
    if (cl != std::string::npos) length = std::stoul(r.head.substr(cl + 16));
    if (head_request) length = 0;
    while (buffer_.size() < length) {
      if (!Fill()) return r;
    }
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return r;
  }

  // What is buffered or arrives next; empty at EOF (or after the timeout).
  std::string ReadSome() {
    if (buffer_.empty() && !Fill()) return "";
    return std::exchange(buffer_, "");
  }

  // True when the server closed the connection (EOF) within the timeout and
  // sent nothing more.
  bool ClosedByServer() {
    if (!buffer_.empty()) return false;
    char c;
    return recv(fd_, &c, 1, 0) == 0;
  }

 private:
  bool Fill() {
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

// Runs an AdminServer on a loop in this thread while `client` runs in
// another; `stop()` (called at the latest when the client returns) closes
// the server, which lets the loop finish.
class Harness {
 public:
  explicit Harness(AdminServerOptions options = {}) : server_(loop_.get(), options) {
    server_.AddRoute("/healthz", [](const proxy::Http1Request&) {
      return AdminResponse{200, "text/plain; charset=utf-8", "ok\n"};
    });
    server_.AddRoute("/config_dump", [](const proxy::Http1Request& request) {
      return AdminResponse{200, "application/json", "{\"target\":\"" + request.target + "\"}"};
    });
  }

  AdminServer& server() { return server_; }

  void Run(const std::function<void(uint16_t port, const std::function<void()>& stop)>& client) {
    Status listening = server_.Listen("127.0.0.1:0");
    REQUIRE(listening.ok());
    REQUIRE(server_.port() != 0);
    uv_async_init(loop_.get(), stop_.get(), [](uv_async_t* async) {
      auto* self = static_cast<Harness*>(async->data);
      self->connections_at_stop_ = self->server_.connection_count();
      self->server_.Close();
      self->stop_.Close();
    });
    stop_->data = this;
    uv_async_t* async = stop_.get();
    std::atomic<bool> stopped = false;
    auto stop = [&] {
      if (!stopped.exchange(true)) uv_async_send(async);
    };
    std::thread thread([&] {
      client(server_.port(), stop);
      stop();
    });
    uv_run(loop_.get(), UV_RUN_DEFAULT);
    thread.join();
  }

  size_t connections_at_stop() const { return connections_at_stop_; }

 private:
  proxy::UvLoop loop_;
  AdminServer server_;
  proxy::AsyncHandle stop_;
  size_t connections_at_stop_ = 0;
};

TEST_CASE("AdminServer: serves registered routes, ignores the query, 404s unknown paths") {
  Harness harness;
  Client::Response health, with_query, unknown, dump;
  harness.Run([&](uint16_t port, const auto&) {
    Client client(port);
    CHECK(client.connected());
    client.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    health = client.Read();
    client.Send("GET /healthz?verbose=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    with_query = client.Read();
    client.Send("GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    unknown = client.Read();
    client.Send("GET /config_dump?a=b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    dump = client.Read();
  });
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  CHECK(health.head.find("Content-Type: text/plain; charset=utf-8\r\n") != std::string::npos);
  CHECK(health.head.find("Content-Length: 3\r\n") != std::string::npos);
  CHECK(with_query.status == 200);
  CHECK(unknown.status == 404);
  CHECK(unknown.body == "no such path: /nope\n");
  CHECK(dump.status == 200);
  CHECK(dump.body == "{\"target\":\"/config_dump?a=b\"}");
  CHECK(dump.head.find("Content-Type: application/json\r\n") != std::string::npos);
}

TEST_CASE("AdminServer: answers pipelined requests in order on one connection") {
  Harness harness;
  Client::Response a, b, c;
  harness.Run([&](uint16_t port, const auto&) {
    Client client(port);
    client.Send(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        "GET /missing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        "GET /config_dump HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    a = client.Read();
    b = client.Read();
    c = client.Read();
  });
  CHECK(a.status == 200);
  CHECK(b.status == 404);
  CHECK(c.status == 200);
  CHECK(c.body == "{\"target\":\"/config_dump\"}");
}

TEST_CASE("AdminServer: pipelined large responses all arrive, in order, to a late reader") {
  // The client reads nothing at first and has a small receive buffer, so
  // the server's write queue passes its limit and it must pause reading,
  // then resume the held-back requests as the client catches up.
  AdminServerOptions options;
  options.max_queued_response_bytes = 64 * 1024;
  Harness harness(options);
  constexpr size_t kBodySize = 1 << 20;
  constexpr int kRequests = 12;
  harness.server().AddRoute("/big", [](const proxy::Http1Request& request) {
    return AdminResponse{200, "application/octet-stream",
                         std::string(kBodySize, request.target.back())};
  });
  std::vector<Client::Response> responses;
  harness.Run([&](uint16_t port, const auto&) {
    Client client(port, /*receive_buffer=*/32 * 1024);
    std::string requests;
    for (int i = 0; i < kRequests; ++i) {
      requests += "GET /big?" + std::string(1, static_cast<char>('a' + i)) +
                  " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    }
    client.Send(requests);
    std::this_thread::sleep_for(200ms);  // let the server's queue fill up
    for (int i = 0; i < kRequests; ++i) responses.push_back(client.Read());
  });
  REQUIRE(responses.size() == kRequests);
  for (int i = 0; i < kRequests; ++i) {
    CHECK(responses[i].status == 200);
    CHECK(responses[i].body == std::string(kBodySize, static_cast<char>('a' + i)));
  }
}

TEST_CASE("AdminServer: HEAD gets the headers of GET and no body") {
  Harness harness;
  Client::Response head, after;
  harness.Run([&](uint16_t port, const auto&) {
    Client client(port);
    client.Send("HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    head = client.Read(/*head_request=*/true);
    // Were a body sent after all, it would be read as the next response.
    client.Send("GET /missing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    after = client.Read();
  });
  CHECK(head.status == 200);
  CHECK(head.head.find("Content-Length: 3\r\n") != std::string::npos);
  CHECK(after.status == 404);
}

TEST_CASE("AdminServer: refuses other methods with 405 and request bodies with 413, then closes") {
  Harness harness;
  Client::Response post, body;
  bool post_closed = false;
  bool body_closed = false;
  harness.Run([&](uint16_t port, const auto&) {
    Client first(port);
    first.Send("POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\nabcd");
    post = first.Read();
    post_closed = first.ClosedByServer();
    Client second(port);
    second.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\nabcd");
    body = second.Read();
    body_closed = second.ClosedByServer();
  });
  CHECK(post.status == 405);
  CHECK(post.head.find("Allow: GET, HEAD\r\n") != std::string::npos);
  CHECK(post.head.find("Connection: close\r\n") != std::string::npos);
  CHECK(post_closed);
  CHECK(body.status == 413);
  CHECK(body_closed);
}

TEST_CASE("AdminServer: a malformed request gets 400 naming the problem, then the close") {
  Harness harness;
  Client::Response bad, version;
  bool closed = false;
  harness.Run([&](uint16_t port, const auto&) {
    Client client(port);
    client.Send("GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n");
    bad = client.Read();
    closed = client.ClosedByServer();
    Client second(port);
    second.Send("GET / HTTP/2.0\r\n\r\n");
    version = second.Read();
  });
  CHECK(bad.status == 400);
  CHECK(bad.body.find("header line 1: invalid character 0x20 in header name") != std::string::npos);
  CHECK(closed);
  CHECK(version.status == 505);
}

TEST_CASE("AdminServer: HTTP/1.0 closes after the response unless keep-alive was asked for") {
  Harness harness;
  Client::Response plain, kept, second;
  bool plain_closed = false;
  harness.Run([&](uint16_t port, const auto&) {
    Client client(port);
    client.Send("GET /healthz HTTP/1.0\r\n\r\n");
    plain = client.Read();
    plain_closed = client.ClosedByServer();
    Client keep(port);
    keep.Send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    kept = keep.Read();
    keep.Send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    second = keep.Read();
  });
  CHECK(plain.status == 200);
  CHECK(plain_closed);
  CHECK(kept.head.find("Connection: keep-alive\r\n") != std::string::npos);
  CHECK(second.status == 200);
}

TEST_CASE("AdminServer: closes idle connections and answers a too-slow head with 408") {
  AdminServerOptions options;
  options.request_timeout = 200ms;
  options.linger_timeout = 200ms;
  Harness harness(options);
  Client::Response served, slow;
  bool idle_closed = false;
  std::chrono::milliseconds idle_after{0};
  harness.Run([&](uint16_t port, const auto&) {
    Client idle(port);
    idle.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    served = idle.Read();
    auto start = std::chrono::steady_clock::now();
    idle_closed = idle.ClosedByServer();
    idle_after = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    Client trickle(port);
    trickle.Send("GET /healthz HTTP/1.1\r\n");
    std::this_thread::sleep_for(100ms);
    trickle.Send("Host: 127.0.0.1\r\n");  // still not a complete head
    slow = trickle.Read();
  });
  CHECK(served.status == 200);
  CHECK(idle_closed);
  CHECK(idle_after < 3000ms);
  CHECK(slow.status == 408);
}

TEST_CASE("AdminServer: Close ends open keep-alive connections") {
  Harness harness;
  Client::Response first;
  bool closed = false;
  harness.Run([&](uint16_t port, const std::function<void()>& stop) {
    Client client(port);
    client.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    first = client.Read();
    stop();
    closed = client.ClosedByServer();
  });
  CHECK(first.status == 200);
  CHECK(harness.connections_at_stop() == 1);
  CHECK(closed);
  CHECK(harness.server().connection_count() == 0);
}

TEST_CASE("AdminServer: a handler may close the server while answering") {
  Harness harness;
  harness.server().AddRoute("/quit", [&harness](const proxy::Http1Request&) {
    harness.server().Close();
    return AdminResponse{200, "text/plain", "bye\n"};
  });
  bool closed = false;
  harness.Run([&](uint16_t port, const auto&) {
    Client client(port);
    client.Send("GET /quit HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    closed = client.ClosedByServer();
  });
  CHECK(closed);
}

TEST_CASE("AdminServer: out of descriptors it sheds, logs once, counts, and serves again") {
  std::mutex mu;
  std::vector<std::string> logged;
  std::vector<std::string> counted;
  AdminServerOptions options;
  options.log = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mu);
    logged.push_back(line);
  };
  options.count_accept_error = [&](std::string_view error) {
    std::lock_guard<std::mutex> lock(mu);
    counted.emplace_back(error);
  };
  Harness harness(options);
  uint16_t used_port = 0;
  int shed_status = -1;
  int recovered_status = 0;
  harness.Run([&](uint16_t port, const std::function<void()>&) {
    used_port = port;
    // Fill the descriptor table (RLIMIT_NOFILE lowered for the test), but
    // for the one the client socket takes: the server's accept then fails.
    // (No REQUIRE on this thread: a throw here would terminate the test run.)
    rlimit saved{};
    rlimit low{};
    if (getrlimit(RLIMIT_NOFILE, &saved) != 0) return;
    low = saved;
    low.rlim_cur = 256;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0) return;
    std::vector<int> fillers;
    while (true) {
      int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      fillers.push_back(fd);
    }
    if (fillers.empty()) return;
    ::close(fillers.back());
    fillers.pop_back();
    {
      Client victim(port);
      if (victim.connected()) {
        victim.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        shed_status = victim.Read().status;  // 0: closed without an answer
      }
    }
    for (int fd : fillers) ::close(fd);
    setrlimit(RLIMIT_NOFILE, &saved);
    // Descriptors are back: served again (after the accept backoff).
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (recovered_status != 200 && std::chrono::steady_clock::now() < deadline) {
      Client later(port);
      later.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
      recovered_status = later.Read().status;
      if (recovered_status != 200) std::this_thread::sleep_for(50ms);
    }
  });
  CHECK(shed_status == 0);
  CHECK(recovered_status == 200);
  REQUIRE_FALSE(logged.empty());
  INFO(logged[0]);
  CHECK(logged[0].find("admin listener 127.0.0.1:" + std::to_string(used_port) +
                       ": accept failed: Too many open files (EMFILE)") != std::string::npos);
  CHECK(logged.back().find("accepting connections again") != std::string::npos);
  size_t failures = 0;
  for (const std::string& line : logged)
    failures += line.find("accept failed") != std::string::npos;
  CHECK(failures == 1);  // once per episode
  REQUIRE_FALSE(counted.empty());
  CHECK(counted[0] == "EMFILE");
}

TEST_CASE("AdminServer: reports the address when the port is already in use") {
  proxy::UvLoop loop;
  AdminServer first(loop.get());
  REQUIRE(first.Listen("127.0.0.1:0").ok());
  std::string address = "127.0.0.1:" + std::to_string(first.port());
  AdminServer second(loop.get());
  Status taken = second.Listen(address);
  REQUIRE_FALSE(taken.ok());
  CHECK(taken.error().message == address + ": address already in use");
  CHECK(second.port() == 0);
  first.Close();
  second.Close();
}

TEST_CASE("AdminServer: rejects addresses that are not ip:port") {
  proxy::UvLoop loop;
  AdminServer server(loop.get());
  Status no_port = server.Listen("127.0.0.1");
  REQUIRE_FALSE(no_port.ok());
  CHECK(no_port.error().code == ErrorCode::kInvalidArgument);
  CHECK(no_port.error().message.find("missing port") != std::string::npos);
  Status name = server.Listen("localhost:15000");
  REQUIRE_FALSE(name.ok());
  CHECK(name.error().message.find("must be an IP address") != std::string::npos);
  Status v6 = server.Listen("[::1]:0");
  // IPv6 loopback may be disabled on the machine; when it binds, it has a port.
  if (v6.ok()) CHECK(server.port() != 0);
  server.Close();
}

}  // namespace
}  // namespace podless::runtime

namespace podless::runtime {
namespace {

TEST_CASE("AdminServer: answers IP addresses and localhost only, not names (DNS rebinding)") {
  Harness harness;
  std::vector<int> statuses;
  harness.Run([&](uint16_t port, const auto&) {
    for (const char* host : {"127.0.0.1:1", "[::1]", "localhost:15000", "LOCALHOST",
                             "attacker.example:15000", "rebind.example"}) {
      Client client(port);
      client.Send("GET /healthz HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n");
      statuses.push_back(client.Read().status);
    }
    Client no_host(port);
    no_host.Send("GET /healthz HTTP/1.0\r\n\r\n");
    statuses.push_back(no_host.Read().status);
  });
  CHECK(statuses == std::vector<int>{200, 200, 200, 200, 421, 421, 200});
}

TEST_CASE("AdminServer: past the total of queued response bytes, new requests get 503") {
  AdminServerOptions options;
  options.max_queued_response_bytes = 64 << 20;  // one client alone is not held back
  options.max_total_queued_bytes = 4 << 20;
  Harness harness(options);
  harness.server().AddRoute("/big", [](const proxy::Http1Request&) {
    return AdminResponse{200, "application/octet-stream", std::string(8 << 20, 'x')};
  });
  int late = 0;
  harness.Run([&](uint16_t port, const auto&) {
    // Two clients that never read: the first response fills the budget.
    Client hog(port, /*receive_buffer=*/4096);
    hog.Send("GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    std::this_thread::sleep_for(200ms);
    Client other(port);
    other.Send("GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    late = other.Read().status;
  });
  CHECK(late == 503);
}

TEST_CASE("AdminServer: connections past max_connections are closed at accept") {
  AdminServerOptions options;
  options.max_connections = 2;
  Harness harness(options);
  bool third_closed = false;
  int first = 0;
  harness.Run([&](uint16_t port, const auto&) {
    Client a(port), b(port);
    a.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    first = a.Read().status;
    b.Send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    b.Read();
    Client c(port);
    third_closed = c.ClosedByServer();
  });
  CHECK(first == 200);
  CHECK(third_closed);
}

}  // namespace
}  // namespace podless::runtime

namespace podless::runtime {
namespace {

TEST_CASE("AdminServer: a streamed response arrives whole, chunked, one piece per loop turn") {
  Harness harness;
  int calls = 0;
  harness.server().AddRoute("/stream", [&calls](const proxy::Http1Request&) {
    AdminResponse response;
    response.content_type = "application/json";
    response.stream = [&calls](std::string* out) {
      ++calls;
      out->append(std::string(100'000, static_cast<char>('a' + calls - 1)));
      return calls < 3;
    };
    return response;
  });
  std::string raw;
  harness.Run([&](uint16_t port, const auto&) {
    Client client(port);
    client.Send("GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    // Read to the close: the server closes after a streamed response.
    Client::Response head = client.Read(/*head_request=*/true);
    raw = head.head;
    while (true) {
      std::string more = client.ReadSome();
      if (more.empty()) break;
      raw += more;
    }
  });
  CHECK(calls == 3);
  REQUIRE(raw.find("Transfer-Encoding: chunked") != std::string::npos);
  // De-chunk the body.
  std::string body;
  size_t at = raw.find("\r\n\r\n") + 4;
  while (true) {
    size_t line = raw.find("\r\n", at);
    REQUIRE(line != std::string::npos);
    size_t size = std::stoul(raw.substr(at, line - at), nullptr, 16);
    if (size == 0) break;
    body += raw.substr(line + 2, size);
    at = line + 2 + size + 2;
  }
  CHECK(body == std::string(100'000, 'a') + std::string(100'000, 'b') + std::string(100'000, 'c'));
}

}  // namespace
}  // namespace podless::runtime
