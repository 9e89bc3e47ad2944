"""Practice 3: take a spot instance out of every CLB group before it is reclaimed.

The notice (``Instance:PreemptibleInstanceInterruption``) comes about 5 minutes before release.
Everything is budgeted from the notice time, never from when we happen to run:

* **deadline** = notice time + ``spot_notice_s``. Before ``deadline - spot_margin_s`` the drain is
  *gentle* (weight 0 in every removable group, wait ``min(drain_time_s, time left - margin)``,
  remove, verify). Closer than that it is *fast* (remove at once). More than
  :data:`LATE_AFTER_DEADLINE_S` past the deadline (a platform retry hours later) only *leftovers*
  are removed, and the drain is recorded as a missed deadline.
* **every membership**: the default group, each vServer group with the ports actually
  registered, and master-slave groups (no per-member removal exists: reported, never claimed).
  The scope (``lb_ids`` / ``lb_tag``) bounds the scan; DescribeLoadBalancers' ``ServerId``
  filter only orders it.
* **the ledger** (one entry per instance and notice, see :func:`drain_key`) records each step,
  so duplicates return what was done, a retry resumes from the last recorded step, and
  concurrent invocations do the work once (a claim plus a lease; a crashed owner's lease
  expires and the next attempt takes over through a generation claim).

Ledger entry (kind ``drain``), ``data`` keys: ``event_id``, ``notice_time``, ``deadline`` (ISO
UTC), ``memberships`` (removable, with original weights: :meth:`Membership.snapshot`),
``master_slave`` (reported), ``scope``, ``found_at``, ``weight0_at``, ``removed_at``,
``verified_at``, ``path`` (gentle|fast|leftover), ``removed``, ``leftover``, ``outcome``,
``notice_to_removed_s``, ``time_left_s``, ``missed_deadline``, ``api_writes``, ``owner``,
``lease_until``, ``generation``; the sweep adds ``restored_at``, ``restored``,
``restore_attempts``, ``reclaimed_at``. Statuses: claimed → found → weighted → removed →
done | partial; then restored | reclaimed | closed (sweep).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from shared.clients import (
    CloudError,
    GroupKind,
    Instance,
    LoadBalancer,
    Membership,
    NotFoundError,
    TransientError,
)
from shared.events import iso, parse_iso_or_none
from shared.log import emit, get_logger
from shared.notify import Ledger as NotifyLedger
from shared.notify import Notification

if TYPE_CHECKING:
    from shared.events import EcsEvent
    from shared.settings import Settings

__all__ = [
    "DRAIN_KIND",
    "Deadline",
    "DrainResult",
    "Drainer",
    "Outcome",
    "Phase",
    "Status",
    "drain_key",
    "sweep_drains",
]

log = get_logger(__name__)

DRAIN_KIND = "drain"
LEASE_KIND = "drain_lease"  # generation claims: who takes over an abandoned drain
RESTORE_KIND = "drain_restore"  # restore attempt claims: one sweep restores, once
# A notice this far past its deadline is a platform retry (FC retries run for hours): the
# instance is gone or going, so only leftover memberships are removed.
LATE_AFTER_DEADLINE_S = 600.0
# Duplicate notices (CloudMonitor + EventBridge, FC retries) share one ledger entry per
# instance and 10-minute bucket of the notice time; see drain_key.
DEDUP_BUCKET_S = 600
BUCKET_EDGE_S = 5.0
VERIFY_ROUNDS = 3
VERIFY_PAUSE_S = 0.5
# Rounds of a step (each call already retried by the client), never past the step's deadline.
MAX_ROUNDS = 30
ROUND_PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0)
LEASE_GRACE_S = 30.0  # beyond the planned wait: then a retry may take over a silent owner
RESTORE_HORIZON_S = 86400.0  # stop watching an un-restored, un-released instance after a day
MAX_RESTORE_ATTEMPTS = 5
ABANDONED_RESTORE_S = 900  # older than any sweep can run (its FC timeout is 300 s)


class Phase(str, Enum):
    """What the time left allows, decided at every step."""

    GENTLE = "gentle"  # weight 0, wait, remove
    FAST = "fast"  # inside the margin or just past the deadline: remove at once
    LEFTOVER = "leftover"  # long past the deadline: remove what is left, record the miss


class Outcome(str, Enum):
    DRAINED = "drained"  # weight 0, waited, removed, verified
    REMOVED = "removed"  # fast path: removed at once, verified
    LEFTOVERS_REMOVED = "leftovers_removed"  # notice long past its deadline
    NOTHING_TO_REMOVE = "nothing_to_remove"  # no removable membership in scope
    PARTIAL = "partial"  # still registered somewhere after the bounded retries
    SKIPPED = "skipped"  # late notice, instance still in service: left in place
    DUPLICATE = "duplicate"  # done before (ledger): nothing repeated
    IN_PROGRESS = "in_progress"  # another invocation holds the drain
    DRY_RUN = "dry_run"


class Status(str, Enum):
    CLAIMED = "claimed"
    FOUND = "found"
    WEIGHTED = "weighted"
    REMOVED = "removed"
    DONE = "done"
    PARTIAL = "partial"
    RESTORED = "restored"
    RECLAIMED = "reclaimed"
    CLOSED = "closed"


FINISHED = frozenset({Status.DONE, Status.RESTORED, Status.RECLAIMED, Status.CLOSED})
REMOVAL_OUTCOMES = frozenset(
    {Outcome.DRAINED, Outcome.REMOVED, Outcome.LEFTOVERS_REMOVED, Outcome.PARTIAL}
)


# --------------------------------------------------------------------------------------------
# Ports: the slices of the store, the clients and the notifier this module uses (fakes fit)


class LedgerEntryLike(Protocol):
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


class Ledger(NotifyLedger, Protocol):
    """The store's ledger as the drain uses it: the notifier's claim/update, plus reads."""

    def ledger_get(self, key: str) -> LedgerEntryLike | None: ...

    def ledger_find(
        self,
        kind: str,
        *,
        status: str | None = None,
        instance_id: str | None = None,
        older_than: datetime | None = None,
        limit: int = 1000,
    ) -> Sequence[LedgerEntryLike]: ...


class LbPort(Protocol):
    def list_load_balancers(
        self,
        *,
        ids: Sequence[str] = (),
        tag: tuple[str, str] | None = None,
        server_id: str | None = None,
    ) -> list[LoadBalancer]: ...

    def find_memberships(
        self, instance_id: str, load_balancer_ids: Sequence[str]
    ) -> list[Membership]: ...

    def group_members(
        self, load_balancer_id: str, group_kind: GroupKind | str, group_id: str | None
    ) -> list[Membership]: ...

    def set_weights(
        self, memberships: Sequence[Membership], weight: int | None = None, *, dry_run: bool = False
    ) -> int: ...

    def remove_members(
        self, memberships: Sequence[Membership], *, dry_run: bool = False
    ) -> int: ...

    def add_members(self, memberships: Sequence[Membership], *, dry_run: bool = False) -> int: ...

    def all_members(self, lb_id: str) -> list[Membership]: ...


class EcsPort(Protocol):
    def describe_instances(self, instance_ids: Sequence[str]) -> dict[str, Instance]: ...


class ClientsPort(Protocol):
    @property
    def lb(self) -> LbPort: ...
    @property
    def ecs(self) -> EcsPort: ...
    def for_region(self, region: str | None) -> ClientsPort: ...


class NotifierPort(Protocol):
    def send(self, notification: Notification) -> object: ...


# --------------------------------------------------------------------------------------------
# Time


def utc_now() -> datetime:
    return datetime.now(timezone.utc)




@dataclass(frozen=True)
class Deadline:
    """The notice's budget: every decision reads the time left from here."""

    notice_time: datetime
    at: datetime
    margin_s: float
    late_after_s: float = LATE_AFTER_DEADLINE_S

    @classmethod
    def for_notice(cls, notice_time: datetime, settings: Settings) -> Deadline:
        return cls(
            notice_time=notice_time,
            at=notice_time + timedelta(seconds=settings.spot_notice_s),
            margin_s=float(settings.spot_margin_s),
        )

    def time_left_s(self, now: datetime) -> float:
        return (self.at - now).total_seconds()

    def phase(self, now: datetime) -> Phase:
        left = self.time_left_s(now)
        if left < -self.late_after_s:
            return Phase.LEFTOVER
        if left <= self.margin_s:
            return Phase.FAST
        return Phase.GENTLE

    def wait_s(self, now: datetime, drain_time_s: float, weight0_at: datetime | None = None) -> float:
        """How long to let connections finish after weight 0: the drain time still owed,
        never past ``deadline - margin``."""
        owed = drain_time_s - ((now - weight0_at).total_seconds() if weight0_at else 0.0)
        return max(0.0, min(owed, self.time_left_s(now) - self.margin_s))


