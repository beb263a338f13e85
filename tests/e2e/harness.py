"""Shared helpers for the end-to-end tests: start the real `podless` binary
on free ports with a temporary state dir, run CLI commands against it, read
its admin endpoints (replicas in /config_dump, samples in /metrics), wait
for conditions, and always stop it (and everything it started).
Tunnels through its outbound entry are in outbound_connect.py."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PODLESS = os.environ.get("PODLESS_BIN", "build/podless")
SOURCE_ROOT = os.environ.get("PODLESS_SOURCE_ROOT", os.getcwd())


def free_port(host="127.0.0.1"):
    """A TCP port nothing listens on at `host` now (the probe socket is
    closed, so something else may take it before the caller does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def fds(pid):
    """Open file descriptors of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    """Resident memory of a process, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fail(message):
    print("FAIL: " + message, file=sys.stderr, flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def poll(predicate, timeout, interval=0.1):
    """Calls predicate() every `interval` s until it returns something truthy
    or `timeout` s have passed; returns its last value."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() >= deadline:
            return value
        time.sleep(interval)


def wait_for(what, predicate, timeout=20, agent=None):
    """predicate()'s first truthy value within `timeout` s; fails naming
    `what` (and showing the agent's log, when given) otherwise."""
    value = poll(predicate, timeout)
    if value:
        return value
    fail("timed out waiting for " + what + ("\nagent log:\n" + agent.log() if agent else ""))


def connection_ended(s, within):
    """True when the peer ends the connection on socket `s` (EOF or reset)
    within `within` s; what it sends meanwhile is read and dropped."""
    s.settimeout(within)
    try:
        while True:
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def metric_lines(text, name, **labels):
    """The samples of metric `name` in Prometheus text (/metrics) whose
    labels include `labels` (label="value"), as lines."""
    return [line for line in text.splitlines()
            if (line.startswith(name + " ") or line.startswith(name + "{"))
            and all(f'{k}="{v}"' in line for k, v in labels.items())]


def metric_value(text, name, **labels):
    """The sum of the samples of `name` whose labels include `labels`; None
    if there is none."""
    lines = metric_lines(text, name, **labels)
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines) if lines else None


def metric_samples(text, name):
    """{labels text ("" when none, else '{k="v",...}'): value} of metric `name`."""
    out = {}
    for line in metric_lines(text, name):
        series, _, value = line.rpartition(" ")
        out[series[len(name):]] = float(value)
    return out


def replicas(dump, workload=None, ns=None):
    """The replicas of a /config_dump as {replica name: its entry}, in order:
    every workload's, or those of workload `workload` (in namespace `ns`,
    when given)."""
    return {r["name"]: r for w in dump["workloads"]
            if workload in (None, w["name"]) and ns in (None, w["namespace"])
            for r in w["replicas"]}


def addresses(dump, workload=None, ns=None):
    """{replica name: its address} of the replicas(dump, workload, ns)."""
    return {name: r["address"] for name, r in replicas(dump, workload, ns).items()}


class Agent:
    """One `podless run` process on free ports."""

    def __init__(self, state_dir=None, extra_args=(), env=None):
        self.owns_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="podless-e2e-")
        self.admin_port = free_port()
        self.hbone_port = free_port()
        self.outbound_port = free_port()
        # Every agent serves the Kubernetes API; on a free port, so that tests
        # (and agents of other checkouts) never meet on the default 6443.
        self.kube_port = free_port()
        self.socket = os.path.join(self.state_dir, "api.sock")
        self.extra_args = list(extra_args)
        self.env = env
        self.proc = None
        self.log_path = os.path.join(self.state_dir, "agent.log")

    def args(self):
        return [PODLESS, "run", "--state-dir", self.state_dir,
                "--admin-address", f"127.0.0.1:{self.admin_port}",
                "--hbone-address", f"0.0.0.0:{self.hbone_port}",
                "--outbound-address", f"127.0.0.1:{self.outbound_port}",
                "--kube-address", f"127.0.0.1:{self.kube_port}"] + self.extra_args

    def start(self, wait=True):
        for attempt in range(3):
            log_start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, start_new_session=True)
            log.close()
            if not wait:
                return self
            if attempt < 2 and self.lost_port_race(log_start):
                continue
            self.wait_ready()
            return self

    def lost_port_race(self, log_start):
        """True (with new ports picked) when the agent exited because one of
        the free ports this harness picked was taken in the meantime (free_port
        closes its probe socket, and any connect may take the port as its
        source); the caller then starts it again."""
        deadline = time.time() + 20
        while time.time() < deadline and self.proc.poll() is None:
            try:
                status, _ = self.http("/ready", timeout=1)
                if status == 200:
                    return False
            except OSError:
                pass
            time.sleep(0.05)
        if self.proc.poll() is None:
            return False
        with open(self.log_path, "rb") as f:
            f.seek(log_start)
            text = f.read().decode(errors="replace")
        ours = (self.admin_port, self.hbone_port, self.outbound_port, self.kube_port)
        if "address already in use" not in text or not any(f":{p}:" in text for p in ours):
            return False
        self.admin_port, self.hbone_port, self.outbound_port = free_port(), free_port(), free_port()
        self.kube_port = free_port()
        return True

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _ = self.http("/ready", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        fail("agent not ready in time:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def http(self, path, timeout=5):
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def config_dump(self, timeout=60):
        """/config_dump as JSON; waits out its duty-cycle limit (503)."""
        deadline = time.time() + timeout
        status, body = self.http("/config_dump")
        while status == 503 and time.time() < deadline:
            time.sleep(0.05)
            status, body = self.http("/config_dump")
        check(status == 200, f"/config_dump answered {status}: {body[:200]}")
        return json.loads(body)

    def metrics(self):
        """/metrics as text."""
        status, text = self.http("/metrics")
        check(status == 200, f"/metrics answered {status}: {text[:200]}")
        return text

    def metric(self, name, **labels):
        """metric_value of /metrics: the sum of `name`'s samples with
        `labels`, None when there is none."""
        return metric_value(self.metrics(), name, **labels)

    def replica_addresses(self, workload):
        """The addresses of workload `workload`'s replicas (any namespace), in order."""
        return list(addresses(self.config_dump(), workload).values())

    def cli(self, *args, input=None, expect_ok=True, timeout=60):
        cmd = [PODLESS, "--socket", self.socket] + list(args)
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if expect_ok and r.returncode != 0:
            fail(f"{' '.join(cmd)} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            fail("agent did not stop within %ss of %s" % (timeout, sig))
        return self.proc.returncode

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.owns_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def proxy_for(agent, replica, ns):
    """The replica's outbound-entry URL with its credentials (HTTP_PROXY)."""
    out = agent.cli("credentials", replica, "-n", ns).stdout
    return dict(line.split("=", 1) for line in out.split())["HTTP_PROXY"]


def curl_via_proxy(proxy, url, *extra):
    """GET `url` (or what the curl arguments `extra` ask) through `proxy`
    with curl: (status, body)."""
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "--proxy", proxy, "-o", "-", "-w",
                        "\n%{http_code}", *extra, url], capture_output=True, text=True, timeout=30)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def http_get(url, proxy=None):
    """GET `url` with curl (through `proxy` when given): (status, body)."""
    args = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", url]
    if proxy:
        args += ["--proxy", proxy]
    r = subprocess.run(args, capture_output=True, text=True, timeout=20)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


@contextlib.contextmanager
def running_agent(**kwargs):
    agent = Agent(**kwargs)
    try:
        agent.start()
        yield agent
    finally:
        agent.cleanup()


def grpc_stubs(proto="api/podless/v1/runtime.proto", include="api"):
    """Generates the Python gRPC stubs of one of the repository's .proto files
    (grpcio-tools) into a temp dir, removed at exit, and puts it on sys.path,
    so that e.g. `from podless.v1 import runtime_pb2` works after the call."""
    import atexit
    stubs = tempfile.mkdtemp(prefix="podless-stubs-")
    os.chmod(stubs, 0o755)  # sandboxed workloads (their own uids) import them too
    atexit.register(shutil.rmtree, stubs, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc",
                    "-I", os.path.join(SOURCE_ROOT, include),
                    f"--python_out={stubs}", f"--grpc_python_out={stubs}",
                    os.path.join(SOURCE_ROOT, proto)], check=True)
    sys.path.insert(0, stubs)
    return stubs


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path
