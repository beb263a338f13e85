// The echo app's JSON: whatever bytes a peer sends in its path and headers,
// the body is valid UTF-8 and valid JSON.
#include "proxy/apps.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "proxy/base/http1_parser.h"
#include "tests/proxy/fake_directory.h"

namespace podless::proxy {
namespace {

using testing::Capture;
using testing::WriteFile;

const std::string kReplacement = "\xef\xbf\xbd";  // U+FFFD

// Checks UTF-8 independently of the code under test: every sequence decodes
// to a scalar value in its shortest form.
bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) return false;
      cp = cp << 6 | (b & 0x3f);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n;
  }
  return true;
}

TEST_CASE("JsonString: escapes quotes, backslashes and control characters") {
  CHECK(JsonString("a\"b\\c\n\r\t\x01") == "\"a\\\"b\\\\c\\n\\r\\t\\u0001\"");
  CHECK(JsonString("") == "\"\"");
}

TEST_CASE("JsonString: keeps well-formed UTF-8 as it is") {
  const std::string text =
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf";
  CHECK(JsonString(text) == "\"" + text + "\"");
}

TEST_CASE("JsonString: replaces ill-formed UTF-8 with U+FFFD, one per maximal subpart") {
  const std::string r = kReplacement;
  struct Case {
    std::string in;
    std::string out;
  } const cases[] = {
      {"\xff", r},                          // never in UTF-8
      {"a\x80z", "a" + r + "z"},            // a lone continuation byte
      {"\xc0\xaf", r + r},                  // overlong '/'
      {"\xe0\x80\xaf", r + r + r},          // overlong, 3 bytes
      {"\xed\xa0\x80", r + r + r},          // the surrogate U+D800
      {"\xf4\x90\x80\x80", r + r + r + r},  // above U+10FFFF
      {"\xe2\x82", r},                      // cut short at the end
      {"\xe2\x82z", r + "z"},               // cut short before ASCII
      {"\xf0\x9f\x98", r},                  // 4 bytes, cut short
      {"\xc3\"", r + "\\\""},               // the quote after it still escaped
  };
  for (const Case& c : cases) {
    INFO("input of " << c.in.size() << " bytes, want " << c.out.size());
    CHECK(JsonString(c.in) == "\"" + c.out + "\"");
  }
}

TEST_CASE("JsonString: every byte string comes out valid UTF-8") {
  // All one- and two-byte inputs, and a run of every byte value.
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  CHECK(IsValidUtf8(JsonString(all)));
  for (int a = 0x80; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      const std::string in = {static_cast<char>(a), static_cast<char>(b)};
      const std::string out = JsonString(in);
      if (!IsValidUtf8(out)) FAIL("not UTF-8 for bytes " << a << " " << b);
    }
  }
}

TEST_CASE("EchoJson: a request with invalid UTF-8 in its path and headers is valid JSON") {
  AppContext context;
  context.workload = "web";
  context.replica = "web-0";
  context.ns = "shop";
  context.spiffe_id = "spiffe://cluster.local/ns/shop/sa/web";
  context.port.port = 8080;
  Http1Request request;
  request.method = "GET";
  request.target = "/\xff\xfe/caf\xc3\xa9/\xc0\xaf";
  request.version = "HTTP/1.1";
  request.headers = {{"X-Bytes", "\x80\x81\"\\ \xed\xa0\x80"}, {"Host", "web"}};
  const std::string json = EchoJson(context, request);
  CHECK(IsValidUtf8(json));
  CHECK(json.find("\"path\":\"/" + kReplacement + kReplacement + "/caf\xc3\xa9/" + kReplacement +
                  kReplacement + "\"") != std::string::npos);
  // Python's json module, strict UTF-8, as an independent parser.
  char path[] = "/tmp/podless-echo-json-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  WriteFile(path, json);
  const std::string parsed =
      Capture(std::string("/usr/bin/python3 -c 'import json,sys; d=json.loads(open(sys.argv[1],"
                          "\"rb\").read().decode(\"utf-8\")); print(d[\"headers\"][\"x-bytes\"]"
                          ".encode(\"unicode_escape\").decode())' ") +
              path + " 2>&1");
  ::unlink(path);
  CHECK(parsed == "\\ufffd\\ufffd\"\\\\ \\ufffd\\ufffd\\ufffd\n");
}

}  // namespace
}  // namespace podless::proxy
