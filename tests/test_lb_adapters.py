"""The ALB and NLB adapters (shared/lb/alb.py, nlb.py) and the one interface over the three
products (shared/lb/pools.py), through the real Tea SDKs against the emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.clients import Clients, CloudError, Credentials
from shared.lb.model import GroupKind, GroupRef, JobStatus, Membership, Product, client_token
from shared.lb.pools import LbScope
from shared.settings import Settings
from tests.helpers import FLEETS
from tools.emulator import Emulator, load_fleet

SPOT = "i-bp1spot000000000001"
SPOT_IP = "10.0.1.21"
WEB1 = "i-bp1web0000000000001"
WEB2 = "i-bp1web0000000000002"
NEW1 = "i-bp1new0000000000001"
ALB_DRAIN = "sgp-bp1drain000000001"
ALB_PLAIN = "sgp-bp1plain000000001"
ALB_ACK = "sgp-bp1ack0000000001"
NLB_TCP = "sgp-bp1tcp0000000001"
NLB_IP = "sgp-bp1ipgrp00000001"
EVERYWHERE = LbScope(products=frozenset({Product.ALB, Product.NLB}))


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "lb.yaml"), start_delay_s=0.01, lb_job_s=0.05) as emulator:
        yield emulator


def clients_for(emu: Emulator) -> Clients:
    cred = emu.credentials[0]
    settings = Settings.from_env({}, cloud_url=emu.url, region="cn-hangzhou")
    return Clients.from_settings(
        settings, Credentials(cred["access_key_id"], cred["access_key_secret"]), sleep=time.sleep)


def calls(emu: Emulator, action: str) -> list[Any]:
    """The calls of ``product:Action``."""
    product, _, name = action.partition(":")
    return [c for c in emu.calls() if c.product == product and c.action == name]


def group_state(emu: Emulator, group_id: str) -> list[tuple[str, int | None, int]]:
    return sorted((m["server_id"], m["port"], m["weight"])
                  for m in emu.lb_group(group_id)["members"])


def test_find_sees_every_membership_of_an_instance_and_its_ip_on_alb_and_nlb(
        emu: Emulator) -> None:
    """GIVEN spot-1 in 3 ALB groups (one ACK-managed), an NLB group and, by IP, an NLB Ip group
    WHEN found by instance id and private IP THEN all 5, each with its group's drain settings."""
    lbs = clients_for(emu).lbs
    found = lbs.find([SPOT, SPOT_IP], EVERYWHERE)
    assert sorted((m.product.value, m.group_id, m.server_id, m.server_type, m.port, m.weight,
                   m.native_drain, m.drain_timeout_s if m.native_drain else None, m.managed_by)
                  for m in found) == [
        ("alb", ALB_ACK, SPOT, "Ecs", 30080, 100, False, None, "kubernetes"),
        ("alb", ALB_DRAIN, SPOT, "Ecs", 80, 100, True, 30, None),
        ("alb", ALB_PLAIN, SPOT, "Ecs", 8080, 50, False, None, None),
        ("nlb", NLB_IP, SPOT_IP, "Ip", 5432, 100, True, 10, None),
        ("nlb", NLB_TCP, SPOT, "Ecs", 443, 100, False, None, None),
    ]
    assert all(m.load_balancer_id.startswith(("alb-", "nlb-")) for m in found)
    assert [m.removable for m in found if m.group_id == ALB_ACK] == [False]
    # NLB: one cross-group call (no ServerGroupId) found both NLB memberships
    assert len(calls(emu, "nlb:ListServerGroupServers")) == 1


def test_find_in_named_groups_only(emu: Emulator) -> None:
    """GIVEN a scope naming one ALB and one NLB group THEN only those are searched."""
    scope = LbScope(alb_group_ids=(ALB_PLAIN,), nlb_group_ids=(NLB_TCP,),
                    products=frozenset({Product.ALB, Product.NLB}))
    found = clients_for(emu).lbs.find([SPOT], scope)
    assert sorted(m.group_id or "" for m in found) == sorted([ALB_PLAIN, NLB_TCP])


def test_scan_returns_every_member_of_every_group(emu: Emulator) -> None:
    """GIVEN the fleet WHEN scanned THEN every member of every ALB and NLB group."""
    found = clients_for(emu).lbs.scan(EVERYWHERE)
    expected = sum(len(emu.lb_group(g)["members"])
                   for g in (ALB_DRAIN, ALB_PLAIN, ALB_ACK, NLB_TCP, NLB_IP))
    assert len(found) == expected == 8


