"""shared.clients ERROR_RULES: every code's rule, driven through the real SDK and the emulator.

For each entry of the table the emulator answers that code once (``fail_next`` with the HTTP
status the documented contract gives it, on an action of the entry's scope that documents it)
and the adapter method that sends the action is called with a recording fake ``sleep``: a
transient or throttled code is retried once and the call succeeds; every other code is answered
after exactly one call, with no sleep, as the typed error or start outcome its rule names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.clients import (
    CALLED_ACTIONS,
    ERROR_RULES,
    AuthError,
    Clients,
    CloudError,
    Credentials,
    EcsClient,
    NotFoundError,
    Rule,
    StartOutcome,
    StartResult,
    ThrottledError,
    TransientError,
    rule_for,
)
from shared.cms import EventPattern, EventRule, RuleTarget, TargetKind
from shared.lb.model import GroupKind, Membership, Product
from shared.settings import Settings
from tests.helpers import FLEETS
from tools.emulator import Emulator, Fleet, load_fleet
from tools.emulator.contract import load_contract

REPO_ROOT = Path(__file__).resolve().parent.parent
API_META = REPO_ROOT.parent / "shared" / "api-meta"
META_FILES = {"ecs": "ecs-2014-05-26.json", "slb": "slb-2014-05-15.json",
              "actiontrail": "actiontrail-2020-07-06.json", "cms": "cms-2019-01-01.json",
              "alb": "alb-2020-06-16.json", "nlb": "nlb-2022-04-30.json"}

WEB1 = "i-bp1aaaaaaaaaaaaaaaa1"
WEB2 = "i-bp1aaaaaaaaaaaaaaaa2"
BATCH1 = "i-bp1aaaaaaaaaaaaaaaa3"
STOPPED1 = "i-bp1aaaaaaaaaaaaaaaa7"
LB_WEB = "lb-bp1aaaaaaaaaaaaaaaa1"
LB_BATCH = "lb-bp1aaaaaaaaaaaaaaaa2"
VG_API = "rsp-bp1aaaaaaaaaaaaa1"
VG_JOBS = "rsp-bp1aaaaaaaaaaaaa2"
MS = "rsp-bp1bbbbbbbbbbbbb1"

CONTRACT = load_contract()
# Codes of the table the emulator cannot answer, each with the reason it is in the table all the
# same (its rule is asserted by a test of its own below).
NOT_INJECTABLE = {
    "InvalidCredentials": "raised by the Tea SDK itself, no server answers it",
}


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


DEFAULT_WEB1 = Membership(LB_WEB, GroupKind.DEFAULT, None, WEB1, None, 100)
DEFAULT_WEB2 = Membership(LB_WEB, GroupKind.DEFAULT, None, WEB2, None, 100)
API_WEB1 = Membership(LB_WEB, GroupKind.VSERVER, VG_API, WEB1, 8080, 100)
API_WEB2 = Membership(LB_WEB, GroupKind.VSERVER, VG_API, WEB2, 8080, 100)
NEW_DEFAULT = Membership(LB_BATCH, GroupKind.DEFAULT, None, WEB2, None, 100)
NEW_JOBS = Membership(LB_BATCH, GroupKind.VSERVER, VG_JOBS, WEB1, 9000, 100)
SPOT = "i-bp1spot000000000001"
NEW1 = "i-bp1new0000000000001"
ALB_PLAIN = Membership("", GroupKind.SERVER_GROUP, "sgp-bp1plain000000001", SPOT, 8080, 50, "Ecs",
                       product=Product.ALB)
ALB_NEW = Membership("", GroupKind.SERVER_GROUP, "sgp-bp1plain000000001", NEW1, 8080, 100, "Ecs",
                     product=Product.ALB)
NLB_TCP = Membership("", GroupKind.SERVER_GROUP, "sgp-bp1tcp0000000001", SPOT, 443, 100, "Ecs",
                     product=Product.NLB)
NLB_NEW = Membership("", GroupKind.SERVER_GROUP, "sgp-bp1tcp0000000001", NEW1, 443, 100, "Ecs",
                     product=Product.NLB)
DAY = timedelta(days=1)


def _none(_: object) -> None:
    """A write's verdict is what the test checks (its error or none), not its jobs."""


def _nlb_job(c: Clients) -> Any:
    (write,) = c.nlb.write_weights([NLB_TCP], 10, token_seed="probe")
    return c.nlb.job_statuses([write.job_id or ""])
