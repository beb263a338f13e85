"""The agent out of file descriptors (issue 8): started with RLIMIT_NOFILE
at its baseline + 64, it gets CONNECT tunnels through the outbound entry
until accept() fails. It must then
  - refuse further connections promptly (a reset, not a hang in the backlog),
  - log a clear error naming the listener and EMFILE, and count it in
    podless_accept_errors_total,
  - not spin (CPU stays low while exhausted) and not crash,
and once the tunnels are released: /healthz answers 200, new tunnels and
HBONE connections are served, the API works."""

import base64
import os
import resource
import socket
import subprocess
import tempfile
import time

from harness import Agent, check, fds, free_port, write

HEADROOM = 64
ECHO_PORT = free_port()
MANIFEST = f"""apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: echo, namespace: fd}}
spec:
  serviceAccount: echo
  ports: [{{name: tcp, port: {ECHO_PORT}}}]
  app: {{echo: {{}}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: caller, namespace: fd}}
spec:
  serviceAccount: caller
  app: {{echo: {{}}}}
"""



def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def start_limited(agent, limit):
    def lower():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    log = open(agent.log_path, "ab")
    agent.proc = subprocess.Popen(agent.args(), stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=lower, start_new_session=True)
    log.close()
    agent.wait_ready()


def tunnel(port, request, timeout=5):
    """A CONNECT tunnel through the outbound entry: the socket once the
    agent answered 200, or the reason it did not."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionResetError:  # reset as soon as it was accepted
        return None, "reset without an answer"
    try:
        s.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                s.close()
                return None, "closed without an answer"
            head += chunk
    except (ConnectionResetError, BrokenPipeError):
        s.close()
        return None, "reset without an answer"
    except socket.timeout:
        s.close()
        return None, "no answer (hangs)"
    if not head.startswith(b"HTTP/1.1 200"):
        s.close()
        return None, head.split(b"\r\n", 1)[0].decode()
    return s, "200"


def echo(s):
    s.sendall(b"ping")
    return s.recv(4) == b"ping"


agent = Agent()
held = []
try:
    # First run: the baseline with everything warm (manifest applied, a
    # tunnel served once).
    agent.start()
    agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "fd.yaml"), MANIFEST))
    dump = agent.config_dump()
    target = [f"{r['address']}:{ECHO_PORT}" for w in dump["workloads"] if w["name"] == "echo"
              for r in w["replicas"]][0]
    proxy = dict(line.split("=", 1) for line in
                 agent.cli("credentials", "caller-0", "-n", "fd").stdout.split())["HTTP_PROXY"]
    userinfo = proxy.split("//", 1)[1].split("@", 1)[0]
    request = (f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic "
               f"{base64.b64encode(userinfo.encode()).decode()}\r\n\r\n").encode()
    s, why = tunnel(agent.outbound_port, request)
    check(s is not None and echo(s), f"warm-up tunnel: {why}")
    s.close()
    time.sleep(0.5)
    baseline = fds(agent.proc.pid)
    agent.stop()

    # Second run, same state, RLIMIT_NOFILE = baseline + HEADROOM.
    limit = baseline + HEADROOM
    start_limited(agent, limit)
    pid = agent.proc.pid
    s, why = tunnel(agent.outbound_port, request)
    check(s is not None and echo(s), f"first tunnel under the limit: {why}")
    held.append(s)

    refused = None
    for i in range(HEADROOM * 2):
        s, why = tunnel(agent.outbound_port, request)
        if s is None:
            refused = why
            break
        held.append(s)
    check(refused is not None, f"{len(held)} tunnels open and still no refusal (limit {limit})")
    check(refused != "no answer (hangs)", "a connection over the limit hangs instead of failing")
    print(f"fd_exhaustion: baseline {baseline} fds, limit {limit}: {len(held)} tunnels open, "
          f"the next one refused ({refused})", flush=True)
    check(len(held) >= HEADROOM // 2, f"refused after only {len(held)} tunnels")

    # While exhausted: further connections are refused promptly, an HBONE
    # connection too; the agent does not spin.
    for _ in range(3):
        started = time.time()
        s, why = tunnel(agent.outbound_port, request)
        check(s is None, "a tunnel opened although the agent has no descriptor left")
        check(time.time() - started < 3, f"refusal took {time.time() - started:.1f}s ({why})")
    try:
        with socket.create_connection(("127.0.0.1", agent.hbone_port), timeout=5) as h:
            got = h.recv(1)
    except ConnectionResetError:
        got = b""
    except socket.timeout:
        got = None
    check(got == b"", "an HBONE connection was not refused at once although the agent has no "
          f"descriptor left ({got!r})")
    ticks = cpu_ticks(pid)
    time.sleep(2)
    spent = cpu_ticks(pid) - ticks
    check(spent < 50, f"the agent used {spent} CPU ticks in 2 s while exhausted (spinning?)")
    check(agent.proc.poll() is None, f"agent died under fd exhaustion:\n{agent.log()}")

    log = agent.log()
    check(f"outbound listener 127.0.0.1:{agent.outbound_port}: accept failed: Too many open "
          "files (EMFILE)" in log, f"no clear EMFILE error in the log:\n{log}")
    check("RLIMIT_NOFILE" in log, f"the log does not name the limit:\n{log}")
    check(log.count("accept failed") < 20, f"the error is logged without rate limit:\n{log}")
    print("fd_exhaustion: the agent logged: " +
          [l for l in log.splitlines() if "accept failed" in l][0], flush=True)

    # Release: the agent serves again.
    for s in held:
        s.close()
    held.clear()

    def healthy():
        try:
            return agent.http("/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    deadline = time.time() + 10
    while time.time() < deadline and not healthy():
        time.sleep(0.2)
    check(healthy(), "/healthz not 200 after the connections were released")
    s, why = None, ""
    deadline = time.time() + 10
    while time.time() < deadline:
        s, why = tunnel(agent.outbound_port, request)
        if s is not None:
            break
        time.sleep(0.2)
    check(s is not None and echo(s), f"no tunnel after recovery: {why}")
    s.close()
    check("accepting connections again" in agent.log(), "recovery not logged")
    agent.cli("get", "workloads", "-n", "fd")
    _, metrics = agent.http("/metrics")
    line = 'podless_accept_errors_total{listener="outbound",error="EMFILE"} '
    count = [float(l[len(line):]) for l in metrics.splitlines() if l.startswith(line)]
    check(count and count[0] >= 1, f"EMFILE not counted:\n{metrics[:2000]}")
    check(agent.proc.poll() is None, "agent exited")
    print(f"fd_exhaustion: ok (recovered; {int(count[0])} accept errors counted)")
finally:
    for s in held:
        s.close()
    agent.cleanup()
