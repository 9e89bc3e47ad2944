"""Practice 2, safe auto-start, end to end: the real Tea SDK against the emulator, a real store.

Each test stops instances through the emulator (a user stop leaves an ActionTrail record, a
platform stop an O&M event, a crash neither), takes the CloudMonitor events the emulator emitted
and feeds them as bytes, exactly as a trigger would.
Alerts go to a local webhook receiver; StartInstance calls are counted from ``emu.calls()``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.autostart import (
    AutoStartResult,
    Decision,
    RetryLaterError,
    handle_events,
    sweep_auto_start,
)
from shared.clients import Clients, Credentials
from shared.events import parse
from shared.notify import Notifier, WebhookChannel
from shared.settings import Settings
from shared.store import Store
from tests.helpers import FLEETS
from tests.http_receiver import HttpReceiver, closed_port_url
from tools.emulator import Call, Emulator, load_fleet

APP1 = "i-bp1as000000000000001"  # tag true
APP2 = "i-bp1as000000000000002"  # tag always
APP3 = "i-bp1as000000000000003"  # tag " True "
SPOT1 = "i-bp1as000000000000004"  # spot, behaviour Stop, tag always
OFF1 = "i-bp1as000000000000005"  # tag "false"
LEGACY = "i-bp1as000000000000006"  # name legacy-db-1, tag always
PLAIN = "i-bp1as000000000000007"  # no tag
STOCK = "i-bp1as000000000000008"  # tag true, StopCharging
FLEET = FLEETS / "autostart.yaml"
START_ACTIONS = ("StartInstance", "StartInstances")


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class World:
    """The emulator, a store, a webhook and the settings one test runs with."""

    emu: Emulator
    store: Store
    settings: Settings
    hook_url: str
    rx: HttpReceiver
    sleep: RecordingSleep = field(default_factory=RecordingSleep)

    @property
    def credentials(self) -> Credentials:
        c = self.emu.credentials[0]
        return Credentials(c["access_key_id"], c["access_key_secret"], c.get("security_token"))

    def clients(self, settings: Settings | None = None) -> Clients:
        return Clients.from_settings(settings or self.settings, self.credentials, sleep=self.sleep)

    def notifier(self, store: Store | None = None) -> Notifier:
        return Notifier([WebhookChannel(self.hook_url)], ledger=store or self.store, timeout_s=2.0)

    def run(self, body: bytes, now: datetime | None = None, **overrides: Any) -> AutoStartResult:
        settings = self.settings.with_(**overrides)
        return handle_events(
            parse(body), store=self.store, clients=self.clients(settings),
            notifier=self.notifier(), settings=settings, now=now,
        )

    def sweep(self, now: datetime | None = None, **overrides: Any) -> AutoStartResult:
        settings = self.settings.with_(**overrides)
        return sweep_auto_start(self.store, self.clients(settings), self.notifier(), settings, now)

    def stop(self, iid: str, by: str = "crash", user: str = "alice") -> bytes:
        """Stop a Running instance; the bytes of its Stopped event."""
        before = len(self.emu.events())
        self.emu.stop_instance(iid, by=by, user=user)
        self.emu.wait_for_status(iid, "Stopped")
        return as_bytes(self.new_event(before, iid, state="Stopped"))

    def new_event(self, since_index: int, iid: str, *, state: str | None = None,
                  name: str | None = None) -> dict[str, Any]:
        for payload in self.emu.events()[since_index:]:
            if not payload["resourceId"].endswith(f"/{iid}"):
                continue
            if state is not None and payload["content"].get("state") == state:
                return payload
            if name is not None and payload["name"].startswith(name):
                return payload
        raise AssertionError(f"no event state={state} name={name} for {iid}")

    def record(self, payload: dict[str, Any]) -> None:
        """What record_lifecycle does with the events auto_start does not subscribe to."""
        batch = parse(as_bytes(payload))
        assert not batch.errors
        self.store.record(batch.events)

    def seen_running(self, iid: str, at: datetime) -> None:
        """The store saw the instance Running at ``at`` (record_lifecycle, earlier)."""
        self.record({
            "ver": "1.0", "id": f"seen-running-{iid}", "product": "ECS", "level": "INFO",
            "resourceId": f"acs:ecs:cn-hangzhou:1234567890123456:instance/{iid}",
            "name": "Instance:StateChange", "userId": "1234567890123456",
            "eventTime": at.strftime("%Y%m%dT%H%M%S.000+0000"), "regionId": "cn-hangzhou",
            "content": {"resourceId": iid, "resourceType": "ALIYUN::ECS::Instance", "state": "Running"},
        })

    def running_event(self, iid: str, since_index: int) -> bytes:
        self.emu.wait_for_status(iid, "Running")
        return as_bytes(self.new_event(since_index, iid, state="Running"))

    def starts(self, iid: str | None = None) -> list[Call]:
        return [
            c for c in self.emu.calls()
            if c.action in START_ACTIONS and c.status == 200
            and (iid is None or iid in c.params.values())
        ]

    def start_calls(self) -> list[Call]:
        return [c for c in self.emu.calls() if c.action in START_ACTIONS]

    def alerts(self) -> list[dict[str, Any]]:
        return [r.json for r in self.rx.requests]

    def ledger(self, key: str) -> str | None:
        entry = self.store.ledger_get(key)
        return None if entry is None else entry.status


def as_bytes(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def only(result: AutoStartResult, iid: str) -> tuple[Decision, str]:
    found = [d for d in result.decisions if d.instance_id == iid]
    assert len(found) == 1, result.to_dict()
    return found[0].decision, found[0].reason


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with Emulator(load_fleet(FLEET), start_delay_s=0.01) as emu, HttpReceiver() as rx:
        settings = Settings.from_env(
            environ={}, cloud_url=emu.url, db_url=f"sqlite:///{tmp_path / 'store.sqlite3'}",
            api_backoff_base_s=0.01, api_backoff_max_s=0.01, notify_timeout_s=2.0,
            actiontrail_settle_s=0,  # the emulator's trail shows calls at once (no lag) here
        )
        store = Store(settings.db_url)
        try:
            yield World(emu, store, settings, rx.url_for("/hook"), rx)
        finally:
            store.close()


# --- the happy path and verification -----------------------------------------------------------


def test_unexpected_stop_is_started_and_the_running_event_closes_the_incident(world: World) -> None:
    """GIVEN app-1 (true) stopped with no user call WHEN its Stopped event arrives THEN started,
    an incident opens, and the Running event that follows closes it."""
    body = world.stop(APP1)
    event_id = json.loads(body)["id"]
    world.emu.clear_calls()
    mark = len(world.emu.events())

    result = world.run(body)

    assert only(result, APP1) == (
        Decision.STARTED, "unexpected stop: no StopInstance(s) by a user or role in ActionTrail")
    assert [c.action for c in world.emu.calls()] == ["DescribeInstances", "LookupEvents", "StartInstance"]
    assert world.starts()[0].params["InstanceId"] == APP1
    assert world.ledger(f"start:{APP1}:{event_id}") == "started"
    assert world.ledger(f"incident:{APP1}:{event_id}") == "open"
    assert world.store.ledger_count("start", APP1, datetime.now(timezone.utc) - timedelta(hours=1)) == 1

    closed = world.run(world.running_event(APP1, mark))

    assert only(closed, APP1) == (Decision.VERIFIED, f"Running: closed incident:{APP1}:{event_id}")
    assert world.ledger(f"incident:{APP1}:{event_id}") == "closed"
    assert world.alerts() == []


def test_same_stopped_event_three_times_gives_one_start_call(world: World) -> None:
    """GIVEN one Stopped event WHEN delivered three times THEN exactly one StartInstance call."""
    body = world.stop(APP2)
    world.emu.clear_calls()

    decisions = [only(world.run(body), APP2)[0] for _ in range(3)]

    assert len(world.start_calls()) == 1
    assert decisions[0] is Decision.STARTED
    assert decisions[1:] == [Decision.ALREADY_RUNNING, Decision.ALREADY_RUNNING]


def test_redelivery_after_the_instance_stopped_again_does_not_restart_it(world: World) -> None:
    """GIVEN a stop already started and the instance stopped again WHEN the OLD event is
    redelivered THEN no start (the ledger key is the stop's identity)."""
    body = world.stop(APP2)
    world.run(body)
    world.emu.wait_for_status(APP2, "Running")
    world.stop(APP2, by="user")
    world.emu.clear_calls()

    decision, reason = only(world.run(body), APP2)

    assert decision is Decision.SKIPPED
    assert reason == f"already handled for stop {json.loads(body)['id']} (status started)"
    assert world.start_calls() == []


def test_a_claim_left_by_a_dead_invocation_is_taken_over_after_a_while(world: World) -> None:
    """GIVEN a start claim left 'claimed' 20 minutes ago (the invocation died before calling
    StartInstance) WHEN the event is redelivered THEN it starts; a fresh claim would block."""
    body = world.stop(APP2)
    event_id = json.loads(body)["id"]
    past = Store(world.settings.db_url, clock=lambda: datetime.now(timezone.utc) - timedelta(minutes=20))
    try:
        assert past.ledger_claim(f"start:{APP2}:{event_id}", kind="start_attempt", instance_id=APP2)
    finally:
        past.close()

    assert only(world.run(body), APP2)[0] is Decision.STARTED
    assert world.ledger(f"start:{APP2}:{event_id}:retry2") == "started"
    assert len(world.start_calls()) == 1


def test_two_concurrent_invocations_start_once(world: World, tmp_path: Path) -> None:
    """GIVEN the same Stopped event WHEN two invocations run at once (own store and clients,
    like two FC instances) THEN one StartInstance call; the other reports why it did not."""
    body = world.stop(APP2)
    world.emu.clear_calls()
    barrier = threading.Barrier(2)
    results: list[AutoStartResult] = []
    errors: list[BaseException] = []

    def invoke() -> None:
        store = Store(world.settings.db_url)
        clients = world.clients()
        clients.ecs  # noqa: B018 - build the SDK client before the race starts
        try:
            barrier.wait()
            results.append(handle_events(parse(body), store=store, clients=clients,
                                         notifier=world.notifier(store), settings=world.settings))
        except BaseException as error:
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=invoke) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert len(world.start_calls()) == 1
    # the other one met the claim either live (its start not done: RetryLaterError, so FC
    # redelivers; never a success for a start not made) or finished (skipped / already running)
    outcomes = sorted(only(r, APP2)[0].value for r in results)
    if errors:
        assert [type(e) for e in errors] == [RetryLaterError]
        assert outcomes == ["started"]
    else:
        assert outcomes[1] == "started"
        assert outcomes[0] in ("already_running", "skipped")


