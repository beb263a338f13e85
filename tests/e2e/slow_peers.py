"""Slow-loris peers against the real binary (issue 8). At the same time:
  a. TCP to the HBONE port, no TLS handshake (and one ClientHello cut short),
  b. TLS handshake done, no HTTP/2 preface,
  c. an HBONE CONNECT stream whose data is never read (its HTTP/2 window is
     never reopened), while a second stream on the same connection works,
  d. an HBONE connection whose socket is never read at all,
  e. the outbound entry: an HTTP request head never finished, a SOCKS5
     greeting cut short, nothing sent at all.
Each must be cut off after its timeout (not before, not much after) and
counted in podless_peer_timeouts_total, while well-behaved clients (curl
through the outbound entry, an independent HBONE client) are served
promptly the whole time.

The timeouts are the binary's defaults (10 s handshake/preface/request, 30 s
stalls), or 2 s each when `podless run --help` lists the flags that set them.
"""

import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import h2.events
import h2.settings

import pki
from harness import (PODLESS, SOURCE_ROOT, addresses, check, free_port, metric_value,
                     running_agent, write)
from hbone_client import h2_connection, tls_context

INTEROP = os.path.join(SOURCE_ROOT, "tests", "proxy", "hbone_interop_client.py")

# flag -> built-in default in seconds (proxy/*.h)
TIMEOUT_FLAGS = {
    "--hbone-handshake-timeout": 10,
    "--hbone-preface-timeout": 10,
    "--outbound-request-timeout": 10,
    "--stream-stall-timeout": 30,
    "--write-stall-timeout": 30,
}
SHORT = 2

usage = subprocess.run([PODLESS, "run", "--help"], capture_output=True, text=True)
usage = usage.stdout + usage.stderr
T = {flag: (SHORT if flag in usage else default) for flag, default in TIMEOUT_FLAGS.items()}
EXTRA = [f"{flag}={SHORT}s" for flag in TIMEOUT_FLAGS if flag in usage]
print("slow_peers: timeouts " + ", ".join(f"{k}={v}s" for k, v in T.items()), flush=True)

ECHO_PORT = free_port()
HTTP_PORT = free_port()
MANIFEST = f"""apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: web, namespace: slow}}
spec:
  serviceAccount: web
  ports: [{{name: echo, port: {ECHO_PORT}}}, {{name: http, port: {HTTP_PORT}, protocol: HTTP}}]
  app: {{echo: {{}}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: client, namespace: slow}}
spec:
  serviceAccount: client
  app: {{echo: {{}}}}
"""

results = {}
lock = threading.Lock()


def record(name, **values):
    with lock:
        results[name] = values


def wait_closed(sock, limit):
    """Reads until the peer closes; (seconds waited, bytes read), or (None,
    bytes) if it is still open after `limit` seconds."""
    start = time.time()
    data = b""
    sock.settimeout(limit)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return None, data
    except (ConnectionResetError, ssl.SSLError, OSError):
        pass
    return time.time() - start, data


def h2_connect(ctx, addr, port, receive_buffer=0):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    raw.settimeout(20)
    raw.connect((addr, port))
    tls = ctx.wrap_socket(raw)
    return tls, h2_connection(header_encoding="utf-8")


def open_stream(tls, conn, authority):
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "CONNECT"), (":authority", authority)])
    tls.sendall(conn.data_to_send())
    while True:
        data = tls.recv(65536)
        check(data, f"connection closed before the response to CONNECT {authority}")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                status = dict(event.headers)[":status"]
                check(status == "200", f"CONNECT {authority}: {status}")
                tls.sendall(conn.data_to_send())
                return sid
        tls.sendall(conn.data_to_send())


# --- the slow peers ----------------------------------------------------------

def no_handshake(addr, port, payload, name):
    s = socket.create_connection((addr, port), timeout=10)
    if payload:
        s.sendall(payload)
    waited, _ = wait_closed(s, T["--hbone-handshake-timeout"] + 15)
    record(name, waited=waited, timeout=T["--hbone-handshake-timeout"])
    s.close()


def no_preface(ctx, addr, port):
    raw = socket.create_connection((addr, port), timeout=10)
    tls = ctx.wrap_socket(raw)  # the handshake completes here
    check(tls.selected_alpn_protocol() == "h2", "ALPN h2 not negotiated")
    waited, _ = wait_closed(tls, T["--hbone-preface-timeout"] + 15)
    record("h2_preface", waited=waited, timeout=T["--hbone-preface-timeout"])
    tls.close()


