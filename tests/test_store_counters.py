"""stats from the counters the triggers keep (schema v4, sharded per writer connection on
PostgreSQL and MariaDB since v5), against a recount of the rows, on every backend: any order of
arrival, duplicates, a late earlier creation that moves an instance's creation to the day before,
a release, concurrent writers, rows stored before v4 and counters kept before v5; and a writer
never waits for another's uncommitted counter."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.events import EventKind
from shared.store import COUNTER_SHARDS, SCHEMA_VERSION, Store
from tests.test_store import T0, other_event, state_event


def recount(store: Store, since: datetime | None = None) -> dict[str, Any]:
    """What stats must say, counted from the rows with plain SQL."""
    import sqlalchemy as sa

    from shared.store import _schema

    schema = _schema()
    ev, inst = schema.events, schema.instances
    cutoff = None if since is None else since.replace(tzinfo=None)

    def work(conn: Any) -> dict[str, Any]:
        query = sa.select(ev.c.kind, ev.c.state, ev.c.full_name)
        if cutoff is not None:
            query = query.where(ev.c.event_time >= cutoff)
        kinds: dict[str, int] = {}
        states: dict[str, int] = {}
        names: dict[str, int] = {}
        for kind, state, name in conn.execute(query):
            kinds[kind] = kinds.get(kind, 0) + 1
            if state is not None:
                states[state] = states.get(state, 0) + 1
            names[name] = names.get(name, 0) + 1
        rows = conn.execute(sa.select(inst.c.created_at, inst.c.released_at)).all()

        def days(values: list[datetime | None]) -> dict[str, int]:
            out: dict[str, int] = {}
            for v in values:
                if v is not None and (cutoff is None or v >= cutoff):
                    out[v.date().isoformat()] = out.get(v.date().isoformat(), 0) + 1
            return dict(sorted(out.items()))

        return {
            "per_kind": dict(sorted(kinds.items())), "per_state": dict(sorted(states.items())),
            "per_name": dict(sorted(names.items())),
            "instances": {"known": len(rows), "created": sum(1 for r in rows if r[0] is not None),
                          "released": sum(1 for r in rows if r[1] is not None)},
            "creations_per_day": days([r[0] for r in rows]),
            "releases_per_day": days([r[1] for r in rows]),
        }

    return store._run("recount", work, write=False)


def counted(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: stats[k] for k in ("per_kind", "per_state", "per_name", "instances",
                                  "creations_per_day", "releases_per_day")}


def test_counters_follow_any_arrival_order(store_url: str) -> None:
    """GIVEN lifecycles over three days delivered shuffled, in batches, with duplicates, and a
    late Pending one day earlier than the first WHEN stats (all time, since mid-day, since
    midnight) THEN every count equals a recount of the rows."""
    rng = random.Random(16)
    events = []
    for n in range(40):
        iid = f"i-cnt{n:05d}"
        born = T0 + timedelta(hours=n * 1.7)
        events.append(state_event(iid, "Pending", born))
        events.append(state_event(iid, "Running", born + timedelta(minutes=1)))
        if n % 3 == 0:
            events.append(state_event(iid, "Deleted", born + timedelta(hours=20)))
        if n % 5 == 0:
            events.append(other_event(iid, "Instance:SystemMaintenance.Reboot:Executed",
                                      EventKind.SYSTEM_EVENT, born + timedelta(hours=2), status="Executed"))
    events.append(other_event(None, "Disk:Stalled:Executing", EventKind.DISK_EVENT, T0))
    rng.shuffle(events)
    store = Store(store_url)
    try:
        for start in range(0, len(events), 7):
            batch = events[start:start + 7]
            store.record(batch + batch[:2])  # duplicates within the batch
        store.record(events[:10])  # and redelivered later
        # A creation seen late and a day earlier: the instance's creation moves a day back.
        store.record([state_event("i-cnt00030", "Pending", T0 - timedelta(days=1))])
        # A release seen late, earlier than the one stored: the release moves too.
        store.record([state_event("i-cnt00003", "Deleted", T0 + timedelta(hours=6))])
        for since in (None, T0 + timedelta(days=1, hours=5, minutes=7), T0 + timedelta(days=1, hours=3),
                      T0.replace(hour=0) + timedelta(days=2), T0 - timedelta(minutes=1)):
            stats = store.stats(since=since)
            assert counted(stats) == recount(store, since), since
            assert stats["events"] == sum(stats["per_kind"].values())
        assert store.stats()["creations_per_day"]["2024-04-30"] == 1
        assert store.stats()["instances"] == {"known": 40, "created": 40, "released": 14}
    finally:
        store.close()


def test_counters_under_concurrent_writers(store_url: str) -> None:
    """GIVEN four threads recording overlapping batches of the same days at once WHEN done THEN
    the counters equal a recount (no lost update, deadlocks retried)."""
    events = [state_event(f"i-par{n % 30:05d}", ("Pending", "Running", "Stopped")[n % 3],
                          T0 + timedelta(minutes=n)) for n in range(240)]
    store = Store(store_url)
    store.ensure_schema()
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for start in range(offset * 10, len(events), 40):
                store.record(events[start:start + 10] + events[:5])
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert counted(store.stats()) == recount(store)
        assert store.stats()["events"] == 240
    finally:
        store.close()


def test_rows_stored_before_the_counters_are_counted(store_url: str) -> None:
    """GIVEN a store at schema 3 with events WHEN upgraded to 4 THEN the counters start from the
    rows already there (and keep counting new ones)."""
    old = Store(store_url)
    try:
        old.ensure_schema(target_version=3)
        old._schema_ready = True  # record against v3 as code one version behind does
        old.record([state_event("i-old00001", "Pending", T0),
                    state_event("i-old00001", "Deleted", T0 + timedelta(days=1))])
    finally:
        old.close()
    store = Store(store_url)
    try:
        assert store.ensure_schema() == SCHEMA_VERSION
        store.record([state_event("i-old00002", "Pending", T0 + timedelta(days=1))])
        stats = store.stats()
        assert counted(stats) == recount(store)
        assert stats["instances"] == {"known": 2, "created": 2, "released": 1}
        assert stats["creations_per_day"] == {"2024-05-01": 1, "2024-05-02": 1}
    finally:
        store.close()


def test_counters_kept_before_the_shards_are_kept(store_url: str) -> None:
    """GIVEN a store at schema 4 whose counters count recorded events WHEN upgraded to 5 (the
    counters sharded per connection) THEN stats still equals a recount, before and after more
    events (one moving a creation to the day before)."""
    old = Store(store_url)
    try:
        old.ensure_schema(target_version=4)
        old._schema_ready = True  # record against v4 as code one version behind does
        old.record([state_event("i-shd00001", "Pending", T0),
                    state_event("i-shd00001", "Deleted", T0 + timedelta(days=1)),
                    state_event("i-shd00002", "Pending", T0 + timedelta(hours=5))])
    finally:
        old.close()
    store = Store(store_url)
    try:
        assert store.ensure_schema() == SCHEMA_VERSION
        assert counted(store.stats()) == recount(store)
        store.record([state_event("i-shd00002", "Pending", T0 - timedelta(days=1)),
                      state_event("i-shd00003", "Running", T0 + timedelta(days=1))])
        stats = store.stats()
        assert counted(stats) == recount(store)
        assert stats["creations_per_day"] == {"2024-04-30": 1, "2024-05-01": 1}
    finally:
        store.close()


def _shard(conn: Any) -> int:
    function = "pg_backend_pid()" if conn.dialect.name == "postgresql" else "CONNECTION_ID()"
    return int(conn.exec_driver_sql(f"SELECT MOD({function}, {COUNTER_SHARDS})").scalar_one())


def test_a_writer_does_not_wait_for_another_writers_counters(store_url: str) -> None:
    """GIVEN a writer that recorded a state change and has not committed yet (its transaction
    holds the counters it bumped) WHEN another connection records the same kind of event, same
    day and hour THEN it finishes without waiting for that commit (its own shard of the
    counters), and once both commit the counters equal a recount.

    PostgreSQL and MariaDB only: SQLite has one writer at a time by design."""
    import pytest

    from shared.store import _apply_to_instances

    if store_url.startswith("sqlite"):
        pytest.skip("SQLite serializes writers on its database lock")
    holder, other = Store(store_url), Store(store_url)
    holder.ensure_schema()
    other.ensure_schema()
    first = state_event("i-hot00001", "Running", T0)
    second = state_event("i-hot00002", "Running", T0 + timedelta(minutes=1))
    done = threading.Event()
    errors: list[BaseException] = []
    try:
        with holder._get_engine().connect() as held:
            # the other store's one pooled connection on another shard than the held one
            for _ in range(4 * COUNTER_SHARDS):
                with other._get_engine().connect() as probe:
                    if _shard(probe) != _shard(held):
                        break
                    probe.invalidate()
            held.rollback()
            with held.begin():
                holder._insert_events(held, [dict(_event_row_of(first))])
                _apply_to_instances(held, [first])

                def record() -> None:
                    try:
                        other.record([second])
                    except BaseException as error:  # reported by the test
                        errors.append(error)
                    done.set()

                began = time.monotonic()
                thread = threading.Thread(target=record)
                thread.start()
                finished = done.wait(5.0)
                waited = time.monotonic() - began
            thread.join()
        assert errors == []
        assert finished, "the second writer waited for the first one's commit"
        assert waited < 5.0
        stats = other.stats()
        assert counted(stats) == recount(other)
        assert stats["per_state"] == {"Running": 2}
    finally:
        holder.close()
        other.close()


def _event_row_of(event: Any) -> dict[str, Any]:
    from shared.store import _event_row, _naive

    return _event_row(event, _naive(event.event_time))


def test_analyze_compacts_postgresql_counters_a_burst_left_bloated(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN PostgreSQL counters updated by many statements of one transaction (a bulk load:
    no row version can be pruned before it commits) WHEN Store.analyze runs THEN the counter
    table is rewritten to its live rows and stats still equals a recount."""
    import sqlalchemy as sa

    import shared.store

    if not store_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: the other databases update counters in place")
    monkeypatch.setattr(shared.store, "COUNTER_COMPACT_MIN_PAGES", 2)
    store = Store(store_url)
    try:
        store.ensure_schema()
        with store._get_engine().begin() as conn:
            for n in range(600):  # one statement each: the counters' row is updated 600 times
                event = state_event(f"i-blt{n:05d}", "Running", T0 + timedelta(seconds=n))
                conn.execute(sa.insert(shared.store._schema().events), _event_row_of(event))

        def pages() -> int:
            return int(store._run("pages", lambda c: c.exec_driver_sql(
                "SELECT pg_relation_size('event_counts') / 8192").scalar_one(), write=False))

        bloated = pages()
        assert bloated >= 2
        store.analyze()
        assert pages() < bloated
        assert pages() <= 1
        assert counted(store.stats()) == recount(store)
    finally:
        store.close()