PROBE_RULE = EventRule("probe", (EventPattern("ecs", ("Instance:StateChange",)),))
PROBE_TARGET = RuleTarget("1", TargetKind.FC, "cn-hangzhou", service="s", function="f")

# action -> (the adapter call that sends it, with DryRun when ``dry`` is set)
PROBES: dict[str, Callable[[Clients, bool], Any]] = {
    "DescribeInstances": lambda c, dry: c.ecs.describe_instances([WEB1]),
    "StartInstance": lambda c, dry: c.ecs.start_instance(BATCH1, dry_run=dry),
    "StartInstances": lambda c, dry: c.ecs.start_instances([BATCH1, STOPPED1], dry_run=dry),
    "StopInstance": lambda c, dry: c.ecs.stop_instance(WEB2, dry_run=dry),
    "DescribeLoadBalancers": lambda c, dry: c.lb.list_load_balancers(ids=[LB_WEB]),
    "DescribeLoadBalancerAttribute":
        lambda c, dry: c.lb.group_members(LB_WEB, GroupKind.DEFAULT, None),
    "DescribeVServerGroups": lambda c, dry: c.lb.all_members(LB_WEB),
    "DescribeVServerGroupAttribute":
        lambda c, dry: c.lb.group_members(LB_WEB, GroupKind.VSERVER, VG_API),
    "DescribeMasterSlaveServerGroups": lambda c, dry: c.lb.all_members(LB_WEB),
    "DescribeMasterSlaveServerGroupAttribute":
        lambda c, dry: c.lb.group_members(LB_WEB, GroupKind.MASTER_SLAVE, MS),
    "SetBackendServers": lambda c, dry: c.lb.set_weights([DEFAULT_WEB1], 100),
    "SetVServerGroupAttribute": lambda c, dry: c.lb.set_weights([API_WEB1], 100),
    "RemoveBackendServers": lambda c, dry: c.lb.remove_members([DEFAULT_WEB2]),
    "RemoveVServerGroupBackendServers": lambda c, dry: c.lb.remove_members([API_WEB2]),
    "AddBackendServers": lambda c, dry: c.lb.add_members([NEW_DEFAULT]),
    "AddVServerGroupBackendServers": lambda c, dry: c.lb.add_members([NEW_JOBS]),
    "alb:ListServerGroups": lambda c, dry: c.alb.list_server_groups(),
    "alb:ListServerGroupServers": lambda c, dry: c.alb.group_members(ALB_PLAIN.group_id or ""),
    "alb:UpdateServerGroupServersAttribute":
        lambda c, dry: _none(c.alb.write_weights([ALB_PLAIN], 0, token_seed="p", dry_run=dry)),
    "alb:RemoveServersFromServerGroup":
        lambda c, dry: _none(c.alb.write_remove([ALB_PLAIN], token_seed="p", dry_run=dry)),
    "alb:AddServersToServerGroup":
        lambda c, dry: _none(c.alb.write_add([ALB_NEW], token_seed="p", dry_run=dry)),
    "alb:ListAsynJobs": lambda c, dry: c.alb.job_statuses(["job-probe"]),
    "nlb:ListServerGroups": lambda c, dry: c.nlb.list_server_groups(),
    "nlb:ListServerGroupServers": lambda c, dry: c.nlb.find([SPOT], []),
    "nlb:UpdateServerGroupServersAttribute":
        lambda c, dry: _none(c.nlb.write_weights([NLB_TCP], 0, token_seed="p", dry_run=dry)),
    "nlb:RemoveServersFromServerGroup":
        lambda c, dry: _none(c.nlb.write_remove([NLB_TCP], token_seed="p", dry_run=dry)),
    "nlb:AddServersToServerGroup":
        lambda c, dry: _none(c.nlb.write_add([NLB_NEW], token_seed="p", dry_run=dry)),
    "nlb:GetJobStatus": lambda c, dry: _nlb_job(c),
    "LookupEvents": lambda c, dry: c.trail.lookup_instance_events(
        WEB1, datetime.now(timezone.utc) - DAY, datetime.now(timezone.utc)),
    "DescribeMetricLast": lambda c, dry: c.cms.last_reading(WEB1, "CPUUtilization"),
    "PutEventRule": lambda c, dry: c.cms.put_event_rule(PROBE_RULE),
    "PutEventRuleTargets": lambda c, dry: c.cms.put_targets(PROBE_RULE.name, [PROBE_TARGET]),
    "DescribeEventRuleList": lambda c, dry: c.cms.list_event_rules("probe"),
    "DescribeEventRuleTargetList": lambda c, dry: c.cms.list_targets(PROBE_RULE.name),
}


