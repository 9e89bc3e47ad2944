"""Each function's RAM policy, scoped to resources where Alibaba authorizes them.

A function declares the API actions it calls (``RAM_ACTIONS`` in ``functions/<name>/index.py``);
this module decides, action by action, which resources the grant names (:data:`RULES`, each rule
with the Alibaba page that documents the action's resource type) and builds the policy document.
template.yml states the same statements with ROS parameters; ``tests/test_deploy.py`` checks
that both agree for every function and every parameter shape. With ``s deploy`` (fc3 never
creates policies) print the document with this module and attach it to the role::

    python -m tools.ram_policy auto_start --account 1234567890 --log-project ecs-event-ops-1234567890

Scope parameters default to the deployment environment s.yaml reads (``ECS_EVENT_OPS_REGIONS``,
``ECS_EVENT_OPS_LB_IDS``, ``ECS_EVENT_OPS_AUTO_START_TAG``), so one exported environment gives
the functions and their policies the same scope.

Shapes (docs/deploy.md, "What each role may do"):

* actions without resource-level authorization (:data:`NO_RESOURCE_LEVEL`): ``Resource: "*"``;
* starts: the account's instances (in the regions in scope) carrying the auto-start tag with
  ``true`` or ``always``, stated once with ``ecs:tag/<key>`` and once with
  ``acs:ResourceTag/<key>`` (Alibaba documents both keys for ECS tag-based authorization; two
  statements OR them, both name the same tag, so the grant holds whichever key ECS evaluates);
* listing load balancers: the account's CLBs (in the regions in scope);
* reading and changing one load balancer: the CLBs in scope (``lb_ids``), else the account's;
* changing backend servers: also the account's instances, since CLB checks the action on the
  ECS instance it names as well as on the load balancer.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
ENV_PREFIX = "ECS_EVENT_OPS_"
LOG_ACTION = "log:PostLogStoreLogs"
DEFAULT_AUTO_START_TAG = "auto-start"
# shared/autostart.py opts an instance in with "true" or "always", case ignored.
AUTO_START_VALUES = ("true", "always")
TAG_CONDITION_OPERATOR = "StringEqualsIgnoreCase"
TAG_CONDITION_KEYS = ("ecs:tag/{tag}", "acs:ResourceTag/{tag}")

__all__ = [
    "NO_RESOURCE_LEVEL",
    "RULES",
    "Reach",
    "Rule",
    "Scope",
    "UnknownActionError",
    "declared_actions",
    "policy_document",
    "statements",
]


class UnknownActionError(ValueError):
    """An action no rule covers: decide its resources (with a source) in :data:`RULES`."""


class Reach(str, Enum):
    """What a grant of the action names in ``Resource``."""

    EVERYTHING = "everything"  # "*": no resource-level authorization for this action
    TAGGED_INSTANCES = "tagged_instances"  # the account's instances carrying the opt-in tag
    ACCOUNT_LOAD_BALANCERS = "account_load_balancers"  # the account's CLBs
    SCOPED_LOAD_BALANCERS = "scoped_load_balancers"  # the CLBs in scope, else the account's
    BACKENDS = "backends"  # SCOPED_LOAD_BALANCERS, and the account's instances
    SERVER_GROUPS = "server_groups"  # the account's ALB / NLB server groups (the action's product)
    GROUP_BACKENDS = "group_backends"  # SERVER_GROUPS, and the account's instances


@dataclass(frozen=True)
class Rule:
    reach: Reach
    why: str
    source: str


_ECS_RAM = "https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-ram"
_ECS_DESCRIBE = "https://www.alibabacloud.com/help/en/ecs/developer-reference/api-describeinstances"
_ECS_START = "https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-startinstance"
_ECS_STARTS = "https://www.alibabacloud.com/help/en/ecs/developer-reference/api-ecs-2014-05-26-startinstances"
_TRAIL_RAM = "https://www.alibabacloud.com/help/en/actiontrail/developer-reference/api-actiontrail-2020-07-06-ram"
_CMS_METRIC_LAST = ("https://www.alibabacloud.com/help/en/cms/cloudmonitor-1-0/developer-reference/"
                    "api-cms-2019-01-01-describemetriclast")
_SLB_EXAMPLES = "https://www.alibabacloud.com/help/doc-detail/58956.htm"
_SLB_RAM = "https://www.alibabacloud.com/help/en/slb/classic-load-balancer/developer-reference/api-slb-2014-05-15-ram"
_SLB_SET_VSG = ("https://www.alibabacloud.com/help/en/slb/classic-load-balancer/developer-reference/"
                "api-slb-2014-05-15-setvservergroupattribute")

_PER_LB = ("authorized on the load balancer acs:slb:{region}:{account}:loadbalancer/{id} "
           "(CLB RAM table; SetVServerGroupAttribute's page shows the resource type)")
_MEMBERS = ("authorized on the load balancer and on the ECS instance it names (Alibaba's CLB "
            "example grants slb:AddBackendServers on both)")

_LB_REF = "../shared/reference/load-balancers-and-replacement.md "
_ALB_SERVERS = "https://help.aliyun.com/document_detail/2254863.htm"
_ALB_UPDATE = ("https://www.alibabacloud.com/help/en/slb/application-load-balancer/"
               "developer-reference/api-alb-2020-06-16-updateservergroupserversattribute")
_ALB_REMOVE = ("https://www.alibabacloud.com/help/en/slb/application-load-balancer/"
               "developer-reference/api-alb-2020-06-16-removeserversfromservergroup")
_ALB_JOBS = "https://help.aliyun.com/document_detail/2254893.htm"
_NLB_UPDATE = "https://www.alibabacloud.com/help/en/slb/api-updateservergroupserversattribute-nlb"
_NLB_REMOVE = "https://www.alibabacloud.com/help/en/slb/api-removeserversfromservergroup-nlb"
_NLB_JOB = ("https://www.alibabacloud.com/help/ja/slb/network-load-balancer/developer-reference/"
            "api-nlb-2022-04-30-getjobstatus")
_GROUP = ("authorized on the server group acs:{product}:{region}:{account}:servergroup/{id}")
_GROUP_AND_INSTANCE = (_GROUP + " and on the ECS instance it names "
                       "(acs:ecs:{region}:{account}:instance/{id})")
_CONVENTION = (" — the action's own page not read: the resource type the cited page gives the "
               "product's server groups (" + _LB_REF + "§1.12, §2.10 [INF])")

RULES: Mapping[str, Rule] = {
    "ecs:DescribeInstances": Rule(
        Reach.EVERYTHING,
        "list action; a RAM identity without the permission gets an empty list, not an error, "
        "so a narrower grant would make live instances look released; Alibaba's own examples "
        "grant ecs:Describe* on *",
        _ECS_DESCRIBE),
    "ecs:StartInstance": Rule(
        Reach.TAGGED_INSTANCES,
        "resource type acs:ecs:{region}:{account}:instance/{id}; tag condition key",
        _ECS_START),
    "ecs:StartInstances": Rule(
        Reach.TAGGED_INSTANCES,
        "resource type acs:ecs:{region}:{account}:instance/{id} for each instance; tag condition",
        _ECS_STARTS),
    "actiontrail:LookupEvents": Rule(
        Reach.EVERYTHING,
        "ActionTrail's authorization granularity is OPERATION: no resource-level authorization",
        _TRAIL_RAM),
    "cms:DescribeMetricLast": Rule(
        Reach.EVERYTHING,
        "CloudMonitor's metric reads have no resource-level authorization (its RAM table names "
        "all resources, *); the instance is chosen by the Dimensions parameter",
        _CMS_METRIC_LAST),
    "slb:DescribeLoadBalancers": Rule(
        Reach.ACCOUNT_LOAD_BALANCERS,
        "lists load balancers; Alibaba's CLB example grants it on acs:slb:*:*:loadbalancer/*",
        _SLB_EXAMPLES),
    "slb:DescribeLoadBalancerAttribute": Rule(Reach.SCOPED_LOAD_BALANCERS, _PER_LB, _SLB_RAM),
    "slb:DescribeVServerGroups": Rule(Reach.SCOPED_LOAD_BALANCERS, _PER_LB, _SLB_RAM),
    "slb:DescribeVServerGroupAttribute": Rule(Reach.SCOPED_LOAD_BALANCERS, _PER_LB, _SLB_RAM),
    "slb:DescribeMasterSlaveServerGroups": Rule(Reach.SCOPED_LOAD_BALANCERS, _PER_LB, _SLB_RAM),
    "slb:DescribeMasterSlaveServerGroupAttribute": Rule(
        Reach.SCOPED_LOAD_BALANCERS, _PER_LB, _SLB_RAM),
    "slb:SetVServerGroupAttribute": Rule(Reach.BACKENDS, _MEMBERS, _SLB_SET_VSG),
    "slb:SetBackendServers": Rule(Reach.BACKENDS, _MEMBERS, _SLB_EXAMPLES),
    "slb:AddBackendServers": Rule(Reach.BACKENDS, _MEMBERS, _SLB_EXAMPLES),
    "slb:RemoveBackendServers": Rule(Reach.BACKENDS, _MEMBERS, _SLB_EXAMPLES),
    "slb:AddVServerGroupBackendServers": Rule(Reach.BACKENDS, _MEMBERS, _SLB_EXAMPLES),
    "slb:RemoveVServerGroupBackendServers": Rule(Reach.BACKENDS, _MEMBERS, _SLB_EXAMPLES),
    "alb:ListServerGroups": Rule(Reach.SERVER_GROUPS, _GROUP + _CONVENTION, _ALB_SERVERS),
    "alb:ListServerGroupServers": Rule(Reach.SERVER_GROUPS, _GROUP, _ALB_SERVERS),
    "alb:UpdateServerGroupServersAttribute": Rule(Reach.GROUP_BACKENDS, _GROUP_AND_INSTANCE,
                                                  _ALB_UPDATE),
    "alb:RemoveServersFromServerGroup": Rule(Reach.GROUP_BACKENDS, _GROUP_AND_INSTANCE,
                                             _ALB_REMOVE),
    "alb:AddServersToServerGroup": Rule(Reach.GROUP_BACKENDS, _GROUP_AND_INSTANCE + _CONVENTION,
                                        _ALB_UPDATE),
    "alb:ListAsynJobs": Rule(Reach.EVERYTHING, "access level get, all resources", _ALB_JOBS),
    "nlb:ListServerGroups": Rule(Reach.SERVER_GROUPS, _GROUP + _CONVENTION, _NLB_UPDATE),
    "nlb:ListServerGroupServers": Rule(Reach.SERVER_GROUPS, _GROUP + _CONVENTION, _NLB_UPDATE),
    "nlb:UpdateServerGroupServersAttribute": Rule(Reach.SERVER_GROUPS, _GROUP, _NLB_UPDATE),
    "nlb:RemoveServersFromServerGroup": Rule(Reach.SERVER_GROUPS, _GROUP, _NLB_REMOVE),
    "nlb:AddServersToServerGroup": Rule(Reach.GROUP_BACKENDS, _GROUP_AND_INSTANCE + _CONVENTION,
                                        _NLB_UPDATE),
    "nlb:GetJobStatus": Rule(Reach.EVERYTHING, "access level get, all resources", _NLB_JOB),
}

# The explicit table of actions granted on "*", each with the page that says why.
NO_RESOURCE_LEVEL: Mapping[str, str] = {
    action: rule.source for action, rule in RULES.items() if rule.reach is Reach.EVERYTHING
}


@dataclass(frozen=True)
class Scope:
    """Where the roles may act: one account, some regions (empty = all), some CLBs (empty = the
    account's), instances opted in by one tag key."""

    account: str
    regions: tuple[str, ...] = ()
    lb_ids: tuple[str, ...] = ()
    auto_start_tag: str = DEFAULT_AUTO_START_TAG

    def instances(self) -> list[str]:
        return [f"acs:ecs:{r}:{self.account}:instance/*" for r in self.regions or ("*",)]

    def account_load_balancers(self) -> list[str]:
        return [f"acs:slb:{r}:{self.account}:loadbalancer/*" for r in self.regions or ("*",)]

    def server_groups(self, product: str) -> list[str]:
        return [f"acs:{product}:{r}:{self.account}:servergroup/*" for r in self.regions or ("*",)]

    def scoped_load_balancers(self) -> list[str]:
        # A CLB id names one load balancer in one region: the region adds nothing to it.
        if not self.lb_ids:
            return self.account_load_balancers()
        return [f"acs:slb:*:{self.account}:loadbalancer/{lb}" for lb in self.lb_ids]


def rule_of(action: str) -> Rule:
    try:
        return RULES[action]
    except KeyError:
        raise UnknownActionError(
            f"{action}: no rule in tools/ram_policy.py RULES says which resources it is "
            "authorized on; add one with its Alibaba source"
        ) from None


def _statement(actions: Sequence[str], resource: str | list[str],
               condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": list(actions), "Resource": resource}
    if condition is not None:
        statement["Condition"] = condition
    return statement


def statements(actions: Iterable[str], scope: Scope) -> list[dict[str, Any]]:
    """The Allow statements for ``actions`` (in their order), grouped by what they reach."""
    ordered = list(dict.fromkeys(actions))
    by_reach = {reach: [a for a in ordered if rule_of(a).reach is reach] for reach in Reach}
    out: list[dict[str, Any]] = []
    if by_reach[Reach.EVERYTHING]:
        out.append(_statement(by_reach[Reach.EVERYTHING], "*"))
    if by_reach[Reach.TAGGED_INSTANCES]:
        for key in TAG_CONDITION_KEYS:
            condition = {TAG_CONDITION_OPERATOR: {
                key.format(tag=scope.auto_start_tag): list(AUTO_START_VALUES)}}
            out.append(_statement(by_reach[Reach.TAGGED_INSTANCES], scope.instances(), condition))
    if by_reach[Reach.ACCOUNT_LOAD_BALANCERS]:
        out.append(_statement(by_reach[Reach.ACCOUNT_LOAD_BALANCERS],
                              scope.account_load_balancers()))
    per_lb = by_reach[Reach.SCOPED_LOAD_BALANCERS] + by_reach[Reach.BACKENDS]
    if per_lb:
        out.append(_statement(per_lb, scope.scoped_load_balancers()))
    grouped = by_reach[Reach.SERVER_GROUPS] + by_reach[Reach.GROUP_BACKENDS]
    for product in sorted({a.split(":", 1)[0] for a in grouped}):
        out.append(_statement([a for a in grouped if a.startswith(product + ":")],
                              scope.server_groups(product)))
    on_instances = by_reach[Reach.BACKENDS] + by_reach[Reach.GROUP_BACKENDS]
    if on_instances:
        out.append(_statement(on_instances, scope.instances()))
    return out


def policy_document(actions: Iterable[str], scope: Scope, *, log_project: str | None = None,
                    log_store: str = "functions") -> dict[str, Any]:
    """The role policy: :func:`statements`, plus writing the function logstore when given."""
    out = statements(actions, scope)
    if log_project:
        out.append(_statement(
            [LOG_ACTION], f"acs:log:*:{scope.account}:project/{log_project}/logstore/{log_store}"))
    return {"Version": "1", "Statement": out}


def declared_actions(functions_dir: Path = FUNCTIONS_DIR) -> dict[str, tuple[str, ...]]:
    """``{function: RAM_ACTIONS}``, read from each ``index.py`` without importing it: a literal
    ``RAM_ACTIONS``, or ``OWN_ACTIONS`` (literal) plus the load-balancer actions of its literal
    ``LB_OPERATIONS``, composed from the adapters' declarations (shared/lb/actions.py), exactly
    as the module composes its RAM_ACTIONS."""
    out: dict[str, tuple[str, ...]] = {}
    for index in sorted(functions_dir.glob("*/index.py")):
        tree = ast.parse(index.read_text(encoding="utf-8"), filename=str(index))
        literals: dict[str, tuple[str, ...]] = {}
        for node in tree.body:
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1
                else None)
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if not isinstance(target, ast.Name) or value is None or target.id not in (
                    "RAM_ACTIONS", "OWN_ACTIONS", "LB_OPERATIONS"):
                continue
            try:
                literals[target.id] = tuple(str(a) for a in ast.literal_eval(value))
            except ValueError:
                continue  # RAM_ACTIONS composed from the two others
        if "RAM_ACTIONS" in literals:
            out[index.parent.name] = literals["RAM_ACTIONS"]
        elif "OWN_ACTIONS" in literals and "LB_OPERATIONS" in literals:
            from shared.lb.actions import ram_actions

            out[index.parent.name] = (*literals["OWN_ACTIONS"],
                                      *ram_actions(literals["LB_OPERATIONS"]))
        else:
            raise ValueError(f"{index} declares no literal RAM_ACTIONS, nor OWN_ACTIONS and "
                             "LB_OPERATIONS")
    return out


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.ram_policy",
        description="Print a function's RAM policy document (JSON), scoped to its resources.",
    )
    parser.add_argument("function", help="function folder name under functions/")
    parser.add_argument("--account", required=True, help="Alibaba Cloud account id")
    parser.add_argument("--regions", default=environ.get(ENV_PREFIX + "REGIONS", ""),
                        help="comma-separated regions (default: $ECS_EVENT_OPS_REGIONS; empty = all)")
    parser.add_argument("--lb-ids", default=environ.get(ENV_PREFIX + "LB_IDS", ""),
                        help="comma-separated CLB ids in scope (default: $ECS_EVENT_OPS_LB_IDS; "
                        "empty = the account's CLBs)")
    parser.add_argument("--auto-start-tag",
                        default=environ.get(ENV_PREFIX + "AUTO_START_TAG") or DEFAULT_AUTO_START_TAG,
                        help="opt-in tag key (default: $ECS_EVENT_OPS_AUTO_START_TAG or auto-start)")
    parser.add_argument("--log-project", default=None,
                        help="also allow writing logs to this SLS project")
    parser.add_argument("--log-store", default="functions", help="the logstore (default: functions)")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parser(os.environ if environ is None else environ).parse_args(argv)
    declared = declared_actions()
    if args.function not in declared:
        print(f"ram_policy: error: unknown function {args.function!r}; available: "
              f"{', '.join(sorted(declared))}", file=sys.stderr)
        return 2
    scope = Scope(args.account, _csv(args.regions), _csv(args.lb_ids), args.auto_start_tag)
    try:
        document = policy_document(declared[args.function], scope,
                                   log_project=args.log_project, log_store=args.log_store)
    except UnknownActionError as error:
        print(f"ram_policy: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
