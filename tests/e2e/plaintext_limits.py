"""Plaintext workload ports against a local user who holds connections
(issue 18, point 1), through the real binary:

1. Per-peer limit by prefix: with --max-plaintext-connections-per-peer 8,
   an unprivileged local user (nobody, through setpriv, when root) opening
   connections to a `forward` workload's port from 40 different 127.x.y.z
   source addresses (all of 127/8 is one peer) gets 8 through and 32 reset
   at accept, counted in
   podless_limit_refused_total{limit="plaintext_connections_per_peer"}; the
   count spans ports (a second workload's port is refused too) and the
   agent's descriptors stay bounded; closed connections free their slots.
2. Idle timeout: with --plaintext-idle-timeout 2s, a spliced connection
   that carries no byte either way is reset (the backend's side closed
   too), counted in podless_peer_timeouts_total{timeout="plaintext_idle"};
   one that trickles bytes from the client, or only from the backend, is
   kept past the timeout."""

import os
import shutil
import socket
import socketserver
import subprocess
import threading
import time

from harness import check, connection_ended, fds, poll, running_agent, write


class Backend(socketserver.ThreadingTCPServer):
    """A forward target: echoes, or after b"ticks" sends b"." every 0.4 s
    25 times. `open` counts the connections it holds."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.open = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), BackendHandler)


class BackendHandler(socketserver.BaseRequestHandler):
    def handle(self):
        with self.server.lock:
            self.server.open += 1
        s = self.request
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                if data == b"ticks":
                    for _ in range(25):
                        time.sleep(0.4)
                        s.sendall(b".")
                    continue
                s.sendall(data)
        except OSError:
            pass
        with self.server.lock:
            self.server.open -= 1


def manifest(backend_port):
    return f"""apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: fwd, namespace: limits}}
spec:
  ports: [{{name: tcp, port: 18090}}]
  app: {{forward: {{address: "127.0.0.1:{backend_port}"}}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: hello, namespace: limits}}
spec:
  ports: [{{name: http, port: 18091, protocol: HTTP}}]
  app: {{echo: {{}}}}
"""


def refusals(agent):
    return agent.metric("podless_limit_refused_total", limit="plaintext_connections_per_peer")


def idle_timeouts(agent):
    return agent.metric("podless_peer_timeouts_total", timeout="plaintext_idle")


def connect_from(source, destination):
    """A connected socket, or None when the agent reset it right away (the
    reset can beat the end of a non-blocking connect)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(5)
    try:
        s.connect(destination)
    except ConnectionResetError:
        s.close()
        return None
    return s


def round_trip(s, payload=b"x"):
    """True when the connection carries `payload` to the backend and back;
    False when the agent reset or closed it instead."""
    try:
        s.sendall(payload)
        return s.recv(65536) == payload
    except (ConnectionResetError, BrokenPipeError):
        return False


# Run as an unprivileged local user: opens 40 connections to HOST:PORT, each
# from its own 127.x.y.z source, keeps those the agent serves, prints
# "<served> <refused>" and holds them until its stdin closes.
ATTACKER = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
held, refused = [], 0
for i in range(40):
    s = socket.socket()
    s.bind((f"127.{10 + i}.{i}.{200 - i}", 0))
    s.settimeout(5)
    try:
        s.connect((host, port))
        s.sendall(b"x")
        ok = s.recv(16) == b"x"
    except (ConnectionResetError, BrokenPipeError):
        ok = False
    if ok:
        held.append(s)
    else:
        refused += 1
        s.close()
