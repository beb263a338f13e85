// The PATCH algorithms of the Kubernetes API, over JSON documents held as
// YAML nodes (JSON is YAML; api/yaml_json.h prints them back as JSON):
//
//   application/merge-patch+json           RFC 7386 JSON merge patch
//   application/json-patch+json            RFC 6902 JSON patch
//   application/strategic-merge-patch+json Kubernetes' strategic merge patch
//
// Pure functions: the inputs are not changed (yaml-cpp nodes share their
// data on assignment, so every result is built anew), and a patch that does
// not apply is INVALID_ARGUMENT naming the operation or field.
#pragma once

#include <string>
#include <string_view>

#include "workloads/result.h"

namespace YAML {
class Node;
}

namespace podless::api::kube {

// A JSON (or YAML) text as a node; INVALID_ARGUMENT when it is neither.
Result<YAML::Node> ParseJsonNode(std::string_view text);

// The value of `key` in map `m`; a null node when `m` is not a map or has
// no such key (yaml-cpp's const operator[] gives a node that throws).
YAML::Node Field(const YAML::Node& m, std::string_view key);

// Deep equality of two JSON values (map order does not count).
bool JsonEqual(const YAML::Node& a, const YAML::Node& b);

// RFC 7386: maps merge, null removes a key, anything else replaces.
YAML::Node MergePatch(const YAML::Node& target, const YAML::Node& patch);

// RFC 6902: `operations` is an array of {op, path, value|from}; add, remove,
// replace, move, copy and test, all or nothing.
Result<YAML::Node> JsonPatch(const YAML::Node& target, const YAML::Node& operations);

// The list merge key of field `field` in an object of `kind` ("Deployment",
// "Service", ...) at `path` (dotted, of the parent map): "name" for
// containers, "containerPort" for a container's ports, "port" for a
// Service's; "" for a list that is replaced whole.
std::string MergeKey(std::string_view kind, std::string_view path, std::string_view field);

// Kubernetes' strategic merge patch, as kubectl sends it: maps merge as in
// RFC 7386; lists with a merge key (MergeKey) merge element by element,
// other lists are replaced; the directives $patch (merge, replace, delete,
// in maps and list elements), $retainKeys, $setElementOrder/<field> and
// $deleteFromPrimitiveList/<field> are honoured.
Result<YAML::Node> StrategicMergePatch(const YAML::Node& target, const YAML::Node& patch,
                                       std::string_view kind);

}  // namespace podless::api::kube
