#include "api/runtime_service.h"

#include <google/protobuf/io/coded_stream.h>

#include <algorithm>
#include <ctime>
#include <new>
#include <string_view>
#include <unordered_map>
#include <utility>

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
    const google::protobuf::RepeatedPtrField<v1::ManifestFile>& files,
    const workloads::ParseOptions& options = {},
    std::vector<workloads::SkippedDocument>* skipped = nullptr) {
  std::vector<ManifestFile> all;
  if (!manifest.empty() || files.empty()) {
    all.push_back({source_name.empty() ? "-" : source_name, manifest});
  }
  for (const v1::ManifestFile& file : files) all.push_back({file.name(), file.text()});
  return ParseManifestFiles(all, options, skipped);
}

v1::ApplyResult ToProto(const runtime::ObjectChange& change) {
  v1::ApplyResult result;
  result.mutable_ref()->set_kind(ToProtoKind(change.key.kind));
  result.mutable_ref()->set_namespace_(change.key.ns);
  result.mutable_ref()->set_name(change.key.name);
  result.set_action(change.action);
  for (const auto& warning : change.warnings) result.add_warnings(warning);
  return result;
}

struct ParseNotes {
  std::vector<std::vector<std::string>> warnings;  // by object, in apply order
  std::vector<workloads::SkippedDocument> skipped;
};

std::string NamespaceOrDefault(const std::string& ns) {
  return ns.empty() ? workloads::kDefaultNamespace : ns;
}

// The key a reference names: a Namespace is cluster-scoped, so whatever
// namespace a caller sends with it (the CLI sends its -n) does not count.
ObjectKey KeyOfRef(Kind kind, const std::string& ns, const std::string& name) {
  return ObjectKey{kind, kind == Kind::kNamespace ? "" : NamespaceOrDefault(ns), name};
}

// The workloads of a RegisterBatchRequest (`repeated Workload workloads = 1`)
// in the model, each parsed into one reused message and converted (and
// validated) at once. Parsing the whole request first held every workload
// twice, as a message and as a model object: half of the memory a batch took,
// and the heap kept it as holes between long-lived objects after the call.
// Errors name the workload the model refuses ("workloads[3]: workload.spec…")
// and set `*parsed`; for bytes that are not a RegisterBatchRequest it is false.
// A batch of more than `max_workloads` (0: no limit) is RESOURCE_EXHAUSTED,
// counted in a first pass over the bytes before any workload is decoded.
Result<std::vector<workloads::Workload>> DecodeBatch(std::string_view bytes, size_t max_workloads,
                                                     bool* parsed) {
  using google::protobuf::io::CodedInputStream;
  *parsed = false;
  auto unparseable = [] {
    return MakeError(ErrorCode::kInvalidArgument, std::string("cannot parse the request to ") +
                                                      kService + "RegisterBatch as " +
                                                      v1::RegisterBatchRequest().GetTypeName());
  };
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  // Field 1, length-delimited (wire type 2).
  constexpr uint32_t kWorkloadTag = (v1::RegisterBatchRequest::kWorkloadsFieldNumber << 3) | 2;
  std::vector<workloads::Workload> list;
  v1::Workload message;
  size_t count = 0;  // workloads in the request (first pass)
  for (const bool decode : {false, true}) {
    CodedInputStream in(data, static_cast<int>(bytes.size()));
    if (decode) {
      if (max_workloads != 0 && count > max_workloads) {
        *parsed = true;
        return MakeError(ErrorCode::kResourceExhausted,
                         "RegisterBatch of " + std::to_string(count) +
                             " workloads is over the limit --max-apply-objects=" +
                             std::to_string(max_workloads) + " (split it into smaller batches)");
      }
      list.reserve(count);
    }
    while (const uint32_t tag = in.ReadTag()) {
      if ((tag >> 3) == 0) return unparseable();  // field number 0 is not a field
      uint32_t length = 0;
      uint64_t skipped = 0;
      switch (tag & 7) {  // the wire type; an unknown field is skipped (proto3)
        case 0:
          if (!in.ReadVarint64(&skipped)) return unparseable();
          continue;
        case 1:
          if (!in.Skip(8)) return unparseable();
          continue;
        case 5:
          if (!in.Skip(4)) return unparseable();
          continue;
        case 2:
          if (!in.ReadVarint32(&length) || length > bytes.size() - in.CurrentPosition()) {
            return unparseable();
          }
          break;
        default:  // groups, which proto3 does not have
          return unparseable();
      }
      const int start = in.CurrentPosition();
      if (!in.Skip(static_cast<int>(length))) return unparseable();
      if (tag != kWorkloadTag) continue;
      if (!decode) {
        ++count;
        continue;
      }
      if (!message.ParseFromArray(data + start, static_cast<int>(length))) return unparseable();
      auto workload = FromProto(message);
      if (!workload) {
        *parsed = true;  // as far as it was read
        return MakeError(ErrorCode::kInvalidArgument, "workloads[" + std::to_string(list.size()) +
                                                          "]: " + workload.error().message);
      }
      list.push_back(std::move(*workload));
    }
    *parsed = in.ConsumedEntireMessage();
    if (!*parsed) return unparseable();
  }
  return list;
}

