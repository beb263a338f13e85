// Fuzzes the outbound entry's HTTP/1.1 request-head parser and its URL
// helpers (proxy/base/http1_parser.h). The first input byte picks the chunk size
// the rest is fed in: a head split anywhere must parse as it does whole.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "proxy/base/http1_parser.h"

using namespace podless::proxy;

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    fprintf(stderr, "invariant violated: %s\n", what);
    abort();
  }
}

// Feeds `input` in pieces of `chunk` bytes until the parser leaves
// kIncomplete; returns the bytes it consumed in total.
size_t FeedInChunks(Http1RequestParser& parser, std::string_view input, size_t chunk) {
  size_t total = 0;
  while (!input.empty() && parser.state() == Http1RequestParser::State::kIncomplete) {
    std::string_view piece = input.substr(0, chunk);
    size_t consumed = 0;
    parser.Feed(piece, &consumed);
    Check(consumed <= piece.size(), "consumed more than fed");
    if (parser.state() == Http1RequestParser::State::kIncomplete) {
      Check(consumed == piece.size(), "incomplete but did not take every byte");
    }
    total += consumed;
    input.remove_prefix(piece.size());
  }
  return total;
}

void ExerciseUrlHelpers(std::string_view text) {
  for (uint16_t default_port : {uint16_t{0}, uint16_t{80}}) {
    auto authority = ParseAuthority(text, default_port, default_port == 0);
    if (authority.ok()) {
      // What ParseAuthority prints, it parses back to the same value.
      auto again = ParseAuthority(authority->ToString(), 0, true);
      Check(again.ok() && *again == *authority, "ParseAuthority(ToString()) round trip");
    }
  }
  auto url = ParseAbsoluteUrl(text);
  if (url.ok()) Check(!url->path_and_query.empty() && url->path_and_query[0] == '/', "url path");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t chunk = data[0] % 16 + 1;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

  Http1RequestParser whole;
  size_t whole_consumed = 0;
  Http1RequestParser::State state = whole.Feed(input, &whole_consumed);
  Check(whole_consumed <= input.size(), "consumed more than fed");
  if (state == Http1RequestParser::State::kError) {
    Check(!whole.error().empty(), "error without a message");
    int status = whole.error_status();
    Check(status == 400 || status == 431 || status == 501 || status == 505, "error status");
  }

  Http1RequestParser split;
  size_t split_consumed = FeedInChunks(split, input, chunk);
  Check(split.state() == state, "split input changes the outcome");

  ExerciseUrlHelpers(input);
  if (state != Http1RequestParser::State::kDone) return 0;

  Check(split_consumed == whole_consumed, "split input changes the head length");
  const Http1Request& request = whole.request();
  Check(split.request().method == request.method && split.request().target == request.target &&
            split.request().headers == request.headers,
        "split input changes the request");
  (void)request.keep_alive();
  (void)request.chunked();
  (void)request.Header("host");
  Check(request.content_length() >= -1, "content length");
  if (request.target_form == RequestTargetForm::kAuthority) {
    (void)ParseAuthority(request.target, 0);
  } else if (request.target_form == RequestTargetForm::kAbsolute) {
    (void)ParseAbsoluteUrl(request.target);
  }
  // Echoing request headers into a response never splits it.
  std::string head = FormatResponseHead(200, "", request.headers);
  Check(head.find("\r\n\r\n") == head.size() - 4, "response head split by a header");

  whole.Reset();
  size_t consumed = 0;
  whole.Feed(input.substr(0, whole_consumed), &consumed);
  Check(whole.state() == Http1RequestParser::State::kDone, "Reset() parser rejects the same head");
  return 0;
}
