#include "api/kube/kube_logs.h"

#include <ctime>
#include <memory>
#include <optional>
#include <utility>
#include <variant>

#include "runtime/process/log_files.h"

namespace podless::api::kube {
namespace {

KubeResponse PodNotFound(const std::string& pod) {
  return StatusResponse(404, "NotFound", "pods \"" + pod + "\" not found", "pods", pod);
}

KubeResponse Text(std::string body) { return {200, "text/plain", std::move(body)}; }

// Cuts `text` to `limit` bytes (0: no limit).
void Limit(std::string& text, int64_t limit) {
  if (limit > 0 && text.size() > static_cast<size_t>(limit)) text.resize(limit);
}

}  // namespace

KubeResponse AgentLogSource::Logs(const LogParams& params) {
  // A Pod is replica <ordinal> of workload <name> ("<name>-<ordinal>"), or
  // a workload applied as a Pod (its only replica).
  const runtime::StoredObject* stored = nullptr;
  uint32_t ordinal = 0;
  std::string replica;
  if (const auto* as_pod =
          agent_.Find(workloads::ObjectKey{workloads::Kind::kWorkload, params.ns, params.pod});
      as_pod != nullptr) {
    const auto& w = std::get<workloads::Workload>(as_pod->object);
    if (w.metadata.applied_as && w.metadata.applied_as->kind == "Pod") {
      stored = as_pod;
      replica = params.pod + "-0";
    }
  }
  const size_t dash = params.pod.rfind('-');
  if (stored == nullptr && dash != std::string::npos && dash + 1 < params.pod.size() &&
      params.pod.size() - dash <= 10 &&
      params.pod.find_first_not_of("0123456789", dash + 1) == std::string::npos) {
    stored = agent_.Find(
        workloads::ObjectKey{workloads::Kind::kWorkload, params.ns, params.pod.substr(0, dash)});
    ordinal = static_cast<uint32_t>(std::stoul(params.pod.substr(dash + 1)));
    replica = params.pod;
    if (stored != nullptr) {
      const auto& w = std::get<workloads::Workload>(stored->object);
      // A workload applied as a Pod has no "<name>-0" pod.
      if (w.metadata.applied_as && w.metadata.applied_as->kind == "Pod") stored = nullptr;
    }
  }
  if (stored == nullptr || ordinal >= stored->addresses.size()) return PodNotFound(params.pod);
  const auto& workload = std::get<workloads::Workload>(stored->object);
  const auto* app = std::get_if<workloads::ExecApp>(&workload.spec.app);
  if (app == nullptr) {
    // No process, so nothing was ever written: as a container with no logs.
    return Text("");
  }
  const std::vector<workloads::ExecContainer> containers = app->AllContainers();
  std::string names;
  for (const auto& c : containers) names += (names.empty() ? "" : " ") + c.name;
  const std::optional<std::string> dir = runtime::ContainerLogDir(
      runtime::ReplicaLogDir(agent_.config().state_dir, params.ns, replica), *app,
      params.container);
  if (!dir) {
    return StatusResponse(400, "BadRequest",
                          "container " + params.container + " is not valid for pod " + params.pod +
                              " (its containers: " + names + ")");
  }
  const std::string container =
      params.container.empty() ? containers.front().name : params.container;
  runtime::LogView view;
  view.timestamps = params.timestamps;
  if (params.since_seconds > 0) {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    view.since_unix_nanos =
        (static_cast<int64_t>(now.tv_sec) - params.since_seconds) * 1'000'000'000;
  }
  auto text = runtime::ReadLog(*dir, params.previous, params.tail_lines, view);
  if (!text.ok() && params.previous) {
    return StatusResponse(400, "BadRequest",
                          "previous terminated container \"" + container + "\" in pod \"" +
                              params.pod + "\" not found");
  }
  // No log yet (the process never wrote, or never started): empty.
  std::string body = text.ok() ? std::move(text).value() : std::string();
  Limit(body, params.limit_bytes);
  runtime::LogFile* log = supervisor_ != nullptr && params.follow && !params.previous
                              ? supervisor_->FindLog(params.ns, replica, container)
                              : nullptr;
  const bool limit_reached =
      params.limit_bytes > 0 && body.size() >= static_cast<size_t>(params.limit_bytes);
  if (log == nullptr || limit_reached) return Text(std::move(body));
  if (*follows_ >= kMaxFollows) {
    return StatusResponse(
        429, "TooManyRequests",
        "too many logs followed at once (" + std::to_string(kMaxFollows) + "); try again later");
  }

  // Follow: what the process writes from now on, until the client goes,
  // limitBytes, or the log goes with its workload.
  // The log so far is queued whole (the log files are bounded); beyond it
  // the usual limit applies to what a client does not read.
  auto stream = std::make_shared<ResponseStream>(body.size() + ResponseStream::kDefaultLimit);
  stream->Write(body);
  // Owned by the follower callback: when the log file is destroyed (the
  // workload was deleted) the callback goes, and this ends the response.
  struct Follow {
    std::weak_ptr<ResponseStream> stream;
    std::shared_ptr<bool> alive = std::make_shared<bool>(true);
    ~Follow() {
      *alive = false;
      if (auto s = stream.lock()) s->End();
    }
  };
  auto follow = std::make_shared<Follow>();
  follow->stream = stream;
  std::shared_ptr<bool> alive = follow->alive;
  auto filter = std::make_shared<runtime::LogStreamFilter>(view);
  auto left = std::make_shared<int64_t>(
      params.limit_bytes > 0 ? params.limit_bytes - static_cast<int64_t>(body.size()) : -1);
  const uint64_t id = log->AddFollower([follow, filter, left](std::string_view bytes) {
    auto s = follow->stream.lock();
    if (!s) return;
    std::string data = filter->Feed(bytes);
    if (data.empty()) return;
    if (*left >= 0 && data.size() >= static_cast<size_t>(*left)) {
      data.resize(*left);
      *left = 0;
      s->Write(data);
      s->End();
      return;
    }
    if (*left >= 0) *left -= static_cast<int64_t>(data.size());
    s->Write(data);
  });
  // The client went, was cut, or the limit was reached: stop following.
  ++*follows_;
  stream->OnRelease([log, id, alive, follows = follows_] {
    --*follows;
    if (*alive) log->RemoveFollower(id);
  });
  KubeResponse response{200, "text/plain", ""};
  response.stream = stream;
  return response;
}

}  // namespace podless::api::kube