def _bucket_start(moment: datetime) -> int:
    # Truncate to whole seconds first: an envelope carrying the same time with second
    # precision (CloudEvent ``time``) then always lands in the same bucket as the ms one.
    return int(moment.timestamp()) // DEDUP_BUCKET_S * DEDUP_BUCKET_S


def _bucket_key(instance_id: str, start: int) -> str:
    stamp = datetime.fromtimestamp(start, timezone.utc).strftime("%Y%m%dT%H%MZ")
    return f"drain:{instance_id}:{stamp}"


def drain_key(instance_id: str, notice_time: datetime) -> str:
    """``drain:<instance>:<10-minute bucket of the notice time>``.

    Not the event id: the same notice arrives through two envelopes (CloudMonitor and
    EventBridge) with different ids, and a drain done twice is worse than useless. Not the
    instance alone either: a spot instance in Stop mode can be started again and interrupted
    again later, and that is a new drain. Two real notices for one instance cannot fall in one
    10-minute bucket (the first one ends with the instance reclaimed).
    """
    return _bucket_key(instance_id, _bucket_start(notice_time))


def _neighbour_key(instance_id: str, notice_time: datetime) -> str | None:
    """The adjacent bucket's key when the notice sits within seconds of a bucket edge."""
    start = _bucket_start(notice_time)
    offset = notice_time.timestamp() - start
    if offset < BUCKET_EDGE_S:
        return _bucket_key(instance_id, start - DEDUP_BUCKET_S)
    if DEDUP_BUCKET_S - offset < BUCKET_EDGE_S:
        return _bucket_key(instance_id, start + DEDUP_BUCKET_S)
    return None


# --------------------------------------------------------------------------------------------
# Results


def _kind(m: Membership) -> GroupKind:
    return GroupKind(m.group_kind)


def _summary(m: Membership) -> dict[str, Any]:
    out: dict[str, Any] = {
        "load_balancer_id": m.load_balancer_id,
        "group_kind": _kind(m).value,
        "group_id": m.group_id,
        "port": m.port,
        "weight": m.weight,
    }
    if m.role:
        out["role"] = m.role
    return out


def _label(m: Mapping[str, Any]) -> str:
    group = m.get("group_id") or "default"
    port = f":{m['port']}" if m.get("port") is not None else ""
    role = f" {m['role']}" if m.get("role") else ""
    return f"{m.get('load_balancer_id')}/{group}{port} (weight {m.get('weight')}{role})"


@dataclass(frozen=True)
class DrainResult:
    """One interruption's outcome, as the handler returns it."""

    instance_id: str
    outcome: Outcome
    event_id: str
    key: str
    phase: Phase
    removed: tuple[Mapping[str, Any], ...] = ()
    reported_master_slave: tuple[Mapping[str, Any], ...] = ()
    time_left_s: float | None = None
    missed_deadline: bool = False
    notice_to_removed_s: float | None = None
    leftover: tuple[Mapping[str, Any], ...] = ()
    planned: tuple[Mapping[str, Any], ...] = ()  # dry run: what would be removed
    reason: str | None = None
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "outcome": self.outcome.value,
            "removed": [dict(m) for m in self.removed],
            "reported_master_slave": [dict(m) for m in self.reported_master_slave],
            "time_left_s": self.time_left_s,
            "missed_deadline": self.missed_deadline,
            "notice_to_removed_s": self.notice_to_removed_s,
            "leftover": [dict(m) for m in self.leftover],
            "planned": [dict(m) for m in self.planned],
            "phase": self.phase.value,
            "event_id": self.event_id,
            "key": self.key,
            "reason": self.reason,
            "dry_run": self.dry_run,
        }


