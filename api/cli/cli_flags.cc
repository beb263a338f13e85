#include "api/cli/cli_flags.h"

#include <algorithm>

namespace podless::api {

std::string ParsedFlags::Get(std::string_view name) const {
  auto it = values.find(name);
  return it == values.end() || it->second.empty() ? std::string() : it->second.back();
}

bool ParsedFlags::On(std::string_view name) const {
  return Has(name) && Get(name) != "false" && Get(name) != "none";
}

std::vector<std::string> ParsedFlags::All(std::string_view name) const {
  auto it = values.find(name);
  return it == values.end() ? std::vector<std::string>() : it->second;
}

namespace {

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string UnknownFlag(std::string_view flag, const std::vector<FlagSpec>& specs) {
  std::vector<std::string_view> names;
  for (const FlagSpec& spec : specs) names.push_back(spec.name);
  std::string message = "unknown flag " + std::string(flag);
  std::string nearest = NearestWord(flag, names);
  if (!nearest.empty()) message += " (did you mean " + nearest + "?)";
  return message;
}

}  // namespace

std::string NearestWord(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::string best;
  size_t best_distance = 3;  // kubectl's SuggestionsMinimumDistance is 2.
  for (std::string_view candidate : candidates) {
    size_t distance = EditDistance(word, candidate);
    if (word.size() >= 2 && candidate.rfind(word, 0) == 0) distance = std::min<size_t>(distance, 1);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

Result<ParsedFlags> ParseFlags(
    const std::vector<std::string>& args, const std::vector<FlagSpec>& specs,
    const std::map<std::string_view, std::vector<std::string_view>>& boolean_values) {
  ParsedFlags out;
  bool flags_ended = false;
  std::vector<std::string> queue = args;  // -Aw becomes -A -w on the way
  for (size_t i = 0; i < queue.size(); ++i) {
    const std::string arg = queue[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') {
      out.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      out.help = true;
      continue;
    }
    // Split into the flag and an attached value: --name=value, -n=value, -nvalue.
    std::string flag;
    std::string value;
    bool attached = false;
    if (arg[1] == '-') {
      size_t eq = arg.find('=');
      flag = arg.substr(0, eq);
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        attached = true;
      }
    } else {
      flag = arg.substr(0, 2);
      if (arg.size() > 2) {
        value = arg.substr(arg[2] == '=' ? 3 : 2);
        attached = true;
      }
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs) {
      if (flag == s.name || (flag.size() == 2 && flag[1] == s.short_name && s.short_name != 0)) {
        spec = &s;
      }
    }
    if (spec == nullptr) return MakeError(ErrorCode::kInvalidArgument, UnknownFlag(flag, specs));
    std::string name(spec->name);
    if (spec->value_name.empty() && attached && arg[1] != '-' && arg[2] != '=') {
      // Short booleans together (-Aw), as pflag reads them.
      queue.insert(queue.begin() + static_cast<long>(i) + 1, "-" + arg.substr(2));
      attached = false;
    }
    if (spec->value_name.empty()) {
      if (!attached) value = "true";
      auto extra = boolean_values.find(spec->name);
      bool known = value == "true" || value == "false";
      if (extra != boolean_values.end()) {
        known = known ||
                std::find(extra->second.begin(), extra->second.end(), value) != extra->second.end();
      }
      if (!known) {
        std::string accepted = "true or false";
        if (extra != boolean_values.end()) {
          accepted.clear();
          for (std::string_view word : extra->second) accepted += std::string(word) + ", ";
          accepted += "true or false";
        }
        return MakeError(ErrorCode::kInvalidArgument,
                         name + ": unknown value \"" + value + "\" (expected " + accepted + ")");
      }
    } else if (!attached) {
      if (i + 1 >= queue.size()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         name + ": missing value " + std::string(spec->value_name));
      }
      value = queue[++i];
    }
    out.values[name].push_back(value);
  }
  return out;
}

std::string FlagsHelp(const std::vector<FlagSpec>& specs) {
  std::vector<std::pair<std::string, std::string_view>> lines;
  size_t width = 0;
  for (const FlagSpec& spec : specs) {
    std::string left = spec.short_name != 0 ? std::string("-") + spec.short_name + ", " : "    ";
    left += spec.name;
    if (!spec.value_name.empty()) left += " " + std::string(spec.value_name);
    width = std::max(width, left.size());
    lines.emplace_back(std::move(left), spec.help);
  }
  lines.emplace_back("-h, --help", "this text");
  std::string out;
  for (auto& [left, help] : lines) {
    left.resize(std::max(width, left.size()), ' ');
    out += "  " + left + "   " + std::string(help) + "\n";
  }
  return out;
}

}  // namespace podless::api
