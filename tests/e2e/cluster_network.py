"""The cluster test bed itself, without cluster mode: node namespaces wired
through a bridge (addresses, the local route for each node's CIDR, routes to
the other nodes' CIDRs), etcd reachable from the nodes and surviving
stop/start with its data, plain `podless run` agents in two namespaces whose
workload addresses are reachable from the other node, everything gone after
teardown, and the skip path where namespaces cannot be created."""

import glob
import os
import shutil
import subprocess
import tempfile

from cluster_harness import (CURL, HBONE_PORT, PYTHON, SKIP_EXIT_CODE, Cluster, ClusterAgent,
                             check, echo_reply, hbone_interop, log, make_leaf,
                             make_self_signed_ca, parse_table, replicas_reached, spiffe_id,
                             step, tempdir, wait_endpoints, wait_http, wait_until, workload)
from manifests import service

HERE = os.path.dirname(os.path.abspath(__file__))

with Cluster(nodes=2, budget=150) as c:
    net = c.network
    n1, n2 = net.node(1), net.node(2)

    step("node namespaces: address, lo, local route for the node CIDR, routes to the others")
    for n, other in ((n1, n2), (n2, n1)):
        addrs = net.exec(n.index, "ip", "-4", "-o", "addr", "show").stdout
        check(f"inet {n.address}/24" in addrs, f"{n.netns}: no {n.address}/24 in\n{addrs}")
        lo = net.exec(n.index, "ip", "-o", "link", "show", "lo").stdout
        check("127.0.0.1/8" in addrs and ",UP," in lo, f"{n.netns}: lo not up:\n{lo}{addrs}")
        local = net.exec(n.index, "ip", "route", "show", "table", "local").stdout
        check(f"local {n.cidr} dev lo" in local, f"{n.netns}: no local route {n.cidr}:\n{local}")
        main = net.exec(n.index, "ip", "route", "show").stdout
        check(f"{other.cidr} via {other.address} dev eth0" in main,
              f"{n.netns}: no route to {other.cidr} via {other.address}:\n{main}")
        check(f"{n.cidr} via" not in main, f"{n.netns}: routes its own CIDR away:\n{main}")

    step("etcd reachable from a node namespace through the bridge")
    r = net.exec(1, CURL, "-sS", "--max-time", "5", "--noproxy", "*", c.etcd.url + "/health")
    check(r.returncode == 0 and '"health":"true"' in r.stdout.replace(" ", ""),
          f"etcd from {n1.netns}: rc {r.returncode} {r.stdout} {r.stderr}")
    r = c.etcd.etcdctl("put", "/e2e/probe", "kept")
    check(r.returncode == 0, f"etcdctl put: {r.stderr}")

    step("etcd stop: unreachable; start: same data, same URL")
    c.etcd.stop()
    check(not c.etcd.healthy(), "etcd still answers after stop()")
    r = net.exec(1, CURL, "-sS", "--max-time", "3", "--noproxy", "*", c.etcd.url + "/health")
    check(r.returncode != 0, f"etcd reachable from {n1.netns} while stopped: {r.stdout}")
    c.etcd.start()
    r = c.etcd.etcdctl("get", "/e2e/probe", "--print-value-only")
    check(r.stdout.strip() == "kept",
          f"etcd lost its data over stop/start: {r.stdout!r} {r.stderr}")
    check(c.etcd.keys("/e2e/") == ["/e2e/probe"], f"keys: {c.etcd.keys('/e2e/')}")

    step("plain agents (no cluster flags) in both namespaces, admin on the node addresses")
    certs = tempdir("certs")
    root, root_key = make_self_signed_ca(certs, "root")
    a1 = ClusterAgent(net, 1, cluster=False).start()
    a2 = ClusterAgent(net, 2, cluster=False,
                      extra_args=["--ca-cert", root, "--ca-key", root_key]).start()
    r = net.exec(1, CURL, "-sS", "--max-time", "5", "--noproxy", "*", "-o", "/dev/null",
                 "-w", "%{http_code}", f"{a2.admin_url}/ready")
    check(r.stdout == "200", f"n2's admin from n1's namespace: {r.stdout} {r.stderr}")

    step("a workload address on n2 (inside n2's CIDR), reached from n1 by the CIDR route")
    a2.apply(workload("web", "demo") + "---\n" + workload("client", "demo"))
    reps = wait_until("web-0 and client-0 have addresses on n2",
                      lambda: (lambda r: r if all(r.get(("demo", x), {}).get("address")
                                                  for x in ("web-0", "client-0")) else None)(
                          a2.replicas()), 10)
    web = reps[("demo", "web-0")]["address"]
    prefix = n2.cidr.rsplit(".", 2)[0] + "."
    check(web.startswith(prefix), f"web-0's address {web} is not in n2's CIDR {n2.cidr}")
    reply = echo_reply(a1.curl(f"http://{web}:8080/plain"), f"n1 -> {web}:8080 (plaintext)")
    check(reply.get("replica") == "web-0" and reply.get("peer_spiffe_id") is None,
          f"plaintext reply: {reply}")

    step("the outbound entry inside n2's namespace, with client-0's credentials")
    user, password = a2.credentials("client-0", "demo")
    reply = echo_reply(a2.curl_via_outbound(user, password, f"http://{web}:8080/out"),
                       "client-0 -> web-0 via n2's outbound entry")
    check(reply.get("peer_spiffe_id") == spiffe_id("demo", "client"), f"identity: {reply}")
    bad = a2.curl_via_outbound(user, "wrong", f"http://{web}:8080/out")
    check(bad.code == 407, f"wrong password: {bad}")

    step("the helpers the cluster tests use, against n2's agent alone")
    # web (applied above) has app=web too.
    a2.apply(workload("web-b", "demo", service_account="web", labels={"app": "web"}) +
             "---\n" + service("web", "demo", {"app": "web"}))
    wait_endpoints(a2, "demo", "web", 2)
    rows = {r["NAME"]: r for r in a2.workloads_wide()}
    check(rows["web"]["NODE"] == "n2" and rows["web"]["NAMESPACE"] == "demo" and
          rows["web"]["SPIFFE-ID"] == spiffe_id("demo", "web") and rows["web"]["READY"] == "1/1",
          f"get workloads -A -o wide parsed as {rows}")
    seen = replicas_reached(a2, (user, password), "http://web.demo.svc/r", 12,
                            peer=spiffe_id("demo", "client"))
    check(set(seen) == {"web-0", "web-b-0"}, f"service balancing on one node: {dict(seen)}")
    opened = a2.metric("istio_tcp_connections_opened_total", reporter="destination",
                       source_principal=spiffe_id("demo", "client"))
    check(opened and opened >= 12, f"metric_value: {opened}")
    check(a2.metric("no_such_metric") is None, "an absent metric must read as None")
    a2.apply("""apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-deny-client, namespace: demo}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/demo/sa/client"]}}]}]
""")
    names = [r["NAME"] for r in parse_table(a2.cli("get", "policies", "-n", "demo").stdout)]
    check(names == ["web-deny-client"], f"get policies parsed as {names}")
    wait_http(a2, (user, password), f"http://{web}:8080/denied", code=403, timeout=5)
    check(a2.metric("podless_authz_denied_total") >= 1, "denial not counted")
    a2.cli("delete", "authorizationpolicy", "web-deny-client", "-n", "demo")
    wait_http(a2, (user, password), f"http://{web}:8080/open", timeout=5)

    step("the independent HBONE client from n1's namespace to a workload address on n2")
    cert, key = make_leaf(certs, root, root_key, "tester", spiffe_id("ext", "tester"))
    request = "GET /i HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n"
    out = hbone_interop(a1, f"{web}:{HBONE_PORT}", root, cert, key, f"{web}:8080", request)
    check("error" not in out and out.get("peer") == spiffe_id("demo", "web") and
          out["streams"][0]["status"] == 200 and
          spiffe_id("ext", "tester") in out["streams"][0]["data"], f"interop: {out}")
    rogue, rogue_key = make_self_signed_ca(certs, "rogue")
    rcert, rkey = make_leaf(certs, rogue, rogue_key, "rogue-tester", spiffe_id("ext", "tester"))
    out = hbone_interop(a1, f"{web}:{HBONE_PORT}", root, rcert, rkey, f"{web}:8080", request)
    check("error" in out or out["streams"][0]["status"] != 200, f"rogue served: {out}")

    step("kill9 takes the agent down")
    a1.kill9()
    check(not a1.running(), "n1's agent survived kill9")
    check(a1.ready(timeout=1)[0] == 0, "n1's admin still answers after kill9")
    agents = [a1, a2]
    etcd_proc = c.etcd.proc

