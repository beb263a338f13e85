#include "api/kube/write_handlers.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <ctime>
#include <utility>
#include <vector>

#include "api/kube/media_type.h"
#include "api/kube/objects.h"
#include "api/kube/patch.h"
#include "api/output_format.h"
#include "api/yaml_json.h"
#include "proxy/base/json.h"

namespace podless::api::kube {
namespace {

using proxy::JsonWriter;

// The source name the documents are applied under: the agent's errors
// start "request:LINE:COL: ", which the causes leave out (the lines are
// the document podless made of the request, not the client's).
constexpr std::string_view kSourceName = "request";

using Cause = StatusCause;

// "deployments.apps", or "services" for the core group.
std::string Qualified(const Resource& r) {
  return r.group.empty() ? r.name : r.name + "." + r.group;
}

std::string ParamOf(const WriteTarget& t, const std::string& key) {
  auto it = t.params.find(key);
  return it == t.params.end() ? "" : it->second;
}

bool DryRun(const WriteTarget& t) { return ParamOf(t, "dryRun") == "All"; }

// A Status of a failure, with details naming the object as the Kubernetes
// API server does (`details_kind`: the resource for NotFound, AlreadyExists
// and Conflict, the Kind for Invalid).
KubeResponse Failure(int code, std::string_view reason, std::string_view message,
                     const Resource* r = nullptr, std::string_view name = "",
                     std::string_view details_kind = "", const std::vector<Cause>& causes = {}) {
  StatusDetails details;
  if (r != nullptr) {
    details.name = std::string(name);
    details.group = r->group;
    details.kind = std::string(details_kind.empty() ? std::string_view(r->name) : details_kind);
    details.causes = causes;
  }
  return StatusResponse(code, reason, message, details);
}

KubeResponse NotFound(const Resource& r, const std::string& name) {
  return Failure(404, "NotFound", Qualified(r) + " \"" + name + "\" not found", &r, name);
}

KubeResponse NotAllowed(std::string_view message) {
  return Failure(405, "MethodNotAllowed", message);
}

KubeResponse BadRequest(std::string_view message) { return Failure(400, "BadRequest", message); }

KubeResponse ConflictModified(const Resource& r, const std::string& name) {
  return Failure(409, "Conflict",
                 "Operation cannot be fulfilled on " + Qualified(r) + " \"" + name +
                     "\": the object has been modified; please apply your changes to the latest "
                     "version and try again",
                 &r, name);
}

// A string node (quoted when printed, whatever it looks like).
YAML::Node Str(const std::string& text) {
  YAML::Node node(text);
  node.SetTag("!");
  return node;
}

// metadata.<field> of a document as a string ("" when absent).
std::string MetaString(const YAML::Node& doc, const char* field) {
  const YAML::Node v = Field(Field(doc, "metadata"), field);
  return v.IsDefined() && v.IsScalar() ? v.Scalar() : "";
}

// Is there an agent object of the resource's kind named `name` in `ns`,
// whatever it was applied as? (A Deployment and a podless Workload of the
// same name are the same workload.)
bool ExistsInAgent(ObjectSource& source, const Resource& r, const std::string& ns,
                   const std::string& name) {
  auto listed = source.List(r.object_kind, r.namespaced ? ns : "");
  if (!listed) return false;
  for (const v1::Object& object : listed->objects()) {
    const v1::ObjectMeta& meta = MetaOf(object);
    if (meta.name() != name) continue;
    if (!r.namespaced || meta.namespace_() == ns ||
        (meta.namespace_().empty() && ns == "default")) {
      return true;
    }
  }
  return false;
}

// Makes `doc` (the object's whole document, made anew by the caller) what
// podless applies: its kind, apiVersion, name and namespace checked against
// the request's, and the fields the server fills in removed. Returns the
// failure to answer, if any.
std::optional<KubeResponse> Prepare(const WriteTarget& t, const std::string& name,
                                    YAML::Node& doc) {
  const Resource& r = *t.resource;
  if (!doc.IsMap()) return BadRequest("the request body is not a " + r.kind + " object");
  const YAML::Node kind = Field(doc, "kind");
  if (!kind.IsDefined() || kind.IsNull()) {
    doc["kind"] = Str(r.kind);
  } else if (!kind.IsScalar() || kind.Scalar() != r.kind) {
    return BadRequest("the kind of the object (" + (kind.IsScalar() ? kind.Scalar() : "?") +
                      ") does not match the resource " + Qualified(r) + " (" + r.kind + ")");
  }
  const YAML::Node api_version = Field(doc, "apiVersion");
  if (!api_version.IsDefined() || api_version.IsNull()) {
    doc["apiVersion"] = Str(r.GroupVersion());
  } else if (!api_version.IsScalar() || api_version.Scalar() != r.GroupVersion()) {
    return BadRequest("the API version in the data (" +
                      (api_version.IsScalar() ? api_version.Scalar() : "?") +
                      ") does not match the expected API version (" + r.GroupVersion() + ")");
  }
  if (!Field(doc, "metadata").IsMap()) doc["metadata"] = YAML::Node(YAML::NodeType::Map);
  YAML::Node meta = doc["metadata"];
  const std::string doc_name = MetaString(doc, "name");
  if (doc_name.empty()) {
    if (name.empty()) {
      return Failure(422, "Invalid",
                     r.kind + "." + r.group +
                         " \"\" is invalid: metadata.name: Required value: "
                         "name is required (podless has no generateName)",
                     &r, "", r.kind,
                     {{"FieldValueRequired", "metadata.name", "Required value: name is required"}});
    }
    meta["name"] = Str(name);
  } else if (!name.empty() && doc_name != name) {
    return BadRequest("the name of the object (" + doc_name +
                      ") does not match the name on the URL (" + name + ")");
  }
  if (r.namespaced) {
    const std::string doc_ns = MetaString(doc, "namespace");
    if (doc_ns.empty()) {
      meta["namespace"] = Str(t.ns);
    } else if (doc_ns != t.ns) {
      return BadRequest(
          "the namespace of the provided object does not match the namespace sent on the request");
    }
  } else {
    meta.remove("namespace");
  }
  // Filled in by the server, on every answer; podless's documents hold none.
  for (const char* field :
       {"uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink",
        "deletionTimestamp", "deletionGracePeriodSeconds"}) {
    meta.remove(field);
  }
  doc.remove("status");
  return std::nullopt;
}

// The path of an unknown field in a podless error message, or "".
std::string UnknownField(const Cause& c) {
  return c.message.starts_with("unknown field ") ? c.field : "";
}

std::vector<Cause> CausesOf(std::string_view message) {
  std::vector<Cause> causes;
  while (!message.empty()) {
    const size_t nl = message.find('\n');
    std::string_view line = message.substr(0, nl);
    message = nl == std::string_view::npos ? std::string_view() : message.substr(nl + 1);
    if (line.empty()) continue;
    // "request:12:5: " first, when the agent says where.
    if (line.starts_with(kSourceName)) {
      std::string_view rest = line.substr(kSourceName.size());
      while (!rest.empty() &&
             (rest.front() == ':' || (rest.front() >= '0' && rest.front() <= '9'))) {
        rest.remove_prefix(1);
      }
      if (rest.starts_with(' ')) rest.remove_prefix(1);
      line = rest;
    }
    Cause c{"FieldValueInvalid", "", std::string(line)};
    const size_t colon = line.find(": ");
    if (colon != std::string_view::npos &&
        line.substr(0, colon).find(' ') == std::string_view::npos) {
      c.field = std::string(line.substr(0, colon));
      c.message = std::string(line.substr(colon + 2));
    }
    causes.push_back(std::move(c));
  }
  return causes;
}

// The failure of an Apply or Delete the agent refused.
KubeResponse AgentFailure(const Resource& r, const std::string& name, const Error& error) {
  switch (error.code) {
    case ErrorCode::kInvalidArgument:
      return InvalidResponse(r, name, error.message);
    case ErrorCode::kNotFound:
      return Failure(404, "NotFound", error.message, &r, name);
    case ErrorCode::kAlreadyExists:
      return Failure(409, "AlreadyExists", error.message, &r, name);
    case ErrorCode::kFailedPrecondition:
      return Failure(409, "Conflict", error.message, &r, name);
    case ErrorCode::kResourceExhausted:
      return Failure(429, "TooManyRequests", error.message, &r, name);
    case ErrorCode::kPermissionDenied:
      return Failure(403, "Forbidden", error.message, &r, name);
    case ErrorCode::kUnavailable:
      return Failure(503, "ServiceUnavailable", error.message, &r, name);
    default:
      return Failure(500, "InternalError", error.message, &r, name);
  }
}

// Applies the prepared document; the object as GET answers it after, with
// `code` (201 created, 200 otherwise). Under dryRun=All nothing is
// written and the answer is the document as it would be applied.
// The unknown fields of a rejected document ("spec.foo"); the document
// without them may still be wrong in other ways, which the retry reports.
std::vector<std::string> UnknownFields(std::string_view message) {
  std::vector<std::string> fields;
  for (const Cause& c : CausesOf(message)) {
    const std::string field = UnknownField(c);
    if (!field.empty()) fields.push_back(field);
  }
  return fields;
}

// `node` without the field at the dotted path ("spec.template.spec.
// containers[0].foo"), from token `i` on.
YAML::Node WithoutDotted(const YAML::Node& node, const std::vector<std::string>& tokens, size_t i) {
  if (i >= tokens.size()) return node;
  const std::string& token = tokens[i];
  const bool last = i + 1 == tokens.size();
  if (!token.empty() && token.front() == '[' && node.IsSequence()) {
    const size_t index = std::strtoul(token.c_str() + 1, nullptr, 10);
    YAML::Node out(YAML::NodeType::Sequence);
    for (size_t j = 0; j < node.size(); ++j) {
      if (j != index) {
        out.push_back(node[j]);
      } else if (!last) {
        out.push_back(WithoutDotted(node[j], tokens, i + 1));
      }
    }
    return out;
  }
  if (!node.IsMap()) return node;
  YAML::Node out(YAML::NodeType::Map);
  for (const auto& kv : node) {
    const std::string key = kv.first.Scalar();
    if (key != token) {
      out[key] = kv.second;
    } else if (!last) {
      out[key] = WithoutDotted(kv.second, tokens, i + 1);
    }
  }
  return out;
}

YAML::Node RemoveDottedFields(const YAML::Node& doc, const std::vector<std::string>& fields) {
  std::optional<YAML::Node> out(doc);
  for (const std::string& field : fields) {
    std::vector<std::string> tokens;  // "a.b[0].c" -> a, b, [0], c
    std::string current;
    for (char c : field) {
      if (c == '.' || c == '[') {
        if (!current.empty()) tokens.push_back(current);
        current = c == '[' ? "[" : "";
      } else if (c == ']') {
        tokens.push_back(current);
        current.clear();
      } else {
        current += c;
      }
    }
    if (!current.empty()) tokens.push_back(current);
    YAML::Node next = WithoutDotted(*out, tokens, 0);
    out.reset();
    out.emplace(next);
  }
  return YAML::Clone(*out);
}

// `record` (the field managers' change) runs once the agent has taken it.
KubeResponse ApplyDocument(ObjectSource& source, const WriteTarget& t, const std::string& name,
                           const YAML::Node& doc, int code,
                           const std::function<void()>& record = nullptr) {
  const Resource& r = *t.resource;
  const bool dry_run = DryRun(t);
  Status applied = source.Apply(YamlNodeToJson(doc), dry_run);
  // fieldValidation=Ignore (kubectl --validate=false) or Warn (the API
  // server's default when none is given): the unknown fields are dropped
  // and the rest applied, as the API server does. Strict (kubectl's
  // default): 400.
  std::string validation = ParamOf(t, "fieldValidation");
  if (validation.empty()) validation = "Warn";
  std::vector<std::string> warnings;
  std::optional<YAML::Node> known;
  if (!applied && applied.error().code == ErrorCode::kInvalidArgument &&
      (validation == "Ignore" || validation == "Warn")) {
    std::vector<std::string> unknown = UnknownFields(applied.error().message);
    if (!unknown.empty()) {
      known.emplace(RemoveDottedFields(doc, unknown));
      applied = source.Apply(YamlNodeToJson(*known), dry_run);
      if (validation == "Warn") {
        for (const std::string& field : unknown) {
          warnings.push_back("unknown field \"" + field + "\"");
        }
      }
    }
  }
  if (!applied) return AgentFailure(r, name, applied.error());
  auto answer = [&](std::string body) {
    KubeResponse response{code, "application/json", std::move(body)};
    response.warnings = warnings;
    return response;
  };
  if (dry_run) return answer(YamlNodeToJson(known ? *known : doc));
  if (record && t.managed != nullptr) record();
  auto now = t.get(name);
  if (!now) {
    return Failure(500, "InternalError",
                   Qualified(r) + " \"" + name + "\" was applied but is not there to answer with",
                   &r, name);
  }
  if (t.managed != nullptr) {
    return answer(WithManagedFields(*now, *t.managed));
  }
  return answer(std::move(*now));
}

// An update's field manager takes the fields it changed (kubectl names
// itself: kubectl-edit, kubectl-patch, kubectl-client-side-apply, ...).
std::function<void()> RecordUpdateOf(const WriteTarget& t, const YAML::Node& before,
                                     const YAML::Node& after) {
  const std::string manager = ParamOf(t, "fieldManager");
  if (manager.empty() || t.managed == nullptr) return nullptr;
  FieldSet changed = ChangedFields(before, after, t.resource->kind);
  return [&t, manager, changed = std::move(changed)] {
    RecordUpdate(*t.managed, manager, changed, t.resource->GroupVersion(), Rfc3339(t.now));
  };
}

// 409 of an apply that would change fields other managers hold.
KubeResponse ApplyConflict(const Resource& r, const std::string& name,
                           const std::vector<FieldConflict>& conflicts) {
  std::vector<Cause> causes;
  std::string message = "Apply failed with " + std::to_string(conflicts.size()) + " conflict" +
                        (conflicts.size() == 1 ? "" : "s") + ":";
  for (const FieldConflict& c : conflicts) {
    const std::string with = "conflict with \"" + c.manager + "\" using " + c.api_version;
    causes.push_back({"FieldManagerConflict", FieldPathString(c.field), with});
    message += " " + with + ": " + FieldPathString(c.field);
  }
  return Failure(409, "Conflict", message, &r, name, "", causes);
}

Result<YAML::Node> ParseBody(const KubeRequest& request) {
  if (request.body.empty())
    return MakeError(ErrorCode::kInvalidArgument, "the request has no body");
  return ParseJsonNode(request.body);
}

std::string MediaTypeOf(std::string_view content_type) {
  const size_t semi = content_type.find(';');
  std::string type(content_type.substr(0, semi));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return type;
}

// Strategic merge needs to know the kind's lists; the API server knows them
// for its own kinds only and answers 415 for custom resources (Istio's,
// podless's), which makes kubectl fall back to a JSON merge patch.
bool BuiltIn(const Resource& r) { return r.BuiltIn(); }

KubeResponse UnsupportedPatch(std::string_view type) {
  return Failure(415, "UnsupportedMediaType",
                 "the body of the request was in an unknown format (" + std::string(type) +
                     ") - accepted media types include: application/json-patch+json, "
                     "application/merge-patch+json, application/apply-patch+yaml");
}

// `current` patched as the request's Content-Type says.
Result<YAML::Node> Patched(const Resource& r, const YAML::Node& current, const KubeRequest& request,
                           KubeResponse* failure) {
  const std::string type = MediaTypeOf(request.content_type);
  auto patch = ParseBody(request);
  if (!patch) {
    *failure = BadRequest(patch.error().message);
    return patch.error();
  }
  if (type == "application/merge-patch+json") {
    if (!patch->IsMap()) {
      *failure = BadRequest("a merge patch must be a JSON object");
      return MakeError(ErrorCode::kInvalidArgument, "not an object");
    }
    return MergePatch(current, *patch);
  }
  Result<YAML::Node> out = MakeError(ErrorCode::kInvalidArgument, "");
  if (type == "application/json-patch+json") {
    out = JsonPatch(current, *patch);
  } else if (type == "application/strategic-merge-patch+json" && BuiltIn(r)) {
    out = StrategicMergePatch(current, *patch, r.kind);
  } else {
    *failure = UnsupportedPatch(type);
    return MakeError(ErrorCode::kInvalidArgument, "unsupported");
  }
  if (!out) *failure = Failure(422, "Invalid", out.error().message, &r, "", r.kind);
  return out;
}

KubeResponse Create(ObjectSource& source, const WriteTarget& t, const KubeRequest& request) {
  const Resource& r = *t.resource;
  auto body = ParseBody(request);
  if (!body) return BadRequest(body.error().message);
  YAML::Node doc = YAML::Clone(*body);
  if (auto failure = Prepare(t, "", doc)) return *failure;
  const std::string name = MetaString(doc, "name");
  if (ExistsInAgent(source, r, t.ns, name)) {
    return Failure(409, "AlreadyExists", Qualified(r) + " \"" + name + "\" already exists", &r,
                   name);
  }
  WriteTarget named = t;
  if (t.managed_of && !DryRun(t)) {
    named.managed = t.managed_of(name);
    named.managed->clear();  // a new object's
  }
  return ApplyDocument(source, named, name, doc, 201, RecordUpdateOf(named, YAML::Node(), doc));
}

KubeResponse Replace(ObjectSource& source, const WriteTarget& t, const KubeRequest& request) {
  const Resource& r = *t.resource;
  auto current = t.get(t.name);
  if (!current) return NotFound(r, t.name);
  auto body = ParseBody(request);
  if (!body) return BadRequest(body.error().message);
  auto now = ParseJsonNode(*current);
  if (!now) return Failure(500, "InternalError", now.error().message);
  const std::string version = MetaString(*body, "resourceVersion");
  if (!version.empty() && version != MetaString(*now, "resourceVersion")) {
    return ConflictModified(r, t.name);
  }
  YAML::Node doc = YAML::Clone(*body);
  if (auto failure = Prepare(t, t.name, doc)) return *failure;
  return ApplyDocument(source, t, t.name, doc, 200, RecordUpdateOf(t, *now, doc));
}

KubeResponse Patch(ObjectSource& source, const WriteTarget& t, const KubeRequest& request) {
  const Resource& r = *t.resource;
  const std::string type = MediaTypeOf(request.content_type);
  auto current = t.get(t.name);
  if (type == "application/apply-patch+yaml") {
    // Server-side apply: the configuration given is merged into the object
    // (created when absent) as a strategic merge patch would be.
    if (ParamOf(t, "fieldManager").empty()) {
      return BadRequest("PATCH, fieldManager is required for apply requests");
    }
    auto config = ParseBody(request);
    if (!config) return BadRequest(config.error().message);
    if (!config->IsMap()) return BadRequest("an apply configuration must be an object");
    const std::string manager = ParamOf(t, "fieldManager");
    const FieldSet fields = FieldsOf(*config, r.kind);
    const std::string api_version = r.GroupVersion();
    if (!current) {
      YAML::Node doc = YAML::Clone(*config);
      if (auto failure = Prepare(t, t.name, doc)) return *failure;
      if (ExistsInAgent(source, r, t.ns, t.name)) {
        return Failure(409, "AlreadyExists", Qualified(r) + " \"" + t.name + "\" already exists",
                       &r, t.name);
      }
      if (t.managed != nullptr && !DryRun(t)) t.managed->clear();
      return ApplyDocument(source, t, t.name, doc, 201, [&] {
        RecordApply(*t.managed, manager, fields, api_version, Rfc3339(t.now), false, {});
      });
    }
    auto now = ParseJsonNode(*current);
    if (!now) return Failure(500, "InternalError", now.error().message);
    std::vector<FieldConflict> conflicts;
    FieldSet released;
    if (t.managed != nullptr) {
      conflicts = ApplyConflicts(*t.managed, manager, *config, *now, r.kind);
      if (!conflicts.empty() && ParamOf(t, "force") != "true") {
        return ApplyConflict(r, t.name, conflicts);
      }
      released = Released(*t.managed, manager, fields);
    }
    auto merged = BuiltIn(r) ? StrategicMergePatch(*now, *config, r.kind)
                             : Result<YAML::Node>(MergePatch(*now, *config));
    if (!merged) return Failure(422, "Invalid", merged.error().message, &r, t.name, r.kind);
    // What this manager applied before and applies no more, and no one
    // else holds, goes.
    YAML::Node doc = released.empty() ? *merged : RemoveFields(*merged, released);
    if (auto failure = Prepare(t, t.name, doc)) return *failure;
    return ApplyDocument(source, t, t.name, doc, 200, [&] {
      RecordApply(*t.managed, manager, fields, api_version, Rfc3339(t.now), true, conflicts);
    });
  }
  if (!current) return NotFound(r, t.name);
  auto now = ParseJsonNode(*current);
  if (!now) return Failure(500, "InternalError", now.error().message);
  KubeResponse failure;
  auto patched = Patched(r, *now, request, &failure);
  if (!patched) return failure;
  if (MetaString(*patched, "resourceVersion") != MetaString(*now, "resourceVersion")) {
    return ConflictModified(r, t.name);
  }
  YAML::Node doc = *patched;
  if (auto failed = Prepare(t, t.name, doc)) return *failed;
  return ApplyDocument(source, t, t.name, doc, 200, RecordUpdateOf(t, *now, doc));
}

KubeResponse Delete(ObjectSource& source, const WriteTarget& t) {
  const Resource& r = *t.resource;
  auto current = t.get(t.name);
  if (!current) return NotFound(r, t.name);
  auto now = ParseJsonNode(*current);
  const std::string uid = now ? MetaString(*now, "uid") : "";
  if (!DryRun(t)) {
    if (Status deleted = source.Delete(r.object_kind, r.namespaced ? t.ns : "", t.name); !deleted) {
      return AgentFailure(r, t.name, deleted.error());
    }
    if (t.managed != nullptr) t.managed->clear();
  }
  // Nothing is left terminating: the object is gone when this answers.
  JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("Status").Key("apiVersion").String("v1");
  w.Key("metadata").BeginObject().EndObject();
  w.Key("status").String("Success");
  w.Key("details").BeginObject().Key("name").String(t.name);
  if (!r.group.empty()) w.Key("group").String(r.group);
  w.Key("kind").String(r.name);
  if (!uid.empty()) w.Key("uid").String(uid);
  w.EndObject();
  w.EndObject();
  return {200, "application/json", w.Take()};
}

// The replicas a Scale asks for, from a Scale document.
Result<int64_t> ScaleReplicas(const YAML::Node& scale) {
  const YAML::Node replicas = Field(Field(scale, "spec"), "replicas");
  if (!replicas.IsDefined() || !replicas.IsScalar() || replicas.Tag() == "!") {
    return MakeError(ErrorCode::kInvalidArgument, "spec.replicas: Required value: an integer");
  }
  try {
    const int64_t n = replicas.as<int64_t>();
    if (n < 0) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "spec.replicas: Invalid value: " + std::to_string(n) +
                           ": must be greater than or equal to 0");
    }
    return n;
  } catch (const YAML::Exception&) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "spec.replicas: Invalid value: \"" + replicas.Scalar() + "\": an integer");
  }
}

