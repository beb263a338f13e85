#include "runtime/process/process_table.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace podless::runtime {

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return std::nullopt;
  std::string line;
  std::getline(in, line);
  // The command name (field 2) is in parentheses and may itself contain
  // spaces and ')': the fields resume after the LAST ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  ProcStat stat;
  stat.pid = pid;
  std::string field;
  // Field 3 is the state; the rest are numbers. start_time is field 22.
  fields >> stat.state;
  for (int index = 4; index <= 22 && fields >> field; ++index) {
    if (index == 4) stat.ppid = static_cast<pid_t>(std::atol(field.c_str()));
    if (index == 5) stat.pgrp = static_cast<pid_t>(std::atol(field.c_str()));
    if (index == 22) stat.start_time = std::strtoull(field.c_str(), nullptr, 10);
  }
  if (stat.start_time == 0) return std::nullopt;
  return stat;
}

bool IsSameProcess(pid_t pid, uint64_t start_time) {
  auto stat = ReadProcStat(pid);
  return stat && stat->start_time == start_time && stat->state != 'Z' && stat->state != 'X';
}

std::vector<ProcessRecord> ProcessTable::Load() const {
  std::vector<ProcessRecord> records;
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line)) {
    // "<pid> <start_time> <address> <ns/replica>"
    std::istringstream fields(line);
    ProcessRecord record;
    long long pid = 0;
    if (!(fields >> pid >> record.start_time >> record.address)) continue;
    fields >> record.replica;
    if (pid <= 1) continue;  // never signal init or "every process"
    record.pid = static_cast<pid_t>(pid);
    records.push_back(std::move(record));
  }
  return records;
}

Status ProcessTable::Store(const std::vector<ProcessRecord>& records) const {
  std::string text;
  for (const auto& record : records) {
    text += std::to_string(record.pid) + " " + std::to_string(record.start_time) + " " +
            std::to_string(record.address) + " " + record.replica + "\n";
  }
  // The temp name is fixed, so a leftover (or anything planted under it: a
  // symbolic link to a file of someone's choice) is removed first and the
  // file created anew; O_EXCL | O_NOFOLLOW never write through a link.
  // (What cannot be removed, a directory, fails the exclusive create.)
  std::string tmp = path_ + ".tmp";
  (void)::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    return MakeError(ErrorCode::kUnavailable, "cannot write " + tmp + ": " + std::strerror(errno));
  }
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return MakeError(ErrorCode::kUnavailable, "cannot write " + tmp + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return MakeError(ErrorCode::kUnavailable, "cannot sync " + tmp + ": " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot rename " + tmp + " to " + path_ + ": " + std::strerror(errno));
  }
  return {};
}

}  // namespace podless::runtime
