// Indents compact JSON as it streams by (/config_dump?pretty): one value or
// key per line, two spaces a level. Stateful across pieces, so a document
// streamed in pieces of any size comes out the same; it never buffers more
// than the piece it is given. Input must be compact JSON (no whitespace
// outside strings is added to; whitespace between tokens is dropped).
#pragma once

#include <string>
#include <string_view>

namespace podless::proxy {

class JsonPrettyPrinter {
 public:
  // Appends the indented form of `piece` to `out`.
  void Feed(std::string_view piece, std::string* out);

 private:
  void NewLine(std::string* out) const;

  int depth_ = 0;
  bool in_string_ = false;
  bool escaped_ = false;
  bool just_opened_ = false;  // the last token was { or [: a close follows it directly
};

}  // namespace podless::proxy
