"""Measure the lifecycle store: record throughput with parallel writers, ``released`` latency.

    python -m tools.bench_store                         # temp SQLite, 20k events, 1M for released
    python -m tools.bench_store --db postgresql+psycopg://postgres@127.0.0.1/bench --reset \\
        --released-events 0 --json

Batch of 1: ``--single-events`` recorded one per batch (the warm per-invocation cost) by one
process, then by 8 processes whose commits wait 5 ms (round trips to a distant database), on a fresh
database at schema 3 (no counters), 4 (counters, one row each) and 5 (sharded counters), taking
turns (``--batch-rounds``). Statements: batches of 1, 10 and 100 new events are recorded and the
SQL statements reaching the driver counted. Record: ``--writers`` processes (spawned, started together) each record their
own lifecycles in batches of ``--batch`` through :meth:`Store.record` (dedup, instance rows, one
transaction per batch). Released: ``--released-events`` events (about six per instance, 80%
released) are bulk loaded, then a mix of ``released`` queries (first page, time window, region,
tag, name glob, deep cursor pages) is timed twice: in the pre-issue-16 shape on the fresh load,
then the store's own after :meth:`Store.analyze`; the store's other reads follow. ``--db`` must
name an empty database unless ``--reset`` is given, which DROPS the project's tables there first.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from shared.events import EcsEvent, Envelope, EventKind
from shared.store import Store

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
ALIVE = ("Pending", "Starting", "Running", "Stopping", "Stopped", "Starting")
RELEASED = ("Pending", "Starting", "Running", "Stopping", "Stopped", "Deleted")
REGIONS = ("cn-hangzhou", "cn-shanghai", "cn-beijing", "eu-west-1")
ENVS = ("prod", "dev", "test")
PROJECT_TABLES = ("events", "instances", "ledger", "schema_version", "event_counts", "event_counts_hourly", "instance_counts")


def lifecycle(n: int, prefix: str) -> list[tuple[str, str, datetime, str]]:
    """(instance id, state, time, region) of instance ``n``'s six events."""
    iid = f"i-{prefix}{n:09d}"
    start = T0 + timedelta(seconds=n * 40)
    states = ALIVE if n % 5 == 0 else RELEASED
    region = REGIONS[n % len(REGIONS)]
    return [(iid, s, start + timedelta(minutes=step * 7), region) for step, s in enumerate(states)]


def writer_events(writer: int, count: int) -> list[EcsEvent]:
    events: list[EcsEvent] = []
    n = 0
    while len(events) < count:
        for iid, state, at, region in lifecycle(n, f"w{writer}"):
            events.append(EcsEvent(
                kind=EventKind.STATE_CHANGE, name="Instance:StateChange",
                full_name="Instance:StateChange", event_id=f"bench-{iid}-{len(events)}",
                event_time=at, envelope=Envelope.EVENTBRIDGE,
                raw=json.dumps({"data": {"resourceId": iid, "state": state}}),
                instance_id=iid, state=state, region=region, account_id="1234567890",
            ))
        n += 1
    return events[:count]


def _writer(
    url: str, writer: int, count: int, batch: int, *, start_at: float,
    schema: int | None = None, commit_delay_ms: float = 0.0,
) -> tuple[int, float]:
    from shared.log import configure

    configure(level="WARNING", stream=sys.stderr)
    events = writer_events(writer, count)
    store = Store(url)
    if schema is None:
        store.ensure_schema()
    else:  # an older schema, as code of that version ran it (the "before" of a comparison)
        store.ensure_schema(target_version=schema)
        store._schema_ready = True
    if commit_delay_ms:
        # The round trip to a database across the network, while the transaction holds its
        # locks: every COMMIT waits this long before it reaches the server.
        from sqlalchemy import event

        event.listen(store._get_engine(), "commit", lambda _conn: time.sleep(commit_delay_ms / 1000))
    time.sleep(max(0.0, start_at - time.time()))
    began = time.perf_counter()
    inserted = 0
    for offset in range(0, len(events), batch):
        inserted += len(store.record(events[offset : offset + batch]).inserted)
    elapsed = time.perf_counter() - began
    store.close()
    return inserted, elapsed


