#include "proxy/base/json_pretty.h"

#include <doctest.h>

#include <string>

namespace podless::proxy {
namespace {

constexpr char kCompact[] = R"({"a":[1,{"b":"x,y:{z}","c":[]},{}],"d":"q\"uo]te","e":{"f":null}})";
constexpr char kPretty[] =
    "{\n"
    "  \"a\": [\n"
    "    1,\n"
    "    {\n"
    "      \"b\": \"x,y:{z}\",\n"
    "      \"c\": []\n"
    "    },\n"
    "    {}\n"
    "  ],\n"
    "  \"d\": \"q\\\"uo]te\",\n"
    "  \"e\": {\n"
    "    \"f\": null\n"
    "  }\n"
    "}";

TEST_CASE("JsonPrettyPrinter: indents, leaves strings alone, same in any pieces") {
  JsonPrettyPrinter whole;
  std::string out;
  whole.Feed(kCompact, &out);
  CHECK(out == kPretty);
  const std::string compact = kCompact;
  for (size_t piece = 1; piece <= 7; ++piece) {
    JsonPrettyPrinter printer;
    std::string pieces;
    for (size_t at = 0; at < compact.size(); at += piece) {
      printer.Feed(std::string_view(compact).substr(at, piece), &pieces);
    }
    CHECK_MESSAGE(pieces == kPretty, "pieces of " << piece);
  }
}

}  // namespace
}  // namespace podless::proxy
