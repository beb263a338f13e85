// The `podless` client's commands: each one's usage line, summary, flags and
// help text, the global usage, and what an unknown command is told (kubectl's
// "unknown command ... Did you mean this?").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "api/cli/cli_flags.h"

namespace podless::api {

struct CommandSpec {
  std::string_view name;     // "get"
  std::string_view usage;    // "get KIND [NAME...] [flags]"
  std::string_view summary;  // one line, for the global usage
  std::string_view details;  // paragraphs for `COMMAND --help`, may be empty
  std::vector<FlagSpec> flags;
};

// Every command, in the order the global usage lists them.
const std::vector<CommandSpec>& Commands();
const CommandSpec* FindCommand(std::string_view name);

// `podless --help`.
std::string GlobalUsage();
// `podless COMMAND --help`: usage line, summary, details, flags.
std::string CommandHelp(const CommandSpec& command);
// stderr text for a usage mistake in `command`: the problem, the command's
// usage line and where its help is.
std::string CommandUsageError(const CommandSpec& command, std::string_view problem);
// stderr text for a word that is no command: named, with the nearest command
// when one is close.
std::string UnknownCommandError(std::string_view word);

// The version `podless version` prints (meson's project version).
std::string_view Version();

}  // namespace podless::api
