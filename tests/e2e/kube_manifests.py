"""Kubernetes YAML applied as it is (issue 14): bookinfo-style ServiceAccounts,
Services with `http` port names and Deployments of image-only containers
apply (with warnings for what podless keeps but does not act on), a second
apply reports every object unchanged, a call from one Deployment's replica
to another through its Service name is answered by the in-proxy echo app
that names both SPIFFE IDs; a Deployment whose container has a command runs
it (two replicas binding one fixed port, each in its own network namespace,
env fieldRefs resolved per replica); `get workload -o yaml` shows the
Deployment as applied with a Kubernetes-shaped status; `scale` patches the
Deployment's replicas; a Pod shows its podIP; a ConfigMap is refused, or
skipped with --skip-unsupported."""

import os
import tempfile

from exec_util import exec_agent, processes_with_env, replica
from harness import check, free_port, http_get, proxy_for, wait_for, write

BOOKINFO = """apiVersion: v1
kind: Service
metadata:
  name: details
  labels:
    app: details
    service: details
spec:
  ports:
  - port: {details_port}
    name: http
  selector:
    app: details
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: bookinfo-details
  labels:
    account: details
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: details-v1
  labels:
    app: details
    version: v1
spec:
  replicas: 1
  selector:
    matchLabels:
      app: details
      version: v1
  template:
    metadata:
      labels:
        app: details
        version: v1
    spec:
      serviceAccountName: bookinfo-details
      containers:
      - name: details
        image: docker.io/istio/examples-bookinfo-details-v1:1.20.2
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: {details_port}
        securityContext:
          runAsUser: 1000
---
apiVersion: v1
kind: Service
metadata:
  name: productpage
  labels:
    app: productpage
    service: productpage
spec:
  ports:
  - port: {page_port}
    name: http
  selector:
    app: productpage
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: bookinfo-productpage
  labels:
    account: productpage
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: productpage-v1
  labels:
    app: productpage
    version: v1
spec:
  replicas: 1
  selector:
    matchLabels:
      app: productpage
      version: v1
  template:
    metadata:
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "{page_port}"
        prometheus.io/path: "/metrics"
      labels:
        app: productpage
        version: v1
    spec:
      serviceAccountName: bookinfo-productpage
      containers:
      - name: productpage
        image: docker.io/istio/examples-bookinfo-productpage-v1:1.20.2
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: {page_port}
        volumeMounts:
        - name: tmp
          mountPath: /tmp
        securityContext:
          runAsUser: 1000
      volumes:
      - name: tmp
        emptyDir: {{}}
"""

