#include "api/label_selector.h"

#include <algorithm>

namespace podless::api {
namespace {

std::string Trim(const std::string& text) {
  size_t begin = text.find_first_not_of(' ');
  if (begin == std::string::npos) return "";
  size_t end = text.find_last_not_of(' ');
  return text.substr(begin, end - begin + 1);
}

// Splits at commas outside parentheses.
std::vector<std::string> SplitTop(const std::string& text) {
  std::vector<std::string> parts;
  std::string current;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) {
      parts.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  parts.push_back(current);
  return parts;
}

bool ValidKey(const std::string& key) {
  return !key.empty() && key.find_first_of(" =!(),") == std::string::npos;
}

}  // namespace

Result<LabelSelector> LabelSelector::Parse(const std::string& text) {
  LabelSelector selector;
  if (Trim(text).empty()) return selector;
  for (const std::string& raw : SplitTop(text)) {
    std::string part = Trim(raw);
    auto bad = [&]() {
      return MakeError(ErrorCode::kInvalidArgument,
                       "selector: \"" + part +
                           "\" is not a requirement (key=value, key!=value, key, !key, "
                           "key in (a,b), key notin (a,b))");
    };
    Requirement req;
    size_t set_op = std::string::npos;
    size_t op_len = 0;
    if (size_t p = part.find(" notin "); p != std::string::npos) {
      req.op = Requirement::Op::kNotIn;
      set_op = p;
      op_len = 7;
    } else if (size_t q = part.find(" in "); q != std::string::npos) {
      req.op = Requirement::Op::kIn;
      set_op = q;
      op_len = 4;
    }
    if (set_op != std::string::npos) {
      req.key = Trim(part.substr(0, set_op));
      std::string set = Trim(part.substr(set_op + op_len));
      if (set.size() < 2 || set.front() != '(' || set.back() != ')') return bad();
      for (const std::string& value : SplitTop(set.substr(1, set.size() - 2))) {
        req.values.push_back(Trim(value));
      }
    } else if (size_t ne = part.find("!="); ne != std::string::npos) {
      req.op = Requirement::Op::kNotIn;
      req.key = Trim(part.substr(0, ne));
      req.values.push_back(Trim(part.substr(ne + 2)));
    } else if (size_t eq = part.find('='); eq != std::string::npos) {
      req.op = Requirement::Op::kIn;
      req.key = Trim(part.substr(0, eq));
      size_t value_at = part.compare(eq, 2, "==") == 0 ? eq + 2 : eq + 1;
      req.values.push_back(Trim(part.substr(value_at)));
    } else if (!part.empty() && part[0] == '!') {
      req.op = Requirement::Op::kNotExists;
      req.key = Trim(part.substr(1));
    } else {
      req.op = Requirement::Op::kExists;
      req.key = part;
    }
    if (!ValidKey(req.key)) return bad();
    for (const std::string& value : req.values) {
      if (value.find_first_of(" =!()") != std::string::npos) return bad();
    }
    selector.requirements_.push_back(std::move(req));
  }
  return selector;
}

bool LabelSelector::Matches(const std::map<std::string, std::string>& labels) const {
  for (const Requirement& req : requirements_) {
    auto it = labels.find(req.key);
    const bool has = it != labels.end();
    const bool listed =
        has && std::find(req.values.begin(), req.values.end(), it->second) != req.values.end();
    switch (req.op) {
      case Requirement::Op::kIn:
        if (!listed) return false;
        break;
      case Requirement::Op::kNotIn:
        if (listed) return false;
        break;
      case Requirement::Op::kExists:
        if (!has) return false;
        break;
      case Requirement::Op::kNotExists:
        if (has) return false;
        break;
    }
  }
  return true;
}

}  // namespace podless::api
