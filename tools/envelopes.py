"""Wrap a CloudMonitor payload in each envelope a trigger delivers it in (demo, bench, tests).

The inverse of ``shared.events``: given the payload the emulator logged, produce the bytes a
CloudMonitor → MNS queue, alert push, MNS topic, EventBridge or FC MNS-queue trigger would pass.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

ENVELOPES = (
    "cloudmonitor",
    "cloudmonitor_base64",
    "cloudmonitor_alert",
    "mns_topic_json",
    "eventbridge",
    "fc_mns_queue",
)


def _compact_to_rfc3339(text: str) -> str:
    moment = datetime.strptime(text, "%Y%m%dT%H%M%S.%f%z")
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stable_hex(payload: Mapping[str, Any], salt: str) -> str:
    digest = hashlib.sha256((salt + json.dumps(payload, sort_keys=True)).encode()).hexdigest()
    return digest[:32].upper()


def wrap_object(payload: Mapping[str, Any], envelope: str) -> object:
    """The JSON value (object or base64 text) ``envelope`` would carry ``payload`` as."""
    text = json.dumps(payload, ensure_ascii=False)
    if envelope == "cloudmonitor":
        return dict(payload)
    if envelope == "cloudmonitor_base64":
        return base64.b64encode(text.encode()).decode()
    if envelope == "cloudmonitor_alert":
        return {
            **payload, "serviceType": "ECS", "eventRealnameEn": payload.get("name"),
            "eventType": "StatusNotification", "curLevel": payload.get("level", "INFO"),
            "ruleName": "ECS事件报警", "status": "Normal", "groupId": "", "resource": "",
        }
    if envelope == "mns_topic_json":
        return {
            "TopicOwner": payload.get("userId", ""), "Message": text,
            "Subscriber": payload.get("userId", ""), "PublishTime": 0,
            "SubscriptionName": "ecs-event-ops", "MessageMD5": hashlib.md5(text.encode()).hexdigest().upper(),  # noqa: S324 - MNS's own checksum
            "TopicName": "ecs-events", "MessageId": _stable_hex(payload, "topic"),
        }
    if envelope == "eventbridge":
        return _eventbridge(payload, _stable_hex(payload, "eb"),
                            _compact_to_rfc3339(str(payload["eventTime"])))
    if envelope == "fc_mns_queue":
        message_id = _stable_hex(payload, "queue")
        return {
            "id": message_id, "source": "MNS-ecs-event-ops-trigger", "specversion": "1.0",
            "type": "mns:Queue:SendMessage", "time": _compact_to_rfc3339(str(payload["eventTime"])),
            "aliyunaccountid": payload.get("userId"), "aliyunregionid": payload.get("regionId"),
            "data": {"requestId": message_id, "messageId": message_id,
                     "messageBody": base64.b64encode(text.encode()).decode()},
        }
    raise ValueError(f"unknown envelope {envelope!r}; choose one of {', '.join(ENVELOPES)}")


def _eventbridge(payload: Mapping[str, Any], event_id: str, time: str) -> dict[str, Any]:
    name = str(payload["name"])
    return {
        "id": event_id, "source": "acs.ecs", "specversion": "1.0",
        "type": "ecs:" + ":".join(name.split(":")[:2]), "subject": payload.get("resourceId"),
        "time": time, "datacontenttype": "application/json;charset=utf-8",
        "aliyunaccountid": payload.get("userId"), "aliyunregionid": payload.get("regionId"),
        "aliyuneventbusname": "default", "data": payload.get("content"),
    }


def eventbridge_copy(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The same notice delivered again through EventBridge, as the documented example reads:
    another id (``eb-<id>``) and the time to the second in the notice's own offset (what the
    tests and benchmarks of "one notice, two envelopes, one action" send)."""
    moment = datetime.strptime(str(payload["eventTime"]), "%Y%m%dT%H%M%S.%f%z")
    return _eventbridge(payload, "eb-" + str(payload["id"]),
                        moment.replace(microsecond=0).isoformat())


def wrap(payload: Mapping[str, Any], envelope: str) -> bytes:
    """The bytes a handler receives for ``payload`` delivered through ``envelope``."""
    value = wrap_object(payload, envelope)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, ensure_ascii=False).encode()


def wrap_batch(items: Sequence[tuple[Mapping[str, Any], str]]) -> bytes:
    """A batched delivery (EventBridge batch push): a JSON array of mixed envelopes."""
    return json.dumps([wrap_object(p, e) for p, e in items], ensure_ascii=False).encode()
