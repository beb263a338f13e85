// Objects as the agent's List returns them, for the api/kube tests.
#pragma once

#include <string>

#include "podless/v1/runtime.pb.h"

namespace podless::api::kube::testing {

// The one object of a manifest (FAILs on a parse error).
v1::Object FromManifest(const std::string& manifest);
// Appends a replica <name>-<ordinal> at `address`.
void AddReplica(v1::Object& object, const std::string& address, bool ready,
                int64_t started_at = 1000, const std::string& node = "node-a");

// A Deployment "web" in namespace `ns`, app=web, 2 replicas (one ready).
v1::Object WebDeployment(const std::string& ns = "shop");
// A Service "web" (port 80 -> 8080) with VIP 127.128.0.1.
v1::Object WebService(const std::string& ns = "shop");

}  // namespace podless::api::kube::testing
