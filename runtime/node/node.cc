#include "runtime/node/node.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <thread>

#include "proxy/base/http1_parser.h"
#include "proxy/base/json_pretty.h"
#include "proxy/base/log.h"
#include "proxy/connection_metrics.h"

namespace podless::runtime {

Node::Node(uv_loop_t* loop, const AgentConfig& config)
    : loop_(loop), config_(config), metrics_(std::make_unique<proxy::Registry>()) {
  // Absolute: sandboxed processes start elsewhere, and the SPIFFE Workload
  // Endpoint spec wants unix:///absolute/path.
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(config_.state_dir, ec);
  if (!ec) config_.state_dir = absolute.lexically_normal().string();
  if (config_.state_dir.size() > 1 && config_.state_dir.back() == '/') config_.state_dir.pop_back();
  state_lock_.Lock(LockMode::kExclusive);
}

Node::~Node() {
  Shutdown();
  proxy_.reset();  // joins the workers
  supervisor_.reset();
  // This agent's cgroup subtree, once its replicas' cgroups are gone (a
  // leftover is the next start's to clean).
  if (cgroups_) (void)cgroups_->RemoveTree();
  state_lock_.Unlock(LockMode::kExclusive);
}

Result<NodePtr> Node::Start(uv_loop_t* loop, const AgentConfig& config, ClusterPtr cluster) {
  NodePtr node(new Node(loop, config));
  node->cluster_ = std::move(cluster);
  if (Status s = node->Init(); !s) return s.error();
  return node;
}

Status Node::Init() {
  auto agent = Agent::Open(config_);
  if (!agent) return agent.error();
  agent_ = std::move(*agent);
  agent_->ShareReadsWith(&state_lock_);
  issuer_ = std::make_unique<CertificateIssuer>(loop_, agent_->ca(), config_.svid_ttl,
                                                std::max(1u, std::thread::hardware_concurrency()));
  agent_->certificates().UseIssuer(issuer_.get());
  RegisterMetrics();

  if (Status s = StartProxy(); !s) return s;

  if (Status s = StartSupervisor(); !s) return s;
  proxy_->set_supervisor(supervisor_.get());
  supervisor_->OnReadinessChange(
      [this](uint32_t address, bool ready) { agent_->SetReplicaReady(address, ready); });
  agent_->SetProcessStatusSource([this](ReplicaView& view) {
    ReplicaStatus status = supervisor_->Status(view.address);
    if (!status.known) return;
    view.process_state = status.state;
    view.process_reason = status.reason;
    view.restarts = status.restarts;
    view.last_exit = status.last_exit;
    view.pid = status.pid;
    if (status.started_at != 0) view.started_at = status.started_at;
    for (const ContainerStatus& c : status.containers) {
      view.containers.push_back(ReplicaView::Container{
          c.name, c.state, c.reason, c.ready, c.restarts, c.last_exit, c.started_at, c.pid});
    }
  });
  Supervisor* supervisor = supervisor_.get();
  metrics_->AddCallbackGauge(
      "podless_supervisor_processes", "Supervised processes running.",
      [supervisor] { return static_cast<double>(supervisor->running_count()); });
  metrics_->AddCallbackCounter(
      "podless_supervisor_restarts_total",
      "Restarts of supervised processes since the agent started.",
      [supervisor] { return static_cast<double>(supervisor->restarts_total()); });

  AdminServerOptions admin_options;
  admin_options.count_accept_error = proxy::CountAcceptErrors(*metrics_, "admin");
  admin_ = std::make_unique<AdminServer>(loop_, admin_options);
  AddAdminRoutes();
  if (Status s = admin_->Listen(config_.admin_address); !s) {
    return MakeError(s.error().code, "admin server: " + s.error().message);
  }
  if (cluster_) {
    proxy_->set_cluster_view(&cluster_->view());
    cluster_stopped_ = false;
    cluster_->Start(*agent_, *metrics_, [this] { proxy_->Invalidate(); });
  }
  // Processes start only once everything else is bound: a node that fails to
  // start must not have started (and then kill) any.
  SyncProcesses();
  return {};
}

Status Node::StartSupervisor() {
  SupervisorOptions options;
  options.rlimit_nofile = config_.workload_rlimit_nofile;
  options.state_dir = config_.state_dir;
  options.sandbox = true;
  options.launcher = SelfExecutable();
  // The state dir is traversable (0711, not listable) so that sandboxed
  // uids reach their working directories and the Workload API socket;
  // every file in it stays the agent's alone (0600).
  if (::chmod(config_.state_dir.c_str(), 0711) != 0) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot chmod " + config_.state_dir + ": " + std::strerror(errno));
  }
  if (::geteuid() == 0) {
    // Workload uids reach the Workload API socket by its path: every
    // directory above the state dir must let others through.
    for (std::filesystem::path dir = std::filesystem::path(config_.state_dir).parent_path();
         !dir.empty(); dir = dir.parent_path()) {
      struct stat st {};
      if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0) {
        char mode[8];
        std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
        proxy::Log(proxy::LogLevel::kWarning, "exec",
                   dir.string() + " (mode " + mode +
                       ") does not let other users through: sandboxed workloads cannot reach " +
                       config_.state_dir + "/workload-api.sock; use a --state-dir such as " +
                       "/var/lib/podless, or chmod o+x " + dir.string());
      }
      if (dir == dir.root_path()) break;
    }
    auto uids = UidAllocator::Open(config_.state_dir + "/workload-uids", config_.workload_uid_first,
                                   config_.workload_uid_last);
    if (!uids) return uids.error();
    uids_ = std::make_unique<UidAllocator>(std::move(*uids));
    options.uids = uids_.get();
  } else {
    proxy::Log(proxy::LogLevel::kWarning, "exec",
               "the agent is not root: exec workloads run as uid " + std::to_string(::geteuid()) +
                   " in its network namespace, confined by Landlock (ABI " +
                   std::to_string(LandlockAbi()) + ") only (README, Isolation)");
  }
  // One cgroup subtree per state dir, so that two agents never touch each
  // other's replicas and a restarted agent finds its predecessor's.
  char name[32];
  std::snprintf(name, sizeof(name), "podless-%08x",
                static_cast<uint32_t>(std::hash<std::string>{}(config_.state_dir)));
  auto cgroups = CgroupTree::Open(name);
  if (cgroups) {
    cgroups_ = std::make_unique<CgroupTree>(std::move(*cgroups));
    options.cgroups = cgroups_.get();
  } else {
    proxy::Log(proxy::LogLevel::kWarning, "exec",
               "exec workloads get no cgroup (" + cgroups.error().message +
                   "): an escaped child is stopped only with its process group, and limits fall "
                   "back to rlimits");
  }
  supervisor_ = std::make_unique<Supervisor>(loop_, options);
  Supervisor* supervisor = supervisor_.get();
  agent_->SetExecAdmission(
      [supervisor](const workloads::ExecApp& app, std::vector<std::string>* warnings) {
        return supervisor->CheckEnforceable(app, warnings);
      });
  supervisor_->OnListenersChange(
      [this] { proxy_->SyncSandboxListeners(supervisor_->OutboundListeners()); });
  return {};
}

