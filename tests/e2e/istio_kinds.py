"""Istio's WorkloadEntry and PeerAuthentication through the real binary.

1. WorkloadEntry: an independent HBONE server (Python's ssl and h2, see
   tests/proxy/hbone_interop_server.py) presents an SVID for
   spiffe://cluster.local/ns/vms/sa/legacy signed by the agent's CA
   (--ca-cert/--ca-key, an operator CA made with openssl). A WorkloadEntry
   at its address, with its HBONE port in the podless.dev/hbone-port
   annotation, is selected by a Service; a workload's traffic to the
   Service name through the outbound entry reaches the server over HBONE
   (mTLS as the caller: the server sees the caller's SPIFFE ID), at the
   entry's port that the Service's named targetPort picks. The entry's own
   address resolves to it too. The Service's status lists the entry. An
   entry whose serviceAccount is not the one the server's certificate
   names is refused (the peer identity check).
2. PeerAuthentication: STRICT (namespace-wide) closes a workload's
   plaintext ports, counted in podless_authz_denied_total, while HBONE to
   them still works; a policy selecting the workload overrides the
   namespace's (PERMISSIVE opens again); portLevelMtls overrides per port;
   DISABLE is permissive; the root namespace's policy applies when the
   namespace has none; deleting the policies opens the ports again."""

import os
import socket
import ssl
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proxy"))

import pki  # noqa: E402
from harness import addresses, check, curl_via_proxy as curl, proxy_for, running_agent  # noqa: E402
from outbound_connect import connect, read_line  # noqa: E402
from hbone_interop_server import serve  # noqa: E402

def through_entry(proxy, target):
    """CONNECT to `target` and one round trip: the server's first line."""
    status, s = connect(proxy, target)
    with s:
        check(status.startswith("HTTP/1.1 200"), f"CONNECT {target}: {status}")
        first = read_line(s)
        s.sendall(b"ping\n")
        echoed = read_line(s)
        check(echoed == "ping\n", f"echo through {target}: {echoed!r}")
        return first


# ---------------------------------------------------------------------------
# The independent HBONE server, its certificate signed by the agent's CA.
pki_dir = tempfile.mkdtemp(prefix="podless-istio-pki-")
ca_cert, ca_key = pki.make_ca(pki_dir, "root")
vm_cert, vm_key = pki.make_leaf(pki_dir, "root", "vm", "spiffe://cluster.local/ns/vms/sa/legacy")

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(ca_cert)
ctx.load_cert_chain(vm_cert, vm_key)
ctx.set_alpn_protocols(["h2"])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", 0))  # 127.0.0.1 and 127.0.0.2 both reach it
listener.listen(16)
vm_port = listener.getsockname()[1]
connections = []


def serve_one(raw):
    raw.settimeout(30)
    try:
        with ctx.wrap_socket(raw, server_side=True) as tls:
            connections.append(tls.getpeercert())
            serve(tls)
    except (ssl.SSLError, OSError):
        pass


def accept_loop():
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve_one, args=(raw,), daemon=True).start()


threading.Thread(target=accept_loop, daemon=True).start()

ENTRIES = f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: vm-1
  namespace: vms
  annotations: {{podless.dev/hbone-port: "{vm_port}"}}
spec:
  address: 127.0.0.1
  labels: {{app: legacy}}
  serviceAccount: legacy
  ports: {{http: 8080}}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata:
  name: impostor
  namespace: vms
  annotations: {{podless.dev/hbone-port: "{vm_port}"}}
spec:
  address: 127.0.0.2
  labels: {{app: impostor}}
  serviceAccount: someone-else
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {{name: legacy, namespace: vms}}
spec:
  selector: {{app: legacy}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {{name: impostor, namespace: vms}}
spec:
  selector: {{app: impostor}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: caller, namespace: vms}}
spec:
  serviceAccount: caller
  app: {{echo: {{}}}}
