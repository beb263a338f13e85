// Semantic validation of model objects, however they were built (a manifest
// or a structured API call). Problems are reported as Diagnostics that name a
// field path in manifest spelling ("spec.ports[1].port"); the manifest parser
// maps those paths back to lines and columns.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "workloads/model.h"

namespace podless::workloads {

// A place in a manifest. Line and column are 1-based; 0 means unknown (for
// example an object that came from the API rather than from a file).
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
  bool operator==(const SourceLocation&) const = default;
};

struct Diagnostic {
  SourceLocation where;
  // Path of the offending field, e.g. "spec.ports[1].port" or
  // "metadata.labels[app]"; empty for problems with a whole document.
  std::string field;
  std::string message;  // e.g. "duplicate port 8080 (also ports[0])"

  // "file:line:col: field: message", leaving out the parts that are empty or
  // unknown.
  std::string ToString() const;
};

struct ParsedObject {
  Object object;
  SourceLocation where;  // the start of the document the object came from
};

// Every problem with one object (names, labels, ranges, references between
// its own fields). Empty when the object is valid. `where` is left unknown.
std::vector<Diagnostic> Validate(const Object& object);
// The same for an object not (yet) held in an Object, without copying it
// into one (the API converts and validates each registered workload).
std::vector<Diagnostic> Validate(const Workload& workload);
std::vector<Diagnostic> Validate(const Service& service);
std::vector<Diagnostic> Validate(const AuthorizationPolicy& policy);

// Problems between the objects of one apply: the same kind, namespace and
// name declared twice. Reported at the later declaration.
std::vector<Diagnostic> ValidateBatch(const std::vector<ParsedObject>& objects);

// One Diagnostic::ToString() per line, in order: the text of an
// INVALID_ARGUMENT that the CLI prints and the API returns alike.
std::string JoinDiagnostics(const std::vector<Diagnostic>& diagnostics);

// Formats a location as "file:line:col" (parts left out when unknown).
std::string LocationToString(const SourceLocation& where);

// Quotes a user-supplied value for a message: double quotes, control
// characters escaped, long values cut short, so that a message stays one
// readable line whatever the input was.
std::string QuoteForMessage(std::string_view value);

// The longest Workload name: replica names are `<name>-<ordinal>` and must
// stay DNS-1123 labels for every ordinal below kMaxReplicas.
size_t MaxWorkloadNameLength();

}  // namespace podless::workloads
