#include "api/kube/managed_fields.h"

#include <doctest.h>
#include <yaml-cpp/yaml.h>

#include <string>

#include "api/kube/patch.h"

namespace podless::api::kube {
namespace {

YAML::Node J(const std::string& text) {
  auto node = ParseJsonNode(text);
  REQUIRE(node);
  return *node;
}

constexpr const char* kDoc = R"({"apiVersion":"apps/v1","kind":"Deployment",
  "metadata":{"name":"web","namespace":"a","labels":{"app":"web"}},
  "spec":{"replicas":2,"template":{"spec":{"containers":[
    {"name":"web","image":"nginx","args":["-x"]}]}}}})";

TEST_CASE("FieldsOf: leaves, keyed list elements, atomic lists; names are nobody's") {
  FieldSet fields = FieldsOf(J(kDoc), "Deployment");
  std::set<std::string> paths;
  for (const FieldPath& p : fields) paths.insert(FieldPathString(p));
  CHECK(paths == std::set<std::string>{".metadata.labels.app", ".spec.replicas",
                                       ".spec.template.spec.containers[name=\"web\"].name",
                                       ".spec.template.spec.containers[name=\"web\"].image",
                                       ".spec.template.spec.containers[name=\"web\"].args"});
}

TEST_CASE("ApplyConflicts: only another manager's field with a different value") {
  ManagedFields managed;
  RecordApply(managed, "a", FieldsOf(J(kDoc), "Deployment"), "apps/v1", "t", false, {});
  const YAML::Node current = J(kDoc);
  CHECK(ApplyConflicts(managed, "b", J(R"({"spec":{"replicas":2}})"), current, "Deployment")
            .empty());  // the same value: shared
  auto conflicts =
      ApplyConflicts(managed, "b", J(R"({"spec":{"replicas":3}})"), current, "Deployment");
  REQUIRE(conflicts.size() == 1);
  CHECK(conflicts[0].manager == "a");
  CHECK(FieldPathString(conflicts[0].field) == ".spec.replicas");
  CHECK(ApplyConflicts(managed, "a", J(R"({"spec":{"replicas":3}})"), current, "Deployment")
            .empty());  // its own
}

TEST_CASE("Released and RemoveFields: what a manager stops applying goes") {
  ManagedFields managed;
  const FieldSet all = FieldsOf(J(kDoc), "Deployment");
  RecordApply(managed, "a", all, "apps/v1", "t", false, {});
  RecordUpdate(managed, "edit", FieldsOf(J(R"({"metadata":{"labels":{"app":"x"}}})"), "Deployment"),
               "apps/v1", "t");
  const FieldSet now = FieldsOf(J(R"({"spec":{"replicas":2}})"), "Deployment");
  FieldSet released = Released(managed, "a", now);
  std::set<std::string> paths;
  for (const FieldPath& p : released) paths.insert(FieldPathString(p));
  // The label is edit's now; the container's fields are released.
  CHECK(paths.count(".metadata.labels.app") == 0);
  CHECK(paths.count(".spec.template.spec.containers[name=\"web\"].image") == 1);
  const YAML::Node out = RemoveFields(J(kDoc), released);
  CHECK(out["spec"]["template"]["spec"]["containers"].size() == 0);
  CHECK(out["spec"]["replicas"].as<int>() == 2);
  CHECK(out["metadata"]["labels"]["app"].as<std::string>() == "web");
}

TEST_CASE("ManagedFieldsJson: fieldsV1 as the API server writes it") {
  ManagedFields managed;
  RecordApply(managed, "kubectl", FieldsOf(J(kDoc), "Deployment"), "apps/v1",
              "2026-01-01T00:00:00Z", false, {});
  YAML::Node json = YAML::Load(ManagedFieldsJson(managed));
  REQUIRE(json.size() == 1);
  CHECK(json[0]["manager"].as<std::string>() == "kubectl");
  CHECK(json[0]["fieldsType"].as<std::string>() == "FieldsV1");
  YAML::Node container =
      json[0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
  CHECK(container["."].IsMap());
  CHECK(container["f:image"].IsMap());
}

}  // namespace
}  // namespace podless::api::kube
