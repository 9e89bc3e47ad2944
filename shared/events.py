"""One normaliser for every envelope an ECS event arrives in.

Bytes in, frozen :class:`EcsEvent` values out (see ``../shared/reference/events.md``).
Accepted forms: the CloudMonitor payload (plain JSON or base64 of it), the CloudMonitor alert
push (extra alert fields), the MNS topic trigger (JSON and STREAM), the EventBridge CloudEvent
(``data`` = the CloudMonitor ``content``), the FC 3.0 MNS queue trigger (``data.messageBody`` as
JSON text, base64 or an object) and batches (JSON arrays of objects or JSON strings, mixed).

:func:`parse` never raises: it returns the good events together with one
:class:`EventParseError` per bad element, so a caller acts on the good and reports the bad.
:func:`parse_element` raises :class:`EventParseError` (the only error this module lets out).

Every field of an accepted event fits the store's column (``FIELD_LIMITS``; a test holds them
against ``shared.store``'s schema) and its ``raw`` is valid, UTF-8-encodable JSON of at most
``MAX_RAW_CHARS``: an element that does not is a bad element with its reason, so one oversized
element can never make the store refuse the batch it came in. Reasons and excerpts are short
(``MAX_REASON_CHARS``, ``MAX_EXCERPT_CHARS``) whatever the input.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum

# typing is not imported at run time: the annotations are strings (a cold start saves ~2 ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Batch",
    "EcsEvent",
    "Envelope",
    "EventKind",
    "EventParseError",
    "InstanceState",
    "is_valid_instance_id",
    "iso",
    "parse",
    "parse_element",
    "parse_iso",
    "parse_iso_or_none",
]

INSTANCE_ID_RE = re.compile(r"i-[a-z0-9]{4,64}")
DISK_ID_RE = re.compile(r"d-[a-z0-9]{4,64}")
REGION_RE = re.compile(r"[a-z]{2,10}(-[a-z0-9]{1,20}){1,4}")
ACCOUNT_RE = re.compile(r"[0-9]{1,24}")
EVENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}(:[A-Za-z][A-Za-z0-9_.]{0,63}){1,2}")
ARN_RE = re.compile(
    r"acs:ecs:(?P<region>[^:]*):(?P<account>[^:]*):(?P<type>instance|disk)/(?P<id>[^/]+)"
)

MAX_BODY_BYTES = 8 * 1024 * 1024  # FC's largest invoke payload is smaller than this
# One event's JSON: EventBridge events are at most 256 KB, MNS messages 64 KB; ECS events are
# about 1 KB. Larger is not an event, and it would be stored and served whole.
MAX_RAW_CHARS = 256 * 1024
MAX_INT_DIGITS = 4300  # Python's int/str conversion limit (json.loads refuses longer numbers)
MAX_REASON_CHARS = 200
MAX_KEPT_ERRORS = 1000  # bad elements kept with their reason per body; the rest are counted
MAX_EXCERPT_CHARS = 60
# The widest value each stored text field may take: the column sizes of shared.store's events
# table (tests/test_events.py checks them against the schema). A longer value is a bad element.
FIELD_LIMITS: dict[str, int] = {
    "event_id": 128, "envelope_id": 128, "name": 200, "full_name": 200, "status": 32,
    "instance_id": 70, "disk_id": 70, "state": 32, "action": 32, "region": 64,
    "account_id": 32,
}
MAX_UNWRAP_DEPTH = 3  # JSON string inside JSON string inside …: more is not a real envelope
ACTION_RE = re.compile(r"[A-Za-z]{1,32}")
STATUS_RE = re.compile(r"[A-Za-z]{1,32}")


class EventKind(str, Enum):
    """What an event is about; practices dispatch on this."""

    STATE_CHANGE = "state_change"
    SPOT_INTERRUPTION = "spot_interruption"
    SYSTEM_EVENT = "system_event"
    DISK_EVENT = "disk_event"
    OTHER = "other"


class InstanceState(str, Enum):
    """The ECS instance states an ``Instance:StateChange`` event can carry."""

    PENDING = "Pending"
    CREATED = "Created"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    DELETED = "Deleted"

    @property
    def is_creation(self) -> bool:
        """``Pending`` (CloudMonitor docs) and ``Created`` (ECS docs) both announce a creation."""
        return self in (InstanceState.PENDING, InstanceState.CREATED)


class Envelope(str, Enum):
    """How the payload reached us."""

    CLOUDMONITOR = "cloudmonitor"  # the plain payload: MNS queue body, MNS topic STREAM
    CLOUDMONITOR_ALERT = "cloudmonitor_alert"  # CloudMonitor alert pushed straight to FC
    MNS_TOPIC = "mns_topic"  # MNS topic trigger, notifyContentFormat JSON
    EVENTBRIDGE = "eventbridge"  # CloudEvent, data = CloudMonitor content
    EVENTBRIDGE_DATA = "eventbridge_data"  # only $.data delivered (configured event type)
    FC_MNS_QUEUE = "fc_mns_queue"  # FC 3.0 MNS queue trigger


# Families whose names carry an O&M status suffix (Instance:<family>:<status>).
SYSTEM_EVENT_PREFIXES = ("SystemMaintenance.", "SystemFailure.", "InstanceFailure.", "Security.")
# Every ECS event name we know (without status suffix), as EventBridge types drop the suffix.
STATE_CHANGE = "Instance:StateChange"
SPOT_INTERRUPTION = "Instance:PreemptibleInstanceInterruption"
SYSTEM_EVENT_NAMES = tuple(
    [f"Instance:SystemMaintenance.{a}" for a in (
        "Reboot", "Redeploy", "Stop", "RebootAndIsolateErrorDisk", "RebootAndReInitErrorDisk",
        "IsolateErrorDisk", "ReInitErrorDisk", "PerformanceImpact")]
    + [f"Instance:SystemFailure.{a}" for a in ("Reboot", "Redeploy", "Stop", "Delete")]
    + ["Instance:InstanceFailure.Reboot", "Instance:Security.TpmAlert"]
)
OTHER_INSTANCE_EVENT_NAMES = (
    "Instance:LiveMigrationAcrossDDH",
    "Instance:PerformanceModeChange",
    "Instance:BurstablePerformanceRestricted",
)
DISK_EVENT_NAMES = (
    "Disk:Stalled",
    "Disk:ErrorDetected",
    "Disk:DiskOperationCompleted",
    "Disk:ConvertToPostpaidCompleted",
    "Disk:OverduePaymentRelease",
)
ALL_EVENT_NAMES = (
    STATE_CHANGE,
    SPOT_INTERRUPTION,
    *SYSTEM_EVENT_NAMES,
    *OTHER_INSTANCE_EVENT_NAMES,
    *DISK_EVENT_NAMES,
)


def eventbridge_type(name: str) -> str:
    """The EventBridge ``type`` for a CloudMonitor event name (``ecs:`` + name, no status)."""
    return "ecs:" + ":".join(name.split(":")[:2])


PLATFORM_STOP_EVENTS = frozenset(
    {"Instance:SystemMaintenance.Stop", "Instance:SystemFailure.Stop"}
)


@dataclass(frozen=True)
class EcsEvent:
    """One ECS event, whatever envelope it came in. Times are aware datetimes in UTC."""

    kind: EventKind
    name: str  # CloudMonitor name without status suffix, e.g. Instance:SystemMaintenance.Reboot
    full_name: str  # as received, e.g. Instance:SystemMaintenance.Reboot:Scheduled
    event_id: str
    event_time: datetime
    envelope: Envelope
    raw: str = field(repr=False)  # the CloudMonitor payload (or CloudEvent) as JSON text
    instance_id: str | None = None
    disk_id: str | None = None
    state: str | None = None  # raw state string of a state change
    action: str | None = None  # spot interruption action (delete)
    status: str | None = None  # O&M status (Scheduled, Executing, …)
    om_event_id: str | None = None
    om_event_type: str | None = None
    not_before: datetime | None = None
    envelope_id: str | None = None  # MNS message id / CloudEvent id around the payload
    region: str | None = None
    account_id: str | None = None
    level: str | None = None

    @property
    def instance_state(self) -> InstanceState | None:
        """The state as an enum (``None`` when absent or not one we know)."""
        if self.state is None:
            return None
        try:
            return InstanceState(self.state)
        except ValueError:
            return None

    @property
    def is_creation(self) -> bool:
        state = self.instance_state
        return state is not None and state.is_creation

    @property
    def is_platform_stop(self) -> bool:
        return self.name in PLATFORM_STOP_EVENTS

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form ``python -m tools.events`` prints."""
        return {
            "kind": self.kind.value,
            "name": self.name,
            "full_name": self.full_name,
            "status": self.status,
            "instance_id": self.instance_id,
            "disk_id": self.disk_id,
            "state": self.state,
            "action": self.action,
            "om_event_id": self.om_event_id,
            "om_event_type": self.om_event_type,
            "not_before": iso(self.not_before),
            "event_id": self.event_id,
            "envelope": self.envelope.value,
            "envelope_id": self.envelope_id,
            "region": self.region,
            "account_id": self.account_id,
            "level": self.level,
            "event_time": iso(self.event_time),
        }


