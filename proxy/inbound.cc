#include "proxy/inbound.h"

#include <utility>

#include "proxy/authorization.h"
#include "proxy/base/tcp_stream.h"

namespace podless::proxy {

InboundDecision Inbound::Admit(uint32_t address, uint16_t port, const InboundSource& source) {
  InboundDecision decision;
  const LocalReplica* replica = directory_.FindLocalReplica(address);
  if (replica == nullptr) {
    decision.status = 404;
    decision.reason = "no workload is hosted at " + FormatAddressPort(address, port);
    return decision;
  }
  for (const auto& declared : replica->spec->ports) {
    if (declared.port == port) decision.port = &declared;
  }
  if (decision.port == nullptr) {
    decision.status = 404;
    decision.reason = "workload " + replica->ns + "/" + replica->workload + " declares no port " +
                      std::to_string(port);
    return decision;
  }
  if (source.plaintext && !directory_.PlaintextAllowed(*replica, port)) {
    metrics_.AuthzDenied(replica->workload, replica->ns);
    decision.replica = replica;
    decision.status = 403;
    decision.reason = "workload " + replica->ns + "/" + replica->workload + " port " +
                      std::to_string(port) +
                      " requires mutual TLS (PeerAuthentication STRICT): plaintext refused";
    return decision;
  }
  auto policies = directory_.PoliciesFor(*replica);
  AuthzRequest request{source.principal,
                       PrincipalNamespace(source.principal),
                       replica->ns,
                       *replica->labels,
                       port,
                       source.address,
                       address,
                       directory_.RootNamespace(),
                       decision.port->protocol == workloads::Protocol::kHTTP};
  AuthzDecision verdict = Authorize(request, policies);
  decision.replica = replica;
  decision.per_request = verdict.per_request;
  if (!verdict.allowed) {
    metrics_.AuthzDenied(replica->workload, replica->ns);
    decision.status = 403;
    decision.reason = verdict.reason.empty() ? "denied by authorization policy" : verdict.reason;
    return decision;
  }
  decision.status = 200;
  return decision;
}

// Re-reads the replica and its policies for every request: they may have
// changed since the connection opened (a replica deleted denies).
std::function<bool(const Http1Request&, bool)> Inbound::RequestAuthorizer(
    const InboundDecision& decision, const InboundSource& source) {
  return [directory = &directory_, metrics = &metrics_, address = decision.replica->address,
          port = decision.port->port, principal = source.principal,
          source_ip = source.address](const Http1Request& request, bool opaque_after) {
    const LocalReplica* replica = directory->FindLocalReplica(address);
    if (replica == nullptr) return false;
    auto policies = directory->PoliciesFor(*replica);
    AuthzRequest authz{
        principal, PrincipalNamespace(principal), replica->ns, *replica->labels, port, source_ip,
        address,   directory->RootNamespace(),    true,        &request};
    bool allowed = Authorize(authz, policies).allowed;
    if (allowed && opaque_after) {
      // What follows an upgrade is no HTTP/1.1 the proxy can check: the
      // connection must be admitted without HTTP attributes (as on TCP).
      authz.http_port = false;
      authz.http = nullptr;
      allowed = Authorize(authz, policies).allowed;
    }
    if (!allowed) metrics->AuthzDenied(replica->workload, replica->ns);
    return allowed;
  };
}

void Inbound::Serve(const InboundDecision& decision, const InboundSource& source, Stream* stream,
                    CountSlot slot) {
  const LocalReplica& replica = *decision.replica;
  ConnectionLabels labels;
  labels.source_reporter = false;
  labels.source_workload = source.workload;
  labels.source_principal = source.principal;
  labels.destination_workload = replica.workload;
  labels.destination_principal = replica.spiffe_id;
  labels.destination_service = source.destination_service;
  labels.mutual_tls = source.mutual_tls;
  Stream* tracked =
      tracker_.Track(stream, replica.address, 0, metrics_.Series(labels), std::move(slot));

  AppContext context;
  context.dispatcher = &dispatcher_;
  context.replica = replica.name;
  context.workload = replica.workload;
  context.ns = replica.ns;
  context.spiffe_id = replica.spiffe_id;
  context.port = *decision.port;
  context.peer_identity = source.principal;
  context.app = replica.spec->app;
  context.request_timeout_ms = options_.app_request_timeout_ms;
  if (source.plaintext) {
    context.idle_timeout_ms = options_.plaintext_idle_timeout_ms;
    context.idle_timeouts = &metrics_.PeerTimeout(ProxyMetrics::kTimeoutPlaintextIdle);
  }
  if (decision.per_request) context.authorize_request = RequestAuthorizer(decision, source);
  if (std::holds_alternative<workloads::ExecApp>(context.app)) {
    auto target = directory_.ExecTarget(replica, decision.port->port);
    if (target.ok()) {
      context.exec_address = target->address;
      context.exec_port = target->port;
      context.exec_netns_fd = target->netns_fd;
    }
  }
  StartApp(std::move(context), tracked);
}

}  // namespace podless::proxy
