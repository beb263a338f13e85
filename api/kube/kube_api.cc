#include "api/kube/kube_api.h"

#include <optional>
#include <utility>

#include "api/kube/endpoints.h"
#include "api/kube/kube_logs.h"
#include "api/kube/kube_watch.h"
#include "api/kube/media_type.h"
#include "api/kube/objects.h"
#include "api/kube/openapi.h"
#include "api/kube/write_handlers.h"
#include "api/label_selector.h"
#include "proxy/base/json.h"
#include "proxy/base/percent_decode.h"

namespace podless::api::kube {
namespace {

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> parts;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const size_t slash = path.find('/');
    parts.push_back(proxy::PercentDecode(path.substr(0, slash)));
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash);
  }
  return parts;
}

KubeResponse Json(std::string body) { return {200, "application/json", std::move(body)}; }

KubeResponse NotFoundPath() {
  return StatusResponse(404, "NotFound", "the server could not find the requested resource");
}

// A field selector, as far as podless's objects have fields to select by:
// metadata.name and metadata.namespace with =, == or !=, comma-separated;
// on events also the fields of the object they are about, which `kubectl
// describe` selects by (podless records no events, so none match).
struct FieldRequirement {
  std::string field;
  std::string value;
  bool equal = true;
};

bool IsEventField(std::string_view field) {
  static constexpr std::string_view kFields[] = {"involvedObject.kind",
                                                 "involvedObject.namespace",
                                                 "involvedObject.name",
                                                 "involvedObject.uid",
                                                 "involvedObject.apiVersion",
                                                 "involvedObject.resourceVersion",
                                                 "involvedObject.fieldPath",
                                                 "reason",
                                                 "reportingComponent",
                                                 "source",
                                                 "type"};
  for (std::string_view f : kFields) {
    if (field == f) return true;
  }
  return false;
}

Result<std::vector<FieldRequirement>> ParseFieldSelector(std::string_view text,
                                                         const Resource& resource) {
  std::vector<FieldRequirement> requirements;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    std::string_view part = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (part.empty()) continue;
    FieldRequirement r;
    size_t op = part.find("!=");
    size_t value_at = op + 2;
    if (op != std::string_view::npos) {
      r.equal = false;
    } else if ((op = part.find("==")) != std::string_view::npos) {
      value_at = op + 2;
    } else if ((op = part.find('=')) != std::string_view::npos) {
      value_at = op + 1;
    } else {
      return MakeError(ErrorCode::kInvalidArgument,
                       "invalid field selector: '" + std::string(part) + "'");
    }
    r.field = std::string(part.substr(0, op));
    r.value = std::string(part.substr(value_at));
    const bool event_field = resource.kind == "Event" && IsEventField(r.field);
    if (r.field != "metadata.name" && r.field != "metadata.namespace" && !event_field) {
      return MakeError(ErrorCode::kInvalidArgument, "field label not supported: " + r.field);
    }
    requirements.push_back(std::move(r));
  }
  return requirements;
}

// Where a chunked list goes on: the revision the first chunk was listed at
// and how many matching items came before. Written "REVISION.OFFSET"; a
// client treats it as opaque.
struct Chunk {
  uint64_t revision = 0;
  uint64_t offset = 0;
};

bool ParseNumber(std::string_view text, uint64_t* out) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = n;
  return true;
}

std::optional<Chunk> ParseContinue(std::string_view token) {
  const size_t dot = token.find('.');
  Chunk chunk;
  if (dot == std::string_view::npos || !ParseNumber(token.substr(0, dot), &chunk.revision) ||
      !ParseNumber(token.substr(dot + 1), &chunk.offset)) {
    return std::nullopt;
  }
  return chunk;
}

bool FieldsMatch(const std::vector<FieldRequirement>& requirements, const std::string& name,
                 const std::string& ns) {
  for (const FieldRequirement& r : requirements) {
    // Items have no event fields: an event field's value is "".
    const std::string actual = r.field == "metadata.name"        ? name
                               : r.field == "metadata.namespace" ? ns
                                                                 : std::string();
    if ((actual == r.value) != r.equal) return false;
  }
  return true;
}

}  // namespace

