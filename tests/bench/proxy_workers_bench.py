"""The proxy's worker threads (`podless run --workers N`) through the real
binary (PODLESS_BIN): requests per second and the agent's CPU per request
for --workers 0 (the proxy on the main loop), 1 and 2, measured side by side
in one run. The configurations alternate, ROUNDS rounds of [0, 1, 2], each
run with a fresh agent on free ports and a temp state dir; every figure is
printed as the median with each run, and as a ratio against --workers 1.

Two load paths:
  a) plaintext: h2load --h1 (nghttp2-client), CONNECTIONS keep-alive
     connections straight to a workload port whose app is the in-proxy
     `static` app;
  b) HBONE: the agent runs with --no-local-short-circuit; a caller workload
     opens CONNECTIONS CONNECT tunnels through the outbound entry (its
     credentials from `podless credentials`) to a Service VIP whose
     endpoints are `static` apps, so every tunnel is an HBONE stream over
     mTLS to the agent's own HBONE listener; each tunnel does sequential
     HTTP/1.1 keep-alive GETs. h2load cannot use an HTTP proxy, so this load
     generator is Python (LOADGEN_PROCS processes, one epoll loop each) and
     likely the bottleneck: the agent's CPU seconds per 1,000 requests (from
     /proc/PID/stat utime+stime, all threads) is the figure that matters.

The load generator shares the machine's cores with the agent, so the ratios
show what workers give on this machine, not an ideal scaling.

With PODLESS_BENCH_SMOKE=1: one round, a few hundred requests per path,
checking only that requests succeed. Environment (full runs):
PODLESS_BENCH_ROUNDS (3), PODLESS_BENCH_SECONDS per path and run (4),
PODLESS_BENCH_CONNECTIONS (64), PODLESS_BENCH_LOADGEN_PROCS (1).
"""

import multiprocessing
import os
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import Agent, addresses, check, fail, free_port  # noqa: E402
from outbound_connect import open_connect  # noqa: E402

SMOKE = os.environ.get("PODLESS_BENCH_SMOKE", "") not in ("", "0")
ROUNDS = 1 if SMOKE else int(os.environ.get("PODLESS_BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("PODLESS_BENCH_SECONDS", "4"))
CONNECTIONS = int(os.environ.get("PODLESS_BENCH_CONNECTIONS", "16" if SMOKE else "64"))
LOADGEN_PROCS = int(os.environ.get("PODLESS_BENCH_LOADGEN_PROCS", "1"))
# Smoke runs count requests instead of seconds, so they stay short however
# slow the (debug) build is.
SMOKE_REQUESTS = 2000
WORKERS = (0, 1, 2)
BASELINE = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: web, namespace: bench, labels: {{app: web}}}}
spec:
  replicas: 2
  serviceAccount: web
  ports: [{{name: http, port: {port}, protocol: HTTP}}]
  app: {{static: {{status: 200, body: "ok"}}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: caller, namespace: bench}}
