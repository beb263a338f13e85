"""podless client -> podless server over real HBONE through the binary: with
--no-local-short-circuit, traffic between local workloads leaves through the
HBONE client pool (mTLS as the source identity) and arrives through the HBONE
listener, so both ends of the wire format are exercised by the agent itself.
Checks identities on both sides, pooling, and authorization at the
destination."""

import json
import subprocess

from harness import check, running_agent

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


def proxy_for(agent, replica):
    out = agent.cli("credentials", replica, "-n", "prod").stdout
    return dict(line.split("=", 1) for line in out.split())["HTTP_PROXY"]


def curl(proxy, url):
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "--proxy", proxy, "-o", "-", "-w",
                        "\n%{http_code}", url], capture_output=True, text=True, timeout=30)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


with running_agent(extra_args=["--no-local-short-circuit"]) as agent:
    agent.cli("apply", "-f", "-", input=MANIFEST)
    caller = proxy_for(agent, "caller-0")
    stranger = proxy_for(agent, "stranger-0")

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
    # 10 requests to 2 replicas: pooled, so at most a connection per replica.
    total = sum(p.get("connections", 0) for p in caller_pools)
    check(1 <= total <= 2, f"{total} pooled connections for 10 requests: {caller_pools}")

    _, metrics = agent.http("/metrics")
    tls_lines = [l for l in metrics.splitlines()
                 if l.startswith("istio_tcp_connections_opened_total{")
                 and 'reporter="destination"' in l and 'destination_workload="api"' in l]
    check(tls_lines and all('connection_security_policy="mutual_tls"' in l for l in tls_lines),
          "\n".join(tls_lines))
    status, _ = agent.http("/ready")
    check(status == 200, "agent unhealthy")

print("hbone_full_path: ok")
