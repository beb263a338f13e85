#include "api/kube/kube_api.h"

#include <utility>

#include "api/kube/kube_logs.h"
#include "api/kube/kube_watch.h"
#include "api/kube/media_type.h"
#include "api/kube/objects.h"
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
// metadata.name and metadata.namespace with =, == or !=, comma-separated.
struct FieldRequirement {
  std::string field;
  std::string value;
  bool equal = true;
};

Result<std::vector<FieldRequirement>> ParseFieldSelector(std::string_view text) {
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
    if (r.field != "metadata.name" && r.field != "metadata.namespace") {
      return MakeError(ErrorCode::kInvalidArgument, "field label not supported: " + r.field);
    }
    requirements.push_back(std::move(r));
  }
  return requirements;
}

bool FieldsMatch(const std::vector<FieldRequirement>& requirements, const Item& item) {
  for (const FieldRequirement& r : requirements) {
    const std::string& actual = r.field == "metadata.name" ? item.name : item.ns;
    if ((actual == r.value) != r.equal) return false;
  }
  return true;
}

}  // namespace

std::string StatusJson(int code, std::string_view reason, std::string_view message,
                       std::string_view details_kind, std::string_view details_name) {
  proxy::JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("Status");
  w.Key("apiVersion").String("v1");
  w.Key("metadata").BeginObject().EndObject();
  w.Key("status").String("Failure");
  w.Key("message").String(message);
  w.Key("reason").String(reason);
  if (!details_kind.empty() || !details_name.empty()) {
    w.Key("details").BeginObject();
    if (!details_name.empty()) w.Key("name").String(details_name);
    if (!details_kind.empty()) w.Key("kind").String(details_kind);
    w.EndObject();
  }
  w.Key("code").Int(code);
  w.EndObject();
  return w.Take();
}

KubeResponse StatusResponse(int code, std::string_view reason, std::string_view message,
                            std::string_view details_kind, std::string_view details_name) {
  return {code, "application/json", StatusJson(code, reason, message, details_kind, details_name)};
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
    }
  }
  if (request.method != "GET" && request.method != "HEAD") {
    return StatusResponse(405, "MethodNotAllowed",
                          "the server does not allow this method on the requested resource "
                          "(podless serves the Kubernetes API read-only so far)");
  }
  const std::vector<std::string> parts = SplitPath(path);
  if (parts.size() == 1 && parts[0] == "version") return Json(VersionJson());
  const bool discovery = (parts.size() == 1 && (parts[0] == "api" || parts[0] == "apis")) ||
                         (parts.size() == 2 && parts[0] == "api") ||
                         (parts.size() == 3 && parts[0] == "apis");
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
  if (rest.size() >= 3 && rest[0] == "namespaces") {
    // The one subresource served: a pod's log.
    if (rest.size() == 5 && group.empty() && version == "v1" && rest[2] == "pods" &&
        rest[4] == "log") {
      return Logs(rest[1], rest[3], query);
    }
    if (rest.size() > 4) return NotFoundPath();
    ns = rest[1];
    resource_name = rest[2];
    if (rest.size() == 4) name = rest[3];
  } else {
    if (rest.size() > 2) return NotFoundPath();
    resource_name = rest[0];
    if (rest.size() == 2) name = rest[1];
  }
  const Resource* resource = FindResource(group, version, resource_name);
  if (resource == nullptr) return NotFoundPath();
  if ((!resource->namespaced && !ns.empty()) ||
      (resource->namespaced && !name.empty() && ns.empty())) {
    return NotFoundPath();
  }
  if (query.watch) return Watch(*resource, ns, name, query, request);
  return ListOrGet(*resource, ns, name, query, request);
}

KubeResponse KubeApi::ListOrGet(const Resource& resource, const std::string& ns,
                                const std::string& name, const Query& query,
                                const KubeRequest& request) {
  auto selector = LabelSelector::Parse(query.label_selector);
  if (!selector) return StatusResponse(400, "BadRequest", selector.error().message);
  auto fields = ParseFieldSelector(query.field_selector);
  if (!fields) return StatusResponse(400, "BadRequest", fields.error().message);
  auto listed = source_.List(resource.object_kind, resource.namespaced ? ns : "");
  if (!listed) return StatusResponse(500, "InternalError", listed.error().message);
  const std::vector<v1::Object> objects(listed->objects().begin(), listed->objects().end());
  std::vector<Item> items;
  for (Item& item : ItemsOf(resource, objects, now_())) {
    if (!name.empty() && item.name != name) continue;
    if (!ns.empty() && resource.namespaced && item.ns != ns) continue;
    if (!selector->Matches(item.labels) || !FieldsMatch(*fields, item)) continue;
    items.push_back(std::move(item));
  }
  if (!name.empty() && items.empty()) {
    return StatusResponse(404, "NotFound", resource.name + " \"" + name + "\" not found",
                          resource.name, name);
  }
  const std::string table = TableVersion(request.accept);
  if (!table.empty()) {
    return {200, "application/json;as=Table;v=" + table + ";g=meta.k8s.io",
            TableJson(resource, table, items, listed->resource_version())};
  }
  if (!name.empty()) return Json(std::move(items.front().json));
  return Json(ListJson(resource, items, listed->resource_version()));
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
  proxy::JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("Status");
  w.Key("apiVersion").String("v1");
  w.Key("metadata").BeginObject().EndObject();
  w.Key("status").String("Failure");
  w.Key("message").String(message);
  w.Key("reason").String("BadRequest");
  w.Key("details").BeginObject();
  w.Key("causes").BeginArray();
  w.BeginObject();
  w.Key("reason").String("FieldValueInvalid");
  w.Key("message").String(message);
  w.Key("field").String(field);
  w.EndObject();
  w.EndArray();
  w.EndObject();
  w.Key("code").Int(400);
  w.EndObject();
  return {400, "application/json", w.Take(), nullptr};
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
  auto fields = ParseFieldSelector(query.field_selector);
  if (!fields) return InvalidParam("fieldSelector", fields.error().message);
  auto timeout = IntParam(query.params, "timeoutSeconds", 0, 0);
  if (!timeout) return InvalidParam("timeoutSeconds", timeout.error().message);
  WatchParams params;
  params.resource = &resource;
  params.ns = resource.namespaced ? ns : "";
  params.matches = [selector = *selector, fields = *fields, name](const Item& item) {
    return (name.empty() || item.name == name) && selector.Matches(item.labels) &&
           FieldsMatch(fields, item);
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
