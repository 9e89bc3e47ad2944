"""Issue 14 (spot replacement): the drain function launches successors, real SDK over HTTP.

Fleet tests/fixtures/fleets/replace.yaml: spot-1 (tag ``spot``, a RAM role, user data, a key
pair, system tags) and spot-2 (``spot-or-on-demand``) in zone h; ess-1 and ack-1 owned by
Auto Scaling and ACK; tmpl-1 from a launch template; ecs.g7.large spot sold out in zone i.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.events import parse
from shared.ledger import LeaseHeldError, ReplaceStatus, replace_key
from shared.replace.launcher import Replacer
from shared.replace.record import Outcome
from shared.replace.spec import stored_spec
from shared.replace.sweep import sweep_replacements
from shared.settings import Settings
from shared.store import Store
from tests.helpers import FLEETS, clients_for, json_log
from tests.http_receiver import HttpReceiver
from tests.test_drain_spot import invoke as drain_invoke
from tests.test_drain_spot import notice, race
from tools.emulator import Emulator, load_fleet
from tools.emulator.fleet import StockSpec
from tools.envelopes import eventbridge_copy
from tools.invoke import build_context, load_function

SPOT1 = "i-bp1spot000000000001"
SPOT2 = "i-bp1spot000000000002"
ESS1 = "i-bp1ess0000000000001"
ACK1 = "i-bp1ack0000000000001"
TMPL1 = "i-bp1tmpl000000000001"
PLAIN1 = "i-bp1plain00000000001"
VPC = "vpc-bp1replace00000001"
VSW_H = "vsw-bp1zoneh0000000001"
VSW_I = "vsw-bp1zonei0000000001"
VSW_J = "vsw-bp1zonej0000000001"
USER_DATA = "c2VjcmV0PWh1bnRlcjI="  # base64 of "secret=hunter2"
CST = timezone(timedelta(hours=8))
FUNCTION_ENV = {
    "ECS_EVENT_OPS_DRAIN_TIME_S": "0.1",
    "ECS_EVENT_OPS_LB_TAG": "app=web",
    "ECS_EVENT_OPS_LB_PRODUCTS": "clb,alb,nlb",
    "ECS_EVENT_OPS_REPLACE_RAM_ROLES": "web-role",
    "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01",
    "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05",
    "ECS_EVENT_OPS_REPLACE_VSWITCHES": f"{VPC}/cn-hangzhou-i={VSW_I},{VPC}/cn-hangzhou-j={VSW_J},"
                                       "vpc-bp1other0000000001/cn-hangzhou-k=vsw-bp1other000000001",
}


def fleet_with(**stock: int) -> Any:
    """The replace fleet with more sold-out offerings: ``g7_j=0`` is ecs.g7.large spot in j."""
    fleet = load_fleet(FLEETS / "replace.yaml")
    extra = []
    for name, count in stock.items():
        family, zone, *strategy = name.split("_")
        extra.append(StockSpec(f"ecs.{family}.large", f"cn-hangzhou-{zone}",
                               "NoSpot" if strategy == ["od"] else "SpotAsPriceGo", count))
    return replace(fleet, provisioning=replace(fleet.provisioning,
                                               stock=fleet.provisioning.stock + tuple(extra)))


def start(fleet: Any, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    emulator = Emulator(fleet, start_delay_s=0.01, lb_job_s=0.05)
    for name, value in emulator.signing_environment().items():
        monkeypatch.setenv(name, value)
    return emulator


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with start(load_fleet(FLEETS / "replace.yaml"), monkeypatch) as emulator:
        yield emulator


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'replace.sqlite3'}"


def invoke(emu: Emulator, db_url: str, body: Any, **options: Any) -> dict[str, Any]:
    return drain_invoke(emu, db_url, body, base_env=FUNCTION_ENV, **options)


def successors(emu: Emulator, iid: str) -> list[dict[str, Any]]:
    return [i for i in emu.state()["instances"] if i["tags"].get("replaces") == iid]


def launches(emu: Emulator) -> list[dict[str, Any]]:
    return emu.launched()


def settings_for(emu: Emulator, db_url: str, **overrides: Any) -> Settings:
    env = {"ECS_EVENT_OPS_CLOUD_URL": emu.url, "ECS_EVENT_OPS_DB_URL": db_url}
    return Settings.from_env({**FUNCTION_ENV, **env}, **overrides)


# --- the launch --------------------------------------------------------------------------------


def test_opted_in_instance_gets_its_successor_in_the_next_zone_after_a_stock_out(
    emu: Emulator, db_url: str
) -> None:
    """The reclaimed zone is left out, zone i answers NoStock, zone j launches the successor
    with the captured spec and the original's tags (no system tags) plus replaces=<old>."""
    # GIVEN spot-1 opted in with "spot", g7 spot sold out in zone i
    # WHEN its interruption notice arrives
    out = invoke(emu, db_url, notice(emu))
    # THEN one successor, in zone j, after one stock-out
    (result,) = out["replacements"]
    assert result["outcome"] == "launched"
    assert result["candidate"]["zone_id"] == "cn-hangzhou-j"
    assert result["candidate"]["vswitch_id"] == VSW_J
    assert [(t["zone_id"], t["code"]) for t in result["tried"]] == [
        ("cn-hangzhou-i", "OperationDenied.NoStock")]
    (successor,) = successors(emu, SPOT1)
    assert successor["id"] == result["successor_id"]
    assert successor["instance_type"] == "ecs.g7.large"
    assert successor["spot_strategy"] == "SpotAsPriceGo"
    assert successor["tags"] == {"role": "web", "replace-on-interrupt": "spot",
                                 "replaces": SPOT1}
    # AND the spec ECS does not show was copied: role, user data, groups, key pair
    detail = emu.instance(successor["id"])
    assert detail["status"] in ("Pending", "Starting", "Running")
    sent = [c for c in emu.calls() if c.action == "RunInstances"]
    assert [c.code for c in sent] == ["OperationDenied.NoStock", None]
    params = sent[-1].params
    assert params["RamRoleName"] == "web-role"
    assert params["UserData"] == USER_DATA
    assert params["KeyPairName"] == "ops"
    assert params["SecurityGroupIds.1"] == "sg-bp1web000000000001"
    assert params["ClientToken"].startswith(f"rpl-{SPOT1}-")
    assert sent[0].params["ClientToken"] != params["ClientToken"]  # one token per candidate
    # AND the drain ran as well
    assert [d["outcome"] for d in out["drains"]] == ["drained"]


