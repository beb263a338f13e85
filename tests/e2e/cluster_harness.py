"""Multi-node helpers for the cluster end-to-end tests (issue 6).

One machine plays a whole cluster:

  root namespace:  bridge plc<pid>b 10.X.0.254/24, etcd on 10.X.0.254:<port>
                   and 127.0.0.1:<port>, the test itself and the CLI
  node i (netns plc<pid>-n<i>):  eth0 10.X.0.i/24 (veth into the bridge),
                   lo up, `local 10.X.i.0/24 dev lo` (its workload addresses)
                   and 10.X.j.0/24 via 10.X.0.j for every other node j;
                   `podless run` with admin 10.X.0.i:15000, HBONE
                   0.0.0.0:15008, outbound entry 127.0.0.1:15001.

X is random (and checked against the root namespace's addresses under a lock)
and every name carries the test's pid, so parallel runs do not clash.

Everything is torn down in every case: the Cluster context manager, an atexit
hook and SIGTERM/SIGINT/SIGHUP handlers kill what the test started and delete
the namespaces, veths and bridge; processes started here also get
PR_SET_PDEATHSIG so they die with the test even if it is SIGKILLed, and a new
run deletes what a SIGKILLed run (dead pid) left behind. A watchdog alarm
fails the test with diagnostics before meson's timeout would kill it.

Where network namespaces cannot be created (not root, no CAP_NET_ADMIN /
CAP_SYS_ADMIN, no `ip`) or etcd is not installed, the test prints
`SKIP: <reason>` and exits 77 (meson's skip code); with
PODLESS_E2E_REQUIRE_CLUSTER=1 that is a failure instead (for CI machines that
must run these tests)."""

import atexit
import collections
import contextlib
import ctypes
import fcntl
import http.client
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import manifests
import pki
from harness import PODLESS as _PODLESS_FROM_ENV
from harness import SOURCE_ROOT, free_port, metric_value, poll

PODLESS = os.path.abspath(_PODLESS_FROM_ENV)
ETCD = os.environ.get("PODLESS_ETCD_BIN", "/usr/bin/etcd")
ETCDCTL = os.environ.get("PODLESS_ETCDCTL_BIN", "/usr/bin/etcdctl")
IP = shutil.which("ip") or "/usr/sbin/ip"
CURL = shutil.which("curl") or "/usr/bin/curl"
PYTHON = "/usr/bin/python3"
INTEROP = os.path.join(SOURCE_ROOT, "tests", "proxy", "hbone_interop_client.py")

SKIP_EXIT_CODE = 77
PREFIX = "plc"  # every netns/link name: plc<pid>...
ADMIN_PORT = 15000
OUTBOUND_PORT = 15001
HBONE_PORT = 15008
TRUST_DOMAIN = "cluster.local"

_T0 = time.monotonic()
_step = "setup"
_diagnostics = []  # callables returning text, printed once on failure
_diagnosed = False
_cleanups = []  # (name, fn), run last-in first-out
_cleaning = False

# ---------------------------------------------------------------- reporting


def log(message):
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


def step(name):
    """Names the step a failure message will point at."""
    global _step
    _step = name
    log(f"== {name}")


def _print_diagnostics():
    global _diagnosed
    if _diagnosed:
        return
    _diagnosed = True
    # Agents first (their logs explain most failures), etcd last.
    ordered = sorted(_diagnostics, key=lambda p: isinstance(getattr(p, "__self__", None),
                                                            EtcdServer))
    for provider in ordered:
        try:
            text = provider()
        except Exception as e:  # diagnostics must never hide the failure
            text = f"(diagnostics failed: {e!r})"
        if text:
            print(text, file=sys.stderr, flush=True)


def fail(message):
    print(f"FAIL [step: {_step}]: {message}", file=sys.stderr, flush=True)
    _print_diagnostics()
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def skip(reason):
    if os.environ.get("PODLESS_E2E_REQUIRE_CLUSTER") == "1":
        fail(f"cannot run (PODLESS_E2E_REQUIRE_CLUSTER=1): {reason}")
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP_EXIT_CODE)


class Pending:
    """A falsy result for wait_until that says what was seen instead."""

    def __init__(self, detail):
        self.detail = detail

    def __bool__(self):
        return False

    def __repr__(self):
        return str(self.detail)


def wait_until(what, probe, timeout, interval=0.25):
    """Polls probe() until it returns something truthy (returned); fails
    naming `what`, the timeout and the last thing seen otherwise."""
    last = poll(probe, timeout, interval)
    if not last:
        fail(f"{what}: not within {timeout:g} s; last seen: {last!r}")
    return last


def tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------ cleanup


def on_cleanup(name, fn):
    _cleanups.append((name, fn))


