// Fuzzes the state store's object decoding (workloads::DecodeObject): any
// bytes (a damaged disk) decode or fail with an error, never crash; what
// decodes re-encodes to an object that decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "workloads/object_codec.h"

using namespace podless::workloads;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto decoded = DecodeObject(bytes);
  if (!decoded.ok()) return 0;
  std::string encoded;
  podless::Status appended = AppendObject(*decoded, &encoded);
  if (!appended.ok()) {
    fprintf(stderr, "decoded object does not encode: %s\n", appended.error().message.c_str());
    abort();
  }
  auto again = DecodeObject(encoded);
  if (!again.ok() || !(*again == *decoded)) {
    fprintf(stderr, "decode(encode(decode(x))) != decode(x)\n");
    abort();
  }
  return 0;
}
