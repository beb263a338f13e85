"""The stock kubectl's explain, describe and apply's OpenAPI step against the
agent (issue 15). The agent serves OpenAPI v3 (/openapi/v3 and a document per
group/version, built from the fields `podless apply` accepts), so:
explain of a Kubernetes kind, of a field path, of an Istio kind and of
podless's own Workload shows podless's fields (a field podless ignores says
so; a field it does not take does not exist); describe of a pod, a
deployment and a service succeeds with what kubectl asks for besides the
object (events: none, as podless records none; the service's endpoint
slices, from the replicas its selector picks); and `kubectl apply` without
--validate=false gets past the OpenAPI download: kubectl finds the
fieldValidation parameter and leaves validation to the server. Skips when
/usr/bin/kubectl is absent."""

import json
import os
import re
import subprocess

from harness import Agent, check, write
from kube_util import Kubectl, admin_certificate, require_kubectl, shop


# Applied with kubectl itself, with kubectl's default client-side checks on.
APPLIED = """apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: kd}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: nginx
        ports: [{containerPort: 9090}]
"""


def field(text, name):
    """The value of `Name:   value` in kubectl describe's output ('' if none)."""
    m = re.search(rf"^{re.escape(name)}:\s*(.*)$", text, re.M)
    return m.group(1).strip() if m else ""


def requests(log):
    """(method, path?query, status) of each request in kubectl's -v=6 log."""
    return re.findall(r"round_trippers\.go:\d+\] (GET|POST|PATCH|PUT|DELETE) "
                      r"https://[^/]+(\S+) (\d{3})", log)