// "0.0.0.0:15008" -> (host, port), naming the flag in the error.
static Result<proxy::HostPort> ParseListenAddress(const std::string& flag,
                                                  const std::string& value) {
  auto parsed = proxy::ParseAuthority(value, 0, /*allow_port_zero=*/true);
  if (!parsed) {
    return MakeError(ErrorCode::kInvalidArgument,
                     flag + " " + value + ": " + parsed.error().message);
  }
  return parsed;
}

Status Node::StartProxy() {
  auto hbone = ParseListenAddress("--hbone-address", config_.hbone_address);
  if (!hbone) return hbone.error();
  auto outbound = ParseListenAddress("--outbound-address", config_.outbound_address);
  if (!outbound) return outbound.error();
  proxy::ProxyConfig proxy_config = config_.proxy;
  proxy_config.hbone.listen.bind = hbone->host;
  proxy_config.hbone.listen.port = hbone->port;
  proxy_config.outbound.listen.bind = outbound->host;
  proxy_config.outbound.listen.port = outbound->port;
  auto proxy =
      ProxyWorkers::Start(loop_, state_lock_, *agent_, proxy_config, config_.workers, *metrics_);
  if (!proxy) return proxy.error();
  proxy_ = std::move(*proxy);

  PlaintextPorts::Options plaintext;
  plaintext.max_address_sockets = config_.max_plaintext_address_sockets;
  plaintext_ports_ = std::make_unique<PlaintextPorts>(
      loop_, *metrics_, plaintext,
      [this](const proxy::PlaintextBindings& b) { return proxy_->SyncPlaintextPorts(b); },
      [this] { return proxy_->PlaintextPorts(); });
  agent_->SetPortStatusSource(
      [this](ReplicaView& view, const std::vector<workloads::PortSpec>& ports) {
        if (plaintext_ports_) view.unserved_ports = plaintext_ports_->Unserved(view.address, ports);
      });
  // A zero denial count per workload, from the state at each scrape (on
  // this loop, where /metrics is served): nothing stored per workload.
  proxy::ExportAuthzDeniedZeros(*metrics_, [this] {
    std::vector<std::vector<std::string>> zeros;
    for (const StoredObject* stored : agent_->List(workloads::Kind::kWorkload, "")) {
      const auto& meta = std::get<workloads::Workload>(stored->object).metadata;
      zeros.push_back({meta.name, meta.ns});
    }
    return zeros;
  });
  for (const StoredObject* stored : agent_->List(workloads::Kind::kWorkload, "")) {
    const auto& workload = std::get<workloads::Workload>(stored->object);
    if (std::holds_alternative<workloads::ExecApp>(workload.spec.app)) {
      exec_workloads_.insert(workloads::KeyOf(stored->object));
    }
    plaintext_ports_->Update(workloads::KeyOf(stored->object), workload.spec.ports,
                             stored->addresses);
  }
  // A replica that went (scaled away or deleted) takes its connections along.
  agent_->OnReplicasRemoved(
      [this](const std::vector<uint32_t>& addresses) { proxy_->CloseConnectionsFor(addresses); });
  watcher_ = agent_->AddWatcher(
      [this](WatchEventType type, const StoredObject& object) { OnObjectChange(type, object); });
  SyncPorts();
  return {};
}

