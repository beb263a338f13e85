"""Cluster mode (issue 6): etcd stops. Every node keeps serving its local
workloads and its last known view of the others, /ready still answers 200
with cluster.connected false and podless_cluster_connected is 0; cluster
objects (a Service) cannot be applied meanwhile and say why, while a
workload applied on n2 runs locally. etcd starts again: every node is
connected within ~15 s, n1 sees n2's new workload (reconciled), and nothing
is duplicated in any view."""

import collections
import time

from cluster_harness import (Cluster, Pending, check, echo_reply, log, spiffe_id, step,
                             wait_endpoints, wait_http, wait_replica, wait_until, workload)
from manifests import service

NS = "demo"
RECONNECT = 15  # seconds the issue allows for backoff + reconnect


def wide_names(agent):
    return [(r.get("NAMESPACE"), r.get("NAME"), r.get("NODE")) for r in agent.workloads_wide()]


with Cluster(nodes=3, lease_ttl="3s") as c:
    c.init_ca(store_root_key=True)
    agents = c.start_agents()
    n1, n2, n3 = agents
    c.wait_nodes_ready(n1, ["n1", "n2", "n3"])

    step("on each node i: web-ni and client-ni; Service web-n2 on n1")
    for i, a in enumerate(agents, 1):
        a.apply(workload(f"web-n{i}", NS) + "---\n" + workload(f"client-n{i}", NS))
    n1.apply(service("web-n2", NS, {"app": "web-n2"}))
    addr, creds = {}, {}
    for i, a in enumerate(agents, 1):
        addr[i] = wait_replica(n1, NS, f"web-n{i}-0", node=f"n{i}")["address"]
        creds[i] = a.credentials(f"client-n{i}-0", NS)
    wait_endpoints(n1, NS, "web-n2", 1)
    for i, a in enumerate(agents, 1):
        wait_http(a, creds[i], f"http://{addr[i]}:8080/local")
    wait_http(n1, creds[1], f"http://{addr[2]}:8080/cross")
    wait_http(n1, creds[1], f"http://web-n2.{NS}.svc/by-name")
    for a in agents:
        wait_until(f"{a.name} connected", lambda a=a: a.cluster_connected() is True or
                   Pending(a.ready()), 10)
    expected = {(NS, f"{kind}-n{i}", f"n{i}") for i in (1, 2, 3) for kind in ("web", "client")}

    step("etcd stops")
    c.etcd.stop()

    step("every node: /ready 200 with cluster.connected false, podless_cluster_connected 0")
    for a in agents:
        wait_until(f"{a.name}: /ready reports cluster.connected false",
                   lambda a=a: a.cluster_connected() is False or Pending(a.ready()), 20)
        status, body = a.ready()
        check(status == 200, f"{a.name}: /ready answered {status} during the outage: {body}")
        value = a.metric("podless_cluster_connected")
        check(value == 0, f"{a.name}: podless_cluster_connected is {value}, want 0")

    step("local traffic on every node still works")
    for i, a in enumerate(agents, 1):
        reply = echo_reply(a.curl_via_outbound(*creds[i], f"http://{addr[i]}:8080/outage"),
                           f"client-n{i} -> web-n{i} on n{i} during the outage")
        check(reply.get("peer_spiffe_id") == spiffe_id(NS, f"client-n{i}"), str(reply))

    step("the last known view still serves: n1 -> web-n2 by address and by Service name")
    echo_reply(n1.curl_via_outbound(*creds[1], f"http://{addr[2]}:8080/outage-cross"),
               "client-n1 -> web-n2 during the outage")
    echo_reply(n1.curl_via_outbound(*creds[1], f"http://web-n2.{NS}.svc/outage-svc"),
               "client-n1 -> web-n2.demo.svc during the outage")

    step("a Service apply during the outage fails with a clear error")
    r = n1.cli("apply", "-f", "-", input=service("late-svc", NS, {"app": "late"}),
               expect_ok=False, timeout=40)
    text = (r.stdout + r.stderr).lower()
    check(r.returncode != 0, f"Service apply succeeded without etcd: {r.stdout}")
    check("etcd" in text or "cluster" in text,
          f"the error does not say the cluster store is unavailable: {r.stdout}{r.stderr}")
    log(f"  apply said: {r.stderr.strip()}")
    check(all(row.get("NAME") != "late-svc" for row in n1.services(NS)),
          f"the failed apply left a Service behind: {n1.services(NS)}")

    step("a workload applied on n2 during the outage runs locally")
    n2.apply(workload("late", NS))
    late = wait_replica(n2, NS, "late-0")["address"]
    echo_reply(wait_http(n2, creds[2], f"http://{late}:8080/local"), "client-n2 -> late on n2")

    step("etcd starts again")
    started = time.monotonic()
    c.etcd.start()

    step(f"every node connected again within ~{RECONNECT} s; podless_cluster_connected 1")
    for a in agents:
        left = max(1.0, RECONNECT + 5 - (time.monotonic() - started))
        wait_until(f"{a.name}: /ready cluster.connected true after etcd returned",
                   lambda a=a: a.cluster_connected() is True or Pending(a.ready()), left)
        value = a.metric("podless_cluster_connected")
        check(value == 1, f"{a.name}: podless_cluster_connected is {value}, want 1")
    log(f"  all connected {time.monotonic() - started:.1f} s after etcd started")

    step("reconciled: n1 and n3 see late on n2")
    expected.add((NS, "late", "n2"))
    for a in (n1, n3):
        wait_until(f"{a.name} sees late on n2",
                   lambda a=a: (NS, "late", "n2") in wide_names(a) or Pending(wide_names(a)), 15)

    step("nothing duplicated: each workload and node once, in every view")
    for a in agents:
        names = wide_names(a)
        dups = [k for k, n in collections.Counter((ns, n) for ns, n, _ in names).items() if n > 1]
        check(not dups, f"{a.name}: duplicated workloads {dups} in {names}")
        check(set(names) == expected, f"{a.name}: workloads {sorted(names)}, "
              f"want {sorted(expected)}")
        nodes = [r.get("NAME") for r in a.get_nodes()]
        check(sorted(nodes) == ["n1", "n2", "n3"], f"{a.name}: get nodes lists {nodes}")
    c.wait_nodes_ready(n3, ["n1", "n2", "n3"])

    step("cluster objects work again: the Service apply succeeds and reaches n3")
    n1.apply(service("late-svc", NS, {"app": "late"}))
    wait_endpoints(n3, NS, "late-svc", 1)
    echo_reply(wait_http(n3, creds[3], f"http://late-svc.{NS}.svc/"), "client-n3 -> late-svc")

    step("every lease revoked behind the nodes' backs: each node re-registers with a new one")
    leases = c.etcd.etcdctl("lease", "list")
    check(leases.returncode == 0, f"etcdctl lease list: {leases.stderr}")
    ids = [line.split()[0] for line in leases.stdout.splitlines()[1:] if line.strip()]
    check(len(ids) >= 3, f"want a lease per node, etcd lists {leases.stdout!r}")
    for lease in ids:
        r = c.etcd.etcdctl("lease", "revoke", lease)
        check(r.returncode == 0, f"etcdctl lease revoke {lease}: {r.stderr}")
    def fresh_leases():
        now = c.etcd.etcdctl("lease", "list")
        fresh = [l.split()[0] for l in now.stdout.splitlines()[1:] if l.strip()]
        return len([l for l in fresh if l not in ids]) >= 3 or Pending(now.stdout)
    wait_until("three new leases granted", fresh_leases, 20)
    for a in agents:
        wait_until(f"{a.name}: every node and workload back after the revocation",
                   lambda a=a: set(wide_names(a)) == expected or Pending(wide_names(a)), 20)
    c.wait_nodes_ready(n1, ["n1", "n2", "n3"])

print("cluster_etcd_outage: ok")