def run_cleanups():
    global _cleaning
    if _cleaning:
        return
    _cleaning = True
    # A second signal must not cut the teardown short.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    signal.alarm(0)
    try:
        while _cleanups:
            name, fn = _cleanups.pop()
            try:
                fn()
            except BaseException as e:  # including a fail() inside: go on
                print(f"cleanup of {name} failed: {e!r}", file=sys.stderr, flush=True)
    finally:
        _cleaning = False
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, _on_signal)


def _on_signal(signum, _frame):
    print(f"\ninterrupted by signal {signum} [step: {_step}]; cleaning up", file=sys.stderr,
          flush=True)
    _print_diagnostics()
    run_cleanups()
    os._exit(128 + signum)


def _on_alarm(_signum, _frame):
    fail("the test exceeded its time budget (watchdog); it must never hang")


atexit.register(run_cleanups)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)
signal.signal(signal.SIGALRM, _on_alarm)


def set_budget(seconds):
    """Fails the test (with diagnostics and cleanup) after this many seconds;
    keep it below the meson timeout."""
    signal.alarm(int(seconds))


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_test():
    # Survives `ip netns exec`'s execvp (ip is not setuid), so the agent and
    # etcd get SIGKILL when the test process dies, however it dies.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(cmd, log_path, env=None):
    log_file = open(log_path, "ab")
    try:
        return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with_test)
    finally:
        log_file.close()


def kill_group(proc):
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def run(cmd, timeout=30, input=None, check_ok=False, what=None):
    try:
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"{what or ' '.join(cmd)}: did not finish within {timeout} s")
    if check_ok and r.returncode != 0:
        fail(f"{what or ' '.join(cmd)} exited {r.returncode}\nstdout: {r.stdout}\n"
             f"stderr: {r.stderr}")
    return r


