"""Kubernetes kinds through the real binary (issue 14): a Namespace and a
ServiceAccount apply and keep the document they were applied as (get -o yaml
shows it back, a re-apply of the same file is "unchanged"); a field podless
keeps but does not act on is a warning; a kind podless does not run is
refused by name, and nothing of the file is applied, unless the apply asks
to skip such documents (--skip-unsupported), which lists it as skipped. The
state survives a restart of the agent."""

import os

from harness import check, running_agent, write

MANIFEST = """apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: payments}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  namespace: shop
  annotations: {owner: "alice@example.com"}
automountServiceAccountToken: false
"""

CONFIGMAP = """---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {mode: fast}
"""


def main():
    with running_agent() as agent:
        path = lambda name: os.path.join(agent.state_dir, name)  # noqa: E731
        manifest = write(path("kinds.yaml"), MANIFEST)

        # A kind podless does not run: refused, named, nothing applied.
        refused = write(path("with-configmap.yaml"), MANIFEST + CONFIGMAP)
        r = agent.cli("apply", "-f", refused, expect_ok=False)
        check(r.returncode != 0, "an apply with a ConfigMap succeeded")
        check("with-configmap.yaml:16:7: kind: unsupported kind \"ConfigMap\" (v1)" in r.stderr
              and "--skip-unsupported" in r.stderr, f"the refusal does not say what and where:\n{r.stderr}")
        r = agent.cli("get", "namespaces", "--no-headers", expect_ok=False)
        check("shop" not in r.stdout, f"a refused apply left objects behind: {r.stdout}")

        # Skipped on request, and said so; the rest applies.
        r = agent.cli("apply", "-f", refused, "--skip-unsupported")
        check("configmap/settings skipped (ConfigMap v1 is not run by podless; " in r.stdout,
              f"the skipped document is not listed:\n{r.stdout}")
        check("namespace/shop created" in r.stdout and "serviceaccount/web -n shop created" in r.stdout
              and r.stdout.count("namespace/shop created") == 1,
              f"apply output:\n{r.stdout}")
        check("automountServiceAccountToken: ignored" in r.stderr,
              f"no warning for a field podless does not act on:\n{r.stderr}")

        # The same text again changes nothing.
        r = agent.cli("apply", "-f", manifest)
        check("namespace/shop unchanged" in r.stdout and "serviceaccount/web -n shop unchanged" in r.stdout,
              f"a re-apply of the same file changed something:\n{r.stdout}")

        # Shown in the kind it was applied as, annotations included.
        r = agent.cli("get", "serviceaccount", "web", "-n", "shop", "-o", "yaml")
        check("apiVersion: v1\nkind: ServiceAccount\n" in r.stdout
              and "owner: alice@example.com" in r.stdout
              and "automountServiceAccountToken: false" in r.stdout,
              f"get -o yaml is not the applied document:\n{r.stdout}")
        r = agent.cli("get", "ns", "--show-labels", "--no-headers", expect_ok=False)
        check("shop" in r.stdout and "team=payments" in r.stdout, f"get ns: {r.stdout}")

        # What get -o yaml prints applies again, unchanged.
        shown = agent.cli("get", "sa", "web", "-n", "shop", "-o", "yaml").stdout
        again = write(path("again.yaml"), shown)
        r = agent.cli("apply", "-f", again)
        check("serviceaccount/web -n shop unchanged" in r.stdout, f"get -o yaml re-applied:\n{r.stdout}")

        # Durable: the kinds and their documents survive a restart.
        agent.stop()
        agent.start()
        r = agent.cli("apply", "-f", manifest)
        check("namespace/shop unchanged" in r.stdout and "serviceaccount/web -n shop unchanged" in r.stdout,
              f"after a restart the objects differ from the file:\n{r.stdout}")

        r = agent.cli("delete", "-f", manifest)
        r = agent.cli("get", "sa", "-n", "shop", "--no-headers", expect_ok=False)
        check("web" not in r.stdout, f"a deleted ServiceAccount is still listed: {r.stdout}")
    print("PASS")


if __name__ == "__main__":
    main()
