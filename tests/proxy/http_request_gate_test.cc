// HttpRequestGate: every request head of a relayed HTTP/1.1 connection is
// held back until it is complete and authorized; bodies pass as they come;
// the next head after a Content-Length or chunked body is checked too.
#include "proxy/http_request_gate.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace podless::proxy {
namespace {

// Allows GET only, and records what it was asked.
struct GetOnly {
  std::vector<std::string> seen;  // "METHOD target" (+ " opaque")
  HttpRequestGate gate{[this](const Http1Request& request, bool opaque_after) {
    seen.push_back(request.method + " " + request.target + (opaque_after ? " opaque" : ""));
    return request.method == "GET";
  }};
  std::string forwarded;

  HttpRequestGate::Verdict Feed(std::string_view bytes) { return gate.Feed(bytes, &forwarded); }
};

constexpr char kGet[] = "GET /a HTTP/1.1\r\nHost: web\r\n\r\n";
constexpr char kPost[] = "POST /b HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\n\r\nbody";

TEST_CASE("HttpRequestGate: an allowed request passes whole, a denied one not at all") {
  GetOnly f;
  CHECK(f.Feed(kGet) == HttpRequestGate::Verdict::kPass);
  CHECK(f.forwarded == kGet);
  CHECK_FALSE(f.gate.response().size());

  GetOnly g;
  CHECK(g.Feed(kPost) == HttpRequestGate::Verdict::kRefused);
  CHECK(g.forwarded.empty());
  CHECK_FALSE(g.gate.forwarded_any());
  CHECK(g.gate.response().starts_with("HTTP/1.1 403 Forbidden\r\n"));
  CHECK(g.gate.response().ends_with("\r\n\r\nRBAC: access denied"));
  // Refused is final.
  CHECK(g.Feed(kGet) == HttpRequestGate::Verdict::kRefused);
  CHECK(g.forwarded.empty());
}

TEST_CASE("HttpRequestGate: a head arriving in pieces is held back until it is complete") {
  GetOnly f;
  std::string get = kGet;
  CHECK(f.Feed(get.substr(0, 10)) == HttpRequestGate::Verdict::kPass);
  CHECK(f.forwarded.empty());
  CHECK(f.seen.empty());
  CHECK(f.Feed(get.substr(10)) == HttpRequestGate::Verdict::kPass);
  CHECK(f.forwarded == get);
  CHECK(f.seen == std::vector<std::string>{"GET /a"});
}

TEST_CASE("HttpRequestGate: the request after a body is checked too (pipelining)") {
  GetOnly f;
  std::string get_with_body = "GET /x HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\n\r\nhello";
  CHECK(f.Feed(get_with_body + kGet + kPost) == HttpRequestGate::Verdict::kRefused);
  CHECK(f.forwarded == get_with_body + kGet);
  CHECK(f.gate.forwarded_any());
  CHECK(f.seen == std::vector<std::string>{"GET /x", "GET /a", "POST /b"});
}

TEST_CASE("HttpRequestGate: a body split over reads passes as it comes, then the next head") {
  GetOnly f;
  CHECK(f.Feed("GET /x HTTP/1.1\r\nHost: w\r\nContent-Length: 10\r\n\r\n01234") ==
        HttpRequestGate::Verdict::kPass);
  // Body bytes that look like a request are body, not a request.
  CHECK(f.Feed("POST ") == HttpRequestGate::Verdict::kPass);
  CHECK(f.seen.size() == 1);
  CHECK(f.Feed(kPost) == HttpRequestGate::Verdict::kRefused);
  CHECK(f.forwarded.ends_with("01234POST "));
}

TEST_CASE("HttpRequestGate: chunked bodies are framed to find the next request") {
  GetOnly f;
  std::string chunked =
      "GET /c HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nPOST \r\na\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
  CHECK(f.Feed(chunked) == HttpRequestGate::Verdict::kPass);
  CHECK(f.forwarded == chunked);
  CHECK(f.Feed(kGet) == HttpRequestGate::Verdict::kPass);
  CHECK(f.Feed(kPost) == HttpRequestGate::Verdict::kRefused);
  CHECK(f.seen == std::vector<std::string>{"GET /c", "GET /a", "POST /b"});

  GetOnly bad;
  CHECK(bad.Feed("GET /c HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") ==
        HttpRequestGate::Verdict::kRefused);
  CHECK(bad.gate.response().starts_with("HTTP/1.1 400 "));
}

TEST_CASE("HttpRequestGate: an upgrade is authorized as such, then nothing more is parsed") {
  GetOnly f;
  std::string upgrade = "GET /ws HTTP/1.1\r\nHost: w\r\nUpgrade: websocket\r\n\r\n";
  CHECK(f.Feed(upgrade + "\x81\x05 frames POST / HTTP/1.1\r\n\r\n") ==
        HttpRequestGate::Verdict::kPass);
  CHECK(f.seen == std::vector<std::string>{"GET /ws opaque"});
  CHECK(f.forwarded.ends_with("POST / HTTP/1.1\r\n\r\n"));
}

TEST_CASE("HttpRequestGate: what the parser refuses is answered with its status") {
  GetOnly f;
  CHECK(f.Feed("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == HttpRequestGate::Verdict::kRefused);
  CHECK(f.forwarded.empty());
  CHECK(f.gate.response().starts_with("HTTP/1.1 "));
  CHECK_FALSE(f.gate.response().starts_with("HTTP/1.1 403"));
}

}  // namespace
}  // namespace podless::proxy
