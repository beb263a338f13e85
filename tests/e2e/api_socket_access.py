"""Only the agent's own uid may use its local API (SECURITY.md): the API
socket is mode 0600 and the state dir 0700, so a process of another uid gets
EACCES when it connects, and the CA key is 0600. Needs root, to run the
attempt as uid/gid 65534 (nobody); skips otherwise."""

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

from harness import Agent, check

NOBODY = 65534

if os.geteuid() != 0:
    print("SKIP: api_socket_access needs root (to connect as uid 65534)")
    sys.exit(0)


def drop_to_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


# The child prints the errno name of its connect(), or "connected".
CONNECT = """
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
"""


def connect_as_nobody(path):
    # Debian's python3 and cwd "/": the test's own interpreter and directory
    # may not be reachable for nobody.
    r = subprocess.run(["/usr/bin/python3", "-c", CONNECT, path], preexec_fn=drop_to_nobody,
                       cwd="/", capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"connect child failed: {r.stderr}")
    return r.stdout.strip()


def connect_as_self(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


tmp = tempfile.mkdtemp(prefix="podless-e2e-access-")
# World-traversable, so that for the second socket only its own mode stands
# between another uid and the agent.
os.chmod(tmp, 0o711)
state_dir = os.path.join(tmp, "state")  # created by the agent
open_dir = os.path.join(tmp, "open")
os.mkdir(open_dir)
os.chmod(open_dir, 0o711)
extra_socket = os.path.join(open_dir, "api.sock")

agent = Agent(state_dir=state_dir, extra_args=["--api-socket", extra_socket])
agent.log_path = os.path.join(tmp, "agent.log")
try:
    agent.start()
    agent.socket = extra_socket

    # What the agent created is private to its uid: the state dir only
    # traversable by others (0711: sandboxed workloads reach their working
    # directories and the Workload API socket), never listable.
    check(mode(state_dir) == 0o711, f"state dir {state_dir} is {oct(mode(state_dir))}, want 0o711")
    for name in os.listdir(state_dir):
        path = os.path.join(state_dir, name)
        if os.path.isfile(path) and not os.path.islink(path):
            check(mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}: open to others")
    ca_key = os.path.join(state_dir, "ca.key")
    check(os.path.exists(ca_key), f"no {ca_key}: {sorted(os.listdir(state_dir))}")
    check(mode(ca_key) == 0o600, f"{ca_key} is {oct(mode(ca_key))}, want 0o600")
    for name in os.listdir(state_dir):
        if name.endswith(".key"):
            path = os.path.join(state_dir, name)
            check(mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}: readable by others")
    check(stat.S_ISSOCK(os.stat(extra_socket).st_mode), f"{extra_socket} is not a socket")
    check(mode(extra_socket) == 0o600,
          f"API socket {extra_socket} is {oct(mode(extra_socket))}, want 0o600")

    # The agent's own uid gets in (the same attempt can succeed).
    connect_as_self(extra_socket)
    agent.cli("get", "workloads")

    # Another uid is refused by the socket's mode...
    got = connect_as_nobody(extra_socket)
    check(got == "EACCES", f"uid {NOBODY} connecting to {extra_socket}: {got}, want EACCES")
    # ... and by the state dir around the default socket.
    default_socket = os.path.join(state_dir, "api.sock")
    if os.path.exists(default_socket):
        got = connect_as_nobody(default_socket)
        check(got == "EACCES", f"uid {NOBODY} connecting to {default_socket}: {got}, want EACCES")

    # Control: with the mode opened up, the same child connects, so the
    # EACCES above came from the mode and not from the test's own setup.
    os.chmod(extra_socket, 0o666)
    got = connect_as_nobody(extra_socket)
    check(got == "connected", f"control: uid {NOBODY} on a 0666 socket got {got}, want connected")
    os.chmod(extra_socket, 0o600)

    code = agent.stop()
    check(code == 0, f"agent exited {code}:\n{agent.log()}")
except SystemExit:
    print(agent.log(), file=sys.stderr)
    raise
finally:
    agent.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)

print("OK: api_socket_access")
