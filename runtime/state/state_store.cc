#include "runtime/state/state_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <new>

#include "proxy/base/log.h"
#include "workloads/object_codec.h"
#include "workloads/pem_file.h"

namespace podless::runtime {

using workloads::ByteReader;
using workloads::ByteWriter;
using workloads::ObjectKey;

// CRC-32C, slicing-by-8: replay of a large log is bounded by how fast its
// bytes are checked, and this runs at a few GB/s without CPU-specific code.
namespace {

using CrcTables = std::array<std::array<uint32_t, 256>, 8>;

constexpr CrcTables MakeCrcTables() {
  CrcTables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[0][i] = c;
  }
  for (size_t s = 1; s < 8; ++s) {
    for (uint32_t i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
  return t;
}

constexpr CrcTables kCrcTables = MakeCrcTables();

uint32_t LoadLe32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

uint32_t Crc32c(std::string_view data) {
  const auto& t = kCrcTables;
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  size_t n = data.size();
  uint32_t crc = 0xffffffffu;
  while (n >= 8) {
    const uint32_t lo = crc ^ LoadLe32(p);
    const uint32_t hi = LoadLe32(p + 4);
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
          t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
  return ~crc;
}

namespace {

constexpr char kMagic[] = "PODLSLG1";
constexpr size_t kMagicBytes = sizeof(kMagic) - 1;
constexpr size_t kRecordHeaderBytes = 8;
constexpr uint8_t kPayloadVersion = 1;
enum class RecordType : uint8_t { kBatch = 1, kSnapshot = 2 };
// Version, type, put count, delete count.
constexpr uint32_t kMinPayloadBytes = 4;
// A snapshot is written as records of about this size, so that compaction of
// a large state does not build it in memory all at once.
constexpr size_t kSnapshotChunkBytes = size_t{8} << 20;

Error OsError(const std::string& what, int err) {
  const ErrorCode code = (err == ENOSPC || err == EDQUOT || err == EFBIG)
                             ? ErrorCode::kResourceExhausted
                             : ErrorCode::kInternal;
  return MakeError(code, what + ": " + std::strerror(err));
}

// Every file of the store is opened with O_NOFOLLOW: a symbolic link in the
// state dir (someone else's doing) would have the agent write wherever it
// points. open() then fails with ELOOP, which this says in words.
Error OpenError(const std::string& what, const std::string& path, int err) {
  if (err == ELOOP) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     what + ": " + path +
                         " is a symbolic link, which podless does not follow in its state dir: "
                         "remove the link (and check who planted it)");
  }
  return OsError(what, err);
}

// pwrite all of `data` at `offset`, retrying partial writes and EINTR.
// Returns 0 or an errno value.
int WriteAll(int fd, std::string_view data, uint64_t offset) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;  // no progress on a regular file: do not spin
    done += static_cast<size_t>(n);
  }
  return 0;
}

// pread exactly `length` bytes at `offset` into `*out`. Returns 0 or an errno
// value (EIO for a short read: the file shrank under us).
int ReadAll(int fd, uint64_t offset, size_t length, std::string* out) {
  out->resize(length);
  size_t done = 0;
  while (done < length) {
    const ssize_t n =
        ::pread(fd, out->data() + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    done += static_cast<size_t>(n);
  }
  return 0;
}

// A rename or a new file is durable only once its directory is synced.
int SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

// mkdir -p with mode 0700: the state holds credential seeds.
Status CreateDirectories(const std::string& dir) {
  if (dir.empty()) return MakeError(ErrorCode::kInvalidArgument, "state dir: empty path");
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return OsError("state dir " + dir + ": cannot create " + prefix, errno);
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return OsError("state dir " + dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "state dir " + dir + " exists and is not a directory");
  }
  return {};
}

void PutZigzag(ByteWriter& w, int64_t value) {
  w.PutVarint((static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63));
}

// One put of a payload: the object (length-prefixed), addresses as zigzag
// deltas from the previous one (the first from 0), secret, generation.
Status EncodePut(const StoredObject& put, std::string* out, std::string* scratch) {
  scratch->clear();
  if (Status s = workloads::AppendObject(put.object, scratch); !s) return s;
  ByteWriter w(out);
  w.PutString(*scratch);
  w.PutVarint(put.addresses.size());
  int64_t previous = 0;
  for (uint32_t address : put.addresses) {
    PutZigzag(w, static_cast<int64_t>(address) - previous);
    previous = address;
  }
  w.PutString(put.secret);
  w.PutVarint(put.generation);
  return {};
}

// The size EncodePut gives `put`, which the live-size account needs when a
// stored object is replaced or deleted.
// Puts a new version of an object in its entry. A set's elements are const
// because their order depends on them; the version has the entry's key
// (kind, namespace, name: its order), so assigning it keeps the order.
void ReplaceEntry(ObjectMap::iterator entry, StoredObject&& version) noexcept {
  const_cast<StoredObject&>(*entry) = std::move(version);
}

uint64_t EncodedPutSize(const StoredObject& put) {
  thread_local std::string out;
  thread_local std::string scratch;
  out.clear();
  (void)EncodePut(put, &out, &scratch);  // stored objects were encodable when committed
  return out.size();
}

bool DecodePut(ByteReader& r, StoredObject* put) {
  std::string_view object_bytes;
  if (!r.ReadStringView(&object_bytes, "put.object")) return false;
  Result<workloads::Object> object = workloads::DecodeObject(object_bytes);
  if (!object.ok()) return r.Fail("put.object", object.error().message);
  put->object = std::move(object).value();
  size_t count = 0;
  if (!r.ReadCount(&count, 1, "put.addresses")) return false;
  put->addresses.clear();
  put->addresses.reserve(count);
  int64_t previous = 0;
  for (size_t i = 0; i < count; ++i) {
    uint64_t zigzag = 0;
    if (!r.ReadVarint(&zigzag, "put.addresses")) return false;
    const int64_t delta = static_cast<int64_t>(zigzag >> 1) ^ -static_cast<int64_t>(zigzag & 1);
    // Both are in [-2^32, 2^32) for a valid encoding; anything else is damage,
    // and checking before adding keeps the sum from overflowing.
    if (delta < -(int64_t{1} << 32) || delta >= (int64_t{1} << 32) || previous + delta < 0 ||
        previous + delta > int64_t{0xffffffff}) {
      return r.Fail("put.addresses", "address delta leaves the 32-bit range");
    }
    previous += delta;
    put->addresses.push_back(static_cast<uint32_t>(previous));
  }
  return r.ReadString(&put->secret, "put.secret") &&
         r.ReadVarint(&put->generation, "put.generation");
}

void EncodeKey(ByteWriter& w, const ObjectKey& key) {
  w.PutVarint(static_cast<uint64_t>(key.kind));
  w.PutString(key.ns);
  w.PutString(key.name);
}

bool DecodeKey(ByteReader& r, ObjectKey* key) {
  uint64_t kind = 0;
  if (!r.ReadBounded(&kind, static_cast<uint64_t>(workloads::kLastKind), "delete.kind")) {
    return false;
  }
  key->kind = static_cast<workloads::Kind>(kind);
  return r.ReadString(&key->ns, "delete.namespace") && r.ReadString(&key->name, "delete.name");
}

// Starts a record in `*record`: room for its header, then the payload's
// version and type. FinishRecord fills the header in.
void BeginRecord(std::string* record, RecordType type) {
  record->assign(kRecordHeaderBytes, '\0');
  record->push_back(static_cast<char>(kPayloadVersion));
  record->push_back(static_cast<char>(type));
}

void FinishRecord(std::string* record) {
  const std::string_view payload = std::string_view(*record).substr(kRecordHeaderBytes);
  std::string header;
  ByteWriter w(&header);
  w.PutFixed32(static_cast<uint32_t>(payload.size()));
  w.PutFixed32(Crc32c(payload));
  record->replace(0, kRecordHeaderBytes, header);
}

// An ObjectKey that refers to the names it compares instead of holding them.
struct KeyView {
  workloads::Kind kind;
  std::string_view ns;
  std::string_view name;
  auto operator<=>(const KeyView&) const = default;
};

std::string KeyName(const KeyView& key) {
  return std::string(workloads::KindName(key.kind)) + " " + std::string(key.ns) + "/" +
         std::string(key.name);
}

}  // namespace

