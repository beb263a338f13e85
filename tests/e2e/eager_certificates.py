"""--eager-certificates issues a workload identity's SVID when the workload
gets replicas, before any connection asks for it; without the flag nothing
is issued until first use. One SVID per identity: two workloads of one
service account share it, and a re-apply issues nothing new."""

import os

from harness import check, running_agent, wait_for, write

MANIFEST = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: a, namespace: e}
spec:
  serviceAccount: shop
  replicas: 3
  ports: [{name: http, port: 8080, protocol: HTTP}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: b, namespace: e}
spec:
  serviceAccount: shop
  ports: [{name: http, port: 8080, protocol: HTTP}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: c, namespace: e}
spec:
  serviceAccount: cart
  ports: [{name: http, port: 8080, protocol: HTTP}]
  app: {echo: {}}
"""

ISSUED = "podless_certificates_issued_total"


def main():
    with running_agent() as lazy:
        lazy.cli("apply", "-f", write(os.path.join(lazy.state_dir, "m.yaml"), MANIFEST))
        check(lazy.metric(ISSUED) == 0,
              f"without --eager-certificates an apply issued {lazy.metric(ISSUED)} SVIDs")

    with running_agent(extra_args=["--eager-certificates"]) as eager:
        path = write(os.path.join(eager.state_dir, "m.yaml"), MANIFEST)
        eager.cli("apply", "-f", path)
        # Two identities (sa shop, sa cart), issued on the issuer's threads.
        wait_for("the two identities' SVIDs (sa shop, sa cart)",
                 lambda: eager.metric(ISSUED) == 2, timeout=10, agent=eager)
        eager.cli("apply", "-f", path)
        eager.cli("apply", "-f", write(path, MANIFEST.replace("replicas: 3", "replicas: 5")))
        check(eager.metric(ISSUED) == 2,
              f"a re-apply and a scale-up issued again: {eager.metric(ISSUED)} SVIDs, want 2")
    print("PASS")


if __name__ == "__main__":
    main()