class EventParseError(ValueError):
    """An element that is not a usable ECS event. ``index`` is its position in the batch."""

    def __init__(self, index: int, reason: str, excerpt: str = "") -> None:
        self.index = index
        # Bounded whatever the input: reasons and excerpts are logged and answered per element.
        self.reason = _clip(reason, MAX_REASON_CHARS)
        self.excerpt = _clip(excerpt, MAX_EXCERPT_CHARS)
        reason, excerpt = self.reason, self.excerpt
        detail = f"element {index}: {reason}"
        if excerpt:
            detail += f" (near {excerpt!r})"
        super().__init__(detail)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason, "excerpt": self.excerpt}


@dataclass(frozen=True)
class Batch:
    """What :func:`parse` returns: the good events and the bad elements, both in order."""

    events: tuple[EcsEvent, ...]
    errors: tuple[EventParseError, ...]  # the first MAX_KEPT_ERRORS bad elements
    omitted_errors: int = 0  # bad elements past those: counted, not kept (a body is up to 8 MB)

    @property
    def bad_count(self) -> int:
        return len(self.errors) + self.omitted_errors


def is_valid_instance_id(value: object) -> bool:
    return isinstance(value, str) and INSTANCE_ID_RE.fullmatch(value) is not None


def parse(
    body: bytes | str, *, data_only_type: str | None = None, received_at: datetime | None = None
) -> Batch:
    """Normalise a handler's ``event`` argument. Never raises.

    ``data_only_type`` supports an EventBridge target configured to pass only ``$.data``: the
    body then carries no type, so the deploy must say which one it is (e.g.
    ``ecs:Instance:StateChange``); such events get ``received_at`` as their time.
    """
    try:
        elements = _top_level_elements(body)
    except EventParseError as error:
        return Batch(events=(), errors=(error,))
    except (RecursionError, MemoryError) as error:
        return Batch(events=(), errors=(EventParseError(0, f"body too deeply nested or too large ({type(error).__name__})"),))
    except Exception as error:  # the contract: parse() never raises, whatever the bytes
        return Batch(events=(), errors=(EventParseError(0, f"unreadable body ({type(error).__name__}: {error})"),))
    events: list[EcsEvent] = []
    errors: list[EventParseError] = []
    omitted = 0
    for index, element in enumerate(elements):
        bad: EventParseError | None = None
        if not isinstance(element, (dict, str)):  # the cheap refusal: no exception per element
            if len(errors) < MAX_KEPT_ERRORS:
                bad = EventParseError(index, TOO_DEEP) if isinstance(element, _TooDeep) else \
                    EventParseError(index, f"element is a JSON {_json_type(element)}, not an object")
        else:
            try:
                events.append(
                    parse_element(
                        element, index, data_only_type=data_only_type, received_at=received_at
                    )
                )
                continue
            except EventParseError as caught:
                bad = caught.with_traceback(None)  # a kept traceback holds every frame's locals
        if bad is not None and len(errors) < MAX_KEPT_ERRORS:
            errors.append(bad)
        else:
            omitted += 1
    return Batch(events=tuple(events), errors=tuple(errors), omitted_errors=omitted)


