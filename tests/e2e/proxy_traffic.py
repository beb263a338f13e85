"""The proxy core through the real binary: workloads reached with curl via
the outbound entry (HTTP proxy and SOCKS5) by address, Service VIP and name;
per-workload credentials; L4 authorization by principal and port; the
plaintext ports; an independent HBONE client (Python ssl + h2) with a client
certificate from an operator CA; TLS failures refused without hurting other
connections; Istio metrics after known traffic; a workload deleted while a
connection is open."""

import json
import os
import socket
import subprocess
import tempfile

from harness import SOURCE_ROOT, addresses, check, metric_value, running_agent, write
from pki import make_ca, make_leaf

INTEROP = os.path.join(SOURCE_ROOT, "tests", "proxy", "hbone_interop_client.py")

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 2
  serviceAccount: web
  ports: [{name: http, port: 8080, protocol: HTTP}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: frontend, namespace: shop, labels: {app: frontend}}
spec:
  serviceAccount: frontend
  ports: [{name: tcp, port: 9000}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: intruder, namespace: shop}
spec:
  serviceAccount: intruder
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: db, namespace: shop, labels: {app: db}}
spec:
  serviceAccount: db
  ports: [{name: http, port: 8081, protocol: HTTP}]
  app: {static: {status: 200, body: "db-ok\\n", headers: {X-Db: "yes"}}}
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""

ALLOW_FRONTEND = """apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-from-frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
    - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend", "cluster.local/ns/ext/sa/tester"]}}]
      to: [{operation: {ports: ["8080"]}}]
"""

DENY_DB = """apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: db-deny-intruder, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  action: DENY
  rules:
    - from: [{source: {principals: ["cluster.local/ns/shop/sa/intruder"]}}]
"""


def sh(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kw)


def curl(*args):
    r = sh("curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}", *args)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def interop(agent, d, cert, key, authority, payload, alpn="h2", connect=None):
    r = sh("/usr/bin/python3", INTEROP, "--connect", connect or f"{authority.split(':')[0]}:{agent.hbone_port}",
           "--ca", f"{d}/bundle.pem", "--cert", cert, "--key", key, "--alpn", alpn,
           "--authority", authority, "--payload", payload)
    check(r.returncode == 0, f"interop client: {r.stderr}")
    return json.loads(r.stdout)


