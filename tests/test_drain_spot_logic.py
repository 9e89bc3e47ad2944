"""shared.drain without a cloud: deadlines, ledger keys, and the drain's timing with a fake
clock, an in-memory ledger and an in-memory load balancer (fakes, not mocks)."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.clients import Instance, ThrottledError
from shared.drain import (
    DRAIN_KIND,
    Deadline,
    Drainer,
    DrainResult,
    Outcome,
    Phase,
    drain_notification,
)
from shared.events import parse
from shared.lb.clb import LoadBalancer
from shared.lb.model import GroupKind, Membership
from shared.ledger import LeaseHeldError, drain_key
from shared.settings import Settings

T0 = datetime(2026, 3, 1, 12, 0, 7, 250000, tzinfo=timezone.utc)
IID = "i-bp1spot000000000001"
OTHER = "i-bp1web0000000000001"
SETTINGS = Settings.from_env({}, db_url="sqlite://", lb_ids=("lb-aaaa1", "lb-aaaa2"),
                             drain_time_s=60.0)


# --- fakes -------------------------------------------------------------------------------------


class FakeClock:
    """Time moves only when the code sleeps (or a fake call takes time)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@dataclass
class Entry:
    key: str
    kind: str
    instance_id: str | None
    status: str
    data: dict[str, Any]
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class FakeLedger:
    entries: dict[str, Entry] = field(default_factory=dict)

    def ledger_claim(self, key: str, *, kind: str, instance_id: str | None = None,
                     data: Mapping[str, Any] | None = None, status: str = "claimed") -> bool:
        if key in self.entries:
            return False
        self.entries[key] = Entry(key, kind, instance_id, status, dict(data or {}))
        return True

    def ledger_get(self, key: str) -> Entry | None:
        entry = self.entries.get(key)
        return None if entry is None else replace(entry, data=dict(entry.data))

    def ledger_update(self, key: str, *, status: str | None = None,
                      data: Mapping[str, Any] | None = None) -> None:
        entry = self.entries[key]
        if status is not None:
            entry.status = status
        entry.data.update(data or {})

    def ledger_swap(self, key: str, *, expect: Mapping[str, Any], status: str | None = None,
                    data: Mapping[str, Any] | None = None,
                    statuses: Collection[str] | None = None) -> bool:
        entry = self.entries.get(key)
        if entry is None or (statuses is not None and entry.status not in statuses):
            return False
        if any(entry.data.get(k) != v for k, v in expect.items()):
            return False
        self.ledger_update(key, status=status, data=data)
        return True

    def ledger_find(self, kind: str, *, status: str | None = None,
                    instance_id: str | None = None, older_than: datetime | None = None,
                    limit: int = 1000) -> list[Entry]:
        return [replace(e, data=dict(e.data)) for e in self.entries.values() if e.kind == kind
                and (status is None or e.status == status)
                and (instance_id is None or e.instance_id == instance_id)]


def member(lb: str, kind: GroupKind, group: str | None, server: str, port: int | None,
           *, weight: int = 100) -> Membership:
    return Membership(lb, kind, group, server, port, weight,
                      role="Slave" if kind is GroupKind.MASTER_SLAVE else None)