def test_user_data_is_never_logged(emu: Emulator, db_url: str) -> None:
    """The user data (it may hold secrets) reaches RunInstances and the store, not the logs."""
    with json_log() as stream:
        invoke(emu, db_url, notice(emu))
    text = stream.getvalue()
    assert "launch spec captured" in text
    assert USER_DATA not in text and "hunter2" not in text
    spec = stored_spec(Store(db_url), SPOT1)
    assert spec is not None and spec.user_data == USER_DATA
    assert USER_DATA not in repr(spec)


def test_the_same_notice_twice_launches_one_successor(emu: Emulator, db_url: str) -> None:
    """A copy through EventBridge and a redelivery meet the recorded launch: duplicate."""
    payload = notice(emu)
    first = invoke(emu, db_url, payload)["replacements"][0]
    second = invoke(emu, db_url, eventbridge_copy(payload))["replacements"][0]
    third = invoke(emu, db_url, [payload, eventbridge_copy(payload)])["replacements"]
    assert first["outcome"] == "launched"
    assert second["outcome"] == "duplicate"
    assert second["successor_id"] == first["successor_id"]
    assert [r["outcome"] for r in third] == ["duplicate", "duplicate"]
    assert len(successors(emu, SPOT1)) == 1
    assert len(launches(emu)) == 1


