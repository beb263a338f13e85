"""The agent under memory pressure, through the real binary (issue 8).

1. Admission control: applies and RegisterBatch calls over --max-objects,
   --max-replicas or --max-apply-objects are refused with RESOURCE_EXHAUSTED
   and a message naming the limit and the numbers; nothing changes (get, the
   addresses, and a restart show the acknowledged objects only), and a change
   within the limits still works, taking the next address (none leaked).
2. Out of memory: the running agent gets an address-space limit (RLIMIT_AS,
   set with prlimit on its pid) a few MiB above what it maps, so that an
   apply of three workloads of `replicas: 1000000` and a RegisterBatch of 90,000 workloads (both
   within every cap) cannot fit. Each call is answered RESOURCE_EXHAUSTED
   naming memory and counted; the agent keeps serving (/ready, traffic of an
   existing workload through the outbound entry, small applies and
   registrations); a restart shows exactly the acknowledged objects.

Skipped (exit 77) when the binary is built with a sanitizer: ASan reserves
terabytes of address space, so RLIMIT_AS cannot be used."""

import json
import os
import re
import resource
import subprocess
import sys

from harness import PODLESS, Agent, check, fail, grpc_stubs

# Room above the agent's mapped size: enough for small calls and the 4 MB
# RegisterBatch message, far below what the large calls need (about 70 MB for
# the 3 x 1,000,000 replicas of the apply, 140 MB for the batch, measured without
# a limit; a million replicas fit in the headroom since they are indexed as
# address runs).
HEADROOM_MIB = int(os.environ.get("PODLESS_MEMORY_HEADROOM_MIB", "24"))


def sanitizer_reason():
    try:
        nm = subprocess.run(["nm", "-D", PODLESS], capture_output=True, text=True)
    except FileNotFoundError:  # no binutils: the agent's maps are checked once it runs
        return None
    for symbol in ("__asan_init", "__tsan_init", "__msan_init"):
        if symbol in nm.stdout:
            return f"{PODLESS} is built with a sanitizer ({symbol}): RLIMIT_AS cannot apply"
    return None


def mapped_sanitizer(pid):
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    return any(lib in maps for lib in ("libasan", "libtsan", "libmsan"))


reason = sanitizer_reason()
if reason:
    print(f"SKIP: {reason}")
    sys.exit(77)

grpc_stubs()

import grpc  # noqa: E402
from podless.v1 import runtime_pb2 as pb  # noqa: E402
from podless.v1 import runtime_pb2_grpc as rpc  # noqa: E402


def manifest(*objects):
    docs = []
    for kind, name, replicas in objects:
        if kind == "Service":
            docs.append(f"""apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {{name: {name}, namespace: mem}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
""")
        else:
            docs.append(f"""apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: mem, labels: {{app: {name}}}}}
spec:
  replicas: {replicas}
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  app: {{echo: {{}}}}
""")
    return "---\n".join(docs)


def batch(names, replicas=1):
    request = pb.RegisterBatchRequest()
    for name in names:
        w = request.workloads.add()
        w.metadata.name = name
        w.metadata.namespace = "mem"
        w.metadata.labels["app"] = name
        w.spec.replicas.value = replicas
        w.spec.app.echo.SetInParent()
    return request


def objects(agent):
    """Every object in namespace mem: {kind/name: addresses}."""
    out = {}
    for kind in ("workloads", "services"):
        for item in json.loads(agent.cli("get", kind, "-n", "mem", "-o", "json").stdout)["items"]:
            obj = item
            status = obj.get("status", {})
            addresses = [rep["address"] for rep in status.get("replicas", [])]
            if "vip" in status:
                addresses = [status["vip"]]
            out[f"{kind}/{obj['metadata']['name']}"] = addresses
    return out


def refused(result, *words):
    """A CLI call that failed, its message naming `words`."""
    text = result.stderr + result.stdout
    check(result.returncode != 0, f"accepted over a limit: {text}")
    for word in words:
        check(word in text, f"the refusal does not name {word!r}: {text.strip()}")
    return text


