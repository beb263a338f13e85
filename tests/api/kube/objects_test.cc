#include "api/kube/objects.h"

#include <doctest.h>
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "tests/api/kube/test_objects.h"

namespace podless::api::kube {
namespace {

using testing::WebDeployment;
using testing::WebService;

constexpr int64_t kNow = 1000 + 3 * 60 + 5;  // 3m5s after the replicas started

std::vector<std::string> ColumnNames(const Resource& resource) {
  std::vector<std::string> names;
  for (const Column& c : Columns(resource)) names.push_back(c.name);
  return names;
}

TEST_CASE("KubeObjects: a Deployment's replicas are pods with kubectl's columns") {
  const Resource& pods = *FindResource("", "v1", "pods");
  std::vector<Item> items = ItemsOf(pods, {WebDeployment()}, kNow);
  REQUIRE(items.size() == 2);
  CHECK(items[0].name == "web-0");
  CHECK(items[0].ns == "shop");
  CHECK(items[0].labels == std::map<std::string, std::string>{{"app", "web"}, {"version", "1"}});
  CHECK(ColumnNames(pods) == std::vector<std::string>{"Name", "Ready", "Status", "Restarts", "Age",
                                                      "IP", "Node", "Nominated Node",
                                                      "Readiness Gates"});
  CHECK(items[0].cells == std::vector<std::string>{"web-0", "1/1", "Running", "0", "3m5s",
                                                   "127.64.0.1", "node-a", "<none>", "<none>"});
  CHECK(items[1].cells[1] == "0/1");

  YAML::Node pod = YAML::Load(items[0].json);
  CHECK(pod["apiVersion"].as<std::string>() == "v1");
  CHECK(pod["kind"].as<std::string>() == "Pod");
  CHECK(pod["metadata"]["name"].as<std::string>() == "web-0");
  CHECK(pod["metadata"]["namespace"].as<std::string>() == "shop");
  CHECK(pod["metadata"]["labels"]["version"].as<std::string>() == "1");
  CHECK(items[0].json.find("\"version\":\"1\"") != std::string::npos);  // a string in JSON
  CHECK(pod["metadata"]["ownerReferences"][0]["kind"].as<std::string>() == "Deployment");
  CHECK(pod["metadata"]["creationTimestamp"].as<std::string>() == "1970-01-01T00:16:40Z");
  CHECK(pod["spec"]["containers"][0]["name"].as<std::string>() == "web");
  CHECK(pod["spec"]["nodeName"].as<std::string>() == "node-a");
  CHECK(pod["status"]["phase"].as<std::string>() == "Running");
  CHECK(pod["status"]["podIP"].as<std::string>() == "127.64.0.1");
  CHECK(pod["status"]["conditions"][0]["type"].as<std::string>() == "Ready");
  CHECK(items[0].json.find("\"status\": \"True\"") != std::string::npos);
  CHECK(pod["status"]["containerStatuses"][0]["name"].as<std::string>() == "web");
  CHECK(pod["status"]["containerStatuses"][0]["ready"].as<bool>());
}

TEST_CASE("KubeObjects: a workload applied as a Pod is one pod of its own name") {
  v1::Object pod = testing::FromManifest(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: solo, labels: {app: solo}}\n"
      "spec: {containers: [{name: c, image: nginx}]}\n");
  testing::AddReplica(pod, "127.64.0.9", true);
  std::vector<Item> items = ItemsOf(*FindResource("", "v1", "pods"), {pod}, kNow);
  REQUIRE(items.size() == 1);
  CHECK(items[0].name == "solo");
  CHECK(items[0].ns == "default");
  CHECK(YAML::Load(items[0].json)["metadata"]["name"].as<std::string>() == "solo");
}

TEST_CASE("KubeObjects: deployments, services and their Table rows") {
  const Resource& deployments = *FindResource("apps", "v1", "deployments");
  std::vector<Item> items = ItemsOf(deployments, {WebDeployment(), WebService()}, kNow);
  REQUIRE(items.size() == 1);
  CHECK(ColumnNames(deployments) ==
        std::vector<std::string>{"Name", "Ready", "Up-to-date", "Available", "Age"});
  CHECK(items[0].cells == std::vector<std::string>{"web", "1/2", "2", "1", "3m5s"});
  // A Deployment's labels are its own, not its template's.
  CHECK(items[0].labels == std::map<std::string, std::string>{{"team", "shop"}});
  YAML::Node d = YAML::Load(items[0].json);
  CHECK(d["kind"].as<std::string>() == "Deployment");
  CHECK(d["status"]["readyReplicas"].as<int>() == 1);
  CHECK(ItemsOf(*FindResource("apps", "v1", "statefulsets"), {WebDeployment()}, kNow).empty());

  const Resource& services = *FindResource("", "v1", "services");
  items = ItemsOf(services, {WebDeployment(), WebService()}, kNow);
  REQUIRE(items.size() == 1);
  CHECK(ColumnNames(services) == std::vector<std::string>{"Name", "Type", "Cluster-IP",
                                                          "External-IP", "Port(s)", "Age",
                                                          "Selector"});
  CHECK(items[0].cells == std::vector<std::string>{"web", "ClusterIP", "127.128.0.1", "<none>",
                                                   "80/TCP", "<unknown>", "app=web"});
  CHECK(YAML::Load(items[0].json)["status"]["clusterIP"].as<std::string>() == "127.128.0.1");
}

TEST_CASE("KubeObjects: a Table carries column definitions, cells and each row's metadata") {
  const Resource& pods = *FindResource("", "v1", "pods");
  std::vector<Item> items = ItemsOf(pods, {WebDeployment()}, kNow);
  YAML::Node table = YAML::Load(TableJson(pods, "v1", items, 9));
  CHECK(table["kind"].as<std::string>() == "Table");
  CHECK(table["apiVersion"].as<std::string>() == "meta.k8s.io/v1");
  CHECK(table["columnDefinitions"].size() == 9);
  CHECK(table["columnDefinitions"][0]["format"].as<std::string>() == "name");
  CHECK(table["columnDefinitions"][5]["name"].as<std::string>() == "IP");
  CHECK(table["columnDefinitions"][5]["priority"].as<int>() == 1);  // -o wide
  REQUIRE(table["rows"].size() == 2);
  CHECK(table["rows"][1]["cells"][0].as<std::string>() == "web-1");
  YAML::Node object = table["rows"][1]["object"];
  CHECK(object["kind"].as<std::string>() == "PartialObjectMetadata");
  CHECK(object["metadata"]["namespace"].as<std::string>() == "shop");
  CHECK(object["metadata"]["labels"]["app"].as<std::string>() == "web");
  // The list's resourceVersion is the agent's revision; each pod's, that of
  // the change that last wrote its workload.
  CHECK(table["metadata"]["resourceVersion"].as<std::string>() == "9");
  CHECK(object["metadata"]["resourceVersion"].as<std::string>() == "4");

  YAML::Node list = YAML::Load(ListJson(pods, items, 9));
  CHECK(list["metadata"]["resourceVersion"].as<std::string>() == "9");
  CHECK(list["items"][0]["metadata"]["resourceVersion"].as<std::string>() == "4");
  CHECK(list["kind"].as<std::string>() == "PodList");
  CHECK(list["apiVersion"].as<std::string>() == "v1");
  CHECK(list["items"].size() == 2);
  CHECK(YAML::Load(TableJson(pods, "v1", {}, 9))["rows"].size() == 0);
}

TEST_CASE("KubeObjects: ages as kubectl prints them") {
  CHECK(HumanAge(0, 100) == "<unknown>");
  CHECK(HumanAge(100, 100) == "0s");
  CHECK(HumanAge(100, 219) == "119s");
  CHECK(HumanAge(0 + 1, 1 + 185) == "3m5s");
  CHECK(HumanAge(1, 1 + 1800) == "30m");
  CHECK(HumanAge(1, 1 + 4 * 3600 + 600) == "4h10m");
  CHECK(HumanAge(1, 1 + 30 * 3600) == "30h");
  CHECK(HumanAge(1, 1 + 3 * 86400 + 7200) == "3d2h");
  CHECK(HumanAge(1, 1 + 40 * 86400) == "40d");
  CHECK(HumanAge(200, 100) == "0s");  // a clock step back
}

}  // namespace
}  // namespace podless::api::kube
