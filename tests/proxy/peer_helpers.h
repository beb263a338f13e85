// Hostile and well-behaved peers for the slow-peer and limit tests: a raw
// TCP client that sends what it is told and can stop reading, and an
// in-process HBONE client (TcpConnector + TlsStream + HboneSession, the
// proxy's own client parts) that can stop after the TLS handshake.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/base/dispatcher.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/hbone_session.h"
#include "proxy/tls_stream.h"
#include "tests/proxy/fake_directory.h"

namespace podless::proxy::testing {

// A client socket: connect() is blocking (loopback completes at once), then
// the socket is non-blocking so the test thread can poll it between loop
// turns. `receive_buffer` > 0 shrinks SO_RCVBUF (a peer that stops reading
// fills up sooner).
class RawSocket {
 public:
  // `source` != 0: connect from that local address.
  RawSocket(uint32_t address, uint16_t port, int receive_buffer = 0, uint32_t source = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    if (source != 0) {
      sockaddr_in local = MakeSockaddr(source, 0);
      REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) == 0);
    }
    if (receive_buffer > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    }
    sockaddr_in addr = MakeSockaddr(address, port);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~RawSocket() { Close(); }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  void Send(std::string_view bytes) { (void)::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads what has arrived (without blocking) into received(); true once
  // the peer closed the connection (EOF or reset).
  bool PeerClosed() {
    if (closed_ || fd_ < 0) return closed_;
    char buf[4096];
    while (true) {
      ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        received_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) closed_ = true;
      return closed_;
    }
  }
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

// Collects what a stream delivers; can hold reads paused (a peer that
// never reads its stream).
struct StreamProbe final : StreamHandler {
  std::string data;
  bool ended = false;
  bool closed = false;
  bool reset = false;
  void OnData(std::string_view bytes) override { data.append(bytes); }
  void OnEnd() override { ended = true; }
  void OnClosed(bool was_reset) override {
    closed = true;
    reset = was_reset;
  }
};

// An HBONE client as `frontend` (spiffe://cluster.local/ns/shop/sa/frontend)
// from `directory`'s CA, dialing `server_address:port` and expecting the
// replica there to present `server_identity`.
// Destroying it aborts the session: the handlers of its open streams
// (StreamProbes) are told, so they must outlive the client.
class HboneTestClient final : private HboneSession::Callbacks {
 public:
  HboneTestClient(Dispatcher& dispatcher, FakeDirectory& directory, const char* server_address,
                  uint16_t port, std::string server_identity)
      : dispatcher_(dispatcher), server_identity_(std::move(server_identity)) {
    auto context = TlsContext::CreateClient(directory);
    REQUIRE(context.ok());
    context_ = std::move(context).value();
    auto svid = directory.ca().IssueSvid(
        workloads::SpiffeId::ForServiceAccount("cluster.local", "shop", "frontend"),
        std::chrono::hours(1));
    REQUIRE(svid.ok());
    svid_ = std::move(svid).value();
    connector_ = std::make_unique<TcpConnector>(dispatcher);
    connector_->Connect(Ip(server_address), port, 2000, [this](Result<TcpStream*> tcp) {
      if (!tcp.ok()) {
        failed_ = true;
        return;
      }
      tls_ = TlsStream::Connect(dispatcher_, *context_, tcp.value(), svid_, server_identity_, "",
                                2000, [this](Status status) {
                                  if (status.ok()) {
                                    handshake_done_ = true;
                                  } else {
                                    failed_ = true;
                                    tls_ = nullptr;
                                  }
                                });
    });
  }
  ~HboneTestClient() override {
    if (session_ != nullptr) {
      session_->Abort();  // comes back through OnSessionClosed
    } else if (tls_ != nullptr && !silent_.closed) {
      tls_->Reset();
    }
  }

  // The TLS handshake finished (or failed).
  bool handshake_done() const { return handshake_done_; }
  bool failed() const { return failed_; }

  // After the handshake: sends nothing at all (no HTTP/2 preface), only
  // watches for the server closing the connection.
  void HoldSilent() {
    REQUIRE(tls_ != nullptr);
    tls_->SetHandler(&silent_);
  }
  bool tls_closed() const { return silent_.closed; }

  // After the handshake: an HTTP/2 client session over it.
  HboneSession& StartSession() {
    REQUIRE(tls_ != nullptr);
    session_ =
        new HboneSession(dispatcher_, HboneSession::Role::kClient, tls_, server_identity_, *this);
    tls_ = nullptr;  // the session owns it now
    REQUIRE(session_->Start().ok());
    return *session_;
  }
  bool session_closed() const { return session_closed_; }

  // Opens a CONNECT stream; `probe` gets its bytes once it is open.
  // `*status` becomes the response status, or -1 when the stream ended
  // without one (refused by the server's stream limit, say).
  HboneStream* Open(const std::string& authority, StreamProbe& probe, int* status) {
    auto stream = session_->OpenStream(
        authority, [status](int s, const std::string&) { *status = s == 0 ? -1 : s; });
    REQUIRE(stream.ok());
    HboneStream* opened = stream.value();
    opened->SetHandler(&probe);
    return opened;
  }

 private:
  struct Silent final : StreamHandler {
    bool closed = false;
    void OnData(std::string_view) override {}
    // The server ending the connection (FIN or reset) is what is watched.
    void OnEnd() override { closed = true; }
    void OnClosed(bool) override { closed = true; }
  };

  // HboneSession::Callbacks
  void OnConnectRequest(HboneSession&, HboneStream& stream) override { stream.Respond(405); }
  void OnSessionClosed(HboneSession& session) override {
    session_closed_ = true;
    session_ = nullptr;
    dispatcher_.DeferredDelete(std::unique_ptr<HboneSession>(&session));  // ours since Open
  }

  Dispatcher& dispatcher_;
  std::string server_identity_;
  TlsContextPtr context_;
  workloads::SvidPtr svid_;
  std::unique_ptr<TcpConnector> connector_;
  TlsStream* tls_ = nullptr;
  HboneSession* session_ = nullptr;
  Silent silent_;
  bool handshake_done_ = false;
  bool failed_ = false;
  bool session_closed_ = false;
};

// The value of one series in a Prometheus text rendering, -1 if absent.
inline double MetricValue(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  at += series.size() + 2;
  return std::stod(text.substr(at, text.find('\n', at) - at));
}

}  // namespace podless::proxy::testing
