"""Lifecycle queries for humans: validation, the answers, and their renderings.

One implementation behind both ``python -m tools.lifecycle`` and the ``lifecycle_api`` function:
parameters arrive as text (argv or query string), are validated here into typed values (a bad one
raises :class:`QueryError`, which the CLI turns into exit code 2 and the API into HTTP 400), and
the answers are JSON-ready dicts that the CLI may also render as a table or CSV.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.events import REGION_RE, is_valid_instance_id, iso, parse_iso

if TYPE_CHECKING:
    from shared.store import EventRecord, InstanceRecord, LedgerEntry, Page, Store

__all__ = [
    "RELEASED_COLUMNS",
    "Answer",
    "QueryError",
    "ReleasedQuery",
    "answer",
    "check_instance_id",
    "instance_answer",
    "parse_time",
    "released_answer",
    "render_csv",
    "render_instance",
    "render_stats",
    "render_table",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_GLOB = 128
MAX_TAG_PART = 128  # ECS tag keys and values are at most 128 characters
MAX_PARAM_CHARS = 1024  # any parameter value; longer is not a value a person typed
MAX_CURSOR_CHARS = 512  # our cursors are about 100 characters of URL-safe base64
CURSOR_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_CURSOR_CHARS}}}")
# The timeline of one answer: at most this many characters of raw events (an event is ~1 KB,
# at most 256 KiB), so no page is larger than a few MB whatever the instance's history.
MAX_TIMELINE_CHARS = 2 * 1024 * 1024
INSTANCE_PARAMS = ("limit", "cursor")
RELATIVE_RE = re.compile(r"(\d{1,6})\s*(s|m|h|d|w)")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
RELEASED_PARAMS = ("since", "until", "region", "tag", "name", "limit", "cursor")
RELEASED_COLUMNS = (
    "instance_id", "name", "region", "instance_type", "created_at", "released_at", "lifetime",
    "charge_type", "tags",
)
TIMELINE_COLUMNS = ("event_time", "full_name", "state", "status", "action", "latency_ms", "event_id")


class QueryError(ValueError):
    """A parameter a human got wrong; the message says which and what is accepted."""


def shown(text: str, limit: int = 64) -> str:
    """A value as echoed in an error: quoted and cut (an answer never repeats megabytes)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_params(params: Mapping[str, str | None], accepted: Sequence[str]) -> None:
    """Every parameter known, every value text of at most MAX_PARAM_CHARS printable
    characters: anything else is the caller's mistake (400), never the store's (503)."""
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        listed = ", ".join(accepted) or "none"
        raise QueryError(f"unknown parameter {shown(unknown[0])}: accepted are {listed}")
    for key, value in params.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise QueryError(f"invalid {key}: text expected")
        if len(value) > MAX_PARAM_CHARS:
            raise QueryError(f"invalid {key}: longer than {MAX_PARAM_CHARS} characters")
        if not value.isprintable() or not _encodable(value):
            raise QueryError(f"invalid {key}: control or non-UTF-8 characters")


def check_cursor(text: str) -> str:
    if CURSOR_RE.fullmatch(text) is None:
        raise QueryError(f"invalid cursor {shown(text, 40)}: pass the next_cursor of a previous answer")
    return text


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_time(text: str, *, now: datetime, what: str = "time") -> datetime:
    """ISO 8601 (``2024-05-01``, ``2024-05-01T08:00:00+08:00``; no offset = UTC) or a relative
    age (``90s``, ``30m``, ``24h``, ``7d``, ``2w``: that long before ``now``)."""
    value = text.strip()
    match = RELATIVE_RE.fullmatch(value)
    try:
        if match:
            return now - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
        return parse_iso(value)
    except (ValueError, OverflowError):  # 999999d reaches before year 1
        raise QueryError(
            f"invalid {what} {shown(text)}: use ISO 8601 (2024-05-01T08:00:00Z) or an age such as 7d, 24h, 30m"
        ) from None


