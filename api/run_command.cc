#include "api/run_command.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <uv.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "api/grpc_server.h"
#include "api/manifest_files.h"
#include "api/runtime_service.h"
#include "api/spiffe_workload_api.h"
#include "proxy/base/log.h"
#include "proxy/base/uv_handle.h"
#include "runtime/node/descriptor_limit.h"
#include "runtime/node/node.h"
#include "runtime/state/config.h"
#include "runtime/state/state_store.h"

namespace podless::api {
namespace {

std::vector<AgentExtensionFactory>& ExtensionFactories() {
  static std::vector<AgentExtensionFactory> factories;
  return factories;
}

void Log(const std::string& line, proxy::LogLevel level = proxy::LogLevel::kInfo) {
  proxy::Log(level, "", line);
}

// Applies the operator's --apply manifests through the same path as the API.
// In a cluster, Services and policies need etcd: it waits (bounded) for the
// node to follow etcd, then applies through the cluster.
Status ApplyAtStart(uv_loop_t* loop, runtime::Node& node, const std::vector<std::string>& paths) {
  if (paths.empty()) return {};
  std::vector<ManifestFile> files;
  for (const std::string& path : paths) {
    auto read = ReadManifestFiles(path);
    if (!read) return read.error();
    for (auto& file : *read) files.push_back(std::move(file));
  }
  auto parsed = ParseManifestFiles(files);
  if (!parsed) return parsed.error();
  std::vector<workloads::Object> objects;
  for (auto& object : *parsed) objects.push_back(std::move(object.object));
  Result<std::vector<runtime::ObjectChange>> changes = MakeError(ErrorCode::kInternal, "not run");
  if (runtime::Cluster* cluster = node.cluster()) {
    const uint64_t deadline = uv_now(loop) + 15'000;
    while (!cluster->connected() && uv_now(loop) < deadline) node.RunLoopTurn();
    bool done = false;
    cluster->Apply(std::move(objects), /*dry_run=*/false,
                   [&](Result<std::vector<runtime::ObjectChange>> result) {
                     changes = std::move(result);
                     done = true;
                   });
    while (!done) node.RunLoopTurn();
  } else {
    changes = node.agent().Apply(std::move(objects), /*dry_run=*/false);
  }
  if (!changes) return changes.error();
  for (const auto& change : *changes) {
    Log(std::string("--apply: ") + workloads::KindName(change.key.kind) + " " + change.key.ns +
        "/" + change.key.name + " " + change.action);
  }
  return {};
}

// The agent holds every key (the CA's, each SVID's, the workloads'
// credential seeds): no core file may carry them to disk, and no process of
// the agent's uid (an exec workload, when the agent is not root) may ptrace
// it or read its memory through /proc. Not dumpable also makes the agent's
// /proc/<pid> files root's: reading its /proc/<pid>/fd or environ then takes
// CAP_SYS_PTRACE. execve resets dumpable for what the agent starts;
// workloads have RLIMIT_CORE 0 anyway (the sandbox sets it).
Status DisableCoreDumps() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return MakeError(ErrorCode::kInternal,
                     std::string("prctl(PR_SET_DUMPABLE, 0): ") + std::strerror(errno));
  }
  const struct rlimit none = {0, 0};
  if (::setrlimit(RLIMIT_CORE, &none) != 0) {
    return MakeError(ErrorCode::kInternal,
                     std::string("setrlimit(RLIMIT_CORE, 0): ") + std::strerror(errno));
  }
  return {};
}

}  // namespace

void RegisterAgentExtension(AgentExtensionFactory factory) {
  ExtensionFactories().push_back(std::move(factory));
}

