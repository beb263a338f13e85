// The defaults the Kubernetes API server writes into the objects it stores
// (a port's protocol TCP, a Service's session affinity None, ...), where
// they describe what podless does: kubectl describe prints them ("80/TCP"),
// and prints blanks where they are missing.
#pragma once

#include <yaml-cpp/yaml.h>

namespace podless::api::kube {

// Fills in the defaults of a Pod, a pod-owning kind (its template) or a
// Service, each field only where the object leaves it out.
void FillKubeDefaults(YAML::Node& object);
// The same for a pod spec alone (a pod template's).
void FillPodSpecDefaults(YAML::Node spec);

}  // namespace podless::api::kube
