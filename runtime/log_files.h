// LogFile: one replica's captured stdout/stderr, as kubectl logs shows a
// container's. The supervisor appends what the process writes; readers take
// the last lines, the previous run's output, or follow new output.
//
// Layout under <dir> (= <state_dir>/logs/<namespace>/<replica>):
//   current.log     the running (or last) process's output
//   current.log.1   the older part of it, once current.log passed max_bytes
//   previous.log    the run before (`podless logs --previous`)
// So one replica never holds more than 3 * max_bytes on disk. Both output
// streams go to the same file, in the order the agent read them (as
// `kubectl logs` merges a container's stdout and stderr).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "workloads/result.h"

namespace podless::runtime {

class LogFile;
using LogFilePtr = std::unique_ptr<LogFile>;

class LogFile {
 public:
  // Creates <dir> if needed. Existing files are kept (an agent restart
  // continues them).
  static Result<LogFilePtr> Open(std::string dir, uint64_t max_bytes);
  ~LogFile();
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;

  // A new process run starts: the current output becomes previous.log.
  void StartRun();
  // Appends output; rotates current.log to current.log.1 past max_bytes.
  // Write errors are counted, not fatal: a full disk must not stop a process.
  void Append(std::string_view bytes);

  // Followers receive every byte appended after they subscribed.
  uint64_t AddFollower(std::function<void(std::string_view)> callback);
  void RemoveFollower(uint64_t id);

  const std::string& dir() const { return dir_; }
  uint64_t write_errors() const { return write_errors_; }

 private:
  LogFile(std::string dir, uint64_t max_bytes);
  void OpenCurrent();
  void CloseCurrent();

  std::string dir_;
  uint64_t max_bytes_;
  int fd_ = -1;
  uint64_t current_size_ = 0;
  uint64_t write_errors_ = 0;
  uint64_t runs_started_ = 0;
  std::map<uint64_t, std::function<void(std::string_view)>> followers_;
  uint64_t next_follower_ = 1;
};

// The log directory of a replica under the state dir.
std::string ReplicaLogDir(const std::string& state_dir, const std::string& ns,
                          const std::string& replica);

// Reads a replica's log from disk: the current run (current.log.1 then
// current.log) or, with `previous`, previous.log. tail_lines < 0: all of it;
// otherwise only the last tail_lines lines. kNotFound when there is no such
// log (never started, or no previous run).
Result<std::string> ReadLog(const std::string& dir, bool previous, int64_t tail_lines);

// The last `lines` lines of `text` (all of it if it has fewer).
std::string_view TailLines(std::string_view text, uint64_t lines);

}  // namespace podless::runtime
