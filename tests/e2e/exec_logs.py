"""`podless logs` through the real binary: the output of an exec workload's
process (stdout and stderr), --tail, --replica, --previous after a restart,
-f following new output, rotation keeping the disk use capped; restarts and
the last exit in `get -o yaml` and `describe`."""

import os
import subprocess
import tempfile
import time

from exec_util import exec_agent, replica
from harness import PODLESS, check, wait_for, write

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: talker, namespace: t}}
spec:
  replicas: 2
  app:
    exec:
      command: [sh, -c, "echo hello from $(PODLESS_REPLICA); echo to stderr >&2; i=0; while [ $i -lt 5 ]; do i=$((i+1)); echo line $i; done; while :; do sleep 0.2; echo tick; done"]
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: crasher, namespace: t}}
spec:
  app:
    exec:
      command: [sh, -c, "n=$(cat {root}/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > {root}/n; echo run $n; exit 1"]
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: flood, namespace: t}}
spec:
  app:
    exec:
      command: [sh, -c, "yes 0123456789abcdef | head -c 25000000; echo END; exec sleep 3600"]
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: inproxy, namespace: t}}
spec:
  app: {{echo: {{}}}}
"""


def main():
    root = tempfile.mkdtemp(prefix="podless-exec-")
    os.chmod(root, 0o777)  # the workloads write here as their own uids
    with exec_agent() as agent:
        agent.cli("apply", "-f", write(f"{root}/m.yaml", MANIFEST.format(root=root)))
        logs = lambda *a, **kw: agent.cli("logs", *a, **kw)

        out = wait_for("talker output", lambda: "line 5" in (t := logs("talker", "-n", "t").stdout) and t,
                       agent=agent)
        check(out.startswith("hello from talker-0\n"), out)
        check("to stderr\n" in out, "stderr not captured: " + out)
        tail = logs("talker", "-n", "t", "--tail", "1").stdout
        check(tail.count("\n") == 1, f"--tail 1: {tail!r}")
        check(logs("talker", "-n", "t", "--replica", "1").stdout.startswith("hello from talker-1\n"),
              "--replica 1")
        r = logs("talker", "-n", "t", "--replica", "2", expect_ok=False)
        check(r.returncode != 0 and "no replica 2" in r.stderr, "replica 2: " + r.stderr)
        r = logs("inproxy", "-n", "t", expect_ok=False)
        check(r.returncode != 0 and "not exec" in r.stderr, "inproxy: " + r.stderr)
        r = logs("nosuch", "-n", "t", expect_ok=False)
        check(r.returncode != 0 and "not found" in r.stderr, "nosuch: " + r.stderr)

        # -f: the old lines, then new ones as they are written.
        follower = subprocess.Popen([PODLESS, "--socket", agent.socket, "logs", "talker", "-n", "t",
                                     "-f", "--tail", "0"], stdout=subprocess.PIPE)
        try:
            seen = b""
            deadline = time.time() + 10
            while seen.count(b"tick") < 3 and time.time() < deadline:
                seen += os.read(follower.stdout.fileno(), 4096)
            check(seen.count(b"tick") >= 3, f"followed: {seen!r}")
            check(b"hello" not in seen, "--tail 0 sent old lines")
        finally:
            follower.kill()
            follower.wait()

        # --previous: the run before the current one.
        wait_for("crasher restarted", lambda: replica(agent, "crasher-0")["process"]["restarts"] >= 1,
                 timeout=30, agent=agent)
        wait_for("crasher's second run logged",
                 lambda: logs("crasher", "-n", "t").stdout == "run 2\n", agent=agent)
        check(logs("crasher", "-n", "t", "--previous").stdout == "run 1\n", "previous")
        r = logs("talker", "-n", "t", "--previous", expect_ok=False)
        check(r.returncode != 0 and "no previous run" in r.stderr, "previous: " + r.stderr)

        yaml = agent.cli("get", "workload", "crasher", "-n", "t", "-o", "yaml").stdout
        check("restarts: 1" in yaml and "lastExit: exit code 1" in yaml, yaml)
        described = agent.cli("describe", "workload", "crasher", "-n", "t").stdout
        check("RESTARTS" in described and "exit code 1" in described, described)

        # Rotation: 25 MB of output, at most 3 x 10 MiB on disk, the end kept.
        wait_for("flood END", lambda: logs("flood", "-n", "t", "--tail", "1").stdout.endswith("END\n"),
                 timeout=60, agent=agent)
        log_dir = os.path.join(agent.state_dir, "logs", "t", "flood-0")
        total = sum(os.path.getsize(os.path.join(log_dir, f)) for f in os.listdir(log_dir))
        check(total <= 2 * 10 * 1024 * 1024 + 65536, f"{total} bytes of logs on disk")
        check(os.path.exists(os.path.join(log_dir, "current.log.1")), "no rotation happened")
    print("ok")


if __name__ == "__main__":
    main()
