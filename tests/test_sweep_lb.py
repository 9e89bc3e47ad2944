"""The sweep handler on ALB and NLB: a drained instance that was not reclaimed is put back
(added where removed, re-weighted where present at weight 0), released backends are removed, and
a reclaimed drain's leftovers are removed (a removal job that fails is tried again by the next
sweep), through the real SDKs against the emulator (tests/fixtures/fleets/lb.yaml)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.clients import Clients, Credentials
from shared.drain import Drainer, sweep_drains
from shared.events import parse
from shared.lb.model import GroupKind, Membership, Product
from shared.settings import Settings
from shared.spot.record import memberships_of, summary
from shared.store import Store
from tests.helpers import Time
from tests.lb_helpers import (
    ALB_ACK,
    ALB_DRAIN,
    ALB_PLAIN,
    NLB_IP,
    NLB_TCP,
    SPOT,
    WEB1,
    WEB2,
    JobPauses,
    groups,
    lb_functions_emulator,
)
from tools.emulator import Emulator
from tools.invoke import invoke_local

TIMER = json.dumps({"triggerTime": "2026-11-23T00:00:00Z", "triggerName": "sweep",
                    "payload": ""}).encode()
ENV = {"ECS_EVENT_OPS_LB_PRODUCTS": "alb,nlb", "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01",
       "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05"}


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with lb_functions_emulator(monkeypatch) as emulator:
        yield emulator


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


def _partial_and_released(emu: Emulator, tmp_path: Path
                          ) -> tuple[Store, Settings, Any, datetime]:
    """A partial ALB/NLB drain of spot-1 (its verify left it at weight 0 in the ALB api group
    and the NLB tcp group), spot-1 released, and a time past its restore time."""
    store = Store(f"sqlite:///{tmp_path / 's.sqlite3'}")
    settings = Settings.from_env({**ENV, "ECS_EVENT_OPS_DRAIN_TIME_S": "0.1",
                                  "ECS_EVENT_OPS_CLOUD_URL": emu.url,
                                  "ECS_EVENT_OPS_DB_URL": store.url})
    emu.set_lb_jobs(job_s=60)  # the jobs end at the clients' pauses
    clients = JobPauses(emu).clients(settings)
    clock = Time()
    emu.interrupt_spot(SPOT)
    (event,) = parse(json.dumps(emu.events()[-1])).events
    drained = Drainer(store, clients, settings, clock=clock, sleep=clock.sleep).drain(event)
    assert drained.outcome.value == "drained"
    entry = store.ledger_get(drained.key)
    assert entry is not None
    left = [replace(m, weight=0) for m in memberships_of(entry.data)
            if m.group_id in (ALB_PLAIN, NLB_TCP)]
    assert len(left) == 2
    lbs = clients.lbs
    assert lbs.wait(lbs.add(left, token_seed="left-behind"), timeout_s=10) == []
    store.ledger_update(drained.key, status="partial", data={
        "outcome": "partial", "leftover": [summary(m) for m in left]})
    emu.release(SPOT)
    later = clock() + timedelta(seconds=300 + settings.restore_after_s + 1)
    return store, settings, drained, later


def test_a_reclaimed_drain_s_alb_leftover_whose_removal_fails_waits_for_the_next_sweep(
        emu: Emulator, tmp_path: Path) -> None:
    """GIVEN a partial ALB/NLB drain (its verify left spot-1 at weight 0 in the ALB api group and
    the NLB tcp group) and spot-1 released WHEN the sweep's removal of the ALB leftover ends
    Failed THEN it is not reported removed: the sweep reports JobNotFinished for the drain,
    which stays partial (not reclaimed); the next sweep removes it with another ClientToken (the
    first would answer the failed job again) and marks the drain reclaimed."""
    store, settings, drained, later = _partial_and_released(emu, tmp_path)
    failing = JobPauses(emu, fail=("RemoveServersFromServerGroup", ALB_PLAIN))
    emu.clear_calls()

    first = sweep_drains(store, failing.clients(settings), None, settings, later)
    assert failing.failed
    assert (first["released_backends_removed"], first["reclaimed"]) == ([], [])
    (error,) = first["errors"]
    assert error["key"] == drained.key and "JobNotFinished" in error["error"]
    after_first = store.ledger_get(drained.key)
    assert after_first is not None and after_first.status == "partial"
    assert {k: v for k, v in groups(emu).items() if k[1] == SPOT and k[0] != ALB_ACK} == {
        (ALB_PLAIN, SPOT, 8080): 0}  # the NLB one went; the ALB one is still there

    second = sweep_drains(store, JobPauses(emu).clients(settings), None, settings,
                          later + timedelta(minutes=5))
    assert second["errors"] == [] and second["reclaimed"] == [SPOT]
    assert [(r["instance_id"], r["group_id"]) for r in second["released_backends_removed"]] == [
        (SPOT, ALB_PLAIN)]
    final = store.ledger_get(drained.key)
    assert final is not None and final.status == "reclaimed"
    assert {k for k in groups(emu) if k[1] == SPOT} == {(ALB_ACK, SPOT, 30080)}
    tokens = [c.params.get("ClientToken") for c in emu.calls()
              if (c.product, c.action, c.status) == ("alb", "RemoveServersFromServerGroup", 200)
              and c.params.get("ServerGroupId") == ALB_PLAIN]
    assert len(tokens) == len(set(tokens)) == 2
    store.close()


def test_a_reclaimed_leftover_whose_removal_keeps_failing_is_reported_after_three_sweeps(
        emu: Emulator, tmp_path: Path) -> None:
    """GIVEN a reclaimed drain's ALB leftover whose removal job fails in every sweep WHEN the
    third sweep meets it THEN it stops trying (each try holds the sweep for the job wait): the
    drain is marked reclaimed, the leftover is not reported removed, and the sweep reports the
    group for a person to look at."""
    store, settings, drained, later = _partial_and_released(emu, tmp_path)
    failing = JobPauses(emu, fail=("RemoveServersFromServerGroup", ALB_PLAIN), times=3)
    reports = [sweep_drains(store, failing.clients(settings), None, settings,
                            later + timedelta(minutes=5 * n)) for n in range(3)]
    assert len(failing.failed) == 3
    assert [r["reclaimed"] for r in reports] == [[], [], [SPOT]]
    assert all("JobNotFinished" in r["errors"][0]["error"] for r in reports[:2])
    (given_up,) = reports[2]["errors"]
    assert given_up["key"] == drained.key and "in 3 sweeps" in given_up["error"]
    assert all(r["group_id"] != ALB_PLAIN for r in reports[2]["released_backends_removed"])
    final = store.ledger_get(drained.key)
    assert final is not None and final.status == "reclaimed"
    assert (ALB_PLAIN, SPOT, 8080) in groups(emu)  # still there: for a person
    store.close()
