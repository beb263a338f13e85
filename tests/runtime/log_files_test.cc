#include "runtime/process/log_files.h"

#include <doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/testing/temp_dir.h"

namespace podless::runtime {
namespace {

struct TempDir : podless::testing::TempDir {
  TempDir() : podless::testing::TempDir("podless-logs") {}
};

uint64_t DirectoryBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) total += entry.file_size();
  return total;
}

TEST_CASE("LogFile: appended output reads back in order") {
  TempDir dir;
  auto log = LogFile::Open(dir.path() + "/ns/web-0", 1 << 20);
  REQUIRE(log.ok());
  (*log)->Append("one\n");
  (*log)->Append("two\n");
  auto text = ReadLog(dir.path() + "/ns/web-0", false, -1);
  REQUIRE(text.ok());
  CHECK(*text == "one\ntwo\n");
}

TEST_CASE("LogFile: rotation caps the bytes on disk and keeps the newest output") {
  TempDir dir;
  auto log = LogFile::Open(dir.path(), 1000);
  REQUIRE(log.ok());
  for (int i = 0; i < 500; ++i) (*log)->Append("line " + std::to_string(i) + "\n");
  CHECK(DirectoryBytes(dir.path()) <= 2000);
  auto text = ReadLog(dir.path(), false, -1);
  REQUIRE(text.ok());
  CHECK(text->find("line 499\n") != std::string::npos);
  CHECK(text->find("line 0\n") == std::string::npos);
  // The rotated part is still read: more than one file's worth of stamped lines.
  CHECK(ReadLog(dir.path(), false, -1, LogView{true, 0})->size() >= 1000);
}

TEST_CASE("LogFile: a new run moves the current output to previous") {
  TempDir dir;
  auto log = LogFile::Open(dir.path(), 1 << 20);
  REQUIRE(log.ok());
  CHECK(ReadLog(dir.path(), true, -1).error().code == ErrorCode::kNotFound);
  (*log)->StartRun();  // the first run has no previous one
  CHECK(ReadLog(dir.path(), true, -1).error().code == ErrorCode::kNotFound);
  (*log)->Append("first run\n");
  (*log)->StartRun();
  (*log)->Append("second run\n");
  CHECK(*ReadLog(dir.path(), true, -1) == "first run\n");
  CHECK(*ReadLog(dir.path(), false, -1) == "second run\n");
  (*log)->StartRun();
  CHECK(*ReadLog(dir.path(), true, -1) == "second run\n");
  CHECK(*ReadLog(dir.path(), false, -1) == "");
}

TEST_CASE("LogFile: tail returns only the last lines") {
  TempDir dir;
  auto log = LogFile::Open(dir.path(), 1 << 20);
  REQUIRE(log.ok());
  (*log)->Append("a\nb\nc\nd\n");
  CHECK(*ReadLog(dir.path(), false, 2) == "c\nd\n");
  CHECK(*ReadLog(dir.path(), false, 0) == "");
  CHECK(*ReadLog(dir.path(), false, 10) == "a\nb\nc\nd\n");
  CHECK(TailLines("x\ny", 1) == "y");
  CHECK(TailLines("x\ny\n", 1) == "y\n");
}

TEST_CASE("LogFile: followers see new output until they leave") {
  TempDir dir;
  auto log = LogFile::Open(dir.path(), 1 << 20);
  REQUIRE(log.ok());
  (*log)->Append("before\n");
  std::string seen;
  LogStreamFilter filter({});
  uint64_t id = (*log)->AddFollower(
      [&seen, &filter](std::string_view bytes) { seen.append(filter.Feed(bytes)); });
  (*log)->Append("during\n");
  (*log)->RemoveFollower(id);
  (*log)->Append("after\n");
  CHECK(seen == "during\n");
}

TEST_CASE("LogFile: every line is stamped with the time it was read; readers choose") {
  TempDir dir;
  auto log = LogFile::Open(dir.path(), 1 << 20);
  REQUIRE(log.ok());
  const int64_t t0 = 1'765'000'000'000'000'000;  // 2025-12-06T05:46:40Z
  (*log)->Append("one\ntw", t0);
  (*log)->Append("o\nthr", t0 + 5'000'000'000);  // "o" ends line 2, stamped t0
  (*log)->Append("ee\n", t0 + 9'000'000'000);
  CHECK(*ReadLog(dir.path(), false, -1) == "one\ntwo\nthree\n");
  CHECK(*ReadLog(dir.path(), false, -1, {true, 0}) ==
        "2025-12-06T05:46:40.000000000Z one\n"
        "2025-12-06T05:46:40.000000000Z two\n"
        "2025-12-06T05:46:45.000000000Z three\n");
  // --since keeps lines stamped at or after it; --tail counts what is left.
  CHECK(*ReadLog(dir.path(), false, -1, {false, t0 + 1}) == "three\n");
  CHECK(*ReadLog(dir.path(), false, 1, {false, t0}) == "three\n");
  int64_t parsed = 0;
  REQUIRE(ParseLogStamp(LogStamp(t0 + 123), &parsed));
  CHECK(parsed == t0 + 123);
  CHECK_FALSE(ParseLogStamp("2025-12-06 05:46:40 not a stamp at all", &parsed));
}

TEST_CASE("LogStreamFilter: the same in any pieces; unstamped lines pass as they are") {
  const std::string stamped = LogStamp(2'000'000'000'000'000'000) + "a\n" + "legacy line\n" +
                              LogStamp(3'000'000'000'000'000'000) + "b\n" + "x";
  for (size_t piece = 1; piece <= stamped.size(); ++piece) {
    LogStreamFilter filter({false, 2'500'000'000'000'000'000});
    std::string out;
    for (size_t at = 0; at < stamped.size(); at += piece) {
      out += filter.Feed(std::string_view(stamped).substr(at, piece));
    }
    out += filter.Finish();
    CHECK_MESSAGE(out == "legacy line\nb\nx", "pieces of " << piece);
  }
}

TEST_CASE("LogFile: an existing log is continued after reopening") {
  TempDir dir;
  {
    auto log = LogFile::Open(dir.path(), 1 << 20);
    REQUIRE(log.ok());
    (*log)->Append("old agent\n");
  }
  auto log = LogFile::Open(dir.path(), 1 << 20);
  REQUIRE(log.ok());
  (*log)->Append("new agent\n");
  CHECK(*ReadLog(dir.path(), false, -1) == "old agent\nnew agent\n");
}

}  // namespace
}  // namespace podless::runtime