@dataclass
class _Run:
    """The drain being executed: its ledger key, status and data (kept in step with the store)."""

    key: str
    instance_id: str
    event_id: str
    status: Status
    data: dict[str, Any]
    store: Ledger
    region: str  # the instance's (the notice's) region: every call of the drain goes there
    writes: int = 0  # mutating API calls made by this invocation

    def save(self, status: Status | None = None, **data: Any) -> None:
        data["api_writes"] = int(self.data.get("api_writes_before") or 0) + self.writes
        self.data.update(data)
        if status is not None:
            self.status = status
        self.store.ledger_update(
            self.key, status=None if status is None else status.value, data=data
        )

    def memberships(self, name: str = "memberships") -> list[Membership]:
        return _memberships(self.data, name)


GroupKey = tuple[str, GroupKind, "str | None"]


def _groups(memberships: Sequence[Membership]) -> dict[GroupKey, list[Membership]]:
    groups: dict[GroupKey, list[Membership]] = {}
    for m in memberships:
        groups.setdefault((m.load_balancer_id, _kind(m), m.group_id), []).append(m)
    return groups


def _still_there(wanted: Sequence[Membership], members: Sequence[Membership]) -> list[Membership]:
    present = {(m.server_id, m.port) for m in members}
    return [m for m in wanted if (m.server_id, m.port) in present]


def _tag(settings: Settings) -> tuple[str, str] | None:
    if not settings.lb_tag:
        return None
    key, _, value = settings.lb_tag.partition("=")
    return key.strip(), value.strip()


def _lb_scope(lb: LbPort, settings: Settings, region: str) -> list[str]:
    """The load balancers in scope in ``region``: ``lb_ids`` as given in the function's own
    region; elsewhere (and with ``lb_tag``) those DescribeLoadBalancers finds in that region,
    since a load balancer lives in one region and the ids may name several."""
    ids, tag = settings.lb_ids, _tag(settings)
    if ids and tag is None and region == settings.region:
        return list(dict.fromkeys(ids))
    if not ids and tag is None:
        emit(log, "load balancer scope unbounded", level=30, region=region,
             reason="neither lb_ids nor lb_tag is set: scanning every CLB")
    return sorted(lb.id for lb in lb.list_load_balancers(ids=ids, tag=tag))


def _entry_region(entry: LedgerEntryLike, settings: Settings) -> str:
    """A drain's region, as recorded; entries from before regions were recorded are ours."""
    region = entry.data.get("region")
    return region if isinstance(region, str) and region else settings.region


# --------------------------------------------------------------------------------------------
# The drain


