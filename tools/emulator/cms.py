"""CloudMonitor (CMS) 2019-01-01: system-event rules with their targets, and the last metric value.

Served: ``PutEventRule``, ``PutEventRuleTargets``, ``DescribeEventRuleList``,
``DescribeEventRuleTargetList`` and ``DescribeMetricLast`` (all in api-meta
``cms-2019-01-01.json``), plus ``DeleteEventRuleTargets`` and ``DeleteEventRules``, which the
2024-07-30 api-meta snapshot leaves out: their parameters and answer come from the official SDK's
generated models (``tools/emulator/contract.py`` ``SUPPLEMENTARY_APIS`` names the source).

What the real service does that the emulator keeps:

- ``PutEventRule`` creates the rule or, when the name exists, replaces it ("If an alert rule with
  the specified name exists, the existing alert rule is modified"); ``Data`` is the number of
  rules written (the SDK model: "the number of rows affected"). Lists are flattened by the SDK
  (``EventPattern.1.NameList.2``); the documented ``maxItems`` hold (50 patterns, 20 names, 5
  levels/types/statuses); each pattern needs ``Product``.
- ``PutEventRuleTargets`` adds or replaces targets by ``Id`` per kind (FC, MNS, webhook, SLS,
  contact); the rule must exist. ``DescribeEventRuleTargetList`` answers them with their ARN.
- ``DescribeEventRuleList`` does not echo ``StatusList``: its documented answer has no place for
  it (NameList, LevelList, EventTypeList, Product, SQLFilter, CustomFilters only).
- ``DescribeMetricLast`` answers ``Datapoints`` as JSON *text* (a list of objects with
  ``timestamp`` in ms, ``instanceId``, ``userId``, ``Average``/``Minimum``/``Maximum``), an empty
  list ``[]`` when nothing was reported (memory needs the CloudMonitor agent on the instance).
  Readings are set by tests (:func:`set_metric`, ``Emulator.set_metric``); ``Period`` must be one
  of the documented 15, 60, 900, 3600.

Errors use codes the contract documents for the action (``ParameterInvalid`` and
``ResourceNotFound`` for DescribeMetricLast) or platform-wide ones (``InvalidParameter``,
``MissingParameter``): PutEventRule(Targets) document only ``%s`` placeholders.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.emulator.ecs import Context, Handler
from tools.emulator.world import ApiError, World

__all__ = ["ACTIONS", "ECS_NAMESPACE", "PERIODS", "VERSION", "set_metric"]

VERSION = "2019-01-01"
ECS_NAMESPACE = "acs_ecs_dashboard"
PERIODS = ("15", "60", "900", "3600")  # DescribeMetricLast "Valid values: 15, 60, 900, and 3600"
MAX_PATTERNS = 50
# EventPattern.N.<list>: maxItems documented per list.
PATTERN_LISTS = {"NameList": 20, "LevelList": 5, "EventTypeList": 5, "StatusList": 5}
PATTERN_TEXT = ("Product", "SQLFilter", "CustomFilters")
# Target kind -> (parameter prefix, its fields).
TARGET_KINDS: dict[str, tuple[str, ...]] = {
    "FcParameters": ("Id", "Region", "ServiceName", "FunctionName"),
    "MnsParameters": ("Id", "Region", "Queue", "Topic"),
    "WebhookParameters": ("Id", "Protocol", "Method", "Url"),
    "SlsParameters": ("Id", "Region", "Project", "LogStore"),
    "ContactParameters": ("Id", "ContactGroupName", "Level"),
}
MAX_TARGETS = 5  # maxItems of every *Parameters list


@dataclass
class _Rule:
    name: str
    event_type: str
    group_id: str
    description: str
    state: str
    silence_time: int | None
    patterns: list[dict[str, Any]]
    # kind -> Id -> fields
    targets: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    rules: dict[str, _Rule] = field(default_factory=dict)
    # (namespace, metric, instance id) -> the last datapoint
    metrics: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)


_STATES: weakref.WeakKeyDictionary[World, _State] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def _state(world: World) -> _State:
    with _STATES_LOCK:
        return _STATES.setdefault(world, _State())


def _ok(**fields: Any) -> dict[str, Any]:
    return {"Code": "200", "Success": True, **fields}


def _bad(message: str) -> ApiError:
    return ApiError("InvalidParameter", message, 400)


def _list(params: Mapping[str, str], prefix: str, limit: int) -> list[str]:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)$")
    found = sorted((int(m.group(1)), v) for k, v in params.items() if (m := pattern.match(k)))
    if len(found) > limit:
        raise _bad(f"{prefix}: at most {limit} items.")
    return [v for _, v in found]


def _objects(params: Mapping[str, str], name: str) -> dict[int, dict[str, str]]:
    """``Name.N.Field`` (and ``Name.N.Field.M``) grouped by N."""
    pattern = re.compile(re.escape(name) + r"\.(\d+)\.(.+)$")
    out: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        match = pattern.match(key)
        if match:
            out.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return dict(sorted(out.items()))


# --- event rules -------------------------------------------------------------------------------

def put_event_rule(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    name = params["RuleName"]
    event_type = params.get("EventType") or "SYSTEM"
    if event_type not in ("SYSTEM", "CUSTOM"):
        raise _bad(f"EventType {event_type!r} is not SYSTEM or CUSTOM.")
    state = params.get("State") or "ENABLED"
    if state not in ("ENABLED", "DISABLED"):
        raise _bad(f"State {state!r} is not ENABLED or DISABLED.")
    silence: int | None = None
    if params.get("SilenceTime"):
        try:
            silence = int(params["SilenceTime"])
        except ValueError:
            raise _bad("SilenceTime is not an integer.") from None
    raw = _objects(params, "EventPattern")
    if len(raw) > MAX_PATTERNS:
        raise _bad(f"EventPattern: at most {MAX_PATTERNS} items.")
    patterns = []
    for n, fields in raw.items():
        pattern: dict[str, Any] = {}
        for key in PATTERN_TEXT:
            if fields.get(key):
                pattern[key] = fields[key]
        if not pattern.get("Product"):
            raise _bad(f"EventPattern.{n}.Product is mandatory.")
        for key, limit in PATTERN_LISTS.items():
            values = _list(fields, key, limit)
            if values:
                pattern[key] = values
        unknown = {k.split(".")[0] for k in fields} - set(PATTERN_TEXT) - set(PATTERN_LISTS)
        if unknown:
            raise _bad(f"EventPattern.{n}: unknown field {sorted(unknown)[0]}.")
        patterns.append(pattern)
    store = _state(world)
    with store.lock:
        old = store.rules.get(name)
        store.rules[name] = _Rule(name, event_type, params.get("GroupId") or "",
                                  params.get("Description") or "", state, silence, patterns,
                                  old.targets if old is not None else {})
    return _ok(Data="1")


def _rule_view(rule: _Rule) -> dict[str, Any]:
    patterns = []
    for p in rule.patterns:
        view: dict[str, Any] = {k: p[k] for k in PATTERN_TEXT if k in p}
        for key in ("NameList", "LevelList", "EventTypeList"):  # StatusList is not answered
            if key in p:
                view[key] = {key: list(p[key])}
        patterns.append(view)
    out: dict[str, Any] = {"Name": rule.name, "EventType": rule.event_type,
                           "State": rule.state, "Description": rule.description,
                           "EventPattern": {"EventPattern": patterns}}
    if rule.group_id:
        out["GroupId"] = rule.group_id
    if rule.silence_time is not None:
        out["SilenceTime"] = rule.silence_time
    return out


def describe_event_rule_list(world: World, params: dict[str, str], ctx: Context
                             ) -> dict[str, Any]:
    def number(key: str, default: int) -> int:
        text = params.get(key) or ""
        if not text:
            return default
        if not text.isdigit() or int(text) < 1:
            raise ApiError("InvalidParameterValue", f"{key} {text!r} is not a positive integer.",
                           400)
        return int(text)

    page, size = number("PageNumber", 1), number("PageSize", 10)
    prefix = params.get("NamePrefix") or ""
    group = params.get("GroupId") or ""
    enabled = params.get("IsEnable") or ""
    if enabled and enabled.lower() not in ("true", "false"):
        raise ApiError("InvalidParameterValue", f"IsEnable {enabled!r} is not a boolean.", 400)
    store = _state(world)
    with store.lock:
        rules = [r for r in sorted(store.rules.values(), key=lambda r: r.name)
                 if r.name.startswith(prefix) and (not group or r.group_id == group)
                 and (not enabled or (r.state == "ENABLED") == (enabled.lower() == "true"))]
        chunk = [_rule_view(r) for r in rules[(page - 1) * size:page * size]]
    return _ok(Total=len(rules), EventRules={"EventRule": chunk})


def _arn(world: World, kind: str, target: Mapping[str, str]) -> str:
    region = target.get("Region") or world.region
    if kind == "FcParameters":
        return (f"acs:fc:{region}:{world.account_id}:services/{target.get('ServiceName', '')}"
                f"/functions/{target.get('FunctionName', '')}")
    if kind == "MnsParameters":
        if target.get("Topic"):
            return f"acs:mns:{region}:{world.account_id}:/topics/{target['Topic']}/messages"
        return f"acs:mns:{region}:{world.account_id}:/queues/{target.get('Queue', '')}/messages"
    if kind == "SlsParameters":
        return (f"acs:log:{region}:{world.account_id}:project/{target.get('Project', '')}"
                f"/logstore/{target.get('LogStore', '')}")
    return ""


def put_event_rule_targets(world: World, params: dict[str, str], ctx: Context
                           ) -> dict[str, Any]:
    name = params["RuleName"]
    incoming: dict[str, dict[int, dict[str, str]]] = {}
    for kind, fields in TARGET_KINDS.items():
        found = _objects(params, kind)
        if len(found) > MAX_TARGETS:
            raise _bad(f"{kind}: at most {MAX_TARGETS} items.")
        for n, target in found.items():
            extra = set(target) - set(fields)
            if extra:
                raise _bad(f"{kind}.{n}: unknown field {sorted(extra)[0]}.")
            if not target.get("Id"):
                raise _bad(f"{kind}.{n}.Id is mandatory.")
        incoming[kind] = found
    if not any(incoming.values()):
        raise _bad("No target given.")
    store = _state(world)
    with store.lock:
        rule = store.rules.get(name)
        if rule is None:
            raise _bad(f"The event rule {name!r} does not exist.")
        for kind, found in incoming.items():
            for target in found.values():
                rule.targets.setdefault(kind, {})[target["Id"]] = dict(target)
    return _ok(FailedParameterCount="0")


# DescribeEventRuleTargetList: kind -> (outer key, item key) as documented.
_TARGET_VIEW = {
    "FcParameters": ("FcParameters", "FCParameter"),
    "MnsParameters": ("MnsParameters", "MnsParameter"),
    "WebhookParameters": ("WebhookParameters", "WebhookParameter"),
    "SlsParameters": ("SlsParameters", "SlsParameter"),
    "ContactParameters": ("ContactParameters", "ContactParameter"),
}
_WITH_ARN = ("FcParameters", "MnsParameters", "SlsParameters")


def describe_event_rule_target_list(world: World, params: dict[str, str], ctx: Context
                                    ) -> dict[str, Any]:
    store = _state(world)
    out: dict[str, Any] = {"Code": "200"}  # the documented answer has no Success field
    with store.lock:
        rule = store.rules.get(params["RuleName"])
        targets = rule.targets if rule is not None else {}
        for kind, (outer, inner) in _TARGET_VIEW.items():
            items = []
            for target_id in sorted(targets.get(kind, {})):
                target = dict(targets[kind][target_id])
                if kind in _WITH_ARN:
                    target["Arn"] = _arn(world, kind, target)
                items.append(target)
            if items:
                out[outer] = {inner: items}
    return out


def delete_event_rule_targets(world: World, params: dict[str, str], ctx: Context
                              ) -> dict[str, Any]:
    ids = set(_list(params, "Ids", 100))
    if not ids:
        raise ApiError("MissingParameter", "The input parameter \"Ids\" that is mandatory for "
                       "processing this request is not supplied.", 400)
    store = _state(world)
    with store.lock:
        rule = store.rules.get(params["RuleName"])
        if rule is None:
            raise _bad(f"The event rule {params['RuleName']!r} does not exist.")
        for kind in list(rule.targets):
            rule.targets[kind] = {i: t for i, t in rule.targets[kind].items() if i not in ids}
    return _ok()


def delete_event_rules(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    names = _list(params, "RuleNames", 100)
    store = _state(world)
    with store.lock:
        missing = [n for n in names if n not in store.rules]
        if missing:
            raise _bad(f"The event rule {missing[0]!r} does not exist.")
        for n in names:
            del store.rules[n]
    return _ok()


# --- metrics -----------------------------------------------------------------------------------

def set_metric(world: World, instance_id: str, metric: str, value: float, *,
               timestamp_ms: int | None = None, namespace: str = ECS_NAMESPACE) -> None:
    """Report one reading (``Average``/``Minimum``/``Maximum`` all ``value``) for an instance."""
    with world.lock:
        world.require(instance_id)
        stamp = timestamp_ms if timestamp_ms is not None else int(world.now() * 1000)
    point = {"timestamp": stamp, "userId": world.account_id, "instanceId": instance_id,
             "Minimum": value, "Average": value, "Maximum": value}
    store = _state(world)
    with store.lock:
        store.metrics[(namespace, metric, instance_id)] = point


def _dimension_ids(text: str) -> list[str]:
    try:
        data = json.loads(text)
    except ValueError:
        raise ApiError("ParameterInvalid", "Dimensions is not valid JSON.", 400) from None
    items = data if isinstance(data, list) else [data]
    ids = []
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values()):
            raise ApiError("ParameterInvalid", "Dimensions must be key:value objects.", 400)
        if "instanceId" in item:
            ids.append(item["instanceId"])
    return ids


def describe_metric_last(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    namespace, metric = params["Namespace"], params["MetricName"]
    period = params.get("Period") or "60"
    if period not in PERIODS:
        raise ApiError("ParameterInvalid", f"Period {period!r} is not one of {', '.join(PERIODS)}.",
                       400)
    if namespace != ECS_NAMESPACE:
        raise ApiError("ResourceNotFound", f"The namespace {namespace!r} is not found.", 404)
    ids = _dimension_ids(params["Dimensions"]) if params.get("Dimensions") else None
    store = _state(world)
    with store.lock:
        points = [p for (ns, name, iid), p in sorted(store.metrics.items())
                  if ns == namespace and name == metric and (ids is None or iid in ids)]
    return _ok(Period=period, Datapoints=json.dumps(points, separators=(",", ":")))


ACTIONS: dict[str, Handler] = {
    "PutEventRule": put_event_rule,
    "PutEventRuleTargets": put_event_rule_targets,
    "DescribeEventRuleList": describe_event_rule_list,
    "DescribeEventRuleTargetList": describe_event_rule_target_list,
    "DeleteEventRuleTargets": delete_event_rule_targets,
    "DeleteEventRules": delete_event_rules,
    "DescribeMetricLast": describe_metric_last,
}
