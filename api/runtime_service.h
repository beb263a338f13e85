// podless.v1.Runtime: the gRPC service the agent serves on its API socket.
// Each handler validates the request, calls the Agent on the loop thread and
// maps the outcome to a response or a gRPC status. Errors carry the same
// text the CLI prints ("file:line:col: field: message" for manifests).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "api/grpc_server.h"
#include "podless/v1/runtime.pb.h"
#include "runtime/cluster/cluster.h"
#include "runtime/process/supervisor.h"
#include "runtime/state/agent.h"

namespace podless::v1 {
class LogsRequest;
class LogChunk;
}  // namespace podless::v1

namespace podless::api {

class RuntimeService {
 public:
  // Calls are counted by the server (GrpcServerOptions::on_call_end).
  explicit RuntimeService(runtime::Agent& agent);
  ~RuntimeService();

  void RegisterWith(GrpcServer& server);
  // What the List call answers (the Kubernetes API lists through it too).
  Result<v1::ListResponse> List(const v1::ListRequest& request);
  // What the Apply and Delete calls do (the Kubernetes API writes through
  // them too). `reply` is called once: at once on one node, once etcd
  // answers in cluster mode.
  void Apply(const v1::ApplyRequest& request, std::function<void(Result<v1::ApplyResponse>)> reply);
  void Delete(const v1::DeleteRequest& request,
              std::function<void(Result<v1::DeleteResponse>)> reply);
  bool clustered() const { return cluster_ != nullptr; }
  // One stored object as List and Watch answer it, with its status (the
  // Kubernetes API's watch turns the agent's changes into events with it).
  v1::Object ObjectOf(const runtime::StoredObject& stored);
  // The supervisor of exec workloads, for `Logs` with follow (null: logs
  // are read from the files only).
  void SetSupervisor(runtime::Supervisor* supervisor) { supervisor_ = supervisor; }
  // Cluster mode: Services and policies change through etcd, and List/Get
  // see other nodes' workloads and the nodes themselves (null: one node).
  void SetCluster(runtime::Cluster* cluster) { cluster_ = cluster; }

 private:
  void StreamLogs(const v1::LogsRequest& request, ServerStreamWriter<v1::LogChunk> writer);

  runtime::Agent& agent_;
  runtime::CertificateManager& certificates_;  // the agent's
  runtime::Supervisor* supervisor_ = nullptr;
  runtime::Cluster* cluster_ = nullptr;
  std::vector<uint64_t> watchers_;  // agent watcher ids of open Watch streams
};

}  // namespace podless::api