def parse_element(
    element: object,
    index: int = 0,
    *,
    data_only_type: str | None = None,
    received_at: datetime | None = None,
) -> EcsEvent:
    """Normalise one element (a decoded JSON value). Raises only :class:`EventParseError`."""
    try:
        return _parse_element(element, index, data_only_type, received_at)
    except EventParseError:
        raise
    except _LongNumberError as error:
        raise EventParseError(index, str(error)) from None
    except (RecursionError, MemoryError) as error:
        raise EventParseError(index, f"element too deeply nested or too large ({error})") from None
    except Exception as error:  # the contract: nothing but EventParseError escapes
        raise EventParseError(index, f"unreadable element ({type(error).__name__}: {error})") from error


# ---------------------------------------------------------------------------------------------
# decoding


def _top_level_elements(body: bytes | str) -> list[object]:
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise EventParseError(0, f"event must be bytes, got {type(body).__name__}")
    data = bytes(body)
    if len(data) > MAX_BODY_BYTES:
        raise EventParseError(0, f"event body too large ({len(data)} bytes)")
    try:
        value = _decode_document(data, 0, depth=0)
    except EventParseError as error:
        if error.reason != TOO_DEEP or not data.lstrip().startswith(b"["):
            raise
        # One element nested past the recursion limit: read the batch element by element, so
        # that element alone is bad (json.loads refuses the whole body).
        try:
            value = _split_array(_to_text(data, 0).strip())
        except (ValueError, RecursionError):
            raise error from None
    if isinstance(value, list):
        if not value:
            raise EventParseError(0, "empty batch")
        return value
    return [value]


