#include "api/kube/request_body.h"

#include <doctest.h>

#include <string>

namespace podless::api::kube {
namespace {

using State = RequestBody::State;

TEST_CASE("request body: Content-Length, byte by byte, the rest left for the next request") {
  RequestBody body(5, false);
  const std::string bytes =
      "hello"
      "GET /";
  size_t consumed = 0;
  for (size_t i = 0; i < 4; ++i) {
    CHECK(body.Feed(bytes.substr(i, 1), &consumed) == State::kIncomplete);
    CHECK(consumed == 1);
  }
  CHECK(body.Feed(bytes.substr(4), &consumed) == State::kDone);
  CHECK(consumed == 1);
  CHECK(body.Take() == "hello");
}

TEST_CASE("request body: chunked, with extensions and trailers") {
  RequestBody body(-1, true);
  const std::string bytes = "4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: a\r\n\r\nNEXT";
  size_t consumed = 0;
  CHECK(body.Feed(bytes, &consumed) == State::kDone);
  CHECK(bytes.substr(consumed) == "NEXT");
  CHECK(body.Take() == "Wikipedia");

  RequestBody split(-1, true);  // the same, a byte at a time
  State state = State::kIncomplete;
  for (size_t i = 0; i < bytes.size() - 4 && state == State::kIncomplete; ++i) {
    state = split.Feed(bytes.substr(i, 1), &consumed);
  }
  CHECK(state == State::kDone);
  CHECK(split.Take() == "Wikipedia");
}

TEST_CASE("request body: over the limit, refused before it is read") {
  CHECK(RequestBody(kMaxRequestBodyBytes + 1, false).state() == State::kTooLarge);
  CHECK(RequestBody(kMaxRequestBodyBytes, false).state() == State::kIncomplete);
  RequestBody chunked(-1, true, 8);
  size_t consumed = 0;
  CHECK(chunked.Feed("5\r\nhello\r\n", &consumed) == State::kIncomplete);
  CHECK(chunked.Feed("4\r\n", &consumed) == State::kTooLarge);
}

TEST_CASE("request body: malformed chunked framing is an error") {
  size_t consumed = 0;
  CHECK(RequestBody(-1, true).Feed("zz\r\n", &consumed) == State::kError);
  CHECK(RequestBody(-1, true).Feed("2\nab", &consumed) == State::kError);
  CHECK(RequestBody(-1, true).Feed("2\r\nabc\r\n", &consumed) == State::kError);
  CHECK(RequestBody(-1, true).Feed(std::string(5000, '1'), &consumed) == State::kError);
}

}  // namespace
}  // namespace podless::api::kube
