// The files that hold secrets: written without following links, and read
// only from places and files no one else controls.
#include "workloads/pem_file.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

using namespace podless::workloads;
using podless::ErrorCode;

namespace {

struct TempDir : podless::testing::TempDir {
  TempDir() : podless::testing::TempDir("podless-pem") {}
};

void WriteText(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  REQUIRE(chmod(path.c_str(), mode) == 0);
}

using podless::testing::ReadFile;

}  // namespace

TEST_CASE("WriteFileAtomically: a symbolic link at the path is replaced, not written through") {
  TempDir dir;
  WriteText(dir / "victim", "the victim's bytes", 0644);
  std::filesystem::create_symlink(dir / "victim", dir / "file");
  REQUIRE(WriteFileAtomically(dir / "file", "new contents").ok());
  CHECK(ReadFile(dir / "victim") == "the victim's bytes");
  CHECK_FALSE(std::filesystem::is_symlink(dir / "file"));
  CHECK(ReadFile(dir / "file") == "new contents");
  struct stat st;
  REQUIRE(stat((dir / "file").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  // No temporary file is left: the directory holds the two files only.
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  CHECK(entries == 2);
}

TEST_CASE("CheckPrivateDirectory: the owner's 0700 and 0711 pass; group or other write does not") {
  TempDir dir;
  for (mode_t mode : {0700, 0711, 0755, 0500}) {
    REQUIRE(chmod(dir.path().c_str(), mode) == 0);
    CHECK_MESSAGE(CheckPrivateDirectory(dir.path(), "state dir").ok(), mode);
  }
  for (mode_t mode : {0777, 0770, 0702, 01777}) {
    REQUIRE(chmod(dir.path().c_str(), mode) == 0);
    auto checked = CheckPrivateDirectory(dir.path(), "state dir");
    REQUIRE_FALSE(checked.ok());
    CHECK(checked.error().code == ErrorCode::kFailedPrecondition);
    char text[8];
    snprintf(text, sizeof(text), "%04o", mode);
    CHECK_MESSAGE(
        checked.error().message.find(std::string("with mode ") + text) != std::string::npos,
        checked.error().message);
  }
  REQUIRE(chmod(dir.path().c_str(), 0700) == 0);
  CHECK(CheckPrivateDirectory(dir / "missing", "state dir").error().code == ErrorCode::kNotFound);
  WriteText(dir / "file", "", 0600);
  CHECK(CheckPrivateDirectory(dir / "file", "state dir").error().message.find("not a directory") !=
        std::string::npos);
}

TEST_CASE("CheckPrivateDirectory: a directory another uid owns is refused, naming the owner") {
  if (geteuid() != 0) return;  // only root can give a directory away
  TempDir dir;
  REQUIRE(chown(dir.path().c_str(), 65534, 65534) == 0);
  auto checked = CheckPrivateDirectory(dir.path(), "state dir");
  REQUIRE_FALSE(checked.ok());
  INFO(checked.error().message);
  CHECK(checked.error().message.find("state dir " + dir.path() + " is owned by uid 65534") == 0);
  CHECK(checked.error().message.find("its own uid 0") != std::string::npos);
}

TEST_CASE("ReadPrivateKeyText: only the owner's private regular file, links as asked") {
  TempDir dir;
  WriteText(dir / "key", "KEY", 0600);
  CHECK(*ReadPrivateKeyText(dir / "key") == "KEY");
  REQUIRE(chmod((dir / "key").c_str(), 0400) == 0);
  CHECK(*ReadPrivateKeyText(dir / "key") == "KEY");
  for (mode_t mode : {0644, 0640, 0604, 0620, 0602}) {
    REQUIRE(chmod((dir / "key").c_str(), mode) == 0);
    auto text = ReadPrivateKeyText(dir / "key");
    REQUIRE_FALSE(text.ok());
    CHECK(text.error().message.find("private key " + (dir / "key")) == 0);
  }
  REQUIRE(chmod((dir / "key").c_str(), 0600) == 0);
  std::filesystem::create_symlink(dir / "key", dir / "link");
  CHECK(*ReadPrivateKeyText(dir / "link", Links::kFollow) == "KEY");
  auto refused = ReadPrivateKeyText(dir / "link", Links::kRefuse);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find(dir / "link" + " is a symbolic link") == 0);
  CHECK(ReadPrivateKeyText(dir / "missing").error().code == ErrorCode::kNotFound);
  // A FIFO planted as the key neither hangs the reader nor passes.
  REQUIRE(mkfifo((dir / "fifo").c_str(), 0600) == 0);
  auto fifo = ReadPrivateKeyText(dir / "fifo");
  REQUIRE_FALSE(fifo.ok());
  CHECK(fifo.error().message.find("is not a regular file") != std::string::npos);
}