def parse_tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise QueryError(f"invalid tag {shown(text)}: use KEY=VALUE")
    if len(key) > MAX_TAG_PART or len(value) > MAX_TAG_PART:
        raise QueryError(f"invalid tag: key and value are at most {MAX_TAG_PART} characters each")
    return key, value


def parse_limit(text: str | int) -> int:
    try:
        if isinstance(text, str) and not re.fullmatch(r"\s*[+-]?\d{1,9}\s*", text):
            raise ValueError(text)
        limit = int(text)
    except ValueError:
        shown_text = shown(text) if isinstance(text, str) else repr(text)
        raise QueryError(f"invalid limit {shown_text}: an integer from 1 to {MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"invalid limit {limit}: an integer from 1 to {MAX_LIMIT}")
    return limit


def check_instance_id(text: str) -> str:
    if not is_valid_instance_id(text):
        raise QueryError(f"invalid instance id {shown(text)}: expected i- followed by lowercase letters and digits")
    return text


def check_region(text: str) -> str:
    if len(text) > 64 or REGION_RE.fullmatch(text) is None:
        raise QueryError(f"invalid region {shown(text)}: expected e.g. cn-hangzhou")
    return text


def check_glob(text: str) -> str:
    if not text or len(text) > MAX_GLOB:
        raise QueryError(f"invalid name pattern: 1 to {MAX_GLOB} characters")
    return text


@dataclass(frozen=True)
class ReleasedQuery:
    """Validated parameters of the ``released`` query."""

    since: datetime | None = None
    until: datetime | None = None
    region: str | None = None
    tag: tuple[str, str] | None = None
    name: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str | None], *, now: datetime) -> ReleasedQuery:
        check_params(params, RELEASED_PARAMS)

        def get(key: str) -> str | None:
            value = params.get(key)
            return value if value not in (None, "") else None

        since, until, region, tag, name = (get(k) for k in ("since", "until", "region", "tag", "name"))
        limit, cursor = get("limit"), get("cursor")
        query = cls(
            since=None if since is None else parse_time(since, now=now, what="since"),
            until=None if until is None else parse_time(until, now=now, what="until"),
            region=None if region is None else check_region(region),
            tag=None if tag is None else parse_tag(tag),
            name=None if name is None else check_glob(name),
            limit=DEFAULT_LIMIT if limit is None else parse_limit(limit),
            cursor=None if cursor is None else check_cursor(cursor),
        )
        if query.since and query.until and query.since >= query.until:
            raise QueryError("since must be before until")
        return query

    def run(self, store: Store) -> Page[InstanceRecord]:
        from shared.store import InvalidCursorError

        try:
            return store.released(
                since=self.since, until=self.until, region=self.region, tag=self.tag,
                name_glob=self.name, limit=self.limit, cursor=self.cursor,
            )
        except InvalidCursorError:
            raise QueryError("invalid cursor: pass the next_cursor of a previous answer") from None


def released_answer(page: Page[InstanceRecord]) -> dict[str, Any]:
    return {
        "items": [record.to_dict() for record in page.items],
        "count": len(page.items),
        "next_cursor": page.next_cursor,
    }


def instance_answer(
    record: InstanceRecord, timeline: Sequence[EventRecord], next_cursor: str | None = None
) -> dict[str, Any]:
    """The instance and (a page of) its timeline; ``next_cursor`` fetches the next page."""
    return {
        "instance": record.to_dict(include_snapshot=True),
        "timeline": [event.to_dict(include_raw=True) for event in timeline],
        "next_cursor": next_cursor,
    }


def instance_page(store: Store, instance_id: str, params: Mapping[str, str | None]) -> Answer:
    """``GET /instances/{id}?limit=&cursor=``: the instance and one page of its timeline."""
    from shared.store import InvalidCursorError

    check_params(params, INSTANCE_PARAMS)
    limit_text, cursor = params.get("limit") or None, params.get("cursor") or None
    limit = DEFAULT_LIMIT if limit_text is None else parse_limit(limit_text)
    record = store.instance(instance_id)
    if record is None:
        return Answer(404, {"error": f"instance {instance_id} is not in the store"})
    try:
        page = store.timeline_page(
            instance_id, limit=limit, cursor=None if cursor is None else check_cursor(cursor),
            max_chars=MAX_TIMELINE_CHARS,
        )
    except InvalidCursorError:
        raise QueryError("invalid cursor: pass the next_cursor of a previous answer") from None
    return Answer(200, instance_answer(record, page.items, page.next_cursor))