StateStore::StateStore(std::string dir, Options options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

StateStore::~StateStore() {
  if (log_fd_ >= 0) ::close(log_fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

std::string StateStore::path() const { return dir_ + "/" + kLogFileName; }

void StateStore::Log(std::string_view message) const {
  if (options_.log) {
    options_.log(message);
  } else {
    proxy::Log(proxy::LogLevel::kWarning, "state", message);
  }
}

Result<StateStorePtr> StateStore::Open(const std::string& dir) { return Open(dir, Options{}); }

Result<StateStorePtr> StateStore::Open(const std::string& dir, Options options) {
  std::string clean = dir;  // "x/" names the same dir; keep messages and paths tidy
  while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
  StateStorePtr store(new StateStore(std::move(clean), std::move(options)));
  if (Status s = store->Init(); !s) return s.error();
  return store;
}

Status StateStore::PrepareDir(const std::string& dir) {
  if (Status s = CreateDirectories(dir); !s) return s;
  return workloads::CheckPrivateDirectory(dir, "state dir");
}

Status StateStore::Init() {
  if (Status s = PrepareDir(dir_); !s) return s;
  if (Status s = AcquireLock(); !s) return s;
  // A temp file is only ever a compaction that did not reach its rename: the
  // log it was to replace is still complete.
  const std::string temp = dir_ + "/" + kTempFileName;
  if (::unlink(temp.c_str()) == 0) {
    Log(temp + ": removed, left by a compaction that was interrupted");
  } else if (errno != ENOENT) {
    return OsError("cannot remove " + temp, errno);
  }
  if (Status s = OpenLog(); !s) return s;
  if (log_end_ > std::max(2 * live_bytes_, options_.compaction_min_bytes)) {
    if (Status s = Compact(); !s) {
      compaction_retry_at_ = log_end_ + options_.compaction_min_bytes;
      Log("compaction of " + path() + " failed: " + s.error().message);
    }
  }
  return {};
}

Status StateStore::AcquireLock() {
  const std::string lock_path = dir_ + "/" + kLockFileName;
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) {
    return OpenError("state dir " + dir_ + " is not usable: cannot open " + lock_path, lock_path,
                     errno);
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) return OsError("cannot lock " + lock_path, err);
    // The holder writes its pid right after locking; it may not have yet.
    std::string pid;
    char buf[32];
    const ssize_t n = ::pread(lock_fd_, buf, sizeof(buf), 0);
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) pid.push_back(buf[i]);
    return MakeError(ErrorCode::kFailedPrecondition,
                     "state dir " + dir_ + " is in use by another podless process (pid " +
                         (pid.empty() ? std::string("unknown") : pid) + ")");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || WriteAll(lock_fd_, pid, 0) != 0) {
    return OsError("cannot write " + lock_path, errno);
  }
  return {};
}

