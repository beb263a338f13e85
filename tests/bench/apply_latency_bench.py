"""Request latency while the control plane works (issue 16, point 1), through
the real binary (PODLESS_BIN).

A client sends sequential keep-alive GETs to an in-proxy `static` app on a
workload port (plaintext, served by a proxy worker) and records each
request's round trip. Two phases side by side in one run, alternating
ROUNDS times so the noise of this shared machine falls on both:

  idle  - nothing else happens (the baseline);
  apply - another workload is applied back to back with `replicas`
          1,000,000 and 10 in turn (`podless apply`, each change
          committed to disk with fdatasync);
  dump  - with that workload at 1,000,000 replicas, a client fetches
          /config_dump (about 140 MB) over and over (the agent streams it
          and limits it to a fifth of its main loop's time).

Printed per phase: requests served, p50, p99, max (ms); then the ratios
apply/idle, and the issue's target: p99 during applies within 3x the idle
p99 plus 5 ms, and no request over 50 ms.

Environment: PODLESS_BENCH_ROUNDS (2), PODLESS_BENCH_SECONDS per phase and
round (5), PODLESS_BENCH_REPLICAS (1000000), PODLESS_BENCH_WORKERS (2).
PODLESS_BENCH_SMOKE=1: one short round with 100,000 replicas, checking only
that requests succeed and applies land.
"""

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import PODLESS, check, running_agent, write  # noqa: E402

SMOKE = os.environ.get("PODLESS_BENCH_SMOKE", "") not in ("", "0")
ROUNDS = 1 if SMOKE else int(os.environ.get("PODLESS_BENCH_ROUNDS", "2"))
SECONDS = 1.5 if SMOKE else float(os.environ.get("PODLESS_BENCH_SECONDS", "5"))
REPLICAS = 100000 if SMOKE else int(os.environ.get("PODLESS_BENCH_REPLICAS", "1000000"))
WORKERS = os.environ.get("PODLESS_BENCH_WORKERS", "2")
PORT = 18090

SERVED = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: bench}
spec:
  ports: [{name: http, port: %d, protocol: HTTP}]
  app: {static: {status: 200, body: "ok"}}
""" % PORT

BIG = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: big, namespace: churn}
spec:
  replicas: %d
  app: {echo: {}}
"""


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def measure(address, seconds):
    """Sequential GETs for `seconds`: the round trips, in ms."""
    s = socket.create_connection((address, PORT), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"
    samples = []
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        s.sendall(request)
        response = b""
        while not response.endswith(b"ok"):
            chunk = s.recv(4096)
            check(chunk, "the agent closed the benchmark connection")
            response += chunk
        samples.append((time.perf_counter() - t0) * 1000)
        check(response.startswith(b"HTTP/1.1 200"), f"unexpected response: {response[:80]!r}")
    s.close()
    return samples


class Dumper(threading.Thread):
    """Fetches /config_dump over and over until stopped (a 503 is the duty
    cycle saying wait)."""

    def __init__(self, agent):
        super().__init__(daemon=True)
        self.agent = agent
        self.stop = threading.Event()
        self.dumps = 0
        self.bytes = 0

    def run(self):
        url = f"http://127.0.0.1:{self.agent.admin_port}/config_dump"
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=60) as r:
                    while True:
                        chunk = r.read(1 << 20)
                        if not chunk:
                            break
                        self.bytes += len(chunk)
                self.dumps += 1
            except urllib.error.HTTPError:
                time.sleep(0.05)


class Churn(threading.Thread):
    """Applies the big workload with REPLICAS and 10 replicas in turn until stopped."""

    def __init__(self, agent, files):
        super().__init__(daemon=True)
        self.agent, self.files = agent, files
        self.stop = threading.Event()
        self.applies = 0
        self.error = None

    def run(self):
        i = 0
        while not self.stop.is_set():
            r = subprocess.run([PODLESS, "--socket", self.agent.socket, "apply", "-f",
                                self.files[i % 2]], capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                self.error = r.stderr
                return
            self.applies += 1
            i += 1


def report(name, samples, seconds):
    print(f"bench apply_latency phase={name} requests={len(samples)} "
          f"req_per_s={len(samples) / seconds:.0f} p50_ms={statistics.median(samples):.3f} "
          f"p99_ms={percentile(samples, 0.99):.3f} max_ms={max(samples):.3f}", flush=True)


def main():
    args = ["--workers", WORKERS, "--max-replicas", str(2 * REPLICAS + 1000)]
    with running_agent(extra_args=args) as agent:
        files = [write(os.path.join(agent.state_dir, f"big-{n}.yaml"), BIG % n)
                 for n in (REPLICAS, 10)]
        agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "web.yaml"), SERVED))
        agent.cli("apply", "-f", files[1])
        address = agent.replica_addresses("web")[0]
        measure(address, 0.3)  # warm up
        idle, busy, dumping, applies, dumps = [], [], [], 0, 0
        for _ in range(ROUNDS):
            idle += measure(address, SECONDS)
            churn = Churn(agent, files)
            churn.start()
            busy += measure(address, SECONDS)
            churn.stop.set()
            churn.join(timeout=180)
            check(churn.error is None, f"apply failed: {churn.error}")
            applies += churn.applies
            agent.cli("apply", "-f", files[0])
            dumper = Dumper(agent)
            dumper.start()
            dumping += measure(address, SECONDS)
            dumper.stop.set()
            dumper.join(timeout=120)
            dumps += dumper.dumps
            agent.cli("apply", "-f", files[1])
        total = ROUNDS * SECONDS
        report("idle", idle, total)
        report("apply", busy, total)
        report("dump", dumping, total)
        print(f"bench apply_latency applies={applies} config_dumps={dumps} replicas={REPLICAS} "
              f"workers={WORKERS}")
        idle_p99, busy_p99 = percentile(idle, 0.99), percentile(busy, 0.99)
        print(f"bench apply_latency ratio p99={busy_p99 / idle_p99:.2f} "
              f"max={max(busy) / max(idle):.2f} requests={len(busy) / len(idle):.2f}")
        print(f"bench apply_latency ratio_dump p99={percentile(dumping, 0.99) / idle_p99:.2f} "
              f"max={max(dumping) / max(idle):.2f} requests={len(dumping) / len(idle):.2f}")
        target = 3 * idle_p99 + 5
        verdict = "met" if busy_p99 <= target and max(busy) <= 50 else "missed"
        print(f"bench apply_latency target p99<={target:.2f}ms max<=50ms: {verdict}", flush=True)
        check(applies > 0, "no apply landed during the benchmark")
    print("PASS")


if __name__ == "__main__":
    main()
