#include "runtime/process/log_files.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
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
constexpr size_t kStampSize = 31;  // "2026-12-06T20:45:00.123456789Z "

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
  at_line_start_ = true;
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
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  Append(bytes, static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec);
}

void LogFile::Append(std::string_view raw, int64_t unix_nanos) {
  if (raw.empty()) return;
  std::string stamped;
  stamped.reserve(raw.size() + kStampSize);
  const std::string stamp = LogStamp(unix_nanos);
  for (char c : raw) {
    if (at_line_start_) stamped += stamp;
    stamped += c;
    at_line_start_ = c == '\n';
  }
  const std::string_view bytes = stamped;
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

std::string LogStamp(int64_t unix_nanos) {
  const time_t seconds = static_cast<time_t>(unix_nanos / 1'000'000'000);
  tm utc{};
  ::gmtime_r(&seconds, &utc);
  char out[96];  // room for any int the format could print (-Wformat-truncation)
  std::snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(unix_nanos % 1'000'000'000));
  return std::string(out, kStampSize);
}

bool ParseLogStamp(std::string_view line, int64_t* unix_nanos) {
  if (line.size() < kStampSize) return false;
  static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd.dddddddddZ ";
  for (size_t i = 0; i < kStampSize; ++i) {
    const char c = line[i];
    if (kShape[i] == 'd' ? (c < '0' || c > '9') : c != kShape[i]) return false;
  }
  auto number = [&](size_t at, size_t len) {
    int64_t n = 0;
    for (size_t i = at; i < at + len; ++i) n = n * 10 + (line[i] - '0');
    return n;
  };
  tm utc{};
  utc.tm_year = static_cast<int>(number(0, 4)) - 1900;
  utc.tm_mon = static_cast<int>(number(5, 2)) - 1;
  utc.tm_mday = static_cast<int>(number(8, 2));
  utc.tm_hour = static_cast<int>(number(11, 2));
  utc.tm_min = static_cast<int>(number(14, 2));
  utc.tm_sec = static_cast<int>(number(17, 2));
  *unix_nanos = static_cast<int64_t>(::timegm(&utc)) * 1'000'000'000 + number(20, 9);
  return true;
}

std::string LogStreamFilter::Feed(std::string_view bytes) {
  std::string out;
  for (char c : bytes) {
    if (!in_line_) {
      // Collect the start of a line until it shows whether it has a stamp.
      head_ += c;
      if (head_.size() < kStampSize && c != '\n') continue;
      int64_t at = 0;
      const bool stamped = ParseLogStamp(head_, &at);
      keep_line_ = !stamped || at >= view_.since_unix_nanos;
      if (keep_line_) out += stamped && !view_.timestamps ? head_.substr(kStampSize) : head_;
      in_line_ = c != '\n';
      head_.clear();
      continue;
    }
    if (keep_line_) out += c;
    if (c == '\n') in_line_ = false;
  }
  return out;
}

std::string LogStreamFilter::Finish() {
  // A line start still held is shorter than a stamp, so it has none.
  std::string out = std::move(head_);
  head_.clear();
  return out;
}

Result<std::string> ReadLog(const std::string& dir, bool previous, int64_t tail_lines,
                            LogView view) {
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
  LogStreamFilter filter(view);
  std::string shown = filter.Feed(text);
  shown += filter.Finish();
  if (tail_lines >= 0) return std::string(TailLines(shown, static_cast<uint64_t>(tail_lines)));
  return shown;
}

}  // namespace podless::runtime
