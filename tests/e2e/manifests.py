"""Manifests of podless's own kinds for the end-to-end tests, built from the
few fields a test varies (YAML text, as `podless apply -f` reads it)."""


def _flow(mapping):
    """{k: v} as a YAML flow mapping of strings: {k: "v", ...}."""
    return "{" + ", ".join(f'{k}: "{v}"' for k, v in mapping.items()) + "}"


def workload(name, namespace, replicas=1, labels=None, service_account=None, port=8080):
    """A Workload: `replicas` replicas of the in-proxy echo app serving HTTP
    on `port` (port name "http"), labelled `labels` and running as
    `service_account` when given (else none, and the namespace's default)."""
    metadata = f"{{name: {name}, namespace: {namespace}"
    metadata += f", labels: {_flow(labels)}}}" if labels else "}"
    account = f"  serviceAccount: {service_account}\n" if service_account else ""
    return f"""apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {metadata}
spec:
  replicas: {replicas}
{account}  ports: [{{name: http, port: {port}, protocol: HTTP}}]
  app: {{echo: {{}}}}
"""


def service(name, namespace, selector, port=80, target="http", port_name="http"):
    """A Service selecting `selector` ({label: value}) with one port,
    `port_name` (None: unnamed), `port` to the workloads' `target` (a port
    name or number)."""
    named = f"name: {port_name}, " if port_name else ""
    return f"""apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {_flow(selector)}
  ports: [{{{named}port: {port}, targetPort: {target}}}]
"""