@dataclass
class FakeLb:
    """Groups of members; every call takes ``latency_s`` of fake time and is logged."""

    clock: FakeClock
    members: list[Membership]
    latency_s: float = 0.05
    calls: list[tuple[str, float, tuple[str, ...]]] = field(default_factory=list)
    fail: dict[str, list[Exception]] = field(default_factory=dict)

    def _call(self, action: str, ids: Sequence[str] = ()) -> None:
        self.calls.append((action, (self.clock.now - T0).total_seconds(), tuple(ids)))
        self.clock.now += timedelta(seconds=self.latency_s)
        queue = self.fail.get(action)
        if queue:
            raise queue.pop(0)

    def list_load_balancers(self, *, ids: Sequence[str] = (), tag: tuple[str, str] | None = None,
                            server_id: str | None = None) -> list[LoadBalancer]:
        self._call("list")
        lbs = sorted({m.load_balancer_id for m in self.members
                      if server_id is None or m.server_id == server_id})
        return [LoadBalancer(lb) for lb in lbs if not ids or lb in ids]

    def find_memberships(self, instance_id: str, load_balancer_ids: Sequence[str]
                         ) -> list[Membership]:
        self._call("find", load_balancer_ids)
        return [m for lb in load_balancer_ids for m in self.members
                if m.load_balancer_id == lb and m.server_id == instance_id]

    def group_members(self, load_balancer_id: str, group_kind: GroupKind | str,
                      group_id: str | None) -> list[Membership]:
        self._call("describe", [load_balancer_id])
        return [m for m in self.members if (m.load_balancer_id, m.group_kind, m.group_id)
                == (load_balancer_id, GroupKind(group_kind), group_id)]

    def set_weights(self, memberships: Sequence[Membership], weight: int | None = None, *,
                    dry_run: bool = False) -> int:
        if dry_run:
            return 0
        self._call("set", [f"{m.group_id}:{m.port}" for m in memberships])
        ids = {(m.load_balancer_id, m.group_id, m.server_id, m.port): m for m in memberships}
        self.members = [
            replace(m, weight=weight if weight is not None else ids[k].weight)
            if (k := (m.load_balancer_id, m.group_id, m.server_id, m.port)) in ids else m
            for m in self.members
        ]
        return 1

    def remove_members(self, memberships: Sequence[Membership], *, dry_run: bool = False) -> int:
        if dry_run:
            return 0
        self._call("remove", [f"{m.group_id}:{m.port}" for m in memberships])
        gone = {(m.load_balancer_id, m.group_id, m.server_id, m.port) for m in memberships}
        self.members = [m for m in self.members
                        if (m.load_balancer_id, m.group_id, m.server_id, m.port) not in gone]
        return 1

    def add_members(self, memberships: Sequence[Membership], *, dry_run: bool = False) -> int:
        if dry_run:
            return 0
        self._call("add")
        self.members.extend(memberships)
        return 1


def spot(iid: str = IID, **kw: Any) -> Instance:
    return Instance(iid, status=kw.pop("status", "Running"), spot_strategy="SpotAsPriceGo",
                    region_id="cn-hangzhou", **kw)


@dataclass
class FakeEcs:
    """The account's instances in the notice's region: by default the spot instance only."""

    instances: dict[str, Instance] = field(default_factory=lambda: {IID: spot()})

    def describe_instances(self, instance_ids: Sequence[str]) -> dict[str, Instance]:
        return {i: self.instances[i] for i in instance_ids if i in self.instances}


@dataclass
class FakeClients:
    lb: FakeLb
    ecs: FakeEcs = field(default_factory=FakeEcs)
    regions: list[str | None] = field(default_factory=list)  # every region asked for

    def for_region(self, region: str | None) -> FakeClients:
        self.regions.append(region)
        return self


def fleet() -> list[Membership]:
    return [
        member("lb-aaaa1", GroupKind.DEFAULT, None, IID, None),
        member("lb-aaaa1", GroupKind.DEFAULT, None, OTHER, None),
        member("lb-aaaa1", GroupKind.VSERVER, "rsp-http1", IID, 80),
        member("lb-aaaa1", GroupKind.VSERVER, "rsp-http1", IID, 81, weight=30),
        member("lb-aaaa1", GroupKind.VSERVER, "rsp-http1", OTHER, 80),
        member("lb-aaaa2", GroupKind.MASTER_SLAVE, "rsp-ms1", IID, 80),
    ]


def interruption(at: datetime, event_id: str = "ev-1", iid: str = IID) -> Any:
    local = at.astimezone(timezone(timedelta(hours=8)))
    body = json.dumps({
        "ver": "1.0", "id": event_id, "product": "ECS", "level": "WARN",
        "resourceId": f"acs:ecs:cn-hangzhou:1234567890123456:instance/{iid}",
        "name": "Instance:PreemptibleInstanceInterruption", "userId": "1234567890123456",
        "eventTime": local.strftime("%Y%m%dT%H%M%S.") + f"{local.microsecond // 1000:03d}+0800",
        "regionId": "cn-hangzhou", "content": {"instanceId": iid, "action": "delete"},
    })
    (event,) = parse(body).events
    return event


def drainer(now: datetime, settings: Settings = SETTINGS, **kw: Any
            ) -> tuple[Drainer, FakeClock, FakeLb, FakeLedger]:
    clock = FakeClock(now)
    lb = FakeLb(clock, fleet())
    ledger = FakeLedger()
    return (Drainer(ledger, FakeClients(lb, **kw), settings, clock=clock, sleep=clock.sleep),
            clock, lb, ledger)


