"""The action ledger's one vocabulary: kinds, statuses, keys, claim-once and the lease.

Every practice writes what it did to the store's ``ledger`` table, one entry per key. Two
primitives serve them all (the drain, auto-start, notifications, the sweep):

* :func:`claim_once` - create the entry ``key``; True for exactly one caller, ever. For facts
  that happen once: a notification sent, one try of a start, a deferral.
* :func:`acquire` - a **lease** on an entry: work that takes time and may die half-way (a
  drain). The entry's data carries ``owner``, ``generation`` and ``lease_until``. The first
  caller creates the entry holding the lease; a later caller meeting a *live* lease of another
  owner gets :class:`LeaseHeldError` (raise it: the platform retries, nothing answers success
  for work not done); a caller meeting an *expired* lease (``lease_until`` past, or released)
  takes it over with ``generation + 1``; an entry in a finished status is returned as
  :class:`Finished`. Every later write of the holder goes through :meth:`Lease.save`, a
  compare-and-set on ``(owner, generation)``, so a holder whose lease was taken over stops at
  its next write (:class:`LeaseLostError`) instead of overwriting the new holder's record.

One algorithm on SQLite, PostgreSQL and MariaDB: the store's insert-if-absent (claim) and its
row-locked compare-and-set (:meth:`shared.store.Store.ledger_swap`).

Mutation point (the reliability suite's "lease never expires"): :func:`lease_live` is looked up
at call time by :func:`acquire` and the sweep; patching ``shared.ledger.lease_live`` to always
answer True makes every lease eternal.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from shared.events import iso, parse_iso_or_none

__all__ = [
    "DRY_RUN_PREFIX",
    "Acquired",
    "DrainStatus",
    "Finished",
    "Kind",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "LeasePort",
    "LedgerError",
    "LedgerPort",
    "ReplaceStatus",
    "acquire",
    "claim_once",
    "drain_key",
    "launch_spec_key",
    "lease_live",
    "notify_key",
    "offering_key",
    "replace_key",
    "start_key",
]

# Dry runs claim under this prefix only: they never shadow a real run's keys.
DRY_RUN_PREFIX = "dryrun:"


class Kind(str, Enum):
    """What an entry records (the ``kind`` column)."""

    DRAIN = "drain"  # one per interruption of an instance: the drain's state machine
    DRAIN_LEASE = "drain_lease"  # legacy: takeover claims of the old drain (read, never written)
    DRAIN_RESTORE = "drain_restore"  # legacy: restore claims of the old sweep (read, never written)
    START_ATTEMPT = "start_attempt"  # one try of starting one stop
    START = "start"  # one real start (the flap guard counts these)
    INCIDENT = "incident"  # a start not verified, or an instance that needs a person
    SWEEP_CHECK = "sweep_check"  # the sweep's hourly re-check of one instance
    DRY_RUN = "dry_run"  # auto-start's dry-run claims
    START_DEFERRED = "start_deferred"  # a stop handed from the event path to the sweep
    NOTIFY = "notify"  # one notification key, sent once
    REPLACE = "replace"  # one per interrupted instance: its successor's launch (shared/replace)
    LAUNCH_SPEC = "launch_spec"  # an opted-in instance's launch spec, captured before a notice
    OFFERING = "offering"  # an offering (type, zone, spot strategy) left out until a time
    LB_SCAN = "lb_scan"  # a region's full load-balancer scan, shared by a burst of notices


class DrainStatus(str, Enum):
    """A drain entry's status: the last step recorded (see shared.spot.machine.STEPS)."""

    CLAIMED = "claimed"  # verified a spot instance of ours, lease taken
    FOUND = "found"  # memberships and their original weights recorded: nothing touched yet
    WEIGHTED = "weighted"  # weight 0 in every removable group
    WAITED = "waited"  # the drain time given (or as much as the deadline allowed)
    REMOVED = "removed"  # removed from every removable group
    DONE = "done"  # verified gone everywhere
    PARTIAL = "partial"  # still registered somewhere after the bounded retries
    RESTORED = "restored"  # the sweep put it back (not reclaimed after all)
    RECLAIMED = "reclaimed"  # the sweep saw it released
    CLOSED = "closed"  # the sweep stopped watching it

    @property
    def open(self) -> bool:
        """Unfinished: a crash here leaves work the next holder resumes or undoes."""
        return self in OPEN_DRAIN

    @property
    def finished(self) -> bool:
        return self in FINISHED_DRAIN


OPEN_DRAIN = frozenset({DrainStatus.CLAIMED, DrainStatus.FOUND, DrainStatus.WEIGHTED,
                        DrainStatus.WAITED, DrainStatus.REMOVED})
