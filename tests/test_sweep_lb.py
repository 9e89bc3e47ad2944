"""The sweep handler on ALB and NLB: a drained instance that was not reclaimed is put back
(added where removed, re-weighted where present at weight 0), and released backends are removed,
through the real SDKs against the emulator (tests/fixtures/fleets/lb.yaml)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.clients import Clients, Credentials
from shared.lb.model import GroupKind, Membership, Product
from shared.settings import Settings
from tests.helpers import emulator_for
from tools.emulator import Emulator
from tools.invoke import invoke_local

SPOT = "i-bp1spot000000000001"
WEB1 = "i-bp1web0000000000001"
WEB2 = "i-bp1web0000000000002"
ALB_DRAIN = "sgp-bp1drain000000001"
ALB_PLAIN = "sgp-bp1plain000000001"
ALB_ACK = "sgp-bp1ack0000000001"
NLB_TCP = "sgp-bp1tcp0000000001"
NLB_IP = "sgp-bp1ipgrp00000001"
GROUPS = (ALB_DRAIN, ALB_PLAIN, ALB_ACK, NLB_TCP, NLB_IP)
TIMER = json.dumps({"triggerTime": "2026-11-23T00:00:00Z", "triggerName": "sweep",
                    "payload": ""}).encode()
ENV = {"ECS_EVENT_OPS_LB_PRODUCTS": "alb,nlb", "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01",
       "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05"}


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("lb.yaml", monkeypatch, start_delay_s=0.01, lb_job_s=0.05) as emulator:
        emulator.set_lb_jobs(drain_scale=0.01)
        yield emulator


def groups(emu: Emulator) -> dict[tuple[str, str, int | None], int]:
    return {(g, m["server_id"], m["port"]): m["weight"]
            for g in GROUPS for m in emu.lb_group(g)["members"]}


def writes(emu: Emulator) -> list[tuple[str, str, str]]:
    return sorted((c.product, c.action, str(c.params.get("ServerGroupId")))
                  for c in emu.calls() if c.product in ("alb", "nlb") and c.status == 200
                  and not c.action.startswith(("List", "Get")))


def test_the_sweep_restores_alb_nlb_memberships_and_removes_released_backends(
        emu: Emulator, tmp_path: Path) -> None:
    """GIVEN spot-1 drained by drain_spot, then re-registered at weight 0 in one ALB and one
    NLB group, not reclaimed, and web-1 / web-2 released while registered WHEN the sweep runs
    past restore_after_s THEN spot-1 is back everywhere with its original weights and ports
    (added where removed, re-weighted where present), and the released backends are gone."""
    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    before = groups(emu)
    emu.interrupt_spot(SPOT)
    drained = invoke_local("drain_spot", json.dumps(emu.events()[-1]).encode(),
                           cloud_url=emu.url, db_url=db,
                           env={**ENV, "ECS_EVENT_OPS_DRAIN_TIME_S": "0.1"})
    assert drained.error is None, drained.error
    assert drained.value["drains"][0]["outcome"] == "drained"
    cred = emu.credentials[0]
    lbs = Clients.from_settings(Settings.from_env(cloud_url=emu.url), Credentials(
        cred["access_key_id"], cred["access_key_secret"])).lbs
    readd = [Membership("", GroupKind.SERVER_GROUP, ALB_DRAIN, SPOT, 80, 0, "Ecs",
                        product=Product.ALB),
             Membership("", GroupKind.SERVER_GROUP, NLB_TCP, SPOT, 443, 0, "Ecs",
                        product=Product.NLB)]
    assert lbs.wait(lbs.add(readd, token_seed="manual"), timeout_s=10) == []
    emu.unlock(SPOT)
    emu.release(WEB1)
    emu.release(WEB2)
    emu.clear_calls()
    result = invoke_local("sweep", TIMER, cloud_url=emu.url, db_url=db, env={
        **ENV, "ECS_EVENT_OPS_RESTORE_AFTER_S": "-1000",
        "ECS_EVENT_OPS_ALB_GROUP_IDS": f"{ALB_DRAIN},{ALB_PLAIN}",
        "ECS_EVENT_OPS_NLB_GROUP_IDS": NLB_TCP})
    assert result.error is None, result.error
    drains = result.value["drains"]
    assert drains["restored"] == [SPOT]
    assert sorted((r["instance_id"], r["group_id"]) for r in drains["released_backends_removed"]) == [
        (WEB1, ALB_DRAIN), (WEB2, ALB_PLAIN), (WEB2, NLB_TCP)]
    assert groups(emu) == {k: v for k, v in before.items() if k[1] not in (WEB1, WEB2)}
    assert writes(emu) == sorted([
        ("alb", "AddServersToServerGroup", ALB_PLAIN),
        ("alb", "UpdateServerGroupServersAttribute", ALB_DRAIN),
        ("nlb", "AddServersToServerGroup", NLB_IP),
        ("nlb", "UpdateServerGroupServersAttribute", NLB_TCP),
        ("alb", "RemoveServersFromServerGroup", ALB_DRAIN),
        ("alb", "RemoveServersFromServerGroup", ALB_PLAIN),
        ("nlb", "RemoveServersFromServerGroup", NLB_TCP)])
