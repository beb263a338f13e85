// The agent's durable state: every object the agent acknowledged, with the
// addresses and secrets it handed out, in one append-only log that survives
// `kill -9` and power loss.
//
// On disk, `<state-dir>/state.log`:
//   header  = 8 bytes "PODLSLG1"
//   record  = u32 payload length, u32 CRC-32C of the payload (both little-endian), payload
//   payload = u8 payload version, u8 type (batch | snapshot), puts, deletes
// One record is one atomic change: Commit writes it and fdatasyncs before it
// returns, so an acknowledged change is on disk. Open replays the records in
// order. A crash can only damage the record being written (never
// acknowledged), so a damaged record with nothing valid after it is cut away;
// damage anywhere else is an error, because dropping it would lose
// acknowledged changes.
//
// The store owns the live view (objects()); it changes only inside a
// successful Commit, so the caller never sees a change that is not on disk and
// applies a change to its own tables only after Commit succeeded.
//
// Not thread-safe: one owner (the agent's loop) calls it. Commit blocks on
// fdatasync; group commit (several callers' batches in one write and one
// fdatasync) fits this design as several records per write, see Commit.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "workloads/model.h"
#include "workloads/result.h"

namespace podless::runtime {

struct StoredObject {
  workloads::Object object;
  // Workload: the address (IPv4, host order) of replica ordinal i at index i.
  // Service: {vip}. Policy: empty. Stored as zigzag deltas, so the consecutive
  // addresses of a large workload cost about a byte each.
  std::vector<uint32_t> addresses;
  // Per-object credential seed (outbound proxy credentials are derived from it).
  std::string secret;
  // Set by the caller, stored as given: the agent's revision of the change
  // that wrote this version (Agent::revision(); the Kubernetes API's
  // resourceVersion).
  uint64_t generation = 0;
  // Unix seconds at which this agent created the object; 0 for an object
  // created before the agent started (read back from the log). Kept in
  // memory only, for `get replicas` AGE; not part of equality.
  int64_t created_at = 0;
  bool operator==(const StoredObject& other) const {
    return object == other.object && addresses == other.addresses && secret == other.secret &&
           generation == other.generation;
  }
};

// An object's key (kind, namespace, name) as views of what holds it: the
// live objects are ordered by it without a copy of the key beside each one
// (a std::map<ObjectKey, StoredObject> entry carried 72 bytes of key that
// the object's metadata already holds).
struct ObjectKeyView {
  workloads::Kind kind = workloads::Kind::kWorkload;
  std::string_view ns;
  std::string_view name;
  auto operator<=>(const ObjectKeyView&) const = default;
};

inline ObjectKeyView KeyViewOf(const workloads::ObjectKey& key) {
  return {key.kind, key.ns, key.name};
}
inline ObjectKeyView KeyViewOf(const StoredObject& stored) {
  const workloads::ObjectMeta& meta = workloads::MetaOf(stored.object);
  return {static_cast<workloads::Kind>(stored.object.index()), meta.ns, meta.name};
}

// Orders stored objects by key, and finds them by ObjectKey.
struct ByObjectKey {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return KeyViewOf(a) < KeyViewOf(b);
  }
};

// The live objects, by key. An entry's key never changes: a new version of
// the object replaces the entry's value in place (StateStore::Publish), so
// pointers to entries stay valid while the key lives.
using ObjectMap = std::set<StoredObject, ByObjectKey>;

// CRC-32C (Castagnoli), the checksum of every record's payload.
uint32_t Crc32c(std::string_view data);

class StateStore;
using StateStorePtr = std::unique_ptr<StateStore>;

class StateStore {
 public:
  struct Options {
    // Compaction runs once the log exceeds max(2 x live size, this).
    uint64_t compaction_min_bytes = uint64_t{4} << 20;
    // Where the store reports what it repaired or could not do without failing
    // the caller (a torn tail cut away, a failed compaction). Default: stderr.
    std::function<void(std::string_view)> log;
  };

  static constexpr char kLogFileName[] = "state.log";
  static constexpr char kTempFileName[] = "state.log.tmp";
  static constexpr char kLockFileName[] = "lock";
  // Larger records are refused by Commit and treated as damage by Open.
  static constexpr uint32_t kMaxRecordBytes = uint32_t{1} << 30;

  // Creates `dir` (and its parents, mode 0700) if needed and refuses a dir
  // the agent cannot trust: one another uid owns, or group or others may
  // write (workloads::CheckPrivateDirectory; the error says what to do).
  // The agent calls it before it writes anything there.
  static Status PrepareDir(const std::string& dir);

  // PrepareDir, then takes the exclusive lock on `<dir>/lock`, removes a
  // temp file a crash during compaction left behind, and replays
  // `<dir>/state.log` (a missing file is an empty state). No file of the
  // store is opened through a symbolic link (O_NOFOLLOW: a link is an error
  // naming it), and the temp file is created with O_EXCL.
  static Result<StateStorePtr> Open(const std::string& dir);
  static Result<StateStorePtr> Open(const std::string& dir, Options options);

  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  const ObjectMap& objects() const { return objects_; }

