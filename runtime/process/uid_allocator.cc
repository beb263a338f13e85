#include "runtime/process/uid_allocator.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <limits>
#include <vector>

#include "workloads/pem_file.h"

namespace podless::runtime {
namespace {

constexpr uint32_t kNoUid = std::numeric_limits<uint32_t>::max();  // (uid_t)-1
// The 16-bit (uid_t)-1: old interfaces and some tools read it as "no uid".
constexpr uint32_t kNoUid16 = 65535;
constexpr size_t kMaxKeyBytes = 255;
// A file of tens of thousands of allocations is a few MiB.
constexpr size_t kMaxFileBytes = 64 << 20;
constexpr std::string_view kCursor = "cursor";
// NSS lookups one Acquire makes at most: a huge range whose lookups all fail
// (a directory server down) must not keep the agent's loop for hours.
constexpr uint32_t kMaxSystemChecks = 1 << 16;

std::string RangeText(uint32_t first, uint32_t last) {
  return std::to_string(first) + "-" + std::to_string(last);
}

// A whole decimal number (no sign, no spaces), or nullopt.
std::optional<uint32_t> ParseUid(std::string_view text) {
  uint32_t value = 0;
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Why [first, last] cannot be a workload uid range, or "" if it can.
std::string RangeProblem(uint32_t first, uint32_t last) {
  if (first == 0) return "it includes uid 0 (root)";
  if (first > last) return "the first uid is greater than the last";
  if (last == kNoUid) return "it includes 4294967295, (uid_t)-1, which is not a uid";
  return {};
}

bool ValidKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) return false;
  for (char c : key) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

// NSS lookups size their buffer themselves; this grows it on ERANGE.
template <typename Entry, typename Lookup>
bool SystemHas(uint32_t id, Lookup lookup) {
  std::vector<char> buffer(1024);
  for (;;) {
    Entry entry;
    Entry* found = nullptr;
    int rc = lookup(id, &entry, buffer.data(), buffer.size(), &found);
    if (rc == ERANGE && buffer.size() < (1u << 20)) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (rc == EINTR) continue;
    if (found != nullptr) return true;
    // "Not found" comes back as 0 or, from some NSS modules, as one of these.
    // Any other error (EIO, ENOMEM, ...) means we cannot tell: count the id as
    // taken rather than risk sharing it with a system account.
    return !(rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM);
  }
}

bool UsedBySystem(uint32_t uid) {
  if (uid == kNoUid16) return true;
  return SystemHas<passwd>(uid, ::getpwuid_r) || SystemHas<group>(uid, ::getgrgid_r);
}

Error Corrupt(const std::string& path, size_t line, const std::string& why) {
  return MakeError(ErrorCode::kFailedPrecondition,
                   path + ":" + std::to_string(line) + ": " + why +
                       " (the workload uid file is corrupt; fix or remove the line)");
}

}  // namespace

Result<std::pair<uint32_t, uint32_t>> ParseUidRange(std::string_view text) {
  auto refuse = [&](const std::string& why) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "--workload-uids \"" + std::string(text) + "\": " + why);
  };
  size_t dash = text.find('-');
  if (dash == std::string_view::npos) {
    return refuse("expected FIRST-LAST, e.g. " +
                  RangeText(kDefaultWorkloadUidFirst, kDefaultWorkloadUidLast));
  }
  std::optional<uint32_t> first = ParseUid(text.substr(0, dash));
  std::optional<uint32_t> last = ParseUid(text.substr(dash + 1));
  if (!first || !last) {
    return refuse("FIRST and LAST must be whole numbers below 4294967296, e.g. " +
                  RangeText(kDefaultWorkloadUidFirst, kDefaultWorkloadUidLast));
  }
  if (std::string why = RangeProblem(*first, *last); !why.empty()) return refuse(why);
  return std::pair{*first, *last};
}

Result<UidAllocator> UidAllocator::Open(std::string path, uint32_t first, uint32_t last) {
  if (std::string why = RangeProblem(first, last); !why.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "workload uid range " + RangeText(first, last) + ": " + why);
  }
  UidAllocator allocator(std::move(path), first, last);
  if (Status loaded = allocator.Load(); !loaded.ok()) return loaded.error();
  return allocator;
}