class Drainer:
    """Drains spot instances; one per invocation, safe to share between its threads."""

    def __init__(
        self,
        store: Ledger,
        clients: ClientsPort | Callable[[], ClientsPort],
        settings: Settings,
        *,
        notifier: NotifierPort | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        owner: str | None = None,
    ) -> None:
        self.store = store
        # A factory gives each thread its own adapters (and so its own SDK client).
        self._clients = clients
        self._local = threading.local()
        self.settings = settings
        self.notifier = notifier
        self.clock = clock
        self.sleep = sleep
        self.owner = owner or uuid.uuid4().hex
        self._scopes: dict[str, list[str]] = {}  # region -> load balancers in scope there
        self._scope_lock = threading.Lock()

    @property
    def clients(self) -> ClientsPort:
        if not callable(self._clients):
            return self._clients
        built: ClientsPort | None = getattr(self._local, "clients", None)
        if built is None:
            built = self._clients()
            self._local.clients = built
        return built

    def clients_in(self, region: str) -> ClientsPort:
        """This thread's clients of ``region`` (a notice is drained in its own region)."""
        return self.clients.for_region(region)

    # --- entry point ----------------------------------------------------------------------

    def drain(self, event: EcsEvent) -> DrainResult:
        """Drain the instance of one interruption notice (see the module docstring)."""
        iid = event.instance_id
        if iid is None:
            raise ValueError(f"interruption {event.event_id} names no instance")
        deadline = Deadline.for_notice(event.event_time, self.settings)
        now = self.clock()
        phase = deadline.phase(now)
        key = self._key_for(iid, event.event_time)
        region = event.region or self.settings.region
        emit(
            log, "drain decision", event_id=event.event_id, instance_id=iid, key=key,
            region=region, decision=phase.value, time_left_s=round(deadline.time_left_s(now), 3),
            deadline=iso(deadline.at), dry_run=self.settings.dry_run or None,
        )
        if self.settings.dry_run:
            return self._dry_run(event, iid, key, deadline, region)
        run = self._acquire(event, iid, key, deadline, now, region=region)
        if isinstance(run, DrainResult):
            return run
        try:
            return self._execute(run, deadline)
        except BaseException:
            self._release(run)
            raise

    def _key_for(self, iid: str, notice_time: datetime) -> str:
        key = drain_key(iid, notice_time)
        neighbour = _neighbour_key(iid, notice_time)
        if neighbour is not None:
            entry = self.store.ledger_get(neighbour)
            other = parse_iso_or_none(entry.data.get("notice_time")) if entry else None
            if other is not None and abs((other - notice_time).total_seconds()) < 2 * BUCKET_EDGE_S:
                return neighbour
        return key

    # --- the ledger: claim, lease, takeover --------------------------------------------------

    def _lease_until(self, deadline: Deadline, now: datetime) -> datetime:
        wait = deadline.wait_s(now, self.settings.drain_time_s)
        return now + timedelta(seconds=wait + LEASE_GRACE_S)

    def _acquire(
        self, event: EcsEvent, iid: str, key: str, deadline: Deadline, now: datetime,
        *, region: str,
    ) -> _Run | DrainResult:
        lease = {"owner": self.owner, "lease_until": iso(self._lease_until(deadline, now))}
        initial = {
            "event_id": event.event_id,
            "envelope": event.envelope.value,
            "region": region,
            "notice_time": iso(deadline.notice_time),
            "deadline": iso(deadline.at),
            "generation": 0,
            **lease,
        }
        if self.store.ledger_claim(
            key, kind=DRAIN_KIND, instance_id=iid, data=initial, status=Status.CLAIMED.value
        ):
            return _Run(
                key, iid, event.event_id, Status.CLAIMED, dict(initial), self.store, region
            )
        entry = self.store.ledger_get(key)
        if entry is None:  # claimed by someone, then gone: let the platform retry later
            return self._busy(event, iid, key, deadline, "ledger entry vanished after the claim")
        status = Status(entry.status)
        if status in FINISHED:
            return self._recorded(entry, event, key, deadline)
        held_until = parse_iso_or_none(entry.data.get("lease_until"))
        if held_until is not None and held_until > now and entry.data.get("owner") != self.owner:
            return self._busy(event, iid, key, deadline, f"held by another invocation ({status.value})")
        generation = int(entry.data.get("generation") or 0) + 1
        if not self.store.ledger_claim(
            f"{key}#{generation}", kind=LEASE_KIND, instance_id=iid, data={"owner": self.owner}
        ):
            return self._busy(event, iid, key, deadline, "another invocation is taking over")
        emit(log, "drain resumed", instance_id=iid, key=key, resumed_from=status.value,
             generation=generation)
        data = dict(entry.data)
        takeover = {
            **lease, "generation": generation, "resumed_from": status.value,
            "api_writes_before": int(entry.data.get("api_writes") or 0),
        }
        data.update(takeover)
        self.store.ledger_update(key, data=takeover)
        # The region the drain began in (its memberships live there), whatever this copy says.
        return _Run(key, iid, event.event_id, status, data, self.store,
                    str(entry.data.get("region") or region))

    def _release(self, run: _Run) -> None:
        """After a failure: drop the lease so the platform's retry resumes at once."""
        try:
            self.store.ledger_update(run.key, data={"lease_until": None})
        except Exception as err:  # the original failure matters more than this one
            emit(log, "lease release failed", level=30, key=run.key, error=str(err))

    def _busy(
        self, event: EcsEvent, iid: str, key: str, deadline: Deadline, reason: str
    ) -> DrainResult:
        emit(log, "drain skipped", event_id=event.event_id, instance_id=iid, key=key,
             decision=Outcome.IN_PROGRESS.value, reason=reason)
        return DrainResult(
            instance_id=iid, outcome=Outcome.IN_PROGRESS, event_id=event.event_id, key=key,
            phase=deadline.phase(self.clock()), reason=reason,
        )

    def _recorded(
        self, entry: LedgerEntryLike, event: EcsEvent, key: str, deadline: Deadline
    ) -> DrainResult:
        data = entry.data
        emit(log, "drain skipped", event_id=event.event_id, instance_id=entry.instance_id,
             key=key, decision=Outcome.DUPLICATE.value,
             reason=f"already {entry.status} ({data.get('outcome')})")
        return DrainResult(
            instance_id=entry.instance_id or event.instance_id or "",
            outcome=Outcome.DUPLICATE,
            event_id=event.event_id,
            key=key,
            phase=Phase(data.get("path") or deadline.phase(self.clock()).value),
            removed=tuple(data.get("removed") or ()),
            reported_master_slave=tuple(_summary(m) for m in _memberships(data, "master_slave")),
            time_left_s=data.get("time_left_s"),
            missed_deadline=bool(data.get("missed_deadline")),
            notice_to_removed_s=data.get("notice_to_removed_s"),
            leftover=tuple(data.get("leftover") or ()),
            reason=f"already {entry.status}: {data.get('outcome')}",
        )

    # --- the steps ---------------------------------------------------------------------------

    def _execute(self, run: _Run, deadline: Deadline) -> DrainResult:
        iid = run.instance_id
        if run.status is Status.CLAIMED:
            if deadline.phase(self.clock()) is Phase.LEFTOVER and self._in_service(iid, run.region):
                return self._finish(
                    run, deadline, Outcome.SKIPPED, Phase.LEFTOVER, [],
                    reason="notice long past its deadline and the instance is Running without "
                    "a recycling lock: not reclaimed, left in its groups",
                )
            removable, master_slave, scope = self._discover_in_time(run, deadline)
            run.save(
                Status.FOUND,
                memberships=[m.snapshot() for m in removable],
                master_slave=[m.snapshot() for m in master_slave],
                scope=scope,
                found_at=iso(self.clock()),
            )
        memberships = run.memberships()
        if not memberships:
            return self._finish(run, deadline, Outcome.NOTHING_TO_REMOVE,
                                deadline.phase(self.clock()), [])
        reason: str | None = None
        if run.status in (Status.CLAIMED, Status.FOUND) and (
            deadline.phase(self.clock()) is Phase.GENTLE
        ):
            if self._weights_to_zero(run, memberships, deadline):
                run.save(Status.WEIGHTED, weight0_at=iso(self.clock()))
            else:
                reason = "weight change failed: removed without the gentle wait"
        if run.status is Status.WEIGHTED and deadline.phase(self.clock()) is Phase.GENTLE:
            now = self.clock()
            wait = deadline.wait_s(
                now, self.settings.drain_time_s, parse_iso_or_none(run.data.get("weight0_at"))
            )
            emit(log, "draining", instance_id=iid, key=run.key, wait_s=round(wait, 3),
                 time_left_s=round(deadline.time_left_s(now), 3))
            if wait > 0:
                self.sleep(wait)
        if run.status in (Status.CLAIMED, Status.FOUND, Status.WEIGHTED):
            # The path is what was done, not where the clock is now: the gentle wait ends at
            # deadline - margin by design, so the clock alone would always say "fast" here.
            path = deadline.phase(self.clock())
            if run.status is Status.WEIGHTED and path is not Phase.LEFTOVER:
                path = Phase.GENTLE  # weights went to 0 and the wait was given
            elif path is Phase.GENTLE:
                path = Phase.FAST  # the weight change failed: removed without the wait
            self._remove(run, memberships, deadline, path)
        leftover = self._verify(run, memberships)
        path = Phase(run.data.get("path") or Phase.FAST.value)
        if leftover:
            outcome = Outcome.PARTIAL
        elif path is Phase.GENTLE:
            outcome = Outcome.DRAINED
        elif path is Phase.FAST:
            outcome = Outcome.REMOVED
        else:
            outcome = Outcome.LEFTOVERS_REMOVED
        return self._finish(run, deadline, outcome, path, leftover, reason=reason)

    def _in_service(self, iid: str, region: str) -> bool:
        """Running with no recycling lock: the notice did not take it (late notices only)."""
        try:
            instance = self.clients_in(region).ecs.describe_instances([iid]).get(iid)
        except CloudError as err:
            emit(log, "instance check failed", level=30, instance_id=iid, code=err.code)
            return False
        return (
            instance is not None
            and instance.status == "Running"
            and "recycling" not in instance.lock_reasons
        )

    def scope(self, region: str | None = None) -> list[str]:
        """The load balancers in scope in ``region`` (default ours): ``lb_ids``, ``lb_tag``,
        else every CLB there; looked up once per region and invocation."""
        region = region or self.settings.region
        with self._scope_lock:
            if region not in self._scopes:
                self._scopes[region] = _lb_scope(self.clients_in(region).lb, self.settings, region)
            return list(self._scopes[region])

    def _discover_in_time(
        self, run: _Run, deadline: Deadline
    ) -> tuple[list[Membership], list[Membership], list[str]]:
        """Discovery, retried in jittered rounds while throttled, never past the deadline
        (a burst of notices all scan at once; the platform's own retry may come too late)."""
        for attempt in range(MAX_ROUNDS):
            try:
                return self._discover(run.instance_id, run.region)
            except TransientError as err:
                pause = ROUND_PAUSES_S[min(attempt, len(ROUND_PAUSES_S) - 1)]
                pause *= random.uniform(0.5, 1.0)
                left = deadline.time_left_s(self.clock())
                emit(log, "step failed", level=30, instance_id=run.instance_id,
                     step="discover", code=err.code, attempt=attempt + 1,
                     time_left_s=round(left, 3))
                if left - pause <= 0 or attempt == MAX_ROUNDS - 1:
                    raise
                self.sleep(pause)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _discover(
        self, iid: str, region: str
    ) -> tuple[list[Membership], list[Membership], list[str]]:
        scope = self.scope(region)
        lb_client = self.clients_in(region).lb
        try:
            hinted = {
                lb.id
                for lb in lb_client.list_load_balancers(
                    ids=self.settings.lb_ids, tag=_tag(self.settings), server_id=iid
                )
            }
        except CloudError as err:  # only a hint: scan in the plain order
            emit(log, "server id hint failed", level=30, instance_id=iid, code=err.code)
            hinted = set()
        ordered = [lb for lb in scope if lb in hinted] + [lb for lb in scope if lb not in hinted]
        found = lb_client.find_memberships(iid, ordered)
        removable = [m for m in found if m.removable]
        master_slave = [m for m in found if not m.removable]
        emit(
            log, "memberships found", instance_id=iid, scope=len(scope), hinted=len(hinted),
            removable=len(removable), master_slave=len(master_slave),
            unhinted=sorted({m.load_balancer_id for m in found} - hinted) or None,
        )
        return removable, master_slave, scope

    def _per_group(
        self, operation: str, memberships: Sequence[Membership], run: _Run | None = None
    ) -> list[tuple[list[Membership], CloudError]]:
        """Apply ``operation`` group by group, so one failing or vanished group cannot keep
        the instance in the others. Returns the groups that failed, with their errors."""
        lb = self.clients_in(run.region if run is not None else self.settings.region).lb
        failures: list[tuple[list[Membership], CloudError]] = []
        for members in _groups(memberships).values():
            try:
                if operation == "weight0":
                    calls = lb.set_weights(members, 0)
                else:
                    calls = lb.remove_members(members)
            except NotFoundError as err:  # the group or load balancer is gone: nothing to do
                emit(log, "group gone", level=30, instance_id=members[0].server_id,
                     load_balancer_id=members[0].load_balancer_id, group_id=members[0].group_id,
                     code=err.code)
                continue
            except CloudError as err:
                failures.append((members, err))
                continue
            if run is not None:
                run.writes += calls
        return failures

    def _rounds(
        self, operation: str, run: _Run, memberships: Sequence[Membership], until: datetime
    ) -> CloudError | None:
        """Apply ``operation`` per group; retry the groups that failed with a retryable error
        (after the client's own retries) in rounds, with jittered pauses, while a pause still
        ends before ``until``. Returns the last error when something is still failing."""
        remaining = list(memberships)
        for attempt in range(MAX_ROUNDS):
            failures = self._per_group(operation, remaining, run)
            if not failures:
                return None
            remaining = [m for members, _ in failures for m in members]
            err = failures[0][1]
            pause = ROUND_PAUSES_S[min(attempt, len(ROUND_PAUSES_S) - 1)]
            pause *= random.uniform(0.5, 1.0)  # a burst of drains must not retry in lockstep
            left = (until - self.clock()).total_seconds()
            emit(log, "step failed", level=30, instance_id=run.instance_id, step=operation,
                 code=err.code, groups=len(failures), attempt=attempt + 1,
                 time_left_s=round(left, 3))
            if not all(e.retryable for _, e in failures):
                raise err
            if left - pause <= 0:  # never wait past the step's own deadline
                return err
            self.sleep(pause)
        return err

    def _weights_to_zero(
        self, run: _Run, memberships: Sequence[Membership], deadline: Deadline
    ) -> bool:
        until = deadline.at - timedelta(seconds=deadline.margin_s)
        return self._rounds("weight0", run, memberships, until) is None

    def _remove(
        self, run: _Run, memberships: Sequence[Membership], deadline: Deadline, path: Phase
    ) -> None:
        err = self._rounds("remove", run, memberships, deadline.at)
        if err is not None:  # out of time: the platform's retry resumes (fast or leftover)
            raise err
        removed_at = self.clock()
        notice_to_removed = (removed_at - deadline.notice_time).total_seconds()
        time_left = deadline.time_left_s(removed_at)
        run.save(
            Status.REMOVED,
            removed_at=iso(removed_at),
            path=path.value,
            removed=[_summary(m) for m in memberships],
            notice_to_removed_s=round(notice_to_removed, 3),
            time_left_s=round(time_left, 3),
            missed_deadline=path is Phase.LEFTOVER or time_left < 0,
        )

    def _verify(self, run: _Run, memberships: Sequence[Membership]) -> list[Membership]:
        """Describe each group again; remove again what is still there (bounded)."""
        lb = self.clients_in(run.region).lb
        still: list[Membership] = []
        for attempt in range(VERIFY_ROUNDS):
            still = []
            for (lb_id, kind, group_id), members in _groups(memberships).items():
                try:
                    current = lb.group_members(lb_id, kind, group_id)
                except NotFoundError:
                    continue
                still.extend(_still_there(members, current))
            if not still or attempt == VERIFY_ROUNDS - 1:
                break
            emit(log, "still registered", level=30, instance_id=run.instance_id,
                 memberships=[_label(_summary(m)) for m in still], attempt=attempt + 1)
            self._per_group("remove", still, run)
            self.sleep(VERIFY_PAUSE_S)
        return still

    def _finish(
        self,
        run: _Run,
        deadline: Deadline,
        outcome: Outcome,
        path: Phase,
        leftover: Sequence[Membership],
        *,
        reason: str | None = None,
    ) -> DrainResult:
        data = run.data
        missed = bool(data.get("missed_deadline")) or path is Phase.LEFTOVER
        run.save(
            Status.PARTIAL if leftover else Status.DONE,
            outcome=outcome.value,
            path=data.get("path") or path.value,
            leftover=[_summary(m) for m in leftover],
            verified_at=iso(self.clock()),
            missed_deadline=missed,
            lease_until=None,
            reason=reason,
        )
        result = DrainResult(
            instance_id=run.instance_id,
            outcome=outcome,
            event_id=run.event_id,
            key=run.key,
            phase=path,
            removed=tuple(data.get("removed") or ()),
            reported_master_slave=tuple(_summary(m) for m in run.memberships("master_slave")),
            time_left_s=data.get("time_left_s"),
            missed_deadline=missed,
            notice_to_removed_s=data.get("notice_to_removed_s"),
            leftover=tuple(_summary(m) for m in leftover),
            reason=reason,
        )
        emit(
            log, "drain finished", event_id=run.event_id, instance_id=run.instance_id,
            key=run.key, decision=outcome.value, path=result.phase.value, reason=reason,
            removed=len(result.removed), reported_master_slave=len(result.reported_master_slave),
            leftover=len(result.leftover), time_left_s=result.time_left_s,
            notice_to_removed_s=result.notice_to_removed_s, missed_deadline=missed,
            api_writes=data.get("api_writes"),
        )
        self._notify(result, deadline)
        return result

    # --- dry run -----------------------------------------------------------------------------

    def _dry_run(
        self, event: EcsEvent, iid: str, key: str, deadline: Deadline, region: str
    ) -> DrainResult:
        """Decide and log as usual; no mutating call, no ledger write."""
        entry = self.store.ledger_get(key)
        if entry is not None and Status(entry.status) in FINISHED:
            return self._recorded(entry, event, key, deadline)
        phase = deadline.phase(self.clock())
        if phase is Phase.LEFTOVER and self._in_service(iid, region):
            removable: list[Membership] = []
            master_slave: list[Membership] = []
            reason: str | None = "late notice, instance in service: would be left in place"
        else:
            removable, master_slave, _ = self._discover(iid, region)
            reason = None
        lb = self.clients_in(region).lb
        if removable and phase is Phase.GENTLE:
            lb.set_weights(removable, 0, dry_run=True)
            emit(log, "draining", instance_id=iid, key=key, dry_run=True,
                 wait_s=round(deadline.wait_s(self.clock(), self.settings.drain_time_s), 3))
        if removable:
            lb.remove_members(removable, dry_run=True)
        now = self.clock()
        result = DrainResult(
            instance_id=iid,
            outcome=Outcome.DRY_RUN,
            event_id=event.event_id,
            key=key,
            phase=phase,
            reported_master_slave=tuple(_summary(m) for m in master_slave),
            time_left_s=round(deadline.time_left_s(now), 3),
            missed_deadline=phase is Phase.LEFTOVER or deadline.time_left_s(now) < 0,
            planned=tuple(_summary(m) for m in removable),
            reason=reason,
            dry_run=True,
        )
        emit(log, "drain finished", event_id=event.event_id, instance_id=iid, key=key,
             decision=Outcome.DRY_RUN.value, path=phase.value, planned=len(removable),
             reported_master_slave=len(master_slave), time_left_s=result.time_left_s,
             missed_deadline=result.missed_deadline, dry_run=True)
        self._notify(result, deadline)
        return result

    # --- notification ------------------------------------------------------------------------

    def _notify(self, result: DrainResult, deadline: Deadline) -> None:
        if self.notifier is None:
            return
        notification = drain_notification(result, deadline)
        try:
            self.notifier.send(notification)
        except Exception as err:  # Notifier.send never raises; a fake might: never fail a drain
            emit(log, "notification failed", level=30, key=notification.key, error=str(err))


