"""The reliability suite: a hostile delivery of a generated event stream, then invariants.

    python -m tools.reliability [--full] [--seed N] [--db URL [--reset]] [--mutant NAME] [--json FILE]

What it does (``make test`` runs the small size on every store it has; ``--full`` the large one):
1. an emulator with a generated fleet: opted-in (``true``/``always``), not opted-in, locked, a
   flapping and spot instances, the spot ones in CLB default and vServer groups of distinct
   weights (and a master-slave group), next to on-demand members that must never be touched;
2. a scenario: unexpected stops, user stops, locked stops, an instance that crashes again each
   time it is started, spot interruptions (half reclaimed during the run, one whose reclaim is
   called off so its drain must be undone exactly), releases;
3. every event the emulator emits is delivered at least twice, in a random envelope kept per
   event, shuffled within a window, interleaved with poison elements and with forged (a spot
   notice for an on-demand instance) and foreign (another account's) notices, while the
   emulator is slow, injects throttling, 5xx, dropped connections and the documented busy codes,
   loses the answers of some writes it applied, and the store is down for a stretch. Each call
   gets only :data:`API_MAX_ATTEMPTS` attempts, so cloud faults reach the platform's retry;
4. real processes: some spot notices are first delivered to a ``drain_spot`` subprocess that is
   SIGKILLed at a random moment or in the middle of its weight-0 wait, and one is delivered
   through two envelopes to two processes at once; the platform redelivers what died or raised;
5. a compressed clock: the notice period is :attr:`Size.notice_s` seconds and the drain time
   :data:`DRAIN_TIME_S`, one notice is held back into the margin (fast path) and one past its
   deadline (leftover path), so the deadline invariant can fail; ActionTrail lags the calls
   (``TRAIL_LAG_S``) and the sweep's timer fires every ``SWEEP_EVERY_S``;
6. the invariants, checked one by one from the store, the ledger, the emulator's state, call
   log and event log (:data:`INVARIANTS`).

``--mutant NAME`` runs the same with a sabotaged build (:mod:`tools.mutants`), in this process
and in its subprocesses: the report must then name a broken invariant.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import log
from shared.store import Store
from tools.emulator import Emulator, Fleet
from tools.envelopes import ENVELOPES, wrap, wrap_object
from tools.invoke import applied_environment, invoke_local
from tools.mutants import MUTANT_ENV, MUTANTS, applied

POISON = [
    b'{"name": "Instance:StateChange", "content": {"resourceId": "i-',  # truncated JSON
    b'{"hello": "world"}',  # unknown envelope
    json.dumps({"ver": "1.0", "id": "poison-bad-id", "name": "Instance:StateChange",
                "eventTime": "20260101T000000.000+0800", "regionId": "cn-hangzhou",
                "content": {"resourceId": "i-../../etc/passwd", "state": "Stopped"}}).encode(),
    json.dumps({"ver": "1.0", "id": "poison-bad-time", "name": "Instance:PreemptibleInstanceInterruption",
                "eventTime": "yesterday", "content": {"instanceId": "i-bp1poison0000001", "action": "delete"}}).encode(),
    b"\xff\xfe\x00\x01",
]
INVARIANTS = (
    "recorded_once",  # every emitted event recorded exactly once
    "started_once",  # every eligible instance started once, the flapper capped, no other started
    "drained_by_deadline",  # every removable membership of a notice removed by its deadline, or flagged
    "gentle",  # weight 0 before removal whenever the notice left time for the drain
    "weight0_only_live",  # no member left at weight 0 unless its drain's lease is live
    "others_untouched",  # no write names a server that was not interrupted; their weights intact
    "nothing_from_forged",  # no write, start or drain from a forged, foreign or poison event
    "originals_exact",  # recorded originals are the fleet's weights; undone drains restore them
    "delivered",  # every delivery eventually succeeded (nothing lost to the platform's retries)
)
ACCOUNT = "1234567890123456"
FOREIGN_ACCOUNT = "9876543210987654"
REGION = "cn-hangzhou"
MAX_ATTEMPTS = 10  # deliveries of one body before the modelled platform gives up
MAX_RUN_S = 300.0  # a run that has not settled by then is reported as it is
DOWN_DB = "postgresql+psycopg://nobody@127.0.0.1:1/unreachable"
# ActionTrail as documented (up to 10 minutes before a call shows, LookupEvents 2 calls/s), on
# the suite's compressed clock: a record shows TRAIL_LAG_S after the call, auto_start leaves a
# "true" stop without one to the sweep until SETTLE_S old, and the sweep's timer (every five
# minutes in production) fires every SWEEP_EVERY_S.
TRAIL_LAG_S = 1.0
TRAIL_QPS = 2.0
SETTLE_S = 2
SWEEP_EVERY_S = 1.0
SWEEP_BODY = json.dumps({"triggerTime": "now", "triggerName": "sweep", "payload": ""}).encode()
# The compressed drain: 300 s notice / 30 s margin / 60 s drain in production.
MARGIN_S = 2
DRAIN_TIME_S = 1.5
LEASE_GRACE_S = 1.0  # a killed drain's lease is taken over this long after its planned wait
RESTORE_AFTER_S = 1
FLAP_MAX_STARTS = 2
SLICE = 8  # deliveries between two looks at the clock (new events, processes, the sweep's timer)
PLATFORM_RETRY_S = 0.5  # a failed delivery comes again this much later
FLAP_CRASHES = FLAP_MAX_STARTS + 2  # crashes of the flapper: the last ones must not be started
API_MAX_ATTEMPTS = 2  # per call: a fault twice in a row reaches the platform's retry
WEIGHTS = {"default": 100, 80: 30, 8080: 50, 443: 70, 9000: 100}  # by port: restores are exact
CLB_WRITES = ("SetBackendServers", "SetVServerGroupAttribute", "RemoveBackendServers",
              "RemoveVServerGroupBackendServers", "AddBackendServers", "AddVServerGroupBackendServers")
REMOVALS = ("RemoveBackendServers", "RemoveVServerGroupBackendServers")
WEIGHT_WRITES = ("SetBackendServers", "SetVServerGroupAttribute")


@dataclass(frozen=True)
class Size:
    instances: int  # per role
    fault_rate: float  # 5xx, drops and the action's documented busy codes (SystemBusy, ...)
    window: int
    outage: int  # deliveries during which the store is down
    lose_rate: float = 0.0  # writes applied whose answer is then lost (5xx or dropped)
    notice_s: int = 12  # the spot notice period on the compressed clock
    latency_ms: float = 5.0  # every cloud answer this late
    kills: int = 2  # spot notices first delivered to a subprocess killed at a random moment


SMALL = Size(instances=3, fault_rate=0.05, window=6, outage=6, lose_rate=0.05, notice_s=40,
             latency_ms=5.0, kills=2)
TINY = Size(instances=1, fault_rate=0.05, window=6, outage=4, lose_rate=0.05, notice_s=30,
            latency_ms=5.0, kills=1)  # the mutants' and sabotages' size
FULL = Size(instances=8, fault_rate=0.08, window=20, outage=20, lose_rate=0.05, notice_s=60,
            latency_ms=10.0, kills=6)


def function_env(size: Size) -> dict[str, str]:
    return {"ECS_EVENT_OPS_DRAIN_TIME_S": str(DRAIN_TIME_S), "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01",
            "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05", "ECS_EVENT_OPS_API_MAX_ATTEMPTS": str(API_MAX_ATTEMPTS),
            "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": str(SETTLE_S),
            "ECS_EVENT_OPS_SPOT_NOTICE_S": str(size.notice_s), "ECS_EVENT_OPS_SPOT_MARGIN_S": str(MARGIN_S),
            "ECS_EVENT_OPS_DRAIN_LEASE_GRACE_S": str(LEASE_GRACE_S),
            "ECS_EVENT_OPS_RESTORE_AFTER_S": str(RESTORE_AFTER_S),
            "ECS_EVENT_OPS_FLAP_MAX_STARTS": str(FLAP_MAX_STARTS)}


@dataclass
class Delivery:
    body: bytes
    functions: tuple[str, ...]
    poison: int = 0  # poison elements inside
    alone: bool = False  # nothing but poison: no function may call the cloud for it
    attempts: int = 0
    not_before: float = 0.0  # epoch: a notice held back (fast and leftover paths)
    spawn: str | None = None  # "kill", "midwait" or "pair": drain_spot in real processes
    payload: dict[str, Any] | None = None  # the notice, for the processes' envelopes
    waits_for: str | None = None  # held while this instance's notice is with a process


@dataclass
class Spawned:
    """One drain_spot subprocess and what became of it."""

    process: subprocess.Popen[bytes]
    delivery: Delivery
    iid: str
    mode: str
    payload: dict[str, Any] | None = None
    killed: bool = False
    kill_after_s: float | None = None  # since the spawn
    weight0_seen: bool = False  # its weight-0 write was seen before the kill
    killed_at: float | None = None  # epoch
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    weight0_at: float | None = None  # epoch its weight-0 write was seen


@dataclass
class Run:
    """Everything the invariants are checked against."""

    size: Size = SMALL
    emitted: list[dict[str, Any]] = field(default_factory=list)
    eligible: set[str] = field(default_factory=set)
    ineligible: set[str] = field(default_factory=set)
    flapper: str | None = None
    crashes: int = 0  # of the flapper
    interrupted: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)  # interrupted, reclaim called off: drain undone
    held: dict[str, str] = field(default_factory=dict)  # iid -> "fast" / "leftover"
    notice_at: dict[str, float] = field(default_factory=dict)  # epoch of each notice
    forged_targets: set[str] = field(default_factory=set)  # on-demand / other account's notices
    scenario_start: dict[str, int] = field(default_factory=dict)  # iid -> index in the event log
    starting_events: Counter[str] = field(default_factory=Counter)
    poison_sent: int = 0
    poison_reported: int = 0
    poison_cloud_calls: int = 0
    forged_sent: int = 0
    raised: int = 0
    given_up: list[str] = field(default_factory=list)
    recorded_ids: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)  # fault code -> answers
    answers_lost: int = 0  # writes applied whose answer the caller never saw
    # the identity each event is stored under: the payload id, or the CloudEvent id on EventBridge
    expected_id: dict[str, str] = field(default_factory=dict)
    initial: dict[tuple[str, str, int | None], int] = field(default_factory=dict)  # member -> weight
    final: dict[tuple[str, str, int | None], int] = field(default_factory=dict)
    # (time, action, group, server, port, weight, function) of every CLB write that took effect
    writes: list[tuple[float, str, str, str, int | None, int | None, str]] = field(default_factory=list)
    starts: Counter[str] = field(default_factory=Counter)  # StartInstance calls that took effect
    entries: list[dict[str, Any]] = field(default_factory=list)  # drain ledger entries
    spawned: list[Spawned] = field(default_factory=list)
    paths: Counter[str] = field(default_factory=Counter)  # drain path -> drains
    overrun_s: float = 0.0  # the latest removal past its deadline, notices delivered in time
    leftover_overrun_s: float = 0.0  # the same for the notice held back past its deadline
    deliveries: int = 0
    invocations: int = 0
    sweeps: int = 0
    seconds: float = 0.0
    mutant: str | None = None


def generated_fleet(size: Size) -> Fleet:
    n = size.instances
    instances: list[dict[str, Any]] = []

    def add(role: str, count: int, **extra: Any) -> None:
        for k in range(count):
            number = len(instances) + 1
            instances.append({"id": f"i-bp1rel{number:013d}", "name": f"{role}-{k:02d}", "status": "Running",
                              "instance_type": "ecs.g7.large", "zone": "cn-hangzhou-h",
                              "private_ip": f"10.1.{number // 250}.{number % 250 + 1}", **extra})

    add("crash-true", n, tags={"auto-start": "true"})
    add("crash-always", n, tags={"auto-start": "always"})
    add("user-true", n, tags={"auto-start": "true"})
    add("user-always", n, tags={"auto-start": "always"})
    add("untagged", n)
    add("locked", n, tags={"auto-start": "always"})
    add("flapper", 1, tags={"auto-start": "always"})
    add("spot", n * 2 + 3, spot_strategy="SpotAsPriceGo", tags={"app": "web"})
    add("calm", 1, spot_strategy="SpotAsPriceGo", tags={"app": "web"})  # never interrupted
    add("steady", 1, tags={"app": "web"})  # on-demand, never stopped: a forged notice names it
    spots = [i["id"] for i in instances if i["name"].startswith(("spot", "calm"))]
    web = [i["id"] for i in instances if i["name"].startswith(("crash", "steady"))]
    load_balancers = [{
        "id": "lb-bp1reliability0001", "name": "web",
        "default_servers": [{"server_id": s, "weight": WEIGHTS["default"]} for s in spots + web],
        "vserver_groups": [
            {"id": "rsp-bp1reliab000001", "name": "http",
             "servers": [{"server_id": s, "port": p, "weight": WEIGHTS[p]} for s in spots + web for p in (80, 8080)]},
            {"id": "rsp-bp1reliab000002", "name": "https",
             "servers": [{"server_id": s, "port": 443, "weight": WEIGHTS[443]} for s in spots]}],
        "master_slave_groups": [{"id": "rsp-bp1reliabms0001", "name": "ms", "servers": [
            {"server_id": spots[0], "port": 9000, "weight": 100, "server_type": "Master"},
            {"server_id": web[0], "port": 9000, "weight": 100, "server_type": "Slave"}]}],
    }]
    return Fleet.from_dict({"region": REGION, "account_id": ACCOUNT,
                            "credentials": [{"access_key_id": "LTAIreliability01",
                                             "access_key_secret": "reliability-secret"}],
                            "instances": instances, "load_balancers": load_balancers})


def members(state: Mapping[str, Any]) -> dict[tuple[str, str, int | None], int]:
    """(group, server, port) -> weight of every removable membership (default and vServer)."""
    found: dict[tuple[str, str, int | None], int] = {}
    for lb in state["load_balancers"]:
        for s in lb["default_servers"]:
            found[(f"default:{lb['id']}", s["server_id"], None)] = int(s["weight"])
        for g in lb["vserver_groups"]:
            for s in g["servers"]:
                found[(g["id"], s["server_id"], int(s["port"]))] = int(s["weight"])
    return found


def play_scenario(emu: Emulator, run: Run) -> None:
    """The incidents, with the eligibility each one implies."""
    by_role: dict[str, list[str]] = defaultdict(list)
    for inst in emu.state()["instances"]:
        by_role[inst["name"].rsplit("-", 1)[0]].append(inst["id"])
    run.initial = members(emu.state())
    events_before = len(emu.events())
    for iid in by_role["locked"]:
        emu.lock(iid, "security")
    for role, by in (("crash-true", "crash"), ("crash-always", "crash"), ("user-true", "user"),
                     ("user-always", "user"), ("untagged", "crash"), ("locked", "crash"),
                     ("flapper", "crash")):
        for iid in by_role[role]:
            emu.stop_instance(iid, by=by)
            if role == "flapper":
                run.flapper, run.crashes = iid, 1
            else:
                (run.eligible if role in ("crash-true", "crash-always", "user-always") else run.ineligible).add(iid)
            run.scenario_start[iid] = events_before
    spots = by_role["spot"]
    staying, reclaimed = spots[:len(spots) - run.size.instances], spots[len(spots) - run.size.instances:]
    for iid in spots:
        emu.interrupt_spot(iid)
        run.notice_at[iid] = time.time()
        run.interrupted.add(iid)
    run.kept = {staying[0]}  # its reclaim is called off: the sweep restores it, exactly
    emu.unlock(staying[0], "Recycling")
    run.held = {staying[1]: "fast", staying[2]: "leftover"}
    for iid in run.eligible | run.ineligible | {run.flapper or ""}:
        if iid:
            emu.wait_for_status(iid, "Stopped", 10)
    for iid in reclaimed:  # reclaimed during the run; the others stay locked for recycling
        emu.release(iid)
        run.released.add(iid)
    run.forged_targets = {by_role["steady"][0], by_role["calm"][0]}


def forged_notices(run: Run, emu: Emulator) -> list[dict[str, Any]]:
    """A spot notice for an on-demand instance of ours and one from another account naming our
    calm spot instance: both must drain nothing."""
    calm, on_demand = sorted(run.forged_targets)  # (fleet order)
    template = next(p for p in emu.events() if p["name"] == "Instance:PreemptibleInstanceInterruption")
    forged = {**template, "id": "forged-on-demand-notice",
              "resourceId": f"acs:ecs:{REGION}:{ACCOUNT}:instance/{on_demand}",
              "content": {"instanceId": on_demand, "action": "delete"}}
    foreign = {**template, "id": "foreign-account-notice", "userId": FOREIGN_ACCOUNT,
               "resourceId": f"acs:ecs:{REGION}:{FOREIGN_ACCOUNT}:instance/{calm}",
               "content": {"instanceId": calm, "action": "delete"}}
    return [forged, foreign]


def deliveries_for(payloads: Sequence[dict[str, Any]], rng: random.Random, size: Size,
                   envelope_of: dict[str, str], expected_id: dict[str, str], *, run: Run | None = None,
                   spawn_left: list[str] | None = None) -> list[Delivery]:
    """Each event twice, shuffled within a window, with poison alone and inside batches; the
    first copy of some spot notices goes to real processes (``spawn_left``), held notices wait."""
    items: list[Delivery] = []
    for payload in payloads:
        envelope = envelope_of.setdefault(str(payload["id"]), rng.choice(ENVELOPES))
        functions = ["record_lifecycle"]
        iid = str(payload.get("content", {}).get("instanceId") or "")
        not_before, spawn = 0.0, None
        if payload["name"] == "Instance:StateChange":
            functions.append("auto_start")
        elif payload["name"] == "Instance:PreemptibleInstanceInterruption":
            functions.append("drain_spot")
            if run is not None and iid in run.held and iid in run.notice_at:
                deadline = run.notice_at[iid] + size.notice_s
                not_before = deadline - MARGIN_S + 0.1 if run.held[iid] == "fast" else deadline + 0.5
            elif spawn_left:
                spawn = spawn_left.pop(0)
        value = wrap_object(payload, envelope)
        expected_id[str(payload["id"])] = (
            str(value["id"]) if envelope == "eventbridge" and isinstance(value, dict) else str(payload["id"]))
        for copy in range(2):
            if rng.random() < 0.3 and not spawn:  # inside a batch with a poison element
                batch = [value, POISON[rng.randrange(len(POISON))].decode("utf-8", "replace")]
                rng.shuffle(batch)
                items.append(Delivery(json.dumps(batch).encode(), tuple(functions), poison=1,
                                      not_before=not_before))
            else:  # a process's copy comes first: its duplicate follows once the process ended
                items.append(Delivery(wrap(payload, envelope), tuple(functions), not_before=not_before,
                                      spawn=spawn if copy == 0 else None, payload=payload,
                                      waits_for=iid if spawn and copy else None))
        if rng.random() < 0.3:
            items.append(Delivery(POISON[rng.randrange(len(POISON))], ("record_lifecycle", "auto_start",
                                                                        "drain_spot"), poison=1, alone=True))
    shuffled: list[Delivery] = []
    for start in range(0, len(items), size.window):
        chunk = items[start:start + size.window]
        rng.shuffle(chunk)
        shuffled += chunk
    return shuffled


# --- real processes ------------------------------------------------------------------------------


def _servers(call: Any) -> list[tuple[str, str, int | None, int | None]]:
    """(group, server, port, weight) of each backend a CLB write names."""
    try:
        servers = json.loads(call.params.get("BackendServers") or "[]")
    except ValueError:
        return []
    group = call.params.get("VServerGroupId") or f"default:{call.params.get('LoadBalancerId')}"
    named: list[tuple[str, str, int | None, int | None]] = []
    for s in servers if isinstance(servers, list) else []:
        port = s.get("Port")
        weight = s.get("Weight")
        named.append((group, str(s.get("ServerId")), int(port) if port not in (None, "") else None,
                      int(weight) if weight not in (None, "") else None))
    return named


def _applied(call: Any) -> bool:
    return call.status == 200 or bool(call.answer_lost)


class Spawner:
    """drain_spot deliveries in subprocesses (``python -m tools.mutants``), killed on cue."""

    def __init__(self, emu: Emulator, db_url: str, run: Run, rng: random.Random, *, workdir: Path,
                 env: Mapping[str, str]) -> None:
        self.emu, self.db_url, self.run, self.rng, self.workdir = emu, db_url, run, rng, workdir
        self.env = env
        self.live: list[tuple[Spawned, threading.Thread | None]] = []

    def start(self, delivery: Delivery) -> None:
        assert delivery.payload is not None
        assert delivery.spawn is not None
        iid = str(delivery.payload["content"]["instanceId"])
        bodies = [delivery.body]
        if delivery.spawn == "pair":  # the same notice through another envelope, at once
            others = [e for e in ENVELOPES if wrap(delivery.payload, e) != delivery.body]
            bodies.append(wrap(delivery.payload, self.rng.choice(others)))
        for body in bodies:
            spawned = Spawned(self._popen(body), Delivery(body, ("drain_spot",), attempts=delivery.attempts),
                              iid, delivery.spawn,
                              payload=delivery.payload)
            self.run.spawned.append(spawned)
            killer = None
            if delivery.spawn in ("kill", "midwait"):
                delay = (self.rng.uniform(0.05, DRAIN_TIME_S / 3) if delivery.spawn == "midwait"
                         else self.rng.uniform(0.3, 3.0))
                killer = threading.Thread(target=self._kill, args=(spawned, delay), daemon=True)
                killer.start()
            self.live.append((spawned, killer))

    def _popen(self, body: bytes) -> subprocess.Popen[bytes]:
        fd, name = tempfile.mkstemp(suffix=".json", dir=self.workdir)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        argv = [sys.executable, "-m", "tools.mutants", "drain_spot", name, "--cloud", self.emu.url,
                "--db", self.db_url, "--timeout", "60"]
        for key, value in self.env.items():
            argv += ["--env", f"{key}={value}"]
        environ = {**os.environ, **self.emu.signing_environment()}
        if self.run.mutant:
            environ[MUTANT_ENV] = self.run.mutant
        with open(f"{name}.log", "wb") as stderr:  # the process's log lines, kept beside its event
            return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=environ,
                                    cwd=str(Path(__file__).resolve().parent.parent))

    def _kill(self, spawned: Spawned, delay: float) -> None:
        started = time.time()
        if spawned.mode == "midwait":  # weight 0 in every group first, then a moment of the wait
            groups = {(k[0], k[2]) for k in self.run.initial if k[1] == spawned.iid}
            while spawned.process.poll() is None and time.time() - started < 60:
                zeroed = {(s[0], s[2]) for c in self.emu.calls()[-400:]
                          if c.time >= started and c.action in WEIGHT_WRITES and _applied(c)
                          for s in _servers(c) if s[1] == spawned.iid and s[3] == 0}
                if zeroed >= groups:
                    spawned.weight0_seen, spawned.weight0_at = True, time.time()
                    break
                time.sleep(0.02)
        time.sleep(delay)
        if spawned.process.poll() is None:
            spawned.killed, spawned.killed_at = True, time.time()
            spawned.process.kill()  # SIGKILL: no lease released, no cleanup
            spawned.kill_after_s = round(time.time() - started, 3)

    def reap(self, *, wait: bool = False) -> list[Delivery]:
        """The processes that ended (all of them with ``wait``); what died or raised goes back
        to the platform, which delivers it again a moment later."""
        retry: list[Delivery] = []
        still: list[tuple[Spawned, threading.Thread | None]] = []
        for spawned, killer in self.live:
            if wait:
                try:
                    spawned.process.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    spawned.process.kill()
            code = spawned.process.poll()
            if code is None:
                still.append((spawned, killer))
                continue
            if killer is not None:
                killer.join()
            spawned.ended_at = time.time()
            self.run.invocations += 1
            if code not in (0, 2):  # killed (-9) or raised (1): the platform delivers it again
                self.run.raised += 0 if spawned.killed else 1
                spawned.delivery.not_before = time.time() + PLATFORM_RETRY_S
                spawned.delivery.attempts += 1
                if spawned.delivery.attempts >= MAX_ATTEMPTS:
                    self.run.given_up.append(spawned.delivery.body[:80].decode("utf-8", "replace"))
                    continue
                if spawned.mode == "midwait" and not spawned.killed and spawned.payload is not None:
                    # it raised before its wait: its retry goes to a process again, to be killed there
                    spawned.delivery.spawn, spawned.delivery.payload = "midwait", spawned.payload
                retry.append(spawned.delivery)
        self.live = still
        return retry


# --- the delivery loop ---------------------------------------------------------------------------


def deliver_all(emu: Emulator, db_url: str, run: Run, rng: random.Random, size: Size, *,
                sabotage: str | None = None, workdir: Path) -> None:
    """The modelled platform: deliveries in slices of :data:`SLICE`, between which new events
    are picked up, finished processes reaped and the sweep's timer fires; a failed delivery is
    delivered again :data:`PLATFORM_RETRY_S` later (at most :data:`MAX_ATTEMPTS` times)."""
    env = function_env(size)
    envelope_of: dict[str, str] = {}
    cursor = 0
    queue: list[Delivery] = []
    outage_left = -1
    last_sweep = time.monotonic()
    quiet_sweeps = 0  # sweeps in a row that had nothing left to wait for
    # Some notices' first copy goes to a process of its own (FC runs invocations side by side):
    # one killed inside its weight-0 wait (the drain whose reclaim is called off, so its undo
    # shows), one through two envelopes at once, some killed at a random moment.
    spots = sorted(run.interrupted - run.kept - set(run.held))
    plan = ["midwait", "pair"] + ["kill"] * size.kills
    # (the last of the staying spots always drains in-process: a gentle drain whatever the processes do)
    order = sorted(run.kept) + [s for s in spots if s not in run.released][:-1] + sorted(run.released)
    spawn_for = dict(zip(order, plan, strict=False))  # the plan is longer than the notices
    spawner = Spawner(emu, db_url, run, rng, workdir=workdir, env=env)
    forged = forged_notices(run, emu)
    settle_until = max(run.notice_at.values(), default=time.time()) + size.notice_s + RESTORE_AFTER_S \
        + 3 * SWEEP_EVERY_S
    started = time.monotonic()
    while time.monotonic() - started < MAX_RUN_S:
        payloads = emu.events()[cursor:]
        cursor += len(payloads)
        run.emitted += payloads
        for payload in payloads:
            iid = str(payload["content"].get("instanceId"))
            notice = payload["name"] == "Instance:PreemptibleInstanceInterruption"
            queue += deliveries_for([payload], rng, size, envelope_of, run.expected_id, run=run,
                                    spawn_left=[spawn_for.pop(iid)] if notice and iid in spawn_for else None)
        if forged:  # the forged and foreign notices, twice each, among the first deliveries
            for payload in forged:
                for envelope in rng.sample(ENVELOPES, 2):
                    queue.insert(rng.randrange(len(queue) + 1),
                                 Delivery(wrap(payload, envelope), ("record_lifecycle", "drain_spot")))
                    run.forged_sent += 1
            forged = []
        _crash_flapper(emu, run)
        queue += spawner.reap()
        if time.monotonic() - last_sweep >= SWEEP_EVERY_S:
            last_sweep = time.monotonic()
            quiet_sweeps = quiet_sweeps + 1 if _sweep_quiet(emu, db_url, run, env) else 0
        now = time.time()
        # Each function has its own trigger on FC: the notices' processes start at once.
        busy = {s.iid for s, _ in spawner.live} | {
            str(d.payload["content"]["instanceId"]) for d in queue if d.spawn and d.payload}
        due = sorted((d for d in queue if d.not_before <= now and d.waits_for not in busy),
                     key=lambda d: d.spawn is None)
        if not due:
            if (not queue and not spawner.live and not emu.events()[cursor:] and now >= settle_until
                    and quiet_sweeps >= 2 and not _flapper_due(emu, run)):
                break
            time.sleep(0.1)
            continue
        if outage_left < 0:
            outage_left = size.outage  # the store goes down once, early in the run
        batch = due[:SLICE]
        taken = {id(d) for d in batch}
        queue = [d for d in queue if id(d) not in taken]
        for delivery in batch:
            if delivery.alone and spawner.live:  # its cloud calls must be told from theirs
                delivery.not_before = time.time() + PLATFORM_RETRY_S
                queue.append(delivery)
                continue
            run.deliveries += 1
            down = outage_left > 0
            outage_left -= 1 if outage_left > 0 else 0
            reported, failed = 0, False
            for function in delivery.functions:
                if function == "drain_spot" and delivery.spawn and not down:
                    spawner.start(delivery)
                    continue
                calls_before = len(emu.calls())
                result = invoke_local(function, delivery.body, cloud_url=emu.url,
                                      db_url=DOWN_DB if down else db_url, env=env)
                run.invocations += 1
                if delivery.alone:
                    run.poison_cloud_calls += len(emu.calls()) - calls_before
                if result.error is not None:
                    run.raised += 1
                    failed = True
                    break  # the platform retries the whole delivery
                if function == "record_lifecycle":
                    reported = len((result.value or {}).get("bad", []))
            if not failed:  # every function handled it: count it once, whatever its earlier attempts did
                run.poison_sent += delivery.poison
                run.poison_reported += reported
                continue
            delivery.attempts += 1  # (a notice meant for a process still goes to one)
            if sabotage == "no_platform_retry":
                continue  # lost: the events it carried are never recorded
            if delivery.attempts >= MAX_ATTEMPTS:
                run.given_up.append(delivery.body[:80].decode("utf-8", "replace"))
            else:
                delivery.not_before = time.time() + PLATFORM_RETRY_S
                queue.append(delivery)
        if sabotage == "start_ineligible" and run.ineligible:
            emu.set_faults(fault_rate=0.0)
            _start_directly(emu, sorted(run.ineligible)[0])
            sabotage = None
    queue += spawner.reap(wait=True)
    run.given_up += [d.body[:80].decode("utf-8", "replace") for d in queue]


def _flapper_due(emu: Emulator, run: Run) -> bool:
    """The flapper is still coming back: wait for it before settling."""
    if run.flapper is None:
        return False
    status = next(i["status"] for i in emu.state()["instances"] if i["id"] == run.flapper)
    return status in ("Starting", "Running") and run.crashes < FLAP_CRASHES


def _crash_flapper(emu: Emulator, run: Run) -> None:
    """Each time the flapper is started, it crashes again (FLAP_CRASHES in all)."""
    if run.flapper is None or run.crashes >= FLAP_CRASHES:
        return
    status = next(i["status"] for i in emu.state()["instances"] if i["id"] == run.flapper)
    if status == "Running":
        emu.stop_instance(run.flapper, by="crash")
        run.crashes += 1


def _sweep_quiet(emu: Emulator, db_url: str, run: Run, env: Mapping[str, str]) -> bool:
    """One tick of the sweep's timer; True when it left nothing to come back for (no stop still
    settling or deferred, nothing started, no drain finished or restored). A failing tick is
    simply followed by the next."""
    result = invoke_local("sweep", SWEEP_BODY, cloud_url=emu.url, db_url=db_url, env=env)
    run.invocations += 1
    run.sweeps += 1
    if result.error is not None:
        return False
    waiting = ("no ActionTrail record yet", "ActionTrail throttled", "is recent: the event path")
    value = result.value or {}
    for d in value.get("auto_start", {}).get("decisions", []):
        if d["decision"] == "started" or str(d["reason"]).startswith(waiting):
            return False
    drains = value.get("drains") or value.get("drain") or {}
    return not (isinstance(drains, Mapping) and any(drains.get(k) for k in ("restored", "finished", "errors")))


def _start_directly(emu: Emulator, iid: str) -> None:
    """A deliberate bug for the self-test: start an instance no rule allows."""
    from shared.clients import Clients, Credentials
    from shared.settings import Settings

    creds = emu.credentials[0]
    clients = Clients.from_settings(Settings.from_env(cloud_url=emu.url),
                                    Credentials(creds["access_key_id"], creds["access_key_secret"]))
    clients.ecs.start_instance(iid)


# --- what happened -------------------------------------------------------------------------------


def collect(emu: Emulator, db_url: str, run: Run) -> None:
    store = Store(db_url)
    try:
        timelines: dict[str, list[str]] = {}
        for payload in run.emitted:
            iid = _instance_of(payload)
            if iid is not None and iid not in timelines:
                timelines[iid] = [e.event_id for e in store.timeline(iid)]
            recorded = timelines.get(iid, []) if iid is not None else []
            stored_as = run.expected_id.get(str(payload["id"]), str(payload["id"]))
            run.recorded_ids[stored_as] += recorded.count(stored_as)
        for entry in store.ledger_find("drain"):
            run.entries.append({"key": entry.key, "instance_id": entry.instance_id,
                                "status": entry.status, "data": dict(entry.data)})
    finally:
        store.close()
    for call in emu.calls():
        if call.answer_lost:
            run.answers_lost += 1
        elif call.code is not None and call.status != 200:
            run.injected[call.code] += 1
        if call.action in CLB_WRITES and _applied(call):
            for group, server, port, weight in _servers(call):
                run.writes.append((call.time, call.action, group, server, port, weight, call.function or ""))
        if call.action == "StartInstance" and _applied(call):
            run.starts[call.params.get("InstanceId", "")] += 1
    for index, payload in enumerate(emu.events()):
        iid = payload["content"].get("resourceId")
        if payload["name"] == "Instance:StateChange" and payload["content"].get("state") == "Starting" \
                and index >= run.scenario_start.get(iid, 1 << 60):
            run.starting_events[iid] += 1
    run.final = members(emu.state())
    for drain in run.entries:
        run.paths[str(drain["data"].get("path") or drain["status"])] += 1


def _instance_of(payload: dict[str, Any]) -> str | None:
    content = payload.get("content", {})
    value = content.get("resourceId") or content.get("instanceId")
    return str(value) if value else None


def _entries_of(run: Run, iid: str) -> list[dict[str, Any]]:
    return [e for e in run.entries if e["instance_id"] == iid]


def _lease_live(entry: Mapping[str, Any], now: float) -> bool:
    """The real rule (not the product's, which a mutant may have replaced)."""
    from shared.events import parse_iso_or_none

    if entry["status"] not in ("claimed", "found", "weighted", "waited", "removed"):
        return False
    until = parse_iso_or_none(entry["data"].get("lease_until"))
    return until is not None and until.timestamp() > now


def check_invariants(run: Run) -> list[str]:
    """Every broken invariant, as ``name: what broke`` (empty: all hold)."""
    problems: list[str] = []

    def fail(name: str, text: str) -> None:
        problems.append(f"{name}: {text}")

    missing = [i for i, n in run.recorded_ids.items() if n == 0]
    doubled = [i for i, n in run.recorded_ids.items() if n > 1]
    if missing:
        fail("recorded_once", f"{len(missing)} emitted events never recorded (e.g. {missing[:3]})")
    if doubled:
        fail("recorded_once", f"{len(doubled)} events recorded more than once (e.g. {doubled[:3]})")
    for iid in sorted(run.eligible):
        if run.starting_events[iid] != 1:
            fail("started_once", f"eligible {iid} started {run.starting_events[iid]} times, not once")
    for iid in sorted(run.ineligible):
        if run.starting_events[iid]:
            fail("started_once", f"ineligible {iid} was started {run.starting_events[iid]} times")
    if run.flapper is not None and run.starting_events[run.flapper] != min(run.crashes, FLAP_MAX_STARTS):
        fail("started_once", f"flapping {run.flapper} started {run.starting_events[run.flapper]} times "
             f"for {run.crashes} crashes, not {min(run.crashes, FLAP_MAX_STARTS)} (flap guard)")
    _check_drains(run, fail)
    if run.poison_cloud_calls:
        fail("nothing_from_forged", f"poison elements caused {run.poison_cloud_calls} cloud calls")
    if run.poison_reported != run.poison_sent:
        fail("nothing_from_forged", f"{run.poison_sent} poison elements delivered, {run.poison_reported} reported")
    if run.given_up:
        fail("delivered", f"{len(run.given_up)} deliveries never succeeded (e.g. {run.given_up[0]!r})")
    return problems


def _check_drains(run: Run, fail: Any) -> None:
    now = time.time()
    written = {w[3] for w in run.writes}
    for iid in sorted(written - run.interrupted):
        kinds = sorted({w[1] for w in run.writes if w[3] == iid})
        fail("others_untouched" if iid not in run.forged_targets else "nothing_from_forged",
             f"{iid} was never interrupted, yet written: {', '.join(kinds)}")
    for key, weight in sorted(run.initial.items(), key=str):
        if key[1] not in run.interrupted and run.final.get(key) != weight:
            fail("others_untouched", f"{key[1]} in {key[0]} port {key[2]}: weight {run.final.get(key)}, was {weight}")
    for iid in sorted(run.forged_targets):
        if _entries_of(run, iid) or run.starts[iid]:
            fail("nothing_from_forged", f"forged or foreign notice for {iid} acted on: "
                 f"{len(_entries_of(run, iid))} drains, {run.starts[iid]} starts")
    for key, weight in sorted(run.final.items(), key=str):
        if weight == 0 and not any(_lease_live(e, now) for e in _entries_of(run, key[1])):
            fail("weight0_only_live", f"{key[1]} left at weight 0 in {key[0]} port {key[2]} without a live drain")
    for iid in sorted(run.interrupted):
        entries = _entries_of(run, iid)
        flagged = any(e["data"].get("missed_deadline") for e in entries)
        if not entries:
            fail("drained_by_deadline", f"interrupted {iid} has no drain")
        deadline = run.notice_at[iid] + run.size.notice_s
        removed_at: dict[tuple[str, str, int | None], float] = {}
        for t, action, group, server, port, _, _ in run.writes:
            if server == iid and action in REMOVALS:
                removed_at.setdefault((group, server, port), t)
        mine = [k for k in run.initial if k[1] == iid]
        late = [removed_at[k] - deadline for k in mine if k in removed_at and removed_at[k] > deadline]
        never = [k for k in mine if k not in removed_at]
        if run.held.get(iid) == "leftover":  # delivered past its deadline on purpose
            run.leftover_overrun_s = max([run.leftover_overrun_s, *late])
        else:
            run.overrun_s = max([run.overrun_s, *late])
        if (late or never) and not flagged:
            fail("drained_by_deadline", f"interrupted {iid}: {len(never)} memberships never removed, "
                 f"{len(late)} removed up to {max(late, default=0):.2f} s past the deadline, unflagged")
        left = [k for k in mine if k in run.final and iid not in run.kept]
        if left and not flagged:
            fail("drained_by_deadline", f"interrupted {iid} still in {len(left)} removable groups, unflagged")
        _check_gentle(run, iid, entries, fail)
        _check_originals(run, iid, entries, fail)


def _check_gentle(run: Run, iid: str, entries: Sequence[Mapping[str, Any]], fail: Any) -> None:
    """A running instance that drain_spot removed, its memberships found with time left beyond
    the margin, got weight 0 first (the sweep's takeover finishes at once, by design; a failed
    weight change is flagged ``weight_failed``)."""
    from shared.events import parse_iso_or_none

    if iid in run.released or not entries or any(e["data"].get("weight_failed") for e in entries):
        return
    found = [t.timestamp() for t in (parse_iso_or_none(e["data"].get("found_at")) for e in entries) if t]
    removals = [w for w in run.writes if w[3] == iid and w[1] in REMOVALS]
    if not found or not removals:
        return
    left = run.notice_at[iid] + run.size.notice_s - min(found)
    first = min(removals)
    if left <= MARGIN_S + 0.5 or first[6] != "drain_spot":
        return  # inside the margin: the fast path is right to skip the wait
    weight0 = [w[0] for w in run.writes if w[3] == iid and w[1] in WEIGHT_WRITES and w[5] == 0]
    if not weight0 or min(weight0) > first[0]:
        fail("gentle", f"interrupted {iid} removed by drain_spot without weight 0 first "
             f"({left:.1f} s left when its memberships were found)")


def _check_originals(run: Run, iid: str, entries: Sequence[Mapping[str, Any]], fail: Any) -> None:
    for entry in entries:
        for m in entry["data"].get("memberships") or []:
            group = m.get("group_id") or f"default:{m.get('load_balancer_id')}"
            key = (group, m.get("server_id"), m.get("port"))
            if key in run.initial and m.get("weight") != run.initial[key]:
                fail("originals_exact", f"drain {entry['key']} recorded weight {m.get('weight')} as the "
                     f"original of {iid} in {group} port {m.get('port')} (was {run.initial[key]})")
    if iid in run.kept:
        restored = any(e["status"] == "restored" for e in entries)
        mine = {k: w for k, w in run.initial.items() if k[1] == iid}
        now_weights = {k: run.final.get(k) for k in mine}
        if not restored:
            fail("originals_exact", f"kept {iid} (reclaim called off) was never restored")
        elif now_weights != mine:
            wrong = sorted((str(k), now_weights[k], w) for k, w in mine.items() if now_weights[k] != w)
            fail("originals_exact", f"kept {iid} restored with other weights: {wrong[:3]}")


def run_suite(size: Size = SMALL, seed: int = 7, db_url: str | None = None, *, workdir: Path | None = None,
              sabotage: str | None = None, mutant: str | None = None) -> tuple[Run, list[str]]:
    """Play, deliver and check; returns the run and the broken invariants."""
    if mutant is not None and mutant not in MUTANTS:
        raise ValueError(f"unknown mutant {mutant!r}; known: {', '.join(MUTANTS)}")
    rng = random.Random(seed)
    run = Run(size=size, mutant=mutant)
    started = time.monotonic()
    base = workdir or Path.cwd() / ".data"
    base.mkdir(parents=True, exist_ok=True)
    if db_url is None:
        path = base / f"reliability-{seed}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db_url = f"sqlite:///{path}"
    processes = base / f"reliability-{seed}-processes"  # each process's event and log, kept
    shutil.rmtree(processes, ignore_errors=True)
    processes.mkdir()
    with log.redirect(io.StringIO()), \
            Emulator(generated_fleet(size), start_delay_s=0.05, seed=seed, trail_lag_s=TRAIL_LAG_S,
                     trail_qps=TRAIL_QPS) as emu, \
            applied_environment(emu.signing_environment()), applied(mutant):
        play_scenario(emu, run)
        emu.set_faults(fault_rate=size.fault_rate, lose_rate=size.lose_rate, seed=seed,
                       latency_ms=size.latency_ms,
                       throttle_actions={"DescribeInstances": 40.0, "RemoveVServerGroupBackendServers": 20.0})
        deliver_all(emu, db_url, run, rng, size, sabotage=sabotage, workdir=processes)
        emu.set_faults(fault_rate=0.0, lose_rate=0.0, latency_ms=0.0, throttle_actions={})
        collect(emu, db_url, run)
    run.seconds = round(time.monotonic() - started, 1)
    return run, check_invariants(run)


def killed_mid_wait(run: Run, spawned: Spawned) -> bool:
    """Killed after its weight-0 write and before any removal of its instance: inside the wait."""
    if not (spawned.killed and spawned.weight0_seen and spawned.killed_at is not None):
        return False
    removals = [w[0] for w in run.writes if w[3] == spawned.iid and w[1] in REMOVALS]
    return not removals or min(removals) > spawned.killed_at


def figures(run: Run, problems: Sequence[str]) -> dict[str, Any]:
    broken = sorted({p.split(":", 1)[0] for p in problems})
    return {
        "mutant": run.mutant, "events_emitted": len(run.emitted), "deliveries": run.deliveries,
        "invocations": run.invocations, "raised_and_retried": run.raised, "sweeps": run.sweeps,
        "poison_sent": run.poison_sent, "poison_reported": run.poison_reported,
        "forged_and_foreign_sent": run.forged_sent,
        "eligible_started_once": len(run.eligible), "ineligible": len(run.ineligible),
        "flapper_crashes": run.crashes, "flapper_starts": run.starting_events[run.flapper or ""],
        "interrupted": len(run.interrupted), "notice_s": run.size.notice_s,
        "processes": len(run.spawned), "killed": sum(s.killed for s in run.spawned),
        "killed_mid_wait": sum(killed_mid_wait(run, s) for s in run.spawned),
        "drain_paths": dict(sorted(run.paths.items())),
        "drain_statuses": dict(sorted(Counter(str(e["status"]) for e in run.entries).items())),
        "largest_deadline_overrun_s": round(run.overrun_s, 3),
        "held_past_deadline_overrun_s": round(run.leftover_overrun_s, 3), "seconds": run.seconds,
        "errors_answered": dict(sorted(run.injected.items())), "answers_lost": run.answers_lost,
        "invariants": {name: name not in broken for name in INVARIANTS},
        "problems": list(problems),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.reliability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the large size (slower)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", help="store URL (default: SQLite under .data/); must hold no project "
                        "tables unless --reset is given")
    parser.add_argument("--reset", action="store_true", help="DROP the project tables in --db first")
    parser.add_argument("--mutant", choices=sorted(MUTANTS), help="run a sabotaged build")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    size = FULL if args.full else SMALL
    if args.db and args.reset:
        from tools.bench_store import _reset

        _reset(args.db)
    print(f"reliability suite ({'full' if args.full else 'small'}), seed {args.seed} ...", flush=True)
    run, problems = run_suite(size, args.seed, args.db, mutant=args.mutant)
    result = figures(run, problems)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print("all invariants hold" if not problems else f"{len(problems)} invariants broken")
    return 1 if problems else 0


def broken_invariants(problems: Iterable[str]) -> set[str]:
    """The invariant names of ``check_invariants``'s sentences."""
    return {p.split(":", 1)[0] for p in problems}


if __name__ == "__main__":
    sys.exit(main())
