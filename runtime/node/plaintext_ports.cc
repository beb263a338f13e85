#include "runtime/node/plaintext_ports.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "proxy/base/log.h"
#include "proxy/base/tcp_stream.h"

namespace podless::runtime {

PlaintextPorts::PlaintextPorts(uv_loop_t* loop, proxy::Registry& metrics, Options options,
                               SyncFunction sync, HeldFunction held)
    : loop_(loop), options_(options), sync_(std::move(sync)), held_(std::move(held)) {
  retry_timer_ = std::make_unique<proxy::Timer>(loop_, [this] { Retry(); });
  unbound_gauge_ = &metrics
                        .AddGauge("podless_plaintext_ports_unbound",
                                  "Plaintext workload sockets (address and port) that could not "
                                  "be bound, another program holding them; retried.")
                        .WithLabels({});
  retries_ = &metrics
                  .AddCounter("podless_plaintext_bind_retries_total",
                              "Retries of plaintext workload sockets that could not be bound.")
                  .WithLabels({});
}

void PlaintextPorts::Close() {
  retry_timer_.reset();
  retry_delay_ms_ = 0;
}

void PlaintextPorts::Unindex(const workloads::ObjectKey& key) {
  auto it = indexed_.find(key);
  if (it == indexed_.end()) return;
  for (uint16_t port : it->second.ports) {
    auto on_port = by_address_.find(port);
    if (on_port == by_address_.end()) continue;  // moved to the bind address
    for (uint32_t address : it->second.addresses) {
      auto entry = on_port->second.find(address);
      if (entry == on_port->second.end()) continue;
      if (--entry->second == 0) {
        on_port->second.erase(entry);
        --address_sockets_;
      }
    }
    if (on_port->second.empty()) by_address_.erase(on_port);
  }
  indexed_.erase(it);
  dirty_ = true;
}

void PlaintextPorts::Update(const workloads::ObjectKey& key,
                            const std::vector<workloads::PortSpec>& ports,
                            const std::vector<uint32_t>& addresses) {
  Unindex(key);
  Indexed added;
  for (const workloads::PortSpec& spec : ports) {
    const uint16_t port = spec.port;
    if (on_bind_address_.count(port) != 0 || addresses.empty()) continue;
    auto& on_port = by_address_[port];
    // A workload too large to fit alone is not counted address by address
    // (a million replicas would cost a million lookups per change of it).
    size_t adding = addresses.size();
    if (adding <= options_.max_address_sockets) {
      for (uint32_t address : addresses) adding -= on_port.count(address);
    }
    if (address_sockets_ + adding > options_.max_address_sockets) {
      // Past the threshold: the whole port moves to the bind address.
      address_sockets_ -= on_port.size();
      by_address_.erase(port);
      on_bind_address_.insert(port);
      dirty_ = true;
      continue;
    }
    for (uint32_t address : addresses) ++on_port[address];
    address_sockets_ += adding;
    added.ports.push_back(port);
    dirty_ = true;
  }
  if (!added.ports.empty()) {
    added.addresses = addresses;
    indexed_[key] = std::move(added);
  }
}

void PlaintextPorts::Remove(const workloads::ObjectKey& key) { Unindex(key); }

proxy::PlaintextBindings PlaintextPorts::Wanted(const std::map<uint16_t, size_t>& ports_in_use) {
  // A port no workload declares any more leaves the bind address: when it
  // comes back, it starts on its replicas' addresses again.
  std::erase_if(on_bind_address_, [&](uint16_t port) { return ports_in_use.count(port) == 0; });
  proxy::PlaintextBindings wanted;
  for (uint16_t port : on_bind_address_) wanted.insert({0, port});
  for (const auto& [port, addresses] : by_address_) {
    for (const auto& [address, users] : addresses) wanted.insert({address, port});
  }
  return wanted;
}

void PlaintextPorts::Sync(const std::map<uint16_t, size_t>& ports_in_use) {
  dirty_ = false;
  last_ports_ = ports_in_use;
  const proxy::PlaintextBindings wanted = Wanted(ports_in_use);
  // A port moving between its replicas' addresses and the bind address is
  // closed everywhere first: with worker threads, the first worker's
  // 0.0.0.0:<port> would otherwise collide with another worker's
  // 127.64.0.5:<port>, not yet closed.
  std::map<uint16_t, bool> held_on_bind_address;
  for (const proxy::PlaintextBinding& binding : held_()) {
    held_on_bind_address[binding.port] = binding.address == 0;
  }
  proxy::PlaintextBindings first_step;
  for (const proxy::PlaintextBinding& binding : wanted) {
    auto held = held_on_bind_address.find(binding.port);
    if (held == held_on_bind_address.end() || held->second == (binding.address == 0)) {
      first_step.insert(binding);
    }
  }
  if (first_step.size() != wanted.size()) (void)sync_(first_step);
  Status status = sync_(wanted);
  unbound_.clear();
  unbound_bindings_.clear();
  if (!status.ok()) {
    const proxy::PlaintextBindings held = held_();
    for (const proxy::PlaintextBinding& binding : wanted) {
      if (held.count(binding) != 0) continue;
      unbound_bindings_.insert(binding);
      unbound_.push_back(binding.address == 0
                             ? "*:" + std::to_string(binding.port)
                             : proxy::FormatAddressPort(binding.address, binding.port));
    }
  }
  unbound_gauge_->Set(static_cast<int64_t>(unbound_.size()));
  if (status.ok()) {
    if (!logged_.empty()) {
      proxy::Log(proxy::LogLevel::kInfo, "proxy", "plaintext ports: every port is served now");
      logged_.clear();
    }
    retry_delay_ms_ = 0;
    if (retry_timer_) retry_timer_->Stop();
    return;
  }
  // Logged once per distinct failure, not on every retry.
  if (status.error().message != logged_) {
    logged_ = status.error().message;
    proxy::Log(proxy::LogLevel::kWarning, "proxy",
               logged_ + " (served over HBONE and the outbound entry only; retried until free)");
  }
  ScheduleRetry();
}

std::vector<uint16_t> PlaintextPorts::Unserved(
    uint32_t address, const std::vector<workloads::PortSpec>& ports) const {
  std::vector<uint16_t> out;
  if (unbound_bindings_.empty()) return out;
  for (const workloads::PortSpec& spec : ports) {
    if (unbound_bindings_.count({address, spec.port}) != 0 ||
        unbound_bindings_.count({0, spec.port}) != 0) {
      out.push_back(spec.port);
    }
  }
  return out;
}

void PlaintextPorts::ScheduleRetry() {
  if (!retry_timer_) return;  // closed
  retry_delay_ms_ = retry_delay_ms_ == 0 ? options_.retry_initial_ms
                                         : std::min(retry_delay_ms_ * 2, options_.retry_max_ms);
  retry_timer_->Start(retry_delay_ms_);
}

void PlaintextPorts::Retry() {
  retries_->Inc();
  // Resets the backoff when everything binds; otherwise doubles it.
  Sync(last_ports_);
}

}  // namespace podless::runtime
