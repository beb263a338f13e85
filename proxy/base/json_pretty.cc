#include "proxy/base/json_pretty.h"

namespace podless::proxy {

void JsonPrettyPrinter::NewLine(std::string* out) const {
  out->push_back('\n');
  out->append(static_cast<size_t>(depth_ > 0 ? depth_ : 0) * 2, ' ');
}

void JsonPrettyPrinter::Feed(std::string_view piece, std::string* out) {
  for (char c : piece) {
    if (in_string_) {
      out->push_back(c);
      if (escaped_) {
        escaped_ = false;
      } else if (c == '\\') {
        escaped_ = true;
      } else if (c == '"') {
        in_string_ = false;
      }
      continue;
    }
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') continue;
    if (just_opened_) {
      just_opened_ = false;
      if (c == '}' || c == ']') {  // {} and [] stay on one line
        --depth_;
        out->push_back(c);
        continue;
      }
      NewLine(out);
    }
    switch (c) {
      case '{':
      case '[':
        out->push_back(c);
        ++depth_;
        just_opened_ = true;
        break;
      case '}':
      case ']':
        --depth_;
        NewLine(out);
        out->push_back(c);
        break;
      case ',':
        out->push_back(c);
        NewLine(out);
        break;
      case ':':
        out->append(": ");
        break;
      case '"':
        in_string_ = true;
        out->push_back(c);
        break;
      default:
        out->push_back(c);
    }
  }
}

}  // namespace podless::proxy
