"""Benchmark Practice 3: a burst of spot interruption notices against the emulator.

    python -m tools.bench_drain [--instances 200] [--latency-ms 50] [--drain-time-s 20]
                                [--finish-every-s 5] [--json FILE]

A fleet is generated in code (seeded): ``--instances`` spot instances, each registered in 2-4
groups (CLB default groups and vServer groups on ports 80, 8080 and 443) across ``--lbs`` load
balancers, next to on-demand instances that share every group (and some master-slave groups).
Every spot instance is interrupted at once; each notice is one ``drain_spot`` invocation
(the real handler, run in its own thread as FC would run concurrent instances), with the
emulator answering every call after ``--latency-ms`` and throttling reads at ``READS_QPS`` and
writes at ``WRITES_QPS`` per action and second (api-meta's operationType; issue 13: throttling
writes only hid the cost of finding memberships). Invocations that raise are retried like FC retries an
async invocation (after ``--retry-after-s``), at most ``--max-retries`` times.

Reported: notice-to-removed p50/p99/max, time left at removal (min), missed deadlines,
memberships left behind, other members touched, API calls per drained instance, throttled
answers, failures. Then the same burst is replayed on a fresh emulator with a naive handler
written the seed doc's way (one configured vServer group, port 80 hard-coded, weight 100, no
retries) to show what is gained.

Billing (issue 16, no billed sleeping): the burst runs twice in one run, each on a fresh
emulator and store: ``sleeping`` (the wait slept inside each notice's invocation: today's
design without the finisher) and ``scheduled`` (``ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S``: each
invocation ends at weight 0 and drain_spot's timer tick, run here every ``--finish-every-s``
instead of 60 s, removes the due drains). Every invocation's start and end are measured; the FC
instance pool is modelled from them (:func:`fc_pool`): with concurrency C an invocation takes a
free slot of a busy instance or starts one; billed instance-seconds = the union of each
instance's busy time; peak = instances busy at once. FC 3.0 applies instanceConcurrency only to
custom and custom-container runtimes (the fc3 component's spec), so python3.10 runs at C = 1;
the sleeping design at C = 100 is shown as the what-if of a custom runtime. An idle tick's cost
(nothing due) is measured too: the timer's price on a day without notices.
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
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tools.emulator import Emulator, Fleet
from tools.invoke import applied_environment, build_context, fc_environment, load_function

REGION = "cn-hangzhou"
PORTS = (80, 8080, 443)
# Rate limits per action and second for the burst (issue 13's benchmark): every read action,
# every write action. CLB's real limits are per account and unpublished.
READS_QPS = 20.0
WRITES_QPS = 10.0
WRITE_ACTIONS = {
    "SetVServerGroupAttribute", "RemoveVServerGroupBackendServers", "SetBackendServers",
    "RemoveBackendServers", "AddBackendServers", "AddVServerGroupBackendServers",
}
Key = tuple[str, str, str, "int | None"]  # (lb, group or "default", server, port)


# --- the fleet ------------------------------------------------------------------------------------


def build_fleet(instances: int, lbs: int, seed: int) -> tuple[dict[str, Any], list[str]]:
    """A fleet document (tools.emulator.fleet format) and the spot instance ids."""
    rng = random.Random(seed)
    spot = [f"i-bpspot{n:012d}" for n in range(instances)]
    steady = [f"i-bpweb{n:013d}" for n in range(max(4, lbs))]
    docs: list[dict[str, Any]] = []
    groups: list[tuple[int, str]] = []  # (lb index, "default" or port)
    for li in range(lbs):
        groups.append((li, "default"))
        groups += [(li, str(port)) for port in PORTS]
    placement: dict[tuple[int, str], list[str]] = {g: [] for g in groups}
    for iid in spot:
        for g in rng.sample(groups, rng.randint(2, 4)):
            placement[g].append(iid)
    for li in range(lbs):
        lb: dict[str, Any] = {
            "id": f"lb-bpbench{li:012d}", "name": f"bench-{li}",
            "tags": {"bench": "drain"}, "address": f"47.96.9.{li + 1}",
            "default_servers": [{"server_id": s, "weight": 100}
                                for s in steady[:2] + placement[(li, "default")]],
            "vserver_groups": [
                {"id": f"rsp-bpbench{li:06d}p{port}", "name": f"p{port}",
                 "servers": [{"server_id": s, "port": port, "weight": rng.choice((50, 80, 100))}
                             for s in steady[:2] + placement[(li, str(port))]]}
                for port in PORTS
            ],
        }
        if li % 2 == 0:  # master-slave groups: steady members, plus one spot slave now and then
            slave = spot[li] if li < len(spot) else steady[2]
            lb["master_slave_groups"] = [{
                "id": f"rsp-bpbench{li:06d}ms", "name": "ms",
                "servers": [{"server_id": steady[0], "port": 80, "weight": 100,
                             "server_type": "Master"},
                            {"server_id": slave, "port": 80, "weight": 100,
                             "server_type": "Slave"}],
            }]
        docs.append(lb)
    instance_docs = [
        {"id": iid, "name": f"spot-{n}", "status": "Running", "instance_type": "ecs.g7.large",
         "zone": "cn-hangzhou-h", "spot_strategy": "SpotAsPriceGo",
         "private_ip": f"10.1.{n // 250}.{n % 250 + 1}"}
        for n, iid in enumerate(spot)
    ] + [
        {"id": iid, "name": f"web-{n}", "status": "Running", "instance_type": "ecs.g7.large",
         "zone": "cn-hangzhou-i", "private_ip": f"10.2.0.{n + 1}"}
        for n, iid in enumerate(steady)
    ]
    doc = {
        "region": REGION, "account_id": "1234567890123456",
        "credentials": [{"access_key_id": "LTAIbenchKey0001", "access_key_secret": "bench-secret",
                         "user_name": "bench"}],
        "instances": instance_docs, "load_balancers": docs,
    }
    return doc, spot


def memberships(state: dict[str, Any]) -> dict[Key, int]:
    out: dict[Key, int] = {}
    for lb in state["load_balancers"]:
        for s in lb["default_servers"]:
            out[(lb["id"], "default", s["server_id"], None)] = s["weight"]
        for group in lb["vserver_groups"]:
            for s in group["servers"]:
                out[(lb["id"], group["id"], s["server_id"], s.get("port"))] = s["weight"]
        for group in lb["master_slave_groups"]:
            for s in group["servers"]:
                out[(lb["id"], "ms:" + group["id"], s["server_id"], s.get("port"))] = s["weight"]
    return out


def left_behind(before: dict[Key, int], after: dict[Key, int], spot: set[str]) -> tuple[int, int]:
    """(removable spot memberships still registered, other members changed or lost)."""
    left = sum(1 for k in after if k[2] in spot and not k[1].startswith("ms:"))
    others_before = {k: v for k, v in before.items() if k[2] not in spot or k[1].startswith("ms:")}
    others_after = {k: v for k, v in after.items() if k[2] not in spot or k[1].startswith("ms:")}
    touched = sum(1 for k, v in others_before.items() if others_after.get(k) != v)
    return left, touched


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[index], 3)


# --- the real handler ----------------------------------------------------------------------------


# --- the FC instance pool --------------------------------------------------------------------------

Interval = tuple[float, float]


def _union_s(intervals: Sequence[Interval]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def _union(intervals: Sequence[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, stop in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def _peak(intervals: Sequence[Interval]) -> int:
    points = sorted([(start, 1) for start, _ in intervals] + [(stop, -1) for _, stop in intervals],
                    key=lambda p: (p[0], p[1]))  # an end before a start at the same instant
    peak = level = 0
    for _, delta in points:
        level += delta
        peak = max(peak, level)
    return peak


def fc_pool(invocations: Sequence[Interval], concurrency: int) -> dict[str, Any]:
    """FC's on-demand pool as the platform routes: an invocation takes a free slot of a started
    instance (the oldest with one), else starts one.
    Billed: each instance's busy time (the union of its invocations; idle kept-warm time is not
    billed for on-demand instances); peak: instances busy at the same moment."""
    busy: list[list[Interval]] = []
    for start, stop in sorted(invocations):
        for intervals in busy:
            if sum(1 for a, b in intervals if a <= start < b) < concurrency:
                intervals.append((start, stop))
                break
        else:
            busy.append([(start, stop)])
    per_instance = [_union(intervals) for intervals in busy]
    return {
        "concurrency": concurrency,
        "invocations": len(invocations),
        "instances_started": len(busy),
        "peak_instances": _peak([iv for merged in per_instance for iv in merged]),
        "peak_invocations": _peak(list(invocations)),
        "billed_instance_s": round(sum(_union_s(m) for m in per_instance), 1),
        "invocation_s": round(sum(stop - start for start, stop in invocations), 1),
    }


# --- the real handler ----------------------------------------------------------------------------

TICK = json.dumps({"triggerTime": "bench", "triggerName": "finish-scheduled-removals",
                   "payload": '{"source": "timer"}'}).encode()


def run_practice(doc: dict[str, Any], spot: list[str], args: argparse.Namespace,
                 design: str = "sleeping") -> dict[str, Any]:
    """One burst through the real handler; ``design``: ``sleeping`` (the wait slept in the
    invocation) or ``scheduled`` (the finisher tick every ``--finish-every-s``)."""
    fleet = Fleet.from_dict(doc)
    every = args.finish_every_s if design == "scheduled" else 0.0
    with tempfile.TemporaryDirectory() as tmp, Emulator(
        fleet, latency_ms=args.latency_ms, throttle_reads=READS_QPS,
        throttle_writes=WRITES_QPS, start_delay_s=0.01
    ) as emu:
        db_url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        env = fc_environment("drain_spot", "python3.10", cloud_url=emu.url, db_url=db_url, extra={
            "ECS_EVENT_OPS_DRAIN_TIME_S": str(args.drain_time_s),
            "ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S": str(every),
            "ECS_EVENT_OPS_LB_TAG": "bench=drain",
            **emu.signing_environment(),
            "ECS_EVENT_OPS_LOG_LEVEL": "WARNING",
        })
        with applied_environment(env):
            from shared import log as shared_log
            from shared.ledger import Kind
            from shared.store import store_for

            shared_log.configure(level="ERROR", stream=sys.stderr)
            store_for(db_url).ping()  # schema first, in the engine the handler will reuse
            handler = load_function("drain_spot").module.handler
            before = memberships(emu.state())
            for iid in spot:
                emu.interrupt_spot(iid)
            notices = [e for e in emu.events()
                       if e["name"] == "Instance:PreemptibleInstanceInterruption"]
            emu.clear_calls()
            started = time.monotonic()
            results: dict[str, dict[str, Any]] = {}
            failures: Counter[str] = Counter()
            retries = 0
            lock = threading.Lock()
            spans: list[tuple[str, float, float]] = []  # (notice | tick, start, end)

            def invoke(payload: dict[str, Any]) -> bool:
                context = build_context("drain_spot", "python3.10", env)
                begin = time.monotonic()
                try:
                    out = handler(json.dumps(payload).encode(), context)
                except Exception as err:
                    with lock:
                        spans.append(("notice", begin, time.monotonic()))
                        failures[type(err).__name__] += 1
                    return False
                with lock:
                    spans.append(("notice", begin, time.monotonic()))
                    for drain in out["drains"]:
                        if drain["outcome"] not in ("scheduled", "duplicate"):
                            results[drain["instance_id"]] = drain
                return True

            def tick() -> dict[str, Any]:
                begin = time.monotonic()
                try:
                    out: dict[str, Any] = handler(TICK, build_context("drain_spot", "python3.10", env))
                except Exception as err:  # a failed tick: the next one goes on
                    out = {"error": f"{type(err).__name__}: {err}"}
                with lock:
                    spans.append(("tick", begin, time.monotonic()))
                return out

            stop = threading.Event()
            tick_errors: list[str] = []

            def ticker() -> None:  # the timer: one tick every period, overlapping when slow
                with ThreadPoolExecutor(max_workers=8) as ticks:
                    futures = []
                    while not stop.wait(every):
                        futures.append(ticks.submit(tick))
                    tick_errors.extend(f.result()["error"] for f in futures
                                       if "error" in f.result())

            timer = threading.Thread(target=ticker, daemon=True)
            if every:
                timer.start()
            pending = notices
            with ThreadPoolExecutor(max_workers=len(notices)) as pool:
                for attempt in range(args.max_retries + 1):
                    if attempt:
                        time.sleep(args.retry_after_s)
                        retries += len(pending)
                    oks = list(pool.map(invoke, pending))
                    pending = [p for p, ok in zip(pending, oks, strict=True) if not ok]
                    if not pending:
                        break
            store = store_for(db_url)

            def open_drains() -> int:
                return sum(1 for e in store.ledger_find(Kind.DRAIN.value)
                           if e.status in ("claimed", "found", "weighted", "waited", "removed"))

            while every and open_drains() and time.monotonic() - started < 300:
                time.sleep(0.2)
            stop.set()
            if every:
                timer.join()
            elapsed = time.monotonic() - started
            for entry in store.ledger_find(Kind.DRAIN.value):  # the ticks' results: the ledger's
                drained_id = entry.instance_id
                if drained_id and drained_id not in results and entry.data.get("outcome"):
                    results[drained_id] = ledger_result(entry.data)
            idle_ticks = [_timed(tick) for _ in range(5)] if every else []
            calls = emu.calls()
            after = memberships(emu.state())
    with lock:
        notice_spans = [(a, b) for kind, a, b in spans if kind == "notice"]
        tick_spans = [(a, b) for kind, a, b in spans if kind == "tick"]
    left, touched = left_behind(before, after, set(spot))
    removed_s = [d["notice_to_removed_s"] for d in results.values()
                 if d.get("notice_to_removed_s") is not None]
    time_left = [d["time_left_s"] for d in results.values() if d.get("time_left_s") is not None]
    drained = [d for d in results.values() if d["removed"]]
    outcomes = Counter(d["outcome"] for d in results.values())
    return {
        "handler": "drain_spot",
        "design": design,
        "finish_every_s": every or None,
        "notices": len(notices),
        "drained": len(drained),
        "outcomes": dict(outcomes),
        "notice_to_removed_s": {
            "p50": percentile(removed_s, 50), "p99": percentile(removed_s, 99),
            "max": round(max(removed_s), 3) if removed_s else None,
        },
        "time_left_at_removal_min_s": round(min(time_left), 3) if time_left else None,
        "missed_deadlines": sum(1 for d in results.values() if d["missed_deadline"])
        + len(set(spot) - set(results)),
        "memberships_left_behind": left,
        "other_members_touched": touched,
        "master_slave_reported": sum(len(d["reported_master_slave"]) for d in results.values()),
        "api_calls": len(calls),
        "api_calls_per_drained_instance": round(len(calls) / max(1, len(drained)), 1),
        "write_calls_per_drained_instance": round(
            sum(1 for c in calls if c.action in WRITE_ACTIONS) / max(1, len(drained)), 1),
        "throttled_answers": sum(1 for c in calls if c.code and c.code.startswith("Throttling")),
        "failed_invocations": dict(failures),
        "platform_retries": retries,
        "wall_s": round(elapsed, 1),
        "ticks": len(tick_spans),
        "tick_errors": tick_errors,
        "idle_tick_ms_median": (round(sorted(idle_ticks)[len(idle_ticks) // 2] * 1000, 1)
                                if idle_ticks else None),
        "invocations": notice_spans + tick_spans,
    }


def _timed(call: Any) -> float:
    begin = time.perf_counter()
    call()
    return time.perf_counter() - begin


def ledger_result(data: Mapping[str, Any]) -> dict[str, Any]:
    """A finished drain's result, as the ledger recorded it (the tick's answer is short)."""
    return {
        "outcome": data.get("outcome"), "removed": data.get("removed") or [],
        "notice_to_removed_s": data.get("notice_to_removed_s"),
        "time_left_s": data.get("time_left_s"),
        "missed_deadline": bool(data.get("missed_deadline")),
        "reported_master_slave": data.get("master_slave") or [],
    }


def billing(sleeping: dict[str, Any], scheduled: dict[str, Any], finish_every_s: float,
            idle_period_s: float = 60.0) -> list[dict[str, Any]]:
    """The side-by-side rows: the FC pool of each measured run (module docstring)."""
    rows = []
    for label, run, concurrency in (
        ("sleeping through the wait (before), python3.10 (C=1)", sleeping, 1),
        ("sleeping, what-if custom runtime C=100 (not python3.10 on FC 3.0)", sleeping, 100),
        (f"scheduled removal + finisher tick (after; tick every {finish_every_s:g} s here), C=1",
         scheduled, 1),
        ("scheduled, what-if custom runtime C=100", scheduled, 100),
    ):
        pool = fc_pool([tuple(iv) for iv in run["invocations"]], concurrency)
        rows.append({"design": label, **pool,
                     "notice_to_removed_p50_s": run["notice_to_removed_s"]["p50"],
                     "notice_to_removed_max_s": run["notice_to_removed_s"]["max"],
                     "time_left_min_s": run["time_left_at_removal_min_s"],
                     "missed_deadlines": run["missed_deadlines"],
                     "memberships_left_behind": run["memberships_left_behind"]})
    idle_ms = scheduled.get("idle_tick_ms_median")
    if idle_ms is not None:
        rows.append({"design": f"finisher timer idle (nothing due), per day at {idle_period_s:g} s",
                     "invocations": round(86400 / idle_period_s),
                     "billed_instance_s": round(86400 / idle_period_s * idle_ms / 1000, 1),
                     "concurrency": 1})
    return rows


# --- the naive reference (the seed doc's way) ------------------------------------------------------


def run_naive(doc: dict[str, Any], spot: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """One configured vServer group, port 80 hard-coded, weight 100, no retries, no waiting."""
    from alibabacloud_slb20140515 import models
    from alibabacloud_slb20140515.client import Client
    from alibabacloud_tea_openapi.models import Config

    fleet = Fleet.from_dict(doc)
    cred = doc["credentials"][0]
    configured_group = doc["load_balancers"][0]["vserver_groups"][0]["id"]  # the "port 80" one
    with Emulator(fleet, latency_ms=args.latency_ms, throttle_reads=READS_QPS,
                  throttle_writes=WRITES_QPS, start_delay_s=0.01) as emu:
        before = memberships(emu.state())
        for iid in spot:
            emu.interrupt_spot(iid)
        notices = [e for e in emu.events()
                   if e["name"] == "Instance:PreemptibleInstanceInterruption"]
        emu.clear_calls()
        failures: Counter[str] = Counter()
        removed_after: list[float] = []
        lock = threading.Lock()

        def handle(payload: dict[str, Any]) -> None:
            client = Client(Config(access_key_id=cred["access_key_id"],
                                   access_key_secret=cred["access_key_secret"],
                                   endpoint=emu.endpoint, protocol="http", region_id=REGION))
            iid = payload["content"]["instanceId"]
            servers = json.dumps([{"ServerId": iid, "Port": "80", "Weight": "100"}])
            try:
                client.remove_vserver_group_backend_servers(
                    models.RemoveVServerGroupBackendServersRequest(
                        region_id=REGION, vserver_group_id=configured_group,
                        backend_servers=servers))
            except Exception as err:
                with lock:
                    failures[getattr(err, "code", None) or type(err).__name__] += 1
                return
            with lock:
                removed_after.append(time.monotonic() - started)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(notices)) as pool:
            list(pool.map(handle, notices))
        calls = emu.calls()
        after = memberships(emu.state())
    left, touched = left_behind(before, after, set(spot))
    return {
        "handler": "naive (seed doc)",
        "notices": len(notices),
        "memberships_before": sum(1 for k in before if k[2] in set(spot)
                                  and not k[1].startswith("ms:")),
        "memberships_left_behind": left,
        "other_members_touched": touched,
        "failed_invocations": dict(failures),
        "api_calls": len(calls),
        "calls_answered_ok": len(removed_after),
        "drained_gently": 0,
        "master_slave_reported": 0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_drain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--lbs", type=int, default=6, help="load balancers in scope")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--drain-time-s", type=float, default=20.0)
    parser.add_argument("--finish-every-s", type=float, default=5.0,
                        help="the finisher tick's period in the scheduled run (60 s deployed)")
    parser.add_argument("--retry-after-s", type=float, default=5.0,
                        help="FC's delay before retrying a failed async invocation (shortened)")
    parser.add_argument("--max-retries", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-index", action="store_true",
                        help="skip the old-vs-index comparison (tools.bench.lb's spot section)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args(argv)
    doc, spot = build_fleet(args.instances, args.lbs, args.seed)
    spot_memberships = sum(
        1 for k in memberships(_doc_state(doc)) if k[2] in set(spot) and not k[1].startswith("ms:"))
    report: dict[str, Any] = {
        "setup": {
            "instances": args.instances, "load_balancers": args.lbs,
            "removable_spot_memberships": spot_memberships, "latency_ms": args.latency_ms,
            "throttle_qps": {"reads": READS_QPS, "writes": WRITES_QPS},
            "drain_time_s": args.drain_time_s,
            "spot_notice_s": 300, "spot_margin_s": 30, "seed": args.seed,
            "finish_every_s": args.finish_every_s,
        },
        "practice": run_practice(doc, spot, args, "sleeping"),
        "scheduled": run_practice(doc, spot, args, "scheduled"),
    }
    report["billing"] = billing(report["practice"], report["scheduled"], args.finish_every_s)
    for run in ("practice", "scheduled"):  # the raw spans made the pool; kept out of the JSON
        report[run].pop("invocations")
    if not args.skip_naive:
        report["naive"] = run_naive(doc, spot, args)
    if not args.skip_index:  # the same burst: scan per notice (old) vs the membership index (new)
        from tools.bench.lb import Run, section_spot

        report["index"] = section_spot(
            Run(design="new", notices=1, latency_ms=args.latency_ms, reads=READS_QPS,
                writes=WRITES_QPS, drain_s=args.drain_time_s, finish_every_s=args.finish_every_s),
            args.instances, args.lbs)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


def _doc_state(doc: dict[str, Any]) -> dict[str, Any]:
    """The emulator's ``state()`` shape for a fleet document, without starting a server."""
    return {"load_balancers": [
        {"id": lb["id"], "default_servers": lb.get("default_servers", []),
         "vserver_groups": lb.get("vserver_groups", []),
         "master_slave_groups": lb.get("master_slave_groups", [])}
        for lb in doc["load_balancers"]]}


if __name__ == "__main__":
    sys.exit(main())
