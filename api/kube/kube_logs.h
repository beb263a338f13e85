// The Kubernetes API's pod logs: GET /api/v1/namespaces/NS/pods/NAME/log,
// text/plain, what `kubectl logs` reads.
//
// A Pod is a replica of a workload (objects.h); its log is the log of the
// replica's exec process that the gRPC Logs call reads
// (runtime/process/log_files.h): the current run, or with previous=true
// the run before the last restart. follow=true streams what the process
// writes from then on (a ResponseStream, bounded as a watch is) until the
// client goes, limitBytes is reached, or the workload is deleted (its log
// goes with it). A Pod that runs no process (an app that is not exec) has
// no logs: an empty body, as the API server answers for a container that
// wrote nothing. Without `container`, the first container (kubectl sends
// the one it defaulted to).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "api/kube/kube_api.h"
#include "runtime/process/supervisor.h"
#include "runtime/state/agent.h"

namespace podless::api::kube {

struct LogParams {
  std::string ns;
  std::string pod;
  std::string container;  // "": the first
  bool follow = false;
  bool previous = false;
  bool timestamps = false;
  int64_t tail_lines = -1;    // < 0: all
  int64_t limit_bytes = 0;    // 0: no limit
  int64_t since_seconds = 0;  // 0: all
};

class LogSource {
 public:
  virtual ~LogSource() = default;
  virtual KubeResponse Logs(const LogParams& params) = 0;
};

// The agent's logs: its workloads, and the supervisor's live logs (null:
// the files only, no follow).
class AgentLogSource final : public LogSource {
 public:
  // At most this many `follow` streams are open at once (429 beyond), as
  // WatchHub bounds watches: with each stream's bounded queue, what log
  // followers can make the agent hold is bounded.
  static constexpr size_t kMaxFollows = 1'000;

  AgentLogSource(runtime::Agent& agent, runtime::Supervisor* supervisor)
      : agent_(agent), supervisor_(supervisor) {}

  // LogSource
  KubeResponse Logs(const LogParams& params) override;

 private:
  runtime::Agent& agent_;
  runtime::Supervisor* supervisor_;
  // Open follow streams; shared with their release callbacks.
  std::shared_ptr<size_t> follows_ = std::make_shared<size_t>(0);
};

}  // namespace podless::api::kube
