"""The meeting points of a burst's drains and the finisher's rounds: :class:`shared.spot.batch.Gate`
(drains meet before their first write, and before their scheduled removal) and
:func:`shared.spot.finish.plan` (the removals of one tick, in rounds at their time).

The Gate and plan() alone first; then against the emulator (real SDK over HTTP, a real SQLite
store): a drain's pass before its first write, a batch of three spot instances sharing the
same groups delivered to drain_spot at once (one weight-0 write per group), and the finisher
tick that removes them (one removal per group, none before its drain time), with a store slow
enough that the drains would otherwise reach the groups far apart (:class:`SlowTakers`)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest

from shared import ledger
from shared.drain import Drainer, StepName
from shared.events import EcsEvent, iso, parse, parse_iso_or_none
from shared.lb.model import GroupKind, Membership
from shared.ledger import Kind, LeaseHeldError
from shared.spot import finish
from shared.spot.batch import Gate, Party
from shared.spot.finish import Round, finish_due, plan
from shared.spot.machine import VERIFY_PAUSE_S
from shared.store import LedgerEntry, Store
from tests.helpers import FLEETS, Killed, Time, clients_for
from tests.test_drain_scheduled import SCHEDULED_ENV, scheduled_settings
from tests.test_drain_spot import LB_FRONT, SPOT, WEB1, WEB2, invoke, notice
from tests.test_drain_spot_crash import killer
from tools.emulator import Emulator, load_fleet
from tools.invoke import load_function

HTTP = "rsp-bp1http00000000001"  # spot-1, web-1 and web-2 on port 80
SPOTS = (SPOT, WEB1, WEB2)  # all three spot instances in this fleet
# How much longer each instance's claim (and takeover) takes than the one before: far more than
# the write window (drain_batch_window_s, 0.2 s), far less than the gates' timeouts (3 s, 5 s).
STAGGER_S = 0.3
WRITES = ("SetBackendServers", "SetVServerGroupAttribute", "RemoveBackendServers",
          "RemoveVServerGroupBackendServers")
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


# --- Gate and Party ---------------------------------------------------------------------------


class Monotonic:
    """A monotonic clock the test moves; the Gate takes its wait's bound from it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def eventually(predicate: Callable[[], bool], within_s: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``within_s`` passed (False)."""
    end = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def arriving(party: Party, passed: list[str], name: str, *, wait: bool = True) -> threading.Thread:
    """``party.arrive(wait=wait)`` in a thread of its own, noting ``name`` once it returned."""
    def run() -> None:
        party.arrive(wait=wait)
        passed.append(name)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_gate_holds_every_party_until_the_last_one_arrives() -> None:
    """GIVEN a gate of three (its timeout never reached) WHEN two parties arrive THEN both
    wait; the third arriving returns at once and releases them."""
    gate = Gate(3, 60.0, monotonic=Monotonic())
    passed: list[str] = []
    first, second = arriving(gate.party(), passed, "a"), arriving(gate.party(), passed, "b")
    assert eventually(lambda: gate.missing == 1)
    first.join(0.1)
    assert passed == [] and first.is_alive() and second.is_alive()
    gate.party().arrive()  # the last one: nothing to wait for
    first.join(5.0)
    second.join(5.0)
    assert sorted(passed) == ["a", "b"]
    assert gate.missing == 0


def test_a_party_leaving_without_waiting_releases_the_others() -> None:
    """GIVEN a gate of three, one party waiting WHEN a second counts in without waiting THEN it
    returns at once while the first still waits; the third leaving the same way releases it."""
    gate = Gate(3, 60.0, monotonic=Monotonic())
    passed: list[str] = []
    waiting = arriving(gate.party(), passed, "waiting")
    assert eventually(lambda: gate.missing == 2)
    leaving = arriving(gate.party(), passed, "leaving", wait=False)
    leaving.join(5.0)
    assert passed == ["leaving"] and waiting.is_alive()
    arriving(gate.party(), passed, "last", wait=False).join(5.0)
    waiting.join(5.0)
    assert sorted(passed) == ["last", "leaving", "waiting"]


