// Temporary entry point while the CLI is being written (replaced by api/cli).
#include <cstdio>
int main() {
  std::fprintf(stderr, "usage: podless run|apply|get|describe|delete|ca\n");
  return 2;
}
