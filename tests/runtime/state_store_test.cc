#include "runtime/state/state_store.h"

#include <doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"
#include "workloads/object_codec.h"

namespace podless::runtime {
namespace {

using namespace std::literals;
using workloads::Kind;
using workloads::ObjectKey;

// A fresh directory under the system temp dir, removed with everything in it.
struct TempDir : podless::testing::TempDir {
  TempDir() : podless::testing::TempDir("podless-store") {}
  std::string state() const { return *this / "state"; }
};

using podless::testing::ReadFile;
using podless::testing::WriteFile;

uint64_t FileSize(const std::string& path) { return std::filesystem::file_size(path); }

StoredObject MakeWorkload(const std::string& name, uint32_t replicas, uint32_t first_address,
                          uint64_t generation) {
  workloads::Workload w;
  w.metadata.name = name;
  w.metadata.ns = "shop";
  w.metadata.labels = {{"app", name}};
  w.spec.replicas = replicas;
  w.spec.ports = {{"http", 8080, workloads::Protocol::kHTTP}};
  w.spec.app = workloads::StaticApp{200, "ok", {{"x", "y"}}};
  StoredObject stored;
  stored.object = w;
  for (uint32_t i = 0; i < replicas; ++i) stored.addresses.push_back(first_address + i);
  stored.secret = "secret-of-" + name;
  stored.generation = generation;
  return stored;
}

StoredObject MakeService(const std::string& name, uint32_t vip, uint64_t generation) {
  workloads::Service s;
  s.metadata.name = name;
  s.metadata.ns = "shop";
  s.selector = {{"app", name}};
  s.ports = {{"http", 80, workloads::PortRef{0, "http"}, workloads::Protocol::kHTTP}};
  return StoredObject{s, {vip}, "", generation};
}

StoredObject MakePolicy(const std::string& name, uint64_t generation) {
  workloads::AuthorizationPolicy p;
  p.metadata.name = name;
  p.metadata.ns = "shop";
  p.action = workloads::PolicyAction::kDeny;
  p.rules = {workloads::PolicyRule{{workloads::PolicySource{{"spiffe://x/ns/a/sa/b"}, {}, {}, {}}},
                                   {workloads::PolicyOperation{{22}, {}}}}};
  return StoredObject{p, {}, "", generation};
}

ObjectKey KeyOf(const StoredObject& stored) { return workloads::KeyOf(stored.object); }

// An expected state: put (insert or replace), erase, and the entry of a key.
void Put(ObjectMap& objects, const StoredObject& put) {
  objects.erase(put);
  objects.insert(put);
}
void Erase(ObjectMap& objects, const ObjectKey& key) {
  if (auto it = objects.find(key); it != objects.end()) objects.erase(it);
}
const StoredObject& At(const ObjectMap& objects, const ObjectKey& key) {
  auto it = objects.find(key);
  REQUIRE(it != objects.end());
  return *it;
}

// Options that collect what the store logs instead of printing it.
StateStore::Options Quiet(std::vector<std::string>* log) {
  StateStore::Options options;
  options.log = [log](std::string_view line) { log->emplace_back(line); };
  return options;
}

StateStorePtr MustOpen(const std::string& dir, StateStore::Options options = {}) {
  if (!options.log) options.log = [](std::string_view) {};
  Result<StateStorePtr> store = StateStore::Open(dir, std::move(options));
  REQUIRE_MESSAGE(store.ok(), store.error().message);
  return std::move(store).value();
}

TEST_CASE("Crc32c: matches the standard check value") {
  CHECK(Crc32c("123456789") == 0xE3069283u);
  CHECK(Crc32c("") == 0u);
  // Longer than one 8-byte step, and not a multiple of it.
  const std::string text = "The quick brown fox jumps over the lazy dog";
  CHECK(Crc32c(text) == 0x22620404u);
}

TEST_CASE("StateStore: a missing state dir is created and starts empty") {
  TempDir tmp;
  const std::string dir = tmp.path() + "/a/b/state";
  StateStorePtr store = MustOpen(dir);
  CHECK(store->objects().empty());
  CHECK(store->path() == dir + "/state.log");
  CHECK(FileSize(store->path()) == store->log_bytes());
  struct stat st;
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
}

TEST_CASE(
    "StateStore: committed objects come back after reopen with addresses, secret and "
    "generation") {
  TempDir tmp;
  ObjectMap expected;
  {
    StateStorePtr store = MustOpen(tmp.state());
    std::vector<StoredObject> puts = {MakeWorkload("web", 3, 0x7f400001, 1),
                                      MakeService("web", 0x7f7f0001, 2), MakePolicy("deny", 3)};
    for (const StoredObject& put : puts) Put(expected, put);
    REQUIRE(store->Commit(puts, {}).ok());
    CHECK(store->objects() == expected);
    CHECK(FileSize(store->path()) == store->log_bytes());
  }
  StateStorePtr reopened = MustOpen(tmp.state());
  CHECK(reopened->objects() == expected);
  const StoredObject& web = At(reopened->objects(), ObjectKey{Kind::kWorkload, "shop", "web"});
  CHECK(web.addresses == std::vector<uint32_t>{0x7f400001, 0x7f400002, 0x7f400003});
  CHECK(web.secret == "secret-of-web");
  CHECK(web.generation == 1);
}

TEST_CASE("StateStore: Commit hands back each put's entry, which a replacement keeps in place") {
  TempDir tmp;
  StateStorePtr store = MustOpen(tmp.state());
  std::vector<const StoredObject*> stored;
  REQUIRE(store
              ->Commit({MakeWorkload("web", 1, 0x7f400001, 1), MakeService("web", 0x7f7f0001, 1)},
                       {}, &stored)
              .ok());
  const ObjectKey web{Kind::kWorkload, "shop", "web"};
  const ObjectKey service{Kind::kService, "shop", "web"};
  REQUIRE(stored.size() == 2);
  CHECK(stored[0] == &At(store->objects(), web));
  CHECK(stored[1] == &At(store->objects(), service));

  const StoredObject* first = stored[0];
  REQUIRE(store->Commit({MakePolicy("deny", 1), MakeWorkload("web", 2, 0x7f400001, 2)}, {}, &stored)
              .ok());
  REQUIRE(stored.size() == 2);
  CHECK(stored[0] == &At(store->objects(), ObjectKey{Kind::kAuthorizationPolicy, "shop", "deny"}));
  CHECK(stored[1] == first);
  CHECK(stored[1]->generation == 2);
  CHECK(stored[1]->addresses.size() == 2);
}

TEST_CASE("StateStore: replacements and deletes persist; deleting a missing key is a no-op") {
  TempDir tmp;
  {
    StateStorePtr store = MustOpen(tmp.state());
    REQUIRE(store->Commit({MakeWorkload("a", 1, 10, 1), MakeWorkload("b", 2, 20, 2)}, {}).ok());
    REQUIRE(store
                ->Commit({MakeWorkload("a", 4, 100, 3)},
                         {ObjectKey{Kind::kWorkload, "shop", "b"},
                          ObjectKey{Kind::kService, "shop", "never-existed"}})
                .ok());
    CHECK(store->objects().size() == 1);
  }
  StateStorePtr reopened = MustOpen(tmp.state());
  REQUIRE(reopened->objects().size() == 1);
  const StoredObject& a = *reopened->objects().begin();
  CHECK(a == MakeWorkload("a", 4, 100, 3));
}

TEST_CASE("StateStore: a batch naming a key twice is refused and nothing is written") {
  TempDir tmp;
  StateStorePtr store = MustOpen(tmp.state());
  const uint64_t before = store->log_bytes();
  Status status =
      store->Commit({MakeWorkload("a", 1, 1, 1)}, {ObjectKey{Kind::kWorkload, "shop", "a"}});
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code == ErrorCode::kInvalidArgument);
  CHECK(status.error().message == "commit names Workload shop/a more than once in one batch");
  CHECK(store->log_bytes() == before);
  CHECK(FileSize(store->path()) == before);
  CHECK(store->objects().empty());
}

TEST_CASE("StateStore: an object that cannot be encoded is refused before anything is written") {
  TempDir tmp;
  StateStorePtr store = MustOpen(tmp.state());
  StoredObject bad = MakeWorkload("bad", 1, 1, 1);
  std::get<workloads::Workload>(bad.object).spec.ports[0].protocol =
      static_cast<workloads::Protocol>(9);
  const uint64_t before = store->log_bytes();
  Status status = store->Commit({MakeWorkload("good", 1, 2, 1), bad}, {});
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().message.find("spec.ports.protocol") != std::string::npos);
  CHECK(FileSize(store->path()) == before);
  CHECK(store->objects().empty());
}