def main():
    require_kubectl()
    agent = Agent().start()
    try:
        tmp = agent.state_dir
        agent.cli("apply", "-f", write(os.path.join(tmp, "m.yaml"), shop("kd")))
        kubectl = Kubectl(agent)

        # explain: a core kind, from the OpenAPI v3 documents.
        r = kubectl("explain", "pods", "-v=6")
        out = r.stdout
        check("KIND:       Pod" in out and "VERSION:    v1" in out and
              re.search(r"^  spec\t<PodSpec>$", out, re.M) and
              re.search(r"^  metadata\t<ObjectMeta>$", out, re.M), f"explain pods:\n{out}")
        gets = requests(r.stderr)
        check(("GET", "/openapi/v3?timeout=32s", "200") in gets and
              any(p.startswith("/openapi/v3/api/v1?hash=") and s == "200" for _, p, s in gets),
              f"explain read /openapi/v3 and the core document: {gets}")

        # A field path through the pod template, down to containers.
        out = kubectl("explain", "deploy.spec.template.spec.containers").stdout
        check("GROUP:      apps" in out and "KIND:       Deployment" in out and
              "FIELD: containers <[]Container>" in out and
              re.search(r"^  name\t<string> -required-$", out, re.M) and
              re.search(r"^  command\t<\[\]string>$", out, re.M), f"explain containers:\n{out}")
        # A field podless accepts but does not act on says so, and why.
        check(re.search(r"imagePullPolicy\t<string>\n\s+Image pull policy\. podless accepts this "
                        r"field but does not act on it", out), f"ignored field:\n{out}")
        # Only the fields podless takes: one it does not take does not exist.
        r = kubectl("explain", "pods.spec.notAField", ok=False)
        check(r.returncode != 0 and 'field "notAField" does not exist' in r.stderr,
              f"explain of a field podless does not take: {r.returncode} {r.stderr!r}")

        # An Istio kind.
        out = kubectl("explain", "authorizationpolicies.spec").stdout
        check("GROUP:      security.istio.io" in out and "KIND:       AuthorizationPolicy" in out
              and re.search(r"^  action\t<string>$", out, re.M) and
              re.search(r"^  rules\t<\[\]Rule>$", out, re.M) and
              re.search(r"^  selector\t<WorkloadSelector>$", out, re.M),
              f"explain authorizationpolicies.spec:\n{out}")

        # podless's own Workload.
        out = kubectl("explain", "workloads", "--api-version=podless.dev/v1alpha1").stdout
        check("GROUP:      podless.dev" in out and "KIND:       Workload" in out and
              "VERSION:    v1alpha1" in out and re.search(r"^  spec\t<WorkloadSpec>$", out, re.M),
              f"explain workloads:\n{out}")

        # describe pod: the object, then its events (none: podless records
        # none), asked for by the involved object's fields.
        pod = json.loads(kubectl("get", "pod", "web-0", "-n", "kd", "-o", "json").stdout)
        pod_ip = pod["status"]["podIP"]
        r = kubectl("describe", "pod", "web-0", "-n", "kd", "-v=6")
        out = r.stdout
        check(field(out, "Name") == "web-0" and field(out, "Namespace") == "kd" and
              field(out, "Labels") == "app=web" and field(out, "IP") == pod_ip and
              pod_ip.startswith("127.") and field(out, "Status") == "Running" and
              re.search(r"^Containers:\n  web:\n", out, re.M) and
              field(out, "Controlled By") == "Deployment/web" and field(out, "Events") == "<none>",
              f"describe pod:\n{out}")
        events = [(p, s) for m, p, s in requests(r.stderr) if "/events?" in p]
        check(events and all(s == "200" and "involvedObject.name%3Dweb-0" in p
                             for p, s in events), f"describe pod's events requests: {events}")

        # describe deploy: replicas, selector, the template's container.
        out = kubectl("describe", "deploy", "web", "-n", "kd").stdout
        check(field(out, "Name") == "web" and field(out, "Namespace") == "kd" and
              field(out, "Labels") == "team=shop" and field(out, "Selector") == "app=web" and
              field(out, "Replicas").startswith("2 desired | 2 updated | 2 total | 2 available") and
              re.search(r"^   web:\n\s+Image:\s+nginx\n\s+Port:\s+8080/TCP$", out, re.M) and
              field(out, "Events") == "<none>", f"describe deploy:\n{out}")

        # describe svc: its VIP, ports, and its endpoints (the replicas'
        # addresses, from the endpoint slices kubectl 1.32 reads).
        svc = json.loads(kubectl("get", "svc", "web", "-n", "kd", "-o", "json").stdout)
        vip = svc["spec"]["clusterIP"]
        addresses = sorted(p["status"]["podIP"] for p in json.loads(
            kubectl("get", "pods", "-n", "kd", "-o", "json").stdout)["items"])
        r = kubectl("describe", "svc", "web", "-n", "kd", "-v=6")
        out = r.stdout
        endpoints = sorted(field(out, "Endpoints").split(","))
        check(field(out, "Name") == "web" and field(out, "Namespace") == "kd" and
              vip.startswith("127.128.") and field(out, "IP") == vip and
              field(out, "Type") == "ClusterIP" and field(out, "Selector") == "app=web" and
              re.search(r"^Port:\s+http\s+80/TCP$", out, re.M) and
              field(out, "TargetPort") == "8080/TCP" and len(addresses) == 2 and
              endpoints == [f"{a}:8080" for a in addresses] and field(out, "Events") == "<none>",
              f"describe svc (pods at {addresses}):\n{out}")
        slices = [(p, s) for m, p, s in requests(r.stderr) if "endpointslices" in p]
        check(slices and all(s == "200" for _, s in slices),
              f"describe svc's endpointslices requests: {slices}")

        # apply without --validate=false: kubectl reads OpenAPI v3, finds
        # fieldValidation in the Deployment's PATCH operation, and sends the
        # object with fieldValidation=Strict for the server to check.
        r = kubectl("apply", "-f", write(os.path.join(tmp, "api.yaml"), APPLIED), "-v=6", ok=False)
        sent = requests(r.stderr)
        check("failed to download openapi" not in r.stderr and "--validate=false" not in r.stderr,
              f"apply could not validate:\n{r.stderr[-3000:]}")
        check(any(p.startswith("/openapi/v3/apis/apps/v1?hash=") and s == "200"
                  for _, p, s in sent), f"apply read the apps/v1 document: {sent}")
        check(not any(p.startswith("/openapi/v2") for _, p, s in sent),
              f"apply fell back to OpenAPI v2: {sent}")
        writes = [(m, p, s) for m, p, s in sent if m in ("POST", "PATCH")]
        check(writes and all("fieldValidation=Strict" in p for _, p, _ in writes),
              f"apply left validation to the server: {writes}")
        check(r.returncode == 0 and "deployment.apps/api created" in r.stdout,
              f"apply: {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}")
        kubectl("get", "deploy", "api", "-n", "kd")
        # The documents and the endpoints are behind the admin certificate
        # like everything else: without one, 401 and nothing of them.
        ca = os.path.join(tmp, "ca.pem")
        write(ca, agent.cli("ca", "export").stdout)
        for path in ("/openapi/v3", "/openapi/v3/api/v1",
                     "/apis/discovery.k8s.io/v1/namespaces/kd/endpointslices"):
            c = subprocess.run(["curl", "-sS", "--cacert", ca, "-o", "-", "-w", "\n%{http_code}",
                                f"https://127.0.0.1:{agent.kube_port}{path}"],
                               capture_output=True, text=True, timeout=30)
            body, _, code = c.stdout.rpartition("\n")
            check(code == "401" and json.loads(body)["reason"] == "Unauthorized" and
                  "serverRelativeURL" not in body and "components" not in body and
                  "127.64." not in body, f"{path} without a certificate: {code} {body[:200]}")
        # With the kubeconfig's certificate: the discovery's ETag, and 304
        # for a client that has that version (HTTP/1.1 and HTTP/2).
        admin = ["--cacert", ca] + admin_certificate(kubectl)
        url = f"https://127.0.0.1:{agent.kube_port}/openapi/v3"
        c = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", *admin, url],
                           capture_output=True, text=True, timeout=30)
        etag = re.search(r"^etag: (\S+)\r?$", c.stdout, re.M | re.I)
        check(c.stdout.startswith("HTTP/") and " 200" in c.stdout.splitlines()[0] and etag,
              f"/openapi/v3 with the admin certificate: {c.stdout} {c.stderr}")
        for http in ("--http1.1", "--http2"):
            c = subprocess.run(["curl", "-sS", http, "-o", "-", "-w", "\n%{http_code}", *admin,
                                "-H", f"If-None-Match: {etag.group(1)}", url],
                               capture_output=True, text=True, timeout=30)
            body, _, code = c.stdout.rpartition("\n")
            check(code == "304" and body == "", f"If-None-Match ({http}): {code} {body[:200]}")
        print("PASS")
    finally:
        agent.stop()


if __name__ == "__main__":
    main()