KubeResponse Scale(ObjectSource& source, const WriteTarget& t, const KubeRequest& request) {
  const Resource& r = *t.resource;
  auto current = t.get(t.name);
  if (!current) return NotFound(r, t.name);
  const std::string scale = ScaleJson(r, *current);
  if (request.method == "GET") return {200, "application/json", scale};
  auto scale_node = ParseJsonNode(scale);
  if (!scale_node) return Failure(500, "InternalError", scale_node.error().message);
  YAML::Node asked;
  if (request.method == "PUT") {
    auto body = ParseBody(request);
    if (!body) return BadRequest(body.error().message);
    const std::string version = MetaString(*body, "resourceVersion");
    if (!version.empty() && version != MetaString(*scale_node, "resourceVersion")) {
      return ConflictModified(r, t.name);
    }
    asked = *body;
  } else {
    KubeResponse failure;
    const Resource scale_resource{"autoscaling", "v1", "scale", "scale", "Scale"};
    auto patched = Patched(scale_resource, *scale_node, request, &failure);
    if (!patched) return failure;
    asked = *patched;
  }
  auto replicas = ScaleReplicas(asked);
  if (!replicas) {
    Cause cause{"FieldValueInvalid", "spec.replicas", replicas.error().message.substr(15)};
    return Failure(422, "Invalid",
                   "Scale.autoscaling \"" + t.name + "\" is invalid: " + replicas.error().message,
                   &r, t.name, "Scale", {cause});
  }
  auto now = ParseJsonNode(*current);
  if (!now) return Failure(500, "InternalError", now.error().message);
  YAML::Node patch = YAML::Node(YAML::NodeType::Map);
  patch["spec"]["replicas"] = *replicas;
  YAML::Node doc = MergePatch(*now, patch);
  if (auto failure = Prepare(t, t.name, doc)) return *failure;
  KubeResponse applied = ApplyDocument(source, t, t.name, doc, 200, RecordUpdateOf(t, *now, doc));
  if (applied.status != 200) return applied;
  return {200, "application/json", ScaleJson(r, applied.body)};
}