TEST_CASE("StateStore: a torn last record is cut away, reported, and the log stays usable") {
  TempDir tmp;
  uint64_t second_end = 0;
  {
    StateStorePtr store = MustOpen(tmp.state());
    REQUIRE(store->Commit({MakeWorkload("one", 1, 1, 1)}, {}).ok());
    REQUIRE(store->Commit({MakeWorkload("two", 1, 2, 2)}, {}).ok());
    second_end = store->log_bytes();
    REQUIRE(store->Commit({MakeWorkload("three", 1, 3, 3)}, {}).ok());
  }
  const std::string log_path = tmp.state() + "/state.log";
  const std::string intact = ReadFile(log_path);

  std::string damaged;
  SUBCASE("cut short by a few bytes") { damaged = intact.substr(0, intact.size() - 3); }
  SUBCASE("cut short, then garbage") {
    damaged = intact.substr(0, intact.size() - 5) + std::string(40, '\x5a');
  }
  SUBCASE("only the header of the last record") { damaged = intact.substr(0, second_end + 6); }
  SUBCASE("the whole last record overwritten by zeros") {
    damaged = intact.substr(0, second_end) + std::string(intact.size() - second_end, '\0');
  }
  WriteFile(log_path, damaged);

  std::vector<std::string> log;
  {
    StateStorePtr store = MustOpen(tmp.state(), Quiet(&log));
    CHECK(store->objects().size() == 2);
    CHECK(store->objects().count(ObjectKey{Kind::kWorkload, "shop", "one"}) == 1);
    CHECK(store->objects().count(ObjectKey{Kind::kWorkload, "shop", "two"}) == 1);
    CHECK(store->log_bytes() == second_end);
    CHECK(FileSize(log_path) == second_end);
    REQUIRE(log.size() == 1);
    CHECK(log[0].find("torn last record at offset " + std::to_string(second_end)) !=
          std::string::npos);
    REQUIRE(store->Commit({MakeWorkload("four", 1, 4, 4)}, {}).ok());
  }
  log.clear();
  StateStorePtr store = MustOpen(tmp.state(), Quiet(&log));
  CHECK(store->objects().size() == 3);
  CHECK(log.empty());
}