def test_concurrent_copies_of_one_notice_launch_one_successor(
    emu: Emulator, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two envelopes of one notice in two invocations at once: one launches; the other meets
    the live lease (the platform retries it) or the recorded launch; one instance in all."""
    env = {**FUNCTION_ENV, "ECS_EVENT_OPS_CLOUD_URL": emu.url, "ECS_EVENT_OPS_DB_URL": db_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    handler = load_function("drain_spot").module.handler
    Store(db_url).ping()
    payload = notice(emu)
    bodies = [json.dumps(payload).encode(), json.dumps(eventbridge_copy(payload)).encode()]
    results, errors = race(handler, bodies, env, 20)
    # THEN one launch; every invocation either answered or asked the platform to retry
    assert len(results) + len(errors) == 2
    assert len(successors(emu, SPOT1)) == 1
    assert len(launches(emu)) == 1
    # AND the retries answer duplicate
    for body in bodies:
        retried = handler(body, build_context("drain_spot", "python3.10", env))
        assert retried["replacements"][0]["outcome"] == "duplicate"
    assert len(launches(emu)) == 1


def test_instances_owned_by_auto_scaling_or_ack_are_skipped_with_the_reason(
    emu: Emulator, db_url: str
) -> None:
    """Opted in, but ESS or an ACK node pool owns them: no launch, the owner named."""
    out = invoke(emu, db_url, [notice(emu, ESS1), notice(emu, ACK1)])
    by_id = {r["instance_id"]: r for r in out["replacements"]}
    assert by_id[ESS1]["outcome"] == "skipped"
    assert "acs:autoscaling:scalingGroupId=asg-1" in by_id[ESS1]["reason"]
    assert by_id[ACK1]["outcome"] == "skipped"
    assert "ack.aliyun.com" in by_id[ACK1]["reason"]
    assert launches(emu) == []
    assert Store(db_url).ledger_get(replace_key(ESS1)).status == ReplaceStatus.SKIPPED.value  # type: ignore[union-attr]


def test_an_instance_not_opted_in_gets_no_successor(emu: Emulator, db_url: str) -> None:
    out = invoke(emu, db_url, notice(emu, PLAIN1))
    assert [r["outcome"] for r in out["replacements"]] == ["not_opted_in"]
    assert launches(emu) == []
    assert [c.action for c in emu.calls() if c.action.startswith(("Run", "DescribeUser"))] == []


def test_an_instance_gone_before_its_spec_was_captured_is_skipped_with_the_reason(
    emu: Emulator, db_url: str
) -> None:
    """Released before its notice was handled and never captured: its opt-in tag and its spec
    are unknown, so nothing launches and the answer says why (not "not opted in")."""
    payload = notice(emu, SPOT2)
    emu.release(SPOT2)
    (result,) = invoke(emu, db_url, payload)["replacements"]
    assert result["outcome"] == "skipped"
    assert result["reason"].startswith("gone before its launch spec was captured")
    assert launches(emu) == []


# --- on-demand, quota ------------------------------------------------------------------------

SPOT_SOLD_OUT = {"g7_j": 0, "g6_h": 0, "g6_i": 0, "g6_j": 0, "c7_h": 0, "c7_i": 0, "c7_j": 0}


def test_on_demand_only_when_the_tag_allows_it(
    monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """Every spot offering sold out: spot-1 ("spot") is reported exhausted with an alert,
    spot-2 ("spot-or-on-demand") gets an on-demand successor."""
    with start(fleet_with(**SPOT_SOLD_OUT), monkeypatch) as emu, HttpReceiver() as receiver:
        env = {"ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": receiver.url_for("/hook")}
        out = invoke(emu, db_url, [notice(emu, SPOT1), notice(emu, SPOT2)], env=env)
        by_id = {r["instance_id"]: r for r in out["replacements"]}
        assert by_id[SPOT1]["outcome"] == "exhausted"
        assert "on-demand not allowed" in by_id[SPOT1]["reason"]
        # (what spot-2 found sold out first is left out for spot-1 without a call: the shared
        # avoid list)
        assert all(t["spot_strategy"] == "SpotAsPriceGo" for t in by_id[SPOT1].get("tried", []))
        assert successors(emu, SPOT1) == []
        assert by_id[SPOT2]["outcome"] == "launched"
        assert by_id[SPOT2]["candidate"]["spot_strategy"] == "NoSpot"
        (successor,) = successors(emu, SPOT2)
        assert successor["spot_strategy"] == "NoSpot"
        alerts = [json.loads(r.body) for r in receiver.requests]
        exhausted = [a for a in alerts if SPOT1 in json.dumps(a) and "exhausted" in json.dumps(a)]
        assert len(exhausted) == 1


def test_a_quota_error_stops_with_an_alert_and_tries_no_other_candidate(
    emu: Emulator, db_url: str
) -> None:
    """QuotaExceed.ElasticQuota is no matter of another zone: stop, record, alert."""
    emu.set_faults(fail_next={"RunInstances": ["QuotaExceed.ElasticQuota:403"]})
    with HttpReceiver() as receiver:
        env = {"ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": receiver.url_for("/hook")}
        (result,) = invoke(emu, db_url, notice(emu), env=env)["replacements"]
        alerts = [r.body.decode() for r in receiver.requests]
    assert result["outcome"] == "failed"
    assert "QuotaExceed.ElasticQuota" in result["reason"]
    assert [c.code for c in emu.calls() if c.action == "RunInstances"] == [
        "QuotaExceed.ElasticQuota"]
    assert launches(emu) == []
    assert Store(db_url).ledger_get(replace_key(SPOT1)).status == "failed"  # type: ignore[union-attr]
    assert len([a for a in alerts if "QuotaExceed.ElasticQuota" in a]) == 1


# --- crashes and retries -----------------------------------------------------------------------


def test_a_lost_run_instances_answer_is_retried_with_its_token_and_launches_once(
    emu: Emulator, db_url: str
) -> None:
    """RunInstances applied, its answer lost (503): the retry with the same ClientToken gets
    the same instance; nothing launched twice."""
    emu.set_faults(lose_answer={"RunInstances": ["ServiceUnavailable"]})
    (result,) = invoke(emu, db_url, notice(emu))["replacements"]
    sent = [c for c in emu.calls() if c.action == "RunInstances" and c.code != "OperationDenied.NoStock"]
    assert len(sent) == 2
    assert sent[0].params["ClientToken"] == sent[1].params["ClientToken"]
    assert sent[0].answer_lost
    assert result["outcome"] == "launched"
    assert len(launches(emu)) == 1
    assert [s["id"] for s in successors(emu, SPOT1)] == [result["successor_id"]]


class Crash(Exception):
    pass


def crash_after_launch(emu: Emulator, db_url: str) -> tuple[Store, Settings, Any]:
    """A replacement killed with its successor launched but not recorded: the store, the
    settings and the event to resume with."""
    settings = settings_for(emu, db_url)
    store = Store(db_url)
    store.ping()
    event = parse(json.dumps(notice(emu)).encode()).events[0]

    def die(point: str, run: Any) -> None:
        if point == "launched":
            raise Crash(point)

    with pytest.raises(Crash):
        Replacer(store, clients_for(emu, settings), settings, hook=die).replace(event)
    return store, settings, event


def test_a_crash_between_run_instances_and_its_record_resumes_without_a_second_launch(
    emu: Emulator, db_url: str
) -> None:
    """Killed with the successor launched but not recorded: the taker (lease expired) finds
    it by tag, or gets it again through the recorded candidate's ClientToken."""
    store, settings, event = crash_after_launch(emu, db_url)
    assert store.ledger_get(replace_key(SPOT1)).status == "launching"  # type: ignore[union-attr]
    assert len(launches(emu)) == 1
    # WHEN a copy arrives while the lease is live: the platform retries it
    with pytest.raises(LeaseHeldError):
        Replacer(store, clients_for(emu, settings), settings).replace(event)
    # AND after the lease expired
    later = datetime.now(timezone.utc) + timedelta(seconds=300)
    result = Replacer(store, clients_for(emu, settings), settings,
                      clock=lambda: later).replace(event)
    assert result.outcome is Outcome.REUSED
    assert len(launches(emu)) == 1
    (successor,) = successors(emu, SPOT1)
    assert result.successor_id == successor["id"]


def test_a_taker_that_cannot_see_the_successor_yet_gets_it_back_by_client_token(
    emu: Emulator, db_url: str
) -> None:
    """The tag lookup misses the successor (eventual consistency): the recorded candidate is
    sent again with its token, and ECS answers the instance it launched."""
    store, settings, event = crash_after_launch(emu, db_url)
    later = datetime.now(timezone.utc) + timedelta(seconds=300)
    taker = Replacer(store, clients_for(emu, settings), settings, clock=lambda: later)
    taker._successor = lambda clients, iid: None  # type: ignore[method-assign]
    result = taker.replace(event)
    assert result.outcome is Outcome.LAUNCHED
    assert len(launches(emu)) == 1
    assert [s["id"] for s in successors(emu, SPOT1)] == [result.successor_id]
    tokens = [c.params["ClientToken"] for c in emu.calls()
              if c.action == "RunInstances" and c.code is None]
    assert len(tokens) == 2 and tokens[0] == tokens[1]


def test_an_existing_successor_is_reused_instead_of_launching(emu: Emulator, db_url: str) -> None:
    """An instance tagged replaces=<id> exists (launched by hand or an earlier run): reused."""
    emu.create_instance({"id": "i-bp1handmade000000001", "tags": {"replaces": SPOT1},
                         "vpc_id": VPC})
    (result,) = invoke(emu, db_url, notice(emu))["replacements"]
    assert result["outcome"] == "reused"
    assert result["successor_id"] == "i-bp1handmade000000001"
    assert launches(emu) == []


# --- dry run, templates, the finisher ---------------------------------------------------------


def test_dry_run_asks_run_instances_with_dry_run_and_launches_nothing(
    emu: Emulator, db_url: str
) -> None:
    (result,) = invoke(emu, db_url, notice(emu), dry_run=True)["replacements"]
    assert result["outcome"] == "dry_run"
    assert result["reason"] == "would launch"
    assert result["candidate"]["zone_id"] == "cn-hangzhou-j"
    sent = [c for c in emu.calls() if c.action == "RunInstances"]
    assert {c.params.get("DryRun") for c in sent} == {"True"}
    assert [c.code for c in sent] == ["OperationDenied.NoStock", "DryRunOperation"]
    assert launches(emu) == []
    assert Store(db_url).ledger_get(replace_key(SPOT1)) is None


def test_an_instance_from_a_launch_template_is_launched_from_that_version(
    emu: Emulator, db_url: str
) -> None:
    (result,) = invoke(emu, db_url, notice(emu, TMPL1))["replacements"]
    assert result["outcome"] == "launched"
    (sent,) = [c for c in emu.calls() if c.action == "RunInstances" and c.code is None]
    assert sent.params["LaunchTemplateId"] == "lt-bp1web000000000001"
    assert sent.params["LaunchTemplateVersion"] == "2"
    assert "ImageId" not in sent.params and "UserData" not in sent.params
    (successor,) = successors(emu, TMPL1)
    assert successor["tags"]["from"] == "template"
    assert [c.action for c in emu.calls() if c.action == "DescribeLaunchTemplateVersions"] == [
        "DescribeLaunchTemplateVersions"]


def test_the_finisher_tick_records_the_successor_running_with_one_notification(
    emu: Emulator, db_url: str
) -> None:
    """After the boot time, the drain's timer sees the successor Running: recorded with the
    time from notice to Running, and one message says what replaced what and where."""
    (launched,) = invoke(emu, db_url, notice(emu))["replacements"]
    emu.wait_for_status(launched["successor_id"], "Running")
    tick = {"triggerTime": "2026-12-01T00:00:00Z", "triggerName": "finish", "payload": ""}
    with HttpReceiver() as receiver:
        env = {"ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": receiver.url_for("/hook")}
        answer = invoke(emu, db_url, tick, env=env)
        again = invoke(emu, db_url, tick, env=env)
        bodies = [r.body.decode() for r in receiver.requests]
    (settled,) = answer["replacements"]["settled"]
    assert settled["outcome"] == "running"
    assert settled["seconds_to_running"] <= settled["seconds_to_serving"]
    assert len(settled["registered"]) == 4
    assert settled["successor_id"] == launched["successor_id"]
    assert 0 < settled["seconds_to_running"] < 30
    assert again["replacements"]["settled"] == []
    assert len(bodies) == 1
    assert SPOT1 in bodies[0] and launched["successor_id"] in bodies[0]
    assert "cn-hangzhou-j" in bodies[0]
    assert Store(db_url).ledger_get(replace_key(SPOT1)).status == "running"  # type: ignore[union-attr]


def test_a_successor_not_running_in_time_is_reported_stalled(
    monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """A successor still booting replace_stall_s after its launch: reported stalled, once."""
    fleet = load_fleet(FLEETS / "replace.yaml")
    slow = replace(fleet, provisioning=replace(fleet.provisioning, boot_s=3600.0))
    with start(slow, monkeypatch) as emu:
        settings = settings_for(emu, db_url)
        store = Store(db_url)
        (launched,) = invoke(emu, db_url, notice(emu))["replacements"]
        soon = sweep_replacements(Replacer(store, clients_for(emu, settings), settings))
        later = datetime.now(timezone.utc) + timedelta(seconds=settings.replace_stall_s + 60)
        report = sweep_replacements(Replacer(store, clients_for(emu, settings), settings,
                                             clock=lambda: later))
    assert soon.settled == [] and soon.pending == [replace_key(SPOT1)]
    (stalled,) = report.settled
    assert stalled["outcome"] == "stalled"
    assert stalled["successor_id"] == launched["successor_id"]
    assert "Pending" in stalled["reason"]
    assert store.ledger_get(replace_key(SPOT1)).status == "stalled"  # type: ignore[union-attr]


def test_the_replacement_calls_exactly_its_declared_actions(emu: Emulator, db_url: str) -> None:
    """A copied spec, a template, and the successor looked up by tag: the replacement's part of
    RAM_ACTIONS, nothing more (ram:PassRole is no API call: deploy grants it per role)."""
    module = load_function("drain_spot").module
    emu.set_stock("ecs.g7.large", "cn-hangzhou-j", "SpotAsPriceGo", 0)  # to the recommendations
    out = invoke(emu, db_url, [notice(emu, SPOT1), notice(emu, TMPL1)])
    by_id = {r["instance_id"]: r for r in out["replacements"]}
    assert by_id[SPOT1]["candidate"]["source"] == "recommended"
    assert by_id[SPOT1]["candidate"]["instance_type"] == "ecs.g6.large"
    called = {f"{c.product}:{c.action}" for c in emu.calls() if c.product == "ecs"}
    assert called == {"ecs:DescribeInstances", "ecs:DescribeInstanceRamRole",
                      "ecs:DescribeUserData", "ecs:DescribeLaunchTemplateVersions",
                      "ecs:DescribeRecommendInstanceType", "ecs:RunInstances"}
    assert called <= set(module.RAM_ACTIONS)


def serving(emu: Emulator, iid: str) -> dict[tuple[str, str, int | None], int]:
    """(product, group, port) -> weight of every membership of ``iid`` on CLB, ALB and NLB."""
    state = emu.state()
    out: dict[tuple[str, str, int | None], int] = {}
    for lb in state["load_balancers"]:
        for m in lb["default_servers"]:
            if m["server_id"] == iid:
                out[("clb", lb["id"] + "/default", None)] = m["weight"]
        for group in lb["vserver_groups"]:
            for m in group["servers"]:
                if m["server_id"] == iid:
                    out[("clb", group["id"], m.get("port"))] = m["weight"]
    for product in ("albs", "nlbs"):
        for group in state[product]["server_groups"]:
            for m in group["members"]:
                if m["server_id"] == iid:
                    out[(product[:3], group["id"], m.get("port"))] = m["weight"]
    return out


def test_the_successor_serves_everywhere_its_predecessor_did_with_the_same_ports_and_weights(
    emu: Emulator, db_url: str
) -> None:
    """Issue 14 item 4: spot-1 drained from a CLB default and vServer group, an ALB and an NLB
    group; once its successor is Running, the finisher tick registers it in each, with the
    original ports and weights (not the drain's 0), and web-1 is untouched."""
    before = serving(emu, SPOT1)
    web1 = serving(emu, "i-bp1web0000000000001")
    assert len(before) == 4
    (launched,) = invoke(emu, db_url, notice(emu))["replacements"]
    assert serving(emu, SPOT1) == {}  # drained everywhere
    successor = launched["successor_id"]
    emu.wait_for_status(successor, "Running")
    tick = {"triggerTime": "2026-12-01T00:00:00Z", "triggerName": "finish", "payload": ""}
    (settled,) = invoke(emu, db_url, tick)["replacements"]["settled"]
    assert settled["outcome"] == "running"
    assert serving(emu, successor) == before
    assert serving(emu, "i-bp1web0000000000001") == web1
    again = invoke(emu, db_url, tick)["replacements"]
    assert again["settled"] == []
    adds = [c.action for c in emu.calls() if c.action.startswith("Add")]
    assert sorted(adds) == ["AddBackendServers", "AddServersToServerGroup",
                            "AddServersToServerGroup", "AddVServerGroupBackendServers"]


def test_a_successor_running_before_the_drain_ends_serves_within_the_same_invocation(
    emu: Emulator, db_url: str
) -> None:
    """The drain's wait (2.5 s here) is put to use: the successor boots (0.1 s) and is settled
    every 2 s while the drain runs, so the notice's answer already has it serving."""
    (result,) = invoke(emu, db_url, notice(emu),
                       env={"ECS_EVENT_OPS_DRAIN_TIME_S": "2.5"})["replacements"]
    assert result["outcome"] == "running"
    assert len(result["registered"]) == 4
    assert serving(emu, result["successor_id"]) != {}
    tick = {"triggerTime": "2026-12-01T00:00:00Z", "triggerName": "finish", "payload": ""}
    assert invoke(emu, db_url, tick)["replacements"]["settled"] == []


def test_a_role_the_function_may_not_pass_stops_the_replacement_with_an_alert(
    emu: Emulator, db_url: str
) -> None:
    """spot-1 runs with web-role; without it in REPLACE_RAM_ROLES (no ram:PassRole for it) the
    replacement is refused before any launch, and says why."""
    with HttpReceiver() as receiver:
        env = {"ECS_EVENT_OPS_REPLACE_RAM_ROLES": "", "ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL":
               receiver.url_for("/hook")}
        (result,) = invoke(emu, db_url, notice(emu), env=env)["replacements"]
        alerts = [r.body.decode() for r in receiver.requests]
    assert result["outcome"] == "failed"
    assert "RAM role web-role is not in ECS_EVENT_OPS_REPLACE_RAM_ROLES" in result["reason"]
    assert [c for c in emu.calls() if c.action == "RunInstances"] == []
    assert len([a for a in alerts if "web-role" in a]) == 1


def test_ram_pass_role_is_granted_for_the_listed_roles_only_and_only_to_the_launcher() -> None:
    from tools.ram_policy import Scope, declared_actions, policy_document

    declared = declared_actions()
    scope = Scope("123", pass_roles=("web-role",))
    drain = policy_document(declared["drain_spot"], scope)["Statement"]
    assert [s["Resource"] for s in drain if s["Action"] == ["ram:PassRole"]] == [
        ["acs:ram::123:role/web-role"]]
    for function in ("sweep", "record_lifecycle", "auto_start"):
        statements = policy_document(declared[function], scope)["Statement"]
        assert all("ram:PassRole" not in s["Action"] for s in statements)
    none = policy_document(declared["drain_spot"], Scope("123"))["Statement"]
    assert all("ram:PassRole" not in s["Action"] for s in none)


def test_the_lifecycle_cli_lists_replacements(emu: Emulator, db_url: str) -> None:
    """``tools.lifecycle replacements`` shows the successor, its offering and the stock-outs
    tried, as a table and as JSON, and filters by status."""
    import io

    from tools import lifecycle

    invoke(emu, db_url, notice(emu))
    out, err = io.StringIO(), io.StringIO()
    assert lifecycle.main(["--db", db_url, "replacements", "--format", "json"],
                          stdout=out, stderr=err) == 0
    (row,) = json.loads(out.getvalue())["items"]
    assert (row["instance_id"], row["key"]) == (SPOT1, f"replace:{SPOT1}")
    assert row["successor_id"].startswith("i-") and row["tried"] == 1
    assert row["offering"] == f"{row['data']['candidate']['instance_type']}@cn-hangzhou-j " \
                              f"{row['data']['candidate']['spot_strategy']}"
    table = io.StringIO()
    assert lifecycle.main(["--db", db_url, "replacements"], stdout=table, stderr=err) == 0
    assert row["successor_id"] in table.getvalue() and "SUCCESSOR_ID" in table.getvalue()
    none = io.StringIO()
    assert lifecycle.main(["--db", db_url, "replacements", "--decision", "failed",
                           "--format", "json"], stdout=none, stderr=err) == 0
    assert json.loads(none.getvalue())["items"] == []