def bench_record(
    url: str, events: int, writers: int, batch: int, *, first_writer: int = 0,
    schema: int | None = None, commit_delay_ms: float = 0.0,
) -> dict[str, Any]:
    per_writer = events // writers
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0
    with context.Pool(writers) as pool:
        began = time.time()
        how = {"start_at": start_at, "schema": schema, "commit_delay_ms": commit_delay_ms}
        pending = [pool.apply_async(_writer, (url, first_writer + w, per_writer, batch), how)
                   for w in range(writers)]
        results = [p.get() for p in pending]
    wall = time.time() - max(began, start_at)
    inserted = sum(r[0] for r in results)
    slowest = max(r[1] for r in results)
    return {
        "events": inserted, "writers": writers, "batch": batch, "commit_delay_ms": commit_delay_ms,
        "seconds": round(slowest, 3), "events_per_s": round(inserted / slowest),
        "wall_seconds": round(wall, 3),
    }


# Schemas compared by bench_batch_of_1: 3 had no counters (stats aggregated the rows), 4 added
# the counters kept by triggers (one row per counter), 5 shards them per writer connection.
SCHEMAS_COMPARED = (3, 4, 5)
CONCURRENT_WRITERS = 8
COMMIT_DELAY_MS = 5.0


def bench_batch_of_1(url: str, events: int, fresh: Any, rounds: int = 3) -> dict[str, Any]:
    """Warm batch-of-1 throughput per schema, side by side: one writer, and
    ``CONCURRENT_WRITERS`` writers whose commits each wait ``COMMIT_DELAY_MS`` (a managed
    database's round trip, while the transaction holds its row locks). ``fresh(schema)`` gives
    an empty database's URL. The schemas take turns, ``rounds`` times; medians are reported."""
    import statistics

    runs: dict[str, dict[str, list[int]]] = {}
    for round_ in range(rounds):
        for schema in SCHEMAS_COMPARED:
            target = fresh(schema)
            runs.setdefault(f"v{schema}", {}).setdefault("one writer", []).append(bench_record(
                target, events, 1, 1, first_writer=50 + round_, schema=schema)["events_per_s"])
            runs[f"v{schema}"].setdefault(
                f"{CONCURRENT_WRITERS} writers, commit +{COMMIT_DELAY_MS:g} ms", []
            ).append(bench_record(
                target, events, CONCURRENT_WRITERS, 1, first_writer=60 + 10 * round_, schema=schema,
                commit_delay_ms=COMMIT_DELAY_MS,
            )["events_per_s"])
    return {
        schema: {case: {"median": round(statistics.median(v)), "runs": v} for case, v in cases.items()}
        for schema, cases in runs.items()
    }


# ---------------------------------------------------------------------------------------------
# SQL statements per recorded batch


BATCH_SIZES = (1, 10, 100)


