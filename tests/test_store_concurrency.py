"""Four writer processes on one database: no duplicate, no loss, one converged row per instance."""

from __future__ import annotations

import multiprocessing
import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from shared.events import EcsEvent, Envelope, EventKind
from shared.store import SCHEMA_VERSION, Store

T0 = datetime(2024, 6, 1, tzinfo=timezone.utc)
LIFECYCLE = ("Pending", "Starting", "Running", "Stopping", "Stopped", "Starting", "Running", "Deleted")
INSTANCES = 25
WRITERS = 4


def lifecycle_events() -> list[EcsEvent]:
    events = []
    for n in range(INSTANCES):
        iid = f"i-conc{n:04d}"
        for step, state in enumerate(LIFECYCLE):
            events.append(EcsEvent(
                kind=EventKind.STATE_CHANGE, name="Instance:StateChange",
                full_name="Instance:StateChange", event_id=f"conc-{n}-{step}",
                event_time=T0 + timedelta(minutes=n, seconds=step * 10),
                envelope=Envelope.CLOUDMONITOR, raw="{}", instance_id=iid, state=state,
                region="cn-hangzhou", account_id="1",
            ))
    return events


def write_all(url: str, seed: int, start_at: float) -> int:
    """One writer process: every event, in its own shuffled order and batch sizes."""
    events = lifecycle_events()
    random.Random(seed).shuffle(events)
    store = Store(url)
    time.sleep(max(0.0, start_at - time.time()))  # all four start together, schema included
    inserted = 0
    try:
        position = 0
        rng = random.Random(seed + 100)
        while position < len(events):
            size = rng.randint(5, 30)
            inserted += len(store.record(events[position : position + size]).inserted)
            position += size
    finally:
        store.close()
    return inserted


def test_four_writer_processes_store_each_event_once(store_url: str) -> None:
    """GIVEN 4 processes writing the same 200 events WHEN they race THEN each stored exactly once."""
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0
    with context.Pool(WRITERS) as pool:
        counts = pool.starmap(write_all, [(store_url, seed, start_at) for seed in range(WRITERS)])
    expected = lifecycle_events()
    assert sum(counts) == len(expected)  # inserted is reported to exactly one writer per event
    store = Store(store_url)
    try:
        assert store.stats()["events"] == len(expected)
        for n in range(INSTANCES):
            record = store.instance(f"i-conc{n:04d}")
            assert record is not None
            assert len(store.timeline(record.instance_id)) == len(LIFECYCLE)
            assert record.first_seen == T0 + timedelta(minutes=n)
            assert record.created_at == T0 + timedelta(minutes=n)
            assert record.released_at == T0 + timedelta(minutes=n, seconds=70)
            assert record.last_state == "Deleted"
        assert store.schema_version() == SCHEMA_VERSION
    finally:
        store.close()


def test_two_connections_creating_a_new_sqlite_file_at_once_both_succeed(tmp_path: Path) -> None:
    """GIVEN a brand-new SQLite file WHEN two stores open it at the same instant THEN neither
    fails on the WAL switch (it needs an exclusive lock and ignores busy_timeout)."""
    import threading

    for round_ in range(20):
        url = f"sqlite:///{tmp_path / f'new-{round_}.sqlite3'}"
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def open_store(url: str = url, barrier: threading.Barrier = barrier,
                       errors: list[BaseException] = errors) -> None:
            store = Store(url)
            barrier.wait()
            try:
                store.ensure_schema()
            except BaseException as error:
                errors.append(error)
            finally:
                store.close()

        threads = [threading.Thread(target=open_store) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == [], f"round {round_}: {errors}"
