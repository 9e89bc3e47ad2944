"""The reliability suite: a hostile delivery of a generated event stream, then invariants.

    python -m tools.reliability [--full] [--seed N] [--db URL [--reset]] [--mutant NAME] [--json FILE]

What it does (``make test`` runs the small size on every store it has; ``--full`` the large one):
1. an emulator with a generated fleet: opted-in (``true``/``always``), not opted-in, locked, a
   flapping and spot instances, the spot ones in CLB default and vServer groups of distinct
   weights (and a master-slave group), next to on-demand members that must never be touched;
   every other spot instance opted in to the spot replacement (shared.replace), with vSwitches
   in three zones, the first candidate sold out and the second scarce, and a boot time;
2. a scenario: unexpected stops, user stops, locked stops, an instance that crashes again each
   time it is started, spot interruptions (some reclaimed during the run, one whose reclaim is
   called off so its drain must be undone exactly), releases;
3. the modelled platform: each function has its own trigger, so every event is delivered to
   each function on its own, at least twice, in a random envelope kept per event, shuffled
   within a window, interleaved with poison elements and with forged (a spot notice for an
   on-demand instance) and foreign (another account's) notices, while the emulator is slow,
   injects throttling, 5xx, dropped connections and the documented busy codes, loses the answers
   of some writes it applied, and the store is down for a stretch. Each call gets only
   :data:`API_MAX_ATTEMPTS` attempts, so cloud faults reach the platform's retry; a failed
   invocation is delivered again :data:`PLATFORM_RETRY_S` later;
4. real processes: ``drain_spot`` runs in warm function instances (``python -m tools.mutants
   --serve``, :class:`Instances`), several at once as on FC. Some notices' first delivery goes
   to an instance that is SIGKILLed at a kill point drawn from :data:`tools.mutants.KILL_POINTS`
   (one inside its weight-0 wait, one inside its replacement: RunInstances answered, the
   successor not recorded) or after a random delay; one notice is delivered through two
   envelopes to two instances at once; the platform redelivers what died or raised;
5. a compressed clock: the notice period is :attr:`Size.notice_s` seconds and the drain time
   :data:`DRAIN_TIME_S`, one notice is held back into the margin (fast path) and one past its
   deadline (leftover path), so the deadline invariant can fail; ActionTrail lags the calls
   (``TRAIL_LAG_S``) and the sweep's and drain_spot's finisher timers fire every
   ``SWEEP_EVERY_S`` (the finisher settles the replacements and takes over the dead ones' after
   :data:`REPLACE_LEASE_S`);
6. the invariants, checked one by one from the store, the ledger, the emulator's state, call
   log and event log (:data:`INVARIANTS`). None of them reads a timing window: ``gentle`` holds
   each removal drain_spot made while its deadline was more than the margin away to a weight-0
   write of that membership before it; ``originals_exact`` compares recorded and restored weights
   with the fleet's; ``one_successor`` counts the instances tagged ``replaces=<id>`` and the
   RunInstances launches per predecessor; ``successor_serves`` reads the successor's groups,
   ports and weights from the emulator's final state.

``--mutant NAME`` runs the same with a sabotaged build (:mod:`tools.mutants`), in this process
and in its function instances: the report must then name a broken invariant.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import io
import json
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from shared import log
from shared.store import Store
from tools.emulator import Emulator, Fleet
from tools.envelopes import ENVELOPES, wrap, wrap_object
from tools.invoke import applied_environment, invoke_local
from tools.mutants import (
    KILL_POINTS,
    MUTANT_ENV,
    MUTANTS,
    applied,
    fresh_stores,
    replace_lease,
    store_timer,
)

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
    "gentle",  # weight 0 before every removal drain_spot made with more than the margin left
    "weight0_only_live",  # no member left at weight 0 unless its drain's lease is live
    "others_untouched",  # no write names a server that was not interrupted; their weights intact
    "nothing_from_forged",  # no write, start or drain from a forged, foreign or poison event
    "originals_exact",  # recorded originals are the fleet's weights; undone drains restore them
    "delivered",  # every delivery eventually succeeded (nothing lost to the platform's retries)
    "one_successor",  # at most one successor (replaces=<id>) per interruption, none unless opted in
    "successor_serves",  # a Running successor serves where its predecessor did, at its weights; or reported
)
ACCOUNT = "1234567890123456"
FOREIGN_ACCOUNT = "9876543210987654"
REGION = "cn-hangzhou"
# Poison-only deliveries sign with a key of their own: any call made with it came from poison,
# whatever ran beside it.
POISON_KEY = {"access_key_id": "LTAIreliabpoison01", "access_key_secret": "reliability-poison"}
MAX_ATTEMPTS = 10  # deliveries of one body to one function before the modelled platform gives up
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
MARGIN_S = 4  # not below the product's own round pauses (0.5-2 s) and a loaded machine's lag
DRAIN_TIME_S = 1.5
LEASE_GRACE_S = 1.0  # a killed drain's lease is taken over this long after its planned wait
RESTORE_AFTER_S = 1
FLAP_MAX_STARTS = 2
SLICE = 4  # in-process deliveries between two looks at the clock (events, instances, the timer)
PLATFORM_RETRY_S = 0.5  # a failed delivery comes again this much later
FLAP_CRASHES = FLAP_MAX_STARTS + 2  # crashes of the flapper: the last ones must not be started
API_MAX_ATTEMPTS = 2  # per call: a fault twice in a row reaches the platform's retry
WEIGHTS = {"default": 100, 80: 30, 8080: 50, 443: 70, 9000: 100}  # by port: restores are exact
CLB_WRITES = ("SetBackendServers", "SetVServerGroupAttribute", "RemoveBackendServers",
              "RemoveVServerGroupBackendServers", "AddBackendServers", "AddVServerGroupBackendServers")
REMOVALS = ("RemoveBackendServers", "RemoveVServerGroupBackendServers")
WEIGHT_WRITES = ("SetBackendServers", "SetVServerGroupAttribute")
# Beside the seeded rate, the first weight-0 write and the first removal of the run lose their
# answers for sure (the rate alone may draw none in a small run).
LOST_ANSWERS = {"SetVServerGroupAttribute": ["InternalError"], "RemoveVServerGroupBackendServers": ["ConnectionDropped"]}
INSTANCE_READY_S = 120.0  # a warm instance's imports, on a loaded machine
SPAWN_FAILURES = 5  # instances dying before they are ready: the suite stops (a broken venv, say)
# The spot replacement (shared.replace): every other spot instance is opted in (both values),
# and so are the targets of the forged and foreign notices (which must launch nothing). The VPC
# has vSwitches in zones h (the fleet's), i and j; ecs.g7.large spot is sold out in zone i and
# scarce in zone j, so later candidates come from DescribeRecommendInstanceType (ecs.g6.large).
REPLACE_TAG = "replace-on-interrupt"
VPC_ID = "vpc-bp1emulator0000000001"
VSWITCHES = {"cn-hangzhou-h": "vsw-bp1relh000000000001", "cn-hangzhou-i": "vsw-bp1reli000000000001",
             "cn-hangzhou-j": "vsw-bp1relj000000000001"}
BOOT_S = 1.0  # RunInstances -> Running on the compressed clock
# The replacement's lease (120 s in production, a constant of shared.replace.launcher) on the
# compressed clock: a replacement killed with its function instance is taken over by the drain's
# timer tick this long after.
REPLACE_LEASE_S = 3.0
REPLACE_OPEN = ("claimed", "launching", "launched")


@dataclass(frozen=True)
class Size:
    instances: int  # per role
    fault_rate: float  # 5xx, drops and the action's documented busy codes (SystemBusy, ...)
    window: int
    outage: int  # in-process deliveries during which the store is down
    lose_rate: float = 0.0  # writes applied whose answer is then lost (5xx or dropped)
    notice_s: int = 12  # the spot notice period on the compressed clock
    latency_ms: float = 5.0  # every cloud answer this late
    kills: int = 2  # spot notices first delivered to an instance killed at a kill point
    function_instances: int = 4  # warm drain_spot instances (FC runs notices side by side)
    max_run_s: float = 120.0  # a run that has not settled by then is reported as it is


SMALL = Size(instances=3, fault_rate=0.05, window=6, outage=12, lose_rate=0.05, notice_s=12,
             latency_ms=5.0, kills=3, function_instances=8, max_run_s=150.0)
TINY = Size(instances=1, fault_rate=0.05, window=6, outage=10, lose_rate=0.05, notice_s=8,
            latency_ms=5.0, kills=1, function_instances=5, max_run_s=120.0)  # mutants' and sabotages'
FULL = Size(instances=8, fault_rate=0.08, window=20, outage=20, lose_rate=0.05, notice_s=45,
            latency_ms=10.0, kills=6, function_instances=8, max_run_s=900.0)


def function_env(size: Size) -> dict[str, str]:
    return {"ECS_EVENT_OPS_DRAIN_TIME_S": str(DRAIN_TIME_S), "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01",
            "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05", "ECS_EVENT_OPS_API_MAX_ATTEMPTS": str(API_MAX_ATTEMPTS),
            "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": str(SETTLE_S),
            "ECS_EVENT_OPS_SPOT_NOTICE_S": str(size.notice_s), "ECS_EVENT_OPS_SPOT_MARGIN_S": str(MARGIN_S),
            "ECS_EVENT_OPS_DRAIN_LEASE_GRACE_S": str(LEASE_GRACE_S),
            "ECS_EVENT_OPS_RESTORE_AFTER_S": str(RESTORE_AFTER_S),
            "ECS_EVENT_OPS_FLAP_MAX_STARTS": str(FLAP_MAX_STARTS),
            "ECS_EVENT_OPS_REPLACE_VSWITCHES": ",".join(f"{VPC_ID}/{zone}={vsw}" for zone, vsw in VSWITCHES.items()
                                                          if zone != "cn-hangzhou-h")}


@dataclass
class Delivery:
    """One body for one function (each function has its own trigger, retried on its own)."""

    body: bytes
    function: str
    poison: int = 0  # poison elements inside
    alone: bool = False  # nothing but poison: no function may call the cloud for it
    attempts: int = 0
    not_before: float = 0.0  # epoch: a notice held back (fast and leftover paths)
    # drain_spot's first copy of some notices: "midwait", "pair", "kill:<kill point>", "timer"
    plan: str | None = None
    payload: dict[str, Any] | None = None  # the notice, for a pair's second envelope
    waits_for: str | None = None  # held while this instance's planned delivery is in flight
    instance: str | None = None  # the notice's instance
    copy: int = 0  # 0: the first delivery of the event to this function


@dataclass
class Spawned:
    """One planned drain_spot invocation in a function instance, and what became of it."""

    iid: str
    mode: str  # the plan
    pid: int
    killed: bool = False
    point: str | None = None  # the kill point it parked at
    killed_at: float | None = None  # epoch
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    outcome: str | None = None  # "ok", "raised", "killed"


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
    overruns: dict[str, float] = field(default_factory=dict)  # iid -> its latest removal past the deadline
    deliveries: int = 0
    invocations: int = 0
    outage_deliveries: int = 0  # deliveries made while the store was down
    sweeps: int = 0
    seconds: float = 0.0
    settled: bool = False  # False: the run was cut at Size.max_run_s
    store_slowest_s: float = 0.0  # the longest store transaction (lock wait included), any process
    store_slowest: str = ""
    mutant: str | None = None
    opted_in: set[str] = field(default_factory=set)  # tagged for replacement
    successors: dict[str, list[str]] = field(default_factory=dict)  # predecessor -> replaces=<it> instances
    successor_status: dict[str, str] = field(default_factory=dict)
    launches: Counter[str] = field(default_factory=Counter)  # predecessor -> RunInstances that created
    stock_outs: int = 0  # RunInstances answered a stock error
    replacements: list[dict[str, Any]] = field(default_factory=list)  # replace ledger entries
    replace_results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # iid -> drain_spot's answers


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
    for k, spot in enumerate(i for i in instances if i["name"].startswith("spot")):
        if k % 2 == 0:  # opted in to the replacement, both ways
            spot["tags"] = {**spot["tags"], REPLACE_TAG: "spot" if k % 4 == 0 else "spot-or-on-demand"}
    add("calm", 1, spot_strategy="SpotAsPriceGo", tags={"app": "web", REPLACE_TAG: "spot"})  # never interrupted
    add("steady", 1, tags={"app": "web", REPLACE_TAG: "spot"})  # on-demand, never stopped: a forged notice names it
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
                                             "access_key_secret": "reliability-secret"}, POISON_KEY],
                            "instances": instances, "load_balancers": load_balancers,
                            "provisioning": {
                                "boot_s": BOOT_S,
                                "vswitches": [{"id": vsw, "zone": zone, "vpc_id": VPC_ID, "cidr_prefix": f"10.{7 + k}.0"}
                                              for k, (zone, vsw) in enumerate(VSWITCHES.items())],
                                "instance_types": [{"type": "ecs.g7.large", "cores": 2, "memory": 8},
                                                   {"type": "ecs.g6.large", "cores": 2, "memory": 8}],
                                "stock": [{"instance_type": "ecs.g7.large", "zone": "cn-hangzhou-i", "count": 0},
                                          {"instance_type": "ecs.g7.large", "zone": "cn-hangzhou-j",
                                           "count": max(1, n // 2)}]}})


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
    run.opted_in = {i["id"] for i in emu.state()["instances"]
                    if REPLACE_TAG in i["tags"] and i["name"].startswith("spot")}
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
                   plans: dict[str, str] | None = None) -> list[Delivery]:
    """Each event twice to each of its functions, shuffled within a window, with poison alone
    and inside batches; a notice's first drain_spot copy may carry a plan (``plans``, taken
    out as used), its second then waits for it; held notices wait for their time."""
    items: list[Delivery] = []
    for payload in payloads:
        envelope = envelope_of.setdefault(str(payload["id"]), rng.choice(ENVELOPES))
        functions = ["record_lifecycle"]
        iid = str(payload.get("content", {}).get("instanceId") or "")
        not_before, plan = 0.0, None
        if payload["name"] == "Instance:StateChange":
            functions.append("auto_start")
        elif payload["name"] == "Instance:PreemptibleInstanceInterruption":
            functions.append("drain_spot")
            if run is not None and iid in run.held and iid in run.notice_at:
                deadline = run.notice_at[iid] + size.notice_s
                not_before = deadline - MARGIN_S + 0.1 if run.held[iid] == "fast" else deadline + 0.5
            elif plans and iid in plans:
                plan = plans.pop(iid)
        value = wrap_object(payload, envelope)
        expected_id[str(payload["id"])] = (
            str(value["id"]) if envelope == "eventbridge" and isinstance(value, dict) else str(payload["id"]))
        for function in functions:
            planned = plan if function == "drain_spot" else None
            for copy in range(2):
                if rng.random() < 0.3 and not planned:  # inside a batch with a poison element
                    batch = [value, POISON[rng.randrange(len(POISON))].decode("utf-8", "replace")]
                    rng.shuffle(batch)
                    items.append(Delivery(json.dumps(batch).encode(), function, poison=1,
                                          not_before=not_before, instance=iid or None, copy=copy))
                else:  # a planned copy comes first: its duplicate follows once it ended
                    items.append(Delivery(wrap(payload, envelope), function, not_before=not_before,
                                          plan=planned if copy == 0 else None, payload=payload,
                                          waits_for=iid if planned and copy else None,
                                          instance=iid or None, copy=copy))
        if rng.random() < 0.3:
            body = POISON[rng.randrange(len(POISON))]
            items += [Delivery(body, f, poison=1, alone=True)
                      for f in ("record_lifecycle", "auto_start", "drain_spot")]
    shuffled: list[Delivery] = []
    for start in range(0, len(items), size.window):
        chunk = items[start:start + size.window]
        rng.shuffle(chunk)
        shuffled += chunk
    return shuffled


# --- function instances --------------------------------------------------------------------------


@dataclass
class Instance:
    """One warm drain_spot instance (``python -m tools.mutants --serve``)."""

    process: subprocess.Popen[bytes]
    number: int
    ready: bool = False
    job: int | None = None  # the job in flight
    delivery: Delivery | None = None
    spawned: Spawned | None = None
    kill_at: float | None = None  # epoch: a "timer" plan's kill
    dead: bool = False


class Instances:
    """Warm drain_spot instances, kept for the life of this process (replaced when killed) so
    their cold start never eats a compressed notice period; the mutant travels with each job."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pool: list[Instance] = []
        self.answers: queue.Queue[tuple[Instance, dict[str, Any]]] = queue.Queue()
        self.logs = Path(tempfile.mkdtemp(prefix="reliability-instances-"))
        self._jobs = 0
        self._spawned = 0
        self.failed_starts = 0  # instances that died before they were ready
        self.grow(count)

    def grow(self, count: int) -> None:
        self.count = max(self.count, count)
        while len([i for i in self.pool if not i.dead]) < self.count:
            self.pool.append(self._spawn())

    def _spawn(self) -> Instance:
        self._spawned += 1
        stderr = open(self.logs / f"instance-{self._spawned}.log", "wb")  # noqa: SIM115 (the child's)
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.mutants", "--serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=stderr, cwd=str(Path(__file__).resolve().parent.parent),
            env={k: v for k, v in os.environ.items() if k != MUTANT_ENV})
        stderr.close()
        instance = Instance(process, self._spawned)
        threading.Thread(target=self._read, args=(instance,), daemon=True).start()
        return instance

    def _read(self, instance: Instance) -> None:
        stdout: IO[bytes] | None = instance.process.stdout
        assert stdout is not None
        with stdout:
            for line in stdout:
                try:
                    self.answers.put((instance, json.loads(line)))
                except ValueError:
                    continue
        self.answers.put((instance, {"eof": True}))

    def wait_ready(self, timeout_s: float = INSTANCE_READY_S) -> None:
        until = time.monotonic() + timeout_s
        while any(not i.ready and not i.dead for i in self.pool) and time.monotonic() < until:
            self._take(0.2)
            self.replace_dead()
        if not any(i.ready for i in self.pool):
            raise RuntimeError(f"no function instance became ready within {timeout_s:g} s (logs: {self.logs})")

    def idle(self) -> list[Instance]:
        return [i for i in self.pool if i.ready and not i.dead and i.job is None]

    def busy(self) -> list[Instance]:
        return [i for i in self.pool if i.job is not None]

    def send(self, instance: Instance, delivery: Delivery, *, run: str, cloud_url: str, db_url: str,
             env: Mapping[str, str], mutant: str | None, park: str | None = None) -> None:
        self._jobs += 1
        job = {"id": self._jobs, "run": run, "function": delivery.function, "body": base64.b64encode(delivery.body).decode(),
               "cloud_url": cloud_url, "db_url": db_url, "env": dict(env), "park": park, "mutant": mutant,
               "replace_lease_s": REPLACE_LEASE_S}
        instance.job, instance.delivery = self._jobs, delivery
        stdin = instance.process.stdin
        assert stdin is not None
        stdin.write((json.dumps(job) + "\n").encode())
        stdin.flush()

    def kill(self, instance: Instance) -> None:
        instance.process.kill()  # SIGKILL: no lease released, no cleanup
        instance.dead = True
        self._reap(instance)

    def _take(self, timeout_s: float) -> list[tuple[Instance, dict[str, Any]]]:
        got: list[tuple[Instance, dict[str, Any]]] = []
        try:
            got.append(self.answers.get(timeout=timeout_s))
            while True:
                got.append(self.answers.get_nowait())
        except queue.Empty:
            pass
        for instance, answer in got:
            if "ready" in answer:
                instance.ready = True
            if "eof" in answer:  # the process is gone (killed, or died on its own)
                instance.dead = True
        return [(i, a) for i, a in got if "ready" not in a]

    def poll(self, timeout_s: float = 0.0) -> list[tuple[Instance, dict[str, Any]]]:
        """Answers of finished or parked jobs (``{"eof"}``: the instance died); timers fired."""
        answers = self._take(timeout_s) if timeout_s > 0 else self._take(0.001)
        now = time.time()
        for instance in self.pool:
            if instance.kill_at is not None and instance.job is not None and now >= instance.kill_at:
                instance.kill_at = None
                answers.append((instance, {"id": instance.job, "timer": True}))
        return answers

    def replace_dead(self) -> None:
        for instance in self.pool:
            if instance.dead and instance.job is None:
                if not instance.ready:
                    self.failed_starts += 1
                self._reap(instance)
        if self.failed_starts > SPAWN_FAILURES:
            raise RuntimeError(f"{self.failed_starts} function instances died before they were ready "
                               f"(logs: {self.logs})")
        self.pool = [i for i in self.pool if not i.dead or i.job is not None]
        self.grow(self.count)

    @staticmethod
    def _reap(instance: Instance) -> None:
        if instance.process.stdin is not None and not instance.process.stdin.closed:
            instance.process.stdin.close()
        if instance.process.poll() is None:
            instance.process.kill()
        instance.process.wait()

    def close(self) -> None:
        for instance in self.pool:
            self._reap(instance)
        self.pool = []


