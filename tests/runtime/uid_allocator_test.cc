#include "runtime/process/uid_allocator.h"

#include <doctest.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

namespace podless::runtime {
namespace {

struct TempDir : podless::testing::TempDir {
  TempDir() : podless::testing::TempDir("podless-uids") {}
  std::string file() const { return *this / "uids"; }
};

bool SystemKnows(uint32_t id) { return ::getpwuid(id) != nullptr || ::getgrgid(id) != nullptr; }

// A few uids of the default range that no system account has, or 0.
uint32_t FreeRangeStart(uint32_t count) {
  for (uint32_t first = kDefaultWorkloadUidFirst; first + count - 1 <= kDefaultWorkloadUidLast;
       ++first) {
    bool free = true;
    for (uint32_t uid = first; uid < first + count && free; ++uid) free = !SystemKnows(uid);
    if (free) return first;
  }
  return 0;
}

using podless::testing::WriteFile;

TEST_CASE("UidAllocator: the same key gets the same uid, distinct keys distinct uids") {
  TempDir dir;
  auto uids = UidAllocator::Open(dir.file(), kDefaultWorkloadUidFirst, kDefaultWorkloadUidLast);
  REQUIRE(uids.ok());
  auto web = uids->Acquire("default/web");
  auto db = uids->Acquire("default/db");
  REQUIRE(web.ok());
  REQUIRE(db.ok());
  CHECK(*web != *db);
  CHECK(*web >= kDefaultWorkloadUidFirst);
  CHECK(*web <= kDefaultWorkloadUidLast);
  auto again = uids->Acquire("default/web");
  REQUIRE(again.ok());
  CHECK(*again == *web);
  CHECK(uids->Find("default/web") == *web);
  CHECK(uids->Find("default/none") == std::nullopt);
}

TEST_CASE("UidAllocator: allocations and the cursor survive a reopen") {
  TempDir dir;
  const uint32_t first = FreeRangeStart(4);
  REQUIRE(first != 0);
  uint32_t web = 0;
  {
    auto uids = UidAllocator::Open(dir.file(), first, first + 3);
    REQUIRE(uids.ok());
    web = uids->Acquire("default/web").value();
    REQUIRE(uids->Acquire("default/old").ok());
    REQUIRE(uids->Release("default/old").ok());
  }
  auto uids = UidAllocator::Open(dir.file(), first, first + 3);
  REQUIRE(uids.ok());
  CHECK(uids->Find("default/web") == web);
  CHECK(uids->Find("default/old") == std::nullopt);
  // The cursor came back too: the released uid is not the next one.
  auto next = uids->Acquire("default/next");
  REQUIRE(next.ok());
  CHECK(*next == first + 2);
}

TEST_CASE("UidAllocator: a released uid is handed out again only after the never-used ones") {
  TempDir dir;
  const uint32_t first = FreeRangeStart(3);
  REQUIRE(first != 0);
  auto uids = UidAllocator::Open(dir.file(), first, first + 2);
  REQUIRE(uids.ok());
  CHECK(uids->Acquire("ns/a").value() == first);
  CHECK(uids->Acquire("ns/b").value() == first + 1);
  REQUIRE(uids->Release("ns/a").ok());
  CHECK(uids->Acquire("ns/c").value() == first + 2);  // never used, though first is free
  CHECK(uids->Acquire("ns/d").value() == first);      // only now
  CHECK(uids->Release("ns/unknown").ok());            // nothing to release is fine
}

TEST_CASE("UidAllocator: skips uids and gids the system already has") {
  if (::getpwuid(65534) == nullptr || SystemKnows(65536)) {
    MESSAGE("skipped: needs uid 65534 (nobody) in the passwd database and 65536 unused");
    return;
  }
  TempDir dir;
  // 65534 is nobody's, 65535 is the 16-bit (uid_t)-1: neither is handed out.
  auto uids = UidAllocator::Open(dir.file(), 65534, 65536);
  REQUIRE(uids.ok());
  CHECK(uids->Acquire("ns/a").value() == 65536);
  auto full = uids->Acquire("ns/b");
  REQUIRE_FALSE(full.ok());
  CHECK(full.error().code == ErrorCode::kResourceExhausted);
}

TEST_CASE("UidAllocator: an exhausted range names itself and the flag that widens it") {
  TempDir dir;
  const uint32_t first = FreeRangeStart(2);
  REQUIRE(first != 0);
  auto uids = UidAllocator::Open(dir.file(), first, first + 1);
  REQUIRE(uids.ok());
  REQUIRE(uids->Acquire("ns/a").ok());
  REQUIRE(uids->Acquire("ns/b").ok());
  auto full = uids->Acquire("ns/c");
  REQUIRE_FALSE(full.ok());
  CHECK(full.error().code == ErrorCode::kResourceExhausted);
  const std::string& message = full.error().message;
  CHECK(message.find(std::to_string(first) + "-" + std::to_string(first + 1)) != std::string::npos);
  CHECK(message.find("--workload-uids FIRST-LAST") != std::string::npos);
  CHECK(message.find("ns/c") != std::string::npos);
}

TEST_CASE("UidAllocator: a corrupt file is refused, naming the file and the line") {
  TempDir dir;
  WriteFile(dir.file(), "# comment\ncursor 61185\n61184 default/web\nbanana\n");
  auto uids = UidAllocator::Open(dir.file(), kDefaultWorkloadUidFirst, kDefaultWorkloadUidLast);
  REQUIRE_FALSE(uids.ok());
  CHECK(uids.error().message.find(dir.file() + ":4:") != std::string::npos);

  WriteFile(dir.file(), "61184 default/web\n61184 default/db\n");
  uids = UidAllocator::Open(dir.file(), kDefaultWorkloadUidFirst, kDefaultWorkloadUidLast);
  REQUIRE_FALSE(uids.ok());
  CHECK(uids.error().message.find(dir.file() + ":2:") != std::string::npos);
  CHECK(uids.error().message.find("default/web") != std::string::npos);

  WriteFile(dir.file(), "61184 default/web\ncursor x\n");
  uids = UidAllocator::Open(dir.file(), kDefaultWorkloadUidFirst, kDefaultWorkloadUidLast);
  REQUIRE_FALSE(uids.ok());
  CHECK(uids.error().message.find(dir.file() + ":2:") != std::string::npos);
}

TEST_CASE("UidAllocator: allocations outside a narrowed range are dropped at Open") {
  TempDir dir;
  WriteFile(dir.file(), "cursor 61190\n61184 ns/low\n65000 ns/high\n");
  auto uids = UidAllocator::Open(dir.file(), 65000, 65100);
  REQUIRE(uids.ok());
  CHECK(uids->Find("ns/low") == std::nullopt);
  CHECK(uids->Find("ns/high") == 65000u);
}

TEST_CASE("UidAllocator: the file is private (mode 0600)") {
  TempDir dir;
  auto uids = UidAllocator::Open(dir.file(), kDefaultWorkloadUidFirst, kDefaultWorkloadUidLast);
  REQUIRE(uids.ok());
  REQUIRE(uids->Acquire("ns/a").ok());
  struct stat st;
  REQUIRE(::stat(dir.file().c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
}

TEST_CASE("UidAllocator: an allocation that cannot be written is not made") {
  TempDir dir;
  auto uids = UidAllocator::Open(dir.path() + "/missing/uids", kDefaultWorkloadUidFirst,
                                 kDefaultWorkloadUidLast);
  REQUIRE(uids.ok());  // an absent file is no allocation yet
  auto uid = uids->Acquire("ns/a");
  REQUIRE_FALSE(uid.ok());
  CHECK(uids->Find("ns/a") == std::nullopt);
}

TEST_CASE("UidAllocator: refuses keys that the file could not hold") {
  TempDir dir;
  auto uids = UidAllocator::Open(dir.file(), kDefaultWorkloadUidFirst, kDefaultWorkloadUidLast);
  REQUIRE(uids.ok());
  CHECK(uids->Acquire("").error().code == ErrorCode::kInvalidArgument);
  CHECK(uids->Acquire("ns/a b").error().code == ErrorCode::kInvalidArgument);
  CHECK(uids->Acquire("ns/a\nb").error().code == ErrorCode::kInvalidArgument);
  CHECK(uids->Acquire(std::string(256, 'x')).error().code == ErrorCode::kInvalidArgument);
}

TEST_CASE("ParseUidRange: accepts FIRST-LAST and refuses ranges that are not workload uids") {
  auto range = ParseUidRange("61184-65519");
  REQUIRE(range.ok());
  CHECK(range->first == 61184u);
  CHECK(range->second == 65519u);
  CHECK(ParseUidRange("1000-1000").ok());

  auto fails_with = [](std::string_view text, std::string_view words) {
    auto parsed = ParseUidRange(text);
    if (parsed.ok()) return false;
    return parsed.error().code == ErrorCode::kInvalidArgument &&
           parsed.error().message.find(words) != std::string::npos;
  };
  CHECK(fails_with("0-100", "uid 0"));
  CHECK(fails_with("200-100", "greater than"));
  CHECK(fails_with("1-4294967295", "4294967295"));
  CHECK(fails_with("1-4294967296", "whole numbers"));
  CHECK(fails_with("61184", "FIRST-LAST"));
  CHECK(fails_with("", "FIRST-LAST"));
  CHECK(fails_with("a-b", "whole numbers"));
  CHECK(fails_with("-5-10", "whole numbers"));
  CHECK(fails_with("5--10", "whole numbers"));
  CHECK(fails_with(" 5-10", "whole numbers"));

  TempDir dir;
  CHECK_FALSE(UidAllocator::Open(dir.file(), 0, 10).ok());
}

}  // namespace
}  // namespace podless::runtime
