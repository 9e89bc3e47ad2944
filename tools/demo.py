"""``make demo``: the whole story on one machine, in about a minute.

Starts the emulator with the demo fleet (tools/fleets/demo.yaml: 36 instances, 3 CLBs with
default, vServer and master-slave groups, an ALB with a connection-draining group and a plain one,
an NLB group without draining), plays a scenario, and feeds every event the emulator
emits through the functions on the local FC runtime, rotating through the trigger envelopes:

  creations · an unexpected stop · a deliberate stop · a locked instance · a platform stop ·
  a flapping instance · spot interruptions · releases · one sweep

It ends with what each function decided and why, the drains against their deadlines, the alerts
that went out, and ``tools.lifecycle released`` for the released instances.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack, redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shared import log
from shared.redact import redact_url
from shared.settings import default_db_url
from tools import lifecycle
from tools.emulator import Emulator, load_fleet
from tools.envelopes import ENVELOPES, wrap, wrap_batch
from tools.invoke import InvokeResult, applied_environment, invoke_local

REPO_ROOT = Path(__file__).resolve().parent.parent
FLEET = REPO_ROOT / "tools" / "fleets" / "demo.yaml"
# The store tools.invoke, tools.lifecycle and the functions use locally by default: after the
# demo, `python -m tools.lifecycle released` (no --db) reads what it wrote.
DEFAULT_DB_URL = default_db_url({})
# ActionTrail as Alibaba documents it, on the demo's compressed clock (an instance transition
# takes 0.3 s here, tens of seconds for real): a call shows in LookupEvents TRAIL_LAG_S after it
# is made (documented: up to 10 minutes), LookupEvents answers its documented 2 calls/s, and
# auto_start leaves a "true" stop without a record to the sweep until it is SETTLE_S old (600 s,
# the documented lag, in production).
TRAIL_LAG_S = 2.0
TRAIL_QPS = 2.0
SETTLE_S = 3
FUNCTION_ENV = {
    "ECS_EVENT_OPS_DRAIN_TIME_S": "3",  # gentle drain: weight 0, then 3 s before removal
    "ECS_EVENT_OPS_LB_PRODUCTS": "clb,alb,nlb",  # CLB vServer groups, ALB and NLB server groups
    "ECS_EVENT_OPS_FLAP_MAX_STARTS": "3",
    "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.05",
    "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": str(SETTLE_S),
    # The spot replacement's other vSwitches of the demo VPC (tools/fleets/demo.yaml).
    "ECS_EVENT_OPS_REPLACE_VSWITCHES": ",".join(
        f"vpc-bp1emulator0000000001/cn-hangzhou-{z}=vsw-bp1demo{z}00000000001" for z in "ij"),
}


class AlertInbox:
    """A local generic-webhook receiver: the alerts the functions send end up here."""

    def __init__(self) -> None:
        inbox = self
        self.messages: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    inbox.messages.append(json.loads(body))
                except ValueError:
                    inbox.messages.append({"title": body.decode(errors="replace")})
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Scenario:
    def __init__(self, emu: Emulator, db_url: str) -> None:
        self.emu = emu
        self.db_url = db_url
        self.cursor = 0
        self.delivered = 0
        self.envelope_turn = 0
        self.names = {i["id"]: i["name"] for i in emu.state()["instances"]}
        self.ids = {name: iid for iid, name in self.names.items()}
        self.decisions: list[tuple[str, str, str]] = []  # (name, decision, reason)
        self.drains: list[dict[str, Any]] = []
        self.replacements: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.sweep: dict[str, Any] = {}

    def name(self, iid: str | None) -> str:
        return str(self.names.get(iid or "", iid or "-"))

    def invoke(self, function: str, body: bytes) -> InvokeResult:
        result = invoke_local(function, body, cloud_url=self.emu.url, db_url=self.db_url, env=FUNCTION_ENV)
        if result.error is not None:
            self.failures.append(f"{function}: {type(result.error).__name__}: {result.error}")
        return result

    def pump(self) -> int:
        """Deliver every event emitted since the last pump, each through its functions."""
        payloads = self.emu.events()[self.cursor:]
        self.cursor += len(payloads)
        interruptions = []
        for payload in payloads:
            envelope = ENVELOPES[self.envelope_turn % len(ENVELOPES)]
            self.envelope_turn += 1
            body = wrap(payload, envelope)
            self.invoke("record_lifecycle", body)
            if payload["name"] == "Instance:StateChange":
                result = self.invoke("auto_start", body)
                for d in (result.value or {}).get("decisions", []):
                    if d["decision"] != "ignored":
                        self.decisions.append((self.name(d["instance_id"]), d["decision"], d["reason"]))
            elif payload["name"] == "Instance:PreemptibleInstanceInterruption":
                interruptions.append((payload, envelope))
        if interruptions:  # one batch, drained concurrently, as an EventBridge batch push would
            result = self.invoke("drain_spot", wrap_batch(interruptions))
            self.drains += (result.value or {}).get("drains", [])
            self.replacements += (result.value or {}).get("replacements", [])
        self.delivered += len(payloads)
        return len(payloads)

    def run_sweep(self) -> dict[str, Any]:
        """One tick of the sweep's timer; its auto-start decisions join the story."""
        result = self.invoke("sweep", json.dumps({"triggerTime": "now", "triggerName": "sweep",
                                                  "payload": ""}).encode())
        value = result.value or {}
        for d in value.get("auto_start", {}).get("decisions", []):
            self.decisions.append((self.name(d["instance_id"]), f"{d['decision']} (sweep)", d["reason"]))
        self.pump()
        return value

    def settle(self, *waits: tuple[str, str]) -> None:
        """Pump until the named instances reach their states (started instances emit more)."""
        for name, status in waits:
            self.pump()
            self.emu.wait_for_status(self.ids[name], status, 10)
        self.pump()


