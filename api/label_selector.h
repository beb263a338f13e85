// kubectl's label selectors (`-l`, `--selector`), matched in the client:
// `key=value`, `key==value`, `key!=value`, `key` (has the label), `!key`,
// `key in (a,b)`, `key notin (a,b)`, comma-separated, all must match.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "workloads/result.h"

namespace podless::api {

class LabelSelector {
 public:
  // INVALID_ARGUMENT naming the part that is not a requirement.
  static Result<LabelSelector> Parse(const std::string& text);
  bool Matches(const std::map<std::string, std::string>& labels) const;
  bool empty() const { return requirements_.empty(); }

 private:
  struct Requirement {
    enum class Op { kIn, kNotIn, kExists, kNotExists } op;
    std::string key;
    std::vector<std::string> values;
  };
  std::vector<Requirement> requirements_;
};

}  // namespace podless::api
