#include "proxy/plaintext_listeners.h"

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
    TcpListener::Options options;
    options.name = "plaintext";
    options.bind = bind_;
    options.port = port;
    options.sharing = sharing_;
    options.metrics = metrics_;
    options.log = log_;
    auto listener = TcpListener::Create(dispatcher_, std::move(options),
                                        [this, port](TcpStream* tcp) { OnConnection(port, tcp); });
    if (!listener.ok()) {
      errors += (errors.empty() ? "" : "; ") + listener.error().message;
      continue;
    }
    listeners_[port] = std::move(listener).value();
  }
  if (!errors.empty()) return MakeError(ErrorCode::kUnavailable, "plaintext ports: " + errors);
  return {};
}

std::set<uint16_t> PlaintextListeners::ports() const {
  std::set<uint16_t> out;
  for (const auto& [port, listener] : listeners_) out.insert(port);
  return out;
}

void PlaintextListeners::OnConnection(uint16_t port, TcpStream* tcp) {
  InboundSource source;  // plaintext: no principal
  InboundDecision decision = inbound_.Admit(tcp->LocalAddress(), port, source);
  if (decision.status != 200) {
    tcp->Reset();
    return;
  }
  if (metrics_ != nullptr) {
    tcp->SetWriteStallTimeout(write_stall_timeout_ms_,
                              &metrics_->PeerTimeout(ProxyMetrics::kTimeoutPlaintextWriteStalled));
  }
  inbound_.Serve(decision, source, tcp);
}

}  // namespace podless::proxy