// What a call answers when memory runs out before it changed anything (the
// agent's own calls report that themselves, see runtime/state/agent.h).
Error OutOfMemory(std::string_view what) {
  return MakeError(ErrorCode::kResourceExhausted,
                   "out of memory while " + std::string(what) + "; nothing was changed");
}

// The same once the change was committed: only the answer is missing.
Error OutOfMemoryAfterCommit() {
  return MakeError(ErrorCode::kInternal,
                   "out of memory while building the answer; the change itself was applied");
}

// A (namespace, name) that a batch gives twice, worded as ValidateBatch words
// it for a manifest: "workloads[5]: metadata.name: duplicate Workload
// "ns/web" in one apply (also at workloads[2])". Hashes views of the names
// rather than copying every object into a ParsedObject and every key into a
// tree.
Status CheckNamesUnique(const std::vector<workloads::Workload>& list) {
  using Name = std::pair<std::string_view, std::string_view>;  // namespace, name
  struct NameHash {
    size_t operator()(const Name& name) const {
      return std::hash<std::string_view>{}(name.first) * 31 +
             std::hash<std::string_view>{}(name.second);
    }
  };
  std::unordered_map<Name, size_t, NameHash> first;  // index of each name's first use
  first.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const workloads::ObjectMeta& meta = list[i].metadata;
    auto [it, inserted] = first.try_emplace(Name(meta.ns, meta.name), i);
    if (inserted) continue;
    workloads::Diagnostic d;
    d.where.file = "workloads[" + std::to_string(i) + "]";
    d.field = "metadata.name";
    d.message = "duplicate Workload " + workloads::QuoteForMessage(meta.ns + "/" + meta.name) +
                " in one apply (also at workloads[" + std::to_string(it->second) + "])";
    return MakeError(ErrorCode::kInvalidArgument, d.ToString());
  }
  return {};
}

}  // namespace

RuntimeService::RuntimeService(runtime::Agent& agent)
    : agent_(agent), certificates_(agent.certificates()) {}

RuntimeService::~RuntimeService() {
  for (uint64_t id : watchers_) agent_.RemoveWatcher(id);
}

// Fills the output-only status of an object from the agent's tables.
// Another node's workload as the API shows it: its spec, and each replica
// with its address, identity, readiness and node.
static v1::Object RemoteWorkloadObject(const runtime::Agent& agent,
                                       const runtime::RemoteWorkload& remote) {
  const workloads::Workload& workload = remote.record.workload;
  v1::Object out = ToProto(workloads::Object(workload));
  auto* status = out.mutable_workload()->mutable_status();
  const auto& addresses = remote.record.addresses;
  for (uint32_t ordinal = 0; ordinal < addresses.size(); ++ordinal) {
    v1::Replica* replica = status->add_replicas();
    replica->set_name(workload.metadata.name + "-" + std::to_string(ordinal));
    replica->set_ordinal(ordinal);
    replica->set_address(workloads::FormatIpv4(addresses[ordinal]));
    replica->set_spiffe_id(agent.SpiffeIdFor(workload));
    replica->set_ready(remote.ready(ordinal));
    replica->set_node(remote.record.node);
  }
  return out;
}