KEY = drain_key(IID, 1)  # the instance's first drain


# --- deadlines -----------------------------------------------------------------------------------


def test_deadline_phases_follow_the_time_left() -> None:
    """Gentle until deadline − margin, fast up to 10 minutes after, leftover beyond."""
    # GIVEN a notice at T0 (deadline T0+300 s, margin 30 s)
    d = Deadline.for_notice(T0, SETTINGS)
    # WHEN / THEN phases by the time of handling
    assert d.at == T0 + timedelta(seconds=300)
    assert d.phase(T0) is Phase.GENTLE
    assert d.phase(T0 + timedelta(seconds=269.9)) is Phase.GENTLE
    assert d.phase(T0 + timedelta(seconds=270)) is Phase.FAST
    assert d.phase(T0 + timedelta(seconds=300 + 600)) is Phase.FAST
    assert d.phase(T0 + timedelta(seconds=300 + 600.1)) is Phase.LEFTOVER


@pytest.mark.parametrize(
    ("age_s", "weight0_age_s", "expected"),
    [
        (0, None, 60.0),  # plenty of time: the full drain time
        (250, None, 20.0),  # 50 s left, margin 30: only 20 s
        (280, None, 0.0),  # inside the margin: no wait
        (100, 90, 50.0),  # resumed: the drain time already served counts
        (400, None, 0.0),  # past the deadline: never wait
    ],
)
def test_wait_is_the_drain_time_owed_but_never_past_deadline_minus_margin(
    age_s: float, weight0_age_s: float | None, expected: float
) -> None:
    """wait = min(drain time still owed, time left − margin), never negative."""
    # GIVEN a notice at T0
    d = Deadline.for_notice(T0, SETTINGS)
    now = T0 + timedelta(seconds=age_s)
    weight0 = None if weight0_age_s is None else T0 + timedelta(seconds=weight0_age_s)
    # WHEN / THEN
    assert d.wait_s(now, 60.0, weight0) == pytest.approx(expected)


def test_drain_keys_count_the_drains_of_an_instance() -> None:
    """``drain:<instance>:<n>``: neither the event id nor the notice time is in the key."""
    assert drain_key(IID, 1) == "drain:i-bp1spot000000000001:1"
    assert drain_key(IID, 2, dry_run=True) == "dryrun:drain:i-bp1spot000000000001:2"


@pytest.mark.parametrize("offset_s", [-0.3, 0.0, 0.7, 4.0, 299.0])
def test_duplicates_of_one_notice_are_one_drain_wherever_they_fall_in_time(offset_s: float) -> None:
    """Copies of a notice carrying times that straddle any minute or bucket edge, or differ by
    up to the notice period, meet the first drain (a duplicate), never a second one."""
    # GIVEN a notice at 11:59:59.7 drained
    edge = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    first_time = edge - timedelta(milliseconds=300)
    d, _, lb, ledger = drainer(first_time + timedelta(seconds=1))
    assert d.drain(interruption(first_time)).outcome is Outcome.DRAINED
    calls = len(lb.calls)
    # WHEN another copy carries a time offset_s later
    second = d.drain(interruption(edge + timedelta(seconds=offset_s), event_id="ev-2"))
    # THEN it is a duplicate of the first: no call, no second entry
    assert second.outcome is Outcome.DUPLICATE
    assert second.key == KEY
    assert list(ledger.entries) == [KEY]
    assert len(lb.calls) == calls


def test_a_notice_beyond_the_notice_period_after_a_finished_drain_is_a_new_drain() -> None:
    """A second interruption (the instance was restarted) is drain number 2, and the original
    weights it records come from the first drain's record, not from the weight 0 it sees."""
    # GIVEN a finished first drain, and the instance back in one group at weight 0 (a manual
    # re-add at 0, nothing of ours)
    d, clock, lb, ledger = drainer(T0 + timedelta(seconds=1))
    assert d.drain(interruption(T0)).outcome is Outcome.DRAINED
    lb.members.append(member("lb-aaaa1", GroupKind.VSERVER, "rsp-http1", IID, 81, weight=0))
    clock.now = T0 + timedelta(hours=3)
    # WHEN a notice three hours later comes
    result = d.drain(interruption(T0 + timedelta(hours=3) - timedelta(seconds=1), event_id="ev-9"))
    # THEN it is a new drain whose recorded weight is the first drain's original (30)
    assert result.outcome is Outcome.DRAINED
    assert result.key == drain_key(IID, 2)
    assert [(m["port"], m["weight"]) for m in ledger.entries[result.key].data["memberships"]] == [
        (81, 30)]
    assert ledger.entries[result.key].data["unknown_weights"] == []