def _memberships(data: Mapping[str, Any], name: str) -> list[Membership]:
    return [Membership.from_snapshot(m) for m in data.get(name) or ()]


def drain_notification(result: DrainResult, deadline: Deadline) -> Notification:
    """One message per interruption: what was drained, what was only reported, time left."""
    iid = result.instance_id
    headline = {
        Outcome.DRAINED: "drained from its load balancers",
        Outcome.REMOVED: "removed at once from its load balancers (little time left)",
        Outcome.LEFTOVERS_REMOVED: "notice handled after its deadline: leftovers removed",
        Outcome.NOTHING_TO_REMOVE: "interrupted: no removable load-balancer membership",
        Outcome.PARTIAL: "NOT fully drained: still registered somewhere",
        Outcome.SKIPPED: "late notice, instance still in service: left in place",
        Outcome.DRY_RUN: "would be drained (dry run)",
    }.get(result.outcome, result.outcome.value)
    lines = [f"Spot instance {iid} {headline}."]
    lines.append(f"Notice at {iso(deadline.notice_time)}, deadline {iso(deadline.at)}.")
    if result.removed:
        lines.append("Drained (weight 0, then removed):" if result.phase is Phase.GENTLE
                     else "Removed:")
        lines += [f"- {_label(m)}" for m in result.removed]
    if result.planned:
        lines.append("Would drain:")
        lines += [f"- {_label(m)}" for m in result.planned]
    if result.reported_master_slave:
        lines.append("Master-slave groups (members cannot be removed one by one: NOT drained):")
        lines += [f"- {_label(m)}" for m in result.reported_master_slave]
    if result.leftover:
        lines.append("Still registered after retries:")
        lines += [f"- {_label(m)}" for m in result.leftover]
    if result.time_left_s is not None:
        lines.append(f"Time left at removal: {result.time_left_s:.1f} s.")
    if result.missed_deadline:
        lines.append("Deadline missed.")
    if result.reason:
        lines.append(result.reason)
    if result.leftover or result.missed_deadline:
        severity = "critical"
    elif result.reported_master_slave or result.outcome is Outcome.SKIPPED:
        severity = "warning"
    else:
        severity = "info"
    return Notification(
        key=("dry-run:" if result.dry_run else "") + result.key,
        title=f"{'[dry run] ' if result.dry_run else ''}Spot drain {iid}: {result.outcome.value}",
        text="\n".join(lines),
        severity=severity,
        instance_id=iid,
        fields={
            "outcome": result.outcome.value,
            "removed": len(result.removed),
            "master_slave": len(result.reported_master_slave),
            "time_left_s": result.time_left_s,
            "missed_deadline": result.missed_deadline,
        },
    )


