// Conversion between the podless.v1 API messages and the workloads/ model.
//
// Model -> proto is total: every model value has a message, and the message
// spells every default out (replicas, namespace, protocol, probe timings), so
// a client reading a Get/List/Watch response never has to know the defaults.
// The exceptions are an exec app's securityContext fields and limits, absent
// unless set: absence is their meaning (the agent's own user, no limit).
// The `status` sections are output-only and filled by the caller.
//
// Proto -> model (Register, RegisterBatch) applies the defaults the .proto
// documents (empty namespace -> "default", unset replicas -> 1,
// PROTOCOL_UNSPECIFIED -> TCP, no app -> echo, unset probe period -> 10, ...)
// and reports structural problems the model cannot hold (a port above 65535,
// an unknown enum value, a oneof not set where one is required, a limit of
// 0) with the field path of each, e.g. "workload.spec.ports[1].port: 70000 is not a port
// number (1-65535)". Field paths use the manifest spelling (lowerCamelCase,
// as the proto's JSON names; a policy's `to[0].operation.ports[1]` and
// `spec.selector.matchLabels` as in Istio's manifests), so an API client and
// a manifest author read the same messages. A structurally sound object is
// then checked by workloads::Validate (names, label syntax, duplicate ports,
// replica range, ...), whose findings get the same path root, so FromProto's
// success means the object is valid on its own.
#pragma once

#include "podless/v1/runtime.pb.h"
#include "workloads/model.h"
#include "workloads/result.h"

namespace podless::api {

v1::Object ToProto(const workloads::Object& object);
// The metadata of whichever kind `object` holds (null when it holds none).
v1::ObjectMeta* MutableMetadata(v1::Object* object);
v1::Workload ToProto(const workloads::Workload& workload);
v1::Service ToProto(const workloads::Service& service);
v1::AuthorizationPolicy ToProto(const workloads::AuthorizationPolicy& policy);
v1::Namespace ToProto(const workloads::Namespace& ns);
v1::ServiceAccount ToProto(const workloads::ServiceAccount& account);
v1::PeerAuthentication ToProto(const workloads::PeerAuthentication& peer);
v1::WorkloadEntry ToProto(const workloads::WorkloadEntry& entry);

// Each returns INVALID_ARGUMENT whose message holds one "field: message" line
// per problem (all problems, not just the first), paths rooted at the kind:
// "workload.…", "service.…", "authorizationPolicy.…".
Result<workloads::Workload> FromProto(const v1::Workload& workload);
Result<workloads::Service> FromProto(const v1::Service& service);
Result<workloads::AuthorizationPolicy> FromProto(const v1::AuthorizationPolicy& policy);
// An Object with no kind set is INVALID_ARGUMENT ("object: ...").
Result<workloads::Object> FromProto(const v1::Object& object);

// FromProto without workloads::Validate (structural problems are still
// errors): for showing what an agent returned, which the agent validated
// itself, possibly under rules of another version.
Result<workloads::Object> FromProtoUnvalidated(const v1::Object& object);

v1::Kind ToProtoKind(workloads::Kind kind);
// KIND_UNSPECIFIED and unknown values are INVALID_ARGUMENT.
Result<workloads::Kind> FromProtoKind(v1::Kind kind);

}  // namespace podless::api