TEST_CASE("StateStore: damage in the middle of the log is an error naming the offset") {
  TempDir tmp;
  uint64_t first_end = 0;
  {
    StateStorePtr store = MustOpen(tmp.state());
    REQUIRE(store->Commit({MakeWorkload("one", 1, 1, 1)}, {}).ok());
    first_end = store->log_bytes();
    REQUIRE(store->Commit({MakeWorkload("two", 1, 2, 2)}, {}).ok());
    REQUIRE(store->Commit({MakeWorkload("three", 1, 3, 3)}, {}).ok());
  }
  const std::string log_path = tmp.state() + "/state.log";
  std::string bytes = ReadFile(log_path);
  std::string why;
  SUBCASE("a flipped payload byte") {
    bytes[first_end + 8 + 5] ^= 0x01;
    why = "checksum mismatch";
  }
  SUBCASE("a destroyed length") {
    bytes[first_end + 3] = '\x7f';
    why = "impossible record length";
  }
  WriteFile(log_path, bytes);
  Result<StateStorePtr> store = StateStore::Open(tmp.state());
  REQUIRE_FALSE(store.ok());
  CHECK(store.error().message.find(log_path + ": corrupt record at offset " +
                                   std::to_string(first_end) + ": " + why) == 0);
  CHECK(ReadFile(log_path) == bytes);  // nothing was cut away
}

