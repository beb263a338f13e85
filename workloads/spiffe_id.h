// SpiffeId: the identity a workload proves with its X.509-SVID, as defined by
// the SPIFFE ID specification (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md).
#pragma once

#include <string>
#include <string_view>

#include "workloads/result.h"

namespace podless::workloads {

struct SpiffeId {
  std::string trust_domain;
  // Empty (the trust domain's own ID, carried by CA certificates) or starting with '/'.
  std::string path;

  // "spiffe://<trust_domain><path>".
  std::string ToString() const;

  // Strict parse per the SPIFFE ID spec: scheme "spiffe://", trust domain of
  // [a-z0-9.-_], path segments of [A-Za-z0-9.-_] with no empty, "." or ".."
  // segment, no query, fragment, port, userinfo or percent-encoding, at most
  // 2048 bytes. The error names what is wrong and where; the input is untrusted
  // (it comes from a peer's certificate), so it is escaped in the message.
  static Result<SpiffeId> Parse(std::string_view uri);

  // spiffe://<td>/ns/<ns>/sa/<sa>. The caller has validated the namespace and
  // service account names (DNS-1123 labels are valid path segments).
  static SpiffeId ForServiceAccount(std::string_view td, std::string_view ns, std::string_view sa);

  bool operator==(const SpiffeId&) const = default;
};

// A trust domain as it appears in a SPIFFE ID: 1..255 bytes of [a-z0-9.-_].
Status ValidateTrustDomain(std::string_view trust_domain);

// Renders untrusted bytes for an error message: printable ASCII as is, the
// rest as \xNN, cut at max_bytes of input.
std::string EscapeForMessage(std::string_view bytes, size_t max_bytes = 256);

}  // namespace podless::workloads
