// SpiffeWorkloadApi: the SPIFFE Workload API (api/spiffe/workload.proto) on
// its own Unix socket, for the processes of exec workloads
// (SPIFFE_ENDPOINT_SOCKET). Any stock SPIFFE library can fetch its SVID here.
//
// Attestation: the caller's pid comes from the connection (SO_PEERCRED). It
// must be a supervised replica's process or one of its descendants — the
// supervisor walks the /proc parent chain and compares start times, so a
// reused pid never passes. The caller then receives exactly that replica's
// X.509-SVID (chain DER, PKCS#8 key DER) and trust bundle, and a new message
// whenever the SVID is re-issued (at half of its lifetime). Any other caller
// gets PERMISSION_DENIED. As the specification asks, every call must carry
// the metadata `workload.spiffe.io: true` (INVALID_ARGUMENT otherwise), which
// keeps a browser-style SSRF from reaching the endpoint.
//
// Served: FetchX509SVID, FetchX509Bundles. The JWT methods are not
// registered, so they answer UNIMPLEMENTED.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "api/grpc_server.h"
#include "runtime/process/supervisor.h"
#include "runtime/state/agent.h"

namespace podless::api {

class SpiffeWorkloadApi {
 public:
  // `options` tunes the gRPC server (accept-error counting and logging).
  SpiffeWorkloadApi(uv_loop_t* loop, runtime::Agent& agent, const runtime::Supervisor& supervisor,
                    GrpcServerOptions options = {});
  ~SpiffeWorkloadApi();
  SpiffeWorkloadApi(const SpiffeWorkloadApi&) = delete;
  SpiffeWorkloadApi& operator=(const SpiffeWorkloadApi&) = delete;

  Status Listen(const std::string& socket_path);
  // Ends every open stream and removes the socket. Idempotent.
  void Close();

  size_t open_streams() const { return streams_.size(); }

 private:
  struct SvidStream;

  // The replica the caller's process belongs to, or PERMISSION_DENIED /
  // INVALID_ARGUMENT naming why not.
  Result<runtime::ReplicaRef> Attest(const CallContext& context) const;
  // Sends the replica's current SVID if it differs from the last one sent,
  // then re-arms the stream's timer for the next re-issue.
  void Refresh(SvidStream& stream);

  uv_loop_t* loop_;
  runtime::Agent& agent_;
  runtime::CertificateManager& certificates_;  // the agent's
  const runtime::Supervisor& supervisor_;
  GrpcServer server_;
  std::map<uint64_t, std::unique_ptr<SvidStream>> streams_;
  uint64_t next_stream_ = 1;
};

// The metadata key and value every Workload API call must carry.
inline constexpr char kWorkloadApiHeader[] = "workload.spiffe.io";

}  // namespace podless::api
