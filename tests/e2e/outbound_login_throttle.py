"""Guessing outbound-entry passwords is seen and slowed down (issue 18,
point 12): curl --proxy with a wrong password in a loop from 127.0.0.1.
Every failure is counted in podless_outbound_auth_failures_total on the
admin /metrics; after 10 failures within a minute a source's logins are
refused unchecked for a backoff (429 with Retry-After, right password
included; SOCKS5 too), counted in
podless_limit_refused_total{limit="outbound_login_failures"} and logged;
another source (127.0.0.2) logs in as usual. The refusal is per worker
(LoginThrottle), so the loop goes on until several tries in a row are
refused, whichever worker takes them."""

import subprocess

from harness import check, metric_value, proxy_for, running_agent, write

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop}
spec:
  serviceAccount: web
  ports: [{name: http, port: 8080, protocol: HTTP}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: frontend, namespace: shop}
spec:
  serviceAccount: frontend
  app: {echo: {}}
"""

IN_A_ROW = 10
MAX_TRIES = 300


def curl(*args):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                        *args], capture_output=True, text=True, timeout=20)
    return r.stdout.strip(), r.returncode


with running_agent() as agent:
    agent.cli("apply", "-f", write(agent.state_dir + "/m.yaml", MANIFEST))
    web = agent.replica_addresses("web")[0]
    url = f"http://{web}:8080/hi"
    good = proxy_for(agent, "frontend-0", "shop")  # http://user:password@127.0.0.1:port
    user_pass, _, where = good[len("http://"):].rpartition("@")
    user = user_pass.split(":", 1)[0]
    wrong = f"http://{user}:not-the-password@{where}"

    check(curl("--proxy", good, url)[0] == "200", "the right credentials do not work")
    codes = []
    while len(codes) < MAX_TRIES and codes[-IN_A_ROW:] != ["429"] * IN_A_ROW:
        codes.append(curl("--proxy", wrong, url)[0])
    check(codes[-IN_A_ROW:] == ["429"] * IN_A_ROW,
          f"{len(codes)} wrong passwords were never refused {IN_A_ROW} times in a row: "
          f"{''.join(c[0] for c in codes)}")
    first = codes.index("429")
    check(first >= 10 and set(codes[:first]) == {"407"},
          f"refused after {first} failures (want 10 or more, each answered 407): {codes[:first]}")
    print(f"outbound_login_throttle: {len(codes)} tries, 429 from try {first + 1}", flush=True)

    # Refused unchecked: the right password too, over HTTP and SOCKS5.
    for _ in range(3):
        check(curl("--proxy", good, url)[0] == "429", "a blocked source logged in")
    r = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "--proxy", wrong, url],
                       capture_output=True, text=True, timeout=20)
    check("Retry-After: " in r.stdout, f"no Retry-After in a refusal:\n{r.stdout}")
    _, rc = curl("--socks5-hostname", where, "--proxy-user", user_pass, url)
    check(rc == 97, f"SOCKS5 from a blocked source: curl exit {rc}, want 97 (auth refused)")

    # Another source is not held back.
    check(curl("--interface", "127.0.0.2", "--proxy", good, url)[0] == "200",
          "a login from 127.0.0.2 was refused for 127.0.0.1's failures")

    status, text = agent.http("/metrics")
    check(status == 200, f"/metrics answered {status}")
    failures = metric_value(text, "podless_outbound_auth_failures_total", protocol="http")
    refused = metric_value(text, "podless_limit_refused_total",
                           limit="outbound_login_failures") or 0.0
    check(failures == first + codes[first:].count("407"),
          f"podless_outbound_auth_failures_total is {failures}, "
          f"want {first + codes[first:].count('407')} (the 407 answers)")
    check(refused >= IN_A_ROW + 5, f"podless_limit_refused_total{{outbound_login_failures}} is "
          f"{refused}, want at least {IN_A_ROW + 5}")
    check("failed proxy logins from 127.0.0.1" in agent.log(),
          f"the block is not logged:\n{agent.log()[-2000:]}")
    print(f"outbound_login_throttle: {failures:.0f} failures counted, {refused:.0f} refused")

print("outbound_login_throttle: ok")
