#include "api/output_format.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "api/model_convert.h"
#include "api/yaml_json.h"
#include "workloads/manifest_writer.h"
#include "workloads/quantity.h"

namespace podless::api {
namespace {

constexpr char kNone[] = "<none>";

// ---------------------------------------------------------------------------
// Small value formatters shared by tables, YAML and describe.

std::string OrNone(std::string value) { return value.empty() ? kNone : value; }

std::string Join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (const std::string& part : parts) {
    if (!out.empty()) out += separator;
    out += part;
  }
  return out;
}

// Protobuf maps iterate in no defined order; output must be stable.
std::map<std::string, std::string> Sorted(
    const google::protobuf::Map<std::string, std::string>& m) {
  return {m.begin(), m.end()};
}

// "app=web,tier=front", as kubectl prints selectors.
std::string LabelsInline(const google::protobuf::Map<std::string, std::string>& labels) {
  std::vector<std::string> parts;
  for (const auto& [key, value] : Sorted(labels)) parts.push_back(key + "=" + value);
  return Join(parts, ",");
}

std::vector<std::string> LabelLines(const google::protobuf::Map<std::string, std::string>& labels) {
  std::vector<std::string> lines;
  for (const auto& [key, value] : Sorted(labels)) lines.push_back(key + "=" + value);
  return lines;
}

const char* ProtocolName(v1::Protocol protocol) {
  return protocol == v1::HTTP ? "HTTP" : "TCP";  // UNSPECIFIED means TCP.
}

std::string PortRefText(const v1::PortRef& ref) {
  switch (ref.ref_case()) {
    case v1::PortRef::kNumber:
      return std::to_string(ref.number());
    case v1::PortRef::kName:
      return ref.name();
    case v1::PortRef::REF_NOT_SET:
      break;
  }
  return "";
}

// "8080/HTTP"
std::string WorkloadPortText(const v1::Port& port) {
  return std::to_string(port.port()) + "/" + ProtocolName(port.protocol());
}

// "80->http/TCP", or "80/TCP" when the target is the same port number.
std::string ServicePortText(const v1::ServicePort& port) {
  std::string target = PortRefText(port.target_port());
  std::string text = std::to_string(port.port());
  if (!target.empty() && target != text) text += "->" + target;
  return text + "/" + ProtocolName(port.protocol());
}

const char* AppKindName(const v1::WorkloadSpec& spec) {
  switch (spec.app().kind_case()) {
    case v1::App::kStatic:
      return "static";
    case v1::App::kForward:
      return "forward";
    case v1::App::kExec:
      return "exec";
    case v1::App::kEcho:
    case v1::App::KIND_NOT_SET:
      break;  // An absent app means echo.
  }
  return "echo";
}

const char* ActionName(v1::PolicyAction action) { return action == v1::DENY ? "DENY" : "ALLOW"; }

const char* RestartPolicyName(v1::RestartPolicy policy) {
  switch (policy) {
    case v1::ON_FAILURE:
      return "OnFailure";
    case v1::NEVER:
      return "Never";
    default:
      return "Always";  // UNSPECIFIED means Always.
  }
}

uint32_t DesiredReplicas(const v1::WorkloadSpec& spec) {
  return spec.has_replicas() ? spec.replicas().value() : 1;
}

size_t ReadyReplicas(const v1::Workload& workload) {
  return std::count_if(workload.status().replicas().begin(), workload.status().replicas().end(),
                       [](const v1::Replica& r) { return r.ready(); });
}

// RFC 3339 in UTC ("2024-05-01T12:00:00Z"); "" for 0, which means "never".
std::string Rfc3339(int64_t unix_seconds) {
  if (unix_seconds == 0) return "";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

// Distinct non-empty values in first-seen order.
template <typename Getter>
std::vector<std::string> Distinct(const v1::Workload& workload, Getter get) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const v1::Replica& replica : workload.status().replicas()) {
    const std::string& value = get(replica);
    if (!value.empty() && seen.insert(value).second) out.push_back(value);
  }
  return out;
}

// "a,b,c +2 more": a table cell stays readable with a thousand replicas.
std::string FirstAddresses(const v1::Workload& workload) {
  constexpr size_t kShown = 3;
  std::vector<std::string> addresses;
  size_t total = 0;
  for (const v1::Replica& replica : workload.status().replicas()) {
    if (replica.address().empty()) continue;
    if (addresses.size() < kShown) addresses.push_back(replica.address());
    ++total;
  }
  std::string text = Join(addresses, ",");
  if (total > kShown) text += " +" + std::to_string(total - kShown) + " more";
  return text;
}

const char* MtlsModeName(v1::MtlsMode mode) {
  switch (mode) {
    case v1::PERMISSIVE:
      return "PERMISSIVE";
    case v1::STRICT:
      return "STRICT";
    case v1::DISABLE:
      return "DISABLE";
    default:
      return "UNSET";
  }
}

std::string NamespaceOf(const v1::ObjectMeta& meta) {
  return meta.namespace_().empty() ? "default" : meta.namespace_();
}

// ---------------------------------------------------------------------------
// Tables.

