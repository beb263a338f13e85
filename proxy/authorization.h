// Authorization at the destination, with Istio's AuthorizationPolicy
// semantics (https://istio.io/latest/docs/reference/config/security/authorization-policy/):
//
//  1. A policy applies to a connection when it is in the destination
//     workload's namespace, or in the root namespace (`--root-namespace`,
//     default istio-system, as Istio's mesh-wide policies), and its selector
//     matches the destination's labels (an empty selector selects the whole
//     namespace, or for a root-namespace policy every workload of the node).
//  2. If any applicable DENY policy has a matching rule, the connection is
//     denied.
//  3. Otherwise, if any ALLOW policy applies, a connection is allowed only if
//     one of their rules matches; if none applies, it is allowed.
//
// An ALLOW policy without rules allows nothing (but still makes ALLOW
// required); a DENY policy without rules denies nothing.
//
// L4 and HTTP attributes. L4 attributes are known when a connection opens:
// principals, namespaces, serviceAccounts, ipBlocks, ports, and the `when`
// keys source.ip, source.namespace, source.principal, destination.ip,
// destination.port (ztunnel's set). HTTP attributes are those of a request:
// hosts, methods, paths, remoteIpBlocks, requestPrincipals and the other
// `when` keys (request.headers[...], remote.ip, request.auth.*,
// connection.sni). Where they apply depends on the port's protocol:
//
//  - TCP port (the bytes are relayed as they are): exactly as ztunnel. An
//    ALLOW rule that uses any HTTP attribute matches nothing; a DENY rule is
//    enforced with its L4 part only (its HTTP parts are ignored, so it denies
//    more than written). `apply` warns of such rules (runtime/state/agent.cc).
//  - HTTP port (`protocol: HTTP`): beyond ztunnel, HTTP attributes are
//    enforced per request, as a waypoint would. When the connection opens,
//    what its L4 attributes already decide is decided (a denied connection is
//    refused); when the outcome depends on HTTP attributes the connection is
//    admitted with `per_request` set, and every request head on it is
//    authorized again with `http` set (Inbound re-reads the policies then).
//    A denied request is answered `403 Forbidden` with the body
//    `RBAC: access denied` (Envoy's answer) and the connection is closed.
//
// Request attribute values: `methods` match the method exactly (or with a
// '*' prefix/suffix); `paths` match the target's path with the query and
// fragment removed and dot-segments resolved (RFC 3986 section 5.2.4, Istio's
// default BASE normalization), which is also what a backend resolves;
// `hosts` match the Host header case-insensitively, with or without its
// ":port". remoteIpBlocks and remote.ip match the connection's source address
// (no X-Forwarded-For is trusted). podless validates no JWTs (Istio's
// RequestAuthentication), so no request has a request principal or claims:
// `requestPrincipals` and request.auth.* `values` match nothing, their not-
// forms match every request. connection.sni is empty (the stream to the
// workload carries no TLS of its own).
//
// Matching values: principals and namespaces support exact values, "*",
// "prefix*" and "*suffix". "*" means "any value present": a plaintext
// connection (no principal, no source namespace) matches no principal or
// namespace pattern, so `principals: ["*"]` requires mTLS, and
// `notPrincipals: ["*"]` only admits plaintext. Principals compare without
// the "spiffe://" scheme, as Istio writes them ("cluster.local/ns/x/sa/y");
// either spelling works on either side. serviceAccounts ("ns/sa", or "sa" in
// the policy's namespace) compare exactly with the principal's ns and sa.
// Source addresses: the peer of a plaintext connection, the calling replica
// for an in-memory short-circuit, and for HBONE the address the mTLS
// connection came from (the calling node: podless dials from the node's
// address, not the workload's).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "proxy/base/http1_parser.h"
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
  uint32_t source_ip = 0;  // host byte order; 0 when unknown (matches no block)
  uint32_t dest_ip = 0;    // host byte order
  // Policies in this namespace apply to every namespace; empty: none does.
  std::string_view root_namespace;
  // The destination port is HTTP: HTTP attributes are enforced (see above).
  bool http_port = false;
  // The request being authorized; null when a connection opens.
  const Http1Request* http = nullptr;
};

struct AuthzDecision {
  bool allowed = false;
  // Admitted for now: the decision depends on HTTP attributes, so each
  // request must be authorized (AuthzRequest::http). Only on HTTP ports
  // when `http` is null; `allowed` is true then.
  bool per_request = false;
  std::string policy;  // "ns/name" of the policy that decided; empty for the default
  std::string reason;  // for logs and the denial metric, e.g. "denied by DENY policy shop/block"
};

// What a denied request is answered, as Envoy's RBAC filter does.
inline constexpr std::string_view kRbacDeniedBody = "RBAC: access denied";
// The complete response ("HTTP/1.1 403 Forbidden", Connection: close).
std::string RbacDeniedResponse();

// Evaluates the policies (any order; those not applying to the destination
// are skipped, so passing every policy of the namespace is fine).
AuthzDecision Authorize(const AuthzRequest& request,
                        std::span<const workloads::AuthorizationPolicy* const> policies_in_scope);

// True when `policy` applies to a destination with these namespace and
// labels (`root_namespace` as in AuthzRequest).
bool PolicyApplies(const workloads::AuthorizationPolicy& policy, std::string_view dest_namespace,
                   const workloads::Labels& dest_labels, std::string_view root_namespace = {});

// Istio value matching: exact, "*" (any non-empty value), "prefix*", "*suffix".
bool MatchesPattern(std::string_view pattern, std::string_view value);

// MatchesPattern after removing a "spiffe://" scheme from both sides.
bool PrincipalMatches(std::string_view pattern, std::string_view principal);

// The <ns> of ".../ns/<ns>/sa/<sa>" (a SPIFFE ID with or without scheme);
// empty when the principal has no such segment.
std::string_view PrincipalNamespace(std::string_view principal);
// The <sa> of the same; empty when there is none.
std::string_view PrincipalServiceAccount(std::string_view principal);

// The path a `paths` pattern is matched against: the request target's path
// (origin or absolute form) without query or fragment, dot-segments removed.
std::string NormalizedRequestPath(std::string_view target);

}  // namespace podless::proxy
