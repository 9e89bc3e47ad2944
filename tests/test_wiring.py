"""tools.wiring: CloudMonitor rules and targets for the functions, by API, against the emulator
through the real CMS SDK (the product's requests are checked against api-meta by the emulator)."""

from __future__ import annotations

import io
import json
import shlex
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from alibabacloud_cms20190101 import models as M
from alibabacloud_cms20190101.client import Client as Cms
from alibabacloud_tea_openapi.models import Config

from shared.clients import Clients, Credentials
from shared.settings import Settings
from tests.helpers import FLEETS
from tools import wiring
from tools.emulator import Emulator, load_fleet
from tools.ram_policy import Scope, declared_actions, policy_document

WRITES = ("PutEventRule", "PutEventRuleTargets", "DeleteEventRuleTargets", "DeleteEventRules")
RULES = ["ecs-event-ops-auto-start", "ecs-event-ops-drain-spot", "ecs-event-ops-record-lifecycle"]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.01) as emulator:
        yield emulator


def run(emu: Emulator, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = wiring.main([*argv, "--cloud", emu.url] if argv[0] != "prereqs" else list(argv),
                       environ=emu.signing_environment(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def steps(text: str) -> list[tuple[str, str, str]]:
    return [(s["status"], s["action"], s["rule"]) for s in json.loads(text)["steps"]]


def writes(emu: Emulator) -> list[str]:
    return [c.action for c in emu.calls() if c.action in WRITES]


def sdk(emu: Emulator) -> Cms:
    cred = emu.credentials[0]
    return Cms(Config(endpoint=emu.endpoint, protocol="http", region_id="cn-hangzhou",
                      access_key_id=cred["access_key_id"],
                      access_key_secret=cred["access_key_secret"]))


def rules(emu: Emulator) -> list[dict[str, Any]]:
    body = sdk(emu).describe_event_rule_list(M.DescribeEventRuleListRequest(
        name_prefix="ecs-event-ops-")).body.to_map()
    found: list[dict[str, Any]] = body["EventRules"]["EventRule"]
    return found


def targets(emu: Emulator, rule: str) -> dict[str, Any]:
    body: dict[str, Any] = sdk(emu).describe_event_rule_target_list(
        M.DescribeEventRuleTargetListRequest(rule_name=rule)).body.to_map()
    body.pop("RequestId")
    return body


def test_dry_run_plans_every_rule_and_target_and_sends_no_write(emu: Emulator) -> None:
    code, out, _ = run(emu, "apply", "--dry-run", "--format", "json")
    assert code == 0
    assert steps(out) == [
        ("planned", "PutEventRule", "ecs-event-ops-record-lifecycle"),
        ("planned", "PutEventRuleTargets", "ecs-event-ops-record-lifecycle"),
        ("planned", "PutEventRule", "ecs-event-ops-auto-start"),
        ("planned", "PutEventRuleTargets", "ecs-event-ops-auto-start"),
        ("planned", "PutEventRule", "ecs-event-ops-drain-spot"),
        ("planned", "PutEventRuleTargets", "ecs-event-ops-drain-spot"),
    ]
    assert writes(emu) == []
    assert rules(emu) == []


def test_apply_creates_the_rules_and_fc_targets_once(emu: Emulator) -> None:
    """GIVEN nothing WHEN apply runs twice THEN the three rules with each function's own event
    names and its FC target; the second run plans and sends nothing."""
    code, out, _ = run(emu, "apply", "--format", "json")
    assert code == 0 and [s[0] for s in steps(out)] == ["done"] * 6
    by_name = {r["Name"]: r for r in rules(emu)}
    assert sorted(by_name) == RULES
    assert by_name["ecs-event-ops-auto-start"]["EventPattern"]["EventPattern"] == [
        {"Product": "ecs", "NameList": {"NameList": ["Instance:StateChange"]}}]
    # 24 names in two patterns: NameList holds at most 20 (api-meta maxItems)
    record = by_name["ecs-event-ops-record-lifecycle"]["EventPattern"]["EventPattern"]
    assert [len(p["NameList"]["NameList"]) for p in record] == [20, 4]
    assert record[0]["NameList"]["NameList"][:2] == [
        "Instance:StateChange", "Instance:PreemptibleInstanceInterruption"]
    assert {r["State"] for r in by_name.values()} == {"ENABLED"}
    assert targets(emu, "ecs-event-ops-drain-spot") == {"Code": "200", "FcParameters": {
        "FCParameter": [{
            "Id": "1", "Region": "cn-hangzhou", "ServiceName": "ecs-event-ops-drain-spot",
            "FunctionName": "drain_spot",
            "Arn": "acs:fc:cn-hangzhou:1234567890123456:services/ecs-event-ops-drain-spot/"
                   "functions/drain_spot"}]}}

    emu.clear_calls()
    code, out, _ = run(emu, "apply")
    assert (code, out) == (0, "nothing to do: the rules and targets already match\n")
    assert writes(emu) == []
    assert emu.contract_violations() == []


def test_apply_repairs_a_disabled_rule_and_removes_a_stray_target(emu: Emulator) -> None:
    assert run(emu, "apply")[0] == 0
    client = sdk(emu)
    client.put_event_rule(M.PutEventRuleRequest(
        rule_name="ecs-event-ops-auto-start", state="DISABLED",
        event_pattern=[M.PutEventRuleRequestEventPattern(product="ecs",
                                                        name_list=["Instance:StateChange"])]))
    client.put_event_rule_targets(M.PutEventRuleTargetsRequest(
        rule_name="ecs-event-ops-auto-start", mns_parameters=[
            M.PutEventRuleTargetsRequestMnsParameters(id="7", region="cn-hangzhou", queue="x")]))
    code, out, _ = run(emu, "show", "--format", "json")
    assert code == 1
    assert [(c["status"], c["function"], c["message"]) for c in json.loads(out)["checks"]][1] == (
        "fail", "auto_start", "rule ecs-event-ops-auto-start is DISABLED; rule "
        "ecs-event-ops-auto-start does not match auto_start's EVENT_TYPES: run python -m "
        "tools.wiring apply")

    emu.clear_calls()
    code, out, _ = run(emu, "apply", "--format", "json")
    assert code == 0
    assert steps(out) == [("done", "PutEventRule", "ecs-event-ops-auto-start"),
                          ("done", "DeleteEventRuleTargets", "ecs-event-ops-auto-start")]
    assert [t["Id"] for t in targets(emu, "ecs-event-ops-auto-start")["FcParameters"][
        "FCParameter"]] == ["1"]
    assert "MnsParameters" not in targets(emu, "ecs-event-ops-auto-start")
    assert run(emu, "show")[0] == 0


def test_remove_deletes_targets_then_rules_and_leaves_other_rules(emu: Emulator) -> None:
    assert run(emu, "apply")[0] == 0
    sdk(emu).put_event_rule(M.PutEventRuleRequest(rule_name="someone-else", event_pattern=[
        M.PutEventRuleRequestEventPattern(product="ecs")]))
    emu.clear_calls()
    code, out, _ = run(emu, "remove", "--dry-run", "--format", "json")
    assert code == 0 and writes(emu) == []
    assert [s[1:] for s in steps(out)] == [
        ("DeleteEventRuleTargets", "ecs-event-ops-record-lifecycle"),
        ("DeleteEventRules", "ecs-event-ops-record-lifecycle"),
        ("DeleteEventRuleTargets", "ecs-event-ops-auto-start"),
        ("DeleteEventRules", "ecs-event-ops-auto-start"),
        ("DeleteEventRuleTargets", "ecs-event-ops-drain-spot"),
        ("DeleteEventRules", "ecs-event-ops-drain-spot")]

    assert run(emu, "remove")[0] == 0
    assert writes(emu) == ["DeleteEventRuleTargets", "DeleteEventRules"] * 3
    assert rules(emu) == []
    remaining = sdk(emu).describe_event_rule_list(M.DescribeEventRuleListRequest()).body.to_map()
    assert [r["Name"] for r in remaining["EventRules"]["EventRule"]] == ["someone-else"]
    code, out, _ = run(emu, "show", "--format", "json")
    assert code == 1
    assert json.loads(out)["checks"][0]["message"] == (
        "no CloudMonitor rule ecs-event-ops-record-lifecycle: run python -m tools.wiring apply")
    assert run(emu, "remove", "--format", "json")[1].count('"action"') == 0  # nothing left


def test_mns_target_gives_each_function_its_own_queue(emu: Emulator) -> None:
    """An MNS queue hands a message to one consumer: one queue per function."""
    assert run(emu, "apply", "--target", "mns", "--functions", "record_lifecycle,drain_spot")[0] == 0
    assert sorted(r["Name"] for r in rules(emu)) == [
        "ecs-event-ops-drain-spot", "ecs-event-ops-record-lifecycle"]
    assert targets(emu, "ecs-event-ops-record-lifecycle")["MnsParameters"]["MnsParameter"] == [{
        "Id": "1", "Region": "cn-hangzhou", "Queue": "ecs-cms-event-record-lifecycle",
        "Arn": "acs:mns:cn-hangzhou:1234567890123456:/queues/ecs-cms-event-record-lifecycle/"
               "messages"}]
    code, out, _ = run(emu, "show", "--target", "mns", "--functions", "drain_spot")
    assert code == 0 and "-> mns cn-hangzhou/queue ecs-cms-event-drain-spot (id 1)" in out


def test_bad_input_exits_2_and_says_why(emu: Emulator) -> None:
    err = io.StringIO()
    assert wiring.main(["apply"], environ={}, stderr=err) == 2
    assert "refusing to call the real Alibaba Cloud endpoints: pass --cloud URL" in err.getvalue()
    code, _, message = run(emu, "apply", "--functions", "sweep")
    assert code == 2 and "'sweep' receives no events" in message
    assert wiring.main(["prereqs", "create", "--account", "12ab"], stderr=err) == 2


def test_a_failing_call_exits_1_without_a_traceback(emu: Emulator) -> None:
    emu.set_faults(fail_next={"DescribeEventRuleList": ["AccessForbidden"]})
    code, out, err = run(emu, "apply")
    assert (code, out) == (1, "")
    assert err.startswith("python -m tools.wiring: DescribeEventRuleList ecs-event-ops-: ")
    assert "code AccessForbidden, HTTP 403" in err


def test_prereqs_print_the_roles_policies_log_and_queues() -> None:
    out = io.StringIO()
    code = wiring.main(["prereqs", "create", "--account", "1234567890", "--target", "mns"],
                       environ={"ECS_EVENT_OPS_LB_IDS": "lb-bp1one"}, stdout=out)
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("# create the prerequisites (printed, not run")
    argv = [shlex.split(line) for line in lines[1:]]
    assert argv[0][:3] == ["aliyun", "sls", "CreateProject"]
    assert json.loads(argv[0][-1]) == {"projectName": "ecs-event-ops-1234567890",
                                       "description": "ecs-event-ops function logs"}
    policies = {a[a.index("--PolicyName") + 1]: json.loads(a[-1]) for a in argv
                if a[2] == "CreatePolicy"}
    scope = Scope("1234567890", (), ("lb-bp1one",))
    assert policies == {
        f"ecs-event-ops-{f.replace('_', '-')}": policy_document(
            actions, scope, log_project="ecs-event-ops-1234567890", log_store="functions")
        for f, actions in declared_actions().items()}
    assert [a[-1] for a in argv if a[2] == "CreateQueue"] == [
        "ecs-cms-event-record-lifecycle", "ecs-cms-event-auto-start", "ecs-cms-event-drain-spot"]
    removal = io.StringIO()
    assert wiring.main(["prereqs", "remove", "--account", "1234567890"], environ={},
                       stdout=removal) == 0
    last = removal.getvalue().splitlines()[-1]
    assert last == "aliyun sls DeleteProject --region cn-hangzhou --project ecs-event-ops-1234567890"


def test_doctor_findings_accept_either_target_and_warn_without_rules(emu: Emulator) -> None:
    cred = emu.credentials[0]
    cms = Clients.from_settings(Settings.from_env({}, cloud_url=emu.url, region="cn-hangzhou"),
                                Credentials(cred["access_key_id"], cred["access_key_secret"])).cms
    assert {row[0] for row in wiring.doctor_findings(cms, "cn-hangzhou")} == {"warn"}
    assert run(emu, "apply", "--target", "mns")[0] == 0
    assert wiring.doctor_findings(cms, "cn-hangzhou") == [
        ("ok", "record_lifecycle", "rule ecs-event-ops-record-lifecycle -> mns cn-hangzhou/queue "
         "ecs-cms-event-record-lifecycle (id 1)"),
        ("ok", "auto_start", "rule ecs-event-ops-auto-start -> mns cn-hangzhou/queue "
         "ecs-cms-event-auto-start (id 1)"),
        ("ok", "drain_spot", "rule ecs-event-ops-drain-spot -> mns cn-hangzhou/queue "
         "ecs-cms-event-drain-spot (id 1)")]
    assert run(emu, "remove", "--functions", "drain_spot")[0] == 0
    assert wiring.doctor_findings(cms, "cn-hangzhou")[2] == (
        "fail", "drain_spot",
        "no CloudMonitor rule ecs-event-ops-drain-spot: run python -m tools.wiring apply")


def test_doctor_runs_the_wiring_check_from_its_registry(emu: Emulator) -> None:
    """GIVEN tools.wiring imported (it registers ``wiring`` with tools/doctor's @check) WHEN the
    doctor runs that check against the emulator after ``apply`` THEN one ok finding per event
    function; before it, warnings (the events may come through EventBridge)."""
    from tools import doctor

    (registered,) = [c for c in doctor.CHECKS if c.name == "wiring"]
    assert registered.cloud
    env = {**emu.signing_environment(), "ECS_EVENT_OPS_REGION": "cn-hangzhou"}

    def findings() -> list[tuple[str, str]]:
        settings, _ = doctor.load_settings(env)
        ctx = doctor.Context(environ=env, settings=settings, cloud_url=emu.url,
                             real_cloud=False, as_fc=False, now=datetime.now(timezone.utc))
        return [(f.status.value, f.subject) for f in doctor.run_checks(ctx, only=["wiring"])]

    assert findings() == [("warn", f) for f in wiring.EVENT_FUNCTIONS]
    assert run(emu, "apply")[0] == 0
    assert findings() == [("ok", f) for f in wiring.EVENT_FUNCTIONS]


def test_the_doctor_cli_imports_the_wiring_check(emu: Emulator) -> None:
    """``python -m tools.doctor --check wiring``: the CLI imports tools.wiring
    (EXTRA_CHECK_MODULES) and reports the rules as JSON, exit 1 when one does not reach its
    function."""
    from tools import doctor

    assert run(emu, "apply", "--functions", "auto_start")[0] == 0
    out, err = io.StringIO(), io.StringIO()
    env = {**emu.signing_environment(), "ECS_EVENT_OPS_REGION": "cn-hangzhou"}
    code = doctor.main(["--cloud", emu.url, "--check", "wiring", "--format", "json"],
                       environ=env, stdout=out, stderr=err)
    assert code == 1
    rows = [(f["status"], f["subject"]) for f in json.loads(out.getvalue())["findings"]]
    assert rows == [("fail", "record_lifecycle"), ("ok", "auto_start"), ("fail", "drain_spot")]