def test_several_eligible_stops_in_one_batch_use_one_start_instances_call(world: World) -> None:
    """GIVEN a batch with three eligible Stopped events WHEN handled THEN one StartInstances
    (SuccessFirst) call for all three, one DescribeInstances."""
    bodies = [json.loads(world.stop(iid)) for iid in (APP1, APP2, APP3)]
    world.emu.clear_calls()

    result = world.run(as_bytes(bodies))

    assert [d.decision for d in result.decisions] == [Decision.STARTED] * 3
    calls = world.start_calls()
    assert len(calls) == 1
    assert calls[0].action == "StartInstances"
    assert calls[0].params["BatchOptimization"] == "SuccessFirst"
    assert {calls[0].params[f"InstanceId.{n}"] for n in (1, 2, 3)} == {APP1, APP2, APP3}
    assert [c.action for c in world.emu.calls()].count("DescribeInstances") == 1


# --- scope ------------------------------------------------------------------------------------


def test_instances_not_opted_in_are_never_started(world: World) -> None:
    """GIVEN off-1 (tag false) and plain-1 (no tag) stopped WHEN handled THEN skipped, no start."""
    bodies = [json.loads(world.stop(iid)) for iid in (OFF1, PLAIN)]
    world.emu.clear_calls()

    result = world.run(as_bytes(bodies))

    assert only(result, OFF1) == (
        Decision.SKIPPED, "not opted in: tag auto-start is 'false' (needs 'true' or 'always')")
    assert only(result, PLAIN) == (
        Decision.SKIPPED, "not opted in: tag auto-start is absent (needs 'true' or 'always')")
    assert world.start_calls() == []
    assert world.emu.instance(OFF1)["status"] == "Stopped"


