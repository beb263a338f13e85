#include "tests/testing/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

namespace podless::testing {

TempDir::TempDir(const std::string& prefix) {
  std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  // std::filesystem::remove_all removes symbolic links themselves, never their
  // targets; the error_code overload does not throw.
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace podless::testing
