#include "workloads/quantity.h"

#include <limits>
#include <optional>

#include "workloads/validation.h"

namespace podless::workloads {
namespace {

using uint128 = unsigned __int128;

// More significant digits than any real limit has; the bound keeps every
// intermediate value of Evaluate within 128 bits.
constexpr size_t kMaxSignificantDigits = 30;

// A quantity as written: exactly significand * 10^exponent10 * 2^exponent2.
struct Quantity {
  std::string significand;  // decimal digits, no leading or trailing zeros; empty for 0
  int64_t exponent10 = 0;
  int exponent2 = 0;
  char suffix = 0;  // 'm' for milli, 'b' for a binary suffix, 0 otherwise
};

bool IsDigit(char ch) { return ch >= '0' && ch <= '9'; }

// The suffix after the number; false when it is none of Kubernetes' suffixes.
bool ReadSuffix(std::string_view suffix, Quantity& q) {
  if (suffix.empty()) return true;
  static constexpr std::string_view kBinary[] = {"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  for (size_t i = 0; i < std::size(kBinary); ++i) {
    if (suffix == kBinary[i]) {
      q.exponent2 = static_cast<int>(10 * (i + 1));
      q.suffix = 'b';
      return true;
    }
  }
  static constexpr std::string_view kDecimal = "kMGTPE";
  if (suffix.size() == 1 && suffix[0] == 'm') {
    q.exponent10 = -3;
    q.suffix = 'm';
    return true;
  }
  if (suffix.size() == 1 && kDecimal.find(suffix[0]) != std::string_view::npos) {
    q.exponent10 = 3 * static_cast<int64_t>(kDecimal.find(suffix[0]) + 1);
    return true;
  }
  // A decimal exponent: "e" or "E", an optional sign, digits.
  if (suffix[0] != 'e' && suffix[0] != 'E') return false;
  suffix.remove_prefix(1);
  bool negative = false;
  if (!suffix.empty() && (suffix[0] == '+' || suffix[0] == '-')) {
    negative = suffix[0] == '-';
    suffix.remove_prefix(1);
  }
  if (suffix.empty() || suffix.size() > 6) return false;  // 1e999999 is no limit anyone means
  int64_t exponent = 0;
  for (char ch : suffix) {
    if (!IsDigit(ch)) return false;
    exponent = exponent * 10 + (ch - '0');
  }
  q.exponent10 = negative ? -exponent : exponent;
  return true;
}

// Splits "1.50Mi" into its parts; nullopt when it is not a quantity.
std::optional<Quantity> Split(std::string_view text) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  size_t i = 0;
  std::string digits;
  size_t fraction_digits = 0;
  while (i < text.size() && IsDigit(text[i])) digits += text[i++];
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && IsDigit(text[i])) {
      digits += text[i++];
      ++fraction_digits;
    }
  }
  if (digits.empty()) return std::nullopt;
  Quantity q;
  if (!ReadSuffix(text.substr(i), q)) return std::nullopt;
  q.exponent10 -= static_cast<int64_t>(fraction_digits);
  const size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) return q;  // zero
  const size_t last = digits.find_last_not_of('0');
  q.exponent10 += static_cast<int64_t>(digits.size() - 1 - last);
  q.significand = digits.substr(first, last + 1 - first);
  return q;
}

enum class Fit { kOk, kNotWhole, kTooLarge, kTooManyDigits };

// The value of `q` * 10^shift10 as a whole number no larger than `max`.
Fit Evaluate(const Quantity& q, int64_t shift10, uint64_t max, uint64_t* out) {
  *out = 0;
  if (q.significand.empty()) return Fit::kOk;
  if (q.significand.size() > kMaxSignificantDigits) return Fit::kTooManyDigits;
  const int64_t exponent10 = q.exponent10 + shift10;
  // The value is at least 10^magnitude, and 10^20 > 2^64.
  const int64_t magnitude = static_cast<int64_t>(q.significand.size()) - 1 + exponent10;
  if (magnitude >= 20) return Fit::kTooLarge;
  uint128 significand = 0;
  for (char ch : q.significand) significand = significand * 10 + static_cast<uint128>(ch - '0');
  // Below 10^20 * 2^60 < 2^127 from here on: magnitude < 20, exponent2 <= 60.
  uint128 value = 0;
  if (exponent10 >= 0) {
    value = significand;
    for (int64_t i = 0; i < exponent10; ++i) value *= 10;
    value <<= q.exponent2;
  } else {
    // Dividing by 10^k = 5^k * 2^k: the fives must divide the significand,
    // the twos the significand times 2^exponent2.
    const int64_t k = -exponent10;
    uint128 five_k = 1;
    for (int64_t i = 0; i < k; ++i) {
      five_k *= 5;
      if (five_k > significand) return Fit::kNotWhole;
    }
    if (significand % five_k != 0) return Fit::kNotWhole;
    value = significand / five_k;
    int64_t twos = q.exponent2 - k;  // the power of two still to apply
    while (twos < 0 && value % 2 == 0) {
      value /= 2;
      ++twos;
    }
    if (twos < 0) return Fit::kNotWhole;
    value <<= twos;
  }
  if (value > max) return Fit::kTooLarge;
  *out = static_cast<uint64_t>(value);
  return Fit::kOk;
}

