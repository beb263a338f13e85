// The value grammar of AuthorizationPolicy fields, shared by validation
// (workloads/validation.cc) and enforcement (proxy/authorization.cc):
//
// - Address blocks (`ipBlocks`, `source.ip` conditions): a CIDR
//   ("10.0.0.0/8") or a single address ("10.1.2.3", a /32). IPv6 blocks are
//   accepted, as Istio accepts them, but podless addresses are IPv4, so an
//   IPv6 block matches no connection.
// - `when` condition keys, L4 (what ztunnel enforces) or HTTP.
// - Which parts of a rule are HTTP attributes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "workloads/model.h"

namespace podless::workloads {

struct IpBlock {
  bool ipv6 = false;
  uint32_t address = 0;  // IPv4, host byte order, host bits cleared
  uint8_t prefix = 0;    // 0..32 (IPv4) or 0..128 (IPv6)

  // Whether the IPv4 address `ip` (host byte order) lies in the block.
  bool Contains(uint32_t ip) const;
};

// Parses a block; on failure returns nothing and sets `*why` (e.g. "prefix
// length 33 is more than 32"). Host bits below the prefix ("10.1.2.3/8")
// are cleared, as Istio reads such a block (10.0.0.0/8).
std::optional<IpBlock> ParseIpBlock(std::string_view text, std::string* why);

enum class ConditionKey {
  kUnknown,
  // L4, enforced on every port (ztunnel's set).
  kSourceIp,
  kSourceNamespace,
  kSourcePrincipal,
  kDestinationIp,
  kDestinationPort,
  // HTTP attributes.
  kRequestHeader,  // request.headers[<name>]
  kRemoteIp,
  kRequestAuth,  // request.auth.{principal,audiences,presenter,claims[...]}
  kConnectionSni,
};

// The kind of a `when` key; for request.headers[<name>] also the header name.
ConditionKey ClassifyConditionKey(std::string_view key, std::string* header_name = nullptr);
bool IsHttpConditionKey(ConditionKey key);

// The HTTP attributes a rule uses, in Istio's spelling and in the order the
// manifest declares them ("methods", "paths", "request.headers[x-user]"),
// each once; empty for an L4-only rule.
std::vector<std::string> HttpAttributesOf(const PolicyRule& rule);
// Whether HttpAttributesOf(rule) is not empty, without building it.
bool HasHttpAttributes(const PolicyRule& rule);

}  // namespace podless::workloads