print(len(held), refused, flush=True)
sys.stdin.read()
"""


def unprivileged(args):
    """`args` run as nobody (setpriv) when root, as this user otherwise."""
    if os.getuid() != 0 or not shutil.which("setpriv"):
        return args
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + args


def per_peer_limit(backend, state):
    with running_agent(extra_args=["--max-plaintext-connections-per-peer", "8"]) as agent:
        agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "m.yaml"), state))
        fwd = (agent.replica_addresses("fwd")[0], 18090)
        hello = agent.replica_addresses("hello")[0]
        baseline = fds(agent.proc.pid)

        # An unprivileged local user spreads its sources over 127/8.
        attacker = subprocess.Popen(
            unprivileged(["/usr/bin/python3", "-c", ATTACKER, fwd[0], str(fwd[1])]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            served, refused = map(int, attacker.stdout.readline().split())
            check(served == 8, f"{served} connections from 127/8 got through, limit 8")
            check(refused == 32, f"{refused} refused, expected 32")
            check(refusals(agent) == 32, f"refusals counted: {refusals(agent)}")
            # One client plus one backend descriptor per held connection.
            check(fds(agent.proc.pid) <= baseline + 2 * 8 + 4,
                  f"descriptors grew from {baseline} to {fds(agent.proc.pid)}")
            held = []
            for i in range(8):  # another local user (root here): the same peer, 127/8
                s = connect_from(f"127.0.0.{i + 2}", fwd)
                if s is not None and round_trip(s):
                    held.append(s)
            check(not held, "another local user got through while the peer is full")
            # The count is the peer's across ports: the echo app's port refuses it too.
            s = connect_from("127.99.0.1", (hello, 18091))
            answer = b""
            if s is not None:
                try:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    answer = s.recv(4096)
                except (ConnectionResetError, BrokenPipeError):
                    pass
                s.close()
            check(not answer.startswith(b"HTTP/1.1 200"), "the echo port served a 9th connection")
            check(refusals(agent) == 41, f"refusals counted: {refusals(agent)}")
        finally:
            attacker.stdin.close()
            attacker.wait(timeout=10)

        # The attacker's connections closed give their slots back (the agent
        # sees a close on its next loop turn).
        deadline = time.time() + 5
        while True:
            s = connect_from("127.77.7.7", fwd)
            ok = s is not None and round_trip(s)
            if ok or time.time() > deadline:
                break
            if s is not None:
                s.close()
            time.sleep(0.1)
        check(ok, "a freed slot was not given to a new connection")
        held.append(s)
        for s in held:
            s.close()


def idle_timeout(backend, state):
    with running_agent(extra_args=["--plaintext-idle-timeout", "2s"]) as agent:
        agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "m.yaml"), state))
        fwd = (agent.replica_addresses("fwd")[0], 18090)
        check(poll(lambda: backend.open == 0, 5, 0.05), "the backend still holds connections")
        baseline = fds(agent.proc.pid)

        silent = connect_from("127.0.0.1", fwd)
        check(round_trip(silent), "the forward workload does not answer")
        client_trickle = connect_from("127.0.0.1", fwd)
        server_trickle = connect_from("127.0.0.1", fwd)
        server_trickle.sendall(b"ticks")  # the backend sends for 10 s, the client nothing

        check(not connection_ended(silent, 1),
              "a silent connection was ended before the idle timeout")
        started, ticks = time.time(), b""
        server_trickle.settimeout(5)
        while time.time() - started < 4:  # twice the timeout
            check(round_trip(client_trickle, b"t"), "a trickling client was cut off")
            chunk = server_trickle.recv(64)
            check(chunk, f"a connection the backend kept sending on was ended after {ticks!r}")
            ticks += chunk
        check(connection_ended(silent, 5), "a silent connection was not ended by the idle timeout")
        silent.close()
        # Both sides of the idle connection went: the backend holds only the
        # two trickling ones.
        check(poll(lambda: backend.open == 2, 5, 0.05),
              f"the backend holds {backend.open} connections, expected the 2 trickling ones")
        check(idle_timeouts(agent) >= 1, f"idle timeouts counted: {idle_timeouts(agent)}")

        client_trickle.close()
        server_trickle.close()
        deadline = time.time() + 5
        while fds(agent.proc.pid) > baseline + 2 and time.time() < deadline:
            time.sleep(0.1)
        # (+2: the agent may open a descriptor or two on first use, e.g. metrics.)
        check(fds(agent.proc.pid) <= baseline + 2,
              f"descriptors not returned: {fds(agent.proc.pid)} vs {baseline}")


def main():
    backend = Backend()
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    state = manifest(backend.server_address[1])
    per_peer_limit(backend, state)
    idle_timeout(backend, state)
    backend.shutdown()
    print("PASS")


if __name__ == "__main__":
    main()
