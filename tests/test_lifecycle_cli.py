"""``python -m tools.lifecycle``: released / show / stats / prune, their formats and errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared.store import Store
from tests.test_store import released_instance, state_event
from tools.lifecycle import main

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=timezone.utc)
REPO = Path(__file__).resolve().parent.parent


def seed(url: str) -> None:
    store = Store(url, clock=lambda: NOW)
    try:
        released_instance(store, "i-cli00001", NOW - timedelta(days=2), name="web-1", tags={"env": "prod"})
        released_instance(store, "i-cli00002", NOW - timedelta(days=9), name="web-2", tags={"env": "dev"})
        released_instance(store, "i-cli00003", NOW - timedelta(hours=1), name="db,1", region="cn-shanghai", tags={"env": "prod"})
        store.record([state_event("i-cli00004", "Running", NOW - timedelta(days=1))])
    finally:
        store.close()


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    seed(url)
    return url


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, now=lambda: NOW)
    return code, out.getvalue(), err.getvalue()


def test_released_table_lists_newest_first(db: str) -> None:
    """GIVEN three released instances WHEN listed as a table THEN header and rows, newest first."""
    code, out, _ = run("--db", db, "released")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["INSTANCE_ID", "NAME", "REGION", "INSTANCE_TYPE", "CREATED_AT", "RELEASED_AT", "LIFETIME", "CHARGE_TYPE", "TAGS"]
    assert [line.split()[0] for line in lines[1:]] == ["i-cli00003", "i-cli00001", "i-cli00002"]
    assert "1h00m" in lines[1]
    assert "env=prod" in lines[1]


def test_released_json_with_filters_and_relative_time(db: str) -> None:
    """GIVEN filters since=7d and tag WHEN listed as JSON THEN only matches, with next_cursor."""
    code, out, _ = run("--db", db, "released", "--since", "7d", "--tag", "env=prod", "--format", "json")
    assert code == 0
    body = json.loads(out)
    assert [i["instance_id"] for i in body["items"]] == ["i-cli00003", "i-cli00001"]
    assert body["next_cursor"] is None
    assert body["items"][0]["tags"] == {"env": "prod"}
    code, out, _ = run("--db", db, "released", "--region", "cn-hangzhou", "--name", "web-*", "--format", "json", "--limit", "1")
    body = json.loads(out)
    assert [i["instance_id"] for i in body["items"]] == ["i-cli00001"]
    code, out, _ = run("--db", db, "released", "--format", "json", "--limit", "1", "--cursor", body["next_cursor"], "--name", "web-*", "--region", "cn-hangzhou")
    assert [i["instance_id"] for i in json.loads(out)["items"]] == ["i-cli00002"]


def test_released_csv_quotes_values(db: str) -> None:
    """GIVEN a name with a comma WHEN listed as CSV THEN it parses back exactly."""
    code, out, _ = run("--db", db, "released", "--format", "csv", "--until", "2024-05-10T10:30:00+00:00")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["instance_id"] for r in rows] == ["i-cli00001", "i-cli00002"]
    code, out, _ = run("--db", db, "released", "--format", "csv", "--name", "db,*")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["instance_id"], r["name"], r["region"]) for r in rows] == [("i-cli00003", "db,1", "cn-shanghai")]


def test_show_prints_attributes_and_timeline(db: str) -> None:
    """GIVEN a released instance WHEN shown THEN its attributes and every event, as table and JSON."""
    code, out, _ = run("--db", db, "show", "i-cli00001")
    assert code == 0
    assert "released_at" in out
    assert "2024-05-08T12:00:00.000Z" in out
    assert "timeline (2 events)" in out
    code, out, _ = run("--db", db, "show", "i-cli00001", "--format", "json")
    body = json.loads(out)
    assert body["instance"]["name"] == "web-1"
    assert [e["state"] for e in body["timeline"]] == ["Pending", "Deleted"]
    assert body["timeline"][0]["raw"] == '{"state": "Pending"}'


def test_stats_table_and_json(db: str) -> None:
    """GIVEN stored events WHEN stats THEN counts per state and per day, in both formats."""
    code, out, _ = run("--db", db, "stats", "--format", "json")
    assert code == 0
    stats = json.loads(out)
    assert stats["per_state"] == {"Deleted": 3, "Pending": 3, "Running": 1}
    assert stats["releases_per_day"] == {"2024-05-01": 1, "2024-05-08": 1, "2024-05-10": 1}
    code, out, _ = run("--db", db, "stats", "--since", "3d")
    assert code == 0
    assert "events: 5" in out
    assert "processing latency (ms): median" in out


def test_prune_dry_run_then_prune(db: str) -> None:
    """GIVEN events up to 10 days old WHEN pruning raw older than 5 days THEN counts, then done."""
    assert run("--db", db, "prune", "--raw-older-than", "5", "--dry-run")[1] == (
        "would prune 2 raw payloads of events older than 2024-05-05T12:00:00Z\n"
    )
    assert run("--db", db, "prune", "--raw-older-than", "5")[1].startswith("pruned 2 raw payloads")
    assert run("--db", db, "prune", "--raw-older-than", "5", "--dry-run")[1].startswith("would prune 0 ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("show", "I-NOT-VALID"), "invalid instance id 'I-NOT-VALID'"),
        (("released", "--since", "last tuesday"), "invalid since 'last tuesday'"),
        (("released", "--tag", "novalue"), "invalid tag 'novalue'"),
        (("released", "--limit", "5000"), "invalid limit 5000"),
        (("released", "--cursor", "garbage"), "invalid cursor"),
        (("released", "--since", "1d", "--until", "2d"), "since must be before until"),
        (("prune", "--raw-older-than", "-1"), "must be 0 or more days"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(db: str, argv: tuple[str, ...], message: str) -> None:
    """GIVEN a bad parameter WHEN run THEN exit code 2 and the message says what is wrong."""
    code, out, err = run("--db", db, *argv)
    assert code == 2
    assert out == ""
    assert message in err


def test_unknown_instance_and_unreachable_store_exit_1(db: str) -> None:
    """GIVEN an unknown id or a dead database WHEN run THEN exit code 1 with a message."""
    code, _, err = run("--db", db, "show", "i-unknown01")
    assert (code, err.splitlines()) == (1, [f"store: {db}", "python -m tools.lifecycle show: i-unknown01 is not in the store"])
    code, _, err = run("--db", "postgresql+psycopg://nobody@127.0.0.1:1/none", "stats")
    assert code == 1
    assert "store unavailable" in err


def test_module_runs_with_help_and_default_db(tmp_path: Path, db: str) -> None:
    """GIVEN the module run as a program WHEN --help or no --db THEN usage / ECS_EVENT_OPS_DB_URL."""
    env = {**os.environ, "ECS_EVENT_OPS_DB_URL": db, "PYTHONPATH": str(REPO)}
    helped = subprocess.run([sys.executable, "-m", "tools.lifecycle", "--help"], capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert helped.returncode == 0
    assert "released" in helped.stdout
    assert "prune" in helped.stdout
    listed = subprocess.run([sys.executable, "-m", "tools.lifecycle", "released", "--format", "json"], capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["items"]) == 3
    bad = subprocess.run([sys.executable, "-m", "tools.lifecycle", "released", "--format", "xml"], capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert bad.returncode == 2
    assert "invalid choice: 'xml'" in bad.stderr


def test_released_json_on_every_backend(store_url: str) -> None:
    """GIVEN the same data on each backend WHEN listed THEN the same answer."""
    seed(store_url)
    code, out, _ = run("--db", store_url, "released", "--format", "json", "--tag", "env=prod")
    assert code == 0
    assert [i["instance_id"] for i in json.loads(out)["items"]] == ["i-cli00003", "i-cli00001"]
