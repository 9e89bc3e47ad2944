"""shared.ledger on SQLite, PostgreSQL and MariaDB: claim-once, the lease (create, live, expired,
takeover, fencing, release, finished), racing threads and processes."""

from __future__ import annotations

import multiprocessing
import re
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from shared import ledger
from shared.ledger import (
    Acquired,
    DrainStatus,
    Finished,
    Kind,
    LeaseHeldError,
    LeaseLostError,
)
from shared.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
KEY = "drain:i-bp1ledger000000001:1"
IID = "i-bp1ledger000000001"
RACERS = 4


def _acquire(store: Store, owner: str, now: datetime, until_s: float = 60.0) -> Acquired | Finished:
    return ledger.acquire(store, KEY, kind=Kind.DRAIN, owner=owner, instance_id=IID,
                          until=now + timedelta(seconds=until_s), now=now,
                          data={"notice_time": T0.isoformat()},
                          finished=[DrainStatus.DONE, DrainStatus.RESTORED])


def test_claim_once_is_true_for_one_caller_only(store: Store) -> None:
    """GIVEN one key WHEN claimed twice THEN the first wins, the second sees it taken."""
    assert ledger.claim_once(store, "notify:k", kind=Kind.NOTIFY) is True
    assert ledger.claim_once(store, "notify:k", kind=Kind.NOTIFY) is False
    entry = store.ledger_get("notify:k")
    assert entry is not None
    assert (entry.kind, entry.status) == ("notify", "claimed")


def test_a_new_entry_is_created_holding_the_lease(store: Store) -> None:
    """The first caller creates the entry with owner, generation 0 and lease_until."""
    got = _acquire(store, "a", T0)
    assert isinstance(got, Acquired)
    assert (got.created, got.lease.generation, got.entry.status) == (True, 0, "claimed")
    assert got.entry.data["owner"] == "a"
    assert got.entry.data["lease_until"] == "2026-03-01T12:01:00.000Z"
    assert got.entry.data["notice_time"] == T0.isoformat()


def test_a_live_lease_of_another_owner_raises(store: Store) -> None:
    """A redelivery meeting a live lease raises (the platform retries); nothing changes."""
    _acquire(store, "a", T0)
    with pytest.raises(LeaseHeldError, match=re.escape("held by a until 2026-03-01T12:01:00.000Z")):
        _acquire(store, "b", T0 + timedelta(seconds=59))
    entry = store.ledger_get(KEY)
    assert entry is not None
    assert (entry.data["owner"], entry.data["generation"]) == ("a", 0)


def test_an_expired_lease_is_taken_over_and_the_old_holder_is_fenced(store: Store) -> None:
    """After the expiry a retry takes over (generation 1); the old holder's next write raises
    LeaseLostError and changes nothing; the new holder's writes land."""
    first = _acquire(store, "a", T0)
    assert isinstance(first, Acquired)
    first.lease.save(DrainStatus.FOUND, memberships=[1])
    second = _acquire(store, "b", T0 + timedelta(seconds=61))
    assert isinstance(second, Acquired)
    assert (second.created, second.previous, second.lease.generation) == (False, "found", 1)
    with pytest.raises(LeaseLostError):
        first.lease.save(DrainStatus.WEIGHTED, weight0_at="x")
    second.lease.finish(DrainStatus.DONE, outcome="drained")
    entry = store.ledger_get(KEY)
    assert entry is not None
    assert entry.status == "done"
    assert "weight0_at" not in entry.data
    assert (entry.data["owner"], entry.data["generation"], entry.data["lease_until"]) == ("b", 1, None)
    assert entry.data["taken_over_from"] == "found"


def test_a_released_lease_is_taken_over_at_once(store: Store) -> None:
    """A holder that failed releases its lease: the retry need not wait for the expiry."""
    first = _acquire(store, "a", T0)
    assert isinstance(first, Acquired)
    assert first.lease.release() is True
    second = _acquire(store, "b", T0 + timedelta(seconds=1))
    assert isinstance(second, Acquired)
    assert second.lease.generation == 1
    assert first.lease.release() is False  # no longer ours


