"""The sweep handler: both parts run every tick; a failure in one does not hide the other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.helpers import emulator_for
from tools.emulator import Emulator
from tools.invoke import InvokeResult, invoke_local

SPOT = "i-bp1spot000000000001"
WEB_1 = "i-bp1web0000000000001"
FRONT = "lb-bp1front000000000001"
TIMER = json.dumps({"triggerTime": "2026-11-23T00:00:00Z", "triggerName": "sweep", "payload": ""}).encode()


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("spot.yaml", monkeypatch, start_delay_s=0.02) as emulator:
        yield emulator


def _sweep(emu: Emulator, db: str, **env: str) -> InvokeResult:
    return invoke_local("sweep", TIMER, cloud_url=emu.url, db_url=db,
                        env={"ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01", "ECS_EVENT_OPS_API_MAX_ATTEMPTS": "2",
                             "ECS_EVENT_OPS_LB_IDS": FRONT, **env})


# spot-1's registrations on the front CLB, as the sweep reports them
SPOT_ON_FRONT = [
    (None, None, 100), ("rsp-bp1http00000000001", 80, 100), ("rsp-bp1api000000000001", 8080, 80),
]


def _reported(result: InvokeResult) -> list[tuple[str | None, int | None, int]]:
    rows = result.value["drains"]["released_backends_removed"]
    assert {(r["instance_id"], r["load_balancer_id"]) for r in rows} == {(SPOT, FRONT)}
    return [(r["group_id"], r["port"], r["weight"]) for r in rows]


def _members(emu: Emulator, iid: str) -> int:
    lb = emu.load_balancer(FRONT)
    return sum(1 for s in lb["default_servers"] if s["server_id"] == iid) + sum(
        1 for g in lb["vserver_groups"] for s in g["servers"] if s["server_id"] == iid)


def test_a_quiet_tick_reports_both_parts(emu: Emulator, tmp_path: Path) -> None:
    """GIVEN nothing to do WHEN the timer fires THEN both parts report and nothing changes."""
    result = _sweep(emu, f"sqlite:///{tmp_path / 's.sqlite3'}")
    assert result.error is None
    assert set(result.value) == {"dry_run", "regions", "auto_start", "drains"}
    assert result.value["regions"] == ["cn-hangzhou"]  # its own; the store knows no other
    assert result.value["drains"]["released_backends_removed"] == []
    mutating = [c.action for c in emu.calls() if not c.action.startswith(("Describe", "Lookup"))]
    assert mutating == []


def test_backends_of_a_released_instance_are_removed_from_groups_in_scope(
        emu: Emulator, tmp_path: Path) -> None:
    """GIVEN spot-1 released without a drain (its backends left stale) WHEN the sweep runs
    THEN its default and vServer memberships in scope are removed and web-1 keeps its own."""
    emu.release(SPOT)
    assert _members(emu, SPOT) == 3
    web_before = _members(emu, WEB_1)
    result = _sweep(emu, f"sqlite:///{tmp_path / 's.sqlite3'}")
    assert result.error is None
    assert _members(emu, SPOT) == 0
    assert _members(emu, WEB_1) == web_before
    assert _reported(result) == SPOT_ON_FRONT


def test_dry_run_reports_stale_backends_but_removes_nothing(emu: Emulator, tmp_path: Path) -> None:
    """A dry-run sweep reports the same three stale backends and makes no mutating call."""
    emu.release(SPOT)
    emu.clear_calls()
    result = _sweep(emu, f"sqlite:///{tmp_path / 's.sqlite3'}", ECS_EVENT_OPS_DRY_RUN="true")
    assert result.error is None
    assert result.value["dry_run"] is True
    assert _reported(result) == SPOT_ON_FRONT
    assert [c.action for c in emu.calls() if not c.action.startswith(("Describe", "Lookup"))] == []
    assert _members(emu, SPOT) == 3


def test_a_failing_part_is_raised_after_the_other_part_ran(emu: Emulator, tmp_path: Path) -> None:
    """GIVEN DescribeInstances failing for the auto-start part only (it runs first) WHEN the
    sweep runs THEN the drain part still ran, and the handler raises for the platform."""
    emu.release(SPOT)
    # the auto-start part lists Stopped instances first; its two attempts fail, later calls work
    emu.set_faults(fail_next={"DescribeInstances": ["ServiceUnavailable", "ServiceUnavailable"]})
    result = _sweep(emu, f"sqlite:///{tmp_path / 's.sqlite3'}")
    assert type(result.error).__name__ == "TransientError"
    assert _members(emu, SPOT) == 0  # the drain part ran anyway


def _spot_notice(emu: Emulator) -> bytes:
    emu.interrupt_spot(SPOT)
    payload = next(p for p in reversed(emu.events())
                   if p["name"] == "Instance:PreemptibleInstanceInterruption")
    return json.dumps(payload).encode()


def _groups(emu: Emulator) -> dict[str, list[tuple[str, int | None, int]]]:
    """Every load balancer's members as (server, port, weight), for before/after comparisons."""
    out = {}
    for lb_id in (FRONT, "lb-bp1secure0000000000001"):
        lb = emu.load_balancer(lb_id)
        members = [(s["server_id"], None, s["weight"]) for s in lb["default_servers"]]
        members += [(s["server_id"], s["port"], s["weight"]) for g in lb["vserver_groups"] for s in g["servers"]]
        out[lb_id] = sorted(members, key=str)
    return out


