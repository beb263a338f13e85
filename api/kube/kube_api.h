// KubeApi: the Kubernetes API's requests, answered from the agent's state.
// The HTTP and TLS around it are KubeServer's (kube_server.h); this is the
// router, by group, version and resource (resources.h), and the handlers,
// so both are tested without sockets.
//
// GET of discovery, /version, OpenAPI v3 (openapi.h), and list/get of
// every resource in resources.h with labelSelector and fieldSelector
// (metadata.name, metadata.namespace; on events also involvedObject.*), as
// JSON or as a server-side Table; watch (kube_watch.h) and pod logs
// (kube_logs.h), streamed. Events are always none; Endpoints and
// EndpointSlices are made from Services (endpoints.h). The write verbs and
// the scale subresource are write_handlers.h's.
// Anything else is answered with a Status object as the Kubernetes API
// server answers it (404 NotFound, 405 MethodNotAllowed, 400 BadRequest).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/kube/managed_fields.h"
#include "api/kube/resources.h"
#include "api/kube/response_stream.h"
#include "podless/v1/runtime.pb.h"
#include "workloads/result.h"

namespace podless::api::kube {

class WatchHub;   // kube_watch.h
class LogSource;  // kube_logs.h

// Where the objects come from: the agent's List (api/runtime_service.h),
// or a fake in tests.
class ObjectSource {
 public:
  virtual ~ObjectSource() = default;
  // Every object of `kind` in `ns` ("": every namespace), with its status,
  // and the agent's revision when listed.
  virtual Result<v1::ListResponse> List(v1::Kind kind, const std::string& ns) = 0;
  // The writes (write_handlers.h): one document, YAML or JSON, applied as
  // `podless apply` applies it, all or nothing (nothing written under
  // `dry_run`); errors as the agent reports them ("file:line:col: field:
  // message" lines for a document it rejects). A source that does not
  // override these is read-only.
  virtual Status Apply(const std::string& manifest, bool dry_run);
  // Deletes one object (`kind` as List takes it); NOT_FOUND when absent.
  virtual Status Delete(v1::Kind kind, const std::string& ns, const std::string& name);
};

struct KubeRequest {
  std::string method;              // "GET"
  std::string target;              // "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb"
  std::string accept;              // the Accept header
  std::string content_type = {};   // the Content-Type header, of a body
  std::string body = {};           // the request body, whole
  std::string if_none_match = {};  // the If-None-Match header (OpenAPI's ETags)
};

struct KubeResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // What the API server says about caching: everything but OpenAPI
  // documents named by their hash is private and not to be reused.
  std::string cache_control = "no-cache, private";
  // More headers (ETag, Location, Vary, Expires).
  std::vector<std::pair<std::string, std::string>> headers = {};
  // Warning headers (RFC 7234 299), which kubectl prints as "Warning: ...".
  std::vector<std::string> warnings = {};
  // Set: the body is streamed from it (a watch, `logs -f`) and `body` is
  // not sent; HTTP/1.1 sends it chunked, HTTP/2 as DATA frames.
  ResponseStreamPtr stream = nullptr;
};

// A Status object (kind: Status) of a failed request; `details_kind` and
// `details_name` fill `details` when not empty.
// A Status's details: the object (name, group, kind: the resource for
// NotFound, AlreadyExists and Conflict, the Kind for Invalid) and one cause
// per field, which kubectl prints as "<field>: <message>".
struct StatusCause {
  std::string reason;  // FieldValueInvalid
  std::string field;   // spec.replicas
  std::string message;
};
struct StatusDetails {
  std::string name;
  std::string group;
  std::string kind;
  std::vector<StatusCause> causes;
};
std::string StatusJson(int code, std::string_view reason, std::string_view message,
                       const StatusDetails& details);
KubeResponse StatusResponse(int code, std::string_view reason, std::string_view message,
                            const StatusDetails& details);
std::string StatusJson(int code, std::string_view reason, std::string_view message,
                       std::string_view details_kind = "", std::string_view details_name = "");
KubeResponse StatusResponse(int code, std::string_view reason, std::string_view message,
                            std::string_view details_kind = "", std::string_view details_name = "");

// A Warning header's value for `text`: 299 - "text" (quotes escaped).
std::string WarningHeader(std::string_view text);

class KubeApi {
 public:
  // `server_address`: host:port as clients reach the server (for /api).
  // `now`: unix seconds (AGE columns).
  KubeApi(ObjectSource& source, std::string server_address, std::function<int64_t()> now);

  KubeResponse Handle(const KubeRequest& request);

  // Where watches and logs are served from (null: 405 for watch, 404 for
  // logs). Owned by the caller; set before the first request.
  void SetWatchHub(WatchHub* hub) { watch_hub_ = hub; }
  void SetLogSource(LogSource* logs) { log_source_ = logs; }

 private:
  struct Query {
    std::string label_selector;
    std::string field_selector;
    bool watch = false;
    std::map<std::string, std::string> params;  // every parameter, decoded
    std::string limit;                          // ?limit=: a chunk of at most this many
    std::string continue_token;                 // ?continue=: the chunk after a previous one
  };
  KubeResponse Discovery(const std::vector<std::string>& parts, const KubeRequest& request);
  // A path below /api/<version>/ or /apis/<group>/<version>/: `rest` is
  // [namespaces, NS,] RESOURCE [, NAME].
  KubeResponse Serve(const std::string& group, const std::string& version,
                     const std::vector<std::string>& rest, const Query& query,
                     const KubeRequest& request);
  KubeResponse ListOrGet(const Resource& resource, const std::string& ns, const std::string& name,
                         const Query& query, const KubeRequest& request);

  // What a chunked list (?limit=) is read from: the first chunk's listing,
  // kept until its last chunk is read or kSnapshotTtl seconds pass unused,
  // so each chunk costs its own items only (not a listing of all: 100,000
  // pods in 500s were 200 listings) and every chunk is of one state, as the
  // API server's are. At most kMaxSnapshots, the oldest dropped first.
  struct Snapshot {
    v1::Kind kind = v1::KIND_UNSPECIFIED;
    std::string ns;
    uint64_t revision = 0;
    int64_t used_at = 0;  // unix seconds
    std::shared_ptr<const std::vector<v1::Object>> objects;
  };
  static constexpr int64_t kSnapshotTtl = 60;
  static constexpr size_t kMaxSnapshots = 4;

  KubeResponse Watch(const Resource& resource, const std::string& ns, const std::string& name,
                     const Query& query, const KubeRequest& request);
  KubeResponse Logs(const std::string& ns, const std::string& pod, const Query& query);

  ObjectSource& source_;
  WatchHub* watch_hub_ = nullptr;
  LogSource* log_source_ = nullptr;
  std::string server_address_;
  std::function<int64_t()> now_;
  std::vector<Snapshot> snapshots_;
  // Server-side apply's field managers, by "resource/namespace/name". Kept
  // in memory: a restart forgets them (every field is then free to take),
  // and changes made outside this API (`podless apply`) are nobody's.
  std::map<std::string, ManagedFields> managed_fields_;
};

}  // namespace podless::api::kube