with tempfile.TemporaryDirectory() as d:
    make_ca(d, "ca")
    make_ca(d, "rogue")
    make_leaf(d, "ca", "tester", "spiffe://cluster.local/ns/ext/sa/tester")
    make_leaf(d, "rogue", "rogue-tester", "spiffe://cluster.local/ns/ext/sa/tester")

    with running_agent(extra_args=["--ca-cert", f"{d}/ca.crt", "--ca-key", f"{d}/ca.key"]) as agent:
        manifest = write(f"{d}/shop.yaml", MANIFEST)
        agent.cli("apply", "-f", manifest)
        write(f"{d}/bundle.pem", agent.cli("ca", "export").stdout)
        dump = agent.config_dump()
        addr = addresses(dump)
        vip = [s["vip"] for s in dump["services"] if s["name"] == "web"][0]
        proxy_port = agent.outbound_port

        creds = dict(line.split("=", 1) for line in
                     agent.cli("credentials", "frontend-0", "-n", "shop").stdout.split())
        front_proxy = creds["HTTP_PROXY"]
        check(f"127.0.0.1:{proxy_port}" in front_proxy, front_proxy)
        intruder_proxy = dict(line.split("=", 1) for line in agent.cli(
            "credentials", "intruder-0", "-n", "shop").stdout.split())["HTTP_PROXY"]

        # 1. By workload address, HTTP proxy (absolute-form GET).
        code, body = curl("--proxy", front_proxy, f"http://{addr['web-0']}:8080/hello")
        check(code == 200, f"via proxy to web-0: {code} {body}")
        echo = json.loads(body)
        check(echo["peer_spiffe_id"] == "spiffe://cluster.local/ns/shop/sa/frontend", body)
        check(echo["replica"] == "web-0" and echo["path"] == "/hello", body)

        # 2. By Service VIP and by name; both replicas get traffic.
        seen = set()
        for i in range(12):
            code, body = curl("--proxy", front_proxy, f"http://{vip}/r{i}")
            check(code == 200, f"VIP: {code} {body}")
            seen.add(json.loads(body)["replica"])
        check(seen == {"web-0", "web-1"}, f"VIP balanced over {seen}")
        for host in ("web.shop.svc", "web.shop.svc.cluster.local"):
            code, body = curl("--proxy", front_proxy, f"http://{host}/by-name")
            check(code == 200 and json.loads(body)["workload"] == "web", f"{host}: {code} {body}")

        # 3. CONNECT tunnel and SOCKS5 with the same credentials.
        code, body = curl("--proxytunnel", "--proxy", front_proxy, f"http://{addr['db-0']}:8081/")
        check(code == 200 and body.strip() == "db-ok", f"CONNECT to db: {code} {body!r}")
        user, password = front_proxy.split("//", 1)[1].split("@")[0].split(":")
        code, body = curl("--socks5-hostname", f"127.0.0.1:{proxy_port}",
                          "--proxy-user", f"{user}:{password}", "http://web.shop.svc/socks")
        check(code == 200 and json.loads(body)["peer_spiffe_id"].endswith("/sa/frontend"),
              f"SOCKS5: {code} {body}")

        # 4. No credentials, wrong credentials: 407; nobody speaks as frontend.
        code, _ = curl("--proxy", f"http://127.0.0.1:{proxy_port}", f"http://{vip}/")
        check(code == 407, f"no credentials: {code}")
        code, _ = curl("--proxy", f"http://{user}:wrong@127.0.0.1:{proxy_port}", f"http://{vip}/")
        check(code == 407, f"wrong password: {code}")
        r = sh("curl", "-sS", "--max-time", "10", "--socks5-hostname", f"127.0.0.1:{proxy_port}",
               "--proxy-user", f"{user}:wrong", "http://web.shop.svc/")
        check(r.returncode != 0, "SOCKS5 with a wrong password worked")

        # 5. Plaintext port on the workload's own address (no identity).
        code, body = curl(f"http://{addr['web-1']}:8080/plain")
        check(code == 200 and json.loads(body)["peer_spiffe_id"] is None, f"plaintext: {body}")

        # 6. Authorization: ALLOW by principal and port, DENY by principal.
        agent.cli("apply", "-f", write(f"{d}/allow.yaml", ALLOW_FRONTEND + "---\n" + DENY_DB))
        code, _ = curl("--proxy", front_proxy, f"http://{vip}/allowed")
        check(code == 200, f"frontend allowed: {code}")
        code, _ = curl("--proxy", intruder_proxy, f"http://{vip}/denied")
        check(code == 403, f"intruder to web (not allowed): {code}")
        code, _ = curl("--proxy", intruder_proxy, f"http://{addr['db-0']}:8081/")
        check(code == 403, f"intruder to db (DENY): {code}")
        code, body = curl("--proxy", front_proxy, f"http://{addr['db-0']}:8081/")
        check(code == 200, f"frontend to db: {code}")

        # 7. An independent HBONE client with its own cert from the operator CA.
        req = "GET /interop HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n"
        out = interop(agent, d, f"{d}/tester.crt", f"{d}/tester.key",
                      f"{addr['web-0']}:8080", req)
        check("error" not in out, str(out))
        check(out["peer"] == "spiffe://cluster.local/ns/shop/sa/web", f"server identity {out}")
        stream = out["streams"][0]
        check(stream["status"] == 200, str(stream))
        check('"peer_spiffe_id":"spiffe://cluster.local/ns/ext/sa/tester"' in
              stream["data"].replace(" ", ""), stream["data"])
        # Policy applies over HBONE too: tester may reach 8080 only... and an
        # unknown port or address is a per-stream status, not a reset.
        out = interop(agent, d, f"{d}/tester.crt", f"{d}/tester.key",
                      f"{addr['web-0']}:9999", "x")
        check(out["streams"][0]["status"] in (403, 404), str(out))
        # A rogue CA's cert, and wrong ALPN: refused, while a good client
        # running at the same time is served.
        good = subprocess.Popen(["/usr/bin/python3", INTEROP, "--connect",
                                 f"{addr['web-1']}:{agent.hbone_port}", "--ca", f"{d}/bundle.pem",
                                 "--cert", f"{d}/tester.crt", "--key", f"{d}/tester.key",
                                 "--authority", f"{addr['web-1']}:8080", "--payload", req],
                                stdout=subprocess.PIPE, text=True)
        out = interop(agent, d, f"{d}/rogue-tester.crt", f"{d}/rogue-tester.key",
                      f"{addr['web-0']}:8080", req)
        check("error" in out or out["streams"][0]["status"] != 200, f"rogue cert served: {out}")
        out = interop(agent, d, f"{d}/tester.crt", f"{d}/tester.key",
                      f"{addr['web-0']}:8080", req, alpn="http/1.1")
        check("error" in out or not out["streams"] or out["streams"][0]["status"] != 200,
              f"wrong ALPN served: {out}")
        good_out = json.loads(good.communicate(timeout=30)[0])
        check(good_out["streams"][0]["status"] == 200, f"good client hurt: {good_out}")

        # 8. Metrics after known traffic.
        _, metrics = agent.http("/metrics")
        opened = metric_value(metrics, "istio_tcp_connections_opened_total",
                              reporter="destination", destination_workload="web") or 0.0
        check(opened >= 16, f"destination-reported connections to web: {opened}")
        src = metric_value(metrics, "istio_tcp_connections_opened_total", reporter="source",
                           source_principal="spiffe://cluster.local/ns/shop/sa/frontend") or 0.0
        check(src >= 15, f"source-reported connections from frontend: {src}")
        received = metric_value(metrics, "istio_tcp_received_bytes_total",
                                destination_workload="web") or 0.0
        check(received > 0, "received bytes")
        denied = metric_value(metrics, "podless_authz_denied_total") or 0.0
        check(denied >= 2, "denials counted")

        # 9. A workload deleted while a connection is open: closed, no crash.
        with socket.create_connection((addr["frontend-0"], 9000), timeout=10) as s:
            s.sendall(b"ping")
            check(s.recv(4) == b"ping", "TCP echo")
            agent.cli("delete", "workload", "frontend", "-n", "shop")
            s.settimeout(10)
            try:
                rest = s.recv(16)
            except ConnectionResetError:
                rest = b""
            check(rest == b"", f"connection survived its workload's deletion: {rest!r}")
        code, _ = curl("--proxy", front_proxy, f"http://{vip}/")
        check(code == 407, f"deleted workload's credentials still work: {code}")
        status, _ = agent.http("/ready")
        check(status == 200, "agent unhealthy after the tests")
        proxy_dump = agent.config_dump()["proxy"]
        check(any(l["name"] == "hbone" for l in proxy_dump["listeners"]), str(proxy_dump))

print("proxy_traffic: ok")
