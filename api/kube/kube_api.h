// KubeApi: the Kubernetes API's requests, answered from the agent's state.
// The HTTP and TLS around it are KubeServer's (kube_server.h); this is the
// router, by group, version and resource (resources.h), and the handlers,
// so both are tested without sockets.
//
// Read-only this far: GET of discovery, /version, and list/get of every
// resource in resources.h with labelSelector and fieldSelector
// (metadata.name, metadata.namespace), as JSON or as a server-side Table;
// watch (kube_watch.h) and pod logs (kube_logs.h), streamed.
// Anything else is answered with a Status object as the Kubernetes API
// server answers it (404 NotFound, 405 MethodNotAllowed, 400 BadRequest).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

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
};

struct KubeRequest {
  std::string method;        // "GET"
  std::string target;        // "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb"
  std::string accept;        // the Accept header
  std::string content_type;  // the Content-Type header, of a body
  std::string body;          // the request body, whole
};

struct KubeResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Set: the body is streamed from it (a watch, `logs -f`) and `body` is
  // not sent; HTTP/1.1 sends it chunked, HTTP/2 as DATA frames.
  ResponseStreamPtr stream;
};

// A Status object (kind: Status) of a failed request; `details_kind` and
// `details_name` fill `details` when not empty.
std::string StatusJson(int code, std::string_view reason, std::string_view message,
                       std::string_view details_kind = "", std::string_view details_name = "");
KubeResponse StatusResponse(int code, std::string_view reason, std::string_view message,
                            std::string_view details_kind = "", std::string_view details_name = "");

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
    // Every other parameter, decoded (resourceVersion, follow, ...).
    std::map<std::string, std::string> params;
  };
  KubeResponse Discovery(const std::vector<std::string>& parts, const KubeRequest& request);
  // A path below /api/<version>/ or /apis/<group>/<version>/: `rest` is
  // [namespaces, NS,] RESOURCE [, NAME].
  KubeResponse Serve(const std::string& group, const std::string& version,
                     const std::vector<std::string>& rest, const Query& query,
                     const KubeRequest& request);
  KubeResponse ListOrGet(const Resource& resource, const std::string& ns, const std::string& name,
                         const Query& query, const KubeRequest& request);

  KubeResponse Watch(const Resource& resource, const std::string& ns, const std::string& name,
                     const Query& query, const KubeRequest& request);
  KubeResponse Logs(const std::string& ns, const std::string& pod, const Query& query);

  ObjectSource& source_;
  WatchHub* watch_hub_ = nullptr;
  LogSource* log_source_ = nullptr;
  std::string server_address_;
  std::function<int64_t()> now_;
};

}  // namespace podless::api::kube