def test_a_finished_entry_is_returned_not_held(store: Store) -> None:
    """Done is done: no lease is taken, the entry is handed back as it is."""
    first = _acquire(store, "a", T0)
    assert isinstance(first, Acquired)
    first.lease.finish(DrainStatus.DONE, outcome="drained")
    again = _acquire(store, "b", T0 + timedelta(hours=1))
    assert isinstance(again, Finished)
    assert again.entry.data["outcome"] == "drained"


def test_swap_checks_status_and_expected_values(store: Store) -> None:
    """ledger_swap applies only when the status and every expected item match (absent = None)."""
    store.ledger_claim("k", kind="drain", data={"owner": "a"})
    assert store.ledger_swap("k", expect={"owner": "b"}, data={"x": 1}) is False
    assert store.ledger_swap("k", expect={"owner": "a"}, statuses=["done"], data={"x": 1}) is False
    assert store.ledger_swap("k", expect={"owner": "a", "generation": None},
                             statuses=["claimed"], status="found", data={"x": 1}) is True
    assert store.ledger_swap("missing", expect={}) is False
    entry = store.ledger_get("k")
    assert entry is not None
    assert (entry.status, dict(entry.data)) == ("found", {"owner": "a", "x": 1})


def test_racing_threads_one_creates_then_one_takes_over(store: Store) -> None:
    """Eight threads acquire a new key at once: one holds it, seven raise. After the expiry,
    eight threads race for the takeover: exactly one gets generation 1."""
    for round_, now in enumerate((T0, T0 + timedelta(minutes=5))):
        barrier = threading.Barrier(8)
        won: list[Acquired] = []
        held: list[LeaseHeldError] = []
        lock = threading.Lock()

        def race(n: int, *, now: datetime = now, barrier: threading.Barrier = barrier,
                 won: list[Acquired] = won, held: list[LeaseHeldError] = held,
                 lock: threading.Lock = lock) -> None:
            barrier.wait()
            try:
                got = _acquire(store, f"t{n}", now)
            except LeaseHeldError as err:
                with lock:
                    held.append(err)
                return
            assert isinstance(got, Acquired)
            with lock:
                won.append(got)

        threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert (len(won), len(held)) == (1, 7), f"round {round_}"
        assert won[0].lease.generation == round_
        entry = store.ledger_get(KEY)
        assert entry is not None
        assert entry.data["owner"] == won[0].lease.owner


def _race_in_process(url: str, owner: str, now_iso: str, start_at: float) -> str:
    store = Store(url)
    try:
        store.ping()
        time.sleep(max(0.0, start_at - time.time()))
        try:
            got = _acquire(store, owner, datetime.fromisoformat(now_iso))
        except LeaseHeldError:
            return "held"
        assert isinstance(got, Acquired)
        got.lease.save(DrainStatus.FOUND, by=owner)
        return f"won:{got.lease.generation}"
    finally:
        store.close()


def test_racing_processes_create_once_and_take_over_once(store_url: str) -> None:
    """Four processes on one database: one creates, three raise; after the expiry, four
    processes race for the takeover and one wins, whose record stands."""
    schema = Store(store_url)
    schema.ensure_schema()
    schema.close()
    context = multiprocessing.get_context("spawn")
    with context.Pool(RACERS) as pool:
        for generation, now in enumerate((T0, T0 + timedelta(minutes=5))):
            start_at = time.time() + 2.0
            results = pool.starmap(_race_in_process, [
                (store_url, f"p{generation}-{n}", now.isoformat(), start_at)
                for n in range(RACERS)])
            assert sorted(results) == ["held"] * (RACERS - 1) + [f"won:{generation}"]
            store = Store(store_url)
            entry = store.ledger_get(KEY)
            store.close()
            assert entry is not None
            assert (entry.status, entry.data["generation"]) == ("found", generation)
            assert entry.data["by"] == entry.data["owner"]