Status StateStore::OpenLog() {
  const std::string log_path = path();
  log_fd_ = ::open(log_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (log_fd_ < 0) return OpenError("cannot open " + log_path, log_path, errno);
  struct stat st;
  if (::fstat(log_fd_, &st) != 0) return OsError("cannot stat " + log_path, errno);
  const uint64_t size = static_cast<uint64_t>(st.st_size);

  std::string header;
  if (size > 0) {
    if (int err = ReadAll(log_fd_, 0, std::min<uint64_t>(size, kMagicBytes), &header); err) {
      return OsError("cannot read " + log_path, err);
    }
  }
  if (header != std::string_view(kMagic, header.size())) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     log_path + ": not a podless state log (its first bytes are not \"" +
                         std::string(kMagic) + "\")");
  }
  if (size >= kMagicBytes) return Replay(size);

  // New, or a header cut short by a crash during creation (a prefix of the
  // magic): start an empty log. Its directory entry must be durable too.
  if (::ftruncate(log_fd_, 0) != 0) return OsError("cannot truncate " + log_path, errno);
  if (int err = WriteAll(log_fd_, std::string_view(kMagic, kMagicBytes), 0); err) {
    return OsError("cannot write " + log_path, err);
  }
  if (::fdatasync(log_fd_) != 0) return OsError("cannot sync " + log_path, errno);
  if (int err = SyncDirectory(dir_); err) return OsError("cannot sync " + dir_, err);
  log_end_ = kMagicBytes;
  return {};
}