def test_a_drained_instance_that_was_not_reclaimed_is_put_back_with_its_weights(
        emu: Emulator, tmp_path: Path) -> None:
    """GIVEN spot-1 drained from every group it served WHEN it is still Running, unlocked, past
    its deadline THEN the sweep (load balancers scoped by tag) restores every membership with its
    original weight, once."""
    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    before = _groups(emu)
    scope = {"ECS_EVENT_OPS_LB_IDS": "", "ECS_EVENT_OPS_LB_TAG": "env=prod"}
    drained = invoke_local("drain_spot", _spot_notice(emu), cloud_url=emu.url, db_url=db,
                           env={"ECS_EVENT_OPS_DRAIN_TIME_S": "0.1", **scope})
    assert drained.error is None
    assert _groups(emu) != before
    emu.unlock(SPOT)  # not reclaimed after all
    # restore_after_s below zero: "well after the deadline" is now, without waiting five minutes
    result = _sweep(emu, db, ECS_EVENT_OPS_RESTORE_AFTER_S="-1000", **scope)
    assert result.error is None
    assert _groups(emu) == before
    emu.clear_calls()
    again = _sweep(emu, db, ECS_EVENT_OPS_RESTORE_AFTER_S="-1000", **scope)
    assert again.error is None
    assert [c.action for c in emu.calls() if not c.action.startswith(("Describe", "Lookup"))] == []


def _backdated_stop(emu: Emulator, iid: str, minutes: int) -> bytes:
    """The Stopped event of a crash, as if it happened ``minutes`` ago (its delivery was lost)."""
    emu.stop_instance(iid, by="crash")
    emu.wait_for_status(iid, "Stopped", 5)
    payload = next(p for p in reversed(emu.events())
                   if p["content"].get("resourceId") == iid and p["content"].get("state") == "Stopped")
    moment = datetime.now(timezone.utc) - timedelta(minutes=minutes)
    payload = {**payload, "eventTime": moment.strftime("%Y%m%dT%H%M%S.000+0000")}
    return json.dumps(payload).encode()


@pytest.fixture
def basic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("basic.yaml", monkeypatch, start_delay_s=0.02) as emulator:
        yield emulator


@pytest.mark.parametrize("instances", [("i-bp1aaaaaaaaaaaaaaaa1",),
                                       ("i-bp1aaaaaaaaaaaaaaaa1", "i-bp1aaaaaaaaaaaaaaaa2")])
def test_missed_unexpected_stops_are_started_by_the_sweep(
        basic: Emulator, tmp_path: Path, instances: tuple[str, ...]) -> None:
    """GIVEN opted-in instances whose Stopped events only reached the lifecycle record (the
    auto-start delivery was lost) WHEN the sweep runs THEN it checks ActionTrail for the "true"
    one and starts them (StartInstance for one, StartInstances for several)."""
    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    for iid in instances:
        recorded = invoke_local("record_lifecycle", _backdated_stop(basic, iid, 20), cloud_url=basic.url,
                                db_url=db)
        assert recorded.error is None
    basic.clear_calls()
    result = invoke_local("sweep", TIMER, cloud_url=basic.url, db_url=db,
                          env={"ECS_EVENT_OPS_LB_IDS": "lb-bp1aaaaaaaaaaaaaaaa1"})
    assert result.error is None
    started = {d["instance_id"] for d in result.value["auto_start"]["decisions"] if d["decision"] == "started"}
    assert started == set(instances)
    actions = [c.action for c in basic.calls()]
    assert actions.count("LookupEvents") == 1  # only web-1 is "true"; web-2 is "always"
    assert [a for a in actions if a.startswith("Start")] == [
        "StartInstances" if len(instances) > 1 else "StartInstance"]


