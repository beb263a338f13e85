#include "api/cli/cli_flags.h"

#include <doctest.h>

#include <string>
#include <vector>

#include "api/label_selector.h"
#include "api/yaml_json.h"

namespace podless::api {
namespace {

const std::vector<FlagSpec> kSpecs = {
    {"--namespace", 'n', "NS", ""},    {"--output", 'o', "FORMAT", ""},
    {"--all-namespaces", 'A', "", ""}, {"--show-labels", 0, "", ""},
    {"--dry-run", 0, "", ""},          {"--watch", 'w', "", ""},
};

ParsedFlags Parse(std::vector<std::string> args) {
  auto parsed = ParseFlags(args, kSpecs, {{"--dry-run", {"client", "server", "none"}}});
  REQUIRE_MESSAGE(parsed.ok(), (parsed.ok() ? "" : parsed.error().message));
  return *parsed;
}

std::string ParseError(std::vector<std::string> args) {
  auto parsed = ParseFlags(args, kSpecs, {{"--dry-run", {"client", "server", "none"}}});
  REQUIRE_FALSE(parsed.ok());
  return parsed.error().message;
}

TEST_CASE("ParseFlags: every spelling of a value flag gives the same value") {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"-o", "wide"}, {"-o=wide"}, {"-owide"}, {"--output", "wide"}, {"--output=wide"}}) {
    ParsedFlags flags = Parse(args);
    CHECK(flags.Get("--output") == "wide");
    CHECK(flags.positional.empty());
  }
  ParsedFlags flags = Parse({"get", "-n=shop", "workloads", "--", "-x"});
  CHECK(flags.Get("--namespace") == "shop");
  CHECK(flags.positional == std::vector<std::string>{"get", "workloads", "-x"});
  CHECK(Parse({"-"}).positional == std::vector<std::string>{"-"});  // stdin, not a flag
}

TEST_CASE("ParseFlags: booleans alone or =true|false, extra words where allowed") {
  CHECK(Parse({"-A"}).On("--all-namespaces"));
  CHECK(Parse({"--show-labels=true"}).On("--show-labels"));
  CHECK_FALSE(Parse({"--show-labels=false"}).On("--show-labels"));
  CHECK_FALSE(Parse({}).On("--show-labels"));
  CHECK(Parse({"--dry-run"}).On("--dry-run"));
  CHECK(Parse({"--dry-run=client"}).On("--dry-run"));
  CHECK(Parse({"--dry-run=server"}).On("--dry-run"));
  CHECK_FALSE(Parse({"--dry-run=none"}).On("--dry-run"));
  CHECK(ParseError({"--dry-run=maybe"}).find("client, server, none, true or false") !=
        std::string::npos);
  CHECK(ParseError({"--show-labels=yes"}).find("true or false") != std::string::npos);
  ParsedFlags together = Parse({"-Aw", "-Ao=wide"});
  CHECK(together.On("--all-namespaces"));
  CHECK(together.On("--watch"));
  CHECK(together.Get("--output") == "wide");
  CHECK(ParseError({"-Ax"}) == "unknown flag -x");
  CHECK(Parse({"-h"}).help);
  CHECK(Parse({"x", "--help"}).help);
}

TEST_CASE("ParseFlags: an unknown flag is named, with the one meant") {
  CHECK(ParseError({"--show-lables"}) ==
        "unknown flag --show-lables (did you mean --show-labels?)");
  CHECK(ParseError({"--frobnicate"}) == "unknown flag --frobnicate");
  CHECK(ParseError({"-o"}) == "--output: missing value FORMAT");
}

TEST_CASE("NearestWord: within 2 edits or a prefix, else none") {
  std::vector<std::string_view> commands = {"get", "apply", "scale", "delete", "describe"};
  CHECK(NearestWord("scal", commands) == "scale");
  CHECK(NearestWord("gte", commands) == "get");
  CHECK(NearestWord("desc", commands) == "describe");
  CHECK(NearestWord("frobnicate", commands).empty());
}

TEST_CASE("LabelSelector: kubectl's forms") {
  std::map<std::string, std::string> web = {{"app", "web"}, {"tier", "front"}};
  auto matches = [&](const std::string& text) {
    auto selector = LabelSelector::Parse(text);
    REQUIRE_MESSAGE(selector.ok(), text);
    return selector->Matches(web);
  };
  CHECK(matches(""));
  CHECK(matches("app=web"));
  CHECK(matches("app==web"));
  CHECK_FALSE(matches("app=db"));
  CHECK(matches("app!=db"));
  CHECK(matches("tier"));
  CHECK_FALSE(matches("!tier"));
  CHECK(matches("!zone"));
  CHECK(matches("app in (db, web)"));
  CHECK_FALSE(matches("app notin (db,web)"));
  CHECK(matches("app=web,tier=front"));
  CHECK_FALSE(matches("app=web,tier=back"));
  CHECK(matches(" app = web "));
  for (const char* bad : {"app=(", "=web", "app in web", "a b"}) {
    auto selector = LabelSelector::Parse(bad);
    CHECK_MESSAGE(!selector.ok(), bad);
  }
}

TEST_CASE("YamlToJson: same keys in order, typed plain scalars, quoted ones strings") {
  auto json = YamlToJson("b: 1\na: [true, \"2\", x, -1.5, ~]\nc: {}\nd: \"say \\\"hi\\\"\\n\"\n");
  REQUIRE(json.ok());
  CHECK(*json ==
        "{\n"
        "    \"b\": 1,\n"
        "    \"a\": [\n"
        "        true,\n"
        "        \"2\",\n"
        "        \"x\",\n"
        "        -1.5,\n"
        "        null\n"
        "    ],\n"
        "    \"c\": {},\n"
        "    \"d\": \"say \\\"hi\\\"\\n\"\n"
        "}\n");
  // Only what JSON can hold as written is a number: 010 and 1e9 stay strings.
  CHECK(*YamlToJson("[010, +3, 1.5e3, 1e9, 0.5, -0, 12Mi]") ==
        "[\n    \"010\",\n    3,\n    1.5e3,\n    \"1e9\",\n    0.5,\n    -0,\n    \"12Mi\"\n]\n");
  CHECK_FALSE(YamlToJson("a: [").ok());
}

}  // namespace
}  // namespace podless::api
