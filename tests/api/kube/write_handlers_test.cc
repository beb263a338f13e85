#include "api/kube/write_handlers.h"

#include <doctest.h>
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "api/kube/kube_api.h"
#include "api/model_convert.h"
#include "api/output_format.h"
#include "workloads/manifest_parser.h"

namespace podless::api::kube {
namespace {

// The agent's state as far as the handlers see it: Apply parses with the
// real manifest parser (so its errors are the agent's) and keeps the
// objects; List and Delete act on them.
class FakeWritableSource final : public ObjectSource {
 public:
  std::vector<v1::Object> objects;
  uint64_t revision = 1;
  int applies = 0;

  Result<v1::ListResponse> List(v1::Kind kind, const std::string& ns) override {
    v1::ListResponse out;
    out.set_resource_version(revision);
    for (const v1::Object& object : objects) {
      if (KindOf(object) != kind) continue;
      if (!ns.empty() && MetaOf(object).namespace_() != ns) continue;
      *out.add_objects() = object;
    }
    return out;
  }

  Status Apply(const std::string& manifest, bool dry_run) override {
    workloads::ParseResult parsed = workloads::ParseManifests(manifest, "request");
    if (!parsed.errors.empty()) {
      std::string message;
      for (const workloads::Diagnostic& d : parsed.errors) message += d.ToString() + "\n";
      return MakeError(ErrorCode::kInvalidArgument, message);
    }
    if (dry_run) return {};
    ++applies;
    ++revision;
    for (const workloads::ParsedObject& p : parsed.objects) {
      v1::Object object = ToProto(p.object);
      MutableMeta(object)->set_resource_version(revision);
      Erase(KindOf(object), MetaOf(object).namespace_(), MetaOf(object).name());
      objects.push_back(std::move(object));
    }
    return {};
  }

  Status Delete(v1::Kind kind, const std::string& ns, const std::string& name) override {
    if (!Erase(kind, ns, name)) return MakeError(ErrorCode::kNotFound, name + " not found");
    ++revision;
    return {};
  }

 private:
  static v1::ObjectMeta* MutableMeta(v1::Object& o) {
    if (o.has_workload()) return o.mutable_workload()->mutable_metadata();
    if (o.has_service()) return o.mutable_service()->mutable_metadata();
    if (o.has_namespace_()) return o.mutable_namespace_()->mutable_metadata();
    if (o.has_service_account()) return o.mutable_service_account()->mutable_metadata();
    if (o.has_authorization_policy()) return o.mutable_authorization_policy()->mutable_metadata();
    FAIL("an object of a kind the fake does not keep");
    return nullptr;
  }
  bool Erase(v1::Kind kind, const std::string& ns, const std::string& name) {
    for (auto it = objects.begin(); it != objects.end(); ++it) {
      if (KindOf(*it) == kind && MetaOf(*it).namespace_() == ns && MetaOf(*it).name() == name) {
        objects.erase(it);
        return true;
      }
    }
    return false;
  }
};

constexpr const char* kDeployment = R"({"apiVersion":"apps/v1","kind":"Deployment",
  "metadata":{"name":"web","namespace":"shop","annotations":{"note":"kept"}},
  "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
  "template":{"metadata":{"labels":{"app":"web"}},
  "spec":{"containers":[{"name":"web","image":"nginx","ports":[{"containerPort":8080}]}]}}}})";

constexpr const char* kPath = "/apis/apps/v1/namespaces/shop/deployments";

struct Fixture {
  FakeWritableSource source;
  KubeApi api{source, "127.0.0.1:6443", [] { return int64_t{2000}; }};

  KubeResponse Call(const std::string& method, const std::string& target,
                    const std::string& body = "", const std::string& type = "application/json") {
    KubeRequest request{method, target, "application/json"};
    request.content_type = type;
    request.body = body;
    return api.Handle(request);
  }
  YAML::Node Object(const KubeResponse& response) { return YAML::Load(response.body); }
  int Replicas() {
    KubeResponse got = Call("GET", std::string(kPath) + "/web");
    REQUIRE(got.status == 200);
    return Object(got)["spec"]["replicas"].as<int>();
  }
};

