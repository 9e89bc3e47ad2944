"""Least privilege: the check's logic on synthetic input, and the attribution it relies on.

The real check runs at the end of every session (tests/privilege_plugin.py): the actions each
function made against the emulators of the whole suite, compared with its RAM_ACTIONS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.clients import Clients, Credentials, user_agent
from shared.settings import Settings
from tests.helpers import FLEETS
from tests.privilege_plugin import (
    check,
    declared_actions,
    function_test_files,
    is_complete,
)
from tools import ram_policy
from tools.emulator import Emulator, load_fleet, server
from tools.invoke import known_functions, load_function

GRANTED = {
    "auto_start": ["ecs:DescribeInstances", "ecs:StartInstance"],
    "drain_spot": ["slb:RemoveVServerGroupBackendServers", "slb:DescribeLoadBalancers"],
    "lifecycle_api": [],
}
APP1 = "i-bp1as000000000000001"


# --- the check on synthetic input --------------------------------------------------------------


def test_used_but_not_granted_and_granted_but_unused_are_both_detected() -> None:
    """A call outside RAM_ACTIONS and a grant never used are each reported, by function."""
    # GIVEN auto_start calling StopInstance (not granted) and drain_spot never describing LBs
    used = {
        "auto_start": {"ecs:DescribeInstances", "ecs:StartInstance", "ecs:StopInstance"},
        "drain_spot": {"slb:RemoveVServerGroupBackendServers"},
    }
    # WHEN checked after a complete run
    verdict = check(used, GRANTED, complete=True)
    # THEN both violations are named, and nothing else
    assert verdict.used_not_granted == {"auto_start": ["ecs:StopInstance"]}
    assert verdict.granted_not_used == {"drain_spot": ["slb:DescribeLoadBalancers"]}
    assert verdict.unexercised == []
    assert verdict.failures() == [
        "auto_start: used but not in RAM_ACTIONS: ecs:StopInstance",
        "drain_spot: in RAM_ACTIONS but never used: slb:DescribeLoadBalancers",
    ]


def test_exact_use_of_every_grant_passes() -> None:
    """Used == granted for every function: no failure."""
    used = {fn: set(actions) for fn, actions in GRANTED.items()}
    assert check(used, GRANTED, complete=True).failures(strict=True) == []


def test_a_partial_run_judges_only_calls_made() -> None:
    """Subset runs cannot tell 'unused' from 'not exercised': only used-not-granted counts."""
    used = {"drain_spot": {"slb:DescribeLoadBalancers", "ecs:StartInstance"}}
    verdict = check(used, GRANTED, complete=False)
    assert verdict.used_not_granted == {"drain_spot": ["ecs:StartInstance"]}
    assert verdict.granted_not_used == {}
    assert verdict.unexercised == []


def test_calls_of_a_function_that_declares_nothing_are_all_violations() -> None:
    """A function missing from the declarations (or declaring ()) is granted nothing."""
    used = {"lifecycle_api": {"ecs:DescribeInstances"}, "rogue": {"slb:DeleteLoadBalancer"}}
    verdict = check(used, GRANTED, complete=False)
    assert verdict.used_not_granted == {"lifecycle_api": ["ecs:DescribeInstances"],
                                        "rogue": ["slb:DeleteLoadBalancer"]}


def test_a_function_never_exercised_is_reported_apart_and_fails_only_when_strict() -> None:
    """Grants and no attributed call at all: 'unexercised', a failure with --privileges-strict."""
    used = {"auto_start": {"ecs:DescribeInstances", "ecs:StartInstance"}}
    verdict = check(used, GRANTED, complete=True)
    assert verdict.unexercised == ["drain_spot"]
    assert verdict.failures() == []
    assert verdict.failures(strict=True) == [
        "drain_spot: declares RAM_ACTIONS but no test made an attributed call"]


def test_completeness_needs_every_function_test_file_fully_run(tmp_path: Path) -> None:
    """Complete = every required file collected, nothing deselected, every item finished."""
    a, b = tmp_path / "test_auto_start.py", tmp_path / "test_drain_spot.py"
    collected = {"a::t1": a, "a::t2": a, "b::t1": b}
    everything = set(collected)
    assert is_complete({a, b}, collected, everything, set())
    assert not is_complete({a, b}, {"a::t1": a}, {"a::t1"}, set())  # one file only
    assert not is_complete({a, b}, collected, everything, {a})  # -k deselected some of a
    assert not is_complete({a, b}, collected, everything - {"b::t1"}, set())  # -x stopped
    assert not is_complete(set(), collected, everything, set())


def test_function_test_files_are_found_by_name(tmp_path: Path) -> None:
    """tests/test_<function>*.py per function, whatever exists."""
    for name in ("test_auto_start.py", "test_auto_start_rules.py", "test_other.py"):
        (tmp_path / name).write_text("")
    assert function_test_files(["auto_start", "sweep"], tmp_path) == {
        (tmp_path / "test_auto_start.py").resolve(),
        (tmp_path / "test_auto_start_rules.py").resolve(),
    }


def test_declarations_are_read_as_the_functions_define_them() -> None:
    """The plugin reads RAM_ACTIONS without importing; it agrees with the imported modules."""
    declared = declared_actions()
    assert sorted(declared) == known_functions()
    for function in known_functions():
        module = load_function(function).module
        assert declared[function] == frozenset(module.RAM_ACTIONS), function
        assert all(a.split(":")[0] in ("ecs", "slb", "alb", "nlb", "actiontrail", "cms")
                   for a in declared[function])


# --- attribution ---------------------------------------------------------------------------------


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "autostart.yaml")) as emulator:
        yield emulator


def clients(emu: Emulator) -> Clients:
    cred = emu.credentials[0]
    settings = Settings.from_env(environ={}, cloud_url=emu.url, db_url="sqlite://")
    return Clients.from_settings(
        settings, Credentials(cred["access_key_id"], cred["access_key_secret"],
                              cred.get("security_token")))


def test_user_agent_names_the_function_from_fc_function_name() -> None:
    """shared.clients labels its SDK clients with the function FC runs."""
    assert user_agent({"FC_FUNCTION_NAME": "auto_start"}) == "ecs-event-ops/auto_start"
    assert user_agent({}) == "ecs-event-ops"


def test_calls_are_attributed_to_the_function_in_the_user_agent(
        emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls from a client built under FC_FUNCTION_NAME count for it; others count for nobody."""
    # GIVEN a client built while FC_FUNCTION_NAME is set, and one built without it
    monkeypatch.setenv("FC_FUNCTION_NAME", "auto_start")
    attributed = clients(emu)
    attributed.ecs.describe_instances([APP1])
    monkeypatch.delenv("FC_FUNCTION_NAME")
    clients(emu).ecs.describe_instances([APP1])
    # WHEN the log is cleared (as tests do between steps)
    calls = emu.calls()
    emu.clear_calls()
    # THEN each call kept its User-Agent; only the first counts, and clearing did not lose it
    assert [c.function for c in calls] == ["auto_start", None]
    assert "ecs-event-ops/auto_start" in calls[0].user_agent
    assert emu.actions_by_function() == {"auto_start": {"ecs:DescribeInstances": 1}}


