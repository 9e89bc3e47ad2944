"""Nothing heavy on the ignorable path (issue 16): a function decides from the parsed events
whether it has work before importing the store engine or an SDK; guard inputs and bad elements
still reach the store; the store on SQLite never loads the MySQL dialect.

The import checks run each invocation in a fresh interpreter: in this process SQLAlchemy is
already loaded by other tests."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from shared.events import EcsEvent, Envelope, EventKind, parse
from shared.triage import auto_start_has_work, auto_start_ignored, drain_spot_has_work
from tests.helpers import event_bytes

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
from shared import log
from tools.invoke import invoke_local
log.configure(stream=open('/dev/null', 'w'))
result = invoke_local(sys.argv[1], open(sys.argv[2], 'rb').read(), db_url=sys.argv[3])
loaded = sorted({m.split('.')[0] for m in sys.modules if m.startswith(('sqlalchemy', 'alibabacloud_'))})
print(json.dumps({'error': None if result.error is None else repr(result.error), 'value': result.value,
                  'loaded': loaded, 'mysql': 'sqlalchemy.dialects.mysql' in sys.modules,
                  'notify': 'shared.notify' in sys.modules}, default=str))
"""


def probe(function: str, body: bytes, tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "event.json"
    path.write_bytes(body)
    db = tmp_path / "store.sqlite3"
    done = subprocess.run([sys.executable, "-c", PROBE, function, str(path), f"sqlite:///{db}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    out["store_created"] = db.exists()
    return out


def event_of(fixture: str) -> EcsEvent:
    (event,) = parse(event_bytes(fixture)).events
    return event


@pytest.mark.parametrize(("fixture", "auto_start", "drain_spot"), [
    ("cloudmonitor/state_stopped.json", True, False),
    ("cloudmonitor/state_running.json", True, False),  # may close an open incident: in the store
    ("cloudmonitor/state_stopping.json", True, False),  # bounds an unseen stop for the sweep
    ("cloudmonitor/state_starting.json", False, False),
    ("cloudmonitor/state_pending.json", False, False),
    ("cloudmonitor/state_deleted.json", False, False),
    ("cloudmonitor/spot_interruption.json", True, True),  # read back by auto_start's spot guard
    ("cloudmonitor/disk_stalled_executing.json", False, False),
    ("cloudmonitor/om_reboot_scheduled.json", False, False),
])
def test_which_events_are_work(fixture: str, auto_start: bool, drain_spot: bool) -> None:
    """GIVEN one event WHEN triaged THEN work exactly where a decision or a guard needs it."""
    event = event_of(fixture)
    assert auto_start_has_work([event], 0) is auto_start
    assert drain_spot_has_work([event], 0) is drain_spot


def test_platform_stops_and_bad_elements_are_work_everywhere() -> None:
    """GIVEN a platform-stop O&M event (auto_start's platform guard reads it) or a bad element
    (kept in the store for review) WHEN triaged THEN work for auto_start and drain_spot."""
    stop = EcsEvent(kind=EventKind.SYSTEM_EVENT, name="Instance:SystemFailure.Stop",
                    full_name="Instance:SystemFailure.Stop:Executed", event_id="ev-stop",
                    event_time=datetime(2026, 12, 1, tzinfo=timezone.utc), envelope=Envelope.EVENTBRIDGE,
                    raw="{}", instance_id="i-bp1platform0001", status="Executed")
    assert auto_start_has_work([stop], 0) and drain_spot_has_work([stop], 0)
    assert auto_start_has_work([], 1) and drain_spot_has_work([], 1)
    assert not auto_start_has_work([], 0) and not drain_spot_has_work([], 0)


def test_ignored_decisions_read_as_the_full_path_says_them() -> None:
    """GIVEN a Starting state change and a disk event WHEN ignored without the store THEN the
    reasons shared.autostart gives (oldest first), and a forced dry run says why."""
    starting, disk = event_of("cloudmonitor/state_starting.json"), event_of("cloudmonitor/disk_stalled_executing.json")
    decisions = auto_start_ignored([starting, disk], "no shared store")
    by_id = {d["event_id"]: d for d in decisions}
    assert by_id[starting.event_id] == {
        "instance_id": starting.instance_id, "decision": "ignored", "event_id": starting.event_id,
        "reason": "state Starting: auto-start acts on Stopped and Running only [dry run: no shared store]",
    }
    assert by_id[disk.event_id]["reason"] == "not a state change (Disk:Stalled:Executing) [dry run: no shared store]"
    assert [d["event_id"] for d in decisions] == [e.event_id for e in sorted([starting, disk], key=lambda e: e.event_time)]


@pytest.mark.parametrize(("function", "fixture"), [
    ("auto_start", "eventbridge/disk_stalled_executing.json"),
    ("auto_start", "cloudmonitor/state_starting.json"),
    ("drain_spot", "eventbridge/state_running.json"),
    ("record_lifecycle", "cloudmonitor/state_running_foreign_account.json"),
])
def test_an_ignorable_event_loads_no_store_engine_and_no_sdk(function: str, fixture: str, tmp_path: Path) -> None:
    """GIVEN an event the function has nothing to do with WHEN invoked in a fresh process THEN
    answered without SQLAlchemy, any SDK or the notifier, and no store was opened."""
    out = probe(function, event_bytes(fixture), tmp_path)
    assert out["error"] is None
    assert out["loaded"] == []
    assert out["notify"] is False
    assert out["store_created"] is False
    value = out["value"]
    assert isinstance(value, dict)
    if function == "auto_start":
        assert [d["decision"] for d in value["decisions"]] == ["ignored"]
    elif function == "drain_spot":
        assert value["drains"] == [] and len(value["ignored"]) == 1
    else:
        assert value["recorded"] == 0 and len(value["refused"]) == 1


@pytest.mark.parametrize(("function", "body"), [
    ("record_lifecycle", b'{"hello": "world"}'),  # a bad element: kept for review
    ("drain_spot", event_bytes("cloudmonitor/state_running.json")),
])
def test_work_reaches_the_store_without_the_mysql_dialect(function: str, body: bytes, tmp_path: Path) -> None:
    """GIVEN a delivery with work for the store on SQLite WHEN invoked in a fresh process THEN
    the store is written with SQLAlchemy, and the MySQL dialect is never imported."""
    if function == "drain_spot":  # a bad element beside the Running event: kept, so work
        body = json.dumps([json.loads(body), {"foo": "bar"}]).encode()
    out = probe(function, body, tmp_path)
    assert out["error"] is None
    assert out["loaded"] == ["sqlalchemy"]
    assert out["mysql"] is False
    assert out["store_created"] is True


def test_bench_times_every_ignorable_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN the cold section's ignorable cases WHEN timed once on SQLite THEN one row per case,
    each handler answered (a failing one raises), timed against the bare interpreter."""
    from tools.bench.__main__ import IGNORABLE, bench_ignorable

    monkeypatch.delenv("ECS_EVENT_OPS_TEST_PG_URL", raising=False)
    monkeypatch.delenv("ECS_EVENT_OPS_TEST_MYSQL_URL", raising=False)
    result = bench_ignorable(1, tmp_path, None)
    assert [(r["function"], r["case"], r["db"]) for r in result["rows"]] == [
        (function, case, "sqlite") for function, case, _ in IGNORABLE
    ]
    assert all(r["after_s"] > 0 and "before_s" not in r for r in result["rows"])
