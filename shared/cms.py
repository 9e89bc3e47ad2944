"""Narrow adapter over CloudMonitor (CMS 2019-01-01): an instance's last readings, and the
system-event rule that delivers ECS events to the functions.

Built by :attr:`shared.clients.Clients.cms` (same credentials, endpoint choice, retry policy and
error table, :data:`shared.clients.ERROR_RULES`). The SDK (``alibabacloud_cms20190101``) is
imported when a call is made, never at import.

CloudMonitor may answer HTTP 200 with ``"Success": false`` and the error in ``Code``/``Message``
(its API pages show both shapes): such a body is an error here, typed by the same table, never
read as a success.

``DeleteEventRuleTargets`` and ``DeleteEventRules`` are not in the api-meta snapshot (the SDK
has them; :data:`OUTSIDE_API_META`): only ``tools/wiring.py remove`` sends them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from shared.clients import CloudError, _Adapter, _classify, _int, _items, _mapping, _opt, _str
from shared.log import emit, get_logger

__all__ = [
    "CPU_METRIC",
    "ECS_NAMESPACE",
    "MEMORY_METRIC",
    "OUTSIDE_API_META",
    "CmsClient",
    "EventPattern",
    "EventRule",
    "IncidentReadings",
    "MetricReading",
    "RuleTarget",
    "TargetKind",
    "incident_readings",
]

ECS_NAMESPACE = "acs_ecs_dashboard"
# Host-level CPU (from the hypervisor: every instance has it) and the agent's memory use (only
# with the CloudMonitor agent installed): CloudMonitor's "Appendix 1: Metrics", ECS section.
CPU_METRIC = "CPUUtilization"
MEMORY_METRIC = "memory_usedutilization"
METRIC_PERIOD = "60"
RULE_PAGE_SIZE = 100
MAX_RULE_PAGES = 50
MAX_TARGETS_PER_CALL = 5  # maxItems of FcParameters / MnsParameters
log = get_logger(__name__)
OUTSIDE_API_META = frozenset({"DeleteEventRuleTargets", "DeleteEventRules"})


@dataclass(frozen=True)
class MetricReading:
    """One metric's last datapoint for one instance (``Average`` of the period)."""

    metric: str
    value: float
    at: datetime


@dataclass(frozen=True)
class EventPattern:
    product: str
    names: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # sent, but DescribeEventRuleList does not answer it


@dataclass(frozen=True)
class EventRule:
    name: str
    patterns: tuple[EventPattern, ...]
    state: str = "ENABLED"
    event_type: str = "SYSTEM"
    description: str = ""


class TargetKind(str, Enum):
    FC = "fc"
    MNS = "mns"


@dataclass(frozen=True)
class RuleTarget:
    """A target of an event rule: an FC function (service + function) or an MNS queue."""

    target_id: str
    kind: TargetKind
    region: str
    service: str = ""
    function: str = ""
    queue: str = ""
    arn: str = field(default="", compare=False)

    def describe(self) -> str:
        if self.kind is TargetKind.FC:
            return f"fc {self.region}/{self.service}/{self.function} (id {self.target_id})"
        return f"mns {self.region}/queue {self.queue} (id {self.target_id})"


def _stamp(value: object) -> datetime | None:
    number = _int(value)
    if number is None:
        return None
    return datetime.fromtimestamp(number / 1000.0, tz=timezone.utc)


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _strings(container: object, key: str) -> tuple[str, ...]:
    """``{"NameList": {"NameList": [...]}}`` (the list answers' double wrapping) -> the list."""
    inner = _mapping(_mapping(container).get(key)).get(key)
    return tuple(str(v) for v in inner) if isinstance(inner, list) else ()