  // Atomically puts (insert or replace, keyed by KeyOf(object)) and deletes
  // (missing keys are ignored), durably: the record is written and
  // fdatasync'ed before objects() changes and before this returns. A key may
  // appear once in the whole batch. On error objects() is unchanged and the
  // log is cut back to where it was; an error from fdatasync leaves the store
  // failed (every later Commit fails) because after a failed fdatasync Linux
  // no longer says which written data reached the disk: restart and replay.
  // Out of memory, std::bad_alloc propagates to the caller only from before
  // the write, with the store and the log unchanged: everything the change
  // needs in objects() is allocated first (see the body).
  //
  // Group commit later: encode several batches as consecutive records into one
  // buffer, write and fdatasync once, then apply each in order.
  //
  // With `stored`, a successful Commit sets it to the entry in objects() of
  // each put, in the order of `puts` (so the caller need not look them up
  // again). An entry stays at its address until its key is deleted.
  Status Commit(std::vector<StoredObject> puts, std::vector<workloads::ObjectKey> deletes,
                std::vector<const StoredObject*>* stored = nullptr);

  // Commit in its three steps, for an owner whose readers on other threads
  // must not wait for the disk (the agent and the proxy's workers): Write
  // encodes the change, writes and fdatasyncs it and allocates what
  // objects() needs for it, leaving objects() unchanged (so readers may run
  // meanwhile); Publish applies it to objects() without allocating (readers
  // excluded); MaybeCompact rewrites the log if it has grown (readers may
  // run: it only reads objects()). Nothing may change objects() between a
  // Write and its Publish, and every successful Write must be published
  // before the next Write, in order. Errors and out-of-memory as Commit.
  // What Write staged for Publish: everything objects() needs for the
  // change, allocated before the record was written.
  class PendingCommit {
   public:
    // Put i as it will be in objects() once published, and where: the
    // entry's address is known before Publish (a replaced key keeps its
    // entry, a new key's entry is made by Write), so the caller can prepare
    // indexes that point to it.
    const StoredObject& put(size_t i) const {
      return staged[i].node.empty() ? staged[i].replacement : staged[i].node.value();
    }
    const StoredObject* entry(size_t i) const {
      return staged[i].node.empty() ? &*staged[i].position : &staged[i].node.value();
    }
    size_t puts() const { return staged.size(); }

   private:
    friend class StateStore;
    struct StagedPut {
      ObjectMap::iterator position;  // the existing entry, or where the new one goes
      ObjectMap::node_type node;     // a new key's entry (empty for an existing key)
      StoredObject replacement;      // the new version of an existing key
      int64_t size_change = 0;
    };
    std::vector<StagedPut> staged;
    std::vector<std::pair<ObjectMap::iterator, uint64_t>> erased;  // with its encoded size
  };
  Result<std::unique_ptr<PendingCommit>> Write(std::vector<StoredObject> puts,
                                               std::vector<workloads::ObjectKey> deletes);
  // `stored`, when given, must have the capacity for the puts (reserve).
  void Publish(PendingCommit& pending, std::vector<const StoredObject*>* stored = nullptr) noexcept;
  void MaybeCompact();

  // Rewrites the log as a snapshot of objects() (temp file, fsync, rename,
  // fsync of the directory). Commit calls it when the log has grown past
  // max(2 x live size, compaction_min_bytes); a crash at any step leaves the
  // old or the new log, both complete.
  Status Compact();

  uint64_t log_bytes() const { return log_end_; }
  // Encoded size of objects(): what a snapshot's puts take, without framing.
  uint64_t live_bytes() const { return live_bytes_; }
  std::string path() const;  // `<dir>/state.log`
  const std::string& dir() const { return dir_; }

 private:
  StateStore(std::string dir, Options options);

  Status Init();
  Status AcquireLock();
  Status OpenLog();
  Status Replay(uint64_t file_size);
  Status ApplyPayload(std::string_view payload, uint64_t offset);
  bool ValidRecordAfter(uint64_t offset, uint64_t file_size);
  Status AppendRecord(const std::string& record);
  // `put_sizes[i]`: the encoded size of puts[i], for the live-size account.
  // `stored` (optional) receives the entry of each put.
  void Apply(std::vector<StoredObject>&& puts, const std::vector<uint64_t>& put_sizes,
             const std::vector<workloads::ObjectKey>& deletes,
             std::vector<const StoredObject*>* stored = nullptr);
  void Log(std::string_view message) const;

  std::string dir_;
  Options options_;
  int lock_fd_ = -1;
  int log_fd_ = -1;
  uint64_t log_end_ = 0;              // bytes of complete records (and header) in the log
  uint64_t live_bytes_ = 0;           // encoded size of objects_ as a snapshot's puts
  uint64_t compaction_retry_at_ = 0;  // after a failed compaction, wait for this log size
  std::string failed_;                // set after an fdatasync error; every Commit fails
  ObjectMap objects_;
};

}  // namespace podless::runtime
