// Fuzzes manifest YAML -> model (workloads::ParseManifests): any text must be
// parsed or reported, never crash; and what it accepts must be valid.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "workloads/manifest_parser.h"
#include "workloads/validation.h"

using namespace podless::workloads;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  ParseResult result = ParseManifests(text, "fuzz.yaml");
  for (const Diagnostic& d : result.errors) (void)d.ToString();
  if (!result.errors.empty()) return 0;
  // An accepted object passes validation on its own (ParseManifests ran it).
  for (const ParsedObject& parsed : result.objects) {
    std::vector<Diagnostic> problems = Validate(parsed.object);
    if (!problems.empty()) {
      fprintf(stderr, "accepted object fails Validate: %s\n", problems[0].ToString().c_str());
      abort();
    }
  }
  return 0;
}