std::string StatusJson(int code, std::string_view reason, std::string_view message,
                       const StatusDetails& details) {
  proxy::JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("Status");
  w.Key("apiVersion").String("v1");
  w.Key("metadata").BeginObject().EndObject();
  w.Key("status").String("Failure");
  w.Key("message").String(message);
  w.Key("reason").String(reason);
  if (!details.name.empty() || !details.group.empty() || !details.kind.empty() ||
      !details.causes.empty()) {
    w.Key("details").BeginObject();
    if (!details.name.empty()) w.Key("name").String(details.name);
    if (!details.group.empty()) w.Key("group").String(details.group);
    if (!details.kind.empty()) w.Key("kind").String(details.kind);
    if (!details.causes.empty()) {
      w.Key("causes").BeginArray();
      for (const StatusCause& c : details.causes) {
        w.BeginObject().Key("reason").String(c.reason).Key("message").String(c.message);
        w.Key("field").String(c.field).EndObject();
      }
      w.EndArray();
    }
    w.EndObject();
  }
  w.Key("code").Int(code);
  w.EndObject();
  return w.Take();
}

KubeResponse StatusResponse(int code, std::string_view reason, std::string_view message,
                            const StatusDetails& details) {
  return {code, "application/json", StatusJson(code, reason, message, details)};
}

std::string StatusJson(int code, std::string_view reason, std::string_view message,
                       std::string_view details_kind, std::string_view details_name) {
  return StatusJson(code, reason, message,
                    StatusDetails{std::string(details_name), "", std::string(details_kind), {}});
}

KubeResponse StatusResponse(int code, std::string_view reason, std::string_view message,
                            std::string_view details_kind, std::string_view details_name) {
  return {code, "application/json", StatusJson(code, reason, message, details_kind, details_name)};
}

std::string WarningHeader(std::string_view text) {
  std::string out = "299 - \"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += (c == '\r' || c == '\n') ? ' ' : c;
  }
  return out + "\"";
}

Status ObjectSource::Apply(const std::string&, bool) {
  return MakeError(ErrorCode::kPermissionDenied, "this Kubernetes API serves reads only");
}

Status ObjectSource::Delete(v1::Kind, const std::string&, const std::string&) {
  return MakeError(ErrorCode::kPermissionDenied, "this Kubernetes API serves reads only");
}

KubeApi::KubeApi(ObjectSource& source, std::string server_address, std::function<int64_t()> now)
    : source_(source), server_address_(std::move(server_address)), now_(std::move(now)) {}

KubeResponse KubeApi::Handle(const KubeRequest& request) {
  const size_t question = request.target.find('?');
  const std::string_view path = std::string_view(request.target).substr(0, question);
  Query query;
  if (question != std::string::npos) {
    std::string_view rest = std::string_view(request.target).substr(question + 1);
    while (!rest.empty()) {
      const size_t amp = rest.find('&');
      std::string_view pair = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
      const size_t eq = pair.find('=');
      const std::string key = proxy::PercentDecode(pair.substr(0, eq), /*plus_is_space=*/true);
      const std::string value =
          eq == std::string_view::npos ? "" : proxy::PercentDecode(pair.substr(eq + 1), true);
      if (key == "labelSelector") query.label_selector = value;
      if (key == "fieldSelector") query.field_selector = value;
      if (key == "watch") query.watch = value == "true" || value == "1";
      query.params[key] = value;
      if (key == "limit") query.limit = value;
      if (key == "continue") query.continue_token = value;
    }
  }
  const bool read = request.method == "GET" || request.method == "HEAD";
  const std::vector<std::string> parts = SplitPath(path);
  if (parts.size() == 1 && parts[0] == "version" && read) return Json(VersionJson());
  if (!parts.empty() && parts[0] == "openapi" && read) return ServeOpenApi(parts, request);
  const bool discovery =
      read &&
      ((parts.size() == 1 && (parts[0] == "api" || parts[0] == "apis")) ||
       (parts.size() == 2 && parts[0] == "api") || (parts.size() == 3 && parts[0] == "apis"));
  if (discovery) return Discovery(parts, request);
  if (parts.size() >= 3 && parts[0] == "api") {
    return Serve("", parts[1], std::vector<std::string>(parts.begin() + 2, parts.end()), query,
                 request);
  }
  if (parts.size() >= 4 && parts[0] == "apis") {
    return Serve(parts[1], parts[2], std::vector<std::string>(parts.begin() + 3, parts.end()),
                 query, request);
  }
  return NotFoundPath();
}