spec:
  serviceAccount: caller
  app: {{echo: {{}}}}
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {{name: web, namespace: bench}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
"""

REQUEST = b"GET / HTTP/1.1\r\nHost: web.bench.svc\r\n\r\n"


def agent_cpu_s(pid):
    """utime + stime of every thread of `pid`, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces; the fields after it are fixed.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# --- path a: h2load against a workload port ---------------------------------

def h2load_run(agent, url):
    """One h2load --h1 run; (requests succeeded, wall seconds, agent CPU s,
    h2load CPU s)."""
    load = ["-n", str(SMOKE_REQUESTS)] if SMOKE else ["-D", f"{SECONDS:g}"]
    cmd = ["h2load", "--h1", "-c", str(CONNECTIONS), "-t", "1"] + load + [url]
    cpu0, load0, t0 = agent_cpu_s(agent.proc.pid), children_cpu_s(), time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 60)
    wall = time.time() - t0
    cpu, load_cpu = agent_cpu_s(agent.proc.pid) - cpu0, children_cpu_s() - load0
    out = r.stdout
    check(r.returncode == 0, f"h2load exited {r.returncode}: {out}{r.stderr}")
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    check(m, f"h2load output has no requests line:\n{out}")
    done, succeeded, failed, errored = (int(m.group(i)) for i in (3, 4, 5, 6))
    codes = re.search(r"status codes: (\d+) 2xx", out)
    check(codes, f"h2load output has no status codes line:\n{out}")
    ok = int(codes.group(1))
    check(succeeded > 0 and failed == 0 and errored == 0 and ok == succeeded,
          f"h2load against {url}: {done} done, {succeeded} succeeded, {ok} 2xx, "
          f"{failed} failed, {errored} errored:\n{out}")
    finished = re.search(r"finished in ([0-9.]+)(m?s)", out)
    check(finished, f"h2load output has no finished line:\n{out}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    # h2load's own clock covers its measurement; the agent's CPU is taken
    # over the whole process (connects included, 64 of them: negligible).
    return succeeded, seconds if seconds > 0 else wall, cpu, load_cpu


# --- path b: CONNECT tunnels through the outbound entry ----------------------

def open_tunnel(entry, user_pass, target):
    """A CONNECT tunnel to `target`, proven with one GET; a blocking socket."""
    head, s = open_connect(entry, user_pass, target)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if b"\r\n\r\n" not in head:
        raise RuntimeError(f"outbound entry closed during CONNECT {target}")
    if not head.startswith(b"HTTP/1.1 200"):
        line = head.split(b"\r\n")[0]
        raise RuntimeError(f"CONNECT {target}: {line!r}")
    s.sendall(REQUEST)
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError(f"tunnel to {target} closed before the first response")
        buf += chunk
        got = parse_response(buf)
        if got is None:
            continue
        status, used = got
        if status != 200 or used != len(buf):
            raise RuntimeError(f"first GET through the tunnel to {target}: {buf[:200]!r}")
        return s


def parse_response(buf):
    """(status, bytes used) of the complete HTTP/1.1 response at the start of
    `buf`, or None while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end]
    status = int(head[9:12])
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    length = int(m.group(1)) if m else 0
    if len(buf) < end + 4 + length:
        return None
    return status, end + 4 + length


def loadgen(conn, entry, user_pass, target, tunnels, seconds, requests, start):
    """One load generator process: `tunnels` tunnels on one epoll loop, each
    doing sequential GETs, for `seconds` (or `requests` in all) after
    `start` is set. Reports (done, errors, first error, own CPU s)."""
    try:
        socks = [open_tunnel(entry, user_pass, target) for _ in range(tunnels)]
    except (OSError, RuntimeError) as e:
        conn.send(("error", str(e)))
        return
    conn.send(("ready", None))
    start.wait()
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    done, errors, first_error = 0, 0, ""
    deadline = time.monotonic() + seconds
    for s in socks:
        s.send(REQUEST)
    open_count = len(socks)
    while open_count:
        for key, _ in sel.select(timeout=5):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except OSError as e:
                chunk, first_error = b"", first_error or f"recv: {e}"
            if not chunk:
                errors += 1
                first_error = first_error or "tunnel closed mid-request"
                sel.unregister(s)
                open_count -= 1
                continue
            buf = bufs[s] + chunk
            got = parse_response(buf)
            if got is None:
                bufs[s] = buf
                continue
            status, used = got
            bufs[s] = buf[used:]
            if status == 200:
                done += 1
            else:
                errors += 1
                first_error = first_error or f"status {status}"
            more = (done < requests) if requests else (time.monotonic() < deadline)
            if more:
                try:
                    # 38 bytes into an empty socket buffer: never partial.
                    s.send(REQUEST)
                    continue
                except OSError as e:
                    errors += 1
                    first_error = first_error or f"send: {e}"
            sel.unregister(s)
            open_count -= 1
    for s in socks:
        s.close()
    t = os.times()
    conn.send(("done", (done, errors, first_error, t.user + t.system)))


def tunnel_run(agent, proxy_url, target):
    """One run of LOADGEN_PROCS load generator processes; (requests done,
    wall seconds, agent CPU s, load generator CPU s)."""
    creds, entry = proxy_url.split("//", 1)[1].split("@")
    host, port = entry.split(":")
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs, pipes = [], []
    per_proc = max(1, CONNECTIONS // LOADGEN_PROCS)
    requests = SMOKE_REQUESTS // LOADGEN_PROCS if SMOKE else 0
    for _ in range(LOADGEN_PROCS):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=loadgen, args=(child, (host, int(port)), creds, target, per_proc,
                                              SECONDS, requests, start), daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent)
    try:
        for pipe in pipes:
            check(pipe.poll(60), "a load generator did not open its tunnels within 60s")
            kind, what = pipe.recv()
            check(kind == "ready", f"load generator: {what}")
        cpu0, t0 = agent_cpu_s(agent.proc.pid), time.time()
        start.set()
        results = []
        for pipe in pipes:
            check(pipe.poll(SECONDS + 60), "a load generator did not finish")
            results.append(pipe.recv()[1])
        wall = time.time() - t0
        cpu = agent_cpu_s(agent.proc.pid) - cpu0
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    done = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    check(done > 0 and errors == 0,
          f"tunnels to {target}: {done} requests done, {errors} failed "
          f"({next((r[2] for r in results if r[2]), '')})\n{agent.log()[-2000:]}")
    return done, wall, cpu, sum(r[3] for r in results)


# --- one configuration -------------------------------------------------------

def hbone_streams_to_web(agent):
    """Connections the destination side counted into `web` over mTLS."""
    status, body = agent.http("/metrics")
    check(status == 200, f"/metrics answered {status}")
    total = 0
    for line in body.splitlines():
        if (line.startswith("istio_tcp_connections_opened_total{")
                and 'reporter="destination"' in line and 'destination_workload="web"' in line
                and 'connection_security_policy="mutual_tls"' in line):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def run_config(workers):
    """A fresh agent with --workers `workers`; one run of each path."""
    port = free_port()
    agent = Agent(extra_args=["--workers", str(workers), "--no-local-short-circuit"])
    try:
        agent.start()
        agent.cli("apply", "-f", "-", input=MANIFEST.format(port=port))
        dump = agent.config_dump()
        check(dump["proxy"]["workers"] == workers,
              f"--workers {workers}: /config_dump says {dump['proxy']['workers']}")
        addr = addresses(dump)
        vip = next(s["vip"] for s in dump["services"] if s["name"] == "web")
        out = agent.cli("credentials", "caller-0", "-n", "bench").stdout
        proxy_url = dict(line.split("=", 1) for line in out.split())["HTTP_PROXY"]
        plain = h2load_run(agent, f"http://{addr['web-0']}:{port}/")
        hbone = tunnel_run(agent, proxy_url, f"{vip}:80")
        # The tunnels really crossed HBONE (one mTLS stream each, counted at
        # the destination), not the in-memory short circuit.
        streams = hbone_streams_to_web(agent)
        check(streams >= CONNECTIONS, f"--workers {workers}: {streams} mutual_tls connections "
              f"reached web over HBONE for {CONNECTIONS} tunnels")
        return {"plaintext": plain, "hbone": hbone}
    finally:
        agent.cleanup()


def figures(run):
    done, seconds, cpu, load_cpu = run
    return {"rps": done / seconds, "agent_cpu_s_per_1k": cpu / done * 1000,
            "loadgen_cpu_s_per_1k": load_cpu / done * 1000, "requests": done}


def fmt(value):
    return f"{value:.0f}" if value >= 100 else f"{value:.3f}"


def ratio(value, base):
    # A smoke run may be too short for the agent's CPU to pass one clock tick.
    return f"{value / base:.3f}" if base > 0 else "n/a"


def report(path, results):
    """One line per configuration: median, each run, ratio vs --workers 1."""
    medians = {w: {k: statistics.median(f[k] for f in results[w][path])
                   for k in ("rps", "agent_cpu_s_per_1k", "loadgen_cpu_s_per_1k")}
               for w in WORKERS}
    base = medians[BASELINE]
    for w in WORKERS:
        runs = results[w][path]
        m = medians[w]
        print(f"bench proxy_workers_{path} workers={w} rounds={len(runs)} "
              f"rps_median={fmt(m['rps'])} "
              f"rps_runs={','.join(fmt(f['rps']) for f in runs)} "
              f"ratio_rps_vs_workers1={ratio(m['rps'], base['rps'])} "
              f"agent_cpu_s_per_1k_median={m['agent_cpu_s_per_1k']:.4f} "
              f"agent_cpu_s_per_1k_runs={','.join('%.4f' % f['agent_cpu_s_per_1k'] for f in runs)} "
              f"ratio_agent_cpu_per_req_vs_workers1="
              f"{ratio(m['agent_cpu_s_per_1k'], base['agent_cpu_s_per_1k'])} "
              f"loadgen_cpu_s_per_1k_median={m['loadgen_cpu_s_per_1k']:.4f} "
              f"requests_runs={','.join(str(f['requests']) for f in runs)}", flush=True)


def main():
    if shutil.which("h2load") is None:
        fail("h2load not found (Debian package nghttp2-client)")
    results = {w: {"plaintext": [], "hbone": []} for w in WORKERS}
    started, load_before = time.time(), load_average()
    for round_no in range(ROUNDS):
        # Alternating the configurations spreads drift (thermal, other
        # load on the machine) over all of them instead of one.
        order = WORKERS if round_no % 2 == 0 else tuple(reversed(WORKERS))
        for w in order:
            for path, run in run_config(w).items():
                results[w][path].append(figures(run))
    cores = os.cpu_count()
    print(f"bench proxy_workers machine_cores={cores} note=\"the {cores} cores are shared by the "
          f"agent and the load generator (h2load -t 1 / {LOADGEN_PROCS} python process(es)), so "
          f"the ratios show what workers give on this machine, not an ideal scaling\" "
          f"smoke={int(SMOKE)} connections={CONNECTIONS} seconds_per_run={0 if SMOKE else SECONDS} "
          f"order=alternating baseline=workers1 total_s={time.time() - started:.1f} "
          f"loadavg_1m_before={load_before} loadavg_1m_after={load_average()}", flush=True)
    report("plaintext", results)
    report("hbone", results)
    for w in WORKERS:
        for path in ("plaintext", "hbone"):
            for f in results[w][path]:
                check(f["rps"] > 0 and f["agent_cpu_s_per_1k"] >= 0,
                      f"implausible figures for --workers {w} {path}: {f}")


if __name__ == "__main__":
    main()
