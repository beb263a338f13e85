// What `podless get` and `podless describe` print, in kubectl's manner.
// Pure functions from API messages to text, so the CLI stays a thin layer
// and every format is testable without an agent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "podless/v1/runtime.pb.h"
#include "workloads/result.h"

namespace podless::api {

enum class OutputFormat { kTable, kWide, kYaml, kJson, kName };

// The value of `-o`: "" (table), "wide", "yaml", "json", "name". Anything
// else is INVALID_ARGUMENT naming the value and the accepted ones.
Result<OutputFormat> ParseOutputFormat(std::string_view name);

// A list as `podless get KIND` prints it.
//
// Tables (kTable, kWide): kubectl style, header upper-case, columns separated
// by at least 3 spaces, no trailing blanks, "<none>" for an empty cell. The
// NAMESPACE column appears only with `all_namespaces`, LABELS (k=v,...) last
// with `show_labels`. There is no AGE column: the agent keeps no creation time
// across restarts (replicas show one since the agent's start, FormatReplicas).
//   workloads: NAME READY (ready/desired) REPLICAS (desired) APP PORTS (8080/HTTP,...);
//              wide adds SERVICE-ACCOUNT ADDRESSES (first 3, then "+N more")
//              SPIFFE-ID NODE
//   services:  NAME VIP PORTS (80->http/TCP; 80/TCP when the target is the
//              same number) ENDPOINTS (count); wide adds SELECTOR
//   policies:  NAME ACTION SELECTOR ("<all>" when empty) RULES (count)
// Objects are printed in the order given. Objects of a kind other than `kind`
// (or any kind, with KIND_UNSPECIFIED) get a table of their own, one per
// kind, separated by a blank line. An empty list yields "": the caller prints
// kubectl's "No resources found" on stderr.
//
// kYaml: a `apiVersion: v1, kind: List, items: [...]` document (as kubectl
// does) whose items are what FormatObject prints. kJson: the same document
// in JSON (so it can be applied again, as the YAML). kName: `kind/name` a
// line (workload/web), as apply prints objects.
struct ListOptions {
  bool all_namespaces = false;  // a NAMESPACE column first
  bool show_labels = false;     // a LABELS column last (k=v,...)
  bool no_headers = false;      // no header row
};
std::string FormatList(const std::vector<v1::Object>& objects, v1::Kind kind, OutputFormat format,
                       const ListOptions& options);
std::string FormatList(const std::vector<v1::Object>& objects, v1::Kind kind, OutputFormat format,
                       bool all_namespaces);

// `podless get replicas` (alias pods): one row per replica of `workloads`,
// as kubectl lists pods: NAME READY (1/1 or 0/1) STATUS (the process's
// state and reason; Running for in-proxy apps) RESTARTS AGE ADDRESS NODE;
// wide adds WORKLOAD SPIFFE-ID. `now` is unix seconds. kName prints
// replica/NAME lines. kYaml and kJson are not offered (INVALID_ARGUMENT):
// a replica is not an object of its own.
Result<std::string> FormatReplicas(const std::vector<v1::Object>& workloads, OutputFormat format,
                                   const ListOptions& options, int64_t now);

// One object as `podless get KIND NAME` prints it.
// kTable/kWide: the one-row table of FormatList.
// kYaml: the canonical manifest (workloads::WriteManifest) followed by a
//   `status:` section when the object has one (workload replicas: name,
//   address, spiffeId, certificateSerial, certificateNotAfter in RFC 3339,
//   ready, node; service: vip, endpoints).
// kJson: the kYaml document in JSON (same keys, same order), which apply
//   accepts as well.
std::string FormatObject(const v1::Object& object, OutputFormat format);

// "workload", "service", "authorizationpolicy": how apply, delete and
// `-o name` name a kind (kind/name).
std::string KindWord(v1::Kind kind);

// The kind an Object holds (KIND_UNSPECIFIED when none), and its metadata.
v1::Kind KindOf(const v1::Object& object);
const v1::ObjectMeta& MetaOf(const v1::Object& object);

// `podless get nodes`: NAME ADDRESS CIDR WORKLOADS STATUS AGE (5s, 3m, 2h,
// 4d); wide adds HBONE-PORT. `now` is unix seconds. A footer line says when
// the answering node cannot reach etcd.
std::string NodesTable(const v1::ListNodesResponse& nodes, bool wide, int64_t now,
                       bool no_headers = false);

// `podless describe`: labelled lines (Name, Namespace, Labels, ...), the app
// with its details, ports, and for workloads a replica table (name, address,
// SPIFFE ID, certificate serial, expiry in RFC 3339, ready, node). Ends with
// a newline; the CLI separates several objects with a blank line.
std::string Describe(const v1::Object& object);

}  // namespace podless::api
