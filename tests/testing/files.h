// Reading and writing a whole file in a test.
#pragma once

#include <string>

namespace podless::testing {

// The bytes of the file at `path`; empty when it cannot be read.
std::string ReadFile(const std::string& path);

// Replaces the file at `path` with `bytes` (created with the process umask).
void WriteFile(const std::string& path, const std::string& bytes);

}  // namespace podless::testing
