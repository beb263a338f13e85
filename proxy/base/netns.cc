#include "proxy/base/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "proxy/base/tcp_stream.h"

namespace podless::proxy {

namespace {

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// The namespace every thread of the agent lives in. Read once, by the first
// caller, which is in it: a thread is outside it only inside InNamespace.
int HostNamespace() {
  static const int fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  return fd;
}

// Runs `body` with the calling thread in `netns_fd` (-1: a new namespace),
// then returns it to the host namespace. A thread that cannot return would
// create every later socket in the wrong namespace: that aborts.
template <typename Body>
auto InNamespace(int netns_fd, Body body) -> decltype(body()) {
  if (HostNamespace() < 0) {
    return MakeError(ErrorCode::kUnavailable, Errno("open /proc/thread-self/ns/net"));
  }
  int rc = netns_fd < 0 ? ::unshare(CLONE_NEWNET) : ::setns(netns_fd, CLONE_NEWNET);
  if (rc != 0) {
    return MakeError(ErrorCode::kPermissionDenied,
                     Errno(netns_fd < 0 ? "unshare(CLONE_NEWNET)" : "setns(CLONE_NEWNET)"));
  }
  auto result = body();
  if (::setns(HostNamespace(), CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "podless: cannot return to the host network namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
  return result;
}

}  // namespace

Result<UniqueFd> CreateNetworkNamespace() {
  return InNamespace(-1, []() -> Result<UniqueFd> {
    UniqueFd ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!ns) return MakeError(ErrorCode::kUnavailable, Errno("open the new network namespace"));
    UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock) return MakeError(ErrorCode::kUnavailable, Errno("socket"));
    ifreq request{};
    std::snprintf(request.ifr_name, sizeof(request.ifr_name), "lo");
    if (::ioctl(sock.get(), SIOCGIFFLAGS, &request) != 0) {
      return MakeError(ErrorCode::kUnavailable, Errno("SIOCGIFFLAGS lo"));
    }
    request.ifr_flags |= IFF_UP;
    if (::ioctl(sock.get(), SIOCSIFFLAGS, &request) != 0) {
      return MakeError(ErrorCode::kPermissionDenied, Errno("bring lo up"));
    }
    return ns;
  });
}

Result<int> SocketInNamespace(int netns_fd, int domain, int type) {
  return InNamespace(netns_fd, [&]() -> Result<int> {
    int fd = ::socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return MakeError(ErrorCode::kUnavailable, Errno("socket"));
    return fd;
  });
}

Result<UniqueFd> ListenInNamespace(int netns_fd, uint16_t port, int backlog) {
  auto fd = SocketInNamespace(netns_fd, AF_INET, SOCK_STREAM);
  if (!fd) return fd.error();
  UniqueFd sock(*fd);
  int one = 1;
  ::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address = MakeSockaddr(0x7f000001, port);
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return MakeError(ErrorCode::kUnavailable,
                     Errno(("bind 127.0.0.1:" + std::to_string(port)).c_str()));
  }
  if (::listen(sock.get(), backlog) != 0)
    return MakeError(ErrorCode::kUnavailable, Errno("listen"));
  return sock;
}

}  // namespace podless::proxy