// A workload port another process holds on this machine must not keep the
// agent from starting or an apply from succeeding: the workload stays
// reachable over HBONE and the outbound entry; only its plaintext port is
// missing, which PlaintextPorts logs once and retries on a timer.
void Node::SyncPorts() {
  ports_synced_at_ = agent_->port_set_changes();
  plaintext_ports_->Sync(agent_->port_users());
}

// Runs for every committed change, so it costs O(change), not O(state):
// a batch of 100,000 registrations must not rescan every workload each time.
// What a change did to the port set and to the replicas the agent tells
// (port_users(), OnReplicaRemoved), so the node keeps no copy of each
// workload; only which workloads are exec, because the supervisor must hear
// of a workload that stops being one.
void Node::OnObjectChange(WatchEventType type, const StoredObject& object) {
  proxy_->InvalidateNamespace(
      std::visit([](const auto& o) -> const std::string& { return o.metadata.ns; }, object.object));
  const auto* workload = std::get_if<workloads::Workload>(&object.object);
  if (workload == nullptr) return;
  // --eager-certificates: the identity's SVID is issued (on the issuer's
  // threads) when the workload gets replicas, so no first connection waits
  // for a key and a signature. One per identity: replicas share it.
  if (config_.eager_certificates && type != WatchEventType::kDeleted &&
      workload->spec.replicas > 0) {
    agent_->certificates().CertificateAsync(agent_->SpiffeIdFor(*workload),
                                            [](Result<workloads::SvidPtr>) {});
  }
  const bool exec = std::holds_alternative<workloads::ExecApp>(workload->spec.app);
  bool was_exec = false;
  if (exec && type != WatchEventType::kDeleted) {
    was_exec = !exec_workloads_.insert(workloads::KeyOf(object.object)).second;
  } else if (!exec_workloads_.empty()) {
    was_exec = exec_workloads_.erase(workloads::KeyOf(object.object)) != 0;
  }
  // The supervisor's desired set is rebuilt from every exec workload, so
  // only changes that involve one pay for it.
  if (exec || was_exec) SyncProcesses();
  if (type == WatchEventType::kDeleted) {
    plaintext_ports_->Remove(workloads::KeyOf(object.object));
  } else {
    plaintext_ports_->Update(workloads::KeyOf(object.object), workload->spec.ports,
                             object.addresses);
  }
  if (agent_->port_set_changes() != ports_synced_at_ || plaintext_ports_->dirty()) SyncPorts();
}

