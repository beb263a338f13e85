#include "api/kube/kube_api.h"

#include <doctest.h>
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "proxy/base/percent_decode.h"
#include "tests/api/kube/test_objects.h"

namespace podless::api::kube {
namespace {

constexpr const char* kTable =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
    "g=meta.k8s.io,application/json";

// The agent's List, over a fixed set of objects.
class FakeSource final : public ObjectSource {
 public:
  std::vector<v1::Object> objects;
  std::vector<std::pair<v1::Kind, std::string>> asked;
  uint64_t revision = 7;

  Result<v1::ListResponse> List(v1::Kind kind, const std::string& ns) override {
    asked.emplace_back(kind, ns);
    v1::ListResponse out;
    out.set_resource_version(revision);
    for (const v1::Object& object : objects) {
      const bool kind_matches = (kind == v1::WORKLOAD && object.has_workload()) ||
                                (kind == v1::SERVICE && object.has_service()) ||
                                (kind == v1::NAMESPACE && object.has_namespace_());
      const std::string& object_ns = object.has_workload()
                                         ? object.workload().metadata().namespace_()
                                         : object.service().metadata().namespace_();
      if (kind_matches && (ns.empty() || object_ns == ns)) *out.add_objects() = object;
    }
    return out;
  }
};

struct Fixture {
  FakeSource source;
  KubeApi api{source, "127.0.0.1:6443", [] { return int64_t{2000}; }};

