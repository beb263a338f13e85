#include "api/kube/openapi.h"

#include <doctest.h>
#include <yaml-cpp/yaml.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "api/kube/endpoints.h"
#include "api/kube/resources.h"
#include "api/kube/schemas.h"
#include "tests/api/kube/test_objects.h"
#include "workloads/manifest_fields.h"

namespace podless::api::kube {
namespace {

namespace objects = workloads::manifest::objects;

// The agent's List over fixed objects, by kind and namespace.
class FakeSource final : public ObjectSource {
 public:
  std::vector<v1::Object> objects;
  Result<v1::ListResponse> List(v1::Kind kind, const std::string& ns) override {
    v1::ListResponse out;
    out.set_resource_version(7);
    for (const v1::Object& object : objects) {
      const bool workload = kind == v1::WORKLOAD && object.has_workload();
      const bool service = kind == v1::SERVICE && object.has_service();
      if (!workload && !service) continue;
      const std::string& object_ns = object.has_workload()
                                         ? object.workload().metadata().namespace_()
                                         : object.service().metadata().namespace_();
      if (ns.empty() || object_ns == ns) *out.add_objects() = object;
    }
    return out;
  }
};

struct Fixture {
  FakeSource source;
  KubeApi api{source, "127.0.0.1:6443", [] { return int64_t{2000}; }};
  Fixture() { source.objects = {testing::WebDeployment("shop"), testing::WebService("shop")}; }
  KubeResponse Get(const std::string& target, const std::string& accept = "application/json") {
    return api.Handle({"GET", target, accept});
  }
};

std::string Header(const KubeResponse& response, const std::string& name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return "";
}

YAML::Node Document(std::string_view group, std::string_view version) {
  const std::string& text = OpenApiDocument(group, version);
  REQUIRE(!text.empty());
  return YAML::Load(text);
}

std::set<std::string> Keys(const YAML::Node& map) {
  std::set<std::string> keys;
  for (const auto& entry : map) keys.insert(entry.first.as<std::string>());
  return keys;
}

TEST_CASE("the OpenAPI v3 discovery names every served group/version with its document's hash") {
  const YAML::Node discovery = YAML::Load(OpenApiDiscovery());
  std::set<std::string> expected;
  for (const Resource& r : Resources()) {
    expected.insert(r.group.empty() ? "api/" + r.version : "apis/" + r.GroupVersion());
  }
  CHECK(Keys(discovery["paths"]) == expected);
  CHECK(expected.count("apis/apps/v1") == 1);
  CHECK(expected.count("apis/podless.dev/v1alpha1") == 1);
  const std::string url = discovery["paths"]["apis/apps/v1"]["serverRelativeURL"].as<std::string>();
  CHECK(url == "/openapi/v3/apis/apps/v1?hash=" + OpenApiHash(OpenApiDocument("apps", "v1")));
  CHECK(OpenApiDocument("apps", "v2").empty());
}

TEST_CASE("the content hash is SHA-512 in upper-case hex and changes with the content") {
  const std::string a = OpenApiHash("{\"a\":1}");
  CHECK(a.size() == 128);
  CHECK(a.find_first_not_of("0123456789ABCDEF") == std::string::npos);
  CHECK(a == OpenApiHash("{\"a\":1}"));
  CHECK(a != OpenApiHash("{\"a\":2}"));
  // SHA-512 of the empty string, as `sha512sum` prints it (upper-cased).
  CHECK(OpenApiHash("").starts_with("CF83E1357EEFB8BDF1542850D66D8007D620E4050B5715DC83F4A921"));
  CHECK(OpenApiHash(OpenApiDocument("", "v1")) != OpenApiHash(OpenApiDocument("apps", "v1")));
}

TEST_CASE("a kind's schema is named as Kubernetes names it, with its group/version/kind") {
  const YAML::Node core = Document("", "v1");
  CHECK(core["openapi"].as<std::string>() == "3.0.0");
  const YAML::Node schemas = core["components"]["schemas"];
  const YAML::Node pod = schemas["io.k8s.api.core.v1.Pod"];
  REQUIRE(pod.IsMap());
  CHECK(pod["x-kubernetes-group-version-kind"][0]["group"].as<std::string>() == "");
  CHECK(pod["x-kubernetes-group-version-kind"][0]["kind"].as<std::string>() == "Pod");
  CHECK(pod["x-kubernetes-group-version-kind"][0]["version"].as<std::string>() == "v1");
  CHECK(pod["properties"]["spec"]["allOf"][0]["$ref"].as<std::string>() ==
        "#/components/schemas/io.k8s.api.core.v1.PodSpec");
  CHECK(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].IsMap());
  CHECK(!pod["description"].as<std::string>().empty());

