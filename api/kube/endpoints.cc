#include "api/kube/endpoints.h"

#include <algorithm>
#include <string>
#include <utility>

#include "proxy/base/json.h"

namespace podless::api::kube {
namespace {

using proxy::JsonWriter;

std::string NamespaceOf(const v1::ObjectMeta& meta) {
  return meta.namespace_().empty() ? "default" : meta.namespace_();
}

// A Service without a selector has no endpoints podless could know of, as in
// Kubernetes (where its Endpoints are written by hand).
bool Selects(const v1::Service& service, const v1::Workload& workload) {
  if (service.spec().selector().empty()) return false;
  if (NamespaceOf(service.metadata()) != NamespaceOf(workload.metadata())) return false;
  for (const auto& [key, value] : service.spec().selector()) {
    auto it = workload.metadata().labels().find(key);
    if (it == workload.metadata().labels().end() || it->second != value) return false;
  }
  return true;
}

// The replicas' port a Service port goes to: its target port's number, or
// the number of the workload's port of that name (0: the workload has none).
uint32_t TargetPort(const v1::ServicePort& port, const v1::Workload& workload) {
  if (port.target_port().has_number() && port.target_port().number() != 0) {
    return port.target_port().number();
  }
  if (port.target_port().has_name() && !port.target_port().name().empty()) {
    for (const v1::Port& p : workload.spec().ports()) {
      if (p.name() == port.target_port().name()) return p.port();
    }
    return 0;
  }
  return port.port();
}

struct Address {
  std::string ip;
  std::string node;
  std::string pod;
  std::string ns;
};

void WriteAddresses(JsonWriter& w, const std::vector<Address>& addresses) {
  w.BeginArray();
  for (const Address& a : addresses) {
    w.BeginObject();
    w.Key("ip").String(a.ip);
    if (!a.node.empty()) w.Key("nodeName").String(a.node);
    w.Key("targetRef").BeginObject();
    w.Key("kind").String("Pod").Key("namespace").String(a.ns).Key("name").String(a.pod);
    w.Key("uid").String(ObjectUid("Pod", a.ns, a.pod));
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
}

// What the endpoints controllers would find for a Service.
struct ServiceEndpoints {
  std::vector<Address> ready, not_ready;
  std::vector<std::pair<std::string, uint32_t>> ports;  // name, the replicas' port
  // The latest revision of the Service and the workloads it selects: the
  // endpoints change with any of them.
  uint64_t resource_version = 0;
};

ServiceEndpoints Find(const v1::Service& service, const std::vector<v1::Object>& workloads) {
  ServiceEndpoints found;
  found.resource_version = service.metadata().resource_version();
  const std::string ns = NamespaceOf(service.metadata());
  for (const v1::Object& w : workloads) {
    if (!w.has_workload() || !Selects(service, w.workload())) continue;
    const v1::Workload& workload = w.workload();
    found.resource_version =
        std::max<uint64_t>(found.resource_version, workload.metadata().resource_version());
    const bool is_pod =
        workload.metadata().has_applied_as() && workload.metadata().applied_as().kind() == "Pod";
    for (const v1::Replica& r : workload.status().replicas()) {
      if (r.address().empty()) continue;
      Address a{r.address(), r.node(), is_pod ? workload.metadata().name() : r.name(), ns};
      (r.ready() ? found.ready : found.not_ready).push_back(std::move(a));
    }
    if (found.ports.empty()) {
      for (const v1::ServicePort& port : service.spec().ports()) {
        if (const uint32_t target = TargetPort(port, workload); target != 0) {
          found.ports.emplace_back(port.name(), target);
        }
      }
    }
  }
  return found;
}

void WritePorts(JsonWriter& w, const ServiceEndpoints& found) {
  w.BeginArray();
  for (const auto& [name, port] : found.ports) {
    w.BeginObject();
    if (!name.empty()) w.Key("name").String(name);
    w.Key("port").Int(port).Key("protocol").String("TCP");
    w.EndObject();
  }
  w.EndArray();
}

// kubectl's ENDPOINTS column: the ready addresses with the first port.
std::string EndpointsCell(const ServiceEndpoints& found) {
  std::string cell;
  for (const Address& a : found.ready) {
    if (!cell.empty()) cell += ',';
    cell += a.ip + (found.ports.empty() ? "" : ":" + std::to_string(found.ports.front().second));
  }
  return cell.empty() ? "<none>" : cell;
}

void WriteMetadata(JsonWriter& w, const Resource& resource, const Item& item) {
  w.Key("metadata").BeginObject();
  w.Key("name").String(item.name);
  w.Key("namespace").String(item.ns);
  w.Key("uid").String(ObjectUid(resource.kind, item.ns, item.name));
  w.Key("resourceVersion").String(std::to_string(item.resource_version));
  if (!item.labels.empty()) {
    w.Key("labels").BeginObject();
    for (const auto& [key, value] : item.labels) w.Key(key).String(value);
    w.EndObject();
  }
}

Item EndpointsItem(const Resource& resource, const v1::Service& service,
                   const ServiceEndpoints& found, int64_t now) {
  Item item;
  item.name = service.metadata().name();
  item.ns = NamespaceOf(service.metadata());
  item.labels = {service.metadata().labels().begin(), service.metadata().labels().end()};
  item.resource_version = found.resource_version;
  JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("Endpoints");
  w.Key("apiVersion").String("v1");
  WriteMetadata(w, resource, item);
  w.EndObject();
  if (!found.ready.empty() || !found.not_ready.empty()) {
    w.Key("subsets").BeginArray().BeginObject();
    if (!found.ready.empty()) {
      w.Key("addresses");
      WriteAddresses(w, found.ready);
    }
    if (!found.not_ready.empty()) {
      w.Key("notReadyAddresses");
      WriteAddresses(w, found.not_ready);
    }
    w.Key("ports");
    WritePorts(w, found);
    w.EndObject().EndArray();
  }
  w.EndObject();
  item.json = w.Take();
  item.cells = {item.name, EndpointsCell(found), HumanAge(item.created, now)};
  return item;
}

// One EndpointSlice per Service, labeled with the Service's name as the
// endpointslice controller labels them (kubectl describe selects by it).
Item EndpointSliceItem(const Resource& resource, const v1::Service& service,
                       const ServiceEndpoints& found, int64_t now) {
  Item item;
  item.ns = NamespaceOf(service.metadata());
  const std::string service_uid = ObjectUid("Service", item.ns, service.metadata().name());
  // The controller's names are the Service's with a random suffix; this one
  // is derived from the Service's uid, so it is stable.
  item.name = service.metadata().name() + "-" + service_uid.substr(0, 5);
  item.resource_version = found.resource_version;
  item.labels = {{"kubernetes.io/service-name", service.metadata().name()},
                 {"endpointslice.kubernetes.io/managed-by", "podless"}};
  JsonWriter w;
  w.BeginObject();
  w.Key("kind").String("EndpointSlice");
  w.Key("apiVersion").String("discovery.k8s.io/v1");
  WriteMetadata(w, resource, item);
  w.Key("ownerReferences").BeginArray().BeginObject();
  w.Key("apiVersion").String("v1").Key("kind").String("Service");
  w.Key("name").String(service.metadata().name()).Key("uid").String(service_uid);
  w.Key("controller").Bool(true).Key("blockOwnerDeletion").Bool(true);
  w.EndObject().EndArray();
  w.EndObject();
  w.Key("addressType").String("IPv4");
  w.Key("endpoints").BeginArray();
  for (const std::vector<Address>* list : {&found.ready, &found.not_ready}) {
    const bool ready = list == &found.ready;
    for (const Address& a : *list) {
      w.BeginObject();
      w.Key("addresses").BeginArray().String(a.ip).EndArray();
      w.Key("conditions").BeginObject();
      w.Key("ready").Bool(ready).Key("serving").Bool(ready).Key("terminating").Bool(false);
      w.EndObject();
      if (!a.node.empty()) w.Key("nodeName").String(a.node);
      w.Key("targetRef").BeginObject();
      w.Key("kind").String("Pod").Key("namespace").String(a.ns).Key("name").String(a.pod);
      w.Key("uid").String(ObjectUid("Pod", a.ns, a.pod));
      w.EndObject();
      w.EndObject();
    }
  }
  w.EndArray();
  w.Key("ports");
  WritePorts(w, found);
  w.EndObject();
  item.json = w.Take();
  std::string ports;
  for (const auto& [name, port] : found.ports) {
    ports += (ports.empty() ? "" : ",") + std::to_string(port);
  }
  std::string addresses;
  for (const std::vector<Address>* list : {&found.ready, &found.not_ready}) {
    for (const Address& a : *list) addresses += (addresses.empty() ? "" : ",") + a.ip;
  }
  item.cells = {item.name, "IPv4", ports.empty() ? "<unset>" : ports,
                addresses.empty() ? "<unset>" : addresses, HumanAge(item.created, now)};
  return item;
}

}  // namespace

std::vector<Item> EndpointsItems(const Resource& resource, const std::vector<v1::Object>& services,
                                 const std::vector<v1::Object>& workloads, int64_t now) {
  std::vector<Item> items;
  for (const v1::Object& object : services) {
    if (!object.has_service()) continue;
    const ServiceEndpoints found = Find(object.service(), workloads);
    items.push_back(resource.source == Source::kEndpointSlices
                        ? EndpointSliceItem(resource, object.service(), found, now)
                        : EndpointsItem(resource, object.service(), found, now));
  }
  return items;
}

}  // namespace podless::api::kube
