// Network namespaces of sandboxed process replicas (runtime/process/sandbox.h).
//
// A process replica lives in a network namespace of its own that holds
// nothing but loopback: its app listens there (any port, the same port in
// every replica), and no other process on the node can reach it. The agent
// keeps the namespace open by a descriptor and makes the sockets it needs
// inside it: the connection to the app (TcpConnector) and the outbound
// entry's listener at 127.0.0.1:<outbound port>. A thread's network
// namespace decides where the sockets it creates live; each call here
// switches the calling thread into the namespace for the socket() call
// only and back at once (setns, CAP_SYS_ADMIN: a root agent).
#pragma once

#include <cstdint>

#include "proxy/base/unique_fd.h"
#include "workloads/result.h"

namespace podless::proxy {

// A new network namespace with its loopback interface up.
Result<UniqueFd> CreateNetworkNamespace();

// socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC) inside `netns_fd`.
Result<int> SocketInNamespace(int netns_fd, int domain, int type);

// A TCP socket bound to 127.0.0.1:`port` inside `netns_fd` and listening.
Result<UniqueFd> ListenInNamespace(int netns_fd, uint16_t port, int backlog = 128);

}  // namespace podless::proxy
