// The sockaddr_un of an API socket path, shared by the gRPC server and
// client so both refuse the same paths with the same words.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <string>

#include "workloads/result.h"

namespace podless::api {

// INVALID_ARGUMENT when the path is empty or too long for sun_path (Linux:
// 107 bytes), which would otherwise be silently cut.
inline Result<sockaddr_un> UnixSocketAddress(const std::string& socket_path) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "API socket path \"" + socket_path + "\" is " +
                         std::to_string(socket_path.size()) +
                         " bytes long; a Unix socket path must be 1 to " +
                         std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  return addr;
}

}  // namespace podless::api