def test_a_membership_at_weight_0_without_history_is_recorded_unknown_and_kept_at_0() -> None:
    """First sight at 0 and no earlier drain: the operator's 0 (ours are always recorded
    first): recorded as unknown, at UNKNOWN_WEIGHT_RESTORE, and named in the result."""
    # GIVEN the instance parked at 0 in one group
    d, _, lb, ledger = drainer(T0 + timedelta(seconds=1))
    lb.members = [replace(m, weight=0) if (m.server_id, m.port) == (IID, 81) else m
                  for m in lb.members]
    # WHEN drained
    result = d.drain(interruption(T0))
    # THEN
    assert [(m["group_id"], m["port"]) for m in result.unknown_weights] == [("rsp-http1", 81)]
    assert {(m["port"], m["weight"]) for m in ledger.entries[KEY].data["memberships"]} == {
        (None, 100), (80, 100), (81, 0)}


def test_a_notice_naming_an_on_demand_instance_drains_nothing() -> None:
    """Verify before acting: an on-demand instance (a forged or misrouted notice) is refused
    with its reason: no LB call, no ledger entry."""
    # GIVEN the instance on-demand
    d, _, lb, ledger = drainer(T0 + timedelta(seconds=1), ecs=FakeEcs(
        {IID: Instance(IID, status="Running", spot_strategy="NoSpot")}))
    # WHEN its notice comes
    result = d.drain(interruption(T0))
    # THEN
    assert result.outcome is Outcome.REFUSED
    assert result.reason == ("not a spot instance (SpotStrategy NoSpot): a forged or misrouted "
                             "notice; nothing drained")
    assert lb.calls == []
    assert ledger.entries == {}


def test_a_notice_for_a_released_instance_removes_its_leftovers_at_once() -> None:
    """DescribeInstances does not show it (released): whatever still names it is removed at
    once, no weight 0 and no wait (it serves nothing), with the reason."""
    # GIVEN the instance absent from its region
    d, clock, lb, _ = drainer(T0 + timedelta(seconds=1), ecs=FakeEcs({}))
    # WHEN its notice comes
    result = d.drain(interruption(T0))
    # THEN
    assert result.outcome is Outcome.REMOVED
    assert "set" not in [a for a, _, _ in lb.calls]
    assert clock.slept == []
    assert result.reason is not None and result.reason.startswith("instance not found in cn-hangzhou")
    assert {m.server_id for m in lb.members if m.group_id != "rsp-ms1"} == {OTHER}


def test_a_spot_instance_without_a_recycling_lock_yet_is_drained() -> None:
    """The Recycling lock may not be visible when the notice arrives: spot is enough."""
    d, _, _, _ = drainer(T0 + timedelta(seconds=1), ecs=FakeEcs({IID: spot(lock_reasons=())}))
    assert d.drain(interruption(T0)).outcome is Outcome.DRAINED


# --- the drain's timing --------------------------------------------------------------------------


def test_gentle_drain_waits_the_drain_time_then_removes_and_verifies() -> None:
    """Fresh notice: weight 0 in each removable group, 60 s wait, removal, verification; the
    other server and the master-slave group untouched."""
    # GIVEN a notice handled 2 s after it was sent
    d, clock, lb, ledger = drainer(T0 + timedelta(seconds=2))
    # WHEN drained
    result = d.drain(interruption(T0))
    # THEN
    actions = [a for a, _, _ in lb.calls]
    assert actions == ["list", "find", "set", "set", "remove", "remove", "describe", "describe"]
    assert clock.slept == [pytest.approx(60.0)]
    assert result.outcome is Outcome.DRAINED
    assert result.time_left_s == pytest.approx(300 - 2 - 0.05 * 4 - 60 - 0.1, abs=0.01)
    assert {(m.server_id, m.group_id, m.port) for m in lb.members} == {
        (IID, "rsp-ms1", 80), (OTHER, None, None), (OTHER, "rsp-http1", 80)}
    assert [m["group_id"] for m in result.reported_master_slave] == ["rsp-ms1"]
    entry = ledger.entries[KEY]
    assert entry.kind == DRAIN_KIND
    assert entry.status == "done"
    assert entry.data["api_writes"] == 4
    assert {(m["port"], m["weight"]) for m in entry.data["memberships"]} == {
        (None, 100), (80, 100), (81, 30)}


