"""The stock kubectl changes the agent's state through its Kubernetes API
(issue 15, the write verbs): apply (created, unchanged, configured),
apply --server-side, create, replace, patch (strategic, merge, json),
label, annotate, edit, scale and delete (by file and by name, without
hanging on the deletion wait), for a Namespace, a Deployment, a Service,
a ServiceAccount, an Istio AuthorizationPolicy and a podless Workload.
Each change is checked in kubectl's output and in `podless get -o json`
(the same state). A manifest podless rejects prints the field's error and
changes nothing; a body over 3 MiB is 413; a client without the admin
certificate gets 401 for a write, which changes nothing. Skips when
/usr/bin/kubectl is absent."""

import json
import os
import re
import subprocess
import time

from harness import Agent, check, write
from kube_util import Kubectl, admin_certificate, require_kubectl


NS = "kw"

MANIFEST = f"""apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: web, namespace: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}, labels: {{team: shop}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        image: nginx
        ports: [{{name: http, containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-all, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  action: DENY
  rules: [{{from: [{{source: {{namespaces: [other]}}}}]}}]
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: echo, namespace: {NS}}}
spec:
  serviceAccount: echo
  app: {{echo: {{}}}}
"""

CREATED = [f"namespace/{NS}", "serviceaccount/web", "deployment.apps/web", "service/web",
           "authorizationpolicy.security.istio.io/deny-all", "workload.podless.dev/echo"]


