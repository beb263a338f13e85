"""`forward` targets that would loop or pivot are refused at apply (issue 18,
point 9): a workload address (node CIDR), a Service address (service CIDR),
and the agent's own listeners (admin, HBONE, outbound entry), by address or
as localhost. Each refusal names the field and why, and changes nothing; a
forward to an ordinary local server is accepted and serves."""

import http.server
import os
import tempfile
import threading

from harness import addresses, check, running_agent, write

TEMPLATE = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: fwd, namespace: f}}
spec:
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  app: {{forward: {{address: "{target}"}}}}
"""


def main():
    d = tempfile.mkdtemp(prefix="podless-forward-")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with running_agent() as agent:
        refused = {
            "127.64.0.9:8080": "node CIDR",
            "127.128.0.9:80": "service CIDR",
            f"127.0.0.1:{agent.admin_port}": "--admin-address",
            f"localhost:{agent.admin_port}": "--admin-address",
            f"127.0.0.1:{agent.hbone_port}": "--hbone-address",
            f"127.0.0.1:{agent.outbound_port}": "--outbound-address",
        }
        for target, why in refused.items():
            r = agent.cli("apply", "-f", write(os.path.join(d, "f.yaml"),
                                               TEMPLATE.format(target=target)), expect_ok=False)
            check(r.returncode != 0, f"a forward to {target} was accepted")
            check("spec.app.forward.address" in r.stderr and why in r.stderr,
                  f"the refusal of {target} does not say why: {r.stderr}")
            check("fwd" not in agent.cli("get", "workloads", "-n", "f").stdout,
                  "a refused apply changed something")
        good = f"127.0.0.1:{server.server_address[1]}"
        agent.cli("apply", "-f", write(os.path.join(d, "f.yaml"), TEMPLATE.format(target=good)))
        address = addresses(agent.config_dump())["fwd-0"]
        import urllib.request
        with urllib.request.urlopen(f"http://{address}:8080/", timeout=10) as resp:
            check(resp.status == 200, f"the forward did not serve: {resp.status}")
    server.shutdown()
    print("PASS")


if __name__ == "__main__":
    main()
