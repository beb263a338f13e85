"""AuthorizationPolicy's HTTP attributes through the real binary (issue 14):

1. On an HTTP port (in-proxy echo app) an ALLOW rule with methods and paths
   is enforced per request: a GET on an allowed path passes, a POST and a GET
   on another path get 403 "RBAC: access denied".
2. The same ALLOW rule on a TCP port of the same workload matches nothing, as
   in ztunnel: the connection is refused (403 on CONNECT); `apply` warns so.
3. On an HTTP port served by a forward app (a real HTTP server the test
   runs), request heads are checked as they stream through: the backend
   never sees the denied request.
4. A DENY policy in the root namespace (istio-system) applies to the shop
   namespace's workload, path by path.
5. `get -o yaml` prints the HTTP attributes in Istio's spelling, and the
   output applies again unchanged."""

import http.server
import json
import tempfile
import threading

from harness import (addresses, check, curl_via_proxy as curl, free_port, proxy_for,
                     running_agent, write)
from outbound_connect import connect

BACKEND_PORT = free_port()

MANIFEST = f"""apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: web, namespace: shop, labels: {{app: web}}}}
spec:
  serviceAccount: web
  ports: [{{name: http, port: 8080, protocol: HTTP}}, {{name: raw, port: 9000}}]
  app: {{echo: {{}}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: api, namespace: shop, labels: {{app: api}}}}
spec:
  serviceAccount: api
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  app: {{forward: {{address: "127.0.0.1:{BACKEND_PORT}"}}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: client, namespace: shop}}
spec:
  serviceAccount: client
  app: {{echo: {{}}}}
"""

POLICY = """apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: read-only, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
    - to: [{operation: {methods: [GET, HEAD], paths: ["/public/*"]}}]
---
apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: api-read-only, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  action: ALLOW
  rules:
    - from: [{source: {serviceAccounts: [client]}}]
      to: [{operation: {methods: [GET]}}]
"""

ROOT_DENY = """apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-secrets, namespace: istio-system}
spec:
  action: DENY
  rules:
    - to: [{operation: {paths: ["/public/secret*"]}}]
"""


class Backend(http.server.BaseHTTPRequestHandler):
    seen = []

    def handle_one(self):
        Backend.seen.append(f"{self.command} {self.path}")
        body = b"backend-ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = handle_one

    def log_message(self, *args):
        pass


def connect_status(proxy, target):
    """The status line of a CONNECT to `target` through the outbound entry, and
    the echo of a line sent through the tunnel when it opens."""
    status, s = connect(proxy, target, timeout=10)
    with s:
        echoed = b""
        if " 200" in status:
            s.sendall(b"ping\n")
            while not echoed.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                echoed += chunk
        return status, echoed


server = http.server.ThreadingHTTPServer(("127.0.0.1", BACKEND_PORT), Backend)
# A denied first request resets the backend connection the forward app had
# opened; that is expected, not worth a traceback.
server.handle_error = lambda request, client_address: None
threading.Thread(target=server.serve_forever, daemon=True).start()

with tempfile.TemporaryDirectory() as d, running_agent() as agent:
    agent.cli("apply", "-f", write(f"{d}/shop.yaml", MANIFEST))
    dump = agent.config_dump()
    addr = addresses(dump)
    proxy = proxy_for(agent, "client-0", "shop")
    web = f"http://{addr['web-0']}:8080"
    api = f"http://{addr['api-0']}:8080"

    # Before any policy: everything passes, on both ports.
    code, _ = curl(proxy, f"{web}/private", "-X", "POST")
    check(code == 200, f"no policy, POST: {code}")
    status, echoed = connect_status(proxy, f"{addr['web-0']}:9000")
    check(" 200" in status and echoed == b"ping\n", f"no policy, TCP port: {status} {echoed!r}")

    applied = agent.cli("apply", "-f", write(f"{d}/policy.yaml", POLICY))
    warnings = applied.stderr
    check("authorizationpolicy/read-only" in warnings and
          "spec.rules[0]: methods, paths apply on HTTP ports only; on TCP ports this ALLOW "
          "rule matches nothing (as ztunnel), e.g. TCP port 9000 of workload shop/web" in warnings,
          f"apply warning for the TCP port: {warnings!r}")
    check("api-read-only" not in warnings, f"api has HTTP ports only: {warnings!r}")

    # 1. HTTP port, in-proxy app: per request.
    code, body = curl(proxy, f"{web}/public/index.html")
    check(code == 200 and json.loads(body)["method"] == "GET", f"GET allowed: {code} {body}")
    code, body = curl(proxy, f"{web}/public/index.html", "-X", "POST", "-d", "x=1")
    check(code == 403 and body == "RBAC: access denied", f"POST denied: {code} {body!r}")
    code, body = curl(proxy, f"{web}/private")
    check(code == 403 and body == "RBAC: access denied", f"path denied: {code} {body!r}")
    code, body = curl(proxy, f"{web}/public/../private")
    check(code == 403, f"dot-segments resolved before matching: {code} {body!r}")

    # 2. The same rule on the TCP port matches nothing: the connection is refused.
    status, echoed = connect_status(proxy, f"{addr['web-0']}:9000")
    check(" 403" in status and not echoed, f"TCP port under an HTTP ALLOW rule: {status}")

    # 3. A forward app on an HTTP port: the backend never sees the denied request.
    code, body = curl(proxy, f"{api}/items")
    check(code == 200 and body.strip() == "backend-ok", f"forward GET: {code} {body!r}")
    code, body = curl(proxy, f"{api}/items", "-X", "DELETE")
    check(code == 403 and body == "RBAC: access denied", f"forward DELETE: {code} {body!r}")
    check(Backend.seen == ["GET /items"], f"the backend saw {Backend.seen}")

    # 4. Root namespace: a DENY policy in istio-system reaches shop's workloads.
    agent.cli("apply", "-f", write(f"{d}/root.yaml", ROOT_DENY))
    code, _ = curl(proxy, f"{web}/public/secret.txt")
    check(code == 403, f"root-namespace DENY: {code}")
    code, _ = curl(proxy, f"{web}/public/open.txt")
    check(code == 200, f"root-namespace DENY spares other paths: {code}")

    # 5. get -o yaml: Istio's spelling, applies again unchanged.
    yaml_out = agent.cli("get", "authorizationpolicy", "read-only", "-n", "shop", "-o", "yaml").stdout
    check("methods:" in yaml_out and "paths:" in yaml_out and "/public/*" in yaml_out, yaml_out)
    again = agent.cli("apply", "-f", write(f"{d}/again.yaml", yaml_out))
    check("unchanged" in again.stdout, f"re-apply: {again.stdout!r} {again.stderr!r}")

server.shutdown()
print("ok")