TEST_CASE_FIXTURE(Fixture, "POST creates; a second POST is 409 AlreadyExists") {
  KubeResponse created = Call("POST", kPath, kDeployment);
  REQUIRE(created.status == 201);
  YAML::Node object = Object(created);
  CHECK(object["metadata"]["name"].as<std::string>() == "web");
  CHECK(object["metadata"]["annotations"]["note"].as<std::string>() == "kept");
  CHECK(object["metadata"]["resourceVersion"].as<std::string>() == "2");
  CHECK(source.objects.size() == 1);

  KubeResponse again = Call("POST", kPath, kDeployment);
  CHECK(again.status == 409);
  YAML::Node status = Object(again);
  CHECK(status["reason"].as<std::string>() == "AlreadyExists");
  CHECK(status["message"].as<std::string>() == "deployments.apps \"web\" already exists");
  CHECK(source.applies == 1);
}

TEST_CASE_FIXTURE(Fixture, "a POST whose namespace differs from the URL's changes nothing") {
  KubeResponse response = Call("POST", "/apis/apps/v1/namespaces/other/deployments", kDeployment);
  CHECK(response.status == 400);
  CHECK(source.applies == 0);
}

TEST_CASE_FIXTURE(Fixture, "PUT replaces; a stale resourceVersion is 409 Conflict") {
  REQUIRE(Call("POST", kPath, kDeployment).status == 201);
  YAML::Node object = Object(Call("GET", std::string(kPath) + "/web"));
  object["spec"]["replicas"] = 5;
  object["metadata"]["resourceVersion"] = "1";  // stale
  KubeResponse stale = Call("PUT", std::string(kPath) + "/web", YAML::Dump(object));
  CHECK(stale.status == 409);
  CHECK(Object(stale)["message"].as<std::string>().find("the object has been modified; please "
                                                        "apply your changes to the latest "
                                                        "version and try again") !=
        std::string::npos);
  CHECK(Replicas() == 2);

  object["metadata"]["resourceVersion"] = "2";  // current; status is sent back too
  object["status"]["replicas"] = 9;
  KubeResponse replaced = Call("PUT", std::string(kPath) + "/web", YAML::Dump(object));
  CHECK(replaced.status == 200);
  CHECK(Replicas() == 5);
  CHECK(Call("PUT", std::string(kPath) + "/nope", kDeployment).status == 404);
}

TEST_CASE_FIXTURE(Fixture, "PATCH: merge, JSON and strategic merge patches") {
  REQUIRE(Call("POST", kPath, kDeployment).status == 201);
  const std::string web = std::string(kPath) + "/web";
  CHECK(Call("PATCH", web, R"({"spec":{"replicas":3}})", "application/merge-patch+json").status ==
        200);
  CHECK(Replicas() == 3);
  CHECK(Call("PATCH", web, R"([{"op":"replace","path":"/spec/replicas","value":4}])",
             "application/json-patch+json")
            .status == 200);
  CHECK(Replicas() == 4);
  // Strategic: a second container is merged in by name, the first stays.
  KubeResponse merged =
      Call("PATCH", web,
           R"({"spec":{"template":{"spec":{"containers":[{"name":"side","image":"envoy"}]}}}})",
           "application/strategic-merge-patch+json");
  REQUIRE(merged.status == 200);
  CHECK(Object(merged)["spec"]["template"]["spec"]["containers"].size() == 2);
  // A failed test changes nothing.
  KubeResponse failed = Call("PATCH", web, R"([{"op":"test","path":"/spec/replicas","value":1}])",
                             "application/json-patch+json");
  CHECK(failed.status == 422);
  CHECK(Replicas() == 4);
  CHECK(Call("PATCH", web, "{}", "text/plain").status == 415);
}