def _scope_actions(scope: str) -> list[str]:
    if scope in CALLED_ACTIONS:
        return [scope]
    return [a for a, product in CALLED_ACTIONS.items() if scope in ("*", product)]


def _injection(scope: str, code: str) -> tuple[str, int] | None:
    """(action, HTTP status) under which the documented contract lets the emulator answer
    ``code`` for an entry of ``scope``; None when no action of the scope may."""
    for action in _scope_actions(scope):
        statuses = CONTRACT.statuses_of(CALLED_ACTIONS[action], _api(action), code)
        if statuses:
            return action, statuses[0]
    return None


ENTRIES = sorted(ERROR_RULES.items(), key=lambda item: item[0])
INJECTABLE = [(key, rule.rule) for key, rule in ENTRIES if key[1] not in NOT_INJECTABLE]


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    """basic.yaml with lb.yaml's instances, ALBs and NLBs (the ALB/NLB probes' groups)."""
    from dataclasses import replace

    basic, lb = load_fleet(FLEETS / "basic.yaml"), load_fleet(FLEETS / "lb.yaml")
    return replace(basic, instances=basic.instances + lb.instances, albs=lb.albs, nlbs=lb.nlbs)


@pytest.fixture
def emu(fleet: Fleet) -> Iterator[Emulator]:
    with Emulator(fleet, start_delay_s=0.01) as emulator:
        yield emulator


def clients_for(emu: Emulator, sleep: RecordingSleep, **overrides: Any) -> Clients:
    cred = emu.credentials[0]
    settings = Settings.from_env({}, cloud_url=emu.url, region="cn-hangzhou", **overrides)
    return Clients.from_settings(
        settings, Credentials(cred["access_key_id"], cred["access_key_secret"]), sleep=sleep)


def _api(action: str) -> str:
    """The API's own name of a CALLED_ACTIONS key (ALB/NLB keys carry their product)."""
    return action.rpartition(":")[2]


def _calls(emu: Emulator, action: str) -> list[Any]:
    product, _, name = action.rpartition(":")
    return [c for c in emu.calls() if c.action == name and (not product or c.product == product)]


@pytest.mark.parametrize(("key", "rule"), INJECTABLE, ids=[f"{k[0]}:{k[1]}" for k, _ in INJECTABLE])
def test_each_code_of_the_table_is_handled_as_its_rule_says(
    emu: Emulator, key: tuple[str, str], rule: Rule
) -> None:
    """GIVEN the emulator answers the code once WHEN the action is sent THEN retried once and
    successful (transient, throttled), else one call, no sleep, the rule's error or outcome."""
    scope, code = key
    found = _injection(scope, code)
    assert found is not None, f"{code} is not documented for any action of {scope}"
    action, status = found
    emu.set_faults(fail_next={action: [f"{code}:{status}"]})
    sleep = RecordingSleep()
    clients = clients_for(emu, sleep)
    probe = PROBES[action]
    dry = rule is Rule.DRY_RUN_OK

    if rule in (Rule.TRANSIENT, Rule.THROTTLED):
        result = probe(clients, dry)
        assert [c.code for c in _calls(emu, action)] == [code, None]
        assert len(sleep.delays) == 1
        if isinstance(result, StartResult):
            assert result.outcome is StartOutcome.STARTED
        if isinstance(result, list) and result and isinstance(result[0], StartResult):
            assert [r.outcome for r in result] == [StartOutcome.STARTED] * 2
        return

    starts = action in ("StartInstance", "StartInstances")
    if starts and rule is not Rule.AUTH:
        outcome = probe(clients, dry)
        results = outcome if isinstance(outcome, list) else [outcome]
        expected = {
            Rule.RETRY_LATER: (StartOutcome.FAILED, True),
            Rule.NOT_FOUND: (StartOutcome.FAILED, False),
            Rule.PERMANENT: (StartOutcome.FAILED, False),
            Rule.ALREADY_DONE: (StartOutcome.ALREADY_RUNNING, False),
            Rule.DRY_RUN_OK: (StartOutcome.DRY_RUN_OK, False),
        }[rule]
        assert [(r.outcome, r.retryable, r.code) for r in results] == [
            (*expected, code)] * len(results)
    elif rule is Rule.DRY_RUN_OK:
        assert probe(clients, dry) is None  # StopInstance: the DryRun verdict is no error
    else:
        error_type = {Rule.AUTH: AuthError, Rule.NOT_FOUND: NotFoundError,
                      Rule.PERMANENT: CloudError}[rule]
        with pytest.raises(CloudError) as caught:
            probe(clients, dry)
        assert type(caught.value) is error_type
        assert (caught.value.code, caught.value.http_status, caught.value.rule) == (
            code, status, rule)
        assert not caught.value.retryable
    assert [c.code for c in _calls(emu, action)] == [code]
    assert sleep.delays == []


