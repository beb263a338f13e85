"""Idle and trickling connections to an in-proxy app are ended (issue 18,
point 1): with --app-request-timeout 1s, connections to a workload's echo
port that send nothing, send half a request head, or stay open after a
keep-alive response are reset within a few seconds, and their descriptors
come back; a prompt request is answered as before."""

import os
import socket
import time

from harness import check, connection_ended, fds, running_agent, write

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: hello, namespace: idle}
spec:
  ports: [{name: http, port: 18080, protocol: HTTP}]
  app: {echo: {}}
"""


def main():
    with running_agent(extra_args=["--app-request-timeout", "1s"]) as agent:
        agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "m.yaml"), MANIFEST))
        address = agent.replica_addresses("hello")[0]
        baseline = fds(agent.proc.pid)

        idle = [socket.create_connection((address, 18080), timeout=5) for _ in range(50)]
        half = socket.create_connection((address, 18080), timeout=5)
        half.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        kept = socket.create_connection((address, 18080), timeout=5)
        kept.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        check(kept.recv(4096).startswith(b"HTTP/1.1 200"), "a prompt request was not answered")
        # Each connection ended by the agent was accepted by it: one still in
        # the backlog would never end.

        started = time.time()
        for s in idle + [half, kept]:
            check(connection_ended(s, 5), "an idle connection was not ended by the agent")
            s.close()
        took = time.time() - started
        check(took < 5, f"idle connections lasted {took:.1f}s past a 1 s timeout")
        deadline = time.time() + 5
        while fds(agent.proc.pid) > baseline + 2 and time.time() < deadline:
            time.sleep(0.1)
        check(fds(agent.proc.pid) <= baseline + 2,
              f"descriptors not returned: {fds(agent.proc.pid)} vs {baseline}")
    print("PASS")


if __name__ == "__main__":
    main()