Status UidAllocator::Load() {
  Result<std::string> text = workloads::ReadSmallFile(path_, kMaxFileBytes);
  if (!text.ok()) {
    if (text.error().code == ErrorCode::kNotFound) return {};
    return text.error();
  }
  std::string_view rest = *text;
  bool have_cursor = false;
  for (size_t number = 1; !rest.empty(); ++number) {
    size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    if (line.empty() || line.front() == '#') continue;

    size_t space = line.find(' ');
    if (space == std::string_view::npos) {
      return Corrupt(path_, number, "expected \"<uid> <key>\" or \"cursor <uid>\"");
    }
    std::string_view head = line.substr(0, space);
    std::string_view tail = line.substr(space + 1);
    if (head == kCursor) {
      std::optional<uint32_t> cursor = ParseUid(tail);
      if (!cursor) return Corrupt(path_, number, "the cursor is not a uid");
      if (have_cursor) return Corrupt(path_, number, "a second cursor line");
      have_cursor = true;
      // A cursor outside a changed range restarts at its beginning.
      cursor_ = *cursor >= first_ && *cursor <= last_ ? *cursor : first_;
      continue;
    }
    std::optional<uint32_t> uid = ParseUid(head);
    if (!uid || *uid == 0 || *uid == kNoUid) {
      return Corrupt(path_, number, "\"" + std::string(head) + "\" is not a workload uid");
    }
    if (!ValidKey(tail)) {
      return Corrupt(path_, number, "the key is empty, too long or has spaces");
    }
    std::string key(tail);
    if (by_key_.contains(key)) return Corrupt(path_, number, "a second uid for " + key);
    if (auto held = by_uid_.find(*uid); held != by_uid_.end()) {
      return Corrupt(path_, number,
                     "uid " + std::to_string(*uid) + " is already held by " + held->second);
    }
    if (*uid < first_ || *uid > last_) continue;  // the operator moved the range away
    by_key_.emplace(key, *uid);
    by_uid_.emplace(*uid, std::move(key));
  }
  return {};
}

Status UidAllocator::Store() const {
  std::string text = "# podless workload uids: \"<uid> <key>\", and the next uid to try\n";
  text += std::string(kCursor) + " " + std::to_string(cursor_) + "\n";
  for (const auto& [uid, key] : by_uid_) text += std::to_string(uid) + " " + key + "\n";
  return workloads::WriteFileAtomically(path_, text, 0600);
}

std::optional<uint32_t> UidAllocator::NextFree() const {
  uint32_t uid = cursor_;
  // Counted in uint64_t: the range may hold every uid but two.
  const uint64_t size = uint64_t{last_} - first_ + 1;
  uint32_t checks = 0;
  for (uint64_t tried = 0; tried < size && checks < kMaxSystemChecks; ++tried) {
    if (!by_uid_.contains(uid)) {
      if (!UsedBySystem(uid)) return uid;
      ++checks;
    }
    uid = uid == last_ ? first_ : uid + 1;
  }
  return std::nullopt;
}

Result<uint32_t> UidAllocator::Acquire(const std::string& key) {
  if (std::optional<uint32_t> uid = Find(key)) return *uid;
  if (!ValidKey(key)) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "workload uid key \"" + key + "\": must be 1 to 255 printable characters without spaces");
  }
  std::optional<uint32_t> uid = NextFree();
  if (!uid) {
    const uint64_t size = uint64_t{last_} - first_ + 1;
    return MakeError(ErrorCode::kResourceExhausted,
                     "no free uid for " + key + " in the workload uid range " +
                         RangeText(first_, last_) + " (" + std::to_string(size) + " uids, " +
                         std::to_string(by_uid_.size()) +
                         " held by workloads, the others checked have passwd or group entries); "
                         "widen it with --workload-uids FIRST-LAST");
  }
  const uint32_t old_cursor = cursor_;
  cursor_ = *uid == last_ ? first_ : *uid + 1;
  by_key_.emplace(key, *uid);
  by_uid_.emplace(*uid, key);
  if (Status stored = Store(); !stored.ok()) {
    // Not on disk, so not handed out: a restart would not know it.
    by_key_.erase(key);
    by_uid_.erase(*uid);
    cursor_ = old_cursor;
    return stored.error();
  }
  return *uid;
}

Status UidAllocator::Release(const std::string& key) {
  auto held = by_key_.find(key);
  if (held == by_key_.end()) return {};
  const uint32_t uid = held->second;
  by_key_.erase(held);
  by_uid_.erase(uid);
  if (Status stored = Store(); !stored.ok()) {
    by_key_.emplace(key, uid);
    by_uid_.emplace(uid, key);
    return stored;
  }
  return {};
}

std::optional<uint32_t> UidAllocator::Find(const std::string& key) const {
  auto held = by_key_.find(key);
  if (held == by_key_.end()) return std::nullopt;
  return held->second;
}

}  // namespace podless::runtime
