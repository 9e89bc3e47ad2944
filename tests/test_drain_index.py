"""The membership index (shared.spot.index), the burst's shared scan (shared.spot.scan) and the
drains' coalesced calls (shared.spot.batch): against the emulator, the real SDK over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.drain import sweep_drains
from shared.lb.model import GroupKind, Membership
from shared.spot.batch import Coalescer
from shared.spot.index import MembershipIndex, scan_key
from shared.store import IndexRow, Store
from tests.helpers import emulator_for
from tests.test_drain_spot import (
    FUNCTION_ENV,
    LB_FRONT,
    SPOT,
    WEB2,
    clients_for,
    invoke,
    memberships,
    notice,
    of,
    settings_for,
)
from tools.emulator import Emulator

READS = ("DescribeLoadBalancerAttribute", "DescribeVServerGroups", "DescribeVServerGroupAttribute",
         "DescribeMasterSlaveServerGroups", "DescribeMasterSlaveServerGroupAttribute",
         "DescribeLoadBalancers")
API_GROUP = "rsp-bp1api000000000001"


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("spot.yaml", monkeypatch, start_delay_s=0.01) as emulator:
        yield emulator


@pytest.fixture
def db_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'index.sqlite3'}"


def build_index(emu: Emulator, db_url: str) -> Store:
    """The sweep's released-backend scan fills the index and counts as the region's scan."""
    settings = settings_for(emu, db_url)
    store = Store(db_url)
    sweep_drains(store, clients_for(emu, settings), None, settings, datetime.now(timezone.utc))
    return store


def lb_reads_before_first_write(emu: Emulator) -> list[str]:
    calls = emu.calls()
    first = next(i for i, c in enumerate(calls) if c.action.startswith(("Set", "Remove")))
    return [c.action for c in calls[:first] if c.action in READS]


def test_store_index_replaces_by_source_and_by_server_key(store: Store) -> None:
    """GIVEN rows of two sources WHEN one source is rescanned and one server key rewritten
    THEN only those rows change, on every backend."""
    seen = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def row(key: str, source: str, member: str) -> IndexRow:
        return IndexRow(key, source, member, {"m": member}, seen)

    store.index_replace("r", [row("i-1", "lb-a", "a1"), row("10.0.0.1", "lb-a", "a1"),
                              row("i-1", "lb-b", "b1"), row("i-2", "lb-b", "b2")])
    store.index_replace("r", [row("i-2", "lb-a", "a2")], sources=["lb-a"])
    assert sorted(r.member for r in store.index_lookup("r", ["i-1", "10.0.0.1"])) == ["b1"]
    store.index_replace("r", [row("i-2", "lb-b", "b3")], server_keys=["i-2"])
    assert sorted(r.member for r in store.index_lookup("r", ["i-2"])) == ["b3"]
    assert store.index_lookup("other", ["i-2"]) == []
    assert store.index_lookup("r", ["i-2"])[0].seen_at == seen


def test_with_a_fresh_index_a_drain_reads_no_group_before_weight_0(
    emu: Emulator, db_url: str
) -> None:
    """GIVEN the index built by the sweep WHEN a notice arrives THEN no group is read before
    the first weight-0 write, every removable membership is drained, and the result reports
    the index's age; no shared scan runs (the sweep's is fresh)."""
    build_index(emu, db_url)
    body = notice(emu)
    emu.clear_calls()
    out = invoke(emu, db_url, body)
    (drain,) = out["drains"]
    assert drain["outcome"] == "drained"
    assert lb_reads_before_first_write(emu) == []
    assert drain["index"]["used"] is True
    assert drain["index"]["hits"] == 5  # 4 removable + the master-slave one
    assert 0 <= drain["index"]["age_s"] < 30
    assert len(of(memberships(emu.state()), SPOT)) == 1  # the master-slave one
    # the reads: the instance, then one per group to verify after the removal
    reads = [c.action for c in emu.calls() if c.action.startswith("Describe")]
    assert reads.count("DescribeVServerGroupAttribute") == 3
    assert "DescribeVServerGroups" not in reads


def test_the_shared_scan_drains_a_membership_the_index_did_not_know(
    emu: Emulator, db_url: str
) -> None:
    """GIVEN an index older than the fresh time and spot-1 added to a group since WHEN its
    notice arrives THEN the indexed groups are drained at once, then one scan finds the new
    membership and drains it too, before the deadline; the drain's entry reports it."""
    store = build_index(emu, db_url)
    settings = settings_for(emu, db_url)
    lb = clients_for(emu, settings).lb
    secure_https = Membership(LB_FRONT, GroupKind.VSERVER, API_GROUP, SPOT, 9090, 60)
    lb.add_members([secure_https])
    old = (datetime.now(timezone.utc) - timedelta(seconds=120)).isoformat()
    store.ledger_update(scan_key("cn-hangzhou"), data={"started_at": old, "scanned_at": old})
    out = invoke(emu, db_url, notice(emu), env={"ECS_EVENT_OPS_LB_INDEX_FRESH_S": "60"})
    (drain,) = out["drains"]
    assert drain["outcome"] == "drained"
    assert drain["index"]["age_s"] >= 120
    assert of(memberships(emu.state()), SPOT) == {
        ("lb-bp1secure0000000000001", "rsp-bp1ms000000000001", SPOT, 80): 100}
    scan = store.ledger_get(scan_key("cn-hangzhou"))
    assert scan is not None and scan.status == "done"
    (late,) = scan.data["late"][drain["key"]]
    assert (late["group_id"], late["port"], late["weight"]) == (API_GROUP, 9090, 60)
    entry = store.ledger_get(drain["key"])
    assert entry is not None and entry.data["scan"]["late"] == [late]
    # AND the index now knows nothing of spot-1 but what the scan saw after the drain removed it
    assert not [s for s in MembershipIndex(store).lookup("cn-hangzhou", [SPOT]).snapshots
                if s["group_kind"] != "master_slave"]


