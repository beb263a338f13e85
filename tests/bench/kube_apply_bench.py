"""What Kubernetes YAML costs beside podless's own (issue 14): N one-replica
Deployments (image-only containers, as bookinfo writes them) against N
podless Workloads of the same shape, each applied as one file to a fresh
agent (PODLESS_BIN) in the same run. Prints, for each side: the time of the
first apply (parse, validate, persist), of a re-apply of the same file (every
object "unchanged"), and the agent's RSS per workload after it; then the
Deployment side as a ratio of the podless side. A Deployment keeps its
document (what `get -o yaml` shows), so it costs more memory: the figure
says how much.

Usage: kube_apply_bench.py [N]   (default 20000; 300 with PODLESS_BENCH_SMOKE=1)
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import Agent, check, rss_kib, write  # noqa: E402

SMOKE = os.environ.get("PODLESS_BENCH_SMOKE", "") not in ("", "0")

PODLESS = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: app-{i}, namespace: bench, labels: {{app: app-{i}, version: v1}}}}
spec:
  serviceAccount: app-{i}
  ports: [{{name: http, port: 9080, protocol: HTTP}}]
  app: {{echo: {{}}}}
"""

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  namespace: bench
  labels: {{app: app-{i}, version: v1}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: app-{i}, version: v1}}
  template:
    metadata:
      labels: {{app: app-{i}, version: v1}}
    spec:
      serviceAccountName: app-{i}
      containers:
      - name: app
        image: docker.io/istio/examples-bookinfo-details-v1:1.20.2
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 9080
"""


def rss(pid):
    """Resident memory of a process, bytes."""
    return rss_kib(pid) * 1024


def measure(template, n, label):
    agent = Agent()
    agent.start()
    try:
        text = "---\n".join(template.format(i=i) for i in range(n))
        path = write(os.path.join(agent.state_dir, f"{label}.yaml"), text)
        base = rss(agent.proc.pid)
        start = time.monotonic()
        r = agent.cli("apply", "-f", path, timeout=900)
        first = time.monotonic() - start
        check(r.stdout.count(" created") >= n, f"{label}: not every object created")
        time.sleep(0.5)
        per_workload = (rss(agent.proc.pid) - base) / n
        start = time.monotonic()
        r = agent.cli("apply", "-f", path, timeout=900)
        again = time.monotonic() - start
        check(r.stdout.count(" unchanged") == n, f"{label}: a re-apply changed something")
        print(f"{label:>11}: apply {first:7.3f} s ({n / first:8.0f} objects/s), re-apply "
              f"{again:7.3f} s, RSS {per_workload:7.0f} B/workload, file {len(text) / n:5.0f} B/object")
        return first, again, per_workload
    finally:
        agent.stop()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else (300 if SMOKE else 20000)
    print(f"kube_apply_bench: {n} one-replica workloads per side, each side on a fresh agent")
    podless = measure(PODLESS, n, "podless")
    kube = measure(DEPLOYMENT, n, "Deployment")
    print(f"Deployment / podless: apply {kube[0] / podless[0]:.2f}x, re-apply "
          f"{kube[1] / podless[1]:.2f}x, RSS per workload {kube[2] / max(podless[2], 1):.2f}x")


if __name__ == "__main__":
    main()
