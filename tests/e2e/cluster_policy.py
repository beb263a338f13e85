"""Cluster mode (issue 6): AuthorizationPolicies are cluster-wide and
enforced at the destination. A DENY applied on n1 refuses n1's client at web
on n2 (n2 counts the denial) while another caller still passes; deleting it
on n3 restores access. Then an ALLOW-only-`other` applied on n3 as Istio's
own kind does the same the other way round, removed from n2; n1 shows it in
the kind it was applied as. A WorkloadEntry and a Namespace applied on n1
are listed on n3 (issue 14: cluster-wide kinds). The agents here get the root
through --ca-cert/--ca-key (ca init without --store-root-key)."""

from cluster_harness import (Cluster, Pending, check, echo_reply, parse_table, spiffe_id, step,
                             wait_http, wait_replica, wait_until, workload)

NS = "demo"

DENY_CLIENT = f"""apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: web-deny-client, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  action: DENY
  rules:
    - from: [{{source: {{principals: ["cluster.local/ns/{NS}/sa/client"]}}}}]
"""

# Istio's own kind (issue 14): kept as applied, shared through etcd like the
# podless one.
ALLOW_OTHER = f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: web-allow-other, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  action: ALLOW
  rules:
    - from: [{{source: {{principals: ["cluster.local/ns/{NS}/sa/other"]}}}}]
"""


def policies(agent):
    return [r.get("NAME") for r in parse_table(agent.cli("get", "policies", "-n", NS).stdout)]


def wait_policy(agent, name, present, timeout=15):
    want = "lists" if present else "no longer lists"
    wait_until(f"{agent.name} {want} policy {name}",
               lambda: (name in policies(agent)) == present or Pending(policies(agent)), timeout)


def denied_total(agent):
    return agent.metric("podless_authz_denied_total") or 0.0


with Cluster(nodes=3) as c:
    c.init_ca(store_root_key=False)
    n1, n2, n3 = c.start_agents()
    c.wait_nodes_ready(n1, ["n1", "n2", "n3"])

    step("web on n2; client and other on n1")
    n2.apply(workload("web", NS))
    n1.apply(workload("client", NS) + "---\n" + workload("other", NS))
    web = wait_replica(n1, NS, "web-0", node="n2")["address"]
    url = f"http://{web}:8080/"
    client = n1.credentials("client-0", NS)
    other = n1.credentials("other-0", NS)

    step("baseline: client and other reach web across nodes")
    reply = echo_reply(wait_http(n1, client, url + "before"), "client before the policy")
    check(reply.get("peer_spiffe_id") == spiffe_id(NS, "client"), str(reply))
    echo_reply(wait_http(n1, other, url + "before"), "other before the policy")

    step("DENY client, applied on n1, reaches n2's view")
    n1.apply(DENY_CLIENT)
    wait_policy(n2, "web-deny-client", True)
    denied_before = denied_total(n2)

    step("client is refused at web on n2; other still passes")
    wait_http(n1, client, url + "denied", code=403)
    echo_reply(n1.curl_via_outbound(*other, url + "other-ok"), "other while client is denied")
    denied_after = denied_total(n2)
    check(denied_after > denied_before,
          f"n2 counted no denial (podless_authz_denied_total {denied_before} -> {denied_after}): "
          "the policy must be enforced at the destination")

    step("the policy deleted on n3 is gone everywhere; client passes again")
    n3.cli("delete", "authorizationpolicy", "web-deny-client", "-n", NS)
    for a in (n1, n2):
        wait_policy(a, "web-deny-client", False)
    reply = echo_reply(wait_http(n1, client, url + "restored"), "client after the delete")
    check(reply.get("peer_spiffe_id") == spiffe_id(NS, "client"), str(reply))

    step("ALLOW only other, applied on n3: client refused at n2, other served")
    n3.apply(ALLOW_OTHER)
    wait_policy(n2, "web-allow-other", True)
    wait_http(n1, client, url + "not-allowed", code=403)
    reply = echo_reply(n1.curl_via_outbound(*other, url + "allowed"), "other under ALLOW")
    check(reply.get("peer_spiffe_id") == spiffe_id(NS, "other"), str(reply))

    shown = n1.cli("get", "policy", "web-allow-other", "-n", NS, "-o", "yaml").stdout
    check(shown.startswith("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"),
          f"n1 does not show the policy as applied on n3:\n{shown}")

    step("the ALLOW deleted on n2: client passes again")
    n2.cli("delete", "authorizationpolicy", "web-allow-other", "-n", NS)
    echo_reply(wait_http(n1, client, url + "open-again"), "client after the ALLOW is gone")

    step("a WorkloadEntry and a Namespace applied on n1 are listed on n3")
    n1.apply(f"""apiVersion: v1
kind: Namespace
metadata: {{name: {NS}, labels: {{team: a}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: vm-1, namespace: {NS}}}
spec: {{address: 10.9.0.1, labels: {{app: vm}}, serviceAccount: vm, ports: {{http: 8080}}}}
""")
    wait_until("n3 lists the WorkloadEntry vm-1",
               lambda: "vm-1" in n3.cli("get", "we", "-n", NS).stdout, 15)
    wait_until("n3 lists the Namespace",
               lambda: NS in n3.cli("get", "ns", "--no-headers").stdout, 15)

print("cluster_policy: ok")