# ---------------------------------------------------------------------------------------------
# HTTP routing (shape-independent; the function adapts FC 3.0 events and FC 2.0 WSGI to it)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def answer(method: str, path: str, params: Mapping[str, str], *, store: Store, now: datetime) -> Answer:
    """Route ``GET /released``, ``GET /instances/{id}``, ``GET /stats``. Validation → 400."""
    route = "/" + path.strip("/")
    known = route in ("/released", "/stats") or route.startswith("/instances/")
    if not known:
        return Answer(404, {"error": f"no route {route if len(route) <= 64 else route[:64] + '...'}: use /released, /instances/{{id}} or /stats"})
    if method.upper() not in ("GET", "HEAD"):
        return Answer(405, {"error": f"method {shown(method, 16)} not allowed: use GET"})
    try:
        if route == "/released":
            return Answer(200, released_answer(ReleasedQuery.from_params(params, now=now).run(store)))
        if route == "/stats":
            check_params(params, ("since",))
            since = params.get("since")
            return Answer(200, store.stats(since=parse_time(since, now=now, what="since") if since else None))
        return instance_page(store, check_instance_id(route[len("/instances/") :]), params)
    except QueryError as error:
        return Answer(400, {"error": str(error)})


# ---------------------------------------------------------------------------------------------
# renderings


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Aligned plain-text columns with a header line; empty input says so."""
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def render_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def released_rows(answer_body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten released items for table/CSV (lifetime humanised)."""
    rows = []
    for item in answer_body["items"]:
        row = dict(item)
        row["lifetime"] = _duration(item.get("lifetime_s"))
        rows.append(row)
    return rows


def render_instance(body: Mapping[str, Any]) -> str:
    instance = body["instance"]
    width = max(len(k) for k in instance)
    lines = [f"{key.ljust(width)}  {_cell(value)}" for key, value in instance.items() if key != "snapshot"]
    lines += ["", f"timeline ({len(body['timeline'])} events)", render_table(body["timeline"], TIMELINE_COLUMNS)]
    return "\n".join(lines)


def render_stats(stats: Mapping[str, Any]) -> str:
    latency = stats["latency_ms"]
    instances = stats["instances"]
    lines = [
        f"since: {stats['since'] or 'the beginning'}",
        f"events: {stats['events']}",
        f"instances: {instances['known']} known, {instances['created']} created, {instances['released']} released",
        f"processing latency (ms): median {_cell(latency['median'])}, p99 {_cell(latency['p99'])}, "
        f"max {_cell(latency['max'])} over {latency['count']} events"
        + (" (most recent sample)" if latency["sampled"] else ""),
    ]
    starts, drains = stats["auto_start"], stats["spot_drains"]
    removed = drains["notice_to_removed_s"]
    incidents = ", ".join(f"{n} {status}" for status, n in starts["incidents"].items()) or "none"
    lines += [
        f"auto-start: {starts['starts']} starts; incidents: {incidents}",
        f"spot drains: {drains['count']}, missed deadlines {drains['missed_deadlines']}; "
        f"notice to removed (s): median {_cell(removed['median'])}, p99 {_cell(removed['p99'])}, "
        f"max {_cell(removed['max'])}",
    ]
    for title, key in (("per kind", "per_kind"), ("per state", "per_state"), ("per name", "per_name")):
        lines += ["", title, _counts(stats[key], "count")]
    days = sorted(set(stats["creations_per_day"]) | set(stats["releases_per_day"]))
    rows = [
        {"day": d, "created": stats["creations_per_day"].get(d, 0), "released": stats["releases_per_day"].get(d, 0)}
        for d in days
    ]
    lines += ["", "per day", render_table(rows, ("day", "created", "released"))]
    return "\n".join(lines)


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False)


