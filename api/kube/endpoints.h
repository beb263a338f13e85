// The Endpoints (core/v1) and EndpointSlices (discovery.k8s.io/v1) of
// Services, as Kubernetes' controllers would write them: for each Service, the replicas of the
// workloads its selector picks, at their addresses (the pods' status.podIP), ready ones in
// `addresses` and the others in `notReadyAddresses`, with the Service's
// ports resolved to the replicas' ports. `kubectl describe service` prints
// them (1.32 reads the slices). Pure functions of the objects, tested without an agent.
#pragma once

#include <cstdint>
#include <vector>

#include "api/kube/objects.h"
#include "api/kube/resources.h"
#include "podless/v1/runtime.pb.h"

namespace podless::api::kube {

// One Item per Service among `services` (an Endpoints, or an EndpointSlice
// when resource.source is kEndpointSlices), its endpoints among `workloads`.
std::vector<Item> EndpointsItems(const Resource& resource, const std::vector<v1::Object>& services,
                                 const std::vector<v1::Object>& workloads, int64_t now);

}  // namespace podless::api::kube
