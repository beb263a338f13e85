"""Workload isolation, attacked the way a hostile tenant would (issue 13).

A root agent runs three exec workloads:
  - `bank` (namespace bank): the neighbour, `python3 -m http.server 9080`, two
    replicas that both bind the same fixed port;
  - `mirror` (namespace bank): an in-proxy echo app, a destination for calls;
  - `evil` (namespace evil): a script that tries every attack of the issue
    from inside its own sandbox and serves its findings (report.json) on its
    port.
The test fails if any attack succeeds, if the neighbour stops serving, or if
evil cannot do what a workload must: serve through the mesh, call out
through the outbound entry as itself (where policy applies), fetch its own
SVID over the Workload API. Then, as an unprivileged local user (setpriv),
it tries the neighbour's app, files and logs; and it checks what `delete`
leaves behind (nothing: no process, not even a setsid double-fork, no
working directory, no logs), that a memory limit is enforced, that a limit
the node cannot enforce is refused at apply, and that a workload keeps its
uid across an agent restart.

Needs root (CI runs as root); exits 77 (skip) otherwise."""

import json
import os
import pwd
import socket
import subprocess
import sys
import tempfile

from exec_util import address_of, exec_agent, processes_with_env
from harness import check, fail, grpc_stubs, http_get, proxy_for, wait_for, write

if os.geteuid() != 0:
    print("SKIP: the sandbox with its own uids and network namespaces needs a root agent")
    sys.exit(77)

stubs = grpc_stubs("api/spiffe/workload.proto", include="api/spiffe")