  const YAML::Node apps = Document("apps", "v1")["components"]["schemas"];
  CHECK(apps["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"][0]["group"]
            .as<std::string>() == "apps");
  CHECK(apps["io.k8s.api.core.v1.PodSpec"].IsMap());  // referred to by the template
  CHECK(Document("security.istio.io",
                 "v1")["components"]["schemas"]["io.istio.security.v1.AuthorizationPolicy"]
            .IsMap());
  CHECK(
      Document("podless.dev", "v1alpha1")["components"]["schemas"]["dev.podless.v1alpha1.Workload"]
          .IsMap());
}

TEST_CASE("lists carry Kubernetes' merge keys and list types") {
  const YAML::Node schemas = Document("apps", "v1")["components"]["schemas"];
  const YAML::Node containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
  CHECK(containers["type"].as<std::string>() == "array");
  CHECK(containers["x-kubernetes-patch-merge-key"].as<std::string>() == "name");
  CHECK(containers["x-kubernetes-patch-strategy"].as<std::string>() == "merge");
  CHECK(containers["x-kubernetes-list-type"].as<std::string>() == "map");
  CHECK(containers["x-kubernetes-list-map-keys"][0].as<std::string>() == "name");
  CHECK(containers["items"]["allOf"][0]["$ref"].as<std::string>() ==
        "#/components/schemas/io.k8s.api.core.v1.Container");
  const YAML::Node ports = schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
  CHECK(ports["x-kubernetes-patch-merge-key"].as<std::string>() == "containerPort");
  CHECK(ports["x-kubernetes-list-map-keys"].size() == 2);
  CHECK(ports["x-kubernetes-list-map-keys"][1].as<std::string>() == "protocol");
  const YAML::Node required = schemas["io.k8s.api.core.v1.PodSpec"]["required"];
  REQUIRE(required.size() == 1);
  CHECK(required[0].as<std::string>() == "containers");
}

TEST_CASE("the schemas hold exactly the fields the manifest reader accepts") {
  const YAML::Node schemas = Document("apps", "v1")["components"]["schemas"];
  for (std::string_view name : {objects::kPodSpec, objects::kContainer, objects::kDeploymentSpec,
                                objects::kProbe, objects::kObjectMeta}) {
    CAPTURE(name);
    std::set<std::string> table;
    for (const char* field : workloads::manifest::FieldNames(name)) table.insert(field);
    CHECK(Keys(schemas[std::string(name)]["properties"]) == table);
  }
  // A field podless keeps but does not act on says so, and why.
  const std::string volumes =
      schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"]["description"]
          .as<std::string>();
  CHECK(volumes.find("does not act on it") != std::string::npos);
  CHECK(volumes.find("podless mounts no volumes") != std::string::npos);
  // A ServiceAccount's own fields are at its top level.
  const YAML::Node sa =
      Document("", "v1")["components"]["schemas"]["io.k8s.api.core.v1.ServiceAccount"];
  CHECK(sa["properties"]["automountServiceAccountToken"]["type"].as<std::string>() == "boolean");
  CHECK(!sa["properties"]["spec"]);
}

TEST_CASE("every reference of every document resolves within it") {
  for (const auto& entry : YAML::Load(OpenApiDiscovery())["paths"]) {
    const std::string gv = entry.first.as<std::string>();
    CAPTURE(gv);
    const std::string group = gv.starts_with("api/") ? "" : gv.substr(5, gv.rfind('/') - 5);
    const std::string version = gv.substr(gv.rfind('/') + 1);
    const YAML::Node doc = Document(group, version);
    const YAML::Node schemas = doc["components"]["schemas"];
    int refs = 0;
    std::function<void(const YAML::Node&)> walk = [&](const YAML::Node& node) {
      if (node.IsMap()) {
        for (const auto& field : node) {
          if (field.first.as<std::string>() == "$ref") {
            const std::string ref = field.second.as<std::string>();
            REQUIRE(ref.starts_with("#/components/schemas/"));
            CHECK_MESSAGE(schemas[ref.substr(21)].IsMap(), ref);
            ++refs;
          } else {
            walk(field.second);
          }
        }
      } else if (node.IsSequence()) {
        for (const YAML::Node& child : node) walk(child);
      }
    };
    walk(doc);
    CHECK(refs > 0);
  }
}

TEST_CASE("PATCH, POST and PUT list fieldValidation, which kubectl looks for before apply") {
  const YAML::Node paths = Document("apps", "v1")["paths"];
  const YAML::Node one = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
  REQUIRE(one.IsMap());
  const YAML::Node patch = one["patch"];
  CHECK(patch["x-kubernetes-action"].as<std::string>() == "patch");
  CHECK(patch["x-kubernetes-group-version-kind"]["kind"].as<std::string>() == "Deployment");
  CHECK(patch["x-kubernetes-group-version-kind"]["group"].as<std::string>() == "apps");
  CHECK(patch["operationId"].as<std::string>() == "patchAppsV1NamespacedDeployment");
  for (const char* method : {"patch", "put"}) {
    bool found = false;
    for (const YAML::Node& p : one[method]["parameters"]) {
      found = found || (p["name"].as<std::string>() == "fieldValidation" &&
                        p["in"].as<std::string>() == "query");
    }
    CHECK_MESSAGE(found, method);
  }
  bool post = false;
  for (const YAML::Node& p :
       paths["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"]["parameters"]) {
    post = post || p["name"].as<std::string>() == "fieldValidation";
  }
  CHECK(post);
  // Reads list none; kinds podless derives (events) have no writes.
  for (const YAML::Node& p : one["get"]["parameters"]) {
    CHECK(p["name"].as<std::string>() != "fieldValidation");
  }
  const YAML::Node events =
      Document("", "v1")["paths"]["/api/v1/namespaces/{namespace}/events/{name}"];
  CHECK(events["get"].IsMap());
  CHECK(!events["patch"]);
  // Cluster-scoped kinds have no namespace in their paths.
  CHECK(Document("", "v1")["paths"]["/api/v1/namespaces/{name}"]["patch"].IsMap());
}

TEST_CASE("only Kubernetes' own kinds offer strategic merge patches, as kubectl apply reads") {
  const auto types = [](const YAML::Node& patch) { return Keys(patch["requestBody"]["content"]); };
  const YAML::Node deployment = Document(
      "apps", "v1")["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
  CHECK(types(deployment).count("application/strategic-merge-patch+json") == 1);
  // A custom resource's: kubectl then sends a JSON merge patch, which the
  // server takes (it answers a strategic one 415).
  const YAML::Node policy = Document(
      "security.istio.io",
      "v1")["paths"]
           ["/apis/security.istio.io/v1/namespaces/{namespace}/authorizationpolicies/{name}"]
           ["patch"];
  REQUIRE(policy.IsMap());
  CHECK(types(policy).count("application/strategic-merge-patch+json") == 0);
  CHECK(types(policy).count("application/merge-patch+json") == 1);
}

TEST_CASE("GET /openapi/v3 and a group/version's document, with the API server's caching") {
  Fixture f;
  KubeResponse discovery = f.Get("/openapi/v3");
  CHECK(discovery.status == 200);
  CHECK(discovery.content_type == "application/json");
  CHECK(discovery.body == OpenApiDiscovery());
  CHECK(Header(discovery, "Etag") == "\"" + OpenApiHash(discovery.body) + "\"");

  const std::string hash = OpenApiHash(OpenApiDocument("apps", "v1"));
  KubeResponse doc = f.Get("/openapi/v3/apis/apps/v1?hash=" + hash, "application/json");
  CHECK(doc.status == 200);
  CHECK(doc.body == OpenApiDocument("apps", "v1"));
  CHECK(doc.cache_control == "public, immutable");
  CHECK(Header(doc, "Etag") == "\"" + hash + "\"");
  CHECK(Header(doc, "Vary") == "Accept");
  CHECK(!Header(doc, "Expires").empty());

  // A client that has this version already: 304, no body.
  KubeRequest again{"GET", "/openapi/v3/apis/apps/v1?hash=" + hash, "application/json"};
  again.if_none_match = "\"" + hash + "\"";
  KubeResponse not_modified = f.api.Handle(again);
  CHECK(not_modified.status == 304);
  CHECK(not_modified.body.empty());
  again.if_none_match = "\"OTHER\"";
  CHECK(f.api.Handle(again).status == 200);

  // Without a hash: not to be kept.
  KubeResponse plain = f.Get("/openapi/v3/api/v1", "");
  CHECK(plain.status == 200);
  CHECK(plain.cache_control == "no-cache, private");
  // A stale hash: redirected to the current one.
  KubeResponse moved = f.Get("/openapi/v3/apis/apps/v1?hash=ABC");
  CHECK(moved.status == 301);
  CHECK(Header(moved, "Location") == "/openapi/v3/apis/apps/v1?hash=" + hash);
}

TEST_CASE("OpenAPI media types: JSON when accepted, 406 for protobuf alone; v2 is not served") {
  Fixture f;
  constexpr const char* kProto = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf";
  CHECK(f.Get("/openapi/v3/api/v1", kProto).status == 406);
  KubeResponse both = f.Get("/openapi/v3/api/v1", std::string(kProto) + ", application/json");
  CHECK(both.status == 200);
  CHECK(both.content_type == "application/json");
  CHECK(f.Get("/openapi/v3/api/v1", "*/*").status == 200);
  CHECK(f.Get("/openapi/v2").status == 404);
  CHECK(f.Get("/openapi/v3/apis/nothing.example/v1").status == 404);
}

TEST_CASE("events: an empty list, selected by the involved object's fields") {
  Fixture f;
  KubeResponse events = f.Get(
      "/api/v1/namespaces/shop/events?fieldSelector=involvedObject.name%3Dweb-0%2C"
      "involvedObject.namespace%3Dshop%2CinvolvedObject.uid%3Dabc");
  REQUIRE(events.status == 200);
  const YAML::Node list = YAML::Load(events.body);
  CHECK(list["kind"].as<std::string>() == "EventList");
  CHECK(list["items"].size() == 0);
  // involvedObject is a field of events only.
  KubeResponse pods = f.Get("/api/v1/namespaces/shop/pods?fieldSelector=involvedObject.name%3Dx");
  CHECK(pods.status == 400);
  CHECK(YAML::Load(pods.body)["message"].as<std::string>() ==
        "field label not supported: involvedObject.name");
}

TEST_CASE("a Service's endpoints are the addresses of the replicas its selector picks") {
  Fixture f;
  KubeResponse response = f.Get("/api/v1/namespaces/shop/endpoints/web");
  REQUIRE(response.status == 200);
  const YAML::Node ep = YAML::Load(response.body);
  CHECK(ep["kind"].as<std::string>() == "Endpoints");
  const YAML::Node subset = ep["subsets"][0];
  REQUIRE(subset["addresses"].size() == 1);
  CHECK(subset["addresses"][0]["ip"].as<std::string>() == "127.64.0.1");
  CHECK(subset["addresses"][0]["targetRef"]["name"].as<std::string>() == "web-0");
  CHECK(subset["addresses"][0]["targetRef"]["uid"].as<std::string>() ==
        ObjectUid("Pod", "shop", "web-0"));
  REQUIRE(subset["notReadyAddresses"].size() == 1);
  CHECK(subset["notReadyAddresses"][0]["ip"].as<std::string>() == "127.64.0.2");
  CHECK(subset["ports"][0]["port"].as<int>() == 8080);
  CHECK(subset["ports"][0]["name"].as<std::string>() == "http");
  CHECK(f.Get("/api/v1/namespaces/other/endpoints/web").status == 404);
  // kubectl 1.32's describe reads the slices, by the Service's name label.
  KubeResponse slices = f.Get(
      "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?labelSelector="
      "kubernetes.io%2Fservice-name%3Dweb");
  REQUIRE(slices.status == 200);
  const YAML::Node list = YAML::Load(slices.body);
  REQUIRE(list["items"].size() == 1);
  const YAML::Node slice = list["items"][0];
  CHECK(slice["addressType"].as<std::string>() == "IPv4");
  REQUIRE(slice["endpoints"].size() == 2);
  CHECK(slice["endpoints"][0]["addresses"][0].as<std::string>() == "127.64.0.1");
  CHECK(slice["endpoints"][0]["conditions"]["ready"].as<bool>());
  CHECK(!slice["endpoints"][1]["conditions"]["ready"].as<bool>());
  CHECK(slice["ports"][0]["port"].as<int>() == 8080);
  CHECK(slice["metadata"]["ownerReferences"][0]["name"].as<std::string>() == "web");
  CHECK(YAML::Load(f.Get("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?"
                         "labelSelector=kubernetes.io%2Fservice-name%3Dother")
                       .body)["items"]
            .size() == 0);
  // The Service itself has its VIP where kubectl describe reads it.
  const YAML::Node svc = YAML::Load(f.Get("/api/v1/namespaces/shop/services/web").body);
  CHECK(svc["spec"]["clusterIP"].as<std::string>() == "127.128.0.1");
  CHECK(svc["spec"]["clusterIPs"][0].as<std::string>() == "127.128.0.1");
  // With the defaults the API server writes, where they say what podless does.
  CHECK(svc["spec"]["ports"][0]["protocol"].as<std::string>() == "TCP");
  CHECK(svc["spec"]["sessionAffinity"].as<std::string>() == "None");
  CHECK(svc["spec"]["ipFamilies"][0].as<std::string>() == "IPv4");
  const YAML::Node pod = YAML::Load(f.Get("/api/v1/namespaces/shop/pods/web-0").body);
  CHECK(pod["spec"]["containers"][0]["ports"][0]["protocol"].as<std::string>() == "TCP");
}

}  // namespace
}  // namespace podless::api::kube
