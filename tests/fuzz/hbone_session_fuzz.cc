// Fuzzes the HBONE server's HTTP/2 + CONNECT handling after the TLS layer:
// the bytes a peer sends go into a server-role proxy::HboneSession, which is
// the real one (nghttp2 server session, callbacks and SETTINGS of
// proxy/hbone_session.cc), over an in-memory transport instead of a TlsStream.
// CONNECT requests are answered the way HboneServer::OnConnectRequest does:
// synchronously, 400 for a bad authority, else 200 (echo or a paused reader)
// or a refusal, chosen by the authority's port.
//
// Input: byte 0 = options (bit 0: prepend the client connection preface, so
// inputs need not spell it; bits 1-7: chunk size class), then the bytes.
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/base/dispatcher.h"
#include "proxy/base/http1_parser.h"
#include "proxy/base/stream.h"
#include "proxy/hbone_session.h"

using namespace podless::proxy;

namespace {

constexpr std::string_view kClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// The TLS connection's stand-in: the session writes to it and the fuzzer
// delivers the peer's bytes through the handler the session installs.
class FakeTransport final : public Stream {
 public:
  void SetHandler(StreamHandler* handler) override { handler_ = handler; }
  void Write(std::string_view bytes) override { written_ += bytes.size(); }
  void End() override { ended_ = true; }
  void Reset() override { reset_ = true; }
  size_t QueuedBytes() const override { return 0; }
  void SetReadPaused(bool) override {}

  StreamHandler* handler_ = nullptr;
  size_t written_ = 0;
  bool ended_ = false;
  bool reset_ = false;
};

// The app behind an accepted stream: echoes, ends when the peer ends.
class EchoHandler final : public StreamHandler {
 public:
  explicit EchoHandler(Stream* stream) : stream_(stream) {}
  void OnData(std::string_view bytes) override { stream_->Write(bytes); }
  void OnEnd() override { stream_->End(); }
  void OnClosed(bool) override { delete this; }

 private:
  Stream* stream_;
};

class FuzzCallbacks final : public HboneSession::Callbacks {
 public:
  void OnConnectRequest(HboneSession&, HboneStream& stream) override {
    auto authority = ParseAuthority(stream.authority(), 0);
    if (!authority.ok() || authority->kind != HostPort::Kind::kIPv4) {
      stream.Respond(400);
      return;
    }
    switch (authority->port % 4) {
      case 0:
        stream.Respond(403);
        return;
      case 1:
        stream.Respond(404);
        return;
      default:
        stream.Respond(200);
        stream.SetHandler(new EchoHandler(&stream));
        if (authority->port % 4 == 3) stream.SetReadPaused(true);  // a slow reader
        return;
    }
  }
  void OnSessionClosed(HboneSession&) override { closed_ = true; }

  bool closed_ = false;
};

uv_loop_t* Loop() {
  static uv_loop_t* loop = [] {
    auto* l = new uv_loop_t;
    if (uv_loop_init(l) != 0) abort();
    return l;
  }();
  return loop;
}

// Runs deferred work (the session's pump, stream deliveries) until none is left.
void Drain() {
  for (int i = 0; i < 16 && uv_run(Loop(), UV_RUN_NOWAIT) != 0; ++i) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static Dispatcher* dispatcher = new Dispatcher(Loop());
  uint8_t options = data[0];
  std::string input;
  if (options & 1) input = kClientPreface;
  input.append(reinterpret_cast<const char*>(data + 1), size - 1);
  size_t chunk = size_t{1} << ((options >> 1) % 12);  // 1 .. 2048 bytes

  FuzzCallbacks callbacks;
  auto* transport = new FakeTransport;
  auto* session = new HboneSession(*dispatcher, HboneSession::Role::kServer, transport,
                                   "spiffe://cluster.local/ns/fuzz/sa/peer", callbacks);
  if (!session->Start().ok()) abort();
  Drain();
  if (transport->handler_ == nullptr) abort();

  std::string_view rest(input);
  while (!rest.empty() && !callbacks.closed_) {
    std::string_view piece = rest.substr(0, chunk);
    rest.remove_prefix(piece.size());
    transport->handler_->OnData(piece);
    if (!callbacks.closed_) Drain();
  }
  if (!callbacks.closed_ && (options & 0x80)) {
    transport->handler_->OnEnd();  // the peer closed the connection
    Drain();
  }
  delete session;
  Drain();
  delete transport;
  return 0;
}