Status StateStore::Replay(uint64_t file_size) {
  const std::string log_path = path();
  uint64_t offset = kMagicBytes;
  std::string header;
  std::string payload;
  while (offset < file_size) {
    const uint64_t left = file_size - offset;
    std::string damage;
    if (left < kRecordHeaderBytes) {
      damage = "record header cut short (" + std::to_string(left) + " of 8 bytes)";
    } else {
      if (int err = ReadAll(log_fd_, offset, kRecordHeaderBytes, &header); err) {
        return OsError("cannot read " + log_path, err);
      }
      const auto* h = reinterpret_cast<const uint8_t*>(header.data());
      const uint32_t length = LoadLe32(h);
      const uint32_t crc = LoadLe32(h + 4);
      if (length < kMinPayloadBytes || length > kMaxRecordBytes) {
        damage = "impossible record length " + std::to_string(length);
      } else if (length > left - kRecordHeaderBytes) {
        damage = "record of " + std::to_string(length) + " bytes cut short (" +
                 std::to_string(left - kRecordHeaderBytes) + " present)";
      } else {
        if (int err = ReadAll(log_fd_, offset + kRecordHeaderBytes, length, &payload); err) {
          return OsError("cannot read " + log_path, err);
        }
        const uint32_t actual = Crc32c(payload);
        if (actual != crc) {
          char why[96];
          std::snprintf(why, sizeof(why), "checksum mismatch (stored %08x, computed %08x)", crc,
                        actual);
          damage = why;
        } else {
          // The checksum matches, so these are the bytes that were written:
          // if they do not decode, no crash explains it. Never drop them.
          if (Status s = ApplyPayload(payload, offset); !s) {
            return MakeError(ErrorCode::kFailedPrecondition,
                             log_path + ": corrupt record at offset " + std::to_string(offset) +
                                 ": " + s.error().message);
          }
          offset += kRecordHeaderBytes + length;
          continue;
        }
      }
    }
    // A damaged record. Records are written one after the other, each synced
    // before the next begins, so only the last one can be torn by a crash,
    // and it was never acknowledged. If any valid record follows, the damage
    // is not a torn tail and cutting it away would lose acknowledged changes.
    if (ValidRecordAfter(offset, file_size)) {
      return MakeError(ErrorCode::kFailedPrecondition, log_path + ": corrupt record at offset " +
                                                           std::to_string(offset) + ": " + damage +
                                                           "; valid records follow it");
    }
    if (::ftruncate(log_fd_, static_cast<off_t>(offset)) != 0 || ::fdatasync(log_fd_) != 0) {
      return OsError("cannot truncate " + log_path, errno);
    }
    Log(log_path + ": cut away " + std::to_string(file_size - offset) +
        " bytes of a torn last record at offset " + std::to_string(offset) + " (" + damage +
        "); a crash interrupted its write, so it was never acknowledged");
    break;
  }
  log_end_ = offset;
  return {};
}

bool StateStore::ValidRecordAfter(uint64_t offset, uint64_t file_size) {
  std::string tail;
  if (ReadAll(log_fd_, offset + 1, file_size - offset - 1, &tail) != 0) {
    return true;  // cannot tell: refuse to cut anything
  }
  const auto* p = reinterpret_cast<const uint8_t*>(tail.data());
  for (size_t i = 0; i + kRecordHeaderBytes + kMinPayloadBytes <= tail.size(); ++i) {
    const uint32_t length = LoadLe32(p + i);
    const size_t room = tail.size() - i - kRecordHeaderBytes;
    if (length < kMinPayloadBytes || length > kMaxRecordBytes || length > room) continue;
    const uint8_t* payload = p + i + kRecordHeaderBytes;
    // Cheap filters before the checksum: the payload version and type.
    if (payload[0] != kPayloadVersion ||
        (payload[1] != static_cast<uint8_t>(RecordType::kBatch) &&
         payload[1] != static_cast<uint8_t>(RecordType::kSnapshot))) {
      continue;
    }
    if (Crc32c(std::string_view(reinterpret_cast<const char*>(payload), length)) ==
        LoadLe32(p + i + 4)) {
      return true;
    }
  }
  return false;
}

