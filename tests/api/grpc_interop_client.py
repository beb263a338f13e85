#!/usr/bin/python3
"""Drives a podless gRPC server with a stock client: python3-grpcio and stubs
generated from api/podless/v1/runtime.proto at run time.

Usage: grpc_interop_client.py SOCKET [die-mid-stream | not-grpc]

The server is the one tests/api/grpc_server_test.cc starts, with its test
handlers (GetCaBundle answers a fixed bundle, Apply fails with a multi-line
INVALID_ARGUMENT, Watch behaves according to WatchRequest.namespace, Get
reports how many "forever" watches saw their cancel callback).
Exits 0 when every check passed; otherwise prints what failed and exits 1.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API_DIR = os.path.join(SOURCE_ROOT, "api")
PROTO = os.path.join(API_DIR, "podless", "v1", "runtime.proto")

# Must match grpc_server_test.cc.
EXPECTED_PEM = "-----BEGIN CERTIFICATE-----\nTESTBUNDLE\n-----END CERTIFICATE-----\n"
EXPECTED_APPLY_ERROR = (
    "app.yaml:3:5: spec.replicas: must be between 0 and 1000, got 5000\n"
    "app.yaml:9:1: kind: unknown kind \"Pod\" (100% sure; caf\u00e9)"
)
FINITE_EVENTS = 5


def generate_stubs(out_dir):
    """Generates runtime_pb2 and runtime_pb2_grpc into out_dir."""
    result = subprocess.run(
        ["/usr/bin/python3", "-m", "grpc_tools.protoc", "-I" + API_DIR,
         "--python_out=" + out_dir, "--grpc_python_out=" + out_dir, PROTO],
        capture_output=True, text=True)
    if result.returncode == 0:
        return "grpc_tools.protoc"
    # Debian's python3-grpc-tools bundles protoc 3.5, which predates proto3
    # `optional`. Then: messages from the system protoc (the version that
    # matches python3-protobuf), the service stub from grpc_tools on a copy
    # without the `optional` labels (the stub only names the message classes).
    if "optional" not in result.stderr:
        raise RuntimeError("grpc_tools.protoc failed:\n" + result.stderr)
    subprocess.run(["protoc", "-I" + API_DIR, "--python_out=" + out_dir, PROTO], check=True)
    stripped_root = os.path.join(out_dir, "_proto")
    os.makedirs(os.path.join(stripped_root, "podless", "v1"))
    with open(PROTO) as f:
        text = re.sub(r"^(\s*)optional\s+", r"\1", f.read(), flags=re.M)
    stripped = os.path.join(stripped_root, "podless", "v1", "runtime.proto")
    with open(stripped, "w") as f:
        f.write(text)
    subprocess.run(["/usr/bin/python3", "-m", "grpc_tools.protoc", "-I" + stripped_root,
                    "--grpc_python_out=" + out_dir, stripped], check=True)
    return "protoc (messages) + grpc_tools.protoc (stub)"


class Checks:
    def __init__(self):
        self.passed = 0

    def expect(self, condition, what):
        if not condition:
            raise AssertionError(what)
        self.passed += 1


def expect_rpc_error(checks, call, code, what):
    import grpc
    try:
        call()
    except grpc.RpcError as e:
        checks.expect(e.code() == code, "%s: expected %s, got %s (%s)" %
                      (what, code, e.code(), e.details()))
        return e
    raise AssertionError(what + ": the call succeeded, expected " + str(code))


def watch_cancellations(stub, pb):
    ref = pb.ObjectRef(kind=pb.WORKLOAD, name="watch-cancellations")
    obj = stub.Get(pb.GetRequest(ref=ref), timeout=5)
    return int(obj.workload.metadata.name)


def run_checks(socket_path, pb, pb_grpc):
    import grpc
    checks = Checks()
    options = [("grpc.max_receive_message_length", 64 << 20),
               ("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel("unix:" + socket_path, options=options) as channel:
        stub = pb_grpc.RuntimeStub(channel)

        # Unary.
        bundle = stub.GetCaBundle(pb.GetCaBundleRequest(), timeout=5)
        checks.expect(bundle.trust_domain == "cluster.local", "GetCaBundle trust_domain")
        checks.expect(bundle.pem == EXPECTED_PEM, "GetCaBundle pem: %r" % bundle.pem)

        # An error status with a multi-line, percent-encoded message.
        e = expect_rpc_error(checks, lambda: stub.Apply(pb.ApplyRequest(manifest="x"), timeout=5),
                             grpc.StatusCode.INVALID_ARGUMENT, "Apply")
        checks.expect(e.details() == EXPECTED_APPLY_ERROR,
                      "Apply message: %r" % e.details())

        # An unknown method.
        nope = channel.unary_unary("/podless.v1.Runtime/NoSuchMethod")
        expect_rpc_error(checks, lambda: nope(b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED,
                         "unknown method")

        # Server streaming: every event, in order, then OK.
        events = list(stub.Watch(pb.WatchRequest(namespace="finite"), timeout=10))
        names = [ev.object.workload.metadata.name for ev in events[:-1]]
        checks.expect(names == ["w-%d" % i for i in range(FINITE_EVENTS)], "Watch names %r" % names)
        checks.expect(events[-1].type == pb.WatchEvent.SYNCED, "Watch ends with SYNCED")

        # A stream that ends with an error after a message.
        received = []

        def read_failing():
            for ev in stub.Watch(pb.WatchRequest(namespace="fail-after-one"), timeout=10):
                received.append(ev)
        expect_rpc_error(checks, read_failing, grpc.StatusCode.NOT_FOUND, "Watch fail-after-one")
        checks.expect(len(received) == 1, "one event before the error, got %d" % len(received))

        # Cancellation mid-stream reaches the server's cancel callback.
        before = watch_cancellations(stub, pb)
        call = stub.Watch(pb.WatchRequest(namespace="forever"), timeout=30)
        for _ in range(3):
            next(call)
        call.cancel()
        deadline = time.time() + 10
        while watch_cancellations(stub, pb) != before + 1 and time.time() < deadline:
            time.sleep(0.02)
        checks.expect(watch_cancellations(stub, pb) == before + 1,
                      "the server saw the cancellation")

        # A deadline on a stream that never ends.
        expect_rpc_error(
            checks, lambda: list(stub.Watch(pb.WatchRequest(namespace="deadline"), timeout=0.3)),
            grpc.StatusCode.DEADLINE_EXCEEDED, "Watch deadline")

        # Concurrent calls on one channel (one HTTP/2 connection).
        futures = [stub.GetCaBundle.future(pb.GetCaBundleRequest(), timeout=10) for _ in range(50)]
        checks.expect(all(f.result().pem == EXPECTED_PEM for f in futures), "50 concurrent calls")

        # A large message each way.
        big = "x" * (5 << 20)
        workload = pb.Workload(metadata=pb.ObjectMeta(name="big", labels={"blob": big}))
        reply = stub.Register(pb.RegisterRequest(workload=workload), timeout=30)
        checks.expect(reply.workload.metadata.labels["blob"] == big, "5 MiB round trip")
    return checks.passed


def die_mid_stream(socket_path, pb, pb_grpc):
    import grpc
    channel = grpc.insecure_channel("unix:" + socket_path)
    stub = pb_grpc.RuntimeStub(channel)
    call = stub.Watch(pb.WatchRequest(namespace="forever"), timeout=30)
    for _ in range(3):
        next(call)
    sys.stdout.flush()
    os._exit(0)  # no goodbye: the kernel closes the socket


def not_grpc(socket_path):
    """Plain HTTP/2 requests that are not gRPC: GET, and POST of text/plain."""
    import socket
    import h2.config
    import h2.connection
    import h2.events
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(socket_path)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    base = [(":scheme", "http"), (":authority", "localhost"),
            (":path", "/podless.v1.Runtime/GetCaBundle")]
    conn.send_headers(1, [(":method", "GET")] + base, end_stream=True)
    conn.send_headers(3, [(":method", "POST")] + base + [("content-type", "text/plain")])
    conn.send_data(3, b"hello", end_stream=True)
    sock.sendall(conn.data_to_send())
    statuses = {}
    while len(statuses) < 2:
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                statuses[event.stream_id] = dict(event.headers)[":status"]
        sock.sendall(conn.data_to_send())
    sock.close()
    checks = Checks()
    checks.expect(statuses == {1: "405", 3: "415"}, "HTTP statuses %r" % statuses)
    return checks.passed


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    socket_path = sys.argv[1]
    if len(sys.argv) == 3 and sys.argv[2] == "not-grpc":
        try:
            print("not-grpc: %d checks passed" % not_grpc(socket_path))
            return 0
        except AssertionError as e:
            print("not-grpc check failed: %s" % e, file=sys.stderr)
            return 1
    out_dir = tempfile.mkdtemp(prefix="podless-grpc-stubs-")
    try:
        how = generate_stubs(out_dir)
        sys.path.insert(0, out_dir)
        from podless.v1 import runtime_pb2 as pb
        from podless.v1 import runtime_pb2_grpc as pb_grpc
        if len(sys.argv) == 3 and sys.argv[2] == "die-mid-stream":
            shutil.rmtree(out_dir, ignore_errors=True)
            die_mid_stream(socket_path, pb, pb_grpc)
        passed = run_checks(socket_path, pb, pb_grpc)
        print("interop: %d checks passed (stubs from %s)" % (passed, how))
        return 0
    except AssertionError as e:
        print("interop check failed: %s" % e, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