class CmsClient(_Adapter):
    """CloudMonitor 2019-01-01: metrics and event rules."""

    def _models(self) -> Any:
        from alibabacloud_cms20190101 import models

        return models

    @staticmethod
    def _checked(action: str, ids: Sequence[str], send: Callable[[], Any]) -> Callable[[], Any]:
        """``send``, but a 200 body with ``Success: false`` (CloudMonitor's own error shape)
        raises the error ERROR_RULES gives its ``Code`` (a number: read as the HTTP status),
        inside the attempt, so a 5xx one is retried like any other."""

        def attempt() -> Any:
            response = send()
            body = getattr(response, "body", None)
            if body is not None and getattr(body, "success", None) is False:
                code = _str(getattr(body, "code", None)) or "Unknown"
                raise _classify(code, _str(getattr(body, "message", None)) or code,
                                action=action, ids=ids,
                                status=int(code) if code.isdigit() else None,
                                request_id=_opt(getattr(body, "request_id", None)))
            return response

        return attempt

    # -- metrics -----------------------------------------------------------------------------

    def last_reading(self, instance_id: str, metric: str) -> MetricReading | None:
        """The instance's last ``metric`` datapoint, or None when CloudMonitor has none."""
        models = self._models()
        dimensions = json.dumps([{"instanceId": instance_id}], separators=(",", ":"))

        def send() -> Any:
            return self._sdk.describe_metric_last(models.DescribeMetricLastRequest(
                namespace=ECS_NAMESPACE, metric_name=metric, dimensions=dimensions,
                period=METRIC_PERIOD))

        body = self._call("DescribeMetricLast", [instance_id],
                          self._checked("DescribeMetricLast", [instance_id], send))
        raw = body.get("Datapoints")
        try:
            points = json.loads(raw) if isinstance(raw, str) and raw else []
        except ValueError:
            raise CloudError("InvalidResponse", "Datapoints is not JSON",
                             action="DescribeMetricLast", resource_ids=[instance_id]) from None
        best: MetricReading | None = None
        for point in points if isinstance(points, list) else []:
            if not isinstance(point, Mapping) or point.get("instanceId") != instance_id:
                continue
            value, at = _float(point.get("Average")), _stamp(point.get("timestamp"))
            if value is None or at is None:
                continue
            if best is None or at > best.at:
                best = MetricReading(metric, value, at)
        return best

    # -- event rules -------------------------------------------------------------------------

    def put_event_rule(self, rule: EventRule) -> None:
        """Create the rule, or replace the one of that name (PutEventRule is an upsert)."""
        models = self._models()
        patterns = [models.PutEventRuleRequestEventPattern(
            product=p.product, name_list=list(p.names) or None,
            level_list=list(p.levels) or None, event_type_list=list(p.event_types) or None,
            status_list=list(p.statuses) or None) for p in rule.patterns]

        def send() -> Any:
            return self._sdk.put_event_rule(models.PutEventRuleRequest(
                rule_name=rule.name, event_type=rule.event_type, state=rule.state,
                description=rule.description or None, event_pattern=patterns))

        self._call("PutEventRule", [rule.name],
                   self._checked("PutEventRule", [rule.name], send))

    def list_event_rules(self, name_prefix: str) -> list[EventRule]:
        models = self._models()
        rules: list[EventRule] = []
        for page in range(1, MAX_RULE_PAGES + 1):

            def send(page: int = page) -> Any:
                return self._sdk.describe_event_rule_list(models.DescribeEventRuleListRequest(
                    name_prefix=name_prefix, page_number=str(page),
                    page_size=str(RULE_PAGE_SIZE)))

            body = self._call("DescribeEventRuleList", [name_prefix],
                              self._checked("DescribeEventRuleList", [name_prefix], send))
            items = _items(body.get("EventRules"), "EventRule")
            for item in items:
                patterns = tuple(
                    EventPattern(_str(p.get("Product")), _strings(p, "NameList"),
                                 _strings(p, "LevelList"), _strings(p, "EventTypeList"))
                    for p in _items(item.get("EventPattern"), "EventPattern"))
                rules.append(EventRule(_str(item.get("Name")), patterns,
                                       _str(item.get("State")), _str(item.get("EventType")),
                                       _str(item.get("Description"))))
            total = _int(body.get("Total"), 0) or 0
            if not items or page * RULE_PAGE_SIZE >= total:
                break
        return rules

    def put_targets(self, rule_name: str, targets: Sequence[RuleTarget]) -> None:
        """Add or replace (by id) the rule's targets, five per call as documented."""
        models = self._models()
        fc = [t for t in targets if t.kind is TargetKind.FC]
        mns = [t for t in targets if t.kind is TargetKind.MNS]
        for start in range(0, max(len(fc), len(mns)), MAX_TARGETS_PER_CALL):
            fc_chunk = fc[start:start + MAX_TARGETS_PER_CALL]
            mns_chunk = mns[start:start + MAX_TARGETS_PER_CALL]

            def send(fc_chunk: list[RuleTarget] = fc_chunk,
                     mns_chunk: list[RuleTarget] = mns_chunk) -> Any:
                return self._sdk.put_event_rule_targets(models.PutEventRuleTargetsRequest(
                    rule_name=rule_name,
                    fc_parameters=[models.PutEventRuleTargetsRequestFcParameters(
                        id=t.target_id, region=t.region, service_name=t.service,
                        function_name=t.function) for t in fc_chunk] or None,
                    mns_parameters=[models.PutEventRuleTargetsRequestMnsParameters(
                        id=t.target_id, region=t.region, queue=t.queue)
                        for t in mns_chunk] or None))

            body = self._call("PutEventRuleTargets", [rule_name],
                              self._checked("PutEventRuleTargets", [rule_name], send))
            failed = _int(body.get("FailedParameterCount"), 0) or 0
            if failed:
                raise CloudError("FailedParameters", f"{failed} target(s) refused: "
                                 f"{json.dumps(dict(body), default=str)[:500]}",
                                 action="PutEventRuleTargets", resource_ids=[rule_name])

    def list_targets(self, rule_name: str) -> list[RuleTarget]:
        models = self._models()

        def send() -> Any:
            return self._sdk.describe_event_rule_target_list(
                models.DescribeEventRuleTargetListRequest(rule_name=rule_name))

        body = self._call("DescribeEventRuleTargetList", [rule_name],
                          self._checked("DescribeEventRuleTargetList", [rule_name], send))
        out = [RuleTarget(_str(t.get("Id")), TargetKind.FC, _str(t.get("Region")),
                          service=_str(t.get("ServiceName")),
                          function=_str(t.get("FunctionName")), arn=_str(t.get("Arn")))
               for t in _items(body.get("FcParameters"), "FCParameter")]
        out += [RuleTarget(_str(t.get("Id")), TargetKind.MNS, _str(t.get("Region")),
                           queue=_str(t.get("Queue")), arn=_str(t.get("Arn")))
                for t in _items(body.get("MnsParameters"), "MnsParameter")]
        return out

    def delete_targets(self, rule_name: str, target_ids: Sequence[str]) -> None:
        models = self._models()

        def send() -> Any:
            return self._sdk.delete_event_rule_targets(models.DeleteEventRuleTargetsRequest(
                rule_name=rule_name, ids=list(target_ids)))

        self._call("DeleteEventRuleTargets", [rule_name],
                   self._checked("DeleteEventRuleTargets", [rule_name], send))

    def delete_rules(self, names: Sequence[str]) -> None:
        models = self._models()

        def send() -> Any:
            return self._sdk.delete_event_rules(models.DeleteEventRulesRequest(
                rule_names=list(names)))

        self._call("DeleteEventRules", list(names),
                   self._checked("DeleteEventRules", list(names), send))


