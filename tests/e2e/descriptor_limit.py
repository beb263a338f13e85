"""The agent raises its soft RLIMIT_NOFILE to the hard limit at start (a
shell's default 1024 would cap the node at a few hundred connections) and
says so in its log; the processes it supervises keep the soft limit it found
(select() breaks above 1024), with the hard limit to raise it themselves.
Started here with a soft limit of 1024 and a hard one of 4096."""

import os
import resource
import time

from harness import check, running_agent, write

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: sleeper, namespace: files}
spec:
  app: {exec: {command: ["/bin/sleep", "600"]}}
"""


def nofile(pid):
    """(soft, hard) RLIMIT_NOFILE of a process, from /proc."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    return None


def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))  # inherited by the agent
    with running_agent() as agent:
        check(nofile(agent.proc.pid) == (4096, 4096),
              f"the agent's limit was not raised: {nofile(agent.proc.pid)}")
        check("raised the descriptor limit (RLIMIT_NOFILE) from 1024 to 4096" in agent.log(),
              f"the raise is not logged:\n{agent.log()}")
        agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "m.yaml"), MANIFEST))
        deadline = time.time() + 15
        sleeper = None
        while time.time() < deadline and sleeper is None:
            for pid in children(agent.proc.pid):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if f.read().startswith(b"/bin/sleep\0"):
                            sleeper = pid
                except OSError:
                    pass
            time.sleep(0.1)
        check(sleeper is not None, f"the exec workload did not start:\n{agent.log()[-2000:]}")
        check(nofile(sleeper) == (1024, 4096),
              f"the workload's limit is {nofile(sleeper)}, not the agent's original (1024, 4096)")
    print("PASS")


if __name__ == "__main__":
    main()