# --------------------------------------------------------------------------------------------
# The sweep: restore what was not reclaimed, clean what was released


@dataclass
class SweepReport:
    restored: list[str] = field(default_factory=list)
    reclaimed: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    released_backends_removed: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sweep_drains(
    store: Ledger,
    clients: ClientsPort,
    notifier: NotifierPort | None,
    settings: Settings,
    now: datetime,
    *,
    regions: Sequence[str] = (),
) -> dict[str, Any]:
    """Undo drains whose instance was not reclaimed; remove backends of released instances.

    * A drain (ledger status done/partial) whose instance is still Running without a recycling
      lock ``restore_after_s`` past its deadline gets its recorded memberships back with their
      original weights (added where missing, re-weighted where present): once, through a
      claimed restore attempt.
    * An instance absent from DescribeInstances is released: its entry becomes ``reclaimed``
      (a partial drain's leftovers are removed first).
    * Every backend in scope whose instance no longer exists is removed, when the LB client
      can list a load balancer's members (``all_members``).

    Each drain is swept in its own region (recorded in its entry); the released-backend scan
    runs in every region of ``regions`` (default: ``settings.region``).
    A TransientError on one entry is reported and the others go on; store errors propagate.
    Dry run: decide and log, no mutating call, no ledger write.
    """
    report = SweepReport(dry_run=settings.dry_run)
    entries = [
        e
        for status in (Status.DONE, Status.PARTIAL)
        for e in store.ledger_find(DRAIN_KIND, status=status.value)
    ]
    due: list[LedgerEntryLike] = []
    for entry in entries:
        deadline = parse_iso_or_none(entry.data.get("deadline"))
        if deadline is None or entry.instance_id is None:
            continue
        if now < deadline + timedelta(seconds=settings.restore_after_s):
            report.waiting.append(entry.instance_id)
        else:
            due.append(entry)
    by_region: dict[str, list[LedgerEntryLike]] = {}
    for entry in due:
        by_region.setdefault(_entry_region(entry, settings), []).append(entry)
    for region, entries_there in sorted(by_region.items()):
        regional = clients.for_region(region)
        try:
            instances = regional.ecs.describe_instances(
                sorted({e.instance_id for e in entries_there if e.instance_id})
            )
        except TransientError as err:
            report.errors.append({"step": "describe_instances", "region": region,
                                  "error": str(err)})
            continue
        for entry in entries_there:
            try:
                _sweep_entry(entry, instances, store=store, clients=regional, notifier=notifier,
                             settings=settings, now=now, report=report)
            except (TransientError, NotFoundError) as err:
                report.errors.append({"key": entry.key, "error": str(err)})
                emit(log, "sweep step failed", level=30, key=entry.key, error=str(err))
    for region in regions or (settings.region,):
        _sweep_released_backends(clients.for_region(region), settings, report, region)
    emit(log, "drain sweep", restored=len(report.restored), reclaimed=len(report.reclaimed),
         closed=len(report.closed), waiting=len(report.waiting),
         released_backends_removed=len(report.released_backends_removed),
         errors=len(report.errors), dry_run=settings.dry_run or None)
    return report.to_dict()


