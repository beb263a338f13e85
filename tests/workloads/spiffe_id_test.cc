#include "workloads/spiffe_id.h"

#include <doctest/doctest.h>

#include <string>

using podless::ErrorCode;
using podless::workloads::SpiffeId;

TEST_CASE("SpiffeId: accepts IDs the SPIFFE spec allows") {
  struct Case {
    std::string uri;
    std::string trust_domain;
    std::string path;
  };
  const Case cases[] = {
      {"spiffe://cluster.local/ns/default/sa/web", "cluster.local", "/ns/default/sa/web"},
      {"spiffe://example.org", "example.org", ""},
      {"spiffe://td/a", "td", "/a"},
      {"spiffe://a-b_c.0/Path.With-Mixed_Case/9", "a-b_c.0", "/Path.With-Mixed_Case/9"},
      {"spiffe://td/.../a..b/.x", "td", "/.../a..b/.x"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.uri);
    auto id = SpiffeId::Parse(c.uri);
    REQUIRE(id.ok());
    CHECK(id->trust_domain == c.trust_domain);
    CHECK(id->path == c.path);
    CHECK(id->ToString() == c.uri);
  }
}

TEST_CASE("SpiffeId: rejects malformed IDs with a reason") {
  struct Case {
    std::string uri;
    std::string reason;  // a substring of the error message
  };
  const Case cases[] = {
      {"", "empty"},
      {"http://td/a", "scheme"},
      {"SPIFFE://td/a", "scheme"},
      {"spiffe:/td/a", "scheme"},
      {"spiffe://", "trust domain is missing"},
      {"spiffe:///a", "trust domain is missing"},
      {"spiffe://Example.org/a", "not allowed in the trust domain"},
      {"spiffe://td:8080/a", "port is not allowed"},
      {"spiffe://user@td/a", "userinfo is not allowed"},
      {"spiffe://td/a?x=1", "query is not allowed"},
      {"spiffe://td/a#frag", "fragment is not allowed"},
      {"spiffe://td/a%20b", "percent-encoding"},
      {"spiffe://td/", "trailing '/'"},
      {"spiffe://td/a/", "trailing '/'"},
      {"spiffe://td//a", "empty segment"},
      {"spiffe://td/a/./b", "\".\""},
      {"spiffe://td/a/..", "\"..\""},
      {"spiffe://td/a b", "not allowed in the path"},
      {"spiffe://td/a*b", "not allowed in the path"},
      {std::string("spiffe://td/a\0b", 15), "\\x00"},
      {"spiffe://td/" + std::string(2100, 'a'), "more than 2048"},
      {"spiffe://" + std::string(256, 'a') + "/x", "longer than 255"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.uri);
    auto id = SpiffeId::Parse(c.uri);
    REQUIRE_FALSE(id.ok());
    CHECK(id.error().code == ErrorCode::kInvalidArgument);
    CHECK_MESSAGE(id.error().message.find(c.reason) != std::string::npos, id.error().message);
  }
}

TEST_CASE("SpiffeId: the longest allowed ID parses") {
  std::string uri = "spiffe://td/" + std::string(2048 - 12, 'a');
  REQUIRE(uri.size() == 2048);
  CHECK(SpiffeId::Parse(uri).ok());
  CHECK_FALSE(SpiffeId::Parse(uri + "a").ok());
}

TEST_CASE("SpiffeId: error messages escape non-printable bytes") {
  auto id = SpiffeId::Parse(std::string("spiffe://td/\x01\xff", 14));
  REQUIRE_FALSE(id.ok());
  CHECK(id.error().message.find("\\x01\\xff") != std::string::npos);
}

TEST_CASE("SpiffeId: ForServiceAccount builds the Istio-style path") {
  SpiffeId id = SpiffeId::ForServiceAccount("cluster.local", "shop", "web");
  CHECK(id.ToString() == "spiffe://cluster.local/ns/shop/sa/web");
  auto parsed = SpiffeId::Parse(id.ToString());
  REQUIRE(parsed.ok());
  CHECK(*parsed == id);
}

TEST_CASE("ValidateTrustDomain: accepts DNS-like names and rejects the rest") {
  using podless::workloads::ValidateTrustDomain;
  CHECK(ValidateTrustDomain("cluster.local").ok());
  CHECK(ValidateTrustDomain("my_td-1").ok());
  CHECK_FALSE(ValidateTrustDomain("").ok());
  CHECK_FALSE(ValidateTrustDomain("Cluster.local").ok());
  CHECK_FALSE(ValidateTrustDomain("td/x").ok());
  CHECK_FALSE(ValidateTrustDomain(std::string(256, 'a')).ok());
}
