// Fuzzes the outbound entry's SOCKS5 server handshake (proxy/socks5.h) the way
// the entry drives it. The first input byte picks how authentication is
// decided and the chunk size the rest arrives in.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "proxy/socks5.h"

using namespace podless::proxy;

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    fprintf(stderr, "invariant violated: %s\n", what);
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  bool accept = (data[0] & 1) != 0;
  size_t chunk = (data[0] >> 1) % 32 + 1;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

  Socks5ServerHandshake handshake;
  std::string_view input;
  // Bounded: each Feed either consumes bytes or waits for more (or ends).
  for (int steps = 0; steps < 10000; ++steps) {
    if (input.empty()) {
      if (rest.empty()) break;
      input = rest.substr(0, chunk);
      rest.remove_prefix(input.size());
    }
    size_t consumed = 0;
    Socks5ServerHandshake::Step step = handshake.Feed(input, &consumed);
    Check(consumed <= input.size(), "consumed more than fed");
    input.remove_prefix(consumed);
    using Kind = Socks5ServerHandshake::Step::Kind;
    switch (step.kind) {
      case Kind::kNeedMore:
        Check(input.empty(), "needs more but left bytes unread");
        break;
      case Kind::kReply:
        Check(!step.reply.empty(), "kReply without a reply");
        break;
      case Kind::kAuthenticate: {
        Check(step.username.size() <= 255 && step.password.size() <= 255, "credential length");
        std::string status = handshake.AuthenticationResult(accept);
        Check(status.size() == 2, "RFC 1929 status is two bytes");
        break;
      }
      case Kind::kConnect:
        Check(handshake.done(), "kConnect but not done");
        Check(accept, "CONNECT reached without authentication");
        Check(!step.target.host.empty(), "CONNECT without a host");
        (void)step.target.ToString();
        (void)Socks5Reply(kSocks5Succeeded);
        return 0;
      case Kind::kError:
        Check(!step.error.empty(), "kError without a reason");
        Check(handshake.failed(), "kError but not failed");
        return 0;
    }
  }
  return 0;
}
