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

TEST_CASE("HeapValue: unset reads as the default, and a default compares equal to unset") {
  ExecApp a;
  CHECK(a.sandbox.is_default());
  CHECK(a.sandbox->limits.memory_bytes == 0u);  // readable without a presence check
  CHECK_FALSE(a.sandbox->security_context.run_as_user.has_value());

  ExecApp b;
  b.sandbox.mutable_value().keep_working_dir = false;  // allocated, still the default
  CHECK(b.sandbox.is_default());
  CHECK(a == b);
  b.sandbox.mutable_value().keep_working_dir = true;
  CHECK_FALSE(b.sandbox.is_default());
  CHECK_FALSE(a == b);
}

TEST_CASE("HeapValue: a copy is deep; a move hands the value over") {
  ExecApp a;
  a.sandbox.mutable_value().security_context.run_as_user = 1000;
  ExecApp b = a;
  CHECK(b == a);
  CHECK(&*b.sandbox != &*a.sandbox);
  b.sandbox.mutable_value().security_context.run_as_user = 0;
  CHECK(a.sandbox->security_context.run_as_user == 1000u);

  const ExecSandbox* value = &*a.sandbox;
  ExecApp c = std::move(a);
  CHECK(&*c.sandbox == value);

  c.sandbox.reset();
  CHECK(c.sandbox.is_default());
  c.sandbox = ExecSandbox{};  // assigning the default allocates nothing
  CHECK(c.sandbox.is_default());
}

TEST_CASE("Workload: an exec app's sandbox is not stored inline") {
  // Most exec apps set none of it: unset must cost a pointer (see HeapValue).
  CHECK(sizeof(HeapValue<ExecSandbox>) == sizeof(void*));
}

TEST_CASE("Workload: an exec app's probe is not stored inline") {
  // Every stored Workload carries its AppSpec; an absent probe must cost a
  // pointer, not the size of a Probe (see HeapOptional).
  CHECK(sizeof(HeapOptional<Probe>) == sizeof(void*));
}

}  // namespace
}  // namespace podless::workloads