_INSTANCES: list[Instances] = []  # the process's pool, once started


def instances(count: int) -> Instances:
    """The process's warm instances (at least ``count``), started once."""
    if not _INSTANCES:
        _INSTANCES.append(Instances(count))
        atexit.register(close_instances)
    pool = _INSTANCES[0]
    pool.replace_dead()
    pool.grow(count)
    return pool


def close_instances() -> None:
    """Stop the process's warm instances (the next run starts new ones)."""
    while _INSTANCES:
        _INSTANCES.pop().close()


# --- the delivery loop ---------------------------------------------------------------------------


class Platform:
    """The modelled platform: deliveries to in-process functions in slices of :data:`SLICE`,
    drain_spot's to the warm instances as soon as one is idle; between slices new events are
    picked up, answers of instances taken and the sweep's timer fires; a failed delivery comes
    again :data:`PLATFORM_RETRY_S` later (at most :data:`MAX_ATTEMPTS` times)."""

    def __init__(self, emu: Emulator, db_url: str, run: Run, rng: random.Random, *, size: Size,
                 pool: Instances, sabotage: str | None) -> None:
        self.emu, self.db_url, self.run, self.rng, self.size, self.pool = emu, db_url, run, rng, size, pool
        self.sabotage = sabotage
        self.env = function_env(size)
        self.signing = emu.signing_environment()
        self.poison_env = {**self.env, "ALIBABA_CLOUD_ACCESS_KEY_ID": POISON_KEY["access_key_id"],
                           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": POISON_KEY["access_key_secret"]}
        self.queue: list[Delivery] = []
        self.outage_left = -1  # the store goes down once, early in the run
        self.token = uuid.uuid4().hex  # the run, for the instances

    # -- failures and retries --

    def failed(self, delivery: Delivery) -> None:
        delivery.attempts += 1  # (a planned delivery keeps its plan until it was killed)
        if self.sabotage == "no_platform_retry":
            return  # lost: the events it carried are never recorded
        if delivery.attempts >= MAX_ATTEMPTS:
            self.run.given_up.append(f"{delivery.function}: {delivery.body[:80].decode('utf-8', 'replace')}")
            return
        delivery.not_before = time.time() + PLATFORM_RETRY_S
        self.queue.append(delivery)

    def succeeded(self, delivery: Delivery, value: Any) -> None:
        if delivery.function == "record_lifecycle":  # poison is counted where it is recorded
            self.run.poison_sent += delivery.poison
            self.run.poison_reported += len((value or {}).get("bad", []))
        if delivery.function == "drain_spot" and isinstance(value, Mapping):
            for result in value.get("replacements") or []:
                self.run.replace_results.setdefault(str(result.get("instance_id")), []).append(result)

    # -- the instances --

    def dispatch(self, delivery: Delivery) -> bool:
        """To idle instances (a pair to two at once); False when too few are idle."""
        idle = self.pool.idle()
        bodies = [delivery]
        if delivery.plan == "pair" and delivery.payload is not None:
            others = [e for e in ENVELOPES if wrap(delivery.payload, e) != delivery.body]
            bodies.append(Delivery(wrap(delivery.payload, self.rng.choice(others)), "drain_spot",
                                   instance=delivery.instance))
        if len(idle) < len(bodies):
            return False
        down = self.outage_left > 0 and not delivery.plan  # (a planned delivery must reach its point)
        self.run.outage_deliveries += down
        for instance, body in zip(idle, bodies, strict=False):
            park = delivery.plan.split(":", 1)[1] if delivery.plan and delivery.plan.startswith("kill:") else (
                "midwait" if delivery.plan == "midwait" else None)
            env = {**self.env, **self.signing}
            self.pool.send(instance, body, run=self.token, cloud_url=self.emu.url, db_url=DOWN_DB if down else self.db_url,
                           env=env, mutant=self.run.mutant, park=park)
            self.run.deliveries += 1
            if delivery.plan:
                instance.spawned = Spawned(delivery.instance or "", delivery.plan, instance.process.pid)
                self.run.spawned.append(instance.spawned)
                if delivery.plan == "timer":
                    instance.kill_at = time.time() + self.rng.uniform(0.1, 2.0)
        return True

    def take_answers(self, timeout_s: float = 0.0) -> None:
        for instance, answer in self.pool.poll(timeout_s):
            slowest = answer.get("store_slowest")
            if slowest and slowest[0] > self.run.store_slowest_s:
                self.run.store_slowest_s, self.run.store_slowest = slowest[0], f"drain_spot instance: {slowest[1]}"
            delivery = instance.delivery
            if delivery is None or not ("eof" in answer or answer.get("id") == instance.job):
                continue
            spawned = instance.spawned
            killed = "parked" in answer or "timer" in answer or "eof" in answer
            if killed:
                self.pool.kill(instance)
            instance.job, instance.delivery, instance.spawned = None, None, None
            self.run.invocations += 1
            if spawned is not None:
                spawned.ended_at = time.time()
                spawned.killed = killed
                spawned.killed_at = spawned.ended_at if killed else None
                spawned.point = answer.get("parked")
                spawned.outcome = "killed" if killed else ("raised" if answer.get("error") else "ok")
            if killed:
                delivery.plan = None  # its redelivery runs to the end
                self.failed(delivery)
                continue
            if answer.get("error"):
                self.run.raised += 1
                if delivery.plan in ("pair", "timer"):
                    delivery.plan = None  # (a kill point's plan stays: its retry is killed there)
                self.failed(delivery)
                continue
            self.succeeded(delivery, answer.get("value"))
        self.pool.replace_dead()

    # -- in this process --

    def invoke_here(self, delivery: Delivery) -> None:
        self.run.deliveries += 1
        down = self.outage_left > 0
        self.outage_left -= 1 if down else 0
        self.run.outage_deliveries += down
        result = invoke_local(delivery.function, delivery.body, cloud_url=self.emu.url,
                              db_url=DOWN_DB if down else self.db_url,
                              env=self.poison_env if delivery.alone else self.env)
        self.run.invocations += 1
        if result.error is not None:
            self.run.raised += 1
            self.failed(delivery)
        else:
            self.succeeded(delivery, result.value)

    def replace_kill_pending(self) -> bool:
        """A delivery planned to die inside its replacement is queued or in flight."""
        planned = [d for d in self.queue if d.plan and d.plan.startswith("kill:replace:")]
        flying = [i for i in self.pool.busy() if i.delivery is not None
                  and (i.delivery.plan or "").startswith("kill:replace:")]
        return bool(planned or flying)

    def due(self) -> list[Delivery]:
        now = time.time()
        busy = {i.delivery.instance for i in self.pool.busy() if i.delivery is not None and i.spawned} | {
            d.instance for d in self.queue if d.plan}
        return [d for d in self.queue if d.not_before <= now and d.waits_for not in busy]

    def take(self, delivery: Delivery) -> None:
        self.queue = [d for d in self.queue if d is not delivery]


def deliver_all(emu: Emulator, db_url: str, run: Run, rng: random.Random, size: Size, *,
                sabotage: str | None = None, pool: Instances) -> None:
    """Deliver every event the emulator emits until the run settled (:class:`Platform`)."""
    platform = Platform(emu, db_url, run, rng, size=size, pool=pool, sabotage=sabotage)
    envelope_of: dict[str, str] = {}
    cursor = 0
    last_sweep = time.monotonic()
    quiet_sweeps = 0  # sweeps in a row that did nothing and left nothing of their own to do
    # Some notices' first drain_spot copy goes to an instance that dies: the one whose reclaim is
    # called off inside its weight-0 wait (so the undo of a taken-over drain shows), one through
    # two envelopes at once, others at a kill point drawn at random, one after a random delay.
    spots = sorted(run.interrupted - run.kept - set(run.held))
    kills = [f"kill:{rng.choice(KILL_POINTS)}" for _ in range(max(0, size.kills - 1))] + ["timer"]
    # (the last of the staying spots always drains untouched: a gentle drain whatever the kills do)
    order = sorted(run.kept) + [s for s in spots if s not in run.released][:-1] + sorted(run.released)
    plans = dict(zip(order, ["midwait", "pair", *kills], strict=False))  # more plans than notices: cut
    # one opted-in instance that is not released dies inside its replacement instead: RunInstances
    # answered, the successor not recorded (the taker must find it by its tag, not launch again)
    inside = [s for s in order if s in run.opted_in and s not in run.released and plans[s].startswith("kill:")]
    if inside:
        plans[inside[0]] = "kill:replace:launched"
    forged = forged_notices(run, emu)
    settle_until = max(run.notice_at.values(), default=time.time()) + size.notice_s + RESTORE_AFTER_S \
        + 2 * SWEEP_EVERY_S
    started = time.monotonic()
    while True:
        if time.monotonic() - started >= size.max_run_s:
            break
        payloads = emu.events()[cursor:]
        cursor += len(payloads)
        run.emitted += payloads
        platform.queue += deliveries_for(payloads, rng, size, envelope_of, run.expected_id, run=run,
                                         plans=plans)
        if forged:  # the forged and foreign notices, twice each to each function, among the first
            for payload in forged:
                for envelope in rng.sample(ENVELOPES, 2):
                    for function in ("record_lifecycle", "drain_spot"):
                        platform.queue.insert(rng.randrange(len(platform.queue) + 1),
                                              Delivery(wrap(payload, envelope), function))
                    run.forged_sent += 1
            forged = []
        _crash_flapper(emu, run)
        platform.take_answers()
        if time.monotonic() - last_sweep >= SWEEP_EVERY_S:
            last_sweep = time.monotonic()
            quiet = _sweep_quiet(emu, db_url, run, platform.env)
            # While the delivery planned to die inside its replacement is still to be retried
            # (it raised before its kill point: a fault), the timer would take that replacement
            # over and launch it first, and the kill inside it would never be exercised.
            quiet = (_replacements_quiet(emu, db_url, run, platform.env) and quiet
                     if not platform.replace_kill_pending() else False)
            quiet_sweeps = quiet_sweeps + 1 if quiet else 0
        due = platform.due()
        if platform.outage_left < 0 and due:
            platform.outage_left = size.outage
        # drain_spot's trigger: to the instances at once; planned copies first, then first
        # deliveries, then copies and retries (FC scales out: a backlog starts more instances)
        waiting = sorted((d for d in due if d.function == "drain_spot" and not d.alone),
                         key=lambda d: (d.plan is None, d.copy + d.attempts, d.not_before))
        for delivery in waiting:
            if platform.dispatch(delivery):
                platform.take(delivery)
        backlog = len([d for d in waiting if any(d is q for q in platform.queue)])
        if backlog:
            pool.grow(min(len(pool.busy()) + backlog, size.function_instances * 2))
        here = [d for d in due if d.function != "drain_spot" or d.alone][:SLICE]
        for delivery in here:
            platform.take(delivery)
            platform.invoke_here(delivery)
        if sabotage == "start_ineligible" and run.ineligible:
            emu.set_faults(fault_rate=0.0)
            _start_directly(emu, sorted(run.ineligible)[0])
            sabotage = None
        if not here:
            if (not platform.queue and not pool.busy() and not emu.events()[cursor:]
                    and time.time() >= settle_until and quiet_sweeps >= 2 and not _flapper_due(emu, run)):
                run.settled = True
                break
            platform.take_answers(0.05)
    for instance in pool.busy():  # cut at the cap: what is still running dies with the run
        pool.kill(instance)
    platform.take_answers()
    run.given_up += [f"{d.function}: {d.body[:80].decode('utf-8', 'replace')}" for d in platform.queue]


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
    """One tick of the sweep's timer; True when it did nothing and left nothing of its own to
    come back for: nothing started, no drain finished or restored, no error, and no stop of an
    instance that may be started deferred (ActionTrail lagging or throttled). A stop "recent:
    the event path handles it" is the event path's, whose deliveries the loop waits for; a
    deferred stop of an instance that must never be started would only ever be skipped."""
    result = invoke_local("sweep", SWEEP_BODY, cloud_url=emu.url, db_url=db_url, env=env)
    run.invocations += 1
    run.sweeps += 1
    if result.error is not None:
        return False
    deferred = ("no ActionTrail record yet", "ActionTrail throttled")
    value = result.value or {}
    for d in value.get("auto_start", {}).get("decisions", []):
        if d["decision"] == "started":
            return False
        if str(d["reason"]).startswith(deferred) and d.get("instance_id") not in run.ineligible:
            return False
    drains = value.get("drains") or value.get("drain") or {}
    return not (isinstance(drains, Mapping) and any(drains.get(k) for k in ("restored", "finished", "errors")))


def _replacements_quiet(emu: Emulator, db_url: str, run: Run, env: Mapping[str, str]) -> bool:
    """One tick of drain_spot's timer (the finisher: it settles the launched replacements and
    takes over those whose holder died); True when it did nothing and no replacement is open.
    Invoked only while a replacement is open (the suite's process shares the emulator's GIL)."""
    if not _replacements_open(db_url):
        return True
    result = invoke_local("drain_spot", SWEEP_BODY, cloud_url=emu.url, db_url=db_url, env=env)
    run.invocations += 1
    if result.error is not None:
        return False
    done = (result.value or {}).get("replacements") or {}
    if any(done.get(k) for k in ("settled", "resumed", "errors", "pending", "orphaned")):
        return False
    return not _replacements_open(db_url)


def _replacements_open(db_url: str) -> bool:
    store = Store(db_url)
    try:
        return any(e.status in REPLACE_OPEN for e in store.ledger_find("replace"))
    except Exception:  # the store is down (the outage): not settled
        return True
    finally:
        store.close()


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
        for entry in store.ledger_find("replace"):
            run.replacements.append({"key": entry.key, "instance_id": entry.instance_id,
                                     "status": entry.status, "data": dict(entry.data)})
    finally:
        store.close()
    for call in emu.calls():
        if call.access_key_id == POISON_KEY["access_key_id"]:
            run.poison_cloud_calls += 1
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
    state = emu.state()
    run.final = members(state)
    predecessor: dict[str, str] = {}
    for inst in state["instances"]:
        old = inst["tags"].get("replaces")
        if old:
            run.successors.setdefault(old, []).append(inst["id"])
            run.successor_status[inst["id"]] = inst["status"]
            predecessor[inst["id"]] = old
    for launch in emu.launched():
        for iid in launch.get("instance_ids") or []:
            run.launches[predecessor.get(iid, f"(untagged {iid})")] += 1
    run.stock_outs = sum(1 for c in emu.calls() if c.action == "RunInstances" and c.code is not None
                         and ("NoStock" in c.code or "NotOnSale" in c.code or "NotSupported" in c.code
                              or "Offline" in c.code))
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
    _check_replacements(run, fail)
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
    successors = {s for found in run.successors.values() for s in found}
    for iid in sorted(written - run.interrupted - successors):
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
        deadline = _deadline(run, iid, entries)
        removed_at: dict[tuple[str, str, int | None], float] = {}
        for t, action, group, server, port, _, _ in run.writes:
            if server == iid and action in REMOVALS:
                removed_at.setdefault((group, server, port), t)
        mine = [k for k in run.initial if k[1] == iid]
        late = [removed_at[k] - deadline for k in mine if k in removed_at and removed_at[k] > deadline]
        never = [k for k in mine if k not in removed_at]
        if iid in run.kept and any(e["status"] == "restored" for e in entries):
            never = []  # its reclaim was called off: a takeover may restore it without removing it
        if run.held.get(iid) == "leftover":  # delivered past its deadline on purpose
            run.leftover_overrun_s = max([run.leftover_overrun_s, *late])
        else:
            run.overrun_s = max([run.overrun_s, *late])
            if late:
                run.overruns[iid] = round(max(late), 3)
        if (late or never) and not flagged:
            fail("drained_by_deadline", f"interrupted {iid}: {len(never)} memberships never removed, "
                 f"{len(late)} removed up to {max(late, default=0):.2f} s past the deadline, unflagged")
        left = [k for k in mine if k in run.final and iid not in run.kept]
        if left and not flagged:
            fail("drained_by_deadline", f"interrupted {iid} still in {len(left)} removable groups, unflagged")
        _check_gentle(run, iid, entries, fail)
        _check_originals(run, iid, entries, fail)


def _check_replacements(run: Run, fail: Any) -> None:
    """``one_successor``: at most one instance tagged ``replaces=<id>`` and one RunInstances
    that created one per interrupted instance (the emulator's state and launch log, whatever the
    ledger says), none for an instance not opted in, nor for a forged or foreign notice's.
    ``successor_serves``: a successor that reached Running is in every group its predecessor
    was in at the notice (the fleet), with the same port and weight; a replacement without a
    Running successor is recorded with its reason."""
    for old, found in sorted(run.successors.items()):
        if len(found) > 1 or run.launches[old] > 1:
            fail("one_successor", f"{old} has {len(found)} successors ({', '.join(sorted(found))}) "
                 f"from {run.launches[old]} launches")
        if old in run.forged_targets or old not in run.interrupted:
            fail("one_successor", f"{old} was never interrupted (a forged or foreign notice named it), "
                 f"yet has {len(found)} successors")
        elif old not in run.opted_in:
            fail("one_successor", f"{old} was not opted in, yet has {len(found)} successors")
    untagged = [k for k in run.launches if k.startswith("(untagged")]
    if untagged:
        fail("one_successor", f"{len(untagged)} launches carry no replaces tag (e.g. {untagged[0]})")
    entries = {str(e["instance_id"]): e for e in run.replacements}
    for old in sorted(run.opted_in & run.interrupted):
        running = [s for s in run.successors.get(old, []) if run.successor_status.get(s) == "Running"]
        if not running:
            entry = entries.get(old)
            answered = [r for r in run.replace_results.get(old, []) if r.get("reason")]
            if (entry is None or not entry["data"].get("reason")) and not answered:
                status = entry["status"] if entry else "no ledger entry, no reason answered"
                fail("successor_serves", f"interrupted {old} (opted in) has no Running successor and no "
                     f"reason recorded ({status})")
            continue
        successor = running[0]
        wrong = []
        for (group, server, port), weight in sorted(run.initial.items(), key=str):
            if server == old and run.final.get((group, successor, port)) != weight:
                wrong.append(f"{group} port {port}: {run.final.get((group, successor, port))}, not {weight}")
        if wrong:
            fail("successor_serves", f"successor {successor} of {old} does not serve as it did "
                 f"({len(wrong)} groups): {'; '.join(wrong[:3])}")


def _deadline(run: Run, iid: str, entries: Sequence[Mapping[str, Any]]) -> float:
    """The notice's deadline as the drain recorded it (the notice's own time plus the notice
    period), else as the suite saw the notice go out."""
    from shared.events import parse_iso_or_none

    recorded = [t.timestamp() for t in (parse_iso_or_none(e["data"].get("deadline")) for e in entries) if t]
    return min(recorded) if recorded else run.notice_at[iid] + run.size.notice_s


def _check_gentle(run: Run, iid: str, entries: Sequence[Mapping[str, Any]], fail: Any) -> None:
    """Each removal drain_spot made while the deadline was more than the margin away (so when
    it decided, the time left allowed the gentle path) came after a weight-0 write of that very
    membership: read from the emulator's call log, no timing window. Exempt by design: a
    released instance (nothing to drain gently), a drain whose weight change failed (flagged
    ``weight_failed``) and the sweep's takeovers (it finishes at once)."""
    if iid in run.released or any(e["data"].get("weight_failed") or e["data"].get("released")
                                  for e in entries):
        return
    deadline = _deadline(run, iid, entries)
    zeroed: dict[tuple[str, int | None], float] = {}
    for t, action, group, server, port, weight, _ in run.writes:
        if server == iid and action in WEIGHT_WRITES and weight == 0:
            zeroed.setdefault((group, port), t)
    for t, action, group, server, port, _, function in sorted(run.writes):
        if server != iid or action not in REMOVALS or function != "drain_spot":
            continue
        left = deadline - t
        if left > MARGIN_S and not zeroed.get((group, port), t + 1) < t:
            fail("gentle", f"interrupted {iid} removed from {group} port {port} by drain_spot "
                 f"{left:.1f} s before its deadline without weight 0 first")
            return


def _check_originals(run: Run, iid: str, entries: Sequence[Mapping[str, Any]], fail: Any) -> None:
    for entry in entries:
        for m in entry["data"].get("memberships") or []:
            group = m.get("group_id") or f"default:{m.get('load_balancer_id')}"
            key = (group, m.get("server_id"), m.get("port"))
            if key in run.initial and m.get("weight") != run.initial[key]:
                fail("originals_exact", f"drain {entry['key']} recorded weight {m.get('weight')} as the "
                     f"original of {iid} in {group} port {m.get('port')} (was {run.initial[key]})")
    restored = any(e["status"] == "restored" for e in entries)
    if iid in run.kept and not restored:
        fail("originals_exact", f"kept {iid} (reclaim called off) was never restored")
    elif restored:  # every membership back, at exactly the fleet's weight
        mine = {k: w for k, w in run.initial.items() if k[1] == iid}
        now_weights = {k: run.final.get(k) for k in mine}
        if now_weights != mine:
            wrong = sorted((str(k), now_weights[k], w) for k, w in mine.items() if now_weights[k] != w)
            fail("originals_exact", f"{'kept ' if iid in run.kept else ''}{iid} restored with other "
                 f"weights (group, now, fleet's): {wrong[:3]}")


def run_suite(size: Size = SMALL, seed: int = 7, db_url: str | None = None, *, workdir: Path | None = None,
              sabotage: str | None = None, mutant: str | None = None) -> tuple[Run, list[str]]:
    """Play, deliver and check; returns the run and the broken invariants."""
    if mutant is not None and mutant not in MUTANTS:
        raise ValueError(f"unknown mutant {mutant!r}; known: {', '.join(MUTANTS)}")
    rng = random.Random(seed)
    run = Run(size=size, mutant=mutant)
    pool = instances(size.function_instances)
    pool.wait_ready()  # warm before the first notice: FC's instances are, for a burst
    started = time.monotonic()
    base = workdir or Path.cwd() / ".data"
    base.mkdir(parents=True, exist_ok=True)
    if db_url is None:
        path = base / f"reliability-{seed}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db_url = f"sqlite:///{path}"
    fresh_stores()
    with log.redirect(io.StringIO()), \
            Emulator(generated_fleet(size), start_delay_s=0.05, seed=seed, trail_lag_s=TRAIL_LAG_S,
                     trail_qps=TRAIL_QPS) as emu, \
            applied_environment(emu.signing_environment()), applied(mutant), store_timer() as slowest, \
            replace_lease(REPLACE_LEASE_S):
        play_scenario(emu, run)
        emu.set_faults(fault_rate=size.fault_rate, lose_rate=size.lose_rate, seed=seed,
                       latency_ms=size.latency_ms, lose_answer=LOST_ANSWERS,
                       throttle_actions={"DescribeInstances": 40.0, "RemoveVServerGroupBackendServers": 20.0})
        deliver_all(emu, db_url, run, rng, size, sabotage=sabotage, pool=pool)
        emu.set_faults(fault_rate=0.0, lose_rate=0.0, latency_ms=0.0, throttle_actions={})
        if slowest["s"] > run.store_slowest_s:
            run.store_slowest_s, run.store_slowest = slowest["s"], f"this process: {slowest['what']}"
        collect(emu, db_url, run)
    run.seconds = round(time.monotonic() - started, 1)
    return run, check_invariants(run)


def killed_mid_wait(run: Run, spawned: Spawned) -> bool:
    """Killed inside its weight-0 wait: parked there, and the call log agrees (weight 0 written
    before the kill, no removal of the instance before it)."""
    if not (spawned.killed and spawned.point == "midwait" and spawned.killed_at is not None):
        return False
    at = spawned.killed_at
    zeroed = [w for w in run.writes if w[3] == spawned.iid and w[1] in WEIGHT_WRITES and w[5] == 0 and w[0] < at]
    removed = [w for w in run.writes if w[3] == spawned.iid and w[1] in REMOVALS and w[0] < at]
    return bool(zeroed) and not removed


def figures(run: Run, problems: Sequence[str]) -> dict[str, Any]:
    broken = sorted({p.split(":", 1)[0] for p in problems})
    kills = Counter(s.point or ("timer" if s.mode == "timer" else s.mode) for s in run.spawned if s.killed)
    return {
        "mutant": run.mutant, "events_emitted": len(run.emitted), "deliveries": run.deliveries,
        "invocations": run.invocations, "raised_and_retried": run.raised, "sweeps": run.sweeps,
        "poison_sent": run.poison_sent, "poison_reported": run.poison_reported,
        "poison_cloud_calls": run.poison_cloud_calls,
        "forged_and_foreign_sent": run.forged_sent,
        "eligible_started_once": len(run.eligible), "ineligible": len(run.ineligible),
        "flapper_crashes": run.crashes, "flapper_starts": run.starting_events[run.flapper or ""],
        "interrupted": len(run.interrupted), "released_before_notice": len(run.released),
        "notice_s": run.size.notice_s, "store_down_deliveries": run.outage_deliveries,
        "processes": len(run.spawned), "killed": sum(s.killed for s in run.spawned),
        "killed_at": dict(sorted(kills.items())),
        "killed_mid_wait": sum(killed_mid_wait(run, s) for s in run.spawned),
        "pairs": [s.mode for s in run.spawned].count("pair") // 2,
        "drain_paths": dict(sorted(run.paths.items())),
        "drain_statuses": dict(sorted(Counter(str(e["status"]) for e in run.entries).items())),
        "largest_deadline_overrun_s": round(run.overrun_s, 3),
        "overruns": {f"{iid} ({run.held.get(iid) or ('kept' if iid in run.kept else 'spot')})": s
                     for iid, s in sorted(run.overruns.items())},
        "held_past_deadline_overrun_s": round(run.leftover_overrun_s, 3),
        "store_slowest_s": round(run.store_slowest_s, 3), "store_slowest": run.store_slowest,
        "seconds": run.seconds, "settled": run.settled,
        "errors_answered": dict(sorted(run.injected.items())), "answers_lost": run.answers_lost,
        "opted_in_interrupted": len(run.opted_in & run.interrupted),
        "replacements": dict(sorted(Counter(str(e["status"]) for e in run.replacements).items())),
        "successors": sum(len(s) for s in run.successors.values()),
        "successors_running": sum(1 for s in run.successor_status.values() if s == "Running"),
        "launches": sum(run.launches.values()), "stock_outs": run.stock_outs,
        "duplicate_launches": sum(max(0, n - 1) for n in run.launches.values()),
        "replace_reasons": sorted({f"{e['status']}: {str(e['data'].get('reason'))[:80]}" for e in run.replacements
                                   if e["data"].get("reason")} | {
            f"{r['outcome']}: {str(r['reason'])[:80]}" for found in run.replace_results.values() for r in found
            if r.get("reason") and r["outcome"] != "duplicate"}),
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
