"""shared.clients: the CLB (SLB) and ActionTrail adapters against the emulator, real SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.clients import Clients, Credentials, TransientError
from shared.lb.clb import LbClient
from shared.lb.model import GroupKind, Membership
from shared.settings import Settings
from tests.helpers import FLEETS
from tools.emulator import Emulator, Fleet, load_fleet

LB_WEB = "lb-bp1aaaaaaaaaaaaaaaa1"
LB_BATCH = "lb-bp1aaaaaaaaaaaaaaaa2"
VG_API = "rsp-bp1aaaaaaaaaaaaa1"
VG_JOBS = "rsp-bp1aaaaaaaaaaaaa2"
MS = "rsp-bp1bbbbbbbbbbbbb1"
WEB1 = "i-bp1aaaaaaaaaaaaaaaa1"
WEB2 = "i-bp1aaaaaaaaaaaaaaaa2"
BATCH1 = "i-bp1aaaaaaaaaaaaaaaa3"
SPOT1 = "i-bp1aaaaaaaaaaaaaaaa4"


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def clients_for(emu: Emulator, sleep: RecordingSleep | None = None, **overrides: Any) -> Clients:
    cred = emu.credentials[0]
    settings = Settings.from_env({}, cloud_url=emu.url, region="cn-hangzhou", **overrides)
    return Clients.from_settings(
        settings, Credentials(cred["access_key_id"], cred["access_key_secret"]),
        sleep=sleep or RecordingSleep())


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.01) as emulator:
        yield emulator


@pytest.fixture
def lb(emu: Emulator) -> LbClient:
    return clients_for(emu).lb


def calls_of(emu: Emulator, action: str) -> list[Any]:
    return [c for c in emu.calls() if c.action == action]


def members_of(emu: Emulator, lb_id: str) -> list[tuple[str, str | None, str, int | None, int]]:
    """(kind, group, server, port, weight) of every member, as the emulator holds them."""
    clients = clients_for(emu)
    out = []
    for m in clients.lb.all_members(lb_id):
        out.append((m.group_kind.value, m.group_id, m.server_id, m.port, m.weight))
    return sorted(out, key=repr)


# --- discovery ---------------------------------------------------------------------------------


def test_find_memberships_finds_default_every_vserver_port_and_master_slave(
    emu: Emulator, lb: LbClient
) -> None:
    """GIVEN web-1 in the default, a vServer and a master-slave group WHEN searched THEN all 3."""
    found = lb.find_memberships(WEB1, [LB_WEB, LB_BATCH])

    assert [(m.load_balancer_id, m.group_kind, m.group_id, m.port, m.weight, m.removable)
            for m in found] == [
        (LB_WEB, GroupKind.DEFAULT, None, None, 100, True),
        (LB_WEB, GroupKind.VSERVER, VG_API, 8080, 100, True),
        (LB_WEB, GroupKind.MASTER_SLAVE, MS, 80, 100, False),
    ]
    assert found[2].role == "Master"
    assert {c.action for c in emu.calls()} == {
        "DescribeLoadBalancerAttribute", "DescribeVServerGroups",
        "DescribeVServerGroupAttribute", "DescribeMasterSlaveServerGroups",
        "DescribeMasterSlaveServerGroupAttribute"}


def test_find_memberships_keeps_each_registered_port(lb: LbClient) -> None:
    """GIVEN spot-1 in two LBs with its own weights WHEN searched THEN the real ports/weights."""
    found = lb.find_memberships(SPOT1, [LB_WEB, LB_BATCH])

    assert [(m.load_balancer_id, m.group_kind.value, m.group_id, m.port, m.weight)
            for m in found] == [
        (LB_WEB, "vserver", VG_API, 8080, 50),
        (LB_BATCH, "default", None, None, 100),
        (LB_BATCH, "vserver", VG_JOBS, 9000, 100),
    ]


def test_find_memberships_skips_a_missing_load_balancer(lb: LbClient) -> None:
    """GIVEN a stale LB id among the configured ones WHEN searched THEN the others still count."""
    found = lb.find_memberships(SPOT1, ["lb-bp1doesnotexist01", LB_BATCH])

    assert [m.load_balancer_id for m in found] == [LB_BATCH, LB_BATCH]


def test_find_memberships_on_the_spot_fleet() -> None:
    """GIVEN the spot fleet WHEN each spot instance is searched THEN every group is found."""
    fleet = load_fleet(FLEETS / "spot.yaml")
    with Emulator(fleet, start_delay_s=0.01) as emu:
        lb = clients_for(emu).lb
        lb_ids = [spec.id for spec in fleet.load_balancers]
        spot_ids = [i.id for i in fleet.instances if i.spot_strategy != "NoSpot"]
        for iid in spot_ids:
            expected: set[tuple[str, str | None, int | None]] = set()
            for spec in fleet.load_balancers:
                expected |= {("default", None, None) for s in spec.default_servers
                             if s.server_id == iid}
                for g in spec.vserver_groups:
                    expected |= {("vserver", g.id, s.port) for s in g.servers
                                 if s.server_id == iid}
                for g in spec.master_slave_groups:
                    expected |= {("master_slave", g.id, s.port) for s in g.servers
                                 if s.server_id == iid}
            found = lb.find_memberships(iid, lb_ids)
            assert {(m.group_kind.value, m.group_id, m.port) for m in found} == expected
            assert all(m.removable == (m.group_kind is not GroupKind.MASTER_SLAVE)
                       for m in found)
        # The fleet's own description: spot-1 is in 1 default group, vServer groups on ports
        # 80, 8080 and 443, and 1 master-slave group.
        spot = lb.find_memberships("i-bp1spot000000000001", lb_ids)
        assert sorted(m.group_kind.value for m in spot) == [
            "default", "master_slave", "vserver", "vserver", "vserver"]
        assert sorted(m.port or 0 for m in spot if m.group_kind is GroupKind.VSERVER) == [80, 443, 8080]
        others_before = {iid: lb.find_memberships(iid, lb_ids) for iid in
                         ("i-bp1web0000000000001", "i-bp1web0000000000002")}

        assert lb.remove_members([m for m in spot if m.removable]) == 4

        left = lb.find_memberships("i-bp1spot000000000001", lb_ids)
        assert [m.group_kind for m in left] == [GroupKind.MASTER_SLAVE]
        assert {iid: lb.find_memberships(iid, lb_ids) for iid in others_before} == others_before


def test_group_members_lists_every_member(lb: LbClient) -> None:
    """GIVEN the api vServer group WHEN listed THEN its three members with ports and weights."""
    members = lb.group_members(LB_WEB, "vserver", VG_API)

    assert [(m.server_id, m.port, m.weight, m.server_ip) for m in members] == [
        (WEB1, 8080, 100, "10.0.0.11"), (WEB2, 8080, 100, "10.0.0.12"),
        (SPOT1, 8080, 50, "10.0.0.14")]
    assert [m.server_id for m in lb.group_members(LB_WEB, GroupKind.DEFAULT, None)] == [
        WEB1, WEB2]


def test_list_load_balancers_by_tag_ids_and_server(emu: Emulator, lb: LbClient) -> None:
    """GIVEN two LBs WHEN filtered by tag, ids or backend server THEN the matching ones."""
    assert [b.id for b in lb.list_load_balancers(tag=("env", "prod"))] == [LB_WEB]
    assert lb.list_load_balancers(tag=("env", "prod"))[0].tags == (("env", "prod"),)
    assert [b.id for b in lb.list_load_balancers(ids=[LB_BATCH])] == [LB_BATCH]
    assert sorted(b.id for b in lb.list_load_balancers(server_id=SPOT1)) == [LB_WEB, LB_BATCH]
    assert [b.name for b in lb.list_load_balancers()] == ["web", "batch"]
    tagged = [c for c in calls_of(emu, "DescribeLoadBalancers") if "Tag.1.Key" in c.params]
    assert tagged[0].params["Tag.1.Key"] == "env"
    assert tagged[0].params["Tag.1.Value"] == "prod"


# --- drain: weights, removal, undo --------------------------------------------------------------


def test_set_weights_to_zero_then_restore(emu: Emulator, lb: LbClient) -> None:
    """GIVEN spot-1's memberships WHEN weighted 0 THEN drained; WHEN restored THEN as before."""
    before = members_of(emu, LB_WEB) + members_of(emu, LB_BATCH)
    found = lb.find_memberships(SPOT1, [LB_WEB, LB_BATCH])

    assert lb.set_weights(found, 0) == 3
    drained = lb.find_memberships(SPOT1, [LB_WEB, LB_BATCH])
    assert [m.weight for m in drained] == [0, 0, 0]
    set_default = calls_of(emu, "SetBackendServers")[0]
    assert json.loads(set_default.params["BackendServers"]) == [
        {"ServerId": SPOT1, "Weight": "0", "Type": "ecs"}]
    set_vg = calls_of(emu, "SetVServerGroupAttribute")[0]
    assert json.loads(set_vg.params["BackendServers"]) == [
        {"ServerId": SPOT1, "Port": "8080", "Weight": "0", "Type": "ecs"}]

    assert lb.set_weights(found) == 3  # None: each membership's own weight
    assert members_of(emu, LB_WEB) + members_of(emu, LB_BATCH) == before


