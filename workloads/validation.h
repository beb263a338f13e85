// Semantic validation of model objects, however they were built (a manifest
// or a structured API call). Problems are reported as Diagnostics that name a
// field path in manifest spelling ("spec.ports[1].port"); the manifest parser
// maps those paths back to lines and columns.
#pragma once

#include <cstddef>
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

// Sizes an object may have, checked by Validate() at apply time so that no
// field is larger than what the agent, the kernel and `podless get` can handle
// (a 60 MB body was once accepted, and then `get -A` hit the 64 MiB gRPC
// message limit). Label keys and values keep Kubernetes' limits (names.h).
// A static app answers from memory: its body and headers stay small.
inline constexpr size_t kMaxStaticBodyBytes = 1u << 20;  // 1 MiB
inline constexpr size_t kMaxStaticHeaders = 64;
// A header's name and value together, as a server's header-line limit counts
// (nginx and Apache refuse longer lines by default).
inline constexpr size_t kMaxStaticHeaderBytes = 8u << 10;  // 8 KiB
// An exec app's argv and environment. Linux refuses an argument or a
// NAME=value longer than MAX_ARG_STRLEN (128 KiB), and all of them together
// beyond ARG_MAX (2 MiB with the usual 8 MiB stack); 1 MiB leaves the agent
// room for the variables it adds (HTTP_PROXY, HOME, ...).
inline constexpr size_t kMaxExecArgs = 1024;
inline constexpr size_t kMaxExecEnvVars = 1024;
inline constexpr size_t kMaxExecStringBytes = 128u << 10;  // one argument or NAME=value
inline constexpr size_t kMaxExecTotalBytes = 1u << 20;     // argv and environment together
inline constexpr size_t kMaxPathBytes = 4096;              // workingDir (PATH_MAX)
inline constexpr size_t kMaxProbePathBytes = 8u << 10;     // httpGet.path, a request line
inline constexpr size_t kMaxPrincipalBytes = 2048;
inline constexpr size_t kMaxAnnotationBytes =
    256u << 10;  // Kubernetes' limit         // a SPIFFE ID (SPIFFE spec)
// A manifest file; the parser refuses larger ones before reading them.
inline constexpr size_t kMaxManifestBytes = 16u << 20;  // 16 MiB
// Problems listed in one error text (JoinDiagnostics); the rest are counted.
// The text also stops at kMaxDiagnosticsBytes, so that with its last line
// ("... and N more errors") it fits the 4 KiB a gRPC status message may take.
inline constexpr size_t kMaxDiagnosticsShown = 100;
inline constexpr size_t kMaxDiagnosticsBytes = 3u << 10;

// "2097152 bytes, more than the limit of 1 MiB (1048576 bytes)".
std::string SizeLimitMessage(size_t size, size_t limit);

struct ParsedObject {
  Object object;
  SourceLocation where;  // the start of the document the object came from
  // Fields accepted but not acted on ("file:line:col: field: ignored: ..."),
  // for the apply's output.
  std::vector<std::string> warnings;
};

// A document of a kind podless does not run, skipped on request
// (`apply --skip-unsupported`).
struct SkippedDocument {
  std::string api_version;
  std::string kind;
  std::string name;  // metadata.name when it has one
  SourceLocation where;
};

// Every problem with one object (names, labels, ranges, references between
// its own fields). Empty when the object is valid. `where` is left unknown.
std::vector<Diagnostic> Validate(const Object& object);
// The same for an object not (yet) held in an Object, without copying it
// into one (the API converts and validates each registered workload).
std::vector<Diagnostic> Validate(const Workload& workload);
std::vector<Diagnostic> Validate(const Service& service);
std::vector<Diagnostic> Validate(const AuthorizationPolicy& policy);
std::vector<Diagnostic> Validate(const Namespace& ns);
std::vector<Diagnostic> Validate(const ServiceAccount& account);
std::vector<Diagnostic> Validate(const PeerAuthentication& peer);
std::vector<Diagnostic> Validate(const WorkloadEntry& entry);

// Problems between the objects of one apply: the same kind, namespace and
// name declared twice. Reported at the later declaration.
std::vector<Diagnostic> ValidateBatch(const std::vector<ParsedObject>& objects);

// One Diagnostic::ToString() per line, in order: the text of an
// INVALID_ARGUMENT that the CLI prints and the API returns alike. At most
// `max_shown` lines and about `max_bytes` of text (always at least one line);
// a last line counts the rest: "... and 900 more errors".
std::string JoinDiagnostics(const std::vector<Diagnostic>& diagnostics,
                            size_t max_shown = kMaxDiagnosticsShown,
                            size_t max_bytes = kMaxDiagnosticsBytes);

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
