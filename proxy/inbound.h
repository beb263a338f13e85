// Inbound: what happens at the destination once a connection names a
// hosted replica and port, whatever carried it (an HBONE stream, a
// plaintext connection, an in-memory short-circuit from a local caller):
// the replica and port are checked, the AuthorizationPolicies evaluated
// (Istio semantics: DENY first, then ALLOW if any selects it), and the
// replica's app is started on the stream, counted as reporter=destination.
// On an HTTP port whose policies use HTTP attributes the app authorizes each
// request as well (AppContext::authorize_request, proxy/authorization.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "proxy/apps.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/stream.h"
#include "proxy/connection_metrics.h"
#include "proxy/directory.h"
#include "proxy/tracked_connection.h"

namespace podless::proxy {

// Who is calling, as far as the transport proved it.
struct InboundSource {
  std::string principal;  // verified SPIFFE ID; empty for plaintext
  std::string workload;   // known only for in-memory short-circuits
  // The source address (host byte order) for ipBlocks: the plaintext peer,
  // the calling replica of a short-circuit, the HBONE connection's peer.
  uint32_t address = 0;
  bool mutual_tls = false;
  std::string destination_service;  // how the caller named the destination, if known
  // A plaintext workload port: a connection spliced to a forward target or
  // an exec process is reset after the plaintext idle timeout.
  bool plaintext = false;
};

struct InboundDecision {
  int status = 0;  // 200 admitted; 404 unknown address or port; 403 denied
  std::string reason;
  const LocalReplica* replica = nullptr;  // valid for this loop turn only
  const workloads::PortSpec* port = nullptr;
  // Admitted on an HTTP port whose policies decide per request: Serve has
  // the app authorize every request head (see authorization.h).
  bool per_request = false;
};

// What every admitted connection gets, whichever listener took it. 0 turns
// one off.
struct InboundOptions {
  // In-proxy HTTP apps: from accept (or the last response) to a complete
  // request; then the connection is reset (AppContext::request_timeout_ms).
  uint64_t app_request_timeout_ms = kDefaultAppRequestTimeoutMs;
  // Plaintext workload ports: a connection spliced to a forward target or an
  // exec process with no byte either way this long is reset (plaintext_idle).
  uint64_t plaintext_idle_timeout_ms = kDefaultPlaintextIdleTimeoutMs;
};

class Inbound {
 public:
  Inbound(Dispatcher& dispatcher, Directory& directory, ProxyMetrics& metrics,
          ConnectionTracker& tracker, InboundOptions options = {})
      : dispatcher_(dispatcher),
        directory_(directory),
        metrics_(metrics),
        tracker_(tracker),
        options_(options) {}

  // Checks the destination and authorizes the source; a denial is counted.
  InboundDecision Admit(uint32_t address, uint16_t port, const InboundSource& source);

  // Serves an admitted connection: tracks it (CloseFor(replica address)),
  // counts it, and starts the app on it. `slot` (a per-peer limit's count)
  // is held until the connection ends.
  void Serve(const InboundDecision& decision, const InboundSource& source, Stream* stream,
             CountSlot slot = {});

 private:
  Dispatcher& dispatcher_;
  Directory& directory_;
  ProxyMetrics& metrics_;
  ConnectionTracker& tracker_;
  std::function<bool(const Http1Request&, bool)> RequestAuthorizer(const InboundDecision& decision,
                                                                   const InboundSource& source);

  InboundOptions options_;
};

}  // namespace podless::proxy
