"""The normaliser: every envelope and variant, bad input, and fuzzing."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import (
    FIELD_LIMITS,
    MAX_BODY_BYTES,
    MAX_RAW_CHARS,
    MAX_REASON_CHARS,
    EcsEvent,
    Envelope,
    EventKind,
    EventParseError,
    InstanceState,
    is_valid_instance_id,
    iso_for_py310,
    parse,
    parse_element,
    parse_iso,
)
from tests.helpers import event_bytes, expected_events

EXPECTED = expected_events()
MATRIX = sorted(EXPECTED)
GOOD_PAYLOAD = json.loads(event_bytes("cloudmonitor/state_running.json"))


@pytest.mark.parametrize("rel", MATRIX)
def test_fixture_matrix_normalises_to_the_documented_fields(rel: str) -> None:
    """Every envelope x variant yields exactly the fields the reference documents."""
    batch = parse(event_bytes(rel))
    want = EXPECTED[rel]
    assert len(batch.events) == len(want)
    for event, fields in zip(batch.events, want, strict=True):
        got = event.to_dict()
        for key, value in fields.items():
            assert got[key] == value, (rel, key)
    bad_expected = 2 if rel == "batch/with_bad_elements.json" else 0
    assert len(batch.errors) == bad_expected


def test_matrix_covers_every_envelope_and_kind() -> None:
    """The fixtures exercise all six envelopes' forms and all five kinds."""
    envelopes = {rel.split("/")[0] for rel in MATRIX}
    assert {"cloudmonitor", "cloudmonitor_base64", "cloudmonitor_alert", "mns_topic_json",
            "mns_topic_json_base64", "mns_topic_stream", "eventbridge", "fc_mns_queue_text",
            "fc_mns_queue_base64", "fc_mns_queue_object", "batch"} == envelopes
    kinds = {f["kind"] for fields in EXPECTED.values() for f in fields}
    assert kinds == {kind.value for kind in EventKind}


def test_a_batch_keeps_the_good_elements_and_names_the_bad_ones() -> None:
    """GIVEN a batch with two bad elements WHEN parsed THEN both good ones come back in order."""
    batch = parse(event_bytes("batch/with_bad_elements.json"))
    elements = json.loads(event_bytes("batch/with_bad_elements.json"))
    assert [e.event_id for e in batch.events] == [
        parse(json.dumps(elements[0]).encode()).events[0].event_id,
        parse(json.dumps(elements[3]).encode()).events[0].event_id,
    ]
    assert all(e.kind is EventKind.STATE_CHANGE for e in batch.events)
    assert [e.index for e in batch.errors] == [1, 2]
    assert "not JSON" in batch.errors[0].reason
    assert "unknown envelope" in batch.errors[1].reason


def test_events_are_immutable_and_keep_the_raw_payload() -> None:
    """Events are frozen; raw holds the payload for audit; times are UTC."""
    event = parse(event_bytes("cloudmonitor_alert/state_running.json")).events[0]
    with pytest.raises(AttributeError):
        event.state = "Stopped"  # type: ignore[misc]
    assert json.loads(event.raw)["ruleName"] == "ECS事件报警"
    assert event.event_time == datetime(2019, 4, 9, 4, 18, 26, 922000, tzinfo=timezone.utc)
    assert event.instance_state is InstanceState.RUNNING


@pytest.mark.parametrize(("state", "creation"), [("Pending", True), ("Created", True),
                                                 ("Running", False), ("Deleted", False)])
def test_pending_and_created_both_mean_created(state: str, creation: bool) -> None:
    """Both creation spellings are creations; the raw state is kept."""
    event = parse(event_bytes(f"eventbridge/state_{state.lower()}.json")).events[0]
    assert event.is_creation is creation
    assert event.state == state


