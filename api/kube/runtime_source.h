// The Kubernetes API's objects: what the local API's List answers
// (api/runtime_service.h), so kubectl, the CLI and gRPC clients see one state.
#pragma once

#include <string>
#include <vector>

#include "api/kube/kube_api.h"
#include "api/runtime_service.h"

namespace podless::api::kube {

class RuntimeObjectSource final : public ObjectSource {
 public:
  explicit RuntimeObjectSource(RuntimeService& service) : service_(service) {}

  // ObjectSource
  Result<v1::ListResponse> List(v1::Kind kind, const std::string& ns) override {
    v1::ListRequest request;
    request.set_kind(kind);
    request.set_namespace_(ns);
    return service_.List(request);
  }

 private:
  RuntimeService& service_;
};

}  // namespace podless::api::kube