def test_the_codes_the_emulator_cannot_answer_are_exactly_the_listed_ones() -> None:
    """GIVEN the table WHEN each code is looked up in the emulator's contract THEN only the
    NOT_INJECTABLE codes have no documented action (so none escapes the test above)."""
    missing = {code for (scope, code), _ in ENTRIES if _injection(scope, code) is None}
    assert missing == set(NOT_INJECTABLE)


def test_a_client_without_credentials_is_an_auth_error_before_any_call(emu: Emulator) -> None:
    """GIVEN an SDK client built with no key at all WHEN called THEN the SDK's own
    InvalidCredentials becomes an AuthError, not retried, and nothing reaches the emulator."""
    from alibabacloud_ecs20140526.client import Client as EcsSdk
    from alibabacloud_tea_openapi.models import Config

    sleep = RecordingSleep()
    sdk = EcsSdk(Config(endpoint=emu.endpoint, protocol="http", region_id="cn-hangzhou"))
    with pytest.raises(AuthError) as caught:
        EcsClient(sdk, "cn-hangzhou", sleep=sleep).describe_instances([WEB1])
    assert (caught.value.code, caught.value.rule) == ("InvalidCredentials", Rule.AUTH)
    assert emu.calls() == []
    assert sleep.delays == []


def _meta(product: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((API_META / META_FILES[product]).read_text())
    return data


def test_every_documented_code_of_every_called_action_has_an_entry() -> None:
    """GIVEN api-meta WHEN each called action's documented codes are looked up THEN every one
    has an entry of its action, its product or every API (no code left to the fallback)."""
    unruled = []
    for action, product in CALLED_ACTIONS.items():
        codes = _meta(product)["apis"][_api(action)].get("errorCodes") or {}
        for code in {c for listed in codes.values() for c in listed}:
            if not any((scope, code) in ERROR_RULES for scope in (action, product, "*")):
                unruled.append(f"{action}:{code}")
    assert unruled == []


def test_action_scoped_entries_are_documented_for_their_action() -> None:
    """GIVEN an entry scoped to one action THEN api-meta documents the code for it, unless its
    source names another document (the SDK's DryRun description)."""
    undocumented = []
    for (scope, code), entry in ERROR_RULES.items():
        if scope not in CALLED_ACTIONS:
            continue
        codes = _meta(CALLED_ACTIONS[scope])["apis"][_api(scope)].get("errorCodes") or {}
        if not any(code in listed for listed in codes.values()) and "api-meta" in entry.source:
            undocumented.append(f"{scope}:{code}")
    assert undocumented == []


def test_called_actions_are_the_actions_the_adapters_send() -> None:
    """GIVEN shared/clients.py WHEN its _call sites and write table are read THEN the actions
    are exactly CALLED_ACTIONS, each of them in the product's metadata."""
    import ast

    sent: set[str] = set()
    for module in ("clients.py", "cms.py", "lb/clb.py", "lb/alb.py", "lb/nlb.py"):
        tree = ast.parse((REPO_ROOT / "shared" / module).read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "_call" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                sent.add(str(node.args[0].value))
    from shared.cms import OUTSIDE_API_META
    from shared.lb.clb import _WRITE_APIS

    sent |= {action for action, _, _ in _WRITE_APIS.values()}
    # ALB and NLB share shared/lb/servergroups.py: its `_action("X")` calls and its write table
    # send X on both products.
    from shared.lb.servergroups import ServerGroupClient

    shared_apis = set(ServerGroupClient.WRITE_ACTIONS.values())
    tree = ast.parse((REPO_ROOT / "shared" / "lb" / "servergroups.py").read_text())
    shared_apis |= {str(node.args[0].value) for node in ast.walk(tree)
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "_action" and node.args
                    and isinstance(node.args[0], ast.Constant)}
    sent |= {f"{product}:{api}" for product in ("alb", "nlb") for api in shared_apis}
    # The two CloudMonitor deletes the snapshot lacks (tools/wiring.py remove only).
    assert sent - OUTSIDE_API_META == set(CALLED_ACTIONS)
    assert sent >= OUTSIDE_API_META
    assert all(_api(action) in _meta(product)["apis"]
               for action, product in CALLED_ACTIONS.items())


def test_dry_run_success_is_read_per_action() -> None:
    """GIVEN the two documented DryRun verdicts THEN each is success only where documented:
    DRYRUN.SUCCESS for StartInstances, DryRunOperation for StartInstance and StopInstance."""
    verdicts = {(a, c): rule_for(a, c, 400) for a in ("StartInstance", "StartInstances",
                                                      "StopInstance")
                for c in ("DRYRUN.SUCCESS", "DryRunOperation")}
    assert verdicts == {
        ("StartInstance", "DRYRUN.SUCCESS"): Rule.PERMANENT,
        ("StartInstance", "DryRunOperation"): Rule.DRY_RUN_OK,
        ("StartInstances", "DRYRUN.SUCCESS"): Rule.DRY_RUN_OK,
        ("StartInstances", "DryRunOperation"): Rule.PERMANENT,
        ("StopInstance", "DRYRUN.SUCCESS"): Rule.PERMANENT,
        ("StopInstance", "DryRunOperation"): Rule.DRY_RUN_OK,
    }


def test_a_dry_run_verdict_to_a_real_start_is_a_failure(emu: Emulator) -> None:
    """GIVEN StartInstances answers DRYRUN.SUCCESS to a start sent without DryRun THEN failed:
    never a success for a start that did not happen."""
    emu.set_faults(fail_next={"StartInstances": ["DRYRUN.SUCCESS:400"]})
    results = clients_for(emu, RecordingSleep()).ecs.start_instances([BATCH1])
    assert [(r.outcome, r.code, r.retryable) for r in results] == [
        (StartOutcome.FAILED, "DRYRUN.SUCCESS", False)]


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("Throttling.Resource", 429, Rule.THROTTLED),
    ("SomethingNew", 503, Rule.TRANSIENT),
    ("Forbidden.Unknown", 403, Rule.AUTH),
    ("InvalidSecurityToken.Other", 400, Rule.AUTH),
    ("InvalidFoo.NotFound", 404, Rule.NOT_FOUND),
    ("SomethingNew", 400, Rule.PERMANENT),
])
def test_codes_outside_the_table_fall_back_on_their_shape(
    code: str, status: int, expected: Rule
) -> None:
    """GIVEN an undocumented code THEN its prefix, suffix and HTTP status decide."""
    assert rule_for("DescribeInstances", code, status) is expected