def _payload(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(GOOD_PAYLOAD))
    for key, value in changes.items():
        if key.startswith("content_"):
            data["content"][key[len("content_"):]] = value
        elif value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"name": "Instance:StateChange", "content": {', "not JSON"),
        (b"", "empty body"),
        (b"[]", "empty batch"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"42", "not an object"),
        (b'{"foo": "bar"}', "unknown envelope"),
        (json.dumps(_payload(content=None)).encode(), "missing content"),
        (json.dumps(_payload(content_resourceId="i-../../etc")).encode(), "invalid instance id"),
        (json.dumps(_payload(content_resourceId="I-UPPER123")).encode(), "invalid instance id"),
        (json.dumps(_payload(content_resourceId="i-abc'; DROP TABLE x;--")).encode(), "invalid instance id"),
        (json.dumps(_payload(eventTime="yesterday")).encode(), "bad timestamp"),
        (json.dumps(_payload(eventTime="20191345T121826.922+0800")).encode(), "bad timestamp"),
        (json.dumps(_payload(eventTime="20190409T121826.922")).encode(), "bad timestamp"),
        (json.dumps(_payload(content_state=None)).encode(), "without a state"),
        (json.dumps(_payload(regionId="cn hangzhou; rm")).encode(), "invalid region"),
        (json.dumps(_payload(userId="12ab")).encode(), "invalid account id"),
        (json.dumps(_payload(id="x" * 200)).encode(), "invalid event id"),
        (json.dumps(_payload(name="Instance")).encode(), "unknown event name"),
        (json.dumps({"specversion": "1.0", "id": "a1", "type": "oss:Object:Put", "data": {}}).encode(),
         "unknown envelope"),
        (json.dumps({"specversion": "1.0", "id": "a1", "type": "ecs:Instance:StateChange",
                     "time": "2020-11-19T21:04:41+08:00"}).encode(), "missing content"),
        (json.dumps({"specversion": "1.0", "id": "a1", "type": "mns:Queue:SendMessage",
                     "data": {"messageBody": "%%%"}}).encode(), "not JSON"),
        (b'"' + b"[" * 10 + b'"', "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_bad_input_gets_one_clear_error(body: bytes, reason: str) -> None:
    """Each malformed body is reported with a reason naming what was wrong; nothing raises."""
    batch = parse(body)
    assert batch.events == ()
    assert len(batch.errors) == 1
    assert reason in batch.errors[0].reason, batch.errors[0].reason
    assert batch.errors[0].index == 0


def test_parse_element_raises_only_the_documented_error() -> None:
    """parse_element raises EventParseError with the element's index."""
    with pytest.raises(EventParseError) as caught:
        parse_element({"nothing": True}, index=7)
    assert caught.value.index == 7
    assert str(caught.value).startswith("element 7: unknown envelope")


def test_a_payload_without_id_gets_a_stable_derived_identity() -> None:
    """Duplicates of an id-less payload still collapse: the derived id is deterministic."""
    body = json.dumps(_payload(id=None)).encode()
    first, second = parse(body).events[0], parse(body).events[0]
    assert first.event_id == second.event_id
    assert first.event_id.startswith("sha256:")


def test_double_encoded_and_base64_batches_are_unwrapped() -> None:
    """A JSON string holding the batch, base64 of it: both decode to the same events."""
    batch_text = event_bytes("batch/json_strings.json").decode()
    direct = parse(batch_text.encode())
    wrapped = parse(json.dumps(batch_text).encode())
    encoded = parse(base64.b64encode(batch_text.encode()))
    assert direct.events == wrapped.events == encoded.events
    assert len(direct.events) == 4


def test_data_only_eventbridge_needs_explicit_configuration() -> None:
    """A bare $.data body is unknown unless the deploy says which type it carries."""
    body = json.dumps({"resourceId": "i-bp1abcdefgh", "resourceType": "ALIYUN::ECS::Instance",
                       "state": "Stopped"}).encode()
    assert "unknown envelope" in parse(body).errors[0].reason
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    event = parse(body, data_only_type="ecs:Instance:StateChange", received_at=now).events[0]
    assert (event.envelope, event.state, event.event_time) == (Envelope.EVENTBRIDGE_DATA, "Stopped", now)


def test_rfc3339_variants_are_all_utc() -> None:
    """Z, fractional seconds of any length and +hh:mm offsets all become UTC."""
    base = json.loads(event_bytes("eventbridge/state_running.json"))
    for text, want in [
        ("2022-07-21T10:07:31.525Z", datetime(2022, 7, 21, 10, 7, 31, 525000, tzinfo=timezone.utc)),
        ("2022-07-21T10:07:31.123456789-02:00", datetime(2022, 7, 21, 12, 7, 31, 123456, tzinfo=timezone.utc)),
        ("2022-07-21T10:07:31+0800", datetime(2022, 7, 21, 2, 7, 31, tzinfo=timezone.utc)),
    ]:
        event = parse(json.dumps({**base, "time": text}).encode()).events[0]
        assert event.event_time == want


# --- fuzzing ---------------------------------------------------------------------------------

def _check_contract(body: bytes) -> None:
    batch = parse(body)  # must not raise
    for event in batch.events:
        assert isinstance(event, EcsEvent)
        assert event.instance_id is None or is_valid_instance_id(event.instance_id)
        assert event.event_time.tzinfo is not None
    for error in batch.errors:
        assert isinstance(error, EventParseError)


FIXTURE_BODIES = [event_bytes(rel) for rel in MATRIX]
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=30))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=25)
nasty_ids = st.one_of(st.text(max_size=40), st.sampled_from(
    ["i-", "i-ABC", "i-abc def", "i-abc\n", "i-abc;--", "' OR 1=1 --", "i-" + "a" * 500,
     "i-abc/../x", "i-abc\x00", "i-àbc", "$(rm -rf /)"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes(body: bytes) -> None:
    """Random bytes never raise and never yield an event with an invalid id."""
    _check_contract(body)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIXTURE_BODIES), st.data())
def test_fuzz_mutated_fixtures(body: bytes, data: st.DataObject) -> None:
    """Truncations, byte flips and insertions into real fixtures keep the contract."""
    mutation = data.draw(st.sampled_from(["truncate", "flip", "insert"]))
    pos = data.draw(st.integers(0, max(0, len(body) - 1)))
    if mutation == "truncate":
        body = body[:pos]
    elif mutation == "flip":
        body = body[:pos] + bytes([body[pos] ^ data.draw(st.integers(1, 255))]) + body[pos + 1:]
    else:
        body = body[:pos] + data.draw(st.binary(min_size=1, max_size=20)) + body[pos:]
    _check_contract(body)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([r for r in MATRIX if r.split("/")[0] in (  # payload held as an object
    "cloudmonitor", "cloudmonitor_alert", "eventbridge", "fc_mns_queue_object")]), nasty_ids, json_values)
