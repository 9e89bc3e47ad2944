"""The lifecycle store on SQLite, PostgreSQL and MariaDB (see conftest for enabling the servers)."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.events import EcsEvent, Envelope, EventKind, parse
from shared.store import (
    SCHEMA_VERSION,
    InstanceRecord,
    InvalidCursorError,
    Store,
    StoreError,
    StoreUnavailableError,
)
from tests.helpers import event_bytes

T0 = datetime(2024, 5, 1, 8, 0, 0, tzinfo=timezone.utc)
_ids = itertools.count(1)


def state_event(
    instance_id: str, state: str, at: datetime, event_id: str | None = None, **extra: Any
) -> EcsEvent:
    return EcsEvent(
        kind=EventKind.STATE_CHANGE, name="Instance:StateChange", full_name="Instance:StateChange",
        event_id=event_id or f"ev-{next(_ids)}", event_time=at, envelope=Envelope.CLOUDMONITOR,
        raw=json.dumps({"state": state}), instance_id=instance_id, state=state,
        region=extra.pop("region", "cn-hangzhou"), account_id="1690701234567830", **extra,
    )


def other_event(instance_id: str | None, name: str, kind: EventKind, at: datetime, **extra: Any) -> EcsEvent:
    return EcsEvent(
        kind=kind, name=name.rsplit(":", 1)[0] if name.count(":") == 2 else name, full_name=name,
        event_id=f"ev-{next(_ids)}", event_time=at, envelope=Envelope.EVENTBRIDGE, raw="{}",
        instance_id=instance_id, region="cn-hangzhou", **extra,
    )


def lifecycle_row(record: InstanceRecord | None) -> dict[str, Any]:
    assert record is not None
    row = record.to_dict()
    del row["instance_id"]
    return row


def released_instance(
    store: Store, instance_id: str, released: datetime, *, name: str | None = None,
    region: str = "cn-hangzhou", tags: dict[str, str] | None = None,
) -> None:
    store.record([
        state_event(instance_id, "Pending", released - timedelta(hours=1), region=region),
        state_event(instance_id, "Deleted", released, region=region),
    ])
    store.set_snapshot(instance_id, {"name": name, "tags": tags or {}, "region_id": region})


# ---------------------------------------------------------------------------------------------
# recording


def test_same_event_twice_is_stored_once(store: Store) -> None:
    """GIVEN one event delivered twice in a batch and again later WHEN recorded THEN one row."""
    event = state_event("i-dup00001", "Running", T0)
    first = store.record([event, event])
    second = store.record([event])
    assert first.inserted == (event.event_id,)
    assert first.duplicates == ()
    assert second.inserted == ()
    assert second.duplicates == (event.event_id,)
    assert [e.event_id for e in store.timeline("i-dup00001")] == [event.event_id]


def test_record_keeps_fields_raw_and_latency(store_url: str) -> None:
    """GIVEN a parsed CloudMonitor event WHEN recorded THEN every field, raw and latency persist."""
    received = datetime(2019, 4, 9, 4, 18, 27, 922000, tzinfo=timezone.utc)
    store = Store(store_url, clock=lambda: received)
    try:
        (event,) = parse(event_bytes("cloudmonitor/state_pending.json")).events
        assert store.record([event]).inserted == (event.event_id,)
        (stored,) = store.timeline(event.instance_id or "")
        assert stored.event_id == event.event_id
        assert stored.state == "Pending"
        assert stored.kind == "state_change"
        assert stored.envelope == "cloudmonitor"
        assert stored.region == "cn-hangzhou"
        assert stored.account_id == "1234567890123456"  # the fixture's userId
        assert stored.event_time == datetime(2019, 4, 9, 4, 18, 26, 922000, tzinfo=timezone.utc)
        assert stored.received_at == received
        assert stored.latency_ms == 1000
        assert stored.raw == event.raw
        record = store.instance("i-bp1ecr1234abcd5go2go")
        assert record is not None
        assert record.created_at == stored.event_time
        assert record.first_seen == stored.event_time
        assert record.last_state == "Pending"
        assert record.released_at is None
    finally:
        store.close()


def test_late_pending_after_deleted_does_not_resurrect(store: Store) -> None:
    """GIVEN a released instance WHEN an older Pending and a later Running arrive THEN still released."""
    iid = "i-late0001"
    store.record([state_event(iid, "Running", T0 + timedelta(minutes=1))])
    store.record([state_event(iid, "Deleted", T0 + timedelta(minutes=10))])
    store.record([state_event(iid, "Pending", T0)])
    store.record([state_event(iid, "Running", T0 + timedelta(minutes=20))])
    record = store.instance(iid)
    assert record is not None
    assert record.released_at == T0 + timedelta(minutes=10)
    assert record.last_state == "Deleted"
    assert record.last_state_at == T0 + timedelta(minutes=10)
    assert record.created_at == T0
    assert record.first_seen == T0
    assert [e.state for e in store.timeline(iid)] == ["Pending", "Running", "Deleted", "Running"]


def test_events_without_instance_are_stored_without_instance_row(store: Store) -> None:
    """GIVEN a disk event naming only the disk WHEN recorded THEN stored, no instance row made."""
    event = other_event(None, "Disk:DiskOperationCompleted", EventKind.DISK_EVENT, T0, disk_id="d-disk0001")
    assert store.record([event]).inserted == (event.event_id,)
    assert store.stats()["instances"]["known"] == 0
    assert store.stats()["per_kind"] == {"disk_event": 1}


def test_rowcount_insert_path_matches_returning_path(store: Store) -> None:
    """GIVEN the per-row path MySQL uses (no RETURNING) WHEN duplicates mix in THEN same result."""
    store._use_returning = False  # the path real MySQL takes; forced here on every backend
    a, b = state_event("i-rowc0001", "Running", T0), state_event("i-rowc0001", "Stopped", T0 + timedelta(1))
    assert store.record([a]).inserted == (a.event_id,)
    result = store.record([b, a])
    assert result.inserted == (b.event_id,)
    assert result.duplicates == (a.event_id,)
    assert store.ledger_claim("k-rowcount", kind="start") is True
    assert store.ledger_claim("k-rowcount", kind="start") is False
    record = store.instance("i-rowc0001")
    assert record is not None
    assert record.last_state == "Stopped"


@pytest.mark.parametrize("size", [1, 10, 100])
def test_a_batch_is_two_statements_whatever_its_size(store: Store, size: int) -> None:
    """GIVEN a batch of new events over many instances WHEN recorded THEN one multi-row INSERT of
    the events and one upsert of the instances reach the driver (plus SQLite's BEGIN IMMEDIATE),
    no executemany, and the rows are those of recording each event alone."""
    from sqlalchemy import event as sa_event
    from sqlalchemy.engine.interfaces import ExecuteStyle

    store.ensure_schema()
    engine = store._get_engine()
    seen: list[tuple[str, ExecuteStyle]] = []

    def before(_c: Any, _cur: Any, statement: str, _p: Any, context: Any, _many: bool) -> None:
        seen.append((" ".join(statement.split()[:3]), context.execute_style))

    n = next(_ids)
    batch = [
        state_event(f"i-batch{n}x{i // 3}", ("Pending", "Running", "Deleted")[i % 3], T0 + timedelta(seconds=i))
        for i in range(size)
    ]
    sa_event.listen(engine, "before_cursor_execute", before)
    try:
        result = store.record(batch)
    finally:
        sa_event.remove(engine, "before_cursor_execute", before)
    assert len(result.inserted) == size
    heads = [head for head, _ in seen]
    insert_events = "INSERT IGNORE INTO" if engine.dialect.name == "mysql" else "INSERT INTO events"
    expected = [insert_events, "INSERT INTO instances"]
    if engine.dialect.name == "sqlite":
        expected.insert(0, "BEGIN IMMEDIATE")
    assert heads == expected
    assert ExecuteStyle.EXECUTEMANY not in {style for _, style in seen}
    first = store.instance(f"i-batch{n}x0")  # Pending at T0, Running at +1 s, Deleted at +2 s
    assert first is not None
    if size == 1:
        assert (first.first_seen, first.created_at, first.released_at, first.last_state) == (T0, T0, None, "Pending")
    else:
        released = T0 + timedelta(seconds=2)
        assert (first.first_seen, first.created_at, first.released_at, first.last_state, first.last_state_at) == (
            T0, T0, released, "Deleted", released,
        )
    assert store.stats()["instances"]["known"] == (size + 2) // 3


def test_a_batch_larger_than_one_upsert_fills_every_instance(store: Store) -> None:
    """GIVEN a batch of 1,201 instances (more rows than one upsert statement takes on any backend)
    WHEN recorded THEN every instance row is there with its own times and state."""
    n = next(_ids)
    batch = [state_event(f"i-wide{n}x{i:04d}", "Running", T0 + timedelta(seconds=i)) for i in range(1201)]
    assert len(store.record(batch).inserted) == 1201
    assert store.stats()["instances"]["known"] == 1201
    for i in (0, 99, 100, 999, 1000, 1200):
        record = store.instance(f"i-wide{n}x{i:04d}")
        assert record is not None
        assert (record.first_seen, record.last_state, record.last_state_at) == (
            T0 + timedelta(seconds=i), "Running", T0 + timedelta(seconds=i),
        )


STATES = ("Pending", "Created", "Starting", "Running", "Stopping", "Stopped", "Deleted")


@st.composite
def lifecycles(draw: st.DrawFn) -> tuple[list[tuple[str, int]], list[int], list[int], list[int]]:
    """Events as (state, second offset) with ties allowed, an arrival order, batch cuts, repeats."""
    events = draw(st.lists(st.tuples(st.sampled_from(STATES), st.integers(0, 8)), min_size=1, max_size=9))
    order = draw(st.permutations(range(len(events))))
    cuts = draw(st.lists(st.integers(0, len(events)), max_size=3))
    repeats = draw(st.lists(st.integers(0, len(events) - 1), max_size=3))
    return events, list(order), sorted(cuts), repeats


def expected_row(events: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """The reference model: min times, Deleted terminal, else latest (time, state)."""
    times = [T0 + timedelta(seconds=s) for _, s in events]
    created = [t for (state, _), t in zip(events, times, strict=True) if state in ("Pending", "Created")]
    deleted = [t for (state, _), t in zip(events, times, strict=True) if state == "Deleted"]
    others = [(t, state) for (state, _), t in zip(events, times, strict=True) if state != "Deleted"]
    if deleted:
        last_state, last_at = "Deleted", min(deleted)
    else:
        last_at, last_state = max(others)
    return {
        "first_seen": min(times), "created_at": min(created) if created else None,
        "released_at": min(deleted) if deleted else None, "last_state": last_state,
        "last_state_at": last_at,
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=lifecycles())
def test_any_arrival_order_gives_the_same_instance_row(store: Store, case: Any) -> None:
    """GIVEN a lifecycle WHEN its events arrive in any order, batching and repeats THEN same row."""
    events, order, cuts, repeats = case
    n = next(_ids)
    canonical_id, permuted_id = f"i-canon{n}", f"i-perm{n}"
    store.record([state_event(canonical_id, s, T0 + timedelta(seconds=o)) for s, o in events])
    permuted = [state_event(permuted_id, s, T0 + timedelta(seconds=o), event_id=f"p{n}-{i}") for i, (s, o) in enumerate(events)]
    arrival = [permuted[i] for i in order] + [permuted[i] for i in repeats]
    bounds = [0, *cuts, len(arrival)]
    for start, end in itertools.pairwise(bounds):
        store.record(arrival[start:end])
    canonical, result = store.instance(canonical_id), store.instance(permuted_id)
    assert lifecycle_row(result) == lifecycle_row(canonical)
    assert result is not None
    got = {k: getattr(result, k) for k in ("first_seen", "created_at", "released_at", "last_state", "last_state_at")}
    assert got == expected_row(events)
    assert len(store.timeline(permuted_id)) == len(events)


# ---------------------------------------------------------------------------------------------
# availability and schema


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "mysql+pymysql://nobody@127.0.0.1:1/none",
        "sqlite:////proc/no-such-dir/store.sqlite3",
    ],
    ids=["postgres", "mariadb", "sqlite"],
)
def test_unreachable_database_raises_store_unavailable(url: str) -> None:
    """GIVEN a database that cannot be reached WHEN used THEN StoreUnavailableError, chained."""
    store = Store(url)
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            store.record([state_event("i-down0001", "Running", T0)])
        assert caught.value.__cause__ is not None
        with pytest.raises(StoreUnavailableError):
            store.ping()
    finally:
        store.close()


def test_unsupported_url_is_a_store_error() -> None:
    """GIVEN an unknown backend WHEN used THEN a StoreError naming it (not a crash)."""
    with pytest.raises(StoreError, match="unsupported database 'oracle'"):
        Store("oracle://x@host/db").ping()


def test_v1_database_is_upgraded_keeping_its_data(store_url: str) -> None:
    """GIVEN a version-1 database with an event WHEN the current code opens it THEN v3, data kept."""
    import sqlalchemy as sa

    from shared.store import _schema

    old = Store(store_url)
    assert old.ensure_schema(target_version=1) == 1
    v1_events = _schema().metadata_v1.tables["events"]
    assert "latency_ms" not in v1_events.c
    with old._get_engine().begin() as conn:
        conn.execute(sa.insert(v1_events), {
            "event_id": "old-1", "envelope": "cloudmonitor", "kind": "state_change",
            "name": "Instance:StateChange", "full_name": "Instance:StateChange",
            "instance_id": "i-old00001", "state": "Running", "event_time": datetime(2023, 1, 1, 0, 0, 0),
            "received_at": datetime(2023, 1, 1, 0, 0, 2, 500000), "raw": "{}",
        })
    old.close()

    store = Store(store_url)
    try:
        assert store.schema_version() == 1
        assert store.ledger_claim("after-upgrade", kind="start") is True
        assert store.schema_version() == SCHEMA_VERSION == 6
        assert "lb_index" in sa.inspect(store._get_engine()).get_table_names()
        (kept,) = store.timeline("i-old00001")
        assert kept.event_id == "old-1"
        assert kept.latency_ms == 2500
        assert kept.raw == "{}"
        columns = {c["name"] for c in sa.inspect(store._get_engine()).get_columns("events")}
        assert columns == set(_schema().events.c.keys())
        indexes = {i["name"] for i in sa.inspect(store._get_engine()).get_indexes("events")}
        assert {"ix_events_name_instance_time", "ix_events_time"} <= indexes
        instance_indexes = {i["name"] for i in sa.inspect(store._get_engine()).get_indexes("instances")}
        assert {"ix_instances_created", "ix_instances_snapshot_pending"} <= instance_indexes
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------
# queries


def test_released_filters_by_time_region_tag_and_name(store: Store) -> None:
    """GIVEN released and live instances WHEN filtered THEN only the matching released ones."""
    released_instance(store, "i-rel00001", T0, name="web-1", tags={"env": "prod"})
    released_instance(store, "i-rel00002", T0 + timedelta(hours=1), name="web-2", tags={"env": "dev"})
    released_instance(store, "i-rel00003", T0 + timedelta(hours=2), name="db-1", region="cn-shanghai", tags={"env": "prod", "team": "x"})
    store.record([state_event("i-live0001", "Running", T0)])
    store.set_snapshot("i-live0001", {"name": "web-live", "tags": {"env": "prod"}})

    def ids(**filters: Any) -> list[str]:
        return [r.instance_id for r in store.released(**filters).items]

    assert ids() == ["i-rel00003", "i-rel00002", "i-rel00001"]
    assert ids(since=T0 + timedelta(minutes=30)) == ["i-rel00003", "i-rel00002"]
    assert ids(until=T0 + timedelta(hours=1)) == ["i-rel00001"]
    assert ids(region="cn-shanghai") == ["i-rel00003"]
    assert ids(tag=("env", "prod")) == ["i-rel00003", "i-rel00001"]
    assert ids(tag=("env", "PROD")) == []
    assert ids(tag=("team", "x")) == ["i-rel00003"]
    assert ids(name_glob="web-*") == ["i-rel00002", "i-rel00001"]
    assert ids(name_glob="WEB-*") == []
    assert ids(name_glob="web-[1]") == ["i-rel00001"]
    assert ids(name_glob="?b-1") == ["i-rel00003"]


def test_released_glob_treats_percent_and_underscore_literally(store: Store) -> None:
    """GIVEN names with % and _ WHEN globbed THEN those characters match only themselves."""
    released_instance(store, "i-glob0001", T0, name="app_1")
    released_instance(store, "i-glob0002", T0 + timedelta(seconds=1), name="appX1")
    released_instance(store, "i-glob0003", T0 + timedelta(seconds=2), name="50%off")
    released_instance(store, "i-glob0004", T0 + timedelta(seconds=3), name="50Xoff")
    released_instance(store, "i-glob0005", T0 + timedelta(seconds=4), name="a/b")
    released_instance(store, "i-glob0006", T0 + timedelta(seconds=5), name="o'brien\"; DROP TABLE instances; --", tags={"k%": "v_1'"})
    assert [r.instance_id for r in store.released(name_glob="app_1").items] == ["i-glob0001"]
    assert [r.instance_id for r in store.released(name_glob="50%*").items] == ["i-glob0003"]
    assert [r.instance_id for r in store.released(name_glob="a/b").items] == ["i-glob0005"]
    assert [r.instance_id for r in store.released(name_glob="o'brien*").items] == ["i-glob0006"]
    assert [r.instance_id for r in store.released(tag=("k%", "v_1'")).items] == ["i-glob0006"]
    assert store.released(tag=("k_", "v%1'")).items == ()
    assert len(store.released().items) == 6


def test_released_pages_with_a_cursor(store: Store) -> None:
    """GIVEN 7 released instances (two sharing a time) WHEN paged by 3 THEN each once, latest
    release first and, within a time, the greater instance id first."""
    for i in range(7):
        released_instance(store, f"i-page{i:04d}", T0 + timedelta(minutes=min(i, 5)))
    seen: list[str] = []
    cursor = None
    pages = 0
    for _ in range(5):
        page = store.released(limit=3, cursor=cursor)
        seen.extend(r.instance_id for r in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert seen == ["i-page0006", "i-page0005", "i-page0004", "i-page0003", "i-page0002", "i-page0001", "i-page0000"]
    with pytest.raises(InvalidCursorError):
        store.released(cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit"):
        store.released(limit=0)


def test_stats_counts_and_latency(store_url: str) -> None:
    """GIVEN known events and receive times WHEN stats THEN counts per kind/state/day and latency."""
    store = Store(store_url)
    try:
        store.record([state_event("i-stat0001", "Pending", T0)], received_at=T0 + timedelta(milliseconds=100))
        store.record([state_event("i-stat0001", "Running", T0 + timedelta(seconds=1))], received_at=T0 + timedelta(seconds=1, milliseconds=300))
        store.record([state_event("i-stat0001", "Deleted", T0 + timedelta(days=1))], received_at=T0 + timedelta(days=1, milliseconds=200))
        store.record([other_event("i-stat0002", "Instance:PreemptibleInstanceInterruption", EventKind.SPOT_INTERRUPTION, T0, action="delete")], received_at=T0 + timedelta(seconds=5))
        stats = store.stats()
        assert stats["events"] == 4
        assert stats["per_kind"] == {"spot_interruption": 1, "state_change": 3}
        assert stats["per_state"] == {"Deleted": 1, "Pending": 1, "Running": 1}
        assert stats["per_name"] == {"Instance:PreemptibleInstanceInterruption": 1, "Instance:StateChange": 3}
        assert stats["instances"] == {"known": 2, "created": 1, "released": 1}
        assert stats["creations_per_day"] == {"2024-05-01": 1}
        assert stats["releases_per_day"] == {"2024-05-02": 1}
        assert stats["latency_ms"]["count"] == 4
        assert stats["latency_ms"]["median"] == 250.0
        assert stats["latency_ms"]["max"] == 5000
        assert stats["latency_ms"]["p99"] == pytest.approx(4859.0)
        later = store.stats(since=T0 + timedelta(hours=1))
        assert later["events"] == 1
        assert later["releases_per_day"] == {"2024-05-02": 1}
        assert later["creations_per_day"] == {}
    finally:
        store.close()


def test_recent_events_by_name_and_kind(store: Store) -> None:
    """GIVEN O&M and spot events WHEN asked since a time by name or kind THEN only those."""
    iid = "i-recent01"
    stop = other_event(iid, "Instance:SystemFailure.Stop:Executed", EventKind.SYSTEM_EVENT, T0, status="Executed")
    spot = other_event(iid, "Instance:PreemptibleInstanceInterruption", EventKind.SPOT_INTERRUPTION, T0 + timedelta(minutes=5))
    old = other_event(iid, "Instance:SystemFailure.Stop:Executed", EventKind.SYSTEM_EVENT, T0 - timedelta(hours=2), status="Executed")
    store.record([stop, spot, old, state_event(iid, "Stopped", T0 + timedelta(minutes=6))])
    since = T0 - timedelta(hours=1)
    assert [e.event_id for e in store.recent_events(iid, names=["Instance:SystemFailure.Stop"], since=since)] == [stop.event_id]
    assert [e.event_id for e in store.recent_events(iid, names=["Instance:SystemFailure.Stop:Executed"], since=since)] == [stop.event_id]
    assert [e.event_id for e in store.recent_events(iid, kinds=[EventKind.SPOT_INTERRUPTION], since=since)] == [spot.event_id]
    assert len(store.recent_events(iid, since=since)) == 3
    assert store.recent_events("i-other001", since=since) == []


def test_prune_raw_keeps_rows_and_timeline(store: Store) -> None:
    """GIVEN old and new events WHEN raw payloads older than a cutoff are pruned THEN only those."""
    iid = "i-prune001"
    store.record([state_event(iid, "Pending", T0), state_event(iid, "Running", T0 + timedelta(days=10))])
    cutoff = T0 + timedelta(days=5)
    assert store.prune_raw(cutoff, dry_run=True) == 1
    assert store.timeline(iid)[0].raw is not None
    assert store.prune_raw(cutoff) == 1
    assert store.prune_raw(cutoff) == 0
    first, second = store.timeline(iid)
    assert first.raw is None
    assert first.state == "Pending"
    assert second.raw == '{"state": "Running"}'
    assert store.instance(iid) is not None


def test_prune_refreshes_the_planner_statistics(store: Store) -> None:
    """GIVEN recorded events WHEN the maintenance path prunes THEN the tables' planner statistics
    are fresh (PostgreSQL plans ``released`` from them; a bulk-loaded table without them is read
    sequentially)."""
    import sqlalchemy as sa

    store.record([state_event(f"i-stat{i:04d}", "Deleted", T0 + timedelta(seconds=i)) for i in range(20)])
    assert store.prune_raw(T0 - timedelta(days=1)) == 0
    dialect = store._get_engine().dialect.name
    query = {
        "postgresql": "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL AND last_vacuum IS NOT NULL",
        "mysql": "SELECT table_name FROM mysql.table_stats WHERE db_name = DATABASE()",
        "sqlite": "SELECT DISTINCT tbl FROM sqlite_stat1",
    }[dialect]
    with store._get_engine().connect() as conn:
        analyzed = {str(row[0]) for row in conn.execute(sa.text(query))}
    assert {"events", "instances"} <= analyzed


def test_released_listing_leaves_the_snapshot_out(store: Store) -> None:
    """GIVEN a released instance with a snapshot WHEN listed THEN the listing's item has no
    snapshot (the largest column, never shown) but every other field; instance() has it."""
    released_instance(store, "i-snapout01", T0, name="web-9", tags={"env": "prod"})
    (item,) = store.released().items
    full = store.instance("i-snapout01")
    assert full is not None
    assert full.snapshot == {"name": "web-9", "region_id": "cn-hangzhou", "tags": {"env": "prod"}}
    assert item.snapshot is None
    assert item.to_dict() == full.to_dict()


def test_snapshot_attributes_and_retry_list(store: Store) -> None:
    """GIVEN instances WHEN snapshots succeed or fail THEN attributes kept and retries listed."""
    store.record([state_event("i-snap0001", "Pending", T0), state_event("i-snap0002", "Pending", T0 + timedelta(1))])
    assert store.instances_needing_snapshot() == ["i-snap0002", "i-snap0001"]
    store.set_snapshot("i-snap0001", {
        "name": "web-1", "instance_type": "ecs.g7.large", "zone_id": "cn-hangzhou-h",
        "image_id": "ubuntu_22", "vpc_id": "vpc-1", "private_ips": ["10.0.0.1"], "public_ips": [],
        "tags": [{"TagKey": "env", "TagValue": "prod"}], "charge_type": "PostPaid",
        "spot_strategy": "SpotAsPriceGo", "creation_time": "2024-05-01T07:59Z", "region_id": "cn-hangzhou",
        "extra": {"nested": 1},
    }, taken_at=T0 + timedelta(seconds=3))
    for _ in range(3):
        store.note_snapshot_failure("i-snap0002")
    record = store.instance("i-snap0001")
    assert record is not None
    assert (record.name, record.instance_type, record.zone_id) == ("web-1", "ecs.g7.large", "cn-hangzhou-h")
    assert record.private_ips == ("10.0.0.1",)
    assert record.tags == {"env": "prod"}
    assert record.creation_time == datetime(2024, 5, 1, 7, 59, tzinfo=timezone.utc)
    assert record.snapshot_at == T0 + timedelta(seconds=3)
    assert record.snapshot is not None
    assert record.snapshot["extra"] == {"nested": 1}
    assert store.instances_needing_snapshot() == ["i-snap0002"]
    assert store.instances_needing_snapshot(max_attempts=3) == []
    failing = store.instance("i-snap0002")
    assert failing is not None
    assert failing.snapshot_attempts == 3


# ---------------------------------------------------------------------------------------------
# ledger


def test_ledger_claim_update_count_find(store_url: str) -> None:
    """GIVEN ledger entries WHEN claimed, updated, counted, found THEN exact answers."""
    now = [T0]
    store = Store(store_url, clock=lambda: now[0])
    try:
        assert store.ledger_claim("start:i-led00001:1", kind="start", instance_id="i-led00001", data={"a": 1}) is True
        assert store.ledger_claim("start:i-led00001:1", kind="start", instance_id="i-led00001") is False
        now[0] = T0 + timedelta(minutes=10)
        store.ledger_claim("start:i-led00001:2", kind="start", instance_id="i-led00001")
        store.ledger_claim("drain:i-led00001", kind="drain", instance_id="i-led00001", status="pending")
        store.ledger_update("start:i-led00001:1", status="done", data={"b": 2})
        entry = store.ledger_get("start:i-led00001:1")
        assert entry is not None
        assert (entry.status, dict(entry.data)) == ("done", {"a": 1, "b": 2})
        assert entry.created_at == T0
        assert entry.updated_at == T0 + timedelta(minutes=10)
        assert store.ledger_get("missing") is None
        with pytest.raises(StoreError, match="no ledger entry"):
            store.ledger_update("missing", status="x")
        assert store.ledger_count("start", "i-led00001", T0) == 2
        assert store.ledger_count("start", "i-led00001", T0 + timedelta(minutes=5)) == 1
        assert store.ledger_count("start", "i-other001", T0) == 0
        assert [e.key for e in store.ledger_find("start", status="done")] == ["start:i-led00001:1"]
        assert [e.key for e in store.ledger_find("drain", older_than=T0 + timedelta(minutes=11))] == ["drain:i-led00001"]
        assert store.ledger_find("drain", older_than=T0 + timedelta(minutes=10)) == []
        now[0] = T0 + timedelta(minutes=30)
        store.ledger_update("drain:i-led00001", data={"step": "weight0"})
        assert [e.key for e in store.ledger_find("drain", older_than=T0 + timedelta(minutes=11))] == ["drain:i-led00001"]
    finally:
        store.close()


def test_ledger_claim_race_has_one_winner(store: Store) -> None:
    """GIVEN 8 threads claiming one key at once WHEN they race THEN exactly one gets True."""
    store.ensure_schema()
    barrier = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def claim() -> None:
        barrier.wait()
        won = store.ledger_claim("incident:i-race0001", kind="incident", instance_id="i-race0001")
        with lock:
            results.append(won)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False] * 7 + [True]


def test_sqlite_default_directory_is_created(tmp_path: Path) -> None:
    """GIVEN a SQLite URL under a missing directory WHEN first used THEN the directory is made."""
    store = Store(f"sqlite:///{tmp_path / 'deep' / 'er' / 'db.sqlite3'}")
    try:
        store.ping()
        assert (tmp_path / "deep" / "er").is_dir()
    finally:
        store.close()


def test_stats_report_what_the_practices_did(store: Store) -> None:
    """GIVEN ledger entries of starts, incidents and drains WHEN stats are asked THEN starts,
    incidents per status, drain count, missed deadlines and notice-to-removed percentiles."""
    store.ledger_claim("started:i-a:1", kind="start", instance_id="i-a")
    store.ledger_claim("incident:i-a:1", kind="incident", instance_id="i-a", status="closed")
    store.ledger_claim("incident:i-b:1", kind="incident", instance_id="i-b", status="escalated")
    for n, (seconds, missed) in enumerate([(10.0, False), (30.0, False), (400.0, True)]):
        store.ledger_claim(f"drain:i-s{n}:0", kind="drain", instance_id=f"i-s{n}", status="done",
                           data={"notice_to_removed_s": seconds, "missed_deadline": missed})
    store.ledger_claim("drain:i-s9:0", kind="drain", instance_id="i-s9")  # still running: no metric
    stats = store.stats()
    assert stats["auto_start"] == {"starts": 1, "incidents": {"closed": 1, "escalated": 1}}
    assert stats["spot_drains"] == {
        "count": 4, "missed_deadlines": 1,
        "notice_to_removed_s": {"median": 30.0, "p99": 392.6, "max": 400.0},
    }


def test_a_snapshot_of_an_instance_never_seen_in_an_event_keeps_its_region(store: Store) -> None:
    """GIVEN the attributes as shared.clients.Instance.snapshot() writes them WHEN they are the
    first thing stored about an instance THEN its row has the region (from region_id)."""
    store.set_snapshot("i-snap0009", {"instance_id": "i-snap0009", "name": "db-1",
                                      "region_id": "cn-shanghai", "zone_id": "cn-shanghai-b"})
    record = store.instance("i-snap0009")
    assert record is not None
    assert (record.region, record.zone_id, record.name) == ("cn-shanghai", "cn-shanghai-b", "db-1")