  Fixture() {
    source.objects = {testing::WebDeployment("shop"), testing::WebService("shop"),
                      testing::WebDeployment("other")};
  }
  KubeResponse Get(const std::string& target, const std::string& accept = "application/json") {
    return api.Handle({"GET", target, accept});
  }
  std::vector<std::string> RowNames(const std::string& target) {
    KubeResponse response = Get(target, kTable);
    REQUIRE(response.status == 200);
    std::vector<std::string> names;
    YAML::Node table = YAML::Load(response.body);
    for (const YAML::Node& row : table["rows"]) {
      names.push_back(row["object"]["metadata"]["namespace"].as<std::string>() + "/" +
                      row["cells"][0].as<std::string>());
    }
    return names;
  }
};

using Names = std::vector<std::string>;

TEST_CASE("KubeApi: lists pods in one namespace or all, as a Table when asked") {
  Fixture f;
  CHECK(f.RowNames("/api/v1/pods?limit=500") ==
        Names{"shop/web-0", "shop/web-1", "other/web-0", "other/web-1"});
  CHECK(f.RowNames("/api/v1/namespaces/shop/pods?limit=500") == Names{"shop/web-0", "shop/web-1"});
  CHECK(f.source.asked.back() == std::make_pair(v1::WORKLOAD, std::string("shop")));
  KubeResponse table = f.Get("/api/v1/namespaces/shop/pods", kTable);
  CHECK(table.content_type == "application/json;as=Table;v=v1;g=meta.k8s.io");
  KubeResponse list = f.Get("/api/v1/namespaces/shop/pods");
  CHECK(list.content_type == "application/json");
  CHECK(YAML::Load(list.body)["kind"].as<std::string>() == "PodList");
}

TEST_CASE("KubeApi: label and field selectors filter, as kubectl's -l and --field-selector") {
  Fixture f;
  CHECK(f.RowNames("/api/v1/pods?labelSelector=app%3Dweb").size() == 4);
  CHECK(f.RowNames("/api/v1/pods?labelSelector=app%3Dother").empty());
  CHECK(f.RowNames("/api/v1/pods?labelSelector=app%20in%20(web,x),version!%3D2").size() == 4);
  CHECK(f.RowNames("/api/v1/pods?fieldSelector=metadata.name%3Dweb-1") ==
        Names{"shop/web-1", "other/web-1"});
  CHECK(f.RowNames(
            "/api/v1/pods?fieldSelector=metadata.name!%3Dweb-1,metadata.namespace%3D%3Dshop") ==
        Names{"shop/web-0"});
  // Deployments select by their own labels, not their template's.
  CHECK(f.RowNames("/apis/apps/v1/deployments?labelSelector=team%3Dshop").size() == 2);
  CHECK(f.RowNames("/apis/apps/v1/deployments?labelSelector=app%3Dweb").empty());

  KubeResponse bad = f.Get("/api/v1/pods?fieldSelector=spec.nodeName%3Dx");
  CHECK(bad.status == 400);
  CHECK(YAML::Load(bad.body)["message"].as<std::string>() ==
        "field label not supported: spec.nodeName");
  CHECK(f.Get("/api/v1/pods?labelSelector=a%20in%20(").status == 400);
}

TEST_CASE("KubeApi: a limited list comes in chunks, each rendering only its own items") {
  Fixture f;
  KubeResponse first = f.Get("/api/v1/pods?limit=3&labelSelector=app%3Dweb", kTable);
  REQUIRE(first.status == 200);
  YAML::Node table = YAML::Load(first.body);
  REQUIRE(table["rows"].size() == 3);
  CHECK(table["metadata"]["resourceVersion"].as<std::string>() == "7");
  CHECK(table["metadata"]["remainingItemCount"].as<int>() == 1);
  const std::string token = table["metadata"]["continue"].as<std::string>();
  CHECK(f.RowNames("/api/v1/pods?limit=3&labelSelector=app%3Dweb&continue=" + token) ==
        Names{"other/web-1"});
  YAML::Node last = YAML::Load(f.Get("/api/v1/pods?limit=3&continue=" + token, kTable).body);
  CHECK_FALSE(last["metadata"]["continue"]);  // the end

  // A listing in chunks reads the first chunk's listing: the source is
  // listed once, and a change after the first chunk is not seen by the
  // others (one state, as the API server's chunks are).
  const size_t listed = f.source.asked.size();
  KubeResponse again = f.Get("/api/v1/pods?limit=2", kTable);
  const std::string next = YAML::Load(again.body)["metadata"]["continue"].as<std::string>();
  f.source.revision = 8;
  f.source.objects.pop_back();  // other/web-0 and other/web-1 go
  CHECK(f.RowNames("/api/v1/pods?limit=2&continue=" + next) == Names{"other/web-0", "other/web-1"});
  CHECK(f.source.asked.size() == listed + 1);

  // Read to its end, the listing is let go: a token of the old state has
  // expired, as an API server's after its compaction (kubectl lists again).
  CHECK(f.Get("/api/v1/pods?limit=2&continue=" + next).status == 410);
  f.source.revision = 9;
  f.source.objects.push_back(testing::WebDeployment("other"));
  KubeResponse expired = f.Get("/api/v1/pods?limit=3&continue=" + token);
  CHECK(expired.status == 410);
  CHECK(YAML::Load(expired.body)["reason"].as<std::string>() == "Expired");
  CHECK(f.Get("/api/v1/pods?limit=3&continue=abc").status == 400);
  CHECK(f.Get("/api/v1/pods?limit=-1").status == 400);
}

TEST_CASE("KubeApi: get by name, and kubectl's NotFound") {
  Fixture f;
  KubeResponse pod = f.Get("/api/v1/namespaces/shop/pods/web-1");
  REQUIRE(pod.status == 200);
  YAML::Node object = YAML::Load(pod.body);
  CHECK(object["kind"].as<std::string>() == "Pod");
  CHECK(object["metadata"]["name"].as<std::string>() == "web-1");
  CHECK(f.RowNames("/api/v1/namespaces/shop/pods/web-1") == Names{"shop/web-1"});

  KubeResponse missing = f.Get("/api/v1/namespaces/shop/pods/missing");
  CHECK(missing.status == 404);
  YAML::Node status = YAML::Load(missing.body);
  CHECK(status["kind"].as<std::string>() == "Status");
  CHECK(status["status"].as<std::string>() == "Failure");
  CHECK(status["reason"].as<std::string>() == "NotFound");
  CHECK(status["message"].as<std::string>() == "pods \"missing\" not found");
  CHECK(status["details"]["name"].as<std::string>() == "missing");
  CHECK(status["details"]["kind"].as<std::string>() == "pods");
  CHECK(status["code"].as<int>() == 404);

  CHECK(f.Get("/apis/apps/v1/namespaces/shop/deployments/web").status == 200);
  CHECK(f.Get("/api/v1/namespaces/shop/services/web").status == 200);
  CHECK(f.Get("/api/v1/namespaces/other/services/web").status == 404);
}

TEST_CASE("KubeApi: discovery and /version") {
  Fixture f;
  KubeResponse aggregated =
      f.Get("/api",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
            "application/json");
  CHECK(aggregated.content_type ==
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
  CHECK(YAML::Load(f.Get("/api").body)["kind"].as<std::string>() == "APIVersions");
  CHECK(YAML::Load(f.Get("/apis").body)["kind"].as<std::string>() == "APIGroupList");
  CHECK(YAML::Load(f.Get("/api/v1").body)["kind"].as<std::string>() == "APIResourceList");
  CHECK(YAML::Load(f.Get("/apis/podless.dev/v1alpha1").body)["groupVersion"].as<std::string>() ==
        "podless.dev/v1alpha1");
  CHECK(f.Get("/apis/batch/v1").status == 404);
  YAML::Node version = YAML::Load(f.Get("/version").body);
  CHECK(version["major"].as<std::string>() == "1");
  CHECK(version["minor"].as<std::string>() == "32");
}

TEST_CASE("KubeApi: what is not served is a Status, never a guess") {
  Fixture f;
  CHECK(f.Get("/").status == 404);
  CHECK(f.Get("/api/v1/configmaps").status == 404);
  CHECK(f.Get("/api/v1/namespaces/shop/pods/web-0/log").status == 404);
  CHECK(f.Get("/api/v1/pods/web-0").status == 404);  // a namespaced name needs its namespace
  KubeResponse watch = f.Get("/api/v1/pods?watch=true");
  CHECK(watch.status == 405);
  CHECK(YAML::Load(watch.body)["reason"].as<std::string>() == "MethodNotAllowed");
  CHECK(f.api.Handle({"POST", "/api/v1/namespaces/shop/pods", ""}).status == 405);
  CHECK(f.api.Handle({"DELETE", "/api/v1/namespaces/shop/pods/web-0", ""}).status == 405);
  // Discovery and /version are read only.
  CHECK(f.api.Handle({"POST", "/api/v1", ""}).status == 404);
  CHECK(f.api.Handle({"POST", "/apis/apps/v1", ""}).status == 404);
  CHECK(f.api.Handle({"DELETE", "/version", ""}).status == 404);
  // A source that does not take writes (this fake's): 403, nothing changed.
  CHECK(f.api.Handle({"DELETE", "/apis/apps/v1/namespaces/shop/deployments/web", ""}).status ==
        403);
  CHECK(f.Get("/apis/apps/v1/namespaces/shop/deployments/web/status").status == 404);
  CHECK(f.Get("/apis/apps/v1/namespaces/shop/daemonsets/web/scale").status == 404);
}

TEST_CASE("KubeApi: percent-decoding of query values") {
  CHECK(proxy::PercentDecode("app%3Dweb", true) == "app=web");
  CHECK(proxy::PercentDecode("a+b", /*plus_is_space=*/true) == "a b");  // a query string
  CHECK(proxy::PercentDecode("a+b") == "a+b");                          // a path segment
  CHECK(proxy::PercentDecode("100%", true) == "100%");
  CHECK(proxy::PercentDecode("%zz%4", true) == "%zz%4");
}

}  // namespace
}  // namespace podless::api::kube
