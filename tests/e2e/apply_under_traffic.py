"""Traffic keeps flowing while the control plane changes the state (issue 16,
point 1), through the real binary with two proxy workers:

- a client sends keep-alive requests to one workload's port the whole time
  while another workload is scaled between 20,000 and 3 replicas, a Service
  over it is created and deleted, and a third workload comes and goes; every
  request is answered 200 (the workers read the state while the main thread
  prepares and writes each change, and switch to the new one at its publish);
- a connection held open to a replica that a change scales away is ended by
  the agent (a task posted to every worker), and the replica's address stops
  answering; scaled up again, the same ordinal answers at its new address;
- the replica index and the store agree after all of it: every replica of
  /config_dump answers on its address.
"""

import os
import socket
import threading
import time

from harness import check, connection_ended, running_agent, write

PORT = 18095

WEB = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: traffic}
spec:
  ports: [{name: http, port: %d, protocol: HTTP}]
  app: {static: {status: 200, body: "ok"}}
""" % PORT

CHURN = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: churn, namespace: traffic, labels: {app: churn}}
spec:
  replicas: %d
  ports: [{name: echo, port: 18096}]
  app: {echo: {}}
"""

EXTRA = """apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {name: churn, namespace: traffic}
spec:
  selector: {app: churn}
  ports: [{port: 80, targetPort: echo}]
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: extra, namespace: other}
spec:
  replicas: 5
  app: {echo: {}}
"""


class Client(threading.Thread):
    """Keep-alive GETs to web until stopped; counts answers and failures."""

    def __init__(self, address):
        super().__init__(daemon=True)
        self.address = address
        self.stop = threading.Event()
        self.ok = 0
        self.failures = []

    def run(self):
        s = socket.create_connection((self.address, PORT), timeout=10)
        while not self.stop.is_set():
            try:
                s.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
                response = b""
                while not response.endswith(b"ok"):
                    chunk = s.recv(4096)
                    if not chunk:
                        raise OSError("connection closed by the agent")
                    response += chunk
                if response.startswith(b"HTTP/1.1 200"):
                    self.ok += 1
                else:
                    self.failures.append(response[:60])
            except OSError as e:
                self.failures.append(str(e))
                s.close()
                s = socket.create_connection((self.address, PORT), timeout=10)
        s.close()


def echo_round_trip(address, data=b"ping"):
    with socket.create_connection((address, 18096), timeout=5) as s:
        s.sendall(data)
        return s.recv(64)


def main():
    with running_agent(extra_args=["--workers", "2"]) as agent:
        path = lambda name: os.path.join(agent.state_dir, name)  # noqa: E731
        agent.cli("apply", "-f", write(path("web.yaml"), WEB))
        big = write(path("big.yaml"), CHURN % 20000)
        small = write(path("small.yaml"), CHURN % 3)
        extra = write(path("extra.yaml"), EXTRA)
        agent.cli("apply", "-f", small)
        client = Client(agent.replica_addresses("web")[0])
        client.start()

        # A connection to churn-2, which every scale-down to 3 keeps, and one
        # to churn-5, which the next one takes away.
        agent.cli("apply", "-f", big)
        addresses = agent.replica_addresses("churn")
        check(len(addresses) == 20000, f"churn has {len(addresses)} replicas, not 20000")
        kept = socket.create_connection((addresses[2], 18096), timeout=5)
        doomed = socket.create_connection((addresses[5], 18096), timeout=5)
        doomed.sendall(b"hello")
        check(doomed.recv(64) == b"hello", "churn-5 does not echo")
        agent.cli("apply", "-f", small)
        check(connection_ended(doomed, 5), "a connection to a replica scaled away stayed open")
        kept.sendall(b"still")
        check(kept.recv(64) == b"still", "a connection to a kept replica was ended")
        try:
            echo_round_trip(addresses[5])
            check(False, f"{addresses[5]} (scaled away) still answers")
        except OSError:
            pass

        for i in range(12):
            agent.cli("apply", "-f", big if i % 2 == 0 else small)
            if i % 3 == 0:
                agent.cli("apply", "-f", extra)
            elif i % 3 == 1:
                agent.cli("delete", "-f", extra)
        agent.cli("apply", "-f", big)
        time.sleep(0.3)
        client.stop.set()
        client.join(timeout=20)
        check(not client.failures, f"requests failed during the applies: {client.failures[:5]}")
        check(client.ok > 0, "no request was answered")

        # Every replica in the store answers on its address (sampled).
        addresses = agent.replica_addresses("churn")
        check(len(addresses) == 20000, f"churn has {len(addresses)} replicas at the end")
        for ordinal in (0, 2, 5, 3, 19999, 12345):
            check(echo_round_trip(addresses[ordinal]) == b"ping",
                  f"churn-{ordinal} at {addresses[ordinal]} does not answer")
        kept.close()
        print(f"PASS ({client.ok} requests answered during {14} applies)")


if __name__ == "__main__":
    main()
