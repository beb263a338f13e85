#include "proxy/plaintext_listeners.h"

#include <utility>

#include "proxy/base/log.h"
#include "proxy/base/tcp_stream.h"
#include "workloads/ipam.h"

namespace podless::proxy {

PlaintextListeners::PlaintextListeners(Dispatcher& dispatcher, Inbound& inbound,
                                       PlaintextListenerOptions options)
    : dispatcher_(dispatcher), inbound_(inbound), options_(std::move(options)) {
  if (!options_.limits) options_.limits = std::make_shared<ConnectionLimits>();
  per_peer_ = CountsOf(options_.limits, &ConnectionLimits::plaintext_connections_per_peer);
}

Status PlaintextListeners::Sync(const PlaintextBindings& bindings) {
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    if (bindings.count(it->first) == 0) {
      it = listeners_.erase(it);
    } else {
      ++it;
    }
  }
  std::string errors;
  for (const PlaintextBinding& binding : bindings) {
    if (listeners_.count(binding) != 0) continue;
    TcpListener::Options options;
    options.name = "plaintext";
    options.listen = options_.listen;
    options.listen.bind = Address(binding);
    options.listen.bind.resize(options.listen.bind.rfind(':'));
    options.listen.port = binding.port;
    options.metrics = options_.metrics;
    options.log = options_.log;
    const uint16_t port = binding.port;
    auto listener = TcpListener::Create(dispatcher_, std::move(options),
                                        [this, port](TcpStream* tcp) { OnConnection(port, tcp); });
    if (!listener.ok()) {
      errors += (errors.empty() ? "" : "; ") + listener.error().message;
      continue;
    }
    listeners_[binding] = std::move(listener).value();
  }
  if (!errors.empty()) return MakeError(ErrorCode::kUnavailable, "plaintext ports: " + errors);
  return {};
}

PlaintextBindings PlaintextListeners::bindings() const {
  PlaintextBindings out;
  for (const auto& [binding, listener] : listeners_) out.insert(binding);
  return out;
}

std::string PlaintextListeners::Address(const PlaintextBinding& binding) const {
  if (binding.address == 0) return options_.listen.bind + ":" + std::to_string(binding.port);
  return FormatAddressPort(binding.address, binding.port);
}

void PlaintextListeners::OnConnection(uint16_t port, TcpStream* tcp) {
  // Held until the connection ends (the tracker releases it).
  CountSlot slot = CountSlot::TryAcquire(per_peer_, PeerKey(tcp->PeerAddress()),
                                         options_.max_connections_per_peer);
  if (!slot) {
    if (options_.metrics != nullptr) {
      options_.metrics->LimitRefused(ProxyMetrics::kLimitPlaintextConnectionsPerPeer).Inc();
    }
    tcp->Reset();
    return;
  }
  InboundSource source;  // plaintext: no principal
  source.plaintext = true;
  source.address = tcp->PeerAddress();
  InboundDecision decision = inbound_.Admit(tcp->LocalAddress(), port, source);
  if (decision.status != 200) {
    if (decision.status == 403 && LogEnabled(LogLevel::kDebug)) {
      Log(LogLevel::kDebug, "proxy",
          "plaintext connection from " + workloads::FormatIpv4(tcp->PeerAddress()) +
              " refused: " + decision.reason);
    }
    tcp->Reset();
    return;
  }
  if (options_.metrics != nullptr) {
    tcp->SetWriteStallTimeout(
        options_.write_stall_timeout_ms,
        &options_.metrics->PeerTimeout(ProxyMetrics::kTimeoutPlaintextWriteStalled));
  }
  inbound_.Serve(decision, source, tcp, std::move(slot));
}

}  // namespace podless::proxy
