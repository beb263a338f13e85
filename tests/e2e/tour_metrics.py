"""The README's tour and what the admin port tells (issue 17, points 2, 8,
9): `podless credentials` prints both spellings of the proxy variables and
curl, reading only the lower-case http_proxy, calls as the caller (whose
identity differs from the callee's) and gets an HTTP answer to a denial, not
a SOCKS error; metrics labelled truthfully (a local short-circuit is
connection_security_policy="none"), counters exported at 0 from the start,
podless_supervisor_restarts_total a counter; admin `/` lists the endpoints,
/config_dump?pretty is indented, proxy.pools entries name their worker."""

import json
import os
import subprocess

from harness import SOURCE_ROOT, check, metric_samples, running_agent

EXAMPLES = os.path.join(SOURCE_ROOT, "examples")

DENY = """apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-client}
spec:
  selector: {matchLabels: {app: hello}}
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/client"]}}]}]
"""


def curl_as(creds, url):
    """curl with the credentials' environment, as the tour's `eval` sets it,
    but only the lower-case http_proxy (what curl reads for http URLs)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["http_proxy"] = creds["http_proxy"]
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", url],
                       capture_output=True, text=True, timeout=20, env=env)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body, r.stderr


def main():
    with running_agent(extra_args=["--workers", "2"]) as agent:
        # Before anything is applied: every listener's accept errors and the
        # restart counter, at 0.
        metrics = agent.http("/metrics")[1]
        accept = metric_samples(metrics, "podless_accept_errors_total")
        for listener in ("hbone", "outbound", "plaintext", "admin", "api", "workload_api"):
            check(any(f'listener="{listener}"' in k for k in accept),
                  f"no podless_accept_errors_total for {listener}: {sorted(accept)}")
        check("# TYPE podless_supervisor_restarts_total counter" in metrics and
              metric_samples(metrics, "podless_supervisor_restarts_total") == {"": 0.0},
              "podless_supervisor_restarts_total")
        check("podless_supervisor_restarts " not in metrics, "the old gauge is still exported")

        agent.cli("apply", "-f", os.path.join(EXAMPLES, "hello.yaml"),
                  "-f", os.path.join(EXAMPLES, "client.yaml"))
        denied = metric_samples(agent.http("/metrics")[1], "podless_authz_denied_total")
        check(denied.get('{destination_workload="hello",destination_namespace="default"}') == 0.0,
              f"podless_authz_denied_total has no 0 sample for hello: {denied}")

        # credentials: both spellings, same values.
        out = agent.cli("credentials", "client-0").stdout
        creds = dict(line.split("=", 1) for line in out.splitlines())
        for upper in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            check(creds.get(upper) and creds.get(upper.lower()) == creds[upper],
                  f"{upper} and {upper.lower()} in: {out}")

        # The tour: the caller's identity is not the callee's.
        status, body, err = curl_as(creds, "http://hello.default.svc/")
        check(status == 200, f"curl via http_proxy: {status} {body} {err}")
        answer = json.loads(body)
        check(answer["peer_spiffe_id"] == "spiffe://cluster.local/ns/default/sa/client" and
              answer["spiffe_id"] == "spiffe://cluster.local/ns/default/sa/default",
              f"caller and callee: {answer}")
        # A denial is an HTTP answer from the proxy, not "curl: (97) SOCKS".
        agent.cli("apply", "-f", "-", input=DENY)
        status, body, err = curl_as(creds, "http://hello.default.svc/")
        check(status == 403 and "(97)" not in err, f"denied: {status} {body} {err}")
        agent.cli("delete", "policy", "no-client")

        # Honest labels: the local short-circuit ran no TLS.
        metrics = agent.http("/metrics")[1]
        opened = metric_samples(metrics, "istio_tcp_connections_opened_total")
        client_rows = {k: v for k, v in opened.items() if 'source_workload="client"' in k}
        check(client_rows and all('connection_security_policy="none"' in k for k in client_rows),
              f"short-circuited connections: {client_rows}")
        check(not any("mutual_tls" in k for k in client_rows), str(client_rows))
        denied = metric_samples(metrics, "podless_authz_denied_total")
        check(sum(denied.values()) >= 1, "denial counted")

        # Admin: / lists the endpoints; ?pretty indents; pools name their worker.
        status, index = agent.http("/")
        check(status == 200 and all(p in index for p in ("/healthz", "/ready", "/metrics",
                                                          "/config_dump?pretty")),
              f"admin /: {status} {index}")
        status, pretty = agent.http("/config_dump?pretty")
        check(status in (200, 503), f"pretty: {status}")
        while status == 503:
            status, pretty = agent.http("/config_dump?pretty")
        check(pretty.startswith("{\n  \"") and json.loads(pretty)["workloads"], pretty[:200])
        plain = agent.config_dump()
        check(json.loads(pretty).keys() == plain.keys(), "pretty dump is another document")

    # Pools hold HBONE connections, which a local call skips: without the
    # short-circuit, a call makes one, and its entry names its worker.
    with running_agent(extra_args=["--workers", "2", "--no-local-short-circuit"]) as agent:
        agent.cli("apply", "-f", os.path.join(EXAMPLES, "hello.yaml"),
                  "-f", os.path.join(EXAMPLES, "client.yaml"))
        creds = dict(line.split("=", 1)
                     for line in agent.cli("credentials", "client-0").stdout.splitlines())
        status, body, err = curl_as(creds, "http://hello.default.svc/")
        check(status == 200, f"HBONE call: {status} {body} {err}")
        pools = agent.config_dump()["proxy"]["pools"]
        check(pools and all(pool.get("worker") in (0, 1) for pool in pools),
              f"pools without a worker field: {pools}")
        metrics = agent.http("/metrics")[1]
        opened = metric_samples(metrics, "istio_tcp_connections_opened_total")
        check(any('source_workload="client"' in k and "mutual_tls" in k for k in opened),
              f"an HBONE connection is mutual_tls: {opened}")
    print("ok")


if __name__ == "__main__":
    main()
