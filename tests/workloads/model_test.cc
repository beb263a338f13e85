#include "workloads/model.h"

#include <doctest.h>

#include <string>
#include <utility>

namespace podless::workloads {
namespace {

Probe HttpProbe(const std::string& path) {
  Probe probe;
  probe.kind = Probe::Kind::kHttpGet;
  probe.port.name = "http";
  probe.path = path;
  return probe;
}

TEST_CASE("HeapOptional: a copy is deep, and copies compare by value") {
  ExecApp a;
  a.command = {"server"};
  CHECK_FALSE(a.readiness_probe);
  a.readiness_probe = HttpProbe("/healthz");

  ExecApp b = a;
  REQUIRE(b.readiness_probe.has_value());
  CHECK(&*b.readiness_probe != &*a.readiness_probe);
  CHECK(b == a);
  b.readiness_probe->path = "/ready";
  CHECK(a.readiness_probe->path == "/healthz");
  CHECK_FALSE(b == a);

  b = a;  // copy assignment: equal again, still separate
  CHECK(b == a);
  CHECK(&*b.readiness_probe != &*a.readiness_probe);

  b.readiness_probe.reset();
  CHECK_FALSE(b.readiness_probe);
  CHECK_FALSE(b == a);
  ExecApp none;
  none.command = {"server"};
  CHECK(b == none);  // two absent probes are equal
}

TEST_CASE("HeapOptional: a move hands the probe over without copying it") {
  ExecApp a;
  a.readiness_probe = HttpProbe("/healthz");
  const Probe* probe = &*a.readiness_probe;
  ExecApp b = std::move(a);
  REQUIRE(b.readiness_probe);
  CHECK(&*b.readiness_probe == probe);  // moved, not copied
  CHECK(b.readiness_probe->path == "/healthz");
}

TEST_CASE("Workload: an exec app's probe is not stored inline") {
  // Every stored Workload carries its AppSpec; an absent probe must cost a
  // pointer, not the size of a Probe (see HeapOptional).
  CHECK(sizeof(HeapOptional<Probe>) == sizeof(void*));
}

}  // namespace
}  // namespace podless::workloads
