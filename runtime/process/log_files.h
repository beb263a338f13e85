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
// `kubectl logs` merges a container's stdout and stderr). Each line is
// stored behind the time the agent read its first byte, as the CRI log
// format stamps lines: "2026-12-06T20:45:00.123456789Z <line>", so that
// `podless logs --timestamps` and `--since` can tell when it was written.
// Readers strip the stamps unless asked for them (LogView); a line without
// one (a log written before stamps) is shown as it is.
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
  // Appends output, each line stamped with `unix_nanos` (default: now);
  // rotates current.log to current.log.1 past max_bytes. Write errors are
  // counted, not fatal: a full disk must not stop a process.
  void Append(std::string_view bytes);
  void Append(std::string_view bytes, int64_t unix_nanos);

  // Followers receive every byte appended after they subscribed, stamped as
  // stored (LogStreamFilter makes it what a reader asked for).
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
  bool at_line_start_ = true;  // the next byte starts a line: stamp it
  std::map<uint64_t, std::function<void(std::string_view)>> followers_;
  uint64_t next_follower_ = 1;
};

// The log directory of a replica under the state dir.
std::string ReplicaLogDir(const std::string& state_dir, const std::string& ns,
                          const std::string& replica);

// What a reader sees of the stamped lines.
struct LogView {
  bool timestamps = false;       // keep each line's stamp
  int64_t since_unix_nanos = 0;  // only lines stamped at or after this (0: all)
};

// "2026-12-06T20:45:00.123456789Z " for `unix_nanos` (UTC), 31 bytes.
std::string LogStamp(int64_t unix_nanos);
// The time of the stamp `line` starts with; false when it has none.
bool ParseLogStamp(std::string_view line, int64_t* unix_nanos);

// Applies a LogView to stamped text as it streams by (pieces of any size).
class LogStreamFilter {
 public:
  explicit LogStreamFilter(LogView view) : view_(view) {}
  std::string Feed(std::string_view bytes);
  // What is held back at the end (a last line shorter than a stamp).
  std::string Finish();

 private:
  LogView view_;
  std::string head_;      // the start of a line, until its stamp can be read
  bool in_line_ = false;  // inside a line whose fate is decided
  bool keep_line_ = true;
};

// Reads a replica's log from disk: the current run (current.log.1 then
// current.log) or, with `previous`, previous.log. Lines before
// view.since_unix_nanos are left out, then tail_lines < 0: all of it;
// otherwise only the last tail_lines lines. kNotFound when there is no such
// log (never started, or no previous run).
Result<std::string> ReadLog(const std::string& dir, bool previous, int64_t tail_lines,
                            LogView view = {});

// The last `lines` lines of `text` (all of it if it has fewer).
std::string_view TailLines(std::string_view text, uint64_t lines);

}  // namespace podless::runtime