// kubectl's printer: each column as wide as its widest cell, 3 spaces between
// columns, the last column not padded (no trailing blanks).
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void AddRow(std::vector<std::string> cells) {
    for (std::string& cell : cells) cell = OrNone(std::move(cell));
    rows_.push_back(std::move(cells));
  }
  std::string Render(std::string_view indent = "", bool no_headers = false) const {
    std::vector<size_t> widths(rows_.front().size(), 0);
    for (size_t r = no_headers ? 1 : 0; r < rows_.size(); ++r) {
      const auto& row = rows_[r];
      for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
    }
    std::string out;
    for (size_t r = no_headers ? 1 : 0; r < rows_.size(); ++r) {
      const auto& row = rows_[r];
      out += indent;
      for (size_t i = 0; i < row.size(); ++i) {
        out += row[i];
        if (i + 1 < row.size()) out.append(widths[i] - row[i].size() + 3, ' ');
      }
      out += '\n';
    }
    return out;
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::vector<std::string> Header(const ListOptions& options, std::vector<std::string> columns) {
  if (options.all_namespaces) columns.insert(columns.begin(), "NAMESPACE");
  if (options.show_labels) columns.push_back("LABELS");
  return columns;
}

std::vector<std::string> Row(const ListOptions& options, const v1::ObjectMeta& meta,
                             std::vector<std::string> cells) {
  cells.insert(cells.begin(), meta.name());
  if (options.all_namespaces) cells.insert(cells.begin(), NamespaceOf(meta));
  if (options.show_labels) cells.push_back(LabelsInline(meta.labels()));
  return cells;
}

std::string WorkloadTable(const std::vector<const v1::Object*>& objects, bool wide,
                          const ListOptions& options) {
  std::vector<std::string> columns = {"NAME", "READY", "REPLICAS", "RESTARTS", "APP", "PORTS"};
  if (wide) columns.insert(columns.end(), {"SERVICE-ACCOUNT", "ADDRESSES", "SPIFFE-ID", "NODE"});
  Table table(Header(options, std::move(columns)));
  for (const v1::Object* object : objects) {
    const v1::Workload& w = object->workload();
    std::vector<std::string> ports;
    for (const v1::Port& port : w.spec().ports()) ports.push_back(WorkloadPortText(port));
    // Process restarts over all replicas (0 for in-proxy apps), as kubectl
    // shows a pod's container restarts.
    uint64_t restarts = 0;
    for (const v1::Replica& replica : w.status().replicas()) restarts += replica.restarts();
    std::vector<std::string> cells = {
        std::to_string(ReadyReplicas(w)) + "/" + std::to_string(DesiredReplicas(w.spec())),
        std::to_string(DesiredReplicas(w.spec())), std::to_string(restarts), AppKindName(w.spec()),
        Join(ports, ",")};
    if (wide) {
      const std::string& sa = w.spec().service_account();
      cells.push_back(sa.empty() ? "default" : sa);
      cells.push_back(FirstAddresses(w));
      cells.push_back(Join(
          Distinct(w, [](const v1::Replica& r) -> const std::string& { return r.spiffe_id(); }),
          ","));
      cells.push_back(Join(
          Distinct(w, [](const v1::Replica& r) -> const std::string& { return r.node(); }), ","));
    }
    table.AddRow(Row(options, w.metadata(), std::move(cells)));
  }
  return table.Render("", options.no_headers);
}

std::string ServiceTable(const std::vector<const v1::Object*>& objects, bool wide,
                         const ListOptions& options) {
  std::vector<std::string> columns = {"NAME", "VIP", "PORTS", "ENDPOINTS"};
  if (wide) columns.push_back("SELECTOR");
  Table table(Header(options, std::move(columns)));
  for (const v1::Object* object : objects) {
    const v1::Service& s = object->service();
    std::vector<std::string> ports;
    for (const v1::ServicePort& port : s.spec().ports()) ports.push_back(ServicePortText(port));
    std::vector<std::string> cells = {s.status().vip(), Join(ports, ","),
                                      std::to_string(s.status().endpoints_size())};
    if (wide) cells.push_back(LabelsInline(s.spec().selector()));
    table.AddRow(Row(options, s.metadata(), std::move(cells)));
  }
  return table.Render("", options.no_headers);
}

std::string PolicyTable(const std::vector<const v1::Object*>& objects, const ListOptions& options) {
  Table table(Header(options, {"NAME", "ACTION", "SELECTOR", "RULES"}));
  for (const v1::Object* object : objects) {
    const v1::AuthorizationPolicy& p = object->authorization_policy();
    // An empty selector selects every workload of the namespace (Istio).
    std::string selector = LabelsInline(p.spec().match_labels());
    table.AddRow(Row(options, p.metadata(),
                     {ActionName(p.spec().action()), selector.empty() ? "<all>" : selector,
                      std::to_string(p.spec().rules_size())}));
  }
  return table.Render("", options.no_headers);
}

// Namespaces and service accounts: NAME, and the labels with --show-labels.
std::string NameTable(const std::vector<const v1::Object*>& objects, const ListOptions& options) {
  Table table(Header(options, {"NAME"}));
  for (const v1::Object* object : objects) table.AddRow(Row(options, MetaOf(*object), {}));
  return table.Render("", options.no_headers);
}

std::string PeerAuthenticationTable(const std::vector<const v1::Object*>& objects,
                                    const ListOptions& options) {
  Table table(Header(options, {"NAME", "MODE", "SELECTOR", "PORT-LEVEL"}));
  for (const v1::Object* object : objects) {
    const v1::PeerAuthentication& p = object->peer_authentication();
    std::string selector = LabelsInline(p.spec().match_labels());
    std::map<uint32_t, v1::MtlsMode> ports(p.spec().port_level_mtls().begin(),
                                           p.spec().port_level_mtls().end());
    std::vector<std::string> port_modes;
    for (const auto& [port, mode] : ports) {
      port_modes.push_back(std::to_string(port) + "=" + MtlsModeName(mode));
    }
    table.AddRow(Row(options, p.metadata(),
                     {MtlsModeName(p.spec().mode()), selector.empty() ? "<all>" : selector,
                      Join(port_modes, ",")}));
  }
  return table.Render("", options.no_headers);
}

std::string WorkloadEntryTable(const std::vector<const v1::Object*>& objects,
                               const ListOptions& options) {
  Table table(Header(options, {"NAME", "ADDRESS", "SERVICE-ACCOUNT", "PORTS"}));
  for (const v1::Object* object : objects) {
    const v1::WorkloadEntry& e = object->workload_entry();
    std::map<std::string, uint32_t> ports(e.spec().ports().begin(), e.spec().ports().end());
    std::vector<std::string> port_texts;
    for (const auto& [name, port] : ports) port_texts.push_back(name + "=" + std::to_string(port));
    table.AddRow(Row(options, e.metadata(),
                     {e.spec().address(), e.spec().service_account(), Join(port_texts, ",")}));
  }
  return table.Render("", options.no_headers);
}

static std::string Age(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 120) return std::to_string(seconds) + "s";
  if (seconds < 2 * 3600) return std::to_string(seconds / 60) + "m";
  if (seconds < 2 * 86400) return std::to_string(seconds / 3600) + "h";
  return std::to_string(seconds / 86400) + "d";
}