def test_deny_glob_and_allow_list_limit_the_scope(world: World) -> None:
    """GIVEN deny legacy-* and allow app-* WHEN legacy-db-1 and app-2 stop THEN only app-2 starts."""
    bodies = [json.loads(world.stop(iid)) for iid in (LEGACY, APP2)]

    result = world.run(as_bytes(bodies), auto_start_deny=("legacy-*",), auto_start_allow=("app-*",))

    assert only(result, LEGACY) == (Decision.SKIPPED, "on the deny list ('legacy-*')")
    assert only(result, APP2)[0] is Decision.STARTED
    assert [c.params["InstanceId"] for c in world.starts()] == [APP2]


# --- classifying the stop ---------------------------------------------------------------------


def test_user_stop_is_respected_under_true_and_undone_under_always(world: World) -> None:
    """GIVEN app-1 (true) and app-2 (always) stopped by user alice WHEN handled THEN app-1
    skipped as deliberate (ActionTrail), app-2 started."""
    bodies = [json.loads(world.stop(iid, by="user")) for iid in (APP1, APP2)]

    result = world.run(as_bytes(bodies))

    decision, reason = only(result, APP1)
    assert decision is Decision.SKIPPED
    assert reason.startswith("deliberate stop: StopInstance by ram-user alice at ")
    assert reason.endswith("(ActionTrail)")
    assert only(result, APP2) == (Decision.STARTED, "tag auto-start=always: start after any stop")
    assert [c.params["InstanceId"] for c in world.starts()] == [APP2]


