"""Cluster mode (issue 6): a Service applied on n1 is cluster-wide; its
endpoints span the `web` workloads running on n2 and n3, and 40 requests
from a client on n1 by the Service's name reach replicas on both nodes, each
seeing the client's identity. n2 and n3 start together claiming their
CIDRs from --cluster-cidr (never the same range)."""

import ipaddress

from cluster_harness import (Cluster, Pending, check, log, replicas_reached, spiffe_id, step,
                             wait_endpoints, wait_http, wait_replica, wait_until, workload)
from manifests import service

NS = "demo"

with Cluster(nodes=3) as c:
    c.init_ca(store_root_key=True)
    step("start n1 (--node-cidr), n2 and n3 (--cluster-cidr, claimed concurrently)")
    n1, n2, n3 = c.start([c.agent(1), c.agent(2, claim_cidr=True), c.agent(3, claim_cidr=True)])
    c.adopt_claimed_cidrs(n1)
    c.wait_nodes_ready(n1, ["n1", "n2", "n3"])

    step("web-a on n2 and web-b on n3 (both app=web), client on n1, Service web on n1")
    n2.apply(workload("web-a", NS, service_account="web", labels={"app": "web"}))
    n3.apply(workload("web-b", NS, service_account="web", labels={"app": "web"}))
    n1.apply(workload("client", NS))
    n1.apply(service("web", NS, {"app": "web"}))

    step("the Service is seen on every node; n1 counts endpoints on n2 and n3")
    for a in (n2, n3):
        wait_until(f"{a.name} lists service {NS}/web",
                   lambda a=a: any(r.get("NAME") == "web" for r in a.services(NS)) or
                   Pending(a.services(NS)), 15)
    wait_endpoints(n1, NS, "web", 2)
    for replica, a in (("web-a-0", n2), ("web-b-0", n3)):
        address = wait_replica(n1, NS, replica, node=a.name)["address"]
        check(ipaddress.ip_address(address) in ipaddress.ip_network(a.cidr),
              f"{replica} has {address}, outside {a.name}'s claimed {a.cidr}")

    step("40 requests from n1 to web.demo.svc reach both n2 and n3")
    creds = n1.credentials("client-0", NS)
    wait_http(n1, creds, f"http://web.{NS}.svc/first")
    seen = replicas_reached(n1, creds, f"http://web.{NS}.svc/r", 40, peer=spiffe_id(NS, "client"))
    log(f"  replicas reached: {dict(seen)}")
    check(set(seen) == {"web-a-0", "web-b-0"},
          f"40 requests reached {dict(seen)}, want both web-a-0 (n2) and web-b-0 (n3)")

    step("the Service's VIP on n1 balances across nodes too")
    vip = [r for r in n1.services(NS) if r.get("NAME") == "web"][0].get("VIP")
    check(vip and vip != "<none>", f"service web has no VIP on n1: {n1.services(NS)}")
    seen = replicas_reached(n1, creds, f"http://{vip}/vip", 20, peer=spiffe_id(NS, "client"))
    check(set(seen) == {"web-a-0", "web-b-0"}, f"20 requests to {vip} reached {dict(seen)}")

print("cluster_service_balancing: ok")
