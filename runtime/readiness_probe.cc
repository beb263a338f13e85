#include "runtime/readiness_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "proxy/netns.h"

namespace podless::runtime {

namespace {

// A connect or write request outlives the probe if the probe is destroyed
// while it is pending: it is freed in its own callback, which finds the
// probe through the TCP handle's data (cleared when the handle closes).
struct ConnectRequest {
  uv_connect_t request{};
};

struct WriteRequest {
  uv_write_t request{};
  std::string bytes;
};

}  // namespace

ReadinessProbe::ReadinessProbe(uv_loop_t* loop, workloads::Probe probe, uint16_t port,
                               Callback on_change, int netns_fd)
    : loop_(loop),
      probe_(std::move(probe)),
      port_(port),
      on_change_(std::move(on_change)),
      netns_fd_(netns_fd) {
  uv_timer_init(loop_, period_timer_.get());
  uv_timer_init(loop_, timeout_timer_.get());
  period_timer_->data = this;
  timeout_timer_->data = this;
  uint64_t period_ms = std::max<uint64_t>(1, probe_.period_seconds) * 1000;
  uv_timer_start(
      period_timer_.get(),
      [](uv_timer_t* timer) {
        auto* self = static_cast<ReadinessProbe*>(timer->data);
        if (self != nullptr && !self->in_flight_) self->RunCheck();
      },
      uint64_t{probe_.initial_delay_seconds} * 1000, period_ms);
}

ReadinessProbe::~ReadinessProbe() = default;

void ReadinessProbe::RunCheck() {
  in_flight_ = true;
  response_.clear();
  connection_ = proxy::TcpHandle();
  uv_tcp_init(loop_, connection_.get());
  connection_->data = this;
  if (netns_fd_ >= 0) {
    Result<int> fd = proxy::SocketInNamespace(netns_fd_, AF_INET, SOCK_STREAM);
    if (!fd.ok() || uv_tcp_open(connection_.get(), *fd) != 0) {
      if (fd.ok()) ::close(*fd);
      Finish(false);
      return;
    }
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port_);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto* request = new ConnectRequest;
  int rc = uv_tcp_connect(&request->request, connection_.get(),
                          reinterpret_cast<const sockaddr*>(&address), &ReadinessProbe::OnConnect);
  if (rc != 0) {
    delete request;
    Finish(false);
    return;
  }
  uv_timer_start(
      timeout_timer_.get(),
      [](uv_timer_t* timer) {
        auto* self = static_cast<ReadinessProbe*>(timer->data);
        if (self != nullptr && self->in_flight_) self->Finish(false);
      },
      std::max<uint64_t>(1, probe_.timeout_seconds) * 1000, 0);
}

void ReadinessProbe::OnConnect(uv_connect_t* raw, int status) {
  std::unique_ptr<ConnectRequest> request(reinterpret_cast<ConnectRequest*>(raw));
  auto* self = static_cast<ReadinessProbe*>(raw->handle->data);
  if (self == nullptr) return;  // the probe or this attempt is gone
  if (status != 0) {
    self->Finish(false);
    return;
  }
  if (self->probe_.kind == workloads::Probe::Kind::kTcpSocket) {
    self->Finish(true);
    return;
  }
  auto* write = new WriteRequest;
  write->bytes = "GET " + self->probe_.path +
                 " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(self->port_) +
                 "\r\nUser-Agent: podless-probe/1.0\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  uv_buf_t buf = uv_buf_init(write->bytes.data(), static_cast<unsigned>(write->bytes.size()));
  int rc = uv_write(&write->request, raw->handle, &buf, 1,
                    [](uv_write_t* w, int) { delete reinterpret_cast<WriteRequest*>(w); });
  if (rc != 0) {
    delete write;
    self->Finish(false);
    return;
  }
  uv_read_start(
      raw->handle,
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        static char buffer[1024];  // the loop is single-threaded; reads consume it at once
        *buf = uv_buf_init(buffer, sizeof(buffer));
      },
      &ReadinessProbe::OnRead);
}

void ReadinessProbe::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<ReadinessProbe*>(stream->data);
  if (self == nullptr || !self->in_flight_) return;
  if (nread > 0) self->response_.append(buf->base, static_cast<size_t>(nread));
  size_t line_end = self->response_.find("\r\n");
  if (line_end == std::string::npos && nread >= 0 && self->response_.size() < 4096) return;
  // "HTTP/1.1 200 OK": the status code is the second token.
  bool success = false;
  if (self->response_.rfind("HTTP/1.", 0) == 0 && self->response_.size() >= 12) {
    int code = std::atoi(self->response_.c_str() + 9);
    success = code >= 200 && code < 400;
  }
  self->Finish(success);
}

void ReadinessProbe::Finish(bool success) {
  in_flight_ = false;
  uv_timer_stop(timeout_timer_.get());
  connection_.Close();
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
