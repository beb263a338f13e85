// A loopback TCP port for a test to listen on.
#pragma once

#include <cstdint>

namespace podless::testing {

// A loopback port nothing listens on right now (bound to 127.0.0.1:0, then
// released); 0 when no socket could be had.
uint16_t FreePort();

// A port free on every address (0.0.0.0) and below the kernel's ephemeral
// range (32768-60999 by default), so no client socket of another process,
// which takes its local port from that range, can hold it while a test binds
// 0.0.0.0 to it. 0 when none was found.
uint16_t FreeWildcardPort();

}  // namespace podless::testing