TEST_CASE(
    "StateStore: a record with a valid checksum that does not decode is an error, even last") {
  TempDir tmp;
  uint64_t end = 0;
  {
    StateStorePtr store = MustOpen(tmp.state());
    REQUIRE(store->Commit({MakeWorkload("one", 1, 1, 1)}, {}).ok());
    end = store->log_bytes();
  }
  const std::string log_path = tmp.state() + "/state.log";
  // Version 1, batch, one put whose object (5 bytes) has kind 7; no
  // addresses, empty secret, generation 0; no deletes.
  const std::string payload =
      "\x01\x01\x01\x05\x01\x07\x07\x07\x07"
      "\x00\x00\x00\x00"s;
  std::string record;
  workloads::ByteWriter w(&record);
  w.PutFixed32(static_cast<uint32_t>(payload.size()));
  w.PutFixed32(Crc32c(payload));
  WriteFile(log_path, ReadFile(log_path) + record + payload);
  Result<StateStorePtr> store = StateStore::Open(tmp.state());
  REQUIRE_FALSE(store.ok());
  CHECK(store.error().message.find(log_path + ": corrupt record at offset " + std::to_string(end) +
                                   ": byte ") == 0);
  CHECK(store.error().message.find("put.object: object encoding: byte 1: kind: value 7 out of "
                                   "range") != std::string::npos);
}

TEST_CASE("StateStore: a file that is not a state log is refused, naming it") {
  TempDir tmp;
  std::filesystem::create_directories(tmp.state());
  WriteFile(tmp.state() + "/state.log", "hello, world\n");
  Result<StateStorePtr> store = StateStore::Open(tmp.state());
  REQUIRE_FALSE(store.ok());
  CHECK(store.error().message.find(tmp.state() + "/state.log: not a podless state log") == 0);
}

TEST_CASE("StateStore: a header cut short by a crash at creation starts an empty log") {
  TempDir tmp;
  std::filesystem::create_directories(tmp.state());
  WriteFile(tmp.state() + "/state.log", "PODL");
  StateStorePtr store = MustOpen(tmp.state());
  CHECK(store->objects().empty());
  REQUIRE(store->Commit({MakeWorkload("one", 1, 1, 1)}, {}).ok());
  store.reset();
  CHECK(MustOpen(tmp.state())->objects().size() == 1);
}

TEST_CASE("StateStore: compaction keeps every object and shrinks the log") {
  TempDir tmp;
  StateStore::Options options;
  options.compaction_min_bytes = 16 << 10;
  ObjectMap expected;
  uint64_t largest = 0;
  {
    StateStorePtr store = MustOpen(tmp.state(), options);
    for (uint64_t g = 1; g <= 2000; ++g) {
      StoredObject put = MakeWorkload("w" + std::to_string(g % 10), g % 5 + 1, uint32_t(g), g);
      Put(expected, put);
      std::vector<ObjectKey> deletes;
      if (g % 50 == 0) {
        deletes.push_back(ObjectKey{Kind::kService, "shop", "s" + std::to_string(g - 1)});
      }
      REQUIRE(
          store->Commit({put, MakeService("s" + std::to_string(g), uint32_t(g), g)}, deletes).ok());
      Put(expected, MakeService("s" + std::to_string(g), uint32_t(g), g));
      for (const ObjectKey& key : deletes) Erase(expected, key);
      largest = std::max(largest, store->log_bytes());
    }
    CHECK(store->objects() == expected);
    // Without compaction 2000 commits of ~150 bytes would be far larger.
    CHECK(largest < 2 * store->live_bytes() + (16 << 10) + 1024);

    const uint64_t before = store->log_bytes();
    REQUIRE(store->Compact().ok());
    CHECK(store->log_bytes() < before);
    // Header, one record header, payload header and counts, the puts.
    CHECK(store->log_bytes() <= 8 + 8 + 2 + 10 + store->live_bytes());
    CHECK(FileSize(store->path()) == store->log_bytes());
    CHECK_FALSE(std::filesystem::exists(tmp.state() + "/state.log.tmp"));
  }
  CHECK(MustOpen(tmp.state())->objects() == expected);
}

