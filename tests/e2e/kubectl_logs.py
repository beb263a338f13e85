"""The stock kubectl reads pod logs from the agent (issue 15, logs):
`kubectl logs POD` of an exec workload's replica, `--tail`, `--timestamps`,
`--limit-bytes`, `-f` receiving lines written after it started (and ending
when the workload is deleted), `--previous` after the process restarted,
`deploy/X` (kubectl resolves it to a pod through the Deployment's selector),
and `-c` for a Pod of several containers; an unknown container and a
missing pod are errors; a pod that runs no process has an empty log.
Skips when /usr/bin/kubectl is absent."""

import os
import re
import signal
import subprocess
import tempfile
import time

from exec_util import exec_agent, replica
from harness import check, wait_for, write
from kube_util import Kubectl, require_kubectl


MANIFEST = """apiVersion: v1
kind: Namespace
metadata: {{name: kl}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: talk, namespace: kl}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: talk}}}}
  template:
    metadata: {{labels: {{app: talk}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: talk
        command: [/bin/sh, -c, "n=$(cat {root}/runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > {root}/runs; echo run $n; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.3; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: duo
  namespace: kl
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: left
    command: [/bin/sh, -c, "echo left; exec sleep 600"]
  - name: right
    command: [/bin/sh, -c, "echo right; exec sleep 600"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: quiet, namespace: kl}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: quiet}}}}
  template:
    metadata: {{labels: {{app: quiet}}}}
    spec:
      containers: [{{name: web, image: nginx}}]
"""


def pid_of(agent, name):
    """The pid of replica `name`'s (first) process, 0 while there is none."""
    r = replica(agent, name) or {}
    containers = r.get("containers") or []
    if containers:
        return containers[0].get("pid", 0)
    return (r.get("process") or {}).get("pid", 0)


def main():
    require_kubectl()
    root = tempfile.mkdtemp(prefix="podless-kubelogs-")
    os.chmod(root, 0o777)  # the workload writes here as its own uid
    with exec_agent() as agent:
        kubectl = Kubectl(agent)
        base = kubectl.base

        agent.cli("apply", "-f", write(os.path.join(root, "m.yaml"), MANIFEST.format(root=root)))
        out = wait_for("talk-0's ticks", lambda: "tick 3" in (t := kubectl(
            "logs", "talk-0", "-n", "kl", ok=False).stdout) and t, timeout=30, agent=agent)
        check(out.startswith("run 1\ntick 1\n"), f"kubectl logs talk-0:\n{out}")

        # --tail, --timestamps, --limit-bytes.
        tail = kubectl("logs", "talk-0", "-n", "kl", "--tail", "2").stdout
        check(len(tail.splitlines()) == 2 and all(l.startswith("tick ") for l in tail.splitlines()),
              f"--tail 2: {tail!r}")
        stamped = kubectl("logs", "talk-0", "-n", "kl", "--timestamps", "--tail", "1").stdout
        check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z tick \d+\n$", stamped),
              f"--timestamps: {stamped!r}")
        limited = kubectl("logs", "talk-0", "-n", "kl", "--limit-bytes", "4").stdout
        check(limited == "run ", f"--limit-bytes 4: {limited!r}")

        # deploy/X: kubectl finds the pod through the Deployment's selector.
        via = kubectl("logs", "deploy/talk", "-n", "kl").stdout
        check(via.startswith("run 1\ntick 1\n"), f"kubectl logs deploy/talk:\n{via}")

        # -f: lines written after it started.
        last = max(int(n) for n in re.findall(r"tick (\d+)", kubectl(
            "logs", "talk-0", "-n", "kl").stdout))
        follow = subprocess.Popen(base + ["logs", "-f", "talk-0", "-n", "kl"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen = b""
        deadline = time.time() + 15
        want = f"tick {last + 3}\n".encode()
        os.set_blocking(follow.stdout.fileno(), False)
        while want not in seen and time.time() < deadline:
            try:
                seen += os.read(follow.stdout.fileno(), 65536) or b""
            except BlockingIOError:
                time.sleep(0.1)
        follow.kill()
        follow.wait()
        check(want in seen, f"kubectl logs -f did not get {want!r}: {seen[-300:]!r}")

        # -c: each container of a Pod of two.
        wait_for("duo's containers wrote", lambda: kubectl(
            "logs", "duo", "-n", "kl", "-c", "right", ok=False).stdout == "right\n", agent=agent)
        check(kubectl("logs", "duo", "-n", "kl", "-c", "left").stdout == "left\n", "logs -c left")
        r = kubectl("logs", "duo", "-n", "kl", "-c", "nope", ok=False)
        check(r.returncode != 0 and "container nope is not valid for pod duo" in r.stderr,
              f"logs -c nope: {r.returncode} {r.stderr}")
        r = kubectl("logs", "missing-0", "-n", "kl", ok=False)
        check(r.returncode != 0 and 'pods "missing-0" not found' in r.stderr,
              f"logs of a missing pod: {r.stderr}")

        # A pod with no process: an empty log, no error.
        r = kubectl("logs", "quiet-0", "-n", "kl")
        check(r.stdout == "", f"logs of a pod without a process: {r.stdout!r}")

        # --previous: none yet (400), then the run before a restart.
        r = kubectl("logs", "talk-0", "-n", "kl", "--previous", ok=False)
        check(r.returncode != 0 and "previous terminated container" in r.stderr,
              f"--previous before a restart: {r.stderr}")
        pid = wait_for("talk-0's pid", lambda: pid_of(agent, "talk-0"), agent=agent)
        os.kill(pid, signal.SIGKILL)
        wait_for("talk-0 restarted", lambda: "run 2" in kubectl(
            "logs", "talk-0", "-n", "kl", ok=False).stdout, timeout=30, agent=agent)
        prev = kubectl("logs", "talk-0", "-n", "kl", "--previous").stdout
        check(prev.startswith("run 1\ntick 1\n") and "run 2" not in prev,
              f"--previous:\n{prev[:300]}")

        # -f ends when the workload is deleted.
        follow = subprocess.Popen(base + ["logs", "-f", "deploy/talk", "-n", "kl"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(2)
        check(follow.poll() is None, "kubectl logs -f ended early")
        agent.cli("delete", "deployment", "talk", "-n", "kl", expect_ok=False)
        agent.cli("delete", "workload", "talk", "-n", "kl", expect_ok=False)
        try:
            follow.wait(timeout=20)
        except subprocess.TimeoutExpired:
            follow.kill()
            follow.wait()
            check(False, "kubectl logs -f still running 20 s after the workload was deleted")
    print("PASS")


if __name__ == "__main__":
    main()