def http_get(url, timeout=3):
    """(status, body) or (0, error text); never through an environment proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, ValueError, http.client.HTTPException) as e:
        return 0, f"{type(e).__name__}: {e}"


def parse_table(text):
    """kubectl-style table (left-aligned columns, 3+ spaces apart, header
    first) as a list of {COLUMN: cell} dicts. Cells are cut at the header's
    column starts; the table ends at the first blank line."""
    lines = []
    for line in text.splitlines():
        if not line.strip():
            if lines:
                break
            continue
        lines.append(line)
    if not lines:
        return []
    columns = list(re.finditer(r"\S+(?: \S+)*", lines[0]))
    starts = [m.start() for m in columns]
    names = [m.group(0) for m in columns]
    rows = []
    for line in lines[1:]:
        cells = [line[s:e].strip() for s, e in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(names, cells)))
    return rows


# ---------------------------------------------------------------- preflight


def require_namespaces():
    """Skips (exit 77) with a clear reason where the test cannot build its
    network: checked by trying, not guessed."""
    if not os.path.exists(IP):
        skip(f"`ip` (iproute2) not found at {IP}")
    if os.geteuid() != 0:
        skip("network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN); "
             f"running as uid {os.geteuid()}")
    probe = f"{PREFIX}{os.getpid()}-probe"
    r = run([IP, "netns", "add", probe])
    if r.returncode != 0:
        skip(f"cannot create a network namespace (`ip netns add`): {r.stderr.strip()}")
    try:
        r = run([IP, "netns", "exec", probe, "true"])
        if r.returncode != 0:
            skip(f"cannot enter a network namespace (`ip netns exec`): {r.stderr.strip()}")
        r = run([IP, "link", "add", f"{PREFIX}{os.getpid()}p", "type", "bridge"])
        if r.returncode != 0:
            skip(f"cannot create a bridge (`ip link add type bridge`): {r.stderr.strip()}")
        run([IP, "link", "del", f"{PREFIX}{os.getpid()}p"])
    finally:
        run([IP, "netns", "del", probe])


def require_etcd():
    if not os.access(ETCD, os.X_OK):
        skip(f"etcd not installed at {ETCD} (Debian: apt-get install etcd-server)")
    if not os.access(CURL, os.X_OK):
        skip(f"curl not installed at {CURL}")


def tempdir(what):
    """A temp dir named after this test's pid, so sweep_stale can remove what
    a SIGKILLed run left. Removed at teardown."""
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{what}-")
    on_cleanup(f"dir {path}", lambda: shutil.rmtree(path, ignore_errors=True))
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale():
    """Deletes namespaces and links a SIGKILLed earlier run left behind: only
    names of this harness whose creating pid is gone."""
    pattern = re.compile(rf"^{PREFIX}(\d+)(?:-n\d+|-probe|[brpe]\d*)$")
    r = run([IP, "netns", "list"])
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = pattern.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        pids = run([IP, "netns", "pids", name]).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        run([IP, "netns", "del", name])
        log(f"deleted stale namespace {name}")
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        m = re.match(rf"^{PREFIX}(\d+)-", name)
        if m and not _pid_alive(int(m.group(1))) and os.path.isdir(os.path.join(tmp, name)):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
    r = run([IP, "-o", "link", "show"])
    for line in r.stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = pattern.match(name)
        if m and not _pid_alive(int(m.group(1))):
            run([IP, "link", "del", name])
            log(f"deleted stale link {name}")


# ------------------------------------------------------------------ network


class NodeNet:
    def __init__(self, index, tag, x):
        self.index = index
        self.name = f"n{index}"
        self.netns = f"{tag}-n{index}"
        self.veth = f"{tag}r{index}"  # root side, in the bridge
        self.peer = f"{tag}e{index}"  # renamed to eth0 inside the namespace
        self.address = f"10.{x}.0.{index}"
        self.cidr = f"10.{x}.{index}.0/24"

    def exec_args(self, *cmd):
        return [IP, "netns", "exec", self.netns] + list(cmd)


class Network:
    """A bridge in the root namespace and one namespace per node, wired as
    in the module docstring."""

    def __init__(self, nodes=3):
        # Node CIDRs 10.X.i.0/24 must stay below the cluster CIDR 10.X.128.0/17.
        check(1 <= nodes <= 100, f"node count {nodes}: 1 to 100")
        self.tag = f"{PREFIX}{os.getpid()}"
        self.bridge = f"{self.tag}b"
        self.count = nodes
        self.x = None
        self.nodes = []
        self.created = False

    # The address plan.
    @property
    def bridge_address(self):
        return f"10.{self.x}.0.254"

    @property
    def cluster_cidr(self):
        """Covers every node CIDR (10.X.i.0/24) but not the node network."""
        return f"10.{self.x}.128.0/17"

    def node(self, index):
        return self.nodes[index - 1]

    def _used_networks(self):
        used = []
        for cmd in ([IP, "-4", "-o", "addr", "show"], [IP, "-4", "route", "show", "table", "all"]):
            for token in run(cmd).stdout.split():
                with contextlib.suppress(ValueError):
                    if "/" in token or token.count(".") == 3:
                        net = ipaddress.ip_network(token, strict=False)
                        if net.version == 4:
                            used.append(net)
        return used

    def _ip(self, *args, what=None):
        r = run([IP] + list(args))
        if r.returncode != 0:
            fail(f"{what or 'ip ' + ' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def create(self):
        sweep_stale()
        on_cleanup(f"network {self.tag}", self.destroy)
        self.created = True
        # Pick 10.X under a lock so two runs starting together cannot both
        # take the same X: the bridge address makes the choice visible.
        lock_path = os.path.join(tempfile.gettempdir(), "podless-e2e-netns.lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = self._used_networks()
            candidates = list(range(16, 250))
            random.shuffle(candidates)
            for x in candidates:
                block = ipaddress.ip_network(f"10.{x}.0.0/16")
                if not any(block.overlaps(n) for n in used):
                    self.x = x
                    break
            check(self.x is not None, "no free 10.X.0.0/16 for the test network")
            self._ip("link", "add", self.bridge, "type", "bridge")
            self._ip("addr", "add", f"{self.bridge_address}/24", "dev", self.bridge)
            self._ip("link", "set", self.bridge, "up")
        self.nodes = [NodeNet(i, self.tag, self.x) for i in range(1, self.count + 1)]
        for n in self.nodes:
            self._ip("netns", "add", n.netns)
            self._ip("link", "add", n.veth, "type", "veth", "peer", "name", n.peer)
            self._ip("link", "set", n.peer, "netns", n.netns)
            self._ip("link", "set", n.veth, "master", self.bridge)
            self._ip("link", "set", n.veth, "up")
            self._ip("-n", n.netns, "link", "set", "lo", "up")
            self._ip("-n", n.netns, "link", "set", n.peer, "name", "eth0")
            self._ip("-n", n.netns, "addr", "add", f"{n.address}/24", "dev", "eth0")
            self._ip("-n", n.netns, "link", "set", "eth0", "up")
            # The node's workload addresses are local, so the agent can bind
            # and accept on any of them.
            self._ip("-n", n.netns, "route", "add", "local", n.cidr, "dev", "lo")
        for n in self.nodes:
            for other in self.nodes:
                if other is not n:
                    self.route_node_cidr(n.index, other.index, other.cidr)
        log(f"network: bridge {self.bridge} {self.bridge_address}/24, nodes " +
            ", ".join(f"{n.name}={n.address} cidr {n.cidr}" for n in self.nodes))
        return self

    def route_node_cidr(self, on_index, to_index, cidr):
        """In node on_index, route `cidr` via node to_index (also for CIDRs
        claimed at run time with --cluster-cidr)."""
        on, to = self.node(on_index), self.node(to_index)
        self._ip("-n", on.netns, "route", "replace", cidr, "via", to.address, "dev", "eth0")

    def set_local_cidr(self, index, cidr):
        """Makes `cidr` local in node `index` (a CIDR the agent claimed)."""
        n = self.node(index)
        self._ip("-n", n.netns, "route", "replace", "local", cidr, "dev", "lo")

    def exec(self, index, *cmd, timeout=30, input=None):
        return run(self.node(index).exec_args(*cmd), timeout=timeout, input=input)

    def leftovers(self):
        """Names of this network still present (for the teardown check)."""
        left = [l.split()[0] for l in run([IP, "netns", "list"]).stdout.splitlines()
                if l.split() and l.split()[0].startswith(self.tag + "-")]
        for line in run([IP, "-o", "link", "show"]).stdout.splitlines():
            parts = line.split(":")
            if len(parts) >= 2 and parts[1].strip().split("@")[0].startswith(self.tag):
                left.append(parts[1].strip().split("@")[0])
        return left

    def destroy(self):
        if not self.created:
            return
        self.created = False
        for n in self.nodes:
            # Anything still inside (an agent the test forgot) goes first.
            for pid in run([IP, "netns", "pids", n.netns]).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run([IP, "netns", "del", n.netns])
            run([IP, "link", "del", n.veth])  # normally gone with the namespace
        run([IP, "link", "del", self.bridge])


# --------------------------------------------------------------------- etcd


class EtcdServer:
    """A single-member etcd in the root namespace, on the bridge address (for
    the nodes) and 127.0.0.1 (for the test), with a temp data dir. stop() and
    start() keep the dir and ports, to simulate an outage."""

    def __init__(self, network):
        self.network = network
        self.dir = tempdir("etcd")
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "etcd.log")
        self.client_port = free_port("0.0.0.0")
        self.peer_port = free_port("0.0.0.0")
        self.url = f"http://{network.bridge_address}:{self.client_port}"
        self.local_url = f"http://127.0.0.1:{self.client_port}"
        self.proc = None
        on_cleanup("etcd", self.cleanup)
        _diagnostics.append(self.diagnostics)

    def args(self):
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [ETCD, "--name", "e2e", "--data-dir", self.data_dir,
                "--listen-client-urls", f"{self.url},{self.local_url}",
                "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"e2e={peer}", "--initial-cluster-state", "new",
                "--logger", "zap", "--log-outputs", "stderr"]

    def start(self, timeout=20):
        check(self.proc is None or self.proc.poll() is not None, "etcd started twice")
        self.proc = spawn(self.args(), self.log_path)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                fail(f"etcd exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            status, body = http_get(self.local_url + "/health", timeout=1)
            if status == 200 and '"health":"true"' in body.replace(" ", ""):
                break
            if time.monotonic() >= deadline:
                fail(f"etcd not healthy within {timeout} s (last: {status} {body}):\n"
                     f"{tail(self.log_path)}")
            time.sleep(0.1)
        log(f"etcd healthy at {self.url} (and {self.local_url})")
        return self

    def healthy(self):
        status, body = http_get(self.local_url + "/health", timeout=1)
        return status == 200 and '"health":"true"' in body.replace(" ", "")

    def stop(self, timeout=10):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
        log("etcd stopped")

    def etcdctl(self, *args, timeout=10):
        env = dict(os.environ, ETCDCTL_API="3")
        try:
            return subprocess.run([ETCDCTL, "--endpoints", self.local_url,
                                   "--dial-timeout", "2s", "--command-timeout", "5s"] + list(args),
                                  capture_output=True, text=True, timeout=timeout, env=env)
        except (subprocess.TimeoutExpired, OSError) as e:
            return subprocess.CompletedProcess(args, 1, "", str(e))

    def diagnostics(self):
        # etcd logs a JSON line per event; warnings and errors are what helps.
        lines = tail(self.log_path, 10**6).splitlines()
        keep = [l for l in lines if '"level":"info"' not in l and '"level":"debug"' not in l]
        return (f"--- etcd [{'running' if self.proc and self.proc.poll() is None else 'stopped'}]"
                f" warnings/errors (tail) ---\n" + "\n".join(keep[-15:]) +
                f"\n--- etcd keys ---\n{self.keys_text()}")

    def keys(self, prefix=""):
        r = self.etcdctl("get", prefix, "--prefix", "--keys-only")
        if r.returncode != 0:
            return None
        return [k for k in r.stdout.splitlines() if k]

    def keys_text(self):
        if self.proc is None or self.proc.poll() is not None:
            return "(etcd not running)"
        keys = self.keys()
        return "(etcdctl failed)" if keys is None else "\n".join(keys[:200]) or "(none)"

    def cleanup(self):
        kill_group(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


# -------------------------------------------------------------------- agent

CurlResult = collections.namedtuple("CurlResult", "code body error")


def _json(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


class ClusterAgent:
    """`podless run` in a node's namespace. admin on NODE_ADDRESS:15000
    (reachable from the root namespace through the bridge), HBONE on
    0.0.0.0:15008, outbound entry 127.0.0.1:15001 inside the namespace, API
    socket in a temp dir (a path socket: reachable from any namespace)."""

    def __init__(self, network, index, etcd=None, name=None, node_cidr=None, lease_ttl=None,
                 ca_dir=None, extra_args=(), cluster=True, node_address=None, claim_cidr=False):
        self.network = network
        self.node = network.node(index)
        self.index = index
        self.name = name or self.node.name
        self.address = node_address or self.node.address
        # claim_cidr: --cluster-cidr/--node-cidr-prefix instead of --node-cidr;
        # the CIDR is learned from `get nodes` (Cluster.adopt_claimed_cidrs).
        self.claim_cidr = claim_cidr
        self.cidr = None if claim_cidr else (node_cidr or self.node.cidr)
        self.etcd = etcd
        self.lease_ttl = lease_ttl
        self.ca_dir = ca_dir
        self.cluster = cluster
        self.extra_args = list(extra_args)
        self.dir = tempdir(self.name)
        self.state_dir = os.path.join(self.dir, "state")
        self.socket = os.path.join(self.dir, "api.sock")
        self.log_path = os.path.join(self.dir, "agent.log")
        self.admin_url = f"http://{self.address}:{ADMIN_PORT}"
        self.proc = None
        on_cleanup(f"agent {self.name}", self.cleanup)
        _diagnostics.append(self.diagnostics)

    def __repr__(self):
        return f"agent {self.name} ({self.node.netns})"

    def args(self):
        a = [PODLESS, "run", "--state-dir", self.state_dir, "--api-socket", self.socket,
             "--admin-address", f"{self.address}:{ADMIN_PORT}",
             "--hbone-address", f"0.0.0.0:{HBONE_PORT}",
             "--outbound-address", f"127.0.0.1:{OUTBOUND_PORT}",
             "--node-name", self.name]
        if self.claim_cidr:
            a += ["--cluster-cidr", self.network.cluster_cidr, "--node-cidr-prefix", "24"]
        elif self.cidr:
            a += ["--node-cidr", self.cidr]
        if self.cluster:
            check(self.etcd is not None, f"{self}: cluster mode needs etcd")
            a += ["--etcd", self.etcd.url, "--node-address", self.address]
            if self.lease_ttl:
                a += ["--lease-ttl", self.lease_ttl]
            if self.ca_dir:
                a += ["--ca-cert", os.path.join(self.ca_dir, "ca.crt"),
                      "--ca-key", os.path.join(self.ca_dir, "ca.key")]
        return a + self.extra_args

    def start(self, wait=True, timeout=30):
        check(self.proc is None or self.proc.poll() is not None, f"{self} started twice")
        with open(self.log_path, "ab") as f:
            f.write(f"=== start {time.strftime('%H:%M:%S')}: {' '.join(self.args())}\n".encode())
        self.proc = spawn(self.node.exec_args(*self.args()), self.log_path)
        if wait:
            self.wait_ready(timeout)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def ready(self, timeout=2):
        """(status, body as JSON if it is JSON else text) of /ready."""
        status, body = http_get(self.admin_url + "/ready", timeout=timeout)
        parsed = _json(body)
        return status, parsed if parsed is not None else body

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if not self.running():
                fail(f"{self} exited with {self.proc.returncode} before it was ready:\n"
                     f"{tail(self.log_path)}")
            last = self.ready(timeout=1)
            if last[0] == 200:
                return last[1]
            if time.monotonic() >= deadline:
                fail(f"{self} not ready within {timeout} s (last /ready: {last}):\n"
                     f"{tail(self.log_path)}")
            time.sleep(0.1)

    def cluster_connected(self):
        """/ready's cluster.connected (None if /ready does not say)."""
        status, body = self.ready()
        if isinstance(body, dict) and isinstance(body.get("cluster"), dict):
            return body["cluster"].get("connected")
        return None

    def metrics(self):
        status, body = http_get(self.admin_url + "/metrics")
        check(status == 200, f"{self}: /metrics answered {status}: {body[:200]}")
        return body

    def metric(self, name, **labels):
        return metric_value(self.metrics(), name, **labels)

    def config_dump(self):
        status, body = http_get(self.admin_url + "/config_dump")
        check(status == 200, f"{self}: /config_dump answered {status}")
        return json.loads(body)

    def wait_exit(self, timeout=20):
        """The exit code of an agent expected to stop on its own."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            fail(f"{self} still running after {timeout} s (expected it to exit):\n"
                 f"{tail(self.log_path)}")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            fail(f"{self} did not stop within {timeout} s of signal {sig}")

    def kill9(self):
        """SIGKILL to the agent's process group: no goodbye to etcd."""
        kill_group(self.proc)
        log(f"{self} killed (SIGKILL)")

    def log(self):
        return tail(self.log_path, 10**6)

    def output(self):
        """What the agent itself printed (the log without the harness's
        `=== start` lines, which quote the command line)."""
        return "\n".join(l for l in self.log().splitlines() if not l.startswith("=== start"))

    def diagnostics(self):
        state = ("running" if self.running() else
                 f"exited {self.proc.returncode}" if self.proc else "never started")
        return f"--- {self} [{state}] log (tail) ---\n{tail(self.log_path)}"

    def cleanup(self):
        kill_group(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    # CLI, run in the root namespace against this node's API socket.
    def cli(self, *args, input=None, expect_ok=True, timeout=30):
        cmd = [PODLESS, "--socket", self.socket] + list(args)
        r = run(cmd, input=input, timeout=timeout, what=f"{self.name}: podless {' '.join(args)}")
        if expect_ok and r.returncode != 0:
            fail(f"{self.name}: podless {' '.join(args)} exited {r.returncode}\n"
                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def apply(self, manifest):
        return self.cli("apply", "-f", "-", input=manifest)

    def get_nodes(self):
        return parse_table(self.cli("get", "nodes").stdout)

    def workloads_wide(self):
        return parse_table(self.cli("get", "workloads", "-A", "-o", "wide").stdout)

    def workloads_json(self):
        out = self.cli("get", "workloads", "-A", "-o", "json").stdout
        parsed = _json(out)
        check(parsed is not None, f"{self.name}: get workloads -o json is not JSON: {out[:300]}")
        items = parsed.get("items", [parsed]) if isinstance(parsed, dict) else parsed
        return [i.get("workload", i) for i in items]

    def replicas(self):
        """{(namespace, replica name): replica status} over every workload
        this node's view holds."""
        out = {}
        for w in self.workloads_json():
            ns = w.get("metadata", {}).get("namespace", "default")
            for r in w.get("status", {}).get("replicas", []):
                out[(ns, r.get("name"))] = r
        return out

    def services(self, namespace):
        return parse_table(self.cli("get", "services", "-n", namespace).stdout)

    def credentials(self, replica, namespace):
        """(user, password) of a replica's outbound proxy credentials."""
        out = self.cli("credentials", replica, "-n", namespace).stdout
        env = dict(line.split("=", 1) for line in out.split() if "=" in line)
        proxy = env.get("HTTP_PROXY", "")
        m = re.match(r"^http://([^:@/]+):([^@/]+)@", proxy)
        check(m, f"{self.name}: credentials {replica}: no HTTP_PROXY with user:password: {out}")
        return m.group(1), m.group(2)

    # Traffic, from inside the namespace.
    def curl(self, url, *extra, timeout=5):
        cmd = self.node.exec_args(CURL, "-sS", "--max-time", str(timeout), "--noproxy", "*",
                                  "-o", "-", "-w", "\n%{http_code}", *extra, url)
        return self._curl(cmd, timeout)

    def curl_via_outbound(self, user, password, url, *extra, timeout=5):
        cmd = self.node.exec_args(CURL, "-sS", "--max-time", str(timeout), "--proxy",
                                  f"http://{user}:{password}@127.0.0.1:{OUTBOUND_PORT}",
                                  "-o", "-", "-w", "\n%{http_code}", *extra, url)
        return self._curl(cmd, timeout)

    def _curl(self, cmd, timeout):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            return CurlResult(0, "", "curl did not return")
        body, _, code = r.stdout.rpartition("\n")
        return CurlResult(int(code) if code.isdigit() else 0, body, r.stderr.strip())


def echo_reply(result, what):
    """The echo app's JSON answer of a 200 CurlResult, or a failure naming
    what was asked and what came back."""
    check(result.code == 200, f"{what}: HTTP {result.code} {result.body[:300]!r} {result.error}")
    reply = _json(result.body)
    check(isinstance(reply, dict), f"{what}: not the echo app's JSON: {result.body[:300]!r}")
    return reply


def spiffe_id(namespace, service_account, trust_domain=TRUST_DOMAIN):
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def workload(name, namespace, service_account=None, labels=None, port=8080, replicas=1):
    """manifests.workload as the cluster tests want it by default: an echo
    workload labelled app=<name>, running as service account <name>."""
    return manifests.workload(name, namespace, replicas, labels or {"app": name},
                              service_account or name, port)


def make_leaf(d, ca_cert, ca_key, name, spiffe):
    """An X.509-SVID for `spiffe` signed by ca_cert/ca_key (PEM files)."""
    return pki.make_leaf_signed_by(d, ca_cert, ca_key, name, spiffe)


def make_self_signed_ca(d, name):
    return pki.make_ca(d, name, TRUST_DOMAIN)


def hbone_interop(node, connect, ca, cert, key, authority, payload, timeout=20):
    """The independent HBONE client (tests/proxy/hbone_interop_client.py),
    run inside `node`'s namespace (a NodeNet or an agent). The agent picks
    the certificate to present by the address the client dialed (or an SNI
    naming it, which Python's ssl never sends for an IP), so `connect` is
    the destination replica's address: another node's workload address is
    routed to that node. Returns the client's JSON."""
    node = getattr(node, "node", node)
    r = run(node.exec_args(PYTHON, INTEROP, "--connect", connect, "--ca", ca, "--cert", cert,
                           "--key", key, "--authority", authority, "--payload", payload,
                           "--timeout", "10"), timeout=timeout)
    out = _json(r.stdout)
    check(out is not None, f"interop client to {connect}: rc {r.returncode} "
          f"stdout {r.stdout[:300]!r} stderr {r.stderr[-500:]!r}")
    return out


# ------------------------------------------------------------------ cluster


class Cluster:
    """Network + etcd + CA + agents, as a context manager: everything is torn
    down on exit, and a failure prints every agent's log tail, etcd's log
    tail and the etcd keys first.

        with Cluster(nodes=3, lease_ttl="3s") as c:
            c.init_ca()
            n1, n2, n3 = c.start_agents()
    """

    def __init__(self, nodes=3, lease_ttl=None, budget=210):
        self.count = nodes
        self.lease_ttl = lease_ttl
        self.budget = budget
        self.network = None
        self.etcd = None
        self.agents = []
        self.ca_dir = None
        self.ca_key_in_etcd = False

    def __enter__(self):
        set_budget(self.budget)
        step("preflight")
        require_namespaces()
        require_etcd()
        check(os.access(PODLESS, os.X_OK), f"podless binary not found at {PODLESS} "
              "(set PODLESS_BIN)")
        step(f"network with {self.count} node namespaces")
        self.network = Network(self.count).create()
        step("etcd")
        self.etcd = EtcdServer(self.network).start()
        return self

    def __exit__(self, exc_type, exc, tb):
        failed = exc_type is not None and not (
            exc_type is SystemExit and exc.code in (0, None, SKIP_EXIT_CODE))
        if failed:
            if exc_type is not SystemExit:  # Python prints the traceback after this
                print(f"FAIL [step: {_step}]: unexpected {exc_type.__name__}: {exc}",
                      file=sys.stderr, flush=True)
            _print_diagnostics()
        run_cleanups()
        signal.alarm(0)
        return False

    def init_ca(self, store_root_key=True, trust_domain=None):
        """`podless ca init`: the cluster root, published in etcd; with
        store_root_key the nodes sign their intermediates from etcd, else
        every agent gets --ca-cert/--ca-key."""
        step("podless ca init")
        out = tempdir("ca")
        cmd = [PODLESS, "ca", "init", "--etcd", self.etcd.local_url, "--out", out]
        if trust_domain:
            cmd += ["--trust-domain", trust_domain]
        if store_root_key:
            cmd.append("--store-root-key")
        r = run(cmd, timeout=30)
        check(r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}\nstdout: {r.stdout}\n"
              f"stderr: {r.stderr}")
        for f in ("ca.crt", "ca.key"):
            check(os.path.isfile(os.path.join(out, f)), f"ca init wrote no {out}/{f}")
        mode = os.stat(os.path.join(out, "ca.key")).st_mode & 0o777
        check(mode == 0o600, f"ca init: ca.key has mode {oct(mode)}, want 0600")
        self.ca_dir = out
        self.ca_key_in_etcd = store_root_key
        return out

    def agent(self, index, **kwargs):
        kwargs.setdefault("etcd", self.etcd)
        kwargs.setdefault("lease_ttl", self.lease_ttl)
        if not self.ca_key_in_etcd and self.ca_dir:
            kwargs.setdefault("ca_dir", self.ca_dir)
        a = ClusterAgent(self.network, index, **kwargs)
        self.agents.append(a)
        return a

    def start_agents(self, timeout=40, **kwargs):
        """One agent per node, started together; waits until each is ready."""
        step(f"start {self.count} agents")
        return self.start([self.agent(i, **kwargs) for i in range(1, self.count + 1)], timeout)

    def start(self, agents, timeout=40):
        """Starts these agents together; waits until each is ready."""
        for a in agents:
            a.start(wait=False)
        for a in agents:
            a.wait_ready(timeout)
        return agents

    def adopt_claimed_cidrs(self, viewer, timeout=15):
        """For agents started with claim_cidr: reads the CIDR each claimed
        from `viewer`'s `get nodes`, checks it is a /24 of the cluster CIDR
        that no other node holds, and routes it (local on its node, via its
        node's address everywhere else)."""
        step("claimed node CIDRs: inside the cluster CIDR, distinct, routed")
        claimers = [a for a in self.agents if a.claim_cidr and a.running()]
        cluster = ipaddress.ip_network(self.network.cluster_cidr)

        def probe():
            rows = {r.get("NAME"): r.get("CIDR") for r in viewer.get_nodes()}
            if any(not rows.get(a.name) or rows[a.name] == "<none>" for a in claimers):
                return Pending(rows)
            return rows

        rows = wait_until(f"{viewer.name}: get nodes shows the claimed CIDRs", probe, timeout)
        nets = {}
        for name, text in rows.items():
            try:
                nets[name] = ipaddress.ip_network(text)
            except ValueError:
                fail(f"node {name} has CIDR {text!r}, not a CIDR")
        for a in claimers:
            net = nets[a.name]
            check(net.prefixlen == 24 and net.subnet_of(cluster),
                  f"{a.name} claimed {net}, want a /24 of {cluster}")
            for other, other_net in nets.items():
                check(other == a.name or not net.overlaps(other_net),
                      f"{a.name} claimed {net}, overlapping {other}'s {other_net}: {rows}")
            a.cidr = str(net)
            self.network.set_local_cidr(a.index, a.cidr)
            for b in self.network.nodes:
                if b.index != a.index:
                    self.network.route_node_cidr(b.index, a.index, a.cidr)
            log(f"  {a.name} claimed {a.cidr}")
        return {a.name: a.cidr for a in claimers}

    def wait_nodes_ready(self, viewer, names, timeout=20):
        """Waits until `viewer`'s `get nodes` lists exactly `names`, each
        Ready, with the addresses and CIDRs the agents were started with."""
        step(f"{viewer.name}: get nodes shows {', '.join(sorted(names))} Ready")
        by_name = {a.name: a for a in self.agents if a.running()}

        def probe():
            rows = viewer.get_nodes()
            got = sorted(r.get("NAME") for r in rows)
            if got != sorted(names):
                return Pending(f"nodes {got}")
            for r in rows:
                if r.get("STATUS") != "Ready":
                    return Pending(rows)
                a = by_name.get(r["NAME"])
                if a and (r.get("ADDRESS") != a.address or (a.cidr and r.get("CIDR") != a.cidr)):
                    return Pending(f"{r} (want address {a.address}, cidr {a.cidr})")
            return rows

        return wait_until(f"{viewer.name}: get nodes shows {sorted(names)} Ready", probe, timeout)


# -------------------------------------------------------- waits and traffic


def wait_replica(viewer, namespace, replica, node=None, timeout=15):
    """The replica's status in `viewer`'s view once it has an address (and
    runs on `node`, if given)."""

    def probe():
        r = viewer.replicas().get((namespace, replica))
        if not r or not r.get("address") or (node and r.get("node") != node):
            return Pending(f"{replica}: {r}")
        return r

    where = f" on {node}" if node else ""
    return wait_until(f"{viewer.name} sees {namespace}/{replica}{where} with an address", probe,
                      timeout)


def wait_endpoints(viewer, namespace, name, count, timeout=15):
    """Waits until `viewer`'s `get services` shows `count` endpoints."""

    def probe():
        rows = [r for r in viewer.services(namespace) if r.get("NAME") == name]
        if not rows or rows[0].get("ENDPOINTS") != str(count):
            return Pending(rows)
        return rows[0]

    return wait_until(f"{viewer.name}: service {namespace}/{name} has {count} endpoints", probe,
                      timeout)


def wait_http(agent, creds, url, code=200, timeout=15):
    """Repeats a request through agent's outbound entry until it answers
    `code` (views propagate asynchronously); returns the CurlResult."""

    def probe():
        r = agent.curl_via_outbound(creds[0], creds[1], url)
        return r if r.code == code else Pending(f"HTTP {r.code} {r.body[:200]!r} {r.error}")

    return wait_until(f"{agent.name}: {url} answers {code}", probe, timeout)


def replicas_reached(agent, creds, url, count, peer=None):
    """Sends `count` requests; each must answer 200 (with the caller's
    identity `peer` at the destination, if given). {replica: hits}."""
    seen = collections.Counter()
    for i in range(count):
        reply = echo_reply(agent.curl_via_outbound(creds[0], creds[1], f"{url}{i}"),
                           f"request {i + 1}/{count} from {agent.name} to {url}{i}")
        if peer:
            check(reply.get("peer_spiffe_id") == peer,
                  f"request {i + 1}: destination saw {reply.get('peer_spiffe_id')}, want {peer}")
        seen[reply.get("replica")] += 1
    return seen
