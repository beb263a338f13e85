"""What the kubectl e2e tests share: the stock kubectl (a test skips, exit
77, where it is not installed), a runner of it against an agent, and the
shop's web Deployment and Service they apply."""

import base64
import os
import re
import subprocess
import sys
import threading

from harness import check, write

KUBECTL = "/usr/bin/kubectl"


def require_kubectl():
    if not os.access(KUBECTL, os.X_OK):
        print(f"SKIP: {KUBECTL} is not installed (the stock kubectl 1.32 client)")
        sys.exit(77)


class Kubectl:
    """kubectl against `agent`, with the kubeconfig `podless kubeconfig -o`
    writes into its state dir (or `config`, already written) and a discovery
    cache of its own. Called as kubectl("get", "pods"): the completed
    process; a non-zero exit fails the test unless ok=False."""

    def __init__(self, agent, config=None):
        self.config = config or os.path.join(agent.state_dir, "kubeconfig")
        if config is None:
            agent.cli("kubeconfig", "-o", self.config)
        self.base = [KUBECTL, "--kubeconfig", self.config,
                     "--cache-dir", os.path.join(agent.state_dir, "kube-cache")]

    def __call__(self, *args, ok=True, env=None, timeout=60):
        r = subprocess.run(self.base + list(args), capture_output=True, text=True,
                           timeout=timeout, env=env)
        if ok:
            check(r.returncode == 0,
                  f"kubectl {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r


class Background:
    """A command whose stdout and stderr are collected, line by line, by
    threads while it runs (`out`, `errors`); `err` is all of stderr once
    stopped."""

    def __init__(self, args):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.out = []
        self.errors = []
        self.err = ""
        self.threads = [threading.Thread(target=self._read, args=(pipe, lines), daemon=True)
                        for pipe, lines in ((self.proc.stdout, self.out),
                                            (self.proc.stderr, self.errors))]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _read(pipe, lines):
        for line in pipe:
            lines.append(line.rstrip("\n"))

    def text(self):
        return "\n".join(self.out)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for thread in self.threads:
            thread.join(timeout=5)
        self.err = "\n".join(self.errors)


def admin_certificate(kubectl):
    """curl's --cert and --key for the admin: the kubeconfig's client
    certificate and key, written beside it (admin.crt, admin.key)."""
    text = open(kubectl.config).read()
    where = os.path.dirname(kubectl.config)
    for field, name in (("client-certificate-data", "admin.crt"),
                        ("client-key-data", "admin.key")):
        value = re.search(rf"^\s*{field}: (\S+)$", text, re.M).group(1)
        write(os.path.join(where, name), base64.b64decode(value).decode())
    return ["--cert", os.path.join(where, "admin.crt"), "--key", os.path.join(where, "admin.key")]


def web_deployment(ns, labels="", replicas=2):
    """Deployment `web` of `replicas` nginx pods (app=web, port http 8080);
    `labels`: the Deployment's own, as YAML flow ("team: shop")."""
    own = f", labels: {{{labels}}}" if labels else ""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}{own}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: nginx
        ports: [{{name: http, containerPort: 8080}}]
"""


def shop(ns):
    """Namespace `ns`, the web Deployment (2 replicas, labeled team=shop) and
    its Service (port http 80 -> 8080)."""
    return f"""apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
{web_deployment(ns, labels="team: shop")}---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""
