// A fresh directory for one test, removed with everything in it afterwards.
#pragma once

#include <string>

namespace podless::testing {

// Creates `<system temp dir>/<prefix>-XXXXXX` (mkdtemp, mode 0700) and removes
// it recursively when destroyed. The removal does not follow symbolic links
// (a link inside is removed, not what it points at) and never throws: a
// directory that cannot be removed is left behind. Throws std::system_error
// when the directory cannot be created, which fails the running test.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "podless-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace podless::testing