def test_announced_platform_stop_is_skipped_unless_configured(world: World) -> None:
    """GIVEN SystemFailure.Stop recorded for app-2 WHEN its Stopped event arrives THEN skipped;
    with restart_after_platform_stop the same stop is started."""
    mark = len(world.emu.events())
    body = world.stop(APP2, by="platform")
    world.record(world.new_event(mark, APP2, name="Instance:SystemFailure.Stop"))

    decision, reason = only(world.run(body), APP2)
    assert decision is Decision.SKIPPED
    assert reason.startswith("platform stop: Instance:SystemFailure.Stop:Executing at ")
    assert world.start_calls() == []

    decision, reason = only(world.run(body, restart_after_platform_stop=True), APP2)
    assert decision is Decision.STARTED
    assert reason == ("tag auto-start=always: start after any stop; platform stop "
                      "Instance:SystemFailure.Stop:Executing (restart_after_platform_stop on)")


@pytest.mark.parametrize(("lock", "severity"), [("financial", "warning"), ("security", "critical")])
def test_locked_instance_is_skipped_with_one_alert(world: World, lock: str, severity: str) -> None:
    """GIVEN app-2 stopped and then locked WHEN its event arrives twice THEN skipped both times,
    no StartInstance, one alert."""
    body = world.stop(APP2)
    world.emu.lock(APP2, lock)

    first = world.run(body)
    second = world.run(body)

    assert only(first, APP2) == (Decision.SKIPPED, f"operation locks: {lock}")
    assert only(second, APP2) == (Decision.SKIPPED, f"operation locks: {lock}")
    assert world.start_calls() == []
    alerts = world.alerts()
    assert len(alerts) == 1
    assert alerts[0]["instance_id"] == APP2
    assert alerts[0]["severity"] == severity
    assert alerts[0]["key"].startswith(f"auto_start:locked:{APP2}:{lock}:")


