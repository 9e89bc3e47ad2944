"""The scheduled removal (issue 16, no billed sleeping): with the finisher timer deployed
(``drain_finish_every_s``), a drain ends its invocation at weight 0 and the tick removes it once
the drain time has passed, never later than an in-invocation wait would have (``deadline -
margin``), even when a tick fails. Emulator + real SDK over HTTP + a real SQLite store; the
drain's clock is real time plus an offset (tests.test_drain_spot_crash.Time)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.drain import Deadline, Drainer, StepName, sweep_drains
from shared.events import parse_iso_or_none
from shared.ledger import LeaseHeldError
from shared.settings import Settings
from shared.spot.deadline import FINISH_LATENESS_S
from shared.spot.finish import finish_due
from shared.store import Store
from tests.helpers import Killed, Time, clients_for
from tests.test_drain_spot_crash import (
    ENV,
    KEY,
    SPOT,
    Sent,
    drained,
    emu,
    groups,
    killer,
    notice,
    store,
)
from tools.emulator import Emulator
from tools.invoke import invoke_local

__all__ = ["emu", "store"]  # the fixtures, imported for pytest

EVERY_S = 60.0
SCHEDULED_ENV = {**ENV, "ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S": str(EVERY_S)}
BOUND_S = 2 * (EVERY_S + FINISH_LATENESS_S) + 30.0 + 5.0  # the default lease grace and round
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
WEIGHT0 = {("rsp-bp1api000000000001", 8080), ("rsp-bp1http00000000001", 80),
           ("rsp-bp1https0000000001", 443), ("default", None)}


def scheduled_settings(emu: Emulator, store: Store, **env: str) -> Settings:
    return Settings.from_env({**SCHEDULED_ENV, **env, "ECS_EVENT_OPS_CLOUD_URL": emu.url,
                              "ECS_EVENT_OPS_DB_URL": store.url})


def spot_weights(emu: Emulator) -> dict[tuple[str, int | None], int]:
    return {(k[1], k[3]): v for k, v in groups(emu).items()
            if k[2] == SPOT and k[1] != "rsp-bp1ms000000000001"}


def entry_times(store: Store) -> tuple[datetime, datetime, datetime]:
    entry = store.ledger_get(KEY)
    assert entry is not None
    remove_after = parse_iso_or_none(entry.data.get("remove_after"))
    deadline = parse_iso_or_none(entry.data.get("deadline"))
    lease_until = parse_iso_or_none(entry.data.get("lease_until"))
    assert remove_after is not None and deadline is not None and lease_until is not None
    return remove_after, deadline, lease_until


# --- the deadline math ------------------------------------------------------------------------


def test_a_removal_is_schedulable_only_if_two_ticks_still_start_it_by_deadline_minus_margin() -> None:
    """GIVEN a 300 s notice with a 30 s margin, a tick every 60 s (15 s lateness allowed) and a
    30 s lease grace THEN a removal due by t0 + 90 s is schedulable (90 + 2*(60+15) + 30 = 270
    = 300 - 30) and one a millisecond later is not; without a timer nothing is."""
    deadline = Deadline(notice_time=T0, at=T0 + timedelta(seconds=300), margin_s=30.0)
    assert FINISH_LATENESS_S == 15.0
    assert deadline.removal_schedulable(T0 + timedelta(seconds=90), 60.0, 30.0) is True
    assert deadline.removal_schedulable(T0 + timedelta(seconds=90.001), 60.0, 30.0) is False
    assert deadline.removal_schedulable(T0 + timedelta(seconds=10), 0.0, 30.0) is False
    assert deadline.removal_schedulable(T0 + timedelta(seconds=190), 10.0, 30.0) is True  # +80
    assert deadline.removal_schedulable(T0 + timedelta(seconds=190.001), 10.0, 30.0) is False
    # a round may hold the removal up to its window after remove_after
    assert deadline.removal_schedulable(T0 + timedelta(seconds=85), 60.0, 30.0, 5.0) is True
    assert deadline.removal_schedulable(T0 + timedelta(seconds=85.001), 60.0, 30.0, 5.0) is False


# --- the drain and the tick -------------------------------------------------------------------


def test_scheduled_drain_ends_at_weight_0_and_the_tick_removes_it_once_due(
    emu: Emulator, store: Store
) -> None:
    """GIVEN the finisher deployed (60 s) and a 20 s drain time WHEN a notice is drained THEN
    the invocation ends at weight 0 without sleeping (outcome scheduled, lease until the
    removal), a tick before the removal is due does nothing, and the tick after it removes the
    instance exactly (original weights recorded), notifying once."""
    settings = scheduled_settings(emu, store)
    before = groups(emu)
    clock = Time()
    event = notice(emu)
    slept: list[float] = []
    result = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                     sleep=slept.append).drain(event)
    assert result.outcome.value == "scheduled"
    assert slept == []
    assert set(spot_weights(emu)) == WEIGHT0 and set(spot_weights(emu).values()) == {0}
    entry = store.ledger_get(KEY)
    assert entry is not None and entry.status == "waited"
    assert entry.data["scheduled_wait_s"] == pytest.approx(20.0, abs=0.5)
    remove_after, deadline, lease_until = entry_times(store)
    assert lease_until == remove_after
    assert remove_after + timedelta(seconds=BOUND_S) <= deadline - timedelta(seconds=30)
    sent = Sent()
    # a tick whose next tick comes before the removal is due: nothing
    short = scheduled_settings(emu, store, ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S="10")
    early = finish_due(store, clients_for(emu, short), sent, short, clock=clock)
    assert (early.finished, early.live, early.errors) == ([], [], [])
    assert set(spot_weights(emu).values()) == {0}
    # the tick before it, its period reaching past the removal time: it waits for that time
    report = finish_due(store, clients_for(emu, settings), sent, settings, clock=clock,
                        sleep=clock.sleep)
    assert [(f["instance_id"], f["outcome"]) for f in report.finished] == [(SPOT, "drained")]
    removed_at = parse_iso_or_none(store.ledger_get(KEY).data["removed_at"])  # type: ignore[union-attr]
    assert removed_at is not None and remove_after <= removed_at <= remove_after + timedelta(seconds=1)
    assert groups(emu) == drained(before)
    final = store.ledger_get(KEY)
    assert final is not None and final.status == "done"
    assert final.data["path"] == "gentle" and final.data["missed_deadline"] is False
    assert final.data["notice_to_removed_s"] >= 20.0
    assert {(m["group_id"], m["port"], m["weight"]) for m in final.data["memberships"]} == {
        ("rsp-bp1api000000000001", 8080, 80), ("rsp-bp1http00000000001", 80, 100),
        ("rsp-bp1https0000000001", 443, 100), (None, None, 100)}
    assert [n.title for n in sent] == [f"Spot drain {SPOT}: drained"]
    # a later tick finds nothing
    assert finish_due(store, clients_for(emu, settings), sent, settings, clock=clock).finished == []


def test_a_tick_as_late_as_the_proof_allows_still_removes_before_deadline_minus_margin(
    emu: Emulator, store: Store
) -> None:
    """GIVEN a scheduled drain WHEN the first tick after the removal was due died holding it and
    the next one starts as late as allowed (2 x (period + lateness) + lease grace) THEN it still
    removes with at least the margin left: the guarantee of the in-invocation wait."""
    settings = scheduled_settings(emu, store)
    clock = Time()
    Drainer(store, clients_for(emu, settings), settings, clock=clock).drain(notice(emu))
    remove_after, deadline, _ = entry_times(store)
    latest = remove_after + timedelta(seconds=BOUND_S)
    assert latest <= deadline - timedelta(seconds=30)
    clock.offset_s += (latest - clock()).total_seconds()
    report = finish_due(store, clients_for(emu, settings), None, settings, clock=clock,
                        sleep=clock.sleep)
    assert [f["outcome"] for f in report.finished] == ["drained"]
    final = store.ledger_get(KEY)
    assert final is not None
    assert final.data["time_left_s"] >= 30.0 - 1.0  # the removal calls take well under 1 s
    assert final.data["missed_deadline"] is False


def test_without_room_for_two_ticks_the_wait_is_slept_as_before(emu: Emulator, store: Store) -> None:
    """GIVEN a drain time too long for the proof (200 s: 200 + 180 > 270) WHEN drained THEN the
    invocation sleeps through the wait and removes, exactly as without the timer."""
    settings = scheduled_settings(emu, store, ECS_EVENT_OPS_DRAIN_TIME_S="200")
    clock = Time()
    result = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                     sleep=clock.sleep).drain(notice(emu))
    assert result.outcome.value == "drained"
    assert clock.offset_s == pytest.approx(200.0, abs=1.0)
    entry = store.ledger_get(KEY)
    assert entry is not None and "remove_after" not in entry.data


def test_a_redelivery_before_the_removal_is_due_retries_after_it_finishes(
    emu: Emulator, store: Store
) -> None:
    """GIVEN a scheduled drain WHEN a copy of the notice arrives before the removal is due THEN
    it raises (live lease: the platform retries); arriving after, it takes over and removes."""
    settings = scheduled_settings(emu, store)
    before = groups(emu)
    clock = Time()
    event = notice(emu)
    Drainer(store, clients_for(emu, settings), settings, clock=clock).drain(event)
    with pytest.raises(LeaseHeldError):
        Drainer(store, clients_for(emu, settings), settings, clock=clock).drain(event)
    clock.offset_s += 21.0
    result = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                     sleep=clock.sleep).drain(event)
    assert result.outcome.value == "drained"
    assert groups(emu) == drained(before)


def test_every_tick_failing_the_sweep_still_finishes_before_the_deadline(
    emu: Emulator, store: Store
) -> None:
    """GIVEN a scheduled drain and no tick at all WHEN the five-minute sweep runs past the
    removal time, before the deadline THEN it takes the drain over and removes it."""
    settings = scheduled_settings(emu, store)
    before = groups(emu)
    clock = Time()
    Drainer(store, clients_for(emu, settings), settings, clock=clock).drain(notice(emu))
    at = clock() + timedelta(seconds=200)
    report = sweep_drains(store, clients_for(emu, settings), None, settings, at,
                          clock=lambda: at, sleep=lambda _s: None)
    assert report["finished"] == [SPOT]
    assert groups(emu) == drained(before)


@pytest.mark.parametrize(("step", "point"), [(s, p) for s in (StepName.REMOVE, StepName.VERIFY)
                                             for p in ("before", "acted", "after")])
def test_a_tick_killed_mid_removal_is_finished_by_the_next_tick(
    emu: Emulator, store: Store, step: StepName, point: str
) -> None:
    """GIVEN a scheduled drain WHEN the tick's instance dies inside remove or verify THEN the
    next tick, once the dead tick's lease expired, ends it exactly drained (or finds it done)."""
    settings = scheduled_settings(emu, store)
    before = groups(emu)
    clock = Time()
    Drainer(store, clients_for(emu, settings), settings, clock=clock).drain(notice(emu))
    clock.offset_s += 20.0

    def dying(at: str, name: StepName, run: Any) -> None:
        killer(step, point)(at, name, run)

    with pytest.raises(Killed):
        Drainer(store, clients_for(emu, settings), settings, clock=clock, sleep=clock.sleep,
                hook=dying).resume(store.ledger_get(KEY))  # type: ignore[arg-type]
    clock.offset_s += 31.0  # past the dead tick's lease: no wait leased, 30 s grace
    report = finish_due(store, clients_for(emu, settings), None, settings, clock=clock,
                        sleep=clock.sleep)
    final = store.ledger_get(KEY)
    assert final is not None and final.status == "done"
    assert groups(emu) == drained(before)
    expected = [] if (step, point) == (StepName.VERIFY, "after") else ["drained"]
    assert [f["outcome"] for f in report.finished] == expected


