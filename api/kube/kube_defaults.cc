#include "api/kube/kube_defaults.h"

#include <string>

namespace podless::api::kube {
namespace {

// A string node that stays a string in JSON whatever it reads as.
YAML::Node Str(const std::string& text) {
  YAML::Node node(text);
  node.SetTag("!");
  return node;
}

void SetIfMissing(YAML::Node map, const char* key, const YAML::Node& value) {
  if (map.IsMap() && !map[key]) map[key] = value;
}

// podless relays TCP only: every port's protocol is TCP.
void DefaultPorts(YAML::Node ports) {
  if (!ports || !ports.IsSequence()) return;
  for (YAML::Node port : ports) SetIfMissing(port, "protocol", Str("TCP"));
}

void DefaultPodSpec(YAML::Node spec) {
  if (!spec || !spec.IsMap() || !spec["containers"] || !spec["containers"].IsSequence()) return;
  for (YAML::Node container : spec["containers"]) {
    if (container.IsMap()) DefaultPorts(container["ports"]);
  }
}

void DefaultServiceSpec(YAML::Node spec) {
  if (!spec || !spec.IsMap()) return;
  if (spec["ports"] && spec["ports"].IsSequence()) {
    DefaultPorts(spec["ports"]);
    for (YAML::Node port : spec["ports"]) {
      if (port.IsMap() && !port["targetPort"] && port["port"]) port["targetPort"] = port["port"];
    }
  }
  // What podless does with every Service: IPv4 only, no affinity, endpoints
  // across the cluster.
  SetIfMissing(spec, "sessionAffinity", Str("None"));
  YAML::Node families(YAML::NodeType::Sequence);
  families.push_back(Str("IPv4"));
  SetIfMissing(spec, "ipFamilies", families);
  SetIfMissing(spec, "ipFamilyPolicy", Str("SingleStack"));
  SetIfMissing(spec, "internalTrafficPolicy", Str("Cluster"));
}

}  // namespace

void FillPodSpecDefaults(YAML::Node spec) { DefaultPodSpec(spec); }

void FillKubeDefaults(YAML::Node& object) {
  if (!object.IsMap() || !object["kind"] || !object["spec"]) return;
  const std::string kind = object["kind"].Scalar();
  YAML::Node spec = object["spec"];
  if (kind == "Pod") {
    DefaultPodSpec(spec);
  } else if (kind == "Service") {
    DefaultServiceSpec(spec);
  } else if (spec.IsMap() && spec["template"] && spec["template"].IsMap()) {
    DefaultPodSpec(spec["template"]["spec"]);
  }
}

}  // namespace podless::api::kube