TEST_CASE_FIXTURE(Fixture, "a document podless rejects is 422 with the field; unknown is 400") {
  REQUIRE(Call("POST", kPath, kDeployment).status == 201);
  const std::string web = std::string(kPath) + "/web";
  KubeResponse invalid =
      Call("PATCH", web, R"({"spec":{"replicas":-1}})", "application/merge-patch+json");
  CHECK(invalid.status == 422);
  YAML::Node status = Object(invalid);
  CHECK(status["reason"].as<std::string>() == "Invalid");
  CHECK(status["message"].as<std::string>().starts_with(
      "Deployment.apps \"web\" is invalid: spec.replicas: "));
  REQUIRE(status["details"]["causes"].size() == 1);
  CHECK(status["details"]["causes"][0]["field"].as<std::string>() == "spec.replicas");
  CHECK(status["details"]["kind"].as<std::string>() == "Deployment");

  KubeResponse unknown = Call("PATCH", web + "?fieldValidation=Strict", R"({"spec":{"foo":1}})",
                              "application/merge-patch+json");
  CHECK(unknown.status == 400);
  CHECK(Object(unknown)["message"].as<std::string>().find(
            "strict decoding error: unknown field \"spec.foo\"") != std::string::npos);
  CHECK(Replicas() == 2);
  CHECK(source.applies == 1);

  // Ignore (kubectl --validate=false) and Warn drop the unknown field and
  // apply the rest; Warn says so.
  KubeResponse ignored = Call("PATCH", web + "?fieldValidation=Ignore",
                              R"({"spec":{"replicas":3,"foo":1}})", "application/merge-patch+json");
  CHECK(ignored.status == 200);
  CHECK(ignored.warnings.empty());
  CHECK(Replicas() == 3);
  CHECK_FALSE(Object(ignored)["spec"]["foo"].IsDefined());
  KubeResponse warned = Call("PATCH", web + "?fieldValidation=Warn",
                             R"({"spec":{"replicas":4,"foo":1}})", "application/merge-patch+json");
  CHECK(warned.status == 200);
  CHECK(warned.warnings == std::vector<std::string>{"unknown field \"spec.foo\""});
  CHECK(Replicas() == 4);
  // An unknown field among other errors: 422, nothing dropped or applied.
  CHECK(Call("PATCH", web + "?fieldValidation=Ignore", R"({"spec":{"replicas":-1,"foo":1}})",
             "application/merge-patch+json")
            .status == 422);
  CHECK(Replicas() == 4);
  // No fieldValidation: Warn, the API server's default.
  KubeResponse plain =
      Call("PATCH", web, R"({"spec":{"replicas":5,"foo":1}})", "application/merge-patch+json");
  CHECK(plain.status == 200);
  CHECK(plain.warnings.size() == 1);
  CHECK(Replicas() == 5);
  CHECK(WarningHeader("a \"b\"\n") == R"(299 - "a \"b\" ")");
}

TEST_CASE_FIXTURE(Fixture, "strategic merge of a custom resource is 415, as for CRDs") {
  KubeResponse response =
      Call("PATCH", "/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies/x",
           R"({"spec":{}})", "application/strategic-merge-patch+json");
  // Not there: 404 comes first, as the API server answers.
  CHECK(response.status == 404);
  REQUIRE(Call("POST", "/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies",
               R"({"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy",
                   "metadata":{"name":"x"},"spec":{"action":"DENY","rules":[{}]}})")
              .status == 201);
  response = Call("PATCH", "/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies/x",
                  R"({"spec":{}})", "application/strategic-merge-patch+json");
  CHECK(response.status == 415);
  CHECK(Object(response)["reason"].as<std::string>() == "UnsupportedMediaType");
}

TEST_CASE_FIXTURE(Fixture, "DELETE removes at once; dryRun=All changes nothing") {
  CHECK(Call("POST", std::string(kPath) + "?dryRun=All", kDeployment).status == 201);
  CHECK(source.objects.empty());
  REQUIRE(Call("POST", kPath, kDeployment).status == 201);
  const std::string web = std::string(kPath) + "/web";
  CHECK(Call("DELETE", web + "?dryRun=All").status == 200);
  CHECK(source.objects.size() == 1);
  KubeResponse deleted = Call("DELETE", web);
  CHECK(deleted.status == 200);
  YAML::Node status = Object(deleted);
  CHECK(status["status"].as<std::string>() == "Success");
  CHECK(status["details"]["name"].as<std::string>() == "web");
  CHECK(status["details"]["kind"].as<std::string>() == "deployments");
  CHECK(source.objects.empty());
  CHECK(Call("GET", web).status == 404);
  CHECK(Call("DELETE", web).status == 404);
}

TEST_CASE_FIXTURE(Fixture, "the scale subresource reads and writes spec.replicas") {
  REQUIRE(Call("POST", kPath, kDeployment).status == 201);
  const std::string scale = std::string(kPath) + "/web/scale";
  KubeResponse got = Call("GET", scale);
  REQUIRE(got.status == 200);
  YAML::Node s = Object(got);
  CHECK(s["kind"].as<std::string>() == "Scale");
  CHECK(s["apiVersion"].as<std::string>() == "autoscaling/v1");
  CHECK(s["spec"]["replicas"].as<int>() == 2);
  CHECK(s["status"]["selector"].as<std::string>() == "app=web");
  KubeResponse patched =
      Call("PATCH", scale, R"({"spec":{"replicas":3}})", "application/merge-patch+json");
  REQUIRE(patched.status == 200);
  CHECK(Object(patched)["spec"]["replicas"].as<int>() == 3);
  CHECK(Replicas() == 3);
  CHECK(Call("PUT", scale, R"({"spec":{"replicas":-2}})").status == 422);
  CHECK(Replicas() == 3);
  CHECK(Call("GET", std::string(kPath) + "/web/status").status == 404);  // not served
}

