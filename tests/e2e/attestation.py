"""Attestation and identity changes, attacked (issue 18, points 2, 3, 5).

1. PID reuse: a process connects to the Workload API, hands the connection to
   a helper and exits; a victim replica's process then gets its pid (forced
   with /proc/sys/kernel/ns_last_pid, root only). A request on the handed-on
   connection must be refused: the connection belongs to the process that
   opened it, not to its number.
2. A Workload API stream of an escapee (its parent in the replica exited, so
   it left the replica's process tree) ends with PERMISSION_DENIED instead of
   receiving keys.
3. After a workload's serviceAccount changes, its old outbound credentials
   stop working (407) and the new ones speak as the new identity.
4. A workload's process cannot use the agent's API, even with access to the
   socket (here: a root workload, `runAsUser: 0`)."""

import os
import socket
import sys
import tempfile

from exec_util import exec_agent, processes_with_env
from harness import (PODLESS, addresses, check, curl_via_proxy, grpc_stubs, proxy_for, wait_for,
                     write)

stubs = grpc_stubs("api/spiffe/workload.proto", include="api/spiffe")

import h2.connection  # noqa: E402
import h2.config  # noqa: E402
import h2.events  # noqa: E402

ESCAPEE = """
import os, sys, time
sys.path.insert(0, {stubs!r})
import grpc, workload_pb2 as pb, workload_pb2_grpc as rpc
out = {out!r}
def put(text):
    with open(out + ".tmp", "w") as f:
        f.write(text)
    os.rename(out + ".tmp", out)
stub = rpc.SpiffeWorkloadAPIStub(grpc.insecure_channel(os.environ["SPIFFE_ENDPOINT_SOCKET"]))
n = 0
try:
    for response in stub.FetchX509SVID(pb.X509SVIDRequest(),
                                       metadata=[("workload.spiffe.io", "true")], timeout=30):
        n += 1
        put(f"received {{n}}")
    put(f"ended OK after {{n}}")
except grpc.RpcError as e:
    put(f"ended {{e.code().name}} after {{n}}: {{e.details()}}")
"""

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: victim, namespace: att}}
spec:
  serviceAccount: victim
  app:
    exec:
      command: [sleep, "3600"]
      env: [{{name: ROUND, value: "{round}"}}]
      terminationGracePeriodSeconds: 1
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: runaway, namespace: att}}
spec:
  app:
    exec:
      # The client opens its stream as a child of a subshell, which exits
      # 2 s later: the client is then no longer in the replica's process tree.
      command: [sh, -c, "(/usr/bin/python3 {escapee} & sleep 2) & sleep 3600"]
      terminationGracePeriodSeconds: 1
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: caller, namespace: att}}
spec:
  serviceAccount: {sa}
  ports: [{{name: http, port: 8080, protocol: HTTP}}]
  app: {{echo: {{}}}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: rooted, namespace: att}}
spec:
  app:
    exec:
      command: [sh, -c, "{podless} --socket {socket} get workloads -A > {rooted_out} 2>&1; sleep 3600"]
      securityContext: {{runAsUser: 0}}
      terminationGracePeriodSeconds: 1
"""


def grpc_call_on(fd_socket, path):
    """One gRPC unary-ish request on an already connected socket (raw HTTP/2):
    returns (grpc-status, grpc-message)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", path),
                               (":authority", "localhost"), ("content-type", "application/grpc"),
                               ("te", "trailers"), ("workload.spiffe.io", "true")])
    conn.send_data(stream, b"\x00\x00\x00\x00\x00", end_stream=True)
    fd_socket.sendall(conn.data_to_send())
    fd_socket.settimeout(10)
    status, message = None, ""
    while status is None:
        data = fd_socket.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            headers = getattr(event, "headers", None)
            if headers:
                for name, value in headers:
                    name = name.decode() if isinstance(name, bytes) else name
                    value = value.decode() if isinstance(value, bytes) else value
                    if name == "grpc-status":
                        status = int(value)
                    elif name == "grpc-message":
                        message = value
        fd_socket.sendall(conn.data_to_send())
    return status, message