def test_spot_reclaim_with_recycling_lock_is_skipped(world: World) -> None:
    """GIVEN spot-1 interrupted (Recycling lock) then stopped WHEN handled THEN skipped."""
    world.emu.interrupt_spot(SPOT1)
    body = world.stop(SPOT1)

    assert only(world.run(body), SPOT1) == (
        Decision.SKIPPED, "spot instance being reclaimed (recycling lock)")
    assert world.start_calls() == []


def test_spot_reclaim_known_from_the_stored_interruption_notice_is_skipped(world: World) -> None:
    """GIVEN spot-1's interruption notice in the store and no lock left WHEN its Stopped event
    arrives THEN skipped as a reclaim (SpotInterruptionBehavior Stop)."""
    mark = len(world.emu.events())
    world.emu.interrupt_spot(SPOT1)
    world.record(world.new_event(mark, SPOT1, name="Instance:PreemptibleInstanceInterruption"))
    world.emu.unlock(SPOT1, "Recycling")
    body = world.stop(SPOT1)

    decision, reason = only(world.run(body), SPOT1)

    assert decision is Decision.SKIPPED
    assert reason.startswith("spot instance reclaimed: interruption notice at ")
    assert reason.endswith("(SpotInterruptionBehavior Stop)")
    assert world.start_calls() == []


@pytest.mark.parametrize(
    ("fallback", "decision", "suffix"),
    [("skip", Decision.SKIPPED, "fallback 'skip': stop treated as deliberate"),
     ("start", Decision.STARTED, "fallback 'start': stop treated as unexpected")],
)
def test_unreadable_actiontrail_falls_back_and_says_so(
    world: World, fallback: str, decision: Decision, suffix: str
) -> None:
    """GIVEN LookupEvents failing with 5xx beyond the retries WHEN app-1 (true) stops THEN the
    configured fallback decides, and the reason names the failure."""
    body = world.stop(APP1)
    attempts = world.settings.api_max_attempts
    world.emu.set_faults(fail_next={"LookupEvents": ["InternalError:500"] * attempts})

    result = world.run(body, actiontrail_fallback=fallback)

    assert only(result, APP1) == (decision, f"ActionTrail unreadable (InternalError); {suffix}")
    trail_calls = [c for c in world.emu.calls() if c.action == "LookupEvents"]
    assert len(trail_calls) == attempts
    assert len(world.sleep.delays) == attempts - 1  # the client retried with the fake sleep
    assert len(world.starts()) == (1 if decision is Decision.STARTED else 0)


# --- flap guard -------------------------------------------------------------------------------


def test_flapping_instance_is_capped_with_exactly_one_alert(world: World) -> None:
    """GIVEN flap_max_starts=3 WHEN app-2 stops four times (the last event delivered twice) THEN
    three starts, then capped twice, one alert for the window."""
    decisions = []
    for _ in range(4):
        body = world.stop(APP2)
        decisions.append(only(world.run(body, flap_max_starts=3), APP2))
        if decisions[-1][0] is Decision.STARTED:
            world.emu.wait_for_status(APP2, "Running")
    decisions.append(only(world.run(body, flap_max_starts=3), APP2))

    assert [d for d, _ in decisions] == [Decision.STARTED] * 3 + [Decision.CAPPED] * 2
    assert decisions[3][1] == "flap guard: 3 starts in the last 3600 s (max 3)"
    assert len(world.starts(APP2)) == 3
    assert world.emu.instance(APP2)["status"] == "Stopped"
    alerts = world.alerts()
    assert [a["title"] for a in alerts] == ["Auto-start capped (flapping instance)"]


# --- StartInstance refusals -------------------------------------------------------------------


