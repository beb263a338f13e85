// Manifest files as the CLI and `podless run --apply` read them: FILE, DIR
// (its *.yaml, *.yml and *.json files, sorted, not recursive — as kubectl
// apply -f DIR) or "-" for standard input.
#pragma once

#include <string>
#include <vector>

#include "workloads/manifest_parser.h"
#include "workloads/result.h"
#include "workloads/validation.h"

namespace podless::api {

struct ManifestFile {
  std::string name;  // as given, used in "file:line:col" messages
  std::string text;
};

Result<std::vector<ManifestFile>> ReadManifestFiles(const std::string& path);

// Parses every file into one batch. Any problem anywhere fails the whole
// batch: INVALID_ARGUMENT with one "file:line:col: field: message" per line.
// Documents skipped on request (options.skip_unsupported) go to `*skipped`.
Result<std::vector<workloads::ParsedObject>> ParseManifestFiles(
    const std::vector<ManifestFile>& files, const workloads::ParseOptions& options = {},
    std::vector<workloads::SkippedDocument>* skipped = nullptr);

}  // namespace podless::api
