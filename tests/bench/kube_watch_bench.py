"""Watch fan-out (issue 15): events/s the Kubernetes API delivers to W
watchers (HTTP/1.1 chunked watch streams over TLS with the admin
certificate, one socket each, read by one selector thread) for N changes
made through the gRPC API, beside the same changes delivered to W gRPC
Watch streams of the same agent (the baseline), in the same run, one side
after the other. A change is an Apply of one Service (one event on each
side). Prints each side's delivered events/s (W * N / time from the first
Apply to the last event received) and Kubernetes / gRPC.

Usage: kube_watch_bench.py [N] [W]   (default 2000 100; 50 10 with PODLESS_BENCH_SMOKE=1)
"""

import base64
import os
import re
import selectors
import socket
import ssl
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import Agent, check, grpc_stubs, write  # noqa: E402

grpc_stubs()

import grpc  # noqa: E402
from podless.v1 import runtime_pb2 as pb  # noqa: E402
from podless.v1 import runtime_pb2_grpc as rpc  # noqa: E402

SMOKE = os.environ.get("PODLESS_BENCH_SMOKE", "") not in ("", "0")

SERVICE = ("apiVersion: v1\nkind: Service\nmetadata: {{name: s-{round}-{i}, namespace: bench}}\n"
           "spec:\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n")


def kube_watchers(agent, tmp, count):
    """`count` TLS sockets, each with a watch of the bench namespace's
    Services open; returns them once each has its response head."""
    config = os.path.join(tmp, "kubeconfig")
    agent.cli("kubeconfig", "-o", config)
    text = open(config).read()
    files = {}
    for field, name in (("certificate-authority-data", "ca.pem"),
                        ("client-certificate-data", "admin.crt"),
                        ("client-key-data", "admin.key")):
        value = re.search(rf"^\s*{field}: (\S+)$", text, re.M).group(1)
        files[name] = write(os.path.join(tmp, name), base64.b64decode(value).decode())
    ctx = ssl.create_default_context(cafile=files["ca.pem"])
    ctx.load_cert_chain(files["admin.crt"], files["admin.key"])
    ctx.set_alpn_protocols(["http/1.1"])
    socks = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", agent.kube_port), timeout=30)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(b"GET /api/v1/namespaces/bench/services?watch=1&resourceVersion=0 HTTP/1.1\r\n"
                  b"Host: 127.0.0.1\r\nAccept: application/json\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        check(head.startswith(b"HTTP/1.1 200") and b"chunked" in head, f"watch head: {head!r}")
        socks.append(s)
    return socks


MARKER = b'"type":"ADDED"'


def count_kube(socks, want, done):
    """Reads every socket until each saw `want` ADDED events; sets done[0]
    to the time the last one arrived."""
    sel = selectors.DefaultSelector()
    counts = {}
    tails = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        counts[s] = 0
        tails[s] = b""
    remaining = len(socks)
    deadline = time.time() + 600
    while remaining and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                while True:
                    data = s.recv(1 << 16)
                    if not data:  # the server ended the watch
                        sel.unregister(s)
                        break
                    # The kept tail is shorter than the marker: no event
                    # is counted twice, none split across reads is missed.
                    buf = tails[s] + data
                    before = counts[s]
                    counts[s] += buf.count(MARKER)
                    tails[s] = buf[-(len(MARKER) - 1):]
                    if before < want <= counts[s]:
                        remaining -= 1
            except (ssl.SSLWantReadError, BlockingIOError):
                pass
    done[0] = time.time()
    done[1] = min(counts.values())


def grpc_watchers(api, count):
    """`count` gRPC Watch streams of the bench namespace's Services, each
    past SYNCED."""
    streams = []
    for _ in range(count):
        call = api.Watch(pb.WatchRequest(kinds=[pb.SERVICE], namespace="bench"), timeout=900)
        for e in call:
            if e.type == pb.WatchEvent.SYNCED:
                break
        streams.append(call)
    return streams


def count_grpc(streams, want):
    """One thread per stream; returns (time the last stream saw `want`
    ADDED events, the fewest any saw)."""
    ends = []
    counts = []
    lock = threading.Lock()

    def read(call):
        n = 0
        try:
            for e in call:
                if e.type == pb.WatchEvent.ADDED:
                    n += 1
                    if n == want:
                        break
        except grpc.RpcError:
            pass
        with lock:
            ends.append(time.time())
            counts.append(n)

    threads = [threading.Thread(target=read, args=(c,), daemon=True) for c in streams]
    for t in threads:
        t.start()
    return threads, ends, counts


def apply_changes(api, n, round_name):
    for i in range(n):
        api.Apply(pb.ApplyRequest(manifest=SERVICE.format(round=round_name, i=i),
                                  source_name="bench.yaml"), timeout=30)


def main():
    args = [int(a) for a in sys.argv[1:]]
    n = args[0] if args else (50 if SMOKE else 2000)
    w = args[1] if len(args) > 1 else (10 if SMOKE else 100)
    tmp = tempfile.mkdtemp(prefix="podless-watch-bench-")
    agent = Agent().start()
    try:
        agent.cli("apply", "-f", write(os.path.join(tmp, "ns.yaml"),
                                       "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n"))
        channel = grpc.insecure_channel("unix:" + agent.socket)
        api = rpc.RuntimeStub(channel)

        # Kubernetes API watchers.
        socks = kube_watchers(agent, tmp, w)
        done = [0.0, 0]
        reader = threading.Thread(target=count_kube, args=(socks, n, done))
        reader.start()
        t0 = time.time()
        apply_changes(api, n, "k")
        reader.join()
        kube_s = done[0] - t0
        check(done[1] >= n, f"every Kubernetes watcher got {n} events (fewest: {done[1]})")
        for s in socks:
            s.close()

        # gRPC Watch streams, the same changes (new names).
        streams = grpc_watchers(api, w)
        threads, ends, counts = count_grpc(streams, n)
        t0 = time.time()
        apply_changes(api, n, "g")
        for t in threads:
            t.join(timeout=600)
        grpc_s = max(ends) - t0
        check(len(counts) == w and min(counts) >= n,
              f"every gRPC watcher got {n} events (fewest: {min(counts) if counts else 0})")
        for c in streams:
            c.cancel()

        kube_rate = w * n / kube_s
        grpc_rate = w * n / grpc_s
        print(f"watch fan-out: {n} changes (Service applies over gRPC) to {w} watchers")
        print(f"  Kubernetes API (HTTP/1.1 chunked, TLS): {kube_s:.2f} s, {kube_rate:,.0f} events/s")
        print(f"  gRPC Watch (baseline):                  {grpc_s:.2f} s, {grpc_rate:,.0f} events/s")
        print(f"  Kubernetes / gRPC: {kube_rate / grpc_rate:.2f}")
        check(kube_rate > 0 and grpc_rate > 0, "rates are positive")
    finally:
        agent.cleanup()


if __name__ == "__main__":
    main()
