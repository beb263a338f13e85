// The agent's one logger: a line per event on stderr,
//
//   2026-12-06T21:00:00.123Z warn  cluster: etcd unreachable: ...
//
// with the time (UTC), the level and the component. Each line is one
// write(2), so the worker threads' lines never interleave. Lines below the
// level (--log-level: error, warn, info, debug; default info) are dropped
// before they are formatted: LogEnabled is one relaxed atomic load, so a
// debug line on a hot path costs nothing when debug is off.
//
// Connections carry an id (TcpStream::id()) that their debug lines name as
// `conn=N`, so one connection's accept, route and close can be followed
// through a busy log.
//
//   proxy::Log(proxy::LogLevel::kWarning, "cluster", "etcd unreachable: " + why);
//   if (proxy::LogEnabled(proxy::LogLevel::kDebug)) proxy::Log(..., "conn=" + ...);
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace podless::proxy {

enum class LogLevel : int { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };

// "error", "warn" (or "warning"), "info", "debug"; nullopt for anything else.
std::optional<LogLevel> ParseLogLevel(std::string_view name);
const char* LogLevelName(LogLevel level);

void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
void Log(LogLevel level, std::string_view component, std::string_view message);

}  // namespace podless::proxy
