#include "workloads/manifest_fields.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace podless::workloads::manifest {
namespace {

using namespace objects;

// Reasons shared by several fields (the reader's warnings quote them).
constexpr std::string_view kHere = "a workload runs on the agent it is applied to";
constexpr std::string_view kNoRuntime = "podless has no container runtime";
constexpr std::string_view kNames = "names resolve through the proxy (<service>.<namespace>.svc)";
constexpr std::string_view kReplicaName = "a replica is named <workload>-<ordinal>";
constexpr std::string_view kNoRevisions = "podless keeps no old revisions";
constexpr std::string_view kReplaces = "podless replaces changed replicas itself";
constexpr std::string_view kAvailable = "a replica is available once it is ready";
constexpr std::string_view kDeletesAtOnce = "podless deletes objects at once";
constexpr std::string_view kVipOnly = "podless serves a Service on its VIP only";
constexpr std::string_view kSecurityIgnored =
    "podless applies runAsUser, runAsGroup and runAsNonRoot only (see README, Isolation)";
constexpr std::string_view kNoCapabilities =
    "a process workload runs with no capabilities and no_new_privs";

ObjectInfo Object(std::string_view name, std::string_view description,
                  std::vector<FieldInfo> fields) {
  ObjectInfo o{name, description, std::move(fields), {}};
  for (const FieldInfo& f : o.fields) o.names.push_back(f.name);
  return o;
}

// Probe timing fields, the same in Kubernetes' and podless's probes.
void AddProbeTiming(std::vector<FieldInfo>& fields) {
  fields.push_back({"initialDelaySeconds", "integer",
                    "Seconds after the replica starts before the first probe."});
  fields.push_back({"periodSeconds", "integer", "Seconds between probes (default 10)."});
  fields.push_back({"timeoutSeconds", "integer", "Seconds after which a probe fails (default 1)."});
  fields.push_back({"failureThreshold", "integer",
                    "Consecutive failures after which the replica is not ready (default 3)."});
  fields.push_back({"successThreshold", "integer",
                    "Consecutive successes after which the replica is ready (default 1)."});
}

std::vector<ObjectInfo> Make() {
  std::vector<ObjectInfo> o;
  // ---------------------------------------------------------------- metadata
  o.push_back(Object(
      kObjectMeta,
      "ObjectMeta is metadata that all persisted resources must have. podless keeps name, "
      "namespace, labels and annotations; the fields the API server sets are accepted (the "
      "output of `kubectl get -o yaml` applies again) and not kept.",
      {{"name", "string", "Name must be unique within a namespace, per kind.", {}, {}, {}, true},
       {"namespace", "string", "The namespace of the object (default: \"default\")."},
       {"labels", "map",
        "Map of string keys and values that Services, selectors and policies select by."},
       {"annotations", "map",
        "Unstructured key value map. podless.dev/app picks the in-proxy app of a pod whose "
        "containers have no command; podless.dev/hbone-port sets a WorkloadEntry's HBONE port."},
       {"finalizers", "[]string", "Finalizers.", kDeletesAtOnce},
       {"ownerReferences", "object", "Owner references.", kDeletesAtOnce},
       {"generateName", "string", "A name prefix.", "podless needs a fixed metadata.name"},
       {"uid", "string", "Set by the server; accepted and not kept."},
       {"resourceVersion", "string", "Set by the server; accepted and not kept."},
       {"generation", "integer", "Set by the server; accepted and not kept."},
       {"creationTimestamp", "string", "Set by the server; accepted and not kept."},
       {"managedFields", "object", "Set by the server; accepted and not kept."},
       {"selfLink", "string", "Set by the server; accepted and not kept."},
       {"deletionTimestamp", "string", "Set by the server; accepted and not kept."},
       {"deletionGracePeriodSeconds", "integer", "Set by the server; accepted and not kept."}}));
  o.push_back(Object(
      kTemplateMeta,
      "The metadata of a pod template: its labels are the pods' labels (what the selector, "
      "Services and policies select).",
      {{"labels", "map", "The pods' labels; the selector must match them.", {}, {}, {}, true},
       {"annotations", "map", "The pods' annotations (podless.dev/app picks an in-proxy app)."},
       {"name", "string", "Set by the server; accepted."},
       {"namespace", "string", "Set by the server; accepted."},
       {"generateName", "string", "Set by the server; accepted."},
       {"creationTimestamp", "string", "Set by the server; accepted."},
       {"finalizers", "[]string", "Accepted."},
       {"ownerReferences", "object", "Accepted."}}));
  o.push_back(Object(
      kLabelSelector,
      "A label query over a set of resources: matchLabels and matchExpressions are ANDed.",
      {{"matchLabels", "map", "Labels that must all be present with these values."},
       {"matchExpressions", "[]io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement",
        "Label selector requirements (In, NotIn, Exists, DoesNotExist)."}}));
  o.push_back(
      Object(kLabelSelectorRequirement, "A selector that contains values, a key, and an operator.",
             {{"key", "string", "The label key.", {}, {}, {}, true},
              {"operator", "string", "In, NotIn, Exists or DoesNotExist.", {}, {}, {}, true},
              {"values", "[]string", "The values, for In and NotIn."}}));
  // ---------------------------------------------------------------- pods
  o.push_back(Object(kPodTemplateSpec, "The pods a controller creates: one per replica.",
                     {{"metadata", kTemplateMeta, "The pods' labels and annotations."},
                      {"spec", kPodSpec, "The pods' spec.", {}, {}, {}, true}}));
  o.push_back(Object(
      kPodSpec,
      "PodSpec is a description of a pod. podless runs the containers that have a command as "
      "processes side by side in one sandbox per replica; a pod whose containers have no "
      "command runs an in-proxy app (podless.dev/app, default echo).",
      {{"activeDeadlineSeconds", "integer", "A deadline.", "podless does not end running replicas"},
       {"affinity", "object", "Scheduling constraints.", kHere},
       {"automountServiceAccountToken", "boolean", "Token mounting.",
        "podless issues the account's SPIFFE certificate, not a token"},
       {"containers",
        "[]io.k8s.api.core.v1.Container",
        "The containers of the pod: those with a command run as processes; the first one's "
        "ports are the workload's ports.",
        {},
        "name",
        "name",
        true},
       {"dnsConfig", "object", "DNS parameters.", kNames},
       {"dnsPolicy", "string", "DNS policy.", kNames},
       {"enableServiceLinks", "boolean", "Service environment variables.",
        "podless sets no service environment variables"},
       {"ephemeralContainers", "[]object", "Ephemeral containers.",
        "podless runs no ephemeral containers", "name", "name"},
       {"hostAliases", "[]object", "Host aliases.", kNames, "ip", "ip"},
       {"hostIPC", "boolean", "The host's IPC namespace.", "podless shares no IPC namespace"},
       {"hostNetwork", "boolean", "The host's network.",
        "a process workload has a network namespace of its own"},
       {"hostPID", "boolean", "The host's PID namespace.", "podless shares no PID namespace"},
       {"hostUsers", "boolean", "The host's user namespace.",
        "a process workload gets a uid of its own"},
       {"hostname", "string", "The pod's hostname.", kReplicaName},
       {"imagePullSecrets", "[]object", "Image pull secrets.", "podless pulls no images", "name",
        "name"},
       {"initContainers", "[]object", "Init containers.", "podless runs no init containers", "name",
        "name"},
       {"nodeName", "string", "The node to run on.", kHere},
       {"nodeSelector", "map", "Node labels to run on.", kHere},
       {"os", "object", "The pod's OS.", kNoRuntime},
       {"overhead", "map", "Resource overhead.", kNoRuntime},
       {"preemptionPolicy", "string", "Preemption policy.", kHere},
       {"priority", "integer", "Priority.", kHere},
       {"priorityClassName", "string", "Priority class.", kHere},
       {"readinessGates", "[]object", "Readiness gates.", "readiness is the readiness probe's"},
       {"resourceClaims", "[]object", "Resource claims.", "podless allocates no devices", "name",
        "name"},
       {"restartPolicy", "string",
        "Always (the only value for a controller's pods), OnFailure or Never: when podless "
        "restarts a process that exits."},
       {"runtimeClassName", "string", "Runtime class.", kNoRuntime},
       {"schedulerName", "string", "Scheduler.", kHere},
       {"schedulingGates", "[]object", "Scheduling gates.", kHere, "name", "name"},
       {"securityContext", kPodSecurityContext,
        "The uid and gid the processes run as (containers' settings override it)."},
       {"serviceAccount", "string", "Deprecated alias of serviceAccountName."},
       {"serviceAccountName", "string",
        "The service account whose SPIFFE identity the replicas get (default: \"default\")."},
       {"setHostnameAsFQDN", "boolean", "Hostname as FQDN.", kReplicaName},
       {"shareProcessNamespace", "boolean", "One PID namespace.", "a workload runs one process"},
       {"subdomain", "string", "The pod's subdomain.", kReplicaName},
       {"terminationGracePeriodSeconds", "integer",
        "Seconds between SIGTERM and SIGKILL when a process is stopped (default 30)."},
       {"tolerations", "[]object", "Tolerations.", kHere},
       {"topologySpreadConstraints", "[]object", "Topology spread.", kHere, "topologyKey",
        "topologyKey,whenUnsatisfiable"},
       {"volumes", "[]object", "Volumes.",
        "podless mounts no volumes; a process sees the host's files", "name", "name"}}));
  o.push_back(Object(
      kContainer,
      "A container of a pod. With a command, podless runs it as a process on the host (its "
      "image is not pulled); without one, it is a placeholder for the pod's in-proxy app.",
      {{"args", "[]string", "Arguments to the command."},
       {"command", "[]string",
        "The program and its arguments, run on the host; $(VAR) expands env variables."},
       {"env",
        "[]io.k8s.api.core.v1.EnvVar",
        "Environment variables of the process.",
        {},
        "name",
        "name"},
       {"envFrom", "[]object",
        "Not supported (an error): podless has no ConfigMaps or Secrets; give each variable in "
        "env."},
       {"image", "string", "The container image: kept, not pulled (no container runtime)."},
       {"imagePullPolicy", "string", "Image pull policy.", "podless pulls no images"},
       {"lifecycle", "object", "Lifecycle hooks.", "podless runs no lifecycle hooks"},
       {"livenessProbe", kProbe, "Liveness probe.",
        "podless restarts a process when it exits, not on a probe"},
       {"name", "string", "The container's name (logs -c, statuses).", {}, {}, {}, true},
       {"ports",
        "[]io.k8s.api.core.v1.ContainerPort",
        "Ports the container listens on: the workload's ports (Services target them).",
        {},
        "containerPort",
        "containerPort,protocol"},
       {"readinessProbe", kProbe,
        "When the replica is ready (a Service's endpoint): tcpSocket and httpGet are run."},
       {"resizePolicy", "[]object", "Resize policy.", "limits change with a new apply"},
       {"resources", kResourceRequirements,
        "Limits of cpu and memory, summed over the containers into the replica's cgroup."},
       {"restartPolicy", "string", "Sidecar restart policy.",
        "podless runs no sidecar init containers"},
       {"securityContext", kSecurityContext, "The uid and gid the process runs as."},
       {"startupProbe", kProbe, "Startup probe.", "readiness is the readiness probe's"},
       {"stdin", "boolean", "Stdin.", "a process's stdin is /dev/null"},
       {"stdinOnce", "boolean", "Stdin once.", "a process's stdin is /dev/null"},
       {"terminationMessagePath", "string", "Termination message path.",
        "podless keeps the process's output in its log"},
       {"terminationMessagePolicy", "string", "Termination message policy.",
        "podless keeps the process's output in its log"},
       {"tty", "boolean", "A terminal.", "a process has no terminal"},
       {"volumeDevices", "[]object", "Volume devices.", "podless mounts no volumes", "devicePath",
        "devicePath"},
       {"volumeMounts", "[]object", "Volume mounts.",
        "podless mounts no volumes; a process sees the host's files", "mountPath", "mountPath"},
       {"workingDir", "string", "The process's working directory."}}));
  o.push_back(Object(
      kContainerPort, "A port the container listens on.",
      {{"containerPort", "integer", "The port number (1-65535).", {}, {}, {}, true},
       {"name", "string", "The port's name (Services' targetPort may name it)."},
       {"protocol", "string", "TCP (podless relays TCP only)."},
       {"hostPort", "integer", "Host port.", "a port is served on the replica's own address"},
       {"hostIP", "string", "Host IP.", "a port is served on the replica's own address"}}));
  o.push_back(Object(
      kEnvVar, "An environment variable of the process.",
      {{"name", "string", "The variable's name.", {}, {}, {}, true},
       {"value", "string", "The value; $(VAR) expands earlier variables."},
       {"valueFrom", kEnvVarSource,
        "A value from the pod: fieldRef metadata.name (the replica's name), metadata.namespace, "
        "status.podIP, spec.serviceAccountName, metadata.labels['KEY'], "
        "metadata.annotations['KEY']."}}));
  o.push_back(
      Object(kEnvVarSource, "The source of an environment variable's value.",
             {{"fieldRef", kObjectFieldSelector, "A field of the pod (see EnvVar.valueFrom)."},
              {"resourceFieldRef", "object", "Not supported: an error."},
              {"configMapKeyRef", "object", "Not supported: an error."},
              {"secretKeyRef", "object", "Not supported: an error."}}));
  o.push_back(Object(kObjectFieldSelector, "A field of the pod.",
                     {{"fieldPath", "string", "The path of the field.", {}, {}, {}, true},
                      {"apiVersion", "string", "The version the path is in (v1)."}}));
  {
    std::vector<FieldInfo> probe = {
        {"tcpSocket", kTcpSocketAction, "Ready when a TCP connection to the port succeeds."},
        {"httpGet", kHttpGetAction, "Ready when an HTTP GET answers 200-399."},
        {"exec", "object", "Exec probe.",
         "podless runs tcpSocket and httpGet probes only; without one the replica is ready once "
         "its process runs"},
        {"grpc", "object", "gRPC probe.",
         "podless runs tcpSocket and httpGet probes only; without one the replica is ready once "
         "its process runs"}};
    AddProbeTiming(probe);
    probe.push_back({"terminationGracePeriodSeconds", "integer", "Grace period.",
                     "the pod's terminationGracePeriodSeconds applies"});
    o.push_back(Object(kProbe, "A readiness check run against each replica.", std::move(probe)));
  }
  o.push_back(Object(
      kHttpGetAction, "An HTTP GET to the replica.",
      {{"port", "int-or-string", "The port, by number or name.", {}, {}, {}, true},
       {"path", "string", "The path (default /)."},
       {"host", "string", "Host.", "the probe connects to the replica's own address"},
       {"scheme", "string", "HTTP (other schemes are warned about: the probe speaks plain HTTP)."},
       {"httpHeaders", "[]object", "Headers.", "the probe sends no extra headers"}}));
  o.push_back(
      Object(kTcpSocketAction, "A TCP connection to the replica.",
             {{"port", "int-or-string", "The port, by number or name.", {}, {}, {}, true},
              {"host", "string", "Host.", "the probe connects to the replica's own address"}}));
  o.push_back(Object(
      kResourceRequirements, "Compute resources of a container.",
      {{"limits", "map",
        "cpu and memory limits (other resources are warned about); a replica's limit is the sum "
        "of its containers'."},
       {"requests", "map", "Requests.", "podless has no scheduler; limits apply"},
       {"claims", "[]object", "Claims.", "podless allocates no devices"}}));
  {
    // Pod and container securityContext take the same fields in podless.
    std::vector<FieldInfo> sc = {
        {"runAsUser", "integer", "The uid the processes run as."},
        {"runAsGroup", "integer", "The gid the processes run as."},
        {"runAsNonRoot", "boolean", "Refuse to run as uid 0."},
        {"allowPrivilegeEscalation", "boolean", "Privilege escalation.", kNoCapabilities},
        {"capabilities", "object", "Capabilities.", kNoCapabilities},
        {"privileged", "boolean", "Privileged.", kNoCapabilities}};
    for (const char* name :
         {"procMount", "readOnlyRootFilesystem", "seccompProfile", "seLinuxOptions",
          "windowsOptions", "appArmorProfile", "fsGroup", "fsGroupChangePolicy",
          "supplementalGroups", "supplementalGroupsPolicy", "sysctls", "seLinuxChangePolicy"}) {
      sc.push_back({name, "object", "Accepted.", kSecurityIgnored});
    }
    o.push_back(Object(kSecurityContext,
                       "The user and group a container's process runs as. podless accepts the "
                       "fields of both PodSecurityContext and SecurityContext here.",
                       sc));
    o.push_back(Object(kPodSecurityContext,
                       "The user and group the pod's processes run as (a container's "
                       "securityContext overrides it).",
                       std::move(sc)));
  }
  // ---------------------------------------------------------------- controllers
  auto owner_spec = [](std::string_view name, std::string_view what, bool replicas,
                       std::vector<FieldInfo> ignored) {
    std::vector<FieldInfo> fields = {
        {"selector",
         kLabelSelector,
         "Selects the pods of the template: it must match spec.template.metadata.labels.",
         {},
         {},
         {},
         true},
        {"template", kPodTemplateSpec, "The pods, one per replica.", {}, {}, {}, true}};
    if (replicas) {
      fields.push_back({"replicas", "integer", "How many replicas run (default 1)."});
    }
    for (FieldInfo& f : ignored) fields.push_back(std::move(f));
    return Object(name, what, std::move(fields));
  };
  o.push_back(owner_spec(kDeploymentSpec, "The specification of a Deployment: a podless Workload.",
                         true,
                         {{"strategy", "object", "Rollout strategy.", kReplaces},
                          {"minReadySeconds", "integer", "Minimum ready seconds.", kAvailable},
                          {"revisionHistoryLimit", "integer", "Revision history.", kNoRevisions},
                          {"progressDeadlineSeconds", "integer", "Progress deadline.",
                           "podless reports no rollout progress"},
                          {"paused", "boolean", "Paused.", "podless does not pause rollouts"}}));
  o.push_back(owner_spec(
      kStatefulSetSpec, "The specification of a StatefulSet: a podless Workload.", true,
      {{"serviceName", "string", "Governing Service.",
        "replicas are reached by address or through a Service"},
       {"podManagementPolicy", "string", "Pod management.", "podless starts replicas together"},
       {"updateStrategy", "object", "Update strategy.", kReplaces},
       {"revisionHistoryLimit", "integer", "Revision history.", kNoRevisions},
       {"minReadySeconds", "integer", "Minimum ready seconds.", kAvailable},
       {"volumeClaimTemplates", "[]object", "Volume claims.", "podless mounts no volumes"},
       {"persistentVolumeClaimRetentionPolicy", "object", "Claim retention.",
        "podless mounts no volumes"},
       {"ordinals", "object", "Ordinals.", "replicas are numbered from 0"}}));
  o.push_back(owner_spec(kReplicaSetSpec, "The specification of a ReplicaSet: a podless Workload.",
                         true,
                         {{"minReadySeconds", "integer", "Minimum ready seconds.", kAvailable}}));
  o.push_back(owner_spec(kDaemonSetSpec,
                         "The specification of a DaemonSet: one replica on this agent.", false,
                         {{"updateStrategy", "object", "Update strategy.", kReplaces},
                          {"minReadySeconds", "integer", "Minimum ready seconds.", kAvailable},
                          {"revisionHistoryLimit", "integer", "Revision history.", kNoRevisions}}));
  // ---------------------------------------------------------------- Service
  o.push_back(Object(
      kServiceSpec,
      "The specification of a Service: a VIP on every agent, balanced over the ready replicas "
      "its selector picks.",
      {{"selector", "map", "The labels of the pods that are the Service's endpoints."},
       {"ports",
        "[]io.k8s.api.core.v1.ServicePort",
        "The ports the VIP serves.",
        {},
        "port",
        "port,protocol"},
       {"type", "string",
        "ClusterIP; NodePort and LoadBalancer are served as ClusterIP (warned about); "
        "ExternalName is an error."},
       // The reader words its own warnings for these (a headless Service).
       {"clusterIP", "string",
        "The VIP: podless assigns it (a value given is warned about; \"None\", headless, "
        "gets a VIP too)."},
       {"clusterIPs", "[]string", "The VIPs: podless assigns them, as clusterIP."},
       {"ipFamilies", "[]string", "IP families: IPv4 (others warned about)."},
       {"ipFamilyPolicy", "string", "SingleStack (others warned about)."},
       {"sessionAffinity", "string",
        "None (others warned about: each connection picks an "
        "endpoint of its own)."},
       {"sessionAffinityConfig", "object", "Session affinity.", kVipOnly},
       {"externalIPs", "[]string", "External IPs.", kVipOnly},
       {"externalName", "string", "External name.", kVipOnly},
       {"externalTrafficPolicy", "string",
        "Cluster (others warned about: podless opens no node ports or load balancers)."},
       {"internalTrafficPolicy", "string",
        "Cluster (others warned about: a Service's endpoints span the cluster)."},
       {"healthCheckNodePort", "integer", "Health check node port.", kVipOnly},
       {"loadBalancerIP", "string", "Load balancer IP.", kVipOnly},
       {"loadBalancerSourceRanges", "[]string", "Source ranges.", kVipOnly},
       {"loadBalancerClass", "string", "Load balancer class.", kVipOnly},
       {"allocateLoadBalancerNodePorts", "boolean", "Node ports.", kVipOnly},
       {"publishNotReadyAddresses", "boolean", "Not-ready endpoints.",
        "only ready replicas are a Service's endpoints"},
       {"trafficDistribution", "string", "Traffic distribution.", kVipOnly}}));
  o.push_back(Object(
      kServicePort, "A port of a Service.",
      {{"name", "string",
        "The port's name; \"http\", \"http2\", \"http-*\" select HTTP (Istio's convention)."},
       {"port", "integer", "The port on the VIP (1-65535).", {}, {}, {}, true},
       {"targetPort", "int-or-string",
        "The replicas' port, by number or by the name of a container port (default: port)."},
       {"protocol", "string", "TCP; UDP and SCTP are errors (HBONE carries TCP streams)."},
       {"appProtocol", "string", "http, http2 or kubernetes.io/h2c select HTTP."},
       {"nodePort", "integer", "Node port.", "podless opens no node ports"}}));
  o.push_back(Object(
      kServiceAccount, "A ServiceAccount's own fields, besides apiVersion, kind and metadata.",
      {{"secrets", "[]object", "Secrets.", "podless issues the account's SPIFFE certificate"},
       {"imagePullSecrets", "[]object", "Image pull secrets.",
        "podless issues the account's SPIFFE certificate"},
       {"automountServiceAccountToken", "boolean", "Token mounting.",
        "podless issues the account's SPIFFE certificate"}}));
  // ---------------------------------------------------------------- Istio
  o.push_back(Object(kWorkloadSelector, "The workloads a policy applies to, by label.",
                     {{"matchLabels", "map", "Labels the workloads must have."}}));
  o.push_back(Object(
      kAuthorizationPolicySpec,
      "Istio's AuthorizationPolicy: which requests reach the selected workloads, enforced by "
      "the destination's agent.",
      {{"selector", kWorkloadSelector,
        "The workloads the policy applies to (default: every workload of the namespace)."},
       {"action", "string", "ALLOW (default) or DENY."},
       {"rules", "[]istio.security.v1beta1.Rule",
        "A request matches if any rule matches; no rules: ALLOW nothing, DENY nothing."}}));
  o.push_back(
      Object(kRule, "A rule: it matches when all of from, to and when match.",
             {{"from", "[]istio.security.v1beta1.Rule.From", "Sources: any may match."},
              {"to", "[]istio.security.v1beta1.Rule.To", "Operations: any may match."},
              {"when", "[]istio.security.v1beta1.Condition", "Conditions: all must match."}}));
  o.push_back(Object(kRuleFrom, "A source of a rule.",
                     {{"source", kSource, "The peer the request comes from."}}));
  o.push_back(Object(kRuleTo, "An operation of a rule.",
                     {{"operation", kOperation, "What the request asks for."}}));
  {
    std::vector<FieldInfo> source;
    for (const char* name :
         {"principals", "notPrincipals", "namespaces", "notNamespaces", "serviceAccounts",
          "notServiceAccounts", "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks",
          "requestPrincipals", "notRequestPrincipals"}) {
      source.push_back({name, "[]string",
                        "Istio's source field of this name, matched against the peer's SPIFFE "
                        "identity and address."});
    }
    o.push_back(Object(kSource, "The peer of a request.", std::move(source)));
  }
  o.push_back(Object(kOperation, "What a request asks for.",
                     {{"ports", "[]string", "Destination ports."},
                      {"notPorts", "[]string", "Destination ports that must not match."},
                      {"hosts", "[]string", "HTTP hosts."},
                      {"notHosts", "[]string", "HTTP hosts that must not match."},
                      {"methods", "[]string", "HTTP methods."},
                      {"notMethods", "[]string", "HTTP methods that must not match."},
                      {"paths", "[]string", "HTTP paths (exact, prefix*, *suffix)."},
                      {"notPaths", "[]string", "HTTP paths that must not match."}}));
  o.push_back(
      Object(kCondition, "A condition on a request attribute.",
             {{"key", "string", "The attribute (Istio's condition keys).", {}, {}, {}, true},
              {"values", "[]string", "Values, any may match."},
              {"notValues", "[]string", "Values that must not match."}}));
  o.push_back(Object(
      kPeerAuthenticationSpec,
      "Istio's PeerAuthentication: whether the selected workloads take plaintext as well as "
      "mutual TLS (HBONE).",
      {{"selector", kWorkloadSelector, "The workloads it applies to (default: the namespace's)."},
       {"mtls", kMutualTls, "The mode for every port."},
       {"portLevelMtls", "object", "A mode per port number: {PORT: {mode: ...}}."}}));
  o.push_back(Object(kMutualTls, "The mutual TLS mode.",
                     {{"mode", "string", "UNSET, PERMISSIVE, STRICT or DISABLE."}}));
  o.push_back(Object(
      kWorkloadEntrySpec,
      "Istio's WorkloadEntry: a workload outside podless, reached over HBONE at its address.",
      {{"address", "string", "The workload's address.", {}, {}, {}, true},
       {"labels", "map", "Its labels (what Services select)."},
       {"serviceAccount", "string", "Its service account (default: \"default\")."},
       {"ports", "map", "Port names to numbers."},
       {"network", "string", "Network.", "podless dials the entry's address directly over HBONE"},
       {"locality", "string", "Locality.", "podless dials the entry's address directly over HBONE"},
       {"weight", "integer", "Weight.", "podless balances over endpoints evenly"}}));
  // ---------------------------------------------------------------- podless
  o.push_back(
      Object("dev.podless.v1alpha1.WorkloadSpec", "The specification of a podless Workload.",
             {{"replicas", "integer", "How many replicas run (default 1)."},
              {"serviceAccount", "string", "The service account of the replicas' SPIFFE identity."},
              {"ports",
               "[]dev.podless.v1alpha1.WorkloadPort",
               "The ports the workload listens on.",
               {},
               "port",
               "port"},
              {"app", "dev.podless.v1alpha1.App", "What the replicas run.", {}, {}, {}, true}}));
  o.push_back(Object("dev.podless.v1alpha1.WorkloadPort", "A port of a workload.",
                     {{"name", "string", "The port's name."},
                      {"port", "integer", "The port number.", {}, {}, {}, true},
                      {"protocol", "string", "TCP or HTTP."}}));
  o.push_back(
      Object("dev.podless.v1alpha1.App",
             "What the replicas run: exactly one of echo, static, forward, exec.",
             {{"echo", "object", "An in-proxy app that echoes requests back (takes no fields)."},
              {"static", "dev.podless.v1alpha1.StaticApp", "An in-proxy app with a fixed answer."},
              {"forward", "dev.podless.v1alpha1.ForwardApp", "Forward connections to an address."},
              {"exec", "dev.podless.v1alpha1.ExecApp", "Run a process."}}));
  o.push_back(Object("dev.podless.v1alpha1.StaticApp", "A fixed HTTP answer.",
                     {{"status", "integer", "The HTTP status (100-599)."},
                      {"body", "string", "The body."},
                      {"headers", "map", "Response headers."}}));
  o.push_back(Object("dev.podless.v1alpha1.ForwardApp", "Forward connections.",
                     {{"address", "string", "host:port to forward to."}}));
  o.push_back(Object(
      "dev.podless.v1alpha1.ExecApp", "A process per replica, supervised by the agent.",
      {{"name", "string", "The container's name."},
       {"command", "[]string", "The program and its arguments."},
       {"env", "[]dev.podless.v1alpha1.EnvVar", "Environment variables.", {}, "name", "name"},
       {"workingDir", "string", "The working directory."},
       {"containers",
        "[]dev.podless.v1alpha1.ExecContainer",
        "More processes in the replica's sandbox.",
        {},
        "name",
        "name"},
       {"restartPolicy", "string", "Always, OnFailure or Never."},
       {"readinessProbe", "dev.podless.v1alpha1.Probe", "When the replica is ready."},
       {"terminationGracePeriodSeconds", "integer", "Seconds between SIGTERM and SIGKILL."},
       {"securityContext", "dev.podless.v1alpha1.SecurityContext", "The uid and gid."},
       {"resources", "dev.podless.v1alpha1.Resources", "Limits of the replica's cgroup."},
       {"keepWorkingDir", "boolean", "Keep the replica's working directory after it ends."}}));
  o.push_back(Object(
      "dev.podless.v1alpha1.ExecContainer", "Another process of the replica.",
      {{"name", "string", "Its name.", {}, {}, {}, true},
       {"command", "[]string", "The program and its arguments."},
       {"env", "[]dev.podless.v1alpha1.EnvVar", "Environment variables.", {}, "name", "name"},
       {"workingDir", "string", "The working directory."},
       {"readinessProbe", "dev.podless.v1alpha1.Probe", "When it is ready."}}));
  o.push_back(Object(
      "dev.podless.v1alpha1.EnvVar", "An environment variable.",
      {{"name", "string", "The name.", {}, {}, {}, true}, {"value", "string", "The value."}}));
  o.push_back(Object("dev.podless.v1alpha1.SecurityContext", "The user and group.",
                     {{"runAsUser", "integer", "The uid."},
                      {"runAsGroup", "integer", "The gid."},
                      {"runAsNonRoot", "boolean", "Refuse uid 0."}}));
  o.push_back(Object("dev.podless.v1alpha1.Resources", "Resources of the replica.",
                     {{"limits", "dev.podless.v1alpha1.Limits", "Its limits."}}));
  o.push_back(Object("dev.podless.v1alpha1.Limits", "The replica's limits.",
                     {{"memory", "int-or-string", "Memory (a Kubernetes quantity)."},
                      {"cpu", "int-or-string", "CPU (a Kubernetes quantity)."},
                      {"pids", "integer", "Processes."}}));
  {
    std::vector<FieldInfo> probe = {
        {"tcpSocket", "dev.podless.v1alpha1.ProbePort", "A TCP connection."},
        {"httpGet", "dev.podless.v1alpha1.ProbeHttpGet", "An HTTP GET."}};
    AddProbeTiming(probe);
    o.push_back(Object("dev.podless.v1alpha1.Probe", "A readiness probe.", std::move(probe)));
  }
  o.push_back(Object("dev.podless.v1alpha1.ProbePort", "A port to connect to.",
                     {{"port", "int-or-string", "The port.", {}, {}, {}, true}}));
  o.push_back(Object(
      "dev.podless.v1alpha1.ProbeHttpGet", "An HTTP GET.",
      {{"port", "int-or-string", "The port.", {}, {}, {}, true}, {"path", "string", "The path."}}));
  o.push_back(
      Object("dev.podless.v1alpha1.ServiceSpec", "A podless Service.",
             {{"selector", "map", "The labels of its workloads."},
              {"ports", "[]dev.podless.v1alpha1.ServicePort", "Its ports.", {}, "port", "port"}}));
  o.push_back(Object("dev.podless.v1alpha1.ServicePort", "A port of a podless Service.",
                     {{"name", "string", "The name."},
                      {"port", "integer", "The port.", {}, {}, {}, true},
                      {"targetPort", "int-or-string", "The workloads' port."},
                      {"protocol", "string", "TCP or HTTP."}}));
  return o;
}

}  // namespace

const FieldInfo* ObjectInfo::Find(std::string_view field) const {
  for (const FieldInfo& f : fields) {
    if (field == f.name) return &f;
  }
  return nullptr;
}

const std::vector<ObjectInfo>& ManifestObjects() {
  static const std::vector<ObjectInfo> objects = Make();
  return objects;
}

const ObjectInfo& ObjectNamed(std::string_view name) {
  for (const ObjectInfo& o : ManifestObjects()) {
    if (o.name == name) return o;
  }
  std::fprintf(stderr, "manifest_fields: no object %.*s\n", static_cast<int>(name.size()),
               name.data());
  std::abort();
}

std::span<const char* const> FieldNames(std::string_view object) {
  return ObjectNamed(object).names;
}

}  // namespace podless::workloads::manifest
