"""Benchmark of issue 13's performance section: the spot drain on CLB, ALB and NLB at a cost that
grows with memberships, not with the fleet.

    python -m tools.bench.lb [--small] [--only one,burst,growth,spot] [--json FILE]

Every figure is measured against the emulator with the real drain_spot handler (each delivery
in its own thread, as FC runs concurrent instances) and its finisher tick, the emulator answering
every call after ``--latency-ms`` (50) and throttling reads at ``--reads`` (20) and writes at
``--writes`` (10) per action and second (api-meta's operationType; tools.emulator.faults); drain
wait ``--drain-s`` (20). Two designs on the same code:

* **old** (main before the index): ``lb_index`` off, one notice per invocation: every drain reads
  every group of every load balancer in scope to find its instance.
* **new**: the membership index built by the sweep before the notices (index prework runs
  unthrottled and is not counted); notices delivered in batches of ``--batch`` (the trigger's
  batchWindow), each drain found in the index, weight 0 at once, one write per group and step
  for the drains of a delivery, one shared scan per burst when the index is older than
  ``lb_index_fresh_s`` (it catches the memberships registered since, ``--late`` of the
  instances get one).

Sections:
  one     one notice, fleet ``--clbs`` x ``--groups`` vServer groups + ALB/NLB groups
  burst   ``--notices`` simultaneous notices on that fleet (new design)
  growth  reads per notice for 1, 5, 20, 50 CLBs, old vs new
  spot    the spot-burst fleet of tools.bench_drain (CLB, 200 notices), old vs new

Measured from the emulator's call log: a membership's traffic is stopped at the first accepted
write naming the instance on its group (weight 0, or a removal), removed at the first accepted
removal; deadline = notice + 300 s - 30 s margin; reads and writes by operationType. The
``stop`` percentiles are over the memberships the index knew (per notice: the last of them);
the ones it did not know (registered after it was built) are caught by the shared scan, their
stop and removal times are ``late_stop_max_s`` / ``late_removed_max_s``; the deadlines count
every membership.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REGION = "cn-hangzhou"
TAG = ("bench", "lb")
NOTICE_S, MARGIN_S = 300.0, 30.0
TICK = json.dumps({"triggerTime": "bench", "triggerName": "finish-scheduled-removals",
                   "payload": '{"source": "timer"}'}).encode()
WRITE_GROUP_PARAMS = ("VServerGroupId", "ServerGroupId", "LoadBalancerId")
STOP_ACTIONS = ("SetVServerGroupAttribute", "SetBackendServers", "UpdateServerGroupServersAttribute")
REMOVE_ACTIONS = ("RemoveVServerGroupBackendServers", "RemoveBackendServers",
                  "RemoveServersFromServerGroup")
JOB_POLLS = ("ListAsynJobs", "GetJobStatus")
LATE_PORT = 9000  # the memberships registered after the index was built


@dataclass(frozen=True)
class Shape:
    clbs: int = 50
    groups: int = 20  # vServer groups per CLB
    alb_groups: int = 20
    nlb_groups: int = 20
    spot: int = 200  # spot instances (each in 3-5 groups across products)
    hot_clb: int = 12  # the groups the spot pool serves (a spot pool serves a few services)
    hot_alb: int = 6
    hot_nlb: int = 6
    seed: int = 13


@dataclass
class Fleet:
    doc: dict[str, Any]
    spot: list[str]
    members: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # iid -> (product, group)


def build_fleet(shape: Shape) -> Fleet:
    """A seeded fleet document (tools.emulator.fleet format)."""
    rng = random.Random(shape.seed)
    spot = [f"i-bpspot{n:012d}" for n in range(shape.spot)]
    steady = [f"i-bpweb{n:013d}" for n in range(8)]
    ip = {iid: f"10.1.{n // 250}.{n % 250 + 1}" for n, iid in enumerate(spot)}
    ip.update({iid: f"10.2.0.{n + 1}" for n, iid in enumerate(steady)})
    clb_groups = [(c, g) for g in range(shape.groups) for c in range(shape.clbs)]
    hot_clb = clb_groups[:max(1, min(shape.hot_clb, len(clb_groups)))]
    hot_alb = list(range(min(shape.hot_alb, shape.alb_groups)))
    hot_nlb = list(range(min(shape.hot_nlb, shape.nlb_groups)))
    placed: dict[tuple[str, Any], list[str]] = {}
    fleet_members: dict[str, list[tuple[str, str]]] = {}
    for iid in spot:
        picks: list[tuple[str, Any]] = [("clb", g) for g in rng.sample(hot_clb, min(len(hot_clb), rng.randint(1, 2)))]
        if hot_alb:
            picks += [("alb", g) for g in rng.sample(hot_alb, min(len(hot_alb), rng.randint(1, 2)))]
        if hot_nlb:
            picks.append(("nlb", rng.choice(hot_nlb)))
        while len(picks) < 3 and len(picks) < len(hot_clb) + len(hot_alb) + len(hot_nlb):
            extra = ("clb", rng.choice(hot_clb))
            if extra not in picks:
                picks.append(extra)
        for pick in picks[:5]:
            placed.setdefault(pick, []).append(iid)
        fleet_members[iid] = [(p, str(g)) for p, g in picks[:5]]
    lbs = []
    for c in range(shape.clbs):
        lbs.append({
            "id": f"lb-bpbench{c:012d}", "name": f"bench-{c}", "tags": {TAG[0]: TAG[1]},
            "address": f"47.96.{c // 250}.{c % 250 + 1}",
            "default_servers": [{"server_id": s, "weight": 100} for s in steady[:2]],
            "vserver_groups": [
                {"id": _clb_group(c, g), "name": f"g{g}",
                 "servers": [{"server_id": s, "port": 8000 + g, "weight": 100} for s in steady[:2]]
                 + [{"server_id": s, "port": 8000 + g, "weight": rng.choice((50, 100))}
                    for s in placed.get(("clb", (c, g)), [])]}
                for g in range(shape.groups)],
        })

    def server_groups(product: str, count: int) -> list[dict[str, Any]]:
        out = []
        for g in range(count):
            group: dict[str, Any] = {
                "id": _net_group(product, g), "name": f"{product}-{g}", "tags": {TAG[0]: TAG[1]},
                "protocol": "HTTP" if product == "alb" else "TCP",
                "members": [{"server_id": s, "port": 80, "weight": 100} for s in steady[:2]]
                + [{"server_id": s, "port": 80, "weight": 100} for s in placed.get((product, g), [])]}
            if product == "alb" and g % 2 == 0:  # half of ALB's groups drain connections
                group["connection_drain"] = {"enabled": True, "timeout_s": 10}
            out.append(group)
        return out

    doc: dict[str, Any] = {
        "region": REGION, "account_id": "1234567890123456",
        "credentials": [{"access_key_id": "LTAIbenchKey0001", "access_key_secret": "bench-secret",
                         "user_name": "bench"}],
        "instances": [{"id": iid, "name": f"spot-{n}", "status": "Running",
                       "instance_type": "ecs.g7.large", "zone": "cn-hangzhou-h",
                       "spot_strategy": "SpotAsPriceGo", "private_ip": ip[iid]}
                      for n, iid in enumerate(spot)]
        + [{"id": iid, "name": f"web-{n}", "status": "Running", "instance_type": "ecs.g7.large",
            "zone": "cn-hangzhou-i", "private_ip": ip[iid]} for n, iid in enumerate(steady)],
        "load_balancers": lbs,
    }
    if shape.alb_groups:
        doc["albs"] = [{"id": "alb-bpbench000000001", "name": "bench",
                        "server_groups": server_groups("alb", shape.alb_groups)}]
    if shape.nlb_groups:
        doc["nlbs"] = [{"id": "nlb-bpbench000000001", "name": "bench",
                        "server_groups": server_groups("nlb", shape.nlb_groups)}]
    return Fleet(doc, spot, fleet_members)


def _clb_group(c: int, g: int) -> str:
    return f"rsp-bpb{c:04d}g{g:04d}"


def _net_group(product: str, g: int) -> str:
    return f"sgp-bp{product}{g:012d}"


# --- one run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    design: str  # "old" | "new"
    notices: int
    latency_ms: float = 50.0
    reads: float | None = 20.0
    writes: float | None = 10.0
    drain_s: float = 20.0
    batch: int = 100
    finish_every_s: float = 5.0
    index_age_s: float = 0.0  # the index's age at the notices (> fresh: one shared scan)
    fresh_s: float = 60.0
    late: float = 0.0  # fraction of interrupted instances with a membership the index lacks
    products: tuple[str, ...] = ("clb", "alb", "nlb")
    timeout_s: float = 330.0
    drain_scale: float = 1.0  # the emulator's connection-draining time scale (tests shorten it)


def run(fleet: Fleet, spec: Run) -> dict[str, Any]:
    """One burst through the real handler; the figures of the module docstring."""
    from tools.emulator import Emulator
    from tools.emulator import Fleet as EmuFleet
    from tools.invoke import applied_environment, build_context, fc_environment, load_function

    targets = fleet.spot[:spec.notices]
    with tempfile.TemporaryDirectory() as tmp, Emulator(
            EmuFleet.from_dict(fleet.doc), latency_ms=0, start_delay_s=0.01) as emu:
        emu.set_lb_jobs(drain_scale=spec.drain_scale)
        db_url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        env = fc_environment("drain_spot", "python3.10", cloud_url=emu.url, db_url=db_url, extra={
            "ECS_EVENT_OPS_DRAIN_TIME_S": str(spec.drain_s),
            "ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S": str(spec.finish_every_s),
            "ECS_EVENT_OPS_LB_TAG": "=".join(TAG),
            "ECS_EVENT_OPS_LB_PRODUCTS": ",".join(spec.products),
            "ECS_EVENT_OPS_LB_INDEX": "true" if spec.design == "new" else "false",
            "ECS_EVENT_OPS_LB_INDEX_FRESH_S": str(spec.fresh_s),
            "ECS_EVENT_OPS_LOG_LEVEL": "ERROR",
            **emu.signing_environment(),
        })
        with applied_environment(env):
            from shared import log as shared_log
            from shared.ledger import Kind
            from shared.settings import Settings
            from shared.store import store_for

            shared_log.configure(level="ERROR", stream=sys.stderr)
            store = store_for(db_url)
            store.ping()
            settings = Settings.from_env()
            scan_reads = 0
            late_added = 0
            if spec.design == "new":
                scan_reads, late_added = _prework(emu, store, settings, fleet=fleet, targets=targets,
                                                   spec=spec)
            emu.set_faults(latency_ms=spec.latency_ms, throttle_reads=spec.reads,
                           throttle_writes=spec.writes)
            handler = load_function("drain_spot").module.handler
            before = _memberships(emu, set(targets))
            emu.clear_calls()
            for iid in targets:
                emu.interrupt_spot(iid)
            payloads = [e for e in emu.events()
                        if e["name"] == "Instance:PreemptibleInstanceInterruption"]
            size = spec.batch if spec.design == "new" else 1
            deliveries = [payloads[i:i + size] for i in range(0, len(payloads), size)]
            failures: Counter[str] = Counter()
            lock = threading.Lock()
            started = time.time()

            def deliver(batch: list[dict[str, Any]]) -> None:
                body = json.dumps(batch if len(batch) > 1 else batch[0]).encode()
                for attempt in range(3):  # FC retries a failed async invocation
                    try:
                        handler(body, build_context("drain_spot", "python3.10", env))
                        return
                    except Exception as err:
                        with lock:
                            failures[type(err).__name__] += 1
                        time.sleep(2.0 * (attempt + 1))

            stop = threading.Event()

            def tick() -> None:
                try:
                    handler(TICK, build_context("drain_spot", "python3.10", env))
                except Exception as err:
                    with lock:
                        failures["tick:" + type(err).__name__] += 1

            def ticker() -> None:  # the timer: one invocation per period, overlapping as FC's
                with ThreadPoolExecutor(max_workers=16) as ticks:
                    while not stop.wait(spec.finish_every_s):
                        ticks.submit(tick)

            timer = threading.Thread(target=ticker, daemon=True)
            timer.start()
            with ThreadPoolExecutor(max_workers=len(deliveries)) as pool:
                list(pool.map(deliver, deliveries))

            def busy() -> bool:
                open_drains = [e for e in store.ledger_find(Kind.DRAIN.value, limit=100_000)
                               if e.status in ("claimed", "found", "weighted", "waited", "removed")]
                scan = store.ledger_get(f"lbscan:{REGION}")
                return bool(open_drains) or (scan is not None and scan.status == "running")

            while busy() and time.time() - started < spec.timeout_s:
                time.sleep(0.5)
            stop.set()
            timer.join()
            elapsed = time.time() - started
            calls = emu.calls()
            after = _memberships(emu, set(targets))
            drains = list(store.ledger_find(Kind.DRAIN.value, limit=100_000))
            scan_entry = store.ledger_get(f"lbscan:{REGION}")
            is_read = emu.faults.is_read
    return _figures(spec, targets, payloads, before=before, after=after, calls=calls,
                    drains=drains, scan_entry=scan_entry, is_read=is_read, scan_reads=scan_reads, late_added=late_added, failures=failures,
                    elapsed=elapsed)


def _prework(emu: Any, store: Any, settings: Any, *, fleet: Fleet, targets: Sequence[str],
             spec: Run) -> tuple[int, int]:
    """The index as the sweep leaves it (unthrottled, not counted); its reads = one full scan.
    Then ``late`` of the targets get a membership the index does not know."""
    from shared.clients import Clients, Credentials
    from shared.events import iso
    from shared.lb.model import GroupKind, Membership
    from shared.spot.index import scan_key
    from shared.spot.sweep import sweep_drains

    cred = fleet.doc["credentials"][0]
    clients = Clients.from_settings(settings, Credentials(cred["access_key_id"],
                                                          cred["access_key_secret"]))
    emu.clear_calls()
    sweep_drains(store, clients, None, settings, datetime.now(timezone.utc))
    reads = sum(1 for c in emu.calls() if emu.faults.is_read(c.product, c.action)
                and c.action != "DescribeInstances")
    if spec.index_age_s:
        old = iso(datetime.now(timezone.utc) - timedelta(seconds=spec.index_age_s))
        store.ledger_update(scan_key(REGION), data={"started_at": old, "scanned_at": old})
    rng = random.Random(7)
    count = max(1, round(len(targets) * spec.late)) if spec.late else 0
    late = rng.sample(list(targets), count)
    lb_id = fleet.doc["load_balancers"][0]["id"]
    group = fleet.doc["load_balancers"][0]["vserver_groups"][0]["id"]
    if late:
        clients.lb.add_members([Membership(lb_id, GroupKind.VSERVER, group, iid, LATE_PORT, 100)
                                for iid in late])
    return reads, len(late)


def _memberships(emu: Any, targets: set[str]) -> dict[tuple[str, str, str, Any], int]:
    """(product, group, server, port) -> weight of the targets' memberships."""
    state = emu.state()
    out: dict[tuple[str, str, str, Any], int] = {}
    for lb in state["load_balancers"]:
        for s in lb["default_servers"]:
            if s["server_id"] in targets:
                out[("clb", lb["id"], s["server_id"], None)] = s["weight"]
        for group in lb["vserver_groups"]:
            for s in group["servers"]:
                if s["server_id"] in targets:
                    out[("clb", group["id"], s["server_id"], s.get("port"))] = s["weight"]
    for product in ("albs", "nlbs"):
        for group in (state.get(product) or {}).get("server_groups", []):
            for s in group["members"]:
                if s["server_id"] in targets:
                    out[(product[:3], group["id"], s["server_id"], s.get("port"))] = s["weight"]
    return out


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))], 2)


