"""The node agent end to end: start on free ports, apply the hello example
with the CLI, read it back (get/describe/-o json/config_dump/metrics), issue
and verify a certificate with openssl, update in place, delete, shut down
cleanly, restart with the same state."""

import json
import os
import stat
import subprocess
import tempfile

from harness import Agent, SOURCE_ROOT, check, metric_value, replicas, running_agent, write

HELLO = os.path.join(SOURCE_ROOT, "examples", "hello.yaml")


with running_agent() as agent:
    status, body = agent.http("/healthz")
    check(status == 200, f"/healthz {status}")
    mode = stat.S_IMODE(os.stat(agent.socket).st_mode)
    check(mode == 0o600, f"API socket mode {oct(mode)}, want 0600")

    r = agent.cli("apply", "-f", HELLO)
    check("workload/hello created" in r.stdout, r.stdout)
    check("service/hello created" in r.stdout, r.stdout)
    check("authorizationpolicy/hello-allow created" in r.stdout, r.stdout)

    # Re-applying the same manifest changes nothing.
    r = agent.cli("apply", "-f", HELLO)
    check(r.stdout.count("unchanged") == 3, "re-apply should be a no-op: " + r.stdout)

    table = agent.cli("get", "workloads").stdout
    check(table.splitlines()[0].split()[:2] == ["NAME", "READY"], table)
    check("hello" in table and "2/2" in table, table)

    listing = json.loads(agent.cli("get", "workloads", "-o", "json").stdout)
    items = listing.get("items", [listing])
    hello = [i for i in items if i["metadata"]["name"] == "hello"][0]
    addresses = [r["address"] for r in hello["status"]["replicas"]]
    check(len(addresses) == 2 and len(set(addresses)) == 2, f"addresses {addresses}")
    for a in addresses:
        check(a.startswith("127.") and int(a.split(".")[1]) & 0xC0 == 64,
              f"{a} not in 127.64.0.0/10")
    check(hello["status"]["replicas"][0]["spiffeId"] ==
          "spiffe://cluster.local/ns/default/sa/default", str(hello["status"]))

    # What `get -o yaml` prints (a List with status) applies again as a no-op.
    everything = agent.cli("get", "workloads", "-A", "-o", "yaml").stdout
    r = agent.cli("apply", "-f", "-", input=everything)
    check(r.stdout.strip() == "workload/hello unchanged", "get -o yaml | apply: " + r.stdout)

    svc = agent.cli("get", "services", "-o", "wide").stdout
    check("hello" in svc and "127.128." in svc, svc)

    described = agent.cli("describe", "workload", "hello").stdout
    check("hello-0" in described and "hello-1" in described, described)

    # Certificates are issued on first use: none yet.
    dump = agent.config_dump()
    reps = replicas(dump, "hello", "default")
    check(reps["hello-0"]["certificate"] is None, "certificate issued before first use")
    check(reps["hello-0"]["address"] == addresses[0], "config_dump address")

    with tempfile.TemporaryDirectory() as tmp:
        chain = write(os.path.join(tmp, "chain.pem"), agent.cli("cert", "hello-0").stdout)
        bundle = write(os.path.join(tmp, "bundle.pem"), agent.cli("ca", "export").stdout)
        v = subprocess.run(["openssl", "verify", "-CAfile", bundle, chain],
                           capture_output=True, text=True)
        check(v.returncode == 0 and "OK" in v.stdout, f"openssl verify: {v.stdout}{v.stderr}")
        text = subprocess.run(["openssl", "x509", "-in", chain, "-noout", "-text"],
                              capture_output=True, text=True).stdout
        check(text.count("URI:") == 1, "exactly one URI SAN:\n" + text)
        check("URI:spiffe://cluster.local/ns/default/sa/default" in text, text)
        check("ASN1 OID: prime256v1" in text, "P-256 key:\n" + text)
    shown = agent.cli("ca", "show").stdout
    check("Trust domain:  cluster.local" in shown and "SHA-256" in shown, shown)

    dump = agent.config_dump()
    cert = replicas(dump, "hello", "default")["hello-0"]["certificate"]
    check(cert is not None and cert["serial"] and cert["not_after"] - cert["not_before"] >= 86400,
          f"certificate in config_dump: {cert}")
    # The same identity is served from the cache: no second issuance.
    agent.cli("cert", "hello-1")
    _, metrics = agent.http("/metrics")
    check(metric_value(metrics, "podless_workloads") == 1, metrics)
    check(metric_value(metrics, "podless_certificates_issued_total") == 1, metrics)
    check('podless_api_requests_total{method="Apply",code="OK"} 3' in metrics, metrics)
    check(metric_value(metrics, "process_resident_memory_bytes") > 0, metrics)

    # Scale up and relabel in place: existing replicas keep their addresses.
    with tempfile.TemporaryDirectory() as tmp:
        text = open(HELLO).read().replace("replicas: 2", "replicas: 4")
        text = text.replace("    app: hello\nspec:\n  replicas", "    app: hello\n    tier: front\nspec:\n  replicas", 1)
        r = agent.cli("apply", "-f", write(os.path.join(tmp, "h.yaml"), text))
        check("workload/hello configured" in r.stdout, r.stdout)
        reps = replicas(agent.config_dump(), "hello", "default")
        check(len(reps) == 4, f"scaled to {len(reps)}")
        check([reps["hello-0"]["address"], reps["hello-1"]["address"]] == addresses,
              "scale up moved existing replicas")
        # Scale down to 1: hello-0 keeps its address.
        text = text.replace("replicas: 4", "replicas: 1")
        agent.cli("apply", "-f", write(os.path.join(tmp, "h.yaml"), text))
        reps = replicas(agent.config_dump(), "hello", "default")
        check(list(reps) == ["hello-0"] and reps["hello-0"]["address"] == addresses[0],
              f"scale down: {reps}")

    r = agent.cli("delete", "workload", "nope", expect_ok=False)
    check(r.returncode != 0 and "not found" in r.stderr, r.stderr)

    code = agent.stop()
    check(code == 0, f"SIGTERM exit code {code}:\n{agent.log()}")
    check(not os.path.exists(agent.socket), "API socket left behind after shutdown")

    # Restart on the same state: the same replicas, addresses and identities.
    again = Agent(state_dir=agent.state_dir)
    try:
        again.start()
        reps = replicas(again.config_dump(), "hello", "default")
        check(list(reps) == ["hello-0"] and reps["hello-0"]["address"] == addresses[0],
              f"after restart: {reps}")
        check(reps["hello-0"]["spiffe_id"] == "spiffe://cluster.local/ns/default/sa/default",
              "identity after restart")
        r = again.cli("delete", "-f", HELLO)
        check(r.stdout.count("deleted") == 3, r.stdout)
        check(again.config_dump()["workloads"] == [], "delete -f left workloads")
        check(again.stop() == 0, "second shutdown")
    finally:
        again.cleanup()

# The SVID cache is bounded (--svid-cache-size): the least recently used
# identity is dropped and re-issued on its next use, the rest are served.
TWO_IDENTITIES = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: a}
spec: {serviceAccount: a, app: {echo: {}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: b}
spec: {serviceAccount: b, app: {echo: {}}}
"""
with running_agent(extra_args=["--svid-cache-size", "1"]) as agent, \
        tempfile.TemporaryDirectory() as tmp:
    agent.cli("apply", "-f", write(os.path.join(tmp, "ab.yaml"), TWO_IDENTITIES))
    serial = lambda replica: agent.cli("cert", replica).stdout  # the PEM chain
    first_a = serial("a-0")
    serial("b-0")  # evicts a
    check(serial("b-0") == serial("b-0"), "the cached identity is served again")
    again_a = serial("a-0")
    check(again_a != first_a, "an evicted identity gets a fresh SVID")
    _, metrics = agent.http("/metrics")
    check(metric_value(metrics, "podless_certificates_issued_total") == 3, metrics)
    check(metric_value(metrics, "podless_certificates_evicted_total") == 2, metrics)
    check(metric_value(metrics, "podless_certificates_cached") == 1, metrics)

print("agent_lifecycle: ok")
