"""exec supervision through the real binary: a crashing program restarted
with backoff and counted (restarts and last exit in /config_dump); delete
sends SIGTERM (seen by the program) and SIGKILL after the grace period; an
agent killed with SIGKILL and restarted leaves no duplicate processes."""

import os
import tempfile
import time

from exec_util import exec_agent, processes_with_env, replica
from harness import Agent, check, wait_for, write

CRASHER = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: crasher, namespace: t}}
spec:
  app:
    exec:
      command: [sh, -c, "echo run >> {root}/crasher.runs; exit 7"]
"""

STOPPERS = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: polite, namespace: t}}
spec:
  app:
    exec:
      command: [sh, -c, "trap 'echo got TERM > {root}/polite.term; exit 0' TERM; echo up > {root}/polite.up; while :; do sleep 0.1; done"]
      terminationGracePeriodSeconds: 20
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: stubborn, namespace: t}}
spec:
  app:
    exec:
      command: [sh, -c, "trap '' TERM; echo up > {root}/stubborn.up; while :; do sleep 0.1; done"]
      terminationGracePeriodSeconds: 1
"""

SLEEPERS = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: sleeper, namespace: t}}
spec:
  replicas: 2
  app:
    exec:
      command: [sleep, "3600"]
      env: [{{name: E2E_MARK, value: "{mark}"}}]
"""


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def main():
    root = tempfile.mkdtemp(prefix="podless-exec-")
    os.chmod(root, 0o777)  # the workloads write here as their own uids

    # 1. Crash loop: restarted after the backoff (10 s first), then 20 s.
    with exec_agent() as agent:
        agent.cli("apply", "-f", write(f"{root}/crasher.yaml", CRASHER.format(root=root)))
        wait_for("first run", lambda: os.path.exists(f"{root}/crasher.runs"), agent=agent)
        started = time.time()
        r = wait_for("a restart", lambda: (r := replica(agent, "crasher-0"))["process"]["restarts"] >= 1 and r,
                     timeout=20, agent=agent)
        waited = time.time() - started
        check(8 <= waited, f"restarted after {waited:.1f}s, before the 10 s backoff")
        check(r["process"]["last_exit"] == "exit code 7", str(r))
        time.sleep(3)
        r = replica(agent, "crasher-0")
        check(r["process"]["restarts"] == 1, f"backoff did not grow: {r}")
        check(r["process"]["reason"] == "CrashLoopBackOff", str(r))
        # Checked here, in the backoff: right at a restart the new run is up
        # (ready, as Kubernetes counts a running container without a probe)
        # for the few milliseconds before it exits again.
        check(not r["ready"], f"a crashing replica in backoff is not ready: {r}")
        with open(f"{root}/crasher.runs") as f:
            check(f.read().count("run") == 2, "runs counted")
        check("podless_supervisor_restarts_total 1" in agent.http("/metrics")[1], "restart metric")
        table = agent.cli("get", "workloads", "-A").stdout.splitlines()
        header = table[0].split()
        row = [line.split() for line in table[1:] if line.split()[1] == "crasher"][0]
        check(row[header.index("RESTARTS")] == "1", "RESTARTS column:\n" + "\n".join(table))

    # 2. Graceful and forced stop on delete.
    with exec_agent() as agent:
        agent.cli("apply", "-f", write(f"{root}/stoppers.yaml", STOPPERS.format(root=root)))
        wait_for("processes up", lambda: os.path.exists(f"{root}/polite.up") and
                 os.path.exists(f"{root}/stubborn.up"), agent=agent)
        polite = replica(agent, "polite-0")["process"]["pid"]
        stubborn = replica(agent, "stubborn-0")["process"]["pid"]
        started = time.time()
        agent.cli("delete", "workload", "polite", "-n", "t")
        wait_for("polite exit", lambda: not processes_alive([polite]), timeout=10, agent=agent)
        check(time.time() - started < 5, "polite process took the whole grace period")
        check(os.path.exists(f"{root}/polite.term"), "the program did not see SIGTERM")
        started = time.time()
        agent.cli("delete", "workload", "stubborn", "-n", "t")
        wait_for("stubborn killed", lambda: not processes_alive([stubborn]), timeout=10, agent=agent)
        took = time.time() - started
        check(0.8 <= took, f"SIGKILL before the 1 s grace period ({took:.2f}s)")

    # 3. kill -9 of the agent, restart: the orphans are replaced, never doubled.
    mark = "podless-e2e-" + os.path.basename(root)
    state = tempfile.mkdtemp(prefix="podless-e2e-state-")
    agent = Agent(state_dir=state)
    try:
        agent.start()
        agent.cli("apply", "-f", write(f"{root}/sleepers.yaml", SLEEPERS.format(mark=mark)))
        # Both must be sleep itself: a replica still in the sandbox launcher
        # (same environment, before its exec) dies with the agent that set
        # it up, and is then simply started by the next agent.
        def sleepers():
            pids = processes_with_env("E2E_MARK=" + mark)
            return len(pids) == 2 and all(comm(pid) == "sleep" for pid in pids) and pids
        old = wait_for("two sleepers", sleepers, agent=agent)
        agent.kill9()
        left = processes_with_env("E2E_MARK=" + mark)
        check(sorted(left) == sorted(old), f"orphans should outlive a kill -9: {old} before, {left} after")
        agent.start()
        new = wait_for("two fresh sleepers", lambda: (p := processes_with_env("E2E_MARK=" + mark)) and
                       len(p) == 2 and not set(p) & set(old) and p, agent=agent)
        time.sleep(1)
        check(sorted(processes_with_env("E2E_MARK=" + mark)) == sorted(new), "processes changed again")
        check("stopping orphan" in agent.log(), "orphans not reported")
        check(agent.stop() == 0, "agent exit code")
        check(processes_with_env("E2E_MARK=" + mark) == [], "processes survived the agent's shutdown")
    finally:
        for pid in processes_with_env("E2E_MARK=" + mark):
            os.kill(pid, 9)
        agent.cleanup()
        import shutil
        shutil.rmtree(state, ignore_errors=True)
    print("ok")


def processes_alive(pids):
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    alive.append(pid)
        except OSError:
            pass
    return alive


if __name__ == "__main__":
    main()
