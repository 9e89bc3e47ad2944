"""Run the emulator: ``python -m tools.emulator --fleet FLEET.yaml [--port 0] ...``.

The first stdout line is the base URL (``http://127.0.0.1:PORT``); it runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from tools.emulator.fleet import FleetError, load_fleet
from tools.emulator.server import Emulator


def _throttle_action(text: str) -> tuple[str, float]:
    action, sep, qps = text.partition("=")
    if not sep or not action:
        raise argparse.ArgumentTypeError(f"expected ACTION=QPS, got {text!r}")
    try:
        return action, float(qps)
    except ValueError:
        raise argparse.ArgumentTypeError(f"QPS must be a number in {text!r}") from None


def _action_codes(text: str) -> tuple[str, list[str]]:
    """``ACTION=CODE[,CODE...]`` -> (action, codes)."""
    action, sep, codes = text.partition("=")
    if not sep or not action or not codes:
        raise argparse.ArgumentTypeError(f"expected ACTION=CODE[,CODE...], got {text!r}")
    return action, [c for c in codes.split(",") if c]


def _scoped_env(text: str) -> tuple[str, str, str]:
    """``SCOPE:KEY=VALUE`` -> (scope, key, value)."""
    scope, sep, pair = text.partition(":")
    key, eq, value = pair.partition("=")
    if not sep or not scope or not eq or not key:
        raise argparse.ArgumentTypeError(f"expected NAME:KEY=VALUE, got {text!r}")
    return scope, key, value


def _group(items: Sequence[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for scope, key, value in items:
        out.setdefault(scope, {})[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.emulator",
        description=(
            "Local Alibaba Cloud emulator: ECS 2014-05-26, CLB (SLB) 2014-05-15 and ActionTrail "
            "2020-07-06 over HTTP, with real signature checks (ACS3-HMAC-SHA256 and v2), a state "
            "machine that emits CloudMonitor events, and injectable faults. Point the Tea SDK at "
            "it with Config(endpoint='127.0.0.1:PORT', protocol='http'). Control and inspection "
            "endpoints (no signature): GET /_emulator/state, /_emulator/calls, /_emulator/events; "
            "POST /_emulator/instances, /_emulator/instances/<id>/{stop,interrupt,om-event,lock,"
            "unlock,release}, /_emulator/faults. Function Compute: InvokeFunction and "
            "GetFunction of FC 3.0 (/2023-03-30/functions/NAME/invocations) and FC 2.0 "
            "(/2016-08-15/services/SERVICE/functions/NAME/invocations) run the repository's "
            "functions/NAME/index.py in-process, their SDK calls coming back to this emulator."
        ),
        epilog="The first stdout line is the base URL. Stop with Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--fleet", required=True, help="YAML fleet file (see tools/emulator/fleet.py)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port, 0 = any free (default)")
    parser.add_argument("--events-out", metavar="FILE.jsonl",
                        help="append every CloudMonitor payload emitted, one JSON per line")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay added to every API call")
    parser.add_argument("--throttle-qps", type=float, default=None,
                        help="per-action rate limit; excess calls get 400 Throttling.User")
    parser.add_argument("--throttle-reads", type=float, default=None, metavar="QPS",
                        help="per-action limit of reads (api-meta operationType read)")
    parser.add_argument("--throttle-writes", type=float, default=None, metavar="QPS",
                        help="per-action limit of writes (operationType write, readAndWrite)")
    parser.add_argument("--throttle-action", type=_throttle_action, action="append", default=[],
                        metavar="ACTION=QPS", help="rate limit for one action (repeatable)")
    parser.add_argument("--fault-rate", type=float, default=0.0,
                        help="probability (0..1) per call of a 500, 503, dropped connection or "
                        "one of the action's documented busy codes (SystemBusy, ...)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --fault-rate (default 0)")
    parser.add_argument("--fail-next", type=_action_codes, action="append", default=[],
                        metavar="ACTION=CODE[,CODE...]",
                        help="answer the next calls of ACTION with these documented error codes "
                        "(HTTP status from api-meta; 'Code:Status' picks one; ConnectionDropped "
                        "drops), e.g. RemoveVServerGroupBackendServers=SystemBusy (repeatable)")
    parser.add_argument("--lose-answer", type=_action_codes, action="append", default=[],
                        metavar="ACTION=CODE[,CODE...]",
                        help="apply the next successful calls of ACTION, then answer a documented "
                        "5xx (InternalError) or ConnectionDropped instead (repeatable)")
    parser.add_argument("--lose-rate", type=float, default=0.0,
                        help="probability (0..1) that a successful write is applied and its "
                        "answer then lost (500 InternalError or a dropped connection)")
    parser.add_argument("--start-delay", type=float, default=0.05, metavar="S",
                        help="seconds each Starting/Stopping/Pending step lasts (default 0.05)")
    parser.add_argument("--trail-lag", type=float, default=None, metavar="S",
                        help="seconds before an ActionTrail record can be looked up (default: the "
                        "fleet file's actiontrail.lag_s, else 0; Alibaba documents 10 minutes: 600)")
    parser.add_argument("--trail-skew", type=float, default=None, metavar="S",
                        help="seconds an ActionTrail eventTime is stamped off the call's time "
                        "(default: the fleet file's actiontrail.skew_s, else 0)")
    parser.add_argument("--trail-qps", type=float, default=None, metavar="QPS",
                        help="LookupEvents calls per second for the account before 400 "
                        "Throttling.User (default: the fleet file's actiontrail.qps, else no "
                        "limit; Alibaba documents 2)")
    parser.add_argument("--db", metavar="URL",
                        help="store URL for the functions served over FC (default: SQLite in a "
                        "temporary directory, removed on exit)")
    parser.add_argument("--function-env", type=_scoped_env, action="append", default=[],
                        metavar="FUNCTION:KEY=VALUE",
                        help="environment variable of a served function ('*' = every function; "
                        "repeatable)")
    parser.add_argument("--alias", type=_scoped_env, action="append", default=[],
                        metavar="NAME:KEY=VALUE",
                        help="declare a version or alias NAME whose snapshot sets KEY=VALUE, e.g. "
                        "dry-run:ECS_EVENT_OPS_DRY_RUN=true (repeatable)")
    parser.add_argument("--fc-service", default="ecs-event-ops",
                        help="FC 2.0 service name (default: %(default)s)")
    parser.add_argument("--lb-job-s", type=float, default=None, metavar="S",
                        help="seconds an ALB/NLB server-group job runs (default 1.5)")
    parser.add_argument("--lb-drain-scale", type=float, default=None, metavar="F",
                        help="an ALB/NLB connection drain of T seconds holds a removed member "
                        "T*F seconds (default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fleet = load_fleet(args.fleet)
    except (FleetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for flag, value in (("--fault-rate", args.fault_rate), ("--lose-rate", args.lose_rate)):
        if not 0.0 <= value <= 1.0:
            print(f"error: {flag} must be within 0..1", file=sys.stderr)
            return 2
    emu = Emulator(
        fleet, latency_ms=args.latency_ms, throttle_qps=args.throttle_qps,
        throttle_actions=dict(args.throttle_action), fault_rate=args.fault_rate, seed=args.seed,
        throttle_reads=args.throttle_reads, throttle_writes=args.throttle_writes,
        start_delay_s=args.start_delay, events_out=args.events_out, port=args.port,
        host=args.host, db_url=args.db, function_env=_group(args.function_env),
        qualifiers=_group(args.alias), fc_service=args.fc_service,
        trail_lag_s=args.trail_lag, trail_skew_s=args.trail_skew,
        **({"trail_qps": args.trail_qps} if args.trail_qps is not None else {}),
    )
    try:
        emu.set_faults(fail_next=dict(args.fail_next), lose_answer=dict(args.lose_answer),
                       lose_rate=args.lose_rate)
        emu.set_lb_jobs(job_s=args.lb_job_s, drain_scale=args.lb_drain_scale)
    except ValueError as exc:
        emu.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"http://{args.host}:{emu.port}", flush=True)
    print(json.dumps({"region": fleet.region, "instances": len(fleet.instances),
                      "load_balancers": len(fleet.load_balancers),
                      "access_key_ids": [c.access_key_id for c in fleet.credentials]}),
          file=sys.stderr, flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
