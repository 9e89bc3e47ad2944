"""Auto-start against a realistic ActionTrail: records lag the call, their clock is skewed.

ActionTrail documents "Time before an event is available for query: 10 minutes" and a 90-day
retention (product-overview/limits); issue 11 bounds the skew between the events' clock and the
trail's at +-10 minutes. With the default settings (settle 600 s, skew 600 s) a stop made by a
person must never be followed by a start, whatever the order the Stopped event and the trail
record arrive in, and a crash must still be started exactly once, by the sweep when it must wait.

Time is virtual: the emulator's clock is advanced (``Emulator.advance_clock``) and the product is
given the same ``now``; the store's clock follows it, so receipt times agree with the events'.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.autostart import AutoStartResult, Decision, handle_events, sweep_auto_start
from shared.clients import Clients, Credentials
from shared.events import parse
from shared.notify import Notifier
from shared.settings import Settings
from shared.store import Store
from tests.helpers import FLEETS
from tools.emulator import Call, Emulator, load_fleet

APP1 = "i-bp1as000000000000001"  # tag true
APP2 = "i-bp1as000000000000002"  # tag always
FLEET = FLEETS / "autostart.yaml"
SWEEP_EVERY_S = 300  # functions/sweep/index.py SCHEDULE: "0 */5 * * * *"
HORIZON_S = 35 * 60  # past every settle + sweep combination below and the 20-minute redelivery


class NoSleep:
    def __call__(self, seconds: float) -> None:
        return None


@dataclass
class Lab:
    """One emulator (virtual clock), a store on the same clock, and the product's settings."""

    emu: Emulator
    store: Store
    settings: Settings
    decisions: list[tuple[float, str, str, str]] = field(default_factory=list)  # (t, origin, decision, reason)
    _clients: tuple[Settings, Clients] | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.emu.now(), timezone.utc)

    def clients(self) -> Clients:
        """Built once per settings (as a warm FC instance keeps them)."""
        if self._clients is None or self._clients[0] is not self.settings:
            c = self.emu.credentials[0]
            self._clients = (self.settings, Clients.from_settings(
                self.settings, Credentials(c["access_key_id"], c["access_key_secret"],
                                           c.get("security_token")), sleep=NoSleep()))
        return self._clients[1]

    def notifier(self) -> Notifier:
        return Notifier([], ledger=self.store, timeout_s=1.0)

    def stop(self, iid: str, by: str) -> bytes:
        """Stop ``iid`` now (emulated clock); the bytes of its Stopped event."""
        before = len(self.emu.events())
        self.emu.stop_instance(iid, by=by, user="alice")
        self.emu.wait_for_status(iid, "Stopped")
        payload = next(p for p in self.emu.events()[before:]
                       if p["resourceId"].endswith(iid) and p["content"].get("state") == "Stopped")
        return json.dumps(payload).encode()

    def deliver(self, body: bytes, t0: float) -> AutoStartResult:
        result = handle_events(parse(body), store=self.store, clients=self.clients(),
                               notifier=self.notifier(), settings=self.settings, now=self.now())
        self._note(result, t0)
        return result

    def sweep(self, t0: float) -> AutoStartResult:
        result = sweep_auto_start(self.store, self.clients(), self.notifier(), self.settings, self.now())
        self._note(result, t0)
        return result

    def _note(self, result: AutoStartResult, t0: float) -> None:
        for d in result.decisions:
            if d.instance_id in (APP1, APP2):
                origin = "sweep" if (d.stop_id or "").startswith("sweep:") else "event"
                self.decisions.append((self.emu.now() - t0, origin, d.decision.value, d.reason))

    def advance_to(self, t0: float, offset_s: float) -> None:
        """Move the emulated clock to ``t0 + offset_s`` (never backwards)."""
        delta = t0 + offset_s - self.emu.now()
        if delta > 0:
            self.emu.advance_clock(delta)

    def starts(self, iid: str) -> list[Call]:
        """The StartInstance(s) calls that changed ``iid`` (answered or their answer lost)."""
        return [c for c in self.emu.calls()
                if c.action in ("StartInstance", "StartInstances") and iid in c.params.values()
                and (c.status == 200 or c.answer_lost)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Emulator(load_fleet(FLEET), start_delay_s=0.005) as emu:
        store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}",
                      clock=lambda: datetime.fromtimestamp(emu.now(), timezone.utc))
        settings = Settings.from_env(environ={}, cloud_url=emu.url,
                                     db_url=f"sqlite:///{tmp_path / 'store.sqlite3'}",
                                     api_backoff_base_s=0.0, api_backoff_max_s=0.0)
        try:
            yield Lab(emu, store, settings)
        finally:
            store.close()


