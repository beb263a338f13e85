"""The agent trusts only a state dir and keys of its own (issue 18, point 7).

(a) a state dir another user made (uid nobody, mode 0777, with a CA of
    their own in it) is refused at start, naming the dir, its owner and its
    mode, and nothing is written to it: the agent would otherwise sign every
    SVID with the planted CA;
(b) a state dir of the agent's own uid that others may write (0777) is
    refused the same way; 0711, the mode the agent gives it, is not;
(c) a private key others may read is refused, naming the file: the state
    dir's ca.key at 0644, and an operator's --ca-key at 0644;
(d) symbolic links planted where the agent writes in its state dir never
    have it write through them. The files it writes there by a fixed name
    are lock, state.log, processes and logs/<ns>/<replica>/current.log
    (O_NOFOLLOW: a link is an error naming it), and the temp files
    state.log.tmp (compaction) and processes.tmp (the supervisor's process
    table), removed first and created with O_EXCL | O_NOFOLLOW; everything
    else (ca.key, ca.crt, workload-uids, cluster-*, previous.log) is
    written to a temp file named <file>.tmp.<pid>.<n>, created O_EXCL |
    O_NOFOLLOW, and renamed over the file, replacing a link there. Here:
    processes.tmp and state.log.tmp linked to a victim file outside, then
    an exec workload started (the process table written) and the agent
    stopped; and lock linked to a victim, which the agent refuses."""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

from exec_util import kill_processes_of
from harness import PODLESS, Agent, check, free_port, running_agent, write
from pki import make_ca

EXEC_MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: sleeper, namespace: trust}
spec:
  serviceAccount: sleeper
  app:
    exec:
      command: [sh, -c, "while :; do sleep 1; done"]
      terminationGracePeriodSeconds: 2
"""


def run_agent(state_dir, *extra, timeout=20):
    """`podless run` on free ports, expected to fail at start: (rc, output)."""
    args = [PODLESS, "run", "--state-dir", state_dir,
            "--admin-address", f"127.0.0.1:{free_port()}",
            "--hbone-address", f"127.0.0.1:{free_port()}",
            "--outbound-address", f"127.0.0.1:{free_port()}", *extra]
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        check(False, f"{' '.join(args)} did not exit: it started on an untrusted state dir")
    return r.returncode, r.stdout + r.stderr


def snapshot(root):
    """Every entry under `root` with its type, owner, mode, size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_size,
                                                st.st_mtime_ns)
    st = os.lstat(root)
    out["."] = (st.st_mode, st.st_uid, st.st_mtime_ns)
    return out