def step(number: int, text: str, action: Callable[[], None], scenario: Scenario) -> None:
    started = time.monotonic()
    print(f"[{number}/9] {text} ...", end="", flush=True)
    action()
    print(f" {scenario.delivered} events delivered so far ({time.monotonic() - started:.1f} s)")


def play(scenario: Scenario) -> None:
    emu, ids = scenario.emu, scenario.ids

    def create() -> None:
        for n in (1, 2, 3):
            iid = f"i-bp1demonew00000000{n}"
            emu.create_instance({"id": iid, "name": f"new-0{n}", "instance_type": "ecs.g7.large",
                                 "zone": "cn-hangzhou-h", "tags": {"app": "web", "auto-start": "true"}})
            scenario.names[iid], ids[f"new-0{n}"] = f"new-0{n}", iid
        scenario.settle(*((f"new-0{n}", "Running") for n in (1, 2, 3)))

    def crash() -> None:
        # auto-start=true and no trail record yet: auto_start hands the stop to the sweep, which
        # starts it once ActionTrail has had time to show a caller and shows none.
        emu.stop_instance(ids["web-03"], by="crash")
        scenario.settle(("web-03", "Stopped"))
        time.sleep(SETTLE_S + 0.5)
        scenario.run_sweep()
        scenario.settle(("web-03", "Running"))

    def deliberate() -> None:
        # alice's StopInstance reaches ActionTrail after TRAIL_LAG_S: the Stopped event comes
        # first, so auto_start defers; the sweep then finds her record and leaves web-04 alone.
        emu.stop_instance(ids["web-04"], by="user", user="alice")
        scenario.settle(("web-04", "Stopped"))
        time.sleep(SETTLE_S + 0.5)
        scenario.run_sweep()

    def locked() -> None:
        emu.lock(ids["web-05"], "security")
        emu.stop_instance(ids["web-05"], by="crash")
        scenario.settle(("web-05", "Stopped"))

    def platform() -> None:
        emu.stop_instance(ids["db-01"], by="platform")
        scenario.settle(("db-01", "Stopped"))

    def flapping() -> None:
        for round_ in range(4):
            emu.stop_instance(ids["app-01"], by="crash")
            scenario.settle(("app-01", "Stopped"))
            if round_ < 3:
                scenario.settle(("app-01", "Running"))

    def interrupt() -> None:
        # CLB answers a documented "busy, try again" code once per write action: the drains
        # retry them (shared.clients.ERROR_RULES) and still finish before their deadlines.
        emu.set_faults(fail_next={"SetVServerGroupAttribute": ["SystemBusy"],
                                  "SetBackendServers": ["BackendServerProcessing"],
                                  "RemoveVServerGroupBackendServers": ["OperationBusy"]})
        for n in (1, 2, 3, 4):
            emu.interrupt_spot(ids[f"spot-0{n}"])
        scenario.pump()

    def release() -> None:
        for name in ("spot-01", "spot-02", "spot-03", "spot-04", "new-03", "batch-04"):
            if emu.instance(ids[name])["status"] == "Running":
                emu.stop_instance(ids[name], by="user", user="terraform")
                scenario.settle((name, "Stopped"))
            emu.release(ids[name])
        scenario.pump()

    def sweep() -> None:
        scenario.sweep = scenario.run_sweep()

    steps = [
        ("three instances are created", create),
        ("web-03 crashes: an unexpected stop (started by the sweep once ActionTrail settled)", crash),
        ("alice stops web-04 on purpose (her record reaches ActionTrail after the event)",
         deliberate),
        ("web-05 is locked for security, then stops", locked),
        ("the platform stops db-01 (SystemFailure.Stop)", platform),
        ("app-01 keeps crashing (auto-start: always)", flapping),
        ("four spot instances get interruption notices (CLB answers busy codes once); spot-01 "
         "is opted in to a replacement, whose first candidate is sold out", interrupt),
        ("spot-01..04, new-03 and batch-04 are released", release),
        ("the sweep runs", sweep),
    ]
    for number, (text, action) in enumerate(steps, 1):
        step(number, text, action, scenario)


def _states(result: dict[str, Any]) -> str:
    """How the successor came to serve in its groups: ``healthy 2, available 2``."""
    counts: dict[str, int] = {}
    for group in (result.get("health") or {}).values():
        counts[str(group.get("state"))] = counts.get(str(group.get("state")), 0) + 1
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "no group"