def _sweep_entry(
    entry: LedgerEntryLike,
    instances: Mapping[str, Instance],
    *,
    store: Ledger,
    clients: ClientsPort,
    notifier: NotifierPort | None,
    settings: Settings,
    now: datetime,
    report: SweepReport,
) -> None:
    iid = entry.instance_id or ""
    data = entry.data
    deadline = parse_iso_or_none(data.get("deadline")) or now
    outcome = data.get("outcome")
    memberships = _memberships(data, "memberships")
    instance = instances.get(iid)
    dry = settings.dry_run
    if instance is None:
        leftover = _memberships(data, "leftover")
        if leftover:
            found = [m for m in clients.lb.find_memberships(iid, sorted(
                {m.load_balancer_id for m in leftover})) if m.removable]
            if found:
                clients.lb.remove_members(found, dry_run=dry)
                report.released_backends_removed += [
                    {"instance_id": iid, **_summary(m)} for m in found]
        emit(log, "drain reclaimed", instance_id=iid, key=entry.key, dry_run=dry or None)
        if not dry:
            store.ledger_update(entry.key, status=Status.RECLAIMED.value,
                                data={"reclaimed_at": iso(now)})
        report.reclaimed.append(iid)
        return
    in_service = instance.status == "Running" and "recycling" not in instance.lock_reasons
    if not in_service or outcome not in {o.value for o in REMOVAL_OUTCOMES} or not memberships:
        if now - deadline > timedelta(seconds=RESTORE_HORIZON_S) or (
            in_service and not memberships
        ):
            if not dry:
                store.ledger_update(entry.key, status=Status.CLOSED.value,
                                    data={"closed_at": iso(now)})
            report.closed.append(iid)
        else:
            report.waiting.append(iid)
        return
    attempts = int(data.get("restore_attempts") or 0)
    if attempts >= MAX_RESTORE_ATTEMPTS:
        if not dry:
            store.ledger_update(entry.key, status=Status.CLOSED.value,
                                data={"closed_at": iso(now), "reason": "restore kept failing"})
        report.closed.append(iid)
        return
    claim_key = f"{entry.key}:restore:{attempts}"
    if not dry and not store.ledger_claim(claim_key, kind=RESTORE_KIND, instance_id=iid):
        claim = store.ledger_get(claim_key)
        if claim is not None and now - claim.created_at > timedelta(seconds=ABANDONED_RESTORE_S):
            # That sweep died mid-restore (it never counted its attempt): count it, so the next
            # sweep claims a fresh attempt instead of waiting on this one forever.
            store.ledger_update(entry.key, data={"restore_attempts": attempts + 1})
            report.notes.append(f"{iid}: restore attempt {attempts} abandoned; retried next sweep")
        else:
            report.notes.append(f"{iid}: another sweep is restoring it")
        return
    try:
        restored = _restore(clients, memberships, dry)
    except BaseException:
        if not dry:
            store.ledger_update(entry.key, data={"restore_attempts": attempts + 1})
        raise
    emit(log, "drain restored", instance_id=iid, key=entry.key, restored=len(restored),
         reason="still Running without a recycling lock after the deadline", dry_run=dry or None)
    if not dry:
        store.ledger_update(entry.key, status=Status.RESTORED.value, data={
            "restored_at": iso(now), "restored": [_summary(m) for m in restored],
            "restore_attempts": attempts + 1,
        })
    report.restored.append(iid)
    if notifier is not None:
        lines = [f"Spot instance {iid} was not reclaimed after its interruption notice; "
                 "its load-balancer memberships were put back with their original weights:"]
        lines += [f"- {_label(_summary(m))}" for m in memberships]
        try:
            notifier.send(Notification(
                key=("dry-run:" if dry else "") + entry.key + ":restored",
                title=f"{'[dry run] ' if dry else ''}Spot drain {iid}: restored",
                text="\n".join(lines), severity="info", instance_id=iid,
                fields={"restored": len(memberships)},
            ))
        except Exception as err:  # never fail the sweep on a notification
            emit(log, "notification failed", level=30, key=entry.key, error=str(err))


