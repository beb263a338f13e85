"""The proxy's worker threads (--workers N), through the real binary: each
worker runs its own loop, and their listeners share the ports
(SO_REUSEPORT).

- /config_dump reports the workers; the threads are named proxy-0, proxy-1;
  every proxy port (HBONE, outbound, each workload port, also one applied
  later) has one listening socket per worker;
- connections spread over the workers (worker_connections), and all of them
  work;
- HBONE between workers (--no-local-short-circuit): each worker's TLS
  handshakes get their SVIDs from the main loop; identities are checked and
  the policy is enforced;
- deleting a workload ends its connections on every worker;
- --max-hbone-connections-per-peer counts across the workers;
- a second agent cannot take the first one's HBONE port, though it is
  bound with SO_REUSEPORT;
- SIGTERM with connections open on every worker exits 0 at once;
- --workers 0 runs the proxy on the main loop."""

import json
import os
import socket
import time

from harness import (Agent, check, connection_ended, curl_via_proxy as curl, free_port, proxy_for,
                     replicas, running_agent)

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: api, namespace: prod, labels: {app: api}}
spec:
  replicas: 2
  serviceAccount: api
  ports: [{name: http, port: 8080, protocol: HTTP}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: echo, namespace: prod}
spec:
  replicas: 2
  serviceAccount: echo
  ports: [{name: tcp, port: 9000}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: caller, namespace: prod}
spec:
  serviceAccount: caller
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: stranger, namespace: prod}
spec:
  serviceAccount: stranger
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {name: api, namespace: prod}
spec:
  selector: {app: api}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: api-allow-caller, namespace: prod}