Status StateStore::ApplyPayload(std::string_view payload, uint64_t offset) {
  ByteReader r(payload, offset + kRecordHeaderBytes);
  uint8_t version = 0;
  uint8_t type = 0;
  if (!r.ReadByte(&version, "payload version") || !r.ReadByte(&type, "record type")) {
    return MakeError(ErrorCode::kInternal, r.error());
  }
  if (version != kPayloadVersion) {
    return MakeError(ErrorCode::kInternal, "unsupported payload version " +
                                               std::to_string(version) + " (this build reads " +
                                               std::to_string(kPayloadVersion) + ")");
  }
  if (type != static_cast<uint8_t>(RecordType::kBatch) &&
      type != static_cast<uint8_t>(RecordType::kSnapshot)) {
    return MakeError(ErrorCode::kInternal, "unknown record type " + std::to_string(type));
  }
  // Decode all of it before applying any of it: one record, one change.
  size_t put_count = 0;
  std::vector<StoredObject> puts;
  std::vector<uint64_t> put_sizes;
  if (r.ReadCount(&put_count, 9, "puts")) {  // a put takes at least 9 bytes
    puts.resize(put_count);
    put_sizes.reserve(put_count);
    for (StoredObject& put : puts) {
      const size_t start = r.position();
      if (!DecodePut(r, &put)) break;
      put_sizes.push_back(r.position() - start);
    }
  }
  size_t delete_count = 0;
  std::vector<ObjectKey> deletes;
  if (r.ReadCount(&delete_count, 3, "deletes")) {
    deletes.resize(delete_count);
    for (ObjectKey& key : deletes) {
      if (!DecodeKey(r, &key)) break;
    }
  }
  if (r.ok() && !r.at_end()) r.Fail("record", "trailing bytes after the deletes");
  if (!r.ok()) return MakeError(ErrorCode::kInternal, r.error());
  Apply(std::move(puts), put_sizes, deletes);
  return {};
}

void StateStore::Apply(std::vector<StoredObject>&& puts, const std::vector<uint64_t>& put_sizes,
                       const std::vector<ObjectKey>& deletes,
                       std::vector<const StoredObject*>* stored) {
  if (stored != nullptr) {
    stored->clear();
    stored->reserve(puts.size());
  }
  for (const ObjectKey& key : deletes) {
    auto it = objects_.find(key);
    if (it == objects_.end()) continue;
    live_bytes_ -= EncodedPutSize(*it);
    objects_.erase(it);
  }
  for (size_t i = 0; i < puts.size(); ++i) {
    StoredObject& put = puts[i];
    const ObjectKeyView key = KeyViewOf(put);
    // Snapshots list keys in order, so replaying one appends at the end: check
    // that first and search only when the key is not past the last one.
    auto it = objects_.end();
    if (!objects_.empty() && !(KeyViewOf(*std::prev(it)) < key)) it = objects_.lower_bound(put);
    if (it != objects_.end() && KeyViewOf(*it) == key) {
      live_bytes_ -= EncodedPutSize(*it);
      ReplaceEntry(it, std::move(put));
    } else {
      it = objects_.emplace_hint(it, std::move(put));
    }
    live_bytes_ += put_sizes[i];
    if (stored != nullptr) stored->push_back(&*it);
  }
}

Status StateStore::Commit(std::vector<StoredObject> puts, std::vector<ObjectKey> deletes,
                          std::vector<const StoredObject*>* stored) {
  if (stored != nullptr) stored->reserve(puts.size());
  auto pending = Write(std::move(puts), std::move(deletes));
  if (!pending) return pending.error();
  Publish(**pending, stored);
  MaybeCompact();
  return {};
}