def test_late_gentle_drain_never_waits_past_deadline_minus_margin() -> None:
    """Handled 250 s after the notice: the wait shrinks to what is left before the margin."""
    # GIVEN a notice 250 s old
    d, clock, lb, _ = drainer(T0 + timedelta(seconds=250))
    # WHEN drained
    result = d.drain(interruption(T0))
    # THEN it waits what is left before the margin, removes then, and says it drained gently
    assert clock.slept == [pytest.approx(19.8)]
    removal_at = next(t for a, t, _ in lb.calls if a == "remove")
    assert removal_at == pytest.approx(300 - 30)
    assert (result.outcome, result.missed_deadline) == (Outcome.DRAINED, False)


@dataclass
class StickyLb(FakeLb):
    """Accepts the first ``sticky`` removals without applying them (still registered)."""

    sticky: int = 1

    def remove_members(self, memberships: Sequence[Membership], *, dry_run: bool = False) -> int:
        if self.sticky > 0 and not dry_run:
            self.sticky -= 1
            self._call("remove", [f"{m.group_id}:{m.port}" for m in memberships])
            return 1
        return super().remove_members(memberships, dry_run=dry_run)


def test_a_membership_removed_again_by_verify_after_the_deadline_is_a_missed_deadline() -> None:
    """The remove step ends 2 s before the deadline but one group kept the member; verify
    removes it again past the deadline: the drain says it missed the deadline."""
    # GIVEN a notice handled 294 s late, 1 s per call, the first removal not applied
    clock = FakeClock(T0 + timedelta(seconds=294))
    lb = StickyLb(clock, fleet(), latency_s=1.0)
    d = Drainer(FakeLedger(), FakeClients(lb), SETTINGS, clock=clock, sleep=clock.sleep)
    # WHEN drained
    result = d.drain(interruption(T0))
    # THEN the member is gone, but only after the deadline, and the result says so
    removals = [t for a, t, _ in lb.calls if a == "remove"]
    assert removals == [pytest.approx(296.0), pytest.approx(297.0), pytest.approx(300.0)]
    assert {m.server_id for m in lb.members if m.group_kind is not GroupKind.MASTER_SLAVE} == {OTHER}
    assert result.missed_deadline is True


def test_a_membership_removed_again_by_verify_before_the_deadline_is_in_time() -> None:
    """The same, 2 s earlier: the second removal lands before the deadline: no miss."""
    clock = FakeClock(T0 + timedelta(seconds=292))
    lb = StickyLb(clock, fleet(), latency_s=1.0)
    d = Drainer(FakeLedger(), FakeClients(lb), SETTINGS, clock=clock, sleep=clock.sleep)
    result = d.drain(interruption(T0))
    assert [t for a, t, _ in lb.calls if a == "remove"][-1] == pytest.approx(298.0)
    assert result.missed_deadline is False


def test_throttled_removal_is_retried_within_the_deadline() -> None:
    """Removal throttled after the client's retries: another round, paused, before the deadline."""
    # GIVEN the first removal call failing with throttling that outlasted the client's retries
    d, clock, lb, _ = drainer(T0 + timedelta(seconds=1))
    lb.fail["remove"] = [ThrottledError("Throttling.User", "slow down", action="Remove",
                                        retryable=True)]
    # WHEN drained
    result = d.drain(interruption(T0))
    # THEN the failed group was retried after a pause and everything is gone
    assert result.outcome is Outcome.DRAINED
    (pause,) = clock.slept[1:]
    assert 0.25 <= pause <= 0.5  # jittered
    assert [m.server_id for m in lb.members if m.group_kind is not GroupKind.MASTER_SLAVE] == [
        OTHER, OTHER]


