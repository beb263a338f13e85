#include "runtime/process/readiness_probe.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

namespace podless::runtime {

namespace {

// A status line longer than this is no HTTP answer.
constexpr size_t kMaxStatusLine = 4096;

}  // namespace

ReadinessProbe::ReadinessProbe(proxy::Dispatcher& dispatcher, workloads::Probe probe, uint16_t port,
                               Callback on_change, int netns_fd)
    : dispatcher_(dispatcher),
      probe_(std::move(probe)),
      port_(port),
      on_change_(std::move(on_change)),
      netns_fd_(netns_fd) {
  period_timer_ = std::make_unique<proxy::Timer>(dispatcher_.loop(), [this] {
    if (!in_flight_) RunCheck();
  });
  timeout_timer_ = std::make_unique<proxy::Timer>(dispatcher_.loop(), [this] {
    if (in_flight_) Finish(false);
  });
  uint64_t period_ms = std::max<uint64_t>(1, probe_.period_seconds) * 1000;
  period_timer_->Start(uint64_t{probe_.initial_delay_seconds} * 1000, period_ms);
}

ReadinessProbe::~ReadinessProbe() {
  if (stream_ != nullptr) stream_->Close();
}

void ReadinessProbe::RunCheck() {
  in_flight_ = true;
  response_.clear();
  const uint64_t timeout_ms = std::max<uint64_t>(1, probe_.timeout_seconds) * 1000;
  // The whole check (connect, request, status line) within the timeout.
  timeout_timer_->Start(timeout_ms);
  connector_ = std::make_unique<proxy::TcpConnector>(dispatcher_);
  proxy::TcpConnector* attempt = connector_.get();
  connector_->Connect(
      INADDR_LOOPBACK, port_, timeout_ms,
      [this, attempt](Result<proxy::TcpStream*> connected) {
        if (attempt != connector_.get()) {
          // This check timed out already; its connector awaits deletion.
          if (connected.ok()) (*connected)->Close();
          return;
        }
        if (!connected.ok()) {
          Finish(false);
          return;
        }
        OnConnected(*connected);
      },
      netns_fd_);
}

void ReadinessProbe::OnConnected(proxy::TcpStream* stream) {
  stream_ = stream;
  if (probe_.kind == workloads::Probe::Kind::kTcpSocket) {
    Finish(true);
    return;
  }
  stream_->SetHandler(this);
  stream_->Write("GET " + probe_.path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port_) +
                 "\r\nUser-Agent: podless-probe/1.0\r\nAccept: */*\r\nConnection: close\r\n\r\n");
}

void ReadinessProbe::OnData(std::string_view bytes) {
  response_.append(bytes);
  CheckResponse(/*complete=*/false);
}

void ReadinessProbe::OnClosed(bool) {
  stream_ = nullptr;  // the stream is gone
  if (in_flight_) CheckResponse(/*complete=*/true);
}

void ReadinessProbe::CheckResponse(bool complete) {
  if (!in_flight_) return;
  if (response_.find("\r\n") == std::string::npos && !complete &&
      response_.size() < kMaxStatusLine) {
    return;
  }
  // "HTTP/1.1 200 OK": the status code is the second token.
  bool success = false;
  if (response_.rfind("HTTP/1.", 0) == 0 && response_.size() >= 12) {
    int code = std::atoi(response_.c_str() + 9);
    success = code >= 200 && code < 400;
  }
  Finish(success);
}

void ReadinessProbe::Finish(bool success) {
  in_flight_ = false;
  timeout_timer_->Stop();
  if (stream_ != nullptr) std::exchange(stream_, nullptr)->Close();
  // Destroying the connector cancels a connect still pending. It may be the
  // caller (its callback): freed on the next loop turn.
  if (connector_ != nullptr) dispatcher_.DeferredDelete(std::move(connector_));
  if (success) {
    failures_ = 0;
    if (++successes_ >= std::max<uint32_t>(1, probe_.success_threshold) && !ready_) {
      ready_ = true;
      on_change_(true);
    }
  } else {
    successes_ = 0;
    if (++failures_ >= std::max<uint32_t>(1, probe_.failure_threshold) && ready_) {
      ready_ = false;
      on_change_(false);
    }
  }
}

}  // namespace podless::runtime
