"""`kubectl get pods -w` sees a pod become ready (issue 15): a replica's
readiness is status, not a change of its workload, yet a watch shows it.
An exec Deployment whose container listens only after a second, with a
TCP readiness probe: the watch started before the apply prints the pod
ADDED not ready (0/1), then MODIFIED ready (1/1 Running); the Deployment's
watch sees its READY go from 0/1 to 1/1 the same way. Skips when
/usr/bin/kubectl is absent."""

import os

from exec_util import exec_agent
from harness import check, free_port, wait_for, write
from kube_util import Background, Kubectl, require_kubectl

MANIFEST = """apiVersion: v1
kind: Namespace
metadata: {{name: kr}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: slow, namespace: kr}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: slow}}}}
  template:
    metadata: {{labels: {{app: slow}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: slow
        command: [/bin/sh, -c, "sleep 1; exec /usr/bin/python3 -m http.server {port} --bind 127.0.0.1"]
        ports: [{{name: http, containerPort: {port}}}]
        readinessProbe:
          tcpSocket: {{port: http}}
          periodSeconds: 1
"""


def rows(watch, event):
    """The watch's lines of `event` (ADDED, MODIFIED) for the pod or Deployment."""
    return [line.split() for line in watch.out if line.startswith(event)]


def main():
    require_kubectl()
    with exec_agent() as agent:
        kubectl = Kubectl(agent)
        # -v=6 logs each request as its answer's head comes: a watch's once
        # it is open.
        pods = Background(kubectl.base + ["get", "pods", "-w", "-n", "kr", "--output-watch-events",
                                          "--request-timeout=60s", "-v=6"])
        deploys = Background(kubectl.base + ["get", "deploy", "-w", "-n", "kr",
                                             "--output-watch-events", "--request-timeout=60s",
                                             "-v=6"])
        try:
            # Both watches are open before the apply.
            def open_watch(watch):
                return any("watch=true" in line and "200 OK" in line for line in watch.errors)
            wait_for("both watches open", lambda: open_watch(pods) and open_watch(deploys),
                     timeout=20)
            port = free_port()
            agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "m.yaml"),
                                           MANIFEST.format(port=port)))
            ready = wait_for("slow-0 MODIFIED ready", lambda: [
                r for r in rows(pods, "MODIFIED") if r[1] == "slow-0" and r[2] == "1/1"],
                timeout=30)
            check(ready[0][3] == "Running", f"the ready pod's STATUS: {pods.text()}")
            added = [r for r in rows(pods, "ADDED") if r[1] == "slow-0"]
            check(added and added[0][2] == "0/1",
                  f"slow-0 ADDED before it was ready, 0/1:\n{pods.text()}")
            wait_for("Deployment slow READY 1/1", lambda: [
                r for r in rows(deploys, "MODIFIED") if r[1] == "slow" and r[2] == "1/1"],
                timeout=30)
            first = [r for r in rows(deploys, "ADDED") if r[1] == "slow"]
            check(first and first[0][2] == "0/1", f"Deployment ADDED 0/1:\n{deploys.text()}")
        finally:
            pods.stop()
            deploys.stop()
        check(" E1" not in pods.err and "error:" not in pods.err.lower(),
              f"the pods watch: {pods.err[-2000:]}")


if __name__ == "__main__":
    main()