def test_throttled_removal_with_no_time_left_raises_for_the_platform_retry() -> None:
    """With less time left than the pause, the error propagates and the lease is released."""
    # GIVEN a notice 299.9 s old and a throttled removal
    d, _, lb, ledger = drainer(T0 + timedelta(seconds=299.9))
    lb.fail["remove"] = [ThrottledError("Throttling.User", "slow down", action="Remove",
                                        retryable=True)]
    # WHEN drained, THEN it raises
    with pytest.raises(ThrottledError):
        d.drain(interruption(T0))
    entry = ledger.entries[KEY]
    assert entry.status == "found"
    assert entry.data["lease_until"] is None


def test_a_live_lease_makes_a_concurrent_duplicate_raise_for_the_platform_retry() -> None:
    """A second invocation while the first holds the lease raises LeaseHeldError (never a
    success for work not done) and calls nothing."""
    # GIVEN an entry claimed by another invocation a moment ago
    d, clock, lb, ledger = drainer(T0 + timedelta(seconds=1))
    ledger.ledger_claim(KEY, kind=DRAIN_KIND, instance_id=IID, data={
        "owner": "other", "generation": 0, "notice_time": T0.isoformat(),
        "deadline": (T0 + timedelta(seconds=300)).isoformat(),
        "lease_until": (clock.now + timedelta(seconds=90)).isoformat()})
    # WHEN this one handles the same notice, THEN it raises
    with pytest.raises(LeaseHeldError):
        d.drain(interruption(T0, event_id="ev-2"))
    assert lb.calls == []
    assert ledger.entries[KEY].data["owner"] == "other"


def test_an_expired_lease_is_taken_over_once() -> None:
    """A silent owner's drain is resumed by the next attempt with generation + 1, from the
    recorded memberships (no discovery)."""
    # GIVEN an entry at 'found' whose owner's lease expired
    d, _, lb, ledger = drainer(T0 + timedelta(seconds=100))
    ledger.ledger_claim(KEY, kind=DRAIN_KIND, instance_id=IID, status="found", data={
        "owner": "dead", "generation": 0, "lease_until": (T0 + timedelta(seconds=50)).isoformat(),
        "notice_time": T0.isoformat(), "deadline": (T0 + timedelta(seconds=300)).isoformat(),
        "memberships": [m.snapshot() for m in fleet()[:1]], "master_slave": []})
    # WHEN this attempt handles the notice
    result = d.drain(interruption(T0))
    # THEN it resumed from the recorded memberships (no discovery) and finished
    assert result.outcome is Outcome.DRAINED
    assert "find" not in [a for a, _, _ in lb.calls]
    assert ledger.entries[KEY].data["generation"] == 1
    assert ledger.entries[KEY].data["taken_over_from"] == "found"
    assert list(ledger.entries) == [KEY]


def test_leftover_notice_for_a_released_instance_removes_without_weights() -> None:
    """Hours late and the instance is gone: remove leftovers, no weight calls, missed."""
    # GIVEN a notice five hours old, the instance stopped by the reclaim (not in service)
    d, clock, lb, _ = drainer(T0 + timedelta(hours=5), ecs=FakeEcs({IID: spot(status="Stopped")}))
    # WHEN drained
    result = d.drain(interruption(T0))
    # THEN
    assert result.outcome is Outcome.LEFTOVERS_REMOVED
    assert result.missed_deadline is True
    assert "set" not in [a for a, _, _ in lb.calls]
    assert clock.slept == []


def test_no_membership_is_nothing_to_remove() -> None:
    """An instance in no group of the scope: recorded, nothing called beyond discovery."""
    # GIVEN an instance in no group
    none = "i-bp1none00000000001"
    d, _, lb, ledger = drainer(T0 + timedelta(seconds=1), ecs=FakeEcs({none: spot(none)}))
    # WHEN its notice is drained
    result = d.drain(interruption(T0, iid=none))
    # THEN
    assert result.outcome is Outcome.NOTHING_TO_REMOVE
    assert [a for a, _, _ in lb.calls] == ["list", "find"]
    assert next(iter(ledger.entries.values())).status == "done"


def test_dry_run_writes_nothing_and_waits_for_nothing() -> None:
    """Dry run: discovery only, no ledger entry, no sleep; the plan is in the result."""
    # GIVEN dry-run settings
    d, clock, lb, ledger = drainer(T0 + timedelta(seconds=1), SETTINGS.with_(dry_run=True))
    # WHEN drained
    result = d.drain(interruption(T0))
    # THEN
    assert result.outcome is Outcome.DRY_RUN
    assert [a for a, _, _ in lb.calls] == ["list", "find"]
    assert ledger.entries == {}
    assert clock.slept == []
    assert len(result.planned) == 3