FILES = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: files
spec:
  replicas: 2
  selector:
    matchLabels: {{app: files}}
  template:
    metadata:
      labels: {{app: files}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: server
        image: python:3.11
        command: [/usr/bin/python3, -m, http.server]
        args: ["{port_arg}", --bind, 127.0.0.1]
        workingDir: {root}
        ports:
        - {{containerPort: {port}, name: http}}
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        - name: POD_IP
          valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
        - name: GREETING
          value: "hello $(POD_NAME)"
        readinessProbe:
          httpGet: {{path: /hello.txt, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: standalone
  labels: {{app: standalone}}
  annotations: {{podless.dev/app: "static=202"}}
spec:
  containers:
  - name: web
    image: nginx
    ports: [{{containerPort: {static_port}, name: http-web}}]
"""

CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: extra}
"""


def main():
    root = tempfile.mkdtemp(prefix="podless-kube-")
    os.chmod(root, 0o755)  # the sandboxed processes (their own uids) read it
    write(os.path.join(root, "hello.txt"), "hello from a Deployment\n")
    details_port, page_port, port, static_port = free_port(), free_port(), free_port(), free_port()
    # Each replica binds the same fixed port in a network namespace of its
    # own; an agent that cannot make namespaces (not root) gives each replica
    # a private port instead.
    port_arg = str(port) if os.geteuid() == 0 else "$(PORT)"
    with exec_agent() as agent:
        bookinfo = write(os.path.join(root, "bookinfo.yaml"),
                         BOOKINFO.format(details_port=details_port, page_port=page_port))
        r = agent.cli("apply", "-f", bookinfo)
        for line in ("service/details created", "serviceaccount/bookinfo-details created",
                     "workload/details-v1 created", "workload/productpage-v1 created"):
            check(line in r.stdout, f"apply output lacks {line!r}:\n{r.stdout}")
        check("is not pulled: podless has no container runtime" in r.stderr and
              "volumeMounts: ignored" in r.stderr and "imagePullPolicy: ignored" in r.stderr,
              f"apply warnings:\n{r.stderr}")

        r = agent.cli("apply", "-f", bookinfo)
        lines = r.stdout.strip().splitlines()
        check(len(lines) == 6 and all(line.endswith(" unchanged") for line in lines),
              f"a second apply of the same YAML changed something:\n{r.stdout}")

        # productpage calls details by its Service name, as itself.
        wait_for("details-v1-0", lambda: replica(agent, "details-v1-0"), agent=agent)
        proxy = proxy_for(agent, "productpage-v1-0", "default")
        status, body = http_get(f"http://details.default.svc:{details_port}/details/0",
                                proxy=proxy)
        check(status == 200, f"productpage -> details: {status} {body}")
        check('"peer_spiffe_id":"spiffe://cluster.local/ns/default/sa/bookinfo-productpage"'
              in body.replace(" ", ""), f"the echo app did not see the caller's identity: {body}")
        check("spiffe://cluster.local/ns/default/sa/bookinfo-details" in body,
              f"the callee is not bookinfo-details: {body}")

        # get -o yaml: the Deployment as applied, with a Kubernetes status.
        y = agent.cli("get", "workload", "details-v1", "-o", "yaml").stdout
        check("kind: Deployment" in y and "apiVersion: apps/v1" in y, f"-o yaml:\n{y}")
        check("readyReplicas: 1" in y and "availableReplicas: 1" in y, f"-o yaml status:\n{y}")
        s = agent.cli("get", "service", "details", "-o", "yaml").stdout
        check("kind: Service" in s and "clusterIP: 127." in s, f"service -o yaml:\n{s}")

        # scale patches the Deployment's spec.replicas and applies it again.
        r = agent.cli("scale", "workload/details-v1", "--replicas", "2", "-n", "default")
        check("scaled" in r.stdout, r.stdout + r.stderr)
        wait_for("details-v1-1", lambda: replica(agent, "details-v1-1"), agent=agent)
        y = wait_for("2 ready replicas", lambda: (
            t := agent.cli("get", "workload", "details-v1", "-o",
                           "yaml").stdout) and "readyReplicas: 2" in t and t, agent=agent)
        check("kind: Deployment" in y and "  replicas: 2" in y, f"scaled -o yaml:\n{y}")
        r = agent.cli("apply", "-f", bookinfo)
        check("workload/details-v1 configured" in r.stdout, f"apply after scale:\n{r.stdout}")

        # A container with a command: two replicas of one fixed port.
        r = agent.cli("apply", "-f", write(os.path.join(root, "files.yaml"), FILES.format(
            root=root, port=port, port_arg=port_arg, static_port=static_port)))
        check("image python:3.11 is not pulled: podless has no container runtime; the command "
              "runs on the host" in r.stderr, f"apply warnings:\n{r.stderr}")
        for name in ("files-0", "files-1"):
            rep = wait_for(f"{name} ready", lambda n=name: (x := replica(agent, n)) and
                           x["ready"] and x, timeout=30, agent=agent)
            status, body = http_get(f"http://{rep['address']}:{port}/hello.txt")
            check(status == 200 and body == "hello from a Deployment\n",
                  f"{name} on {rep['address']}:{port}: {status} {body!r}")
            check(processes_with_env(f"POD_NAME={name}") and
                  processes_with_env(f"POD_IP={rep['address']}") and
                  processes_with_env(f"GREETING=hello {name}"),
                  f"{name}'s process lacks its fieldRef variables")
        y = agent.cli("get", "workload", "files", "-o", "yaml").stdout
        check("readyReplicas: 2" in y, f"files -o yaml:\n{y}")

        # A Pod: one replica, the annotation's static app, podIP in status.
        y = wait_for("standalone", lambda: (t := agent.cli(
            "get", "workload", "standalone", "-o", "yaml").stdout) and
            "podIP: 127." in t and t, agent=agent)
        check("kind: Pod" in y and "phase: Running" in y and "restartCount: 0" in y, y)
        pod = replica(agent, "standalone-0")
        status, body = http_get(f"http://{pod['address']}:{static_port}/")
        check(status == 202, f"the Pod's static app: {status} {body}")

        r = agent.cli("scale", "workload/standalone", "--replicas", "2", expect_ok=False)
        check(r.returncode != 0 and "applied as a Pod" in r.stderr, r.stdout + r.stderr)

        # Kinds podless does not run: refused, or skipped on request.
        cm = write(os.path.join(root, "cm.yaml"), CONFIGMAP)
        r = agent.cli("apply", "-f", cm, expect_ok=False)
        check(r.returncode != 0 and 'unsupported kind "ConfigMap"' in r.stderr and
              "--skip-unsupported" in r.stderr, f"a ConfigMap was not refused:\n{r.stderr}")
        r = agent.cli("apply", "-f", cm, "--skip-unsupported")
        check("configmap/settings skipped" in r.stdout and
              "serviceaccount/extra created" in r.stdout, r.stdout + r.stderr)
    print("PASS")


if __name__ == "__main__":
    main()
