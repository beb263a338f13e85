// The agent's objects as Kubernetes API objects: one Item per object a
// resource holds (a Pod per replica, a Deployment per workload applied as
// one, ...), its JSON and its row of the server-side Table kubectl prints.
//
// The JSON of an object is what `podless get -o json` prints of it
// (api/output_format.h: the document as applied, with a status in the
// kind's shape), with metadata.namespace, creationTimestamp and uid filled
// in. Pure functions of the objects and the time, so they are tested
// without an agent.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "api/kube/resources.h"
#include "podless/v1/runtime.pb.h"

namespace podless::api::kube {

struct Item {
  std::string name;
  std::string ns;  // "" for a cluster-scoped object
  std::map<std::string, std::string> labels;
  int64_t created = 0;             // unix seconds; 0 when unknown
  uint64_t resource_version = 0;   // the agent's revision that wrote it
  std::string json;                // the object, one line
  std::vector<std::string> cells;  // one per Columns(resource) entry
};

struct Column {
  std::string name;    // "Name", "Ready": kubectl prints it upper-case
  std::string type;    // "string", "integer", "date"
  std::string format;  // "name" for the name column, else ""
  std::string description;
  int priority = 0;  // 1: only with -o wide
};

// The Table columns of `resource`, as the Kubernetes API server (or the CRD's
// printer columns, for Istio's kinds) defines them.
const std::vector<Column>& Columns(const Resource& resource);

// Chooses the items to render, by an item's name, namespace and labels,
// before the costly part (its JSON and cells) is made.
using ItemFilter = std::function<bool(const std::string& name, const std::string& ns,
                                      const std::map<std::string, std::string>& labels)>;

// The items of `resource` among `objects` (what the agent's List returned for
// resource.object_kind), in the order given; `now` is unix seconds. With
// `select`, only those it accepts; without `with_json`, items without their
// JSON (a Table needs only the cells and the metadata).
std::vector<Item> ItemsOf(const Resource& resource, const std::vector<v1::Object>& objects,
                          int64_t now, const ItemFilter& select = nullptr, bool with_json = true);

// The uid of an object: podless keeps none, so it is derived from the kind,
// namespace and name (stable, UUID-shaped; clients only compare uids).
std::string ObjectUid(std::string_view kind, const std::string& ns, const std::string& name);

// A time as the API server writes it (creationTimestamp, managedFields):
// RFC 3339 in UTC, whole seconds.
std::string Rfc3339(int64_t unix_seconds);

// kubectl's age: 45s, 3m12s, 25m, 2h5m, 5h, 3d4h, 12d, ...; "<unknown>" for 0.
std::string HumanAge(int64_t created, int64_t now);

// A <Kind>List of the items (what `kubectl get -o json` prints).
// A list's metadata: the agent's revision when listed and, for a chunk of a
// longer list (?limit=), the token of the next chunk and how many remain.
struct ListMeta {
  ListMeta(uint64_t resource_version = 0) : resource_version(resource_version) {}
  uint64_t resource_version = 0;
  std::string continue_token;
  uint64_t remaining = 0;
};

std::string ListJson(const Resource& resource, const std::vector<Item>& items,
                     const ListMeta& meta);
// A meta.k8s.io Table (`version` "v1" or "v1beta1") of the items, each row
// with its PartialObjectMetadata (kubectl's NAMESPACE and LABELS columns come
// from it).
std::string TableJson(const Resource& resource, std::string_view version,
                      const std::vector<Item>& items, const ListMeta& meta);

}  // namespace podless::api::kube