def test_fuzz_injected_ids_and_values(rel: str, nasty: str, junk: object) -> None:
    """Injection-looking ids are rejected; arbitrary extra JSON never breaks parsing."""
    document = json.loads(event_bytes(rel))

    def poison(node: Any) -> None:
        if isinstance(node, dict):
            for key in list(node):
                if key in ("resourceId", "instanceId", "ecsInstanceId") and isinstance(node[key], str) \
                        and node[key].startswith("i-"):
                    node[key] = nasty
                poison(node[key])
            node["x-extra"] = junk

    poison(document)
    body = json.dumps(document).encode()
    _check_contract(body)
    batch = parse(body)
    if nasty and not is_valid_instance_id(nasty):  # an empty id counts as absent: ARN fallback
        assert batch.events == ()


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5000), st.sampled_from(["[", "{\"a\":", "\"\\\""]))
def test_fuzz_deep_nesting_and_huge_strings(depth: int, opener: str) -> None:
    """Deep nesting and huge strings are reported, not crashed on."""
    _check_contract((opener * depth).encode())
    huge = json.dumps({**GOOD_PAYLOAD, "content": {**GOOD_PAYLOAD["content"],
                                                   "resourceId": "i-" + "a" * 100_000}})
    assert "invalid instance id" in parse(huge.encode()).errors[0].reason


