// Model objects back to manifest YAML (`podless get -o yaml`).
#pragma once

#include <string>

#include "workloads/model.h"

namespace podless::workloads {

// Canonical YAML for one object: apiVersion, kind, metadata, spec, with
// defaults written out, so that ParseManifests(WriteManifest(x)) gives back x
// for every object the parser can produce. Strings that YAML would read as
// something else (numbers, booleans, null, leading indicators) are quoted.
// A Service port with no targetPort is written with targetPort = port, the
// value it stands for. Ends with a newline; join objects with "---\n".
// An object applied as a Kubernetes or Istio kind is its applied document
// (ObjectMeta::applied_as); the kinds that exist only as Kubernetes or Istio
// kinds (Namespace, ServiceAccount, PeerAuthentication, WorkloadEntry) are
// written in those when they came from the API.
std::string WriteManifest(const Object& object);

}  // namespace podless::workloads
