// The readers of Istio's PeerAuthentication and WorkloadEntry
// (workloads/istio_kinds.cc), through ParseManifests.
#include <doctest.h>

#include <string>

#include "workloads/manifest_parser.h"

namespace podless::workloads {
namespace {

ParseResult Parse(std::string_view text) { return ParseManifests(text, "istio.yaml"); }

Diagnostic Only(const ParseResult& result) {
  for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
  REQUIRE(result.errors.size() == 1);
  return result.errors[0];
}

void CheckAt(const Diagnostic& d, std::string_view field, int line, int column) {
  INFO(d.ToString());
  CHECK(d.field == field);
  CHECK(d.where.file == "istio.yaml");
  CHECK(d.where.line == line);
  CHECK(d.where.column == column);
}

template <typename T>
T OnlyObject(const ParseResult& result) {
  for (const Diagnostic& d : result.errors) MESSAGE(d.ToString());
  REQUIRE(result.errors.empty());
  REQUIRE(result.objects.size() == 1);
  REQUIRE(std::holds_alternative<T>(result.objects[0].object));
  return std::get<T>(result.objects[0].object);
}

TEST_CASE("PeerAuthentication: selector, mode and port-level modes") {
  for (const char* version : {"security.istio.io/v1", "security.istio.io/v1beta1"}) {
    ParseResult result = Parse(std::string("apiVersion: ") + version +
                               "\n"
                               "kind: PeerAuthentication\n"
                               "metadata: {name: web-strict, namespace: shop}\n"
                               "spec:\n"
                               "  selector:\n"
                               "    matchLabels: {app: web}\n"
                               "  mtls: {mode: STRICT}\n"
                               "  portLevelMtls:\n"
                               "    8080: {mode: PERMISSIVE}\n"
                               "    \"9090\": {mode: DISABLE}\n"
                               "    7070: {mode: UNSET}\n");
    auto peer = OnlyObject<PeerAuthentication>(result);
    CHECK(peer.metadata.name == "web-strict");
    CHECK(peer.metadata.ns == "shop");
    CHECK(peer.selector == Labels{{"app", "web"}});
    CHECK(peer.mode == MtlsMode::kStrict);
    CHECK(peer.port_level == std::map<uint16_t, MtlsMode>{{7070, MtlsMode::kUnset},
                                                          {8080, MtlsMode::kPermissive},
                                                          {9090, MtlsMode::kDisable}});
    REQUIRE(peer.metadata.applied_as.has_value());
    CHECK(peer.metadata.applied_as->kind == "PeerAuthentication");
    CHECK(peer.metadata.applied_as->api_version == version);
  }
}

TEST_CASE("PeerAuthentication: namespace-wide, no spec at all, every mode") {
  auto peer = OnlyObject<PeerAuthentication>(
      Parse("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
            "metadata: {name: default}\n"));
  CHECK(peer.selector.empty());
  CHECK(peer.mode == MtlsMode::kUnset);
  CHECK(peer.metadata.ns == "default");
  for (auto [word, mode] :
       {std::pair{"UNSET", MtlsMode::kUnset}, std::pair{"PERMISSIVE", MtlsMode::kPermissive},
        std::pair{"STRICT", MtlsMode::kStrict}, std::pair{"DISABLE", MtlsMode::kDisable}}) {
    auto p = OnlyObject<PeerAuthentication>(
        Parse(std::string("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
                          "metadata: {name: default, namespace: istio-system}\n"
                          "spec: {mtls: {mode: ") +
              word + "}}\n"));
    CHECK(p.mode == mode);
  }
}

TEST_CASE("PeerAuthentication: errors are located") {
  const std::string head =
      "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
      "metadata: {name: p}\n"
      "spec:\n";
  // A mode Istio does not have.
  Diagnostic d = Only(Parse(head + "  mtls:\n    mode: strict\n"));
  CheckAt(d, "spec.mtls.mode", 6, 11);
  CHECK(d.message.find("must be one of UNSET, PERMISSIVE, STRICT, DISABLE") != std::string::npos);
  // Unknown fields, at every level.
  d = Only(Parse(head + "  mtls: {mode: STRICT}\n  action: ALLOW\n"));
  CheckAt(d, "spec.action", 6, 3);
  CHECK(d.message.find("unknown field \"action\"") != std::string::npos);
  d = Only(Parse(head + "  mtls: {mode: STRICT, level: 2}\n"));
  CHECK(d.field == "spec.mtls.level");
  CHECK(d.where.line == 5);
  d = Only(Parse(head + "  selector: {app: web}\n"));
  CHECK(d.field == "spec.selector.app");
  d = Only(Parse(head + "  selector: {matchLabels: {app: web}}\n"
                        "  portLevelMtls:\n"
                        "    8080: {mode: STRICT, tls: x}\n"));
  CheckAt(d, "spec.portLevelMtls[8080].tls", 7, 26);
  // Port keys: numbers in range.
  d = Only(Parse(head + "  selector: {matchLabels: {app: web}}\n"
                        "  portLevelMtls:\n"
                        "    http: {mode: STRICT}\n"));
  CheckAt(d, "spec.portLevelMtls[http]", 7, 5);
  CHECK(d.message.find("expected a port number") != std::string::npos);
  d = Only(Parse(head + "  selector: {matchLabels: {app: web}}\n"
                        "  portLevelMtls:\n"
                        "    70000: {mode: STRICT}\n"));
  CheckAt(d, "spec.portLevelMtls[70000]", 7, 5);
  d = Only(Parse(head + "  selector: {matchLabels: {app: web}}\n  portLevelMtls: [8080]\n"));
  CheckAt(d, "spec.portLevelMtls", 6, 18);
  // Validation: port-level modes need a selector (as Istio requires).
  d = Only(Parse(head + "  portLevelMtls:\n    8080: {mode: STRICT}\n"));
  CheckAt(d, "spec.portLevelMtls", 6, 5);
  CHECK(d.message.find("needs spec.selector") != std::string::npos);
}

TEST_CASE("WorkloadEntry: every field, in every apiVersion") {
  for (const char* version :
       {"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}) {
    ParseResult result = Parse(std::string("apiVersion: ") + version +
                               "\n"
                               "kind: WorkloadEntry\n"
                               "metadata:\n"
                               "  name: vm-1\n"
                               "  namespace: shop\n"
                               "  annotations: {podless.dev/hbone-port: \"15009\"}\n"
                               "spec:\n"
                               "  address: 10.1.2.3\n"
                               "  labels: {app: legacy}\n"
                               "  serviceAccount: legacy\n"
                               "  ports: {http: 8080, grpc: 9090}\n"
                               "  network: vm-net\n"
                               "  locality: us-east/a\n"
                               "  weight: 3\n");
    auto entry = OnlyObject<WorkloadEntry>(result);
    CHECK(entry.metadata.name == "vm-1");
    CHECK(entry.metadata.ns == "shop");
    CHECK(entry.address == "10.1.2.3");
    CHECK(entry.labels == Labels{{"app", "legacy"}});
    CHECK(entry.service_account == "legacy");
    CHECK(entry.ports == std::map<std::string, uint16_t>{{"grpc", 9090}, {"http", 8080}});
    CHECK(entry.hbone_port == 15009);
    REQUIRE(entry.metadata.applied_as.has_value());
    CHECK(entry.metadata.applied_as->api_version == version);
    // network, locality and weight: accepted, warned of where they are.
    const auto& warnings = result.objects[0].warnings;
    REQUIRE(warnings.size() == 3);
    CHECK(warnings[0].find("istio.yaml:12:3: spec.network: ignored") == 0);
    CHECK(warnings[1].find("istio.yaml:13:3: spec.locality: ignored") == 0);
    CHECK(warnings[2].find("istio.yaml:14:3: spec.weight: ignored") == 0);
  }
}

TEST_CASE("WorkloadEntry: defaults") {
  auto entry =
      OnlyObject<WorkloadEntry>(Parse("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
                                      "metadata: {name: vm}\nspec: {address: 10.0.0.1}\n"));
  CHECK(entry.hbone_port == 15008);
  CHECK(entry.service_account == "default");
  CHECK(entry.ports.empty());
  CHECK(entry.labels.empty());
}

TEST_CASE("WorkloadEntry: errors are located") {
  const std::string head =
      "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
      "metadata:\n"
      "  name: vm\n";
  // The HBONE port annotation: a number in range, located at its key.
  Diagnostic d = Only(Parse(head + "  annotations:\n"
                                   "    podless.dev/hbone-port: eight\n"
                                   "spec: {address: 10.0.0.1}\n"));
  CheckAt(d, "metadata.annotations[podless.dev/hbone-port]", 6, 5);
  CHECK(d.message == "expected a port number, got \"eight\"");
  d = Only(Parse(head + "  annotations:\n"
                        "    podless.dev/hbone-port: \"0\"\n"
                        "spec: {address: 10.0.0.1}\n"));
  CheckAt(d, "metadata.annotations[podless.dev/hbone-port]", 6, 5);
  // Unknown fields.
  d = Only(Parse(head + "spec:\n  address: 10.0.0.1\n  hostname: vm\n"));
  CheckAt(d, "spec.hostname", 7, 3);
  CHECK(d.message.find("unknown field \"hostname\"") != std::string::npos);
  // Ports: a map of names to numbers.
  d = Only(Parse(head + "spec:\n  address: 10.0.0.1\n  ports:\n    http: web\n"));
  CheckAt(d, "spec.ports[http]", 8, 11);
  d = Only(Parse(head + "spec:\n  address: 10.0.0.1\n  ports: [8080]\n"));
  CheckAt(d, "spec.ports", 7, 10);
  d = Only(Parse(head + "spec:\n  address: 10.0.0.1\n  ports:\n    http: 0\n"));
  CheckAt(d, "spec.ports[http]", 8, 11);
  // Validation, located: the address, the port names, the service account.
  d = Only(Parse(head + "spec:\n  address: vm.example.com\n"));
  CheckAt(d, "spec.address", 6, 12);
  CHECK(d.message.find("must be an IPv4 address") != std::string::npos);
  d = Only(Parse(head + "spec: {}\n"));
  CHECK(d.field == "spec.address");
  d = Only(Parse(head + "spec:\n  address: 10.0.0.1\n  ports:\n    Http_1: 80\n"));
  CheckAt(d, "spec.ports[Http_1]", 8, 5);
  d = Only(Parse(head + "spec:\n  address: 10.0.0.1\n  serviceAccount: Bad_SA\n"));
  CheckAt(d, "spec.serviceAccount", 7, 19);
  d = Only(Parse(head + "spec:\n  address: 10.0.0.1\n  weight: heavy\n"));
  CheckAt(d, "spec.weight", 7, 11);
}

TEST_CASE("Istio kinds: unsupported apiVersion names the ones podless reads") {
  Diagnostic d = Only(
      Parse("apiVersion: networking.istio.io/v2\nkind: WorkloadEntry\nmetadata: {name: vm}\n"));
  CheckAt(d, "apiVersion", 1, 13);
  CHECK(d.message ==
        "unsupported apiVersion for WorkloadEntry: expected networking.istio.io/v1 or "
        "networking.istio.io/v1beta1 or networking.istio.io/v1alpha3, got string "
        "\"networking.istio.io/v2\"");
}

}  // namespace
}  // namespace podless::workloads