Result<std::unique_ptr<StateStore::PendingCommit>> StateStore::Write(
    std::vector<StoredObject> puts, std::vector<ObjectKey> deletes) {
  if (!failed_.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "state store failed earlier (" + failed_ + "); restart to replay " + path());
  }
  auto pending = std::make_unique<PendingCommit>();
  if (puts.empty() && deletes.empty()) return pending;

  // A key may appear once per batch: "put and delete X" has no clear meaning.
  // Checked on views of the keys, which copies no names.
  std::vector<KeyView> keys;
  keys.reserve(puts.size() + deletes.size());
  for (const StoredObject& put : puts) {
    const workloads::ObjectMeta& meta = workloads::MetaOf(put.object);
    keys.push_back({static_cast<workloads::Kind>(put.object.index()), meta.ns, meta.name});
  }
  for (const ObjectKey& key : deletes) keys.push_back({key.kind, key.ns, key.name});
  std::sort(keys.begin(), keys.end());
  if (auto dup = std::adjacent_find(keys.begin(), keys.end()); dup != keys.end()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "commit names " + KeyName(*dup) + " more than once in one batch");
  }

  std::string record;
  std::string scratch;
  BeginRecord(&record, RecordType::kBatch);
  ByteWriter w(&record);
  std::vector<uint64_t> put_sizes;
  put_sizes.reserve(puts.size());
  w.PutVarint(puts.size());
  for (const StoredObject& put : puts) {
    const size_t start = record.size();
    if (Status s = EncodePut(put, &record, &scratch); !s) return s.error();
    put_sizes.push_back(record.size() - start);
  }
  w.PutVarint(deletes.size());
  for (const ObjectKey& key : deletes) EncodeKey(w, key);
  if (record.size() - kRecordHeaderBytes > kMaxRecordBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "commit of " + std::to_string(record.size()) +
                                                      " bytes exceeds the record limit of " +
                                                      std::to_string(kMaxRecordBytes));
  }
  FinishRecord(&record);

  // Everything objects() needs for this change is allocated before the record
  // is written (the map entries of new keys, the sizes of what is replaced or
  // deleted), so that nothing can fail between the durable write and the
  // change of objects(): a std::bad_alloc up to here propagates to the caller
  // with the store unchanged, and none can come after the write.
  std::vector<PendingCommit::StagedPut>& staged = pending->staged;
  staged.resize(puts.size());
  pending->erased.reserve(deletes.size());
  ObjectMap scratch_map;  // allocates the entry of a new key, then hands it over
  for (size_t i = 0; i < puts.size(); ++i) {
    PendingCommit::StagedPut& put = staged[i];
    put.position = objects_.lower_bound(puts[i]);
    put.size_change = static_cast<int64_t>(put_sizes[i]);
    if (put.position == objects_.end() || KeyViewOf(*put.position) != KeyViewOf(puts[i])) {
      put.node = scratch_map.extract(scratch_map.insert(std::move(puts[i])).first);
    } else {
      put.size_change -= static_cast<int64_t>(EncodedPutSize(*put.position));
      put.replacement = std::move(puts[i]);
    }
  }
  for (const ObjectKey& key : deletes) {
    auto it = objects_.find(key);
    if (it != objects_.end()) pending->erased.emplace_back(it, EncodedPutSize(*it));
  }

  if (Status s = AppendRecord(record); !s) return s.error();
  return pending;
}

void StateStore::Publish(PendingCommit& pending,
                         std::vector<const StoredObject*>* stored) noexcept {
  // Nothing allocates: node handles move into the map, values are
  // move-assigned, erased entries are freed (`stored` has its capacity).
  if (stored != nullptr) stored->clear();
  for (PendingCommit::StagedPut& put : pending.staged) {
    auto it = put.position;
    if (!put.node.empty()) {
      // The hint is exact unless a batch-mate was inserted there first; then
      // it is only slower.
      it = objects_.insert(it, std::move(put.node));
    } else {
      ReplaceEntry(it, std::move(put.replacement));
    }
    live_bytes_ = static_cast<uint64_t>(static_cast<int64_t>(live_bytes_) + put.size_change);
    if (stored != nullptr) stored->push_back(&*it);
  }
  // Deletes after the puts: a put's position may be an entry deleted here.
  for (const auto& [it, size] : pending.erased) {
    live_bytes_ -= size;
    objects_.erase(it);
  }
  pending.staged.clear();
  pending.erased.clear();
}