spec:
  selector: {matchLabels: {app: api}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/prod/sa/caller"]}}]}]
"""

LATER = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: late, namespace: prod}
spec:
  serviceAccount: late
  ports: [{name: tcp, port: 9100}]
  app: {echo: {}}
"""


def listening_sockets(port):
    """Listening TCP sockets on `port` in this network namespace."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                        count += 1
        except FileNotFoundError:
            pass
    return count


def plaintext_sockets(agent, port):
    """The agent's plaintext sockets (address, port) on `port`, as /config_dump lists them."""
    return len({l["address"] for l in agent.config_dump()["proxy"]["listeners"]
                if l["name"] == "plaintext" and l["address"].endswith(f":{port}")})


def thread_names(pid):
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            names.append(f.read().strip())
    return names


def open_echo(address, port):
    """A TCP connection to a workload's echo port, proven to reach the app."""
    s = socket.create_connection((address, port), timeout=10)
    s.sendall(b"ping")
    got = b""
    while len(got) < 4:
        chunk = s.recv(4 - len(got))
        check(chunk, f"echo at {address}:{port} closed")
        got += chunk
    check(got == b"ping", f"echo at {address}:{port} answered {got!r}")
    return s


HTTP_PORT, TCP_PORT, LATE_PORT = free_port(), free_port(), free_port()
MANIFEST = MANIFEST.replace("8080", str(HTTP_PORT)).replace("9000", str(TCP_PORT))
LATER = LATER.replace("9100", str(LATE_PORT))

with running_agent(extra_args=["--workers", "2", "--no-local-short-circuit"]) as agent:
    agent.cli("apply", "-f", "-", input=MANIFEST)
    dump = agent.config_dump()["proxy"]
    check(dump["workers"] == 2, f"workers: {dump['workers']}")
    names = thread_names(agent.proc.pid)
    check("proxy-0" in names and "proxy-1" in names, f"worker threads: {names}")
    for port, what in ((agent.hbone_port, "HBONE"), (agent.outbound_port, "outbound"),
                       (HTTP_PORT, "workload HTTP port"), (TCP_PORT, "workload TCP port")):
        # A workload port has a socket per replica address (plaintext_ports.py).
        n, sockets = listening_sockets(port), plaintext_sockets(agent, port) or 1
        check(n == 2 * sockets,
              f"{what} ({port}) has {n} listening sockets, want one per worker and address")

    # Connections spread over the workers, and every one reaches its app.
    addr = replicas(agent.config_dump())
    held = [open_echo(addr[f"echo-{i % 2}"]["address"], TCP_PORT) for i in range(40)]
    per_worker = agent.config_dump()["proxy"]["worker_connections"]
    check(len(per_worker) == 2 and sum(per_worker) == 40 and min(per_worker) > 0,
          f"40 connections over the workers: {per_worker}")
    print(f"40 connections per worker: {per_worker}")

    # A port applied later is served by every worker too.
    agent.cli("apply", "-f", "-", input=LATER)
    n = listening_sockets(LATE_PORT)
    check(n == 2 * plaintext_sockets(agent, LATE_PORT),
          f"late workload port has {n} listening sockets")
    late_address = replicas(agent.config_dump())["late-0"]["address"]
    late = [open_echo(late_address, LATE_PORT) for _ in range(10)]

    # HBONE from the workers' outbound entries to the workers' HBONE server:
    # every new outbound connection lands on some worker, whose pool dials
    # HBONE with a certificate the main loop issued.
    caller = proxy_for(agent, "caller-0", "prod")
    stranger = proxy_for(agent, "stranger-0", "prod")
    replicas = set()
    for i in range(16):
        code, body = curl(caller, f"http://api.prod.svc/call{i}")
        check(code == 200, f"caller -> api over HBONE: {code} {body}")
        echo = json.loads(body)
        check(echo["peer_spiffe_id"] == "spiffe://cluster.local/ns/prod/sa/caller", body)
        check(echo["spiffe_id"] == "spiffe://cluster.local/ns/prod/sa/api", body)
        replicas.add(echo["replica"])
    check(replicas == {"api-0", "api-1"}, f"balanced over {replicas}")
    code, _ = curl(stranger, "http://api.prod.svc/")
    check(code == 403, f"stranger allowed over HBONE: {code}")
    pools = agent.config_dump()["proxy"]["pools"]
    check(pools and all(p["identity"] == "spiffe://cluster.local/ns/prod/sa/api" for p in pools),
          f"pools: {pools}")

    # Deleting the workload ends its connections, whichever worker has them.
    agent.cli("delete", "workload", "late", "-n", "prod")
    for s in late:
        check(connection_ended(s, 5), "a deleted workload's connection stayed open")
        s.close()

    # SIGTERM with connections open on both workers: a prompt, clean exit.
    started = time.time()
    rc = agent.stop()
    elapsed = time.time() - started
    check(rc == 0, f"agent exited {rc} on SIGTERM:\n{agent.log()}")
    check(elapsed < 5, f"agent took {elapsed:.1f}s to stop with connections open")
    for s in held:
        check(connection_ended(s, 2), "a connection outlived the agent")
        s.close()

with running_agent(extra_args=["--workers", "2",
                               "--max-hbone-connections-per-peer", "3"]) as limited:
    # The per-peer limit (3) counts across the workers: of 8 raw connections
    # to the HBONE port (a TLS handshake never started), 3 stay open and 5 are
    # refused, however the kernel spreads them.
    # (A refused one may be reset before the non-blocking connect under
    # create_connection's timeout returns: that is a refusal too.)
    raw, reset_at_connect = [], 0
    for _ in range(8):
        try:
            raw.append(socket.create_connection(("127.0.0.1", limited.hbone_port), timeout=5))
        except ConnectionResetError:
            reset_at_connect += 1
    time.sleep(0.5)
    refused = reset_at_connect + len([s for s in raw if connection_ended(s, 0.3)])
    check(refused == 5, f"{8 - refused} of 8 connections from one peer "
          "open with --max-hbone-connections-per-peer 3")
    for s in raw:
        s.close()

    # A second agent on the same HBONE port is refused, SO_REUSEPORT or not.
    second = Agent(extra_args=["--workers", "2"])
    second.hbone_port = limited.hbone_port
    try:
        second.start(wait=False)
        rc = second.proc.wait(timeout=20)
        check(rc != 0, "a second agent started on the first one's HBONE port")
        check("address already in use" in second.log() and str(limited.hbone_port) in second.log(),
              f"second agent's error: {second.log()}")
    finally:
        second.cleanup()


with running_agent(extra_args=["--workers", "0"]) as agent:
    agent.cli("apply", "-f", "-", input=MANIFEST)
    dump = agent.config_dump()["proxy"]
    check(dump["workers"] == 0 and len(dump["worker_connections"]) == 1, f"--workers 0: {dump}")
    check(not any(n.startswith("proxy-") for n in thread_names(agent.proc.pid)),
          "--workers 0 started worker threads")
    check(listening_sockets(agent.hbone_port) == 1, "--workers 0: HBONE socket count")
    code, body = curl(proxy_for(agent, "caller-0", "prod"), "http://api.prod.svc/")
    check(code == 200, f"--workers 0: {code} {body}")

print("proxy workers: ok")
