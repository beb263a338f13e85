"""Security review (issue 18), points 8 and 10: an apply with thousands of
errors, or a YAML alias bomb that expands to them, answers at once with the
first errors (file:line:col) and a count of the rest, through the CLI and a
stock gRPC client alike; fields over their size limits are refused at apply,
naming the field and the limit; a stuck agent makes the CLI give up with a
clear message instead of hanging."""

import os
import re
import signal
import subprocess
import tempfile
import time

from harness import PODLESS, check, grpc_stubs, running_agent, write

grpc_stubs()

import grpc  # noqa: E402
from podless.v1 import runtime_pb2 as pb  # noqa: E402
from podless.v1 import runtime_pb2_grpc as rpc  # noqa: E402

# One error per principal: 1,000 of them (one line each).
PRINCIPALS = ", ".join(f'"bad principal {i}"' for i in range(1000))
MANY_ERRORS = f"""apiVersion: podless.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: many}}
spec:
  action: ALLOW
  rules:
    - from:
        - source:
            principals: [{PRINCIPALS}]
"""


def alias_bomb():
    """About 860 bytes of YAML whose aliases expand to 50 rules x 50 sources x 50
    bad principals: 125,000 errors, if the parser's node budget let it."""
    principals = '[&b "bad principal", ' + ", ".join(["*b"] * 49) + "]"
    sources = "[&s {source: {principals: " + principals + "}}, " + ", ".join(["*s"] * 49) + "]"
    rules = "[&r {from: " + sources + "}, " + ", ".join(["*r"] * 49) + "]"
    text = ("apiVersion: podless.dev/v1alpha1\nkind: AuthorizationPolicy\n"
            "metadata: {name: bomb}\nspec:\n  rules: " + rules + "\n")
    check(len(text) < 1024, f"alias bomb is {len(text)} bytes")
    return text


def static_workload(name, body_size):
    # The body is one long plain scalar on line 7.
    return f"""apiVersion: podless.dev/v1alpha1
kind: Workload
metadata: {{name: {name}}}
spec:
  ports: [{{name: http, port: 8080}}]
  app:
    static: {{body: {"b" * body_size}}}
"""


def timed_cli(agent, *args, limit=20):
    start = time.time()
    try:
        r = agent.cli(*args, expect_ok=False, timeout=limit + 10)
    except subprocess.TimeoutExpired:
        check(False, f"podless {' '.join(args)} still runs after {limit + 10}s")
    took = time.time() - start
    check(took < limit, f"podless {' '.join(args)} took {took:.1f}s")
    return r


def check_error_list(r, path, what):
    check(r.returncode == 1, f"{what}: exit {r.returncode}\n{r.stderr}")
    err = r.stderr
    located = re.search(re.escape(path) + r":\d+:\d+: spec\.rules\[\d+\]\.from\[\d+\]"
                        r"\.source\.principals\[\d+\]: invalid principal", err)
    check(located is not None, f"{what}: no located error:\n{err[:2000]}")
    more = re.search(r"\n\.\.\. and (\d+) more errors\n?$", err)
    check(more is not None, f"{what}: no count of the rest:\n{err[-500:]}")
    check(len(err) < 4096, f"{what}: {len(err)} bytes of errors")
    return int(more.group(1))