def test_remove_members_removes_only_that_instance_pairs(emu: Emulator, lb: LbClient) -> None:
    """GIVEN web-1 and web-2 sharing groups WHEN web-1 is removed THEN web-2 and the master-slave
    group are untouched."""
    before = members_of(emu, LB_WEB)
    found = lb.find_memberships(WEB1, [LB_WEB])
    removable = [m for m in found if m.removable]

    assert lb.remove_members(removable) == 2

    after = members_of(emu, LB_WEB)
    assert after == [m for m in before
                     if not (m[2] == WEB1 and m[0] in ("default", "vserver"))]
    assert ("master_slave", MS, WEB1, 80, 100) in after
    [rm_vg] = calls_of(emu, "RemoveVServerGroupBackendServers")
    assert rm_vg.params["VServerGroupId"] == VG_API
    assert json.loads(rm_vg.params["BackendServers"]) == [
        {"ServerId": WEB1, "Port": "8080", "Type": "ecs"}]
    [rm_default] = calls_of(emu, "RemoveBackendServers")
    assert rm_default.params["LoadBalancerId"] == LB_WEB
    assert json.loads(rm_default.params["BackendServers"]) == [{"ServerId": WEB1, "Type": "ecs"}]


def test_remove_then_add_members_restores_the_groups(emu: Emulator, lb: LbClient) -> None:
    """GIVEN spot-1 removed everywhere WHEN its memberships are added back THEN as before."""
    before = members_of(emu, LB_WEB) + members_of(emu, LB_BATCH)
    found = lb.find_memberships(SPOT1, [LB_WEB, LB_BATCH])
    stored = [json.loads(json.dumps(m.snapshot())) for m in found]  # through the store

    lb.remove_members(found)
    assert lb.find_memberships(SPOT1, [LB_WEB, LB_BATCH]) == []
    restored = [Membership.from_snapshot(d) for d in stored]
    assert restored == found
    assert lb.add_members(restored) == 3

    assert members_of(emu, LB_WEB) + members_of(emu, LB_BATCH) == before
    [add_vg, _] = calls_of(emu, "AddVServerGroupBackendServers")
    assert json.loads(add_vg.params["BackendServers"]) == [
        {"ServerId": SPOT1, "Port": "8080", "Weight": "50", "Type": "ecs"}]