def test_no_stock_raises_for_a_retry_alerts_once_and_a_later_redelivery_starts(world: World) -> None:
    """GIVEN stock-1's start refused with OperationDenied.NoStock WHEN the event is delivered
    (twice) THEN RetryLaterError and one alert; once stock is back the redelivery starts it."""
    body = world.stop(STOCK)
    event_id = json.loads(body)["id"]
    world.emu.set_faults(start_error={STOCK: "OperationDenied.NoStock"})

    for _ in range(2):
        with pytest.raises(RetryLaterError) as caught:
            world.run(body)
        assert caught.value.result.retry_later == (STOCK,)
        assert only(caught.value.result, STOCK) == (
            Decision.FAILED, "StartInstance answered OperationDenied.NoStock: retry later")
    assert world.ledger(f"start:{STOCK}:{event_id}") == "retry"
    assert world.ledger(f"start:{STOCK}:{event_id}:retry2") == "retry"

    world.emu.set_faults(start_error={STOCK: None})
    result = world.run(body)

    assert only(result, STOCK)[0] is Decision.STARTED
    assert world.ledger(f"start:{STOCK}:{event_id}:retry3") == "started"
    assert len(world.start_calls()) == 3
    assert len(world.starts(STOCK)) == 1
    assert [a["key"] for a in world.alerts()] == [f"auto_start:retry:{STOCK}:{event_id}"]
    assert world.store.ledger_count("start", STOCK, datetime.now(timezone.utc) - timedelta(hours=1)) == 1


def test_insufficient_balance_fails_without_retry_and_alerts(world: World) -> None:
    """GIVEN StartInstance refused with InsufficientBalance WHEN the event is delivered twice
    THEN failed (no exception), one StartInstance call, one critical alert."""
    body = world.stop(APP2)
    world.emu.set_faults(start_error={APP2: "InsufficientBalance"})

    first = world.run(body)
    second = world.run(body)

    assert only(first, APP2) == (Decision.FAILED, "StartInstance answered InsufficientBalance: not retried")
    assert only(second, APP2)[0] is Decision.SKIPPED
    assert only(second, APP2)[1].endswith("(status failed)")
    assert len(world.start_calls()) == 1
    assert [(a["title"], a["severity"]) for a in world.alerts()] == [("Auto-start failed", "critical")]


def test_throttled_start_is_retried_by_the_client_layer(world: World) -> None:
    """GIVEN StartInstance throttled twice WHEN app-2's event arrives THEN started on the third
    try, with two fake sleeps."""
    body = world.stop(APP2)
    world.emu.set_faults(fail_next={"StartInstance": ["Throttling.User", "Throttling.User"]})

    assert only(world.run(body), APP2)[0] is Decision.STARTED
    assert [c.code for c in world.start_calls()] == ["Throttling.User", "Throttling.User", None]
    assert len(world.sleep.delays) == 2


def test_start_failing_beyond_retries_propagates_and_the_redelivery_can_start(world: World) -> None:
    """GIVEN StartInstance answering 503 past the retries WHEN handled THEN TransientError
    propagates (FC retries) and the redelivered event starts the instance."""
    from shared.clients import TransientError

    body = world.stop(APP2)
    attempts = world.settings.api_max_attempts
    world.emu.set_faults(fail_next={"StartInstance": ["ServiceUnavailable:503"] * attempts})

    with pytest.raises(TransientError):
        world.run(body)
    assert world.emu.instance(APP2)["status"] == "Stopped"

    assert only(world.run(body), APP2)[0] is Decision.STARTED


# --- dry run ----------------------------------------------------------------------------------


def test_dry_run_decides_calls_with_dryrun_and_changes_nothing(world: World) -> None:
    """GIVEN dry_run WHEN app-2's Stopped event arrives THEN decision dry-run, StartInstance sent
    with DryRun=true, instance still Stopped, no start/incident, no alert; a later real run starts."""
    body = world.stop(APP2)
    event_id = json.loads(body)["id"]
    world.emu.lock(APP1, "financial")  # an alert that a dry run must not send
    other = world.stop(APP1)
    world.emu.clear_calls()

    result = world.run(as_bytes([json.loads(body), json.loads(other)]), dry_run=True)

    assert only(result, APP1) == (Decision.SKIPPED, "operation locks: financial")
    decision, reason = only(result, APP2)
    assert decision is Decision.DRY_RUN
    assert reason == "would start (tag auto-start=always: start after any stop); DryRun request accepted"
    calls = world.start_calls()
    assert len(calls) == 1
    assert calls[0].params["DryRun"].lower() == "true"
    assert calls[0].code == "DryRunOperation"
    time.sleep(0.05)
    assert world.emu.instance(APP2)["status"] == "Stopped"
    assert world.ledger(f"start:{APP2}:{event_id}") is None
    assert world.ledger(f"incident:{APP2}:{event_id}") is None
    assert world.alerts() == []

    assert only(world.run(body), APP2)[0] is Decision.STARTED