def _figures(spec: Run, targets: Sequence[str], payloads: Sequence[dict[str, Any]], *,
             before: dict[Any, int], after: dict[Any, int], calls: Sequence[Any],
             drains: Sequence[Any], scan_entry: Any, is_read: Any, **extra: Any) -> dict[str, Any]:
    notice_at = {p["content"]["instanceId"]: datetime.strptime(
        p["eventTime"], "%Y%m%dT%H%M%S.%f%z").timestamp() for p in payloads}
    group_of = {(k[1], k[2]) for k in before}
    stopped: dict[tuple[str, str], float] = {}
    removed: dict[tuple[str, str], float] = {}
    writes_ok = 0
    per_group_step: Counter[tuple[str, str]] = Counter()
    for c in calls:
        if c.status != 200 or is_read(c.product, c.action):
            continue
        writes_ok += 1
        action = c.action.rpartition(":")[2]
        group = next((c.params[p] for p in WRITE_GROUP_PARAMS if p in c.params), "")
        per_group_step[(group, action)] += 1
        text = json.dumps(c.params)
        for iid in targets:
            if iid not in text or (group, iid) not in group_of:
                continue
            if action in STOP_ACTIONS or action in REMOVE_ACTIONS:
                stopped.setdefault((group, iid), c.time)
            if action in REMOVE_ACTIONS:
                removed.setdefault((group, iid), c.time)
    # default groups are written by LoadBalancerId: the key's group is the CLB id there
    stop_s: list[float] = []
    removed_s: list[float] = []
    missed = 0
    late_keys = {(g, i) for _p, g, i, port in before if port == LATE_PORT}
    late_stop = [stopped[k] - notice_at[k[1]] for k in late_keys if k in stopped and k[1] in notice_at]
    late_removed = [removed[k] - notice_at[k[1]] for k in late_keys
                    if k in removed and k[1] in notice_at]
    for iid in targets:
        keys = [(g, i) for g, i in group_of if i == iid and (g, i) not in late_keys]
        t0 = notice_at.get(iid)
        if t0 is None or not keys:
            continue
        if all(k in stopped for k in keys):
            stop_s.append(max(stopped[k] for k in keys) - t0)
        every = keys + [(g, i) for g, i in late_keys if i == iid]
        if all(k in removed for k in every):
            removed_s.append(max(removed[k] for k in keys) - t0)
            missed += max(removed[k] for k in every) - t0 > NOTICE_S - MARGIN_S
        else:
            missed += 1
    reads = [c for c in calls if is_read(c.product, c.action)]
    polls = sum(1 for c in reads if c.action.rpartition(":")[2] in JOB_POLLS)
    throttled = sum(1 for c in calls if c.code and str(c.code).startswith("Throttling"))
    n = len(targets)
    members = len(before)
    left = len(after)
    late = (scan_entry.data.get("late") if scan_entry is not None else None) or {}
    return {
        "design": spec.design, "notices": n, "memberships": members,
        "removed_pct": round(100.0 * (members - left) / max(1, members), 1),
        "memberships_left": left, "missed_deadlines": missed,
        "stop_p50_s": _pct(stop_s, 50), "stop_p99_s": _pct(stop_s, 99),
        "stop_max_s": round(max(stop_s), 2) if stop_s else None,
        "removed_p50_s": _pct(removed_s, 50), "removed_p99_s": _pct(removed_s, 99),
        "removed_max_s": round(max(removed_s), 2) if removed_s else None,
        "reads": len(reads) - polls, "job_polls": polls,
        "reads_per_notice": round((len(reads) - polls) / max(1, n), 1),
        "full_scan_reads": extra["scan_reads"] or None,
        "writes_ok": writes_ok,
        "writes_per_membership": round(writes_ok / max(1, members), 2),
        "max_writes_per_group_step": max(per_group_step.values(), default=0),
        # how many groups took 1, 2, ... accepted writes at one step (weight 0, or removal)
        "writes_per_group_step": dict(sorted(Counter(per_group_step.values()).items())),
        "busiest_group_steps": [
            f"{g} {a} x{n} ({sum(1 for k in before if k[1] == g)} interrupted)"
            for (g, a), n in per_group_step.most_common(5)],
        "throttled": throttled, "calls": len(calls),
        "late_added": extra["late_added"],
        "late_stop_max_s": round(max(late_stop), 2) if late_stop else None,
        "late_removed_max_s": round(max(late_removed), 2) if late_removed else None,
        "late_found_by_scan": sum(len(v) for v in late.values()),
        "scan_status": scan_entry.status if scan_entry is not None else None,
        "index_used": sum(1 for d in drains if (d.data.get("index") or {}).get("used")),
        "failures": dict(extra["failures"]), "wall_s": round(extra["elapsed"], 1),
        "reads_by_action": dict(Counter(f"{c.product}:{c.action.rpartition(':')[2]}"
                                        for c in reads).most_common()),
    }


