// Manifests: multi-document YAML to model objects, with every problem
// reported at the file, line and column of the node that is wrong. Kinds:
// podless.dev/v1alpha1 Workload, Service, AuthorizationPolicy; Kubernetes'
// and Istio's kinds that map onto them (see Kinds() in manifest_parser.cc and
// README "Bring your Kubernetes YAML").
#pragma once

#include <string_view>
#include <vector>

#include "workloads/model.h"
#include "workloads/validation.h"

namespace podless::workloads {

struct ParseResult {
  // The objects of the documents that had no problem, in document order. An
  // apply must use them only when `errors` is empty (applies are atomic).
  std::vector<ParsedObject> objects;
  // Every problem in every document: YAML syntax, unknown fields, wrong
  // types, missing fields, Validate() and ValidateBatch() findings. Located
  // at the key of an unknown or duplicate field, the value of a wrong field,
  // and the parent mapping of a missing one.
  std::vector<Diagnostic> errors;
  // Documents of kinds podless does not run, when ParseOptions asks to skip
  // them (otherwise each is an error).
  std::vector<SkippedDocument> skipped;
};

struct ParseOptions {
  bool skip_unsupported = false;
};

// Parses every `---` separated document; empty documents are skipped. A YAML
// syntax error anywhere yields that one Diagnostic and no objects. Never
// throws: yaml-cpp's exceptions are caught here.
ParseResult ParseManifests(std::string_view text, std::string_view file_name,
                           const ParseOptions& options = {});

}  // namespace podless::workloads
