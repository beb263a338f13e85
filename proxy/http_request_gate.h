// HttpRequestGate: checks every request of an HTTP/1.1 connection that is
// relayed to a backend (forward and exec apps on an HTTP port whose
// policies use HTTP attributes, proxy/authorization.h), as the bytes stream
// through, without buffering bodies.
//
// Design decisions:
// - Each request head is held back until it is complete and authorized;
//   only then is it passed on, followed by its body as it arrives. The
//   body's end is found from Content-Length or the chunked framing (chunk
//   sizes, extensions and trailers are scanned, not decoded), so the next
//   request head on a keep-alive connection is found and checked too:
//   pipelining cannot slip a request past the gate.
// - The head parser is the strict one of the outbound entry and the in-proxy
//   apps (Http1RequestParser): what it refuses (smuggling constructs,
//   oversized heads, HTTP/2 prior knowledge) is answered with its error
//   status and the connection closed, since an unparsed request cannot be
//   authorized.
// - A request that upgrades the connection (an Upgrade header, or CONNECT)
//   is the last one parsed: what follows is no longer HTTP/1.1 requests. It
//   is authorized with `opaque_after` set, and Inbound then also requires the
//   policies to admit the connection without HTTP attributes; otherwise a
//   backend that declines the upgrade could be sent unchecked requests.
// - Responses are not parsed. A denied request that follows requests already
//   passed on is answered only after the backend has finished (the relay
//   half-closes the backend and waits for its end), so the 403 never lands in
//   the middle of an earlier response.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "proxy/base/http1_parser.h"

namespace podless::proxy {

class HttpRequestGate {
 public:
  using Authorize = std::function<bool(const Http1Request& request, bool opaque_after)>;

  explicit HttpRequestGate(Authorize authorize) : authorize_(std::move(authorize)) {}

  enum class Verdict { kPass, kRefused };

  // Takes the next bytes from the client and appends to `*forward` what may
  // go to the backend now (also on kRefused: the requests before the refused
  // one). kRefused: a request was denied or could not be parsed; response()
  // is the answer for the client, and the gate takes no more input.
  Verdict Feed(std::string_view bytes, std::string* forward);

  const std::string& response() const { return response_; }
  // Whether any byte has been passed on (the backend may owe a response).
  bool forwarded_any() const { return forwarded_any_; }

 private:
  enum class State {
    kHead,
    kBody,
    kChunkSize,
    kChunkData,
    kChunkDataEnd,
    kTrailer,
    kOpaque,
    kRefused
  };

  void Refuse(std::string response);
  // Consumes chunked-framing bytes from `bytes` starting at `*pos`.
  bool ScanChunked(std::string_view bytes, size_t* pos, std::string* forward);
  void StartBody(const Http1Request& request);

  Authorize authorize_;
  State state_ = State::kHead;
  Http1RequestParser parser_;
  std::string head_;        // the head being received, held back
  uint64_t remaining_ = 0;  // body or chunk bytes still to pass
  std::string line_;        // a chunk-size or trailer line being received
  bool opaque_after_body_ = false;
  bool forwarded_any_ = false;
  std::string response_;
};

}  // namespace podless::proxy