def test_notification_severity_and_text() -> None:
    """A master-slave membership makes a warning; a missed deadline makes it critical."""
    # GIVEN results
    base = DrainResult(
        instance_id=IID, outcome=Outcome.DRAINED, event_id="e", key="k", phase=Phase.GENTLE,
        removed=({"load_balancer_id": "lb-1", "group_kind": "vserver", "group_id": "rsp-1",
                  "port": 8080, "weight": 80},),
        time_left_s=231.44,
    )
    d = Deadline.for_notice(T0, SETTINGS)
    # WHEN / THEN
    plain = drain_notification(base, d)
    assert plain.severity == "info"
    assert "lb-1/rsp-1:8080 (weight 80)" in plain.text
    assert "Time left at removal: 231.4 s." in plain.text
    ms = replace(base, reported_master_slave=({"load_balancer_id": "lb-2", "group_id": "rsp-9",
                                               "port": 80, "weight": 100, "role": "Slave"},))
    assert drain_notification(ms, d).severity == "warning"
    assert "NOT drained" in drain_notification(ms, d).text
    assert drain_notification(replace(base, missed_deadline=True), d).severity == "critical"


def test_throttled_discovery_is_retried_within_the_deadline() -> None:
    """A burst of notices throttles the scan: discovery is retried after a pause, not dropped."""
    # GIVEN a scan throttled once beyond the client's retries
    d, clock, lb, _ = drainer(T0 + timedelta(seconds=1))
    lb.fail["find"] = [ThrottledError("Throttling.User", "slow down", action="Describe",
                                      retryable=True)]
    # WHEN drained
    result = d.drain(interruption(T0))
    # THEN the scan ran again and the drain finished normally
    assert result.outcome is Outcome.DRAINED
    assert [a for a, _, _ in lb.calls].count("find") == 2
    assert 0.25 <= clock.slept[0] <= 0.5


# --- mutation points: each sabotaged build is one swap, and each shows --------------------------


class Killed(BaseException):
    """The function instance dies here (no lease released)."""


def test_mutation_never_gentle_is_one_table_entry_less(monkeypatch: pytest.MonkeyPatch) -> None:
    """STEPS without ``weight0``: a fresh notice is removed at once, no weight call."""
    from shared.spot import machine

    monkeypatch.setattr(machine, "STEPS", tuple(
        s for s in machine.STEPS if s.name is not machine.StepName.WEIGHT0))
    d, _, lb, _ = drainer(T0 + timedelta(seconds=1))
    result = d.drain(interruption(T0))
    assert result.outcome is Outcome.REMOVED
    assert "set" not in [a for a, _, _ in lb.calls]


