"""Crash trials (issue 8): the agent is killed with SIGKILL at a random
moment during a stream of API calls that change state: multi-object applies
(a Workload and its Service), re-applies that scale and relabel, Register,
RegisterBatch (three workloads in one step), Delete of a manifest's objects,
Deregister. After every kill it is restarted on the same state dir, and:
  - the state files are readable (the agent starts and serves),
  - every acknowledged change is there, exactly (replicas, labels, selector),
    and every acknowledged delete stays deleted,
  - the one call that was in flight when the kill came is either applied
    whole or not at all (never half of a multi-object step),
  - nothing that was never sent exists,
  - replicas of workloads no call touched keep their addresses across
    restarts; no address is handed out twice.

  crash_trials.py                # 3 trials (the test suite)
  crash_trials.py --trials 100   # the long mode (a few minutes)
  PODLESS_CRASH_TRIALS=N crash_trials.py
"""

import argparse
import os
import random
import threading
import time

import manifests
from harness import Agent, check, grpc_stubs

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--trials", type=int, default=int(os.environ.get("PODLESS_CRASH_TRIALS", "3")))
parser.add_argument("--seed", type=int, default=None, help="random seed (printed otherwise)")
args = parser.parse_args()
seed = args.seed if args.seed is not None else random.randrange(1 << 30)
rng = random.Random(seed)
print(f"crash_trials: {args.trials} trials, seed {seed}", flush=True)

grpc_stubs()

import grpc  # noqa: E402
from podless.v1 import runtime_pb2 as pb  # noqa: E402
from podless.v1 import runtime_pb2_grpc as rpc  # noqa: E402

NS = "crash"


def workload_yaml(name, replicas, gen):
    return manifests.workload(name, NS, replicas, {"app": name, "gen": gen}, name)


def service_yaml(name, app):
    return manifests.service(name, NS, {"app": app}, port_name=None)


def workload_pb(name):
    w = pb.Workload()
    w.metadata.name = name
    w.metadata.namespace = NS
    w.metadata.labels.update({"app": name, "gen": "1"})
    w.spec.replicas.value = 1
    w.spec.service_account = name
    p = w.spec.ports.add()
    p.name, p.port, p.protocol = "http", 8080, pb.HTTP
    w.spec.app.echo.SetInParent()
    return w


def observe(api):
    """(key -> fingerprint, replica name -> address) as the agent has it."""
    state, addresses = {}, {}
    for o in api.List(pb.ListRequest(kind=pb.WORKLOAD, namespace=NS), timeout=10).objects:
        w = o.workload
        state[("W", w.metadata.name)] = (w.spec.replicas.value, w.metadata.labels.get("gen"))
        for r in w.status.replicas:
            addresses[r.name] = r.address
    for o in api.List(pb.ListRequest(kind=pb.SERVICE, namespace=NS), timeout=10).objects:
        s = o.service
        state[("S", s.metadata.name)] = (s.spec.selector.get("app"),)
    return state, addresses


class Stream:
    """The client: one change at a time, each recorded once acknowledged."""

    def __init__(self, api, acked, counter):
        self.api = api
        self.acked = acked      # key -> fingerprint, as acknowledged
        self.counter = counter  # names are never reused
        self.in_flight = None   # (description, effects) of the call the kill interrupted
        self.calls = 0
        self.error = None
        self.touched = set()    # workloads a call of this trial changed (may have changed)

    def next_op(self):
        present = [k for k, v in self.acked.items() if v is not None]
        pairs = [k[1] for k in present if k[0] == "W" and k[1].startswith("w")
                 and ("S", "s" + k[1][1:]) in present]
        singles = [k[1] for k in present if k[0] == "W" and k[1][0] in "rb"]
        choices = ["apply", "register", "batch"]
        if pairs:
            choices += ["scale", "delete"]
        if singles:
            choices += ["deregister"]
        if len(present) > 400:
            # Keep the state (and the restarts) small in long runs: deletes only.
            choices = [c for c in choices if c in ("delete", "deregister")]
        kind = rng.choice(choices)
        self.counter[0] += 1
        n = self.counter[0]
        if kind == "apply":
            w, s = f"w{n}", f"s{n}"
            return (f"apply {w}+{s}", {("W", w): (2, "1"), ("S", s): (w,)},
                    lambda: self.api.Apply(pb.ApplyRequest(
                        manifest=workload_yaml(w, 2, "1") + "---\n" + service_yaml(s, w),
                        source_name="crash.yaml"), timeout=10))
        if kind == "register":
            r = f"r{n}"
            return (f"register {r}", {("W", r): (1, "1")},
                    lambda: self.api.Register(pb.RegisterRequest(workload=workload_pb(r)),
                                              timeout=10))
        if kind == "batch":
            names = [f"b{n}x{i}" for i in range(3)]
            return (f"batch {names}", {("W", b): (1, "1") for b in names},
                    lambda: self.api.RegisterBatch(pb.RegisterBatchRequest(
                        workloads=[workload_pb(b) for b in names]), timeout=10))
        if kind == "scale":
            w = rng.choice(pairs)
            replicas, gen = self.acked[("W", w)]
            new = (3 if replicas == 2 else 2, str(int(gen) + 1))
            return (f"scale {w} to {new}", {("W", w): new},
                    lambda: self.api.Apply(pb.ApplyRequest(
                        manifest=workload_yaml(w, *new), source_name="scale.yaml"), timeout=10))
        if kind == "delete":
            w = rng.choice(pairs)
            s = "s" + w[1:]
            return (f"delete {w}+{s}", {("W", w): None, ("S", s): None},
                    lambda: self.api.Delete(pb.DeleteRequest(
                        manifest=workload_yaml(w, 1, "0") + "---\n" + service_yaml(s, w),
                        source_name="delete.yaml"), timeout=10))
        r = rng.choice(singles)
        return (f"deregister {r}", {("W", r): None},
                lambda: self.api.Deregister(pb.DeregisterRequest(namespace=NS, name=r),
                                            timeout=10))

    def run(self, stop):
        while True:
            description, effects, call = self.next_op()
            self.touched.update(k[1] for k in effects if k[0] == "W")
            try:
                call()
            except grpc.RpcError as e:
                if stop.is_set():
                    self.in_flight = (description, effects)  # unknown outcome
                else:
                    self.error = f"{description}: {e.code()} {e.details()}"
                return
            self.acked.update(effects)
            self.calls += 1


