"""Test certificates made with the openssl CLI: an operator CA for
`podless run --ca-cert/--ca-key`, and leaf SVIDs signed by it for clients
that are not podless workloads (independent HBONE clients, hostile peers)."""

import subprocess

from harness import check, write


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}")


def make_ca(d, name, trust_domain="cluster.local"):
    """{d}/{name}.crt and .key: a root CA with the trust domain's URI SAN;
    returns their paths."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/{name}.key")
    write(f"{d}/{name}.cnf", "[req]\ndistinguished_name=dn\n[dn]\n[ext]\n"
          "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
          f"subjectKeyIdentifier=hash\nsubjectAltName=URI:spiffe://{trust_domain}\n")
    openssl("req", "-x509", "-new", "-key", f"{d}/{name}.key", "-subj", f"/O=test/CN={name}",
            "-days", "30", "-config", f"{d}/{name}.cnf", "-extensions", "ext",
            "-out", f"{d}/{name}.crt")
    return f"{d}/{name}.crt", f"{d}/{name}.key"


def make_leaf(d, ca, name, spiffe_id):
    """{d}/{name}.crt and .key (PKCS#8): an X.509-SVID for `spiffe_id`
    signed by the CA {d}/{ca}.crt/.key."""
    return make_leaf_signed_by(d, f"{d}/{ca}.crt", f"{d}/{ca}.key", name, spiffe_id)


def make_leaf_signed_by(d, ca_cert, ca_key, name, spiffe_id):
    """The same, signed by the CA in the PEM files ca_cert/ca_key; returns
    the leaf's (certificate, key) paths."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/{name}.ec")
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", f"{d}/{name}.ec", "-out", f"{d}/{name}.key")
    write(f"{d}/{name}.ext", "basicConstraints=critical,CA:FALSE\n"
          "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
          f"subjectAltName=critical,URI:{spiffe_id}\n")
    openssl("req", "-new", "-key", f"{d}/{name}.key", "-subj", f"/O=test/CN={name}",
            "-out", f"{d}/{name}.csr")
    openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", ca_cert, "-CAkey", ca_key,
            "-CAcreateserial", "-days", "2", "-extfile", f"{d}/{name}.ext",
            "-out", f"{d}/{name}.crt")
    return f"{d}/{name}.crt", f"{d}/{name}.key"
