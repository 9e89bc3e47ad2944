"""A spot drain finds its instance's memberships by instance id, ENI ids and private IPs, and a
membership found by a private IP only in the instance's VPC (shared.spot.index.Owner): through
drain_spot and the sweep, the real SDKs against the emulator (tests/fixtures/fleets/eni.yaml:
spot-1's secondary ENI an Eni member of an ALB group, its IP an Ip member of an NLB group in its
VPC; other-1, in another VPC with the same private IP, an Ip member and an Eni member there)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.drain import sweep_drains
from shared.lb.model import GroupKind, Membership, Product
from shared.settings import Settings
from shared.spot.index import MembershipIndex, Owner, scan_key
from shared.store import Store
from tests.helpers import clients_for, emulator_for
from tests.test_drain_spot import notice
from tools.emulator import Emulator
from tools.invoke import invoke_local

SPOT = "i-bp1spot000000000001"
SPOT_IP = "10.0.1.21"
SPOT_ENI = "eni-bp1spotsecond0001"  # secondary ENI, 10.0.1.22: found by its id only
SPOT_PRIMARY_ENI = "eni-bp1spotprimary0001"
OTHER_ENI = "eni-bp1other00000000001"  # other-1's, another VPC, the same 10.0.1.21
VPC = "vpc-bp1main0000000001"
OTHER_VPC = "vpc-bp1other000000001"
ENI_GROUP = "sgp-bp1enimain000000001"  # ALB, spot-1's VPC
IP_GROUP = "sgp-bp1ipmain0000000001"  # NLB Ip group, spot-1's VPC
OTHER_ENI_GROUP = "sgp-bp1eniother00000001"  # ALB, the other VPC
OTHER_IP_GROUP = "sgp-bp1ipother000000001"  # NLB Ip group, the other VPC
GROUPS = (ENI_GROUP, IP_GROUP, OTHER_ENI_GROUP, OTHER_IP_GROUP)
OTHERS = (OTHER_ENI_GROUP, OTHER_IP_GROUP)
REGION = "cn-hangzhou"
ENV = {"ECS_EVENT_OPS_DRAIN_TIME_S": "0.2", "ECS_EVENT_OPS_LB_PRODUCTS": "alb,nlb",
       "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01", "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05"}
# A scope: the sweep's released-backend scan fills the index only where one is set.
SCOPED = {**ENV, "ECS_EVENT_OPS_ALB_GROUP_IDS": f"{ENI_GROUP},{OTHER_ENI_GROUP}",
          "ECS_EVENT_OPS_NLB_GROUP_IDS": f"{IP_GROUP},{OTHER_IP_GROUP}"}
Member = tuple[str, str, int]


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("eni.yaml", monkeypatch, start_delay_s=0.01, lb_job_s=0.05) as emulator:
        yield emulator


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    instance = Store(f"sqlite:///{tmp_path / 'eni.sqlite3'}")
    yield instance
    instance.close()


def settings_for(emu: Emulator, store: Store, env: dict[str, str]) -> Settings:
    return Settings.from_env({**env, "ECS_EVENT_OPS_CLOUD_URL": emu.url,
                              "ECS_EVENT_OPS_DB_URL": store.url})


def members(emu: Emulator) -> dict[Member, int]:
    """(group, server, port) -> weight over the four groups."""
    return {(g, m["server_id"], m["port"]): m["weight"]
            for g in GROUPS for m in emu.lb_group(g)["members"]}


def drained(before: dict[Member, int]) -> dict[Member, int]:
    """spot-1's Eni member and its VPC's Ip member gone; the other VPC's as they were."""
    return {k: v for k, v in before.items()
            if k[:2] not in ((ENI_GROUP, SPOT_ENI), (IP_GROUP, SPOT_IP))}


def invoke(emu: Emulator, store: Store, body: Any, env: dict[str, str]) -> dict[str, Any]:
    result = invoke_local("drain_spot", json.dumps(body).encode(), cloud_url=emu.url,
                          db_url=store.url, env=env)
    if result.error is not None:
        raise result.error
    assert isinstance(result.value, dict)
    return result.value


