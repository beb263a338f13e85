// The server side of a SOCKS5 handshake (RFC 1928) with username/password
// authentication (RFC 1929), as a state machine over bytes: no sockets, so the
// outbound entry drives it and tests and fuzzers can feed it anything.
//
// podless requires credentials: they name the calling workload. A client
// that does not offer method 0x02 is refused with 0xFF. Only CONNECT is
// served; BIND and UDP ASSOCIATE are answered with "command not supported".
//
// Typical use (the caller decides authentication synchronously):
//
//   while (!input.empty()) {
//     size_t n;
//     Socks5ServerHandshake::Step step = handshake.Feed(input, &n);
//     input.remove_prefix(n);
//     switch (step.kind) {
//       case kNeedMore: break;                     // wait for more bytes
//       case kReply: Send(step.reply); break;
//       case kAuthenticate: Send(handshake.AuthenticationResult(Check(step.username,
//                                                                 step.password))); break;
//       case kConnect: Dial(step.target);  // then Send(Socks5Reply(...)); the rest of
//                                          // `input` is payload for the destination.
//       case kError: Send(step.reply); Close(step.error);
//     }
//   }
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace podless::proxy {

// REP field values (RFC 1928 section 6).
enum Socks5ReplyCode : uint8_t {
  kSocks5Succeeded = 0x00,
  kSocks5GeneralFailure = 0x01,
  kSocks5NotAllowedByRuleset = 0x02,
  kSocks5NetworkUnreachable = 0x03,
  kSocks5HostUnreachable = 0x04,
  kSocks5ConnectionRefused = 0x05,
  kSocks5TtlExpired = 0x06,
  kSocks5CommandNotSupported = 0x07,
  kSocks5AddressTypeNotSupported = 0x08,
};

struct Socks5Target {
  enum class Type : uint8_t { kIPv4 = 0x01, kDomain = 0x03, kIPv6 = 0x04 };
  Type type = Type::kIPv4;
  // Dotted IPv4, canonical IPv6 text (no brackets), or the domain as sent.
  std::string host;
  uint16_t port = 0;

  // "host:port", with brackets around an IPv6 host.
  std::string ToString() const;
  bool operator==(const Socks5Target&) const = default;
};

class Socks5ServerHandshake {
 public:
  struct Step {
    enum class Kind {
      kNeedMore,      // nothing to do until more bytes arrive
      kReply,         // send `reply`, then keep feeding
      kAuthenticate,  // check `username`/`password`, send AuthenticationResult()
      kConnect,       // dial `target`, then send Socks5Reply(); the handshake is over
      kError,         // send `reply` (may be empty), then close; `error` says why
    };
    Kind kind = Kind::kNeedMore;
    std::string reply;
    std::string username;
    std::string password;
    Socks5Target target;
    std::string error;
  };

  // Consumes at most one handshake message from `bytes` (buffering a partial
  // one); `*consumed` tells how many bytes were taken. Bytes after the
  // CONNECT request are not consumed: they are the client's first payload.
  // After kConnect or kError every further call returns kError.
  Step Feed(std::string_view bytes, size_t* consumed);

  // Must follow a kAuthenticate step: returns the RFC 1929 status message to
  // send. On failure the handshake is over (send the bytes, then close).
  std::string AuthenticationResult(bool success);

  bool done() const { return phase_ == Phase::kDone; }
  bool failed() const { return phase_ == Phase::kFailed; }

 private:
  enum class Phase { kGreeting, kAuth, kAwaitAuthDecision, kRequest, kDone, kFailed };

  Step ParseGreeting(bool* complete);
  Step ParseAuth(bool* complete);
  Step ParseRequest(bool* complete);
  Step Fail(std::string error, std::string reply);

  Phase phase_ = Phase::kGreeting;
  // The message being received. No SOCKS5 handshake message is longer than
  // 513 bytes (a sub-negotiation with 255-byte user and password).
  std::string buffer_;
  size_t want_ = 0;  // the length of the message in buffer_, as far as known
};

// A server reply (RFC 1928 section 6) with an IPv4 BND.ADDR and BND.PORT.
std::string Socks5Reply(uint8_t rep, std::array<uint8_t, 4> bound_ipv4 = {0, 0, 0, 0},
                        uint16_t bound_port = 0);

}  // namespace podless::proxy