REMOVED_DRAIN = frozenset({DrainStatus.DONE, DrainStatus.PARTIAL})  # the sweep may restore these
FINISHED_DRAIN = frozenset({DrainStatus.RESTORED, DrainStatus.RECLAIMED, DrainStatus.CLOSED})


class ReplaceStatus(str, Enum):
    """A replacement entry's status (shared/replace/launcher.py)."""

    CLAIMED = "claimed"  # opted in, not owned, lease taken
    LAUNCHING = "launching"  # a RunInstances for the recorded candidate may have been sent
    LAUNCHED = "launched"  # the successor exists (its id recorded): waiting for Running
    RUNNING = "running"  # the successor is Running: done
    FAILED = "failed"  # stopped with an alert (quota, permission, parameters, no spec)
    EXHAUSTED = "exhausted"  # every candidate answered a stock error: reported
    STALLED = "stalled"  # launched, not Running after replace_stall_s: reported by the sweep
    SKIPPED = "skipped"  # owned by Auto Scaling or ACK (they replace it), or not opted in

    @property
    def finished(self) -> bool:
        return self in FINISHED_REPLACE


FINISHED_REPLACE = frozenset({ReplaceStatus.RUNNING, ReplaceStatus.FAILED,
                              ReplaceStatus.EXHAUSTED, ReplaceStatus.STALLED,
                              ReplaceStatus.SKIPPED})


# --- keys ------------------------------------------------------------------------------------


def drain_key(instance_id: str, sequence: int, *, dry_run: bool = False) -> str:
    """``drain:<instance>:<n>``: the n-th interruption drain of an instance. Not the event id
    (one notice arrives through several envelopes) and not the notice time (duplicates of one
    notice must meet one entry whatever time each copy carries): :mod:`shared.spot.machine`
    joins a notice to an instance's open or recent drain, else claims the next ``n``."""
    return f"{DRY_RUN_PREFIX if dry_run else ''}drain:{instance_id}:{sequence}"


def start_key(instance_id: str, stop_id: str, attempt: int = 1, *, dry_run: bool = False) -> str:
    """``start:<instance>:<stop>`` then ``…:retry<n>``: one claim per try of one stop."""
    base = f"{DRY_RUN_PREFIX if dry_run else ''}start:{instance_id}:{stop_id}"
    return base if attempt == 1 else f"{base}:retry{attempt}"


def replace_key(instance_id: str, *, dry_run: bool = False) -> str:
    """``replace:<instance>``: the one successor of an interrupted instance. An instance is
    reclaimed once (Terminate releases it); one stopped instead (SpotInterruptionBehavior Stop)
    and interrupted again after a restart keeps its first successor."""
    return f"{DRY_RUN_PREFIX if dry_run else ''}replace:{instance_id}"


def launch_spec_key(instance_id: str) -> str:
    return f"launch_spec:{instance_id}"


def offering_key(instance_type: str, zone_id: str, spot_strategy: str) -> str:
    return f"offering:{instance_type}:{zone_id}:{spot_strategy}"


def notify_key(notification_key: str) -> str:
    return f"notify:{notification_key}"


# --- errors ----------------------------------------------------------------------------------


class LedgerError(Exception):
    """The ledger refused a transition."""


class LeaseHeldError(LedgerError):
    """Another invocation holds a live lease on ``key``: retry later (the platform does)."""

    retryable = True

    def __init__(self, key: str, owner: object, until: object) -> None:
        super().__init__(f"{key} is held by {owner} until {until}: retry later")
        self.key = key


class LeaseLostError(LedgerError):
    """Our lease on ``key`` was taken over (we were too slow): stop, the new holder goes on."""

    retryable = True

    def __init__(self, key: str, owner: str, generation: int) -> None:
        super().__init__(f"lease on {key} (owner {owner}, generation {generation}) was taken over")
        self.key = key


# --- the store as the ledger uses it ---------------------------------------------------------


class EntryLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def instance_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...
    @property
    def created_at(self) -> datetime: ...


class ClaimPort(Protocol):
    """The one store call claim-once needs (the notifier's ledger is this narrow)."""

    def ledger_claim(
        self,
        key: str,
        *,
        kind: str,
        instance_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        status: str = "claimed",
    ) -> bool: ...


class LeasePort(ClaimPort, Protocol):
    """Claim-once plus the reads and fenced writes a lease needs (notifications use this much)."""

    def ledger_get(self, key: str) -> EntryLike | None: ...

    def ledger_update(
        self, key: str, *, status: str | None = None, data: Mapping[str, Any] | None = None
    ) -> None: ...

    def ledger_swap(
        self,
        key: str,
        *,
        expect: Mapping[str, Any],
        status: str | None = None,
        data: Mapping[str, Any] | None = None,
        statuses: Collection[str] | None = None,
    ) -> bool: ...


