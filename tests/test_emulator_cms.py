"""The emulator's CloudMonitor 2019-01-01: every served action through the real SDK, in success
and error, each raw answer checked against api-meta (or the SDK-sourced supplement for the two
Delete actions the snapshot lacks)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from alibabacloud_cms20190101 import models as M
from alibabacloud_cms20190101.client import Client as Cms
from alibabacloud_tea_openapi.models import Config
from Tea.exceptions import TeaException

from tests.helpers import FLEETS
from tools.emulator import Emulator, load_fleet
from tools.emulator.contract import SUPPLEMENTARY_APIS, Contract, ViolationKind, load_contract

WEB1 = "i-bp1aaaaaaaaaaaaaaaa1"  # basic.yaml, Running
BATCH1 = "i-bp1aaaaaaaaaaaaaaaa3"
RULE = "ecs-event-ops-test"


def _pattern(**kw: Any) -> M.PutEventRuleRequestEventPattern:
    return M.PutEventRuleRequestEventPattern(**kw)


def _rule(c: Cms, name: str = RULE) -> None:
    c.put_event_rule(M.PutEventRuleRequest(rule_name=name, event_pattern=[_pattern(
        product="ecs", name_list=["Instance:StateChange"], level_list=["INFO", "WARN"],
        status_list=["Stopped"])]))


def _fc(c: Cms, name: str = RULE, target_id: str = "1", function: str = "auto_start") -> None:
    c.put_event_rule_targets(M.PutEventRuleTargetsRequest(
        rule_name=name, fc_parameters=[M.PutEventRuleTargetsRequestFcParameters(
            id=target_id, region="cn-hangzhou", service_name="ecs-event-ops",
            function_name=function)]))


def _rule_with_target(c: Cms) -> None:
    _rule(c)
    _fc(c)


def _dims(iid: str) -> str:
    return json.dumps([{"instanceId": iid}])


@dataclass(frozen=True)
class Case:
    id: str
    action: str
    call: Callable[[Cms], Any]
    code: str | None = None
    setup: Callable[[Cms, Emulator], None] | None = None


CASES: list[Case] = [
    Case("put-rule", "PutEventRule", _rule),
    Case("put-rule-no-product", "PutEventRule", lambda c: c.put_event_rule(M.PutEventRuleRequest(
        rule_name=RULE, event_pattern=[_pattern(name_list=["Instance:StateChange"])])),
        "InvalidParameter"),
    Case("put-targets", "PutEventRuleTargets", _fc, setup=lambda c, e: _rule(c)),
    Case("put-targets-no-rule", "PutEventRuleTargets", _fc, "InvalidParameter"),
    Case("list-rules", "DescribeEventRuleList", lambda c: c.describe_event_rule_list(
        M.DescribeEventRuleListRequest(name_prefix="ecs-event-ops")),
        setup=lambda c, e: _rule(c)),
    Case("list-rules-bad-page", "DescribeEventRuleList", lambda c: c.describe_event_rule_list(
        M.DescribeEventRuleListRequest(page_size="0")), "InvalidParameterValue"),
    Case("list-targets", "DescribeEventRuleTargetList",
         lambda c: c.describe_event_rule_target_list(
             M.DescribeEventRuleTargetListRequest(rule_name=RULE)),
         setup=lambda c, e: _rule_with_target(c)),
    Case("list-targets-no-name", "DescribeEventRuleTargetList",
         lambda c: c.describe_event_rule_target_list(M.DescribeEventRuleTargetListRequest()),
         "MissingParameter"),
    Case("metric-last", "DescribeMetricLast", lambda c: c.describe_metric_last(
        M.DescribeMetricLastRequest(namespace="acs_ecs_dashboard", metric_name="CPUUtilization",
                                    dimensions=_dims(WEB1))),
        setup=lambda c, e: e.set_metric(WEB1, "CPUUtilization", 87.25)),
    Case("metric-last-bad-period", "DescribeMetricLast", lambda c: c.describe_metric_last(
        M.DescribeMetricLastRequest(namespace="acs_ecs_dashboard", metric_name="CPUUtilization",
                                    period="30")), "ParameterInvalid"),
    Case("metric-last-unknown-namespace", "DescribeMetricLast", lambda c: c.describe_metric_last(
        M.DescribeMetricLastRequest(namespace="acs_nothing", metric_name="CPUUtilization")),
        "ResourceNotFound"),
    Case("delete-targets", "DeleteEventRuleTargets", lambda c: c.delete_event_rule_targets(
        M.DeleteEventRuleTargetsRequest(rule_name=RULE, ids=["1"])),
        setup=lambda c, e: _rule_with_target(c)),
    Case("delete-targets-no-rule", "DeleteEventRuleTargets", lambda c: c.delete_event_rule_targets(
        M.DeleteEventRuleTargetsRequest(rule_name=RULE, ids=["1"])), "InvalidParameter"),
    Case("delete-rules", "DeleteEventRules", lambda c: c.delete_event_rules(
        M.DeleteEventRulesRequest(rule_names=[RULE])), setup=lambda c, e: _rule(c)),
    Case("delete-rules-no-rule", "DeleteEventRules", lambda c: c.delete_event_rules(
        M.DeleteEventRulesRequest(rule_names=[RULE])), "InvalidParameter"),
]
# Read by tests/test_conformance.py's coverage check: the CMS actions covered here.
CMS_COVERED_OK = {("cms", c.action) for c in CASES if c.code is None}
CMS_COVERED_ERROR = {("cms", c.action) for c in CASES if c.code is not None}


def _client(emu: Emulator) -> Cms:
    cred = emu.credentials[0]
    return Cms(Config(endpoint=emu.endpoint, protocol="http", region_id="cn-hangzhou",
                      access_key_id=cred["access_key_id"],
                      access_key_secret=cred["access_key_secret"]))


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.01) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def contract() -> Contract:
    return load_contract()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cms_action_answers_as_documented(case: Case, emu: Emulator, contract: Contract) -> None:
    """GIVEN the setup WHEN the SDK calls the action THEN success or the documented error, and
    the raw body conforms to the contract."""
    client = _client(emu)
    if case.setup is not None:
        case.setup(client, emu)
    emu.clear_calls()
    outcome: Any
    try:
        outcome = case.call(client)
    except TeaException as err:
        outcome = err
    (call,) = [c for c in emu.calls() if c.action == case.action]
    assert call.body is not None and call.product == "cms"
    if case.code is None:
        assert not isinstance(outcome, TeaException), outcome
        assert (call.status, call.code) == (200, None)
        assert contract.check_response("cms", case.action, call.body) == []
    else:
        assert isinstance(outcome, TeaException)
        assert (outcome.code, call.code) == (case.code, case.code)
        assert call.status in contract.statuses_of("cms", case.action, case.code)
    assert emu.contract_violations() == []


def test_rule_is_an_upsert_and_targets_replace_by_id(emu: Emulator) -> None:
    """GIVEN a rule with one FC target WHEN the rule is put again DISABLED and the target id 1
    is put again with another function THEN one rule, DISABLED, and one target: the new one."""
    client = _client(emu)
    _rule(client)
    _fc(client)
    client.put_event_rule(M.PutEventRuleRequest(rule_name=RULE, state="DISABLED", event_pattern=[
        _pattern(product="ecs", name_list=["Instance:StateChange"])]))
    _fc(client, function="sweep")
    rules = client.describe_event_rule_list(M.DescribeEventRuleListRequest(
        name_prefix=RULE)).body.to_map()
    assert rules["Total"] == 1
    (rule,) = rules["EventRules"]["EventRule"]
    assert (rule["Name"], rule["State"]) == (RULE, "DISABLED")
    assert rule["EventPattern"]["EventPattern"] == [
        {"Product": "ecs", "NameList": {"NameList": ["Instance:StateChange"]}}]
    targets = client.describe_event_rule_target_list(M.DescribeEventRuleTargetListRequest(
        rule_name=RULE)).body.to_map()
    assert targets["FcParameters"]["FCParameter"] == [{
        "Id": "1", "Region": "cn-hangzhou", "ServiceName": "ecs-event-ops",
        "FunctionName": "sweep",
        "Arn": "acs:fc:cn-hangzhou:1234567890123456:services/ecs-event-ops/functions/sweep"}]


def test_metric_last_answers_the_latest_point_of_the_asked_instance_only(emu: Emulator) -> None:
    """GIVEN readings for two instances WHEN one is asked THEN Datapoints (JSON text) holds its
    own point only; memory without an agent reading answers an empty list."""
    client = _client(emu)
    emu.set_metric(WEB1, "CPUUtilization", 12.5, timestamp_ms=1_700_000_000_000)
    emu.set_metric(BATCH1, "CPUUtilization", 99.0, timestamp_ms=1_700_000_000_000)
    body = client.describe_metric_last(M.DescribeMetricLastRequest(
        namespace="acs_ecs_dashboard", metric_name="CPUUtilization",
        dimensions=_dims(WEB1))).body
    assert json.loads(body.datapoints) == [{
        "timestamp": 1_700_000_000_000, "userId": "1234567890123456", "instanceId": WEB1,
        "Minimum": 12.5, "Average": 12.5, "Maximum": 12.5}]
    memory = client.describe_metric_last(M.DescribeMetricLastRequest(
        namespace="acs_ecs_dashboard", metric_name="memory_usedutilization",
        dimensions=_dims(WEB1))).body
    assert (memory.datapoints, memory.period) == ("[]", "60")


def test_supplementary_actions_name_their_source_and_nested_lists_are_documented(
        contract: Contract) -> None:
    """GIVEN the two Delete actions from the SDK's models THEN each names its source; and the
    SDK's nested flattening (EventPattern.1.NameList.2) is a documented request parameter while
    an undocumented nested name is not."""
    for action, api in SUPPLEMENTARY_APIS["cms"].items():
        assert "alibabacloud_cms20190101" in api["source"], action
        assert contract.api("cms", action) is not None
    ok = contract.check_request("cms", "PutEventRule", {
        "RuleName": "r", "EventPattern.1.Product": "ecs", "EventPattern.1.NameList.2": "x"})
    assert ok == []
    bad = contract.check_request("cms", "PutEventRule", {
        "RuleName": "r", "EventPattern.1.Product": "ecs", "EventPattern.1.Product.2": "x"})
    assert [(v.kind, v.where) for v in bad] == [
        (ViolationKind.UNDOCUMENTED_PARAM, "EventPattern.1.Product.2")]


def test_a_reading_can_be_set_over_the_control_endpoint(emu: Emulator) -> None:
    """GIVEN a running emulator WHEN a reading is posted to /_emulator/instances/<id>/metric
    THEN DescribeMetricLast answers it; an unknown instance is a 404 and nothing is set."""
    import urllib.error
    import urllib.request

    def post(iid: str, body: dict[str, Any]) -> int:
        request = urllib.request.Request(f"{emu.url}/_emulator/instances/{iid}/metric",
                                         data=json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    assert post(WEB1, {"metric": "memory_usedutilization", "value": 41.5,
                       "timestamp_ms": 1_700_000_000_000}) == 200
    assert post("i-bp1zzzzzzzzzzzzzzzz9", {"metric": "CPUUtilization", "value": 1}) == 404
    body = _client(emu).describe_metric_last(M.DescribeMetricLastRequest(
        namespace="acs_ecs_dashboard", metric_name="memory_usedutilization",
        dimensions=_dims(WEB1))).body
    assert [(p["instanceId"], p["Average"]) for p in json.loads(body.datapoints)] == [(WEB1, 41.5)]