HOSTILE = r'''
import json, os, signal, socket, subprocess, sys, time
sys.path.insert(0, {stubs!r})
STATE = {state!r}
report = {{}}

def attempt(name, action):
    """Runs one attack: "blocked: <error>" when it failed, "SUCCEEDED: ..." when not."""
    try:
        result = action()
        report[name] = "SUCCEEDED: " + repr(result)[:200]
    except Exception as e:
        report[name] = "blocked: " + type(e).__name__ + ": " + str(e)[:200]

def read(path):
    with open(path, "rb") as f:
        return f.read(64)

def connect_unix(path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(path)
    return "connected"

def connect_tcp(host, port):
    s = socket.create_connection((host, port), timeout=2)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    return s.recv(64)

# The neighbour's processes, found by their command lines (world-readable).
bank = []
for name in os.listdir("/proc"):
    if name.isdigit():
        try:
            if b"9080" in read(f"/proc/{{name}}/cmdline") and int(name) != os.getpid():
                bank.append(int(name))
        except OSError:
            pass
report["neighbour_pids_seen"] = len(bank)

attempt("read_ca_key", lambda: read(STATE + "/ca.key"))
attempt("list_state_dir", lambda: os.listdir(STATE))
attempt("connect_api_socket", lambda: connect_unix(STATE + "/api.sock"))
attempt("read_neighbour_log", lambda: read(STATE + "/logs/bank/bank-0/current.log"))
attempt("list_logs", lambda: os.listdir(STATE + "/logs"))
attempt("read_neighbour_workdir", lambda: os.listdir(STATE + "/sandboxes/bank/bank-0"))
attempt("list_sandboxes", lambda: os.listdir(STATE + "/sandboxes/bank"))
attempt("read_neighbour_environ", lambda: [read(f"/proc/{{p}}/environ") for p in bank] or 1 / 0)
attempt("signal_neighbour", lambda: [os.kill(p, signal.SIGTERM) for p in bank] or 1 / 0)
attempt("neighbour_private_port", lambda: connect_tcp("127.0.0.1", 9080))
attempt("agent_admin", lambda: connect_tcp("127.0.0.1", {admin_port}))
attempt("parent_of_workdir", lambda: os.listdir(".."))
attempt("abstract_socket_on_host", lambda: connect_unix({abstract!r}))

# What it is.
status = open("/proc/self/status").read()
report["uid"] = os.getuid()
report["gid"] = os.getgid()
report["groups"] = os.getgroups()
report["no_new_privs"] = [l.split()[1] for l in status.splitlines() if l.startswith("NoNewPrivs")][0]
report["cap_eff"] = [l.split()[1] for l in status.splitlines() if l.startswith("CapEff")][0]
report["cwd"] = os.getcwd()
report["home"] = os.environ.get("HOME")
report["endpoint"] = os.environ.get("SPIFFE_ENDPOINT_SOCKET")

# What it must still do: its own SVID over the Workload API.
try:
    import grpc, workload_pb2 as pb, workload_pb2_grpc as rpc
    stub = rpc.SpiffeWorkloadAPIStub(grpc.insecure_channel(os.environ["SPIFFE_ENDPOINT_SOCKET"]))
    svid = next(stub.FetchX509SVID(pb.X509SVIDRequest(),
                                   metadata=[("workload.spiffe.io", "true")], timeout=10))
    report["svid"] = svid.svids[0].spiffe_id
except Exception as e:
    report["svid"] = "error: " + str(e)[:300]

# Calls out through the outbound entry in its own namespace (HTTP_PROXY), as
# itself: mirror echoes the caller's identity, bank's DENY policy sees it.
import urllib.request, urllib.error
def call(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except Exception as e:
        return 0, str(e)
report["proxy"] = os.environ.get("http_proxy", "").split("@")[-1]
for _ in range(100):
    report["call_mirror"] = call("http://mirror.bank.svc:8080/")
    report["call_bank"] = call("http://bank.bank.svc:9080/")
    if report["call_mirror"][0] == 200 and report["call_bank"][0] == 403:
        break
    time.sleep(0.2)

# An escape attempt that outlives it: a setsid double-fork.
subprocess.Popen(["setsid", "sh", "-c", "sleep 1000 &"], env=dict(os.environ, ESCAPEE="evil"))

with open("report.json", "w") as f:
    json.dump(report, f)
os.execvp("/usr/bin/python3", ["/usr/bin/python3", "-m", "http.server", os.environ["PORT"],
                                "--bind", "127.0.0.1"])
'''

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: bank, namespace: bank, labels: {{app: bank}}}}
spec:
  replicas: 2
  serviceAccount: bank
  ports: [{{name: http, port: 9080, protocol: HTTP}}]
  app:
    exec:
      command: [/usr/bin/python3, -m, http.server, "9080", --bind, 127.0.0.1]
      env: [{{name: BANK_SECRET, value: hunter2}}]
      terminationGracePeriodSeconds: 1
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {{name: bank, namespace: bank}}
spec: {{selector: {{app: bank}}, ports: [{{name: http, port: 9080, targetPort: http}}]}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: mirror, namespace: bank, labels: {{app: mirror}}}}
spec:
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  app: {{echo: {{}}}}
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {{name: mirror, namespace: bank}}
spec: {{selector: {{app: mirror}}, ports: [{{name: http, port: 8080, targetPort: http}}]}}
---
apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: no-evil, namespace: bank}}
spec:
  selector: {{matchLabels: {{app: bank}}}}
  action: DENY
  rules: [{{from: [{{source: {{namespaces: [evil]}}}}]}}]
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: evil, namespace: evil}}
spec:
  serviceAccount: evil
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  app:
    exec:
      command: [/usr/bin/python3, {script}]
      terminationGracePeriodSeconds: 1
"""

LIMITED = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: hog, namespace: evil}
spec:
  app:
    exec:
      command: [/usr/bin/python3, -c, "import time\\ntry:\\n  b = bytearray(512 << 20)\\n  print('allocated 512Mi', flush=True)\\nexcept MemoryError:\\n  print('MemoryError', flush=True)\\ntime.sleep(3600)"]
      resources: {limits: {memory: 128Mi}}
      terminationGracePeriodSeconds: 1
"""

CPU_LIMITED = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: spinner, namespace: evil}
spec:
  app:
    exec:
      command: [sleep, "3600"]
      resources: {limits: {cpu: 500m}}
