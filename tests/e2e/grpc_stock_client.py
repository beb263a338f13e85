"""The local API through a stock gRPC client (python3-grpcio) with stubs
generated from api/podless/v1/runtime.proto: unary calls, status codes with
the CLI's error text, Watch streaming, and hostile clients that must not
hurt the agent."""

import os
import socket
import subprocess
import tempfile
import threading
import time

from harness import check, grpc_stubs, running_agent

grpc_stubs()

import grpc  # noqa: E402
from podless.v1 import runtime_pb2 as pb  # noqa: E402
from podless.v1 import runtime_pb2_grpc as rpc  # noqa: E402

BAD = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: api-bad}
spec:
  replicas: -1
  app: {echo: {}}
"""


def workload(name, ns="apps", replicas=1, labels=None):
    w = pb.Workload()
    w.metadata.name = name
    w.metadata.namespace = ns
    w.metadata.labels.update(labels or {"app": name})
    w.spec.replicas.value = replicas
    w.spec.service_account = name
    p = w.spec.ports.add()
    p.name, p.port, p.protocol = "http", 8080, pb.HTTP
    w.spec.app.echo.SetInParent()
    return w


with running_agent() as agent:
    channel = grpc.insecure_channel("unix:" + agent.socket)
    api = rpc.RuntimeStub(channel)

    # Watch from the start: the current (empty) state, SYNCED, then changes.
    events = []
    synced = threading.Event()
    watch = api.Watch(pb.WatchRequest(kinds=[pb.WORKLOAD]), timeout=60)

    def consume():
        try:
            for e in watch:
                events.append(e)
                if e.type == pb.WatchEvent.SYNCED:
                    synced.set()
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    check(synced.wait(10), "Watch never sent SYNCED")

    resp = api.Register(pb.RegisterRequest(workload=workload("web", replicas=3)), timeout=10)
    reps = resp.workload.status.replicas
    check(len(reps) == 3 and reps[2].name == "web-2", str(resp))
    check(reps[0].spiffe_id == "spiffe://cluster.local/ns/apps/sa/web", reps[0].spiffe_id)

    try:
        api.Register(pb.RegisterRequest(workload=workload("web")), timeout=10)
        check(False, "second Register succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.ALREADY_EXISTS, f"{e.code()} {e.details()}")

    # Structured input is validated with field paths.
    bad = workload("Not_A_Name")
    try:
        api.Register(pb.RegisterRequest(workload=bad), timeout=10)
        check(False, "invalid Register succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, str(e.code()))
        check("workload.metadata.name" in e.details(), e.details())

    got = api.Get(pb.GetRequest(ref=pb.ObjectRef(kind=pb.WORKLOAD, namespace="apps", name="web")),
                  timeout=10)
    check(got.workload.spec.replicas.value == 3 and got.workload.metadata.labels["app"] == "web", str(got))
    try:
        api.Get(pb.GetRequest(ref=pb.ObjectRef(kind=pb.WORKLOAD, namespace="apps", name="nope")),
                timeout=10)
        check(False, "Get of a missing workload succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, str(e.code()))

    # Apply errors carry exactly the text the CLI prints.
    try:
        api.Apply(pb.ApplyRequest(manifest=BAD, source_name="bad.yaml"), timeout=10)
        check(False, "bad Apply succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, str(e.code()))
        api_text = e.details()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bad.yaml")
        open(path, "w").write(BAD)
        cli = subprocess.run([os.environ.get("PODLESS_BIN"), "--socket", agent.socket,
                              "apply", "-f", "bad.yaml"], cwd=tmp, capture_output=True, text=True)
    check(cli.stderr.strip() == "error: " + api_text.strip(),
          f"CLI and API disagree:\nCLI: {cli.stderr}\nAPI: {api_text}")
    check(api_text.startswith("bad.yaml:5:"), api_text)

    # Batch registration is atomic.
    batch = pb.RegisterBatchRequest(workloads=[workload(f"b{i}") for i in range(50)])
    check(api.RegisterBatch(batch, timeout=30).registered == 50, "RegisterBatch")
    dup = pb.RegisterBatchRequest(workloads=[workload("c1"), workload("web")])
    try:
        api.RegisterBatch(dup, timeout=10)
        check(False, "batch with an existing name succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.ALREADY_EXISTS, str(e.code()))
    listed = api.List(pb.ListRequest(kind=pb.WORKLOAD, namespace="apps"), timeout=10)
    names = sorted(o.workload.metadata.name for o in listed.objects)
    check("c1" not in names and len(names) == 51, f"{len(names)} {names[:5]}")

    api.Deregister(pb.DeregisterRequest(namespace="apps", name="web"), timeout=10)
    try:
        api.Deregister(pb.DeregisterRequest(namespace="apps", name="web"), timeout=10)
        check(False, "second Deregister succeeded")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, str(e.code()))

    deadline = time.time() + 10
    while time.time() < deadline and not any(e.type == pb.WatchEvent.DELETED for e in events):
        time.sleep(0.05)
    kinds = [pb.WatchEvent.Type.Name(e.type) for e in events]
    check(kinds[0] == "SYNCED" and kinds[1] == "ADDED" and kinds[-1] == "DELETED",
          f"watch events: {kinds[:4]}...{kinds[-2:]}")
    check(kinds.count("ADDED") == 51, f"{kinds.count('ADDED')} ADDED events")
    watch.cancel()
    reader.join(5)

    # Hostile clients: garbage bytes, a client that vanishes mid-stream, many
    # concurrent calls, a large message. The agent keeps serving.
    for payload in (b"\x00" * 100, b"GET / HTTP/1.1\r\n\r\n", os.urandom(4096)):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(agent.socket)
            s.sendall(payload)
    for _ in range(5):
        w = api.Watch(pb.WatchRequest(), timeout=30)
        next(w)
        w.cancel()
    big = pb.ApplyRequest(manifest="# " + "x" * (8 << 20) + "\n" + BAD.replace("-1", "1"),
                          source_name="big.yaml")
    check(len(api.Apply(big, timeout=60).results) == 1, "8 MiB manifest")
    futures = [api.List.future(pb.ListRequest(kind=pb.WORKLOAD), timeout=30) for _ in range(100)]
    check(all(len(f.result().objects) >= 50 for f in futures), "100 concurrent List calls")
    check(api.GetCaBundle(pb.GetCaBundleRequest(), timeout=10).pem.startswith("-----BEGIN"),
          "GetCaBundle")
    status, _ = agent.http("/ready")
    check(status == 200, "agent hurt by hostile clients")
    channel.close()

print("grpc_stock_client: ok")
