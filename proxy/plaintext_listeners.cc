#include "proxy/plaintext_listeners.h"

#include "proxy/hbone_server.h"
#include "proxy/tcp_stream.h"

namespace podless::proxy {

Status PlaintextListeners::Sync(const std::set<uint16_t>& ports) {
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    if (ports.count(it->first) == 0) {
      it = listeners_.erase(it);
    } else {
      ++it;
    }
  }
  std::string errors;
  for (uint16_t port : ports) {
    if (listeners_.count(port) != 0) continue;
    auto listener = std::make_unique<Listener>();
    listener->owner = this;
    listener->port = port;
    uint16_t bound = 0;
    Status status = ListenTcp(
        dispatcher_.loop(), listener->handle, bind_, port,
        [](uv_stream_t* server, int rc) {
          if (rc == 0 && server->data != nullptr) {
            auto* l = static_cast<Listener*>(server->data);
            l->owner->OnConnection(*l);
          }
        },
        listener.get(), &bound);
    if (!status.ok()) {
      errors += (errors.empty() ? "" : "; ") + status.error().message;
      continue;
    }
    listeners_[port] = std::move(listener);
  }
  if (!errors.empty()) return MakeError(ErrorCode::kUnavailable, "plaintext ports: " + errors);
  return {};
}

std::set<uint16_t> PlaintextListeners::ports() const {
  std::set<uint16_t> out;
  for (const auto& [port, listener] : listeners_) out.insert(port);
  return out;
}

void PlaintextListeners::OnConnection(Listener& listener) {
  TcpStream* tcp = TcpStream::Accept(dispatcher_, listener.handle.stream());
  if (tcp == nullptr) return;
  InboundSource source;  // plaintext: no principal
  InboundDecision decision = inbound_.Admit(tcp->LocalAddress(), listener.port, source);
  if (decision.status != 200) {
    tcp->Reset();
    return;
  }
  inbound_.Serve(decision, source, tcp);
}

}  // namespace podless::proxy