with running_agent() as agent, tempfile.TemporaryDirectory() as tmp:
    # Point 8 through the CLI: 1,000 errors and an alias bomb.
    many = write(os.path.join(tmp, "many.yaml"), MANY_ERRORS)
    r = timed_cli(agent, "apply", "-f", many)
    rest = check_error_list(r, many, "1,000 errors")
    shown = r.stderr.count("invalid principal")
    check(shown + rest == 1000, f"{shown} shown + {rest} counted != 1000")
    check(f"{many}:9:26: spec.rules[0].from[0].source.principals[0]: " in r.stderr, r.stderr[:500])

    bomb = write(os.path.join(tmp, "bomb.yaml"), alias_bomb())
    r = timed_cli(agent, "apply", "-f", bomb)
    check(check_error_list(r, bomb, "alias bomb") > 1000, r.stderr[-200:])
    r = timed_cli(agent, "apply", "--dry-run", "-f", bomb)
    check(r.returncode == 1 and "more errors" in r.stderr, r.stderr[-200:])

    # Point 8 through a stock gRPC client: INVALID_ARGUMENT with the same
    # (short) text, not a call that never ends.
    channel = grpc.insecure_channel("unix:" + agent.socket)
    api = rpc.RuntimeStub(channel)
    for name, text in (("many.yaml", MANY_ERRORS), ("bomb.yaml", alias_bomb())):
        start = time.time()
        try:
            api.Apply(pb.ApplyRequest(manifest=text, source_name=name), timeout=20)
            check(False, f"{name}: Apply succeeded")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {e.code()} {e.details()}")
            details = e.details()
        check(time.time() - start < 20, f"{name}: the stock client waited {time.time() - start:.1f}s")
        check(re.match(re.escape(name) + r":\d+:\d+: ", details) is not None, details[:200])
        check(re.search(r"\.\.\. and \d+ more errors$", details) is not None, details[-200:])
        check(len(details.encode()) <= 4096, f"{name}: {len(details)} bytes")
    # The CLI prints exactly what the API answers (run where many.yaml is,
    # so that both name it the same).
    api_text = ""
    try:
        api.Apply(pb.ApplyRequest(manifest=MANY_ERRORS, source_name="many.yaml"), timeout=20)
    except grpc.RpcError as e:
        api_text = e.details()
    cli = subprocess.run([os.path.abspath(PODLESS), "--socket", agent.socket, "apply", "-f", "many.yaml"],
                         cwd=tmp, capture_output=True, text=True, timeout=30)
    check(api_text and cli.stderr.strip() == "error: " + api_text.strip(),
          f"CLI and API disagree:\nCLI: {cli.stderr[-300:]}\nAPI: {api_text[-300:]}")

    # Point 10: a 2 MiB static body is refused, naming the field and the limit;
    # 1 MiB is accepted and `get -A` still answers.
    big = write(os.path.join(tmp, "big-body.yaml"), static_workload("big", 2 << 20))
    r = timed_cli(agent, "apply", "-f", big)
    check(r.returncode == 1, f"2 MiB body: exit {r.returncode}")
    check(f"{big}:7:20: spec.app.static.body: is 2097152 bytes, more than the limit of 1 MiB"
          in r.stderr, r.stderr[:500])
    check(agent.config_dump()["workloads"] == [], "a refused apply changed state")
    ok = write(os.path.join(tmp, "ok-body.yaml"), static_workload("ok", 1 << 20))
    agent.cli("apply", "-f", ok)
    r = agent.cli("get", "workloads", "-A", "-o", "yaml")
    check(len(r.stdout) > (1 << 20), f"get -A -o yaml printed {len(r.stdout)} bytes")

    # A manifest file over 16 MiB is refused as a whole, by name.
    huge = write(os.path.join(tmp, "huge.yaml"), "# " + "x" * (16 << 20) + "\n" + static_workload("h", 1))
    r = timed_cli(agent, "apply", "-f", huge)
    check(r.returncode == 1 and f"{huge}: the manifest is " in r.stderr
          and "more than the limit of 16 MiB per file" in r.stderr, r.stderr[:500])

    # The agent is unharmed.
    status, _ = agent.http("/ready")
    check(status == 200, "agent not ready after the oversized applies")
    channel.close()

    # A stuck agent: the CLI gives up after its deadline with a clear message.
    os.kill(agent.proc.pid, signal.SIGSTOP)
    try:
        start = time.time()
        r = agent.cli("apply", "-f", ok, expect_ok=False, timeout=60)
        took = time.time() - start
    finally:
        os.kill(agent.proc.pid, signal.SIGCONT)
    check(r.returncode == 1 and took < 40, f"exit {r.returncode} after {took:.1f}s")
    check("apply: the agent did not answer within 30 s" in r.stderr
          and "may or may not have taken effect" in r.stderr, r.stderr)
    agent.cli("get", "workloads", "-A")

print("apply_error_limits: ok")