TEST_CASE("StateStore: a failed compaction does not fail the commit, which stays durable") {
  TempDir tmp;
  std::vector<std::string> log;
  StateStore::Options options = Quiet(&log);
  options.compaction_min_bytes = 4096;
  {
    StateStorePtr store = MustOpen(tmp.state(), options);
    // A directory where the temp file must go makes its creation fail.
    std::filesystem::create_directory(tmp.state() + "/state.log.tmp");
    for (uint32_t g = 1; g <= 100; ++g) {
      REQUIRE(store->Commit({MakeWorkload("w", 1, g, g)}, {}).ok());
    }
    REQUIRE_FALSE(log.empty());
    CHECK(log[0].find("compaction of " + store->path() + " failed: cannot create") == 0);
    std::filesystem::remove(tmp.state() + "/state.log.tmp");
  }
  StateStorePtr store = MustOpen(tmp.state());
  CHECK(store->objects().begin()->generation == 100);
}

TEST_CASE("StateStore: a temp file left by an interrupted compaction is removed on open") {
  TempDir tmp;
  {
    StateStorePtr store = MustOpen(tmp.state());
    REQUIRE(store->Commit({MakeWorkload("one", 1, 1, 1)}, {}).ok());
  }
  WriteFile(tmp.state() + "/state.log.tmp", "PODLSLG1half a snapshot");
  std::vector<std::string> log;
  StateStorePtr store = MustOpen(tmp.state(), Quiet(&log));
  CHECK(store->objects().size() == 1);
  CHECK_FALSE(std::filesystem::exists(tmp.state() + "/state.log.tmp"));
  REQUIRE(log.size() == 1);
  CHECK(log[0].find("state.log.tmp: removed") != std::string::npos);
}

TEST_CASE("StateStore: a million-replica workload costs about a byte per address") {
  TempDir tmp;
  StoredObject big = MakeWorkload("big", workloads::kMaxReplicas, 0x7f400000, 7);
  big.addresses[500] = 0x7f000001;  // a gap both ways: zigzag deltas handle it
  big.addresses.back() = 0xffffffffu;
  {
    StateStorePtr store = MustOpen(tmp.state());
    REQUIRE(store->Commit({big}, {}).ok());
    CHECK(store->log_bytes() < workloads::kMaxReplicas + 4096);
  }
  StateStorePtr store = MustOpen(tmp.state());
  REQUIRE(store->objects().size() == 1);
  CHECK(*store->objects().begin() == big);
}

TEST_CASE("StateStore: a second Open of a state dir in use fails naming the holder's pid") {
  TempDir tmp;
  StateStorePtr first = MustOpen(tmp.state());
  Result<StateStorePtr> second = StateStore::Open(tmp.state());
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().message == "state dir " + tmp.state() +
                                      " is in use by another podless process (pid " +
                                      std::to_string(::getpid()) + ")");
  first.reset();
  CHECK(StateStore::Open(tmp.state()).ok());
}

TEST_CASE("StateStore: an unusable state dir is an error naming the path") {
  TempDir tmp;
  WriteFile(tmp.path() + "/file", "x");
  Result<StateStorePtr> store = StateStore::Open(tmp.path() + "/file/state");
  REQUIRE_FALSE(store.ok());
  CHECK(store.error().message == "state dir " + tmp.path() + "/file/state: cannot create " +
                                     tmp.path() + "/file/state: Not a directory");
}

TEST_CASE("StateStore: a state dir group or others may write is refused, naming its mode") {
  TempDir tmp;
  REQUIRE(::mkdir(tmp.state().c_str(), 0700) == 0);
  REQUIRE(::chmod(tmp.state().c_str(), 0777) == 0);
  Result<StateStorePtr> store = StateStore::Open(tmp.state());
  REQUIRE_FALSE(store.ok());
  INFO(store.error().message);
  CHECK(store.error().code == ErrorCode::kFailedPrecondition);
  CHECK(store.error().message.find("state dir " + tmp.state() + " is owned by uid " +
                                   std::to_string(::geteuid())) == 0);
  CHECK(store.error().message.find("with mode 0777") != std::string::npos);
  CHECK(store.error().message.find("chmod 0700 " + tmp.state()) != std::string::npos);
  // Nothing was written to it.
  CHECK(std::filesystem::is_empty(tmp.state()));
  REQUIRE(::chmod(tmp.state().c_str(), 0720) == 0);
  CHECK_FALSE(StateStore::Open(tmp.state()).ok());
  // 0711 (what the agent sets: traversable, not listable) and 0700 pass.
  REQUIRE(::chmod(tmp.state().c_str(), 0711) == 0);
  CHECK(StateStore::Open(tmp.state()).ok());
}

