"""The agent holds every key, so no core file and no process of its uid may
get at its memory (issue 18, point 12): `podless run` sets RLIMIT_CORE to 0
(soft and hard) and PR_SET_DUMPABLE to 0.

Observed from outside: /proc/<agent>/limits shows "Max core file size 0 0"
even when started with unlimited core files; and an agent run as uid
nobody has its /proc/<pid> files owned by root (the kernel's sign of a
process that is not dumpable), so another process of uid nobody (what an
exec workload is under an agent that is not root) cannot read its
environment, which it could before."""

import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile

import harness
from harness import Agent, check, running_agent


class NobodyAgent(Agent):
    def args(self):
        nobody = pwd.getpwnam("nobody")
        return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                "--clear-groups", "--inh-caps=-all"] + super().args()


def core_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4:6]
    return None


def status_uid(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def main():
    if os.geteuid() != 0:
        print("SKIP: running the agent as uid nobody needs root")
        sys.exit(77)
    # Whatever the agent is started with, it keeps no core file limit.
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    with running_agent() as agent:
        limit = core_limit(agent.proc.pid)
        check(limit == ["0", "0"], f"the agent's core file size limit is {limit}, want 0 0")
        # Root (CAP_SYS_PTRACE) still reads what the tests read.
        check(harness.fds(agent.proc.pid) > 0 and harness.rss_kib(agent.proc.pid) > 0,
              "cannot read the agent's /proc/<pid>/fd and status")
    print("agent_not_dumpable: RLIMIT_CORE 0 0", flush=True)

    nobody = pwd.getpwnam("nobody")
    d = tempfile.mkdtemp(prefix="podless-dumpable-")
    state = tempfile.mkdtemp(prefix="podless-dumpable-state-")
    try:
        os.chmod(d, 0o755)
        binary = os.path.join(d, "podless")
        shutil.copy(os.path.abspath(harness.PODLESS), binary)
        os.chmod(binary, 0o755)
        os.chown(state, nobody.pw_uid, nobody.pw_gid)
        harness.PODLESS = binary
        agent = NobodyAgent(state_dir=state)
        agent.log_path = os.path.join(d, "agent.log")
        try:
            agent.start()
            pid = agent.proc.pid
            check(status_uid(pid) == nobody.pw_uid, f"the agent is not uid nobody: {status_uid(pid)}")
            owner = os.stat(f"/proc/{pid}/environ").st_uid
            check(owner == 0, f"/proc/{pid}/environ of the agent (uid nobody) is owned by uid "
                  f"{owner}: the agent is dumpable")
            r = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                                "--clear-groups", "cat", f"/proc/{pid}/environ"],
                               capture_output=True, timeout=10)
            check(r.returncode != 0, "another process of uid nobody read the agent's environment")
            check(core_limit(pid) == ["0", "0"], f"core file size limit {core_limit(pid)}")
        finally:
            agent.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    print("agent_not_dumpable: ok")


if __name__ == "__main__":
    main()
