// nghttp2's header pair made from two views, for every HTTP/2 integration of
// the agent (HBONE, the gRPC server and client, the etcd client). nghttp2
// copies names and values unless told otherwise, so the views need only live
// until the submit call returns.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string_view>

namespace podless::proxy {

inline nghttp2_nv MakeNv(std::string_view name, std::string_view value) {
  return nghttp2_nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
                    const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())),
                    name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace podless::proxy