def test_a_leftover_weight_zero_registration_gets_its_weight_back(emu: Emulator, tmp_path: Path) -> None:
    """GIVEN spot-1 drained, then registered again at weight 0 in two groups (a half-finished
    manual re-add) WHEN the sweep restores it THEN those two are re-weighted to the original
    weights, the others are added back, and the groups equal what they were before the notice."""
    from shared.clients import Clients, Credentials
    from shared.lb.model import GroupKind, Membership
    from shared.settings import Settings

    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    before = _groups(emu)
    drained = invoke_local("drain_spot", _spot_notice(emu), cloud_url=emu.url, db_url=db,
                           env={"ECS_EVENT_OPS_DRAIN_TIME_S": "0.1", "ECS_EVENT_OPS_LB_IDS": FRONT})
    assert drained.error is None
    creds = emu.credentials[0]
    lb = Clients.from_settings(Settings.from_env(cloud_url=emu.url),
                               Credentials(creds["access_key_id"], creds["access_key_secret"])).lb
    lb.add_members([Membership(FRONT, GroupKind.DEFAULT, None, SPOT, None, 0),
                    Membership(FRONT, GroupKind.VSERVER, "rsp-bp1http00000000001", SPOT, 80, 0)])
    emu.unlock(SPOT)
    emu.clear_calls()
    result = _sweep(emu, db, ECS_EVENT_OPS_RESTORE_AFTER_S="-1000")
    assert result.error is None
    assert _groups(emu) == before
    writes = sorted(c.action for c in emu.calls() if not c.action.startswith("Describe"))
    assert writes == ["AddVServerGroupBackendServers", "SetBackendServers", "SetVServerGroupAttribute"]


def test_a_restore_abandoned_by_a_dead_sweep_is_retried(emu: Emulator, tmp_path: Path) -> None:
    """GIVEN a drained, un-reclaimed spot-1 whose restore a sweep took an hour ago (lease and
    counted attempt) and died in WHEN a sweep runs THEN it takes the expired lease over and
    restores every membership, counting the abandoned attempt (instead of waiting forever);
    while the dead sweep's lease is live, a sweep leaves it alone."""
    from shared import ledger
    from shared.store import Store

    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    before = _groups(emu)
    drained = invoke_local("drain_spot", _spot_notice(emu), cloud_url=emu.url, db_url=db,
                           env={"ECS_EVENT_OPS_DRAIN_TIME_S": "0.1", "ECS_EVENT_OPS_LB_IDS": FRONT})
    (drain,) = drained.value["drains"]
    emu.unlock(SPOT)
    store = Store(db)
    now = datetime.now(timezone.utc)
    got = ledger.acquire(store, drain["key"], kind=ledger.Kind.DRAIN, owner="dead-sweep",
                         until=now + timedelta(minutes=15), now=now)
    assert isinstance(got, ledger.Acquired)
    got.lease.save(restore_attempts=1)

    held = _sweep(emu, db, ECS_EVENT_OPS_RESTORE_AFTER_S="-1000")
    assert held.value["drains"]["restored"] == []
    assert _groups(emu) != before
    store.ledger_update(drain["key"], data={"lease_until": (now - timedelta(minutes=45)).isoformat()})
    taken = _sweep(emu, db, ECS_EVENT_OPS_RESTORE_AFTER_S="-1000")
    assert taken.value["drains"]["notes"] == [f"{SPOT}: restore attempt 1 abandoned; retried"]
    assert taken.value["drains"]["restored"] == [SPOT]
    assert _groups(emu) == before
    entry = store.ledger_get(drain["key"])
    assert entry is not None
    assert (entry.status, entry.data["restore_attempts"], entry.data["generation"]) == (
        "restored", 2, 2)
    store.close()
