// ReadinessProbe: Kubernetes' tcpSocket / httpGet readiness probe against a
// supervised process, run on the agent's loop.
//
// Every period the probe opens a TCP connection to 127.0.0.1:<port> (the
// private port the process listens on); httpGet then sends `GET <path>` and
// wants a status 200-399 within the timeout. After success_threshold
// consecutive successes the process is ready, after failure_threshold
// consecutive failures it is not; the callback fires on every change. The
// connection is the data plane's (proxy::TcpConnector, proxy::TcpStream).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "proxy/base/dispatcher.h"
#include "proxy/base/stream.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "workloads/model.h"

namespace podless::runtime {

class ReadinessProbe;
using ReadinessProbePtr = std::unique_ptr<ReadinessProbe>;

class ReadinessProbe final : private proxy::StreamHandler {
 public:
  using Callback = std::function<void(bool ready)>;

  // `port` is the loopback port to probe (the probe's PortRef already
  // resolved), inside network namespace `netns_fd` when >= 0 (a sandboxed
  // replica's; it must outlive the probe). Starts probing after the probe's
  // initial delay.
  ReadinessProbe(proxy::Dispatcher& dispatcher, workloads::Probe probe, uint16_t port,
                 Callback on_change, int netns_fd = -1);
  ~ReadinessProbe() override;
  ReadinessProbe(const ReadinessProbe&) = delete;
  ReadinessProbe& operator=(const ReadinessProbe&) = delete;

  bool ready() const { return ready_; }

 private:
  void RunCheck();
  void OnConnected(proxy::TcpStream* stream);
  void Finish(bool success);

  // proxy::StreamHandler: the httpGet response.
  void OnData(std::string_view bytes) override;
  void OnEnd() override { CheckResponse(/*complete=*/true); }
  void OnClosed(bool) override;
  void CheckResponse(bool complete);

  proxy::Dispatcher& dispatcher_;
  workloads::Probe probe_;
  uint16_t port_;
  Callback on_change_;
  int netns_fd_;
  proxy::TimerPtr period_timer_;   // runs a check every period
  proxy::TimerPtr timeout_timer_;  // bounds the check in flight
  std::unique_ptr<proxy::TcpConnector> connector_;
  proxy::TcpStream* stream_ = nullptr;  // owns itself; closed by Finish()
  bool in_flight_ = false;
  std::string response_;
  uint32_t successes_ = 0;
  uint32_t failures_ = 0;
  bool ready_ = false;
};

}  // namespace podless::runtime