step("teardown left nothing behind")
check(net.leftovers() == [], f"left after teardown: {net.leftovers()}")
for a in agents:
    check(a.proc.poll() is not None, f"{a} still running after teardown")
check(etcd_proc.poll() is not None, "etcd still running after teardown")
left_dirs = glob.glob(os.path.join(tempfile.gettempdir(), f"{net.tag}-*"))
check(left_dirs == [], f"temp dirs left behind: {left_dirs}")

step("skip path: without CAP_NET_ADMIN/CAP_SYS_ADMIN the test skips with a reason")
probe = "import cluster_harness as h; h.require_namespaces(); print('NOT SKIPPED')"
env = {k: v for k, v in os.environ.items() if k != "PODLESS_E2E_REQUIRE_CLUSTER"}
env["PYTHONPATH"] = HERE
capsh = shutil.which("capsh")
setpriv = shutil.which("setpriv")
ran = False
if capsh:
    r = subprocess.run([capsh, "--drop=cap_net_admin,cap_sys_admin", "--", "-c",
                        f"exec {PYTHON} -c \"{probe}\""], env=env, capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == SKIP_EXIT_CODE and "SKIP: cannot create a network namespace" in r.stdout,
          f"capabilities dropped: rc {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr!r}")
    log(f"  {r.stdout.strip()}")
    ran = True
if setpriv:
    r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", PYTHON,
                        "-c", probe], env=env, capture_output=True, text=True, timeout=60,
                       cwd="/")
    check(r.returncode == SKIP_EXIT_CODE and "SKIP: network namespaces need root" in r.stdout,
          f"as nobody: rc {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr!r}")
    log(f"  {r.stdout.strip()}")
    ran = True
env["PODLESS_E2E_REQUIRE_CLUSTER"] = "1"
if setpriv:
    r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", PYTHON,
                        "-c", probe], env=env, capture_output=True, text=True, timeout=60,
                       cwd="/")
    check(r.returncode == 1 and "FAIL" in r.stderr,
          f"PODLESS_E2E_REQUIRE_CLUSTER=1 must turn the skip into a failure: rc {r.returncode}")
if not ran:
    log("  (neither capsh nor setpriv installed: skip path not exercised)")

print("cluster_network: ok")
