"""Cluster mode (issue 6): three agents in their own network namespaces,
joined through etcd. A client workload on n1 calls an echo workload on n2
through n1's outbound entry: the call crosses nodes over HBONE, the
destination sees the client's SPIFFE ID and the source reports the server's;
n2's SVID chains to the one cluster root (an independent HBONE client
checks), a foreign CA is refused; `get nodes` and `get workloads -A -o wide`
show the cluster from any node."""

import json
import os

from cluster_harness import (HBONE_PORT, Cluster, Pending, check, echo_reply, hbone_interop,
                             make_leaf, make_self_signed_ca, parse_table, run, spiffe_id, step,
                             tempdir, wait_http, wait_replica, wait_until, workload)

NS = "demo"
KUBECTL = "/usr/bin/kubectl"
NAMES = ["n1", "n2", "n3"]

with Cluster(nodes=3) as c:
    ca = c.init_ca(store_root_key=True)
    n1, n2, n3 = c.start_agents()

    step("every agent reports the cluster connected in /ready")
    for a in (n1, n2, n3):
        wait_until(f"{a.name}: /ready cluster.connected true",
                   lambda a=a: a.cluster_connected() is True or Pending(a.ready()), 15)

    c.wait_nodes_ready(n1, NAMES)

    step("apply web on n2, client on n1")
    n2.apply(workload("web", NS))
    n1.apply(workload("client", NS))

    step("n3: get workloads -A -o wide shows web on n2 and client on n1")

    def placed():
        rows = {(r.get("NAMESPACE"), r.get("NAME")): r for r in n3.workloads_wide()}
        web, client = rows.get((NS, "web")), rows.get((NS, "client"))
        if not web or not client or web.get("NODE") != "n2" or client.get("NODE") != "n1":
            return Pending(list(rows.values()))
        return rows

    rows = wait_until("web (NODE n2) and client (NODE n1) in n3's view", placed, 15)
    check(len(rows) == 2, f"n3's view holds more than the two workloads: {list(rows)}")
    check(rows[(NS, "web")].get("READY") == "1/1", f"web's readiness on n3: {rows[(NS, 'web')]}")
    check(rows[(NS, "web")].get("SPIFFE-ID") == spiffe_id(NS, "web"), str(rows[(NS, "web")]))

    step("n3: the stock kubectl, against n3's Kubernetes API, sees the cluster's pods")
    if os.access(KUBECTL, os.X_OK):
        kubeconfig = os.path.join(tempdir("kubeconfig"), "n3")
        n3.cli("kubeconfig", "-o", kubeconfig)

        def kube_pods():
            # n3's API listens on its default 127.0.0.1:6443 inside n3's namespace.
            r = run(n3.node.exec_args(KUBECTL, "--kubeconfig", kubeconfig, "get", "pods", "-A",
                                      "-o", "wide"), what="n3: kubectl get pods -A -o wide")
            check(r.returncode == 0, f"kubectl on n3: {r.stderr}")
            rows = {(x.get("NAMESPACE"), x.get("NAME")): x for x in parse_table(r.stdout)}
            web, client = rows.get((NS, "web-0")), rows.get((NS, "client-0"))
            if not web or not client or web.get("NODE") != "n2" or client.get("NODE") != "n1":
                return Pending(r.stdout)
            return rows

        pods = wait_until("web-0 (NODE n2) and client-0 (NODE n1) in kubectl on n3", kube_pods, 15)
        check(len(pods) == 2, f"kubectl on n3 lists more than the two pods: {list(pods)}")
    else:
        print(f"kubectl step skipped: {KUBECTL} is not installed")

    step("n3: get of a workload hosted by another node names that node")
    got = json.loads(n3.cli("get", "workloads", "web", "-n", NS, "-o", "json").stdout)
    got = got.get("workload", got)
    replicas = got.get("status", {}).get("replicas", [])
    check(got.get("metadata", {}).get("name") == "web" and replicas and
          replicas[0].get("node") == "n2" and replicas[0].get("spiffeId") == spiffe_id(NS, "web"),
          f"get web on n3: {got}")
    r = n3.cli("get", "workloads", "nowhere", "-n", NS, expect_ok=False)
    check(r.returncode != 0 and "not found on any node" in r.stderr, r.stderr)

    step("n1: get nodes counts each node's workloads")
    wait_until("WORKLOADS n1=1 n2=1 n3=0 on n1",
               lambda: (lambda rows: rows if {r["NAME"]: r.get("WORKLOADS") for r in rows} ==
                        {"n1": "1", "n2": "1", "n3": "0"} else Pending(rows))(n1.get_nodes()), 10)

    step("web-0's address (from n1's view) is in n2's CIDR")
    web = wait_replica(n1, NS, "web-0", node="n2")["address"]
    prefix = n2.cidr.rsplit(".", 2)[0] + "."
    check(web.startswith(prefix), f"web-0 has {web}, outside n2's CIDR {n2.cidr}")

    step("client (n1) -> web (n2) through n1's outbound entry")
    creds = n1.credentials("client-0", NS)
    reply = echo_reply(wait_http(n1, creds, f"http://{web}:8080/cross"), "client-0 -> web-0")
    check(reply.get("peer_spiffe_id") == spiffe_id(NS, "client"),
          f"the destination saw {reply.get('peer_spiffe_id')}, want client's ID: {reply}")
    check(reply.get("spiffe_id") == spiffe_id(NS, "web") and reply.get("replica") == "web-0",
          f"answered by {reply}")
    for i in range(5):
        reply = echo_reply(n1.curl_via_outbound(*creds, f"http://{web}:8080/again{i}"),
                           f"repeat {i}")
        check(reply.get("peer_spiffe_id") == spiffe_id(NS, "client"), str(reply))

    step("both ends report the other's identity: n1 as source, n2 as destination")
    src = n1.metric("istio_tcp_connections_opened_total", reporter="source",
                    source_principal=spiffe_id(NS, "client"),
                    destination_principal=spiffe_id(NS, "web"))
    check(src and src >= 6, f"n1 source-reported client->web connections: {src}")
    dst = n2.metric("istio_tcp_connections_opened_total", reporter="destination",
                    source_principal=spiffe_id(NS, "client"),
                    destination_principal=spiffe_id(NS, "web"))
    check(dst and dst >= 6, f"n2 destination-reported client->web connections: {dst}")

    step("an independent HBONE client in n1 (cert from the cluster root) is served by n2")
    d = tempdir("certs")
    cert, key = make_leaf(d, f"{ca}/ca.crt", f"{ca}/ca.key", "tester",
                          spiffe_id("ext", "tester"))
    request = "GET /interop HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n"
    out = hbone_interop(n1, f"{web}:{HBONE_PORT}", f"{ca}/ca.crt", cert, key,
                        f"{web}:8080", request)
    check("error" not in out, f"HBONE to n2 with a root-signed cert: {out}")
    check(out.get("peer") == spiffe_id(NS, "web"), f"n2 presented {out.get('peer')}")
    stream = out["streams"][0]
    check(stream.get("status") == 200 and spiffe_id("ext", "tester") in stream.get("data", ""),
          f"stream: {stream}")

    step("a cert from a foreign CA is refused by n2")
    rogue_ca, rogue_key = make_self_signed_ca(d, "rogue")
    rcert, rkey = make_leaf(d, rogue_ca, rogue_key, "rogue-tester", spiffe_id("ext", "tester"))
    out = hbone_interop(n1, f"{web}:{HBONE_PORT}", f"{ca}/ca.crt", rcert, rkey,
                        f"{web}:8080", request)
    check("error" in out or not out.get("streams") or out["streams"][0].get("status") != 200,
          f"n2 served a foreign CA's cert: {out}")

    step("n1 still serves (no harm from the refused client)")
    echo_reply(n1.curl_via_outbound(*creds, f"http://{web}:8080/after"), "after the rogue client")

print("cluster_cross_node: ok")
