// OpenAPI v3 as the Kubernetes API server serves it (kube-openapi's
// handler3):
//   GET /openapi/v3                     the discovery document: a path per
//                                       group/version, with the content hash
//                                       of its document in the URL
//   GET /openapi/v3/api/v1              an OpenAPI 3.0 document: the kinds'
//   GET /openapi/v3/apis/<group>/<ver>  schemas (schemas.h) and the paths
//                                       with their operations
//
// kubectl reads it for `explain`, and before `apply`/`create` to learn that
// the server validates fields itself: the PATCH operation of the kind must
// list the fieldValidation query parameter, or kubectl falls back to
// /openapi/v2 (not served, as on a server that disables it) and fails with
// "failed to download openapi".
//
// The documents are pure functions of resources.h and the manifest table,
// built once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "api/kube/kube_api.h"

namespace podless::api::kube {

// The OpenAPI 3.0 document of a group/version ("" group: the core group);
// "" when it is not served.
const std::string& OpenApiDocument(std::string_view group, std::string_view version);
// The discovery document of /openapi/v3.
const std::string& OpenApiDiscovery();
// The content hash the API server puts in URLs and ETags: SHA-512 of the
// bytes, upper-case hex.
std::string OpenApiHash(std::string_view document);

// GET /openapi/...: `parts` is the path split at '/' ("openapi", "v3", ...).
KubeResponse ServeOpenApi(const std::vector<std::string>& parts, const KubeRequest& request);

}  // namespace podless::api::kube
