// What a connection to a Service costs the proxy at density: resolving a
// Service that selects one workload of N replicas (N = 1,000,000; smoke:
// 10,000) and drawing an endpoint, as the outbound entry does per
// connection. Baseline in the same run: the same resolution followed by
// building every endpoint, which is what a listed Destination costs (how
// resolution worked before the indexed EndpointSet).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/node/proxy_directory.h"
#include "tests/bench/bench_util.h"
#include "tests/testing/temp_dir.h"

namespace podless::bench {
namespace {

int Main() {
  const uint32_t replicas = Smoke() ? 10'000 : 1'000'000;
  const testing::TempDir temp_dir("podless-bench-resolve");
  const std::string& dir = temp_dir.path();
  {
    runtime::AgentConfig config;
    config.state_dir = dir;
    config.node_name = "bench";
    config.limits.max_apply_objects = 0;  // a million objects in one apply
    config.limits.max_objects = 0;
    config.limits.max_replicas = 0;
    auto opened = runtime::Agent::Open(config);
    Require(opened.ok(), "cannot open the agent");
    runtime::AgentPtr agent = std::move(opened.value());
    workloads::Workload workload;
    workload.metadata.name = "web";
    workload.metadata.labels = {{"app", "web"}};
    workload.spec.replicas = replicas;
    workload.spec.service_account = "web";
    workload.spec.app = workloads::EchoApp{};
    workloads::Service service;
    service.metadata.name = "web";
    service.selector = {{"app", "web"}};
    service.ports = {{"http", 80, {8080, ""}, workloads::Protocol::kTCP}};
    Require(agent->Apply({workload, service}, false).ok(), "apply failed");
    runtime::ProxyDirectory directory(*agent, 15008);

    const int indexed_runs = Smoke() ? 100 : 2000, listed_runs = Smoke() ? 3 : 5;
    double start = Now();
    for (int i = 0; i < indexed_runs; ++i) {
      auto destination = directory.Resolve("web.default.svc", 80);
      Require(destination.ok() && destination->endpoint_count() == replicas, "resolve failed");
      Require(destination->endpoint(i % replicas).port == 8080, "wrong endpoint");
    }
    const double indexed_us = (Now() - start) / indexed_runs * 1e6;
    start = Now();
    for (int i = 0; i < listed_runs; ++i) {
      auto destination = directory.Resolve("web.default.svc", 80);
      Require(destination.ok(), "resolve failed");
      std::vector<proxy::Endpoint> all;
      all.reserve(destination->endpoint_count());
      for (size_t k = 0; k < destination->endpoint_count(); ++k) {
        all.push_back(destination->endpoint(k));
      }
    }
    const double listed_us = (Now() - start) / listed_runs * 1e6;
    std::printf(
        "bench service_resolve replicas=%u indexed_us_per_connection=%.2f "
        "listed_us_per_connection=%.0f ratio=%.6f\n",
        replicas, indexed_us, listed_us, indexed_us / listed_us);
    std::fflush(stdout);
    Require(Sane(indexed_us) && Sane(listed_us), "implausible figures");

    // A namespace of many Workload objects (as RegisterBatch makes), of
    // which the Service selects one: the selection is kept between
    // connections; the first connection after a change looks the selector's
    // labels up (LabelIndex). Baseline: the namespace scan that selection
    // was before the index, timed in the same run.
    const uint32_t objects = Smoke() ? 1'000 : 1'000'000;
    std::vector<workloads::Object> others;
    for (uint32_t i = 0; i < objects; ++i) {
      workloads::Workload other = workload;
      other.metadata.name = "other-" + std::to_string(i);
      other.metadata.labels = {{"app", "other"}};
      other.spec.replicas = 1;
      others.push_back(std::move(other));
    }
    Require(agent->Apply(std::move(others), false).ok(), "apply of the others failed");
    // The first connection after a change, several changes: the median.
    std::vector<double> firsts;
    for (int i = 0; i < 9; ++i) {
      directory.Invalidate();
      start = Now();
      Require(directory.Resolve("web.default.svc", 80).ok(), "resolve failed");
      firsts.push_back((Now() - start) * 1e6);
    }
    std::sort(firsts.begin(), firsts.end());
    const double first_us = firsts[firsts.size() / 2];
    std::vector<double> scans;
    const workloads::Labels selector = {{"app", "web"}};
    for (int i = 0; i < 3; ++i) {
      start = Now();
      size_t selected = 0;
      for (const runtime::StoredObject* stored :
           agent->List(workloads::Kind::kWorkload, "default")) {
        const auto& candidate = std::get<workloads::Workload>(stored->object);
        if (workloads::LabelsMatch(selector, candidate.metadata.labels)) ++selected;
      }
      scans.push_back((Now() - start) * 1e6);
      Require(selected == 1, "the scan selected the wrong workloads");
    }
    std::sort(scans.begin(), scans.end());
    const double scan_us = scans[1];
    start = Now();
    for (int i = 0; i < indexed_runs; ++i) {
      Require(directory.Resolve("web.default.svc", 80).ok(), "resolve failed");
    }
    const double kept_us = (Now() - start) / indexed_runs * 1e6;
    std::printf(
        "bench service_resolve_objects workloads_in_namespace=%u kept_selection_us=%.2f "
        "first_after_change_us=%.2f namespace_scan_us=%.0f first/scan=%.6f\n",
        objects + 1, kept_us, first_us, scan_us, first_us / scan_us);
    Require(Sane(kept_us) && Sane(first_us) && Sane(scan_us), "implausible figures");
  }
  return 0;
}

}  // namespace
}  // namespace podless::bench

int main() { return podless::bench::Main(); }