def main():
    if os.geteuid() != 0:
        print("SKIP: a state dir of another user needs root to set up")
        sys.exit(77)
    nobody = pwd.getpwnam("nobody")
    tmp = tempfile.mkdtemp(prefix="podless-trust-")
    try:
        step_a(tmp, nobody)
        step_b(tmp)
        step_c(tmp)
        step_d(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("state_dir_trust: ok")


def step_a(tmp, nobody):
    state = os.path.join(tmp, "foreign")
    os.mkdir(state)
    make_ca(state, "ca")  # the attacker's CA, where the agent looks for its own
    for name in os.listdir(state):
        os.chown(os.path.join(state, name), nobody.pw_uid, nobody.pw_gid)
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    os.chmod(state, 0o777)
    before = snapshot(state)
    rc, out = run_agent(state)
    check(rc != 0, f"(a) the agent started on a state dir of uid nobody, mode 0777:\n{out}")
    want = f"state dir {state} is owned by uid {nobody.pw_uid} (nobody) with mode 0777"
    check(want in out, f"(a) want {want!r} in:\n{out}")
    check("do not reuse it" in out, f"(a) the message does not say what to do:\n{out}")
    check(snapshot(state) == before, f"(a) the agent wrote to the foreign state dir: "
          f"{sorted(before)} -> {sorted(snapshot(state))}")
    # Mode 0700 does not make another user's dir the agent's.
    os.chmod(state, 0o700)
    rc, out = run_agent(state)
    check(rc != 0 and f"is owned by uid {nobody.pw_uid} (nobody) with mode 0700" in out,
          f"(a) a state dir of uid nobody, mode 0700, was not refused: {rc}\n{out}")
    print("state_dir_trust: (a) a foreign state dir is refused, nothing written", flush=True)


def step_b(tmp):
    state = os.path.join(tmp, "open")
    os.mkdir(state)
    os.chmod(state, 0o777)
    before = snapshot(state)
    rc, out = run_agent(state)
    check(rc != 0, f"(b) the agent started on a state dir of mode 0777:\n{out}")
    want = f"state dir {state} is owned by uid 0 (root) with mode 0777"
    check(want in out, f"(b) want {want!r} in:\n{out}")
    check(f"chmod 0700 {state}" in out, f"(b) the message does not say what to do:\n{out}")
    check(snapshot(state) == before, "(b) the agent wrote to the refused state dir")
    # 0711 (what the agent sets itself) is fine.
    os.chmod(state, 0o711)
    agent = Agent(state_dir=state)
    agent.log_path = os.path.join(tmp, "open.log")
    try:
        agent.start()
    finally:
        agent.cleanup()
    print("state_dir_trust: (b) a state dir others may write is refused; 0711 is not",
          flush=True)


def step_c(tmp):
    # The agent's own ca.key, made readable by others.
    state = os.path.join(tmp, "keys")
    agent = Agent(state_dir=state)
    agent.log_path = os.path.join(tmp, "keys.log")
    try:
        agent.start()
        agent.stop()
    finally:
        agent.cleanup()
    key = os.path.join(state, "ca.key")
    os.chmod(key, 0o644)
    rc, out = run_agent(state)
    check(rc != 0, f"(c) the agent started with ca.key at mode 0644:\n{out}")
    want = f"private key {key} is owned by uid 0 (root) with mode 0644"
    check(want in out, f"(c) want {want!r} in:\n{out}")
    check(f"chmod 0600 {key}" in out, f"(c) the message does not say what to do:\n{out}")
    os.chmod(key, 0o600)
    # An operator's --ca-key readable by others.
    certs = os.path.join(tmp, "certs")
    os.mkdir(certs)
    cert, op_key = make_ca(certs, "operator")
    os.chmod(op_key, 0o644)
    rc, out = run_agent(os.path.join(tmp, "operator-state"), "--ca-cert", cert, "--ca-key", op_key)
    want = f"private key {op_key} is owned by uid 0 (root) with mode 0644"
    check(rc != 0 and want in out, f"(c) --ca-key at 0644: rc {rc}, want {want!r} in:\n{out}")
    os.chmod(op_key, 0o600)
    with running_agent(extra_args=["--ca-cert", cert, "--ca-key", op_key]):
        pass
    print("state_dir_trust: (c) key files others may read are refused, naming them", flush=True)


def planted(state, name, victim):
    os.symlink(victim, os.path.join(state, name))


def step_d(tmp):
    victim = os.path.join(tmp, "victim")
    precious = "precious: not the agent's to write\n"
    write(victim, precious)
    state = os.path.join(tmp, "links")
    os.mkdir(state, 0o700)
    for name in ("processes.tmp", "state.log.tmp"):
        planted(state, name, victim)
    agent = Agent(state_dir=state)
    agent.log_path = os.path.join(tmp, "links.log")
    try:
        agent.start()
        agent.cli("apply", "-f", write(os.path.join(tmp, "exec.yaml"), EXEC_MANIFEST))
        deadline = time.time() + 20
        running = False
        while time.time() < deadline and not running:
            dump = agent.config_dump()
            running = any(r.get("process", {}).get("state") == "Running"
                          for w in dump["workloads"] for r in w["replicas"])
            time.sleep(0.1)
        check(running, f"(d) the exec workload never ran:\n{agent.log()}")
        # The table holds the process: it was written (and rewritten at stop).
        with open(os.path.join(state, "processes")) as f:
            check("trust/sleeper-0" in f.read(), "(d) the process table does not hold it")
        planted(state, "processes.tmp", victim)  # again, for the write at stop
        check(agent.stop() == 0, f"(d) the agent did not stop cleanly:\n{agent.log()}")
    finally:
        kill_processes_of(agent)
        agent.cleanup()
    with open(victim) as f:
        check(f.read() == precious, "(d) the agent wrote through a planted symbolic link")
    # The agent removed the link at state.log.tmp when it opened its state.
    check(not os.path.lexists(os.path.join(state, "state.log.tmp")),
          "(d) the link planted as state.log.tmp is still there")
    check(not os.path.islink(os.path.join(state, "processes")),
          "(d) the process table became a link (the planted temp file renamed over it)")
    # A link planted as the lock file: refused, naming it; the victim intact.
    state = os.path.join(tmp, "lock-link")
    os.mkdir(state, 0o700)
    planted(state, "lock", victim)
    rc, out = run_agent(state)
    check(rc != 0 and f"{state}/lock is a symbolic link" in out,
          f"(d) a lock file linked elsewhere: rc {rc}\n{out}")
    with open(victim) as f:
        check(f.read() == precious, "(d) the agent truncated the lock link's target")
    print("state_dir_trust: (d) no write went through a planted symbolic link", flush=True)


if __name__ == "__main__":
    main()