def grpc_refused(call, *words):
    """A gRPC call refused with RESOURCE_EXHAUSTED, its message naming `words`."""
    try:
        response = call()
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f"wrong code {e.code()}: {e.details()}")
        for word in words:
            check(word in (e.details() or ""), f"the refusal does not name {word!r}: {e.details()}")
        return e.details()
    fail(f"accepted over a limit: {response}")


def api_count(agent, method, code):
    status, text = agent.http("/metrics")
    check(status == 200, f"/metrics answered {status}")
    m = re.search(r'^podless_api_requests_total\{[^}]*method="%s"[^}]*code="%s"[^}]*\} (\S+)$'
                  % (method, code), text, re.M)
    return float(m.group(1)) if m else 0.0


# 1. Admission control.
limits = ["--max-objects", "4", "--max-replicas", "6", "--max-apply-objects", "3"]
agent = Agent(extra_args=limits)
try:
    agent.start()
    channel = grpc.insecure_channel("unix:" + agent.socket)
    api = rpc.RuntimeStub(channel)
    agent.cli("apply", "-f", "-", input=manifest(("Workload", "a", 2), ("Workload", "b", 2)))
    before = objects(agent)
    check(set(before) == {"workloads/a", "workloads/b"}, f"unexpected objects: {before}")

    refused(agent.cli("apply", "-f", "-", input=manifest(("Workload", "c", 3)), expect_ok=False),
            "--max-replicas=6", "would hold 7", "holds 4", "adds 3")
    refused(agent.cli("apply", "-f", "-", input=manifest(("Workload", "a", 5)), expect_ok=False),
            "--max-replicas=6", "adds 3")
    refused(agent.cli("apply", "-f", "-", expect_ok=False, input=manifest(
        ("Workload", "c", 0), ("Workload", "d", 0), ("Service", "s", 0))),
        "--max-objects=4", "would hold 5", "holds 2", "adds 3")
    refused(agent.cli("apply", "-f", "-", expect_ok=False, input=manifest(
        ("Workload", "c", 0), ("Workload", "d", 0), ("Workload", "e", 0), ("Workload", "f", 0))),
        "--max-apply-objects=3", "4 objects")
    refused(agent.cli("apply", "--dry-run", "-f", "-", input=manifest(("Workload", "c", 3)),
                      expect_ok=False), "--max-replicas=6")
    grpc_refused(lambda: api.RegisterBatch(batch(["c", "d", "e", "f"], 0), timeout=30),
                 "--max-apply-objects=3", "RegisterBatch of 4 workloads")
    grpc_refused(lambda: api.RegisterBatch(batch(["c", "d"], 2), timeout=30),
                 "--max-replicas=6", "would hold 8")
    grpc_refused(lambda: api.RegisterBatch(batch(["c", "d", "e"], 0), timeout=30),
                 "--max-objects=4", "would hold 5")
    w = batch(["c"], 3).workloads[0]
    grpc_refused(lambda: api.Register(pb.RegisterRequest(workload=w), timeout=30),
                 "--max-replicas=6")
    check(api_count(agent, "Apply", "RESOURCE_EXHAUSTED") >= 5,
          "refused applies are not counted as RESOURCE_EXHAUSTED")
    check(objects(agent) == before, f"a refused change changed something: {objects(agent)}")

    agent.stop()
    agent.start()
    check(objects(agent) == before, f"after a restart: {objects(agent)} != {before}")
    # Within the limits it works, and the refused calls took no address:
    # next-fit hands out the one after the last acknowledged.
    agent.cli("apply", "-f", "-", input=manifest(("Workload", "a", 2), ("Workload", "b", 4)))
    after = objects(agent)["workloads/b"]
    last = max(before["workloads/a"] + before["workloads/b"],
               key=lambda ip: tuple(int(x) for x in ip.split(".")))
    expected = ".".join(last.split(".")[:3] + [str(int(last.split(".")[3]) + 1)])
    check(after[2] == expected, f"an address was taken by a refused call: {after} after {last}")
    channel.close()
    print("memory_pressure: admission control ok")
finally:
    agent.stop()
    agent.cleanup()

# 2. Out of memory.
BIG = manifest(("Workload", "big", 1000000), ("Workload", "big2", 1000000),
               ("Workload", "big3", 1000000))
