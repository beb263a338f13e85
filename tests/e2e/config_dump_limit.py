"""/config_dump cannot be used to keep the agent's state from the proxy
(issue 18, point 6): a dump of many replicas takes the main loop for a
while, so right after one the next is refused with 503 and Retry-After for
four times as long as it took; then it is served again. A request under a
DNS name (rebinding) is refused with 421."""

import os
import time
import urllib.request

from harness import check, running_agent, write

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: many, namespace: d}
spec:
  replicas: 200000
  app: {echo: {}}
"""


def get(agent, path, host=None):
    request = urllib.request.Request(f"http://127.0.0.1:{agent.admin_port}{path}")
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def main():
    with running_agent() as agent:
        agent.cli("apply", "-f", write(os.path.join(agent.state_dir, "m.yaml"), MANIFEST),
                  timeout=120)
        started = time.time()
        status, _, body = get(agent, "/config_dump")
        took = time.time() - started
        check(status == 200 and b'"many-199999"' in body, f"first dump: {status}")
        status, headers, body = get(agent, "/config_dump")
        check(status == 503 and "Retry-After" in headers and b"retry in" in body,
              f"a second dump right after one ({took:.2f} s) was not refused: {status}")
        time.sleep(5 * took + 0.2)
        status, _, _ = get(agent, "/config_dump")
        check(status == 200, f"the dump was not served again after the wait: {status}")
        status, _, _ = get(agent, "/healthz", host="attacker.example:15000")
        check(status == 421, f"a request under a DNS name got {status}")
        print(f"config_dump_limit: a dump of 200,000 replicas took {took:.2f} s; the next one "
              "was refused until 4x that had passed")
    print("PASS")


if __name__ == "__main__":
    main()