def stream_never_read(ctx, addr, port):
    tls, conn = h2_connect(ctx, addr, port)
    authority = f"{addr}:{ECHO_PORT}"
    sid = open_stream(tls, conn, authority)
    # Send 512 KiB to the echo; take the answers off the connection window
    # only, so this stream's window (64 KiB) shuts for good.
    pending = b"s" * (512 << 10)
    received = 0
    shut_at = None
    reset_at = None
    tls.settimeout(T["--stream-stall-timeout"] * 1.25 + 20)
    while reset_at is None:
        window = conn.local_flow_control_window(sid) if pending else 0
        if window > 0:
            n = min(window, len(pending), 16384)
            conn.send_data(sid, pending[:n])
            pending = pending[n:]
            tls.sendall(conn.data_to_send())
            continue
        data = tls.recv(65536)
        check(data, "connection closed instead of the stream being reset")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                received += event.flow_controlled_length
                conn.increment_flow_control_window(event.flow_controlled_length)
                if received >= 65535 and shut_at is None:
                    shut_at = time.time()
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                reset_at = time.time()
        tls.sendall(conn.data_to_send())
    # The connection still carries a stream that reads.
    sid2 = open_stream(tls, conn, authority)
    conn.send_data(sid2, b"after the stall\n", end_stream=True)
    tls.sendall(conn.data_to_send())
    echoed = b""
    ended = False
    while not ended:
        data = tls.recv(65536)
        check(data, "connection closed after the stalled stream was reset")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived) and event.stream_id == sid2:
                echoed += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, sid2)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid2:
                ended = True
        tls.sendall(conn.data_to_send())
    record("stream_stalled", waited=reset_at - (shut_at or reset_at),
           timeout=T["--stream-stall-timeout"], second_stream=echoed.decode())
    tls.close()


def socket_never_read(ctx, addr, port):
    tls, conn = h2_connect(ctx, addr, port, receive_buffer=4096)
    # Windows wide open: the server never waits on HTTP/2 flow control, only
    # on the socket that this client stops reading.
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
    conn.increment_flow_control_window((1 << 31) - 1 - 65535)
    sid = open_stream(tls, conn, f"{addr}:{ECHO_PORT}")
    # Read until the server's window updates are in, then never again.
    deadline = time.time() + 1
    tls.settimeout(0.2)
    while time.time() < deadline:
        try:
            data = tls.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            continue
        conn.receive_data(data)
    tls.settimeout(20)
    window = conn.local_flow_control_window(sid)
    chunk = b"w" * 16384
    sent = 0
    while sent + len(chunk) <= window:
        conn.send_data(sid, chunk)
        tls.sendall(conn.data_to_send())
        sent += len(chunk)
    stopped = time.time()
    closed_at = None
    limit = stopped + T["--write-stall-timeout"] * 1.25 + 20
    while time.time() < limit:
        time.sleep(0.25)
        try:
            conn.ping(b"slowpeer")
            tls.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError):
            closed_at = time.time()
            break
    record("write_stalled", waited=None if closed_at is None else closed_at - stopped,
           timeout=T["--write-stall-timeout"], sent=sent)
    tls.close()


def outbound_incomplete(port, payload, name):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if payload:
        s.sendall(payload)
    waited, data = wait_closed(s, T["--outbound-request-timeout"] + 15)
    record(name, waited=waited, timeout=T["--outbound-request-timeout"], data=data[:40])
    s.close()


# --- the good clients meanwhile ----------------------------------------------

def good_clients(stop, proxy, ctx_dir, addr, hbone_port):
    worst = 0.0
    count = 0
    failures = []
    req = "GET /good HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n"
    while not stop.is_set():
        start = time.time()
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w",
                            "%{http_code}", "--proxy", proxy, f"http://{addr}:{HTTP_PORT}/good"],
                           capture_output=True, text=True)
        if r.stdout != "200":
            failures.append(f"curl: {r.stdout} {r.stderr}")
        r = subprocess.run(["/usr/bin/python3", INTEROP, "--connect", f"{addr}:{hbone_port}",
                            "--ca", f"{ctx_dir}/bundle.pem", "--cert", f"{ctx_dir}/tester.crt",
                            "--key", f"{ctx_dir}/tester.key", "--authority",
                            f"{addr}:{HTTP_PORT}", "--payload", req],
                           capture_output=True, text=True, timeout=30)
        try:
            out = json.loads(r.stdout)
            if out["streams"][0]["status"] != 200:
                failures.append(f"hbone: {out}")
        except (ValueError, KeyError, IndexError):
            failures.append(f"hbone: {r.stdout} {r.stderr}")
        worst = max(worst, time.time() - start)
        count += 1
        stop.wait(0.3)
    record("good", worst=worst, count=count, failures=failures)