// Whether a workload on another node is in `ns` (a namespace exists while
// any node holds an object in it). Only asked for a namespace this node has
// no object in, which an apply rarely meets.
static bool RemoteNamespace(const runtime::Cluster* cluster, const std::string& ns) {
  if (cluster == nullptr) return false;
  for (const auto& [etcd_key, remote] : cluster->view().workloads()) {
    if (remote.record.workload.metadata.ns == ns) return true;
  }
  return false;
}

// Get of a workload this node does not host: the one of that name on another
// node. A name may exist on several nodes (each node owns what was applied
// on it); then the caller is told where, and List shows each.
static Result<v1::Object> RemoteWorkloadByName(const runtime::Agent& agent,
                                               const runtime::Cluster& cluster,
                                               const ObjectKey& key) {
  std::vector<const runtime::RemoteWorkload*> found;
  for (const auto& [etcd_key, remote] : cluster.view().workloads()) {
    const auto& meta = remote.record.workload.metadata;
    if (meta.ns == key.ns && meta.name == key.name) found.push_back(&remote);
  }
  if (found.empty()) {
    return MakeError(ErrorCode::kNotFound,
                     "workload " + key.ns + "/" + key.name + " not found on any node");
  }
  if (found.size() > 1) {
    std::string nodes;
    for (const runtime::RemoteWorkload* remote : found) {
      nodes += (nodes.empty() ? "" : ", ") + remote->record.node;
    }
    return MakeError(ErrorCode::kFailedPrecondition,
                     "workload " + key.ns + "/" + key.name + " exists on several nodes (" + nodes +
                         "); `get workloads -o wide` lists each with its node");
  }
  return RemoteWorkloadObject(agent, *found.front());
}

