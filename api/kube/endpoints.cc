#include "api/kube/endpoints.h"

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

}  // namespace

std::vector<Item> EndpointsItems(const Resource& resource, const std::vector<v1::Object>& services,
                                 const std::vector<v1::Object>& workloads, int64_t now) {
  std::vector<Item> items;
  for (const v1::Object& object : services) {
    if (!object.has_service()) continue;
    const v1::Service& service = object.service();
    Item item;
    item.name = service.metadata().name();
    item.ns = NamespaceOf(service.metadata());
    item.labels = {service.metadata().labels().begin(), service.metadata().labels().end()};
    std::vector<Address> ready, not_ready;
    std::vector<std::pair<std::string, uint32_t>> ports;  // name, port
    for (const v1::Object& w : workloads) {
      if (!w.has_workload() || !Selects(service, w.workload())) continue;
      const v1::Workload& workload = w.workload();
      const bool is_pod =
          workload.metadata().has_applied_as() && workload.metadata().applied_as().kind() == "Pod";
      for (const v1::Replica& r : workload.status().replicas()) {
        if (r.address().empty()) continue;
        Address a{r.address(), r.node(), is_pod ? workload.metadata().name() : r.name(), item.ns};
        (r.ready() ? ready : not_ready).push_back(std::move(a));
      }
      if (ports.empty()) {
        for (const v1::ServicePort& port : service.spec().ports()) {
          if (const uint32_t target = TargetPort(port, workload); target != 0) {
            ports.emplace_back(port.name(), target);
          }
        }
      }
    }
    JsonWriter w;
    w.BeginObject();
    w.Key("kind").String("Endpoints");
    w.Key("apiVersion").String("v1");
    w.Key("metadata").BeginObject();
    w.Key("name").String(item.name);
    w.Key("namespace").String(item.ns);
    w.Key("uid").String(ObjectUid(resource.kind, item.ns, item.name));
    w.Key("resourceVersion").String("1");
    if (!item.labels.empty()) {
      w.Key("labels").BeginObject();
      for (const auto& [key, value] : item.labels) w.Key(key).String(value);
      w.EndObject();
    }
    w.EndObject();
    std::string cell;
    if (!ready.empty() || !not_ready.empty()) {
      w.Key("subsets").BeginArray().BeginObject();
      if (!ready.empty()) {
        w.Key("addresses");
        WriteAddresses(w, ready);
      }
      if (!not_ready.empty()) {
        w.Key("notReadyAddresses");
        WriteAddresses(w, not_ready);
      }
      w.Key("ports").BeginArray();
      for (const auto& [name, port] : ports) {
        w.BeginObject();
        if (!name.empty()) w.Key("name").String(name);
        w.Key("port").Int(port).Key("protocol").String("TCP");
        w.EndObject();
      }
      w.EndArray();
      w.EndObject().EndArray();
      // kubectl's ENDPOINTS column: the ready addresses with the first port.
      for (const Address& a : ready) {
        if (!cell.empty()) cell += ',';
        cell += a.ip + (ports.empty() ? "" : ":" + std::to_string(ports.front().second));
      }
    }
    w.EndObject();
    item.json = w.Take();
    item.cells = {item.name, cell.empty() ? "<none>" : cell, HumanAge(item.created, now)};
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace podless::api::kube
