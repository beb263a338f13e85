#include "proxy/base/http1_parser.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

namespace podless::proxy {
namespace {

// RFC 9110 tchar: the characters of a token (method, header name, coding).
bool IsTchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

// field-value characters: VCHAR, obs-text, SP and HTAB. CR, LF, NUL and the
// other controls are refused (they are how responses and requests get split).
bool IsFieldValueChar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

std::string Hex(unsigned char c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", c);
  return buf;
}

// Quotes text for an error message, cut short and with non-printable bytes
// escaped so that hostile input cannot garble a log line.
std::string Quote(std::string_view text) {
  constexpr size_t kMaxQuoted = 64;
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kMaxQuoted; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMaxQuoted) out += "...";
  out += '"';
  return out;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls `fn(element)` for each element of a comma-separated list, trimmed.
template <typename Fn>
void ForEachListElement(std::string_view list, Fn&& fn) {
  while (true) {
    size_t comma = list.find(',');
    fn(TrimOws(list.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

bool ListContainsToken(const Http1Headers& headers, std::string_view name, std::string_view token) {
  bool found = false;
  for (const auto& [n, v] : headers) {
    if (!EqualsIgnoreCase(n, name)) continue;
    ForEachListElement(v, [&](std::string_view e) { found = found || EqualsIgnoreCase(e, token); });
  }
  return found;
}

// A Content-Length value: 1*DIGIT, or a list of identical such numbers (RFC
// 9110 section 8.6 lets a recipient accept "5, 5"). At most 18 digits so the
// value fits an int64_t.
std::optional<int64_t> ParseContentLengthValue(std::string_view value) {
  std::optional<int64_t> result;
  bool bad = false;
  ForEachListElement(value, [&](std::string_view e) {
    if (e.empty() || e.size() > 18) {
      bad = true;
      return;
    }
    int64_t n = 0;
    for (char c : e) {
      if (c < '0' || c > '9') {
        bad = true;
        return;
      }
      n = n * 10 + (c - '0');
    }
    if (result && *result != n) bad = true;
    result = n;
  });
  if (bad) return std::nullopt;
  return result;
}

bool IsSchemeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.';
}

// True when `target` starts with `scheme "://"` (the absolute form).
bool LooksAbsolute(std::string_view target) {
  size_t sep = target.find("://");
  if (sep == std::string_view::npos || sep == 0) return false;
  if (!((target[0] | 0x20) >= 'a' && (target[0] | 0x20) <= 'z')) return false;
  for (size_t i = 0; i < sep; ++i) {
    if (!IsSchemeChar(target[i])) return false;
  }
  return true;
}

Error InvalidArgument(std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

// WHATWG URL rule: a host whose last label is a number (decimal, or 0x hex)
// is an IPv4 address attempt, never a name. Resolvers such as inet_aton()
// would read "0x7f.1" as 127.0.0.1, so such strings must not pass as names.
bool LastLabelIsNumeric(std::string_view host) {
  size_t dot = host.rfind('.');
  std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty()) return false;
  if (last.size() >= 2 && last[0] == '0' && (last[1] | 0x20) == 'x') {
    for (char c : last.substr(2)) {
      if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    }
    return true;
  }
  for (char c : last) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

Result<HostPort> ParseHost(std::string_view host, std::string_view whole) {
  HostPort out;
  if (host.empty()) return InvalidArgument("empty host in " + Quote(whole));
  if (host.front() == '[') {
    if (host.back() != ']') return InvalidArgument("unterminated '[' in " + Quote(whole));
    std::string literal(host.substr(1, host.size() - 2));
    in6_addr addr;
    if (literal.find('%') != std::string::npos) {
      return InvalidArgument("IPv6 zone identifiers are not supported in " + Quote(whole));
    }
    if (inet_pton(AF_INET6, literal.c_str(), &addr) != 1) {
      return InvalidArgument("invalid IPv6 address " + Quote(literal));
    }
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &addr, text, sizeof text);
    out.host = text;
    out.kind = HostPort::Kind::kIPv6;
    return out;
  }
  if (host.find(':') != std::string_view::npos) {
    return InvalidArgument("IPv6 address must be in brackets in " + Quote(whole));
  }
  // One trailing dot (a fully qualified name) is dropped first, so that
  // "127.0.0.1." is the IPv4 address it spells, not a name that bypasses the
  // address checks (found by tests/fuzz/http1_parser_fuzz).
  if (host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return InvalidArgument("empty host in " + Quote(whole));
  if (LastLabelIsNumeric(host)) {
    std::string literal(host);
    in_addr addr;
    if (inet_pton(AF_INET, literal.c_str(), &addr) != 1) {
      return InvalidArgument("invalid IPv4 address " + Quote(literal));
    }
    out.host = std::move(literal);
    out.kind = HostPort::Kind::kIPv4;
    return out;
  }
  // A DNS name: letters, digits, '-', '_' in labels of 1..63, 253 in all.
  if (host.size() > 253) return InvalidArgument("host name longer than 253 characters");
  size_t label = 0;
  for (size_t i = 0; i <= host.size(); ++i) {
    if (i == host.size() || host[i] == '.') {
      if (label == 0) return InvalidArgument("empty label in host name " + Quote(host));
      if (label > 63) return InvalidArgument("label longer than 63 characters in " + Quote(host));
      label = 0;
      continue;
    }
    char c = host[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) {
      return InvalidArgument("invalid character " + Hex(static_cast<unsigned char>(c)) +
                             " in host name " + Quote(host));
    }
    ++label;
  }
  out.host.reserve(host.size());
  for (char c : host) out.host += LowerAscii(c);
  out.kind = HostPort::Kind::kName;
  return out;
}

Result<uint16_t> ParsePort(std::string_view port, std::string_view whole, bool allow_zero) {
  if (port.empty()) return InvalidArgument("empty port in " + Quote(whole));
  if (port.size() > 5) return InvalidArgument("port " + Quote(port) + " out of range 1-65535");
  uint32_t n = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return InvalidArgument("port " + Quote(port) + " is not a number");
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  if ((n == 0 && !allow_zero) || n > 65535) {
    return InvalidArgument("port " + Quote(port) + " out of range " +
                           (allow_zero ? "0-65535" : "1-65535"));
  }
  return static_cast<uint16_t>(n);
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

// --- Http1Request ---------------------------------------------------------

std::optional<std::string_view> Http1Request::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (EqualsIgnoreCase(n, name)) return std::string_view(v);
  }
  return std::nullopt;
}

bool Http1Request::keep_alive() const {
  if (version == "HTTP/1.0") return ListContainsToken(headers, "Connection", "keep-alive");
  return !ListContainsToken(headers, "Connection", "close");
}

int64_t Http1Request::content_length() const {
  std::optional<std::string_view> value = Header("Content-Length");
  if (!value) return -1;
  std::optional<int64_t> n = ParseContentLengthValue(*value);
  return n ? *n : -1;
}

bool Http1Request::chunked() const {
  std::string_view last;
  for (const auto& [n, v] : headers) {
    if (!EqualsIgnoreCase(n, "Transfer-Encoding")) continue;
    ForEachListElement(v, [&](std::string_view e) { last = e; });
  }
  return EqualsIgnoreCase(last, "chunked");
}

// --- Http1RequestParser ---------------------------------------------------

Http1RequestParser::State Http1RequestParser::Fail(int status, std::string message) {
  state_ = State::kError;
  error_status_ = status;
  error_ = std::move(message);
  return state_;
}

void Http1RequestParser::Reset() {
  state_ = State::kIncomplete;
  line_.clear();
  head_bytes_ = 0;
  have_request_line_ = false;
  method_checked_ = false;
  request_ = Http1Request{};
  error_.clear();
  error_status_ = 0;
}

Http1RequestParser::State Http1RequestParser::Feed(std::string_view bytes, size_t* consumed) {
  *consumed = 0;
  if (state_ != State::kIncomplete) return state_;
  size_t i = 0;
  while (i < bytes.size()) {
    const void* nl = std::memchr(bytes.data() + i, '\n', bytes.size() - i);
    size_t end =
        nl ? static_cast<size_t>(static_cast<const char*>(nl) - bytes.data()) + 1 : bytes.size();
    size_t take = end - i;
    // Bytes beyond the limit are never taken: the head fails at the same
    // byte however the input is split.
    bool too_large = head_bytes_ + take > kMaxRequestHeadBytes;
    if (too_large) {
      take = kMaxRequestHeadBytes - head_bytes_;
      end = i + take;
      nl = nullptr;
    }
    size_t from = line_.size();
    line_.append(bytes.data() + i, take);
    // While the method is still arriving, check it as it comes: a client
    // speaking something else (TLS, SOCKS) is refused at its first byte
    // instead of after a timeout.
    if (!method_checked_) {
      for (size_t k = from; k < line_.size(); ++k) {
        auto c = static_cast<unsigned char>(line_[k]);
        if (c == ' ') {
          method_checked_ = true;
          break;
        }
        // Line terminators (of leading empty lines, or of a request line
        // without spaces) are judged once the line is complete.
        if (c == '\r' || c == '\n') continue;
        if (!IsTchar(c)) {
          *consumed = i + (k - from) + 1;
          return Fail(400, "request line: invalid character " + Hex(c) + " in method");
        }
      }
    }
    head_bytes_ += take;
    i = end;
    if (too_large) {
      *consumed = i;
      return Fail(431, "request head exceeds " + std::to_string(kMaxRequestHeadBytes) + " bytes");
    }
    if (!nl) break;

    // A complete line: it ends in LF, optionally preceded by CR. A CR
    // anywhere else is a control character and rejected by the line parsers.
    std::string_view line(line_);
    line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    State state = state_;
    if (line.empty()) {
      // RFC 9112 section 2.2: empty lines before the request line are
      // ignored (clients send a stray CRLF after a body); they still count
      // against the head limit. After it, the empty line ends the head.
      if (have_request_line_) {
        *consumed = i;
        return FinishHead();
      }
    } else if (!have_request_line_) {
      state = ParseRequestLine(line);
      have_request_line_ = true;
      method_checked_ = true;
    } else {
      state = ParseHeaderLine(line);
    }
    line_.clear();
    if (state == State::kError) {
      *consumed = i;
      return state;
    }
  }
  *consumed = bytes.size();
  return state_;
}

// request-line = method SP request-target SP HTTP-version, single spaces.
Http1RequestParser::State Http1RequestParser::ParseRequestLine(std::string_view line) {
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Fail(400, "request line: expected \"METHOD TARGET HTTP/1.1\", got " + Quote(line));
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (method.empty()) return Fail(400, "request line: empty method");
  for (char c : method) {
    if (!IsTchar(static_cast<unsigned char>(c))) {
      return Fail(400, "request line: invalid character " + Hex(static_cast<unsigned char>(c)) +
                           " in method");
    }
  }
  if (target.empty()) return Fail(400, "request line: empty request target");
  for (char c : target) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return Fail(400, "request line: invalid character " + Hex(u) + " in request target");
    }
  }
  bool version_syntax = version.size() == 8 && version.substr(0, 5) == "HTTP/" &&
                        std::isdigit(static_cast<unsigned char>(version[5])) && version[6] == '.' &&
                        std::isdigit(static_cast<unsigned char>(version[7]));
  if (!version_syntax) return Fail(400, "request line: malformed HTTP version " + Quote(version));
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return Fail(505, "request line: HTTP version " + Quote(version) + " not supported");
  }
  request_.method = method;
  request_.target = target;
  request_.version = version;

  if (method == "CONNECT") {
    Result<HostPort> authority = ParseAuthority(target, 0);
    if (!authority.ok()) {
      return Fail(
          400, "request line: CONNECT target " + Quote(target) + ": " + authority.error().message);
    }
    request_.target_form = RequestTargetForm::kAuthority;
  } else if (target == "*") {
    if (method != "OPTIONS") return Fail(400, "request line: target \"*\" is only for OPTIONS");
    request_.target_form = RequestTargetForm::kAsterisk;
  } else if (target.front() == '/') {
    request_.target_form = RequestTargetForm::kOrigin;
  } else if (LooksAbsolute(target)) {
    request_.target_form = RequestTargetForm::kAbsolute;
  } else {
    return Fail(400, "request line: request target " + Quote(target) +
                         " is neither \"/path\" nor \"scheme://host/path\"");
  }
  return state_;
}

// field-line = field-name ":" OWS field-value OWS
Http1RequestParser::State Http1RequestParser::ParseHeaderLine(std::string_view field) {
  if (request_.headers.size() == kMaxRequestHeaders) {
    return Fail(431, "more than " + std::to_string(kMaxRequestHeaders) + " header fields");
  }
  std::string where = "header line " + std::to_string(request_.headers.size() + 1) + ": ";
  if (field.front() == ' ' || field.front() == '\t') {
    return Fail(400, where +
                         "obsolete line folding (a line starting with whitespace) is not "
                         "allowed");
  }
  size_t colon = field.find(':');
  if (colon == std::string_view::npos) return Fail(400, where + "missing ':' in " + Quote(field));
  std::string_view name = field.substr(0, colon);
  if (name.empty()) return Fail(400, where + "empty header name");
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (!IsTchar(u)) {
      return Fail(400, where + "invalid character " + Hex(u) + " in header name " + Quote(name));
    }
  }
  std::string_view value = field.substr(colon + 1);
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if (!IsFieldValueChar(u)) {
      return Fail(400, where + "invalid character " + Hex(u) + " in value of " + Quote(name));
    }
  }
  request_.headers.emplace_back(std::string(name), std::string(TrimOws(value)));
  return state_;
}