agent = Agent()
try:
    agent.start()
    pid = agent.proc.pid
    if mapped_sanitizer(pid):
        print("SKIP: the agent maps a sanitizer runtime: RLIMIT_AS cannot apply")
        sys.exit(77)
    channel = grpc.insecure_channel("unix:" + agent.socket)
    api = rpc.RuntimeStub(channel)
    agent.cli("apply", "-f", "-", input=manifest(("Workload", "keep", 1), ("Service", "keep", 0)))
    proxy = dict(line.split("=", 1) for line in
                 agent.cli("credentials", "keep-0", "-n", "mem").stdout.split())["HTTP_PROXY"]
    keep = objects(agent)["workloads/keep"][0]

    def traffic():
        r = subprocess.run(["curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w",
                            "%{http_code}", "--proxy", proxy, f"http://{keep}:8080/"],
                           capture_output=True, text=True)
        return r.stdout.strip()

    check(traffic() == "200", "no traffic to keep-0 before the limit")
    acknowledged = objects(agent)
    big_batch = batch([f"b{i}" for i in range(90000)])

    with open(f"/proc/{pid}/status") as f:
        vm_kib = int(re.search(r"^VmSize:\s+(\d+)", f.read(), re.M).group(1))
    limit = (vm_kib + HEADROOM_MIB * 1024) * 1024
    resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
    print(f"memory_pressure: agent maps {vm_kib >> 10} MiB, RLIMIT_AS {limit >> 20} MiB")

    r = agent.cli("apply", "-f", "-", input=BIG, expect_ok=False)
    text = refused(r, "out of memory", "nothing was changed")
    print(f"memory_pressure: 3 x replicas: 1000000 -> {text.strip()}")
    check(agent.proc.poll() is None, f"the agent died:\n{agent.log()[-3000:]}")
    details = grpc_refused(lambda: api.RegisterBatch(big_batch, timeout=120), "out of memory")
    print(f"memory_pressure: RegisterBatch of 90000 -> {details}")
    check(agent.proc.poll() is None, f"the agent died:\n{agent.log()[-3000:]}")
    # A request larger than the headroom (under the 64 MiB message limit):
    # the receive buffer itself cannot grow. Sent as raw bytes, so it fails
    # while being received, before any decoding.
    raw_apply = channel.unary_unary("/podless.v1.Runtime/Apply",
                                    request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
    details = grpc_refused(lambda: raw_apply(b"\x0a" * (40 << 20), timeout=120),
                           "out of memory receiving")
    print(f"memory_pressure: a 40 MiB request -> {details}")
    check(agent.proc.poll() is None, f"the agent died:\n{agent.log()[-3000:]}")
    check(api_count(agent, "Apply", "RESOURCE_EXHAUSTED") >= 1, "the refused apply is not counted")
    check(api_count(agent, "RegisterBatch", "RESOURCE_EXHAUSTED") >= 1,
          "the refused RegisterBatch is not counted")

    # Still serving, still under the limit.
    check(agent.http("/ready")[0] == 200, "/ready is not 200 after running out of memory")
    check(traffic() == "200", "keep-0 is not reachable after running out of memory")
    check(objects(agent) == acknowledged, f"a refused call changed something: {objects(agent)}")
    agent.cli("apply", "-f", "-", input=manifest(("Workload", "small", 2)))
    check(api.RegisterBatch(batch([f"r{i}" for i in range(10)]), timeout=30).registered == 10,
          "a small RegisterBatch failed after running out of memory")
    acknowledged = objects(agent)
    check("workloads/small" in acknowledged and "workloads/r9" in acknowledged,
          f"small changes are missing: {sorted(acknowledged)}")
    check(agent.proc.poll() is None, "the agent died")
    channel.close()

    # A restart (without the limit) shows exactly what was acknowledged.
    agent.stop()
    agent.start()
    check(objects(agent) == acknowledged,
          f"after a restart: extra {set(objects(agent)) - set(acknowledged)}, "
          f"missing {set(acknowledged) - set(objects(agent))}")
    print("memory_pressure: ok")
finally:
    agent.stop()
    agent.cleanup()
