#include "workloads/spiffe_id.h"

#include <cstdio>

namespace podless::workloads {
namespace {

constexpr std::string_view kScheme = "spiffe://";
constexpr size_t kMaxIdLength = 2048;
constexpr size_t kMaxTrustDomainLength = 255;

bool IsTrustDomainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

bool IsPathChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

Error Invalid(std::string_view uri, std::string what) {
  return MakeError(ErrorCode::kInvalidArgument,
                   "invalid SPIFFE ID \"" + EscapeForMessage(uri) + "\": " + std::move(what));
}

// Says why a character is not allowed, with a more useful message for the
// characters that usually mean a URI feature SPIFFE IDs forbid.
std::string DescribeBadChar(char c, size_t offset, std::string_view where) {
  std::string at = " at byte " + std::to_string(offset);
  switch (c) {
    case '?':
      return "query is not allowed" + at;
    case '#':
      return "fragment is not allowed" + at;
    case '%':
      return "percent-encoding is not allowed" + at;
    case ':':
      if (where == "trust domain") return "port is not allowed" + at;
      break;
    case '@':
      if (where == "trust domain") return "userinfo is not allowed" + at;
      break;
    default:
      break;
  }
  std::string shown = EscapeForMessage(std::string_view(&c, 1));
  if (where == "trust domain") {
    return "character '" + shown + "'" + at +
           " is not allowed in the trust domain (lowercase letters, digits, '.', '-', '_')";
  }
  return "character '" + shown + "'" + at +
         " is not allowed in the path (letters, digits, '.', '-', '_')";
}

}  // namespace

std::string EscapeForMessage(std::string_view bytes, size_t max_bytes) {
  std::string out;
  size_t n = bytes.size() < max_bytes ? bytes.size() : max_bytes;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (n < bytes.size()) out += "...";
  return out;
}

std::string SpiffeId::ToString() const {
  std::string out;
  out.reserve(kScheme.size() + trust_domain.size() + path.size());
  out += kScheme;
  out += trust_domain;
  out += path;
  return out;
}

Status ValidateTrustDomain(std::string_view td) {
  if (td.empty()) return MakeError(ErrorCode::kInvalidArgument, "trust domain is empty");
  if (td.size() > kMaxTrustDomainLength) {
    return MakeError(ErrorCode::kInvalidArgument, "trust domain is " + std::to_string(td.size()) +
                                                      " bytes long, more than " +
                                                      std::to_string(kMaxTrustDomainLength));
  }
  for (size_t i = 0; i < td.size(); ++i) {
    if (!IsTrustDomainChar(td[i])) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "trust domain \"" + EscapeForMessage(td) +
                           "\": " + DescribeBadChar(td[i], i, "trust domain"));
    }
  }
  return {};
}

Result<SpiffeId> SpiffeId::Parse(std::string_view uri) {
  if (uri.empty()) return MakeError(ErrorCode::kInvalidArgument, "SPIFFE ID is empty");
  if (uri.size() > kMaxIdLength) {
    return Invalid(uri, "it is " + std::to_string(uri.size()) + " bytes long, more than " +
                            std::to_string(kMaxIdLength));
  }
  // The scheme is compared case-sensitively: the spec requires lowercase and
  // every SPIFFE library rejects "SPIFFE://".
  if (uri.substr(0, kScheme.size()) != kScheme) {
    return Invalid(uri, "scheme must be \"spiffe://\"");
  }
  std::string_view rest = uri.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view td = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);

  if (td.empty()) return Invalid(uri, "trust domain is missing");
  if (td.size() > kMaxTrustDomainLength) {
    return Invalid(
        uri, "trust domain is longer than " + std::to_string(kMaxTrustDomainLength) + " bytes");
  }
  for (size_t i = 0; i < td.size(); ++i) {
    if (!IsTrustDomainChar(td[i])) {
      return Invalid(uri, DescribeBadChar(td[i], kScheme.size() + i, "trust domain"));
    }
  }

  // Path: a sequence of "/segment", each non-empty and not "." or "..".
  size_t path_offset = kScheme.size() + td.size();
  size_t i = 0;
  while (i < path.size()) {
    // path[i] == '/' here.
    size_t start = i + 1;
    size_t end = start;
    while (end < path.size() && path[end] != '/') {
      if (!IsPathChar(path[end])) {
        return Invalid(uri, DescribeBadChar(path[end], path_offset + end, "path"));
      }
      ++end;
    }
    std::string_view segment = path.substr(start, end - start);
    if (segment.empty()) {
      return Invalid(uri, end == path.size() ? "path has a trailing '/'"
                                             : "path has an empty segment at byte " +
                                                   std::to_string(path_offset + start));
    }
    if (segment == "." || segment == "..") {
      return Invalid(uri, "path segment \"" + std::string(segment) + "\" at byte " +
                              std::to_string(path_offset + start) + " is not allowed");
    }
    i = end;
  }
  return SpiffeId{std::string(td), std::string(path)};
}

SpiffeId SpiffeId::ForServiceAccount(std::string_view td, std::string_view ns,
                                     std::string_view sa) {
  std::string path;
  path.reserve(8 + ns.size() + sa.size());
  path += "/ns/";
  path += ns;
  path += "/sa/";
  path += sa;
  return SpiffeId{std::string(td), std::move(path)};
}

}  // namespace podless::workloads
