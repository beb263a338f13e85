// Media types of an Accept header, as the Kubernetes API negotiates them:
// `application/json;as=Table;v=v1;g=meta.k8s.io, application/json` asks for
// a server-side Table first, then plain JSON.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace podless::api::kube {

struct MediaType {
  std::string type;                                         // "application/json", lower-case
  std::vector<std::pair<std::string, std::string>> params;  // names lower-case

  // A parameter's value ("" when absent).
  std::string Param(std::string_view name) const;
};

// The media ranges of an Accept header in the order given (q values are
// parameters like any other; kubectl orders its preferences itself).
std::vector<MediaType> ParseAccept(std::string_view accept);

// The Accept header asks for a meta.k8s.io Table (v1 or v1beta1) before any
// plain JSON: the version asked for, else "".
std::string TableVersion(std::string_view accept);

}  // namespace podless::api::kube
