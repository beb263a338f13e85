#include "proxy/tcp_listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/base/log.h"
#include "workloads/ipam.h"

namespace podless::proxy {

Result<TcpListenerPtr> TcpListener::Create(Dispatcher& dispatcher, Options options,
                                           AcceptCallback on_accept) {
  TcpListenerPtr listener(new TcpListener(dispatcher, std::move(options), std::move(on_accept)));
  TcpListener& self = *listener;
  std::string where = self.options_.listen.bind + ":" + std::to_string(self.options_.listen.port);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(self.options_.listen.port);
  if (::inet_pton(AF_INET, self.options_.listen.bind.c_str(), &addr.sin_addr) != 1) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "bind address \"" + self.options_.listen.bind + "\" is not IPv4");
  }
  Result<int> fd = ListenTcpSocket(reinterpret_cast<const sockaddr*>(&addr),
                                   self.options_.listen.backlog, self.options_.listen.sharing);
  if (!fd.ok()) {
    return MakeError(fd.error().code, "cannot listen on " + where + ": " + fd.error().message);
  }
  if (Status s = self.Watch(*fd); !s) {
    return MakeError(s.error().code, "cannot listen on " + where + ": " + s.error().message);
  }
  return listener;
}

Result<TcpListenerPtr> TcpListener::Adopt(Dispatcher& dispatcher, int listen_fd, Options options,
                                          AcceptCallback on_accept) {
  TcpListenerPtr listener(new TcpListener(dispatcher, std::move(options), std::move(on_accept)));
  int fd = ::fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return MakeError(ErrorCode::kUnavailable, std::string("dup: ") + strerror(errno));
  if (Status s = listener->Watch(fd); !s) return s.error();
  return listener;
}

Status TcpListener::Watch(int fd) {
  sockaddr_in bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.sin_port);
  SocketAcceptor::Options accept;
  accept.name = options_.name;
  accept.address = address();
  accept.log = options_.log;
  accept.reserve_descriptors = ProxyDescriptorReserve();
  if (ProxyMetrics* metrics = options_.metrics; metrics != nullptr) {
    accept.count_error = [metrics, name = options_.name](std::string_view error) {
      metrics->AcceptError(name, error).Inc();
    };
  }
  auto acceptor = SocketAcceptor::Adopt(dispatcher_.loop(), fd, std::move(accept), [this](int fd) {
    TcpStream* stream = TcpStream::Adopt(dispatcher_, fd);
    if (stream == nullptr) return;
    if (LogEnabled(LogLevel::kDebug)) {
      Log(LogLevel::kDebug, "proxy",
          "conn=" + std::to_string(stream->id()) + " accepted on " + options_.name + " " +
              address() + " from " + workloads::FormatIpv4(stream->PeerAddress()) + " to " +
              workloads::FormatIpv4(stream->LocalAddress()));
    }
    on_accept_(stream);
  });
  if (!acceptor.ok()) return acceptor.error();
  acceptor_ = std::move(acceptor).value();
  return {};
}

TcpListener::~TcpListener() { Close(); }

std::string TcpListener::address() const {
  return options_.listen.bind + ":" + std::to_string(port_);
}

void TcpListener::Close() {
  if (acceptor_) acceptor_->Close();
}

}  // namespace podless::proxy
