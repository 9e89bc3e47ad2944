"""Issue 14 item 4, health: a successor serves in a group once the group reports it healthy
(where the group health-checks), real SDK over HTTP against the emulator.

CLB documents a health status per backend (DescribeHealthStatus); ALB/NLB document none (their
member ``Status`` is registration: Available once the add's job succeeded), so there the
successor serves once Available. Fleet tests/fixtures/fleets/replace.yaml: spot-1 serves in the
CLB front's default group (port 80) and vServer group (8080), an ALB and an NLB group.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.ledger import ReplaceStatus, replace_key
from shared.store import Store
from tests.helpers import FLEETS
from tests.http_receiver import HttpReceiver
from tests.test_drain_spot_replace import (
    SPOT1,
    invoke,
    notice,
    serving,
    start,
)
from tools.emulator import load_fleet
from tools.emulator.fleet import ListenerSpec

LB = "lb-bp1front000000000001"
HTTP = "rsp-bp1http00000000001"
CLB_DEFAULT, CLB_HTTP = f"clb {LB} default", f"clb {LB} {HTTP}"
ALB, NLB = "alb sgp-bp1albweb00000001", "nlb sgp-bp1nlbtcp0000001"
TICK = {"triggerTime": "2026-12-01T00:00:00Z", "triggerName": "finish", "payload": ""}


def fleet(healthy_after_s: float | None, *, health_check: bool = True,
          vserver_check: bool | None = None) -> Any:
    """replace.yaml with listeners: 80 on the default group, 8080 on the http vServer group."""
    base = load_fleet(FLEETS / "replace.yaml")
    http_check = health_check if vserver_check is None else vserver_check
    lbs = tuple(replace(lb, listeners=(ListenerSpec(80, "http", None, health_check),
                                       ListenerSpec(8080, "http", HTTP, http_check)))
                for lb in base.load_balancers)
    return replace(base, load_balancers=lbs,
                   provisioning=replace(base.provisioning, healthy_after_s=healthy_after_s))


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'health.sqlite3'}"


def adds(emu: Any) -> list[str]:
    return sorted(c.action for c in emu.calls() if c.action.startswith("Add") and c.status == 200)


def entry(db_url: str) -> Any:
    found = Store(db_url).ledger_get(replace_key(SPOT1))
    assert found is not None
    return found


def test_a_successor_serves_in_a_clb_group_once_healthy_with_its_time(
    monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """GIVEN CLB health checks pass 1.5 s after Running
    WHEN the tick finds the successor Running, then again once healthy
    THEN the first tick adds it everywhere and waits (ALB/NLB: Available, CLB: not yet healthy);
    the second adds nothing and records running, each CLB group serving at the moment it was
    seen healthy, and one notification gives every group's state."""
    with start(fleet(1.5), monkeypatch) as emu, HttpReceiver() as receiver:
        env = {"ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": receiver.url_for("/hook")}
        (launched,) = invoke(emu, db_url, notice(emu))["replacements"]
        successor = launched["successor_id"]
        emu.wait_for_status(successor, "Running")
        first = invoke(emu, db_url, TICK, env=env)["replacements"]
        waiting = entry(db_url)
        added = adds(emu)
        time.sleep(1.6)
        second = invoke(emu, db_url, TICK, env=env)["replacements"]
        bodies = [json.loads(r.body) for r in receiver.requests]
        assert serving(emu, successor) != {}
    assert first["settled"] == [] and first["pending"] == [replace_key(SPOT1)]
    assert waiting.status == ReplaceStatus.LAUNCHED.value
    assert {k: v["state"] for k, v in waiting.data["health"].items()} == {
        ALB: "available", NLB: "available"}
    assert added == ["AddBackendServers", "AddServersToServerGroup", "AddServersToServerGroup",
                     "AddVServerGroupBackendServers"]
    (done,) = second["settled"]
    assert adds(emu) == added  # the health wait resumed; nothing added again
    assert done["outcome"] == "running"
    states = {k: v["state"] for k, v in done["health"].items()}
    assert states == {CLB_DEFAULT: "healthy", CLB_HTTP: "healthy", ALB: "available",
                      NLB: "available"}
    record = entry(db_url)
    assert record.status == "running"
    added_at = datetime.fromisoformat(record.data["registered_at"])
    for label in (CLB_DEFAULT, CLB_HTTP):
        healthy_at = datetime.fromisoformat(done["health"][label]["serving_at"])
        assert healthy_at - added_at >= timedelta(seconds=1.5)
    for label in (ALB, NLB):
        assert done["health"][label]["serving_at"] == record.data["registered_at"]
    assert done["seconds_to_serving"] == max(
        g["seconds_to_serving"] for g in done["health"].values())
    assert done["seconds_to_serving"] >= done["seconds_to_running"] + 1.5
    assert record.data["not_healthy"] == []
    (message,) = [b for b in bodies if "replaced" in json.dumps(b)]
    text = json.dumps(message)
    assert CLB_HTTP in text and "healthy" in text and "no documented health status" in text