def _decode_document(data: bytes, index: int, depth: int) -> object:
    """JSON first, else base64 of JSON (MNS bodies are base64 by default)."""
    text = _to_text(data, index).strip().lstrip("\ufeff").strip()
    if not text:
        raise EventParseError(index, "empty body")
    try:
        value: object = _loads(text)
    except json.JSONDecodeError as error:
        decoded = _b64(text)
        if decoded is None:
            raise EventParseError(
                index, f"not JSON ({error.msg} at char {error.pos}) and not base64 JSON",
                _excerpt(text, error.pos),
            ) from None
        return _decode_document(decoded, index, depth + 1) if depth < MAX_UNWRAP_DEPTH else _too_deep(index)
    except RecursionError:
        raise EventParseError(index, TOO_DEEP) from None
    if isinstance(value, str):  # a JSON string holding the document (double encoded)
        if depth >= MAX_UNWRAP_DEPTH:
            _too_deep(index)
        return _decode_document(value.encode("utf-8", "surrogatepass"), index, depth + 1)
    return value


class _LongNumber:
    """A JSON integer longer than MAX_INT_DIGITS: kept as a marker so that only the element
    holding it is refused (json.loads would refuse the whole body)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


class _LongNumberError(Exception):
    def __init__(self, digits: int) -> None:
        super().__init__(f"number of {digits} digits (at most {MAX_INT_DIGITS})")


def _json_default(value: object) -> object:
    """json.dumps' hook: a marked long number makes its element bad, nothing else is JSON."""
    if isinstance(value, _LongNumber):
        raise _LongNumberError(value.digits)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _long_int(text: str) -> object:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else _LongNumber(len(text))


