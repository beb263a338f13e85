// A loopback TCP port for a test to listen on.
#pragma once

#include <cstdint>

namespace podless::testing {

// A loopback port nothing listens on right now (bound to 127.0.0.1:0, then
// released); 0 when no socket could be had.
uint16_t FreePort();

}  // namespace podless::testing
