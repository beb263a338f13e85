// Percent-decoding (RFC 3986 section 2.1) shared by the gRPC status message
// (grpc-message) and the Kubernetes API's paths and query strings.
#pragma once

#include <string>
#include <string_view>

namespace podless::proxy {

// Decodes %XX sequences; a malformed sequence is kept as is (the gRPC spec
// asks decoders to be lenient rather than drop the message). With
// `plus_is_space` (an application/x-www-form-urlencoded query string), '+'
// is a space; elsewhere, as in a path, it is itself.
inline std::string PercentDecode(std::string_view text, bool plus_is_space = false) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (plus_is_space && text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 &&
               hex(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

}  // namespace podless::proxy