def build_index(emu: Emulator, store: Store) -> None:
    """The sweep's released-backend scan of the four groups fills the index."""
    settings = settings_for(emu, store, SCOPED)
    sweep_drains(store, clients_for(emu, settings), None, settings, datetime.now(timezone.utc))
    assert MembershipIndex(store).scanned_at(REGION) is not None


def assert_the_other_vpc_is_nowhere(emu: Emulator, store: Store, drain: dict[str, Any],
                                    before: dict[Member, int]) -> None:
    """The other VPC's groups: no write, the same members, named in neither the drain's result
    nor its ledger entry nor the scan's (but in the scope they list: what was read)."""
    assert {k: v for k, v in members(emu).items() if k[0] in OTHERS} == {
        k: v for k, v in before.items() if k[0] in OTHERS}
    writes = [c for c in emu.calls() if c.product in ("alb", "nlb")
              and not c.action.startswith(("List", "Get"))]
    assert writes and not [c for c in writes if c.params.get("ServerGroupId") in OTHERS]
    entry = store.ledger_get(drain["key"])
    scan = store.ledger_get(scan_key(REGION))
    for data in (drain, entry.data if entry else None, scan.data if scan else None):
        text = json.dumps({k: v for k, v in (data or {}).items() if k != "scope"})
        assert not [g for g in OTHERS if g in text], text


def test_without_the_index_the_drain_finds_its_eni_member_and_only_its_vpc_s_ip_member(
        emu: Emulator, store: Store) -> None:
    """GIVEN no index yet WHEN spot-1's notice arrives THEN the groups are read and its Eni
    member (by its secondary ENI's id) and its VPC's Ip member are drained; the Ip and Eni
    members of its IP in the other VPC are touched and reported nowhere."""
    before = members(emu)
    emu.clear_calls()
    out = invoke(emu, store, notice(emu, SPOT), ENV)
    (drain,) = out["drains"]
    assert drain["outcome"] == "drained"
    assert drain["index"]["used"] is False
    assert sorted(m["group_id"] for m in drain["removed"]) == [ENI_GROUP, IP_GROUP]
    assert members(emu) == drained(before)
    entry = store.ledger_get(drain["key"])
    assert entry is not None
    assert entry.data["instance"]["eni_ids"] == [SPOT_PRIMARY_ENI, SPOT_ENI]
    assert entry.data["instance"]["vpc_id"] == VPC
    assert SPOT_ENI in entry.data["index_keys"]
    assert {m["vpc_id"] for m in entry.data["memberships"]} == {VPC}
    assert_the_other_vpc_is_nowhere(emu, store, drain, before)


def test_with_the_index_the_drain_finds_its_eni_member_there_and_keeps_the_other_vpc_s_rows(
        emu: Emulator, store: Store) -> None:
    """GIVEN the index built by the sweep WHEN spot-1's notice arrives THEN its two memberships
    come from the index (no group read before the first write) and are drained; the other
    VPC's members of the same IP are not counted, not touched, and stay in the index."""
    build_index(emu, store)
    before = members(emu)
    emu.clear_calls()
    out = invoke(emu, store, notice(emu, SPOT), SCOPED)
    (drain,) = out["drains"]
    assert drain["outcome"] == "drained"
    assert drain["index"]["used"] is True
    assert drain["index"]["hits"] == 2
    calls = emu.calls()
    first = next(i for i, c in enumerate(calls) if c.action.startswith(("Update", "Remove")))
    assert not [c for c in calls[:first] if c.action == "ListServerGroupServers"]
    assert members(emu) == drained(before)
    assert_the_other_vpc_is_nowhere(emu, store, drain, before)
    left = MembershipIndex(store).lookup(REGION, [SPOT_IP])
    assert sorted(s["group_id"] for s in left.snapshots) == sorted(OTHERS)