def main():
    require_kubectl()
    agent = Agent().start()
    try:
        tmp = agent.state_dir
        kubectl = Kubectl(agent)

        def podless_json(kind, name):
            r = agent.cli("get", kind, name, "-n", NS, "-o", "json", expect_ok=False)
            return json.loads(r.stdout) if r.returncode == 0 else None

        def replicas():
            return podless_json("workload", "web")["spec"]["replicas"]

        def lines(out):
            return sorted(line.strip() for line in out.splitlines() if line.strip())

        path = write(os.path.join(tmp, "all.yaml"), MANIFEST)

        # apply: created, then unchanged (the last-applied annotation round-trips).
        out = kubectl("apply", "-f", path).stdout
        check(lines(out) == sorted(f"{o} created" for o in CREATED), f"first apply:\n{out}")
        deploy = podless_json("workload", "web")
        check(deploy is not None and deploy["kind"] == "Deployment" and
              "kubectl.kubernetes.io/last-applied-configuration" in
              deploy["metadata"].get("annotations", {}), f"podless get after apply: {deploy}")
        check(podless_json("authorizationpolicy", "deny-all") is not None, "policy applied")
        check(podless_json("service", "web") is not None, "service applied")
        out = kubectl("apply", "-f", path).stdout
        check(lines(out) == sorted(f"{o} unchanged" for o in CREATED), f"second apply:\n{out}")

        # An edited file: configured, and the agent runs 3 replicas.
        # --dry-run=server (dryRun=All): answered, nothing changed.
        dry = write(os.path.join(tmp, "dry.yaml"), MANIFEST.replace("replicas: 2", "replicas: 9"))
        out = kubectl("apply", "--dry-run=server", "-f", dry).stdout
        check("deployment.apps/web configured (server dry run)" in out, f"dry run:\n{out}")
        check(replicas() == 2, f"a dry run changes nothing: {replicas()}")

        # An edited file (a Deployment, and a podless Workload, whose patch
        # is a JSON merge patch): configured, and the agent runs 3 replicas.
        edited = write(os.path.join(tmp, "edited.yaml"),
                       MANIFEST.replace("replicas: 2", "replicas: 3")
                       .replace("{name: echo, namespace: kw}",
                                "{name: echo, namespace: kw, labels: {v: '2'}}"))
        out = kubectl("apply", "-f", edited).stdout
        check("deployment.apps/web configured" in out and "service/web unchanged" in out and
              "workload.podless.dev/echo configured" in out, f"apply of an edited file:\n{out}")
        check(replicas() == 3, f"replicas after apply: {replicas()}")
        check(podless_json("workload", "echo")["metadata"].get("labels") == {"v": "2"},
              f"workload labels: {podless_json('workload', 'echo')['metadata']}")

        # A manifest podless rejects: the field's error, nothing changed.
        bad = write(os.path.join(tmp, "bad.yaml"), MANIFEST.replace("replicas: 2", "replicas: -4"))
        r = kubectl("apply", "-f", bad, ok=False)
        check(r.returncode != 0 and 'The Deployment "web" is invalid' in r.stderr and
              "spec.replicas" in r.stderr, f"bad manifest: {r.returncode}\n{r.stderr}")
        check(replicas() == 3, "a rejected apply changes nothing")
        unknown = write(os.path.join(tmp, "unknown.yaml"),
                        MANIFEST.replace("replicas: 2", "replicas: 2\n  frobnicate: 1"))
        # kubectl's default sends fieldValidation=Strict (it found the
        # parameter in /openapi/v3): the unknown field is an error, nothing
        # changes.
        r = kubectl("apply", "-f", unknown, ok=False)
        check(r.returncode != 0 and 'unknown field "spec.frobnicate"' in r.stderr,
              f"unknown field under Strict: {r.returncode}\n{r.stderr}")
        check(replicas() == 3, "a strictly refused apply changes nothing")
        # --validate=false sends fieldValidation=Ignore: the unknown field is
        # dropped, the rest applied.
        out = kubectl("apply", "--validate=false", "-f", unknown).stdout
        check("deployment.apps/web configured" in out, f"unknown field, ignored: {out}")
        deploy = podless_json("workload", "web")
        check(deploy["spec"]["replicas"] == 2 and "frobnicate" not in deploy["spec"],
              f"the unknown field dropped: {deploy['spec']}")

        # patch: strategic (the default), merge, json.
        out = kubectl("patch", "deploy", "web", "-n", NS, "-p", '{"spec":{"replicas":4}}').stdout
        check("deployment.apps/web patched" in out, f"patch: {out}")
        check(replicas() == 4, "strategic patch")
        kubectl("patch", "deploy", "web", "-n", NS, "--type=merge", "-p", '{"spec":{"replicas":5}}')
        check(replicas() == 5, "merge patch")
        kubectl("patch", "deploy", "web", "-n", NS, "--type=json",
                "-p", '[{"op":"replace","path":"/spec/replicas","value":2}]')
        check(replicas() == 2, "json patch")
        # A custom resource takes no strategic merge patch (415, as for a
        # CRD): kubectl patch says so, nothing changes; --type=merge does.
        r = kubectl("patch", "authorizationpolicy", "deny-all", "-n", NS,
                    "-p", '{"spec":{"action":"ALLOW"}}', ok=False)
        check(r.returncode != 0 and "application/strategic-merge-patch+json is not supported by "
              "security.istio.io/v1, Kind=AuthorizationPolicy" in r.stderr and
              podless_json("authorizationpolicy", "deny-all")["spec"]["action"] == "DENY",
              f"strategic patch of an AuthorizationPolicy: {r.stderr}")
        out = kubectl("patch", "authorizationpolicy", "deny-all", "-n", NS, "--type=merge",
                      "-p", '{"spec":{"action":"ALLOW"}}').stdout
        check("patched" in out and
              podless_json("authorizationpolicy", "deny-all")["spec"]["action"] == "ALLOW",
              f"patch of an AuthorizationPolicy: {out}")

        # label and annotate.
        out = kubectl("label", "deploy", "web", "-n", NS, "tier=front").stdout
        check("deployment.apps/web labeled" in out, f"label: {out}")
        check(podless_json("workload", "web")["metadata"]["labels"].get("tier") == "front",
              "label in the agent's state")
        out = kubectl("annotate", "svc", "web", "-n", NS, "owner=team-a").stdout
        check("service/web annotated" in out, f"annotate: {out}")
        check(podless_json("service", "web")["metadata"]["annotations"].get("owner") == "team-a",
              "annotation in the agent's state")
        out = kubectl("label", "wl", "echo", "-n", NS, "x=y").stdout
        check("workload.podless.dev/echo labeled" in out, f"label workload: {out}")
        r = kubectl("label", "pod", "web-0", "-n", NS, "x=y", ok=False)
        check(r.returncode != 0 and "MethodNotAllowed" in r.stderr and
              "change the Deployment" in r.stderr, f"label pod: {r.stderr}")

        # edit: an editor that changes replicas.
        editor = write(os.path.join(tmp, "editor.sh"),
                       "#!/bin/sh\nsed -i '0,/replicas: 2$/s//replicas: 6/' \"$1\"\n")
        os.chmod(editor, 0o755)
        env = dict(os.environ, EDITOR=editor, KUBE_EDITOR=editor)
        out = kubectl("edit", "deploy", "web", "-n", NS, env=env).stdout
        check("deployment.apps/web edited" in out, f"edit: {out}")
        check(replicas() == 6, f"replicas after edit: {replicas()}")

        # scale.
        out = kubectl("scale", "deploy/web", "-n", NS, "--replicas=3").stdout
        check("deployment.apps/web scaled" in out, f"scale: {out}")
        check(replicas() == 3, f"replicas after scale: {replicas()}")

        # replace -f and create -f.
        out = kubectl("get", "sa", "web", "-n", NS, "-o", "json").stdout
        sa = json.loads(out)
        sa["metadata"].setdefault("labels", {})["replaced"] = "yes"
        replaced = write(os.path.join(tmp, "sa.json"), json.dumps(sa))
        out = kubectl("replace", "-f", replaced).stdout
        check("serviceaccount/web replaced" in out, f"replace: {out}")
        check(podless_json("serviceaccount", "web")["metadata"]["labels"].get("replaced") == "yes",
              "replace in the agent's state")
        created = write(os.path.join(tmp, "sa2.yaml"),
                        f"apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: api, namespace: {NS}}}\n")
        out = kubectl("create", "-f", created).stdout
        check("serviceaccount/api created" in out, f"create: {out}")
        r = kubectl("create", "-f", created, ok=False)
        check(r.returncode != 0 and "AlreadyExists" in r.stderr, f"create twice: {r.stderr}")

        # apply --server-side.
        ssa = write(os.path.join(tmp, "ssa.yaml"),
                    f"apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: ssa, namespace: {NS}}}\n")
        out = kubectl("apply", "--server-side", "-f", ssa).stdout
        check("serviceaccount/ssa serverside-applied" in out, f"apply --server-side: {out}")
        check(podless_json("serviceaccount", "ssa") is not None, "server-side apply created")

        # Field managers: another manager's different value is a conflict
        # (nothing changes); forced, the other manager takes the field.
        ssa_deploy = MANIFEST.split("---\n")[2].replace("name: web,", "name: ssa,")
        first = write(os.path.join(tmp, "ssa-a.yaml"), ssa_deploy)
        second = write(os.path.join(tmp, "ssa-b.yaml"), ssa_deploy.replace("replicas: 2", "replicas: 3"))
        out = kubectl("apply", "--server-side", "--field-manager=team-a",
                      "-f", first).stdout
        check("deployment.apps/ssa serverside-applied" in out, f"apply --server-side: {out}")
        r = kubectl("apply", "--server-side", "--field-manager=team-b",
                    "-f", second, ok=False)
        check(r.returncode != 0 and 'conflict with "team-a"' in r.stderr and
              ".spec.replicas" in r.stderr, f"conflicting apply: {r.returncode}\n{r.stderr}")
        check(podless_json("workload", "ssa")["spec"]["replicas"] == 2, "a conflict changes nothing")
        out = kubectl("apply", "--server-side", "--field-manager=team-b",
                      "--force-conflicts", "-f", second).stdout
        check("deployment.apps/ssa serverside-applied" in out, f"forced apply: {out}")
        check(podless_json("workload", "ssa")["spec"]["replicas"] == 3, "the forced apply's value")
        shown = json.loads(kubectl("get", "deploy", "ssa", "-n", NS, "-o", "json",
                                   "--show-managed-fields").stdout)
        managers = {(m["manager"], m["operation"]) for m in shown["metadata"]["managedFields"]}
        check(managers == {("team-a", "Apply"), ("team-b", "Apply")}, f"managedFields: {managers}")
        owner = [m["manager"] for m in shown["metadata"]["managedFields"]
                 if "f:replicas" in m["fieldsV1"].get("f:spec", {})]
        check(owner == ["team-b"], f"spec.replicas is team-b's only: {owner}")

        # delete by name and by file: prompt, gone at once.
        start = time.time()
        out = kubectl("delete", "sa", "api", "-n", NS, timeout=30).stdout
        check('serviceaccount "api" deleted' in out and time.time() - start < 10,
              f"delete by name: {out} in {time.time() - start:.1f}s")
        check(podless_json("serviceaccount", "api") is None, "deleted from the agent's state")
        start = time.time()
        out = kubectl("delete", "deploy", "web", "-n", NS, timeout=30).stdout
        check('deployment.apps "web" deleted' in out and time.time() - start < 10,
              f"delete deploy: {out} in {time.time() - start:.1f}s")
        r = kubectl("get", "deploy", "web", "-n", NS, ok=False)
        check("NotFound" in r.stderr, f"get after delete: {r.stderr}")

        # The body limit (413) and an unauthenticated write (401), over curl.
        ca = os.path.join(tmp, "ca.pem")
        write(ca, agent.cli("ca", "export").stdout)
        admin = admin_certificate(kubectl)
        url = f"https://127.0.0.1:{agent.kube_port}/api/v1/namespaces/{NS}/serviceaccounts"
        big = write(os.path.join(tmp, "big.json"), json.dumps(
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "big", "annotations": {"a": "x" * (3 * 1024 * 1024)}}}))

        def curl(*extra, http="--http1.1"):
            r = subprocess.run(["curl", "-sS", http, "--cacert", ca, "-o", "-", "-w",
                                "\n%{http_code}", "-H", "Content-Type: application/json",
                                *extra, url], capture_output=True, text=True, timeout=60)
            body, _, code = r.stdout.rpartition("\n")
            return code, body

        for http in ("--http1.1", "--http2"):
            code, body = curl(*admin, "--data-binary", "@" + big, http=http)
            check(code == "413" and json.loads(body)["reason"] == "RequestEntityTooLarge",
                  f"a 3 MiB+ body ({http}): {code} {body[:200]}")
        check(podless_json("serviceaccount", "big") is None, "the large body created nothing")
        sa = '{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"anon"}}'
        for http in ("--http1.1", "--http2"):
            code, body = curl("--data-binary", sa, http=http)
            check(code == "401" and json.loads(body)["reason"] == "Unauthorized",
                  f"anonymous write ({http}): {code} {body[:200]}")
        check(podless_json("serviceaccount", "anon") is None, "an anonymous write changes nothing")
        # fieldValidation: Strict is 400 and changes nothing; Warn applies the
        # rest with a Warning header.
        deploy_url = f"https://127.0.0.1:{agent.kube_port}/apis/apps/v1/namespaces/{NS}/deployments/ssa"
        for validation, want in (("Strict", "400"), ("Warn", "200")):
            r = subprocess.run(["curl", "-sS", "--cacert", ca, *admin, "-X", "PATCH", "-D", "-",
                                "-H", "Content-Type: application/merge-patch+json",
                                "--data-binary", '{"spec":{"replicas":5,"frobnicate":1}}',
                                "-o", "-", f"{deploy_url}?fieldValidation={validation}"],
                               capture_output=True, text=True, timeout=30)
            check(f" {want} " in r.stdout.splitlines()[0], f"{validation}: {r.stdout[:400]}")
            if validation == "Strict":
                check('strict decoding error: unknown field \\"spec.frobnicate\\"' in r.stdout
                      and podless_json("workload", "ssa")["spec"]["replicas"] == 3,
                      f"Strict: {r.stdout[-400:]}")
            else:
                check(re.search(r'^warning: 299 - "unknown field \\"spec.frobnicate\\""', r.stdout,
                                re.M | re.I) and
                      podless_json("workload", "ssa")["spec"]["replicas"] == 5,
                      f"Warn: {r.stdout[:600]}")

        # The admin certificate over HTTP/1.1 with a chunked body: created.
        code, body = curl(*admin, "-H", "Transfer-Encoding: chunked", "--data-binary", sa)
        check(code == "201" and json.loads(body)["metadata"]["name"] == "anon",
              f"chunked create: {code} {body[:200]}")

        # delete --all: kubectl lists, then deletes one by one.
        out = kubectl("delete", "sa", "--all", "-n", NS, timeout=60).stdout
        check('serviceaccount "web" deleted' in out and 'serviceaccount "ssa" deleted' in out,
              f"delete --all:\n{out}")
        check(kubectl("get", "sa", "-n", NS, ok=False).stdout == "", "no service account left")

        # delete -f: everything the file holds.
        out = kubectl("delete", "-f", path, "--ignore-not-found", timeout=60).stdout
        check("authorizationpolicy.security.istio.io \"deny-all\" deleted" in out and
              'workload.podless.dev "echo" deleted' in out, f"delete -f:\n{out}")
        check(podless_json("workload", "echo") is None and
              podless_json("authorizationpolicy", "deny-all") is None, "delete -f in the agent")
        print("PASS")
    finally:
        agent.cleanup()


if __name__ == "__main__":
    main()