def test_mutation_weight0_recorded_as_original_is_one_resume_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``wait`` with resume=REFIND: a drain killed mid-wait and taken over re-reads its
    memberships at weight 0 and records them, so the undo restores 0 instead of 100/30."""
    from dataclasses import replace as swap

    from shared.spot import machine

    monkeypatch.setattr(machine, "STEPS", tuple(
        swap(s, resume=machine.Resume.REFIND) if s.name is machine.StepName.WAIT else s
        for s in machine.STEPS))

    def kill(at: str, name: machine.StepName, _run: Any) -> None:
        if (at, name) == ("before", machine.StepName.WAIT):
            raise Killed

    clock = FakeClock(T0 + timedelta(seconds=1))
    lb = FakeLb(clock, fleet())
    ledger = FakeLedger()
    clients = FakeClients(lb)
    with pytest.raises(Killed):
        Drainer(ledger, clients, SETTINGS, clock=clock, sleep=clock.sleep, hook=kill).drain(
            interruption(T0))
    clock.now += timedelta(seconds=120)
    Drainer(ledger, clients, SETTINGS, clock=clock, sleep=clock.sleep).drain(interruption(T0))
    assert {(m["port"], m["weight"]) for m in ledger.entries[KEY].data["memberships"]} == {
        (None, 0), (80, 0), (81, 0)}


def test_mutation_remove_every_member_is_one_act_swapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """``remove`` with an act that removes each recorded group whole: the other server goes too."""
    from dataclasses import replace as swap

    from shared.spot import machine

    def remove_all(d: Drainer, run: Any) -> Any:
        lb_ = d.clients_in(run.region).lb
        everyone = [m for m in run.memberships()
                    for m in lb_.group_members(m.load_balancer_id, m.group_kind, m.group_id)]
        lb_.remove_members(everyone)
        return machine.Drainer.remove(d, swap(run, data={**run.data, "memberships": []}))

    monkeypatch.setattr(machine, "STEPS", tuple(
        swap(s, act=remove_all) if s.name is machine.StepName.REMOVE else s
        for s in machine.STEPS))
    d, _, lb, _ = drainer(T0 + timedelta(seconds=1))
    d.drain(interruption(T0))
    assert OTHER not in {m.server_id for m in lb.members if m.group_id == "rsp-http1"}


def test_mutation_forged_notice_accepted_is_one_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """``notice_refusal`` answering None: an on-demand instance is drained."""
    from shared.spot import machine

    monkeypatch.setattr(machine, "notice_refusal", lambda _instance, _region: None)
    d, _, lb, _ = drainer(T0 + timedelta(seconds=1), ecs=FakeEcs(
        {IID: Instance(IID, status="Running", spot_strategy="NoSpot")}))
    assert d.drain(interruption(T0)).outcome is Outcome.DRAINED
    assert IID not in {m.server_id for m in lb.members if m.group_id != "rsp-ms1"}


def test_mutation_lease_never_expires_is_one_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shared.ledger.lease_live`` answering True: a dead owner's drain is never taken over."""
    from shared import ledger as ledger_module

    d, _, _, ledger = drainer(T0 + timedelta(seconds=100))
    ledger.ledger_claim(KEY, kind=DRAIN_KIND, instance_id=IID, status="found", data={
        "owner": "dead", "generation": 0, "lease_until": (T0 + timedelta(seconds=50)).isoformat(),
        "notice_time": T0.isoformat(), "deadline": (T0 + timedelta(seconds=300)).isoformat(),
        "memberships": [m.snapshot() for m in fleet()[:1]], "master_slave": []})
    monkeypatch.setattr(ledger_module, "lease_live", lambda _data, _now: True)
    with pytest.raises(LeaseHeldError):
        d.drain(interruption(T0))


def test_a_database_blip_mid_drain_raises_and_the_retry_finishes() -> None:
    """The store fails when the drain records 'weighted': it raises (the platform retries),
    having released its lease, and the retry resumes from 'found' with the recorded original
    weights: every removable membership gone, the other server's untouched."""
    from shared.store import StoreUnavailableError

    # GIVEN a ledger whose record of weight 0 fails once
    class Blip(FakeLedger):
        failed = False

        def ledger_swap(self, key: str, **kw: Any) -> bool:
            if kw.get("status") == "weighted" and not self.failed:
                self.failed = True
                raise StoreUnavailableError("database unreachable")
            return super().ledger_swap(key, **kw)

    clock = FakeClock(T0 + timedelta(seconds=1))
    lb = FakeLb(clock, fleet())
    ledger = Blip()
    clients = FakeClients(lb)
    # WHEN drained, THEN it raises with the lease released and the originals recorded
    with pytest.raises(StoreUnavailableError):
        Drainer(ledger, clients, SETTINGS, clock=clock, sleep=clock.sleep).drain(interruption(T0))
    entry = ledger.entries[KEY]
    assert (entry.status, entry.data["lease_until"]) == ("found", None)
    assert {(m.port, m.weight) for m in lb.members if m.server_id == IID} == {
        (None, 0), (80, 0), (81, 0), (80, 100)}  # weight 0 written; the master-slave one kept
    # WHEN the platform retries at once
    result = Drainer(ledger, clients, SETTINGS, clock=clock, sleep=clock.sleep).drain(
        interruption(T0))
    # THEN the drain finishes from the record
    assert result.outcome is Outcome.DRAINED
    assert ledger.entries[KEY].data["generation"] == 1
    assert {(m["port"], m["weight"]) for m in ledger.entries[KEY].data["memberships"]} == {
        (None, 100), (80, 100), (81, 30)}
    assert {(m.server_id, m.group_id, m.port, m.weight) for m in lb.members} == {
        (IID, "rsp-ms1", 80, 100), (OTHER, None, None, 100), (OTHER, "rsp-http1", 80, 100)}