// Framing and Host: the checks that keep a proxy from reading a request
// differently than the server behind it (RFC 9112 sections 3.2, 6.1, 6.3).
Http1RequestParser::State Http1RequestParser::FinishHead() {
  int hosts = 0;
  bool has_content_length = false;
  int64_t content_length = 0;
  std::vector<std::string_view> codings;
  for (const auto& [name, value] : request_.headers) {
    if (EqualsIgnoreCase(name, "Host")) {
      ++hosts;
    } else if (EqualsIgnoreCase(name, "Content-Length")) {
      std::optional<int64_t> n = ParseContentLengthValue(value);
      if (!n) return Fail(400, "invalid Content-Length " + Quote(value));
      if (has_content_length && content_length != *n) {
        return Fail(400, "conflicting Content-Length values");
      }
      has_content_length = true;
      content_length = *n;
    } else if (EqualsIgnoreCase(name, "Transfer-Encoding")) {
      ForEachListElement(value, [&](std::string_view e) { codings.push_back(e); });
    }
  }
  if (hosts > 1) return Fail(400, "more than one Host header");
  if (hosts == 0 && request_.version == "HTTP/1.1") {
    return Fail(400, "missing Host header (required in HTTP/1.1)");
  }
  if (!codings.empty()) {
    if (request_.version == "HTTP/1.0") {
      return Fail(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
    }
    if (has_content_length) return Fail(400, "both Transfer-Encoding and Content-Length present");
    for (size_t k = 0; k < codings.size(); ++k) {
      if (codings[k].empty()) return Fail(400, "empty transfer coding in Transfer-Encoding");
      bool is_chunked = EqualsIgnoreCase(codings[k], "chunked");
      if (is_chunked && k + 1 != codings.size()) {
        return Fail(400, "Transfer-Encoding: chunked must be the last coding, once");
      }
      if (!is_chunked && k + 1 == codings.size()) {
        return Fail(400,
                    "Transfer-Encoding: the last coding must be chunked, got " + Quote(codings[k]));
      }
      if (!is_chunked) {
        return Fail(501, "Transfer-Encoding " + Quote(codings[k]) + " not supported");
      }
    }
  }

  state_ = State::kDone;
  line_.clear();
  line_.shrink_to_fit();
  return state_;
}

// --- Authorities and URLs -------------------------------------------------

std::string HostPort::ToString() const {
  std::string out;
  if (kind == Kind::kIPv6) {
    out = "[" + host + "]";
  } else {
    out = host;
  }
  out += ':';
  out += std::to_string(port);
  return out;
}

Result<HostPort> ParseAuthority(std::string_view authority, uint16_t default_port,
                                bool allow_port_zero) {
  if (authority.empty()) return InvalidArgument("empty authority");
  if (authority.find('@') != std::string_view::npos) {
    return InvalidArgument("user info is not allowed in " + Quote(authority));
  }
  std::string_view host = authority;
  std::optional<std::string_view> port;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return InvalidArgument("unterminated '[' in " + Quote(authority));
    }
    host = authority.substr(0, close + 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return InvalidArgument("unexpected text after ']' in " + Quote(authority));
      }
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
  }
  Result<HostPort> parsed = ParseHost(host, authority);
  if (!parsed.ok()) return parsed;
  if (port) {
    Result<uint16_t> number = ParsePort(*port, authority, allow_port_zero);
    if (!number.ok()) return number.error();
    parsed->port = *number;
  } else if (default_port == 0) {
    return InvalidArgument("missing port in " + Quote(authority));
  } else {
    parsed->port = default_port;
  }
  return parsed;
}

