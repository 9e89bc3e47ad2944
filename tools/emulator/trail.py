"""ActionTrail 2020-07-06 ``LookupEvents`` over the records the emulator keeps.

Records are made for every successful ECS write call (StartInstance(s), StopInstance(s),
RebootInstance, DeleteInstance: the caller's access key is the user) and for
``Emulator.stop_instance(by="user", user=...)`` (a console stop by that RAM user).
``Events`` is a list of plain dicts, as in the SDK model.

Realism, from ActionTrail's "Quotas and limits" page
(https://help.aliyun.com/en/actiontrail/product-overview/limits) and the LookupEvents reference
(https://www.alibabacloud.com/help/en/doc-detail/185722.html):

- "Time before an event is available for query": 10 minutes. A record is returned only once
  ``World.trail_lag_s`` has passed since the call (0 by default; ``DOCUMENTED_LAG_S`` is the
  documented figure, the default of ``make demo`` scaled and of ``--trail-lag``'s help).
- Clock skew: a record's ``eventTime`` is the call's time plus ``World.trail_skew_s`` (the
  trail's clock against the CloudMonitor events'; the issue's bound is +-10 minutes).
  ``StartTime``/``EndTime`` select on that stamped time, as the real service does.
- "Retention period for queryable events": 90 days: older records are never returned.
- "Maximum query rate ... via the console or the LookupEvents operation": 2 per second per
  account. With ``World.trail_qps`` set, a call beyond it gets the platform-wide 400
  ``Throttling.User`` (LookupEvents' own errorCodes list no throttling code).
"""

from __future__ import annotations

import threading
import time
import weakref
from datetime import datetime, timezone
from typing import Any

from tools.emulator.ecs import Context, Handler, integer
from tools.emulator.world import ApiError, World, iso_seconds

__all__ = ["ACTIONS", "DOCUMENTED_LAG_S", "DOCUMENTED_QPS", "RETENTION_S", "VERSION"]

VERSION = "2020-07-06"
DEFAULT_WINDOW_S = 7 * 24 * 3600
DOCUMENTED_LAG_S = 600.0  # "Time before an event is available for query": 10 minutes
DOCUMENTED_QPS = 2.0  # LookupEvents: "at most twice per second" per account
RETENTION_S = 90 * 86400  # "Retention period for queryable events": 90 days
# LookupAttribute keys and the record field each one matches.
ATTRIBUTES = {
    "EventName": "eventName",
    "ResourceName": "resourceName",
    "ResourceType": "resourceType",
    "ServiceName": "serviceName",
    "EventId": "eventId",
    "EventRW": "eventRW",
    "EventAccessKeyId": "accessKeyId",
    "User": "userName",
}


def _time(params: dict[str, str], key: str, default: float) -> float:
    text = params.get(key)
    if not text:
        return default
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise ApiError("InvalidParameter", f"{key} {text!r} is not an ISO 8601 UTC time "
                   "(YYYY-MM-DDThh:mm:ssZ).")


def _field(record: dict[str, Any], name: str) -> str:
    if name in ("accessKeyId", "userName"):
        return str(record["userIdentity"].get(name, ""))
    return str(record.get(name, ""))


class _AccountRate:
    """LookupEvents' per-account rate: a token bucket of ``qps`` (burst ``max(1, qps)``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._stamp = 0.0
        self._qps: float | None = None

    def take(self, qps: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._qps != qps:  # new or changed limit: a full bucket
                self._qps, self._tokens, self._stamp = qps, max(1.0, qps), now
            self._tokens = min(max(1.0, qps), self._tokens + (now - self._stamp) * qps)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


_RATES: weakref.WeakKeyDictionary[World, _AccountRate] = weakref.WeakKeyDictionary()
_RATES_LOCK = threading.Lock()


def _throttle(world: World) -> None:
    if world.trail_qps is None:
        return
    with _RATES_LOCK:
        rate = _RATES.setdefault(world, _AccountRate())
    if not rate.take(world.trail_qps):
        raise ApiError("Throttling.User", "Request was denied due to user flow control.", 400)


def lookup_events(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    _throttle(world)
    now = world.now()
    end = _time(params, "EndTime", now)
    start = _time(params, "StartTime", end - DEFAULT_WINDOW_S)
    if start > end:
        raise ApiError("InvalidParameter", "StartTime is later than EndTime.")
    size = integer(params, "MaxResults", 20, 1, 50)
    direction = params.get("Direction") or "BACKWARD"
    if direction not in ("FORWARD", "BACKWARD"):
        raise ApiError("InvalidParameter", f"Direction {direction!r} is not FORWARD or BACKWARD.")
    filters = []
    for n in range(1, 11):
        key = params.get(f"LookupAttribute.{n}.Key")
        if key is None:
            continue
        if key not in ATTRIBUTES:
            raise ApiError("InvalidParameter", f"LookupAttribute.{n}.Key {key!r} is not one of "
                           f"{sorted(ATTRIBUTES)}.")
        filters.append((ATTRIBUTES[key], params.get(f"LookupAttribute.{n}.Value", "")))
    oldest = now - RETENTION_S
    records = [r for r in world.trail
               if int(start) <= int(r["_stamped"]) <= int(end)
               and r["_visible_at"] <= now and r["_ts"] >= oldest
               and all(_field(r, f) == v for f, v in filters)]
    records.sort(key=lambda r: float(r["_stamped"]))
    if direction == "BACKWARD":
        records.reverse()
    token = params.get("NextToken") or ""
    offset = 0
    if token:
        if not token.isdigit():
            raise ApiError("InvalidParameter", "NextToken is not valid.")
        offset = int(token)
    chunk = records[offset:offset + size]
    nxt = str(offset + size) if offset + size < len(records) else ""
    return {
        "Events": [{k: v for k, v in r.items() if not k.startswith("_")} for r in chunk],
        "NextToken": nxt,
        "StartTime": iso_seconds(start),
        "EndTime": iso_seconds(end),
    }


ACTIONS: dict[str, Handler] = {"LookupEvents": lookup_events}