# -- incident context ------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentReadings:
    """The last CPU and memory readings of an instance, for the person an incident pages."""

    text: str  # appended to the notification's text
    fields: Mapping[str, Any]  # notification fields (cpu_percent, memory_percent, ..._at)


def _reading_text(label: str, reading: MetricReading | None, why: str) -> str:
    if reading is None:
        return f"{label} unavailable ({why})"
    return f"{label} {reading.value:.1f} % at {reading.at:%Y-%m-%dT%H:%M:%SZ}"


def incident_readings(cms: CmsClient, instance_id: str) -> IncidentReadings:
    """The instance's last ``CPUUtilization`` and ``memory_usedutilization`` (one
    DescribeMetricLast each), so the alert shows whether it died loaded or idle.

    Context, not the alert's reason: a failed read never blocks the alert; it is logged at
    WARNING and the text says the readings are unavailable and why.
    """
    fields: dict[str, Any] = {}
    parts: list[str] = []
    for label, key, metric, absent in (
        ("CPU", "cpu", CPU_METRIC, "no datapoint"),
        # memory is reported by the CloudMonitor agent only
        ("memory", "memory", MEMORY_METRIC, "no datapoint: is the CloudMonitor agent installed?"),
    ):
        try:
            reading = cms.last_reading(instance_id, metric)
        except CloudError as error:
            emit(log, "metric read failed", logging.WARNING, instance_id=instance_id,
                 metric=metric, code=error.code, error=str(error))
            parts.append(_reading_text(label, None, f"DescribeMetricLast answered {error.code}"))
            continue
        parts.append(_reading_text(label, reading, absent))
        if reading is not None:
            fields[f"{key}_percent"] = round(reading.value, 1)
            fields[f"{key}_at"] = f"{reading.at:%Y-%m-%dT%H:%M:%SZ}"
    return IncidentReadings("Last readings: " + "; ".join(parts) + ".", fields)
