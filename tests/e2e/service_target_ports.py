"""A Service whose named targetPort is a port none of its selected workloads
declares (issue 17, point 5): the apply succeeds with a warning that names
the port (the workloads that declare it may come later), the workloads that
lack it are not counted as its endpoints, and once a workload declares the
port it is an endpoint and calls through the Service work."""

import os

from harness import check, http_get, proxy_for, running_agent, write

BROKEN = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: tp, labels: {app: web}}
spec:
  ports: [{name: http, port: 18098, protocol: HTTP}]
  app: {static: {status: 200, body: "served"}}
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {name: web, namespace: tp}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: web-http}]
"""

FIXED = BROKEN.replace("{name: http, port: 18098", "{name: web-http, port: 18098")

CALLER = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: caller, namespace: tp}
spec:
  app: {echo: {}}
"""


def endpoints(agent):
    rows = agent.cli("get", "services", "-n", "tp", "--no-headers").stdout.split()
    return int(rows[3])  # NAME VIP PORTS ENDPOINTS


def main():
    with running_agent() as agent:
        path = lambda name: os.path.join(agent.state_dir, name)  # noqa: E731
        agent.cli("apply", "-f", write(path("caller.yaml"), CALLER))
        r = agent.cli("apply", "-f", write(path("broken.yaml"), BROKEN))
        check('targetPort "web-http" names no port' in r.stderr and "port 80" in r.stderr,
              f"no warning about the unserved targetPort:\n{r.stdout}{r.stderr}")
        check(endpoints(agent) == 0, "a workload without the targetPort counts as an endpoint")

        r = agent.cli("apply", "-f", write(path("fixed.yaml"), FIXED))
        check("names no port" not in r.stderr, f"a warning after the fix: {r.stderr}")
        check(endpoints(agent) == 1, "the workload that declares the port is not an endpoint")
        status, body = http_get("http://web.tp.svc:80/", proxy=proxy_for(agent, "caller-0", "tp"))
        check(status == 200 and "served" in body, f"a call through the Service: {status} {body}")
    print("PASS")


if __name__ == "__main__":
    main()