KubeResponse KubeApi::Discovery(const std::vector<std::string>& parts, const KubeRequest& request) {
  if (parts.size() == 1) {
    const bool core = parts[0] == "api";
    const std::string aggregated = AggregatedDiscoveryVersion(request.accept);
    if (!aggregated.empty()) {
      return {200, AggregatedDiscoveryContentType(aggregated),
              AggregatedDiscoveryJson(core, aggregated)};
    }
    return Json(core ? ApiVersionsJson(server_address_) : ApiGroupListJson());
  }
  std::string list = parts[0] == "api" ? ApiResourceListJson("", parts[1])
                                       : ApiResourceListJson(parts[1], parts[2]);
  if (list.empty()) return NotFoundPath();
  return Json(std::move(list));
}

KubeResponse KubeApi::Serve(const std::string& group, const std::string& version,
                            const std::vector<std::string>& rest, const Query& query,
                            const KubeRequest& request) {
  std::string ns, resource_name, name;
  bool scale = false;
  if (rest.size() >= 3 && rest[0] == "namespaces") {
    // The subresources served: a pod's log (read only), and scale, of the
    // workload kinds.
    if (rest.size() == 5 && group.empty() && version == "v1" && rest[2] == "pods" &&
        rest[4] == "log") {
      if (request.method != "GET" && request.method != "HEAD") {
        return StatusResponse(405, "MethodNotAllowed", "a pod's log is only read");
      }
      return Logs(rest[1], rest[3], query);
    }
    scale = rest.size() == 5 && rest[4] == "scale" && group == "apps" && rest[2] != "daemonsets";
    if (rest.size() > 4 && !scale) return NotFoundPath();
    ns = rest[1];
    resource_name = rest[2];
    if (rest.size() >= 4) name = rest[3];
  } else {
    if (rest.size() > 2) return NotFoundPath();
    resource_name = rest[0];
    if (rest.size() == 2) name = rest[1];
  }
  const Resource* resource = FindResource(group, version, resource_name);
  if (resource == nullptr) return NotFoundPath();
  const bool read = request.method == "GET" || request.method == "HEAD";
  if ((!resource->namespaced && !ns.empty()) ||
      (resource->namespaced && (!name.empty() || !read) && ns.empty())) {
    return NotFoundPath();
  }
  if (scale || !read) {
    WriteTarget target{
        resource,
        ns,
        name,
        scale,
        query.params,
        [this, resource, ns](const std::string& object) -> std::optional<std::string> {
          KubeResponse got =
              ListOrGet(*resource, ns, object, Query{}, KubeRequest{"GET", "", "application/json"});
          if (got.status != 200) return std::nullopt;
          return std::move(got.body);
        }};
    const std::string key = resource->name + "/" + ns + "/" + name;
    target.managed = name.empty() ? nullptr : &managed_fields_[key];
    target.managed_of = [this, resource, ns](const std::string& object) {
      return &managed_fields_[resource->name + "/" + ns + "/" + object];
    };
    target.now = now_();
    KubeResponse response = HandleWrite(source_, target, request);
    if (auto it = managed_fields_.find(key); it != managed_fields_.end() && it->second.empty()) {
      managed_fields_.erase(it);
    }
    return response;
  }
  if (query.watch) return Watch(*resource, ns, name, query, request);
  KubeResponse response = ListOrGet(*resource, ns, name, query, request);
  auto managed = managed_fields_.find(resource->name + "/" + ns + "/" + name);
  if (!name.empty() && response.status == 200 && response.content_type == "application/json" &&
      managed != managed_fields_.end()) {
    response.body = WithManagedFields(response.body, managed->second);
  }
  return response;
}

