"""Benchmark the spot replacement (issue 14): a burst of interruptions of opted-in instances.

    python -m tools.bench_replace [--instances 50] [--sold-out 0.3] [--boot-s 2]
                                  [--healthy-after-s 0] [--latency-ms 20] [--seed 14]
                                  [--json FILE]

A fleet is generated in code (seeded): ``--instances`` spot instances tagged
``replace-on-interrupt=spot-or-on-demand`` (every tenth ``spot`` only), spread over four zones
of one VPC, each in a CLB default group and an ALB server group; three instance types. A share
``--sold-out`` of the spot offerings (type, zone) is out of stock. Every instance is
interrupted at once and every notice is delivered twice (the CloudMonitor payload and its
EventBridge copy), each delivery one ``drain_spot`` invocation on its own thread (the real
handler, real SDK, the emulator answering after ``--latency-ms``); an invocation that raises is
retried after ``--retry-after-s`` as FC retries. drain_spot's timer tick runs every
``--tick-s`` (deployed: 60 s) until every replacement is finished.

The CLB health-checks its members: a successor passes ``--healthy-after-s`` after Running
(the emulator's ``provisioning.healthy_after_s``); the ALB documents no member health (serving
once Available).

Reported: replaced / reported (with their reasons) / unfinished, successors per interrupted
instance (at most one), launches made by the emulator, p50/p99/max of notice → successor
Running and notice → successor serving in every recorded group (healthy where the group
health-checks it; the groups' states counted), and the API calls per
replacement (the replacement's own actions and the serving writes, from the emulator's log).
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
from datetime import datetime
from pathlib import Path
from typing import Any

from tools.emulator import Emulator, Fleet
from tools.envelopes import eventbridge_copy
from tools.invoke import applied_environment, build_context, fc_environment, load_function

REGION = "cn-hangzhou"
VPC = "vpc-bp1bench000000001"
ZONES = ("h", "i", "j", "k")
TYPES = (("ecs.g7.large", 2, 8), ("ecs.g6.large", 2, 8), ("ecs.g8.large", 2, 8))
TICK = json.dumps({"triggerTime": "2026-12-01T00:00:00Z", "triggerName": "finish",
                   "payload": ""}).encode()
# The replacement's own calls, and the writes that make the successor serve.
REPLACE_ACTIONS = ("RunInstances", "DescribeRecommendInstanceType", "DescribeInstanceRamRole",
                   "DescribeUserData", "DescribeLaunchTemplateVersions")
SERVE_ACTIONS = ("AddBackendServers", "AddServersToServerGroup", "DescribeHealthStatus")


def build_fleet(instances: int, sold_out: float, boot_s: float, seed: int,
                healthy_after_s: float = 0.0
                ) -> tuple[dict[str, Any], list[str], list[tuple[str, str]]]:
    rng = random.Random(seed)
    vswitches = [{"id": f"vsw-bp1bench{z}00000001", "zone": f"{REGION}-{z}", "vpc_id": VPC,
                  "cidr_prefix": f"10.1.{n + 1}"} for n, z in enumerate(ZONES)]
    spot = []
    fleet_instances: list[dict[str, Any]] = []
    for n in range(instances):
        iid = f"i-bp1bench{n:011d}"
        zone = ZONES[n % len(ZONES)]
        opt = "spot" if n % 10 == 9 else "spot-or-on-demand"
        fleet_instances.append({
            "id": iid, "name": f"bench-{n}", "instance_type": TYPES[n % 2][0],
            "zone": f"{REGION}-{zone}", "spot_strategy": "SpotAsPriceGo",
            "tags": {"replace-on-interrupt": opt, "app": "bench"},
            "private_ip": f"10.1.{ZONES.index(zone) + 1}.{10 + n // len(ZONES)}",
            "vpc_id": VPC})
        spot.append(iid)
    # Sold out: offerings that are some instances' first candidate (the same type in the first
    # other zone, the reclaimed one being left out), drawn until at least ``sold_out`` of the
    # instances meet a stock-out on their first candidate.
    first: dict[tuple[str, str], int] = {}
    for n in range(instances):
        zone, kind = f"{REGION}-{ZONES[n % len(ZONES)]}", TYPES[n % 2][0]
        other = next(f"{REGION}-{z}" for z in ZONES if f"{REGION}-{z}" != zone)
        first[(kind, other)] = first.get((kind, other), 0) + 1
    offerings = sorted(first)
    rng.shuffle(offerings)
    out: list[tuple[str, str]] = []
    for offering in offerings:
        if sum(first[o] for o in out) >= sold_out * instances:
            break
        out.append(offering)
    out.sort()
    doc = {
        "region": REGION,
        "instances": fleet_instances,
        "load_balancers": [{
            "id": "lb-bp1bench000000000001", "name": "bench", "tags": {"bench": "replace"},
            "default_servers": [{"server_id": iid, "weight": 10 + n % 90}
                                for n, iid in enumerate(spot)],
        }],
        "albs": [{"id": "alb-bp1bench00000001", "name": "bench-alb", "tags": {"bench": "replace"},
                  "vpc_id": VPC, "server_groups": [{
                      "id": "sgp-bp1bench00000001", "name": "web", "tags": {"bench": "replace"},
                      "members": [{"server_id": iid, "port": 80 + n % 3, "weight": 100 - n}
                                  for n, iid in enumerate(spot)]}]}],
        "provisioning": {
            "boot_s": boot_s, "healthy_after_s": healthy_after_s, "vswitches": vswitches,
            "instance_types": [{"type": t, "cores": c, "memory": m} for t, c, m in TYPES],
            "stock": [{"instance_type": kind, "zone": zone, "spot_strategy": "SpotAsPriceGo",
                       "count": 0} for kind, zone in out],
        },
    }
    return doc, spot, out


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    doc, spot, sold_out = build_fleet(args.instances, args.sold_out, args.boot_s, args.seed,
                                      args.healthy_after_s)
    vswitches = ",".join(f"{VPC}/{REGION}-{z}=vsw-bp1bench{z}00000001" for z in ZONES)
    with tempfile.TemporaryDirectory() as tmp, Emulator(
        Fleet.from_dict(doc), latency_ms=args.latency_ms, start_delay_s=0.01, lb_job_s=0.2
    ) as emu:
        db_url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        env = fc_environment("drain_spot", "python3.10", cloud_url=emu.url, db_url=db_url, extra={
            "ECS_EVENT_OPS_DRAIN_TIME_S": str(args.drain_time_s),
            "ECS_EVENT_OPS_LB_TAG": "bench=replace",
            "ECS_EVENT_OPS_LB_PRODUCTS": "clb,alb",
            "ECS_EVENT_OPS_REPLACE_VSWITCHES": vswitches,
            **emu.signing_environment(),
            "ECS_EVENT_OPS_LOG_LEVEL": "WARNING",
        })
        with applied_environment(env):
            from shared import log as shared_log
            from shared.ledger import Kind
            from shared.store import store_for

            shared_log.configure(level="ERROR", stream=sys.stderr)
            store = store_for(db_url)
            store.ping()
            handler = load_function("drain_spot").module.handler
            for iid in spot:
                emu.interrupt_spot(iid)
            notices = [e for e in emu.events()
                       if e["name"] == "Instance:PreemptibleInstanceInterruption"]
            deliveries = [n for payload in notices for n in (payload, eventbridge_copy(payload))]
            random.Random(args.seed).shuffle(deliveries)
            emu.clear_calls()
            started = time.monotonic()
            failures: Counter[str] = Counter()
            retries = 0
            lock = threading.Lock()

            def invoke(payload: dict[str, Any]) -> bool:
                try:
                    handler(json.dumps(payload).encode(),
                            build_context("drain_spot", "python3.10", env))
                except Exception as err:
                    with lock:
                        failures[type(err).__name__] += 1
                    return False
                return True

            def deliver(payload: dict[str, Any]) -> None:
                nonlocal retries
                for attempt in range(args.max_retries + 1):
                    if invoke(payload):
                        return
                    with lock:
                        retries += attempt < args.max_retries
                    time.sleep(args.retry_after_s)

            stop = threading.Event()

            def ticker() -> None:
                while not stop.wait(args.tick_s):
                    try:
                        handler(TICK, build_context("drain_spot", "python3.10", env))
                    except Exception as err:  # the next tick goes on
                        with lock:
                            failures["tick:" + type(err).__name__] += 1

            tick_thread = threading.Thread(target=ticker, daemon=True)
            tick_thread.start()
            with ThreadPoolExecutor(max_workers=len(deliveries)) as pool:
                list(pool.map(deliver, deliveries))
            delivered_s = time.monotonic() - started
            deadline = time.monotonic() + args.timeout_s
            finished = {"running", "failed", "exhausted", "stalled", "skipped"}
            while time.monotonic() < deadline:
                entries = store.ledger_find(Kind.REPLACE.value)
                if len(entries) == len(spot) and all(e.status in finished for e in entries):
                    break
                time.sleep(0.2)
            stop.set()
            tick_thread.join(args.tick_s + 30)
            entries = store.ledger_find(Kind.REPLACE.value)
            drains = store.ledger_find(Kind.DRAIN.value)
            calls = emu.calls()
            state = emu.state()
    by_status = Counter(e.status for e in entries)
    running = [e.data for e in entries if e.status == "running"]
    to_running = [float(d["seconds_to_running"]) for d in running]
    to_serving = [float(d["seconds_to_serving"]) for d in running
                  if d.get("seconds_to_serving") is not None]  # None: a group never healthy
    to_launched = [(_at(d["launched_at"]) - _at(d["notice_time"])).total_seconds()
                   for d in (e.data for e in entries) if d.get("launched_at")]
    first_out = sum(1 for e in entries
                    if (e.data.get("tried") or [{}])[0].get("code") == "OperationDenied.NoStock")
    successors: Counter[str] = Counter(i["tags"].get("replaces") for i in state["instances"]
                                       if i["tags"].get("replaces"))
    removed = [float(d.data["notice_to_removed_s"]) for d in drains
               if d.data.get("notice_to_removed_s") is not None]
    counted = Counter(c.action for c in calls if c.action in REPLACE_ACTIONS + SERVE_ACTIONS)
    launched = [c for c in calls if c.action == "RunInstances" and c.code is None]
    replacements = max(1, len(entries))
    return {
        "instances": len(spot),
        "deliveries": len(deliveries),
        "sold_out_offerings": [f"{k}@{z}" for k, z in sold_out],
        "statuses": dict(by_status),
        "reported": {e.instance_id: e.data.get("reason") for e in entries
                     if e.status in ("failed", "exhausted", "stalled")},
        "unfinished": [e.instance_id for e in entries if e.status not in finished]
        + [iid for iid in spot if iid not in {e.instance_id for e in entries}],
        "max_successors_per_instance": max(successors.values(), default=0),
        "duplicate_launches": sum(n - 1 for n in successors.values() if n > 1),
        "instances_launched": sum(len(x["instance_ids"]) for x in emu_launched(state, calls)),
        "registered_per_successor": sorted({len(d.get("registered") or []) for d in running}),
        "group_states": dict(Counter(g.get("state") for d in running
                                     for g in (d.get("health") or {}).values())),
        "not_healthy": {e.instance_id: e.data.get("reason") for e in entries
                        if e.data.get("not_healthy")},
        "first_candidate_sold_out": first_out,
        "notice_to_launched_s": {"p50": percentile(to_launched, 50),
                                 "p99": percentile(to_launched, 99),
                                 "max": percentile(to_launched, 100)},
        "notice_to_running_s": {"p50": percentile(to_running, 50),
                                "p99": percentile(to_running, 99),
                                "max": percentile(to_running, 100)},
        "notice_to_serving_s": {"p50": percentile(to_serving, 50),
                                "p99": percentile(to_serving, 99),
                                "max": percentile(to_serving, 100)},
        "drain_notice_to_removed_s": {"p50": percentile(removed, 50),
                                      "p99": percentile(removed, 99)},
        "conflicts_answered": dict(Counter(
            c.code for c in calls if c.code and c.action in (
                "AddServersToServerGroup", "RemoveServersFromServerGroup",
                "UpdateServerGroupServersAttribute"))),
        "api_calls_per_replacement": {a: round(n / replacements, 2)
                                      for a, n in sorted(counted.items())},
        "api_calls_per_replacement_total": round(sum(counted.values()) / replacements, 2),
        "run_instances_answered": dict(Counter(c.code or "ok" for c in calls
                                               if c.action == "RunInstances")),
        "successful_run_instances_calls": len(launched),
        "invocation_failures_retried": dict(failures),
        "retries": retries,
        "delivered_s": round(delivered_s, 3),
    }


def _at(text: str) -> datetime:
    from shared.events import parse_iso_or_none

    moment = parse_iso_or_none(text)
    assert moment is not None, text
    return moment


def emu_launched(state: dict[str, Any], calls: Sequence[Any]) -> list[dict[str, Any]]:
    """The instances RunInstances created (by their replaces tag in the final state)."""
    return [{"instance_ids": [i["id"]]} for i in state["instances"] if i["tags"].get("replaces")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_replace",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=50,
                        help="opted-in spot instances interrupted at once (default %(default)s)")
    parser.add_argument("--sold-out", type=float, default=0.3,
                        help="share of instances whose first candidate is sold out (default %(default)s)")
    parser.add_argument("--boot-s", type=float, default=2.0,
                        help="emulated boot time of a successor, s (default %(default)s)")
    parser.add_argument("--healthy-after-s", type=float, default=0.0,
                        help="a booted successor turns healthy in CLB groups this long after Running (default %(default)s)")
    parser.add_argument("--latency-ms", type=float, default=20.0,
                        help="emulator latency per call (default %(default)s)")
    parser.add_argument("--drain-time-s", type=float, default=1.0,
                        help="the drain's weight-0 wait (default %(default)s)")
    parser.add_argument("--tick-s", type=float, default=1.0,
                        help="period of drain_spot's finisher tick (default %(default)s)")
    parser.add_argument("--retry-after-s", type=float, default=1.0,
                        help="FC's pause before redelivering a raised invocation (default %(default)s)")
    parser.add_argument("--max-retries", type=int, default=5,
                        help="redeliveries of a raised invocation (default %(default)s)")
    parser.add_argument("--timeout-s", type=float, default=120.0,
                        help="give up waiting for the replacements after this long (default %(default)s)")
    parser.add_argument("--seed", type=int, default=14,
                        help="random seed (default %(default)s)")
    parser.add_argument("--json", type=Path,
                        help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2, sort_keys=True)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    ok = (not report["unfinished"] and report["duplicate_launches"] == 0
          and report["max_successors_per_instance"] <= 1)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