def test_weight_zero_is_a_job_then_restore_puts_the_original_weights_back(emu: Emulator) -> None:
    """GIVEN spot-1's removable memberships WHEN set to weight 0 and waited THEN every group
    holds weight 0 for it (others untouched); set back from the record THEN as before."""
    lbs = clients_for(emu).lbs
    found = [m for m in lbs.find([SPOT, SPOT_IP], EVERYWHERE) if m.removable]
    before = {g: group_state(emu, g) for g in (ALB_DRAIN, ALB_PLAIN, NLB_TCP, NLB_IP)}
    writes = lbs.set_weights(found, 0, token_seed="drain:test:0")
    assert len(writes) == 4 and all(w.job_id for w in writes)
    assert lbs.wait(writes, timeout_s=10) == []
    for group, members in before.items():
        assert group_state(emu, group) == [
            (s, p, 0 if s in (SPOT, SPOT_IP) else w) for s, p, w in members]
    back = lbs.set_weights(found, None, token_seed="restore:test:0")
    assert lbs.wait(back, timeout_s=10) == []
    assert {g: group_state(emu, g) for g in before} == before


def test_remove_then_add_restores_ports_and_weights(emu: Emulator) -> None:
    """GIVEN spot-1 removed from every removable group WHEN added back from the snapshots
    THEN each group holds it again with its port, type, IP and weight."""
    lbs = clients_for(emu).lbs
    found = [m for m in lbs.find([SPOT, SPOT_IP], EVERYWHERE) if m.removable]
    before = {g: group_state(emu, g) for g in (ALB_DRAIN, ALB_PLAIN, NLB_TCP, NLB_IP)}
    emu.set_lb_jobs(drain_scale=0.001)
    assert lbs.wait(lbs.remove(found, token_seed="drain:test:1"), timeout_s=10) == []
    assert lbs.find([SPOT, SPOT_IP], EVERYWHERE) == [
        m for m in lbs.find([SPOT, SPOT_IP], EVERYWHERE) if not m.removable]
    stored = [Membership.from_snapshot(m.snapshot()) for m in found]
    assert lbs.wait(lbs.add(stored, token_seed="restore:test:1"), timeout_s=10) == []
    assert {g: group_state(emu, g) for g in before} == before


def test_the_same_request_retried_carries_the_same_token_and_makes_one_job(emu: Emulator) -> None:
    """GIVEN a weight-0 write sent twice with the same seed THEN the same ClientToken, one job
    (the emulator answers the first JobId again)."""
    alb = clients_for(emu).alb
    members = alb.find([SPOT], [ALB_PLAIN])
    first = alb.write_weights(members, 0, token_seed="drain:x:0")
    second = alb.write_weights(members, 0, token_seed="drain:x:0")
    assert [w.token for w in first] == [w.token for w in second]
    assert [w.job_id for w in first] == [w.job_id for w in second]
    assert first[0].token == client_token(
        "drain:x:0", "alb:UpdateServerGroupServersAttribute", members, 0)
    assert len(emu.lb_jobs("alb")) == 1


def test_a_write_on_a_configuring_group_is_retried_until_the_job_ends(emu: Emulator) -> None:
    """GIVEN a job running on the NLB group WHEN another write comes THEN Conflict.Lock is
    retried and the write lands."""
    emu.set_lb_jobs(job_s=0.3)
    nlb = clients_for(emu).nlb
    members = nlb.find([SPOT], [NLB_TCP])
    nlb.write_weights(members, 0, token_seed="a")
    writes = nlb.write_weights(members, 10, token_seed="b")
    assert clients_for(emu).lbs.wait(writes, timeout_s=10) == []
    assert "Conflict.Lock" in [c.code for c in calls(emu, "nlb:UpdateServerGroupServersAttribute")]
    assert (SPOT, 443, 10) in group_state(emu, NLB_TCP)


def test_dry_run_sends_dry_run_and_changes_nothing(emu: Emulator) -> None:
    """GIVEN DryRun WHEN weight 0 / remove THEN the DryRunOperation verdict reads as success,
    no job, nothing changed."""
    lbs = clients_for(emu).lbs
    found = [m for m in lbs.find([SPOT], EVERYWHERE) if m.removable]
    before = {g: group_state(emu, g) for g in (ALB_DRAIN, ALB_PLAIN, NLB_TCP)}
    writes = lbs.set_weights(found, 0, token_seed="d", dry_run=True) + lbs.remove(
        found, token_seed="d", dry_run=True)
    assert writes and all(w.dry_run and w.job_id is None for w in writes)
    assert lbs.wait(writes, timeout_s=1) == []
    assert {g: group_state(emu, g) for g in before} == before
    assert emu.lb_jobs("alb") == [] and emu.lb_jobs("nlb") == []


def test_a_kubernetes_managed_group_is_never_written(emu: Emulator) -> None:
    """GIVEN the ACK-tagged ALB group WHEN a write is asked THEN refused before any call."""
    alb = clients_for(emu).alb
    managed = alb.find([SPOT], [ALB_ACK])
    assert [m.managed_by for m in managed] == ["kubernetes"]
    with pytest.raises(ValueError, match="kubernetes"):
        alb.write_remove(managed)
    assert calls(emu, "alb:RemoveServersFromServerGroup") == []