KubeResponse Write(ObjectSource& source, const WriteTarget& t, const KubeRequest& request);

}  // namespace

KubeResponse InvalidResponse(const Resource& r, const std::string& name, std::string_view message) {
  std::vector<Cause> causes = CausesOf(message);
  std::string unknown;
  for (const Cause& c : causes) {
    const std::string field = UnknownField(c);
    if (field.empty()) continue;
    unknown += (unknown.empty() ? "" : ", ") + std::string("unknown field \"") + field + "\"";
  }
  if (!unknown.empty()) {
    // podless keeps no field it does not know, so every request is decoded
    // strictly (fieldValidation=Strict, kubectl's default).
    return Failure(400, "BadRequest",
                   r.kind + " in version \"" + r.version + "\" cannot be handled as a " + r.kind +
                       ": strict decoding error: " + unknown);
  }
  std::string summary;
  for (const Cause& c : causes) {
    if (!summary.empty()) summary += ", ";
    summary += c.field.empty() ? c.message : c.field + ": " + c.message;
  }
  if (causes.size() > 1) summary = "[" + summary + "]";
  const std::string qualified = r.group.empty() ? r.kind : r.kind + "." + r.group;
  return Failure(422, "Invalid", qualified + " \"" + name + "\" is invalid: " + summary, &r, name,
                 r.kind, causes);
}

