#include "runtime/log_files.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "workloads/pem_file.h"

namespace podless::runtime {

namespace {

constexpr char kCurrent[] = "/current.log";
constexpr char kRotated[] = "/current.log.1";
constexpr char kPrevious[] = "/previous.log";

bool ReadWholeFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  out->append(buffer.str());
  return true;
}

}  // namespace

std::string ReplicaLogDir(const std::string& state_dir, const std::string& ns,
                          const std::string& replica) {
  return state_dir + "/logs/" + ns + "/" + replica;
}

LogFile::LogFile(std::string dir, uint64_t max_bytes)
    : dir_(std::move(dir)), max_bytes_(max_bytes) {}

LogFile::~LogFile() { CloseCurrent(); }

Result<LogFilePtr> LogFile::Open(std::string dir, uint64_t max_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  // Only the agent reads a replica's output (it may hold what a process
  // printed of its secrets): the directory is 0700, every file 0600.
  if (!ec) std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  if (ec) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot create log directory " + dir + ": " + ec.message());
  }
  LogFilePtr file(new LogFile(std::move(dir), max_bytes == 0 ? 1 : max_bytes));
  file->OpenCurrent();
  if (file->fd_ < 0) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot open " + file->dir_ + kCurrent + ": " + std::strerror(errno));
  }
  return file;
}

void LogFile::OpenCurrent() {
  CloseCurrent();
  std::string path = dir_ + kCurrent;
  // O_NOFOLLOW: a symbolic link planted as current.log must not have the
  // agent append a workload's output to a file of someone else's choice.
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
  struct stat st {};
  current_size_ = (fd_ >= 0 && ::fstat(fd_, &st) == 0) ? static_cast<uint64_t>(st.st_size) : 0;
}

void LogFile::CloseCurrent() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void LogFile::StartRun() {
  // previous.log is the whole previous run as far as we kept it: the rotated
  // part first, then the rest.
  std::string previous;
  bool rotated = ReadWholeFile(dir_ + kRotated, &previous);
  bool current = ReadWholeFile(dir_ + kCurrent, &previous);
  // A first run with nothing logged before it has no previous run (an agent
  // restart does: the old agent's run is the previous one).
  bool first = !runs_started_++;
  if (first && !rotated && (!current || previous.empty())) return;
  CloseCurrent();
  if (!workloads::WriteFileAtomically(dir_ + kPrevious, previous, 0600)) ++write_errors_;
  ::unlink((dir_ + kRotated).c_str());
  ::unlink((dir_ + kCurrent).c_str());
  OpenCurrent();
}

void LogFile::Append(std::string_view bytes) {
  if (bytes.empty()) return;
  if (current_size_ > 0 && current_size_ + bytes.size() > max_bytes_) {
    // Rotate: keep one older part so a reader still sees recent history.
    CloseCurrent();
    std::rename((dir_ + kCurrent).c_str(), (dir_ + kRotated).c_str());
    OpenCurrent();
  }
  if (fd_ < 0) OpenCurrent();
  size_t done = 0;
  while (fd_ >= 0 && done < bytes.size()) {
    ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ++write_errors_;
      break;
    }
    done += static_cast<size_t>(n);
  }
  current_size_ += done;
  // A follower may remove itself from inside its callback: iterate a copy.
  auto followers = followers_;
  for (auto& [id, callback] : followers) {
    if (followers_.count(id)) callback(bytes);
  }
}

uint64_t LogFile::AddFollower(std::function<void(std::string_view)> callback) {
  uint64_t id = next_follower_++;
  followers_[id] = std::move(callback);
  return id;
}

void LogFile::RemoveFollower(uint64_t id) { followers_.erase(id); }

std::string_view TailLines(std::string_view text, uint64_t lines) {
  if (lines == 0) return text.substr(text.size());
  size_t end = text.size();
  // A trailing newline ends the last line; it does not start a new one.
  size_t pos = end;
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  uint64_t seen = 0;
  while (pos > 0) {
    if (text[pos - 1] == '\n') {
      if (++seen == lines) return text.substr(pos);
    }
    --pos;
  }
  return text;
}

Result<std::string> ReadLog(const std::string& dir, bool previous, int64_t tail_lines) {
  std::string text;
  if (previous) {
    if (!ReadWholeFile(dir + kPrevious, &text)) {
      return MakeError(ErrorCode::kNotFound, "no previous run logged in " + dir);
    }
  } else {
    bool rotated = ReadWholeFile(dir + kRotated, &text);
    bool current = ReadWholeFile(dir + kCurrent, &text);
    if (!rotated && !current) return MakeError(ErrorCode::kNotFound, "no log in " + dir);
  }
  if (tail_lines >= 0) return std::string(TailLines(text, static_cast<uint64_t>(tail_lines)));
  return text;
}

}  // namespace podless::runtime
