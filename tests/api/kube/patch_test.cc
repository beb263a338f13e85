#include "api/kube/patch.h"

#include <doctest.h>
#include <yaml-cpp/yaml.h>

#include <string>

namespace podless::api::kube {
namespace {

YAML::Node J(const std::string& text) {
  auto node = ParseJsonNode(text);
  REQUIRE(node);
  return *node;
}

bool Same(const YAML::Node& a, const std::string& b) { return JsonEqual(a, J(b)); }

TEST_CASE("merge patch: the examples of RFC 7386 appendix A") {
  struct Case {
    const char* target;
    const char* patch;
    const char* result;
  };
  const Case cases[] = {
      {R"({"a":"b"})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"b"})", R"({"b":"c"})", R"({"a":"b","b":"c"})"},
      {R"({"a":"b"})", R"({"a":null})", R"({})"},
      {R"({"a":"b","b":"c"})", R"({"a":null})", R"({"b":"c"})"},
      {R"({"a":["b"]})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"c"})", R"({"a":["b"]})", R"({"a":["b"]})"},
      {R"({"a":{"b":"c"}})", R"({"a":{"b":"d","c":null}})", R"({"a":{"b":"d"}})"},
      {R"({"a":[{"b":"c"}]})", R"({"a":[1]})", R"({"a":[1]})"},
      {R"(["a","b"])", R"(["c","d"])", R"(["c","d"])"},
      {R"({"a":"b"})", R"(["c"])", R"(["c"])"},
      {R"({"a":"foo"})", R"(null)", R"(null)"},
      {R"({"a":"foo"})", R"("bar")", R"("bar")"},
      {R"({"e":null})", R"({"a":1})", R"({"e":null,"a":1})"},
      {R"([1,2])", R"({"a":"b","c":null})", R"({"a":"b"})"},
      {R"({})", R"({"a":{"bb":{"ccc":null}}})", R"({"a":{"bb":{}}})"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.patch);
    const YAML::Node target = J(c.target);
    CHECK(Same(MergePatch(target, J(c.patch)), c.result));
    CHECK(Same(target, c.target));  // the input is left as it was
  }
}

TEST_CASE("json patch: the operations of RFC 6902 appendix A") {
  auto apply = [](const std::string& doc, const std::string& ops) {
    return JsonPatch(J(doc), J(ops));
  };
  auto ok = [&](const std::string& doc, const std::string& ops, const std::string& want) {
    CAPTURE(ops);
    auto out = apply(doc, ops);
    REQUIRE(out);
    CHECK(Same(*out, want));
  };
  ok(R"({"foo":"bar"})", R"([{"op":"add","path":"/baz","value":"qux"}])",
     R"({"baz":"qux","foo":"bar"})");
  ok(R"({"foo":["bar","baz"]})", R"([{"op":"add","path":"/foo/1","value":"qux"}])",
     R"({"foo":["bar","qux","baz"]})");
  ok(R"({"baz":"qux","foo":"bar"})", R"([{"op":"remove","path":"/baz"}])", R"({"foo":"bar"})");
  ok(R"({"foo":["bar","qux","baz"]})", R"([{"op":"remove","path":"/foo/1"}])",
     R"({"foo":["bar","baz"]})");
  ok(R"({"baz":"qux","foo":"bar"})", R"([{"op":"replace","path":"/baz","value":"boo"}])",
     R"({"baz":"boo","foo":"bar"})");
  ok(R"({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}})",
     R"([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}])",
     R"({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}})");
  ok(R"({"foo":["all","grass","cows","eat"]})",
     R"([{"op":"move","from":"/foo/1","path":"/foo/3"}])",
     R"({"foo":["all","cows","eat","grass"]})");
  ok(R"({"baz":"qux","foo":["a",2,"c"]})",
     R"([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}])",
     R"({"baz":"qux","foo":["a",2,"c"]})");
  ok(R"({"foo":"bar"})", R"([{"op":"add","path":"/child","value":{"grandchild":{}}}])",
     R"({"foo":"bar","child":{"grandchild":{}}})");
  ok(R"({"foo":["bar"]})", R"([{"op":"add","path":"/foo/-","value":["abc","def"]}])",
     R"({"foo":["bar",["abc","def"]]})");
  ok(R"({"/":9,"~1":10})", R"([{"op":"test","path":"/~01","value":10}])", R"({"/":9,"~1":10})");
  ok(R"({"a":1})", R"([{"op":"copy","from":"/a","path":"/b"}])", R"({"a":1,"b":1})");

  // A.9: a failed test; A.12: a missing target; A.15: a string is not a number.
  auto failed = apply(R"({"baz":"qux"})", R"([{"op":"test","path":"/baz","value":"bar"}])");
  REQUIRE_FALSE(failed);
  CHECK(failed.error().message.find("test failed") != std::string::npos);
  CHECK_FALSE(apply(R"({"foo":"bar"})", R"([{"op":"add","path":"/baz/bat","value":"qux"}])"));
  CHECK_FALSE(apply(R"({"/":9,"~1":10})", R"([{"op":"test","path":"/~01","value":"10"}])"));
  CHECK_FALSE(apply(R"({"foo":"bar"})", R"([{"op":"remove","path":"/nope"}])"));
  CHECK_FALSE(apply(R"({"foo":[1]})", R"([{"op":"replace","path":"/foo/01","value":2}])"));
  CHECK_FALSE(apply(R"({"foo":"bar"})", R"([{"op":"frob","path":"/foo"}])"));
  CHECK_FALSE(apply(R"({"foo":"bar"})", R"({"op":"remove","path":"/foo"})"));

  // All or nothing: the second operation fails, the input stays as it was.
  const YAML::Node doc = J(R"({"a":1})");
  CHECK_FALSE(JsonPatch(doc, J(R"([{"op":"remove","path":"/a"},{"op":"remove","path":"/a"}])")));
  CHECK(Same(doc, R"({"a":1})"));
}

TEST_CASE("strategic merge patch: containers merge by name, ports by containerPort") {
  const YAML::Node deployment = J(R"({"spec":{"replicas":1,"template":{"spec":{"containers":[
      {"name":"web","image":"nginx:1","ports":[{"containerPort":80},{"containerPort":443}],
       "env":[{"name":"A","value":"1"}]},
      {"name":"side","image":"envoy"}]}}}})");
  auto out = StrategicMergePatch(deployment, J(R"({"spec":{"replicas":3,"template":{"spec":{
      "containers":[{"name":"web","image":"nginx:2","env":[{"name":"B","value":"2"}],
                     "ports":[{"containerPort":443,"$patch":"delete"}]}]}}}})"),
                                 "Deployment");
  REQUIRE(out);
  CHECK(Same(*out, R"({"spec":{"replicas":3,"template":{"spec":{"containers":[
      {"name":"web","image":"nginx:2","ports":[{"containerPort":80}],
       "env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]},
      {"name":"side","image":"envoy"}]}}}})"));
  // A plain merge patch would have replaced the list: the other container stays here.
  CHECK((*out)["spec"]["template"]["spec"]["containers"].size() == 2);
}