# Python 3.10's datetime.fromisoformat grammar (FC's runtime; this machine runs 3.11, which accepts
# more): date, optional time with optional exactly-3-or-6-digit fraction, optional +HH:MM offset.
PY310_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}(.\d{2}(:\d{2}(:\d{2}(\.(\d{3}|\d{6}))?)?)?([+-]\d{2}:\d{2}(:\d{2}(\.\d{6})?)?)?)?"
)


@pytest.mark.parametrize(("text", "want"), [
    ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2024-01-02T03:04:05.5Z", datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=timezone.utc)),
    ("2024-01-02T11:04:05.123456789+08:00", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)),
    ("2024-01-02T03:04Z", datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc)),
    ("2024-01-02 03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ("2024-01-02", datetime(2024, 1, 2, tzinfo=timezone.utc)),
])
def test_parse_iso_reads_what_python_311_reads_in_a_form_python_310_accepts(
        text: str, want: datetime) -> None:
    """Z suffixes and fractions of any length (ActionTrail, ECS, users) parse the same on FC's
    python3.10: the rewritten text stays inside 3.10's fromisoformat grammar."""
    assert PY310_ISO.fullmatch(iso_for_py310(text)), iso_for_py310(text)
    assert parse_iso(text) == want


def test_parse_iso_rejects_what_is_not_a_time() -> None:
    """Garbage is a ValueError, never a wrong time."""
    for text in ("yesterday", "2024-13-01", "20190409T121826.922+0800x", ""):
        with pytest.raises(ValueError, match=r"(?i)invalid|out of range|must be in"):
            parse_iso(text)


# ---------------------------------------------------------------------------------------------
# parse() never raises, and what it accepts fits the store: sizes, depths and numbers


def _strict_json(text: str) -> object:
    def refuse(name: str) -> object:
        raise AssertionError(f"non-standard JSON constant {name} in raw")

    return json.loads(text, parse_constant=refuse)


def _check_fits(body: bytes | str) -> Any:
    """The contract plus: every accepted event fits its columns and holds strict, encodable JSON
    of bounded size; every reason and excerpt is short."""
    batch = parse(body)  # must not raise
    for event in batch.events:
        for name, limit in FIELD_LIMITS.items():
            value = getattr(event, name)
            assert value is None or len(value) <= limit, (name, len(value))
        assert len(event.raw) <= MAX_RAW_CHARS
        event.raw.encode("utf-8")
        _strict_json(event.raw)
    for error in batch.errors:
        assert len(error.reason) <= MAX_REASON_CHARS and len(error.excerpt) <= 60
        assert len(str(error)) <= MAX_REASON_CHARS + 60 * 10 + 40  # an excerpt of escapes at worst
    return batch


NOTICE = json.loads(event_bytes("cloudmonitor/spot_interruption.json"))
NUMBER_TEXTS = st.one_of(
    st.integers(1, 20_000).map(lambda n: "9" * n),
    st.integers(1, 20_000).map(lambda n: "-" + "1" * n),
    st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1e-999", "1E400",
                     "0.0000000000000000000001", "123456789012345678901234567890"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NUMBER_TEXTS, st.sampled_from(["content.extra", "content.instanceId", "userId", "id",
                                      "element", "regionId"]))
