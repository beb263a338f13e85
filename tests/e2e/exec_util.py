"""Helpers shared by the exec_* end-to-end tests (not a test itself): find
the processes an agent started by their environment, and kill what a failed
test left behind (supervised processes run in their own sessions, so the
harness's process-group kill of the agent does not reach them)."""

import contextlib
import os
import signal

from harness import replicas, running_agent


def processes_with_env(entry):
    """Pids of live (non-zombie) processes whose environment holds `entry` (NAME=value)."""
    needle = entry.encode()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state not in ("Z", "X"):
            pids.append(int(name))
    return pids


def agent_marker(agent):
    """The env entry every process of this agent has (its Workload API socket)."""
    return "SPIFFE_ENDPOINT_SOCKET=unix://" + os.path.join(os.path.abspath(agent.state_dir),
                                                         "workload-api.sock")


def kill_processes_of(agent):
    for pid in processes_with_env(agent_marker(agent)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def exec_agent(**kwargs):
    """running_agent() that also kills the agent's supervised processes at the end."""
    with running_agent(**kwargs) as agent:
        try:
            yield agent
        finally:
            kill_processes_of(agent)


def replica(agent, name):
    """The /config_dump entry of replica `name`, or None."""
    return replicas(agent.config_dump()).get(name)


def address_of(agent, name):
    """The address of replica `name`, or None while it does not exist."""
    r = replica(agent, name)
    return r["address"] if r else None