TEST_CASE("strategic merge patch: a Service's ports merge by port") {
  const YAML::Node service = J(R"({"spec":{"ports":[{"port":80,"targetPort":8080}]}})");
  auto out = StrategicMergePatch(service, J(R"({"spec":{"ports":[{"port":443}]}})"), "Service");
  REQUIRE(out);
  CHECK(Same(*out, R"({"spec":{"ports":[{"port":80,"targetPort":8080},{"port":443}]}})"));
  CHECK(MergeKey("Service", "spec", "ports") == "port");
  CHECK(MergeKey("Deployment", "spec.template.spec.containers", "ports") == "containerPort");
  CHECK(MergeKey("Deployment", "spec.template.spec.containers", "volumeMounts") == "mountPath");
  CHECK(MergeKey("Deployment", "spec", "args").empty());
}

TEST_CASE("strategic merge patch: directives as kubectl sends them") {
  const YAML::Node doc = J(R"({"metadata":{"labels":{"a":"1","b":"2"}},"spec":{
      "containers":[{"name":"x","image":"i"},{"name":"y","image":"j"}],
      "finalizers":["f1","f2"],"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}}})");
  SUBCASE("$patch: replace on a map") {
    auto out = StrategicMergePatch(
        doc, J(R"({"metadata":{"labels":{"c":"3","$patch":"replace"}}})"), "Deployment");
    REQUIRE(out);
    CHECK(Same((*out)["metadata"], R"({"labels":{"c":"3"}})"));
  }
  SUBCASE("$patch: delete on a map, null on a key") {
    auto out = StrategicMergePatch(
        doc, J(R"({"metadata":{"labels":{"$patch":"delete"}},"spec":{"strategy":null}})"),
        "Deployment");
    REQUIRE(out);
    CHECK_FALSE((*out)["metadata"]["labels"].IsDefined());
    CHECK_FALSE((*out)["spec"]["strategy"].IsDefined());
  }
  SUBCASE("$patch: replace in a list") {
    auto out = StrategicMergePatch(
        doc, J(R"({"spec":{"containers":[{"name":"z","image":"k"},{"$patch":"replace"}]}})"),
        "Deployment");
    REQUIRE(out);
    CHECK(Same((*out)["spec"]["containers"], R"([{"name":"z","image":"k"}])"));
  }
  SUBCASE("$setElementOrder orders the merged list") {
    auto out = StrategicMergePatch(
        doc, J(R"({"spec":{"$setElementOrder/containers":[{"name":"y"},{"name":"x"}],
                            "containers":[{"name":"x","image":"i2"}]}})"),
        "Deployment");
    REQUIRE(out);
    CHECK(Same((*out)["spec"]["containers"],
               R"([{"name":"y","image":"j"},{"name":"x","image":"i2"}])"));
  }
  SUBCASE("$retainKeys drops the keys it does not list") {
    auto out = StrategicMergePatch(
        doc, J(R"({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}})"),
        "Deployment");
    REQUIRE(out);
    CHECK(Same((*out)["spec"]["strategy"], R"({"type":"Recreate"})"));
  }
  SUBCASE("$deleteFromPrimitiveList") {
    auto out = StrategicMergePatch(
        doc, J(R"({"spec":{"$deleteFromPrimitiveList/finalizers":["f1"]}})"), "Deployment");
    REQUIRE(out);
    CHECK(Same((*out)["spec"]["finalizers"], R"(["f2"])"));
  }
  SUBCASE("an unknown directive is an error") {
    auto out = StrategicMergePatch(doc, J(R"({"spec":{"$patch":"frob"}})"), "Deployment");
    REQUIRE_FALSE(out);
    CHECK(out.error().message.find("frob") != std::string::npos);
  }
  SUBCASE("a list element without its merge key is an error") {
    CHECK_FALSE(
        StrategicMergePatch(doc, J(R"({"spec":{"containers":[{"image":"k"}]}})"), "Deployment"));
  }
  CHECK(Same(doc["metadata"], R"({"labels":{"a":"1","b":"2"}})"));  // untouched
}

}  // namespace
}  // namespace podless::api::kube