def test_numbers_of_any_size_never_raise_and_spoil_only_their_element(number: str, where: str) -> None:
    """GIVEN a batch of a spot notice and a copy holding a number (4300+ digits, 1e999, NaN,
    Infinity, …) at some place WHEN parsed THEN no raise, the first notice is always an event,
    and the copy is an event only if the number could be kept as strict JSON."""
    copy = json.loads(json.dumps({**NOTICE, "id": "2256A988-0B26-4E2F-820A-0000000000FF"}))
    if where.startswith("content."):
        copy["content"][where.split(".")[1]] = "__NUMBER__"
    else:
        copy[where] = "__NUMBER__"
    second = number if where == "element" else json.dumps(copy).replace('"__NUMBER__"', number)
    body = "[" + json.dumps(NOTICE) + ", " + second + "]"
    batch = _check_fits(body)
    assert batch.events[0].event_id == NOTICE["id"]
    assert len(batch.events) + batch.bad_count == 2
    digits = len(number.lstrip("-"))
    unreadable = number in ("1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1E400")
    if where in ("element",) or unreadable or (digits > 4300 and number.lstrip("-").isdigit()):
        assert len(batch.events) == 1
    if digits > 4300 and number.lstrip("-").isdigit() and where == "content.extra":
        assert batch.errors[0].reason == f"number of {len(number)} digits (at most 4300)"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.integers(0, 300_000), st.sampled_from(["id", "name", "regionId", "userId", "MessageId",
                                                 "content.instanceId", "content.eventId", "content.pad"]),
       st.sampled_from(["a", "1", "\u00e9", "\ud800", "\x00", "/"]))
def test_strings_of_any_length_never_raise_and_accepted_ones_fit_their_columns(
        length: int, field: str, char: str) -> None:
    """GIVEN a notice in an MNS topic envelope with one string of any length and character
    WHEN parsed THEN no raise; an accepted event fits every column; the notice beside it stays."""
    payload = json.loads(json.dumps(NOTICE))
    value = char * length
    envelope = {"TopicOwner": "1234567890123456", "MessageId": "m-1", "Message": None}
    if field == "MessageId":
        envelope["MessageId"] = value
    elif field.startswith("content."):
        payload["content"][field.split(".")[1]] = value
    else:
        payload[field] = value
    envelope["Message"] = json.dumps(payload, ensure_ascii=False)
    other = {**NOTICE, "id": "2256A988-0B26-4E2F-820A-0000000000EE"}
    body = json.dumps([other, envelope]).encode()  # a lone surrogate travels as \\ud800
    batch = _check_fits(body)
    assert [e.event_id for e in batch.events][:1] == [other["id"]]
    if field == "MessageId" and length > 128:
        assert batch.errors[0].reason == f"envelope_id longer than 128 characters ({length})"
    if field == "content.pad" and len(json.dumps(payload, ensure_ascii=False)) > MAX_RAW_CHARS:
        assert batch.errors[0].reason.startswith(f"event larger than {MAX_RAW_CHARS} characters")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200_000), st.sampled_from(["[", "{\"a\":"]), st.sampled_from(["element", "inside"]))
def test_nesting_of_any_depth_never_raises_and_never_sinks_its_neighbours(
        depth: int, opener: str, where: str) -> None:
    """GIVEN a spot notice beside an element nested to any depth (beyond the recursion limit
    too) WHEN parsed THEN no raise, the notice is an event and the deep one alone is bad."""
    closer = "]" if opener == "[" else "}"
    deep = opener * depth + "1" + closer * depth
    second = deep if where == "element" else json.dumps(NOTICE).replace('"content": {', '"content": {"x": ' + deep + ", ", 1)
    body = ("[" + json.dumps(NOTICE) + ", " + second + "]").encode()
    assert len(body) < MAX_BODY_BYTES
    batch = _check_fits(body)
    assert batch.events[0].event_id == NOTICE["id"]
    assert len(batch.events) + batch.bad_count == 2
    if where == "element":
        assert [e.index for e in batch.errors] == [1]


def test_a_body_past_every_limit_is_one_bad_element() -> None:
    """Whole bodies that cannot be read at all (deep from the start, or too large) are one
    bad element each, never a raise."""
    assert [e.reason for e in parse(b"[" * 200_000).errors] == ["JSON nested too deeply"]
    assert parse(b"1" * (MAX_BODY_BYTES + 1)).errors[0].reason == f"event body too large ({MAX_BODY_BYTES + 1} bytes)"
    assert [e.reason for e in parse("[" + "9" * 5000 + "]").errors] == ["element is a JSON number, not an object"]
