#include "proxy/socks5.h"

#include <doctest.h>

#include <string>
#include <vector>

namespace podless::proxy {
namespace {

using Kind = Socks5ServerHandshake::Step::Kind;

std::string B(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out += static_cast<char>(b);
  return out;
}

// The messages of a well-behaved client: greeting offering no-auth and
// user/password, credentials, CONNECT to a domain.
const std::string kGreeting = B({5, 2, 0, 2});
const std::string kAuth = B({1, 3}) + "web" + B({6}) + "secret";
const std::string kConnectDomain = B({5, 1, 0, 3, 12}) + "web.shop.svc" + B({0x1f, 0x90});

// Drives a handshake the way the outbound entry does: feeds `input` in
// pieces of `chunk` bytes, loops until each piece is consumed, accepts the
// credentials web/secret. Records every non-kNeedMore step.
struct Transcript {
  std::vector<Socks5ServerHandshake::Step> steps;
  std::string sent;
  std::string leftover;  // bytes after the CONNECT request
};

Transcript Drive(const std::string& input, size_t chunk) {
  Socks5ServerHandshake handshake;
  Transcript t;
  bool over = false;
  for (size_t at = 0; at < input.size(); at += chunk) {
    std::string_view piece = std::string_view(input).substr(at, chunk);
    while (!piece.empty()) {
      if (over) {
        t.leftover.append(piece);
        break;
      }
      size_t n = 0;
      Socks5ServerHandshake::Step step = handshake.Feed(piece, &n);
      piece.remove_prefix(n);
      if (step.kind == Kind::kNeedMore) {
        CHECK(piece.empty());
        continue;
      }
      if (step.kind == Kind::kAuthenticate) {
        t.sent +=
            handshake.AuthenticationResult(step.username == "web" && step.password == "secret");
      }
      t.sent += step.reply;
      over = step.kind == Kind::kConnect || step.kind == Kind::kError || handshake.failed();
      t.steps.push_back(std::move(step));
    }
  }
  return t;
}

TEST_CASE("Socks5ServerHandshake: completes greeting, authentication and CONNECT to a domain") {
  Transcript t = Drive(kGreeting + kAuth + kConnectDomain + "GET /", 1000);
  REQUIRE(t.steps.size() == 3);
  CHECK(t.steps[0].kind == Kind::kReply);
  CHECK(t.steps[0].reply == B({5, 2}));
  CHECK(t.steps[1].kind == Kind::kAuthenticate);
  CHECK(t.steps[1].username == "web");
  CHECK(t.steps[1].password == "secret");
  CHECK(t.steps[2].kind == Kind::kConnect);
  CHECK(t.steps[2].target.type == Socks5Target::Type::kDomain);
  CHECK(t.steps[2].target.host == "web.shop.svc");
  CHECK(t.steps[2].target.port == 8080);
  CHECK(t.steps[2].target.ToString() == "web.shop.svc:8080");
  CHECK(t.sent == B({5, 2, 1, 0}));
  // The client's first payload is left for the caller to forward.
  CHECK(t.leftover == "GET /");
}

TEST_CASE("Socks5ServerHandshake: byte-by-byte feeding gives the same transcript") {
  std::string input = kGreeting + kAuth + kConnectDomain + "xyz";
  Transcript whole = Drive(input, input.size());
  for (size_t chunk : {1, 2, 3, 5, 7}) {
    Transcript pieces = Drive(input, chunk);
    INFO("chunk " << chunk);
    REQUIRE(pieces.steps.size() == whole.steps.size());
    CHECK(pieces.sent == whole.sent);
    CHECK(pieces.leftover == whole.leftover);
    CHECK(pieces.steps.back().target == whole.steps.back().target);
  }
}

TEST_CASE("Socks5ServerHandshake: CONNECT to IPv4 and IPv6 addresses") {
  Transcript v4 = Drive(kGreeting + kAuth + B({5, 1, 0, 1, 127, 64, 0, 7, 0x3a, 0x98}), 100);
  REQUIRE(v4.steps.back().kind == Kind::kConnect);
  CHECK(v4.steps.back().target.type == Socks5Target::Type::kIPv4);
  CHECK(v4.steps.back().target.ToString() == "127.64.0.7:15000");

  Transcript v6 = Drive(
      kGreeting + kAuth + B({5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80}),
      100);
  REQUIRE(v6.steps.back().kind == Kind::kConnect);
  CHECK(v6.steps.back().target.type == Socks5Target::Type::kIPv6);
  CHECK(v6.steps.back().target.ToString() == "[::1]:80");
}

TEST_CASE("Socks5ServerHandshake: refuses a client that does not offer username/password") {
  Transcript t = Drive(B({5, 1, 0}) + kAuth, 100);
  REQUIRE(t.steps.size() == 1);
  CHECK(t.steps[0].kind == Kind::kError);
  CHECK(t.steps[0].reply == B({5, 0xFF}));
  CHECK(t.steps[0].error.find("offers 0x00") != std::string::npos);
  CHECK(t.steps[0].error.find("credentials are required") != std::string::npos);

  Transcript none = Drive(B({5, 0}), 100);
  REQUIRE(none.steps.size() == 1);
  CHECK(none.steps[0].kind == Kind::kError);
  CHECK(none.steps[0].reply == B({5, 0xFF}));
}

TEST_CASE("Socks5ServerHandshake: wrong credentials fail with status 1 and end the handshake") {
  std::string bad_auth = B({1, 3}) + "web" + B({5}) + "wrong";
  Transcript t = Drive(kGreeting + bad_auth + kConnectDomain, 100);
  REQUIRE(t.steps.size() == 2);
  CHECK(t.steps[1].kind == Kind::kAuthenticate);
  CHECK(t.sent == B({5, 2, 1, 1}));
  CHECK(t.leftover == kConnectDomain);  // never parsed as a request
}

TEST_CASE("Socks5ServerHandshake: answers BIND and UDP ASSOCIATE with command not supported") {
  for (int cmd : {2, 3, 9}) {
    Transcript t = Drive(kGreeting + kAuth + B({5, cmd, 0, 1, 1, 2, 3, 4, 0, 80}), 100);
    REQUIRE(t.steps.back().kind == Kind::kError);
    CHECK(t.steps.back().reply == Socks5Reply(kSocks5CommandNotSupported));
    CHECK(t.steps.back().error.find("not supported") != std::string::npos);
  }
  Transcript bind = Drive(kGreeting + kAuth + B({5, 2, 0, 1, 1, 2, 3, 4, 0, 80}), 100);
  CHECK(bind.steps.back().error.find("BIND") != std::string::npos);
}

TEST_CASE("Socks5ServerHandshake: refuses bad versions, address types and targets") {
  // SOCKS4 or HTTP on the SOCKS port: refused at the first byte, no reply.
  Socks5ServerHandshake socks4;
  size_t n = 0;
  Socks5ServerHandshake::Step step = socks4.Feed(B({4, 1, 0, 80}), &n);
  CHECK(step.kind == Kind::kError);
  CHECK(step.reply.empty());
  CHECK(step.error == "not a SOCKS5 greeting: version 0x04");

  Transcript auth_version = Drive(kGreeting + B({5, 3}) + "web", 100);
  REQUIRE(auth_version.steps.back().kind == Kind::kError);
  CHECK(auth_version.steps.back().reply == B({1, 1}));

  Transcript atyp = Drive(kGreeting + kAuth + B({5, 1, 0, 2, 1, 2, 3, 4, 0, 80}), 100);
  REQUIRE(atyp.steps.back().kind == Kind::kError);
  CHECK(atyp.steps.back().reply == Socks5Reply(kSocks5AddressTypeNotSupported));

  Transcript request_version = Drive(kGreeting + kAuth + B({4, 1, 0, 1, 1, 2, 3, 4, 0, 80}), 100);
  REQUIRE(request_version.steps.back().kind == Kind::kError);
  CHECK(request_version.steps.back().reply == Socks5Reply(kSocks5GeneralFailure));

  Transcript empty_domain = Drive(kGreeting + kAuth + B({5, 1, 0, 3, 0, 0, 80}), 100);
  REQUIRE(empty_domain.steps.back().kind == Kind::kError);
  CHECK(empty_domain.steps.back().error.find("empty domain") != std::string::npos);

  Transcript nul_domain = Drive(kGreeting + kAuth + B({5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80}), 100);
  REQUIRE(nul_domain.steps.back().kind == Kind::kError);
  CHECK(nul_domain.steps.back().error.find("0x00") != std::string::npos);

  Transcript port0 = Drive(kGreeting + kAuth + B({5, 1, 0, 1, 1, 2, 3, 4, 0, 0}), 100);
  REQUIRE(port0.steps.back().kind == Kind::kError);
  CHECK(port0.steps.back().error.find("port 0") != std::string::npos);
}

TEST_CASE("Socks5ServerHandshake: a truncated handshake only ever needs more") {
  std::string input = kGreeting + kAuth + kConnectDomain;
  for (size_t len = 0; len < input.size(); ++len) {
    Transcript t = Drive(input.substr(0, len), 1);
    INFO("prefix length " << len);
    for (const auto& step : t.steps) CHECK(step.kind != Kind::kError);
    bool connected = !t.steps.empty() && t.steps.back().kind == Kind::kConnect;
    CHECK_FALSE(connected);
  }
}

TEST_CASE("Socks5ServerHandshake: feeding before the authentication decision is refused") {
  Socks5ServerHandshake handshake;
  size_t n = 0;
  REQUIRE(handshake.Feed(kGreeting, &n).kind == Kind::kReply);
  REQUIRE(handshake.Feed(kAuth, &n).kind == Kind::kAuthenticate);
  Socks5ServerHandshake::Step step = handshake.Feed(kConnectDomain, &n);
  CHECK(step.kind == Kind::kError);
  CHECK(n == 0);
  CHECK(handshake.failed());
}

TEST_CASE("Socks5ServerHandshake: nothing is accepted after the handshake ends") {
  Socks5ServerHandshake handshake;
  size_t n = 0;
  REQUIRE(handshake.Feed(kGreeting, &n).kind == Kind::kReply);
  REQUIRE(handshake.Feed(kAuth, &n).kind == Kind::kAuthenticate);
  CHECK(handshake.AuthenticationResult(true) == B({1, 0}));
  REQUIRE(handshake.Feed(kConnectDomain, &n).kind == Kind::kConnect);
  CHECK(handshake.done());
  CHECK(handshake.Feed("more", &n).kind == Kind::kError);
  CHECK(n == 0);
}

TEST_CASE("Socks5ServerHandshake: hostile input never crashes and never connects") {
  uint32_t seed = 99;
  auto next = [&seed] {
    seed = seed * 1103515245 + 12345;
    return (seed >> 8) & 0xffffff;
  };
  int connected = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string input = kGreeting + kAuth + kConnectDomain;
    // Mutate one byte of the header fields (not inside the user, password or
    // domain text) so that each mutation changes the protocol meaning.
    const size_t fields[] = {0, 1, 2, 3, 4, 5, 9, 16, 17, 18, 19};
    size_t at = fields[next() % 11];
    input[at] = static_cast<char>(next() & 0xff);
    Transcript whole = Drive(input, input.size());
    Transcript bytes = Drive(input, 1);
    REQUIRE(whole.steps.size() == bytes.steps.size());
    CHECK(whole.sent == bytes.sent);
    if (!whole.steps.empty() && whole.steps.back().kind == Kind::kConnect) ++connected;
  }
  // Some mutations are harmless (e.g. an extra method byte), most are not.
  CHECK(connected < 3000);
}

TEST_CASE("Socks5Reply: encodes REP, an IPv4 bound address and the port in network order") {
  CHECK(Socks5Reply(kSocks5Succeeded, {127, 0, 0, 1}, 0x1f90) ==
        B({5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90}));
  CHECK(Socks5Reply(kSocks5ConnectionRefused) == B({5, 5, 0, 1, 0, 0, 0, 0, 0, 0}));
}

}  // namespace
}  // namespace podless::proxy
