#include "api/kube/resources.h"

#include <doctest.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <set>
#include <string>

#include "api/kube/media_type.h"

namespace podless::api::kube {
namespace {

// kubectl 1.32's Accept header for /api and /apis.
constexpr const char* kKubectlDiscoveryAccept =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json";

YAML::Node FindResourceNode(const YAML::Node& list, const std::string& group,
                            const std::string& resource) {
  for (const YAML::Node& item : list["items"]) {
    if (item["metadata"]["name"].as<std::string>() != group) continue;
    for (const YAML::Node& r : item["versions"][0]["resources"]) {
      if (r["resource"].as<std::string>() == resource) return r;
    }
  }
  return YAML::Node();
}

TEST_CASE("KubeDiscovery: the Accept header picks aggregated discovery v2, v2beta1, or none") {
  CHECK(AggregatedDiscoveryVersion(kKubectlDiscoveryAccept) == "v2");
  CHECK(AggregatedDiscoveryVersion(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList, "
            "application/json") == "v2beta1");
  CHECK(AggregatedDiscoveryVersion("application/json") == "");
  CHECK(AggregatedDiscoveryVersion("") == "");
  CHECK(AggregatedDiscoveryVersion("application/json, application/json;g=apidiscovery.k8s.io;v=v2;"
                                   "as=APIGroupDiscoveryList") == "");
  CHECK(AggregatedDiscoveryContentType("v2") ==
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
}

TEST_CASE(
    "KubeDiscovery: aggregated core group lists pods, services, namespaces with short names") {
  YAML::Node core = YAML::Load(AggregatedDiscoveryJson(true, "v2"));
  CHECK(core["kind"].as<std::string>() == "APIGroupDiscoveryList");
  CHECK(core["apiVersion"].as<std::string>() == "apidiscovery.k8s.io/v2");
  REQUIRE(core["items"].size() == 1);
  YAML::Node pods = FindResourceNode(core, "", "pods");
  REQUIRE(pods);
  CHECK(pods["shortNames"][0].as<std::string>() == "po");
  CHECK(pods["categories"][0].as<std::string>() == "all");
  CHECK(pods["scope"].as<std::string>() == "Namespaced");
  CHECK(pods["responseKind"]["kind"].as<std::string>() == "Pod");
  YAML::Node ns = FindResourceNode(core, "", "namespaces");
  REQUIRE(ns);
  CHECK(ns["scope"].as<std::string>() == "Cluster");
  CHECK(ns["shortNames"][0].as<std::string>() == "ns");
  CHECK(FindResourceNode(core, "", "services")["shortNames"][0].as<std::string>() == "svc");
  CHECK(FindResourceNode(core, "", "serviceaccounts")["shortNames"][0].as<std::string>() == "sa");
}

TEST_CASE("KubeDiscovery: aggregated named groups: apps, Istio's, discovery, podless.dev") {
  YAML::Node groups = YAML::Load(AggregatedDiscoveryJson(false, "v2beta1"));
  CHECK(groups["apiVersion"].as<std::string>() == "apidiscovery.k8s.io/v2beta1");
  std::set<std::string> names;
  for (const YAML::Node& item : groups["items"])
    names.insert(item["metadata"]["name"].as<std::string>());
  CHECK(names == std::set<std::string>{"apps", "security.istio.io", "networking.istio.io",
                                       "discovery.k8s.io", "podless.dev"});
  const std::map<std::string, std::pair<std::string, std::string>> short_names = {
      {"deploy", {"apps", "deployments"}},
      {"sts", {"apps", "statefulsets"}},
      {"rs", {"apps", "replicasets"}},
      {"ds", {"apps", "daemonsets"}},
      {"ap", {"security.istio.io", "authorizationpolicies"}},
      {"pa", {"security.istio.io", "peerauthentications"}},
      {"we", {"networking.istio.io", "workloadentries"}},
  };
  for (const auto& entry : short_names) {
    // A copy: clang's lambdas (CAPTURE) cannot capture a structured binding.
    const std::string short_name = entry.first;
    const auto& where = entry.second;
    CAPTURE(short_name);
    YAML::Node r = FindResourceNode(groups, where.first, where.second);
    REQUIRE(r);
    CHECK(r["shortNames"][0].as<std::string>() == short_name);
  }
  CHECK(FindResourceNode(groups, "apps", "deployments")["categories"][0].as<std::string>() ==
        "all");
  CHECK(FindResourceNode(groups, "podless.dev", "workloads"));
}

TEST_CASE("KubeDiscovery: the legacy documents: /api, /apis, /api/v1, /apis/apps/v1") {
  YAML::Node versions = YAML::Load(ApiVersionsJson("127.0.0.1:6443"));
  CHECK(versions["kind"].as<std::string>() == "APIVersions");
  CHECK(versions["versions"][0].as<std::string>() == "v1");
  CHECK(versions["serverAddressByClientCIDRs"][0]["serverAddress"].as<std::string>() ==
        "127.0.0.1:6443");

  YAML::Node groups = YAML::Load(ApiGroupListJson());
  CHECK(groups["kind"].as<std::string>() == "APIGroupList");
  CHECK(groups["groups"][0]["name"].as<std::string>() == "apps");
  CHECK(groups["groups"][0]["preferredVersion"]["groupVersion"].as<std::string>() == "apps/v1");

  YAML::Node core = YAML::Load(ApiResourceListJson("", "v1"));
  CHECK(core["groupVersion"].as<std::string>() == "v1");
  bool pods = false;
  for (const YAML::Node& r : core["resources"]) {
    if (r["name"].as<std::string>() != "pods") continue;
    pods = true;
    CHECK(r["namespaced"].as<bool>());
    CHECK(r["kind"].as<std::string>() == "Pod");
    CHECK(r["verbs"].size() == 2);
  }
  CHECK(pods);
  YAML::Node apps = YAML::Load(ApiResourceListJson("apps", "v1"));
  CHECK(apps["groupVersion"].as<std::string>() == "apps/v1");
  CHECK(apps["resources"].size() == 7);  // 4 kinds, 3 of them with a scale subresource
  bool deployment_scale = false;
  for (const YAML::Node& r : apps["resources"]) {
    if (r["name"].as<std::string>() != "deployments/scale") continue;
    deployment_scale = true;
    CHECK(r["kind"].as<std::string>() == "Scale");
    CHECK(r["group"].as<std::string>() == "autoscaling");
  }
  CHECK(deployment_scale);
  CHECK(ApiResourceListJson("batch", "v1").empty());
  CHECK(ApiResourceListJson("apps", "v1beta1").empty());
}

TEST_CASE("KubeDiscovery: resources are found by group, version and plural name") {
  const Resource* deployments = FindResource("apps", "v1", "deployments");
  REQUIRE(deployments != nullptr);
  CHECK(deployments->kind == "Deployment");
  CHECK(deployments->GroupVersion() == "apps/v1");
  CHECK(FindResource("", "v1", "pods")->GroupVersion() == "v1");
  CHECK(FindResource("", "v1", "deployments") == nullptr);
  CHECK(FindResource("apps", "v1", "deploy") == nullptr);  // short names are the client's
}

TEST_CASE("KubeMediaType: Table is asked for by kubectl's get") {
  CHECK(TableVersion("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;"
                     "v=v1beta1;g=meta.k8s.io,application/json") == "v1");
  CHECK(TableVersion("application/json;as=Table;v=v1beta1;g=meta.k8s.io") == "v1beta1");
  CHECK(TableVersion("application/json") == "");
  CHECK(TableVersion("application/json, application/json;as=Table;v=v1;g=meta.k8s.io") == "");
  auto types = ParseAccept("Application/JSON ; q=0.9 ; as=\"Table\"");
  REQUIRE(types.size() == 1);
  CHECK(types[0].type == "application/json");
  CHECK(types[0].Param("as") == "Table");
  CHECK(types[0].Param("q") == "0.9");
}

}  // namespace
}  // namespace podless::api::kube