"""


def as_nobody(code):
    """Runs Python `code` as an unprivileged local user (nobody): its stdout."""
    nobody = pwd.getpwnam("nobody")
    r = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                        "--clear-groups", "/usr/bin/python3", "-c", code],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip() + r.stderr.strip()


def main():
    d = tempfile.mkdtemp(prefix="podless-isolation-")
    os.chmod(d, 0o755)
    # An abstract Unix socket on the host, open to anyone who can reach it.
    abstract_name = f"\0podless-isolation-{os.getpid()}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(abstract_name)
    abstract.listen(8)
    with exec_agent() as agent:
        state = agent.state_dir
        script = write(os.path.join(d, "hostile.py"),
                       HOSTILE.format(stubs=stubs, state=state, admin_port=agent.admin_port,
                                      abstract=abstract_name))
        os.chmod(script, 0o644)
        manifest = write(os.path.join(d, "all.yaml"), MANIFEST.format(script=script))
        agent.cli("apply", "-f", manifest)

        # The neighbour: two replicas on one fixed port, both serving.
        for name in ("bank-0", "bank-1"):
            address = wait_for(name + " address", lambda n=name: address_of(agent, n), agent=agent)
            wait_for(name + " serving", lambda a=address: http_get(f"http://{a}:9080/")[0] == 200,
                     agent=agent)

        # The hostile workload's findings, fetched through the mesh.
        evil = wait_for("evil-0 address", lambda: address_of(agent, "evil-0"), agent=agent)
        wait_for("evil's report",
                 lambda: http_get(f"http://{evil}:8080/report.json")[0] == 200, agent=agent)
        report = json.loads(http_get(f"http://{evil}:8080/report.json")[1])
        print("hostile workload's report:", json.dumps(report, indent=1))
        check(report["neighbour_pids_seen"] >= 2, "evil did not even find bank's processes")
        for attack, outcome in report.items():
            if isinstance(outcome, str) and outcome.startswith("SUCCEEDED"):
                fail(f"attack {attack} succeeded from inside the sandbox: {outcome}")
        check(report["uid"] != 0 and report["gid"] != 0, f"evil runs as root: {report}")
        check(report["groups"] == [], f"evil has supplementary groups: {report['groups']}")
        check(report["no_new_privs"] == "1", "no_new_privs is not set")
        check(int(report["cap_eff"], 16) == 0, f"evil has capabilities: {report['cap_eff']}")
        workdir = os.path.join(state, "sandboxes", "evil", "evil-0")
        check(report["cwd"] == workdir and report["home"] == workdir,
              f"evil's working directory is not its private one: {report['cwd']}")
        check(os.stat(workdir).st_uid == report["uid"] and
              (os.stat(workdir).st_mode & 0o777) == 0o700, "the working directory is not evil's own")
        check(report["endpoint"] == "unix://" + os.path.join(state, "workload-api.sock"),
              f"SPIFFE_ENDPOINT_SOCKET is not unix:///absolute: {report['endpoint']}")
        check(report["svid"] == "spiffe://cluster.local/ns/evil/sa/evil",
              f"evil could not fetch its own SVID: {report['svid']}")
        bank_uids = {os.stat(f"/proc/{p}").st_uid for p in processes_with_env("BANK_SECRET=hunter2")}
        check(len(bank_uids) == 1 and report["uid"] not in bank_uids and 0 not in bank_uids,
              f"bank and evil do not run as distinct unprivileged uids: {bank_uids} {report['uid']}")

        # Called out through the outbound entry inside its namespace, as itself;
        # the policy at the destination saw the call.
        check(report["proxy"] == f"127.0.0.1:{agent.outbound_port}", f"proxy: {report['proxy']}")
        status, body = report["call_mirror"]
        check(status == 200 and "spiffe://cluster.local/ns/evil/sa/evil" in body,
              f"evil's call to mirror did not arrive as evil: {status} {body}")
        check(report["call_bank"][0] == 403,
              f"the DENY policy did not see evil's call to bank: {report['call_bank']}")
        # Another replica's credentials do not work from inside evil's namespace
        # (the listener there speaks only as evil-0): tried with bank-0's, which
        # the test (not evil) holds.
        bank_proxy = proxy_for(agent, "bank-0", "bank")
        evil_pid = processes_with_env("PODLESS_WORKLOAD=evil")[0]
        r = subprocess.run(["nsenter", "-t", str(evil_pid), "-n", "curl", "-sS", "-o",
                            "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--proxy",
                            bank_proxy, "http://mirror.bank.svc:8080/"],
                           capture_output=True, text=True, timeout=20)
        check(r.stdout.strip() == "407",
              f"bank-0's credentials worked inside evil's namespace: {r.stdout} {r.stderr}")

        # An unprivileged local user: the neighbour's app only through the
        # proxy (127.0.0.1:9080 is not the app), its files not at all.
        out = as_nobody(
            "import socket\n"
            "s = socket.create_connection(('127.0.0.1', 9080), timeout=3)\n"
            "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
            "print('answer:', s.recv(100))\n")
        check("Directory listing" not in out and "HTTP/1.0 200" not in out,
              f"a local user reached bank's app around the proxy: {out}")
        for path in ("ca.key", "logs/bank/bank-0/current.log", "sandboxes/bank/bank-0",
                     "workload-uids", "state.log"):
            out = as_nobody(f"import os\np = {os.path.join(state, path)!r}\n"
                            "print(os.listdir(p) if os.path.isdir(p) else open(p,'rb').read(8))")
            check("PermissionError" in out, f"a local user read {path}: {out}")
        out = as_nobody(f"import socket\ns = socket.socket(socket.AF_UNIX)\n"
                        f"s.connect({os.path.join(state, 'api.sock')!r})\nprint('connected')")
        check("PermissionError" in out, f"a local user connected to api.sock: {out}")

        # Limits: memory enforced; a limit the node cannot enforce refused.
        limited = write(os.path.join(d, "limited.yaml"), LIMITED)
        agent.cli("apply", "-f", limited)
        wait_for("the memory limit to stop the allocation",
                 lambda: "MemoryError" in agent.cli("logs", "hog", "-n", "evil").stdout
                 or "Killed" in agent.cli("get", "workloads", "-n", "evil").stdout, agent=agent)
        check("allocated 512Mi" not in agent.cli("logs", "hog", "-n", "evil").stdout,
              "a 128Mi limit let a process allocate 512Mi")
        cpu = write(os.path.join(d, "cpu.yaml"), CPU_LIMITED)
        r = agent.cli("apply", "-f", cpu, expect_ok=False)
        if r.returncode != 0:
            check("exec.resources.limits.cpu" in r.stderr and "cannot be enforced" in r.stderr,
                  f"the refusal does not name the limit: {r.stderr}")
            check("spinner" not in agent.cli("get", "workloads", "-n", "evil").stdout,
                  "a refused apply changed something")
        else:  # a node with cgroup v2's cpu controller delegated: accepted
            agent.cli("delete", "workload", "spinner", "-n", "evil")

        # The uid is the workload's across an agent restart.
        evil_uid = report["uid"]
        agent.stop()
        agent.start()
        wait_for("evil running again", lambda: [
            p for p in processes_with_env("PODLESS_WORKLOAD=evil")
            if os.stat(f"/proc/{p}").st_uid == evil_uid], agent=agent)

        # Delete: nothing of evil stays (processes, escapees, files, logs).
        wait_for("the escapee", lambda: processes_with_env("ESCAPEE=evil"), agent=agent)
        agent.cli("delete", "workload", "evil", "-n", "evil")
        wait_for("evil's processes and its setsid escapee to be gone",
                 lambda: not processes_with_env("PODLESS_WORKLOAD=evil")
                 and not processes_with_env("ESCAPEE=evil"), agent=agent)
        wait_for("evil's working directory and logs to be removed",
                 lambda: not os.path.exists(workdir)
                 and not os.path.exists(os.path.join(state, "logs", "evil", "evil-0")),
                 agent=agent)
        # The neighbour never stopped serving.
        for name in ("bank-0", "bank-1"):
            address = address_of(agent, name)
            check(http_get(f"http://{address}:9080/")[0] == 200, f"{name} stopped serving")
    print("PASS")


if __name__ == "__main__":
    main()