void StateStore::MaybeCompact() {
  if (log_end_ > std::max(2 * live_bytes_, options_.compaction_min_bytes) &&
      log_end_ >= compaction_retry_at_) {
    // The change is durable already; a failed compaction only leaves a longer
    // log, so it is reported but does not fail the commit. Out of memory it
    // fails like any other compaction.
    Status compacted;
    try {
      compacted = Compact();
    } catch (const std::bad_alloc&) {
      compacted = MakeError(ErrorCode::kResourceExhausted, "out of memory");
    }
    if (!compacted) {
      compaction_retry_at_ = log_end_ + options_.compaction_min_bytes;
      Log("compaction of " + path() + " failed: " + compacted.error().message);
    }
  }
}

Status StateStore::AppendRecord(const std::string& record) {
  const std::string log_path = path();
  if (int err = WriteAll(log_fd_, record, log_end_); err) {
    // Leave no half record behind (a later record after it would make it
    // look like damage in the middle of the log).
    if (::ftruncate(log_fd_, static_cast<off_t>(log_end_)) != 0) {
      failed_ = "cannot cut " + log_path + " back after a failed write: " + std::strerror(errno);
    }
    return OsError(log_path + ": write failed", err);
  }
  if (::fdatasync(log_fd_) != 0) {
    const int err = errno;
    (void)::ftruncate(log_fd_, static_cast<off_t>(log_end_));
    failed_ = log_path + ": fdatasync failed: " + std::strerror(err);
    return OsError(log_path + ": fdatasync failed", err);
  }
  log_end_ += record.size();
  return {};
}

Status StateStore::Compact() {
  if (!failed_.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "state store failed earlier (" + failed_ + ")");
  }
  const std::string temp = dir_ + "/" + kTempFileName;
  // A leftover (a failed earlier compaction, or a link planted under the
  // name) goes first; whatever cannot be removed (a directory) fails the
  // exclusive create below. The temp file is always a new one.
  (void)::unlink(temp.c_str());
  const int fd = ::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return OpenError("cannot create " + temp, temp, errno);
  auto fail = [&](const std::string& what, int err) -> Status {
    ::close(fd);
    ::unlink(temp.c_str());
    return OsError(what, err);
  };

  uint64_t end = 0;
  if (int err = WriteAll(fd, std::string_view(kMagic, kMagicBytes), 0); err) {
    return fail("cannot write " + temp, err);
  }
  end = kMagicBytes;

  // Snapshot records of about kSnapshotChunkBytes each, all puts. The temp
  // file becomes the log only when complete, so chunks need no atomicity.
  std::string record;
  std::string puts;
  std::string scratch;
  size_t count = 0;
  auto flush = [&]() -> int {
    BeginRecord(&record, RecordType::kSnapshot);
    ByteWriter w(&record);
    w.PutVarint(count);
    record += puts;
    w.PutVarint(0);  // no deletes
    FinishRecord(&record);
    const int err = WriteAll(fd, record, end);
    end += record.size();
    puts.clear();
    count = 0;
    return err;
  };
  try {
    for (const StoredObject& stored : objects_) {
      (void)EncodePut(stored, &puts, &scratch);  // encodable: it was committed
      ++count;
      if (puts.size() >= kSnapshotChunkBytes) {
        if (int err = flush(); err) return fail("cannot write " + temp, err);
      }
    }
    if (count > 0) {
      if (int err = flush(); err) return fail("cannot write " + temp, err);
    }
  } catch (const std::bad_alloc&) {
    // Out of memory for a chunk: the old log stays, the temp file goes.
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  if (::fsync(fd) != 0) return fail("cannot sync " + temp, errno);
  if (::rename(temp.c_str(), path().c_str()) != 0) {
    return fail("cannot rename " + temp + " to " + path(), errno);
  }
  // From here the directory names the new file: appends must go to it.
  ::close(log_fd_);
  log_fd_ = fd;
  log_end_ = end;
  if (int err = SyncDirectory(dir_); err) {
    // The rename may not survive a power loss, and later commits would go to
    // a file the directory might forget: stop acknowledging.
    failed_ = "cannot sync " + dir_ + " after compaction: " + std::strerror(err);
    return OsError("cannot sync " + dir_ + " after compaction", err);
  }
  return {};
}

}  // namespace podless::runtime
