#include "api/manifest_files.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "workloads/manifest_parser.h"

namespace podless::api {
namespace {

Result<std::string> ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "cannot read " + path + ": " + std::strerror(errno));
  }
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) {
    return MakeError(ErrorCode::kInvalidArgument, "cannot read " + path + ": read error");
  }
  return out.str();
}

bool IsManifestName(const std::filesystem::path& path) {
  const std::string ext = path.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

}  // namespace

Result<std::vector<ManifestFile>> ReadManifestFiles(const std::string& path) {
  std::vector<ManifestFile> files;
  if (path == "-") {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    files.push_back({"-", std::move(text)});
    return files;
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    std::vector<std::filesystem::path> names;
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      if (entry.is_regular_file() && IsManifestName(entry.path())) names.push_back(entry.path());
    }
    if (ec)
      return MakeError(ErrorCode::kInvalidArgument, "cannot list " + path + ": " + ec.message());
    std::sort(names.begin(), names.end());
    if (names.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       path + ": no *.yaml, *.yml or *.json files in this directory");
    }
    for (const auto& name : names) {
      auto text = ReadWhole(name.string());
      if (!text) return text.error();
      files.push_back({name.string(), std::move(*text)});
    }
    return files;
  }
  auto text = ReadWhole(path);
  if (!text) return text.error();
  files.push_back({path, std::move(*text)});
  return files;
}

Result<std::vector<workloads::ParsedObject>> ParseManifestFiles(
    const std::vector<ManifestFile>& files, const workloads::ParseOptions& options,
    std::vector<workloads::SkippedDocument>* skipped) {
  std::vector<workloads::ParsedObject> objects;
  std::vector<workloads::Diagnostic> errors;
  for (const ManifestFile& file : files) {
    workloads::ParseResult parsed =
        workloads::ParseManifests(file.text, file.name.empty() ? "-" : file.name, options);
    for (auto& object : parsed.objects) objects.push_back(std::move(object));
    if (skipped != nullptr) {
      for (auto& document : parsed.skipped) skipped->push_back(std::move(document));
    }
    for (auto& error : parsed.errors) errors.push_back(std::move(error));
  }
  if (files.size() > 1 && errors.empty()) {
    // ParseManifests finds duplicates within one file; these are across files.
    for (auto& error : workloads::ValidateBatch(objects)) errors.push_back(std::move(error));
  }
  if (!errors.empty())
    return MakeError(ErrorCode::kInvalidArgument, workloads::JoinDiagnostics(errors));
  if (objects.empty() && (skipped == nullptr || skipped->empty())) {
    std::string names;
    for (const auto& file : files) names += (names.empty() ? "" : ", ") + file.name;
    return MakeError(ErrorCode::kInvalidArgument, names + ": no objects in the manifest");
  }
  return objects;
}

}  // namespace podless::api