KubeResponse KubeApi::ListOrGet(const Resource& resource, const std::string& ns,
                                const std::string& name, const Query& query,
                                const KubeRequest& request) {
  auto selector = LabelSelector::Parse(query.label_selector);
  if (!selector) return StatusResponse(400, "BadRequest", selector.error().message);
  auto fields = ParseFieldSelector(query.field_selector, resource);
  if (!fields) return StatusResponse(400, "BadRequest", fields.error().message);
  // Chunks (kubectl asks for 500 items at a time): each renders only its
  // items. A chunk is of the state at the revision of the first: when the
  // agent's state has changed since, the token has expired (410), as the
  // API server answers for a continue token older than its compaction.
  uint64_t limit = 0;
  if (!query.limit.empty() && !ParseNumber(query.limit, &limit)) {
    return StatusResponse(400, "BadRequest", "invalid limit: \"" + query.limit + "\"");
  }
  std::optional<Chunk> chunk;
  if (!query.continue_token.empty()) {
    chunk = ParseContinue(query.continue_token);
    if (!chunk) return StatusResponse(400, "BadRequest", "invalid continue token");
  }
  // Endpoints are made of the Services (listed first, for the revision) and
  // the workloads they select.
  const bool endpoints =
      resource.source == Source::kEndpoints || resource.source == Source::kEndpointSlices;
  const v1::Kind list_kind = endpoints ? v1::SERVICE : resource.object_kind;
  const std::string list_ns = resource.namespaced ? ns : "";
  const int64_t now = now_();
  std::erase_if(snapshots_, [now](const Snapshot& s) { return now - s.used_at > kSnapshotTtl; });
  Snapshot* snapshot = nullptr;
  if (chunk) {
    for (Snapshot& s : snapshots_) {
      if (s.kind == list_kind && s.ns == list_ns && s.revision == chunk->revision) {
        snapshot = &s;
        s.used_at = now;
      }
    }
  }
  std::shared_ptr<const std::vector<v1::Object>> objects;
  uint64_t revision = 0;
  if (snapshot != nullptr) {
    objects = snapshot->objects;
    revision = snapshot->revision;
  } else {
    auto listed = source_.List(list_kind, list_ns);
    if (!listed) return StatusResponse(500, "InternalError", listed.error().message);
    revision = listed->resource_version();
    if (chunk && chunk->revision != revision) {
      return StatusResponse(410, "Expired",
                            "The provided continue parameter is too old to display a consistent "
                            "list result. You can start a new list without the continue "
                            "parameter.");
    }
    auto moved = std::make_shared<std::vector<v1::Object>>();
    moved->reserve(listed->objects_size());
    for (v1::Object& object : *listed->mutable_objects()) moved->push_back(std::move(object));
    objects = std::move(moved);
  }
  ListMeta list_meta(revision);
  const uint64_t first = chunk ? chunk->offset : 0;
  uint64_t matched = 0;
  auto select = [&](const std::string& item_name, const std::string& item_ns,
                    const std::map<std::string, std::string>& labels) {
    if (!name.empty() && item_name != name) return false;
    if (!ns.empty() && resource.namespaced && item_ns != ns) return false;
    if (!selector->Matches(labels) || !FieldsMatch(*fields, item_name, item_ns)) return false;
    const uint64_t index = matched++;
    return index >= first && (limit == 0 || index < first + limit);
  };
  const std::string table = TableVersion(request.accept);
  std::vector<Item> items;
  if (endpoints) {
    auto workloads = source_.List(v1::WORKLOAD, list_ns);
    if (!workloads) return StatusResponse(500, "InternalError", workloads.error().message);
    const std::vector<v1::Object> selected(workloads->objects().begin(),
                                           workloads->objects().end());
    for (Item& item : EndpointsItems(resource, *objects, selected, now)) {
      if (select(item.name, item.ns, item.labels)) items.push_back(std::move(item));
    }
  } else {
    items = ItemsOf(resource, *objects, now, select, table.empty());
  }
  if (limit > 0 && matched > first + limit) {
    list_meta.continue_token = std::to_string(revision) + "." + std::to_string(first + limit);
    list_meta.remaining = matched - first - limit;
    if (snapshot == nullptr) {
      if (snapshots_.size() >= kMaxSnapshots) snapshots_.erase(snapshots_.begin());
      snapshots_.push_back({list_kind, list_ns, revision, now, objects});
    }
  } else if (snapshot != nullptr) {
    // The last chunk: the listing is read.
    snapshots_.erase(snapshots_.begin() + (snapshot - snapshots_.data()));
  }
  if (!name.empty() && items.empty()) {
    return StatusResponse(404, "NotFound", resource.name + " \"" + name + "\" not found",
                          resource.name, name);
  }
  if (!table.empty()) {
    return {200, "application/json;as=Table;v=" + table + ";g=meta.k8s.io",
            TableJson(resource, table, items, list_meta)};
  }
  if (!name.empty()) return Json(std::move(items.front().json));
  return Json(ListJson(resource, items, list_meta));
}

}  // namespace podless::api::kube

