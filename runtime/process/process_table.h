// ProcessTable: the supervisor's record of the processes it started, kept in
// <state_dir>/processes so that an agent that died without stopping its
// children (kill -9, a crash, OOM) finds them again on the next start.
//
// A record names the process by (pid, start time): the start time, in clock
// ticks since boot (/proc/<pid>/stat field 22), tells a still-running child
// from an unrelated process that got the same pid later. Every change
// rewrites the whole file atomically (write, fsync, rename), so a crash
// leaves either the old or the new table, never a torn one. The temp file
// (<path>.tmp) is removed and created anew with O_EXCL | O_NOFOLLOW each
// time: nothing planted under its name is ever written through.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "workloads/result.h"

namespace podless::runtime {

struct ProcessRecord {
  pid_t pid = 0;  // also the process group id (each child leads its own group)
  uint64_t start_time = 0;
  uint32_t address = 0;  // the replica's workload address
  std::string replica;   // "<namespace>/<replica>", for log lines
  bool operator==(const ProcessRecord&) const = default;
};

// What /proc/<pid>/stat says of a process.
struct ProcStat {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgrp = 0;
  char state = '?';
  uint64_t start_time = 0;
};

// Reads /proc/<pid>/stat (nullopt: no such process).
std::optional<ProcStat> ReadProcStat(pid_t pid);
// True if `pid` is alive and started at `start_time` (not a zombie).
bool IsSameProcess(pid_t pid, uint64_t start_time);

class ProcessTable {
 public:
  explicit ProcessTable(std::string path) : path_(std::move(path)) {}

  // Reads the table a previous run left (empty if none). A damaged line is
  // skipped: the table is advisory and must not keep the agent from starting.
  std::vector<ProcessRecord> Load() const;
  // Replaces the table with `records`.
  Status Store(const std::vector<ProcessRecord>& records) const;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace podless::runtime