def test_a_gate_s_timeout_runs_from_its_construction() -> None:
    """GIVEN a gate of two with a 5 s timeout on a clock the test moves WHEN its clock has passed
    the timeout THEN a lone party returns at once (it does not wait 5 s from its own arrival);
    on the real clock a 50 ms gate lets a lone party go after its timeout."""
    clock = Monotonic()
    gate = Gate(2, 5.0, monotonic=clock)
    clock.now = 5.0
    passed: list[str] = []
    lone = arriving(gate.party(), passed, "lone")
    lone.join(2.0)  # well before the 5 s a timeout from the arrival would keep it
    assert passed == ["lone"] and gate.missing == 1
    clock.now = 6.0  # arriving after the time is up: nothing waits either
    arriving(gate.party(), passed, "late").join(2.0)
    assert passed == ["lone", "late"]
    short = Gate(2, 0.05)
    short.party().arrive()
    assert short.missing == 1


def test_a_party_arriving_twice_counts_once() -> None:
    """GIVEN a gate of two WHEN one party arrives twice THEN it counts once (the gate still
    misses one, and a waiting arrival after it returns at once); another party closes it."""
    gate = Gate(2, 60.0, monotonic=Monotonic())
    party = gate.party()
    party.arrive(wait=False)
    party.arrive(wait=False)
    assert gate.missing == 1
    passed: list[str] = []
    arriving(party, passed, "again").join(2.0)  # already through: no wait
    assert passed == ["again"] and gate.missing == 1
    gate.party().arrive()
    assert gate.missing == 0
    single = Gate(1, 60.0, monotonic=Monotonic())
    single.party().arrive()  # alone: nothing to wait for
    assert single.missing == 0


# --- plan() -----------------------------------------------------------------------------------


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def scheduled(name: str, due_s: float | None, *, deadline_s: float | None = 300.0,
              lease_s: float | None = None, instance: bool = True,
              status: str = "waited") -> LedgerEntry:
    """A drain entry scheduled for its removal ``due_s`` after NOW, leased until then (or
    ``lease_s``)."""
    data: dict[str, Any] = {"lease_until": None}
    if due_s is not None:
        data["remove_after"] = data["lease_until"] = iso(at(due_s))
    if lease_s is not None:
        data["lease_until"] = iso(at(lease_s))
    if deadline_s is not None:
        data["deadline"] = iso(at(deadline_s))
    return LedgerEntry(key=f"drain:i-{name}:1", kind="drain",
                       instance_id=f"i-{name}" if instance else None, status=status,
                       created_at=NOW, updated_at=NOW, data=data)


def shape(rounds: Sequence[Round]) -> list[tuple[float, list[str]]]:
    """Each round as (seconds after NOW, its drains' keys in order)."""
    return [((r.at - NOW).total_seconds(), [e.key for e in r.entries]) for r in rounds]


def keys(*names: str) -> list[str]:
    return [f"drain:i-{n}:1" for n in names]


def test_plan_groups_the_removals_due_within_the_window_at_the_latest_of_their_times() -> None:
    """GIVEN removals due 0, 2, 4.9, 6 and 12 s from now (given in another order), a 5 s window
    and the next tick 60 s away THEN rounds [0, 2, 4.9] at 4.9, [6] at 6 and [12] at 12: each
    round made at the latest of its drain times, so never before any member's remove_after
    and at most the window after the earliest."""
    entries = [scheduled("d", 6), scheduled("b", 2), scheduled("e", 12), scheduled("a", 0),
               scheduled("c", 4.9)]
    rounds = plan(entries, NOW, horizon=at(60), window_s=5.0)
    assert shape(rounds) == [(4.9, keys("a", "b", "c")), (6.0, keys("d")), (12.0, keys("e"))]
    for round_ in rounds:
        times = [parse_iso_or_none(e.data["remove_after"]) for e in round_.entries]
        assert all(t is not None and t <= round_.at for t in times)
        assert all(t is not None and (round_.at - t).total_seconds() <= 5.0 for t in times)