def test_a_successor_never_healthy_is_reported_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """GIVEN CLB health checks that never pass and REPLACE_HEALTHY_S 1
    WHEN the tick looks before and after 1 s from the add
    THEN before: still waiting (not serving in CLB); after: recorded running with the CLB groups
    not_healthy and the reason, reported as not_healthy (critical), nothing added again."""
    with start(fleet(None), monkeypatch) as emu, HttpReceiver() as receiver:
        env = {"ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": receiver.url_for("/hook"),
               "ECS_EVENT_OPS_REPLACE_HEALTHY_S": "1"}
        (launched,) = invoke(emu, db_url, notice(emu))["replacements"]
        emu.wait_for_status(launched["successor_id"], "Running")
        soon = invoke(emu, db_url, TICK, env=env)["replacements"]
        added = adds(emu)
        time.sleep(1.1)
        report = invoke(emu, db_url, TICK, env=env)["replacements"]
        bodies = [r.body.decode() for r in receiver.requests]
    assert soon["settled"] == [] and soon["pending"] == [replace_key(SPOT1)]
    assert len(added) == 4 and adds(emu) == added
    (done,) = report["settled"]
    assert done["outcome"] == "not_healthy"
    assert {k: v["state"] for k, v in done["health"].items()} == {
        CLB_DEFAULT: "not_healthy", CLB_HTTP: "not_healthy", ALB: "available",
        NLB: "available"}
    assert CLB_DEFAULT in done["reason"] and CLB_HTTP in done["reason"]
    assert "REPLACE_HEALTHY_S" in done["reason"]
    record = entry(db_url)
    assert record.status == "running"
    assert record.data["not_healthy"] == [CLB_DEFAULT, CLB_HTTP]
    # not serving in every group: no notice → serving time, the ALB/NLB ones keep theirs
    assert "seconds_to_serving" not in done and record.data["seconds_to_serving"] is None
    assert done["health"][ALB]["serving_at"] == record.data["registered_at"]
    (alert,) = [b for b in bodies if "not_healthy" in b]
    assert "critical" in alert and "NOT healthy" in alert


def test_a_group_without_health_check_serves_once_added(
    monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """GIVEN CLB listeners without a health check (unavailable) and checks that would never pass
    WHEN the tick finds the successor Running
    THEN it is running at once: every group serving from the moment it was added."""
    with start(fleet(None, health_check=False), monkeypatch) as emu:
        (launched,) = invoke(emu, db_url, notice(emu))["replacements"]
        emu.wait_for_status(launched["successor_id"], "Running")
        (done,) = invoke(emu, db_url, TICK)["replacements"]["settled"]
    assert done["outcome"] == "running"
    assert {k: v["state"] for k, v in done["health"].items()} == {
        CLB_DEFAULT: "unchecked", CLB_HTTP: "unchecked", ALB: "available", NLB: "available"}
    record = entry(db_url)
    assert {g["serving_at"] for g in done["health"].values()} == {record.data["registered_at"]}


def test_each_clb_group_is_judged_on_its_own_listener_rows(
    monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """GIVEN the default group's listener health-checks (never passing) and the vServer group's
    does not, REPLACE_HEALTHY_S 0
    WHEN the tick finds the successor Running
    THEN the vServer group serves once added (its rows are unavailable) and only the default
    group is reported not healthy."""
    with start(fleet(None, vserver_check=False), monkeypatch) as emu:
        (launched,) = invoke(emu, db_url, notice(emu))["replacements"]
        emu.wait_for_status(launched["successor_id"], "Running")
        (done,) = invoke(emu, db_url, TICK, env={"ECS_EVENT_OPS_REPLACE_HEALTHY_S": "0"}
                         )["replacements"]["settled"]
    assert done["outcome"] == "not_healthy"
    assert {k: v["state"] for k, v in done["health"].items()} == {
        CLB_DEFAULT: "not_healthy", CLB_HTTP: "unchecked", ALB: "available", NLB: "available"}
    assert entry(db_url).data["not_healthy"] == [CLB_DEFAULT]