void Node::SyncProcesses() {
  if (!supervisor_) return;
  // Processes reach the outbound entry on loopback when it listens on all
  // addresses.
  std::string outbound_host = "127.0.0.1";
  if (auto parsed = ParseListenAddress("--outbound-address", config_.outbound_address);
      parsed.ok() && parsed->host != "0.0.0.0" && !parsed->host.empty()) {
    outbound_host = parsed->host;
  }
  const std::string outbound = outbound_host + ":" + std::to_string(proxy_->outbound_port());
  std::vector<ExecReplicaSpec> desired;
  for (const StoredObject* stored : agent_->List(workloads::Kind::kWorkload, "")) {
    const auto& workload = std::get<workloads::Workload>(stored->object);
    const auto* exec = std::get_if<workloads::ExecApp>(&workload.spec.app);
    if (exec == nullptr) continue;
    const std::string spiffe_id = agent_->SpiffeIdFor(workload);
    for (uint32_t ordinal = 0; ordinal < stored->addresses.size(); ++ordinal) {
      ExecReplicaSpec spec;
      spec.ns = workload.metadata.ns;
      spec.workload = workload.metadata.name;
      spec.replica = workload.metadata.name + "-" + std::to_string(ordinal);
      spec.ordinal = ordinal;
      spec.address = stored->addresses[ordinal];
      spec.spiffe_id = spiffe_id;
      spec.app = *exec;
      spec.ports = workload.spec.ports;
      ProxyCredentials credentials = agent_->CredentialsFor(ReplicaRef{stored, ordinal});
      spec.proxy_user = std::move(credentials.user);
      spec.proxy_password = std::move(credentials.password);
      spec.outbound_proxy = outbound;
      spec.workload_api_socket = WorkloadApiSocketPath();
      desired.push_back(std::move(spec));
    }
  }
  supervisor_->Sync(std::move(desired));
  proxy_->SyncSandboxListeners(supervisor_->OutboundListeners());
}

void Node::RegisterMetrics() {
  Agent* agent = agent_.get();
  metrics_->AddCallbackGauge("podless_workloads", "Workload objects hosted by this agent.",
                             [agent] { return static_cast<double>(agent->workload_count()); });
  metrics_->AddCallbackGauge("podless_replicas", "Workload replicas hosted by this agent.",
                             [agent] { return static_cast<double>(agent->replica_count()); });
  CertificateManager* certificates = &agent_->certificates();
  metrics_->AddCallbackGauge(
      "podless_certificates_cached", "X.509-SVIDs currently cached (one per identity in use).",
      [certificates] { return static_cast<double>(certificates->cached()); });
  proxy::Counter& issued =
      metrics_->AddCounter("podless_certificates_issued_total", "X.509-SVIDs issued.")
          .WithLabels(std::span<const std::string>());
  proxy::Counter& evicted =
      metrics_
          ->AddCounter("podless_certificates_evicted_total",
                       "X.509-SVIDs dropped from the cache as least recently used "
                       "(--svid-cache-size); re-issued on next use.")
          .WithLabels(std::span<const std::string>());
  certificates->OnIssued([&issued, &evicted, certificates, seen = uint64_t{0}]() mutable {
    issued.Inc();
    evicted.Inc(certificates->evicted() - seen);
    seen = certificates->evicted();
  });
  metrics_->AddCallbackGauge("process_resident_memory_bytes", "Resident memory of the agent.",
                             proxy::ProcessResidentBytes);
}