def test_plan_window_boundaries() -> None:
    """A removal exactly the window after a round's first joins it; a millisecond more starts
    the next round; with no window only equal times share a round."""
    exact = plan([scheduled("a", 10), scheduled("b", 15)], NOW, horizon=at(60), window_s=5.0)
    assert shape(exact) == [(15.0, keys("a", "b"))]
    past = plan([scheduled("a", 10), scheduled("b", 15.001)], NOW, horizon=at(60), window_s=5.0)
    assert shape(past) == [(10.0, keys("a")), (15.001, keys("b"))]
    # the window counts from the round's first, not from the previous member
    chain = plan([scheduled("a", 0), scheduled("b", 4), scheduled("c", 8)], NOW, horizon=at(60),
                 window_s=5.0)
    assert shape(chain) == [(4.0, keys("a", "b")), (8.0, keys("c"))]
    none = plan([scheduled("a", 3), scheduled("b", 3), scheduled("c", 3.001)], NOW,
                horizon=at(60))
    assert shape(none) == [(3.0, keys("a", "b")), (3.001, keys("c"))]


def test_plan_leaves_out_what_is_not_a_due_scheduled_removal_of_its_own() -> None:
    """Left out: deadline passed (or now), no remove_after, no deadline, no instance, due after
    the horizon (unless within the window of a round begun by it), and a lease held past the
    removal time (by a redelivery, another tick) or, for an overdue one, past now. Kept: due
    exactly at the horizon, the drain's own lease ending at its removal time, an overdue one
    whose lease expired; a round begun by the horizon keeps its members due after it."""
    entries = [
        scheduled("late", 1, deadline_s=-1), scheduled("edge", 1, deadline_s=0),
        scheduled("unscheduled", None), scheduled("nodeadline", 1, deadline_s=None),
        scheduled("noinstance", 1, instance=False), scheduled("after", 60.001),
        scheduled("held", 3, lease_s=3.5), scheduled("heldnow", -10, lease_s=0.5),
        scheduled("own", 3), scheduled("horizon", 60), scheduled("expired", -10, lease_s=-5),
        scheduled("removed", -40, lease_s=-1, status="removed"), scheduled("beyond", 65.001),
        scheduled("alone", 62, deadline_s=300),
    ]
    rounds = plan(entries, NOW, horizon=at(60), window_s=5.0)
    assert shape(rounds) == [(3.0, keys("expired", "removed", "own")),
                             (62.0, keys("horizon", "after", "alone"))]
    # nothing begun by the horizon: what is due after it is the next tick's
    assert plan([scheduled("after", 60.001)], NOW, horizon=at(60), window_s=5.0) == []


def test_plan_makes_overdue_removals_now_and_the_default_horizon_is_now() -> None:
    """GIVEN removals overdue (30 s, 1 s), due now and due later WHEN planned THEN the overdue
    ones are made at now (not in the past), joined by what falls within the window; without a
    horizon only what is due now is taken. Equal times keep their order."""
    entries = [scheduled("later", 4), scheduled("old", -30), scheduled("now", 0),
               scheduled("recent", -1), scheduled("far", 20)]
    assert shape(plan(entries, NOW, horizon=at(60), window_s=5.0)) == [
        (4.0, keys("old", "now", "recent", "later")), (20.0, keys("far"))]
    assert shape(plan(entries, NOW, horizon=at(60))) == [
        (0.0, keys("old", "now", "recent")), (4.0, keys("later")), (20.0, keys("far"))]
    # a round begun now keeps what falls due within its window
    assert shape(plan(entries, NOW, window_s=5.0)) == [(4.0, keys("old", "now", "recent", "later"))]
    assert [e.key for r in plan(entries, NOW) for e in r.entries] == keys("old", "now", "recent")
    assert plan([scheduled("later", 4)], NOW) == []


# --- against the emulator ---------------------------------------------------------------------


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """tests/fixtures/fleets/spot.yaml with web-1 and web-2 spot too: three spot instances in the
    http group (and pairs of them in the others)."""
    fleet = load_fleet(FLEETS / "spot.yaml")
    fleet = replace(fleet, instances=tuple(replace(i, spot_strategy="SpotAsPriceGo")
                                           for i in fleet.instances))
    with Emulator(fleet, start_delay_s=0.01) as emulator:
        for name, value in emulator.signing_environment().items():
            monkeypatch.setenv(name, value)
        for name in ("WEBHOOK_URL", "DINGTALK_URL", "LARK_URL", "WECOM_URL", "SLACK_URL"):
            monkeypatch.delenv("ECS_EVENT_OPS_NOTIFY_" + name, raising=False)
        yield emulator


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    instance = Store(f"sqlite:///{tmp_path / 'rounds.sqlite3'}")
    yield instance
    instance.close()