def test_membership_accepts_the_plain_group_kind_string() -> None:
    """GIVEN a Membership built with group_kind "master_slave" THEN it is not removable."""
    m = Membership(LB_WEB, "master_slave", MS, WEB1, 80, 100)  # type: ignore[arg-type]

    assert m.group_kind is GroupKind.MASTER_SLAVE
    assert not m.removable


def test_master_slave_memberships_are_refused(emu: Emulator, lb: LbClient) -> None:
    """GIVEN a master-slave membership WHEN removed or re-weighted THEN ValueError, no call."""
    ms = [m for m in lb.find_memberships(WEB1, [LB_WEB]) if not m.removable]
    emu.clear_calls()

    with pytest.raises(ValueError, match="master-slave"):
        lb.remove_members(ms)
    with pytest.raises(ValueError, match="master-slave"):
        lb.set_weights(ms, 0)
    assert emu.calls() == []


def test_dry_run_makes_no_write_call(emu: Emulator, lb: LbClient) -> None:
    """GIVEN dry_run WHEN weights, removal or add are asked THEN 0 calls, nothing changes."""
    found = lb.find_memberships(SPOT1, [LB_WEB, LB_BATCH])
    emu.clear_calls()

    assert lb.set_weights(found, 0, dry_run=True) == 0
    assert lb.remove_members(found, dry_run=True) == 0
    assert lb.add_members(found, dry_run=True) == 0
    assert emu.calls() == []


def _wide_fleet(count: int) -> Fleet:
    ids = [f"i-wide{n:04d}" for n in range(count)]
    return Fleet.from_dict({
        "instances": [{"id": i, "status": "Running"} for i in ids],
        "load_balancers": [{
            "id": "lb-wide0001",
            "default_servers": [{"server_id": i, "weight": 100} for i in ids],
            "vserver_groups": [{"id": "rsp-wide0001", "servers": [
                {"server_id": i, "port": 80 + n % 2, "weight": 60} for n, i in enumerate(ids)]}],
        }],
    })


