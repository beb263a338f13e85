"""`kubectl get pods -A` against many replicas (issue 15), beside the same
listing over the gRPC API, on one agent (PODLESS_BIN) in the same run.

One Deployment of N replicas is applied; then, alternately, for R rounds:
- gRPC: the agent's List of workloads (the stock grpcio client, the whole
  answer received and parsed), the baseline, and `podless get pods -A` (the
  CLI over the same List: a process that prints a table, as kubectl does);
- kubectl: `kubectl get pods -A` (the server-side Table kubectl asks for,
  printed), and `kubectl get pods -A -o name`.
For each, the wall time and the agent's peak RSS above its RSS before the
call (VmHWM, reset through /proc/PID/clear_refs before each call). Prints
the figures, then kubectl's as a ratio of gRPC's.

Usage: kube_list_bench.py [N] [ROUNDS]  (default 100000 2; 500 1 with
PODLESS_BENCH_SMOKE=1). Skips (77) without /usr/bin/kubectl.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import Agent, check, grpc_stubs, write  # noqa: E402

KUBECTL = "/usr/bin/kubectl"
SMOKE = os.environ.get("PODLESS_BENCH_SMOKE", "") not in ("", "0")

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: bench}}
spec:
  replicas: {n}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: nginx
        ports: [{{containerPort: 8080}}]
"""


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measured(pid, call):
    """(seconds, peak RSS growth in bytes, result) of call()."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = status_kib(pid, "VmRSS")
    start = time.monotonic()
    result = call()
    seconds = time.monotonic() - start
    return seconds, (status_kib(pid, "VmHWM") - before) * 1024, result


def main():
    if not os.access(KUBECTL, os.X_OK):
        print(f"SKIP: {KUBECTL} is not installed (the stock kubectl 1.32 client)")
        sys.exit(77)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else (500 if SMOKE else 100000)
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else (1 if SMOKE else 2)
    grpc_stubs()
    import grpc
    from podless.v1 import runtime_pb2, runtime_pb2_grpc

    agent = Agent().start()
    try:
        agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "d.yaml"),
                                        DEPLOYMENT.format(n=n)), timeout=600)
        kubeconfig = os.path.join(agent.state_dir, "kubeconfig")
        agent.cli("kubeconfig", "-o", kubeconfig)
        channel = grpc.insecure_channel("unix:" + agent.socket,
                                        options=[("grpc.max_receive_message_length", -1)])
        stub = runtime_pb2_grpc.RuntimeStub(channel)

        def grpc_list():
            response = stub.List(runtime_pb2.ListRequest(kind=runtime_pb2.WORKLOAD), timeout=600)
            return sum(len(o.workload.status.replicas) for o in response.objects)

        def kubectl(*args):
            def run():
                r = subprocess.run([KUBECTL, "--kubeconfig", kubeconfig, "get", "pods", "-A",
                                    "--request-timeout=600s", *args],
                                   capture_output=True, text=True, timeout=900)
                check(r.returncode == 0, f"kubectl get pods -A {' '.join(args)}: {r.stderr}")
                return r.stdout.count("\n")
            return run

        def podless_get():
            r = agent.cli("get", "pods", "-A", timeout=900)
            return r.stdout.count("\n")

        sides = [("gRPC List", grpc_list, n),
                 ("podless get pods -A", podless_get, n + 1),
                 ("kubectl get pods -A", kubectl(), n + 1),   # with the header line
                 ("kubectl get pods -A -o name", kubectl("-o", "name"), n)]
        best = {}
        print(f"kube_list_bench: one Deployment of {n} replicas, {rounds} round(s), "
              f"the agent's RSS {status_kib(agent.proc.pid, 'VmRSS') // 1024} MiB")
        for round_ in range(rounds):
            for name, call, lines in sides:
                seconds, peak, got = measured(agent.proc.pid, call)
                check(got == lines, f"{name}: {got} items/lines, expected {lines}")
                print(f"  round {round_ + 1}: {name:>28}: {seconds:7.3f} s, "
                      f"agent peak +{peak / 2**20:7.1f} MiB")
                t, p = best.get(name, (float("inf"), float("inf")))
                best[name] = (min(t, seconds), min(p, peak))
        base_t, base_p = best["gRPC List"]
        for name, _, _ in sides[1:]:
            t, p = best[name]
            print(f"{name} / gRPC List: time {t / base_t:.2f}x, agent peak memory "
                  f"{p / max(base_p, 1):.2f}x (best of {rounds})")
    finally:
        agent.stop()


if __name__ == "__main__":
    main()