Result<AbsoluteUrl> ParseAbsoluteUrl(std::string_view url) {
  if (!LooksAbsolute(url)) return InvalidArgument("not an absolute URL: " + Quote(url));
  size_t sep = url.find("://");
  std::string scheme;
  for (char c : url.substr(0, sep)) scheme += LowerAscii(c);
  if (scheme == "https") {
    return InvalidArgument("scheme \"https\" is not supported in " + Quote(url) +
                           ": use CONNECT for https");
  }
  if (scheme != "http") {
    return InvalidArgument("scheme " + Quote(scheme) + " is not supported (only http)");
  }
  std::string_view rest = url.substr(sep + 3);
  size_t path_start = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_start);
  std::string_view path =
      path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  for (char c : path) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return InvalidArgument("invalid character " + Hex(u) + " in path of " + Quote(url));
    }
  }
  Result<HostPort> host = ParseAuthority(authority, 80);
  if (!host.ok()) return host.error();
  AbsoluteUrl out;
  out.scheme = std::move(scheme);
  out.authority = std::move(host).value();
  path = path.substr(0, path.find('#'));
  if (path.empty() || path.front() != '/') out.path_and_query = "/";
  out.path_and_query += path;
  return out;
}

// --- Responses ------------------------------------------------------------

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

namespace {
void AppendSanitized(std::string& out, std::string_view text) {
  for (char c : text) out += (c == '\r' || c == '\n' || c == '\0') ? ' ' : c;
}
}  // namespace

std::string FormatResponseHead(int status, std::string_view reason, const Http1Headers& headers) {
  if (status < 100 || status > 999) status = 500;
  std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
  AppendSanitized(out, reason.empty() ? ReasonPhrase(status) : reason);
  out += "\r\n";
  for (const auto& [name, value] : headers) {
    AppendSanitized(out, name);
    out += ": ";
    AppendSanitized(out, value);
    out += "\r\n";
  }
  out += "\r\n";
  return out;
}

}  // namespace podless::proxy