def check_timed(name, early_slack=1.0, late_factor=1.0, late_slack=5.0):
    r = results.get(name)
    check(r is not None, f"{name}: no result (the peer's thread failed)")
    waited, timeout = r["waited"], r["timeout"]
    check(waited is not None, f"{name}: never cut off (timeout {timeout}s): {r}")
    check(timeout - early_slack <= waited <= timeout * late_factor + late_slack,
          f"{name}: cut off after {waited:.1f}s, the timeout is {timeout}s")
    print(f"slow_peers: {name}: cut off after {waited:.1f}s (timeout {timeout}s)", flush=True)


with tempfile.TemporaryDirectory() as d:
    pki.make_ca(d, "ca")
    pki.make_leaf(d, "ca", "tester", "spiffe://cluster.local/ns/ext/sa/tester")
    args = ["--ca-cert", f"{d}/ca.crt", "--ca-key", f"{d}/ca.key"] + EXTRA
    with running_agent(extra_args=args) as agent:
        agent.cli("apply", "-f", write(f"{d}/slow.yaml", MANIFEST))
        write(f"{d}/bundle.pem", agent.cli("ca", "export").stdout)
        dump = agent.config_dump()
        addr = addresses(dump)
        web = addr["web-0"]
        creds = dict(line.split("=", 1) for line in
                     agent.cli("credentials", "client-0", "-n", "slow").stdout.split())
        ctx = tls_context(f"{d}/bundle.pem", f"{d}/tester.crt", f"{d}/tester.key")
        hbone = agent.hbone_port
        outbound = agent.outbound_port
        started = time.time()

        stop = threading.Event()
        good = threading.Thread(target=good_clients,
                                args=(stop, creds["HTTP_PROXY"], d, web, hbone))
        good.start()
        peers = [
            threading.Thread(target=no_handshake, args=(web, hbone, b"", "tls_silent")),
            threading.Thread(target=no_handshake,
                             args=(web, hbone, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                                   "tls_partial")),
            threading.Thread(target=no_preface, args=(ctx, web, hbone)),
            threading.Thread(target=stream_never_read, args=(ctx, web, hbone)),
            threading.Thread(target=socket_never_read, args=(ctx, web, hbone)),
            threading.Thread(target=outbound_incomplete,
                             args=(outbound, b"CONNECT " + f"{web}:{ECHO_PORT}".encode() +
                                   b" HTTP/1.1\r\nHost: x\r\n", "outbound_http")),
            threading.Thread(target=outbound_incomplete,
                             args=(outbound, b"\x05\x01", "outbound_socks")),
            threading.Thread(target=outbound_incomplete, args=(outbound, b"", "outbound_silent")),
        ]
        for p in peers:
            p.start()
        for p in peers:
            p.join(max(T.values()) * 2 + 60)
            check(not p.is_alive(), "a slow peer's thread hangs")
        stop.set()
        good.join(60)

        check_timed("tls_silent")
        check_timed("tls_partial")
        check_timed("h2_preface")
        check_timed("outbound_http")
        check_timed("outbound_socks")
        check_timed("outbound_silent")
        check(results["outbound_http"]["data"].startswith(b"HTTP/1.1 408 "),
              f"incomplete request answered {results['outbound_http']['data']!r}")
        check(results["outbound_socks"]["data"] == b"",
              f"SOCKS5 greeting cut short answered {results['outbound_socks']['data']!r}")
        # Stalls are checked a few times per period: up to 1.25 periods.
        check_timed("stream_stalled", late_factor=1.25)
        check(results["stream_stalled"]["second_stream"] == "after the stall\n",
              f"second stream: {results['stream_stalled']}")
        check_timed("write_stalled", late_factor=1.25, late_slack=10)

        g = results["good"]
        check(not g["failures"], f"good clients failed meanwhile: {g['failures'][:3]}")
        check(g["count"] >= 3, f"only {g['count']} good rounds")
        check(g["worst"] < 5, f"a good round took {g['worst']:.1f}s")
        print(f"slow_peers: {g['count']} good rounds meanwhile, the slowest {g['worst']:.2f}s",
              flush=True)

        _, text = agent.http("/metrics")
        expected = {"hbone_tls_handshake": 2, "hbone_h2_preface": 1, "hbone_stream_stalled": 1,
                    "hbone_write_stalled": 1, "outbound_request": 3}
        for kind, at_least in expected.items():
            value = metric_value(text, "podless_peer_timeouts_total", timeout=kind) or 0.0
            check(value >= at_least, f"podless_peer_timeouts_total{{timeout=\"{kind}\"}} = "
                  f"{value}, expected >= {at_least}")
        status, _ = agent.http("/healthz")
        check(status == 200, f"/healthz {status} after the slow peers")
        print(f"slow_peers: ok ({time.time() - started:.0f}s)")