def test_removing_a_member_already_gone_is_done(emu: Emulator) -> None:
    """GIVEN spot-1 removed from the NLB group already WHEN removed again with web-2 THEN web-2
    is removed, and spot-1's absence is no error."""
    lbs = clients_for(emu).lbs
    members = clients_for(emu).nlb.group_members(NLB_TCP)
    spot = [m for m in members if m.server_id == SPOT]
    assert lbs.wait(lbs.remove(spot, token_seed="r1"), timeout_s=10) == []
    assert lbs.wait(lbs.remove(members, token_seed="r2"), timeout_s=10) == []
    assert group_state(emu, NLB_TCP) == []


def test_a_gone_group_is_not_found(emu: Emulator) -> None:
    """GIVEN a server group id that does not exist THEN members_of raises NotFoundError."""
    from shared.clients import NotFoundError

    with pytest.raises(NotFoundError):
        clients_for(emu).lbs.members_of(
            GroupRef(Product.NLB, "", GroupKind.SERVER_GROUP, "sgp-bp1nothere0000001"))


def test_job_statuses_read_back_alb_and_nlb_jobs(emu: Emulator) -> None:
    """GIVEN one job per product WHEN finished THEN both read back as succeeded."""
    c = clients_for(emu)
    a = c.alb.write_weights(c.alb.find([SPOT], [ALB_PLAIN]), 0, token_seed="j")
    n = c.nlb.write_weights(c.nlb.find([SPOT], [NLB_TCP]), 0, token_seed="j")
    emu.finish_lb_jobs()
    assert c.alb.job_statuses([a[0].job_id or ""]) == {a[0].job_id: (JobStatus.SUCCEEDED, None)}
    assert c.nlb.job_statuses([n[0].job_id or ""]) == {n[0].job_id: (JobStatus.SUCCEEDED, None)}


def test_a_failed_nlb_job_is_never_done_and_a_new_token_redoes_it(emu: Emulator) -> None:
    """GIVEN an ALB and an NLB weight-0 job that both fail WHEN waited THEN the ALB one is
    failed, the NLB one still unfinished when the time is up (GetJobStatus documents no
    failed state), neither done; the same token answers the failed NLB job again, a new one
    makes a job that lands."""
    emu.set_lb_jobs(job_s=60)
    c = clients_for(emu)
    lbs = c.lbs
    alb = lbs.set_weights(c.alb.find([SPOT], [ALB_PLAIN]), 0, token_seed="f")
    members = c.nlb.find([SPOT], [NLB_TCP])
    nlb = lbs.set_weights(members, 0, token_seed="f")
    emu.fail_lb_job(alb[0].job_id or "", "IncorrectStatus.ServerGroup")
    emu.fail_lb_job(nlb[0].job_id or "", "IncorrectStatus.serverGroup")
    assert lbs.wait_jobs([*alb, *nlb], timeout_s=0.5) == (alb, nlb)
    assert c.nlb.job_statuses([nlb[0].job_id or ""]) == {nlb[0].job_id: (JobStatus.PROCESSING,
                                                                         None)}
    assert (SPOT, 443, 100) in group_state(emu, NLB_TCP)
    assert [w.job_id for w in lbs.set_weights(members, 0, token_seed="f")] == [nlb[0].job_id]
    emu.set_lb_jobs(job_s=0.05)
    again = lbs.set_weights(members, 0, token_seed="f:1")
    assert again[0].token != nlb[0].token
    assert lbs.wait(again, timeout_s=10) == []
    assert (SPOT, 443, 0) in group_state(emu, NLB_TCP)


def test_snapshots_of_old_clb_entries_read_as_clb() -> None:
    """GIVEN a snapshot stored before ALB/NLB (no product key) THEN a CLB membership whose
    snapshot is the same dict again; ALB/NLB snapshots round-trip with their drain settings."""
    old = {"load_balancer_id": "lb-1", "group_kind": "vserver", "group_id": "rsp-1",
           "server_id": SPOT, "port": 80, "weight": 30, "server_type": "ecs", "server_ip": None,
           "description": None, "role": None}
    m = Membership.from_snapshot(old)
    assert m.product is Product.CLB and m.snapshot() == old
    alb = Membership("alb-1", GroupKind.SERVER_GROUP, ALB_DRAIN, SPOT, 80, 100, "Ecs",
                     product=Product.ALB, native_drain=True, drain_timeout_s=30)
    assert Membership.from_snapshot(alb.snapshot()) == alb
    assert alb.group == GroupRef(Product.ALB, "", GroupKind.SERVER_GROUP, ALB_DRAIN)


def test_cloud_errors_of_a_failed_write_name_the_group(emu: Emulator) -> None:
    """GIVEN a permanent refusal WHEN the write is sent THEN a CloudError naming the group."""
    emu.set_faults(fail_next={"nlb:UpdateServerGroupServersAttribute": ["IllegalParam.Servers:400"]})
    nlb = clients_for(emu).nlb
    with pytest.raises(CloudError) as caught:
        nlb.write_weights(nlb.find([SPOT], [NLB_TCP]), 0, token_seed="e")
    assert NLB_TCP in caught.value.resource_ids
