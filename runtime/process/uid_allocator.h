// UidAllocator: one unprivileged uid per workload, the way systemd's
// DynamicUser= gives each service its own, so two workloads on a node cannot
// signal, ptrace or read each other's private files.
//
// Design decisions:
// - The range. The operator chooses it (--workload-uids FIRST-LAST); the
//   default is systemd's dynamic range, 61184-65519, which distributions keep
//   free of regular users. The gid is the same number as the uid.
// - Stable. A key ("<namespace>/<name>") keeps its uid across agent restarts:
//   allocations live in a small text file that every change rewrites
//   atomically (temp file, fsync, rename, fsync of the directory) before the
//   call returns, so a uid a process already runs as is never forgotten.
// - Not the system's. A uid that has a passwd entry, or a gid that has a group
//   entry (getpwuid_r / getgrgid_r, so NSS sources count too), is skipped, as
//   is 65535 (the 16-bit (uid_t)-1 some tools treat as "no uid").
// - Slow reuse. Allocation is round-robin from a cursor that is persisted too:
//   a released uid is handed out again only after every other uid of the range
//   has been, so files a deleted workload left behind (in /tmp, /dev/shm) are
//   not inherited by the next workload while never-used uids remain.
// - A narrower range. Allocations outside [first, last] found in the file are
//   dropped at Open (the operator moved the range away from them; the key gets
//   a uid of the new range at its next Acquire).
// - Not thread-safe: the agent's main loop owns it. Acquire may consult NSS
//   once per skipped uid, which is a local file read on a node.
//
// The file: text, mode 0600, one "<uid> <key>" line per allocation and one
// "cursor <uid>" line (the next uid to try); '#' starts a comment line.
//
//   auto uids = UidAllocator::Open(state_dir + "/uids", first, last);
//   if (!uids.ok()) return uids.error();
//   Result<uint32_t> uid = uids->Acquire("default/web");
//   ...
//   uids->Release("default/web");  // when the workload is deleted
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "workloads/result.h"

namespace podless::runtime {

// systemd's dynamic service user range (DynamicUser=), the default for
// --workload-uids.
inline constexpr uint32_t kDefaultWorkloadUidFirst = 61184;
inline constexpr uint32_t kDefaultWorkloadUidLast = 65519;

// Parses the --workload-uids flag, "FIRST-LAST" (e.g. "61184-65519"). Refuses
// a range that includes uid 0 (first == 0), first > last, and last ==
// 4294967295 ((uid_t)-1, which means "no change" to setresuid).
Result<std::pair<uint32_t, uint32_t>> ParseUidRange(std::string_view text);

class UidAllocator {
 public:
  // Loads the allocations persisted at `path` (no file: none yet). The error
  // names the file and the line when it is corrupt, and refuses a range that
  // ParseUidRange would refuse.
  static Result<UidAllocator> Open(std::string path, uint32_t first, uint32_t last);

  // The uid of `key`, allocating one if it has none; a new allocation is on
  // disk before this returns (and is not made if writing fails). A key is 1 to
  // 255 printable ASCII characters without spaces. RESOURCE_EXHAUSTED, naming
  // the range and how to widen it, when no uid of the range is free.
  Result<uint32_t> Acquire(const std::string& key);
  // Forgets `key`'s uid, on disk before this returns. A key that has no uid is
  // not an error (a deletion retried after a crash).
  Status Release(const std::string& key);
  std::optional<uint32_t> Find(const std::string& key) const;

  // Every allocation, by key (e.g. to release the keys of workloads that no
  // longer exist, at start).
  const std::map<std::string, uint32_t>& allocations() const { return by_key_; }
  const std::string& path() const { return path_; }
  uint32_t first() const { return first_; }
  uint32_t last() const { return last_; }

 private:
  UidAllocator(std::string path, uint32_t first, uint32_t last)
      : path_(std::move(path)), first_(first), last_(last), cursor_(first) {}

  Status Load();
  Status Store() const;
  // The next uid from the cursor on, round-robin, that neither a key nor the
  // system holds (nullopt: none).
  std::optional<uint32_t> NextFree() const;

  std::string path_;
  uint32_t first_;
  uint32_t last_;
  uint32_t cursor_;  // the next uid to try, in [first_, last_]
  std::map<std::string, uint32_t> by_key_;
  std::map<uint32_t, std::string> by_uid_;
};

}  // namespace podless::runtime
