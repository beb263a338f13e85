"""The stock kubectl watches the agent (issue 15, watch): `kubectl get pods
-w` started before anything exists prints the pods of a Deployment applied
with `podless apply`, the pod a `podless scale` adds and the pods it and a
`podless delete` remove, as they happen; `kubectl get deploy -w
--output-watch-events` prints ADDED/MODIFIED/DELETED of the Deployment; a
watch from a resourceVersion older than the agent's event ring (here: from
before the agent started) gets the API server's ERROR event with a Status
410 Expired, over HTTP/2 and over HTTP/1.1 (curl with the kubeconfig's
client certificate, chunked); allowWatchBookmarks gets BOOKMARK events; a
bad timeoutSeconds is a 400 naming the field; after an agent restart a
watch from a version before a change made before it gets 410, one from a
fresh list's version is served. Skips when /usr/bin/kubectl is
absent."""

import json
import os
import re
import subprocess
import time

from harness import Agent, check, wait_for, write
from kube_util import Background, Kubectl, admin_certificate, require_kubectl, web_deployment

DEPLOYMENT = web_deployment("kw")


def main():
    require_kubectl()
    env = dict(os.environ, PODLESS_KUBE_BOOKMARK_MS="500")
    agent = Agent(env=env).start()
    watchers = []
    try:
        tmp = agent.state_dir
        kubectl = Kubectl(agent)
        base = kubectl.base
        # Two changes before anyone watches: the watch ring starts after
        # them, so resourceVersion 1 is older than it.
        agent.cli("apply", "-f", write(os.path.join(tmp, "ns.yaml"),
                                       "apiVersion: v1\nkind: Namespace\nmetadata: {name: kw}\n"))
        agent.cli("apply", "-f", write(os.path.join(tmp, "svc.yaml"),
                                       "apiVersion: v1\nkind: Service\nmetadata: {name: db, "
                                       "namespace: kw}\nspec:\n  selector: {app: db}\n"
                                       "  ports: [{port: 5432}]\n"))

        # Watchers first, on an empty namespace (their timeout bounds them).
        pods = Background(base + ["get", "pods", "-w", "-n", "kw", "--request-timeout=120s"])
        deploys = Background(base + ["get", "deploy", "-w", "-n", "kw", "--output-watch-events",
                                     "--request-timeout=120s"])
        watchers += [pods, deploys]
        # kubectl lists, then watches from the list's resourceVersion: give
        # it the time to open the watch (its stderr says the list was empty).
        time.sleep(3)
        check(pods.proc.poll() is None and deploys.proc.poll() is None,
              f"kubectl get -w exited early: {pods.proc.poll()} {deploys.proc.poll()}")

        agent.cli("apply", "-f", write(os.path.join(tmp, "d.yaml"), DEPLOYMENT))
        wait_for("kubectl get pods -w prints web-0 and web-1",
                 lambda: re.search(r"^web-0\s", pods.text(), re.M) and
                 re.search(r"^web-1\s", pods.text(), re.M), timeout=15)
        check(re.search(r"^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$", pods.text(), re.M),
              f"the watch's table header:\n{pods.text()}")
        wait_for("get deploy -w --output-watch-events: ADDED web",
                 lambda: re.search(r"^ADDED\s+web\s", deploys.text(), re.M), timeout=15)

        # A scale through the CLI: the pod it adds, then the ones it removes.
        r = agent.cli("scale", "workload/web", "--replicas", "3", "-n", "kw")
        check(r.returncode == 0, f"scale to 3: {r.stderr}")
        wait_for("web-2 appears in the watch", lambda: re.search(r"^web-2\s", pods.text(), re.M),
                 timeout=15)
        wait_for("the Deployment MODIFIED",
                 lambda: re.search(r"^MODIFIED\s+web\s", deploys.text(), re.M), timeout=15)
        seen = len(pods.out)
        agent.cli("scale", "workload/web", "--replicas", "1", "-n", "kw")
        wait_for("web-1 and web-2 printed again as they go",
                 lambda: {l.split()[0] for l in pods.out[seen:] if l.strip()} >= {"web-1", "web-2"},
                 timeout=15)
        seen = len(pods.out)
        agent.cli("delete", "-f", os.path.join(tmp, "d.yaml"))
        wait_for("web-0 printed as it goes",
                 lambda: any(l.startswith("web-0 ") for l in pods.out[seen:]), timeout=15)
        wait_for("get deploy -w: DELETED web",
                 lambda: re.search(r"^DELETED\s+web\s", deploys.text(), re.M), timeout=15)
        for w in watchers:
            w.stop()
        print("kubectl get pods -w:\n" + pods.text())
        print("kubectl get deploy -w --output-watch-events:\n" + deploys.text())

        # The raw watch stream: kubectl get --raw, JSON lines.
        raw = subprocess.run(base + ["get", "--raw",
                                     "/api/v1/namespaces/kw/pods?watch=1&resourceVersion=1"
                                     "&timeoutSeconds=2"],
                             capture_output=True, text=True, timeout=30)
        check(raw.returncode == 0, f"get --raw watch from 1: {raw.returncode} {raw.stderr}")
        first = json.loads(raw.stdout.splitlines()[0])
        check(first["type"] == "ERROR" and first["object"]["code"] == 410 and
              first["object"]["reason"] == "Expired" and
              re.match(r"too old resource version: 1 \(\d+\)$", first["object"]["message"]),
              f"watch from an old resourceVersion:\n{raw.stdout}")

        # HTTP/1.1 with the kubeconfig's certificate: chunked.
        ca = os.path.join(tmp, "ca.pem")
        write(ca, agent.cli("ca", "export").stdout)
        admin = admin_certificate(kubectl)
        url = f"https://127.0.0.1:{agent.kube_port}/api/v1/namespaces/kw/pods"

        def curl(query, *extra):
            return subprocess.run(["curl", "-sS", "--http1.1", "-D", "-", "--cacert", ca, *admin,
                                   *extra, url + query],
                                  capture_output=True, text=True, timeout=30)

        r = curl("?watch=1&resourceVersion=1")
        check("Transfer-Encoding: chunked" in r.stdout and
              '{"type":"ERROR","object":{"kind":"Status"' in r.stdout and '"code":410' in r.stdout,
              f"curl --http1.1 watch from 1:\n{r.stdout}\n{r.stderr}")

        # Bookmarks (every 500 ms in this test) with allowWatchBookmarks.
        r = curl("?watch=true&allowWatchBookmarks=true&timeoutSeconds=2")
        bookmarks = [json.loads(l) for l in r.stdout.splitlines() if '"BOOKMARK"' in l]
        check(len(bookmarks) >= 2 and bookmarks[0]["object"]["kind"] == "Pod" and
              int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) > 1,
              f"bookmarks:\n{r.stdout}")
        r = curl("?watch=true&timeoutSeconds=1")
        check('"BOOKMARK"' not in r.stdout, f"bookmarks without asking:\n{r.stdout}")

        # A live change reaches a curl watch over HTTP/1.1 at once.
        live = Background(["curl", "-sS", "-N", "--http1.1", "--cacert", ca, *admin,
                           url + "?watch=1&timeoutSeconds=20"])
        watchers.append(live)
        time.sleep(1)
        agent.cli("apply", "-f", write(os.path.join(tmp, "d.yaml"), DEPLOYMENT))
        wait_for("curl's watch sees web-0 ADDED",
                 lambda: any('"ADDED"' in l and '"web-0"' in l for l in live.out), timeout=15)
        live.stop()

        # A bad parameter: 400 naming it.
        r = curl("?watch=1&timeoutSeconds=soon")
        check(" 400 " in r.stdout.splitlines()[0] and '"field":"timeoutSeconds"' in r.stdout,
              f"timeoutSeconds=soon:\n{r.stdout}")

        # An agent restart: the ring starts empty, so a version from before
        # it (with a change since) gets 410, and a fresh list's version works.
        listed = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", ca, *admin, url],
                                capture_output=True, text=True, timeout=30)
        before = json.loads(listed.stdout)["metadata"]["resourceVersion"]
        agent.cli("scale", "workload/web", "--replicas", "3", "-n", "kw")
        agent.stop()
        agent.start()
        r = curl(f"?watch=1&resourceVersion={before}&timeoutSeconds=1")
        after = json.loads(subprocess.run(["curl", "-sS", "--http1.1", "--cacert", ca, *admin, url],
                                          capture_output=True, text=True,
                                          timeout=30).stdout)["metadata"]["resourceVersion"]
        check('"code":410' in r.stdout and f"too old resource version: {before} " in r.stdout,
              f"a watch from {before}, before the restart (now {after}):\n{r.stdout}")
        listed = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", ca, *admin, url],
                                capture_output=True, text=True, timeout=30)
        now = json.loads(listed.stdout)["metadata"]["resourceVersion"]
        r = curl(f"?watch=1&resourceVersion={now}&timeoutSeconds=1")
        check(" 200 " in r.stdout.splitlines()[0] and '"ERROR"' not in r.stdout,
              f"a watch from a fresh list after the restart:\n{r.stdout}")
        print("PASS")
    finally:
        for w in watchers:
            w.stop()
        agent.cleanup()


if __name__ == "__main__":
    main()
