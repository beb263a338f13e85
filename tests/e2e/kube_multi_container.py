"""A Kubernetes pod of several containers with commands (issue 14): a
Deployment whose pod runs a Python HTTP server and a poller side by side.
Both run in the one replica's sandbox: the workload's port reaches the
server, the poller reaches the server on 127.0.0.1 (its log, read with
`logs -c`, shows what it got); `logs` without -c defaults to the first
container and says so, as kubectl does; an unknown container is an error
naming the containers; killing one container's process restarts only that
container; `describe` lists each container; a Pod's `get -o yaml` status has
one containerStatuses entry per container; an agent restart brings both
containers back from the stored state, and after a kill -9 of the agent the
next one replaces both containers' orphaned processes."""

import os
import signal
import tempfile

from exec_util import exec_agent, replica
from harness import check, free_port, http_get, wait_for, write

PAIR = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: pair
spec:
  replicas: 1
  selector:
    matchLabels: {{app: pair}}
  template:
    metadata:
      labels: {{app: pair}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: python:3.11
        command: [/usr/bin/python3, -m, http.server]
        args: ["$(PORT)", --bind, 127.0.0.1]
        workingDir: {root}
        ports:
        - {{containerPort: {port}, name: http}}
        readinessProbe:
          tcpSocket: {{port: http}}
          periodSeconds: 1
      - name: poller
        image: curlimages/curl
        command: [/usr/bin/python3, -u, -c]
        args:
        - |
          import os, time, urllib.request
          while True:
              try:
                  url = "http://127.0.0.1:" + os.environ["PORT"] + "/hello.txt"
                  body = urllib.request.urlopen(url, timeout=2).read().decode()
                  print("poller got: " + body.strip(), flush=True)
              except Exception as e:
                  print("poller waits: " + str(e), flush=True)
              time.sleep(1)
---
apiVersion: v1
kind: Pod
metadata:
  name: duo
  labels: {{app: duo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: left
    command: [/bin/sh, -c, "echo left; exec sleep 600"]
  - name: right
    command: [/bin/sh, -c, "echo right; exec sleep 600"]
"""


def alive(pid):
    """Whether `pid` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def containers_of(agent, name):
    """The per-container process records of replica `name` (config dump), by name."""
    r = replica(agent, name)
    return {c["name"]: c for c in (r or {}).get("containers", [])}


def main():
    root = tempfile.mkdtemp(prefix="podless-multi-")
    os.chmod(root, 0o755)  # the sandboxed processes (their own uids) read it
    write(os.path.join(root, "hello.txt"), "hello from container web\n")
    port = free_port()
    with exec_agent() as agent:
        r = agent.cli("apply", "-f", write(os.path.join(root, "pair.yaml"),
                                           PAIR.format(root=root, port=port)))
        check("workload/pair created" in r.stdout and "workload/duo created" in r.stdout,
              f"apply:\n{r.stdout}\n{r.stderr}")
        check("one command per workload" not in r.stderr, f"apply refused:\n{r.stderr}")

        rep = wait_for("pair-0 ready", lambda: (x := replica(agent, "pair-0")) and x["ready"] and x,
                       timeout=30, agent=agent)
        # Traffic through the workload's port reaches container web.
        status, body = http_get(f"http://{rep['address']}:{port}/hello.txt")
        check(status == 200 and body == "hello from container web\n",
              f"pair-0 on {rep['address']}:{port}: {status} {body!r}")

        # The poller reached web over loopback inside the sandbox.
        out = wait_for("the poller's log", lambda: (t := agent.cli(
            "logs", "pair", "-c", "poller").stdout) and "poller got: hello from container web" in t
            and t, agent=agent)
        r = agent.cli("logs", "pair", "--container", "poller", "--tail", "1")
        check(r.stdout.startswith("poller "), f"logs --container poller --tail 1:\n{r.stdout}")
        check("Defaulted container" not in r.stderr, r.stderr)

        # No -c: the first container, as kubectl says.
        r = agent.cli("logs", "pair")
        check('Defaulted container "web" out of: web, poller' in r.stderr,
              f"logs without -c, stderr:\n{r.stderr}")
        check("GET /hello.txt" in r.stdout and "poller got" not in r.stdout,
              f"logs without -c is not web's log:\n{r.stdout}")
        r = agent.cli("logs", "pair", "-c", "nope", expect_ok=False)
        check(r.returncode != 0 and 'container "nope" is not valid' in r.stderr and
              "web, poller" in r.stderr, f"logs -c nope:\n{r.stdout}{r.stderr}")

        # Killing the poller's process restarts the poller alone.
        before = wait_for("both containers running", lambda: (c := containers_of(agent, "pair-0"))
                          and len(c) == 2 and all(x["pid"] > 0 for x in c.values()) and c,
                          agent=agent)
        check(before["web"]["state"] == "Running" and before["poller"]["state"] == "Running",
              f"containers: {before}")
        os.kill(before["poller"]["pid"], signal.SIGKILL)
        after = wait_for("the poller restarted", lambda: (c := containers_of(agent, "pair-0")) and
                         c["poller"]["restarts"] == 1 and c["poller"]["pid"] > 0 and c,
                         timeout=40, agent=agent)
        check(after["poller"]["pid"] != before["poller"]["pid"], f"poller pid: {after}")
        check(after["web"]["pid"] == before["web"]["pid"] and after["web"]["restarts"] == 0,
              f"web was restarted too: {before} -> {after}")
        check("signal 9" in after["poller"]["last_exit"], f"poller: {after['poller']}")
        check(replica(agent, "pair-0")["process"]["restarts"] == 1, str(replica(agent, "pair-0")))
        wait_for("the restarted poller's output", lambda: "poller got" in agent.cli(
            "logs", "pair", "-c", "poller").stdout, agent=agent)
        r = agent.cli("logs", "pair", "-c", "poller", "--previous")
        check("poller got: hello from container web" in r.stdout, f"--previous:\n{r.stdout}")

        d = agent.cli("describe", "workload", "pair").stdout
        check("Container Status" in d and "poller" in d and "Container poller" in d,
              f"describe:\n{d}")

        # A Pod: one containerStatuses entry per container.
        y = wait_for("duo running", lambda: (t := agent.cli(
            "get", "workload", "duo", "-o", "yaml").stdout) and t.count("ready: true") == 2 and t,
            timeout=30, agent=agent)
        check("kind: Pod" in y and "containerStatuses:" in y, y)
        statuses = y.split("containerStatuses:", 1)[1]
        check(statuses.count("- name: ") == 2 and "name: left" in statuses and
              "name: right" in statuses, f"containerStatuses:\n{y}")
        check(agent.cli("logs", "duo", "-c", "right").stdout == "right\n", "duo's right log")

        # The stored state (format version 4) brings both containers back
        # after an agent restart.
        agent.stop()
        agent.start()
        back = wait_for("pair-0's containers after a restart", lambda: (
            c := containers_of(agent, "pair-0")) and len(c) == 2 and
            all(x["state"] == "Running" for x in c.values()) and c, timeout=30, agent=agent)
        check(sorted(back) == ["poller", "web"], f"after restart: {back}")
        wait_for("pair-0 ready after a restart", lambda: (x := replica(agent, "pair-0")) and
                 x["ready"], timeout=30, agent=agent)

        # kill -9 of the agent: the next one stops both containers' orphans
        # (the process table records each) before starting them again.
        old = {name: c["pid"] for name, c in back.items()}
        agent.kill9()
        agent.start()
        wait_for("the orphans stopped", lambda: not any(alive(p) for p in old.values()),
                 timeout=20, agent=agent)
        again = wait_for("pair-0's containers after kill -9", lambda: (
            c := containers_of(agent, "pair-0")) and len(c) == 2 and
            all(x["state"] == "Running" and x["pid"] > 0 for x in c.values()) and c,
            timeout=30, agent=agent)
        check(all(again[n]["pid"] != old[n] for n in old), f"{old} -> {again}")
    print("PASS")


if __name__ == "__main__":
    main()