std::string ScaleJson(const Resource& r, std::string_view object_json) {
  auto object = ParseJsonNode(object_json);
  if (!object || !object->IsMap()) return "";
  const YAML::Node spec = Field(*object, "spec");
  int64_t replicas = 1;
  if (Field(spec, "replicas").IsScalar()) {
    try {
      replicas = Field(spec, "replicas").as<int64_t>();
    } catch (const YAML::Exception&) {
    }
  }
  int64_t current = replicas;
  const YAML::Node status = Field(*object, "status");
  if (Field(status, "replicas").IsScalar()) {
    try {
      current = Field(status, "replicas").as<int64_t>();
    } catch (const YAML::Exception&) {
    }
  }
  std::string selector;
  const YAML::Node match_labels = Field(Field(spec, "selector"), "matchLabels");
  if (match_labels.IsMap()) {
    for (const auto& kv : match_labels) {
      if (!selector.empty()) selector += ",";
      selector += kv.first.Scalar() + "=" + kv.second.Scalar();
    }
  }
  JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("Scale").Key("apiVersion").String("autoscaling/v1");
  w.Key("metadata").BeginObject();
  for (const char* field : {"name", "namespace", "uid", "resourceVersion", "creationTimestamp"}) {
    const std::string value = MetaString(*object, field);
    if (!value.empty()) w.Key(field).String(value);
  }
  w.EndObject();
  w.Key("spec").BeginObject().Key("replicas").Int(replicas).EndObject();
  w.Key("status").BeginObject().Key("replicas").Int(current);
  if (!selector.empty()) w.Key("selector").String(selector);
  w.EndObject();
  w.EndObject();
  (void)r;
  return w.Take();
}

