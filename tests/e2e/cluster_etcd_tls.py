"""Cluster mode over TLS to etcd (#18 point 11): etcd serves https:// only,
with --client-cert-auth (a test PKI made with openssl: etcd's certificate names
the bridge address and 127.0.0.1). `podless ca init` and two agents in their
own network namespaces reach it with --etcd-ca/--etcd-cert/--etcd-key, and a
workload applied on n1 is in n2's view. Refused, each naming the endpoint and
the reason: an agent without a client certificate, an agent whose --etcd-ca
did not sign etcd's certificate. Flag mistakes (https:// without --etcd-ca,
--etcd-cert without --etcd-key, mixed http/https, TLS flags on http://, a key
others may read) fail before anything starts."""

import os

import cluster_harness as h
from cluster_harness import (PODLESS, Cluster, EtcdServer, Network, Pending, check, log, run,
                             step, tempdir, wait_until, workload)
from harness import write
from pki import openssl

NS = "tls"


def make_pki(d, server_ips):
    """ca (signed etcd's and the client's certificates), server (IP SANs
    `server_ips`), client (clientAuth, key 0600) and other-ca (signed
    nothing here), as {name: (cert, key)}."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    out = {}
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{d}/{ca}.key", "-out", f"{d}/{ca}.crt",
                "-days", "2", "-subj", f"/CN=podless-e2e-{ca}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        out[ca] = (f"{d}/{ca}.crt", f"{d}/{ca}.key")
    common = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    sans = ",".join(f"IP:{ip}" for ip in server_ips)
    for name, ext in (("server", f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        write(f"{d}/{name}.ext", common + ext)
        openssl("req", "-new", *ec, "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr",
                "-subj", f"/CN=podless-e2e-{name}")
        openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.crt", "-CAkey",
                f"{d}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/{name}.ext",
                "-out", f"{d}/{name}.crt")
        out[name] = (f"{d}/{name}.crt", f"{d}/{name}.key")
    for _, key in out.values():
        os.chmod(key, 0o600)
    return out


class TlsEtcdServer(EtcdServer):
    """EtcdServer serving clients over https:// only, requiring a client
    certificate; /health on a cleartext metrics port for the harness."""

    def __init__(self, network, pki):
        super().__init__(network)
        self.pki = pki
        self.url = self.url.replace("http://", "https://")
        self.local_url = self.local_url.replace("http://", "https://")
        self.metrics_url = f"http://127.0.0.1:{h.free_port('0.0.0.0')}"

    def args(self):
        return super().args() + [
            "--cert-file", self.pki["server"][0], "--key-file", self.pki["server"][1],
            "--trusted-ca-file", self.pki["ca"][0], "--client-cert-auth",
            "--listen-metrics-urls", self.metrics_url]

    def start(self, timeout=20):
        self.proc = h.spawn(self.args(), self.log_path)
        wait_until("etcd healthy (https clients, --client-cert-auth)",
                   lambda: self.healthy() or Pending(h.tail(self.log_path, 5)), timeout)
        check(self.proc.poll() is None, f"etcd exited:\n{h.tail(self.log_path)}")
        log(f"etcd healthy at {self.url} (and {self.local_url})")
        return self

    def healthy(self):
        if self.proc is None or self.proc.poll() is not None:
            return False
        status, body = h.http_get(self.metrics_url + "/health", timeout=1)
        return status == 200 and '"health":"true"' in body.replace(" ", "")

    def etcdctl(self, *args, timeout=10):
        return super().etcdctl("--cacert", self.pki["ca"][0], "--cert", self.pki["client"][0],
                               "--key", self.pki["client"][1], *args, timeout=timeout)


class TlsCluster(Cluster):
    """Cluster with TlsEtcdServer in place of the cleartext etcd."""

    def __enter__(self):
        h.set_budget(self.budget)
        step("preflight")
        h.require_namespaces()
        h.require_etcd()
        check(os.access(PODLESS, os.X_OK), f"podless binary not found at {PODLESS}")
        step(f"network with {self.count} node namespaces")
        self.network = Network(self.count).create()
        step("test PKI (openssl) and etcd with https:// and --client-cert-auth")
        self.pki = make_pki(tempdir("pki"), [self.network.bridge_address, "127.0.0.1"])
        self.etcd = TlsEtcdServer(self.network, self.pki).start()
        return self


def tls_flags(pki, ca="ca", client=True):
    flags = ["--etcd-ca", pki[ca][0]]
    if client:
        flags += ["--etcd-cert", pki["client"][0], "--etcd-key", pki["client"][1]]
    return flags


def refused(c, index, flags, *expected):
    """Starts an agent on node `index` with `flags`; it must exit non-zero
    saying every one of `expected` (its etcd URL among them)."""
    a = c.agent(index, extra_args=flags)
    a.start(wait=False)
    rc = a.wait_exit(timeout=20)
    out = a.output()
    check(rc != 0, f"{a} started with {flags}:\n{out}")
    for part in expected:
        check(part in out, f"{a} exited {rc} without saying {part!r}:\n{out}")
    log(f"  refused: {out.strip().splitlines()[-1]}")


with TlsCluster(nodes=3, budget=100) as c:
    pki, etcd = c.pki, c.etcd

    step("flag mistakes fail at once, before anything starts")
    base = [PODLESS, "run", "--state-dir", os.path.join(tempdir("flags"), "s"), "--node-name",
            "x", "--node-address", "10.0.0.1", "--node-cidr", "10.1.0.0/24"]
    cases = [
        (["--etcd", etcd.local_url], "need --etcd-ca"),
        (["--etcd", etcd.local_url, "--etcd-ca", pki["ca"][0], "--etcd-cert", pki["client"][0]],
         "--etcd-cert and --etcd-key go together"),
        (["--etcd", f"{etcd.local_url},http://127.0.0.1:2379"] + tls_flags(pki),
         "mixes http:// and https://"),
        (["--etcd", "http://127.0.0.1:2379"] + tls_flags(pki), "are for https://"),
    ]
    for flags, expected in cases:
        r = run(base + flags, timeout=15)
        check(r.returncode != 0 and expected in r.stderr + r.stdout,
              f"podless run {' '.join(flags)}: rc {r.returncode}, want {expected!r}:\n"
              f"{r.stdout}{r.stderr}")
    os.chmod(pki["client"][1], 0o640)
    r = run([PODLESS, "ca", "init", "--etcd", etcd.local_url, "--out", tempdir("ca-refused")] +
            tls_flags(pki), timeout=15)
    os.chmod(pki["client"][1], 0o600)
    check(r.returncode != 0 and "--etcd-key" in r.stderr and "chmod 0600" in r.stderr,
          f"ca init with a group-readable --etcd-key: rc {r.returncode}\n{r.stderr}")
    r = run([PODLESS, "ca", "init", "--etcd", etcd.local_url, "--out", tempdir("ca-noca")])
    check(r.returncode == 2 and "--etcd-ca" in r.stderr, f"ca init without --etcd-ca: {r.stderr}")

    step("podless ca init over TLS (--store-root-key)")
    out = tempdir("ca")
    run([PODLESS, "ca", "init", "--etcd", etcd.local_url, "--out", out, "--store-root-key"] +
        tls_flags(pki), timeout=30, check_ok=True)
    keys = etcd.keys("/podless/ca/")
    check(keys == ["/podless/ca/root.crt", "/podless/ca/root.key"],
          f"etcd (read with etcdctl over TLS) after ca init: {keys}")
    c.ca_dir, c.ca_key_in_etcd = out, True

    step("an agent without a client certificate is refused, naming the endpoint")
    refused(c, 3, tls_flags(pki, client=False), etcd.url, "--etcd-cert", "certificate")

    step("an agent whose --etcd-ca did not sign etcd's certificate is refused")
    refused(c, 3, tls_flags(pki, ca="other-ca"), etcd.url, "certificate verify failed")

    step("two agents join through https:// etcd")
    n1, n2 = c.start([c.agent(1, extra_args=tls_flags(pki)), c.agent(2, extra_args=tls_flags(pki))])
    for a in (n1, n2):
        wait_until(f"{a.name}: /ready cluster.connected true",
                   lambda a=a: a.cluster_connected() is True or Pending(a.ready()), 15)
        status, body = a.ready()
        check(body.get("cluster", {}).get("endpoint") == etcd.url,
              f"{a.name} follows {body.get('cluster')}, want {etcd.url}")
    c.wait_nodes_ready(n2, ["n1", "n2"])

    step("a workload applied on n1 is in n2's view")
    n1.apply(workload("web", NS))

    def on_n2():
        rows = {(r.get("NAMESPACE"), r.get("NAME")): r for r in n2.workloads_wide()}
        web = rows.get((NS, "web"))
        return web if web and web.get("NODE") == "n1" else Pending(list(rows.values()))

    wait_until("web (NODE n1) in n2's get workloads -A", on_n2, 15)

print("cluster_etcd_tls: ok")