"""

WEB = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  serviceAccount: web
  ports: [{name: http, port: 18080, protocol: HTTP}, {name: admin, port: 19090, protocol: HTTP}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: client, namespace: shop}
spec:
  serviceAccount: client
  app: {echo: {}}
"""


def peer(name, ns, mode, selector=None, ports=None):
    text = (f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
            f"metadata: {{name: {name}, namespace: {ns}}}\nspec:\n")
    if selector:
        text += f"  selector: {{matchLabels: {{app: {selector}}}}}\n"
    if mode:
        text += f"  mtls: {{mode: {mode}}}\n"
    if ports:
        text += "  portLevelMtls:\n"
        for port, port_mode in ports.items():
            text += f"    {port}: {{mode: {port_mode}}}\n"
    return text


def delete(agent, text):
    path = os.path.join(pki_dir, "delete.yaml")
    with open(path, "w") as f:
        f.write(text)
    agent.cli("delete", "-f", path)


def plaintext_answers(address, port):
    try:
        with socket.create_connection((address, port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(4096).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def denied(agent):
    _, text = agent.http("/metrics")
    return sum(float(l.split()[-1]) for l in text.splitlines()
               if l.startswith("podless_authz_denied_total{") and 'destination_workload="web"' in l)


with running_agent(extra_args=["--ca-cert", ca_cert, "--ca-key", ca_key,
                               "--no-local-short-circuit"]) as agent:
    # -- WorkloadEntry ------------------------------------------------------
    agent.cli("apply", "-f", "-", input=ENTRIES)
    caller = proxy_for(agent, "caller-0", "vms")

    # Through the Service name: the Service's targetPort `http` is the
    # entry's port 8080; the server sees the caller's identity.
    first = through_entry(caller, "legacy.vms.svc:80")
    check(first == "peer=spiffe://cluster.local/ns/vms/sa/caller authority=127.0.0.1:8080\n",
          f"the HBONE server saw: {first!r}")
    first = through_entry(caller, "legacy.vms.svc.cluster.local:80")
    check("authority=127.0.0.1:8080" in first, first)
    # The entry's own address resolves to it.
    first = through_entry(caller, "127.0.0.1:8080")
    check(first.startswith("peer=spiffe://cluster.local/ns/vms/sa/caller "), first)
    # The Service's status lists the entry among its endpoints.
    got = agent.cli("get", "service", "legacy", "-n", "vms", "-o", "yaml").stdout
    check("127.0.0.1" in got, f"the Service's endpoints leave out the entry:\n{got}")
    got = agent.cli("get", "service", "impostor", "-n", "vms", "-o", "yaml").stdout
    check("127.0.0.2" in got, f"the impostor's endpoints:\n{got}")

    # /config_dump shows the entries with the identity they must present.
    entries = {e["name"]: e for e in agent.config_dump()["workload_entries"]}
    check(entries["vm-1"]["spiffe_id"] == "spiffe://cluster.local/ns/vms/sa/legacy"
          and entries["vm-1"]["hbone_port"] == vm_port
          and entries["vm-1"]["ports"] == {"http": 8080}, f"config_dump: {entries}")

    # The impostor entry claims the identity someone-else; the server at its
    # address presents legacy's: refused before any byte reaches it.
    before = len(connections)
    for target in ("impostor.vms.svc:80", "127.0.0.2:8080"):
        status, s = connect(caller, target)
        s.close()
        check(not status.startswith("HTTP/1.1 200") and status.startswith("HTTP/1.1 5"),
              f"an entry with the wrong identity was reached through {target}: {status}")
    check(all("vms/sa/caller" in str(c) for c in connections[before:]),
          "the server saw an unexpected client")

    # An unknown address is still an error, not an entry.
    status, s = connect(caller, "127.0.0.3:8080")
    s.close()
    check(not status.startswith("HTTP/1.1 200"), f"127.0.0.3 resolved: {status}")

    # -- PeerAuthentication ---------------------------------------------------
    agent.cli("apply", "-f", "-", input=WEB)
    dump = agent.config_dump()
    addr = addresses(dump)
    web = addr["web-0"]
    client = proxy_for(agent, "client-0", "shop")

    def state():
        return (plaintext_answers(web, 18080), plaintext_answers(web, 19090))

    def hbone_ok():
        for port in (18080, 19090):
            code, body = curl(client, f"http://{web}:{port}/")
            check(code == 200 and "spiffe://cluster.local/ns/shop/sa/client" in body,
                  f"HBONE to web:{port}: {code} {body}")

    check(state() == (True, True), f"plaintext before any policy: {state()}")
    hbone_ok()

    # Namespace-wide STRICT: both ports closed to plaintext, HBONE still in.
    agent.cli("apply", "-f", "-", input=peer("default", "shop", "STRICT"))
    base = denied(agent)
    check(state() == (False, False), f"namespace STRICT: {state()}")
    check(denied(agent) >= base + 2, "refused plaintext connections not counted")
    hbone_ok()

    peers = agent.config_dump()["peer_authentications"]
    check(peers == [{"namespace": "shop", "name": "default", "selector": {}, "mode": "STRICT",
                     "port_level": {}}], f"config_dump: {peers}")

    # A policy selecting the workload wins over the namespace's.
    agent.cli("apply", "-f", "-", input=peer("web", "shop", "PERMISSIVE", selector="web"))
    check(state() == (True, True), f"workload PERMISSIVE over namespace STRICT: {state()}")

    # Port level: 19090 STRICT, the rest as the workload's policy says.
    agent.cli("apply", "-f", "-",
              input=peer("web", "shop", "PERMISSIVE", selector="web", ports={19090: "STRICT"}))
    check(state() == (True, False), f"portLevelMtls 19090 STRICT: {state()}")
    hbone_ok()
    # A port left UNSET inherits the workload level: STRICT.
    agent.cli("apply", "-f", "-",
              input=peer("web", "shop", "STRICT", selector="web",
                         ports={18080: "UNSET", 19090: "PERMISSIVE"}))
    check(state() == (False, True), f"workload STRICT, 19090 PERMISSIVE: {state()}")
    # DISABLE is permissive for podless: plaintext accepted, HBONE too.
    agent.cli("apply", "-f", "-", input=peer("web", "shop", "DISABLE", selector="web"))
    check(state() == (True, True), f"DISABLE: {state()}")
    hbone_ok()
    # The workload's policy UNSET: the namespace's STRICT applies again.
    agent.cli("apply", "-f", "-", input=peer("web", "shop", None, selector="web"))
    check(state() == (False, False), f"workload UNSET under namespace STRICT: {state()}")

    # Deleting the policies opens the ports again.
    delete(agent, peer("web", "shop", None, selector="web"))
    delete(agent, peer("default", "shop", None))
    check(state() == (True, True), f"after delete: {state()}")

    # The root namespace's policy applies where the namespace has none, and
    # the namespace's own overrides it.
    agent.cli("apply", "-f", "-", input=peer("default", "istio-system", "STRICT"))
    check(state() == (False, False), f"root namespace STRICT: {state()}")
    agent.cli("apply", "-f", "-", input=peer("default", "shop", "PERMISSIVE"))
    check(state() == (True, True), f"namespace PERMISSIVE over root STRICT: {state()}")
    delete(agent, peer("default", "shop", None))
    check(state() == (False, False), f"root STRICT again: {state()}")
    hbone_ok()
    delete(agent, peer("default", "istio-system", None))
    check(state() == (True, True), f"no policy: {state()}")

    # The same documents again: unchanged.
    r = agent.cli("apply", "-f", "-", input=ENTRIES)
    check("created" not in r.stdout and "configured" not in r.stdout, r.stdout)

    status, _ = agent.http("/ready")
    check(status == 200, "agent unhealthy")

listener.close()
print("istio_kinds: ok")
