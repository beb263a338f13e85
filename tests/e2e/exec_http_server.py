"""exec workloads through the real binary: a Python HTTP server run by the
agent, reached on its workload address's plaintext port and from another
workload through the outbound entry and HBONE via a Service; readiness
(an httpGet probe) removing and adding the Service endpoint; a process
calling another workload through its own HTTP_PROXY, the callee seeing the
caller's SPIFFE ID; restart count and state in /config_dump."""

import json
import os
import subprocess
import tempfile

from exec_util import exec_agent, replica
from harness import check, free_port, wait_for, write

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: files, namespace: shop, labels: {{app: files}}}}
spec:
  serviceAccount: files
  ports: [{{name: http, port: {port}}}]
  app:
    exec:
      command: [python3, -m, http.server, "$(PORT)", --bind, "$(PODLESS_LISTEN_ADDRESS)"]
      workingDir: {root}
      readinessProbe: {{httpGet: {{path: /ready.txt, port: http}}, periodSeconds: 1, failureThreshold: 1}}
      terminationGracePeriodSeconds: 5
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {{name: files, namespace: shop}}
spec:
  selector: {{app: files}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: echo, namespace: shop, labels: {{app: echo}}}}
spec:
  serviceAccount: echo
  ports: [{{name: http, port: {echo_port}, protocol: HTTP}}]
  app: {{echo: {{}}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: caller, namespace: shop}}
spec:
  serviceAccount: caller
  app:
    exec:
      command: [sh, -c, "while :; do curl -sS --max-time 5 http://echo.shop.svc.cluster.local:{echo_port}/who > {root}/caller.out.tmp 2>&1 && mv {root}/caller.out.tmp {root}/caller.out; sleep 1; done"]
      env: [{{name: MARK, value: "podless-e2e-$(PODLESS_REPLICA)"}}]
      terminationGracePeriodSeconds: 2
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {{name: echo, namespace: shop, labels: {{app: echo}}}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: {echo_port}, targetPort: http}}]
"""


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", *args],
                       capture_output=True, text=True)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def endpoints(agent, service):
    return [s["endpoints"] for s in agent.config_dump()["services"] if s["name"] == service][0]


def main():
    root = tempfile.mkdtemp(prefix="podless-exec-")
    os.chmod(root, 0o777)  # the workloads write here as their own uids
    # Plaintext ports are shared listeners on 0.0.0.0: free ones, not fixed.
    port, echo_port = free_port(), free_port()
    write(os.path.join(root, "hello.txt"), "hello from exec\n")
    write(os.path.join(root, "ready.txt"), "ok\n")
    with exec_agent(extra_args=["--no-local-short-circuit"]) as agent:
        agent.cli("apply", "-f", write(os.path.join(root, "m.yaml"), MANIFEST.format(root=root, port=port, echo_port=echo_port)))
        files = wait_for("files-0 ready", lambda: (r := replica(agent, "files-0")) and r["ready"] and r)
        check(files["process"]["state"] == "Running", json.dumps(files))
        check(files["process"]["pid"] > 0, json.dumps(files))
        addr = files["address"]

        # The declared port on the workload address reaches the process.
        code, body = curl(f"http://{addr}:{port}/hello.txt")
        check(code == 200 and body == "hello from exec\n", f"plaintext port: {code} {body!r}")

        # From another workload, through the outbound entry and HBONE, by Service name.
        creds = dict(line.split("=", 1) for line in
                     agent.cli("credentials", "echo-0", "-n", "shop").stdout.split())
        code, body = curl("--proxy", creds["HTTP_PROXY"], "http://files.shop.svc.cluster.local/hello.txt")
        check(code == 200 and body == "hello from exec\n", f"via Service: {code} {body!r}")

        # Readiness gates the Service endpoint.
        check(endpoints(agent, "files") == [addr], f"endpoints {endpoints(agent, 'files')}")
        os.unlink(os.path.join(root, "ready.txt"))
        wait_for("endpoint removed", lambda: endpoints(agent, "files") == [])
        check(not replica(agent, "files-0")["ready"], "files-0 still ready")
        code, _ = curl("--proxy", creds["HTTP_PROXY"], "http://files.shop.svc.cluster.local/hello.txt")
        check(code >= 500, f"unready Service answered {code}")
        write(os.path.join(root, "ready.txt"), "ok\n")
        wait_for("endpoint back", lambda: endpoints(agent, "files") == [addr])

        # A process calls out with its own identity: the echo app reports it.
        out = os.path.join(root, "caller.out")
        wait_for("caller output", lambda: os.path.exists(out), timeout=30)
        with open(out) as f:
            text = f.read()
        check("spiffe://cluster.local/ns/shop/sa/caller" in text, f"callee saw: {text}")

        # Graceful agent shutdown stops every process.
        pids = [replica(agent, n)["process"]["pid"] for n in ("files-0", "caller-0")]
        check(agent.stop() == 0, "agent exit code")
        for pid in pids:
            check(not os.path.exists(f"/proc/{pid}") or
                  open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z",
                  f"process {pid} survived the agent")
    print("ok")


if __name__ == "__main__":
    main()
