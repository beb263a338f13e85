"""The SPIFFE Workload API through the real binary, with a stock gRPC client
(python3-grpcio, stubs generated from api/spiffe/workload.proto): a
supervised process (a grandchild of the replica's process) fetches its
X.509-SVID, key and bundle, which verify with openssl and match each other,
and receives a new SVID on rotation; a call without the security header is
refused; a process outside the agent's tree is denied."""

import os
import subprocess
import sys
import tempfile

from exec_util import exec_agent
from harness import check, grpc_stubs, wait_for, write

stubs = grpc_stubs("api/spiffe/workload.proto", include="api/spiffe")

import grpc  # noqa: E402
import workload_pb2 as pb  # noqa: E402
import workload_pb2_grpc as rpc  # noqa: E402

CLIENT = """
import os, sys, time
sys.path.insert(0, {stubs!r})
import grpc
import workload_pb2 as pb, workload_pb2_grpc as rpc

out = sys.argv[1]
def put(name, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(out, name + ".tmp"), mode) as f:
        f.write(data)
    os.rename(os.path.join(out, name + ".tmp"), os.path.join(out, name))

stub = rpc.SpiffeWorkloadAPIStub(grpc.insecure_channel(os.environ["SPIFFE_ENDPOINT_SOCKET"]))
try:
    next(stub.FetchX509SVID(pb.X509SVIDRequest(), timeout=10))
    put("noheader", "OK")
except grpc.RpcError as e:
    put("noheader", e.code().name)
header = [("workload.spiffe.io", "true")]
bundles = next(stub.FetchX509Bundles(pb.X509BundlesRequest(), metadata=header, timeout=10))
put("bundles", ",".join(sorted(bundles.bundles.keys())))
n = 0
for response in stub.FetchX509SVID(pb.X509SVIDRequest(), metadata=header):
    n += 1
    svid = response.svids[0]
    put(f"svid{{n}}.der", svid.x509_svid)
    put(f"key{{n}}.der", svid.x509_svid_key)
    put(f"bundle{{n}}.der", svid.bundle)
    put(f"id{{n}}", svid.spiffe_id)
    if n == 2:
        break
time.sleep(3600)
"""

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: fetcher, namespace: idp}}
spec:
  serviceAccount: fetcher-sa
  app:
    exec:
      command: [sh, -c, "{python} {client} {out}; sleep 3600"]
      terminationGracePeriodSeconds: 1
"""


def openssl(*args, input=None):
    r = subprocess.run(["openssl", *args], capture_output=True, input=input)
    check(r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr.decode()}")
    return r.stdout


def main():
    d = tempfile.mkdtemp(prefix="podless-wlapi-")
    os.chmod(d, 0o755)
    out = os.path.join(d, "out")
    os.mkdir(out)
    os.chmod(out, 0o777)  # the workload writes here as its own uid
    client = write(os.path.join(d, "client.py"), CLIENT.format(stubs=stubs))
    with exec_agent(extra_args=["--svid-ttl", "1m"]) as agent:
        agent.cli("apply", "-f", write(os.path.join(d, "m.yaml"),
                                       MANIFEST.format(python=sys.executable, client=client, out=out)))
        wait_for("first SVID", lambda: os.path.exists(os.path.join(out, "id1")), agent=agent)
        with open(os.path.join(out, "noheader")) as f:
            check(f.read() == "INVALID_ARGUMENT", "a call without workload.spiffe.io was not refused")
        with open(os.path.join(out, "bundles")) as f:
            check(f.read() == "spiffe://cluster.local", "bundle keys")
        with open(os.path.join(out, "id1")) as f:
            check(f.read() == "spiffe://cluster.local/ns/idp/sa/fetcher-sa", "SPIFFE ID")

        # The SVID verifies against the bundle and matches its key.
        leaf = openssl("x509", "-inform", "DER", "-in", os.path.join(out, "svid1.der"))
        root = openssl("x509", "-inform", "DER", "-in", os.path.join(out, "bundle1.der"))
        write(os.path.join(d, "leaf.pem"), leaf.decode())
        write(os.path.join(d, "root.pem"), root.decode())
        openssl("verify", "-CAfile", os.path.join(d, "root.pem"), os.path.join(d, "leaf.pem"))
        check(root.decode() == agent.cli("ca", "export").stdout.split("-----END CERTIFICATE-----")[0] +
              "-----END CERTIFICATE-----\n", "bundle differs from the agent's CA")
        text = openssl("x509", "-in", os.path.join(d, "leaf.pem"), "-noout", "-text").decode()
        check("URI:spiffe://cluster.local/ns/idp/sa/fetcher-sa" in text, text)
        cert_pub = openssl("x509", "-in", os.path.join(d, "leaf.pem"), "-noout", "-pubkey")
        key_pub = openssl("pkey", "-inform", "DER", "-in", os.path.join(out, "key1.der"), "-pubout")
        check(cert_pub == key_pub, "the key does not match the certificate")

        # A process outside the agent's tree: this test.
        stub = rpc.SpiffeWorkloadAPIStub(grpc.insecure_channel(
            "unix:" + os.path.join(agent.state_dir, "workload-api.sock")))
        for call, request in ((stub.FetchX509SVID, pb.X509SVIDRequest()),
                              (stub.FetchX509Bundles, pb.X509BundlesRequest())):
            try:
                next(call(request, metadata=[("workload.spiffe.io", "true")], timeout=10))
                check(False, "an unrelated process got an answer")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.PERMISSION_DENIED, f"unrelated process: {e.code()}")

        # Rotation at half of the 1 minute lifetime: a second message.
        wait_for("rotated SVID", lambda: os.path.exists(os.path.join(out, "id2")), timeout=60, agent=agent)
        serial = lambda p: openssl("x509", "-inform", "DER", "-in", p, "-noout", "-serial")
        check(serial(os.path.join(out, "svid1.der")) != serial(os.path.join(out, "svid2.der")),
              "the second message carries the same certificate")
    print("ok")


if __name__ == "__main__":
    main()
