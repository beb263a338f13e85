// Fuzzes manifest YAML -> model (workloads::ParseManifests): any text must be
// parsed or reported, never crash; what it accepts must be valid, survive
// the state store's encoding, and an object applied as a Kubernetes or Istio
// kind must read back the same from the document it keeps (what `get -o
// yaml` shows and a re-apply compares).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "workloads/manifest_parser.h"
#include "workloads/object_codec.h"
#include "workloads/validation.h"

using namespace podless::workloads;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  ParseOptions options;
  options.skip_unsupported = size > 0 && (data[size - 1] & 1) != 0;
  ParseResult result = ParseManifests(text, "fuzz.yaml", options);
  for (const Diagnostic& d : result.errors) (void)d.ToString();
  if (!result.errors.empty()) return 0;
  // An accepted object passes validation on its own (ParseManifests ran it).
  for (const ParsedObject& parsed : result.objects) {
    std::vector<Diagnostic> problems = Validate(parsed.object);
    if (!problems.empty()) {
      fprintf(stderr, "accepted object fails Validate: %s\n", problems[0].ToString().c_str());
      abort();
    }
    podless::Result<Object> decoded = DecodeObject(EncodeObject(parsed.object));
    if (!decoded.ok() || !(*decoded == parsed.object)) {
      fprintf(stderr, "accepted object does not survive the codec\n");
      abort();
    }
    if (const auto& as = MetaOf(parsed.object).applied_as) {
      ParseResult again = ParseManifests(as->document, "stored.yaml");
      if (!again.errors.empty() || again.objects.size() != 1 ||
          !(again.objects[0].object == parsed.object)) {
        fprintf(stderr, "the stored document does not read back as the object:\n%s\n%s\n",
                as->document.c_str(),
                again.errors.empty() ? "" : again.errors[0].ToString().c_str());
        abort();
      }
    }
  }
  return 0;
}