def _loads(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer past the int/str limit: read again, marking it
        return json.loads(text, parse_int=_long_int)


class _TooDeep:
    """A batch element nested past the recursion limit (read by :func:`_split_array`)."""


TOO_DEEP = "JSON nested too deeply"
_DECODER = json.JSONDecoder()
_LONG_DECODER = json.JSONDecoder(parse_int=_long_int)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRUCTURE = re.compile(r'["\[\]{}]')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _split_array(text: str) -> list[object]:
    """The elements of a top-level JSON array, decoded one at a time; an element nested too
    deeply to decode is skipped over textually and kept as a :class:`_TooDeep` marker.
    Raises ValueError when the text is not a JSON array."""
    elements: list[object] = []
    pos = _skip_space(text, 1)
    if text[pos : pos + 1] == "]":
        return elements
    while True:
        value: object
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except RecursionError:
            value, end = _TooDeep(), _skip_value(text, pos)
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer past the int/str limit
            value, end = _LONG_DECODER.raw_decode(text, pos)
        elements.append(value)
        pos = _skip_space(text, end)
        if text[pos : pos + 1] == "]" and _skip_space(text, pos + 1) == len(text):
            return elements
        if text[pos : pos + 1] != ",":
            raise ValueError(f"expected ',' or ']' at char {pos}")
        pos = _skip_space(text, pos + 1)


def _skip_space(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


def _skip_value(text: str, pos: int) -> int:
    """The end of the array or object starting at ``pos``, found without recursion."""
    depth = 0
    while True:
        match = _STRUCTURE.search(text, pos)
        if match is None:
            raise ValueError("unterminated array or object")
        char, pos = match.group(), match.end()
        if char == '"':
            string = _STRING.match(text, match.start())
            if string is None:
                raise ValueError("unterminated string")
            pos = string.end()
        elif char in "[{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos


def _too_deep(index: int) -> object:
    raise EventParseError(index, f"more than {MAX_UNWRAP_DEPTH} layers of encoding")


def _to_text(data: bytes, index: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EventParseError(index, f"not UTF-8 text (byte {error.start})") from None


def _b64(text: str) -> bytes | None:
    compact = "".join(text.split())
    if len(compact) < 8 or len(compact) % 4 or not re.fullmatch(r"[A-Za-z0-9+/=_-]+", compact):
        return None
    try:
        return base64.b64decode(compact, altchars=b"-_" if ("-" in compact or "_" in compact) else None, validate=True)
    except (binascii.Error, ValueError):
        return None


def _nested_payload(value: object, index: int, what: str) -> dict[str, Any]:
    """A payload carried inside an envelope: an object, JSON text or base64 JSON text."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        decoded = _decode_document(value.encode("utf-8", "surrogatepass"), index, depth=1)
        if isinstance(decoded, dict):
            return decoded
        raise EventParseError(index, f"{what} is not a JSON object")
    raise EventParseError(index, f"{what} missing or not an object/string")


# ---------------------------------------------------------------------------------------------
# envelopes


def _parse_element(
    element: object, index: int, data_only_type: str | None, received_at: datetime | None
) -> EcsEvent:
    if isinstance(element, str):
        element = _decode_document(element.encode("utf-8", "surrogatepass"), index, depth=1)
    if not isinstance(element, dict):
        raise EventParseError(index, f"element is a JSON {_json_type(element)}, not an object")
    if "specversion" in element:
        return _from_cloudevent(element, index)
    if "TopicOwner" in element or ("Message" in element and "MessageId" in element):
        payload = _nested_payload(element.get("Message"), index, "MNS topic Message")
        envelope_id = _opt_str(element.get("MessageId"))
        return _from_cloudmonitor(payload, index, Envelope.MNS_TOPIC, envelope_id)
    if "name" in element and ("content" in element or "eventTime" in element):
        alert = any(k in element for k in ("eventRealnameEn", "ruleName", "curLevel", "eventType"))
        envelope = Envelope.CLOUDMONITOR_ALERT if alert else Envelope.CLOUDMONITOR
        return _from_cloudmonitor(element, index, envelope, None)
    if data_only_type and any(k in element for k in ("resourceId", "instanceId", "ecsInstanceId", "diskId")):
        return _from_data_only(element, index, data_only_type, received_at)
    keys = ", ".join(_clip(str(k), 32) for k in sorted(str(k) for k in list(element)[:64])[:8])
    raise EventParseError(index, f"unknown envelope (keys: {keys})")


def _from_cloudevent(ce: dict[str, Any], index: int) -> EcsEvent:
    ce_type = _opt_str(ce.get("type")) or ""
    envelope_id = _event_id(ce.get("id"), index, "CloudEvent id")
    if ce_type.startswith("mns:Queue"):
        data = ce.get("data")
        if not isinstance(data, dict):
            raise EventParseError(index, "MNS queue trigger without a data object")
        payload = _nested_payload(data.get("messageBody"), index, "data.messageBody")
        message_id = _opt_str(data.get("messageId")) or envelope_id
        return _from_cloudmonitor(payload, index, Envelope.FC_MNS_QUEUE, message_id)
    if not ce_type.startswith("ecs:"):
        raise EventParseError(index, "unknown envelope: CloudEvent of this type", _excerpt(ce_type))
    name = ce_type[len("ecs:") :]
    data = ce.get("data")
    if not isinstance(data, dict):
        raise EventParseError(index, "missing content: CloudEvent without a data object")
    time_text = ce.get("time")
    if not isinstance(time_text, str):
        raise EventParseError(index, "bad timestamp: CloudEvent without time")
    event_time = _parse_time(time_text, index)
    arn = _arn(ce.get("subject"))
    region = _checked(ce.get("aliyunregionid") or (arn and arn["region"]), REGION_RE, index, "region")
    account = _checked(ce.get("aliyunaccountid") or (arn and arn["account"]), ACCOUNT_RE, index, "account id")
    return _build(
        name=name, content=data, index=index, event_id=envelope_id, event_time=event_time,
        envelope=Envelope.EVENTBRIDGE, envelope_id=envelope_id, region=region, account=account,
        arn=arn, level=None, raw=ce,
    )


def _from_cloudmonitor(
    payload: dict[str, Any], index: int, envelope: Envelope, envelope_id: str | None
) -> EcsEvent:
    full_name = payload.get("name")
    if not isinstance(full_name, str) or not full_name:
        raise EventParseError(index, "CloudMonitor payload without a name")
    content = payload.get("content")
    if content is None:
        raise EventParseError(index, "missing content", _excerpt(full_name))
    if isinstance(content, str):
        content = _nested_payload(content, index, "content")
    if not isinstance(content, dict):
        raise EventParseError(index, "content is not an object", _excerpt(full_name))
    time_text = payload.get("eventTime")
    if not isinstance(time_text, str):
        raise EventParseError(index, "bad timestamp: no eventTime", _excerpt(full_name))
    event_time = _parse_time(time_text, index)
    arn = _arn(payload.get("resourceId"))
    raw_id = payload.get("id")
    event_id = (
        _event_id(raw_id, index, "event id") if raw_id not in (None, "") else _derived_id(payload)
    )
    region = _checked(
        payload.get("regionId") or (arn and arn["region"]) or None, REGION_RE, index, "region"
    )
    account = _checked(payload.get("userId") or (arn and arn["account"]) or None, ACCOUNT_RE, index, "account id")
    return _build(
        name=full_name, content=content, index=index, event_id=event_id, event_time=event_time,
        envelope=envelope, envelope_id=envelope_id, region=region, account=account, arn=arn,
        level=_opt_str(payload.get("level")), raw=payload,
    )


def _from_data_only(
    data: dict[str, Any], index: int, data_only_type: str, received_at: datetime | None
) -> EcsEvent:
    name = data_only_type[len("ecs:") :] if data_only_type.startswith("ecs:") else data_only_type
    event_time = received_at or datetime.now(timezone.utc)
    # $.data has no id and no time: its content alone is the same for an instance's every stop,
    # so the id also hashes the moment of receipt: one id per occurrence (a redelivery is then
    # a new row, which the acting paths tolerate: they re-read the live state before acting).
    occurrence = {"data": data, "received_at": event_time.isoformat(), "index": index}
    return _build(
        name=name, content=data, index=index, event_id=_derived_id(occurrence),
        event_time=event_time,
        envelope=Envelope.EVENTBRIDGE_DATA, envelope_id=None, region=None, account=None,
        arn=None, level=None, raw=data,
    )


def _build(
    *, name: str, content: dict[str, Any], index: int, event_id: str, event_time: datetime,
    envelope: Envelope, envelope_id: str | None, region: str | None, account: str | None,
    arn: dict[str, str] | None, level: str | None, raw: dict[str, Any],
) -> EcsEvent:
    if NAME_RE.fullmatch(name) is None:
        raise EventParseError(index, "unknown event name", _excerpt(name))
    parts = name.split(":")
    base_name = ":".join(parts[:2])
    status = parts[2] if len(parts) == 3 else _opt_str(content.get("eventStatus"))
    if status is not None and STATUS_RE.fullmatch(status) is None:
        raise EventParseError(index, "invalid O&M status", _excerpt(status))
    kind = _kind(base_name)

    instance_id = _instance_id(content, arn, kind, index)
    disk_id = content.get("diskId") or (arn["id"] if arn and arn["type"] == "disk" else None)
    if disk_id is not None and (not isinstance(disk_id, str) or DISK_ID_RE.fullmatch(disk_id) is None):
        raise EventParseError(index, "invalid disk id", _excerpt(str(disk_id)))

    state = None
    if kind is EventKind.STATE_CHANGE:
        state = content.get("state")
        if not isinstance(state, str) or not state:
            raise EventParseError(index, "missing content: state change without a state")
        if not re.fullmatch(r"[A-Za-z]{1,32}", state):
            raise EventParseError(index, "invalid state", _excerpt(state))
    action = None
    if kind is EventKind.SPOT_INTERRUPTION:
        action = _opt_str(content.get("action"))
        if action is not None and ACTION_RE.fullmatch(action) is None:
            raise EventParseError(index, "invalid spot action", _excerpt(action))

    not_before = None
    nb_text = content.get("notBefore")
    if isinstance(nb_text, str) and nb_text:
        not_before = _parse_time(nb_text, index)
    om_event_id = _opt_str(content.get("eventId"))
    if om_event_id is not None and EVENT_ID_RE.fullmatch(om_event_id) is None:
        raise EventParseError(index, "invalid O&M event id", _excerpt(om_event_id))
    om_event_type = _opt_str(content.get("eventType"))
    if om_event_type is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.]{0,63}", om_event_type):
        raise EventParseError(index, "invalid O&M event type", _excerpt(om_event_type))

    event = EcsEvent(
        kind=kind, name=base_name, full_name=name, event_id=event_id, event_time=event_time,
        envelope=envelope, raw=_raw_json(raw, index),
        instance_id=instance_id, disk_id=disk_id, state=state, action=action, status=status,
        om_event_id=om_event_id, om_event_type=om_event_type, not_before=not_before,
        envelope_id=envelope_id, region=region, account_id=account, level=level,
    )
    for what, limit in FIELD_LIMITS.items():
        value = getattr(event, what)
        if value is not None and len(value) > limit:
            raise EventParseError(
                index, f"{what} longer than {limit} characters ({len(value)})", _excerpt(value)
            )
    if envelope_id is not None and not envelope_id.isprintable():
        raise EventParseError(index, "envelope id holds non-printable characters", _excerpt(envelope_id))
    return event


def _raw_json(raw: dict[str, Any], index: int) -> str:
    """The payload as stored: strict JSON (no NaN, Infinity or 1e999), UTF-8 encodable (a lone
    surrogate is kept as its \\u escape), at most MAX_RAW_CHARS."""

    try:
        text = json.dumps(raw, ensure_ascii=False, sort_keys=True, allow_nan=False, default=_json_default)
    except ValueError:
        raise EventParseError(index, "number out of range or not JSON (NaN, Infinity, 1e999)") from None
    if len(text) > MAX_RAW_CHARS:
        raise EventParseError(index, f"event larger than {MAX_RAW_CHARS} characters ({len(text)})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates ("\ud800" in the input): escape them all
        text = json.dumps(raw, ensure_ascii=True, sort_keys=True, allow_nan=False)
    return text


def _kind(name: str) -> EventKind:
    resource, _, event = name.partition(":")
    if resource == "Disk":
        return EventKind.DISK_EVENT
    if name == "Instance:StateChange":
        return EventKind.STATE_CHANGE
    if name == "Instance:PreemptibleInstanceInterruption":
        return EventKind.SPOT_INTERRUPTION
    if resource == "Instance" and event.startswith(SYSTEM_EVENT_PREFIXES):
        return EventKind.SYSTEM_EVENT
    return EventKind.OTHER


def _instance_id(
    content: dict[str, Any], arn: dict[str, str] | None, kind: EventKind, index: int
) -> str | None:
    candidates = (content.get("instanceId"), content.get("resourceId"), content.get("ecsInstanceId"))
    value = next((c for c in candidates if c not in (None, "")), None)
    if value is None and arn is not None and arn["type"] == "instance":
        value = arn["id"]
    if value is None:
        if kind is EventKind.DISK_EVENT:
            return None  # disk operations may name only the disk
        raise EventParseError(index, "missing content: no instance id")
    if not is_valid_instance_id(value):
        raise EventParseError(index, "invalid instance id", _excerpt(str(value)))
    return str(value)


# ---------------------------------------------------------------------------------------------
# fields

_COMPACT_TIME = re.compile(
    r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})"
)
_RFC3339_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})"
)


def _parse_time(text: str, index: int) -> datetime:
    """``20190409T121826.922+0800`` or RFC 3339; an offset is required. Returns UTC."""
    match = _COMPACT_TIME.fullmatch(text.strip()) or _RFC3339_TIME.fullmatch(text.strip())
    if match is None:
        raise EventParseError(index, "bad timestamp", _excerpt(text))
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        if offset in ("Z", "z"):
            tz = timezone.utc
        else:
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            if delta >= timedelta(hours=24):
                raise ValueError("offset out of range")
            tz = timezone(sign * delta)
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
        )
    except ValueError as error:
        raise EventParseError(index, f"bad timestamp ({error})", _excerpt(text)) from None
    return moment.astimezone(timezone.utc)


_ISO_FRACTION = re.compile(r"(T\d{2}:\d{2}:\d{2})\.(\d+)")


def iso_for_py310(text: str) -> str:
    """Rewrite ISO 8601 into what Python 3.10's ``fromisoformat`` accepts: ``+00:00`` for a
    ``Z`` suffix, and exactly six fraction digits."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    return _ISO_FRACTION.sub(lambda m: f"{m.group(1)}.{(m.group(2) + '000000')[:6]}", value, count=1)


def parse_iso(text: str) -> datetime:
    """ISO 8601 the way Python 3.11 reads it, on 3.10 too (FC's runtime): a ``Z`` suffix and
    fractions of any length are accepted; no offset means UTC. Returns an aware UTC datetime;
    raises ``ValueError`` for anything else."""
    moment = datetime.fromisoformat(iso_for_py310(text))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:59-01:00 has no UTC: as unreadable as any bad text
        raise ValueError(f"time out of range: {text!r}") from None


def parse_iso_or_none(value: object) -> datetime | None:
    """:func:`parse_iso` for values read back from JSON: ``None`` when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


def _arn(value: object) -> dict[str, str] | None:
    if not isinstance(value, str):
        return None
    match = ARN_RE.fullmatch(value)
    return match.groupdict() if match else None


def _checked(value: object, pattern: re.Pattern[str], index: int, what: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str | int) or pattern.fullmatch(str(value)) is None:
        raise EventParseError(index, f"invalid {what}", _excerpt(str(value)))
    return str(value)


def _event_id(value: object, index: int, what: str) -> str:
    if not isinstance(value, str) or EVENT_ID_RE.fullmatch(value) is None:
        raise EventParseError(index, f"invalid {what}", _excerpt(str(value)))
    return value


def _derived_id(payload: Mapping[str, Any]) -> str:
    """A stable identity for a payload without an id, so duplicates still collapse."""
    import hashlib  # here: OpenSSL's loading costs every cold start ~5 ms, few payloads lack an id

    text = json.dumps(payload, sort_keys=True, default=_json_default)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest[:40]}"


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _json_type(value: object) -> str:
    return {list: "array", int: "number", float: "number", bool: "boolean", type(None): "null",
            _LongNumber: "number"}.get(
        type(value), type(value).__name__
    )


def _excerpt(text: str, pos: int = 0) -> str:
    start = max(0, pos - 20)
    return text[start : start + MAX_EXCERPT_CHARS]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iso(moment: datetime | None) -> str | None:
    """UTC ISO 8601 with milliseconds and ``Z`` (the project's wire form for times); a naive
    datetime is taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
