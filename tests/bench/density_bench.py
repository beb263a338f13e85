"""Density of the real agent: start `podless run` (PODLESS_BIN), read its RSS
from /proc/PID/status with 0 workloads (the baseline, same run), then

1. apply one manifest `replicas: N` through the CLI: time until it returns
   (persisted), RSS after, bytes per idle workload (replica);
2. register N distinct one-replica Workloads through the gRPC API with
   RegisterBatch (stock python3-grpcio stubs generated from the .proto, as
   tests/e2e/grpc_stock_client.py does), in batches of 10,000: workloads/s
   (and how much of the call time is the client encoding its requests),
   RSS after, bytes per registered workload; batches stop once
   PODLESS_BENCH_REGISTER_BUDGET seconds (default 120) are spent, and the
   figures say how many were registered;
3. restart the agent with everything persisted: time until /ready, RSS after.

Usage: density_bench.py [N ...]   (default 1000 with PODLESS_BENCH_SMOKE=1,
else 1000000). Several N show the trend. A run stops early (and says so)
when a step exceeds PODLESS_BENCH_STEP_TIMEOUT seconds (default 900) or the
agent's RSS passes PODLESS_BENCH_MAX_RSS_MB (default 8192).
"""

import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import PODLESS, Agent, check, fail, grpc_stubs, rss_kib  # noqa: E402

SMOKE = os.environ.get("PODLESS_BENCH_SMOKE", "") not in ("", "0")
STEP_TIMEOUT = float(os.environ.get("PODLESS_BENCH_STEP_TIMEOUT", "900"))
MAX_RSS = int(os.environ.get("PODLESS_BENCH_MAX_RSS_MB", "8192")) << 20
BATCH = int(os.environ.get("PODLESS_BENCH_BATCH", "10000"))
# Wall-clock budget for the RegisterBatch step; batches stop once it is spent.
REGISTER_BUDGET = float(os.environ.get("PODLESS_BENCH_REGISTER_BUDGET", "120"))

grpc_stubs()

import grpc  # noqa: E402
from podless.v1 import runtime_pb2 as pb  # noqa: E402
from podless.v1 import runtime_pb2_grpc as rpc  # noqa: E402


def rss(pid):
    """Resident memory of a process, bytes."""
    return rss_kib(pid) * 1024


def settled_rss(pid):
    """RSS once it stops moving (the agent may still be finishing work)."""
    last = rss(pid)
    for _ in range(20):
        time.sleep(0.1)
        now = rss(pid)
        if abs(now - last) < 64 << 10:
            return now
        last = now
    return last


class RssWatch:
    """Samples the agent's RSS; peak, and whether it passed MAX_RSS."""

    def __init__(self, pid):
        self.pid, self.peak, self.over, self.stop = pid, 0, False, False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                self.peak = max(self.peak, rss(self.pid))
            except OSError:
                return
            if self.peak > MAX_RSS:
                self.over = True
                os.kill(self.pid, 9)
                return
            time.sleep(0.05)

    def end(self):
        self.stop = True
        self.thread.join()


def manifest(n):
    return f"""apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: dense, namespace: bench, labels: {{app: dense}}}}
spec:
  replicas: {n}
  serviceAccount: dense
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  app: {{echo: {{}}}}
"""


def batches(n):
    """RegisterBatch requests of BATCH distinct one-replica workloads each,
    built one at a time (outside the timed RPC)."""
    for start in range(0, n, BATCH):
        req = pb.RegisterBatchRequest()
        for i in range(start, min(n, start + BATCH)):
            w = req.workloads.add()
            w.metadata.name = f"w{i}"
            w.metadata.namespace = "reg"
            w.metadata.labels["app"] = f"g{i % 100}"
            w.spec.replicas.value = 1
            w.spec.service_account = "reg"
            p = w.spec.ports.add()
            p.name, p.port, p.protocol = "http", 8080, pb.HTTP
            w.spec.app.echo.SetInParent()
        yield req


def kib(b):
    return b / 1024