class LedgerPort(LeasePort, Protocol):
    def ledger_find(
        self,
        kind: str,
        *,
        status: str | None = None,
        instance_id: str | None = None,
        older_than: datetime | None = None,
        limit: int = 1000,
    ) -> Sequence[EntryLike]: ...


def claim_once(
    store: ClaimPort,
    key: str,
    *,
    kind: Kind | str,
    instance_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    status: str = "claimed",
) -> bool:
    """Create ``key``; True only for the one caller that created it (ever)."""
    return bool(store.ledger_claim(key, kind=_value(kind), instance_id=instance_id, data=data,
                                   status=status))


# --- the lease -------------------------------------------------------------------------------


def lease_live(data: Mapping[str, Any], now: datetime) -> bool:
    """A lease is live while ``lease_until`` is in the future; released (None) is expired."""
    until = parse_iso_or_none(data.get("lease_until"))
    return until is not None and until > now


@dataclass(frozen=True)
class Lease:
    """Our hold on one entry: every write of the holder is fenced on (owner, generation)."""

    store: LedgerPort
    key: str
    owner: str
    generation: int

    def _fence(self) -> dict[str, Any]:
        return {"owner": self.owner, "generation": self.generation}

    def save(self, status: str | Enum | None = None, **data: Any) -> None:
        """Record a step: status and data, only while the lease is still ours."""
        if not self.store.ledger_swap(self.key, expect=self._fence(),
                                      status=None if status is None else _value(status),
                                      data=data):
            raise LeaseLostError(self.key, self.owner, self.generation)

    def renew(self, until: datetime) -> None:
        self.save(lease_until=iso(until))

    def release(self) -> bool:
        """Give the lease up at once (after a failure), so the platform's retry takes over
        without waiting for the expiry. False when it was no longer ours."""
        return self.store.ledger_swap(self.key, expect=self._fence(), data={"lease_until": None})

    def finish(self, status: str | Enum, **data: Any) -> None:
        """Record the last step and release in one write."""
        self.save(status, lease_until=None, **data)


@dataclass(frozen=True)
class Acquired:
    """The lease is ours: ``created`` for a new entry, else taken over (``previous`` status)."""

    lease: Lease
    entry: EntryLike
    created: bool
    previous: str | None = None


@dataclass(frozen=True)
class Finished:
    """The entry is in a finished status: nothing to hold, the recorded outcome stands."""

    entry: EntryLike


def acquire(
    store: LedgerPort,
    key: str,
    *,
    kind: Kind | str,
    owner: str,
    until: datetime,
    now: datetime,
    instance_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    status: str | Enum = "claimed",
    finished: Collection[str | Enum] = (),
) -> Acquired | Finished:
    """Hold ``key`` until ``until``: create it, or take over an expired lease, or see it
    finished. A live lease of another owner raises :class:`LeaseHeldError`; losing the
    takeover race to another caller raises it too (that caller holds it now)."""
    if store.ledger_claim(key, kind=_value(kind), instance_id=instance_id, status=_value(status),
                          data={**(data or {}), "owner": owner, "generation": 0,
                                "lease_until": iso(until)}):
        entry = store.ledger_get(key)
        if entry is None:  # claimed, then gone: nothing we can resume
            raise LeaseHeldError(key, "nobody (entry vanished)", None)
        return Acquired(Lease(store, key, owner, 0), entry, created=True)
    entry = store.ledger_get(key)
    if entry is None:
        raise LeaseHeldError(key, "nobody (entry vanished)", None)
    done = {_value(s) for s in finished}
    if entry.status in done:
        return Finished(entry)
    seen_owner = entry.data.get("owner")
    seen_generation = int(entry.data.get("generation") or 0)
    if lease_live(entry.data, now) and seen_owner != owner:
        raise LeaseHeldError(key, seen_owner, entry.data.get("lease_until"))
    generation = seen_generation + 1
    if not store.ledger_swap(
        key,
        expect={"owner": seen_owner, "generation": entry.data.get("generation")},
        statuses=[entry.status],
        data={"owner": owner, "generation": generation, "lease_until": iso(until),
              "taken_over_from": entry.status},
    ):
        raise LeaseHeldError(key, "a concurrent taker", None)
    taken = store.ledger_get(key)
    if taken is None:
        raise LeaseHeldError(key, "nobody (entry vanished)", None)
    return Acquired(Lease(store, key, owner, generation), taken, created=False,
                    previous=entry.status)


def expires_at(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


def _value(value: str | Enum) -> str:
    return str(value.value) if isinstance(value, Enum) else value
