"""The CLI as a new user meets it (issue 17, points 6, 4, 3, 9): per-command
--help, `podless version`, both flag spellings, unknown commands named with
the nearest one and a short usage; delete -f deleting what exists and
reporting each missing object as NotFound; `get -o json` the same object as
`-o yaml` and applicable again; `apply` telling a new namespace; the name
length message; `get nodes` AGE."""

import json
import os
import subprocess
import tempfile

from harness import PODLESS, SOURCE_ROOT, check, running_agent, write

HELLO = os.path.join(SOURCE_ROOT, "examples", "hello.yaml")

TWO = """apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: one, namespace: cliux, labels: {app: one, tier: a}}
spec:
  ports: [{name: http, port: 8080, protocol: HTTP}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {name: two, namespace: cliux, labels: {app: two, tier: b}}
spec:
  replicas: 2
  ports: [{name: http, port: 8080, protocol: HTTP}]
  app: {echo: {}}
---
apiVersion: podless.dev/v1alpha1
kind: Service
metadata: {name: one, namespace: cliux}
spec:
  selector: {app: one}
  ports: [{name: http, port: 80, targetPort: http}]
"""


def load_yaml(text):
    """YAML as JSON reads it: timestamps stay strings (python3-yaml)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass
    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return yaml.load(text, Loader=Loader)


def run(*args, input=None):
    return subprocess.run([PODLESS] + list(args), input=input, capture_output=True, text=True,
                          timeout=30)


def offline_checks():
    """What needs no agent: help, version, usage errors."""
    # Per-command help, on stdout, exit 0, naming the command's own flags.
    for command, flag in (("get", "--show-labels"), ("delete", "--ignore-not-found"),
                          ("apply", "--dry-run"), ("logs", "--all-replicas"),
                          ("scale", "--replicas"), ("credentials", "http_proxy")):
        for spelling in ("--help", "-h"):
            r = run(command, spelling)
            check(r.returncode == 0, f"{command} {spelling}: exit {r.returncode}: {r.stderr}")
            check(r.stdout.startswith(f"usage: podless {command}") and flag in r.stdout,
                  f"{command} {spelling}: {r.stdout}")
    r = run("help", "get")
    check(r.returncode == 0 and "--selector" in r.stdout, "help get: " + r.stdout)
    r = run("--help")
    check(r.returncode == 0 and "scale" in r.stdout and "version" in r.stdout, r.stdout)

    # version
    r = run("version")
    check(r.returncode == 0 and r.stdout.startswith("podless ") and r.stdout.strip() != "podless",
          "version: " + r.stdout + r.stderr)
    check(run("--version").stdout == r.stdout, "--version differs from version")

    # An unknown command: named, the nearest suggested, no global usage dump.
    r = run("scal", "workload/x", "--replicas", "3")
    check(r.returncode == 2, f"scal: exit {r.returncode}")
    check('unknown command "scal"' in r.stderr and "Did you mean this?\n\tscale" in r.stderr,
          "scal: " + r.stderr)
    check("--replicas" not in r.stderr and "Commands:" not in r.stderr,
          "unknown command printed more than its problem: " + r.stderr)
    r = run("gte", "workloads")
    check("\tget" in r.stderr, "gte: " + r.stderr)
    r = run("frobnicate")
    check('unknown command "frobnicate"' in r.stderr and "Did you mean" not in r.stderr, r.stderr)

    # A usage mistake in a command: that command's usage line, not every command's.
    r = run("get", "--bogus")
    check(r.returncode == 2 and "unknown flag --bogus" in r.stderr, "get --bogus: " + r.stderr)
    check("usage: podless get" in r.stderr and "Commands:" not in r.stderr, r.stderr)
    r = run("get", "--show-lables")
    check("did you mean --show-labels" in r.stderr, "flag suggestion: " + r.stderr)
    r = run("get", "-o")
    check(r.returncode == 2 and "missing value" in r.stderr, "get -o: " + r.stderr)
    # ca init and run take --flag=value as well.
    r = run("ca", "init", "--etcd=http://127.0.0.1:1")
    check(r.returncode == 2 and "--etcd and --out are required" in r.stderr, "ca init: " + r.stderr)
    r = run("run", "--svid-ttl=soon")
    check(r.returncode == 2 and "--svid-ttl" in r.stderr and "unknown flag" not in r.stderr, r.stderr)
    r = run("apply", "--dry-run=maybe", "-f", HELLO)
    check(r.returncode == 2 and "--dry-run" in r.stderr and "client" in r.stderr, r.stderr)


def main():
    offline_checks()
    with running_agent() as agent:
        sock = agent.socket
        # Both flag spellings, for global and command flags.
        agent.cli("apply", f"--filename={HELLO}")
        r = run(f"--socket={sock}", "get", "workloads", "-o=wide", "-n=default")
        check(r.returncode == 0 and "SPIFFE-ID" in r.stdout, "-o=wide -n=default: " + r.stderr)
        check(run("--socket", sock, "get", "workloads", "-owide").stdout == r.stdout, "-owide")
        check(run("--socket", sock, "get", "workloads", "--output", "wide", "--namespace",
                  "default").stdout == r.stdout, "--output wide")
        state_dir = os.path.dirname(sock)
        check(run(f"--state-dir={state_dir}", "get", "workloads", "--output=wide").stdout ==
              r.stdout, "--state-dir=DIR")
        check(run("get", "workloads", "-o", "wide", f"--socket={sock}").stdout == r.stdout,
              "--socket after the command")
        check(run("get", "workloads", "--state-dir", state_dir, "-owide").stdout == r.stdout,
              "--state-dir after the command")
        for dry in ("--dry-run", "--dry-run=client", "--dry-run=server"):
            r = agent.cli("apply", "-f", HELLO, dry)
            check("(dry run)" in r.stdout, f"{dry}: {r.stdout}")
        r = agent.cli("apply", "-f", HELLO, "--dry-run=none")
        check("(dry run)" not in r.stdout and "unchanged" in r.stdout, "--dry-run=none: " + r.stdout)

        # A new namespace is told; an existing one is not.
        m = write(os.path.join(agent.state_dir, "two.yaml"), TWO)
        r = agent.cli("apply", "-f", m)
        check(r.stdout.splitlines()[0] == "namespace/cliux created", "new namespace: " + r.stdout)
        r = agent.cli("apply", "-f", m)
        check("namespace/" not in r.stdout, "existing namespace reported again: " + r.stdout)

        # -o json is -o yaml's object: same keys and values, apiVersion/kind,
        # enum names as in manifests, and it applies again unchanged.
        as_yaml = agent.cli("get", "workload", "two", "-n", "cliux", "-o", "yaml").stdout
        as_json = json.loads(agent.cli("get", "workload", "two", "-n", "cliux", "-o", "json").stdout)
        check(as_json["apiVersion"] == "podless.dev/v1alpha1" and as_json["kind"] == "Workload",
              f"json head: {as_json}")
        check(as_json["metadata"]["name"] == "two" and as_json["spec"]["replicas"] == 2, str(as_json))
        check(as_json["spec"]["ports"][0] == {"name": "http", "port": 8080, "protocol": "HTTP"},
              "ports: " + str(as_json["spec"]["ports"]))
        check(len(as_json["status"]["replicas"]) == 2, "status: " + str(as_json.get("status")))
        check(load_yaml(as_yaml) == as_json, f"yaml and json differ:\n{as_yaml}\n{as_json}")
        r = agent.cli("apply", "-f", "-", input=json.dumps(as_json))
        check(r.stdout.strip() == "workload/two -n cliux unchanged", "json re-apply: " + r.stdout)
        listing = json.loads(agent.cli("get", "workloads", "-A", "-o", "json").stdout)
        check(listing["kind"] == "List" and len(listing["items"]) == 3, str(listing)[:300])
        check(load_yaml(agent.cli("get", "workloads", "-A", "-o", "yaml").stdout) == listing,
              "list: yaml and json differ")
        r = agent.cli("apply", "-f", "-", input=json.dumps(listing))
        check(r.stdout.count("unchanged") == 3, "json list re-apply: " + r.stdout)
        policy = json.loads(agent.cli("get", "policy", "hello-allow", "-o", "json").stdout)
        check(policy["spec"]["action"] == "ALLOW", str(policy))

        # delete -f deletes what exists, reports each missing one, exits 1.
        agent.cli("delete", "workload", "one", "-n", "cliux")
        r = agent.cli("delete", "-f", m, expect_ok=False)
        check(r.returncode == 1, f"delete -f with a missing object: exit {r.returncode}")
        check("workload/two -n cliux deleted" in r.stdout and
              "service/one -n cliux deleted" in r.stdout, "delete -f stdout: " + r.stdout)
        check(r.stderr.strip() == "Error from server (NotFound): workload/one -n cliux not found",
              "delete -f stderr: " + r.stderr)
        check("No workloads found" in agent.cli("get", "workloads", "-n", "cliux").stderr,
              "delete -f left objects")
        r = agent.cli("delete", "-f", m, "--ignore-not-found")
        check(r.stdout == "" and r.stderr == "", f"--ignore-not-found: {r.stdout!r} {r.stderr!r}")
        r = agent.cli("delete", "workload", "nope", "hello", expect_ok=False)
        check(r.returncode == 1 and "workload/hello deleted" in r.stdout and
              "workload/nope not found" in r.stderr, f"delete by names: {r.stdout} {r.stderr}")

        # The name-length message states the real limit.
        long_name = "a" * 66
        r = agent.cli("apply", "-f", "-", expect_ok=False,
                      input=f"apiVersion: podless.dev/v1alpha1\nkind: Workload\n"
                            f"metadata: {{name: {long_name}}}\n")
        check(r.returncode != 0 and "no more than 56 characters" in r.stderr and
              "63 characters" not in r.stderr.split("stay within")[0], "66-char name: " + r.stderr)

        # get nodes: AGE of this node.
        nodes = agent.cli("get", "nodes").stdout.splitlines()
        header, row = nodes[0].split(), nodes[1].split()
        age = row[header.index("AGE")]
        check(age != "<none>" and age.endswith("s"), "get nodes AGE: " + "\n".join(nodes))
        check(agent.cli("get", "nodes", "-o", "name").stdout.startswith("node/"), "nodes -o name")
    print("ok")


if __name__ == "__main__":
    main()