agent = Agent()
acked = {}
addresses = {}
counter = [0]
in_flight_applied = 0
in_flight_total = 0
calls = 0
started = time.time()
try:
    for trial in range(args.trials):
        agent.start()
        channel = grpc.insecure_channel("unix:" + agent.socket)
        api = rpc.RuntimeStub(channel)
        stream = Stream(api, acked, counter)
        stop = threading.Event()
        t = threading.Thread(target=stream.run, args=(stop,))
        t.start()
        time.sleep(rng.uniform(0.2, 1.5))
        stop.set()  # before the kill: an error from now on is the kill's doing
        agent.kill9()
        t.join(30)
        check(not t.is_alive(), f"trial {trial}: the client hangs")
        check(stream.error is None, f"trial {trial}: a call failed while the agent ran: "
              f"{stream.error}")
        channel.close()
        calls += stream.calls

        agent.start()  # the state files must be readable
        channel = grpc.insecure_channel("unix:" + agent.socket)
        api = rpc.RuntimeStub(channel)
        state, now_addresses = observe(api)
        channel.close()
        pending = stream.in_flight[1] if stream.in_flight else {}
        for key in set(acked) | set(pending) | set(state):
            allowed = {acked.get(key)}
            if key in pending:
                allowed.add(pending[key])
            check(state.get(key) in allowed,
                  f"trial {trial}: {key} is {state.get(key)}, expected one of {allowed} "
                  f"(acknowledged: {acked.get(key)}; in flight: {stream.in_flight})")
        if pending:
            whole = all(state.get(k) == v for k, v in pending.items())
            none = all(state.get(k) == acked.get(k) for k in pending)
            check(whole or none, f"trial {trial}: {stream.in_flight[0]} half-applied: "
                  + ", ".join(f"{k}={state.get(k)}" for k in pending))
            in_flight_total += 1
            in_flight_applied += whole and not none
        for name, address in now_addresses.items():
            # A scaled workload may have dropped a replica and made it anew.
            if name in addresses and name.rsplit("-", 1)[0] not in stream.touched:
                check(addresses[name] == address,
                      f"trial {trial}: {name} moved from {addresses[name]} to {address}")
        check(len(set(now_addresses.values())) == len(now_addresses),
              f"trial {trial}: an address handed out twice: {sorted(now_addresses.items())}")
        # The truth from now on (the in-flight call resolved one way).
        acked.clear()
        acked.update({k: v for k, v in state.items()})
        addresses = dict(now_addresses)
        agent.kill9()
        if (trial + 1) % 10 == 0:
            print(f"crash_trials: {trial + 1} trials, {calls} acknowledged calls", flush=True)
    check(calls > 0, "no call was acknowledged at all")
    print(f"crash_trials: ok ({args.trials} kills in {time.time() - started:.0f}s, {calls} "
          f"acknowledged calls, {in_flight_total} interrupted ({in_flight_applied} of them "
          f"applied whole), {len(acked)} objects at the end)")
finally:
    agent.cleanup()