class SlowTakers(Store):
    """A store under load, as a burst meets it: the claim of each instance's drain, and the
    takeover of it by a tick, take ``STAGGER_S`` longer for each instance before it in
    ``order``. Without their meeting points the drains then reach the groups that far apart,
    each in a write of its own."""

    def __init__(self, url: str, order: Sequence[str]) -> None:
        super().__init__(url)
        self.order = tuple(order)

    def _pause(self, key: str) -> None:
        for rank, iid in enumerate(self.order):
            if f":{iid}:" in key:
                time.sleep(rank * STAGGER_S)

    def ledger_claim(self, key: str, **options: Any) -> bool:
        self._pause(key)
        return super().ledger_claim(key, **options)

    def ledger_swap(self, key: str, **options: Any) -> bool:
        if "taken_over_from" in (options.get("data") or {}):  # ledger.acquire's takeover
            self._pause(key)
        return super().ledger_swap(key, **options)


class Watched(Gate):
    """A gate the product builds, kept for the test to look at (``built``)."""

    built: ClassVar[list[Watched]] = []

    def __init__(self, parties: int, timeout_s: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(parties, timeout_s, monotonic)
        self.parties = parties
        self.released: list[bool] = []  # each waiting arrival: left with everyone arrived
        Watched.built.append(self)

    def party(self) -> Party:
        return _WatchedParty(self)


class _WatchedParty(Party):
    def __init__(self, gate: Watched) -> None:
        super().__init__(gate)
        self._watched: Watched | None = gate

    def arrive(self, *, wait: bool = True) -> None:
        gate, self._watched = self._watched, None
        super().arrive(wait=wait)
        if gate is not None and wait:
            gate.released.append(gate.missing <= 0)


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> list[Watched]:
    """Every gate the finisher builds while the test runs."""
    monkeypatch.setattr(Watched, "built", [])
    monkeypatch.setattr(finish, "Gate", Watched)
    return Watched.built


def event_of(payload: dict[str, Any]) -> EcsEvent:
    (event,) = parse(json.dumps(payload)).events
    return event


def writes(emu: Emulator, action: str | None = None, group: str | None = None) -> list[Any]:
    """The load-balancer writes answered, optionally of one action and one vServer group."""
    return [c for c in emu.calls() if c.action in WRITES and c.status == 200
            and (action is None or c.action == action)
            and (group is None or c.params.get("VServerGroupId") == group)]


def servers(call: Any) -> set[str]:
    return {s["ServerId"] for s in json.loads(call.params["BackendServers"])}


def per_group(emu: Emulator, action: str) -> Counter[str]:
    """How many ``action`` writes each group got (the default group by its load balancer)."""
    return Counter(c.params.get("VServerGroupId") or c.params["LoadBalancerId"]
                   for c in writes(emu, action))


def http_members(emu: Emulator) -> dict[str, int]:
    """The http group's members: server id -> weight."""
    (lb,) = [lb for lb in emu.state()["load_balancers"] if lb["id"] == LB_FRONT]
    (group,) = [g for g in lb["vserver_groups"] if g["id"] == HTTP]
    return {s["server_id"]: s["weight"] for s in group["servers"]}


def drain_entry(store: Store, iid: str) -> LedgerEntry:
    entry = store.ledger_get(ledger.drain_key(iid, 1))
    assert entry is not None
    return entry


def times(store: Store, iid: str, *names: str) -> list[datetime]:
    """The times ``names`` of the drain of ``iid``, from its ledger entry."""
    data = drain_entry(store, iid).data
    out: list[datetime] = []
    for name in names:
        moment = parse_iso_or_none(data.get(name))
        assert moment is not None, (name, dict(data))
        out.append(moment)
    return out


def deliver(emu: Emulator, store: Store, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """drain_spot's answer to one delivery of the notices of the three spot instances, the
    finisher deployed (SCHEDULED_ENV: 20 s drain time, a tick every 60 s), on ``store`` (the
    function's store_for answers it)."""
    monkeypatch.setattr("shared.store.store_for", lambda _url: store)
    batch = [notice(emu, iid) for iid in SPOTS]
    return invoke(emu, store.url, batch, base_env=SCHEDULED_ENV)


@pytest.mark.parametrize(("age_s", "first", "outcome"), [(0.0, "Set", "scheduled"),
                                                        (280.0, "Remove", "removed")],
                         ids=["gentle", "fast"])
def test_a_drain_passes_its_party_before_its_first_write(
    emu: Emulator, store: Store, age_s: float, first: str, outcome: str
) -> None:
    """GIVEN a gate of two and a drain holding one pass WHEN the drain runs THEN it counts in and
    waits before any write: no load-balancer write until the other party arrives; then it goes
    on (weight 0 and scheduled; for a notice inside the margin, the fast path, its removal)."""
    settings = scheduled_settings(emu, store)
    gate = Gate(2, 60.0)
    event = event_of(notice(emu, SPOT, age_s=age_s))
    emu.clear_calls()
    result: list[Any] = []
    party = gate.party()
    drainer = Drainer(store, clients_for(emu, settings), settings)
    thread = threading.Thread(target=lambda: result.append(drainer.drain(event, party=party)),
                              daemon=True)
    thread.start()
    assert eventually(lambda: gate.missing == 1)
    assert writes(emu) == [] and thread.is_alive()
    gate.party().arrive(wait=False)
    thread.join(10.0)
    assert [r.outcome.value for r in result] == [outcome]
    assert writes(emu) and writes(emu)[0].action.startswith(first)


def test_a_drain_gives_its_pass_up_whatever_it_ends_with(emu: Emulator, store: Store) -> None:
    """A resume that meets its scheduler's live lease (LeaseHeldError), a duplicate notice and a
    resume of a drain finished meanwhile all give their pass up: nobody waits for them."""
    settings = scheduled_settings(emu, store)
    clients = clients_for(emu, settings)
    clock = Time()
    payload = notice(emu, SPOT)
    Drainer(store, clients, settings, clock=clock).drain(event_of(payload))  # scheduled
    entry = drain_entry(store, SPOT)
    gate = Gate(4, 60.0)
    with pytest.raises(LeaseHeldError):  # its scheduler holds it until its removal time
        Drainer(store, clients, settings, clock=clock).resume(entry, party=gate.party())
    assert gate.missing == 3
    clock.offset_s += 21.0
    finished = Drainer(store, clients, settings, clock=clock, sleep=clock.sleep).resume(entry)
    assert finished is not None and finished.outcome.value == "drained"
    assert Drainer(store, clients, settings, clock=clock).drain(
        event_of(payload), party=gate.party()).outcome.value == "duplicate"
    assert gate.missing == 2
    assert Drainer(store, clients, settings, clock=clock).resume(
        entry, party=gate.party()) is None
    assert gate.missing == 1


@pytest.mark.parametrize(("at_once", "gates"), [(None, [(3, [True] * 3)]), (2, [])])
def test_a_batch_meets_at_one_gate_unless_some_drains_must_queue_for_a_thread(
    emu: Emulator, store: Store, monkeypatch: pytest.MonkeyPatch, at_once: int | None,
    gates: list[tuple[int, list[bool]]]
) -> None:
    """GIVEN three notices in one delivery THEN drain_spot builds one gate of three, and each
    drain's wait there ends with all three arrived; with fewer threads than instances
    (MAX_PARALLEL_DRAINS 2) it builds none (a queued drain would hold the others): the drains
    are scheduled either way."""
    monkeypatch.setattr(Watched, "built", [])
    monkeypatch.setattr("shared.spot.batch.Gate", Watched)
    if at_once is not None:
        monkeypatch.setattr(load_function("drain_spot").module, "MAX_PARALLEL_DRAINS", at_once)
    out = deliver(emu, store, monkeypatch)
    assert sorted(d["outcome"] for d in out["drains"]) == ["scheduled"] * 3
    assert [(g.parties, g.released) for g in Watched.built] == gates


def test_a_batch_gets_one_weight_0_write_per_group_and_its_tick_one_removal_per_group(
    emu: Emulator, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN three spot instances sharing the http group (and pairs of them the api, https and
    default groups), their claims and takeovers each STAGGER_S slower than the one before
    WHEN their notices arrive in one delivery THEN every group gets ONE weight-0 write naming
    all its drained members, and the drains are scheduled; WHEN the finisher tick runs (its
    period reaching past their removal time) THEN it waits for that time and every group gets
    ONE removal, none before any drain's remove_after."""
    slow = SlowTakers(store.url, SPOTS)
    emu.clear_calls()
    out = deliver(emu, slow, monkeypatch)
    assert sorted((d["instance_id"], d["outcome"]) for d in out["drains"]) == [
        (iid, "scheduled") for iid in sorted(SPOTS)]
    assert per_group(emu, "SetVServerGroupAttribute") == {
        HTTP: 1, "rsp-bp1api000000000001": 1, "rsp-bp1https0000000001": 1}
    assert per_group(emu, "SetBackendServers") == {LB_FRONT: 1}
    (weight0,) = writes(emu, "SetVServerGroupAttribute", HTTP)
    assert servers(weight0) == set(SPOTS)
    assert http_members(emu) == dict.fromkeys(SPOTS, 0)
    assert writes(emu, "RemoveVServerGroupBackendServers") == []
    settings = scheduled_settings(emu, store)
    clock = Time()
    emu.clear_calls()
    report = finish_due(slow, clients_for(emu, settings), None, settings, clock=clock,
                        sleep=clock.sleep)
    assert sorted((f["instance_id"], f["outcome"]) for f in report.finished) == [
        (iid, "drained") for iid in sorted(SPOTS)]
    assert (report.live, report.errors) == ([], [])
    assert per_group(emu, "RemoveVServerGroupBackendServers") == {
        HTTP: 1, "rsp-bp1api000000000001": 1, "rsp-bp1https0000000001": 1}
    assert per_group(emu, "RemoveBackendServers") == {LB_FRONT: 1}
    (removal,) = writes(emu, "RemoveVServerGroupBackendServers", HTTP)
    assert servers(removal) == set(SPOTS)
    assert http_members(emu) == {}
    latest = max(times(store, iid, "remove_after")[0] for iid in SPOTS)
    for iid in SPOTS:
        remove_after, removed_at = times(store, iid, "remove_after", "removed_at")
        assert removed_at >= remove_after
        assert removed_at >= latest  # the round is made at the latest of its times
        assert drain_entry(store, iid).status == "done"


def test_a_tick_whose_period_ends_before_the_removal_time_makes_no_call(
    emu: Emulator, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a batch scheduled for removal 20 s from now WHEN a tick runs whose next tick comes
    before that (10 s), or a tick without lookahead THEN it reports nothing and makes no cloud
    call: the groups stay at weight 0."""
    deliver(emu, store, monkeypatch)
    clock = Time()
    short = scheduled_settings(emu, store, ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S="10")
    settings = scheduled_settings(emu, store)
    emu.clear_calls()
    slept: list[float] = []
    for tick_settings, lookahead in ((short, True), (settings, False)):
        report = finish_due(store, clients_for(emu, tick_settings), None, tick_settings,
                            clock=clock, sleep=slept.append, lookahead=lookahead)
        assert (report.finished, report.live, report.errors) == ([], [], [])
    assert emu.calls() == [] and slept == []
    assert http_members(emu) == dict.fromkeys(SPOTS, 0)
    assert {drain_entry(store, iid).status for iid in SPOTS} == {"waited"}


def test_a_round_removes_the_others_when_one_drain_is_taken_meanwhile(
    emu: Emulator, store: Store, monkeypatch: pytest.MonkeyPatch, watched: list[Watched]
) -> None:
    """GIVEN a scheduled batch of three WHEN, between the tick's plan and its hold on the
    round's drains, a redelivery takes one over (its removal time came: a live lease of
    another) THEN the tick reports it under ``live`` and leaves it at weight 0; the other two
    meet without waiting for it (the round's gate counted only them, no timeout) and are
    removed in one write."""
    deliver(emu, store, monkeypatch)
    settings = scheduled_settings(emu, store)
    clock = Time()
    taken = WEB1
    real_plan = finish.plan

    def plan_then_redelivery(*args: Any, **kwargs: Any) -> list[finish.Round]:
        rounds = real_plan(*args, **kwargs)
        due_at = times(store, taken, "remove_after")[0]
        ledger.acquire(store, ledger.drain_key(taken, 1), kind=Kind.DRAIN, owner="redelivery",
                       until=due_at + timedelta(seconds=60), now=due_at)
        return rounds

    monkeypatch.setattr(finish, "plan", plan_then_redelivery)
    emu.clear_calls()
    report = finish_due(store, clients_for(emu, settings), None, settings, clock=clock,
                        sleep=clock.sleep)
    assert report.live == [ledger.drain_key(taken, 1)]
    assert sorted(f["instance_id"] for f in report.finished) == sorted({SPOT, WEB2})
    assert report.errors == []
    (gate,) = watched
    assert gate.released == [True, True]  # both removals waited, neither until the timeout
    (removal,) = writes(emu, "RemoveVServerGroupBackendServers", HTTP)
    assert servers(removal) == {SPOT, WEB2}
    assert http_members(emu) == {taken: 0}
    assert drain_entry(store, taken).status == "waited"


def test_a_redelivery_meets_the_round_holding_its_drain_and_is_retried(
    emu: Emulator, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a scheduled batch of three WHEN a redelivery comes while the tick holds the drains
    for its round (planned, waiting for the round's time) THEN the redelivery is refused (a
    live lease: the platform retries it) and the round removes all three in one write."""
    deliver(emu, store, monkeypatch)
    settings = scheduled_settings(emu, store)
    clock = Time()
    refused: list[str] = []

    def sleep(seconds: float) -> None:  # the round's wait; a redelivery of WEB1 meanwhile
        try:
            ledger.acquire(store, ledger.drain_key(WEB1, 1), kind=Kind.DRAIN,
                           owner="redelivery", until=clock() + timedelta(seconds=60),
                           now=clock() + timedelta(seconds=seconds))
        except LeaseHeldError as err:
            refused.append(str(err))
        clock.sleep(seconds)

    emu.clear_calls()
    report = finish_due(store, clients_for(emu, settings), None, settings, clock=clock,
                        sleep=sleep)
    assert len(refused) == 1 and report.live == [] and report.errors == []
    assert sorted(f["instance_id"] for f in report.finished) == sorted(SPOTS)
    (removal,) = writes(emu, "RemoveVServerGroupBackendServers", HTTP)
    assert servers(removal) == set(SPOTS)


def test_a_drain_resumed_at_removed_does_not_hold_the_round_through_its_verification(
    emu: Emulator, store: Store, monkeypatch: pytest.MonkeyPatch, watched: list[Watched]
) -> None:
    """GIVEN a scheduled batch of three, spot-1's removal made by a tick that died before its
    verification, and spot-1 back in the http group since (its verify must remove it again and
    pause) WHEN the next tick takes the three in one round THEN the other two pass the gate
    while spot-1 still verifies: nothing waits for a drain that has no removal left."""
    deliver(emu, store, monkeypatch)
    settings = scheduled_settings(emu, store)
    clients = clients_for(emu, settings)
    clock = Time()
    clock.offset_s = max((times(store, iid, "remove_after")[0] - clock()).total_seconds()
                         for iid in SPOTS) + 0.01
    with pytest.raises(Killed):
        Drainer(store, clients, settings, clock=clock, sleep=clock.sleep,
                hook=killer(StepName.VERIFY, "before")).resume(drain_entry(store, SPOT))
    assert drain_entry(store, SPOT).status == "removed"
    clients.lb.add_members([Membership(LB_FRONT, GroupKind.VSERVER, HTTP, SPOT, 80, 0)])
    clock.offset_s += settings.drain_lease_grace_s + 1  # the dead tick's lease expired
    opened: list[bool] = []

    def sleep(seconds: float) -> None:  # only spot-1's verification pauses
        assert seconds == VERIFY_PAUSE_S
        opened.append(eventually(lambda: watched[-1].missing == 0, within_s=1.0))
        clock.sleep(seconds)

    report = finish_due(store, clients, None, settings, clock=clock, sleep=sleep)
    assert sorted(f["instance_id"] for f in report.finished) == sorted(SPOTS)
    assert opened == [True]
    assert watched[-1].released == [True, True]
    assert http_members(emu) == {}