def pid_reuse(agent, d, workload_api):
    """Point 1. Returns True when the reuse was arranged and refused."""
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the attacker: connect, hand the connection on, exit
        s = socket.socket(socket.AF_UNIX)
        s.connect(workload_api)
        socket.send_fds(child, [b"x"], [s.fileno()])
        os._exit(0)
    os.waitpid(pid, 0)
    _, fds, _, _ = socket.recv_fds(parent, 1, 1)
    handed = socket.socket(fileno=fds[0])
    # The victim's next process gets the attacker's pid. Whatever forks in
    # between (the CLI first) takes a pid or two: a few offsets, a few tries.
    for round_, offset in enumerate([2, 1, 3, 2, 1, 3, 2, 4], start=1):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - offset))
        agent.cli("apply", "-f", write(os.path.join(d, "m.yaml"), MANIFEST.format(
            round=round_, escapee=os.path.join(d, "escapee.py"), sa="two",
            podless=os.path.abspath(PODLESS),
            socket=agent.socket, rooted_out=os.path.join(d, "rooted.out"))))
        victims = wait_for("the victim's new process", lambda: processes_with_env(
            f"ROUND={round_}"), agent=agent)
        if pid in victims:
            break
        print(f"round {round_}: wanted pid {pid}, the victim got {victims}")
    else:
        print(f"note: pid {pid} was not reused by the victim in 8 tries; checking the exited "
              "connection alone")
    status, message = grpc_call_on(handed, "/SpiffeWorkloadAPI/FetchX509SVID")
    check(status == 7, f"a handed-on connection of an exited process got grpc-status {status}: "
                       f"{message}")
    check("has exited" in message, f"unexpected refusal: {message}")
    return True


def main():
    if os.geteuid() != 0:
        print("SKIP: needs root (ns_last_pid, a root workload)")
        sys.exit(77)
    d = tempfile.mkdtemp(prefix="podless-attest-")
    os.chmod(d, 0o777)
    escapee_out = os.path.join(d, "escapee.out")
    write(os.path.join(d, "escapee.py"), ESCAPEE.format(stubs=stubs, out=escapee_out))
    rooted_out = os.path.join(d, "rooted.out")
    with exec_agent() as agent:
        workload_api = os.path.join(agent.state_dir, "workload-api.sock")
        manifest = write(os.path.join(d, "m.yaml"), MANIFEST.format(
            round=0, escapee=os.path.join(d, "escapee.py"), sa="one", podless=os.path.abspath(PODLESS),
            socket=agent.socket, rooted_out=rooted_out))
        agent.cli("apply", "-f", manifest)
        wait_for("the victim", lambda: processes_with_env("ROUND=0"), agent=agent)

        # 2. The escapee's stream ends, with nothing or at most the first SVID.
        result = wait_for("the escapee's stream to end", lambda: (
            os.path.exists(escapee_out) and open(escapee_out).read().startswith("ended")
            and open(escapee_out).read()), timeout=30, agent=agent)
        check(result.startswith("ended PERMISSION_DENIED") and "no longer belongs" in result,
              f"the escapee's stream did not end when it left its replica: {result}")
        check(int(result.split(" after ")[1].split(":")[0]) == 1,
              f"the escapee's stream was not attested while it belonged: {result}")

        # 4. A workload's process is refused by the API, root or not.
        out = wait_for("the root workload's API call", lambda: os.path.exists(rooted_out)
                       and open(rooted_out).read(), agent=agent)
        check("does not serve workload processes" in out, f"a workload used the API: {out}")

        # 3. Credentials rotate with the identity.
        old = proxy_for(agent, "caller-0", "att")
        address = addresses(agent.config_dump())["caller-0"]
        status, body = curl_via_proxy(old, f"http://{address}:8080/")
        check(status == 200 and "/sa/one" in body, f"before: {status} {body}")
        agent.cli("apply", "-f", write(os.path.join(d, "m.yaml"), MANIFEST.format(
            round=0, escapee=os.path.join(d, "escapee.py"), sa="two", podless=os.path.abspath(PODLESS),
            socket=agent.socket, rooted_out=rooted_out)))
        status, _ = curl_via_proxy(old, f"http://{address}:8080/")
        check(status == 407, f"the old credentials still work after the identity changed: {status}")
        new = proxy_for(agent, "caller-0", "att")
        check(new != old, "the credentials did not change")
        status, body = curl_via_proxy(new, f"http://{address}:8080/")
        check(status == 200 and "/sa/two" in body, f"after: {status} {body}")

        # 1. PID reuse.
        pid_reuse(agent, d, workload_api)
    print("PASS")


if __name__ == "__main__":
    main()
