"""The stock kubectl reads the agent through its Kubernetes API (issue 15,
first slice: read-only). `podless kubeconfig -o FILE` writes a kubeconfig
(0600) with an admin certificate the agent signs; kubectl then runs
version, api-resources and get (-A, -n, -o wide, -l, --field-selector,
-o json, a missing name) against a Deployment and a Service applied with
`podless apply`. Without a client certificate, or with one of another CA,
curl gets 401 and nothing else; with the kubeconfig's certificate it is
served over HTTP/1.1 and HTTP/2. Skips when /usr/bin/kubectl is absent."""

import json
import os
import re
import stat
import subprocess

from harness import Agent, check, write
from kube_util import Kubectl, admin_certificate, require_kubectl, shop



def rows(text):
    """A kubectl table as (header, [row dicts]); cells split on 2+ spaces."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = re.split(r"\s{2,}", lines[0].strip())
    return header, [dict(zip(header, re.split(r"\s{2,}", line.strip()))) for line in lines[1:]]


def main():
    require_kubectl()
    agent = Agent().start()
    try:
        tmp = agent.state_dir
        agent.cli("apply", "-f", write(os.path.join(tmp, "m.yaml"), shop("kt")))

        # podless kubeconfig: stdout, or a 0600 file.
        printed = agent.cli("kubeconfig").stdout
        check(f"server: https://127.0.0.1:{agent.kube_port}" in printed,
              f"kubeconfig names the agent's --kube-address:\n{printed}")
        config = os.path.join(tmp, "kubeconfig")
        with open(config, "w") as f:  # an existing file is made 0600 too
            f.write("old")
        os.chmod(config, 0o644)
        agent.cli("kubeconfig", "-o", config)
        mode = stat.S_IMODE(os.stat(config).st_mode)
        check(mode == 0o600, f"kubeconfig file mode {oct(mode)}")
        kubectl = Kubectl(agent, config)

        # version: the server answers as a 1.32 API server.
        version = json.loads(kubectl("version", "-o", "json").stdout)
        check(version["serverVersion"]["gitVersion"].startswith("v1.32"),
              f"server version {version.get('serverVersion')}")

        # api-resources: short names, groups, kinds (aggregated discovery).
        resources = kubectl("api-resources").stdout
        for line in [r"^pods\s+po\s+v1\s+true\s+Pod$",
                     r"^services\s+svc\s+v1\s+true\s+Service$",
                     r"^namespaces\s+ns\s+v1\s+false\s+Namespace$",
                     r"^serviceaccounts\s+sa\s+v1\s+true\s+ServiceAccount$",
                     r"^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$",
                     r"^statefulsets\s+sts\s+apps/v1\s+true\s+StatefulSet$",
                     r"^daemonsets\s+ds\s+apps/v1\s+true\s+DaemonSet$",
                     r"^replicasets\s+rs\s+apps/v1\s+true\s+ReplicaSet$",
                     r"^authorizationpolicies\s+ap\s+security.istio.io/v1\s+true\s+AuthorizationPolicy$",
                     r"^peerauthentications\s+pa\s+security.istio.io/v1\s+true\s+PeerAuthentication$",
                     r"^workloadentries\s+we\s+networking.istio.io/v1\s+true\s+WorkloadEntry$",
                     r"^workloads\s+wl\s+podless.dev/v1alpha1\s+true\s+Workload$"]:
            check(re.search(line, resources, re.M), f"api-resources has /{line}/:\n{resources}")

        # get pods -A: every namespace, NAMESPACE first.
        header, pods = rows(kubectl("get", "pods", "-A").stdout)
        check(header == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"],
              f"get pods -A header {header}")
        names = sorted((p["NAMESPACE"], p["NAME"]) for p in pods)
        check(names == [("kt", "web-0"), ("kt", "web-1")], f"get pods -A rows {pods}")
        check(all(p["READY"] == "1/1" and p["STATUS"] == "Running" and p["RESTARTS"] == "0"
                  for p in pods), f"pods running and ready: {pods}")

        # -o wide: IP and NODE.
        header, wide = rows(kubectl("get", "pods", "-n", "kt", "-o", "wide").stdout)
        check(header[:8] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                             "NOMINATED NODE"], f"get pods -o wide header {header}")
        check(all(p["IP"].startswith("127.") and p["NODE"] not in ("", "<none>") for p in wide),
              f"wide rows {wide}")

        # get deploy,svc -n NS: both kinds, kubectl's columns.
        out = kubectl("get", "deploy,svc", "-n", "kt").stdout
        check(re.search(r"^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE$", out, re.M) and
              re.search(r"^deployment.apps/web\s+2/2\s+2\s+2\s+\S+$", out, re.M),
              f"get deploy:\n{out}")
        check(re.search(r"^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE$", out, re.M) and
              re.search(r"^service/web\s+ClusterIP\s+127\.128\.\d+\.\d+\s+<none>\s+80/TCP\s+\S+$",
                        out, re.M), f"get svc:\n{out}")

        # -l and --field-selector.
        _, selected = rows(kubectl("get", "po", "-n", "kt", "-l", "app=web").stdout)
        check(len(selected) == 2, f"-l app=web: {selected}")
        none = kubectl("get", "po", "-n", "kt", "-l", "app=nothing")
        check(none.stdout == "" and "No resources found in kt namespace." in none.stderr,
              f"-l app=nothing: {none.stdout!r} {none.stderr!r}")
        _, by_name = rows(kubectl("get", "pods", "-A", "--field-selector",
                                  "metadata.name=web-1").stdout)
        check([p["NAME"] for p in by_name] == ["web-1"], f"--field-selector: {by_name}")

        # get pod NAME -o json: a Kubernetes Pod.
        pod = json.loads(kubectl("get", "pod", "web-0", "-n", "kt", "-o", "json").stdout)
        check(pod["kind"] == "Pod" and pod["apiVersion"] == "v1" and
              pod["metadata"]["name"] == "web-0" and pod["metadata"]["namespace"] == "kt" and
              pod["metadata"]["labels"] == {"app": "web"} and
              pod["spec"]["containers"][0]["name"] == "web" and
              pod["status"]["phase"] == "Running" and pod["status"]["podIP"].startswith("127.") and
              pod["status"]["containerStatuses"][0]["ready"] is True, f"pod json {pod}")
        deploy = json.loads(kubectl("get", "deploy", "web", "-n", "kt", "-o", "json").stdout)
        check(deploy["kind"] == "Deployment" and deploy["status"]["readyReplicas"] == 2,
              f"deployment json {deploy}")

        # A missing name: kubectl's NotFound message.
        missing = kubectl("get", "pod", "missing", "-n", "kt", ok=False)
        check(missing.returncode == 1 and
              'Error from server (NotFound): pods "missing" not found' in missing.stderr,
              f"get pod missing: {missing.returncode} {missing.stderr!r}")

        # Without a client certificate: 401, a Status, nothing else.
        ca = os.path.join(tmp, "ca.pem")
        write(ca, agent.cli("ca", "export").stdout)
        url = f"https://127.0.0.1:{agent.kube_port}/api/v1/pods"

        def curl(*extra, http="--http1.1"):
            r = subprocess.run(["curl", "-sS", http, "--cacert", ca, "-o", "-",
                                "-w", "\n%{http_code} %{http_version}", *extra, url],
                               capture_output=True, text=True, timeout=30)
            body, _, status = r.stdout.rpartition("\n")
            code, _, version = status.partition(" ")
            return (code, body) if http == "--http1.1" else (code, version, body)

        code, body = curl()
        check(code == "401" and json.loads(body)["reason"] == "Unauthorized" and
              "web-0" not in body, f"anonymous: {code} {body}")

        # A certificate of another CA (openssl): 401 as well.
        other_key, other_crt = os.path.join(tmp, "other.key"), os.path.join(tmp, "other.crt")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                            "/O=podless/CN=podless-admin", "-keyout", other_key, "-out",
                            other_crt], capture_output=True, text=True)
        check(r.returncode == 0, f"openssl req: {r.stderr}")
        code, body = curl("--cert", other_crt, "--key", other_key)
        check(code == "401" and "web-0" not in body, f"another CA's certificate: {code} {body}")

        # The kubeconfig's own certificate, over curl: served.
        admin = admin_certificate(kubectl)
        code, body = curl(*admin)
        check(code == "200" and json.loads(body)["kind"] == "PodList" and "web-0" in body,
              f"admin over curl (HTTP/1.1): {code} {body[:200]}")
        # HTTP/2 (ALPN h2, as kubectl's Go client negotiates it), and 401 there too.
        code, version, body = curl(*admin, http="--http2")
        check(code == "200" and version == "2" and "web-0" in body,
              f"admin over curl (HTTP/2): {code} HTTP/{version} {body[:200]}")
        code, version, body = curl(http="--http2")
        check(code == "401" and version == "2" and "web-0" not in body,
              f"anonymous over HTTP/2: {code} HTTP/{version} {body[:200]}")
    finally:
        agent.stop()
    print("PASS")


if __name__ == "__main__":
    main()
