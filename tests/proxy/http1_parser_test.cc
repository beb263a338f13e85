#include "proxy/base/http1_parser.h"

#include <doctest.h>

#include <string>

namespace podless::proxy {
namespace {

using State = Http1RequestParser::State;

struct Parsed {
  State state;
  size_t consumed;
  Http1RequestParser parser;
};

// Feeds `input` in one piece.
Parsed ParseAll(std::string_view input) {
  Parsed p{State::kIncomplete, 0, {}};
  p.state = p.parser.Feed(input, &p.consumed);
  return p;
}

// Feeds `input` one byte at a time until the parser is done or fails;
// returns the state and the total number of bytes consumed.
Parsed ParseByteByByte(std::string_view input) {
  Parsed p{State::kIncomplete, 0, {}};
  for (size_t i = 0; i < input.size() && p.state == State::kIncomplete; ++i) {
    size_t n = 0;
    p.state = p.parser.Feed(input.substr(i, 1), &n);
    p.consumed += n;
  }
  return p;
}

std::string ErrorOf(std::string_view input) {
  Parsed p = ParseAll(input);
  REQUIRE(p.state == State::kError);
  return p.parser.error();
}

TEST_CASE("Http1RequestParser: parses an origin-form GET with headers") {
  Parsed p = ParseAll("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  v  \r\n\r\n");
  REQUIRE(p.state == State::kDone);
  const Http1Request& r = p.parser.request();
  CHECK(r.method == "GET");
  CHECK(r.target == "/metrics?x=1");
  CHECK(r.version == "HTTP/1.1");
  CHECK(r.target_form == RequestTargetForm::kOrigin);
  REQUIRE(r.headers.size() == 2);
  CHECK(r.headers[1].first == "X-Thing");
  CHECK(r.headers[1].second == "v");
  CHECK(r.Header("x-thing") == "v");
  CHECK(r.Header("HOST") == "a");
  CHECK_FALSE(r.Header("missing").has_value());
  CHECK(r.keep_alive());
  CHECK(r.content_length() == -1);
  CHECK_FALSE(r.chunked());
}

TEST_CASE("Http1RequestParser: leaves the bytes after the head unconsumed") {
  std::string head = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
  Parsed p = ParseAll(head + "hello" + "GET / HTTP/1.1\r\n");
  REQUIRE(p.state == State::kDone);
  CHECK(p.consumed == head.size());
  CHECK(p.parser.request().content_length() == 5);
}

TEST_CASE("Http1RequestParser: byte-by-byte feeding gives the same request as one piece") {
  std::string input =
      "CONNECT 10.0.0.1:8080 HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n"
      "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\nPAYLOAD";
  Parsed whole = ParseAll(input);
  Parsed bytes = ParseByteByByte(input);
  REQUIRE(whole.state == State::kDone);
  REQUIRE(bytes.state == State::kDone);
  CHECK(bytes.consumed == whole.consumed);
  CHECK(bytes.consumed == input.size() - 7);
  CHECK(bytes.parser.request().target_form == RequestTargetForm::kAuthority);
  CHECK(bytes.parser.request().headers == whole.parser.request().headers);
  CHECK(bytes.parser.request().target == "10.0.0.1:8080");
}

TEST_CASE("Http1RequestParser: accepts bare LF line endings and leading empty lines") {
  Parsed p = ParseAll("\r\n\nGET / HTTP/1.1\nHost: a\n\n");
  REQUIRE(p.state == State::kDone);
  CHECK(p.parser.request().method == "GET");
  CHECK(p.parser.request().Header("Host") == "a");
}

TEST_CASE("Http1RequestParser: reports kIncomplete and consumes everything on a partial head") {
  std::string input = "GET / HTTP/1.1\r\nHost: a\r\n";
  Parsed p = ParseAll(input);
  CHECK(p.state == State::kIncomplete);
  CHECK(p.consumed == input.size());
  size_t n = 0;
  CHECK(p.parser.Feed("\r", &n) == State::kIncomplete);
  CHECK(p.parser.Feed("\n", &n) == State::kDone);
}

TEST_CASE("Http1RequestParser: classifies the target forms") {
  CHECK(ParseAll("GET http://web.shop.svc:8080/a?b HTTP/1.1\r\nHost: x\r\n\r\n")
            .parser.request()
            .target_form == RequestTargetForm::kAbsolute);
  CHECK(ParseAll("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").parser.request().target_form ==
        RequestTargetForm::kAsterisk);
  CHECK(ErrorOf("GET * HTTP/1.1\r\nHost: x\r\n\r\n").find("only for OPTIONS") != std::string::npos);
  CHECK(ErrorOf("GET foo HTTP/1.1\r\nHost: x\r\n\r\n").find("neither") != std::string::npos);
  CHECK(ErrorOf("CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n").find("CONNECT target") !=
        std::string::npos);
  CHECK(ErrorOf("CONNECT host HTTP/1.1\r\nHost: x\r\n\r\n").find("missing port") !=
        std::string::npos);
}

TEST_CASE("Http1RequestParser: keep-alive follows the version and Connection tokens") {
  CHECK_FALSE(ParseAll("GET / HTTP/1.0\r\n\r\n").parser.request().keep_alive());
  CHECK(ParseAll("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").parser.request().keep_alive());
  CHECK_FALSE(ParseAll("GET / HTTP/1.1\r\nHost: a\r\nConnection: te, close\r\n\r\n")
                  .parser.request()
                  .keep_alive());
  CHECK(ParseAll("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n")
            .parser.request()
            .keep_alive());
}

TEST_CASE("Http1RequestParser: rejects malformed request lines with 400") {
  CHECK(ErrorOf("GET /\r\n\r\n").find("request line") != std::string::npos);
  CHECK(ErrorOf("GET  / HTTP/1.1\r\nHost: a\r\n\r\n").find("request line") != std::string::npos);
  CHECK(ErrorOf("GET / HTTP/1.1 \r\nHost: a\r\n\r\n").find("request line") != std::string::npos);
  CHECK(ErrorOf("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n").find("0x01 in request target") !=
        std::string::npos);
  CHECK(ErrorOf("GET / HTTP/1.x\r\nHost: a\r\n\r\n").find("malformed HTTP version") !=
        std::string::npos);
  CHECK(ErrorOf("GET / http/1.1\r\nHost: a\r\n\r\n").find("malformed HTTP version") !=
        std::string::npos);
  Parsed p = ParseAll("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(p.parser.error_status() == 0);
  Parsed bad = ParseAll("GET / HTTP/1\r\n\r\n");
  CHECK(bad.parser.error_status() == 400);
}

TEST_CASE("Http1RequestParser: rejects unsupported HTTP versions with 505") {
  for (const char* input :
       {"GET / HTTP/2.0\r\n\r\n", "GET / HTTP/0.9\r\n\r\n", "GET / HTTP/1.2\r\nHost: a\r\n\r\n"}) {
    Parsed p = ParseAll(input);
    REQUIRE(p.state == State::kError);
    CHECK(p.parser.error_status() == 505);
    CHECK(p.parser.error().find("not supported") != std::string::npos);
  }
}

TEST_CASE("Http1RequestParser: refuses a non-HTTP client at its first byte") {
  // A TLS ClientHello begins with 0x16 0x03.
  size_t n = 0;
  Http1RequestParser parser;
  CHECK(parser.Feed(std::string_view("\x16\x03\x01\x02\x00", 5), &n) == State::kError);
  CHECK(n == 1);
  CHECK(parser.error().find("0x16 in method") != std::string::npos);
  // A SOCKS5 greeting likewise.
  Http1RequestParser socks;
  CHECK(socks.Feed(std::string_view("\x05\x01\x02", 3), &n) == State::kError);
}

TEST_CASE("Http1RequestParser: rejects bad header lines and names the line") {
  CHECK(ErrorOf("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n") ==
        "header line 3: obsolete line folding (a line starting with whitespace) is not allowed");
  CHECK(ErrorOf("GET / HTTP/1.1\r\nHost : a\r\n\r\n")
            .find("header line 1: invalid character 0x20 "
                  "in header name") != std::string::npos);
  CHECK(
      ErrorOf("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n").find("header line 2: missing ':'") !=
      std::string::npos);
  CHECK(ErrorOf("GET / HTTP/1.1\r\n: a\r\n\r\n").find("empty header name") != std::string::npos);
  CHECK(ErrorOf(std::string("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", 30))
            .find("invalid character 0x00 in value of \"Host\"") != std::string::npos);
  // A bare CR inside a line is a control character.
  CHECK(ErrorOf("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n").find("0x0D") != std::string::npos);
  CHECK(ErrorOf("GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n").find("0x7F") != std::string::npos);
}

TEST_CASE("Http1RequestParser: accepts obs-text (bytes >= 0x80) in header values") {
  Parsed p = ParseAll("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n");
  REQUIRE(p.state == State::kDone);
  CHECK(p.parser.request().Header("X-Name") == "caf\xc3\xa9");
}

TEST_CASE("Http1RequestParser: enforces the Host rules of HTTP/1.1") {
  CHECK(ErrorOf("GET / HTTP/1.1\r\n\r\n").find("missing Host") != std::string::npos);
  CHECK(ErrorOf("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n") == "more than one Host header");
  CHECK(ParseAll("GET / HTTP/1.0\r\n\r\n").state == State::kDone);
}

TEST_CASE("Http1RequestParser: rejects ambiguous message framing") {
  CHECK(ErrorOf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") ==
        "conflicting Content-Length values");
  CHECK(ErrorOf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n")
            .find("invalid Content-Length") != std::string::npos);
  CHECK(ErrorOf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n")
            .find("invalid Content-Length") != std::string::npos);
  CHECK(ErrorOf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n")
            .find("invalid Content-Length") != std::string::npos);
  CHECK(ErrorOf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                "Transfer-Encoding: chunked\r\n\r\n") ==
        "both Transfer-Encoding and Content-Length present");
  CHECK(ErrorOf("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
            .find("must be the last coding") != std::string::npos);
  CHECK(ErrorOf("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").find("HTTP/1.0") !=
        std::string::npos);
  Parsed gzip = ParseAll("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
  REQUIRE(gzip.state == State::kError);
  CHECK(gzip.parser.error_status() == 501);

  // Identical repeated values are one length (RFC 9110 section 8.6).
  Parsed same = ParseAll("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\n");
  REQUIRE(same.state == State::kDone);
  CHECK(same.parser.request().content_length() == 4);
  Parsed chunked = ParseAll("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
  REQUIRE(chunked.state == State::kDone);
  CHECK(chunked.parser.request().chunked());
}

TEST_CASE("Http1RequestParser: limits the head to 64 KiB with 431") {
  std::string input = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(70000, 'a');
  Parsed p = ParseAll(input);
  REQUIRE(p.state == State::kError);
  CHECK(p.parser.error_status() == 431);
  CHECK(p.parser.error() == "request head exceeds 65536 bytes");
  // Leading empty lines count too, so they cannot keep a connection busy.
  Parsed blank = ParseAll(std::string(70000, '\n'));
  CHECK(blank.state == State::kError);
  // Exactly at the limit is fine.
  std::string head = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  std::string exact = head + std::string(kMaxRequestHeadBytes - head.size() - 4, 'b') + "\r\n\r\n";
  CHECK(exact.size() == kMaxRequestHeadBytes);
  CHECK(ParseAll(exact).state == State::kDone);
}

TEST_CASE("Http1RequestParser: limits the number of header fields to 100") {
  std::string input = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 99; ++i) input += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(ParseAll(input + "\r\n").state == State::kDone);
  Parsed p = ParseAll(input + "X-Extra: v\r\n\r\n");
  REQUIRE(p.state == State::kError);
  CHECK(p.parser.error_status() == 431);
  CHECK(p.parser.error() == "more than 100 header fields");
}

TEST_CASE("Http1RequestParser: accepts no input after done or error until Reset") {
  Http1RequestParser parser;
  size_t n = 0;
  REQUIRE(parser.Feed("GET /a HTTP/1.1\r\nHost: a\r\n\r\n", &n) == State::kDone);
  CHECK(parser.Feed("GET /b HTTP/1.1\r\n", &n) == State::kDone);
  CHECK(n == 0);
  parser.Reset();
  REQUIRE(parser.Feed("GET /b HTTP/1.1\r\nHost: a\r\n\r\n", &n) == State::kDone);
  CHECK(parser.request().target == "/b");
  CHECK(parser.request().headers.size() == 1);
}

TEST_CASE("Http1RequestParser: every truncation of a valid head is incomplete, never an error") {
  std::string input =
      "GET http://[::1]:8080/p?q HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 0\r\n\r\n";
  for (size_t len = 0; len < input.size(); ++len) {
    Parsed p = ParseAll(input.substr(0, len));
    INFO("prefix length " << len);
    CHECK(p.state == State::kIncomplete);
  }
}

TEST_CASE(
    "Http1RequestParser: mutated input gives the same verdict in one piece and byte by byte") {
  // Deterministic mutations of valid heads: the parser must not crash, and
  // how the input is split must not change the outcome.
  const std::string seeds[] = {
      "GET /a?b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      "CONNECT [::1]:443 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic eDp5\r\n\r\n",
      "POST http://h:1/p HTTP/1.0\nContent-Length: 3\n\nabc",
  };
  uint32_t seed = 12345;
  auto next = [&seed] {
    seed = seed * 1103515245 + 12345;
    return (seed >> 8) & 0xffffff;
  };
  int done = 0;
  int errors = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string input = seeds[round % 3];
    for (uint32_t m = next() % 4; m > 0; --m) {
      size_t at = next() % input.size();
      switch (next() % 3) {
        case 0:
          input[at] = static_cast<char>(next() & 0xff);
          break;
        case 1:
          input.erase(at, 1);
          break;
        default:
          input.insert(at, 1, "\r\n :\t\0/"[next() % 7]);
          break;
      }
    }
    Parsed whole = ParseAll(input);
    Parsed bytes = ParseByteByByte(input);
    INFO("input: " << input);
    REQUIRE(whole.state == bytes.state);
    CHECK(whole.parser.error() == bytes.parser.error());
    if (whole.state == State::kDone) {
      ++done;
      CHECK(whole.consumed == bytes.consumed);
      CHECK(whole.parser.request().headers == bytes.parser.request().headers);
    }
    errors += whole.state == State::kError;
  }
  // The mutations reach both outcomes (the test would be idle otherwise).
  CHECK(done > 100);
  CHECK(errors > 100);
}

TEST_CASE("Http1RequestParser: random bytes are refused, never accepted") {
  uint32_t seed = 777;
  for (int round = 0; round < 200; ++round) {
    std::string input;
    for (int i = 0; i < 2000; ++i) {
      seed = seed * 1103515245 + 12345;
      input += static_cast<char>((seed >> 16) & 0xff);
    }
    Parsed p = ParseAll(input);
    CHECK(p.state == State::kError);
    CHECK(p.consumed <= input.size());
  }
}

TEST_CASE("ParseAuthority: names, IPv4 and bracketed IPv6 with ports") {
  Result<HostPort> name = ParseAuthority("Web.Shop.svc:8080", 0);
  REQUIRE(name.ok());
  CHECK(name->host == "web.shop.svc");
  CHECK(name->port == 8080);
  CHECK(name->kind == HostPort::Kind::kName);

  Result<HostPort> v4 = ParseAuthority("127.64.0.1:15008", 0);
  REQUIRE(v4.ok());
  CHECK(v4->kind == HostPort::Kind::kIPv4);
  CHECK(v4->ToString() == "127.64.0.1:15008");

  Result<HostPort> v6 = ParseAuthority("[0:0::1]:443", 0);
  REQUIRE(v6.ok());
  CHECK(v6->kind == HostPort::Kind::kIPv6);
  CHECK(v6->host == "::1");
  CHECK(v6->ToString() == "[::1]:443");

  Result<HostPort> listen = ParseAuthority("127.0.0.1:0", 0, /*allow_port_zero=*/true);
  REQUIRE(listen.ok());
  CHECK(listen->port == 0);

  Result<HostPort> defaulted = ParseAuthority("example.com.", 80);
  REQUIRE(defaulted.ok());
  CHECK(defaulted->host == "example.com");
  CHECK(defaulted->port == 80);
}

TEST_CASE("ParseAuthority: rejects malformed authorities with a reason") {
  auto error = [](std::string_view input, uint16_t port = 0) {
    Result<HostPort> r = ParseAuthority(input, port);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::kInvalidArgument);
    return r.error().message;
  };
  CHECK(error("") == "empty authority");
  CHECK(error("host").find("missing port") != std::string::npos);
  CHECK(error("host:0").find("out of range") != std::string::npos);
  CHECK(error("host:65536").find("out of range") != std::string::npos);
  CHECK(error("host:123456").find("out of range") != std::string::npos);
  CHECK(error("host:8o").find("not a number") != std::string::npos);
  CHECK(error("host:", 80).find("empty port") != std::string::npos);
  CHECK(error(":80").find("empty host") != std::string::npos);
  CHECK(error("user:pw@host:80").find("user info") != std::string::npos);
  CHECK(error("::1:80").find("brackets") != std::string::npos);
  CHECK(error("[::1:80").find("unterminated") != std::string::npos);
  CHECK(error("[::g]:80").find("invalid IPv6") != std::string::npos);
  CHECK(error("[::1]x").find("after ']'") != std::string::npos);
  CHECK(error("[fe80::1%25eth0]:80").find("zone") != std::string::npos);
  CHECK(error("1.2.3.256:80").find("invalid IPv4") != std::string::npos);
  CHECK(error("01.2.3.4:80").find("invalid IPv4") != std::string::npos);
  // inet_aton() would read these as addresses; they are neither names nor IPv4.
  CHECK(error("0x7f.1:80").find("invalid IPv4") != std::string::npos);
  CHECK(error("2130706433:80").find("invalid IPv4") != std::string::npos);
  CHECK(error("a..b:80").find("empty label") != std::string::npos);
  CHECK(error("a b:80").find("0x20") != std::string::npos);
  CHECK(error(std::string(64, 'a') + ".b:80").find("63") != std::string::npos);
}

TEST_CASE("ParseAbsoluteUrl: splits http URLs and refuses other schemes") {
  Result<AbsoluteUrl> url = ParseAbsoluteUrl("HTTP://web.shop.svc.cluster.local/a/b?c=d#frag");
  REQUIRE(url.ok());
  CHECK(url->scheme == "http");
  CHECK(url->authority.host == "web.shop.svc.cluster.local");
  CHECK(url->authority.port == 80);
  CHECK(url->path_and_query == "/a/b?c=d");

  Result<AbsoluteUrl> bare = ParseAbsoluteUrl("http://10.0.0.1:8080");
  REQUIRE(bare.ok());
  CHECK(bare->authority.port == 8080);
  CHECK(bare->path_and_query == "/");
  Result<AbsoluteUrl> query = ParseAbsoluteUrl("http://h?x");
  REQUIRE(query.ok());
  CHECK(query->path_and_query == "/?x");

  Result<AbsoluteUrl> https = ParseAbsoluteUrl("https://h/");
  REQUIRE_FALSE(https.ok());
  CHECK(https.error().message.find("use CONNECT") != std::string::npos);
  CHECK_FALSE(ParseAbsoluteUrl("ftp://h/").ok());
  CHECK_FALSE(ParseAbsoluteUrl("/relative").ok());
  CHECK_FALSE(ParseAbsoluteUrl("http:///path").ok());
  CHECK_FALSE(ParseAbsoluteUrl("http://u@h/").ok());
}

TEST_CASE("FormatResponseHead: status line, headers, and no response splitting") {
  CHECK(FormatResponseHead(200, "", {{"Content-Length", "2"}}) ==
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
  CHECK(FormatResponseHead(407, "", {}) == "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n");
  CHECK(FormatResponseHead(299, "", {}) == "HTTP/1.1 299 Unknown\r\n\r\n");
  CHECK(FormatResponseHead(503, "Busy", {}) == "HTTP/1.1 503 Busy\r\n\r\n");
  CHECK(FormatResponseHead(200, "OK", {{"X", "a\r\nSet-Cookie: evil"}}) ==
        "HTTP/1.1 200 OK\r\nX: a  Set-Cookie: evil\r\n\r\n");
  CHECK(ReasonPhrase(404) == "Not Found");
  CHECK(ReasonPhrase(505) == "HTTP Version Not Supported");
}

}  // namespace
}  // namespace podless::proxy
