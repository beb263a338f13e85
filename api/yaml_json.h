// JSON text of a YAML document, so that `get -o json` prints the same object
// as `get -o yaml` (kubectl prints one object in either syntax).
#pragma once

#include <string>
#include <string_view>

#include "workloads/result.h"

namespace YAML {
class Node;
}

namespace podless::api {

// Maps keep their order; a plain scalar that reads as a YAML 1.2 core-schema
// integer, float, boolean or null becomes that JSON value, a quoted one stays
// a string. Indented by 4 spaces, as kubectl does. INVALID_ARGUMENT when the
// text is not YAML.
Result<std::string> YamlToJson(std::string_view yaml_text);

// The same for a parsed (or built) node: a scalar tagged "!" (quoted in the
// text, or set so by its builder) stays a string.
std::string YamlNodeToJson(const YAML::Node& node);

}  // namespace podless::api
