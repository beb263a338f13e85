"""Workload ports do not take the port from the whole machine (issue 17,
point 1), through the real binary:

1. Per-address sockets: a workload port is served on each replica's own
   address, so another program can bind 127.0.0.1:<port> (before the
   apply and after it) while the workload serves <port>; a replica scaled
   away gives its socket back.
2. A port held at apply time (another program on 0.0.0.0:<port>) is
   logged once, shown in podless_plaintext_ports_unbound, in `describe
   workload` and in the replica's status (`get -o yaml`), retried on a
   timer (podless_plaintext_bind_retries_total), and served within seconds
   of being freed, with no other change.
3. Past --max-plaintext-address-sockets (3 here) a port is served on
   0.0.0.0 with one socket for all its replicas (every replica answers,
   and the port is then taken host-wide); when its workload goes, so does
   the socket. A port whose workload scales past the threshold moves to
   0.0.0.0 without a failed bind."""

import os
import socket
import time

from harness import check, poll, running_agent, write
from manifests import workload


def listen(address, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((address, port))
    s.listen(8)
    return s


def answers(address, port):
    """True when a replica's echo app answers on address:port."""
    try:
        with socket.create_connection((address, port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(4096).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def plaintext_listeners(agent):
    return sorted(l["address"] for l in agent.config_dump()["proxy"]["listeners"]
                  if l["name"] == "plaintext")


def apply(agent, name, text):
    agent.cli("apply", "-f", write(os.path.join(agent.state_dir, name + ".yaml"), text))


def main():
    with running_agent(extra_args=["--max-plaintext-address-sockets", "3"]) as agent:
        # 1. Another program's socket on 127.0.0.1:18100, before and after.
        before = listen("127.0.0.1", 18100)
        apply(agent, "web", workload("web", "ports", 2, port=18100))
        web = agent.replica_addresses("web")
        check(plaintext_listeners(agent) == sorted(f"{a}:18100" for a in web),
              f"not one socket per replica: {plaintext_listeners(agent)}")
        for address in web:
            check(answers(address, 18100), f"{address}:18100 does not answer")
        before.close()
        after = listen("127.0.0.1", 18100)  # still free for others
        after.close()
        apply(agent, "web", workload("web", "ports", 1, port=18100))
        check(poll(lambda: plaintext_listeners(agent) == [f"{web[0]}:18100"], 5),
              f"a scaled-away replica kept its socket: {plaintext_listeners(agent)}")

        # 2. A port another program holds on every address at apply time.
        holder = listen("0.0.0.0", 18101)
        apply(agent, "late", workload("late", "ports", 1, port=18101))
        late = agent.replica_addresses("late")[0]
        check(poll(lambda: agent.metric("podless_plaintext_ports_unbound") == 1, 5),
              "the unbound socket is not shown in podless_plaintext_ports_unbound")
        check(poll(lambda: agent.metric("podless_plaintext_bind_retries_total") >= 2, 10),
              "the held port is not retried on a timer")
        described = agent.cli("describe", "workload", "late", "-n", "ports").stdout
        check("NOT SERVED" in described and "18101" in described.split("NOT SERVED")[1],
              f"describe does not show the held port:\n{described}")
        status = agent.cli("get", "workload", "late", "-n", "ports", "-o", "yaml").stdout
        check("unservedPorts: [18101]" in status, f"get -o yaml does not show it:\n{status}")
        holder.close()
        freed = time.time()
        check(poll(lambda: answers(late, 18101), 10),
              "the freed port was not served within 10 s")
        took = time.time() - freed
        print(f"served {took:.1f} s after the port was freed")
        check(agent.metric("podless_plaintext_ports_unbound") == 0, "still counted as unbound")
        described = agent.cli("describe", "workload", "late", "-n", "ports").stdout
        check("NOT SERVED" not in described, f"describe still shows the port held:\n{described}")
        log = agent.log()
        check(log.count("18101") == 1 and "address already in use" in log,
              f"the held port was not logged exactly once:\n{log}")
        check("every port is served now" in log, f"recovery not logged:\n{log}")

        # 3. Past the threshold: one socket on 0.0.0.0 for the port.
        apply(agent, "big", workload("big", "ports", 4, port=18102))
        check("0.0.0.0:18102" in plaintext_listeners(agent),
              f"a port past the threshold is not on 0.0.0.0: {plaintext_listeners(agent)}")
        for address in agent.replica_addresses("big"):
            check(answers(address, 18102), f"{address}:18102 does not answer")
        try:
            listen("127.0.0.1", 18102).close()
            check(False, "0.0.0.0:18102 did not take the port host-wide (the trade-off)")
        except OSError:
            pass  # EADDRINUSE: the port is the agent's on every address
        agent.cli("delete", "workload", "big", "-n", "ports")
        check(poll(lambda: not any(l.endswith(":18102") for l in plaintext_listeners(agent)),
                       5), f"a deleted workload's port is still served: {plaintext_listeners(agent)}")
        listen("127.0.0.1", 18102).close()
        # A port moves to 0.0.0.0 when its workload scales past the
        # threshold: every worker's per-address sockets close first, so the
        # move never collides with them.
        apply(agent, "web", workload("web", "ports", 4, port=18100))
        check(poll(lambda: "0.0.0.0:18100" in plaintext_listeners(agent), 5),
              f"a port scaled past the threshold is not on 0.0.0.0: {plaintext_listeners(agent)}")
        for address in agent.replica_addresses("web"):
            check(answers(address, 18100), f"{address}:18100 does not answer after the move")
        check("18100" not in agent.log(), f"the move to 0.0.0.0 failed once:\n{agent.log()}")
        # The other ports are untouched.
        check(answers(web[0], 18100) and answers(late, 18101), "another port stopped answering")
    print("PASS")


if __name__ == "__main__":
    main()
