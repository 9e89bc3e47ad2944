"""The burst's shared scan (shared.spot.scan.shared_scan) against the emulator, the real SDKs over
HTTP: the groups the open drains recorded memberships in are read first, the late memberships
they show (registered since the index was built) go to weight 0 at once and are removed after
the drain time while the rest of the scope is read; the rest's late memberships take the same
path; a removal whose job did not succeed is reported, not counted.

The CLB cases run on tests/fixtures/fleets/spot.yaml plus three CLBs in scope where spot-1 has no
recorded membership (``EXTRA``); the scan's clock moves by the cloud calls it makes
(:class:`CallClock`), so "after the drain time" is a number of calls, not the machine's speed.
The ALB cases run on tests/fixtures/fleets/lb.yaml, their jobs ending as the test decides
(tests.lb_helpers.JobPauses)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.drain import Drainer, sweep_drains
from shared.events import EcsEvent, parse
from shared.lb.model import GroupKind, Membership, Product
from shared.settings import Settings
from shared.spot.index import scan_key
from shared.spot.scan import REMOVE_ATTEMPTS, ScanReport, shared_scan
from shared.store import Store
from tests.helpers import FLEETS, Killed, Time, clients_for
from tests.lb_helpers import ALB_PLAIN, JobPauses, lb_functions_emulator
from tests.test_drain_index import build_index
from tests.test_drain_spot import (
    LB_FRONT,
    LB_SECURE,
    MS_KEY,
    SPOT,
    WEB1,
    memberships,
    notice,
    of,
    settings_for,
)
from tools.emulator import Emulator
from tools.emulator.fleet import Fleet

REGION = "cn-hangzhou"
HTTP_GROUP = "rsp-bp1http00000000001"
API_GROUP = "rsp-bp1api000000000001"  # spot-1 on port 8080, recorded by its drain: hot
HTTPS_GROUP = "rsp-bp1https0000000001"
EXTRA = {f"lb-bp1extra{n:012d}": f"rsp-bp1extra{n:010d}" for n in (1, 2, 3)}  # lb -> its group
EXTRA_2_LB, EXTRA_2_GROUP = sorted(EXTRA.items())[1]
HOT_LATE = Membership(LB_FRONT, GroupKind.VSERVER, API_GROUP, SPOT, 9090, 60)
COLD_LATE = Membership(EXTRA_2_LB, GroupKind.VSERVER, EXTRA_2_GROUP, SPOT, 7002, 40)
LB_ENV = {"ECS_EVENT_OPS_DRAIN_TIME_S": "0.2", "ECS_EVENT_OPS_LB_PRODUCTS": "alb,nlb",
          "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01", "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05"}


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """spot.yaml and three more CLBs tagged app=web (in scope), each with a vServer group
    holding web-1 only."""
    doc = yaml.safe_load((FLEETS / "spot.yaml").read_text(encoding="utf-8"))
    for n, (lb, group) in enumerate(sorted(EXTRA.items()), start=1):
        doc["load_balancers"].append({
            "id": lb, "name": f"extra-{n}", "tags": {"env": "prod", "app": "web"},
            "address": f"47.96.1.{10 + n}",
            "vserver_groups": [{"id": group, "name": f"extra-{n}", "servers": [
                {"server_id": WEB1, "port": 7000 + n, "weight": 100}]}]})
    with Emulator(Fleet.from_dict(doc), start_delay_s=0.01) as emulator:
        for name, value in emulator.signing_environment().items():
            monkeypatch.setenv(name, value)
        yield emulator


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'scan.sqlite3'}"


@dataclass
class CallClock:
    """The scan's clock: each cloud call in the emulator's log since it started takes
    ``call_s``, and a sleep passes its time; nothing else moves it."""

    emu: Emulator
    call_s: float = 0.1
    start: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    slept_s: float = 0.0

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=len(self.emu.calls()) * self.call_s + self.slept_s)

    def sleep(self, seconds: float) -> None:
        self.slept_s += seconds


def interrupted(emu: Emulator) -> EcsEvent:
    (event,) = parse(json.dumps(notice(emu))).events
    return event


def drained_from_the_index(emu: Emulator, db_url: str, *late: Membership
                           ) -> tuple[Store, Settings, str, EcsEvent]:
    """The index built by the sweep, then ``late`` registered (the index does not know them),
    then spot-1 drained from the index; the region's last scan made too old to cover its
    notice. (store, settings, the drain's key, the notice)."""
    store = build_index(emu, db_url)
    settings = settings_for(emu, db_url)
    clients = clients_for(emu, settings)
    clients.lb.add_members(list(late))
    clock = Time()
    event = interrupted(emu)
    result = Drainer(store, clients, settings, clock=clock, sleep=clock.sleep).drain(event)
    assert result.outcome.value == "drained"
    assert result.index is not None and result.index["used"] is True
    assert {k[1:] for k in of(memberships(emu.state()), SPOT)} == {
        MS_KEY[1:], *((m.group_id, SPOT, m.port) for m in late)}
    old = (datetime.now(timezone.utc) - timedelta(seconds=120)).isoformat()
    store.ledger_update(scan_key(REGION), data={"started_at": old, "scanned_at": old})
    return store, settings, result.key, event


def scan(emu: Emulator, store: Store, settings: Settings, event: EcsEvent) -> ScanReport:
    """The shared scan for ``event``, the emulator's call log cleared first."""
    emu.clear_calls()
    clock = CallClock(emu)
    report = shared_scan(store, clients_for(emu, settings), settings, REGION, event.event_time,
                         clock=clock, sleep=clock.sleep)
    assert report is not None
    return report


def target(call: Any) -> str:
    """The load balancer or group a CLB call names."""
    return str(call.params.get("VServerGroupId") or call.params.get("LoadBalancerId") or "")


def write_of(calls: Sequence[Any], action: str, m: Membership) -> int:
    """The position in ``calls`` of the one ``action`` naming ``m`` (its group and port)."""
    (found,) = [n for n, c in enumerate(calls) if c.action == action and target(c) == m.group_id
                and any(s["ServerId"] == m.server_id and str(s["Port"]) == str(m.port)
                        for s in json.loads(c.params["BackendServers"]))]
    return found


def reads(calls: Sequence[Any], of_targets: set[str]) -> list[int]:
    """The positions of the reads naming one of ``of_targets``."""
    return [n for n, c in enumerate(calls)
            if c.action.startswith("Describe") and target(c) in of_targets]


def late_of(data: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(s["group_id"], s["port"], s["weight"]) for s in data["late"]]


def test_a_late_membership_of_a_hot_group_is_stopped_before_the_other_clbs_are_read(
        emu: Emulator, db_url: str) -> None:
    """GIVEN spot-1 drained from the index while a membership registered since (api group, port
    9090) sat beside its recorded ones, and three more CLBs in scope WHEN the shared scan runs
    THEN the groups the drain recorded are read first and the late membership goes to weight 0
    before any read of the other CLBs; it is removed after the drain time while the rest of the
    scope is still read; the drain's entry records it, removed."""
    store, settings, key, event = drained_from_the_index(emu, db_url, HOT_LATE)
    report = scan(emu, store, settings, event)
    calls = emu.calls()
    weight0 = write_of(calls, "SetVServerGroupAttribute", HOT_LATE)
    removal = write_of(calls, "RemoveVServerGroupBackendServers", HOT_LATE)
    cold = reads(calls, {*EXTRA, *EXTRA.values()})
    # the recorded groups (the default group read with its load balancer), and nothing else
    assert {target(c) for c in calls[:weight0]} == {LB_FRONT, HTTP_GROUP, API_GROUP, HTTPS_GROUP}
    assert json.loads(calls[weight0].params["BackendServers"])[0]["Weight"] == "0"
    assert cold and weight0 < min(cold)
    every_read = [n for n, c in enumerate(calls) if c.action.startswith("Describe")]
    assert [n for n in every_read if weight0 < n < removal]  # the drain time: the scan went on
    assert removal < max(every_read)  # ... and the removal did not wait for its end
    assert of(memberships(emu.state()), SPOT) == {MS_KEY: 100}
    assert report.errors == [] and report.removed_at is not None
    assert late_of({"late": report.late[key]}) == [(API_GROUP, 9090, 60)]
    entry = store.ledger_get(key)
    assert entry is not None
    found = entry.data["scan"]
    assert late_of(found) == [(API_GROUP, 9090, 60)]
    assert [(s["group_id"], s["server_id"], s["port"]) for s in found["late_snapshots"]] == [
        (API_GROUP, SPOT, 9090)]
    assert found["removed_at"] == report.removed_at


def test_a_late_membership_outside_the_hot_groups_is_found_by_the_rest_and_removed(
        emu: Emulator, db_url: str) -> None:
    """GIVEN spot-1 drained from the index and registered since in a group of another CLB in
    scope (none of its recorded groups) WHEN the shared scan runs THEN the hot groups show
    nothing late; the rest of the scope shows the membership: weight 0 after that group was
    read, removed; the drain's entry records it, removed."""
    store, settings, key, event = drained_from_the_index(emu, db_url, COLD_LATE)
    report = scan(emu, store, settings, event)
    calls = emu.calls()
    weight0 = write_of(calls, "SetVServerGroupAttribute", COLD_LATE)
    removal = write_of(calls, "RemoveVServerGroupBackendServers", COLD_LATE)
    assert max(reads(calls, {EXTRA_2_LB, EXTRA_2_GROUP})) < weight0 < removal
    assert of(memberships(emu.state()), SPOT) == {MS_KEY: 100}
    assert report.errors == [] and report.removed_at is not None
    entry = store.ledger_get(key)
    assert entry is not None
    assert late_of(entry.data["scan"]) == [(EXTRA_2_GROUP, 7002, 40)]
    assert len(entry.data["scan"]["late_snapshots"]) == 1
    assert entry.data["scan"]["removed_at"] == report.removed_at


def test_a_drain_with_late_memberships_in_both_batches_records_both(
        emu: Emulator, db_url: str) -> None:
    """GIVEN spot-1 drained from the index and registered since both in a hot group and in
    another CLB's group WHEN the shared scan runs THEN the hot one goes to weight 0 before the
    other CLBs are read, the other after its group was read; both are removed, and the drain's
    entry records both (the second batch adds to the first)."""
    store, settings, key, event = drained_from_the_index(emu, db_url, HOT_LATE, COLD_LATE)
    report = scan(emu, store, settings, event)
    calls = emu.calls()
    cold = reads(calls, {*EXTRA, *EXTRA.values()})
    assert write_of(calls, "SetVServerGroupAttribute", HOT_LATE) < min(cold)
    assert max(reads(calls, {EXTRA_2_LB, EXTRA_2_GROUP})) < write_of(
        calls, "SetVServerGroupAttribute", COLD_LATE)
    assert of(memberships(emu.state()), SPOT) == {MS_KEY: 100}
    both = [(API_GROUP, 9090, 60), (EXTRA_2_GROUP, 7002, 40)]
    assert late_of({"late": report.late[key]}) == both
    entry = store.ledger_get(key)
    assert entry is not None
    assert late_of(entry.data["scan"]) == both
    assert [(s["group_id"], s["port"]) for s in entry.data["scan"]["late_snapshots"]] == [
        (API_GROUP, 9090), (EXTRA_2_GROUP, 7002)]
    assert entry.data["scan"]["removed_at"] is not None and report.errors == []
    assert LB_SECURE not in {target(c) for c in calls if c.action.startswith(("Set", "Remove"))}


@pytest.fixture
def lb_emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with lb_functions_emulator(monkeypatch) as emulator:
        emulator.set_lb_jobs(job_s=60)  # the jobs end at the clients' pauses (JobPauses)
        yield emulator


@pytest.fixture
def lb_store(tmp_path: Path) -> Iterator[Store]:
    instance = Store(f"sqlite:///{tmp_path / 'scan.sqlite3'}")
    yield instance
    instance.close()


@dataclass
class FailedLateRemoval:
    settings: Settings
    drain_key: str
    report: ScanReport
    job_id: str


def drained_beside_a_late_alb_member(emu: Emulator, store: Store
                                     ) -> tuple[Settings, Any, EcsEvent, Any]:
    """The index built by a first shared scan (ALB/NLB scope unbounded: every group), then
    spot-1 registered in its ALB api group on port 9090 (weight 30) and drained from the index,
    the index then older than its fresh time: (settings, clients, the notice, the drain)."""
    settings = Settings.from_env({**LB_ENV, "ECS_EVENT_OPS_CLOUD_URL": emu.url,
                                  "ECS_EVENT_OPS_DB_URL": store.url})
    clients = JobPauses(emu).clients(settings)
    assert shared_scan(store, clients, settings, REGION, datetime.now(timezone.utc)) is not None
    lbs = clients.lbs
    late = Membership("", GroupKind.SERVER_GROUP, ALB_PLAIN, SPOT, 9090, 30, "Ecs",
                      product=Product.ALB)
    assert lbs.wait(lbs.add([late], token_seed="registered-since"), timeout_s=10) == []
    clock = Time()
    event = interrupted(emu)
    drained = Drainer(store, clients, settings, clock=clock, sleep=clock.sleep).drain(event)
    assert drained.outcome.value == "drained" and drained.index is not None
    assert drained.index["used"] is True
    old = (datetime.now(timezone.utc) - timedelta(seconds=120)).isoformat()
    store.ledger_update(scan_key(REGION), data={"started_at": old, "scanned_at": old})
    return settings, clients, event, drained


def late_alb_removal_failed(emu: Emulator, store: Store, times: int = REMOVE_ATTEMPTS
                            ) -> FailedLateRemoval:
    """The index built by a first shared scan (ALB/NLB scope unbounded: every group), then
    spot-1 registered in its ALB api group on port 9090 and drained from the index, then the
    shared scan of its notice, whose removals of that late membership end Failed (``times``:
    the first ones; by default every one the scan makes)."""
    settings, _clients, event, drained = drained_beside_a_late_alb_member(emu, store)
    failing = JobPauses(emu, fail=("RemoveServersFromServerGroup", ALB_PLAIN), times=times)
    scan_clock = Time()
    report = shared_scan(store, failing.clients(settings), settings, REGION, event.event_time,
                         clock=scan_clock, sleep=scan_clock.sleep)
    assert report is not None
    assert len(failing.failed) == times
    return FailedLateRemoval(settings, drained.key, report, str(failing.failed[0]["id"]))


def test_a_late_removal_whose_alb_job_fails_is_reported_not_counted(
        lb_emu: Emulator, lb_store: Store) -> None:
    """GIVEN spot-1 drained from the index while a membership registered since sat in its ALB
    api group (port 9090) WHEN the shared scan's removal of it ends Failed THEN the scan's entry
    and report carry the error and no removal time, the drain's entry records the late
    membership with ``removed_at`` None, and the membership is still registered (at weight
    0)."""
    failed = late_alb_removal_failed(lb_emu, lb_store)
    report = failed.report
    assert report.removed_at is None
    assert len(report.errors) == REMOVE_ATTEMPTS  # each removal again with a new token
    assert report.errors[0] == f"remove: jobs not succeeded: {failed.job_id}"
    entry = lb_store.ledger_get(scan_key(REGION))
    assert entry is not None and entry.status == "done"
    assert (entry.data["errors"], entry.data["removed_at"]) == (report.errors, None)
    drain = lb_store.ledger_get(failed.drain_key)
    assert drain is not None
    assert late_of(drain.data["scan"]) == [(ALB_PLAIN, 9090, 30)]
    assert drain.data["scan"]["removed_at"] is None
    assert [(m["port"], m["weight"]) for m in lb_emu.lb_group(ALB_PLAIN)["members"]
            if m["server_id"] == SPOT] == [(9090, 0)]


def test_a_late_removal_whose_job_failed_once_is_made_again_with_a_new_token(
        lb_emu: Emulator, lb_store: Store) -> None:
    """GIVEN the shared scan's first removal of spot-1's late ALB membership ends Failed WHEN
    the scan goes on THEN it removes it again with another ClientToken (the same one would
    answer the failed job), and the drain's entry records it removed."""
    failed = late_alb_removal_failed(lb_emu, lb_store, times=1)
    report = failed.report
    assert report.errors == [f"remove: jobs not succeeded: {failed.job_id}"]
    assert report.removed_at is not None
    tokens = [c.params.get("ClientToken") for c in lb_emu.calls()
              if c.action.endswith("RemoveServersFromServerGroup")
              and c.params.get("ServerGroupId") == ALB_PLAIN]
    assert len(tokens) >= 2 and len(set(tokens[-2:])) == 2
    drain = lb_store.ledger_get(failed.drain_key)
    assert drain is not None and drain.data["scan"]["removed_at"] is not None
    assert drain.data["scan"]["pending"] == []
    assert [m for m in lb_emu.lb_group(ALB_PLAIN)["members"] if m["server_id"] == SPOT] == []


def test_a_late_membership_whose_scan_removal_failed_goes_with_the_reclaimed_drain(
        lb_emu: Emulator, lb_store: Store) -> None:
    """GIVEN the shared scan's removal of spot-1's late ALB membership failed and spot-1 then
    released WHEN the sweep runs after the deadline THEN that membership is removed with the
    reclaimed drain's leftovers."""
    failed = late_alb_removal_failed(lb_emu, lb_store)
    lb_emu.release(SPOT)
    later = datetime.now(timezone.utc) + timedelta(
        seconds=300 + failed.settings.restore_after_s + 1)
    report = sweep_drains(lb_store, JobPauses(lb_emu).clients(failed.settings), None,
                          failed.settings, later)
    assert report["reclaimed"] == [SPOT]
    assert [m["port"] for m in lb_emu.lb_group(ALB_PLAIN)["members"]
            if m["server_id"] == SPOT] == []


def test_a_scan_killed_after_its_weight_0_write_leaves_the_original_weight_for_the_next(
        lb_emu: Emulator, lb_store: Store) -> None:
    """GIVEN the shared scan found spot-1's late ALB membership (weight 30) WHEN its process is
    killed after the weight-0 write, before the removal THEN the drain's entry already records
    the membership with weight 30, pending; the next scan (the dead one's lease expired) removes
    it and still records 30, not the 0 it finds, so a restore would put 30 back."""
    settings, clients, event, drained = drained_beside_a_late_alb_member(lb_emu, lb_store)
    old = (datetime.now(timezone.utc) - timedelta(seconds=120)).isoformat()

    def killed(_seconds: float) -> None:  # the wait before the removal: the process dies
        raise Killed

    with pytest.raises(Killed):
        shared_scan(lb_store, clients, settings, REGION, event.event_time, sleep=killed)
    assert [(m["port"], m["weight"]) for m in lb_emu.lb_group(ALB_PLAIN)["members"]
            if m["server_id"] == SPOT] == [(9090, 0)]
    scan = lb_store.ledger_get(drained.key).data["scan"]  # type: ignore[union-attr]
    assert [(s["port"], s["weight"]) for s in scan["late_snapshots"]] == [(9090, 30)]
    assert scan["pending"] and scan["removed_at"] is None
    lb_store.ledger_update(scan_key(REGION), data={"started_at": old, "lease_until": old})
    again = Time()
    assert shared_scan(lb_store, clients, settings, REGION, event.event_time,
                       clock=again, sleep=again.sleep) is not None
    assert [m for m in lb_emu.lb_group(ALB_PLAIN)["members"] if m["server_id"] == SPOT] == []
    scan = lb_store.ledger_get(drained.key).data["scan"]  # type: ignore[union-attr]
    assert [(s["port"], s["weight"]) for s in scan["late_snapshots"]] == [(9090, 30)]
    assert scan["pending"] == [] and scan["removed_at"] is not None