TEST_CASE("StateStore: a state dir another uid owns is refused, naming the owner") {
  if (::geteuid() != 0) return;  // only root can give a directory away
  TempDir tmp;
  REQUIRE(::mkdir(tmp.state().c_str(), 0700) == 0);
  REQUIRE(::chown(tmp.state().c_str(), 65534, 65534) == 0);
  Result<StateStorePtr> store = StateStore::Open(tmp.state());
  REQUIRE_FALSE(store.ok());
  INFO(store.error().message);
  CHECK(store.error().message.find("state dir " + tmp.state() + " is owned by uid 65534") == 0);
  CHECK(store.error().message.find("with mode 0700") != std::string::npos);
  CHECK(store.error().message.find("do not reuse it") != std::string::npos);
  CHECK(std::filesystem::is_empty(tmp.state()));
  CHECK_FALSE(StateStore::PrepareDir(tmp.state()).ok());
}

TEST_CASE("StateStore: a symbolic link planted as its lock or log is refused, never followed") {
  for (const char* name : {"lock", "state.log"}) {
    TempDir tmp;
    REQUIRE(::mkdir(tmp.state().c_str(), 0700) == 0);
    const std::string victim = tmp.path() + "/victim";
    WriteFile(victim, "the victim's bytes");
    std::filesystem::create_symlink(victim, tmp.state() + "/" + name);
    Result<StateStorePtr> store = StateStore::Open(tmp.state());
    REQUIRE_FALSE(store.ok());
    INFO(store.error().message);
    CHECK(store.error().message.find(tmp.state() + "/" + name + " is a symbolic link") !=
          std::string::npos);
    CHECK(ReadFile(victim) == "the victim's bytes");
  }
}

TEST_CASE(
    "StateStore: compaction replaces a link planted as its temp file, never writing through") {
  TempDir tmp;
  const std::string victim = tmp.path() + "/victim";
  WriteFile(victim, "the victim's bytes");
  StateStorePtr store = MustOpen(tmp.state());
  REQUIRE(store->Commit({MakeWorkload("one", 1, 1, 1)}, {}).ok());
  std::filesystem::create_symlink(victim, tmp.state() + "/" + StateStore::kTempFileName);
  REQUIRE(store->Compact().ok());
  CHECK(ReadFile(victim) == "the victim's bytes");
  CHECK_FALSE(std::filesystem::exists(tmp.state() + "/" + StateStore::kTempFileName));
  store.reset();
  CHECK(MustOpen(tmp.state())->objects().size() == 1);
}

// Lowers the file size limit of this process and restores it (and SIGXFSZ) on
// scope exit, so that a failing check cannot leave the limit behind.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    saved_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, saved_handler_);
  }

 private:
  rlimit saved_{};
  sighandler_t saved_handler_ = SIG_DFL;
};

TEST_CASE("StateStore: a full disk fails the commit with the OS message; state and log stay") {
  TempDir tmp;
  StateStorePtr store = MustOpen(tmp.state());
  REQUIRE(store->Commit({MakeWorkload("one", 1, 1, 1)}, {}).ok());
  const ObjectMap before = store->objects();
  const uint64_t end = store->log_bytes();

  StoredObject large = MakeWorkload("large", 1, 2, 2);
  large.secret.assign(64 << 10, 's');
  Status status;
  {
    FileSizeLimit limit(end + 1000);  // room for part of the record only
    status = store->Commit({large}, {});
  }
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code == ErrorCode::kResourceExhausted);
  CHECK(status.error().message == store->path() + ": write failed: File too large");
  CHECK(store->objects() == before);
  CHECK(store->log_bytes() == end);
  CHECK(FileSize(store->path()) == end);  // no half record left behind

  REQUIRE(store->Commit({MakeWorkload("two", 1, 3, 3)}, {}).ok());
  store.reset();
  StateStorePtr reopened = MustOpen(tmp.state());
  CHECK(reopened->objects().size() == 2);
  CHECK(reopened->objects().count(ObjectKey{Kind::kWorkload, "shop", "large"}) == 0);
}

