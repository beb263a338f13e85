"""kill -9 during a stream of applies loses nothing acknowledged: after each
kill and restart every workload whose apply returned success is there, with
the address and identity it was given, and the state log stays readable."""

import json
import os
import random
import subprocess
import threading
import time

from harness import Agent, PODLESS, check

TRIALS = int(os.environ.get("PODLESS_CRASH_TRIALS", "3"))

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: w{n}, namespace: crash}}
spec:
  replicas: 2
  serviceAccount: sa{n}
  app: {{echo: {{}}}}
"""

agent = Agent()
acknowledged = {}  # name -> addresses reported by the API at the time
try:
    n = 0
    for trial in range(TRIALS):
        agent.start()
        # Everything acknowledged before is still there, unchanged.
        dump = agent.config_dump()
        have = {w["name"]: [r["address"] for r in w["replicas"]]
                for w in dump["workloads"] if w["namespace"] == "crash"}
        for name, addrs in acknowledged.items():
            check(have.get(name) == addrs, f"trial {trial}: {name} lost or changed: "
                  f"{have.get(name)} != {addrs}")

        stop = threading.Event()

        def applier():
            global n
            while not stop.is_set():
                n += 1
                r = subprocess.run([PODLESS, "--socket", agent.socket, "apply", "-f", "-"],
                                   input=MANIFEST.format(n=n), capture_output=True, text=True)
                if r.returncode != 0:
                    return  # the agent died under us: not acknowledged
                g = subprocess.run([PODLESS, "--socket", agent.socket, "get", "workload",
                                    f"w{n}", "-n", "crash", "-o", "json"],
                                   capture_output=True, text=True)
                if g.returncode != 0:
                    acknowledged[f"w{n}"] = None  # acknowledged, address unknown
                    return
                w = json.loads(g.stdout)
                acknowledged[f"w{n}"] = [r["address"] for r in w["status"]["replicas"]]

        t = threading.Thread(target=applier)
        t.start()
        time.sleep(random.uniform(0.3, 1.5))
        agent.kill9()
        stop.set()
        t.join(30)
        # An apply acknowledged but whose address we could not read: take it
        # from the state after restart, then it must stay.
        agent.start()
        dump = agent.config_dump()
        have = {w["name"]: [r["address"] for r in w["replicas"]]
                for w in dump["workloads"] if w["namespace"] == "crash"}
        for name in list(acknowledged):
            check(name in have, f"trial {trial}: acknowledged {name} lost after kill -9")
            if acknowledged[name] is None:
                acknowledged[name] = have[name]
            check(have[name] == acknowledged[name], f"{name} changed address after kill -9")
        all_addrs = [a for addrs in have.values() for a in addrs]
        check(len(all_addrs) == len(set(all_addrs)), "an address handed out twice")
        agent.kill9()
    check(len(acknowledged) > 0, "no apply was acknowledged at all")
    print(f"crash_durability: ok ({TRIALS} kills, {len(acknowledged)} acknowledged applies)")
finally:
    agent.cleanup()
