#include "proxy/socks5.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>

namespace podless::proxy {
namespace {

constexpr uint8_t kVersion = 0x05;
constexpr uint8_t kAuthVersion = 0x01;  // RFC 1929 sub-negotiation version
constexpr uint8_t kMethodUserPassword = 0x02;
constexpr uint8_t kMethodNoAcceptable = 0xFF;
constexpr uint8_t kCmdConnect = 0x01;
constexpr uint8_t kCmdBind = 0x02;
constexpr uint8_t kCmdUdpAssociate = 0x03;
constexpr uint8_t kAtypIPv4 = 0x01;
constexpr uint8_t kAtypDomain = 0x03;
constexpr uint8_t kAtypIPv6 = 0x04;

std::string Hex(uint8_t c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", c);
  return buf;
}

std::string Bytes(std::initializer_list<uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

uint8_t At(const std::string& s, size_t i) { return static_cast<uint8_t>(s[i]); }

}  // namespace

std::string Socks5Target::ToString() const {
  std::string out = type == Type::kIPv6 ? "[" + host + "]" : host;
  out += ':';
  out += std::to_string(port);
  return out;
}

std::string Socks5Reply(uint8_t rep, std::array<uint8_t, 4> bound_ipv4, uint16_t bound_port) {
  return Bytes({kVersion, rep, 0x00, kAtypIPv4, bound_ipv4[0], bound_ipv4[1], bound_ipv4[2],
                bound_ipv4[3], static_cast<uint8_t>(bound_port >> 8),
                static_cast<uint8_t>(bound_port & 0xFF)});
}

Socks5ServerHandshake::Step Socks5ServerHandshake::Fail(std::string error, std::string reply) {
  phase_ = Phase::kFailed;
  buffer_.clear();
  Step step;
  step.kind = Step::Kind::kError;
  step.error = std::move(error);
  step.reply = std::move(reply);
  return step;
}

Socks5ServerHandshake::Step Socks5ServerHandshake::Feed(std::string_view bytes, size_t* consumed) {
  *consumed = 0;
  switch (phase_) {
    case Phase::kDone:
    case Phase::kFailed:
      return Fail("SOCKS5 handshake is already over", "");
    case Phase::kAwaitAuthDecision:
      // The caller must answer kAuthenticate before feeding on.
      return Fail("SOCKS5 bytes fed before the authentication decision", Bytes({kAuthVersion, 1}));
    default:
      break;
  }
  // Take bytes until the message is complete. The header of each message
  // tells its length; it is checked as soon as it arrives so that a client
  // speaking another protocol is refused at once.
  while (true) {
    bool complete = false;
    Step step;
    switch (phase_) {
      case Phase::kGreeting:
        step = ParseGreeting(&complete);
        break;
      case Phase::kAuth:
        step = ParseAuth(&complete);
        break;
      case Phase::kRequest:
        step = ParseRequest(&complete);
        break;
      default:
        return Fail("SOCKS5 handshake in an unexpected state", "");
    }
    if (complete || step.kind != Step::Kind::kNeedMore) {
      buffer_.clear();
      return step;
    }
    // Incomplete: the parser stored in want_ how long the message is, as far
    // as its header arrived so far.
    size_t take = std::min(want_ - buffer_.size(), bytes.size() - *consumed);
    if (take == 0) return Step{};
    buffer_.append(bytes.data() + *consumed, take);
    *consumed += take;
  }
}

// Greeting: VER NMETHODS METHODS[NMETHODS].
Socks5ServerHandshake::Step Socks5ServerHandshake::ParseGreeting(bool* complete) {
  if (buffer_.size() >= 1 && At(buffer_, 0) != kVersion) {
    return Fail("not a SOCKS5 greeting: version " + Hex(At(buffer_, 0)), "");
  }
  if (buffer_.size() < 2) {
    want_ = 2;
    return Step{};
  }
  size_t methods = At(buffer_, 1);
  if (methods == 0) {
    return Fail("SOCKS5 greeting offers no authentication method",
                Bytes({kVersion, kMethodNoAcceptable}));
  }
  want_ = 2 + methods;
  if (buffer_.size() < want_) return Step{};
  *complete = true;
  std::string offered;
  for (size_t i = 2; i < want_; ++i) {
    if (At(buffer_, i) == kMethodUserPassword) {
      phase_ = Phase::kAuth;
      Step step;
      step.kind = Step::Kind::kReply;
      step.reply = Bytes({kVersion, kMethodUserPassword});
      return step;
    }
    offered += (offered.empty() ? "" : " ") + Hex(At(buffer_, i));
  }
  return Fail("SOCKS5 client does not offer username/password authentication (offers " + offered +
                  "); credentials are required",
              Bytes({kVersion, kMethodNoAcceptable}));
}

// RFC 1929: VER ULEN UNAME[ULEN] PLEN PASSWD[PLEN].
Socks5ServerHandshake::Step Socks5ServerHandshake::ParseAuth(bool* complete) {
  if (buffer_.size() >= 1 && At(buffer_, 0) != kAuthVersion) {
    return Fail("unsupported SOCKS5 username/password version " + Hex(At(buffer_, 0)),
                Bytes({kAuthVersion, 1}));
  }
  if (buffer_.size() < 2) {
    want_ = 2;
    return Step{};
  }
  size_t ulen = At(buffer_, 1);
  if (buffer_.size() < 3 + ulen) {
    want_ = 3 + ulen;
    return Step{};
  }
  size_t plen = At(buffer_, 2 + ulen);
  want_ = 3 + ulen + plen;
  if (buffer_.size() < want_) return Step{};
  *complete = true;
  phase_ = Phase::kAwaitAuthDecision;
  Step step;
  step.kind = Step::Kind::kAuthenticate;
  step.username = buffer_.substr(2, ulen);
  step.password = buffer_.substr(3 + ulen, plen);
  return step;
}

std::string Socks5ServerHandshake::AuthenticationResult(bool success) {
  if (phase_ != Phase::kAwaitAuthDecision) {
    phase_ = Phase::kFailed;
    return Bytes({kAuthVersion, 1});
  }
  phase_ = success ? Phase::kRequest : Phase::kFailed;
  return Bytes({kAuthVersion, static_cast<uint8_t>(success ? 0 : 1)});
}

// Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
Socks5ServerHandshake::Step Socks5ServerHandshake::ParseRequest(bool* complete) {
  if (buffer_.size() >= 1 && At(buffer_, 0) != kVersion) {
    return Fail("not a SOCKS5 request: version " + Hex(At(buffer_, 0)),
                Socks5Reply(kSocks5GeneralFailure));
  }
  if (buffer_.size() >= 2 && At(buffer_, 1) != kCmdConnect) {
    uint8_t cmd = At(buffer_, 1);
    std::string name = cmd == kCmdBind           ? "BIND"
                       : cmd == kCmdUdpAssociate ? "UDP ASSOCIATE"
                                                 : "unknown command " + Hex(cmd);
    return Fail("SOCKS5 " + name + " is not supported (only CONNECT)",
                Socks5Reply(kSocks5CommandNotSupported));
  }
  // RSV (byte 2) must be 0 per the RFC; it carries no meaning, so it is not
  // checked, as most servers do.
  if (buffer_.size() < 4) {
    want_ = 4;
    return Step{};
  }
  uint8_t atyp = At(buffer_, 3);
  switch (atyp) {
    case kAtypIPv4:
      want_ = 4 + 4 + 2;
      break;
    case kAtypIPv6:
      want_ = 4 + 16 + 2;
      break;
    case kAtypDomain:
      if (buffer_.size() < 5) {
        want_ = 5;
        return Step{};
      }
      if (At(buffer_, 4) == 0) {
        return Fail("SOCKS5 request with an empty domain name", Socks5Reply(kSocks5GeneralFailure));
      }
      want_ = 5 + At(buffer_, 4) + 2;
      break;
    default:
      return Fail("SOCKS5 address type " + Hex(atyp) + " is not supported",
                  Socks5Reply(kSocks5AddressTypeNotSupported));
  }
  if (buffer_.size() < want_) return Step{};
  *complete = true;

  Socks5Target target;
  char text[INET6_ADDRSTRLEN];
  if (atyp == kAtypIPv4) {
    inet_ntop(AF_INET, buffer_.data() + 4, text, sizeof text);
    target.type = Socks5Target::Type::kIPv4;
    target.host = text;
  } else if (atyp == kAtypIPv6) {
    inet_ntop(AF_INET6, buffer_.data() + 4, text, sizeof text);
    target.type = Socks5Target::Type::kIPv6;
    target.host = text;
  } else {
    target.type = Socks5Target::Type::kDomain;
    target.host = buffer_.substr(5, At(buffer_, 4));
    for (char c : target.host) {
      auto u = static_cast<uint8_t>(c);
      if (u <= 0x20 || u >= 0x7f) {
        return Fail("invalid character " + Hex(u) + " in SOCKS5 domain name",
                    Socks5Reply(kSocks5GeneralFailure));
      }
    }
  }
  target.port = static_cast<uint16_t>((At(buffer_, want_ - 2) << 8) | At(buffer_, want_ - 1));
  if (target.port == 0) {
    return Fail("SOCKS5 request for port 0 of " + target.host, Socks5Reply(kSocks5GeneralFailure));
  }
  phase_ = Phase::kDone;
  Step step;
  step.kind = Step::Kind::kConnect;
  step.target = std::move(target);
  return step;
}

}  // namespace podless::proxy