def count_statements(store: Store, events: Sequence[EcsEvent]) -> dict[str, Any]:
    """Record ``events`` as one batch and count what reached the database driver.

    ``statements``: SQL statements the server runs (a DBAPI ``executemany`` of n parameter sets
    is n statements; a multi-row ``INSERT ... VALUES (..), (..)`` is one); ``calls``: cursor
    calls from SQLAlchemy (round trips, ``COMMIT`` aside).
    """
    from sqlalchemy import event
    from sqlalchemy.engine.interfaces import ExecuteStyle

    store.ensure_schema()
    engine = store._get_engine()
    seen: list[tuple[str, int]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        style = getattr(context, "execute_style", ExecuteStyle.EXECUTE)
        count = len(parameters) if many and style is ExecuteStyle.EXECUTEMANY else 1
        if engine.dialect.name in ("mysql", "mariadb") and statement.lstrip().upper().startswith("INSERT"):
            count = 1  # PyMySQL sends an INSERT executemany as one multi-row statement
        seen.append((" ".join(statement.split()[:3]), count))

    event.listen(engine, "before_cursor_execute", before)
    try:
        result = store.record(events)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return {
        "events": len(events), "inserted": len(result.inserted),
        "instances": len({e.instance_id for e in events if e.instance_id}),
        "calls": len(seen), "statements": sum(n for _, n in seen),
        "kinds": sorted({head for head, _ in seen}),
    }


def bench_statements(url: str, sizes: Sequence[int] = BATCH_SIZES) -> dict[str, Any]:
    """Statements per batch of new events (about six per instance) for each batch size."""
    store = Store(url)
    try:
        return {str(size): count_statements(store, writer_events(100 + size, size)) for size in sizes}
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------
# released latency over a large store


def _bulk_rows(total: int) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Event rows, each followed (on its instance's last event) by the instance row."""
    n = 0
    produced = 0
    while produced < total:
        steps = lifecycle(n, "b")
        for index, (iid, state, at, region) in enumerate(steps):
            event_time = at.replace(tzinfo=None)
            event = {
                "event_id": f"bulk-{n}-{index}", "envelope": "eventbridge", "envelope_id": None,
                "kind": "state_change", "name": "Instance:StateChange",
                "full_name": "Instance:StateChange", "status": None, "instance_id": iid,
                "disk_id": None, "state": state, "action": None, "region": region,
                "account_id": "1234567890", "event_time": event_time,
                "received_at": event_time + timedelta(milliseconds=350 + n % 500),
                "latency_ms": 350 + n % 500, "raw": '{"state": "%s"}' % state,  # noqa: UP031
            }
            instance = None
            if index == len(steps) - 1:
                released = steps[-1][1] == "Deleted"
                instance = {
                    "instance_id": iid, "region": region, "account_id": "1234567890",
                    "first_seen": steps[0][2].replace(tzinfo=None),
                    "created_at": steps[0][2].replace(tzinfo=None),
                    "released_at": event_time if released else None,
                    "last_state": state, "last_state_at": event_time,
                    "name": f"{'web' if n % 2 else 'db'}-{n}", "instance_type": "ecs.g7.large",
                    "zone_id": region + "-a", "private_ips": json.dumps([f"10.0.{n % 250}.{n % 200}"]),
                    "public_ips": "[]", "tags": json.dumps({"env": ENVS[n % 3], "team": f"t{n % 7}"}, sort_keys=True),
                    "charge_type": "PostPaid", "snapshot_attempts": 0,
                    "snapshot": _snapshot_text(iid, n, region), "snapshot_at": steps[0][2].replace(tzinfo=None),
                }
            yield event, instance
            produced += 1
            if produced >= total:
                return
        n += 1


def _snapshot_text(iid: str, n: int, region: str) -> str:
    """About the size of a real snapshot (the DescribeInstances attributes kept at creation)."""
    return json.dumps({
        "instance_id": iid, "name": f"{'web' if n % 2 else 'db'}-{n}", "region_id": region,
        "zone_id": region + "-a", "instance_type": "ecs.g7.large", "image_id": "ubuntu_22_04_x64_20G_alibase_20240101.vhd",
        "vpc_id": "vpc-bp1" + f"{n % 97:020d}", "vswitch_id": "vsw-bp1" + f"{n % 89:020d}",
        "security_group_ids": ["sg-bp1" + f"{n % 13:020d}"], "private_ips": [f"10.0.{n % 250}.{n % 200}"],
        "public_ips": [], "eip": None, "cpu": 2, "memory_mb": 8192, "os_name": "Ubuntu 22.04 64 bit",
        "charge_type": "PostPaid", "spot_strategy": "NoSpot", "creation_time": "2024-01-01T00:00Z",
        "tags": {"env": ENVS[n % 3], "team": f"t{n % 7}"}, "key_pair_name": "ops",
        "description": "bench instance " + "x" * 400,
    }, sort_keys=True)


def bulk_load(store: Store, total: int) -> float:
    """Insert ``total`` events (and their instances) fast: executemany in chunks."""
    import sqlalchemy as sa

    from shared.store import _schema

    store.ensure_schema()
    schema = _schema()
    began = time.perf_counter()
    events: list[dict[str, Any]] = []
    instances: list[dict[str, Any]] = []
    engine = store._get_engine()

    def flush() -> None:
        with engine.begin() as conn:
            if events:
                conn.execute(sa.insert(schema.events), events)
            if instances:
                conn.execute(sa.insert(schema.instances), instances)
        events.clear()
        instances.clear()

    for event, instance in _bulk_rows(total):
        events.append(event)
        if instance is not None:
            instances.append(instance)
        if len(events) >= 20_000:
            flush()
    flush()
    if engine.dialect.name == "sqlite":  # as the bench always did: "before" had SQLite analyzed
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - began


def _legacy_released(store: Store, limit: int = 100, cursor: str | None = None, **params: Any) -> Any:
    """``released`` as the store ran it before issue 16: every column, snapshot included, and a
    mixed-direction ORDER BY (time desc, id asc) that MariaDB cannot read from the index.
    Same filters and Python post-filter; kept here to measure before and after side by side."""
    import fnmatch

    import sqlalchemy as sa

    from shared.store import (
        _LIKE_ESCAPE,
        Page,
        _decode_cursor,
        _encode_cursor,
        _glob_to_like,
        _instance_record,
        _like_escape,
        _naive,
        _schema,
    )

    table = _schema().instances
    query = sa.select(table).where(table.c.released_at.is_not(None))
    if params.get("since") is not None:
        query = query.where(table.c.released_at >= _naive(params["since"]))
    if params.get("region") is not None:
        query = query.where(table.c.region == params["region"])
    tag = params.get("tag")
    if tag is not None:
        fragment = json.dumps(tag[0]) + ": " + json.dumps(tag[1])
        query = query.where(table.c.tags.like(f"%{_like_escape(fragment)}%", escape=_LIKE_ESCAPE))
    glob = params.get("name_glob")
    if glob is not None:
        query = query.where(table.c.name.like(_glob_to_like(glob), escape=_LIKE_ESCAPE))
    if cursor is not None:
        after_time, after_id = _decode_cursor(cursor)
        query = query.where(
            table.c.released_at <= after_time,
            sa.or_(table.c.released_at < after_time, table.c.instance_id > after_id),
        )
    query = query.order_by(table.c.released_at.desc(), table.c.instance_id).limit(limit + 1)
    rows = store._run("legacy released", lambda c: list(c.execute(query)), write=False)
    more = len(rows) > limit
    rows = rows[:limit]
    items = tuple(
        r for r in (_instance_record(row) for row in rows)
        if (tag is None or r.tags.get(tag[0]) == tag[1])
        and (glob is None or (r.name is not None and fnmatch.fnmatchcase(r.name, glob)))
    )
    return Page(items, _encode_cursor(rows[-1].released_at, rows[-1].instance_id) if more else None)


def bench_released(store: Store, rounds: int) -> dict[str, Any]:
    """The query mix twice over the same data: the pre-issue-16 shape on the freshly loaded
    tables (PostgreSQL without statistics, as a bulk load leaves it until autovacuum comes by),
    then the store's queries after :meth:`Store.analyze` (what the maintenance path runs)."""
    before = _released_mix(store, rounds, _legacy_released)
    began = time.perf_counter()
    store.analyze()
    analyze_s = time.perf_counter() - began
    after = _released_mix(store, rounds, Store.released)
    return {"before": before, "analyze_s": round(analyze_s, 2), "after": after, **after,
            "other_queries": bench_other_queries(store, rounds), "stats": bench_stats(store, rounds)}


def bench_stats(store: Store, rounds: int) -> dict[str, Any]:
    """``stats`` of the last day and of all time, before (the pre-counter query shape,
    :func:`_legacy_stats`) and after (the store's, from its counters), interleaved on the same
    data, with the same answers checked but for the latency sample's size."""
    end = T0 + timedelta(seconds=40 * _known_instances(store))
    windows = {"since 1d": end - timedelta(days=1), "all time": None}
    timings: dict[str, list[float]] = {}
    for _ in range(rounds):
        for window, since in windows.items():
            for shape, run in (("before", _legacy_stats), ("after", Store.stats)):
                began = time.perf_counter()
                answer = run(store, since=since)
                timings.setdefault(f"{shape} {window}", []).append((time.perf_counter() - began) * 1000)
                counts = {k: answer[k] for k in ("per_kind", "per_state", "per_name", "instances",
                                                 "creations_per_day", "releases_per_day")}
                if shape == "before":
                    expected = counts
                elif counts != expected:
                    raise RuntimeError(f"stats {window}: the counters disagree with the rows")
    return {name: {"p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95)} for name, v in timings.items()}


def _released_mix(store: Store, rounds: int, released: Any) -> dict[str, Any]:
    # The bulk data starts at T0, one instance every 40 s: 1M events span about 77 days.
    end = T0 + timedelta(seconds=40 * _known_instances(store))
    queries: dict[str, dict[str, Any]] = {
        "first page": {},
        "since 7d window": {"since": end - timedelta(days=7)},
        "region": {"region": "cn-shanghai"},
        "tag env=prod": {"tag": ("env", "prod")},
        "name glob web-1*": {"name_glob": "web-1*"},
        "region+tag+since": {"region": "eu-west-1", "tag": ("team", "t3"), "since": T0 + timedelta(days=30)},
    }
    timings: dict[str, list[float]] = {name: [] for name in [*queries, "cursor page 2-6"]}
    for _ in range(rounds):
        for name, params in queries.items():
            began = time.perf_counter()
            page = released(store, limit=100, **params)
            timings[name].append((time.perf_counter() - began) * 1000)
        cursor = page.next_cursor
        for _page in range(5):
            began = time.perf_counter()
            page = released(store, limit=100, cursor=cursor)
            timings["cursor page 2-6"].append((time.perf_counter() - began) * 1000)
            cursor = page.next_cursor
    every = [t for values in timings.values() for t in values]
    return {
        "queries": {name: {"p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95)} for name, v in timings.items()},
        "all": {"count": len(every), "p50_ms": _pct(every, 50), "p95_ms": _pct(every, 95), "max_ms": round(max(every), 2)},
    }


def _known_instances(store: Store) -> int:
    import sqlalchemy as sa

    from shared.store import _schema

    table = _schema().instances
    return int(store._run("count", lambda c: c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one(), write=False))


def bench_other_queries(store: Store, rounds: int) -> dict[str, Any]:
    """The store's other reads over the same data: an instance, its timeline, its recent events,
    the snapshot retry list, the ledger, and the stats of the last day and of all time."""
    known = _known_instances(store)
    end = T0 + timedelta(seconds=40 * known)
    queries: dict[str, Any] = {
        "instance": lambda n: store.instance(f"i-b{n:09d}"),
        "timeline": lambda n: store.timeline(f"i-b{n:09d}"),
        "recent_events 1d": lambda n: store.recent_events(f"i-b{n:09d}", since=end - timedelta(days=1)),
        "instances_needing_snapshot": lambda n: store.instances_needing_snapshot(limit=100),
        "ledger_find start": lambda n: store.ledger_find("start", limit=100),
        "stats since 1d": lambda n: store.stats(since=end - timedelta(days=1)),
        "stats all time": lambda n: store.stats(),
    }
    timings: dict[str, list[float]] = {name: [] for name in queries}
    for round_ in range(rounds):
        n = (round_ * 7919) % known
        for name, run in queries.items():
            began = time.perf_counter()
            run(n)
            timings[name].append((time.perf_counter() - began) * 1000)
    return {name: {"p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95)} for name, v in timings.items()}


LEGACY_LATENCY_SAMPLE = 100_000  # stats' latency sample before schema 4


def _legacy_stats(store: Store, since: datetime | None = None) -> dict[str, Any]:
    """``stats`` as the store ran it before its counters (schema 4): one GROUP BY over every event
    of the window, 100,000 latencies ranked, every instance counted and grouped per day. Kept
    here, verbatim but for the names it imports, to time it beside the store's on the same data."""
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection

    from shared.events import iso
    from shared.store import _action_stats, _ledger_entry, _naive, _schema, _sql_percentiles

    schema = _schema()
    ev, inst = schema.events, schema.instances
    cutoff = None if since is None else _naive(since)

    def counted(conn: Connection) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """Events per kind, per state and per name from one pass (one GROUP BY of the three:
        a handful of combinations) instead of three passes over the window."""
        query = sa.select(ev.c.kind, ev.c.state, ev.c.full_name, sa.func.count()).group_by(
            ev.c.kind, ev.c.state, ev.c.full_name
        )
        if cutoff is not None:
            query = query.where(ev.c.event_time >= cutoff)
        kinds: dict[str, int] = {}
        states: dict[str, int] = {}
        names: dict[str, int] = {}
        for kind, state, full_name, n in conn.execute(query):
            kinds[str(kind)] = kinds.get(str(kind), 0) + int(n)
            if state is not None:
                states[str(state)] = states.get(str(state), 0) + int(n)
            names[str(full_name)] = names.get(str(full_name), 0) + int(n)
        return dict(sorted(kinds.items())), dict(sorted(states.items())), dict(sorted(names.items()))

    def per_day(conn: Connection, column: Any) -> dict[str, int]:
        day = sa.func.date(column).label("day")
        query = sa.select(day, sa.func.count()).where(column.is_not(None)).group_by(day).order_by(day)
        if cutoff is not None:
            query = query.where(column >= cutoff)
        return {str(d): int(n) for d, n in conn.execute(query)}

    def work(conn: Connection) -> dict[str, Any]:
        per_kind, per_state, per_name = counted(conn)
        latency_query = sa.select(ev.c.latency_ms).where(ev.c.latency_ms.is_not(None))
        if cutoff is not None:
            latency_query = latency_query.where(ev.c.event_time >= cutoff)
        # The most recent events by event time: a backward range of ix_events_time, which
        # holds latency_ms (ordering by id made SQLite read the whole table instead). The
        # percentiles are picked in SQL: shipping a day's latencies to Python cost more than
        # every other part of stats (PyMySQL parses ~100 rows per ms).
        sample = latency_query.order_by(ev.c.event_time.desc()).limit(LEGACY_LATENCY_SAMPLE).subquery()
        sampled, latency = _sql_percentiles(conn, sample.c.latency_ms, (50, 99))

        def counted_instances(*where: Any) -> Any:
            return sa.select(sa.func.count()).select_from(inst).where(*where).scalar_subquery()

        # Three index-only counts (one round trip) instead of one pass over the wide rows.
        instances_query = sa.select(
            counted_instances(),
            counted_instances(inst.c.released_at.is_not(None)),
            counted_instances(inst.c.created_at.is_not(None)),
        )
        total_instances, total_released, total_created = conn.execute(instances_query).one()
        ledger = schema.ledger
        actions_query = sa.select(ledger).where(ledger.c.kind.in_(("drain", "start", "incident")))
        if cutoff is not None:
            actions_query = actions_query.where(ledger.c.created_at >= cutoff)
        entries = [_ledger_entry(r) for r in conn.execute(actions_query)]
        return {
            "since": iso(since),
            "events": sum(per_kind.values()),
            "per_kind": per_kind,
            "per_state": per_state,
            "per_name": per_name,
            "instances": {
                "known": int(total_instances),
                "created": int(total_created),
                "released": int(total_released),
            },
            "creations_per_day": per_day(conn, inst.c.created_at),
            "releases_per_day": per_day(conn, inst.c.released_at),
            "latency_ms": {
                "count": sampled,
                "median": latency[50],
                "p99": latency[99],
                "max": None if latency[100] is None else int(latency[100]),
                "sampled": sampled >= LEGACY_LATENCY_SAMPLE,
            },
            **_action_stats(entries),
        }
    return store._run("legacy stats", work, write=False)


def _pct(values: Sequence[float], pct: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round((len(ordered) - 1) * pct / 100))], 2)


def _reset(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in PROJECT_TABLES:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_store", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--events", type=int, default=20_000, help="events recorded by the writers")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--single-events", type=int, default=2000,
                        help="events recorded one per batch, per schema compared (warm throughput); 0 skips")
    parser.add_argument("--batch-rounds", type=int, default=3, help="turns of the schemas compared")
    parser.add_argument("--released-events", type=int, default=1_000_000, help="0 skips the released benchmark")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of the released query mix")
    parser.add_argument("--reset", action="store_true", help="DROP the project tables in --db first")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        if args.reset:
            _reset(url)
        probe = Store(url)
        if probe.schema_version() and probe.stats()["events"]:
            print("bench_store: the database is not empty; pass --reset to drop its tables", file=sys.stderr)
            return 2
        probe.close()
        result: dict[str, Any] = {"db": url.split("://")[0]}
        if args.single_events:
            made = iter(range(1_000_000))

            def fresh(schema: int) -> str:
                if args.db:
                    _reset(url)
                    return url
                return f"sqlite:///{Path(tmp) / f'batch-of-1-v{schema}-{next(made)}.sqlite3'}"

            result["batch_of_1"] = bench_batch_of_1(url, args.single_events, fresh, args.batch_rounds)
            if args.db:
                _reset(url)
        result["statements_per_batch"] = bench_statements(url)
        if args.events:
            result["record"] = bench_record(url, args.events, args.writers, args.batch)
        if args.released_events:
            store = Store(url)
            result["load"] = {"events": args.released_events, "seconds": round(bulk_load(store, args.released_events), 1)}
            result["released"] = bench_released(store, args.rounds)
            store.close()

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"backend: {result['db']}")
    print("statements per batch: " + ", ".join(
        f"{size} events ({s['instances']} instances): {s['statements']}"
        for size, s in result["statements_per_batch"].items()))
    for schema, cases in result.get("batch_of_1", {}).items():
        print(f"record batch of 1, schema {schema}: " + ", ".join(
            f"{case}: {c['median']} events/s" for case, c in cases.items()))
    if "record" in result:
        r = result["record"]
        print(f"record: {r['events']} events, {r['writers']} writers, batches of {r['batch']}: "
              f"{r['events_per_s']} events/s ({r['seconds']} s)")
    if "released" in result:
        rel = result["released"]
        print(f"released over {result['load']['events']} events (loaded in {result['load']['seconds']} s; "
              f"analyze {rel['analyze_s']} s), before (legacy shape) -> after:")
        print(f"  {'query':<28} {'p50 ms':>15} {'p95 ms':>15}")
        rows = [(name, rel["before"]["queries"][name], q) for name, q in rel["after"]["queries"].items()]
        rows.append((f"all ({rel['after']['all']['count']})", rel["before"]["all"], rel["after"]["all"]))
        for name, b, a in rows:
            print(f"  {name:<28} {str(b['p50_ms']) + ' -> ' + str(a['p50_ms']):>15} "
                  f"{str(b['p95_ms']) + ' -> ' + str(a['p95_ms']):>15}")
        for name, q in rel["other_queries"].items():
            print(f"  {name:<28} {q['p50_ms']:>15} {q['p95_ms']:>15}")
    return 0


if __name__ == "__main__":
    from shared.log import configure

    configure(level="WARNING", stream=sys.stderr)
    sys.exit(main())
