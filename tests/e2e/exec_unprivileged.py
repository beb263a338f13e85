"""Isolation under an agent that is not root (issue 13): the agent runs as
uid `nobody` (setpriv), so it can give its processes neither a uid nor a
network namespace of their own. What Landlock gives instead is attacked from
inside a hostile workload, which shares the agent's uid:
  - the agent's state dir (CA key, listing), outside the directories Landlock
    leaves open;
  - the agent's API socket: reachable by path, but the API refuses workload
    processes;
  - a neighbour's environment (/proc/<pid>/environ) and signals;
  - a neighbour's private port, and binding a port that is not its own.
It must still serve through the mesh. `apply` says what it could not give,
and refuses runAsUser.

Needs root to set it up (CI runs as root) and Landlock ABI 6; exits 77
(skip) otherwise, saying why."""

import ctypes
import json
import os
import pwd
import shutil
import sys
import tempfile

from exec_util import address_of, kill_processes_of
from harness import PODLESS, Agent, check, fail, http_get, wait_for, write

HOSTILE = r'''
import json, os, signal, socket, subprocess, sys
STATE = {state!r}
report = {{}}
def attempt(name, action):
    try:
        report[name] = "SUCCEEDED: " + repr(action())[:200]
    except Exception as e:
        report[name] = "blocked: " + type(e).__name__ + ": " + str(e)[:200]
def read(path):
    with open(path, "rb") as f:
        return f.read(64)
# The neighbour's pid, from the test: Landlock hides even its command line.
neighbour = [{neighbour_pid}]
report["neighbour_alive"] = os.path.exists(f"/proc/{neighbour_pid}")
attempt("read_ca_key", lambda: read(STATE + "/ca.key"))
attempt("list_state_dir", lambda: os.listdir(STATE))
attempt("read_neighbour_environ", lambda: [read(f"/proc/{{p}}/environ") for p in neighbour] or 1 / 0)
attempt("signal_neighbour", lambda: [os.kill(p, signal.SIGTERM) for p in neighbour] or 1 / 0)
attempt("neighbour_port", lambda: socket.create_connection(("127.0.0.1", {neighbour_port}), timeout=2))
def bind_other():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s.getsockname()
attempt("bind_other_port", bind_other)
r = subprocess.run([{podless!r}, "--socket", STATE + "/api.sock", "get", "workloads", "-A"],
                   capture_output=True, text=True)
report["api"] = ("SUCCEEDED: " if r.returncode == 0 else "blocked: ") + (r.stdout + r.stderr)[:300]
with open("report.json", "w") as f:
    json.dump(report, f)
os.execvp("/usr/bin/python3", ["/usr/bin/python3", "-m", "http.server", os.environ["PORT"],
                                "--bind", "127.0.0.1"])
'''

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: neighbour, namespace: n}
spec:
  ports: [{name: http, port: 9080}]
  app:
    exec:
      command: [/usr/bin/python3, -c, "import http.server, os, sys; http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=int(os.environ['PORT']), bind='127.0.0.1')"]
      env: [{name: NEIGHBOUR_SECRET, value: hunter2}]
      terminationGracePeriodSeconds: 1
"""

HOSTILE_MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: evil, namespace: e}}
spec:
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  app:
    exec:
      command: [/usr/bin/python3, {script}]
      terminationGracePeriodSeconds: 1
"""

RUN_AS = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: other, namespace: e}
spec:
  app:
    exec:
      command: [sleep, "3600"]
      securityContext: {runAsUser: 1000}
"""


def landlock_abi():
    libc = ctypes.CDLL(None, use_errno=True)
    return max(0, libc.syscall(444, None, 0, 1))


class UnprivilegedAgent(Agent):
    def args(self):
        nobody = pwd.getpwnam("nobody")
        return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                "--clear-groups", "--inh-caps=-all"] + super().args()


def main():
    if os.geteuid() != 0:
        print("SKIP: setting up an agent as uid nobody needs root")
        sys.exit(77)
    if landlock_abi() < 6:
        print(f"SKIP: this kernel's Landlock ABI is {landlock_abi()}, the test needs 6")
        sys.exit(77)
    nobody = pwd.getpwnam("nobody")
    # Not under /tmp: Landlock leaves /tmp open to the processes.
    os.makedirs("/var/lib", exist_ok=True)
    state = tempfile.mkdtemp(prefix="podless-unprivileged-", dir="/var/lib")
    d = tempfile.mkdtemp(prefix="podless-unprivileged-")
    os.chmod(d, 0o755)
    podless = os.path.abspath(PODLESS)
    # The launcher is the agent's own binary; nobody must be able to run it.
    binary = os.path.join(d, "podless")
    shutil.copy(podless, binary)
    os.chmod(binary, 0o755)
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    agent = UnprivilegedAgent(state_dir=state)
    agent.log_path = os.path.join(d, "agent.log")
    try:
        import harness
        harness.PODLESS = binary
        agent.start()
        check("is not root" in agent.log(), "the agent did not say it runs without root")
        r = agent.cli("apply", "-f", write(os.path.join(d, "n.yaml"), MANIFEST))
        check("not root" in r.stderr and "Warning:" in r.stderr,
              f"apply did not warn about the missing sandbox: {r.stderr}")
        r = agent.cli("apply", "-f", write(os.path.join(d, "r.yaml"), RUN_AS), expect_ok=False)
        check(r.returncode != 0 and "runAsUser" in r.stderr and "not root" in r.stderr,
              f"runAsUser was not refused: {r.returncode} {r.stderr}")
        neighbour = wait_for("the neighbour", lambda: address_of(agent, "neighbour-0"), agent=agent)
        wait_for("the neighbour serving", lambda: http_get(f"http://{neighbour}:9080/")[0] == 200,
                 agent=agent)
        private = [r for w in agent.config_dump()["workloads"] for r in w["replicas"]
                   if r["name"] == "neighbour-0"]
        # The neighbour's private loopback port, from its environment.
        pid = private[0]["process"]["pid"]
        env = dict(e.split("=", 1) for e in open(f"/proc/{pid}/environ").read().split("\0") if "=" in e)
        script = write(os.path.join(d, "hostile.py"), HOSTILE.format(
            state=state, neighbour_port=int(env["PORT"]), podless=binary, neighbour_pid=pid))
        agent.cli("apply", "-f", write(os.path.join(d, "e.yaml"),
                                        HOSTILE_MANIFEST.format(script=script)))
        evil = wait_for("evil", lambda: address_of(agent, "evil-0"), agent=agent)
        wait_for("evil's report", lambda: http_get(f"http://{evil}:8080/report.json")[0] == 200,
                 agent=agent)
        report = json.loads(http_get(f"http://{evil}:8080/report.json")[1])
        print("hostile workload's report:", json.dumps(report, indent=1))
        check(report["neighbour_alive"], "the neighbour was not there to attack")
        for attack, outcome in report.items():
            if isinstance(outcome, str) and outcome.startswith("SUCCEEDED"):
                fail(f"attack {attack} succeeded under an agent that is not root: {outcome}")
        check("does not serve workload processes" in report["api"], f"api: {report['api']}")
        check(http_get(f"http://{neighbour}:9080/")[0] == 200, "the neighbour stopped serving")
    finally:
        agent.cleanup()
        kill_processes_of(agent)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