std::string Tables(const std::vector<v1::Object>& objects, v1::Kind kind, bool wide,
                   const ListOptions& options) {
  // One table per kind; the requested kind first, then the others in enum order.
  std::vector<v1::Kind> order = {kind};
  for (v1::Kind k : {v1::WORKLOAD, v1::SERVICE, v1::AUTHORIZATION_POLICY, v1::NAMESPACE,
                     v1::SERVICE_ACCOUNT, v1::PEER_AUTHENTICATION, v1::WORKLOAD_ENTRY}) {
    if (k != kind) order.push_back(k);
  }
  std::string out;
  for (v1::Kind k : order) {
    std::vector<const v1::Object*> of_kind;
    for (const v1::Object& object : objects) {
      if (KindOf(object) == k) of_kind.push_back(&object);
    }
    if (of_kind.empty()) continue;
    if (!out.empty()) out += '\n';
    switch (k) {
      case v1::WORKLOAD:
        out += WorkloadTable(of_kind, wide, options);
        break;
      case v1::SERVICE:
        out += ServiceTable(of_kind, wide, options);
        break;
      case v1::AUTHORIZATION_POLICY:
        out += PolicyTable(of_kind, options);
        break;
      case v1::NAMESPACE: {
        ListOptions cluster_scoped = options;
        cluster_scoped.all_namespaces = false;
        out += NameTable(of_kind, cluster_scoped);
        break;
      }
      case v1::SERVICE_ACCOUNT:
        out += NameTable(of_kind, options);
        break;
      case v1::PEER_AUTHENTICATION:
        out += PeerAuthenticationTable(of_kind, options);
        break;
      case v1::WORKLOAD_ENTRY:
        out += WorkloadEntryTable(of_kind, options);
        break;
      default:
        break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// JSON: the YAML document in JSON syntax (see Json and JsonList below).

// Prefixes every non-empty line of `text` with `indent`.
std::string IndentLines(std::string_view text, std::string_view first, std::string_view rest) {
  std::string out;
  bool first_line = true;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty()) out += first_line ? first : rest;
    out += line;
    out += '\n';
    first_line = false;
    start = end + 1;
  }
  return out;
}

std::string JsonOf(const std::string& yaml) {
  Result<std::string> json = YamlToJson(yaml);
  if (!json.ok()) {
    // Only a printer bug gets here; say so in valid JSON rather than print
    // half a document.
    return "{\"error\": \"this object cannot be printed as JSON\"}\n";
  }
  return *json;
}

// ---------------------------------------------------------------------------
// YAML.

// The names of a pod's containers in an applied document (a Pod's
// spec.containers, a controller's spec.template.spec.containers), and the
// one with a command (the one podless runs), or "" when none has one.
std::vector<std::string> ContainerNames(const std::string& document, std::string* runs) {
  std::vector<std::string> names;
  try {
    YAML::Node doc = YAML::Load(document);
    YAML::Node spec = doc["spec"];
    if (spec && spec["template"]) spec = spec["template"]["spec"];
    YAML::Node containers = spec ? spec["containers"] : YAML::Node();
    if (!containers || !containers.IsSequence()) return names;
    for (const YAML::Node& c : containers) {
      if (!c.IsMap() || !c["name"] || !c["name"].IsScalar()) continue;
      names.push_back(c["name"].Scalar());
      if (c["command"] && !c["command"].IsNull()) *runs = names.back();
    }
  } catch (const YAML::Exception&) {
  }
  return names;
}

// The `status:` of an object applied as a Kubernetes kind, in that kind's
// shape, from podless's status: a Pod's phase, podIP, Ready condition and
// container statuses; a controller's replica counts; a Service's VIP (as
// clusterIP). "" for kinds without one.
std::string KubeStatus(const v1::Object& object, const std::string& kind) {
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "status" << YAML::Value << YAML::BeginMap;
  if (object.has_service()) {
    const v1::ServiceStatus& status = object.service().status();
    if (status.vip().empty()) return "";
    out << YAML::Key << "clusterIP" << YAML::Value << status.vip();
    out << YAML::Key << "loadBalancer" << YAML::Value << YAML::Flow << YAML::BeginMap
        << YAML::EndMap;
  } else if (object.has_workload()) {
    const v1::WorkloadStatus& status = object.workload().status();
    int ready = 0;
    for (const v1::Replica& r : status.replicas()) ready += r.ready() ? 1 : 0;
    const int replicas = status.replicas_size();
    if (kind == "Pod") {
      if (replicas == 0) {
        out << YAML::Key << "phase" << YAML::Value << "Pending";
      } else {
        const v1::Replica& r = status.replicas(0);
        const bool waiting = !r.process_state().empty() && r.process_state() != "Running";
        std::string phase = waiting ? "Pending" : "Running";
        if (r.process_reason() == "Completed") phase = "Succeeded";
        out << YAML::Key << "phase" << YAML::Value << phase;
        out << YAML::Key << "podIP" << YAML::Value << r.address();
        out << YAML::Key << "podIPs" << YAML::Value << YAML::BeginSeq << YAML::BeginMap << YAML::Key
            << "ip" << YAML::Value << r.address() << YAML::EndMap << YAML::EndSeq;
        if (!r.node().empty()) out << YAML::Key << "nominatedNodeName" << YAML::Value << r.node();
        const char* truth = r.ready() ? "True" : "False";
        out << YAML::Key << "conditions" << YAML::Value << YAML::BeginSeq;
        for (const char* type : {"Ready", "ContainersReady"}) {
          out << YAML::BeginMap << YAML::Key << "type" << YAML::Value << type << YAML::Key
              << "status" << YAML::Value << YAML::DoubleQuoted << truth << YAML::EndMap;
        }
        out << YAML::EndSeq;
        std::string runs;
        std::vector<std::string> names =
            ContainerNames(MetaOf(object).applied_as().document(), &runs);
        if (!names.empty()) {
          out << YAML::Key << "containerStatuses" << YAML::Value << YAML::BeginSeq;
          for (const std::string& name : names) {
            // A container podless runs carries its process's state (each
            // its own, by name); the others (image-only) are stood in for
            // by the proxy.
            const v1::ContainerStatus* own = nullptr;
            for (const v1::ContainerStatus& c : r.containers()) {
              if (c.name() == name) own = &c;
            }
            const bool process = own != nullptr || (r.containers_size() == 0 && name == runs);
            const bool c_waiting =
                own != nullptr ? !own->state().empty() && own->state() != "Running" : waiting;
            const bool c_ready = own != nullptr ? own->ready() : r.ready();
            const uint32_t restarts = own != nullptr ? own->restarts() : r.restarts();
            const std::string& reason = own != nullptr ? own->reason() : r.process_reason();
            const std::string& last_exit = own != nullptr ? own->last_exit() : r.last_exit();
            out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << name;
            out << YAML::Key << "ready" << YAML::Value << c_ready;
            out << YAML::Key << "restartCount" << YAML::Value << (process ? restarts : 0u);
            out << YAML::Key << "started" << YAML::Value << !(process && c_waiting);
            out << YAML::Key << "state" << YAML::Value << YAML::BeginMap;
            if (process && c_waiting) {
              out << YAML::Key << "waiting" << YAML::Value << YAML::BeginMap;
              if (!reason.empty()) out << YAML::Key << "reason" << YAML::Value << reason;
              out << YAML::EndMap;
            } else {
              out << YAML::Key << "running" << YAML::Value << YAML::Flow << YAML::BeginMap
                  << YAML::EndMap;
            }
            out << YAML::EndMap;
            if (process && !last_exit.empty()) {
              out << YAML::Key << "lastState" << YAML::Value << YAML::BeginMap << YAML::Key
                  << "terminated" << YAML::Value << YAML::BeginMap << YAML::Key << "reason"
                  << YAML::Value << last_exit << YAML::EndMap << YAML::EndMap;
            }
            out << YAML::EndMap;
          }
          out << YAML::EndSeq;
        }
      }
    } else if (kind == "DaemonSet") {
      out << YAML::Key << "currentNumberScheduled" << YAML::Value << replicas;
      out << YAML::Key << "desiredNumberScheduled" << YAML::Value << replicas;
      out << YAML::Key << "numberAvailable" << YAML::Value << ready;
      out << YAML::Key << "numberMisscheduled" << YAML::Value << 0;
      out << YAML::Key << "numberReady" << YAML::Value << ready;
      out << YAML::Key << "updatedNumberScheduled" << YAML::Value << replicas;
    } else {
      // Deployment, StatefulSet, ReplicaSet: every replica is of the
      // current spec (podless replaces changed replicas at once).
      out << YAML::Key << "replicas" << YAML::Value << replicas;
      out << YAML::Key << "readyReplicas" << YAML::Value << ready;
      out << YAML::Key << "availableReplicas" << YAML::Value << ready;
      if (kind == "ReplicaSet") {
        out << YAML::Key << "fullyLabeledReplicas" << YAML::Value << replicas;
      } else {
        out << YAML::Key << "updatedReplicas" << YAML::Value << replicas;
      }
      if (kind == "StatefulSet") {
        out << YAML::Key << "currentReplicas" << YAML::Value << replicas;
      }
    }
  } else {
    return "";
  }
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

// The `status:` section, or "" when the object has none worth printing.
std::string YamlStatus(const v1::Object& object) {
  if (const v1::ObjectMeta& meta = MetaOf(object); meta.has_applied_as()) {
    return KubeStatus(object, meta.applied_as().kind());
  }
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "status" << YAML::Value << YAML::BeginMap;
  if (object.has_workload()) {
    const v1::WorkloadStatus& status = object.workload().status();
    if (status.replicas_size() == 0) return "";
    out << YAML::Key << "replicas" << YAML::Value << YAML::BeginSeq;
    for (const v1::Replica& r : status.replicas()) {
      out << YAML::BeginMap;
      out << YAML::Key << "name" << YAML::Value << r.name();
      out << YAML::Key << "address" << YAML::Value << r.address();
      out << YAML::Key << "spiffeId" << YAML::Value << r.spiffe_id();
      if (!r.certificate_serial().empty()) {
        // Quoted: an all-digit hex serial must stay a string.
        out << YAML::Key << "certificateSerial" << YAML::Value << YAML::DoubleQuoted
            << r.certificate_serial();
        out << YAML::Key << "certificateNotAfter" << YAML::Value
            << Rfc3339(r.certificate_not_after());
      }
      out << YAML::Key << "ready" << YAML::Value << r.ready();
      if (!r.process_state().empty()) {
        out << YAML::Key << "process" << YAML::Value << YAML::BeginMap;
        out << YAML::Key << "state" << YAML::Value << r.process_state();
        if (!r.process_reason().empty()) {
          out << YAML::Key << "reason" << YAML::Value << r.process_reason();
        }
        out << YAML::Key << "restarts" << YAML::Value << r.restarts();
        if (!r.last_exit().empty()) {
          out << YAML::Key << "lastExit" << YAML::Value << r.last_exit();
        }
        if (r.containers_size() > 1) {
          // Each container's own process.
          out << YAML::Key << "containers" << YAML::Value << YAML::BeginSeq;
          for (const v1::ContainerStatus& c : r.containers()) {
            out << YAML::BeginMap;
            out << YAML::Key << "name" << YAML::Value << c.name();
            out << YAML::Key << "state" << YAML::Value << c.state();
            if (!c.reason().empty()) out << YAML::Key << "reason" << YAML::Value << c.reason();
            out << YAML::Key << "ready" << YAML::Value << c.ready();
            out << YAML::Key << "restarts" << YAML::Value << c.restarts();
            if (!c.last_exit().empty()) {
              out << YAML::Key << "lastExit" << YAML::Value << c.last_exit();
            }
            out << YAML::EndMap;
          }
          out << YAML::EndSeq;
        }
        out << YAML::EndMap;
      }
      if (r.unserved_ports_size() > 0) {
        // Plaintext ports another program holds (retried until free).
        out << YAML::Key << "unservedPorts" << YAML::Value << YAML::Flow << YAML::BeginSeq;
        for (uint32_t port : r.unserved_ports()) out << port;
        out << YAML::EndSeq;
      }
      if (!r.node().empty()) out << YAML::Key << "node" << YAML::Value << r.node();
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  } else if (object.has_service()) {
    const v1::ServiceStatus& status = object.service().status();
    if (status.vip().empty() && status.endpoints_size() == 0) return "";
    if (!status.vip().empty()) out << YAML::Key << "vip" << YAML::Value << status.vip();
    out << YAML::Key << "endpoints" << YAML::Value << YAML::BeginSeq;
    for (const std::string& endpoint : status.endpoints()) out << endpoint;
    out << YAML::EndSeq;
  } else {
    return "";
  }
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

// The manifest text without document markers, so it can be nested in a List.
std::string Yaml(const v1::Object& object) {
  Result<workloads::Object> model = FromProtoUnvalidated(object);
  if (!model.ok()) {
    // Cannot happen with objects an agent returned; still, print the
    // problem as a YAML comment instead of nothing.
    return "# cannot print this object as a manifest: " + model.error().message + "\n";
  }
  std::string text = workloads::WriteManifest(*model);
  if (text.rfind("---\n", 0) == 0) text.erase(0, 4);
  if (text.size() >= 4 && text.compare(text.size() - 4, 4, "...\n") == 0)
    text.resize(text.size() - 4);
  if (!text.empty() && text.back() != '\n') text += '\n';
  return text + YamlStatus(object);
}

std::string YamlList(const std::vector<v1::Object>& objects) {
  std::string out = "apiVersion: v1\nkind: List\n";
  if (objects.empty()) return out + "items: []\n";
  out += "items:\n";
  for (const v1::Object& object : objects) out += IndentLines(Yaml(object), "- ", "  ");
  return out;
}

std::string Json(const v1::Object& object) { return JsonOf(Yaml(object)); }
// YamlList's document in JSON, built item by item: a list of a million
// objects never goes through the YAML parser as one document.
std::string JsonList(const std::vector<v1::Object>& objects) {
  std::string out = "{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"List\",\n    \"items\": ";
  if (objects.empty()) return out + "[]\n}\n";
  out += "[\n";
  for (size_t i = 0; i < objects.size(); ++i) {
    std::string item = IndentLines(Json(objects[i]), "        ", "        ");
    item.pop_back();  // The newline goes after the separating comma.
    out += item;
    out += i + 1 < objects.size() ? ",\n" : "\n";
  }
  return out + "    ]\n}\n";
}

std::string Names(const std::vector<v1::Object>& objects) {
  std::string out;
  for (const v1::Object& object : objects) {
    const v1::ObjectMeta& meta = MetaOf(object);
    out += KindWord(KindOf(object)) + "/" + meta.name() + "\n";
  }
  return out;
}

// ---------------------------------------------------------------------------
// Describe.

// Labelled lines in kubectl describe's layout: the values of the labels of
// one level under one parent start in one column; a multi-line value
// continues in that column.
class DescribeWriter {
 public:
  void Field(int level, std::string label, std::vector<std::string> values) {
    if (values.empty()) values.push_back(kNone);
    entries_.push_back({level, std::move(label), std::move(values), false});
  }
  void Field(int level, std::string label, std::string value) {
    Field(level, std::move(label), std::vector<std::string>{OrNone(std::move(value))});
  }
  // A label with nothing after it, heading the lines below.
  void Section(int level, std::string label) {
    entries_.push_back({level, std::move(label), {}, false});
  }
  // Pre-formatted lines (a table), indented to `level`.
  void Text(int level, std::string text) { entries_.push_back({level, std::move(text), {}, true}); }

  std::string Finish() const {
    // The labels of one group share a value column. A group is the run of
    // entries of one level under one parent: going deeper opens a group,
    // coming back up closes the deeper ones and resumes the outer one.
    constexpr size_t kNoGroup = static_cast<size_t>(-1);
    std::vector<size_t> group(entries_.size());
    std::map<size_t, size_t> widths;  // group id -> widest "label:" that has a value
    std::vector<size_t> open;         // open[level] = id of the level's current group
    for (size_t i = 0; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      const size_t level = static_cast<size_t>(e.level);
      open.resize(level + 1, kNoGroup);
      if (open[level] == kNoGroup) open[level] = i;
      group[i] = open[level];
      if (!e.raw && !e.values.empty()) {
        widths[group[i]] = std::max(widths[group[i]], e.label.size() + 1);
      }
    }
    std::string out;
    for (size_t i = 0; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      const std::string indent(2 * e.level, ' ');
      if (e.raw) {
        out += IndentLines(e.label, indent, indent);
        continue;
      }
      out += indent + e.label + ":";
      if (e.values.empty()) {
        out += '\n';
        continue;
      }
      const size_t column = widths[group[i]] + 2;
      out.append(column - e.label.size() - 1, ' ');
      out += e.values[0] + "\n";
      for (size_t v = 1; v < e.values.size(); ++v) {
        out += indent + std::string(column, ' ') + e.values[v] + "\n";
      }
    }
    return out;
  }

 private:
  struct Entry {
    int level;
    std::string label;  // the text itself when raw
    std::vector<std::string> values;
    bool raw;
  };
  std::vector<Entry> entries_;
};

void DescribeMeta(DescribeWriter& w, const char* kind, const v1::ObjectMeta& meta) {
  w.Field(0, "Name", meta.name());
  w.Field(0, "Namespace", NamespaceOf(meta));
  if (meta.has_applied_as() && meta.applied_as().kind() != kind) {
    // Applied as a Kubernetes kind: that kind, and what podless holds it as.
    w.Field(
        0, "Kind",
        meta.applied_as().kind() + " (" + meta.applied_as().api_version() + "), run as a " + kind);
  } else {
    w.Field(0, "Kind", kind);
  }
  w.Field(0, "Labels", LabelLines(meta.labels()));
}

// An argv as a shell would need it typed: arguments with blanks or quotes
// in single quotes, so the line is unambiguous.
std::string CommandLine(const google::protobuf::RepeatedPtrField<std::string>& argv) {
  std::vector<std::string> parts;
  for (const std::string& arg : argv) {
    if (!arg.empty() && arg.find_first_of(" \t\n'\"\\") == std::string::npos) {
      parts.push_back(arg);
      continue;
    }
    std::string quoted = "'";
    for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    parts.push_back(quoted + "'");
  }
  return Join(parts, " ");
}

// kubectl's probe line: "http-get :8080/healthz delay=0s timeout=1s period=10s
// #success=1 #failure=3".
std::string ProbeText(const v1::Probe& probe) {
  std::string text;
  if (probe.has_http_get()) {
    const std::string& path = probe.http_get().path();
    text = "http-get :" + PortRefText(probe.http_get().port()) + (path.empty() ? "/" : path);
  } else {
    text = "tcp-socket :" + PortRefText(probe.tcp_socket().port());
  }
  auto or_default = [](bool has, uint32_t value, uint32_t fallback) {
    return std::to_string(has ? value : fallback);
  };
  text += " delay=" + std::to_string(probe.initial_delay_seconds()) + "s";
  text +=
      " timeout=" + or_default(probe.has_timeout_seconds(), probe.timeout_seconds().value(), 1) +
      "s";
  text +=
      " period=" + or_default(probe.has_period_seconds(), probe.period_seconds().value(), 10) + "s";
  text += " #success=" +
          or_default(probe.has_success_threshold(), probe.success_threshold().value(), 1);
  text += " #failure=" +
          or_default(probe.has_failure_threshold(), probe.failure_threshold().value(), 3);
  return text;
}

// "runAsUser=1000 runAsGroup=1000 runAsNonRoot=true": the fields that are set.
std::string SecurityContextText(const v1::SecurityContext& context) {
  std::vector<std::string> parts;
  if (context.has_run_as_user()) {
    parts.push_back("runAsUser=" + std::to_string(context.run_as_user().value()));
  }
  if (context.has_run_as_group()) {
    parts.push_back("runAsGroup=" + std::to_string(context.run_as_group().value()));
  }
  if (context.has_run_as_non_root()) {
    parts.push_back(std::string("runAsNonRoot=") +
                    (context.run_as_non_root().value() ? "true" : "false"));
  }
  return Join(parts, " ");
}

// "memory=128Mi cpu=500m pids=64", in manifest quantities; absent: no limit.
std::string LimitsText(const v1::ResourceLimits& limits) {
  std::vector<std::string> parts;
  if (limits.has_memory_bytes()) {
    parts.push_back("memory=" + workloads::FormatMemoryQuantity(limits.memory_bytes().value()));
  }
  if (limits.has_cpu_millis()) {
    parts.push_back("cpu=" + workloads::FormatCpuQuantity(limits.cpu_millis().value()));
  }
  if (limits.has_pids()) parts.push_back("pids=" + std::to_string(limits.pids().value()));
  return Join(parts, " ");
}

// A body may be long or binary: show its size and a one-line preview.
std::string BodyPreview(const std::string& body) {
  constexpr size_t kPreview = 60;
  YAML::Emitter quoted;
  quoted << YAML::DoubleQuoted << body.substr(0, kPreview);
  std::string text = quoted.c_str();
  if (body.size() > kPreview) text += "...";
  return text + " (" + std::to_string(body.size()) + " bytes)";
}

void DescribeApp(DescribeWriter& w, const v1::WorkloadSpec& spec) {
  w.Field(0, "App", AppKindName(spec));
  const v1::App& app = spec.app();
  switch (app.kind_case()) {
    case v1::App::kStatic: {
      const v1::StaticApp& s = app.static_();
      w.Field(1, "Status", std::to_string(s.status() == 0 ? 200 : s.status()));
      w.Field(1, "Body", BodyPreview(s.body()));
      std::vector<std::string> headers;
      for (const auto& [name, value] : Sorted(s.headers())) headers.push_back(name + ": " + value);
      w.Field(1, "Headers", headers);
      break;
    }
    case v1::App::kForward:
      w.Field(1, "Address", app.forward().address());
      break;
    case v1::App::kExec: {
      const v1::ExecApp& e = app.exec();
      w.Field(1, "Command", CommandLine(e.command()));
      w.Field(1, "Working Dir", e.working_dir());
      w.Field(1, "Keep Working Dir", e.keep_working_dir() ? "true" : "false");
      w.Field(1, "Restart Policy", RestartPolicyName(e.restart_policy()));
      std::vector<std::string> env;
      for (const v1::EnvVar& var : e.env()) env.push_back(var.name() + "=" + var.value());
      w.Field(1, "Environment", env);
      w.Field(1, "Security Context", SecurityContextText(e.security_context()));
      w.Field(1, "Limits", LimitsText(e.resources().limits()));
      w.Field(1, "Readiness", e.has_readiness_probe() ? ProbeText(e.readiness_probe()) : "");
      w.Field(1, "Termination Grace",
              std::to_string(e.has_termination_grace_period_seconds()
                                 ? e.termination_grace_period_seconds().value()
                                 : 30) +
                  "s");
      if (!e.name().empty()) w.Field(1, "Container", e.name());
      for (const v1::ExecContainer& c : e.containers()) {
        // A further container: its own process in the replica's sandbox.
        w.Section(1, "Container " + c.name());
        w.Field(2, "Command", CommandLine(c.command()));
        w.Field(2, "Working Dir", c.working_dir());
        std::vector<std::string> c_env;
        for (const v1::EnvVar& var : c.env()) c_env.push_back(var.name() + "=" + var.value());
        w.Field(2, "Environment", c_env);
        w.Field(2, "Readiness", c.has_readiness_probe() ? ProbeText(c.readiness_probe()) : "");
      }
      break;
    }
    case v1::App::kEcho:
    case v1::App::KIND_NOT_SET:
      break;
  }
}

std::string DescribeWorkload(const v1::Workload& workload) {
  DescribeWriter w;
  DescribeMeta(w, "Workload", workload.metadata());
  const v1::WorkloadSpec& spec = workload.spec();
  w.Field(0, "Service Account",
          spec.service_account().empty() ? "default" : spec.service_account());
  w.Field(0, "Replicas",
          std::to_string(DesiredReplicas(spec)) + " desired | " +
              std::to_string(workload.status().replicas_size()) + " materialized | " +
              std::to_string(ReadyReplicas(workload)) + " ready");
  std::vector<std::string> ports;
  for (const v1::Port& port : spec.ports()) {
    ports.push_back(port.name().empty() ? WorkloadPortText(port)
                                        : port.name() + " " + WorkloadPortText(port));
  }
  w.Field(0, "Ports", ports);
  DescribeApp(w, spec);
  if (workload.status().replicas_size() == 0) {
    w.Field(0, "Replica Status", "");
    return w.Finish();
  }
  // The NODE column only matters in a cluster, where replicas carry a node.
  bool any_node = false;
  for (const v1::Replica& r : workload.status().replicas()) any_node |= !r.node().empty();
  std::vector<std::string> columns = {"NAME",        "ADDRESS", "SPIFFE ID",
                                      "CERT SERIAL", "EXPIRES", "READY"};
  if (any_node) columns.push_back("NODE");
  // exec workloads: the supervised process of each replica.
  bool any_process = false;
  for (const v1::Replica& r : workload.status().replicas())
    any_process |= !r.process_state().empty();
  if (any_process) columns.insert(columns.end(), {"STATE", "RESTARTS", "LAST EXIT"});
  // Plaintext ports another program holds (retried until free).
  bool any_unserved = false;
  for (const v1::Replica& r : workload.status().replicas())
    any_unserved |= r.unserved_ports_size() > 0;
  if (any_unserved) columns.push_back("NOT SERVED (PORT HELD, RETRYING)");
  Table table(std::move(columns));
  for (const v1::Replica& r : workload.status().replicas()) {
    std::vector<std::string> cells = {r.name(),
                                      r.address(),
                                      r.spiffe_id(),
                                      r.certificate_serial(),
                                      Rfc3339(r.certificate_not_after()),
                                      r.ready() ? "true" : "false"};
    if (any_node) cells.push_back(r.node());
    if (any_process) {
      std::string state = r.process_state();
      if (!r.process_reason().empty()) state += " (" + r.process_reason() + ")";
      cells.insert(cells.end(), {state, std::to_string(r.restarts()), r.last_exit()});
    }
    if (any_unserved) {
      std::string ports;
      for (uint32_t port : r.unserved_ports()) {
        ports += (ports.empty() ? "" : ",") + std::to_string(port);
      }
      cells.push_back(ports);
    }
    table.AddRow(std::move(cells));
  }
  w.Section(0, "Replica Status");
  w.Text(1, table.Render());
  // Several containers: each one's process, per replica.
  bool several = false;
  for (const v1::Replica& r : workload.status().replicas()) several |= r.containers_size() > 1;
  if (several) {
    Table containers({"REPLICA", "CONTAINER", "STATE", "READY", "RESTARTS", "LAST EXIT"});
    for (const v1::Replica& r : workload.status().replicas()) {
      for (const v1::ContainerStatus& c : r.containers()) {
        std::string state = c.state();
        if (!c.reason().empty()) state += " (" + c.reason() + ")";
        containers.AddRow({r.name(), c.name(), state, c.ready() ? "true" : "false",
                           std::to_string(c.restarts()), c.last_exit()});
      }
    }
    w.Section(0, "Container Status");
    w.Text(1, containers.Render());
  }
  return w.Finish();
}

std::string DescribeService(const v1::Service& service) {
  DescribeWriter w;
  DescribeMeta(w, "Service", service.metadata());
  // An empty selector selects nothing (Kubernetes).
  w.Field(0, "Selector", LabelsInline(service.spec().selector()));
  w.Field(0, "VIP", service.status().vip());
  std::vector<std::string> ports;
  for (const v1::ServicePort& port : service.spec().ports()) {
    ports.push_back(port.name().empty() ? ServicePortText(port)
                                        : port.name() + " " + ServicePortText(port));
  }
  w.Field(0, "Ports", ports);
  w.Field(0, "Endpoints",
          std::vector<std::string>(service.status().endpoints().begin(),
                                   service.status().endpoints().end()));
  return w.Finish();
}

std::string SourceText(const v1::PolicySource& source) {
  std::vector<std::string> parts;
  auto add = [&parts](const char* name, const google::protobuf::RepeatedPtrField<std::string>& v) {
    if (!v.empty()) parts.push_back(std::string(name) + "=" + Join({v.begin(), v.end()}, ","));
  };
  add("principals", source.principals());
  add("notPrincipals", source.not_principals());
  add("namespaces", source.namespaces());
  add("notNamespaces", source.not_namespaces());
  add("serviceAccounts", source.service_accounts());
  add("notServiceAccounts", source.not_service_accounts());
  add("ipBlocks", source.ip_blocks());
  add("notIpBlocks", source.not_ip_blocks());
  add("remoteIpBlocks", source.remote_ip_blocks());
  add("notRemoteIpBlocks", source.not_remote_ip_blocks());
  add("requestPrincipals", source.request_principals());
  add("notRequestPrincipals", source.not_request_principals());
  return parts.empty() ? "<any>" : Join(parts, " ");
}

std::string OperationText(const v1::PolicyOperation& operation) {
  std::vector<std::string> parts;
  auto add = [&parts](const char* name, const google::protobuf::RepeatedField<uint32_t>& v) {
    if (v.empty()) return;
    std::vector<std::string> ports;
    for (uint32_t port : v) ports.push_back(std::to_string(port));
    parts.push_back(std::string(name) + "=" + Join(ports, ","));
  };
  add("ports", operation.ports());
  add("notPorts", operation.not_ports());
  auto add_strings = [&parts](const char* name,
                              const google::protobuf::RepeatedPtrField<std::string>& v) {
    if (!v.empty()) parts.push_back(std::string(name) + "=" + Join({v.begin(), v.end()}, ","));
  };
  add_strings("hosts", operation.hosts());
  add_strings("notHosts", operation.not_hosts());
  add_strings("methods", operation.methods());
  add_strings("notMethods", operation.not_methods());
  add_strings("paths", operation.paths());
  add_strings("notPaths", operation.not_paths());
  return parts.empty() ? "<any>" : Join(parts, " ");
}

std::string ConditionText(const v1::PolicyCondition& condition) {
  std::string out = condition.key();
  if (condition.values_size() > 0) {
    out += " in " + Join({condition.values().begin(), condition.values().end()}, ",");
  }
  if (condition.not_values_size() > 0) {
    out += (condition.values_size() > 0 ? " and" : "") + std::string(" not in ") +
           Join({condition.not_values().begin(), condition.not_values().end()}, ",");
  }
  return out;
}

std::string DescribePolicy(const v1::AuthorizationPolicy& policy) {
  DescribeWriter w;
  DescribeMeta(w, "AuthorizationPolicy", policy.metadata());
  const v1::AuthorizationPolicySpec& spec = policy.spec();
  std::string selector = LabelsInline(spec.match_labels());
  w.Field(0, "Selector", selector.empty() ? "<all workloads in the namespace>" : selector);
  w.Field(0, "Action", ActionName(spec.action()));
  if (spec.rules_size() == 0) {
    // Istio: an ALLOW policy without rules allows nothing, a DENY one denies nothing.
    w.Field(0, "Rules",
            spec.action() == v1::DENY ? "<none> (denies nothing)" : "<none> (allows nothing)");
    return w.Finish();
  }
  w.Section(0, "Rules");
  for (int i = 0; i < spec.rules_size(); ++i) {
    const v1::PolicyRule& rule = spec.rules(i);
    w.Section(1, "Rule " + std::to_string(i + 1));
    std::vector<std::string> from, to;
    for (const v1::PolicySource& source : rule.from()) from.push_back(SourceText(source));
    for (const v1::PolicyOperation& operation : rule.to()) to.push_back(OperationText(operation));
    w.Field(2, "From", from.empty() ? std::vector<std::string>{"<any>"} : from);
    w.Field(2, "To", to.empty() ? std::vector<std::string>{"<any>"} : to);
    if (rule.when_size() > 0) {
      std::vector<std::string> when;
      for (const v1::PolicyCondition& condition : rule.when()) {
        when.push_back(ConditionText(condition));
      }
      w.Field(2, "When", when);
    }
  }
  return w.Finish();
}

// The kinds without a layout of their own: the common lines, then the
// manifest's spec (kubectl describe does the same for custom resources).
std::string DescribeGeneric(const v1::Object& object) {
  const v1::ObjectMeta& meta = MetaOf(object);
  DescribeWriter w;
  w.Field(0, "Name", meta.name());
  if (!meta.namespace_().empty()) w.Field(0, "Namespace", meta.namespace_());
  w.Field(0, "Labels", LabelLines(meta.labels()));
  w.Field(0, "Annotations", LabelLines(meta.annotations()));
  std::string out = w.Finish();
  std::string yaml = Yaml(object);
  size_t spec = yaml.find("\nspec:");
  if (spec != std::string::npos) {
    out += "Spec:\n" + IndentLines(yaml.substr(spec + 7), "  ", "  ");
  }
  return out;
}

}  // namespace

v1::Kind KindOf(const v1::Object& object) {
  switch (object.kind_case()) {
    case v1::Object::kWorkload:
      return v1::WORKLOAD;
    case v1::Object::kService:
      return v1::SERVICE;
    case v1::Object::kAuthorizationPolicy:
      return v1::AUTHORIZATION_POLICY;
    case v1::Object::kNamespace:
      return v1::NAMESPACE;
    case v1::Object::kServiceAccount:
      return v1::SERVICE_ACCOUNT;
    case v1::Object::kPeerAuthentication:
      return v1::PEER_AUTHENTICATION;
    case v1::Object::kWorkloadEntry:
      return v1::WORKLOAD_ENTRY;
    case v1::Object::KIND_NOT_SET:
      break;
  }
  return v1::KIND_UNSPECIFIED;
}

const v1::ObjectMeta& MetaOf(const v1::Object& object) {
  switch (object.kind_case()) {
    case v1::Object::kWorkload:
      return object.workload().metadata();
    case v1::Object::kService:
      return object.service().metadata();
    case v1::Object::kAuthorizationPolicy:
      return object.authorization_policy().metadata();
    case v1::Object::kNamespace:
      return object.namespace_().metadata();
    case v1::Object::kServiceAccount:
      return object.service_account().metadata();
    case v1::Object::kPeerAuthentication:
      return object.peer_authentication().metadata();
    case v1::Object::kWorkloadEntry:
      return object.workload_entry().metadata();
    case v1::Object::KIND_NOT_SET:
      break;
  }
  return v1::ObjectMeta::default_instance();
}

std::string KindWord(v1::Kind kind) {
  switch (kind) {
    case v1::WORKLOAD:
      return "workload";
    case v1::SERVICE:
      return "service";
    case v1::AUTHORIZATION_POLICY:
      return "authorizationpolicy";
    case v1::NAMESPACE:
      return "namespace";
    case v1::SERVICE_ACCOUNT:
      return "serviceaccount";
    case v1::PEER_AUTHENTICATION:
      return "peerauthentication";
    case v1::WORKLOAD_ENTRY:
      return "workloadentry";
    default:
      return "object";
  }
}

Result<OutputFormat> ParseOutputFormat(std::string_view name) {
  if (name.empty()) return OutputFormat::kTable;
  if (name == "wide") return OutputFormat::kWide;
  if (name == "yaml") return OutputFormat::kYaml;
  if (name == "json") return OutputFormat::kJson;
  if (name == "name") return OutputFormat::kName;
  return MakeError(ErrorCode::kInvalidArgument,
                   "output: unknown format \"" + std::string(name) +
                       "\" (expected wide, yaml, json or name, or no -o for a table)");
}

std::string FormatList(const std::vector<v1::Object>& objects, v1::Kind kind, OutputFormat format,
                       const ListOptions& options) {
  switch (format) {
    case OutputFormat::kTable:
      return Tables(objects, kind, false, options);
    case OutputFormat::kWide:
      return Tables(objects, kind, true, options);
    case OutputFormat::kYaml:
      return YamlList(objects);
    case OutputFormat::kJson:
      return JsonList(objects);
    case OutputFormat::kName:
      return Names(objects);
  }
  return "";
}

std::string FormatList(const std::vector<v1::Object>& objects, v1::Kind kind, OutputFormat format,
                       bool all_namespaces) {
  ListOptions options;
  options.all_namespaces = all_namespaces;
  return FormatList(objects, kind, format, options);
}

std::string FormatObject(const v1::Object& object, OutputFormat format) {
  switch (format) {
    case OutputFormat::kTable:
    case OutputFormat::kWide:
    case OutputFormat::kName:
      return FormatList({object}, KindOf(object), format, false);
    case OutputFormat::kYaml:
      return Yaml(object);
    case OutputFormat::kJson:
      return Json(object);
  }
  return "";
}

Result<std::string> FormatReplicas(const std::vector<v1::Object>& workloads, OutputFormat format,
                                   const ListOptions& options, int64_t now) {
  if (format == OutputFormat::kYaml || format == OutputFormat::kJson) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a replica is not an object of its own: -o wide or -o name, or "
                     "`get workloads -o yaml` for the replicas' status");
  }
  const bool wide = format == OutputFormat::kWide;
  std::vector<std::string> columns = {"NAME", "READY",   "STATUS", "RESTARTS",
                                      "AGE",  "ADDRESS", "NODE"};
  if (wide) columns.insert(columns.end(), {"WORKLOAD", "SPIFFE-ID"});
  Table table(Header(options, std::move(columns)));
  std::string names;
  for (const v1::Object& object : workloads) {
    if (!object.has_workload()) continue;
    const v1::Workload& w = object.workload();
    for (const v1::Replica& r : w.status().replicas()) {
      names += "replica/" + r.name() + "\n";
      std::string status = r.process_state().empty() ? "Running" : r.process_state();
      // kubectl shows the reason a container waits (CrashLoopBackOff) in
      // place of the phase.
      if (!r.process_reason().empty() && r.process_state() != "Running") {
        status = r.process_reason();
      }
      // READY: ready containers / containers, as kubectl counts a pod's.
      std::string ready = r.ready() ? "1/1" : "0/1";
      if (r.containers_size() > 1) {
        int n = 0;
        for (const v1::ContainerStatus& c : r.containers()) n += c.ready() ? 1 : 0;
        ready = std::to_string(n) + "/" + std::to_string(r.containers_size());
      }
      std::vector<std::string> cells = {ready,
                                        status,
                                        std::to_string(r.restarts()),
                                        r.started_at() != 0 ? Age(now - r.started_at()) : "",
                                        r.address(),
                                        r.node()};
      if (wide) {
        cells.push_back(w.metadata().name());
        cells.push_back(r.spiffe_id());
      }
      v1::ObjectMeta meta = w.metadata();
      meta.set_name(r.name());
      table.AddRow(Row(options, meta, std::move(cells)));
    }
  }
  if (format == OutputFormat::kName) return names;
  if (names.empty()) return std::string();
  return table.Render("", options.no_headers);
}

std::string Describe(const v1::Object& object) {
  switch (object.kind_case()) {
    case v1::Object::kWorkload:
      return DescribeWorkload(object.workload());
    case v1::Object::kService:
      return DescribeService(object.service());
    case v1::Object::kAuthorizationPolicy:
      return DescribePolicy(object.authorization_policy());
    case v1::Object::kNamespace:
    case v1::Object::kServiceAccount:
    case v1::Object::kPeerAuthentication:
    case v1::Object::kWorkloadEntry:
      return DescribeGeneric(object);
    case v1::Object::KIND_NOT_SET:
      break;
  }
  return "<an object of an unknown kind>\n";
}

std::string NodesTable(const v1::ListNodesResponse& nodes, bool wide, int64_t now,
                       bool no_headers) {
  std::vector<std::string> columns = {"NAME", "ADDRESS", "CIDR", "WORKLOADS", "STATUS", "AGE"};
  if (wide) columns.push_back("HBONE-PORT");
  Table table(columns);
  for (const v1::Node& node : nodes.nodes()) {
    std::vector<std::string> cells = {
        node.name(),   node.address(),
        node.cidr(),   std::to_string(node.workloads()),
        node.status(), node.started_at() != 0 ? Age(now - node.started_at()) : ""};
    if (wide) cells.push_back(node.hbone_port() != 0 ? std::to_string(node.hbone_port()) : "");
    table.AddRow(std::move(cells));
  }
  std::string out = table.Render("", no_headers);
  if (nodes.cluster() && !nodes.connected()) {
    out += "(this node cannot reach etcd: the list is its last view)\n";
  }
  return out;
}

}  // namespace podless::api
