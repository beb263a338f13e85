// L4 authorization at the destination, with Istio's AuthorizationPolicy
// semantics (https://istio.io/latest/docs/reference/config/security/authorization-policy/):
//
//  1. A policy applies to a connection when it is in the destination
//     workload's namespace and its selector matches the destination's labels
//     (an empty selector selects the whole namespace). Unlike Istio there is
//     no mesh-wide root namespace (istio-system): podless has no control
//     plane namespace, so only same-namespace policies apply.
//  2. If any applicable DENY policy has a matching rule, the connection is
//     denied.
//  3. Otherwise, if any ALLOW policy applies, a connection is allowed only if
//     one of their rules matches; if none applies, it is allowed.
//
// An ALLOW policy without rules allows nothing (but still makes ALLOW
// required); a DENY policy without rules denies nothing.
//
// Matching values: principals and namespaces support exact values, "*",
// "prefix*" and "*suffix". "*" means "any value present": a plaintext
// connection (no principal, no source namespace) matches no principal or
// namespace pattern, so `principals: ["*"]` requires mTLS, and
// `notPrincipals: ["*"]` only admits plaintext. Principals compare without
// the "spiffe://" scheme, as Istio writes them ("cluster.local/ns/x/sa/y");
// either spelling works on either side.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "workloads/model.h"

namespace podless::proxy {

struct AuthzRequest {
  // The peer's SPIFFE ID as verified by mTLS; empty for plaintext.
  std::string_view source_principal;
  // The namespace of the peer's SPIFFE ID (see PrincipalNamespace); empty
  // for plaintext.
  std::string_view source_namespace;
  std::string_view dest_namespace;
  const workloads::Labels& dest_labels;
  uint16_t dest_port = 0;
};

struct AuthzDecision {
  bool allowed = false;
  std::string policy;  // "ns/name" of the policy that decided; empty for the default
  std::string reason;  // for logs and the denial metric, e.g. "denied by DENY policy shop/block"
};

// Evaluates the policies (any order; those not applying to the destination
// are skipped, so passing every policy of the namespace is fine).
AuthzDecision Authorize(const AuthzRequest& request,
                        std::span<const workloads::AuthorizationPolicy* const> policies_in_scope);

// True when `policy` applies to a destination with these namespace and labels.
bool PolicyApplies(const workloads::AuthorizationPolicy& policy, std::string_view dest_namespace,
                   const workloads::Labels& dest_labels);

// Istio value matching: exact, "*" (any non-empty value), "prefix*", "*suffix".
bool MatchesPattern(std::string_view pattern, std::string_view value);

// MatchesPattern after removing a "spiffe://" scheme from both sides.
bool PrincipalMatches(std::string_view pattern, std::string_view principal);

// The <ns> of ".../ns/<ns>/sa/<sa>" (a SPIFFE ID with or without scheme);
// empty when the principal has no such segment.
std::string_view PrincipalNamespace(std::string_view principal);

}  // namespace podless::proxy
