#include "tests/api/kube/test_objects.h"

#include <doctest.h>

#include "api/model_convert.h"
#include "workloads/manifest_parser.h"

namespace podless::api::kube::testing {

v1::Object FromManifest(const std::string& manifest) {
  workloads::ParseResult parsed = workloads::ParseManifests(manifest, "test.yaml");
  for (const workloads::Diagnostic& d : parsed.errors) FAIL_CHECK(d.ToString());
  REQUIRE(parsed.objects.size() == 1);
  return ToProto(parsed.objects[0].object);
}

void AddReplica(v1::Object& object, const std::string& address, bool ready, int64_t started_at,
                const std::string& node) {
  v1::Workload& w = *object.mutable_workload();
  v1::Replica* r = w.mutable_status()->add_replicas();
  const uint32_t ordinal = static_cast<uint32_t>(w.status().replicas_size() - 1);
  r->set_name(w.metadata().name() + "-" + std::to_string(ordinal));
  r->set_ordinal(ordinal);
  r->set_address(address);
  r->set_ready(ready);
  r->set_node(node);
  r->set_started_at(started_at);
}

v1::Object WebDeployment(const std::string& ns) {
  v1::Object d = FromManifest(
      "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: " + ns +
      "\n  labels: {team: shop}\nspec:\n  replicas: 2\n"
      "  selector: {matchLabels: {app: web}}\n"
      "  template:\n    metadata: {labels: {app: web, version: \"1\"}}\n"
      "    spec: {containers: [{name: web, image: nginx, ports: [{containerPort: 8080}]}]}\n");
  AddReplica(d, "127.64.0.1", true);
  AddReplica(d, "127.64.0.2", false);
  d.mutable_workload()->mutable_metadata()->set_resource_version(4);
  return d;
}

v1::Object WebService(const std::string& ns) {
  v1::Object s =
      FromManifest("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: " + ns +
                   "}\nspec:\n  selector: {app: web}\n"
                   "  ports: [{name: http, port: 80, targetPort: 8080}]\n");
  s.mutable_service()->mutable_status()->set_vip("127.128.0.1");
  return s;
}

}  // namespace podless::api::kube::testing
