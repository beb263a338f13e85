// Incremental HTTP/1.1 request-head parser (RFC 9112) and the small URL
// helpers the outbound entry and the admin server need.
//
// The input is untrusted: every byte is checked against the grammar, sizes are
// bounded (kMaxRequestHeadBytes, kMaxRequestHeaders), and constructs that make
// request smuggling possible (obs-fold, bare CR, space before the colon,
// conflicting Content-Length, Content-Length together with
// Transfer-Encoding) are rejected rather than "repaired". Only the head is
// parsed; the body (if any) is the caller's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "workloads/result.h"

namespace podless::proxy {

inline constexpr size_t kMaxRequestHeadBytes = 64 * 1024;
inline constexpr size_t kMaxRequestHeaders = 100;

using Http1Headers = std::vector<std::pair<std::string, std::string>>;

// The four request-target forms of RFC 9112 section 3.2.
enum class RequestTargetForm {
  kOrigin,     // "/path?query"
  kAbsolute,   // "http://host:port/path" (requests to a proxy)
  kAuthority,  // "host:port" (CONNECT only)
  kAsterisk,   // "*" (OPTIONS only)
};

struct Http1Request {
  std::string method;
  std::string target;
  std::string version;  // "HTTP/1.1" or "HTTP/1.0"
  RequestTargetForm target_form = RequestTargetForm::kOrigin;
  Http1Headers headers;  // in arrival order, names as sent, values without surrounding OWS

  // The first header with this name (ASCII case-insensitive).
  std::optional<std::string_view> Header(std::string_view name) const;
  // HTTP/1.1: persistent unless a Connection header lists "close".
  // HTTP/1.0: persistent only if a Connection header lists "keep-alive".
  bool keep_alive() const;
  // The body length announced by Content-Length; -1 when there is none (or it
  // is not a valid number, which the parser never lets through).
  int64_t content_length() const;
  // True when the last transfer coding is "chunked".
  bool chunked() const;
};

class Http1RequestParser {
 public:
  enum class State { kIncomplete, kDone, kError };

  // Feeds the next bytes of the connection. `*consumed` is set to the number
  // of bytes of `bytes` that belong to the request head: all of them while
  // kIncomplete, only up to the end of the head on kDone (what follows is the
  // body or the next request and stays the caller's). After kDone or kError
  // the parser accepts no more input until Reset().
  State Feed(std::string_view bytes, size_t* consumed);

  // Prepares for the next request on a persistent connection.
  void Reset();

  State state() const { return state_; }
  const Http1Request& request() const { return request_; }
  // What is wrong and where, e.g. "header line 3: invalid character 0x01 in
  // value of \"X-A\"". Empty unless state() is kError.
  const std::string& error() const { return error_; }
  // The status to answer a rejected request with: 400, 431 (head too large),
  // 501 (Transfer-Encoding not supported) or 505 (HTTP version).
  int error_status() const { return error_status_; }

 private:
  State Fail(int status, std::string message);
  State ParseRequestLine(std::string_view line);
  State ParseHeaderLine(std::string_view line);
  State FinishHead();

  State state_ = State::kIncomplete;
  std::string line_;       // the line being received, terminator included once complete
  size_t head_bytes_ = 0;  // bytes counted against kMaxRequestHeadBytes
  bool have_request_line_ = false;
  bool method_checked_ = false;  // the method was seen whole (a space or line end followed)
  Http1Request request_;
  std::string error_;
  int error_status_ = 0;
};

struct HostPort {
  enum class Kind { kName, kIPv4, kIPv6 };
  std::string host;  // a name (lower-cased), dotted IPv4, or IPv6 without brackets
  uint16_t port = 0;
  Kind kind = Kind::kName;

  // "host:port", with brackets around an IPv6 host.
  std::string ToString() const;
  bool operator==(const HostPort&) const = default;
};

// Parses "host:port", "[v6]:port", "1.2.3.4:port" or, when default_port is
// not 0, the same without ":port". Ports are 1..65535, or 0..65535 with
// `allow_port_zero` (listen addresses: 0 asks for any free port). User info
// ("a@b") and malformed names or addresses are errors naming what is wrong.
Result<HostPort> ParseAuthority(std::string_view authority, uint16_t default_port,
                                bool allow_port_zero = false);

struct AbsoluteUrl {
  std::string scheme;          // always "http"
  HostPort authority;          // port defaults to 80
  std::string path_and_query;  // "/" when the URL has no path; fragment dropped
};

// Parses an absolute-form request target. Only the http scheme is accepted:
// https through a proxy goes through CONNECT.
Result<AbsoluteUrl> ParseAbsoluteUrl(std::string_view url);

// "OK" for 200 and so on; "Unknown" for a status the table does not hold.
std::string_view ReasonPhrase(int status);

// "HTTP/1.1 <status> <reason>\r\n<headers>\r\n". An empty reason takes the
// standard phrase. CR, LF and NUL in names or values are replaced by spaces so
// that no caller-supplied text can split the response.
std::string FormatResponseHead(int status, std::string_view reason, const Http1Headers& headers);

// ASCII case-insensitive comparison (header names, tokens).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace podless::proxy
