#include "api/runtime_service.h"

#include "api/manifest_files.h"
#include "api/model_convert.h"
#include "podless/v1/runtime.pb.h"
#include "workloads/ipam.h"
#include "workloads/validation.h"

namespace podless::api {
namespace {

using workloads::Kind;
using workloads::ObjectKey;

constexpr char kService[] = "/podless.v1.Runtime/";

// The manifests of a request: the inline one, then `files`, in that order.
Result<std::vector<workloads::ParsedObject>> ParseRequestManifests(
    const std::string& manifest, const std::string& source_name,
    const google::protobuf::RepeatedPtrField<v1::ManifestFile>& files) {
  std::vector<ManifestFile> all;
  if (!manifest.empty() || files.empty()) {
    all.push_back({source_name.empty() ? "-" : source_name, manifest});
  }
  for (const v1::ManifestFile& file : files) all.push_back({file.name(), file.text()});
  return ParseManifestFiles(all);
}

v1::ApplyResult ToProto(const runtime::ObjectChange& change) {
  v1::ApplyResult result;
  result.mutable_ref()->set_kind(ToProtoKind(change.key.kind));
  result.mutable_ref()->set_namespace_(change.key.ns);
  result.mutable_ref()->set_name(change.key.name);
  result.set_action(change.action);
  return result;
}

std::string NamespaceOrDefault(const std::string& ns) {
  return ns.empty() ? workloads::kDefaultNamespace : ns;
}

// Joins Validate() findings of an object that came from the API (no file).
Status ValidateApiObject(const workloads::Object& object, const std::string& root) {
  std::vector<workloads::Diagnostic> errors = workloads::Validate(object);
  if (errors.empty()) return {};
  for (auto& error : errors) {
    if (!error.field.empty()) error.field = root + "." + error.field;
  }
  return MakeError(ErrorCode::kInvalidArgument, workloads::JoinDiagnostics(errors));
}

}  // namespace

RuntimeService::RuntimeService(runtime::Agent& agent, CallObserver observer)
    : agent_(agent), observer_(std::move(observer)) {}

RuntimeService::~RuntimeService() {
  for (uint64_t id : watchers_) agent_.RemoveWatcher(id);
}

// Fills the output-only status of an object from the agent's tables.
static v1::Object ObjectWithStatus(runtime::Agent& agent, const runtime::Cluster* cluster,
                                   const runtime::StoredObject& stored) {
  v1::Object out = ToProto(stored.object);
  if (out.has_workload()) {
    auto* status = out.mutable_workload()->mutable_status();
    for (const runtime::ReplicaView& view : agent.Replicas(stored)) {
      v1::Replica* replica = status->add_replicas();
      replica->set_name(view.name);
      replica->set_ordinal(view.ordinal);
      replica->set_address(workloads::FormatIpv4(view.address));
      replica->set_spiffe_id(view.spiffe_id);
      replica->set_ready(view.ready);
      replica->set_node(agent.config().node_name);
      replica->set_process_state(view.process_state);
      replica->set_process_reason(view.process_reason);
      replica->set_restarts(view.restarts);
      replica->set_last_exit(view.last_exit);
      if (view.certificate) {
        replica->set_certificate_serial(view.certificate->serial_hex);
        replica->set_certificate_not_after(view.certificate->not_after);
      }
    }
  } else if (out.has_service()) {
    auto* status = out.mutable_service()->mutable_status();
    if (!stored.addresses.empty()) status->set_vip(workloads::FormatIpv4(stored.addresses[0]));
    const auto& service = std::get<workloads::Service>(stored.object);
    for (uint32_t address : agent.ServiceEndpoints(service)) {
      status->add_endpoints(workloads::FormatIpv4(address));
    }
    if (cluster != nullptr) {  // ready replicas on other nodes too
      for (const runtime::RemoteWorkload* remote :
           cluster->view().Select(service.metadata.ns, service.selector)) {
        for (uint32_t ordinal = 0; ordinal < remote->record.addresses.size(); ++ordinal) {
          if (remote->ready(ordinal)) {
            status->add_endpoints(workloads::FormatIpv4(remote->record.addresses[ordinal]));
          }
        }
      }
    }
  }
  return out;
}

void RuntimeService::RegisterWith(GrpcServer& server) {
  // Wraps a typed handler so every call is counted by method and code.
  auto observed = [this]<typename Req, typename Resp>(
                      std::string name,
                      std::function<Result<Resp>(const CallContext&, const Req&)> handler) {
    return std::function<Result<Resp>(const CallContext&, const Req&)>(
        [this, name, handler = std::move(handler)](const CallContext& context,
                                                   const Req& request) -> Result<Resp> {
          Result<Resp> result = handler(context, request);
          if (observer_) {
            observer_(name, result.ok() ? ErrorCode::kInternal : result.error().code, result.ok());
          }
          return result;
        });
  };

  // Apply and Delete answer later in cluster mode (cluster-wide objects go
  // to etcd first), so they are asynchronous unary methods.
  auto observe = [this](std::string_view method, const Status& status) {
    if (observer_)
      observer_(method, status ? ErrorCode::kInternal : status.error().code, status.ok());
  };
  auto to_response = []<typename Resp>(Result<std::vector<runtime::ObjectChange>> changes,
                                       Resp* response) -> Status {
    if (!changes) return changes.error();
    for (const auto& change : *changes) *response->add_results() = ToProto(change);
    return {};
  };

  server.AddAsyncUnary<v1::ApplyRequest, v1::ApplyResponse>(
      std::string(kService) + "Apply",
      [this, observe, to_response](const CallContext&, const v1::ApplyRequest& request,
                                   GrpcServer::Reply<v1::ApplyResponse> reply) {
        auto finish = [observe, to_response,
                       reply](Result<std::vector<runtime::ObjectChange>> changes) {
          v1::ApplyResponse response;
          Status status = to_response(std::move(changes), &response);
          observe("Apply", status);
          reply(status ? Result<v1::ApplyResponse>(std::move(response))
                       : Result<v1::ApplyResponse>(status.error()));
        };
        auto parsed =
            ParseRequestManifests(request.manifest(), request.source_name(), request.files());
        if (!parsed) return finish(parsed.error());
        std::vector<workloads::Object> objects;
        for (auto& object : *parsed) objects.push_back(std::move(object.object));
        if (cluster_ != nullptr)
          return cluster_->Apply(std::move(objects), request.dry_run(), finish);
        finish(agent_.Apply(std::move(objects), request.dry_run()));
      });

  server.AddAsyncUnary<v1::DeleteRequest, v1::DeleteResponse>(
      std::string(kService) + "Delete",
      [this, observe, to_response](const CallContext&, const v1::DeleteRequest& request,
                                   GrpcServer::Reply<v1::DeleteResponse> reply) {
        auto finish = [observe, to_response,
                       reply](Result<std::vector<runtime::ObjectChange>> changes) {
          v1::DeleteResponse response;
          Status status = to_response(std::move(changes), &response);
          observe("Delete", status);
          reply(status ? Result<v1::DeleteResponse>(std::move(response))
                       : Result<v1::DeleteResponse>(status.error()));
        };
        std::vector<ObjectKey> keys;
        if (!request.manifest().empty() || !request.files().empty()) {
          auto parsed =
              ParseRequestManifests(request.manifest(), request.source_name(), request.files());
          if (!parsed) return finish(parsed.error());
          for (const auto& object : *parsed) keys.push_back(workloads::KeyOf(object.object));
        }
        for (const v1::ObjectRef& ref : request.refs()) {
          auto kind = FromProtoKind(ref.kind());
          if (!kind) return finish(kind.error());
          if (ref.name().empty()) {
            return finish(MakeError(ErrorCode::kInvalidArgument, "refs: name is required"));
          }
          keys.push_back(ObjectKey{*kind, NamespaceOrDefault(ref.namespace_()), ref.name()});
        }
        if (keys.empty()) {
          return finish(
              MakeError(ErrorCode::kInvalidArgument, "nothing to delete: give a manifest or refs"));
        }
        if (cluster_ != nullptr) {
          return cluster_->Delete(std::move(keys), request.ignore_not_found(), finish);
        }
        finish(agent_.Delete(keys, request.ignore_not_found()));
      });

  auto register_workloads = [this](const google::protobuf::RepeatedPtrField<v1::Workload>& messages,
                                   bool batch) -> Status {
    std::vector<workloads::Workload> list;
    std::vector<workloads::ParsedObject> parsed;
    list.reserve(messages.size());
    for (int i = 0; i < messages.size(); ++i) {
      const std::string root = batch ? "workloads[" + std::to_string(i) + "]" : "workload";
      auto workload = FromProto(messages[i]);
      if (!workload) {
        if (!batch) return workload.error();
        return MakeError(ErrorCode::kInvalidArgument, root + ": " + workload.error().message);
      }
      if (Status s = ValidateApiObject(*workload, root); !s) return s;
      list.push_back(std::move(*workload));
      if (batch) parsed.push_back({list.back(), {root, 0, 0}});
    }
    if (batch) {
      auto duplicates = workloads::ValidateBatch(parsed);
      if (!duplicates.empty()) {
        return MakeError(ErrorCode::kInvalidArgument, duplicates.front().ToString());
      }
    }
    return agent_.Register(std::move(list));
  };

  server.AddUnary<v1::RegisterRequest, v1::RegisterResponse>(
      std::string(kService) + "Register",
      observed.operator()<v1::RegisterRequest, v1::RegisterResponse>(
          "Register",
          [this, register_workloads](const CallContext&, const v1::RegisterRequest& request)
              -> Result<v1::RegisterResponse> {
            google::protobuf::RepeatedPtrField<v1::Workload> one;
            *one.Add() = request.workload();
            if (Status s = register_workloads(one, false); !s) return s.error();
            const auto& meta = request.workload().metadata();
            const auto* stored = agent_.Find(
                ObjectKey{Kind::kWorkload, NamespaceOrDefault(meta.namespace_()), meta.name()});
            v1::RegisterResponse response;
            *response.mutable_workload() = ObjectWithStatus(agent_, cluster_, *stored).workload();
            return response;
          }));

  server.AddUnary<v1::RegisterBatchRequest, v1::RegisterBatchResponse>(
      std::string(kService) + "RegisterBatch",
      observed.operator()<v1::RegisterBatchRequest, v1::RegisterBatchResponse>(
          "RegisterBatch",
          [register_workloads](const CallContext&, const v1::RegisterBatchRequest& request)
              -> Result<v1::RegisterBatchResponse> {
            if (Status s = register_workloads(request.workloads(), true); !s) return s.error();
            v1::RegisterBatchResponse response;
            response.set_registered(static_cast<uint32_t>(request.workloads_size()));
            return response;
          }));

  server.AddUnary<v1::DeregisterRequest, v1::DeregisterResponse>(
      std::string(kService) + "Deregister",
      observed.operator()<v1::DeregisterRequest, v1::DeregisterResponse>(
          "Deregister",
          [this](const CallContext&,
                 const v1::DeregisterRequest& request) -> Result<v1::DeregisterResponse> {
            if (request.name().empty()) {
              return MakeError(ErrorCode::kInvalidArgument, "name: required");
            }
            auto changes =
                agent_.Delete({ObjectKey{Kind::kWorkload, NamespaceOrDefault(request.namespace_()),
                                         request.name()}},
                              /*ignore_not_found=*/false);
            if (!changes) return changes.error();
            return v1::DeregisterResponse();
          }));

  server.AddUnary<v1::GetRequest, v1::Object>(
      std::string(kService) + "Get",
      observed.operator()<v1::GetRequest, v1::Object>(
          "Get", [this](const CallContext&, const v1::GetRequest& request) -> Result<v1::Object> {
            auto kind = FromProtoKind(request.ref().kind());
            if (!kind) return kind.error();
            ObjectKey key{*kind, NamespaceOrDefault(request.ref().namespace_()),
                          request.ref().name()};
            const runtime::StoredObject* stored = agent_.Find(key);
            if (stored == nullptr) {
              return MakeError(ErrorCode::kNotFound, std::string(workloads::KindName(*kind)) + " " +
                                                         key.ns + "/" + key.name + " not found");
            }
            return ObjectWithStatus(agent_, cluster_, *stored);
          }));

  server.AddUnary<v1::ListRequest, v1::ListResponse>(
      std::string(kService) + "List",
      observed.operator()<v1::ListRequest, v1::ListResponse>(
          "List",
          [this](const CallContext&, const v1::ListRequest& request) -> Result<v1::ListResponse> {
            auto kind = FromProtoKind(request.kind());
            if (!kind) return kind.error();
            v1::ListResponse response;
            for (const runtime::StoredObject* stored : agent_.List(*kind, request.namespace_())) {
              *response.add_objects() = ObjectWithStatus(agent_, cluster_, *stored);
            }
            if (cluster_ != nullptr && *kind == Kind::kWorkload) {
              // Other nodes' workloads too: a cluster-wide listing, each
              // replica naming its node (changed only on that node).
              for (const auto& [key, remote] : cluster_->view().workloads()) {
                const workloads::Workload& workload = remote.record.workload;
                if (!request.namespace_().empty() && workload.metadata.ns != request.namespace_()) {
                  continue;
                }
                v1::Object out = ToProto(workloads::Object(workload));
                auto* status = out.mutable_workload()->mutable_status();
                const auto& addresses = remote.record.addresses;
                for (uint32_t ordinal = 0; ordinal < addresses.size(); ++ordinal) {
                  v1::Replica* replica = status->add_replicas();
                  replica->set_name(workload.metadata.name + "-" + std::to_string(ordinal));
                  replica->set_ordinal(ordinal);
                  replica->set_address(workloads::FormatIpv4(addresses[ordinal]));
                  replica->set_spiffe_id(agent_.SpiffeIdFor(workload));
                  replica->set_ready(remote.ready(ordinal));
                  replica->set_node(remote.record.node);
                }
                *response.add_objects() = std::move(out);
              }
            }
            return response;
          }));

  server.AddUnary<v1::ListNodesRequest, v1::ListNodesResponse>(
      std::string(kService) + "ListNodes",
      observed.operator()<v1::ListNodesRequest, v1::ListNodesResponse>(
          "ListNodes",
          [this](const CallContext&, const v1::ListNodesRequest&) -> Result<v1::ListNodesResponse> {
            v1::ListNodesResponse response;
            const auto& config = agent_.config();
            if (cluster_ == nullptr) {
              v1::Node* node = response.add_nodes();
              node->set_name(config.node_name);
              node->set_cidr(config.node_cidr);
              node->set_workloads(static_cast<uint32_t>(agent_.workload_count()));
              node->set_status("Ready");
              node->set_self(true);
              return response;
            }
            response.set_cluster(true);
            response.set_connected(cluster_->connected());
            for (const auto& [name, record] : cluster_->view().nodes()) {
              v1::Node* node = response.add_nodes();
              node->set_name(record.name);
              node->set_address(record.address);
              node->set_cidr(record.cidr);
              node->set_hbone_port(record.hbone_port);
              node->set_started_at(record.started_at);
              node->set_self(name == cluster_->node_name());
              node->set_workloads(static_cast<uint32_t>(
                  node->self() ? agent_.workload_count() : cluster_->view().WorkloadCountOf(name)));
              node->set_status(cluster_->connected() ? "Ready" : "Unknown");
            }
            return response;
          }));

  server.AddUnary<v1::GetCaBundleRequest, v1::CaBundle>(
      std::string(kService) + "GetCaBundle",
      observed.operator()<v1::GetCaBundleRequest, v1::CaBundle>(
          "GetCaBundle",
          [this](const CallContext&, const v1::GetCaBundleRequest&) -> Result<v1::CaBundle> {
            v1::CaBundle bundle;
            bundle.set_trust_domain(agent_.ca().trust_domain());
            bundle.set_pem(agent_.ca().BundlePem());
            return bundle;
          }));

  server.AddUnary<v1::GetCertificateRequest, v1::Certificate>(
      std::string(kService) + "GetCertificate",
      observed.operator()<v1::GetCertificateRequest, v1::Certificate>(
          "GetCertificate",
          [this](const CallContext&,
                 const v1::GetCertificateRequest& request) -> Result<v1::Certificate> {
            auto svid =
                agent_.Certificate(NamespaceOrDefault(request.namespace_()), request.replica());
            if (!svid) return svid.error();
            v1::Certificate cert;
            cert.set_spiffe_id((*svid)->id.ToString());
            cert.set_chain_pem((*svid)->CertificateChainPem());
            cert.set_serial((*svid)->serial_hex);
            cert.set_not_before((*svid)->not_before);
            cert.set_not_after((*svid)->not_after);
            return cert;
          }));

  server.AddUnary<v1::GetCredentialsRequest, v1::Credentials>(
      std::string(kService) + "GetCredentials",
      observed.operator()<v1::GetCredentialsRequest, v1::Credentials>(
          "GetCredentials",
          [this](const CallContext&,
                 const v1::GetCredentialsRequest& request) -> Result<v1::Credentials> {
            auto replica = agent_.FindReplicaByName(NamespaceOrDefault(request.namespace_()),
                                                    request.replica());
            if (!replica) return replica.error();
            const runtime::ProxyCredentials creds = agent_.CredentialsFor(*replica);
            // Workloads reach the outbound entry on loopback even when it
            // listens on every address.
            std::string entry = agent_.config().outbound_address;
            if (entry.rfind("0.0.0.0:", 0) == 0) entry = "127.0.0.1:" + entry.substr(8);
            v1::Credentials out;
            out.set_user(creds.user);
            out.set_password(creds.password);
            out.set_http_proxy("http://" + creds.user + ":" + creds.password + "@" + entry);
            out.set_all_proxy("socks5h://" + creds.user + ":" + creds.password + "@" + entry);
            return out;
          }));

  server.AddServerStreaming<v1::LogsRequest, v1::LogChunk>(
      std::string(kService) + "Logs", [this](const CallContext&, const v1::LogsRequest& request,
                                             ServerStreamWriter<v1::LogChunk> writer) {
        if (observer_) observer_("Logs", ErrorCode::kInternal, true);
        StreamLogs(request, std::move(writer));
      });

  server.AddServerStreaming<v1::WatchRequest, v1::WatchEvent>(
      std::string(kService) + "Watch", [this](const CallContext&, const v1::WatchRequest& request,
                                              ServerStreamWriter<v1::WatchEvent> writer) {
        if (observer_) observer_("Watch", ErrorCode::kInternal, true);
        std::vector<Kind> kinds;
        for (int k : request.kinds()) {
          auto kind = FromProtoKind(static_cast<v1::Kind>(k));
          if (!kind) {
            writer.Finish(kind.error());
            return;
          }
          kinds.push_back(*kind);
        }
        if (kinds.empty()) kinds = {Kind::kWorkload, Kind::kService, Kind::kAuthorizationPolicy};
        const std::string ns = request.namespace_();
        auto wanted = [kinds, ns](const workloads::ObjectKey& key) {
          return (ns.empty() || key.ns == ns) &&
                 std::find(kinds.begin(), kinds.end(), key.kind) != kinds.end();
        };
        auto send = [this, writer](v1::WatchEvent::Type type,
                                   const runtime::StoredObject& stored) mutable {
          v1::WatchEvent event;
          event.set_type(type);
          *event.mutable_object() = ObjectWithStatus(agent_, cluster_, stored);
          return writer.Write(event);
        };
        for (Kind kind : kinds) {
          for (const runtime::StoredObject* stored : agent_.List(kind, ns)) {
            if (!send(v1::WatchEvent::ADDED, *stored)) return;
          }
        }
        v1::WatchEvent synced;
        synced.set_type(v1::WatchEvent::SYNCED);
        if (!writer.Write(synced)) return;

        const uint64_t id =
            agent_.AddWatcher([send, wanted](runtime::WatchEventType type,
                                             const runtime::StoredObject& stored) mutable {
              if (!wanted(workloads::KeyOf(stored.object))) return;
              send(type == runtime::WatchEventType::kAdded      ? v1::WatchEvent::ADDED
                   : type == runtime::WatchEventType::kModified ? v1::WatchEvent::MODIFIED
                                                                : v1::WatchEvent::DELETED,
                   stored);
            });
        watchers_.push_back(id);
        // The stream ends when the client goes away; then the watcher goes too.
        writer.OnCancel([this, id] {
          agent_.RemoveWatcher(id);
          std::erase(watchers_, id);
        });
      });
}

void RuntimeService::StreamLogs(const v1::LogsRequest& request,
                                ServerStreamWriter<v1::LogChunk> writer) {
  const std::string ns = NamespaceOrDefault(request.namespace_());
  const std::string name = ns + "/" + request.workload();
  const runtime::StoredObject* stored =
      agent_.Find(ObjectKey{Kind::kWorkload, ns, request.workload()});
  if (stored == nullptr) {
    writer.Finish(MakeError(ErrorCode::kNotFound, "workload " + name + " not found"));
    return;
  }
  const auto& workload = std::get<workloads::Workload>(stored->object);
  if (!std::holds_alternative<workloads::ExecApp>(workload.spec.app)) {
    writer.Finish(
        MakeError(ErrorCode::kFailedPrecondition,
                  "workload " + name + " runs no process (its app is not exec): no logs"));
    return;
  }
  const uint32_t ordinal = request.has_replica() ? request.replica().value() : 0;
  if (ordinal >= stored->addresses.size()) {
    writer.Finish(MakeError(ErrorCode::kNotFound,
                            "workload " + name + " has no replica " + std::to_string(ordinal) +
                                " (it has " + std::to_string(stored->addresses.size()) + ")"));
    return;
  }
  int64_t tail = -1;
  if (request.has_tail_lines()) {
    tail = request.tail_lines().value();
    if (tail < 0) {
      writer.Finish(MakeError(ErrorCode::kInvalidArgument,
                              "tail_lines: must be 0 or more, not " + std::to_string(tail)));
      return;
    }
  }
  const std::string replica = workload.metadata.name + "-" + std::to_string(ordinal);
  const std::string dir = runtime::ReplicaLogDir(agent_.config().state_dir, ns, replica);
  auto text = runtime::ReadLog(dir, request.previous(), tail);
  if (!text.ok()) {
    if (request.previous() || !request.follow()) {
      writer.Finish(MakeError(
          text.error().code,
          (request.previous() ? "no previous run of " : "no log of ") + ns + "/" + replica));
      return;
    }
  } else {
    // Chunks well below the per-stream buffer limit.
    constexpr size_t kChunk = 64 * 1024;
    for (size_t offset = 0; offset < text->size(); offset += kChunk) {
      v1::LogChunk chunk;
      chunk.set_data(text->substr(offset, kChunk));
      if (!writer.Write(chunk)) return;
    }
  }
  runtime::LogFile* log = supervisor_ != nullptr ? supervisor_->FindLog(ns, replica) : nullptr;
  if (!request.follow() || request.previous() || log == nullptr) {
    writer.Finish({});
    return;
  }
  // Follow: every byte the process writes from now on, until the client
  // cancels (or the agent stops, which cancels every call first).
  auto id = std::make_shared<uint64_t>(0);
  *id = log->AddFollower([writer, log, id](std::string_view bytes) mutable {
    v1::LogChunk chunk;
    chunk.set_data(std::string(bytes));
    if (!writer.Write(chunk)) log->RemoveFollower(*id);
  });
  writer.OnCancel([log, id] { log->RemoveFollower(*id); });
}

}  // namespace podless::api