def play(lab: Lab, *, by: str, lag_s: float, skew_s: float, order: str, path: str,
         sweep_phase_s: float) -> float:
    """One stop of app-1 (tag true) with the given trail realism; returns its emulated time.

    ``order``: "event_first" delivers the Stopped event 5 s after the stop (before the record is
    visible when there is lag), "trail_first" once the record is visible (a late delivery).
    ``path``: "function" delivers the event to auto_start (and again 20 minutes later, as a
    platform retry would); "sweep" loses auto_start's delivery (only record_lifecycle stored it),
    so only the sweep, every five minutes from ``sweep_phase_s`` after the stop, can decide.
    """
    lab.emu.set_trail(lag_s=lag_s, skew_s=skew_s)
    t0 = lab.emu.now()
    body = lab.stop(APP1, by)
    delay = 5.0 if order == "event_first" else lag_s + 5.0
    moments: list[tuple[float, str]] = [(sweep_phase_s + k * SWEEP_EVERY_S, "sweep")
                                        for k in range(HORIZON_S // SWEEP_EVERY_S)]
    if path == "function":
        moments += [(delay, "deliver"), (delay + 1200.0, "deliver")]
    else:
        lab.advance_to(t0, delay)
        lab.store.record(parse(body).events)  # record_lifecycle's copy; auto_start's was lost
    for offset, what in sorted(moments):
        lab.advance_to(t0, offset)
        if what == "deliver":
            lab.deliver(body, t0)
        else:
            lab.sweep(t0)
        if lab.starts(APP1):
            lab.emu.wait_for_status(APP1, "Running")
    return t0


LAGS = (0.0, 300.0, 600.0)  # none, half, the documented 10 minutes
SKEWS = (-600.0, 0.0, 600.0)  # the trail's clock 10 minutes behind, right, 10 minutes ahead
ORDERS = ("event_first", "trail_first")
PATHS = ("function", "sweep")
MATRIX = [
    pytest.param(lag, skew, order, path, id=f"lag{lag:.0f}-skew{skew:+.0f}-{order}-{path}")
    for lag, skew, order, path in itertools.product(LAGS, SKEWS, ORDERS, PATHS)
    if not (lag == 0.0 and order == "trail_first")  # without lag both orders are the same
]


def _phase(lag: float, skew: float) -> float:
    """A sweep phase that differs between cases (the timer does not know when stops happen)."""
    return (7.0 + lag * 0.37 + (skew + 600.0) * 0.41) % SWEEP_EVERY_S


@pytest.mark.parametrize(("lag", "skew", "order", "path"), MATRIX)
def test_a_person_s_stop_is_never_started(lab: Lab, lag: float, skew: float, order: str,
                                         path: str) -> None:
    """GIVEN alice stops app-1 (tag true) with ActionTrail lagging ``lag`` s and its clock off by
    ``skew`` s WHEN the event and the sweeps come in any order for 35 minutes THEN no start, and
    the last word names alice's StopInstance."""
    play(lab, by="user", lag_s=lag, skew_s=skew, order=order, path=path,
         sweep_phase_s=_phase(lag, skew))

    assert lab.starts(APP1) == []
    assert lab.emu.instance(APP1)["status"] == "Stopped"
    final = [d for d in lab.decisions if not d[3].startswith("handed to the sweep")][-1]
    assert final[2] == "skipped"
    assert final[3].startswith("deliberate stop: StopInstance by ram-user alice at "), lab.decisions


@pytest.mark.parametrize(("lag", "skew", "order", "path"), MATRIX)
def test_a_crash_is_started_exactly_once(lab: Lab, lag: float, skew: float, order: str,
                                        path: str) -> None:
    """GIVEN app-1 (tag true) crashes (no record) under the same lag and skew WHEN the event
    and the sweeps come in THEN exactly one start, after the settle window, never before it."""
    play(lab, by="crash", lag_s=lag, skew_s=skew, order=order, path=path,
              sweep_phase_s=_phase(lag, skew))

    assert len(lab.starts(APP1)) == 1, lab.decisions
    started = [d for d in lab.decisions if d[2] == "started"]
    assert len(started) == 1
    assert started[0][3] == "unexpected stop: no StopInstance(s) by a user or role in ActionTrail"
    delay = started[0][0]  # emulated seconds from the stop to the start
    first_seen = 5.0 if order == "event_first" else lag + 5.0
    # Never before the trail can show a call made before the stop was known (settle 600 s)...
    assert delay >= min(first_seen, 600.0) + lab.settings.actiontrail_settle_s
    # ...and by the first sweep after it (the event path hands the decision to the sweep).
    assert delay < min(first_seen, 600.0) + lab.settings.actiontrail_settle_s + SWEEP_EVERY_S
    assert lab.store.ledger_count("start", APP1, lab.now() - timedelta(hours=1)) == 1


def test_a_crash_waits_for_the_sweep_and_the_redelivery_is_handed_over(lab: Lab) -> None:
    """GIVEN app-1 (tag true) crashes WHEN its event arrives 5 s later THEN deferred with the
    settle reason; a redelivery 11 minutes later is the sweep's, not started twice."""
    t0 = lab.emu.now()
    body = lab.stop(APP1, "crash")
    lab.advance_to(t0, 5)
    first = lab.deliver(body, t0)
    (decision,) = [d for d in first.decisions if d.instance_id == APP1]
    assert decision.decision is Decision.SKIPPED
    assert decision.reason.startswith("no ActionTrail record yet, but the stop is only 0 s old (known since ")
    assert decision.reason.endswith("and ActionTrail can take 600 s to show a call: the sweep decides "
                                    "once it is 600 s old")
    lab.advance_to(t0, 660)
    again = lab.deliver(body, t0)
    (redelivered,) = [d for d in again.decisions if d.instance_id == APP1]
    assert redelivered.decision is Decision.SKIPPED
    assert redelivered.reason.startswith("handed to the sweep at ")
    assert lab.starts(APP1) == []
    swept = lab.sweep(t0)
    assert [d.decision for d in swept.decisions if d.instance_id == APP1] == [Decision.STARTED]
    assert len(lab.starts(APP1)) == 1


def test_a_delayed_first_delivery_is_decided_at_once(lab: Lab) -> None:
    """GIVEN app-1 crashed 25 minutes before its event first arrives (past the skew bound and the
    settle window) WHEN delivered THEN started by the event path itself, no sweep needed."""
    t0 = lab.emu.now()
    body = lab.stop(APP1, "crash")
    lab.advance_to(t0, 25 * 60)
    result = lab.deliver(body, t0)
    assert [d.decision for d in result.decisions if d.instance_id == APP1] == [Decision.STARTED]


# --- beyond ActionTrail's 90 days -------------------------------------------------------------


def test_a_stop_older_than_the_trail_s_reach_is_unknown(lab: Lab) -> None:
    """GIVEN alice stopped app-1 91 days ago (her record is past ActionTrail's 90 days) WHEN the
    event is delivered now THEN "unknown stop", no start, no trail call needed."""
    t0 = lab.emu.now()
    body = lab.stop(APP1, "user")
    lab.advance_to(t0, 91 * 86400)
    lab.emu.clear_calls()
    result = lab.deliver(body, t0)

    (decision,) = [d for d in result.decisions if d.instance_id == APP1]
    assert decision.decision is Decision.SKIPPED
    assert decision.reason.startswith("unknown stop: no StopInstance(s) by a user or role found, but the "
                                      "stop may predate ")
    assert decision.reason.endswith("beyond the 90 days ActionTrail keeps; not treated as unexpected")
    assert [c.action for c in lab.emu.calls()] == ["DescribeInstances"]
    assert lab.starts(APP1) == []


def test_a_window_reaching_past_the_90_days_reads_what_is_left(lab: Lab) -> None:
    """GIVEN a crash whose search window starts past the 90 days (stopped 90 days minus 5
    minutes ago) WHEN delivered THEN the trail is read from the reach on, finds nothing, and
    says "unknown"; a crash 89 days ago is started (its whole window is within reach)."""
    t0 = lab.emu.now()
    body = lab.stop(APP1, "crash")
    lab.advance_to(t0, 90 * 86400 - 300)
    before = lab.now()
    result = lab.deliver(body, t0)
    (decision,) = [d for d in result.decisions if d.instance_id == APP1]
    assert decision.decision is Decision.SKIPPED
    assert decision.reason.startswith("unknown stop: ")
    lookups = [c for c in lab.emu.calls() if c.action == "LookupEvents"]
    assert len(lookups) == 1
    start = datetime.strptime(lookups[0].params["StartTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    reach = timedelta(days=90) - timedelta(seconds=60)  # the retention, less a minute's margin
    assert before - reach - timedelta(seconds=1) <= start <= lab.now() - reach

    t1 = lab.emu.now()
    body = lab.stop(APP2, "crash")  # tag always: no trail needed; the contrast is app-1 below
    lab.emu.wait_for_status(APP2, "Stopped")
    lab.emu.instance(APP1)  # still Stopped from above
    old = json.loads(body)
    old["content"]["resourceId"] = APP1
    old["resourceId"] = old["resourceId"].replace(APP2, APP1)
    old["id"] = "crash-89-days-ago"
    moment = datetime.fromtimestamp(t1, timezone.utc) - timedelta(days=89)
    old["eventTime"] = moment.strftime("%Y%m%dT%H%M%S.000+0000")
    result = lab.deliver(json.dumps(old).encode(), t1)
    assert [d.decision for d in result.decisions if d.instance_id == APP1] == [Decision.STARTED]


# --- LookupEvents throttled -------------------------------------------------------------------


def test_throttled_trail_never_starts_and_defers_to_the_sweep(lab: Lab) -> None:
    """GIVEN LookupEvents throttled beyond the retries and fallback 'start' WHEN alice's stop
    (record already visible) is delivered THEN no start: deferred to the sweep; the throttled
    sweep does not spend its hourly re-check; the next sweep reads the trail: deliberate."""
    lab.settings = lab.settings.with_(actiontrail_fallback="start")
    t0 = lab.emu.now()
    body = lab.stop(APP1, "user")
    attempts = lab.settings.api_max_attempts
    lab.emu.set_faults(fail_next={"LookupEvents": ["Throttling.User"] * attempts})
    lab.advance_to(t0, 5)
    result = lab.deliver(body, t0)
    (decision,) = [d for d in result.decisions if d.instance_id == APP1]
    assert decision.reason == ("ActionTrail throttled (Throttling.User) after retries: not read as "
                               "unexpected; the sweep decides it")
    assert lab.store.ledger_get(f"defer:{APP1}:{json.loads(body)['id']}") is not None

    lab.emu.set_faults(fail_next={"LookupEvents": ["Throttling.User"] * attempts})
    lab.advance_to(t0, 700)
    throttled = lab.sweep(t0)
    assert [d.reason for d in throttled.decisions if d.instance_id == APP1] == [
        "ActionTrail throttled (Throttling.User) after retries: not read as unexpected; "
        "the next sweep reads it again"]
    lab.advance_to(t0, 1000)
    read = lab.sweep(t0)
    (final,) = [d for d in read.decisions if d.instance_id == APP1]
    assert final.reason.startswith("deliberate stop: StopInstance by ram-user alice at ")
    assert lab.starts(APP1) == []


def test_the_documented_rate_limit_throttles_a_burst(lab: Lab) -> None:
    """GIVEN the emulator's LookupEvents limit at the documented 2 calls/s WHEN five are sent at
    once (no retries) THEN two answer and three get 400 Throttling.User."""
    from shared.clients import ThrottledError

    lab.emu.set_trail(qps=2.0)
    trail = Clients.from_settings(lab.settings.with_(api_max_attempts=1), Credentials(
        lab.emu.credentials[0]["access_key_id"], lab.emu.credentials[0]["access_key_secret"],
        lab.emu.credentials[0].get("security_token"))).trail
    outcomes: list[Any] = []
    for _ in range(5):
        try:
            outcomes.append(len(trail.lookup_instance_events(APP1, lab.now() - timedelta(hours=1), lab.now())))
        except ThrottledError as error:
            outcomes.append((error.code, error.http_status))
    assert outcomes == [0, 0, ("Throttling.User", 400), ("Throttling.User", 400), ("Throttling.User", 400)]


# --- a start whose answer was lost ------------------------------------------------------------


@pytest.mark.parametrize("lost", ["InternalError", "ConnectionDropped"])
def test_a_start_whose_answer_was_lost_counts_once_for_the_flap_guard(lab: Lab, lost: str) -> None:
    """GIVEN StartInstance applied but its answer lost (5xx / dropped) and the retry refused as
    IncorrectInstanceStatus WHEN app-2 (always) crashes THEN re-read, counted as one start (flap
    ledger, incident); with flap_max_starts=1 the next crash is capped, not started."""
    lab.settings = lab.settings.with_(flap_max_starts=1)
    t0 = lab.emu.now()
    body = lab.stop(APP2, "crash")
    lab.emu.set_faults(lose_answer={"StartInstance": [lost]})
    result = lab.deliver(body, t0)

    (decision,) = [d for d in result.decisions if d.instance_id == APP2]
    assert decision.decision is Decision.STARTED
    assert decision.reason == (
        "tag auto-start=always: start after any stop; StartInstance answered IncorrectInstanceStatus "
        "but DescribeInstances shows Starting after it was Stopped: this start (its answer lost and "
        "the retry refused) or a concurrent one, counted as a start") or decision.reason.endswith(
        "shows Running after it was Stopped: this start (its answer lost and the retry refused) or "
        "a concurrent one, counted as a start")
    calls = [(c.action, c.status, c.answer_lost) for c in lab.emu.calls() if c.action == "StartInstance"]
    assert calls[0][2] is True and calls[1][:2] == ("StartInstance", 403)
    assert len(lab.starts(APP2)) == 1
    assert lab.store.ledger_count("start", APP2, lab.now() - timedelta(hours=1)) == 1
    event_id = json.loads(body)["id"]
    assert lab.store.ledger_get(f"incident:{APP2}:{event_id}").status == "open"  # type: ignore[union-attr]

    lab.emu.wait_for_status(APP2, "Running")
    again = lab.deliver(lab.stop(APP2, "crash"), t0)
    assert [d.decision for d in again.decisions if d.instance_id == APP2] == [Decision.CAPPED]
    assert len(lab.starts(APP2)) == 1


def test_a_start_that_failed_for_good_but_happened_is_read_back(lab: Lab) -> None:
    """GIVEN no retries (api_max_attempts=1) and StartInstance's answer lost WHEN app-2 crashes
    THEN the failed call is not retried blindly: DescribeInstances shows it Starting, it counts
    as started and nothing is raised for FC to retry."""
    lab.settings = lab.settings.with_(api_max_attempts=1)
    t0 = lab.emu.now()
    body = lab.stop(APP2, "crash")
    lab.emu.set_faults(lose_answer={"StartInstance": ["InternalError"]})
    result = lab.deliver(body, t0)

    (decision,) = [d for d in result.decisions if d.instance_id == APP2]
    assert decision.decision is Decision.STARTED
    assert decision.reason.startswith("tag auto-start=always: start after any stop; the start call failed "
                                      "(InternalError) but DescribeInstances shows ")
    assert decision.reason.endswith(": its answer was lost, counted as a start")
    assert [c.action for c in lab.emu.calls()].count("StartInstance") == 1
    assert lab.store.ledger_count("start", APP2, lab.now() - timedelta(hours=1)) == 1


# --- a stop whose event never arrived ---------------------------------------------------------


@pytest.mark.parametrize(("by", "started"), [("user", False), ("crash", True)])
def test_a_stop_whose_event_was_missed_waits_from_the_sweep_s_first_sighting(
        lab: Lab, by: str, started: bool) -> None:
    """GIVEN app-1 (true) last seen Running an hour ago, then stopped with a 600 s trail lag and
    its Stopped event lost everywhere WHEN the sweep finds it Stopped 30 s later THEN it waits 600 s
    from that sighting: a person's stop is then found (never started), a crash started once."""
    lab.emu.set_trail(lag_s=600.0, skew_s=-600.0)
    t0 = lab.emu.now()
    running = {"ver": "1.0", "id": "seen-running", "product": "ECS", "level": "INFO",
               "resourceId": f"acs:ecs:cn-hangzhou:1234567890123456:instance/{APP1}",
               "name": "Instance:StateChange", "userId": "1234567890123456",
               "eventTime": (datetime.fromtimestamp(t0, timezone.utc) - timedelta(hours=1)).strftime(
                   "%Y%m%dT%H%M%S.000+0000"),
               "regionId": "cn-hangzhou",
               "content": {"resourceId": APP1, "resourceType": "ALIYUN::ECS::Instance", "state": "Running"}}
    lab.store.record(parse(json.dumps(running).encode()).events)
    lab.stop(APP1, by)  # its events are never delivered
    for offset in (30, 330, 640, 940, 1240):  # a sweep every five minutes, give or take
        lab.advance_to(t0, offset)
        lab.sweep(t0)
        if lab.starts(APP1):
            lab.emu.wait_for_status(APP1, "Running")

    decided = [(round(t), d, r) for t, _, d, r in lab.decisions]
    assert [d for _, d, _ in decided[:2]] == ["skipped", "skipped"]  # 30 and 330 s: settling
    assert all(r.startswith("no ActionTrail record yet, but the stop is only ") for _, _, r in decided[:2])
    if started:  # 640 s: past 600 s after the first sighting, still no record
        assert decided[2][1:] == ("started", "unexpected stop: no StopInstance(s) by a user or role in "
                                  "ActionTrail")
        assert len(lab.starts(APP1)) == 1
    else:  # 640 s: alice's record (visible from 600 s) decides
        assert decided[2][1] == "skipped"
        assert decided[2][2].startswith("deliberate stop: StopInstance by ram-user alice at ")
        assert lab.starts(APP1) == []
