// The fields podless reads from a manifest, object by object: one table that
// the manifest reader checks documents against (an unknown field is an
// error, a field marked `ignored` is accepted with a warning) and that the
// Kubernetes API's OpenAPI documents are built from (api/kube/schemas.h), so
// `kubectl explain` shows exactly what `podless apply` accepts.
//
// Objects are named as Kubernetes (io.k8s.api.core.v1.PodSpec), Istio
// (istio.security.v1beta1.Rule) and podless (dev.podless.v1alpha1.*) name
// their types. The top-level fields of a kind (apiVersion, kind, metadata,
// spec, status) are the reader's and the OpenAPI builder's own.
#pragma once

#include <span>
#include <string_view>
#include <vector>

namespace podless::workloads::manifest {

struct FieldInfo {
  const char* name;
  // "string", "integer", "boolean", "int-or-string", "object" (any
  // mapping), "map" (string to string), "[]string", "[]integer", an object
  // of this table by name, or "[]" + an object's name.
  std::string_view type;
  std::string_view description;
  // Accepted and kept, but not acted on: why (the reader's warning says so).
  std::string_view ignored = {};
  // A list of objects Kubernetes merges by key on patch: its patch merge key
  // ("name") and its list map keys ("containerPort,protocol").
  std::string_view merge_key = {};
  std::string_view map_keys = {};
  bool required = false;
};

struct ObjectInfo {
  std::string_view name;
  std::string_view description;
  std::vector<FieldInfo> fields;
  // The field names, in table order (what the reader allows).
  std::vector<const char*> names;

  const FieldInfo* Find(std::string_view field) const;
};

// Every object of the table.
const std::vector<ObjectInfo>& ManifestObjects();
// The object named `name`; a name not in the table is a programming error
// (aborts): the reader and the table are built together.
const ObjectInfo& ObjectNamed(std::string_view name);
// Its field names, as ReadMapping takes them.
std::span<const char* const> FieldNames(std::string_view object);

// Object names the reader uses.
namespace objects {
inline constexpr std::string_view kObjectMeta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
inline constexpr std::string_view kTemplateMeta = "io.k8s.api.core.v1.PodTemplateSpec.metadata";
inline constexpr std::string_view kLabelSelector =
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector";
inline constexpr std::string_view kLabelSelectorRequirement =
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement";
inline constexpr std::string_view kPodTemplateSpec = "io.k8s.api.core.v1.PodTemplateSpec";
inline constexpr std::string_view kPodSpec = "io.k8s.api.core.v1.PodSpec";
inline constexpr std::string_view kContainer = "io.k8s.api.core.v1.Container";
inline constexpr std::string_view kContainerPort = "io.k8s.api.core.v1.ContainerPort";
inline constexpr std::string_view kEnvVar = "io.k8s.api.core.v1.EnvVar";
inline constexpr std::string_view kEnvVarSource = "io.k8s.api.core.v1.EnvVarSource";
inline constexpr std::string_view kObjectFieldSelector = "io.k8s.api.core.v1.ObjectFieldSelector";
inline constexpr std::string_view kProbe = "io.k8s.api.core.v1.Probe";
inline constexpr std::string_view kHttpGetAction = "io.k8s.api.core.v1.HTTPGetAction";
inline constexpr std::string_view kTcpSocketAction = "io.k8s.api.core.v1.TCPSocketAction";
inline constexpr std::string_view kResourceRequirements = "io.k8s.api.core.v1.ResourceRequirements";
inline constexpr std::string_view kSecurityContext = "io.k8s.api.core.v1.SecurityContext";
inline constexpr std::string_view kPodSecurityContext = "io.k8s.api.core.v1.PodSecurityContext";
inline constexpr std::string_view kDeploymentSpec = "io.k8s.api.apps.v1.DeploymentSpec";
inline constexpr std::string_view kStatefulSetSpec = "io.k8s.api.apps.v1.StatefulSetSpec";
inline constexpr std::string_view kReplicaSetSpec = "io.k8s.api.apps.v1.ReplicaSetSpec";
inline constexpr std::string_view kDaemonSetSpec = "io.k8s.api.apps.v1.DaemonSetSpec";
inline constexpr std::string_view kServiceSpec = "io.k8s.api.core.v1.ServiceSpec";
inline constexpr std::string_view kServicePort = "io.k8s.api.core.v1.ServicePort";
// A ServiceAccount's own top-level fields (it has no spec).
inline constexpr std::string_view kServiceAccount = "io.k8s.api.core.v1.ServiceAccount";
inline constexpr std::string_view kAuthorizationPolicySpec =
    "istio.security.v1beta1.AuthorizationPolicy";
inline constexpr std::string_view kWorkloadSelector = "istio.type.v1beta1.WorkloadSelector";
inline constexpr std::string_view kRule = "istio.security.v1beta1.Rule";
inline constexpr std::string_view kRuleFrom = "istio.security.v1beta1.Rule.From";
inline constexpr std::string_view kRuleTo = "istio.security.v1beta1.Rule.To";
inline constexpr std::string_view kSource = "istio.security.v1beta1.Source";
inline constexpr std::string_view kOperation = "istio.security.v1beta1.Operation";
inline constexpr std::string_view kCondition = "istio.security.v1beta1.Condition";
inline constexpr std::string_view kPeerAuthenticationSpec =
    "istio.security.v1beta1.PeerAuthentication";
inline constexpr std::string_view kMutualTls =
    "istio.security.v1beta1.PeerAuthentication.MutualTLS";
inline constexpr std::string_view kWorkloadEntrySpec = "istio.networking.v1alpha3.WorkloadEntry";
}  // namespace objects

}  // namespace podless::workloads::manifest
