"""stats from the counters the triggers keep (schema v4), against a recount of the rows, on every
backend: any order of arrival, duplicates, a late earlier creation that moves an instance's
creation to the day before, a release, concurrent writers, and rows stored before v4."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from typing import Any

from shared.events import EventKind
from shared.store import SCHEMA_VERSION, Store
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