def report(scenario: Scenario, inbox: AlertInbox) -> None:
    print("\n== auto_start: what it decided and why")
    for name, decision, reason in scenario.decisions:
        print(f"  {name:<9} {decision:<16} {reason}")
    print("\n== drain_spot: every load-balancer membership, against the deadline")
    for d in scenario.drains:
        print(f"  {scenario.name(d.get('instance_id')):<9} {d.get('outcome', '?'):<10} "
              f"removed {len(d.get('removed') or []):>2} memberships, "
              f"master-slave reported {len(d.get('reported_master_slave') or [])}, "
              f"time left at removal {d.get('time_left_s')} s, missed deadline: {d.get('missed_deadline')}")
        for m in d.get("removed") or []:
            product = m.get("product") or "clb"
            where = (f"{m.get('load_balancer_id')}/{m.get('group_id') or 'default'}"
                     if product == "clb" else str(m.get("group_id")))
            how = (f"the group drains its connections, up to {m['drain_timeout_s']} s"
                   if m.get("drain_timeout_s") else "weight 0, drain time, removed")
            print(f"      {product:<3} {where}:{m.get('port') or '-'} ({how})")
    print("\n== spot replacement: successors of the opted-in interrupted instances")
    settled = scenario.sweep.get("replacements", {}).get("settled", [])
    for r in scenario.replacements + settled:
        if r.get("outcome") == "not_opted_in":
            continue
        c = r.get("candidate") or {}
        tried = ", ".join(f"{t.get('instance_type')}@{t.get('zone_id')}: {t.get('code')}"
                          for t in r.get("tried") or [])
        print(f"  {scenario.name(r.get('instance_id')):<9} {r.get('outcome', '?'):<9} "
              f"successor {r.get('successor_id')} {c.get('instance_type')}@{c.get('zone_id')} "
              f"{c.get('spot_strategy')}; first tried: {tried or 'none'}; serving in "
              f"{len(r.get('registered') or [])} memberships (groups: {_states(r)}); notice to Running "
              f"{r.get('seconds_to_running')} s, to serving {r.get('seconds_to_serving')} s")
    print(f"\n== alerts sent ({len(inbox.messages)})")
    for message in inbox.messages:
        print(f"  [{message.get('severity', '?')}] {message.get('title', message)}"
              f" ({scenario.name(message.get('instance_id'))})")
    print("\n== sweep (escalations, missed stops, drains to undo, stale backends)")
    for d in scenario.sweep.get("auto_start", {}).get("decisions", []):
        print(f"  auto_start {scenario.name(d['instance_id']):<9} {d['decision']:<10} {d['reason']}")
    drains = scenario.sweep.get("drains", {})
    print("  drains: " + json.dumps(drains, ensure_ascii=False)[:400])
    print("\n== python -m tools.lifecycle released")
    lifecycle.main(["--db", scenario.db_url, "released", "--format", "table"])
    print("\n== python -m tools.lifecycle stats (summary)")
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        lifecycle.main(["--db", scenario.db_url, "stats", "--format", "json"])
    try:
        stats = json.loads(buffer.getvalue())
        print("  " + json.dumps({k: stats[k] for k in list(stats)[:6]}, ensure_ascii=False)[:800])
    except ValueError:
        print(buffer.getvalue()[:800])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="store URL (default: the local store "
                        ".data/ecs-event-ops.sqlite3, emptied first: the demo starts fresh)")
    args = parser.parse_args(argv)
    db_url = args.db
    if not db_url:
        path = Path(DEFAULT_DB_URL.removeprefix("sqlite:///"))
        path.parent.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        db_url = DEFAULT_DB_URL
    log.configure(stream=io.StringIO())  # the functions' JSON logs are not the demo's story
    started = time.monotonic()
    print(f"ecs-event-ops demo: emulator with {FLEET.relative_to(REPO_ROOT)}, store {redact_url(db_url)}")
    with ExitStack() as stack:
        emu = stack.enter_context(Emulator(load_fleet(FLEET), start_delay_s=0.3,
                                           trail_lag_s=TRAIL_LAG_S, trail_qps=TRAIL_QPS))
        inbox = AlertInbox()
        stack.callback(inbox.close)
        stack.enter_context(applied_environment({
            **emu.signing_environment(), "ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": inbox.url,
        }))
        scenario = Scenario(emu, db_url)
        print(f"emulator at {emu.url}; alerts go to {inbox.url}\n")
        play(scenario)
        report(scenario, inbox)
        calls = emu.calls()
        api_calls = len(calls)
        errors = Counter(c.code for c in calls if c.code is not None and c.status != 200)
    elapsed = time.monotonic() - started
    print(f"\n{scenario.delivered} events delivered through the functions, {api_calls} API calls, "
          f"{len(scenario.failures)} invocation errors, {elapsed:.0f} s")
    print("cloud errors answered (each retried or decided on): "
          + (", ".join(f"{code} x{n}" for code, n in sorted(errors.items())) or "none"))
    for failure in scenario.failures:
        print(f"  error: {failure}")
    return 1 if scenario.failures else 0


if __name__ == "__main__":
    sys.exit(main())