def _restore(clients: ClientsPort, memberships: Sequence[Membership], dry: bool) -> list[Membership]:
    """Put memberships back as recorded: add missing ones, re-weight present ones."""
    lb = clients.lb
    missing: list[Membership] = []
    reweight: list[Membership] = []
    for (lb_id, kind, group_id), members in _groups(memberships).items():
        try:
            current = {(m.server_id, m.port): m.weight for m in lb.group_members(lb_id, kind, group_id)}
        except NotFoundError:
            emit(log, "group gone", level=30, load_balancer_id=lb_id, group_id=group_id)
            continue
        for m in members:
            weight = current.get((m.server_id, m.port))
            if weight is None:
                missing.append(m)
            elif weight != m.weight:
                reweight.append(m)
    if missing:
        lb.add_members(missing, dry_run=dry)
    if reweight:
        lb.set_weights(reweight, None, dry_run=dry)
    return missing + reweight


def _sweep_released_backends(
    clients: ClientsPort, settings: Settings, report: SweepReport, region: str
) -> None:
    """Remove backends (type ecs) whose instance no longer exists, in the configured scope of
    ``region`` (``clients`` are that region's)."""
    if not settings.lb_ids and not settings.lb_tag:
        if "released-backend scan skipped: no lb_ids/lb_tag scope" not in report.notes:
            report.notes.append("released-backend scan skipped: no lb_ids/lb_tag scope")
        return
    try:
        scope = _lb_scope(clients.lb, settings, region)
        members: list[Membership] = []
        for lb_id in scope:
            try:
                members.extend(clients.lb.all_members(lb_id))
            except NotFoundError as err:  # lb_ids may name other regions' (or deleted) ones
                emit(log, "load balancer not found", level=30, region=region,
                     load_balancer_id=lb_id, code=err.code)
        ecs_members = [m for m in members if m.server_type == "ecs" and m.removable]
        ids = sorted({m.server_id for m in ecs_members})
        if not ids:
            return
        existing = clients.ecs.describe_instances(ids)
    except (TransientError, NotFoundError) as err:
        report.errors.append({"step": "released backends", "region": region, "error": str(err)})
        return
    gone = [m for m in ecs_members if m.server_id not in existing]
    if len({m.server_id for m in gone}) == len(ids) and len(ids) >= 3:
        # Every backend looks released: far likelier a wrong region or account than a fact.
        report.notes.append(
            f"released-backend scan refused in {region}: every backend looks released")
        emit(log, "released-backend scan refused", level=30, region=region, backends=len(ids))
        return
    if gone:
        try:
            clients.lb.remove_members(gone, dry_run=settings.dry_run)
        except (TransientError, NotFoundError) as err:
            report.errors.append({"step": "released backends", "region": region,
                                  "error": str(err)})
            return
        report.released_backends_removed += [
            {"instance_id": m.server_id, **_summary(m)} for m in gone]
        emit(log, "released backends removed", count=len(gone),
             instances=sorted({m.server_id for m in gone}), dry_run=settings.dry_run or None)
