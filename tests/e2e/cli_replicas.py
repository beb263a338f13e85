"""kubectl's verbs a new user reaches for first (issue 17, point 7): `get
replicas` (alias pods) with one row per replica, -l/--selector on get,
delete and logs, --show-labels, --no-headers, -o name, `scale`, `logs` of
every replica (--all-replicas, -l) with a prefix per line, and `get -w`."""

import datetime
import os
import re
import subprocess
import time

from exec_util import exec_agent
from harness import PODLESS, check, wait_for, write

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: talker, namespace: rx, labels: {app: talker, tier: back}}
spec:
  replicas: 2
  app:
    exec:
      command: [sh, -c, "echo hello from $(PODLESS_REPLICA); exec sleep 3600"]
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: rx, labels: {app: web, tier: front}}
spec:
  replicas: 3
  ports: [{name: http, port: 8080, protocol: HTTP}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: other, namespace: rx, labels: {app: other, tier: front}}
spec: {app: {echo: {}}}
"""


def table(text):
    lines = text.splitlines()
    header = lines[0].split()
    return header, [dict(zip(header, line.split())) for line in lines[1:]]


def main():
    with exec_agent() as agent:
        agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "m.yaml"), MANIFEST))
        cli = agent.cli

        # get replicas / pods: one row per replica.
        header, rows = table(cli("get", "replicas", "-n", "rx").stdout)
        check(header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "ADDRESS", "NODE"],
              f"replicas header {header}")
        names = [r["NAME"] for r in rows]
        check(names == ["other-0", "talker-0", "talker-1", "web-0", "web-1", "web-2"],
              f"replica rows {names}")
        web0 = [r for r in rows if r["NAME"] == "web-0"][0]
        check(web0["READY"] == "1/1" and web0["STATUS"] == "Running" and
              web0["RESTARTS"] == "0" and web0["ADDRESS"].startswith("127.") and
              web0["AGE"].endswith("s") and web0["NODE"] != "<none>", f"web-0 row {web0}")
        # AGE, STATUS and READY move between two calls (an exec replica may start in
        # between, a slow build crosses a second); what names a replica does not.
        def stable(kind):
            header, rows = table(cli("get", kind, "-n", "rx").stdout)
            return header, [(r["NAME"], r["ADDRESS"], r["NODE"]) for r in rows]
        check(stable("pods") == stable("replicas"), "pods is not an alias of replicas")
        wait_for("talker running", lambda: all(
            r["STATUS"] == "Running" and r["READY"] == "1/1"
            for r in table(cli("get", "pods", "-n", "rx", "-l", "app=talker").stdout)[1]),
            agent=agent)
        _, talker = table(cli("get", "pods", "-n", "rx", "-l", "app=talker").stdout)
        check([r["NAME"] for r in talker] == ["talker-0", "talker-1"], f"-l on pods {talker}")
        check(cli("get", "pods", "web-1", "-n", "rx", "-o", "name").stdout == "replica/web-1\n",
              "get pods NAME -o name")
        header, _ = table(cli("get", "pods", "-n", "rx", "-o", "wide").stdout)
        check(header[-2:] == ["WORKLOAD", "SPIFFE-ID"], f"pods wide {header}")

        # -l on get, with kubectl's selector forms.
        def names_of(*args):
            return cli("get", "workloads", "-n", "rx", "-o", "name", *args).stdout.split()
        check(names_of("-l", "tier=front") == ["workload/other", "workload/web"], "tier=front")
        check(names_of("--selector=tier!=front") == ["workload/talker"], "tier!=front")
        check(names_of("-l", "app in (web,talker)") == ["workload/talker", "workload/web"], "in")
        check(names_of("-l", "tier=front,app=web") == ["workload/web"], "and")
        check(names_of("-l", "!tier") == [], "!tier")
        r = cli("get", "workloads", "-n", "rx", "-l", "app=(", expect_ok=False)
        check(r.returncode != 0 and "selector" in r.stderr, "bad selector: " + r.stderr)

        # --show-labels, --no-headers.
        out = cli("get", "workloads", "-n", "rx", "--show-labels", "-l", "app=web").stdout
        header, rows = table(out)
        check(header[-1] == "LABELS" and rows[0]["LABELS"] == "app=web,tier=front", out)
        out = cli("get", "workloads", "-n", "rx", "--no-headers").stdout
        check(len(out.splitlines()) == 3 and not out.startswith("NAME"), "--no-headers: " + out)

        # scale KIND/NAME --replicas N, and the other spellings.
        r = cli("scale", "workload/web", "--replicas", "1", "-n", "rx")
        check(r.stdout.strip() == "workload/web -n rx scaled", "scale: " + r.stdout)
        check(len(table(cli("get", "pods", "-n", "rx", "-l", "app=web").stdout)[1]) == 1, "scaled to 1")
        cli("scale", "wl", "web", "--replicas=2", "--namespace=rx")
        check(len(table(cli("get", "pods", "-n", "rx", "-l", "app=web").stdout)[1]) == 2, "scaled to 2")
        r = cli("scale", "service/web", "--replicas", "2", "-n", "rx", expect_ok=False)
        check(r.returncode == 2 and "only workloads" in r.stderr, "scale service: " + r.stderr)
        r = cli("scale", "workload/web", "-n", "rx", expect_ok=False)
        check(r.returncode == 2 and "--replicas" in r.stderr, "scale without --replicas: " + r.stderr)
        r = cli("scale", "workload/nope", "--replicas", "2", "-n", "rx", expect_ok=False)
        check(r.returncode == 1 and "not found" in r.stderr, "scale of a missing one: " + r.stderr)
        spec = cli("get", "workload", "web", "-n", "rx", "-o", "yaml").stdout
        check("replicas: 2" in spec and "app: web" in spec, "scale kept the rest: " + spec)

        # logs: replica 0 alone as before; every replica with a prefix.
        wait_for("talker output", lambda: "hello from talker-1" in
                 cli("logs", "talker", "-n", "rx", "-r", "1").stdout, agent=agent)
        check(cli("logs", "talker", "-n", "rx").stdout == "hello from talker-0\n", "logs default")
        out = cli("logs", "talker", "-n", "rx", "--all-replicas").stdout
        check(out == "[replica/talker-0] hello from talker-0\n"
                     "[replica/talker-1] hello from talker-1\n", "--all-replicas: " + out)
        check(cli("logs", "-l", "app=talker", "-n", "rx").stdout == out, "logs -l")
        check(cli("logs", "-l", "tier", "-n", "rx").stdout == out,
              "logs -l skips workloads without a process")
        out = cli("logs", "talker", "-n", "rx", "--prefix").stdout
        check(out == "[replica/talker-0] hello from talker-0\n", "--prefix: " + out)
        # --timestamps: RFC 3339 times of when each line was read; --since filters on them.
        out = cli("logs", "talker", "-n", "rx", "--timestamps").stdout
        check(re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z hello from talker-0\n", out),
              "--timestamps: " + out)
        stamp = datetime.datetime.strptime(out[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.timezone.utc)
        check(abs(time.time() - stamp.timestamp()) < 120, f"stamp {out[:30]} is not now")
        check(cli("logs", "talker", "-n", "rx", "--since=1h").stdout == "hello from talker-0\n",
              "--since 1h")
        time.sleep(2.2)
        check(cli("logs", "talker", "-n", "rx", "--since", "1s").stdout == "", "--since 1s")
        r = cli("logs", "talker", "-n", "rx", "--since", "soon", expect_ok=False)
        check(r.returncode == 2 and "not a duration" in r.stderr, "--since soon: " + r.stderr)
        follower = subprocess.Popen([PODLESS, "--socket", agent.socket, "logs", "-f", "-n", "rx",
                                     "-l", "app=talker"], stdout=subprocess.PIPE)
        try:
            seen = b""
            deadline = time.time() + 10
            while seen.count(b"\n") < 2 and time.time() < deadline:
                seen += os.read(follower.stdout.fileno(), 4096)
            check(b"[replica/talker-0] hello" in seen and b"[replica/talker-1] hello" in seen,
                  f"logs -f -l: {seen!r}")
        finally:
            follower.kill()
            follower.wait()

        # get -w: the table, then a row per change.
        watcher = subprocess.Popen([PODLESS, "--socket", agent.socket, "get", "workloads", "-w",
                                    "-n", "rx", "-l", "tier=front"], stdout=subprocess.PIPE)
        try:
            seen = b""
            deadline = time.time() + 10
            while b"web" not in seen and time.time() < deadline:
                seen += os.read(watcher.stdout.fileno(), 4096)
            check(seen.startswith(b"NAME") and b"other" in seen and b"talker" not in seen,
                  f"get -w list: {seen!r}")
            cli("scale", "workload/other", "--replicas", "3", "-n", "rx")
            cli("scale", "workload/talker", "--replicas", "1", "-n", "rx")
            deadline = time.time() + 10
            while b"3/3" not in seen and time.time() < deadline:
                seen += os.read(watcher.stdout.fileno(), 4096)
            last = seen.decode().splitlines()[-1].split()
            check(last[0] == "other" and last[2] == "3" and "talker" not in seen.decode(),
                  f"get -w change row: {seen!r}")
        finally:
            watcher.kill()
            watcher.wait()

        # delete -l
        r = cli("delete", "workloads", "-l", "tier=front", "-n", "rx")
        check(sorted(r.stdout.splitlines()) == ["workload/other -n rx deleted",
                                                "workload/web -n rx deleted"], "delete -l: " + r.stdout)
        check(cli("get", "workloads", "-n", "rx", "-o", "name").stdout == "workload/talker\n",
              "delete -l deleted the wrong ones")
        r = cli("delete", "workloads", "-l", "tier=front", "-n", "rx")
        check(r.stderr.strip() == "No resources found", "delete -l nothing: " + r.stderr)
    print("ok")


if __name__ == "__main__":
    main()