def test_more_than_20_memberships_are_split_into_calls_of_20(
    emu: Emulator,
) -> None:
    """GIVEN 25 servers in the default and a vServer group WHEN drained, removed and re-added
    THEN every call carries at most 20 BackendServers and the groups round-trip."""
    with Emulator(_wide_fleet(25), start_delay_s=0.01) as wide:
        lb = clients_for(wide).lb
        members = (lb.group_members("lb-wide0001", "default", None)
                   + lb.group_members("lb-wide0001", "vserver", "rsp-wide0001"))
        assert len(members) == 50

        assert lb.set_weights(members, 0) == 4
        assert lb.remove_members(members) == 4
        assert lb.group_members("lb-wide0001", "vserver", "rsp-wide0001") == []
        assert lb.add_members(members) == 4
        again = (lb.group_members("lb-wide0001", "default", None)
                 + lb.group_members("lb-wide0001", "vserver", "rsp-wide0001"))
        writes = [c for c in wide.calls() if not c.action.startswith("Describe")]

    assert sorted(again, key=repr) == sorted(members, key=repr)
    sizes = [(c.action, len(json.loads(c.params["BackendServers"]))) for c in writes]
    assert sizes == [
        ("SetBackendServers", 20), ("SetBackendServers", 5),
        ("SetVServerGroupAttribute", 20), ("SetVServerGroupAttribute", 5),
        ("RemoveBackendServers", 20), ("RemoveBackendServers", 5),
        ("RemoveVServerGroupBackendServers", 20), ("RemoveVServerGroupBackendServers", 5),
        ("AddBackendServers", 20), ("AddBackendServers", 5),
        ("AddVServerGroupBackendServers", 20), ("AddVServerGroupBackendServers", 5),
    ]


def test_lb_calls_retry_and_then_raise_transient_error(emu: Emulator) -> None:
    """GIVEN the SLB API failing with 503 WHEN removing THEN 4 attempts, then TransientError."""
    sleep = RecordingSleep()
    lb = clients_for(emu, sleep).lb
    found = [m for m in lb.find_memberships(SPOT1, [LB_BATCH]) if m.group_kind == "vserver"]
    emu.set_faults(fail_next={"RemoveVServerGroupBackendServers": ["ServiceUnavailable"] * 4})

    with pytest.raises(TransientError) as caught:
        lb.remove_members(found)

    assert caught.value.http_status == 503
    assert caught.value.attempts == 4
    assert len(sleep.delays) == 3
    assert VG_JOBS in str(caught.value)
    assert SPOT1 in str(caught.value)


# --- ActionTrail -------------------------------------------------------------------------------


def test_lookup_instance_events_names_the_user_who_stopped(emu: Emulator) -> None:
    """GIVEN a console stop by alice WHEN ActionTrail is read THEN one StopInstance by alice."""
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    emu.stop_instance(WEB1, by="user", user="alice")
    trail = clients_for(emu).trail

    records = trail.lookup_instance_events(WEB1, start, datetime.now(timezone.utc)
                                           + timedelta(seconds=1))

    assert [(r.event_name, r.user_name, r.user_type, r.instance_ids) for r in records] == [
        ("StopInstance", "alice", "ram-user", (WEB1,))]
    assert records[0].event_time.tzinfo is not None
    assert start - timedelta(seconds=1) <= records[0].event_time
    [call] = calls_of(emu, "LookupEvents")
    assert call.params["LookupAttribute.1.Key"] == "ResourceName"
    assert call.params["LookupAttribute.1.Value"] == WEB1
    assert call.params["StartTime"].endswith("Z")
    assert call.params["EndTime"].endswith("Z")


def test_lookup_instance_events_filters_names_and_other_instances(emu: Emulator) -> None:
    """GIVEN starts and stops of several instances WHEN looked up THEN only this one's stops."""
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    clients = clients_for(emu)
    clients.ecs.start_instance(BATCH1)  # a StartInstance record for another instance
    emu.stop_instance(WEB2, by="user", user="bob")

    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert [r.user_name for r in clients.trail.lookup_instance_events(WEB2, start, end)] == [
        "bob"]
    assert clients.trail.lookup_instance_events(BATCH1, start, end) == []
    starts = clients.trail.lookup_instance_events(BATCH1, start, end, ("StartInstance",))
    assert [r.event_name for r in starts] == ["StartInstance"]


def test_lookup_instance_events_pages_through_next_token(emu: Emulator) -> None:
    """GIVEN 60 records for one instance WHEN looked up THEN both pages are read (50 + 10)."""
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    clients = clients_for(emu)
    for _ in range(30):
        emu.stop_instance(WEB2, by="user", user="carol")
        emu.wait_for_status(WEB2, "Stopped")
        clients.ecs.start_instance(WEB2)
        emu.wait_for_status(WEB2, "Running")

    records = clients.trail.lookup_instance_events(
        WEB2, start, datetime.now(timezone.utc) + timedelta(seconds=1),
        ("StopInstance", "StartInstance"))

    assert len(records) == 60
    assert [r.event_time for r in records] == sorted((r.event_time for r in records),
                                                     reverse=True)
    assert len(calls_of(emu, "LookupEvents")) == 2


def test_lookup_rejects_naive_datetimes(emu: Emulator) -> None:
    """GIVEN a naive datetime WHEN looking up THEN ValueError before any call."""
    with pytest.raises(ValueError, match="naive"):
        clients_for(emu).trail.lookup_instance_events(
            WEB1, datetime(2026, 1, 1), datetime.now(timezone.utc))
    assert emu.calls() == []