def test_every_closed_emulator_reaches_the_on_close_hooks() -> None:
    """ON_CLOSE callbacks get the emulator once closed; the session plugin is one of them."""
    seen: list[Emulator] = []
    server.ON_CLOSE.append(seen.append)
    try:
        with Emulator(load_fleet(FLEETS / "autostart.yaml")) as emulator:
            pass
    finally:
        server.ON_CLOSE.remove(seen.append)
    assert seen == [emulator]
    assert any(getattr(cb, "__self__", None).__class__.__name__ == "_Session"
               for cb in server.ON_CLOSE), "the least-privilege plugin is not registered"


# --- the resource scope of the deployed grants (tools/ram_policy.py) -------------------------------


def test_statements_scope_each_action_to_what_alibaba_authorizes() -> None:
    """Synthetic actions of every reach, with regions, ids and a tag: exact statements."""
    # GIVEN a start, a list, a per-LB read, a backend write and a '*' action
    actions = ["ecs:DescribeInstances", "ecs:StartInstances", "slb:DescribeLoadBalancers",
               "slb:DescribeVServerGroups", "slb:RemoveVServerGroupBackendServers"]
    scope = ram_policy.Scope("123", ("cn-hangzhou",), ("lb-1", "lb-2"), "keep-up")
    # WHEN the statements are built
    built = ram_policy.statements(actions, scope)
    # THEN each reach names exactly its resources, starts only under the tag
    instances = ["acs:ecs:cn-hangzhou:123:instance/*"]
    tagged = [{"StringEqualsIgnoreCase": {key: ["true", "always"]}}
              for key in ("ecs:tag/keep-up", "acs:ResourceTag/keep-up")]
    assert built == [
        {"Effect": "Allow", "Action": ["ecs:DescribeInstances"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["ecs:StartInstances"], "Resource": instances,
         "Condition": tagged[0]},
        {"Effect": "Allow", "Action": ["ecs:StartInstances"], "Resource": instances,
         "Condition": tagged[1]},
        {"Effect": "Allow", "Action": ["slb:DescribeLoadBalancers"],
         "Resource": ["acs:slb:cn-hangzhou:123:loadbalancer/*"]},
        {"Effect": "Allow", "Action": ["slb:DescribeVServerGroups",
                                       "slb:RemoveVServerGroupBackendServers"],
         "Resource": ["acs:slb:*:123:loadbalancer/lb-1", "acs:slb:*:123:loadbalancer/lb-2"]},
        {"Effect": "Allow", "Action": ["slb:RemoveVServerGroupBackendServers"],
         "Resource": instances},
    ]


def test_without_ids_or_regions_the_account_bounds_every_grant() -> None:
    """No regions, no CLB ids: every ARN still names the account, never another one."""
    scope = ram_policy.Scope("123")
    built = ram_policy.statements(["slb:SetVServerGroupAttribute"], scope)
    assert [s["Resource"] for s in built] == [["acs:slb:*:123:loadbalancer/*"],
                                              ["acs:ecs:*:123:instance/*"]]


def test_an_action_without_a_rule_is_refused() -> None:
    """A new action needs a decision (and its source) before any policy is printed."""
    with pytest.raises(ram_policy.UnknownActionError, match="ecs:StopInstance: no rule"):
        ram_policy.statements(["ecs:StopInstance"], ram_policy.Scope("123"))


def test_the_cli_reads_the_scope_from_the_deployment_environment(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--lb-ids / --regions / --auto-start-tag default to the ECS_EVENT_OPS_* s.yaml reads."""
    env = {"ECS_EVENT_OPS_LB_IDS": "lb-1", "ECS_EVENT_OPS_REGIONS": "cn-beijing",
           "ECS_EVENT_OPS_AUTO_START_TAG": "keep-up"}
    assert ram_policy.main(["sweep", "--account", "123", "--log-project", "p"], env) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = ram_policy.policy_document(
        declared_actions()["sweep"], ram_policy.Scope("123", ("cn-beijing",), ("lb-1",), "keep-up"),
        log_project="p")
    assert [(sorted(s["Action"]), s["Resource"], s.get("Condition")) for s in printed["Statement"]] \
        == [(sorted(s["Action"]), s["Resource"], s.get("Condition")) for s in expected["Statement"]]
    assert printed["Statement"][-1] == {"Effect": "Allow", "Action": ["log:PostLogStoreLogs"],
                                        "Resource": "acs:log:*:123:project/p/logstore/functions"}


def test_the_cli_refuses_an_unknown_function(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown function name is an error naming the available ones, not an empty policy."""
    assert ram_policy.main(["nope", "--account", "123"], {}) == 2
    assert "unknown function 'nope'; available: " in capsys.readouterr().err
