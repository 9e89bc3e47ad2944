"""The reliability suite: a hostile delivery of a generated event stream, then invariants.

    python -m tools.reliability [--full] [--seed N] [--json FILE]

What it does (``make test`` runs the small size; ``--full`` the large one):
1. an emulator with a generated fleet: opted-in (``true``/``always``), not opted-in, locked and
   spot instances, the spot ones in CLB default and vServer groups (and a master-slave group);
2. a scenario: unexpected stops, user stops, locked stops, spot interruptions, releases;
3. every event the emulator emits is delivered at least twice, in a random envelope kept per
   event (a redelivery is the same message), shuffled within a window, interleaved with poison
   elements (alone and inside batches), while the emulator injects throttling, 5xx, dropped
   connections and the documented busy codes (CLB ``SystemBusy``, ``OperationBusy``, ...) at a
   seeded rate, loses the answers of some writes it applied (``lose_rate``), and the store is
   unreachable for a stretch of deliveries;
4. a modelled platform: a delivery whose handler raises is retried later (at least once), and
   the sweep's timer fires every ``SWEEP_EVERY_S``; ActionTrail lags the calls (``TRAIL_LAG_S``)
   and answers LookupEvents at its documented 2 calls/s, so ``true`` stops are decided by the
   sweep once settled (``SETTLE_S``), all on a compressed clock;
5. the invariants, checked from the store, the emulator's state, call log and event log:
   every event recorded exactly once; every eligible stopped instance started exactly once and
   no ineligible one started; every interrupted instance out of every removable group before its
   deadline (or flagged); no poison element caused a cloud call; every failure surfaced as a
   raised error or a reported bad element.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import log
from shared.store import Store
from tools.emulator import Emulator, Fleet
from tools.envelopes import ENVELOPES, wrap, wrap_object
from tools.invoke import applied_environment, invoke_local

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
MAX_ATTEMPTS = 10  # deliveries of one body before the modelled platform gives up
ROUNDS = 80  # delivery rounds (and sweep ticks): starting instances emit more events
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
FUNCTION_ENV = {"ECS_EVENT_OPS_DRAIN_TIME_S": "0.2", "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01",
                "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05", "ECS_EVENT_OPS_API_MAX_ATTEMPTS": "6",
                "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": str(SETTLE_S)}


@dataclass(frozen=True)
class Size:
    instances: int  # per role
    fault_rate: float  # 5xx, drops and the action's documented busy codes (SystemBusy, ...)
    window: int
    outage: int  # deliveries during which the store is down
    lose_rate: float = 0.0  # writes applied whose answer is then lost (5xx or dropped)


SMALL = Size(instances=3, fault_rate=0.05, window=6, outage=6, lose_rate=0.05)
FULL = Size(instances=25, fault_rate=0.08, window=20, outage=30, lose_rate=0.05)


@dataclass
class Delivery:
    body: bytes
    functions: tuple[str, ...]
    poison: int = 0  # poison elements inside
    alone: bool = False  # nothing but poison: no function may call the cloud for it
    attempts: int = 0


@dataclass
class Run:
    """Everything the invariants are checked against."""

    emitted: list[dict[str, Any]] = field(default_factory=list)
    eligible: set[str] = field(default_factory=set)
    ineligible: set[str] = field(default_factory=set)
    interrupted: set[str] = field(default_factory=set)
    scenario_start: dict[str, int] = field(default_factory=dict)  # iid -> index in the event log
    starting_events: Counter[str] = field(default_factory=Counter)
    poison_sent: int = 0
    poison_reported: int = 0
    poison_cloud_calls: int = 0
    raised: int = 0
    given_up: list[str] = field(default_factory=list)
    recorded_ids: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)  # fault code -> answers
    answers_lost: int = 0  # writes applied whose answer the caller never saw
    # the identity each event is stored under: the payload id, or the CloudEvent id on EventBridge
    expected_id: dict[str, str] = field(default_factory=dict)
    leftover_memberships: dict[str, int] = field(default_factory=dict)
    drains: list[dict[str, Any]] = field(default_factory=list)
    deliveries: int = 0
    invocations: int = 0
    sweeps: int = 0
    seconds: float = 0.0


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
    add("spot", n * 2, spot_strategy="SpotAsPriceGo", tags={"app": "web"})
    spots = [i["id"] for i in instances if i["name"].startswith("spot")]
    web = [i["id"] for i in instances if i["name"].startswith("crash")]
    load_balancers = [{
        "id": "lb-bp1reliability0001", "name": "web",
        "default_servers": [{"server_id": s, "weight": 100} for s in spots + web],
        "vserver_groups": [
            {"id": "rsp-bp1reliab000001", "name": "http",
             "servers": [{"server_id": s, "port": p, "weight": 100} for s in spots + web for p in (80, 8080)]},
            {"id": "rsp-bp1reliab000002", "name": "https",
             "servers": [{"server_id": s, "port": 443, "weight": 100} for s in spots]}],
        "master_slave_groups": [{"id": "rsp-bp1reliabms0001", "name": "ms", "servers": [
            {"server_id": spots[0], "port": 9000, "weight": 100, "server_type": "Master"},
            {"server_id": web[0], "port": 9000, "weight": 100, "server_type": "Slave"}]}],
    }]
    return Fleet.from_dict({"region": "cn-hangzhou", "account_id": "1234567890123456",
                            "credentials": [{"access_key_id": "LTAIreliability01",
                                             "access_key_secret": "reliability-secret"}],
                            "instances": instances, "load_balancers": load_balancers})


def play_scenario(emu: Emulator, run: Run) -> None:
    """The incidents, with the eligibility each one implies."""
    by_role: dict[str, list[str]] = defaultdict(list)
    for inst in emu.state()["instances"]:
        by_role[inst["name"].rsplit("-", 1)[0]].append(inst["id"])
    events_before = len(emu.events())
    for iid in by_role["locked"]:
        emu.lock(iid, "security")
    for role, by in (("crash-true", "crash"), ("crash-always", "crash"), ("user-true", "user"),
                     ("user-always", "user"), ("untagged", "crash"), ("locked", "crash")):
        for iid in by_role[role]:
            emu.stop_instance(iid, by=by)
            (run.eligible if role in ("crash-true", "crash-always", "user-always") else run.ineligible).add(iid)
    spots = by_role["spot"]
    for iid in spots:
        emu.interrupt_spot(iid)
        run.interrupted.add(iid)
    for iid in run.eligible | run.ineligible:
        run.scenario_start[iid] = events_before
        emu.wait_for_status(iid, "Stopped", 10)
    for iid in spots[len(spots) // 2:]:  # half are reclaimed during the run, half later
        emu.release(iid)


def deliveries_for(payloads: Sequence[dict[str, Any]], rng: random.Random, size: Size,
                   envelope_of: dict[str, str], expected_id: dict[str, str]) -> list[Delivery]:
    """Each event twice, shuffled within a window, with poison alone and inside batches."""
    items: list[Delivery] = []
    for payload in payloads:
        envelope = envelope_of.setdefault(str(payload["id"]), rng.choice(ENVELOPES))
        functions = ["record_lifecycle"]
        if payload["name"] == "Instance:StateChange":
            functions.append("auto_start")
        elif payload["name"] == "Instance:PreemptibleInstanceInterruption":
            functions.append("drain_spot")
        value = wrap_object(payload, envelope)
        expected_id[str(payload["id"])] = (
            str(value["id"]) if envelope == "eventbridge" and isinstance(value, dict) else str(payload["id"]))
        for _ in range(2):
            if rng.random() < 0.3:  # inside a batch with a poison element
                batch = [value, POISON[rng.randrange(len(POISON))].decode("utf-8", "replace")]
                rng.shuffle(batch)
                items.append(Delivery(json.dumps(batch).encode(), tuple(functions), poison=1))
            else:
                items.append(Delivery(wrap(payload, envelope), tuple(functions)))
        if rng.random() < 0.3:
            items.append(Delivery(POISON[rng.randrange(len(POISON))], ("record_lifecycle", "auto_start",
                                                                        "drain_spot"), poison=1, alone=True))
    shuffled: list[Delivery] = []
    for start in range(0, len(items), size.window):
        chunk = items[start:start + size.window]
        rng.shuffle(chunk)
        shuffled += chunk
    return shuffled


def deliver_all(emu: Emulator, db_url: str, run: Run, rng: random.Random, size: Size, *,
                sabotage: str | None = None) -> None:
    envelope_of: dict[str, str] = {}
    cursor = 0
    queue: list[Delivery] = []
    outage_left = -1
    last_sweep = time.monotonic()
    quiet_sweeps = 0  # sweeps in a row that had nothing left to wait for
    for _ in range(ROUNDS):
        payloads = emu.events()[cursor:]
        cursor += len(payloads)
        run.emitted += payloads
        queue += deliveries_for(payloads, rng, size, envelope_of, run.expected_id)
        if time.monotonic() - last_sweep >= SWEEP_EVERY_S or (not queue and quiet_sweeps < 2):
            time.sleep(max(0.0, SWEEP_EVERY_S - (time.monotonic() - last_sweep)))
            last_sweep = time.monotonic()
            quiet_sweeps = quiet_sweeps + 1 if _sweep_quiet(emu, db_url, run) else 0
            if not queue:
                continue
        if not queue:
            time.sleep(0.3)  # let Starting -> Running finish, then look again
            if not emu.events()[cursor:]:
                break
            continue
        if outage_left < 0:
            outage_left = size.outage  # the store goes down once, early in the run
        retry: list[Delivery] = []
        while queue:
            delivery = queue.pop(0)
            run.deliveries += 1
            down = outage_left > 0
            outage_left -= 1 if outage_left > 0 else 0
            reported, drains = 0, []
            for function in delivery.functions:
                calls_before = len(emu.calls())
                result = invoke_local(function, delivery.body, cloud_url=emu.url,
                                      db_url=DOWN_DB if down else db_url, env=FUNCTION_ENV)
                run.invocations += 1
                if delivery.alone:
                    run.poison_cloud_calls += len(emu.calls()) - calls_before
                if result.error is not None:
                    run.raised += 1
                    break  # the platform retries the whole delivery
                value = result.value or {}
                if function == "record_lifecycle":
                    reported = len(value.get("bad", []))
                drains += value.get("drains", [])
            else:  # every function handled it: count it once, whatever its earlier attempts did
                run.poison_sent += delivery.poison
                run.poison_reported += reported
                run.drains += drains
                continue
            delivery.attempts += 1
            if sabotage == "no_platform_retry":
                continue  # lost: the events it carried are never recorded
            if delivery.attempts >= MAX_ATTEMPTS:
                run.given_up.append(delivery.body[:80].decode("utf-8", "replace"))
            else:
                retry.append(delivery)
        queue = retry
        if sabotage == "start_ineligible" and run.ineligible:
            emu.set_faults(fault_rate=0.0)
            _start_directly(emu, sorted(run.ineligible)[0])
            sabotage = None
    run.given_up += [d.body[:80].decode("utf-8", "replace") for d in queue]  # out of rounds


def _sweep_quiet(emu: Emulator, db_url: str, run: Run) -> bool:
    """One tick of the sweep's timer; True when it left nothing to come back for (no stop still
    settling or deferred, nothing started). A failing tick is simply followed by the next."""
    result = invoke_local("sweep", SWEEP_BODY, cloud_url=emu.url, db_url=db_url, env=FUNCTION_ENV)
    run.invocations += 1
    run.sweeps += 1
    if result.error is not None:
        return False
    waiting = ("no ActionTrail record yet", "ActionTrail throttled", "is recent: the event path")
    for d in (result.value or {}).get("auto_start", {}).get("decisions", []):
        if d["decision"] == "started" or str(d["reason"]).startswith(waiting):
            return False
    return True


def _start_directly(emu: Emulator, iid: str) -> None:
    """A deliberate bug for the self-test: start an instance no rule allows."""
    from shared.clients import Clients, Credentials
    from shared.settings import Settings

    creds = emu.credentials[0]
    clients = Clients.from_settings(Settings.from_env(cloud_url=emu.url),
                                    Credentials(creds["access_key_id"], creds["access_key_secret"]))
    clients.ecs.start_instance(iid)


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
    finally:
        store.close()
    for call in emu.calls():
        if call.answer_lost:
            run.answers_lost += 1
        elif call.code is not None and call.status != 200:
            run.injected[call.code] += 1
    for index, payload in enumerate(emu.events()):
        iid = payload["content"].get("resourceId")
        if payload["name"] == "Instance:StateChange" and payload["content"].get("state") == "Starting" \
                and index >= run.scenario_start.get(iid, 1 << 60):
            run.starting_events[iid] += 1
    for iid in run.interrupted:
        count = 0
        for lb in emu.state()["load_balancers"]:
            count += sum(1 for s in lb["default_servers"] if s["server_id"] == iid)
            count += sum(1 for g in lb["vserver_groups"] for s in g["servers"] if s["server_id"] == iid)
        run.leftover_memberships[iid] = count


def _instance_of(payload: dict[str, Any]) -> str | None:
    content = payload.get("content", {})
    value = content.get("resourceId") or content.get("instanceId")
    return str(value) if value else None


def check_invariants(run: Run) -> list[str]:
    """Every broken invariant, as a sentence naming what broke (empty: all hold)."""
    problems: list[str] = []
    missing = [i for i, n in run.recorded_ids.items() if n == 0]
    doubled = [i for i, n in run.recorded_ids.items() if n > 1]
    if missing:
        problems.append(f"{len(missing)} emitted events never recorded (e.g. {missing[:3]})")
    if doubled:
        problems.append(f"{len(doubled)} events recorded more than once (e.g. {doubled[:3]})")
    for iid in sorted(run.eligible):
        if run.starting_events[iid] != 1:
            problems.append(f"eligible {iid} started {run.starting_events[iid]} times, not once")
    for iid in sorted(run.ineligible):
        if run.starting_events[iid]:
            problems.append(f"ineligible {iid} was started {run.starting_events[iid]} times")
    drained = {d.get("instance_id"): d for d in run.drains}
    for iid in sorted(run.interrupted):
        flagged = bool(drained.get(iid, {}).get("missed_deadline"))
        if run.leftover_memberships.get(iid, 0) and not flagged:
            problems.append(f"interrupted {iid} still in {run.leftover_memberships[iid]} removable groups, unflagged")
        if iid not in drained:
            problems.append(f"interrupted {iid} has no drain result")
        elif not flagged and (drained[iid].get("time_left_s") or 0) <= 0:
            problems.append(f"interrupted {iid} removed after its deadline without the flag")
    if run.poison_cloud_calls:
        problems.append(f"poison elements caused {run.poison_cloud_calls} cloud calls")
    if run.poison_reported != run.poison_sent:
        problems.append(f"{run.poison_sent} poison elements delivered, {run.poison_reported} reported")
    if run.given_up:
        problems.append(f"{len(run.given_up)} deliveries never succeeded (e.g. {run.given_up[0]!r})")
    return problems


def run_suite(size: Size = SMALL, seed: int = 7, db_url: str | None = None, workdir: Path | None = None,
              sabotage: str | None = None) -> tuple[Run, list[str]]:
    """Play, deliver and check; returns the run and the broken invariants."""
    rng = random.Random(seed)
    run = Run()
    started = time.monotonic()
    if db_url is None:
        base = workdir or Path.cwd() / ".data"
        base.mkdir(parents=True, exist_ok=True)
        path = base / f"reliability-{seed}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db_url = f"sqlite:///{path}"
    with log.redirect(io.StringIO()), \
            Emulator(generated_fleet(size), start_delay_s=0.05, seed=seed, trail_lag_s=TRAIL_LAG_S,
                     trail_qps=TRAIL_QPS) as emu, \
            applied_environment(emu.signing_environment()):
        play_scenario(emu, run)
        emu.set_faults(fault_rate=size.fault_rate, lose_rate=size.lose_rate, seed=seed,
                       throttle_actions={"DescribeInstances": 40.0, "RemoveVServerGroupBackendServers": 20.0})
        deliver_all(emu, db_url, run, rng, size, sabotage=sabotage)
        emu.set_faults(fault_rate=0.0, lose_rate=0.0, throttle_actions={})
        collect(emu, db_url, run)
    run.seconds = round(time.monotonic() - started, 1)
    return run, check_invariants(run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.reliability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the large size (slower)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", help="store URL (default: SQLite under .data/)")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    size = FULL if args.full else SMALL
    print(f"reliability suite ({'full' if args.full else 'small'}), seed {args.seed} ...", flush=True)
    run, problems = run_suite(size, args.seed, args.db)
    figures = {
        "events_emitted": len(run.emitted), "deliveries": run.deliveries, "invocations": run.invocations,
        "raised_and_retried": run.raised, "sweeps": run.sweeps, "poison_sent": run.poison_sent,
        "poison_reported": run.poison_reported, "eligible_started_once": len(run.eligible),
        "ineligible": len(run.ineligible), "interrupted": len(run.interrupted), "seconds": run.seconds,
        "errors_answered": dict(sorted(run.injected.items())), "answers_lost": run.answers_lost,
        "problems": problems,
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    print("all invariants hold" if not problems else f"{len(problems)} invariants broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
