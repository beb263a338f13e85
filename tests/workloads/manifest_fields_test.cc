// The table of manifest fields (workloads/manifest_fields.h) is what the
// reader accepts: every object it names exists, an ignored field of it is a
// warning with the table's reason, a field not in it is an error.
#include "workloads/manifest_fields.h"

#include <doctest.h>

#include <string>

#include "workloads/manifest_parser.h"

namespace podless::workloads {
namespace {

using manifest::FieldInfo;
using manifest::ManifestObjects;
using manifest::ObjectInfo;

bool InTable(std::string_view name) {
  for (const ObjectInfo& o : ManifestObjects()) {
    if (o.name == name) return true;
  }
  return false;
}

// A value of a field's type that asks for something (not a default).
std::string ValueOf(const FieldInfo& f) {
  if (f.type == "string") return "\"x\"";
  if (f.type == "integer") return "5";
  if (f.type == "boolean") {
    // Kubernetes' defaults are true for these two: false asks for something.
    const std::string name = f.name;
    return name == "enableServiceLinks" || name == "automountServiceAccountToken" ? "false"
                                                                                  : "true";
  }
  if (f.type.starts_with("[]")) return "[{name: a}]";
  return "{a: b}";
}

std::string Deployment(const std::string& pod_field, const std::string& container_field) {
  return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
         "  selector: {matchLabels: {app: web}}\n  template:\n"
         "    metadata: {labels: {app: web}}\n    spec:\n" +
         pod_field + "      containers:\n      - name: web\n        image: nginx\n" +
         container_field;
}

TEST_CASE("every object a field refers to is in the table, and names are unique") {
  for (const ObjectInfo& o : ManifestObjects()) {
    CAPTURE(o.name);
    CHECK(o.names.size() == o.fields.size());
    for (const FieldInfo& f : o.fields) {
      CAPTURE(f.name);
      std::string_view type = f.type;
      if (type.starts_with("[]")) type.remove_prefix(2);
      const bool basic = type == "string" || type == "integer" || type == "boolean" ||
                         type == "int-or-string" || type == "object" || type == "map";
      CHECK((basic || InTable(type)));
      CHECK(!f.description.empty());
      CHECK(o.Find(f.name) == &f);  // first of its name: no duplicates
    }
  }
}

TEST_CASE("each ignored pod spec and container field is a warning with the table's reason") {
  for (std::string_view object : {manifest::objects::kPodSpec, manifest::objects::kContainer}) {
    const bool pod = object == manifest::objects::kPodSpec;
    for (const FieldInfo& f : manifest::ObjectNamed(object).fields) {
      if (f.ignored.empty()) continue;
      CAPTURE(f.name);
      const std::string line = std::string(f.name) + ": " + ValueOf(f) + "\n";
      ParseResult result = ParseManifests(
          pod ? Deployment("      " + line, "") : Deployment("", "        " + line), "t.yaml");
      for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
      REQUIRE(result.errors.empty());
      REQUIRE(result.objects.size() == 1);
      const std::string path = std::string("spec.template.spec.") + (pod ? "" : "containers[0].") +
                               f.name + ": ignored: " + std::string(f.ignored);
      bool found = false;
      for (const std::string& w : result.objects[0].warnings) {
        found = found || w.find(path) != std::string::npos;
      }
      CHECK_MESSAGE(found, path);
    }
  }
}

TEST_CASE("a field not in the table is an error naming the table's fields") {
  ParseResult result = ParseManifests(Deployment("      notAField: 1\n", ""), "t.yaml");
  REQUIRE(result.errors.size() == 1);
  const std::string message = result.errors[0].ToString();
  CHECK(message.find("notAField") != std::string::npos);
  CHECK(message.find("terminationGracePeriodSeconds") != std::string::npos);
  CHECK(message.find("topologySpreadConstraints") != std::string::npos);
}

}  // namespace
}  // namespace podless::workloads