Error Invalid(std::string message) { return MakeError(ErrorCode::kInvalidArgument, message); }

std::string NotAQuantity(std::string_view text, std::string_view examples) {
  if (!text.empty() && text[0] == '-') return QuoteForMessage(text) + " is negative";
  return QuoteForMessage(text) + " is not a Kubernetes quantity (e.g. " + std::string(examples) +
         ")";
}

}  // namespace

Result<uint64_t> ParseMemoryQuantity(std::string_view text) {
  std::optional<Quantity> q = Split(text);
  if (!q) return Invalid(NotAQuantity(text, "134217728, 128Mi, 1G"));
  if (q->suffix == 'm') {
    // Kubernetes reads "128m" as 0.128 bytes; nobody means that.
    return Invalid(QuoteForMessage(text) +
                   " is in millibytes (\"m\"); memory is in bytes or Ki, Mi, Gi, k, M, G, ...: "
                   "did you mean " +
                   QuoteForMessage(std::string(text.substr(0, text.size() - 1)) + "Mi") + "?");
  }
  uint64_t bytes = 0;
  switch (Evaluate(*q, 0, std::numeric_limits<uint64_t>::max(), &bytes)) {
    case Fit::kOk:
      return bytes;
    case Fit::kNotWhole:
      return Invalid(QuoteForMessage(text) + " is not a whole number of bytes");
    case Fit::kTooLarge:
      return Invalid(QuoteForMessage(text) + " is too large (at most 18446744073709551615 bytes)");
    case Fit::kTooManyDigits:
      break;
  }
  return Invalid(QuoteForMessage(text) + " has more than 30 significant digits");
}

Result<uint32_t> ParseCpuQuantity(std::string_view text) {
  std::optional<Quantity> q = Split(text);
  if (!q) return Invalid(NotAQuantity(text, "500m, 0.5, 2"));
  if (q->suffix == 'b') {
    return Invalid(QuoteForMessage(text) +
                   " has a binary suffix; cpu is in cores (\"2\", \"0.5\") or millicores "
                   "(\"500m\")");
  }
  uint64_t millis = 0;
  switch (Evaluate(*q, 3, std::numeric_limits<uint32_t>::max(), &millis)) {
    case Fit::kOk:
      return static_cast<uint32_t>(millis);
    case Fit::kNotWhole:
      return Invalid(QuoteForMessage(text) +
                     " is finer than 1m (cpu is counted in whole millicores)");
    case Fit::kTooLarge:
      return Invalid(QuoteForMessage(text) + " is too large (at most 4294967295m)");
    case Fit::kTooManyDigits:
      break;
  }
  return Invalid(QuoteForMessage(text) + " has more than 30 significant digits");
}

std::string FormatMemoryQuantity(uint64_t bytes) {
  if (bytes == 0) return "0";
  std::string binary = std::to_string(bytes);
  static constexpr const char* kBinary[] = {"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"};
  for (size_t i = 0; i < std::size(kBinary); ++i) {
    const unsigned shift = static_cast<unsigned>(10 * (std::size(kBinary) - i));
    if (bytes % (uint64_t{1} << shift) == 0) {
      binary = std::to_string(bytes >> shift) + kBinary[i];
      break;
    }
  }
  std::string decimal = std::to_string(bytes);
  static constexpr const char* kDecimal[] = {"E", "P", "T", "G", "M", "k"};
  uint64_t unit = 1'000'000'000'000'000'000;
  for (const char* suffix : kDecimal) {
    if (bytes % unit == 0) {
      decimal = std::to_string(bytes / unit) + suffix;
      break;
    }
    unit /= 1000;
  }
  return decimal.size() < binary.size() ? decimal : binary;
}

std::string FormatCpuQuantity(uint32_t millicores) {
  if (millicores % 1000 == 0) return std::to_string(millicores / 1000);
  return std::to_string(millicores) + "m";
}

}  // namespace podless::workloads
