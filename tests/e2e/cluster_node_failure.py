"""Cluster mode (issue 6): a node killed with SIGKILL leaves every other
node's view when its lease expires (TTL 3 s here): n1's `get nodes`, its
workloads and the Service's endpoints drop n3 within TTL + a few seconds,
and Service requests then only reach n2. A second agent started with the
name of a live node refuses to start ("node name") and does not disturb it.
n3 restarted on its state dir rejoins with its workload."""

import time

from cluster_harness import (Cluster, Pending, check, log, replicas_reached, spiffe_id, step,
                             wait_endpoints, wait_http, wait_replica, wait_until, workload)
from manifests import service

NS = "demo"
TTL = 3
SLACK = 7  # keep-alive timing, etcd's expiry sweep, the watch, the CLI

with Cluster(nodes=3, lease_ttl=f"{TTL}s") as c:
    c.init_ca(store_root_key=True)
    n1, n2, n3 = c.start_agents()
    c.wait_nodes_ready(n1, ["n1", "n2", "n3"])

    step("web-a on n2, web-b on n3, client and Service web on n1")
    n2.apply(workload("web-a", NS, service_account="web", labels={"app": "web"}))
    n3.apply(workload("web-b", NS, service_account="web", labels={"app": "web"}))
    n1.apply(workload("client", NS) + "---\n" + service("web", NS, {"app": "web"}))
    wait_endpoints(n1, NS, "web", 2)
    creds = n1.credentials("client-0", NS)
    url = f"http://web.{NS}.svc/"
    wait_http(n1, creds, url + "first")
    seen = replicas_reached(n1, creds, url + "before", 30)
    check(set(seen) == {"web-a-0", "web-b-0"}, f"before the kill, reached {dict(seen)}")

    step("kill -9 n3")
    killed_at = time.monotonic()
    n3.kill9()

    step(f"n1's view drops n3 and web-b within TTL {TTL} s + {SLACK} s")

    def n3_gone():
        nodes = {r["NAME"]: r for r in n1.get_nodes()}
        gone = "n3" not in nodes or nodes["n3"].get("STATUS") == "NotReady"
        names = [r.get("NAME") for r in n1.workloads_wide()]
        endpoints = [r.get("ENDPOINTS") for r in n1.services(NS) if r.get("NAME") == "web"]
        if gone and "web-b" not in names and endpoints == ["1"]:
            return True
        return Pending(f"nodes {list(nodes.values())}, workloads {names}, endpoints {endpoints}")

    wait_until("n3, web-b and its endpoint leave n1's view", n3_gone, TTL + SLACK)
    log(f"  gone {time.monotonic() - killed_at:.1f} s after the kill")
    wait_until("n2's view drops web-b too",
               lambda: "web-b" not in [r.get("NAME") for r in n2.workloads_wide()] or
               Pending(n2.workloads_wide()), 5)

    step("Service requests from n1 now reach only n2")
    seen = replicas_reached(n1, creds, url + "after", 20, peer=spiffe_id(NS, "client"))
    check(set(seen) == {"web-a-0"}, f"after n3 died, requests reached {dict(seen)}")

    step("a second agent named n2 (n2 is live) refuses to start")
    dup = c.agent(3, name="n2")  # n3's namespace and address, free now
    dup.start(wait=False)
    code = dup.wait_exit(timeout=20)
    check(code != 0, f"the duplicate n2 exited {code}, want non-zero:\n{dup.output()}")
    check("node name" in dup.output().lower(),
          f"the duplicate's error does not mention the node name:\n{dup.output()}")

    step("the live n2 is undisturbed")
    rows = {r["NAME"]: r for r in n1.get_nodes()}
    check(rows.get("n2", {}).get("ADDRESS") == n2.address and rows["n2"].get("STATUS") == "Ready",
          f"n2's record after the duplicate: {rows.get('n2')}")
    seen = replicas_reached(n1, creds, url + "dup", 5)
    check(set(seen) == {"web-a-0"}, f"after the duplicate, requests reached {dict(seen)}")
    check(n2.running(), "n2 died")

    step("n3 restarted on its state dir rejoins; web-b is back behind the Service")
    n3.start()
    c.wait_nodes_ready(n1, ["n1", "n2", "n3"])
    wait_replica(n1, NS, "web-b-0", node="n3")
    wait_endpoints(n1, NS, "web", 2)
    wait_until("requests reach web-b-0 again",
               lambda: "web-b-0" in replicas_reached(n1, creds, url + "back", 10), 15, interval=0.5)

print("cluster_node_failure: ok")