int RunCommand(const std::vector<std::string>& args) {
  auto config = runtime::ParseRunFlags(args);
  if (!config) {
    if (config.error().code == ErrorCode::kFailedPrecondition) {  // --help
      std::fputs(config.error().message.c_str(), stdout);
      return 0;
    }
    std::fprintf(stderr, "podless run: %s\n", config.error().message.c_str());
    return 2;
  }
  proxy::SetLogLevel(config->log_level);
  const runtime::DescriptorLimit files = runtime::RaiseDescriptorLimit();
  if (files.now != files.before) {
    Log("raised the descriptor limit (RLIMIT_NOFILE) from " + std::to_string(files.before) +
        " to " + std::to_string(files.now) + "; supervised processes keep " +
        std::to_string(files.before));
    config->workload_rlimit_nofile = files.before;
  }
  if (Status s = DisableCoreDumps(); !s) {
    Log("cannot start: " + s.error().message, proxy::LogLevel::kError);
    return 1;
  }
  // A client that disappears must not kill the agent with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  // Before anything (the cluster join, the state store, the CA) writes to
  // or reads from the state dir: one another user owns or may write is
  // refused, with what to do.
  if (Status s = runtime::StateStore::PrepareDir(config->state_dir); !s) {
    Log("cannot start: " + s.error().message, proxy::LogLevel::kError);
    return 1;
  }

  proxy::UvLoop loop;
  runtime::ClusterPtr joined;
  if (config->cluster.enabled()) {
    auto cluster = runtime::Cluster::Join(loop.get(), *config);
    if (!cluster) {
      Log("cannot start: cluster: " + cluster.error().message, proxy::LogLevel::kError);
      return 1;
    }
    joined = std::move(*cluster);
    Log("joined the cluster as node " + config->node_name + ", workload range " +
        config->node_cidr);
  }
  auto node = runtime::Node::Start(loop.get(), *config, std::move(joined));
  if (!node) {
    Log("cannot start: " + node.error().message, proxy::LogLevel::kError);
    return 1;
  }

  auto& metrics = (*node)->metrics();
  proxy::CounterFamily& api_requests = metrics.AddCounter(
      "podless_api_requests_total", "Local API calls by method and gRPC code.", {"method", "code"});
  RuntimeService service((*node)->agent());
  service.SetSupervisor(&(*node)->supervisor());
  service.SetCluster((*node)->cluster());
  GrpcServerOptions api_options;
  api_options.count_accept_error = proxy::CountAcceptErrors(metrics, "api");
  api_options.on_call_end = [&api_requests](std::string_view method, runtime::GrpcCode code) {
    api_requests.WithLabels({method, runtime::GrpcCodeName(code)}).Inc();
  };
  // A workload's process is never the agent's client, whatever uid it has
  // (under an agent that is not root it has the agent's).
  runtime::Supervisor* supervisor = &(*node)->supervisor();
  api_options.refuse_caller = [supervisor](const CallContext& context) {
    return supervisor->IsSupervisedPid(context.pid)
               ? std::string("the agent's API does not serve workload processes (pid ") +
                     std::to_string(context.pid) + ")"
               : std::string();
  };
  GrpcServer grpc(loop.get(), api_options);
  service.RegisterWith(grpc);
  const std::string socket_path = config->ApiSocketPath();
  if (Status s = grpc.Listen(socket_path); !s) {
    Log("cannot start: API socket " + socket_path + ": " + s.error().message,
        proxy::LogLevel::kError);
    return 1;
  }
  // The SPIFFE Workload API for supervised processes. Optional: without it
  // exec workloads still run, they just cannot fetch their SVID.
  GrpcServerOptions workload_api_options;
  workload_api_options.listener_name = "workload_api";
  workload_api_options.socket_mode = 0666;
  workload_api_options.count_accept_error = proxy::CountAcceptErrors(metrics, "workload_api");
  SpiffeWorkloadApi workload_api(loop.get(), (*node)->agent(), (*node)->supervisor(),
                                 workload_api_options);
  if (Status s = workload_api.Listen((*node)->WorkloadApiSocketPath()); !s) {
    Log("SPIFFE Workload API not served: " + (*node)->WorkloadApiSocketPath() + ": " +
        s.error().message);
  }
  std::vector<std::unique_ptr<AgentExtension>> extensions;
  for (const AgentExtensionFactory& factory : ExtensionFactories()) {
    auto extension = factory(AgentContext{loop.get(), **node, service, grpc, *config});
    if (!extension) {
      Log("cannot start: " + extension.error().message, proxy::LogLevel::kError);
      grpc.Close();
      (*node)->Shutdown();
      return 1;
    }
    if (*extension) extensions.push_back(std::move(*extension));
  }
  auto close_extensions = [&extensions] {
    for (auto& extension : extensions) extension->Close();
  };
  if (Status s = ApplyAtStart(loop.get(), **node, config->apply_at_start); !s) {
    Log("cannot start: --apply: " + s.error().message, proxy::LogLevel::kError);
    grpc.Close();
    close_extensions();
    (*node)->Shutdown();
    return 1;
  }

  // SIGINT/SIGTERM: close every listener and connection; the loop then runs
  // out of handles and RunCommand returns.
  bool stopping = false;
  auto stop = [&] {
    if (stopping) return;
    stopping = true;
    Log("shutting down");
    grpc.Close();
    close_extensions();
    workload_api.Close();
    (*node)->Shutdown();
  };
  std::map<int, proxy::SignalHandle> signals;
  for (int signum : {SIGINT, SIGTERM}) {
    proxy::SignalHandle& handle = signals[signum];
    int rc = uv_signal_init(loop.get(), handle.get());
    if (rc == 0) {
      handle->data = &stop;
      rc = uv_signal_start(
          handle.get(), [](uv_signal_t* h, int) { (*static_cast<decltype(stop)*>(h->data))(); },
          signum);
    }
    if (rc != 0) {
      // The signal keeps its default action: it ends the agent at once,
      // without the graceful shutdown.
      Log(std::string("cannot handle ") + strsignal(signum) + ": " + uv_strerror(rc),
          proxy::LogLevel::kWarning);
    }
  }

  (*node)->SetReady();
  std::string served;
  for (const auto& extension : extensions) served += ", " + extension->Describe();
  Log("ready: node " + config->node_name + ", API " + socket_path + ", admin " +
      config->admin_address + served + ", state " + config->state_dir);
  while (!stopping && (*node)->RunLoopTurn() != 0) {
  }
  // Supervised processes get their grace period (SIGTERM, then SIGKILL).
  while (!(*node)->processes_stopped() && (*node)->RunLoopTurn() != 0) {
  }
  signals.clear();
  grpc.Close();
  close_extensions();
  extensions.clear();
  workload_api.Close();
  node->reset();
  // Let close callbacks of everything above release their memory.
  uv_run(loop.get(), UV_RUN_DEFAULT);
  Log("stopped");
  return 0;
}

}  // namespace podless::api