def _counts(counts: Mapping[str, int], label: str) -> str:
    rows = [{"value": k, label: n} for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return render_table(rows, ("value", label))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


# ---------------------------------------------------------------------------------------------
# History (tools.lifecycle decisions | incidents | drains | rejected): read from the action
# ledger, newest first. Each history names the ledger kinds it reads and the columns it shows.

HISTORY_LIMIT = 100
HISTORY_COLUMNS: dict[str, tuple[str, ...]] = {
    "decisions": ("time", "instance_id", "kind", "decision", "reason", "stop_id", "key"),
    "incidents": ("opened", "instance_id", "status", "stop_time", "started_at", "closed_at",
                  "escalated_at", "live_status", "reason", "key"),
    "drains": ("notice_time", "instance_id", "status", "outcome", "region", "deadline", "removed",
               "leftover", "missed_deadline", "reason", "key"),
    "rejected": ("received_at", "function", "size", "truncated", "reasons", "key"),
    "replacements": ("notice_time", "instance_id", "status", "successor_id", "offering", "tried",
                     "seconds_to_running", "seconds_to_serving", "groups", "reason", "key"),
}


def history_kinds(what: str) -> tuple[str, ...]:
    """The ledger kinds one history reads (the practices' own constants, imported late)."""
    from shared import autostart, drain
    from shared.ledger import Kind
    from shared.store import REJECTED_KIND

    kinds = {
        # every start decision that left a ledger entry: tries, real starts, dry runs, stops
        # handed to the sweep, the sweep's re-checks
        "decisions": (autostart.KIND_ATTEMPT, autostart.KIND_START, autostart.KIND_DRY_RUN,
                      autostart.KIND_DEFERRED, autostart.KIND_SWEEP),
        "incidents": (autostart.KIND_INCIDENT,),
        "drains": (drain.DRAIN_KIND,),
        "rejected": (REJECTED_KIND,),
        "replacements": (Kind.REPLACE.value,),
    }
    if what not in kinds:
        raise QueryError(f"unknown history {what!r}: one of {', '.join(sorted(kinds))}")
    return kinds[what]


def history_rows(what: str, entries: Sequence[LedgerEntry]) -> list[dict[str, Any]]:
    """Ledger entries as rows of ``HISTORY_COLUMNS[what]`` (JSON keeps every field)."""
    rows = []
    for entry in entries:
        data = dict(entry.data)
        row: dict[str, Any] = {
            "key": entry.key, "kind": entry.kind, "instance_id": entry.instance_id,
            "status": entry.status, "created_at": iso(entry.created_at),
            "updated_at": iso(entry.updated_at),
        }
        if what == "decisions":
            row.update(time=iso(entry.created_at), decision=entry.status,
                       reason=data.get("reason"), stop_id=data.get("stop_id"))
        elif what == "incidents":
            row.update(opened=iso(entry.created_at), **{
                k: data.get(k) for k in ("stop_time", "started_at", "closed_at", "escalated_at",
                                         "live_status", "reason")
            })
        elif what == "drains":
            row.update(
                {k: data.get(k) for k in ("notice_time", "outcome", "region", "deadline",
                                          "missed_deadline", "reason")},
                removed=len(data.get("removed") or data.get("memberships") or []),
                leftover=len(data.get("leftover") or []),
            )
        elif what == "replacements":
            offer = data.get("candidate") or {}
            row.update(
                {k: data.get(k) for k in ("notice_time", "successor_id", "seconds_to_running",
                                          "seconds_to_serving", "reason")},
                offering=(f"{offer.get('instance_type')}@{offer.get('zone_id')} "
                          f"{offer.get('spot_strategy')}" if offer else None),
                tried=len(data.get("tried") or []),
                groups=len(data.get("registered") or []),
            )
        else:
            row.update({k: data.get(k) for k in ("received_at", "function", "size", "truncated",
                                                 "reasons", "payload")})
        row["data"] = data
        rows.append(row)
    return rows
