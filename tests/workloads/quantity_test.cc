#include "workloads/quantity.h"

#include <doctest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace podless::workloads {
namespace {

constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

uint64_t Bytes(std::string_view text) {
  Result<uint64_t> bytes = ParseMemoryQuantity(text);
  REQUIRE_MESSAGE(bytes.ok(), bytes.error().message);
  return *bytes;
}

uint32_t Millis(std::string_view text) {
  Result<uint32_t> millis = ParseCpuQuantity(text);
  REQUIRE_MESSAGE(millis.ok(), millis.error().message);
  return *millis;
}

std::string MemoryError(std::string_view text) {
  Result<uint64_t> bytes = ParseMemoryQuantity(text);
  REQUIRE_FALSE(bytes.ok());
  CHECK(bytes.error().code == ErrorCode::kInvalidArgument);
  return bytes.error().message;
}

std::string CpuError(std::string_view text) {
  Result<uint32_t> millis = ParseCpuQuantity(text);
  REQUIRE_FALSE(millis.ok());
  CHECK(millis.error().code == ErrorCode::kInvalidArgument);
  return millis.error().message;
}

}  // namespace

TEST_CASE("ParseMemoryQuantity: exact values up to the edge of 64 bits") {
  CHECK(Bytes("0") == 0u);
  CHECK(Bytes("18446744073709551615") == kMaxU64);
  CHECK(Bytes("18446744073709551615000e-3") == kMaxU64);
  CHECK(MemoryError("18446744073709551616") ==
        "\"18446744073709551616\" is too large (at most 18446744073709551615 bytes)");
  CHECK(MemoryError("1e999999").find("is too large") != std::string::npos);
  CHECK(Bytes("0.25Ki") == 256u);
  CHECK(Bytes("0.0009765625Mi") == 1024u);  // 2^-10 Mi
  CHECK(Bytes("1.e3") == 1000u);
  CHECK(Bytes(".5k") == 500u);
  CHECK(Bytes("000128Mi") == 134217728u);
  CHECK(Bytes("+1Ki") == 1024u);
}

TEST_CASE("ParseMemoryQuantity: never rounds, and refuses what Kubernetes would misread") {
  CHECK(MemoryError("0.3Ki") == "\"0.3Ki\" is not a whole number of bytes");
  CHECK(MemoryError("1e-999999") == "\"1e-999999\" is not a whole number of bytes");
  CHECK(MemoryError("1000m").find("is in millibytes") != std::string::npos);
  CHECK(MemoryError("1234567890123456789012345678901") ==
        "\"1234567890123456789012345678901\" has more than 30 significant digits");
  for (const char* bad : {"", ".", "e3", "1e", "1e+", "1ki", "1KI", "1Mib", "0x10", "1_000", "1,5",
                          "1.2.3", "1e9999999", " 1", "1 "}) {
    CAPTURE(bad);
    CHECK(MemoryError(bad).find("is not a Kubernetes quantity") != std::string::npos);
  }
}

TEST_CASE("ParseCpuQuantity: whole millicores only, up to 4294967295m") {
  CHECK(Millis("0") == 0u);
  CHECK(Millis("0.5") == 500u);
  CHECK(Millis("4294967.295") == 4294967295u);
  CHECK(Millis("4294967295m") == 4294967295u);
  CHECK(CpuError("4294967.296") == "\"4294967.296\" is too large (at most 4294967295m)");
  CHECK(CpuError("0.0001") == "\"0.0001\" is finer than 1m (cpu is counted in whole millicores)");
  CHECK(CpuError("-1") == "\"-1\" is negative");
  CHECK(CpuError("1Mi").find("has a binary suffix") != std::string::npos);
}

TEST_CASE("FormatMemoryQuantity: the largest exact binary unit, unless a decimal one is shorter") {
  CHECK(FormatMemoryQuantity(0) == "0");
  CHECK(FormatMemoryQuantity(1) == "1");
  CHECK(FormatMemoryQuantity(1024) == "1Ki");
  CHECK(FormatMemoryQuantity(1000) == "1k");
  CHECK(FormatMemoryQuantity(3u << 20) == "3Mi");
  CHECK(FormatMemoryQuantity(uint64_t{1536} << 20) == "1536Mi");
  CHECK(FormatMemoryQuantity(uint64_t{1} << 60) == "1Ei");
  CHECK(FormatMemoryQuantity(1'000'000'000'000'000'000) == "1E");
  CHECK(FormatMemoryQuantity(1'000'000'000'000) == "1T");  // not 976562500Ki
  CHECK(FormatMemoryQuantity(2'048'000) == "2048k");       // not 2000Ki
  CHECK(FormatMemoryQuantity(1'024'000) == "1024k");       // not 1000Ki
  CHECK(FormatMemoryQuantity(uint64_t{1000} << 20) == "1000Mi");
  CHECK(FormatMemoryQuantity(kMaxU64) == "18446744073709551615");
  for (uint64_t bytes : {uint64_t{1}, uint64_t{999}, uint64_t{1} << 20, uint64_t{5'000'000},
                         uint64_t{15} << 60, uint64_t{1} << 63, kMaxU64, kMaxU64 - 1023}) {
    CAPTURE(bytes);
    CHECK(Bytes(FormatMemoryQuantity(bytes)) == bytes);
  }
}

TEST_CASE("FormatCpuQuantity: whole cores plain, else millicores") {
  CHECK(FormatCpuQuantity(0) == "0");
  CHECK(FormatCpuQuantity(500) == "500m");
  CHECK(FormatCpuQuantity(2000) == "2");
  CHECK(FormatCpuQuantity(2250) == "2250m");
  CHECK(FormatCpuQuantity(4294967295u) == "4294967295m");
  for (uint32_t millis : {1u, 999u, 1000u, 1001u, 4294967000u, 4294967295u}) {
    CAPTURE(millis);
    CHECK(Millis(FormatCpuQuantity(millis)) == millis);
  }
}

}  // namespace podless::workloads