# --- sections --------------------------------------------------------------------------------


def section_one(shape: Shape, base: Run) -> list[dict[str, Any]]:
    fleet = build_fleet(shape)
    return [run(fleet, Run(**{**base.__dict__, "design": "new", "notices": 1})),
            run(fleet, Run(**{**base.__dict__, "design": "old", "notices": 1}))]


def section_burst(shape: Shape, base: Run) -> list[dict[str, Any]]:
    fleet = build_fleet(shape)
    return [run(fleet, Run(**{**base.__dict__, "design": "new", "notices": shape.spot,
                              "index_age_s": 120.0, "late": 0.05}))]


def section_growth(shape: Shape, base: Run, sizes: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for clbs in sizes:
        fleet = build_fleet(Shape(**{**shape.__dict__, "clbs": clbs}))
        for design in ("old", "new"):
            row = run(fleet, Run(**{**base.__dict__, "design": design, "notices": 1}))
            rows.append({"clbs": clbs, **row})
    return rows


def section_spot(base: Run, instances: int, lbs: int) -> list[dict[str, Any]]:
    """tools.bench_drain's spot-burst fleet (CLB only), old vs new, reads throttled too."""
    from tools.bench_drain import build_fleet as spot_fleet

    doc, spot = spot_fleet(instances, lbs, 7)
    for lb in doc["load_balancers"]:
        lb["tags"] = {TAG[0]: TAG[1]}
    fleet = Fleet(doc, spot)
    common = {**base.__dict__, "notices": len(spot), "products": ("clb",)}
    return [run(fleet, Run(**{**common, "design": "old"})),
            run(fleet, Run(**{**common, "design": "new", "index_age_s": 120.0, "late": 0.05}))]


COLUMNS = ("design", "notices", "memberships", "removed_pct", "missed_deadlines", "stop_p99_s",
           "removed_p99_s", "reads", "reads_per_notice", "full_scan_reads", "job_polls",
           "writes_per_membership", "max_writes_per_group_step", "throttled",
           "late_added", "late_found_by_scan", "late_stop_max_s", "late_removed_max_s",
           "wall_s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.lb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the test suite's size (seconds)")
    parser.add_argument("--only", default="one,burst,growth,spot")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--reads", type=float, default=20.0)
    parser.add_argument("--writes", type=float, default=10.0)
    parser.add_argument("--drain-s", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    report = bench(args.only.split(","), small=args.small, latency_ms=args.latency_ms,
                   reads=args.reads, writes=args.writes, drain_s=args.drain_s, batch=args.batch)
    for name, rows in report["sections"].items():
        print(f"== {name}")
        print(_table(rows, (("clbs",) if name == "growth" else ()) + COLUMNS))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def bench(sections: Sequence[str], *, small: bool = False, latency_ms: float = 50.0,
          reads: float = 20.0, writes: float = 10.0, drain_s: float = 20.0,
          batch: int = 100) -> dict[str, Any]:
    if small:
        shape = Shape(clbs=2, groups=3, alb_groups=2, nlb_groups=2, spot=8, hot_clb=3,
                      hot_alb=2, hot_nlb=2)
        base = Run(design="new", notices=1, latency_ms=0.0, reads=reads, writes=writes,
                   drain_s=1.0, batch=4, finish_every_s=0.5, timeout_s=40.0, drain_scale=0.05)
        sizes: Sequence[int] = (1, 2)
        spot_size = (8, 2)
    else:
        shape = Shape()
        base = Run(design="new", notices=1, latency_ms=latency_ms, reads=reads, writes=writes,
                   drain_s=drain_s, batch=batch)
        sizes = (1, 5, 20, 50)
        spot_size = (200, 6)
    out: dict[str, Any] = {"setup": {"shape": shape.__dict__, "run": base.__dict__},
                           "sections": {}}
    for name in sections:
        started = time.time()
        if name == "one":
            out["sections"]["one"] = section_one(shape, base)
        elif name == "burst":
            out["sections"]["burst"] = section_burst(shape, base)
        elif name == "growth":
            out["sections"]["growth"] = section_growth(shape, base, sizes)
        elif name == "spot":
            out["sections"]["spot"] = section_spot(base, *spot_size)
        print(f"   {name}: {time.time() - started:.1f} s", file=sys.stderr, flush=True)
    return out


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True))
              for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