static v1::Object ObjectWithStatus(runtime::Agent& agent, const runtime::Cluster* cluster,
                                   const runtime::StoredObject& stored) {
  v1::Object out = ToProto(stored.object);
  if (v1::ObjectMeta* meta = MutableMetadata(&out)) meta->set_resource_version(stored.generation);
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
      replica->set_started_at(view.started_at);
      for (uint16_t port : view.unserved_ports) replica->add_unserved_ports(port);
      for (const runtime::ReplicaView::Container& c : view.containers) {
        v1::ContainerStatus* container = replica->add_containers();
        container->set_name(c.name);
        container->set_state(c.state);
        container->set_reason(c.reason);
        container->set_restarts(c.restarts);
        container->set_ready(c.ready);
        container->set_last_exit(c.last_exit);
        container->set_started_at(c.started_at);
      }
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

v1::Object RuntimeService::ObjectOf(const runtime::StoredObject& stored) {
  return ObjectWithStatus(agent_, cluster_, stored);
}

Result<v1::ListResponse> RuntimeService::List(const v1::ListRequest& request) {
  auto kind = FromProtoKind(request.kind());
  if (!kind) return kind.error();
  v1::ListResponse response;
  response.set_resource_version(agent_.revision());
  const std::string& ns = *kind == Kind::kNamespace ? "" : request.namespace_();
  for (const runtime::StoredObject* stored : agent_.List(*kind, ns)) {
    *response.add_objects() = ObjectWithStatus(agent_, cluster_, *stored);
  }
  if (cluster_ != nullptr && *kind == Kind::kWorkload) {
    // Other nodes' workloads too: a cluster-wide listing, each
    // replica naming its node (changed only on that node).
    for (const auto& [key, remote] : cluster_->view().workloads()) {
      const auto& ns = remote.record.workload.metadata.ns;
      if (!request.namespace_().empty() && ns != request.namespace_()) continue;
      *response.add_objects() = RemoteWorkloadObject(agent_, remote);
    }
  }
  return response;
}

void RuntimeService::Apply(const v1::ApplyRequest& request,
                           std::function<void(Result<v1::ApplyResponse>)> reply) {
  auto to_response = []<typename Resp>(Result<std::vector<runtime::ObjectChange>> changes,
                                       Resp* response) -> Status {
    if (!changes) return changes.error();
    for (const auto& change : *changes) *response->add_results() = ToProto(change);
    return {};
  };
  // What the parser has to say beyond errors: the fields each object
  // keeps but does not act on, and the documents skipped on request.
  auto notes = std::make_shared<ParseNotes>();
  auto finish = [to_response, reply, notes](
                    Result<std::vector<runtime::ObjectChange>> changes,
                    const std::vector<std::string>& created_namespaces = {}) {
    v1::ApplyResponse response;
    Status status;
    try {
      if (changes && changes->size() == notes->warnings.size()) {
        for (size_t i = 0; i < changes->size(); ++i) {
          auto& warnings = (*changes)[i].warnings;
          warnings.insert(warnings.begin(), notes->warnings[i].begin(), notes->warnings[i].end());
        }
      }
      status = to_response(std::move(changes), &response);
      for (const std::string& ns : created_namespaces) response.add_created_namespaces(ns);
      for (const workloads::SkippedDocument& document : notes->skipped) {
        v1::SkippedDocument* out = response.add_skipped();
        out->set_api_version(document.api_version);
        out->set_kind(document.kind);
        out->set_name(document.name);
        out->set_where(workloads::LocationToString(document.where));
      }
    } catch (const std::bad_alloc&) {
      status = OutOfMemoryAfterCommit();
    }
    reply(status ? Result<v1::ApplyResponse>(std::move(response))
                 : Result<v1::ApplyResponse>(status.error()));
  };
  // Out of memory while parsing, nothing has changed yet; the agent
  // reports its own allocation failures (runtime/state/agent.h).
  std::vector<workloads::Object> objects;
  try {
    workloads::ParseOptions options;
    options.skip_unsupported = request.skip_unsupported();
    auto parsed = ParseRequestManifests(request.manifest(), request.source_name(), request.files(),
                                        options, &notes->skipped);
    if (!parsed) return finish(parsed.error());
    objects.reserve(parsed->size());
    for (auto& object : *parsed) {
      objects.push_back(std::move(object.object));
      notes->warnings.push_back(std::move(object.warnings));
    }
  } catch (const std::bad_alloc&) {
    return finish(OutOfMemory("reading the manifests"));
  }
  // Namespaces appear with their first object: the caller is told,
  // since a typo'd namespace would otherwise go unnoticed.
  std::vector<std::string> new_namespaces;
  std::set<std::string> declared;  // Namespace objects report themselves
  for (const workloads::Object& object : objects) {
    if (const auto* ns = std::get_if<workloads::Namespace>(&object)) {
      declared.insert(ns->metadata.name);
    }
  }
  for (const workloads::Object& object : objects) {
    const std::string& ns =
        std::visit([](const auto& o) -> const std::string& { return o.metadata.ns; }, object);
    if (!ns.empty() && !declared.contains(ns) && !agent_.HasNamespace(ns) &&
        !RemoteNamespace(cluster_, ns) &&
        std::find(new_namespaces.begin(), new_namespaces.end(), ns) == new_namespaces.end()) {
      new_namespaces.push_back(ns);
    }
  }
  auto finish_with_namespaces = [finish, new_namespaces = std::move(new_namespaces)](
                                    Result<std::vector<runtime::ObjectChange>> changes) {
    finish(std::move(changes), new_namespaces);
  };
  if (cluster_ != nullptr) {
    return cluster_->Apply(std::move(objects), request.dry_run(), finish_with_namespaces);
  }
  finish_with_namespaces(agent_.Apply(std::move(objects), request.dry_run()));
}

void RuntimeService::Delete(const v1::DeleteRequest& request,
                            std::function<void(Result<v1::DeleteResponse>)> reply) {
  auto to_response = []<typename Resp>(Result<std::vector<runtime::ObjectChange>> changes,
                                       Resp* response) -> Status {
    if (!changes) return changes.error();
    for (const auto& change : *changes) *response->add_results() = ToProto(change);
    return {};
  };
  auto finish = [to_response, reply](Result<std::vector<runtime::ObjectChange>> changes) {
    v1::DeleteResponse response;
    Status status = to_response(std::move(changes), &response);
    reply(status ? Result<v1::DeleteResponse>(std::move(response))
                 : Result<v1::DeleteResponse>(status.error()));
  };
  std::vector<ObjectKey> keys;
  if (!request.manifest().empty() || !request.files().empty()) {
    try {
      auto parsed =
          ParseRequestManifests(request.manifest(), request.source_name(), request.files());
      if (!parsed) return finish(parsed.error());
      for (const auto& object : *parsed) keys.push_back(workloads::KeyOf(object.object));
    } catch (const std::bad_alloc&) {
      return finish(OutOfMemory("reading the manifests"));
    }
  }
  for (const v1::ObjectRef& ref : request.refs()) {
    auto kind = FromProtoKind(ref.kind());
    if (!kind) return finish(kind.error());
    if (ref.name().empty()) {
      return finish(MakeError(ErrorCode::kInvalidArgument, "refs: name is required"));
    }
    keys.push_back(KeyOfRef(*kind, ref.namespace_(), ref.name()));
  }
  if (keys.empty()) {
    return finish(
        MakeError(ErrorCode::kInvalidArgument, "nothing to delete: give a manifest or refs"));
  }
  if (cluster_ != nullptr) {
    return cluster_->Delete(std::move(keys), request.ignore_not_found(), finish);
  }
  finish(agent_.Delete(keys, request.ignore_not_found()));
}

void RuntimeService::RegisterWith(GrpcServer& server) {
  // Apply and Delete answer later in cluster mode (cluster-wide objects go
  // to etcd first), so they are asynchronous unary methods.
  server.AddAsyncUnary<v1::ApplyRequest, v1::ApplyResponse>(
      std::string(kService) + "Apply",
      [this](const CallContext&, const v1::ApplyRequest& request,
             GrpcServer::Reply<v1::ApplyResponse> reply) { Apply(request, std::move(reply)); });

  server.AddAsyncUnary<v1::DeleteRequest, v1::DeleteResponse>(
      std::string(kService) + "Delete",
      [this](const CallContext&, const v1::DeleteRequest& request,
             GrpcServer::Reply<v1::DeleteResponse> reply) { Delete(request, std::move(reply)); });

  server.AddUnary<v1::RegisterRequest, v1::RegisterResponse>(
      std::string(kService) + "Register",
      [this](const CallContext&,
             const v1::RegisterRequest& request) -> Result<v1::RegisterResponse> {
        std::vector<workloads::Workload> one;
        try {
          auto workload = FromProto(request.workload());
          if (!workload) return workload.error();
          one.push_back(std::move(*workload));
        } catch (const std::bad_alloc&) {
          return OutOfMemory("reading the workload");
        }
        if (Status s = agent_.Register(std::move(one)); !s) return s.error();
        try {
          const auto& meta = request.workload().metadata();
          const auto* stored = agent_.Find(
              ObjectKey{Kind::kWorkload, NamespaceOrDefault(meta.namespace_()), meta.name()});
          v1::RegisterResponse response;
          *response.mutable_workload() = ObjectWithStatus(agent_, cluster_, *stored).workload();
          return response;
        } catch (const std::bad_alloc&) {
          return OutOfMemoryAfterCommit();
        }
      });

  // Raw bytes in, so that DecodeBatch can convert the workloads one at a time;
  // otherwise as AddUnary<RegisterBatchRequest, …>.
  server.AddUnaryRaw(
      std::string(kService) + "RegisterBatch",
      [this](const CallContext&, std::string_view bytes) -> Result<std::string> {
        bool parsed = false;
        // Out of memory while decoding, nothing has changed yet
        // (the agent reports its own allocation failures).
        Result<std::vector<workloads::Workload>> list = std::vector<workloads::Workload>();
        Status status;
        try {
          list = DecodeBatch(bytes, agent_.config().limits.max_apply_objects, &parsed);
          if (!parsed) return list.error();  // not a RegisterBatchRequest: no call to count
          status = list ? CheckNamesUnique(*list) : Status(list.error());
        } catch (const std::bad_alloc&) {
          list = std::vector<workloads::Workload>();  // frees what was decoded
          status = OutOfMemory("decoding the batch");
        }
        const size_t count = list ? list->size() : 0;
        if (status) status = agent_.Register(std::move(*list));
        if (!status) return status.error();
        v1::RegisterBatchResponse response;
        response.set_registered(static_cast<uint32_t>(count));
        return response.SerializeAsString();
      });

  server.AddUnary<v1::DeregisterRequest, v1::DeregisterResponse>(
      std::string(kService) + "Deregister",
      [this](const CallContext&,
             const v1::DeregisterRequest& request) -> Result<v1::DeregisterResponse> {
        if (request.name().empty()) {
          return MakeError(ErrorCode::kInvalidArgument, "name: required");
        }
        auto changes = agent_.Delete(
            {ObjectKey{Kind::kWorkload, NamespaceOrDefault(request.namespace_()), request.name()}},
            /*ignore_not_found=*/false);
        if (!changes) return changes.error();
        return v1::DeregisterResponse();
      });

  server.AddUnary<v1::GetRequest, v1::Object>(
      std::string(kService) + "Get",
      [this](const CallContext&, const v1::GetRequest& request) -> Result<v1::Object> {
        auto kind = FromProtoKind(request.ref().kind());
        if (!kind) return kind.error();
        ObjectKey key = KeyOfRef(*kind, request.ref().namespace_(), request.ref().name());
        const runtime::StoredObject* stored = agent_.Find(key);
        if (stored == nullptr && cluster_ != nullptr && *kind == Kind::kWorkload) {
          return RemoteWorkloadByName(agent_, *cluster_, key);
        }
        if (stored == nullptr) {
          return MakeError(ErrorCode::kNotFound, std::string(workloads::KindName(*kind)) + " " +
                                                     key.ns + "/" + key.name + " not found");
        }
        return ObjectWithStatus(agent_, cluster_, *stored);
      });

  server.AddUnary<v1::ListRequest, v1::ListResponse>(
      std::string(kService) + "List",
      [this](const CallContext&, const v1::ListRequest& request) -> Result<v1::ListResponse> {
        return List(request);
      });

  server.AddUnary<v1::ListNodesRequest, v1::ListNodesResponse>(
      std::string(kService) + "ListNodes",
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
          node->set_started_at(agent_.started_at());
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
      });

  server.AddUnary<v1::GetCaBundleRequest, v1::CaBundle>(
      std::string(kService) + "GetCaBundle",
      [this](const CallContext&, const v1::GetCaBundleRequest&) -> Result<v1::CaBundle> {
        v1::CaBundle bundle;
        bundle.set_trust_domain(agent_.ca().trust_domain());
        bundle.set_pem(agent_.ca().BundlePem());
        return bundle;
      });

  server.AddUnary<v1::GetCertificateRequest, v1::Certificate>(
      std::string(kService) + "GetCertificate",
      [this](const CallContext&,
             const v1::GetCertificateRequest& request) -> Result<v1::Certificate> {
        auto spiffe_id =
            agent_.SpiffeIdOfReplica(NamespaceOrDefault(request.namespace_()), request.replica());
        if (!spiffe_id) return spiffe_id.error();
        auto svid = certificates_.Certificate(*spiffe_id);
        if (!svid) return svid.error();
        v1::Certificate cert;
        cert.set_spiffe_id((*svid)->id.ToString());
        cert.set_chain_pem((*svid)->CertificateChainPem());
        cert.set_serial((*svid)->serial_hex);
        cert.set_not_before((*svid)->not_before);
        cert.set_not_after((*svid)->not_after);
        return cert;
      });

  server.AddUnary<v1::GetCredentialsRequest, v1::Credentials>(
      std::string(kService) + "GetCredentials",
      [this](const CallContext&,
             const v1::GetCredentialsRequest& request) -> Result<v1::Credentials> {
        auto replica =
            agent_.FindReplicaByName(NamespaceOrDefault(request.namespace_()), request.replica());
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
      });

  server.AddServerStreaming<v1::LogsRequest, v1::LogChunk>(
      std::string(kService) + "Logs",
      [this](const CallContext&, const v1::LogsRequest& request,
             ServerStreamWriter<v1::LogChunk> writer) { StreamLogs(request, std::move(writer)); });

  server.AddServerStreaming<v1::WatchRequest, v1::WatchEvent>(
      std::string(kService) + "Watch", [this](const CallContext&, const v1::WatchRequest& request,
                                              ServerStreamWriter<v1::WatchEvent> writer) {
        std::vector<Kind> kinds;
        for (int k : request.kinds()) {
          auto kind = FromProtoKind(static_cast<v1::Kind>(k));
          if (!kind) {
            writer.Finish(kind.error());
            return;
          }
          kinds.push_back(*kind);
        }
        if (kinds.empty())
          kinds.assign(std::begin(workloads::kAllKinds), std::end(workloads::kAllKinds));
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
  runtime::LogView view;
  view.timestamps = request.timestamps();
  if (request.has_since_seconds()) {
    const int64_t since = request.since_seconds().value();
    if (since <= 0) {
      writer.Finish(MakeError(ErrorCode::kInvalidArgument,
                              "since_seconds: must be more than 0, not " + std::to_string(since)));
      return;
    }
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    view.since_unix_nanos = (static_cast<int64_t>(now.tv_sec) - since) * 1'000'000'000;
  }
  const std::string replica = workload.metadata.name + "-" + std::to_string(ordinal);
  // The container: the one asked for, else the first (kubectl's default).
  const auto& app = std::get<workloads::ExecApp>(workload.spec.app);
  const std::vector<workloads::ExecContainer> containers = app.AllContainers();
  std::string names;
  for (const auto& c : containers) names += (names.empty() ? "" : ", ") + c.name;
  const std::optional<std::string> container_dir = runtime::ContainerLogDir(
      runtime::ReplicaLogDir(agent_.config().state_dir, ns, replica), app, request.container());
  if (!container_dir) {
    writer.Finish(MakeError(ErrorCode::kNotFound, "container \"" + request.container() +
                                                      "\" is not valid for replica " + ns + "/" +
                                                      replica + ": its containers are " + names));
    return;
  }
  const std::string container =
      request.container().empty() ? containers.front().name : request.container();
  {
    // Which container this is, and which there are (a client says which one
    // it defaulted to).
    v1::LogChunk first;
    first.set_container(container);
    for (const auto& c : containers) first.add_containers(c.name);
    if (!writer.Write(first)) return;
  }
  const std::string& dir = *container_dir;
  auto text = runtime::ReadLog(dir, request.previous(), tail, view);
  if (!text.ok()) {
    if (request.previous() || !request.follow()) {
      writer.Finish(MakeError(text.error().code,
                              (request.previous() ? "no previous run of " : "no log of ") + ns +
                                  "/" + replica +
                                  (containers.size() > 1 ? " container " + container : "")));
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
  runtime::LogFile* log =
      supervisor_ != nullptr ? supervisor_->FindLog(ns, replica, container) : nullptr;
  if (!request.follow() || request.previous() || log == nullptr) {
    writer.Finish({});
    return;
  }
  // Follow: every byte the process writes from now on, until the client
  // cancels (or the agent stops, which cancels every call first).
  auto id = std::make_shared<uint64_t>(0);
  auto filter = std::make_shared<runtime::LogStreamFilter>(view);
  *id = log->AddFollower([writer, log, id, filter](std::string_view bytes) mutable {
    v1::LogChunk chunk;
    chunk.set_data(filter->Feed(bytes));
    if (chunk.data().empty()) return;
    if (!writer.Write(chunk)) log->RemoveFollower(*id);
  });
  writer.OnCancel([log, id] { log->RemoveFollower(*id); });
}

}  // namespace podless::api
