#include "api/kube/openapi.h"

#include <openssl/sha.h>

#include <cctype>
#include <ctime>
#include <map>
#include <utility>

#include "api/kube/media_type.h"
#include "api/kube/resources.h"
#include "api/kube/schemas.h"
#include "proxy/base/json.h"
#include "proxy/base/percent_decode.h"

namespace podless::api::kube {
namespace {

using proxy::JsonWriter;

constexpr std::string_view kRefPrefix = "#/components/schemas/";
constexpr std::string_view kProtobuf = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf";

// "" group: "api/v1"; else "apis/<group>/<version>": the discovery key.
std::string GroupVersionPath(std::string_view group, std::string_view version) {
  if (group.empty()) return "api/" + std::string(version);
  return "apis/" + std::string(group) + "/" + std::string(version);
}

// Kubernetes' operationId prefix: "CoreV1", "AppsV1", "SecurityIstioIoV1".
std::string OperationPrefix(const Resource& r) {
  std::string prefix;
  bool upper = true;
  for (char c : r.group.empty() ? std::string("core") : r.group) {
    if (c == '.' || c == '-') {
      upper = true;
      continue;
    }
    prefix += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  std::string version = r.version;
  if (!version.empty()) version[0] = static_cast<char>(std::toupper(version[0]));
  return prefix + version;
}

void WriteQueryParameter(JsonWriter& w, std::string_view name, std::string_view type,
                         std::string_view description) {
  w.BeginObject();
  w.Key("name").String(name);
  w.Key("in").String("query");
  w.Key("description").String(description);
  w.Key("schema").BeginObject().Key("type").String(type);
  if (type == "string") w.Key("uniqueItems").Bool(true);
  w.EndObject();
  w.EndObject();
}

void WritePathParameter(JsonWriter& w, std::string_view name, std::string_view description) {
  w.BeginObject();
  w.Key("name").String(name);
  w.Key("in").String("path");
  w.Key("description").String(description);
  w.Key("required").Bool(true);
  w.Key("schema").BeginObject().Key("type").String("string").Key("uniqueItems").Bool(true);
  w.EndObject();
  w.EndObject();
}

void WriteSchemaRef(JsonWriter& w, std::string_view name) {
  w.Key("schema").BeginObject();
  w.Key("$ref").String(std::string(kRefPrefix) + std::string(name));
  w.EndObject();
}

void WriteJsonResponse(JsonWriter& w, std::string_view code, std::string_view schema) {
  w.Key(code).BeginObject();
  w.Key("description").String(code == "201" ? "Created" : "OK");
  w.Key("content").BeginObject();
  for (const char* type : {"application/json", "application/yaml"}) {
    w.Key(type).BeginObject();
    WriteSchemaRef(w, schema);
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
}

// The parameters of the writes: kubectl looks for fieldValidation in the
// PATCH operation of a kind to decide that the server validates fields.
void WriteWriteParameters(JsonWriter& w, bool patch) {
  WriteQueryParameter(w, "dryRun", "string",
                      "When present, indicates that modifications should not be persisted.");
  WriteQueryParameter(w, "fieldManager", "string",
                      "fieldManager is a name associated with the actor or entity that is making "
                      "these changes.");
  WriteQueryParameter(w, "fieldValidation", "string",
                      "fieldValidation instructs the server on how to handle objects in the "
                      "request containing unknown or duplicate fields. podless checks every "
                      "object against the fields it supports (kubectl explain shows them).");
  if (patch) {
    WriteQueryParameter(w, "force", "boolean",
                        "Force is going to \"force\" Apply requests: it re-acquires conflicting "
                        "fields owned by other people.");
  }
}

struct Operation {
  const char* method;  // "get", "post", ...
  const char* action;  // x-kubernetes-action
  const char* verb;    // operationId's verb: "read", "list", ...
  const char* what;    // description
};

void WriteOperation(JsonWriter& w, const Resource& r, const Operation& op, bool all_namespaces) {
  const std::string prefix = OperationPrefix(r);
  const std::string scope = all_namespaces ? "" : (r.namespaced ? "Namespaced" : "");
  const std::string suffix = all_namespaces ? "ForAllNamespaces" : "";
  const std::string_view action = op.action;
  w.Key(op.method).BeginObject();
  w.Key("tags").BeginArray().String(r.group.empty() ? "core_" + r.version
                                                    : r.group + "_" + r.version);
  w.EndArray();
  w.Key("description").String(std::string(op.what) + " " + r.kind);
  w.Key("operationId").String(op.verb + prefix + scope + r.kind + suffix);
  w.Key("parameters").BeginArray();
  if (action == "list") {
    WriteQueryParameter(w, "labelSelector", "string",
                        "A selector to restrict the list of returned objects by their labels.");
    WriteQueryParameter(w, "fieldSelector", "string",
                        "A selector to restrict the list of returned objects by their fields "
                        "(metadata.name, metadata.namespace).");
  }
  if (action == "post" || action == "put" || action == "patch") {
    WriteWriteParameters(w, action == "patch");
  }
  w.EndArray();
  if (action == "post" || action == "put" || action == "patch") {
    w.Key("requestBody").BeginObject();
    w.Key("content").BeginObject();
    if (action == "patch") {
      for (const char* type :
           {"application/apply-patch+yaml", "application/json-patch+json",
            "application/merge-patch+json", "application/strategic-merge-patch+json"}) {
        // kubectl apply sends a strategic merge patch where OpenAPI offers
        // one: a custom resource's does not (the server answers it 415).
        if (!r.BuiltIn() && std::string_view(type) == "application/strategic-merge-patch+json") {
          continue;
        }
        w.Key(type).BeginObject();
        WriteSchemaRef(w, "io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
        w.EndObject();
      }
    } else {
      w.Key("*/*").BeginObject();
      WriteSchemaRef(w, KindSchemaName(r));
      w.EndObject();
    }
    w.EndObject();
    w.Key("required").Bool(true);
    w.EndObject();
  }
  w.Key("responses").BeginObject();
  if (action == "list") {
    WriteJsonResponse(w, "200", ListSchemaName(r));
  } else if (action == "delete") {
    WriteJsonResponse(w, "200", "io.k8s.apimachinery.pkg.apis.meta.v1.Status");
  } else {
    WriteJsonResponse(w, "200", KindSchemaName(r));
    if (action == "post" || action == "patch" || action == "put") {
      WriteJsonResponse(w, "201", KindSchemaName(r));
    }
  }
  w.Key("401").BeginObject().Key("description").String("Unauthorized").EndObject();
  w.EndObject();
  w.Key("x-kubernetes-action").String(action);
  w.Key("x-kubernetes-group-version-kind").BeginObject();
  w.Key("group").String(r.group).Key("kind").String(r.kind).Key("version").String(r.version);
  w.EndObject();
  w.EndObject();
}

void WritePaths(JsonWriter& w, std::string_view group, std::string_view version) {
  const std::string base = "/" + GroupVersionPath(group, version);
  w.BeginObject();
  for (const Resource& r : Resources()) {
    if (r.group != group || r.version != version) continue;
    const bool writable = KindIsApplied(r);
    const std::string collection =
        base + (r.namespaced ? "/namespaces/{namespace}/" : "/") + r.name;
    // The collection: list, and create.
    w.Key(collection).BeginObject();
    WriteOperation(w, r, {"get", "list", "list", "list or watch objects of kind"}, false);
    if (writable) WriteOperation(w, r, {"post", "post", "create", "create a"}, false);
    w.Key("parameters").BeginArray();
    if (r.namespaced) WritePathParameter(w, "namespace", "object name and auth scope");
    w.EndArray();
    w.EndObject();
    // One object: read, replace, patch, delete.
    w.Key(collection + "/{name}").BeginObject();
    WriteOperation(w, r, {"get", "get", "read", "read the specified"}, false);
    if (writable) {
      WriteOperation(w, r, {"put", "put", "replace", "replace the specified"}, false);
      WriteOperation(w, r, {"patch", "patch", "patch", "partially update the specified"}, false);
      WriteOperation(w, r, {"delete", "delete", "delete", "delete a"}, false);
    }
    w.Key("parameters").BeginArray();
    WritePathParameter(w, "name", "name of the " + r.kind);
    if (r.namespaced) WritePathParameter(w, "namespace", "object name and auth scope");
    w.EndArray();
    w.EndObject();
    if (r.namespaced) {
      w.Key(base + "/" + r.name).BeginObject();
      WriteOperation(w, r, {"get", "list", "list", "list or watch objects of kind"}, true);
      w.EndObject();
    }
  }
  w.EndObject();
}

std::string BuildDocument(std::string_view group, std::string_view version) {
  JsonWriter w;
  w.BeginObject();
  w.Key("openapi").String("3.0.0");
  w.Key("info").BeginObject();
  w.Key("title").String("Kubernetes").Key("version").String("v1.32.0+podless");
  w.EndObject();
  w.Key("paths");
  WritePaths(w, group, version);
  w.Key("components").BeginObject();
  w.Key("schemas");
  WriteSchemas(w, group, version);
  w.Key("securitySchemes").BeginObject();
  w.Key("BearerToken").BeginObject();
  w.Key("type").String("apiKey").Key("description").String("Bearer Token authentication");
  w.Key("name").String("authorization").Key("in").String("header");
  w.EndObject();
  w.EndObject();
  w.EndObject();
  w.EndObject();
  return w.Take();
}

// Every served group/version, core first, in the order of Resources().
std::vector<std::pair<std::string, std::string>> GroupVersions() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Resource& r : Resources()) {
    std::pair<std::string, std::string> gv{r.group, r.version};
    bool seen = false;
    for (const auto& known : out) seen = seen || known == gv;
    if (!seen) out.push_back(std::move(gv));
  }
  return out;
}

const std::map<std::string, std::string>& Documents() {
  static const std::map<std::string, std::string> documents = [] {
    std::map<std::string, std::string> m;
    for (const auto& [group, version] : GroupVersions()) {
      m.emplace(GroupVersionPath(group, version), BuildDocument(group, version));
    }
    return m;
  }();
  return documents;
}

std::string ServerRelativeUrl(const std::string& gv_path) {
  return "/openapi/v3/" + gv_path + "?hash=" + OpenApiHash(Documents().at(gv_path));
}

std::string HttpDate(time_t t) {
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

// The query's hash parameter, "" when absent.
std::string HashParameter(std::string_view target) {
  const size_t question = target.find('?');
  if (question == std::string_view::npos) return "";
  std::string_view rest = target.substr(question + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.starts_with("hash=")) return proxy::PercentDecode(pair.substr(5), true);
  }
  return "";
}

// JSON is what podless produces: an Accept header that takes it (or takes
// anything) gets it; one that names only protobuf gets 406, as from a server
// that cannot produce the type.
bool AcceptsJson(std::string_view accept) {
  if (accept.empty()) return true;
  for (const MediaType& type : ParseAccept(accept)) {
    if (type.type == "application/json" || type.type == "application/*" || type.type == "*/*") {
      return true;
    }
  }
  return false;
}

// The ETag of `hash`, and 304 Not Modified (no body) when the client has
// that version already, as http.ServeContent answers for the API server.
KubeResponse WithEtag(KubeResponse response, const std::string& hash, const KubeRequest& request) {
  const std::string etag = "\"" + hash + "\"";
  response.headers.emplace_back("Etag", etag);
  if (request.if_none_match == etag || request.if_none_match == "*") {
    response.status = 304;
    response.body.clear();
  }
  return response;
}

}  // namespace

const std::string& OpenApiDocument(std::string_view group, std::string_view version) {
  static const std::string none;
  auto it = Documents().find(GroupVersionPath(group, version));
  return it == Documents().end() ? none : it->second;
}

const std::string& OpenApiDiscovery() {
  static const std::string discovery = [] {
    JsonWriter w;
    w.BeginObject();
    w.Key("paths").BeginObject();
    for (const auto& [group, version] : GroupVersions()) {
      const std::string path = GroupVersionPath(group, version);
      w.Key(path).BeginObject().Key("serverRelativeURL").String(ServerRelativeUrl(path));
      w.EndObject();
    }
    w.EndObject();
    w.EndObject();
    return w.Take();
  }();
  return discovery;
}

std::string OpenApiHash(std::string_view document) {
  uint8_t digest[SHA512_DIGEST_LENGTH];
  SHA512(reinterpret_cast<const uint8_t*>(document.data()), document.size(), digest);
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (uint8_t b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

KubeResponse ServeOpenApi(const std::vector<std::string>& parts, const KubeRequest& request) {
  auto not_found = [] {
    return StatusResponse(404, "NotFound", "the server could not find the requested resource");
  };
  // /openapi/v2 is not served: kubectl 1.32 reads v3 only, unless the v3
  // document lacks the fieldValidation parameter.
  if (parts.size() < 2 || parts[1] != "v3") return not_found();
  if (parts.size() == 2) {
    KubeResponse response{200, "application/json", OpenApiDiscovery()};
    return WithEtag(std::move(response), OpenApiHash(response.body), request);
  }
  std::string path;
  for (size_t i = 2; i < parts.size(); ++i) path += (i > 2 ? "/" : "") + parts[i];
  auto it = Documents().find(path);
  if (it == Documents().end()) return not_found();
  if (!AcceptsJson(request.accept)) {
    return StatusResponse(
        406, "NotAcceptable",
        "only application/json is served for OpenAPI v3, not " + std::string(kProtobuf));
  }
  const std::string hash = OpenApiHash(it->second);
  const std::string asked = HashParameter(request.target);
  KubeResponse response{200, "application/json", it->second};
  if (!asked.empty()) {
    if (asked != hash) {
      // A stale hash: where the document is now, as the API server says.
      const std::string location = ServerRelativeUrl(path);
      KubeResponse moved{301, "text/html; charset=utf-8",
                         "<a href=\"" + location + "\">Moved Permanently</a>.\n"};
      moved.headers.emplace_back("Location", location);
      return moved;
    }
    // The URL names the content: clients may keep it for good.
    response.headers.emplace_back("Vary", "Accept");
    response.cache_control = "public, immutable";
    response.headers.emplace_back("Expires", HttpDate(std::time(nullptr) + 365 * 24 * 3600));
  }
  return WithEtag(std::move(response), hash, request);
}

}  // namespace podless::api::kube