// The batch of generation g in the crash test: one put, and every fifth
// generation a delete of another key, so the expected state depends on order.
void CrashBatch(uint64_t g, std::vector<StoredObject>* puts, std::vector<ObjectKey>* deletes) {
  puts->assign(
      {MakeWorkload("w" + std::to_string(g % 16), uint32_t(g % 7) * 40, uint32_t(g * 1000), g)});
  deletes->clear();
  if (g % 5 == 0) {
    deletes->push_back(ObjectKey{Kind::kWorkload, "shop", "w" + std::to_string((g + 7) % 16)});
  }
}

ObjectMap CrashExpected(uint64_t generations) {
  ObjectMap expected;
  std::vector<StoredObject> puts;
  std::vector<ObjectKey> deletes;
  for (uint64_t g = 1; g <= generations; ++g) {
    CrashBatch(g, &puts, &deletes);
    for (const ObjectKey& key : deletes) Erase(expected, key);
    for (StoredObject& put : puts) Put(expected, put);
  }
  return expected;
}

constexpr uint64_t kCrashCompactionBytes = 8 << 10;

// The child: commits generation after generation, reporting each one on
// `fd` only once Commit returned (acknowledged), starting at `first`.
// Never returns.
[[noreturn]] void CrashChild(const std::string& dir, uint64_t first, int fd) {
  StateStore::Options options;
  options.compaction_min_bytes = kCrashCompactionBytes;  // compactions happen too
  options.log = [](std::string_view) {};
  Result<StateStorePtr> store = StateStore::Open(dir, options);
  if (!store.ok()) ::_exit(3);
  std::vector<StoredObject> puts;
  std::vector<ObjectKey> deletes;
  for (uint64_t g = first;; ++g) {
    CrashBatch(g, &puts, &deletes);
    if (!(*store)->Commit(puts, deletes).ok()) ::_exit(4);
    if (::write(fd, &g, sizeof(g)) != sizeof(g)) ::_exit(5);
  }
}

TEST_CASE(
    "StateStore: after SIGKILL at a random moment every acknowledged commit is there and "
    "nothing else is half applied") {
  TempDir tmp;
  const unsigned seed = std::random_device{}();
  MESSAGE("seed " << seed);
  std::mt19937 rng(seed);
  uint64_t acknowledged = 0;
  for (int round = 0; round < 6; ++round) {
    CAPTURE(round);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::close(fds[0]);
      CrashChild(tmp.state(), acknowledged + 1, fds[1]);
    }
    ::close(fds[1]);
    // Let it acknowledge a random number of commits (each round continues the
    // previous state), then kill it somewhere inside the next ones.
    const uint64_t kill_after = acknowledged + 1 + rng() % 120;
    uint64_t g = 0;
    std::string pending;
    auto read_acks = [&]() -> bool {
      char buf[512];
      const ssize_t n = ::read(fds[0], buf, sizeof(buf));
      if (n <= 0) return false;
      pending.append(buf, size_t(n));
      while (pending.size() >= sizeof(g)) {
        std::memcpy(&g, pending.data(), sizeof(g));
        pending.erase(0, sizeof(g));
        acknowledged = g;
      }
      return true;
    };
    while (acknowledged < kill_after && read_acks()) {
    }
    ::usleep(rng() % 3000);
    ::kill(child, SIGKILL);
    while (read_acks()) {
    }
    ::close(fds[0]);
    int wstatus = 0;
    REQUIRE(::waitpid(child, &wstatus, 0) == child);
    REQUIRE_MESSAGE(WIFSIGNALED(wstatus), "child exited with " << WEXITSTATUS(wstatus));
    CHECK(pending.empty());

    StateStorePtr store = MustOpen(tmp.state());
    // Generation acknowledged+1 may have reached the disk before the kill;
    // anything else would be a lost or a half-applied change.
    const bool exact = store->objects() == CrashExpected(acknowledged);
    const bool one_more = store->objects() == CrashExpected(acknowledged + 1);
    CHECK_MESSAGE((exact || one_more), "after " << acknowledged << " acknowledged commits");
    if (one_more) ++acknowledged;  // the next round continues from here
  }
  MESSAGE(acknowledged << " commits acknowledged over 6 kills");
  CHECK(acknowledged > 6);
}

}  // namespace
}  // namespace podless::runtime
