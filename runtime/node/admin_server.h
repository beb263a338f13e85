// The agent's admin HTTP server (127.0.0.1:15000 by default): /healthz,
// /ready, /metrics, /config_dump, registered by the wiring as routes.
//
// A browser page can make requests to it under a name it controls (DNS
// rebinding): a request whose Host is a name other than "localhost" is
// refused with 421, so only IP literals and localhost are answered.
//
// HTTP/1.1 on the agent's libuv loop, over the data plane's proxy::TcpStream,
// parsed by proxy::Http1RequestParser.
// Deliberately small: GET and HEAD only (405 otherwise), no request bodies
// (413), routing on the path without query string (404 for unknown paths),
// persistent connections with pipelining, and a request timeout (10 s by
// default) that closes idle connections and those that send a head too
// slowly. Handlers run on the loop thread and must not block. Accepting is
// proxy::SocketAcceptor's: out of file descriptors, the server logs it once
// per episode, counts it (podless_accept_errors_total{listener="admin"}
// when wired), sheds pending clients and pauses instead of spinning.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/base/dispatcher.h"
#include "proxy/base/http1_parser.h"
#include "proxy/base/socket_acceptor.h"
#include "proxy/base/uv_handle.h"
#include "workloads/result.h"

namespace podless::runtime {

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  proxy::Http1Headers headers;  // more headers (e.g. Retry-After)
  // Set: the body is streamed (chunked transfer coding) instead of `body`:
  // each call appends the next piece and returns false after the last. A
  // call is made only once the previous piece was handed to the kernel, one
  // per loop turn at most, so a large body never sits whole in memory and
  // never holds the loop for long. The connection closes after it.
  std::function<bool(std::string* piece)> stream;
};

using AdminHandler = std::function<AdminResponse(const proxy::Http1Request&)>;

struct AdminServerOptions {
  // Time a connection may stay without a complete request head: idle
  // keep-alive connections and slow senders alike are closed after it.
  std::chrono::milliseconds request_timeout{10'000};
  // After the last response on a connection is sent, unread input is drained
  // this long before closing (closing with unread input would reset the
  // connection and could destroy the response at the client).
  std::chrono::milliseconds linger_timeout{2'000};
  // Pipelined requests are answered only while less than this much response
  // data waits in a connection's write queue; then reading pauses until the
  // client catches up, so a client that never reads cannot make the agent
  // buffer without bound.
  size_t max_queued_response_bytes = 1 << 20;
  // Response bytes waiting for slow clients on all connections together;
  // past it new requests get 503 (Retry-After: 1) instead of building yet
  // another response (a /config_dump of a million replicas is 139 MB: twenty
  // clients that never read would otherwise hold 2.8 GB).
  size_t max_total_queued_bytes = 64u << 20;
  // Open connections; more are closed at accept.
  size_t max_connections = 128;
  // Accept failures (EMFILE): the label and log prefix, how they are
  // counted (none when empty) and where they are logged.
  std::string listener_name = "admin";
  proxy::SocketAcceptor::CountFunction count_accept_error;
  proxy::LogFunction log = proxy::LogToStderr;
};

class AdminServer {
 public:
  explicit AdminServer(uv_loop_t* loop);
  AdminServer(uv_loop_t* loop, AdminServerOptions options);
  ~AdminServer();  // Close()
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds and listens on "ip:port" ("127.0.0.1:15000", "[::1]:0"); port 0
  // picks a free port (see port()). Errors name the address, e.g.
  // "127.0.0.1:15000: address already in use".
  Status Listen(std::string_view address);

  // The bound port once Listen succeeded, else 0.
  uint16_t port() const { return port_; }

  // Serves `path` (exact match, e.g. "/metrics") with `handler`. A later
  // registration of the same path replaces the earlier one.
  void AddRoute(std::string path, AdminHandler handler);

  // Stops listening and closes every connection at once. Idempotent; safe to
  // call from a handler.
  void Close();

  size_t connection_count() const { return connections_.size(); }
  // Response bytes waiting for slow clients, on every connection.
  size_t queued_bytes() const;

 private:
  class Connection;
  friend class Connection;

  void Accept(int fd);
  // Removes a closed connection from the live set; it is destroyed on the
  // next loop turn (it may still be on the stack now).
  void Retire(Connection* connection);
  const AdminHandler* FindRoute(std::string_view path) const;

  uv_loop_t* loop_;
  AdminServerOptions options_;
  proxy::SocketAcceptorPtr acceptor_;
  bool listening_ = false;
  uint16_t port_ = 0;
  std::map<std::string, AdminHandler, std::less<>> routes_;
  // Deferred work and deletion, and the read buffer, of the connections.
  // Declared before them: destroyed after them.
  proxy::Dispatcher dispatcher_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
};

using AdminServerPtr = std::unique_ptr<AdminServer>;

}  // namespace podless::runtime