namespace {

// What `GET /` lists: every route, so the admin port explains itself.
constexpr char kAdminIndex[] =
    "podless admin endpoints:\n"
    "  /healthz              200 while the agent runs\n"
    "  /ready                200 once the state is loaded and the API is listening\n"
    "  /metrics              Prometheus text format\n"
    "  /config_dump          the agent's state as JSON (workloads, services, policies, proxy)\n"
    "  /config_dump?pretty   the same, indented\n";

bool HasQueryFlag(std::string_view target, std::string_view name) {
  size_t question = target.find('?');
  if (question == std::string_view::npos) return false;
  std::string_view query = target.substr(question + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    std::string_view key = item.substr(0, item.find('='));
    std::string_view value = key.size() < item.size() ? item.substr(key.size() + 1) : "";
    if (key == name) return value != "false" && value != "0";
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

}  // namespace

// An admin response with a body (the streamed one is /config_dump's own).
static AdminResponse Respond(int status, std::string content_type, std::string body,
                             proxy::Http1Headers headers = {}) {
  AdminResponse response;
  response.status = status;
  response.content_type = std::move(content_type);
  response.body = std::move(body);
  response.headers = std::move(headers);
  return response;
}

void Node::AddAdminRoutes() {
  admin_->AddRoute("/", [](const proxy::Http1Request&) {
    return Respond(200, "text/plain; charset=utf-8", kAdminIndex);
  });
  admin_->AddRoute("/healthz", [](const proxy::Http1Request&) {
    return Respond(200, "text/plain; charset=utf-8", "ok\n");
  });
  admin_->AddRoute("/ready", [this](const proxy::Http1Request&) {
    if (!ready_) return Respond(503, "text/plain; charset=utf-8", "starting\n");
    // In cluster mode the node serves its workloads whether or not etcd is
    // reachable; the body says whether cluster changes are followed.
    if (cluster_) {
      return Respond(200, "application/json",
                     "{\"status\":\"ready\",\"cluster\":" + cluster_->StatusJson() + "}\n");
    }
    return Respond(200, "text/plain; charset=utf-8", "ready\n");
  });
  admin_->AddRoute("/metrics", [this](const proxy::Http1Request&) {
    return Respond(200, proxy::kPrometheusContentType, metrics_->Render());
  });
  // /config_dump is streamed: each piece is written on its own loop turn
  // (Agent::StreamConfigDump), with the StateLock released (the workers read
  // the state while a piece is built), and a million replicas never sit in
  // memory at once. Still, every piece
  // is main-loop time: so that looping clients cannot take it all, dumps get
  // at most a fifth of it. After a dump that took T (its pieces added up),
  // the next is refused (503, Retry-After) for 4 T.
  admin_->AddRoute("/config_dump", [this](const proxy::Http1Request& request) {
    const uint64_t now = uv_hrtime() / 1'000'000;
    if (now < config_dump_next_ms_) {
      const uint64_t wait = config_dump_next_ms_ - now;
      return Respond(503, "text/plain; charset=utf-8",
                     "config_dump is limited to a fifth of the agent's time: retry in " +
                         std::to_string(wait) + " ms\n",
                     {{"Retry-After", std::to_string(wait / 1000 + 1)}});
    }
    std::vector<std::pair<std::string, std::string>> extra = {{"proxy", proxy_->Stats().ToJson()}};
    if (cluster_) extra.emplace_back("cluster", cluster_->StatusJson());
    AdminResponse response = Respond(200, "application/json", "");
    auto pieces = agent_->StreamConfigDump(std::move(extra));
    auto spent_ns = std::make_shared<uint64_t>(0);
    std::shared_ptr<proxy::JsonPrettyPrinter> pretty;
    if (HasQueryFlag(request.target, "pretty"))
      pretty = std::make_shared<proxy::JsonPrettyPrinter>();
    response.stream = [this, pieces = std::move(pieces), spent_ns, pretty](std::string* out) {
      const uint64_t started = uv_hrtime();
      bool more;
      {
        // A piece only reads the state: the proxy's workers go on meanwhile.
        ReadersWindow window(&state_lock_);
        if (pretty) {
          std::string piece;
          more = pieces(&piece);
          pretty->Feed(piece, out);
        } else {
          more = pieces(out);
        }
      }
      if (!more) out->push_back('\n');
      *spent_ns += uv_hrtime() - started;
      config_dump_next_ms_ = uv_hrtime() / 1'000'000 + 4 * (*spent_ns / 1'000'000);
      return more;
    };
    return response;
  });
}

void Node::Shutdown() {
  ready_ = false;
  if (admin_) admin_->Close();
  if (watcher_ != 0) {
    agent_->RemoveWatcher(watcher_);
    agent_->OnReplicasRemoved(nullptr);
    watcher_ = 0;
  }
  if (plaintext_ports_) plaintext_ports_->Close();
  if (proxy_) proxy_->Close();
  // Revoking the lease takes this node out of every view at once.
  if (cluster_ && !cluster_stopped_ && !cluster_stopping_) {
    cluster_stopping_ = true;
    cluster_->Shutdown([this] { cluster_stopped_ = true; });
  }
  // SIGTERM to every supervised process, SIGKILL after its grace period.
  if (supervisor_) {
    supervisor_->Shutdown([this] { processes_stopped_ = true; });
  } else {
    processes_stopped_ = true;
  }
}

}  // namespace podless::runtime
