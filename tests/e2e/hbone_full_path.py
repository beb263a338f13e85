"""podless client -> podless server over real HBONE through the binary: with
--no-local-short-circuit, traffic between local workloads leaves through the
HBONE client pool (mTLS as the source identity) and arrives through the HBONE
listener, so both ends of the wire format are exercised by the agent itself.
Checks identities on both sides, pooling, and authorization at the
destination."""

import hashlib
import json
import os
import socket
import threading
import time

from harness import addresses, check, curl_via_proxy as curl, proxy_for, running_agent
from outbound_connect import tunnel

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
kind: Workload
metadata: {name: tcp-echo, namespace: prod, labels: {app: tcp-echo}}
spec:
  ports: [{name: echo, port: 7000}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: legacy, namespace: prod}
spec:
  ports: [{name: http, port: 7001}]
  app: {forward: {address: "127.0.0.1:FORWARD_PORT"}}
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {name: nobody, namespace: prod}
spec:
  selector: {app: none-such}
  ports: [{port: 80}]
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


# A plain TCP server on loopback for the `forward` app.
backend = socket.socket()
backend.bind(("127.0.0.1", 0))
backend.listen(8)


def serve_backend():
    while True:
        try:
            conn, _ = backend.accept()
        except OSError:
            return
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nlegacy\n")


threading.Thread(target=serve_backend, daemon=True).start()

with running_agent(extra_args=["--no-local-short-circuit", "--hbone-idle-timeout", "2s"]) as agent:
    agent.cli("apply", "-f", "-",
              input=MANIFEST.replace("FORWARD_PORT", str(backend.getsockname()[1])))
    caller = proxy_for(agent, "caller-0", "prod")
    stranger = proxy_for(agent, "stranger-0", "prod")

    replicas = set()
    for i in range(10):
        code, body = curl(caller, f"http://api.prod.svc/call{i}")
        check(code == 200, f"caller -> api over HBONE: {code} {body}")
        echo = json.loads(body)
        check(echo["peer_spiffe_id"] == "spiffe://cluster.local/ns/prod/sa/caller", body)
        check(echo["spiffe_id"] == "spiffe://cluster.local/ns/prod/sa/api", body)
        replicas.add(echo["replica"])
    check(replicas == {"api-0", "api-1"}, f"balanced over {replicas}")

    code, _ = curl(stranger, "http://api.prod.svc/")
    check(code == 403, f"stranger allowed over HBONE: {code}")

    dump = agent.config_dump()["proxy"]
    pools = dump["pools"]
    check(len(pools) >= 1, f"no HBONE pool used: {dump}")
    caller_pools = [p for p in pools if "caller" in json.dumps(p)]
    check(caller_pools, f"no pool for the caller identity: {pools}")
    # 10 requests to 2 replicas: pooled, so at most a connection per replica
    # on each worker (each worker pools its own).
    total = sum(p.get("connections", 0) for p in caller_pools)
    bound = 2 * max(1, dump["workers"])
    check(1 <= total <= bound, f"{total} pooled connections for 10 requests: {caller_pools}")

    _, metrics = agent.http("/metrics")
    tls_lines = [l for l in metrics.splitlines()
                 if l.startswith("istio_tcp_connections_opened_total{")
                 and 'reporter="destination"' in l and 'destination_workload="api"' in l]
    check(tls_lines and all('connection_security_policy="mutual_tls"' in l for l in tls_lines),
          "\n".join(tls_lines))
    # 8 MiB through one HBONE stream and back: flow control both ways, and
    # the caller's half-close reaches the echo app, whose close comes back.
    dump = agent.config_dump()
    addr = addresses(dump)
    payload = os.urandom(8 << 20)
    s = tunnel(caller, f"{addr['tcp-echo-0']}:7000")
    received = bytearray()

    def reader():
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                return
            received.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    t.join(60)
    s.close()
    check(hashlib.sha256(received).digest() == hashlib.sha256(payload).digest(),
          f"echoed {len(received)} of {len(payload)} bytes, or corrupted")

    # The forward app splices to a local address.
    code, body = curl(caller, f"http://{addr['legacy-0']}:7001/")
    check(code == 200 and body.strip() == "legacy", f"forward app: {code} {body!r}")

    # A Service with no endpoints fails clearly; endpoints follow scaling.
    code, _ = curl(caller, "http://nobody.prod.svc/")
    check(code in (502, 503), f"service without endpoints: {code}")
    agent.cli("apply", "-f", "-", input=MANIFEST.replace("replicas: 2", "replicas: 3").replace(
        "FORWARD_PORT", str(backend.getsockname()[1])))
    seen = set()
    for i in range(30):
        code, body = curl(caller, f"http://api.prod.svc/again{i}")
        check(code == 200, f"after scale: {code}")
        seen.add(json.loads(body)["replica"])
    check("api-2" in seen, f"new replica gets no traffic: {seen}")

    # Idle pooled connections are closed after --hbone-idle-timeout.
    deadline = time.time() + 15
    while time.time() < deadline:
        pools = agent.config_dump()["proxy"]["pools"]
        if sum(p.get("connections", 0) for p in pools) == 0:
            break
        time.sleep(0.25)
    check(sum(p.get("connections", 0) for p in pools) == 0, f"idle pool not closed: {pools}")
    _, metrics = agent.http("/metrics")
    check("podless_hbone_connections_active" in metrics and "podless_hbone_streams_active" in metrics,
          "HBONE gauges missing")

    status, _ = agent.http("/ready")
    check(status == 200, "agent unhealthy")

backend.close()

# An HBONE destination that cannot be reached surfaces as 502 at once, not a
# hang: here the HBONE listener is on 127.0.0.1 only, so dialing a workload
# address at that port is refused.
probe = running_agent(extra_args=["--no-local-short-circuit", "--hbone-address", "127.0.0.1:0"])
with probe as agent:
    agent.cli("apply", "-f", "-", input=MANIFEST.replace("FORWARD_PORT", "9"))
    start = time.time()
    code, _ = curl(proxy_for(agent, "caller-0", "prod"), "http://api.prod.svc/unreachable")
    check(code == 502, f"unreachable HBONE destination: {code}")
    check(time.time() - start < 15, "unreachable destination took too long")

print("hbone_full_path: ok")