def test_a_second_notice_within_the_fresh_time_starts_no_scan(
    emu: Emulator, db_url: str
) -> None:
    """GIVEN a scan that covered one notice WHEN another notice of the burst arrives THEN no
    second scan reads the fleet."""
    store = build_index(emu, db_url)
    old = (datetime.now(timezone.utc) - timedelta(seconds=120)).isoformat()
    store.ledger_update(scan_key("cn-hangzhou"), data={"started_at": old, "scanned_at": old})
    env = {"ECS_EVENT_OPS_LB_INDEX_FRESH_S": "60"}
    invoke(emu, db_url, notice(emu), env=env)
    scans = store.ledger_get(scan_key("cn-hangzhou"))
    assert scans is not None
    generation = scans.data["generation"]
    emu.clear_calls()
    invoke(emu, db_url, notice(emu, WEB2), env=env)
    assert [c.action for c in emu.calls()].count("DescribeVServerGroups") == 0
    again = store.ledger_get(scan_key("cn-hangzhou"))
    assert again is not None and again.data["generation"] == generation


def test_two_notices_in_one_batch_share_one_write_per_group(
    monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """GIVEN spot-1 and web-2 (both spot) sharing the http and api groups, the index fresh
    WHEN both notices arrive in one delivery THEN each shared group gets one weight-0 write
    naming both, and one removal."""
    from dataclasses import replace

    from tests.helpers import FLEETS
    from tools.emulator import load_fleet

    fleet = load_fleet(FLEETS / "spot.yaml")
    fleet = replace(fleet, instances=tuple(
        replace(i, spot_strategy="SpotAsPriceGo") if i.id == WEB2 else i
        for i in fleet.instances))
    with Emulator(fleet, start_delay_s=0.01) as emu:
        for name, value in emu.signing_environment().items():
            monkeypatch.setenv(name, value)
        build_index(emu, db_url)
        batch = [notice(emu, SPOT), notice(emu, WEB2)]
        emu.clear_calls()
        out = invoke(emu, db_url, batch, env={"ECS_EVENT_OPS_DRAIN_BATCH_WINDOW_S": "0.3"})
        assert sorted(d["outcome"] for d in out["drains"]) == ["drained", "drained"]
        sets = [c for c in emu.calls() if c.action == "SetVServerGroupAttribute"
                and c.params["VServerGroupId"] == "rsp-bp1http00000000001"]
        assert len(sets) == 1
        assert "i-bp1web0000000000002" in sets[0].params["BackendServers"]
        assert SPOT in sets[0].params["BackendServers"]
        assert [c.action for c in emu.calls()].count("DescribeInstances") == 1


def test_coalescer_makes_one_call_for_callers_within_the_window() -> None:
    """GIVEN three callers of one key within the window THEN one call with every item, each
    caller gets its result; an error reaches every caller."""
    coalescer = Coalescer(window_s=0.2)
    sent: list[list[int]] = []
    results: list[tuple[Any, bool]] = []

    def caller(item: int) -> None:
        results.append(coalescer.call("k", [item], lambda items: sent.append(items) or len(items)))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 1 and sorted(sent[0]) == [0, 1, 2]
    assert sorted(results) == [(3, False), (3, False), (3, True)]

    def fail(items: list[int]) -> int:
        raise RuntimeError("throttled")

    with pytest.raises(RuntimeError):
        coalescer.call("k", [1], fail)
    assert FUNCTION_ENV  # the drain tests' settings stay the reference


def test_verification_takes_any_read_of_the_group_started_after_its_removal(
    emu: Emulator, db_url: str
) -> None:
    """GIVEN a group read by one drain of the invocation after another's removal ended WHEN
    the other verifies THEN it takes that read (no second read of the group); a read started
    before its removal ended does not serve (the group is read again)."""
    import time
    from types import SimpleNamespace

    from shared.drain import Drainer

    settings = settings_for(emu, db_url)
    clients = clients_for(emu, settings)
    drainer = Drainer(Store(db_url), clients, settings)
    http = "rsp-bp1http00000000001"
    spot = [m for m in clients.lb.group_members(LB_FRONT, GroupKind.VSERVER, http)
            if m.server_id == SPOT]
    run: Any = SimpleNamespace(region=settings.region)
    emu.clear_calls()

    def reads() -> int:
        return sum(1 for c in emu.calls() if c.action == "DescribeVServerGroupAttribute")

    removed_at = time.monotonic()
    assert drainer._present(run, spot, since=removed_at) == spot  # reads the group
    assert drainer._present(run, spot, since=removed_at) == spot  # that read serves
    assert reads() == 1
    assert drainer._present(run, spot, since=time.monotonic()) == spot  # too old now
    assert reads() == 2