TEST_CASE_FIXTURE(Fixture, "pods are not written; server-side apply needs a field manager") {
  KubeResponse pod = Call("POST", "/api/v1/namespaces/shop/pods", R"({"kind":"Pod"})");
  CHECK(pod.status == 405);
  CHECK(Object(pod)["message"].as<std::string>().find("replicas") != std::string::npos);
  const std::string web = std::string(kPath) + "/web";
  CHECK(Call("PATCH", web, kDeployment, "application/apply-patch+yaml").status == 400);
  CHECK(source.objects.empty());
  KubeResponse applied = Call("PATCH", web + "?fieldManager=kubectl&force=false", kDeployment,
                              "application/apply-patch+yaml");
  CHECK(applied.status == 201);
  YAML::Node object = Object(applied);
  REQUIRE(object["metadata"]["managedFields"].size() == 1);
  CHECK(object["metadata"]["managedFields"][0]["manager"].as<std::string>() == "kubectl");
  CHECK(object["metadata"]["managedFields"][0]["operation"].as<std::string>() == "Apply");
  CHECK(object["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:replicas"].IsMap());

  // Another manager's different value for a field kubectl holds: 409.
  const std::string scale_to_7 =
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 7}\n";
  applied = Call("PATCH", web + "?fieldManager=hpa", scale_to_7, "application/apply-patch+yaml");
  CHECK(applied.status == 409);
  YAML::Node status = Object(applied);
  CHECK(status["reason"].as<std::string>() == "Conflict");
  CHECK(status["message"].as<std::string>() ==
        "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas");
  CHECK(status["details"]["causes"][0]["reason"].as<std::string>() == "FieldManagerConflict");
  CHECK(status["details"]["causes"][0]["field"].as<std::string>() == ".spec.replicas");
  CHECK(Replicas() == 2);
  // Forced: hpa takes spec.replicas from kubectl.
  applied = Call("PATCH", web + "?fieldManager=hpa&force=true", scale_to_7,
                 "application/apply-patch+yaml");
  CHECK(applied.status == 200);
  CHECK(Replicas() == 7);
  // kubectl applies without replicas: no conflict (it no longer holds them),
  // and they stay hpa's; its annotation, which it stops applying, goes.
  std::string without = kDeployment;
  without.replace(without.find(R"("replicas":2,)"), 13, "");
  without.replace(without.find(R"(,"annotations":{"note":"kept"})"), 30, "");
  applied = Call("PATCH", web + "?fieldManager=kubectl", without, "application/apply-patch+yaml");
  CHECK(applied.status == 200);
  CHECK(Replicas() == 7);
  CHECK_FALSE(Object(applied)["metadata"]["annotations"].IsDefined());
  // An update (a patch with its field manager) takes the fields it changes.
  REQUIRE(Call("PATCH", web + "?fieldManager=kubectl-patch", R"({"spec":{"replicas":4}})",
               "application/merge-patch+json")
              .status == 200);
  applied = Call("PATCH", web + "?fieldManager=hpa", scale_to_7, "application/apply-patch+yaml");
  CHECK(applied.status == 409);
  CHECK(Object(applied)["message"].as<std::string>().find("conflict with \"kubectl-patch\"") !=
        std::string::npos);
  CHECK(Replicas() == 4);
}

TEST_CASE("InvalidResponse: one cause per line, the location left out") {
  const Resource* deployments = FindResource("apps", "v1", "deployments");
  REQUIRE(deployments != nullptr);
  KubeResponse r = InvalidResponse(*deployments, "web",
                                   "request:3:5: spec.replicas: must be >= 0\n"
                                   "request:9:7: spec.template.spec.containers[0].image: "
                                   "required\n");
  CHECK(r.status == 422);
  YAML::Node status = YAML::Load(r.body);
  REQUIRE(status["details"]["causes"].size() == 2);
  CHECK(status["details"]["causes"][1]["field"].as<std::string>() ==
        "spec.template.spec.containers[0].image");
  CHECK(status["details"]["causes"][1]["message"].as<std::string>() == "required");
  CHECK(status["message"].as<std::string>() ==
        "Deployment.apps \"web\" is invalid: [spec.replicas: must be >= 0, "
        "spec.template.spec.containers[0].image: required]");
}

}  // namespace
}  // namespace podless::api::kube