# --- notifications ----------------------------------------------------------------------------


def test_dead_webhook_does_not_fail_or_delay_the_start(world: World) -> None:
    """GIVEN the webhook on a closed port WHEN a batch holds a locked instance (alert) and an
    eligible one THEN the eligible one is started and the handler returns promptly."""
    world.hook_url = closed_port_url()
    body = world.stop(APP2)
    world.emu.lock(APP1, "security")
    locked = world.stop(APP1)

    started = time.monotonic()
    result = world.run(as_bytes([json.loads(locked), json.loads(body)]))
    elapsed = time.monotonic() - started

    assert only(result, APP2)[0] is Decision.STARTED
    assert only(result, APP1) == (Decision.SKIPPED, "operation locks: security")
    assert elapsed < world.settings.notify_timeout_s + 1.0
    # the key ends in the alert's day: found by instance, so a run across midnight still passes
    (entry,) = world.store.ledger_find("notify", instance_id=APP1)
    assert entry.key.startswith(f"notify:auto_start:locked:{APP1}:security:")
    assert entry.status == "failed"


# --- the sweep --------------------------------------------------------------------------------


def test_sweep_escalates_an_incident_not_closed_in_time_once(world: World) -> None:
    """GIVEN app-2 started but Stopped again before any Running event WHEN the sweep runs after
    incident_timeout_s THEN escalated with one alert; a second sweep does not alert again."""
    body = world.stop(APP2)
    event_id = json.loads(body)["id"]
    world.run(body)
    world.emu.wait_for_status(APP2, "Running")
    world.emu.stop_instance(APP2, by="platform")
    world.emu.wait_for_status(APP2, "Stopped")
    later = datetime.now(timezone.utc) + timedelta(seconds=world.settings.incident_timeout_s + 1)

    first = world.sweep(later)
    second = world.sweep(later + timedelta(minutes=5))

    assert [d.decision for d in first.decisions] == [Decision.ESCALATED, Decision.SKIPPED]
    assert first.decisions[0].reason == (
        f"incident:{APP2}:{event_id}: not Running 600 s after the start (live status Stopped)")
    assert first.decisions[1].reason == "an incident is open or escalated for this instance"
    assert world.ledger(f"incident:{APP2}:{event_id}") == "escalated"
    assert [a["title"] for a in world.alerts()] == ["Auto-started instance not running"]
    assert Decision.ESCALATED not in [d.decision for d in second.decisions]


def test_sweep_closes_an_incident_whose_running_event_was_missed(world: World) -> None:
    """GIVEN app-2 started and Running but its Running event never delivered WHEN the sweep runs
    after the timeout THEN the incident is closed (verified), no alert."""
    body = world.stop(APP2)
    event_id = json.loads(body)["id"]
    world.run(body)
    world.emu.wait_for_status(APP2, "Running")
    later = datetime.now(timezone.utc) + timedelta(seconds=world.settings.incident_timeout_s + 1)

    result = world.sweep(later)

    assert [d.decision for d in result.decisions] == [Decision.VERIFIED]
    assert world.ledger(f"incident:{APP2}:{event_id}") == "closed"
    assert world.alerts() == []


