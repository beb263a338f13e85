// The flags of the `podless` client verbs, parsed as kubectl parses them:
// `--name value` and `--name=value`, `-n value`, `-n=value` and `-nvalue`;
// a boolean flag alone or as `--name=true|false`, short ones together (`-Aw`);
// `--` ends the flags.
// Pure functions, so every spelling is testable without an agent.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "workloads/result.h"

namespace podless::api {

struct FlagSpec {
  std::string_view name;        // "--output"
  char short_name = 0;          // 'o', or 0 for none
  std::string_view value_name;  // "FORMAT"; empty for a boolean flag
  std::string_view help;
};

struct ParsedFlags {
  std::vector<std::string> positional;
  // By long name ("--output"), every value in order. A boolean flag holds
  // "true" or "false".
  std::map<std::string, std::vector<std::string>, std::less<>> values;
  bool help = false;  // -h or --help

  bool Has(std::string_view name) const { return values.count(name) != 0; }
  // The last value given, or "".
  std::string Get(std::string_view name) const;
  // A boolean flag: given and not "=false".
  bool On(std::string_view name) const;
  std::vector<std::string> All(std::string_view name) const;
};

// INVALID_ARGUMENT for an unknown flag (naming it and, when one is close, the
// flag meant), a value flag without value, or a boolean with a value other
// than true/false. `boolean_values` lists extra words a boolean flag takes
// (kubectl's --dry-run=client|server|none): they are stored as given.
Result<ParsedFlags> ParseFlags(
    const std::vector<std::string>& args, const std::vector<FlagSpec>& specs,
    const std::map<std::string_view, std::vector<std::string_view>>& boolean_values = {});

// The candidate closest to `word` (a prefix of it, or within 2 edits, as
// kubectl suggests), or "" when none is close enough.
std::string NearestWord(std::string_view word, const std::vector<std::string_view>& candidates);

// "  -o, --output FORMAT   help" lines, aligned.
std::string FlagsHelp(const std::vector<FlagSpec>& specs);

}  // namespace podless::api