# --- the function: a notice, then the timer ---------------------------------------------------


def test_the_handler_schedules_and_its_timer_tick_removes(emu: Emulator, store: Store) -> None:
    """GIVEN drain_spot with its finisher period set and a 0.5 s drain time WHEN a notice is
    delivered THEN the answer is ``scheduled`` at weight 0; its timer tick right away waits for
    the removal, due before its next tick, and removes it at its time, not before; the tick
    after that finds nothing."""
    env = {**SCHEDULED_ENV, "ECS_EVENT_OPS_DRAIN_TIME_S": "0.5"}
    before = groups(emu)
    emu.interrupt_spot(SPOT)
    body = json.dumps(emu.events()[-1]).encode()
    tick = json.dumps({"triggerTime": "2026-12-01T00:00:00Z", "triggerName": "finish",
                       "payload": ""}).encode()

    def call(payload: bytes) -> dict[str, Any]:
        result = invoke_local("drain_spot", payload, cloud_url=emu.url, db_url=store.url, env=env)
        if result.error is not None:
            raise result.error
        assert isinstance(result.value, dict)
        return result.value

    answer = call(body)
    assert [d["outcome"] for d in answer["drains"]] == ["scheduled"]
    assert set(spot_weights(emu).values()) == {0}
    finished = call(tick)["scheduled_removals"]["finished"]
    assert [(f["instance_id"], f["outcome"]) for f in finished] == [(SPOT, "drained")]
    assert groups(emu) == drained(before)
    data = store.ledger_get(KEY).data  # type: ignore[union-attr]
    assert parse_iso_or_none(data["removed_at"]) >= parse_iso_or_none(data["remove_after"])  # type: ignore[operator]
    assert call(tick)["scheduled_removals"] == {"finished": [], "live": [], "errors": []}


def test_a_throttled_verification_read_is_retried_until_it_answers(emu: Emulator, store: Store) -> None:
    """GIVEN a scheduled drain WHEN the tick's verification reads are throttled past the SDK's
    own retries (a burst's shared scan reads the same action) THEN the drain pauses and reads
    again, and ends drained in this tick instead of failing it for the next one."""
    settings = scheduled_settings(emu, store)
    before = groups(emu)
    clock = Time()
    Drainer(store, clients_for(emu, settings), settings, clock=clock).drain(notice(emu))
    clock.offset_s += 20.0
    emu.set_faults(fail_next={"DescribeVServerGroupAttribute": ["Throttling.User"] * 6})
    slept_before = clock.offset_s
    report = finish_due(store, clients_for(emu, settings), None, settings, clock=clock,
                        sleep=clock.sleep, lookahead=False)
    assert [f["outcome"] for f in report.finished] == ["drained"] and report.errors == []
    assert groups(emu) == drained(before)
    assert clock.offset_s > slept_before  # it paused between the throttled reads
    throttled = [c for c in emu.calls() if c.action.endswith("DescribeVServerGroupAttribute")
                 and c.code == "Throttling.User"]
    assert len(throttled) == 6
