"""A bad manifest is rejected whole, with every problem at file:line:col,
and changes nothing; exhaustion of the node CIDR is a clear error too."""

import os
import tempfile

from harness import addresses, check, running_agent, write

GOOD = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: good}
spec:
  ports: [{name: http, port: 8080}]
  app: {echo: {}}
"""

BAD = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata:
  name: Bad_Name
spec:
  replicas: many
  colour: blue
  ports:
    - port: 8080
    - port: 8080
  app: {echo: {}}
"""

with running_agent(extra_args=["--node-cidr", "127.70.0.0/29"]) as agent, \
        tempfile.TemporaryDirectory() as tmp:
    path = write(os.path.join(tmp, "mixed.yaml"), GOOD + "---\n" + BAD)
    r = agent.cli("apply", "-f", path, expect_ok=False)
    check(r.returncode == 1, f"exit {r.returncode}")
    err = r.stderr
    check(f"{path}:11:9: metadata.name:" in err, "bad name located:\n" + err)
    check(f"{path}:13:13: spec.replicas:" in err, "wrong type located:\n" + err)
    check(f"{path}:14:3: spec.colour:" in err, "unknown field located:\n" + err)
    check("spec.ports[1].port" in err and "duplicate" in err, "duplicate port:\n" + err)
    # Atomic: the valid document was not applied either.
    check(agent.config_dump()["workloads"] == [], "a failed apply changed state")

    # The same text through a dry run: the same errors, nothing stored.
    r = agent.cli("apply", "--dry-run", "-f", path, expect_ok=False)
    check(r.returncode == 1 and "spec.colour" in r.stderr, r.stderr)

    # Node CIDR /29 has 6 usable addresses: 7 replicas cannot fit, and the
    # failed apply leaves nothing half-allocated.
    ok = write(os.path.join(tmp, "ok.yaml"), GOOD.replace("ports:", "replicas: 4\n  ports:"))
    agent.cli("apply", "-f", ok)
    big = write(os.path.join(tmp, "big.yaml"),
                GOOD.replace("name: good", "name: big").replace("ports:", "replicas: 3\n  ports:"))
    r = agent.cli("apply", "-f", big, expect_ok=False)
    check(r.returncode == 1 and "no free address" in r.stderr and "127.70.0.0/29" in r.stderr,
          r.stderr)
    names = [w["name"] for w in agent.config_dump()["workloads"]]
    check(names == ["good"], f"workloads after exhaustion: {names}")
    # Two addresses are still free: a 2-replica workload fits.
    fits = write(os.path.join(tmp, "fits.yaml"), open(big).read().replace("replicas: 3", "replicas: 2"))
    agent.cli("apply", "-f", fits)
    addrs = list(addresses(agent.config_dump()).values())
    check(len(addrs) == 6 and len(set(addrs)) == 6, f"addresses {addrs}")

    # Empty input and a YAML syntax error are errors too.
    r = agent.cli("apply", "-f", "-", input="", expect_ok=False)
    check(r.returncode == 1 and "no objects" in r.stderr, r.stderr)
    r = agent.cli("apply", "-f", "-", input="kind: [unclosed\n", expect_ok=False)
    check(r.returncode == 1 and "-:" in r.stderr, r.stderr)
    r = agent.cli("apply", "-f", os.path.join(tmp, "missing.yaml"), expect_ok=False)
    check(r.returncode == 1 and "missing.yaml" in r.stderr, r.stderr)

print("apply_errors: ok")