def test_the_shared_scan_drains_an_eni_member_registered_since_the_index_was_built(
        emu: Emulator, store: Store) -> None:
    """GIVEN an index older than the fresh time and spot-1's secondary ENI added to the ALB
    group on another port since WHEN its notice arrives THEN the indexed memberships are drained
    at once and the burst's scan finds the new one by its ENI id (late) and drains it; nothing
    of the other VPC is late."""
    build_index(emu, store)
    settings = settings_for(emu, store, SCOPED)
    lbs = clients_for(emu, settings).lbs
    added = Membership("", GroupKind.SERVER_GROUP, ENI_GROUP, SPOT_ENI, 8080, 40,
                       server_type="Eni", server_ip="10.0.1.22", product=Product.ALB)
    lbs.wait(lbs.add([added], token_seed="test"), timeout_s=5)
    old = (datetime.now(timezone.utc) - timedelta(seconds=120)).isoformat()
    store.ledger_update(scan_key(REGION), data={"started_at": old, "scanned_at": old})
    before = members(emu)
    assert before[(ENI_GROUP, SPOT_ENI, 8080)] == 40
    emu.clear_calls()
    out = invoke(emu, store, notice(emu, SPOT), {**SCOPED, "ECS_EVENT_OPS_LB_INDEX_FRESH_S": "60"})
    (drain,) = out["drains"]
    assert drain["outcome"] == "drained"
    assert drain["index"]["used"] is True
    assert members(emu) == {k: v for k, v in drained(before).items()
                            if k != (ENI_GROUP, SPOT_ENI, 8080)}
    scan = store.ledger_get(scan_key(REGION))
    assert scan is not None and scan.status == "done"
    (late,) = scan.data["late"][drain["key"]]
    assert (late["group_id"], late["port"], late["weight"], late["server"]) == (
        ENI_GROUP, 8080, 40, SPOT_ENI)
    assert_the_other_vpc_is_nowhere(emu, store, drain, before)


def _member(server_id: str, server_type: str, vpc_id: str | None) -> Membership:
    return Membership("", GroupKind.SERVER_GROUP, "sgp-bp1x0001", server_id, 80, 100,
                      server_type=server_type, server_ip=SPOT_IP, product=Product.NLB,
                      vpc_id=vpc_id)


@pytest.mark.parametrize(("member", "owner", "owned"), [
    (_member(SPOT, "Ecs", OTHER_VPC), Owner(SPOT, frozenset(), VPC), True),  # by its id
    (_member(SPOT_ENI, "Eni", OTHER_VPC), Owner(SPOT, frozenset({SPOT_ENI}), VPC), True),
    (_member("i-bp1web0000000000001", "Ecs", VPC), Owner(SPOT, frozenset(), VPC), False),
    (_member(SPOT_IP, "Ip", VPC), Owner(SPOT, frozenset(), VPC), True),
    (_member(SPOT_IP, "Ip", OTHER_VPC), Owner(SPOT, frozenset(), VPC), False),
    (_member(OTHER_ENI, "Eni", OTHER_VPC), Owner(SPOT, frozenset({SPOT_ENI}), VPC), False),
    (_member(OTHER_ENI, "Eni", VPC), Owner(SPOT, frozenset({SPOT_ENI}), VPC), True),
    # either VPC unknown (a CLB member, an older snapshot or drain): counted, as before
    (_member(SPOT_IP, "Ip", None), Owner(SPOT, frozenset(), VPC), True),
    (_member(SPOT_IP, "Ip", OTHER_VPC), Owner(SPOT), True),
])
def test_a_membership_found_by_a_key_is_the_instance_s_by_id_or_in_its_vpc(
        member: Membership, owner: Owner, owned: bool) -> None:
    """By instance or ENI id: its own; an ecs member found by an IP: another's; found by an
    IP: its own in its VPC, or when either VPC is unknown."""
    assert owner.owns(member) is owned


def test_older_drains_and_snapshots_read_as_before() -> None:
    """GIVEN a drain entry and a membership snapshot written before ENIs and VPCs were kept
    THEN the owner knows no ENI nor VPC and the membership no VPC: an Ip member counts; a
    snapshot with its VPC reads it back, and the VPC is no part of the membership's identity."""
    owner = Owner.of(SPOT, {"instance": {"private_ips": [SPOT_IP]}, "index_keys": [SPOT]})
    assert owner == Owner(SPOT)
    assert Owner.of(None, {}) == Owner("")
    old = _member(SPOT_IP, "Ip", None).snapshot()
    assert "vpc_id" not in old
    assert owner.owns(Membership.from_snapshot(old))
    new = _member(SPOT_IP, "Ip", OTHER_VPC)
    assert Membership.from_snapshot(new.snapshot()).vpc_id == OTHER_VPC
    assert Membership.from_snapshot(old) == new
    assert new.with_weight(0).vpc_id == OTHER_VPC
