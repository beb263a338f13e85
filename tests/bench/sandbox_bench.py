"""What the exec sandbox costs (README, "Isolation"), beside an unsandboxed
process in the same run:

- start: spawning /bin/true directly (the baseline) vs through the agent's
  launcher (`podless __sandbox`: uid/gid, no_new_privs, Landlock scopes,
  rlimits, chdir, then exec) vs in a new network namespace (`unshare -n`,
  the kernel's part of what the agent does per replica);
- memory: a sleeping process started directly vs through the launcher (the
  launcher execs, so nothing of it stays), and the kernel memory a held
  network namespace costs (MemAvailable over 50 of them, beside 50 plain
  processes).

Needs root. PODLESS_BENCH_SMOKE=1: a few iterations, to prove it runs.
Usage: sandbox_bench.py"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import PODLESS, rss_kib  # noqa: E402

SMOKE = os.environ.get("PODLESS_BENCH_SMOKE", "") not in ("", "0")
SPAWNS = 20 if SMOKE else 300
HELD = 5 if SMOKE else 50
UID = "61999"


def spawn_ms(argv, n):
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(argv, check=True)
    return (time.perf_counter() - start) * 1000 / n


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def held(argv, n):
    """Starts n copies of argv, returns (MemAvailable drop per copy KiB, RSS of one KiB)."""
    before = mem_available_kib()
    procs = [subprocess.Popen(argv) for _ in range(n)]
    time.sleep(1.0)
    after = mem_available_kib()
    rss = rss_kib(procs[0].pid)
    for p in procs:
        p.kill()
        p.wait()
    return (before - after) / n, rss


def main():
    if os.geteuid() != 0:
        print("SKIP: the sandbox (its own uids, network namespaces) needs root")
        return 77
    sandbox = [PODLESS, "__sandbox", "--uid", UID, "--gid", UID, "--workdir", "/tmp", "--"]
    # Interleaved rounds, so a noisy neighbour hits all three alike.
    rounds = 3
    direct = sandboxed = netns = 0.0
    for _ in range(rounds):
        direct += spawn_ms(["/bin/true"], SPAWNS) / rounds
        sandboxed += spawn_ms(sandbox + ["/bin/true"], SPAWNS) / rounds
        netns += spawn_ms(["unshare", "-n", "/bin/true"], SPAWNS) / rounds
    print(f"start, mean of {rounds}x{SPAWNS} spawns of /bin/true:")
    print(f"  direct (baseline)           {direct:7.3f} ms  1.00x")
    print(f"  through podless __sandbox   {sandboxed:7.3f} ms  {sandboxed / direct:5.2f}x")
    print(f"  in a new netns (unshare -n) {netns:7.3f} ms  {netns / direct:5.2f}x")

    plain_kib, plain_rss = held(["sleep", "60"], HELD)
    boxed_kib, boxed_rss = held(sandbox + ["sleep", "60"], HELD)
    ns_kib, _ = held(["unshare", "-n", "sleep", "60"], HELD)
    print(f"memory, {HELD} held processes each (MemAvailable drop per process, noisy):")
    print(f"  sleep direct (baseline)     {plain_kib:7.0f} KiB  RSS {plain_rss} KiB")
    print(f"  sleep through the launcher  {boxed_kib:7.0f} KiB  RSS {boxed_rss} KiB")
    print(f"  sleep in its own netns      {ns_kib:7.0f} KiB  (+{ns_kib - plain_kib:.0f} KiB "
          "for the namespace)")
    if not SMOKE and boxed_rss > plain_rss * 2:
        print("the launcher left more than the command behind", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
