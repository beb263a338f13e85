// Server-side apply's field ownership (metadata.managedFields): which
// manager set which field, so that one manager's apply does not silently
// overwrite another's value (409 Conflict unless forced) and a field a
// manager stops applying goes away when no one else holds it.
//
// A field is a path of fieldsV1 tokens as the API server writes them:
// "f:spec", "f:replicas" for a map key, "k:{\"name\":\"web\"}" for the
// element of a list merged by key (patch.h MergeKey); other lists are one
// field, whole. Pure functions over JSON documents held as YAML nodes.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace YAML {
class Node;
}

namespace podless::api::kube {

using FieldPath = std::vector<std::string>;
using FieldSet = std::set<FieldPath>;

struct ManagerEntry {
  std::string manager;
  std::string operation;  // "Apply" or "Update"
  std::string api_version;
  std::string time;  // RFC 3339
  FieldSet fields;
};
using ManagedFields = std::vector<ManagerEntry>;

// The fields a document sets (its leaves; apiVersion, kind, metadata.name
// and metadata.namespace are nobody's).
FieldSet FieldsOf(const YAML::Node& doc, std::string_view kind);

// The fields whose values differ between two versions of a document, with
// those set in `after` only.
FieldSet ChangedFields(const YAML::Node& before, const YAML::Node& after, std::string_view kind);

struct FieldConflict {
  std::string manager;
  std::string api_version;
  FieldPath field;
};
// The fields `config` sets to a value other than `current`'s that a manager
// other than `manager` holds.
std::vector<FieldConflict> ApplyConflicts(const ManagedFields& managed, const std::string& manager,
                                          const YAML::Node& config, const YAML::Node& current,
                                          std::string_view kind);

// The fields `manager`'s last apply held that `config` no longer sets and
// that no other manager holds: to remove from the object.
FieldSet Released(const ManagedFields& managed, const std::string& manager,
                  const FieldSet& applied);

// Records `manager`'s apply: its Apply entry holds `fields` now; the other
// managers lose them (the conflicts were forced, or there were none with a
// different value: a shared field stays shared only when values agree, so
// it is kept by both).
void RecordApply(ManagedFields& managed, const std::string& manager, const FieldSet& fields,
                 const std::string& api_version, const std::string& time, bool forced,
                 const std::vector<FieldConflict>& conflicts);
// Records an update (create, replace, patch) by `manager`: it takes the
// fields it changed from everyone else.
void RecordUpdate(ManagedFields& managed, const std::string& manager, const FieldSet& changed,
                  const std::string& api_version, const std::string& time);

// `doc` without the fields given (a list element by key, a map key).
YAML::Node RemoveFields(const YAML::Node& doc, const FieldSet& fields);

// ".spec.replicas", ".spec.template.spec.containers[name=\"web\"].image"
std::string FieldPathString(const FieldPath& path);

// `object_json` with metadata.managedFields set to `managed` (as it is
// when `managed` is empty).
std::string WithManagedFields(const std::string& object_json, const ManagedFields& managed);

// metadata.managedFields as JSON (an array of ManagedFieldsEntry, fieldsV1).
std::string ManagedFieldsJson(const ManagedFields& managed);

}  // namespace podless::api::kube