KubeResponse HandleWrite(ObjectSource& source, const WriteTarget& t, const KubeRequest& request) {
  // yaml-cpp throws on misuse; nothing may cross the event loop.
  try {
    return Write(source, t, request);
  } catch (const YAML::Exception& e) {
    return Failure(500, "InternalError", std::string("podless: ") + e.what());
  } catch (const std::bad_alloc&) {
    return Failure(500, "InternalError", "podless: out of memory handling the request");
  }
}

namespace {

KubeResponse Write(ObjectSource& source, const WriteTarget& t, const KubeRequest& request) {
  const Resource& r = *t.resource;
  if (r.source == Source::kPods) {
    return NotAllowed(
        "pods are the replicas of podless workloads and are not written directly: change the "
        "Deployment, StatefulSet, ReplicaSet, DaemonSet or Workload that runs them");
  }
  if (t.scale) {
    if (request.method != "GET" && request.method != "PUT" && request.method != "PATCH") {
      return NotAllowed("the scale subresource takes GET, PUT and PATCH");
    }
    return Scale(source, t, request);
  }
  if (request.method == "POST") {
    if (!t.name.empty()) return NotAllowed("POST creates in a collection, not on an object");
    return Create(source, t, request);
  }
  if (t.name.empty()) {
    return NotAllowed("the server does not allow this method on the requested resource (" +
                      request.method + " of a collection; name the object)");
  }
  if (request.method == "PUT") return Replace(source, t, request);
  if (request.method == "PATCH") return Patch(source, t, request);
  if (request.method == "DELETE") return Delete(source, t);
  return NotAllowed("the server does not allow this method on the requested resource");
}

}  // namespace

}  // namespace podless::api::kube
