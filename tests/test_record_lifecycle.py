"""record_lifecycle: every event recorded once, attributes snapshotted, released stays queryable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared.store import Store, store_for
from tests.helpers import emulator_for, event_bytes
from tools.emulator import Emulator
from tools.envelopes import wrap, wrap_batch
from tools.invoke import InvokeResult, invoke_local

WEB_1 = "i-bp1aaaaaaaaaaaaaaaa1"


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("basic.yaml", monkeypatch, start_delay_s=0.02) as emulator:
        yield emulator


@pytest.fixture
def fresh_url(store_url: str) -> Iterator[str]:
    """``store_url`` with the warm store of earlier tests on that URL forgotten (the fixture
    drops the tables between tests; a warm store would still believe its schema is there)."""
    store_for(store_url).close()
    yield store_url
    store_for(store_url).close()


def _invoke(emu: Emulator, db: str, body: bytes, **env: str) -> InvokeResult:
    return invoke_local("record_lifecycle", body, cloud_url=emu.url, db_url=db,
                        env={"ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01", **env})


def _created(emu: Emulator) -> tuple[str, list[dict[str, Any]]]:
    iid = emu.create_instance({"id": "i-bp1shortlived0000001", "name": "short-lived", "instance_type": "ecs.c7.large",
                               "zone": "cn-hangzhou-h", "tags": {"team": "ml"}})
    emu.wait_for_status(iid, "Running", 5)
    return iid, [p for p in emu.events() if p["content"].get("resourceId") == iid]


def test_a_created_then_released_instance_stays_queryable_with_its_attributes(
        emu: Emulator, store_url: str) -> None:
    """GIVEN an instance created and released WHEN its events are recorded THEN the attributes
    snapshotted at creation survive the release, from one DescribeInstances call."""
    iid, events = _created(emu)
    for payload in events:  # Pending, Starting, Running
        assert _invoke(emu, store_url, wrap(payload, "eventbridge")).error is None
    emu.release(iid)
    deleted = [p for p in emu.events() if p["content"].get("state") == "Deleted"][-1]
    assert _invoke(emu, store_url, wrap(deleted, "mns_topic_json")).error is None

    store = Store(store_url)
    record = store.instance(iid)
    assert record is not None
    assert record.released_at is not None and record.last_state == "Deleted"
    assert (record.name, record.instance_type, record.tags) == ("short-lived", "ecs.c7.large", {"team": "ml"})
    assert [e.state for e in store.timeline(iid)] == ["Pending", "Starting", "Running", "Deleted"]
    describes = [c for c in emu.calls() if c.action == "DescribeInstances"]
    assert len(describes) == 1
    assert json.loads(describes[0].params["InstanceIds"]) == [iid]
    store.close()


def test_duplicates_and_a_late_pending_change_nothing(emu: Emulator, tmp_path: Any) -> None:
    """The same event twice is one row; a Pending after Deleted does not resurrect."""
    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    iid, events = _created(emu)
    pending = events[0]
    first = _invoke(emu, db, wrap(pending, "cloudmonitor")).value
    again = _invoke(emu, db, wrap(pending, "fc_mns_queue")).value
    assert (first["recorded"], again["recorded"], again["duplicates"]) == (1, 0, 1)
    emu.release(iid)
    deleted = [p for p in emu.events() if p["content"].get("state") == "Deleted"][-1]
    assert _invoke(emu, db, wrap(deleted, "cloudmonitor")).value["recorded"] == 1
    late = {**pending, "id": "late-pending-0001"}
    assert _invoke(emu, db, wrap(late, "cloudmonitor")).value["recorded"] == 1  # kept, not applied
    store = Store(db)
    record = store.instance(iid)
    assert record is not None
    assert record.last_state == "Deleted" and record.released_at is not None
    store.close()


def test_a_failed_snapshot_is_retried_later_without_blocking_the_record(emu: Emulator, tmp_path: Any) -> None:
    """GIVEN DescribeInstances failing past the retry budget WHEN a creation arrives THEN it is
    recorded anyway, and the next invocation takes the snapshot."""
    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    iid, events = _created(emu)
    emu.set_faults(fail_next={"DescribeInstances": ["ServiceUnavailable"] * 4})
    first = _invoke(emu, db, wrap(events[0], "eventbridge")).value
    assert first["recorded"] == 1
    assert first["snapshots"] == {"taken": [], "failed": [iid]}
    unrelated = json.loads(event_bytes("cloudmonitor/state_stopped.json"))
    second = _invoke(emu, db, wrap(unrelated, "cloudmonitor")).value
    assert second["snapshots"]["taken"] == [iid]
    store = Store(db)
    record = store.instance(iid)
    assert record is not None and record.snapshot_at is not None
    store.close()


def test_a_batch_records_the_good_and_reports_the_bad(emu: Emulator, tmp_path: Any) -> None:
    """A batch with a poison element: the good ones recorded, the bad one reported, no raise."""
    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    emu.stop_instance(WEB_1, by="crash")
    emu.wait_for_status(WEB_1, "Stopped", 5)
    payloads = [p for p in emu.events() if p["content"].get("resourceId") == WEB_1]
    body = json.loads(wrap_batch([(p, "eventbridge") for p in payloads]))
    body.insert(1, {"not": "an event"})
    result = _invoke(emu, db, json.dumps(body).encode())
    assert result.error is None
    assert result.value["recorded"] == len(payloads) == 2  # Stopping, Stopped
    assert [b["index"] for b in result.value["bad"]] == [1]
    # web-1 existed before we saw it: its attributes are backfilled once, for after its release
    assert result.value["snapshots"] == {"taken": [WEB_1], "failed": []}


def test_an_unreachable_store_raises_so_the_platform_retries(emu: Emulator) -> None:
    """Nothing is dropped silently: a store that cannot be reached makes the handler raise."""
    result = _invoke(emu, "postgresql+psycopg://nobody@127.0.0.1:1/none",
                     event_bytes("eventbridge/state_stopped.json"))
    assert type(result.error).__name__ == "StoreUnavailableError"


def test_a_delivery_of_only_bad_elements_makes_no_cloud_call(emu: Emulator, tmp_path: Any) -> None:
    """GIVEN an instance whose snapshot is still owed WHEN a poison-only body arrives THEN it is
    reported and no API is called (the owed snapshot waits for a real event)."""
    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    _, events = _created(emu)
    emu.set_faults(fail_next={"DescribeInstances": ["ServiceUnavailable"] * 4})
    owed = _invoke(emu, db, wrap(events[0], "eventbridge")).value
    assert owed["snapshots"] == {"taken": [], "failed": [events[0]["content"]["resourceId"]]}
    emu.clear_calls()
    result = _invoke(emu, db, b'[{"hello": 1}, "not json"]')
    assert result.error is None
    assert [b["index"] for b in result.value["bad"]] == [0, 1]
    assert emu.calls() == []


def _spot_notice_via_mns(message_id: str) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(wrap(json.loads(event_bytes("cloudmonitor/spot_interruption.json")), "mns_topic_json"))
    return {**envelope, "MessageId": message_id}


def test_an_element_too_long_for_its_column_never_sinks_the_spot_notice_beside_it(
        emu: Emulator, fresh_url: str) -> None:
    """GIVEN a batch of a spot notice and an element whose MNS MessageId is longer than the
    envelope_id column WHEN recorded on each backend THEN the long one is a bad element with its
    reason and the notice is stored (PostgreSQL refused the whole batch on every retry before)."""
    notice = json.loads(event_bytes("cloudmonitor/state_stopped.json"))
    body = json.dumps([_spot_notice_via_mns("x" * 129), notice, _spot_notice_via_mns("A" * 128)]).encode()
    result = _invoke(emu, fresh_url, body)
    assert result.error is None
    assert (result.value["recorded"], result.value["bad_count"], result.value["store_refused"]) == (2, 1, [])
    assert result.value["bad"] == [{"index": 0, "reason": "envelope_id longer than 128 characters (129)",
                                    "excerpt": "x" * 60}]
    store = Store(fresh_url)
    # Both at one event time: the timeline's order between them is their insertion order.
    assert {e.kind: e.envelope_id for e in store.timeline("i-bp1ecr1234abcd5go2go")} == {
        "state_change": None, "spot_interruption": "A" * 128}
    store.close()


def test_nul_bytes_and_lone_surrogates_are_stored_or_refused_alone(emu: Emulator, fresh_url: str) -> None:
    """GIVEN a batch of a notice with a NUL and a lone surrogate in its content, a bad element
    holding the same, and a good event WHEN recorded on each backend THEN no raise: the notice
    and the good event are stored (escaped in raw), the bad element is kept for review."""
    notice = json.loads(event_bytes("cloudmonitor/spot_interruption.json"))
    odd = {**notice, "content": {**notice["content"], "note": "a\u0000b\ud800c"}}
    body = json.dumps([odd, {"x": "\u0000\ud800"}, json.loads(event_bytes("cloudmonitor/state_stopped.json"))]).encode()
    result = _invoke(emu, fresh_url, body)
    assert result.error is None
    assert (result.value["recorded"], result.value["bad_count"], result.value["store_refused"]) == (2, 1, [])
    store = Store(fresh_url)
    raws = [e.raw for e in store.timeline("i-bp1ecr1234abcd5go2go") if e.kind == "spot_interruption"]
    assert [json.loads(raw or "")["content"]["note"] for raw in raws] == ["a\u0000b\ud800c"]
    store.close()


def test_megabytes_of_bad_elements_log_a_bounded_volume(
        emu: Emulator, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN 6 MB of bad elements of every kind (huge keys, names, ids, numbers, strings) WHEN
    recorded THEN the log is 20 lines of bad elements and one summary, each bounded, and the
    answer lists 100 of them with the exact count (113 MB of logs before)."""
    db = f"sqlite:///{tmp_path / 's.sqlite3'}"
    big = "z" * 40_000
    kinds: list[Any] = [
        {big: 1}, {"name": big, "content": {}, "eventTime": "x"},
        {"specversion": "1.0", "type": big, "id": "a"}, {"name": "Instance:StateChange", "content": {"instanceId": big, "state": "Running"}, "eventTime": "20190409T121826.922+0800"},
        "[" * 50_000, 12345, None,
    ]
    elements = [kinds[i % len(kinds)] for i in range(200)]
    body = json.dumps(elements).encode()
    assert 5_000_000 < len(body) < 8_000_000
    capsys.readouterr()
    result = _invoke(emu, db, body)
    out = capsys.readouterr().out
    assert result.error is None
    assert (result.value["recorded"], result.value["bad_count"], len(result.value["bad"])) == (0, 200, 100)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    bad_lines = [line for line in lines if line["message"] == "bad element"]
    summaries = [line for line in lines if line["message"] == "bad elements not logged one by one"]
    assert len(bad_lines) == 20
    assert [(s["logged"], s["not_logged"], s["total"]) for s in summaries] == [(20, 180, 200)]
    assert len(out.encode()) < 20_000, len(out.encode())
