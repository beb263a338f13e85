"""The agent refuses to start, with a clear message and a non-zero exit,
when it cannot: admin port in use, state dir unusable, corrupt state,
another agent on the same state dir, bad flags."""

import os
import socket
import subprocess
import tempfile

from harness import Agent, PODLESS, check, running_agent


def start_expect_failure(agent, needle):
    agent.start(wait=False)
    try:
        code = agent.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        agent.cleanup()
        check(False, f"agent did not exit; expected failure with {needle!r}")
    log = agent.log()
    check(code != 0, f"exit code {code}, want non-zero:\n{log}")
    check(needle in log, f"want {needle!r} in:\n{log}")


# Admin port in use.
with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    agent = Agent()
    agent.admin_port = busy.getsockname()[1]
    start_expect_failure(agent, f"127.0.0.1:{agent.admin_port}: address already in use")
    agent.cleanup()

# Kubernetes API port in use: the flag that chose it, and how to do without.
with socket.socket() as busy:
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    agent = Agent()
    agent.kube_port = busy.getsockname()[1]
    start_expect_failure(agent, f"--kube-address 127.0.0.1:{agent.kube_port} (the Kubernetes API)")
    check("--kube-address off" in agent.log(), agent.log())
    agent.cleanup()

# State dir is a file.
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "not-a-dir")
    open(path, "w").close()
    agent = Agent(state_dir=path)
    agent.log_path = os.path.join(tmp, "agent.log")
    start_expect_failure(agent, path)

# Corrupt state log: the message names the file.
with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, "state.log"), "wb") as f:
        f.write(b"this is not a podless state log at all\n" * 4)
    agent = Agent(state_dir=tmp)
    start_expect_failure(agent, "state.log")

# A second agent on the same state dir.
with running_agent() as first:
    second = Agent(state_dir=first.state_dir)
    second.log_path = first.state_dir + "/second.log"
    start_expect_failure(second, "in use by another podless process")
    # The first is unharmed.
    status, _ = first.http("/ready")
    check(status == 200, "first agent hurt by the second")

# Bad flags: exit 2 and the flag's name.
r = subprocess.run([PODLESS, "run", "--svid-ttl", "forever"], capture_output=True, text=True)
check(r.returncode == 2 and "--svid-ttl" in r.stderr, r.stderr)
r = subprocess.run([PODLESS, "run", "--help"], capture_output=True, text=True)
check(r.returncode == 0 and "--state-dir" in r.stdout and "--node-cidr" in r.stdout, r.stdout)

print("agent_start_errors: ok")
