"""The agent's logger (issue 16, point 7), through the binary: every line
carries a UTC timestamp, a level and a component; --log-level debug adds a
line per connection accepted and closed with the same conn=ID; --log-level
warn drops the info lines (the "ready" line among them); a level that is not
one of error, warn, info, debug is refused naming the flag."""

import os
import re
import socket
import subprocess
import time

from harness import PODLESS, check, running_agent, write

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn |info |debug) ")

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: hello, namespace: logs}
spec:
  ports: [{name: http, port: 18097, protocol: HTTP}]
  app: {echo: {}}
"""


def wait_for(agent, pattern, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = re.search(pattern, agent.log(), re.M)
        if m:
            return m
        time.sleep(0.05)
    return None


def main():
    with running_agent(extra_args=["--log-level", "debug"]) as agent:
        agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "m.yaml"), MANIFEST))
        address = agent.config_dump()["workloads"][0]["replicas"][0]["address"]
        with socket.create_connection((address, 18097), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while s.recv(4096):
                pass
        accepted = wait_for(agent, r"debug proxy: conn=(\d+) accepted on plaintext .* to "
                            + re.escape(address) + "$")
        check(accepted, f"no accept line for the connection:\n{agent.log()[-2000:]}")
        conn = accepted.group(1)
        check(wait_for(agent, rf"debug proxy: conn={conn} closed$"),
              f"no close line for conn={conn}:\n{agent.log()[-2000:]}")
        lines = [l for l in agent.log().splitlines() if l.strip()]
        bad = [l for l in lines if not LINE.match(l)]
        check(not bad, f"lines without timestamp and level: {bad[:3]}")
        check(any(" info  ready: node " in l for l in lines), "no info line 'ready'")

    with running_agent(extra_args=["--log-level", "warn"]) as agent:
        agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "m.yaml"), MANIFEST))
        agent.stop()
        text = agent.log()
        check(" info " not in text and " debug " not in text,
              f"info or debug lines at --log-level warn:\n{text[-2000:]}")

    r = subprocess.run([PODLESS, "run", "--log-level", "loud"], capture_output=True, text=True,
                       timeout=20)
    check(r.returncode == 2 and "--log-level" in r.stderr and "loud" in r.stderr,
          f"a bad level was not refused naming the flag: {r.returncode} {r.stderr}")
    print("PASS")


if __name__ == "__main__":
    main()
