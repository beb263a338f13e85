"""A full disk under the state dir: applies fail with a clear error naming the
cause, nothing half-applied shows up, the agent keeps serving, everything
acknowledged before is intact after a restart, and applies work again once
there is room. The state dir is a small tmpfs (mount needs root: skipped with
exit 77 otherwise)."""

import os
import subprocess
import sys
import tempfile

from harness import Agent, check

SIZE = "1M"
state = tempfile.mkdtemp(prefix="podless-full-disk-")
mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", state],
                         capture_output=True, text=True)
if mounted.returncode != 0:
    print(f"SKIP: cannot mount a tmpfs for the state dir: {mounted.stderr.strip()}")
    sys.exit(77)


def manifest(n):
    # Large labels fill the disk fast; each object is one record.
    labels = "\n".join(f"    k{i}: {'v' * 60}" for i in range(40))
    return f"""apiVersion: podless.dev/v1alpha1
kind: Workload
metadata:
  name: w{n}
  namespace: disk
  labels:
{labels}
spec:
  replicas: 1
  app: {{echo: {{}}}}
"""


def names(agent):
    out = agent.cli("get", "workloads", "-n", "disk").stdout.split("\n")[1:]
    return {line.split()[0] for line in out if line.strip()}


agent = Agent(state_dir=state)
try:
    agent.start()
    acknowledged = set()
    error = ""
    for n in range(2000):
        r = agent.cli("apply", "-f", "-", input=manifest(n), expect_ok=False)
        if r.returncode != 0:
            error = r.stderr + r.stdout
            failed = f"w{n}"
            break
        acknowledged.add(f"w{n}")
    check(error, f"the {SIZE} state dir never filled up after {len(acknowledged)} applies")
    print(f"full_disk: disk full after {len(acknowledged)} applies: {error.strip()}")
    check("No space left on device" in error or "space" in error.lower(),
          f"the error does not name the cause: {error!r}")
    check(agent.http("/healthz")[0] == 200, "the agent stopped serving after the failed apply")
    listed = names(agent)
    check(failed not in listed, f"{failed} was refused but is listed")
    check(acknowledged <= listed, f"acknowledged workloads missing: {acknowledged - listed}")

    # Restart on the full disk: everything acknowledged is there, nothing else.
    agent.stop()
    agent.start()
    listed = names(agent)
    check(listed == acknowledged, f"after restart: extra {listed - acknowledged}, "
          f"missing {acknowledged - listed}")

    # Room again (deletes shrink nothing in an append-only log: grow the tmpfs).
    subprocess.run(["mount", "-o", "remount,size=8M", state], check=True)
    r = agent.cli("apply", "-f", "-", input=manifest(9999), expect_ok=False)
    check(r.returncode == 0, f"apply after freeing space failed: {r.stderr}")
    check("w9999" in names(agent), "the apply after freeing space is not listed")
    print("full_disk: ok")
finally:
    agent.stop()
    subprocess.run(["umount", "-l", state], capture_output=True)
    os.rmdir(state)