# --- the time budget -------------------------------------------------------------------------


def test_retries_stop_at_the_retry_budget(emu: Emulator) -> None:
    """GIVEN throttling that asks for 1.5 s each time and a 2 s budget WHEN describing THEN one
    retry (1.5 s), not a second (3 s > 2 s): ThrottledError after 2 calls."""
    emu.set_faults(retry_after_ms=1500,
                   fail_next={"DescribeInstances": ["Throttling.User:400"] * 4})
    sleep = RecordingSleep()

    with pytest.raises(ThrottledError) as caught:
        clients_for(emu, sleep, api_retry_budget_s=2.0).ecs.describe_instances([WEB1])

    assert sleep.delays == [1.5]
    assert caught.value.attempts == 2
    assert [c.code for c in _calls(emu, "DescribeInstances")] == ["Throttling.User"] * 2


@pytest.mark.parametrize("code", sorted(
    {code for (_scope, code), entry in ENTRIES
     if entry.rule in (Rule.TRANSIENT, Rule.THROTTLED) and code not in NOT_INJECTABLE}))
def test_a_code_that_never_clears_ends_within_the_budget(emu: Emulator, code: str) -> None:
    """GIVEN a transient code on every attempt WHEN the call is made THEN TransientError after
    api_max_attempts calls, and the sleeps add up to no more than api_retry_budget_s."""
    scope = next(s for (s, c) in ERROR_RULES if c == code)
    found = _injection(scope, code)
    assert found is not None
    action, status = found
    emu.set_faults(fail_next={action: [f"{code}:{status}"] * 6})
    sleep = RecordingSleep()
    clients = clients_for(emu, sleep, api_max_attempts=5, api_backoff_base_s=0.5,
                          api_backoff_max_s=5.0, api_retry_budget_s=3.0)

    with pytest.raises(TransientError) as caught:
        PROBES[action](clients, False)

    assert caught.value.code == code
    assert sum(sleep.delays) <= 3.0
    assert caught.value.attempts == len(sleep.delays) + 1 == len(_calls(emu, action))