namespace podless::api::kube {
namespace {

// A query parameter that must be an integer of at least `min`; `fallback`
// when absent. The error names the parameter as the API server does.
Result<int64_t> IntParam(const std::map<std::string, std::string>& params, const std::string& key,
                         int64_t min, int64_t fallback) {
  auto it = params.find(key);
  if (it == params.end() || it->second.empty()) return fallback;
  const std::string& v = it->second;
  const bool digits = v.size() <= 18 && v.find_first_not_of("-0123456789") == std::string::npos &&
                      v.find('-', 1) == std::string::npos && v != "-";
  const int64_t n = digits ? std::stoll(v) : 0;
  if (!digits || n < min) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        key + ": Invalid value: \"" + v + "\": must be an integer >= " + std::to_string(min));
  }
  return n;
}

bool BoolParam(const std::map<std::string, std::string>& params, const std::string& key) {
  auto it = params.find(key);
  return it != params.end() && (it->second == "true" || it->second == "1");
}

// A 400 Invalid Status naming the parameter (details.causes), as the API
// server answers a bad query parameter.
KubeResponse InvalidParam(const std::string& field, const std::string& message) {
  return StatusResponse(400, "BadRequest", message,
                        StatusDetails{"", "", "", {{"FieldValueInvalid", field, message}}});
}

}  // namespace

KubeResponse KubeApi::Watch(const Resource& resource, const std::string& ns,
                            const std::string& name, const Query& query,
                            const KubeRequest& request) {
  if (watch_hub_ == nullptr) {
    return StatusResponse(405, "MethodNotAllowed", "watch is not served by this server");
  }
  auto selector = LabelSelector::Parse(query.label_selector);
  if (!selector) return InvalidParam("labelSelector", selector.error().message);
  auto fields = ParseFieldSelector(query.field_selector, resource);
  if (!fields) return InvalidParam("fieldSelector", fields.error().message);
  auto timeout = IntParam(query.params, "timeoutSeconds", 0, 0);
  if (!timeout) return InvalidParam("timeoutSeconds", timeout.error().message);
  WatchParams params;
  params.resource = &resource;
  params.ns = resource.namespaced ? ns : "";
  params.matches = [selector = *selector, fields = *fields, name](const Item& item) {
    return (name.empty() || item.name == name) && selector.Matches(item.labels) &&
           FieldsMatch(fields, item.name, item.ns);
  };
  auto param = [&](const std::string& key) {
    auto it = query.params.find(key);
    return it == query.params.end() ? std::string() : it->second;
  };
  params.resource_version = param("resourceVersion");
  params.bookmarks = BoolParam(query.params, "allowWatchBookmarks");
  params.send_initial_events = BoolParam(query.params, "sendInitialEvents");
  const std::string match = param("resourceVersionMatch");
  // The API server's rules for a watch: resourceVersionMatch only with
  // sendInitialEvents, and then only NotOlderThan.
  if (!match.empty() && query.params.count("sendInitialEvents") == 0) {
    return InvalidParam("resourceVersionMatch",
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents "
                        "is provided");
  }
  if (!match.empty() && match != "NotOlderThan") {
    return InvalidParam("resourceVersionMatch", "resourceVersionMatch: Unsupported value: \"" +
                                                    match +
                                                    "\": supported values: \"NotOlderThan\"");
  }
  if (params.send_initial_events && match != "NotOlderThan") {
    return InvalidParam("resourceVersionMatch",
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan");
  }
  params.timeout_seconds = *timeout;
  params.table_version = TableVersion(request.accept);
  return watch_hub_->Watch(std::move(params));
}

KubeResponse KubeApi::Logs(const std::string& ns, const std::string& pod, const Query& query) {
  if (log_source_ == nullptr) return NotFoundPath();
  LogParams params;
  params.ns = ns;
  params.pod = pod;
  auto it = query.params.find("container");
  if (it != query.params.end()) params.container = it->second;
  params.follow = BoolParam(query.params, "follow");
  params.previous = BoolParam(query.params, "previous");
  params.timestamps = BoolParam(query.params, "timestamps");
  auto tail = IntParam(query.params, "tailLines", 0, -1);
  if (!tail) return InvalidParam("tailLines", tail.error().message);
  auto limit = IntParam(query.params, "limitBytes", 1, 0);
  if (!limit) return InvalidParam("limitBytes", limit.error().message);
  auto since = IntParam(query.params, "sinceSeconds", 1, 0);
  if (!since) return InvalidParam("sinceSeconds", since.error().message);
  params.tail_lines = *tail;
  params.limit_bytes = *limit;
  params.since_seconds = *since;
  return log_source_->Logs(params);
}

}  // namespace podless::api::kube