def test_sweep_rechecks_stops_whose_events_were_missed(world: World) -> None:
    """GIVEN, with no Stopped event delivered: app-1 (true, seen running, crashed), app-2 (always,
    user stop), app-3 (true, seen running, user stop), stock-1 (true, never seen, crashed) and
    off-1 WHEN the sweep runs THEN app-1 and app-2 start in one call, app-3 is a deliberate stop,
    stock-1's stop time is unknown, off-1 is not considered; a second sweep in the hour does nothing."""
    earlier = datetime.now(timezone.utc) - timedelta(hours=2)
    world.seen_running(APP1, earlier)
    world.seen_running(APP3, earlier)
    for iid, by in ((APP1, "crash"), (APP2, "user"), (APP3, "user"), (STOCK, "crash"), (OFF1, "crash")):
        world.stop(iid, by=by)
    world.emu.clear_calls()
    now = datetime.now(timezone.utc)

    result = world.sweep(now)

    by_id = {d.instance_id: d for d in result.decisions}
    assert set(by_id) == {APP1, APP2, APP3, STOCK}
    assert by_id[APP1].decision is Decision.STARTED
    assert by_id[APP2].decision is Decision.STARTED
    assert by_id[APP3].decision is Decision.SKIPPED
    assert by_id[APP3].reason.startswith("deliberate stop: StopInstance by ram-user alice")
    assert by_id[STOCK].decision is Decision.SKIPPED
    assert by_id[STOCK].reason.startswith("stop time unknown (no event for this instance in the store)")
    assert by_id[APP1].stop_id == f"sweep:{APP1}:{now:%Y%m%dT%H}"
    calls = world.start_calls()
    assert len(calls) == 1
    assert calls[0].action == "StartInstances"
    assert world.ledger(f"incident:{APP1}:sweep:{APP1}:{now:%Y%m%dT%H}") == "open"
    assert world.emu.instance(STOCK)["status"] == "Stopped"

    world.emu.clear_calls()
    again = world.sweep(now + timedelta(minutes=5))  # may cross a clock hour: still "in the hour"
    assert again.decisions == ()
    assert [c.action for c in world.emu.calls()] == ["DescribeInstances"]

    # The emulator boots the started instances on its own timer: on a loaded machine that can
    # take longer than this test's own steps, so wait for Running (bounded) before the re-check.
    for _ in range(200):
        if all(world.emu.instance(i)["status"] == "Running" for i in (APP1, APP2)):
            break
        time.sleep(0.05)
    later = world.sweep(now + timedelta(minutes=61))  # a rolling hour later: checked again
    by_id = {d.instance_id: d.decision for d in later.decisions}
    assert by_id == {APP1: Decision.VERIFIED, APP2: Decision.VERIFIED,  # their starts, confirmed
                     APP3: Decision.SKIPPED, STOCK: Decision.SKIPPED}  # re-checked, same verdicts


def test_sweep_leaves_a_fresh_stop_to_the_event_path(world: World) -> None:
    """GIVEN app-2's Stopped event recorded seconds ago WHEN the sweep runs THEN it does not act."""
    body = world.stop(APP2)
    world.store.record(parse(body).events)

    result = world.sweep()

    assert only(result, APP2)[0] is Decision.SKIPPED
    assert "the event path handles it" in only(result, APP2)[1]
    assert world.start_calls() == []


def test_a_fresh_true_stop_waits_for_actiontrail_then_the_sweep_starts_it(world: World) -> None:
    """GIVEN actiontrail_settle_s=600 and app-1 (true) crashing now WHEN its Stopped event comes
    THEN it is left alone (ActionTrail may not show a caller yet); a sweep 6 minutes later still
    waits without using up its hourly re-check; one 11 minutes later starts it."""
    body = world.stop(APP1)
    first = world.run(body, actiontrail_settle_s=600)
    (decision,) = [d for d in first.decisions if d.instance_id == APP1]
    assert decision.decision is Decision.SKIPPED
    assert decision.reason.startswith("no ActionTrail record yet, but the stop is only ")
    assert world.start_calls() == []

    now = datetime.now(timezone.utc)
    waiting = world.sweep(now + timedelta(minutes=6), actiontrail_settle_s=600)
    assert [d.decision for d in waiting.decisions if d.instance_id == APP1] == [Decision.SKIPPED]
    assert world.start_calls() == []

    settled = world.sweep(now + timedelta(minutes=11), actiontrail_settle_s=600)
    assert [d.decision for d in settled.decisions if d.instance_id == APP1] == [Decision.STARTED]
    assert len(world.start_calls()) == 1