def run(n):
    figures = {"n": n}
    state = tempfile.mkdtemp(prefix="podless-bench-density-")
    agent = Agent(state_dir=state)
    agent.owns_dir = True
    try:
        agent.start()
        pid = agent.proc.pid
        base = settled_rss(pid)
        figures["rss_0_workloads_MiB"] = base / 2**20

        # 1. apply replicas: N
        path = os.path.join(state, "dense.yaml")
        with open(path, "w") as f:
            f.write(manifest(n))
        watch = RssWatch(pid)
        t0 = time.time()
        r = subprocess.run([PODLESS, "--socket", agent.socket, "apply", "-f", path],
                           capture_output=True, text=True, timeout=STEP_TIMEOUT)
        apply_s = time.time() - t0
        watch.end()
        check(not watch.over, f"agent RSS passed {MAX_RSS >> 20} MiB applying replicas: {n}")
        check(r.returncode == 0, f"apply replicas: {n} failed: {r.stdout}{r.stderr}")
        after_apply = settled_rss(pid)
        figures["apply_s"] = apply_s
        figures["apply_workloads_per_s"] = n / apply_s
        figures["rss_after_apply_MiB"] = after_apply / 2**20
        figures["bytes_per_replica"] = (after_apply - base) / n
        figures["peak_rss_apply_MiB"] = watch.peak / 2**20

        # 2. RegisterBatch N distinct workloads
        channel = grpc.insecure_channel(
            "unix:" + agent.socket,
            options=[("grpc.max_send_message_length", 256 << 20),
                     ("grpc.max_receive_message_length", 256 << 20)])
        api = rpc.RuntimeStub(channel)
        watch = RssWatch(pid)
        t0 = time.time()
        registered = 0
        register_s = 0.0  # time inside RegisterBatch calls only
        # The client's share of it: the stub encodes each request inside the
        # call; encoding it once more outside the timed call shows how long
        # that takes (this client's cost, not the agent's).
        encode_s = 0.0
        for req in batches(n):
            # Past the budget, stop and report how far it got (a shortfall,
            # not a failure: the rate is the figure).
            if time.time() - t0 > REGISTER_BUDGET:
                break
            t_encode = time.time()
            req.SerializeToString()
            encode_s += time.time() - t_encode
            try:
                t_call = time.time()
                resp = api.RegisterBatch(req, timeout=STEP_TIMEOUT)
                register_s += time.time() - t_call
            except grpc.RpcError as e:
                fail(f"RegisterBatch failed after {registered} workloads: {e.code()} {e.details()}")
            check(resp.registered == len(req.workloads),
                  f"RegisterBatch registered {resp.registered} of {len(req.workloads)}")
            registered += resp.registered
        watch.end()
        check(not watch.over, f"agent RSS passed {MAX_RSS >> 20} MiB registering {n}")
        check(registered > 0, "RegisterBatch registered nothing")
        after_register = settled_rss(pid)
        channel.close()
        figures["registered"] = registered
        figures["register_s"] = register_s
        figures["register_client_encode_s"] = encode_s
        figures["register_workloads_per_s"] = registered / register_s
        figures["bytes_per_registered_workload"] = (after_register - after_apply) / registered
        figures["rss_after_register_MiB"] = after_register / 2**20

        # 3. restart with 2N workloads persisted
        check(agent.stop() == 0, "agent did not exit cleanly on SIGTERM")
        t0 = time.time()
        agent.start(wait=False)
        agent.wait_ready(timeout=STEP_TIMEOUT)
        figures["restart_to_ready_s"] = time.time() - t0
        figures["rss_after_restart_MiB"] = settled_rss(agent.proc.pid) / 2**20
        if n <= 10000:
            status, body = agent.http("/config_dump", timeout=60)
            check(status == 200 and '"dense"' in body and '"w0"' in body,
                  "the applied and registered workloads are missing after restart")
    finally:
        agent.cleanup()
    return figures


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000 if SMOKE else 1000000]
    for n in sizes:
        f = run(n)
        ratio = f["rss_after_apply_MiB"] / f["rss_0_workloads_MiB"]
        print(f"bench density n={n} rss_0_workloads_MiB={f['rss_0_workloads_MiB']:.1f} "
              f"rss_after_apply_MiB={f['rss_after_apply_MiB']:.1f} ratio_rss_vs_baseline={ratio:.3f} "
              f"bytes_per_replica={f['bytes_per_replica']:.0f} "
              f"target_bytes=1024", flush=True)
        print(f"bench density_materialize n={n} apply_replicas_s={f['apply_s']:.3f} "
              f"apply_per_s={f['apply_workloads_per_s']:.0f} "
              f"registered={f['registered']} batch={BATCH} register_batch_s={f['register_s']:.3f} "
              f"of_which_client_encode_s={f['register_client_encode_s']:.3f} "
              f"register_per_s={f['register_workloads_per_s']:.0f} "
              f"bytes_per_registered_workload={f['bytes_per_registered_workload']:.0f} "
              f"rss_after_register_MiB={f['rss_after_register_MiB']:.1f} "
              f"target_apply_1M_s=3 target_register_per_s=100000", flush=True)
        print(f"bench density_restart n={n} persisted_workloads={f['registered'] + 1} "
              f"persisted_replicas={n + f['registered']} "
              f"restart_to_ready_s={f['restart_to_ready_s']:.3f} "
              f"rss_after_restart_MiB={f['rss_after_restart_MiB']:.1f} target_s=3", flush=True)
        for key in ("rss_0_workloads_MiB", "apply_workloads_per_s", "register_workloads_per_s",
                    "restart_to_ready_s"):
            check(f[key] > 0, f"implausible {key}: {f[key]}")


if __name__ == "__main__":
    main()
