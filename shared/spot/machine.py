"""The spot drain as a state machine: one table of steps, each with its precondition (the last
ledger record), its condition on the time left, its ledger record, its resume rule (what a
retry that takes the lease over does when the step was cut short) and its undo rule (what the
sweep does after the deadline when the instance was not reclaimed).

=========  ==========================  ===============  ==========================  =========
step       runs after (and when)       records          resume (crash inside it)    undo
=========  ==========================  ===============  ==========================  =========
claim      nothing (spot of ours)      claimed + lease  none: no entry yet          nothing
find       claimed                     found            refind (nothing written)    nothing
weight0    found (gentle, not failed)  weighted         redo (weight 0 again)       restore
wait       weighted                    waited           owed (drain time left)      restore
remove     found, weighted, waited     removed          redo on what is present     restore
           (and remove_after passed)
verify     removed                     done | partial   redo                        restore
=========  ==========================  ===============  ==========================  =========

The table's order decides: the first step whose precondition holds and whose ``when`` is true
runs next. When none does, the drain is *scheduled*: with ``drain_finish_every_s`` set (the
deployed finisher timer), ``wait`` records ``waited`` with ``remove_after`` (weight 0 plus the
drain time) and the lease until then, when :meth:`Deadline.removal_schedulable` proves the removal
still starts by ``deadline - margin`` if one tick fails or dies; the invocation ends there (outcome
``scheduled``) instead of holding a function instance asleep through the wait, and the tick
(:func:`shared.spot.finish.finish_due`), a redelivery or the sweep takes the expired lease over and
runs ``remove`` and ``verify``. Otherwise the wait is slept in the invocation, as before. Original weights are recorded by ``find`` before any write of ours, and no later
step re-reads them (never our own write: see :func:`shared.spot.record.original_weights`).

Duplicates: a notice joins the instance's drain that is open, or whose notice is within the
notice period of its own (:func:`joinable`), whatever envelope or time bucket it came through;
otherwise, after :func:`notice_refusal` found a spot instance of ours in the notice's region,
it claims the next ``drain:<instance>:<n>``. A redelivery meeting a live lease raises
(:class:`shared.ledger.LeaseHeldError`): the platform retries; an expired lease is taken over.

Mutation points (the reliability suite builds its sabotaged drains from these, one swap each):
* never gentle: ``STEPS`` without the ``weight0`` entry (the table then removes at once);
* weight 0 recorded as original: the ``wait`` (or ``weight0``) entry with ``resume=Resume.REFIND``
  (a taker re-reads the memberships, now at weight 0, and records them);
* remove every member: the ``remove`` entry with another ``act`` (e.g. every member of each
  recorded group);
* forged notice accepted: ``notice_refusal`` patched to answer None (it is looked up at call
  time, as ``STEPS`` is);
* lease never expires: ``shared.ledger.lease_live`` patched to answer True.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from shared import ledger
from shared.clients import CloudError, Instance, NotFoundError, TransientError
from shared.events import iso, parse_iso_or_none
from shared.lb.model import GroupKind, GroupRef, Membership, Product, Write
from shared.lb.pools import LbScope
from shared.ledger import (
    FINISHED_DRAIN,
    OPEN_DRAIN,
    REMOVED_DRAIN,
    Acquired,
    DrainStatus,
    EntryLike,
    Kind,
    Lease,
)
from shared.log import emit, get_logger
from shared.spot import record
from shared.spot.batch import Coalescer, GroupQueue, Party, Ticket
from shared.spot.deadline import Deadline, Phase, utc_now
from shared.spot.index import MembershipIndex, Owner, instance_keys
from shared.spot.record import (
    ClientsPort,
    DrainResult,
    LbPort,
    Ledger,
    NotifierPort,
    Outcome,
    drain_notification,
    groups,
    label,
    memberships_of,
    reported,
    still_there,
    summary,
)

if TYPE_CHECKING:
    from shared.events import EcsEvent
    from shared.settings import Settings

__all__ = [
    "STEPS",
    "Drainer",
    "Resume",
    "Step",
    "StepName",
    "Undo",
    "joinable",
    "notice_refusal",
]

log = get_logger(__name__)

JOB_WAIT_S = 60.0  # an ALB/NLB job of a step with no deadline of its own (verify's removals)
JOB_MIN_WAIT_S = 1.0  # a step's jobs get at least this long, even at its deadline
JOB_SLACK_S = 15.0  # a native drain's removal job: its drain timeout plus this at most
# A write's job is waited for this long at most (a natively draining group's removal: its drain
# timeout plus the slack): a job still unfinished then may have failed silently (NLB's
# GetJobStatus has no failed state), so the step's next round writes again with a new token
# instead of waiting until the deadline. ACK's cloud controller waits 30 s for an NLB job
# (reference: load-balancers-and-replacement.md, "ACK CCM").
JOB_STEP_WAIT_S = 30.0
VERIFY_ROUNDS = 3
VERIFY_PAUSE_S = 0.5
# Rounds of a step (each call already retried by the client), never past the step's deadline.
MAX_ROUNDS = 30
# A natively draining group (ALB/NLB connection draining) is busy for its whole timeout after a
# removal: the drains of one delivery gather their removals for this long, and the next one
# waits for the job (its timeout plus this slack) instead of meeting the busy group.
NATIVE_WINDOW_S = 3.0
NATIVE_HOLD_SLACK_S = 15.0
ROUND_PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0)
# A holder renews its lease at every record and round; silent longer than its planned wait plus
# ``settings.drain_lease_grace_s`` (30 s by default), it is presumed dead and the next delivery
# (or the sweep) takes the drain over.


class StepName(str, Enum):
    CLAIM = "claim"
    FIND = "find"
    WEIGHT0 = "weight0"
    WAIT = "wait"
    REMOVE = "remove"
    VERIFY = "verify"


class Resume(str, Enum):
    """What a taker does when the previous holder died inside the step."""

    NONE = "none"  # no entry exists yet: a redelivery starts afresh
    REFIND = "refind"  # discover again and record what is seen (safe only before any write)
    REDO = "redo"  # the step's writes are idempotent: run it again from the record
    OWED = "owed"  # wait only the drain time still owed since weight0_at
    PRESENT = "present"  # re-read the groups, act on what is still present


class Undo(str, Enum):
    """What the sweep does after the deadline, instance not reclaimed, drain stopped here."""

    NOTHING = "nothing"  # nothing was written: close the entry
    RESTORE = "restore"  # put the recorded memberships back with their original weights


@dataclass
class Run:
    """The drain being executed: its lease, deadline, last record and data (kept in step)."""

    lease: Lease
    instance_id: str
    event_id: str
    region: str  # the notice's region, as recorded at the claim: every call goes there
    deadline: Deadline
    status: DrainStatus
    data: dict[str, Any]
    resumed_from: DrainStatus | None = None  # a takeover: the status the last holder recorded
    allow_wait: bool = True  # the sweep finishes without waiting
    writes: int = 0  # mutating API calls made by this holder
    # ALB/NLB groups whose job ended Failed, with how often: their next write takes a new
    # ClientToken (the same one would answer the failed job again).
    failed_jobs: dict[GroupRef, int] = field(default_factory=dict)
    # Its pass through a finisher round's meeting point before the removal (shared.spot.finish)
    party: Party | None = None

    @property
    def key(self) -> str:
        return self.lease.key

    def record(self, status: DrainStatus, **data: Any) -> None:
        data["api_writes"] = int(self.data.get("api_writes_before") or 0) + self.writes
        self.lease.save(status, **data)
        self.data.update(data)
        self.status = status

    def memberships(self, name: str = "memberships") -> list[Membership]:
        return memberships_of(self.data, name)


Act = Callable[["Drainer", Run], "tuple[DrainStatus, dict[str, Any]]"]
When = Callable[["Drainer", Run], bool]


@dataclass(frozen=True)
class Step:
    name: StepName
    after: frozenset[DrainStatus]  # precondition: the last record
    when: When
    act: Act
    records: frozenset[DrainStatus]
    resume: Resume
    undo: Undo


def _always(_d: Drainer, _r: Run) -> bool:
    return True


def _due(d: Drainer, run: Run) -> bool:
    """The removal's time has come: no ``remove_after`` scheduled, or it passed."""
    after = parse_iso_or_none(run.data.get("remove_after"))
    return after is None or d.clock() >= after


def _gentle(d: Drainer, run: Run) -> bool:
    return (d.phase(run) is Phase.GENTLE and run.allow_wait and not run.data.get("released")
            and not run.data.get("weight_failed"))


def _claim_act(d: Drainer, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
    raise AssertionError("the claim is taken by Drainer.drain, never run from the table")


def _find_act(d: Drainer, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
    return d.find(run)


def _weight0_act(d: Drainer, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
    return d.weight0(run)


def _wait_act(d: Drainer, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
    return d.wait(run)


def _remove_act(d: Drainer, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
    return d.remove(run)


def _verify_act(d: Drainer, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
    return d.verify(run)


S = DrainStatus
STEPS: tuple[Step, ...] = (
    Step(StepName.CLAIM, frozenset(), _always, _claim_act, frozenset({S.CLAIMED}),
         Resume.NONE, Undo.NOTHING),
    Step(StepName.FIND, frozenset({S.CLAIMED}), _always, _find_act,
         frozenset({S.FOUND, S.DONE}), Resume.REFIND, Undo.NOTHING),
    Step(StepName.WEIGHT0, frozenset({S.FOUND}), _gentle, _weight0_act,
         frozenset({S.WEIGHTED, S.FOUND}), Resume.REDO, Undo.RESTORE),
    Step(StepName.WAIT, frozenset({S.WEIGHTED}), _always, _wait_act, frozenset({S.WAITED}),
         Resume.OWED, Undo.RESTORE),
    Step(StepName.REMOVE, frozenset({S.FOUND, S.WEIGHTED, S.WAITED}), _due, _remove_act,
         frozenset({S.REMOVED}), Resume.PRESENT, Undo.RESTORE),
    Step(StepName.VERIFY, frozenset({S.REMOVED}), _always, _verify_act,
         frozenset({S.DONE, S.PARTIAL}), Resume.REDO, Undo.RESTORE),
)


def step_named(name: StepName, steps: Sequence[Step] | None = None) -> Step:
    return next(s for s in (steps or STEPS) if s.name is name)


def undo_rule(status: DrainStatus, steps: Sequence[Step] | None = None) -> Undo:
    """The undo of the step a drain stopped in (the first step after its last record)."""
    for step in steps or STEPS:
        if status in step.after:
            return step.undo
    return Undo.RESTORE if status in REMOVED_DRAIN else Undo.NOTHING


# --- verification and joining ----------------------------------------------------------------


def notice_refusal(instance: Instance | None, region: str) -> str | None:
    """Why a notice must not be acted on, or None: the instance DescribeInstances (this
    account's credentials, the notice's region) shows must be a SPOT instance. A Recycling lock
    is not required: it may not be visible yet when the notice arrives.

    An instance it does not show at all is not refused: it is released (a spot instance with a
    notice has lived past its protection period, so this is no read-after-create lag). Its
    memberships are removed at once, without weight 0 (a released instance serves nothing):
    only backends whose server no longer exists in this region can match, exactly what the
    sweep's released-backend scan removes, so a forged id of another account or region can
    touch nothing (a CLB's backends are its own account's instances in its own region)."""
    if instance is None:
        return None
    if not instance.is_spot:
        return (f"not a spot instance (SpotStrategy {instance.spot_strategy or 'NoSpot'}): "
                "a forged or misrouted notice; nothing drained")
    return None


def joinable(entry: EntryLike, notice_time: datetime, window_s: float) -> bool:
    """A notice joins a drain that is still open, or whose notice lies within the notice
    period of its own: one notice, however many copies and envelopes, is one drain; a second
    real interruption needs the instance restarted, far more than a notice period later."""
    try:
        status = DrainStatus(entry.status)
    except ValueError:
        return False
    if status in OPEN_DRAIN:
        return True
    other = parse_iso_or_none(entry.data.get("notice_time"))
    return other is not None and abs((other - notice_time).total_seconds()) <= window_s


def _sequence(entries: Sequence[EntryLike]) -> int:
    numbers = [len(entries)]
    for entry in entries:
        tail = entry.key.rsplit(":", 1)[-1]
        if tail.isdigit():
            numbers.append(int(tail))
    return max(numbers) + 1


def _tag(settings: Settings) -> tuple[str, str] | None:
    if not settings.lb_tag:
        return None
    key, _, value = settings.lb_tag.partition("=")
    return key.strip(), value.strip()


def lb_scope(lb: LbPort, settings: Settings, region: str) -> list[str]:
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


def full_scope(clients: ClientsPort, settings: Settings, region: str,
               clb_ids: Sequence[str]) -> LbScope:
    """The pools in scope in ``region``, per product in ``lb_products``: the CLBs ``clb_ids``
    (:func:`lb_scope`); ALB/NLB server groups by ``alb_group_ids`` / ``nlb_group_ids`` in the
    function's own region, else those tagged ``lb_tag`` (none tagged: the product is out of
    scope), else every group of the product."""
    products = {Product(p) for p in settings.lb_products}
    tag = _tag(settings)
    ids: dict[Product, tuple[str, ...]] = {}
    for product, configured in ((Product.ALB, settings.alb_group_ids),
                                (Product.NLB, settings.nlb_group_ids)):
        if product not in products:
            continue
        if configured and region == settings.region:
            ids[product] = tuple(dict.fromkeys(configured))
        elif tag is not None or configured:
            adapter = clients.alb if product is Product.ALB else clients.nlb
            listed = adapter.list_server_groups(group_ids=configured, tag=tag)
            ids[product] = tuple(sorted(g.group_id for g in listed))
            if not ids[product]:
                products.discard(product)
        else:
            emit(log, "load balancer scope unbounded", level=30, region=region,
                 product=product.value,
                 reason="neither group ids nor lb_tag is set: every server group is searched")
    return LbScope(clb_ids=tuple(clb_ids), alb_group_ids=ids.get(Product.ALB, ()),
                   nlb_group_ids=ids.get(Product.NLB, ()), products=frozenset(products))


def in_service(instance: Instance | None) -> bool:
    """Running with no recycling lock: not (or not yet) taken by the interruption."""
    return (instance is not None and instance.status == "Running"
            and "recycling" not in instance.lock_reasons)


# --- the drainer -----------------------------------------------------------------------------

Hook = Callable[[str, StepName, Run], None]


class Drainer:
    """Drains spot instances; one per invocation, safe to share between its threads.

    ``hook(point, step, run)`` is called at ``before`` / ``acted`` (cloud work done, not yet
    recorded) / ``after`` of every step: tests raise from it to kill a drain at any point."""

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
        hook: Hook | None = None,
        steps: Sequence[Step] | None = None,
    ) -> None:
        self.store = store
        self._clients = clients  # a factory gives each thread its own adapters (SDK client)
        self._local = threading.local()
        self.settings = settings
        self.notifier = notifier
        self.clock = clock
        self.sleep = sleep
        # Unique per invocation even when the platform reuses a request id for its retry.
        self.owner = f"{owner or 'drain'}:{uuid.uuid4().hex[:12]}"
        self.hook = hook
        self._steps = steps
        self._scopes: dict[str, list[str]] = {}
        self._full_scopes: dict[str, LbScope] = {}
        self._scope_lock = threading.Lock()
        # The drains of one invocation share their calls per group (shared.spot.batch); the
        # window is waited only while more than one drain runs here.
        self.coalescer = Coalescer(settings.drain_batch_window_s)
        self.queue = GroupQueue(settings.drain_batch_window_s)  # one writer per group and step
        self.reads = Coalescer(settings.drain_batch_window_s)  # ... and one read per group
        # The last read of each group (when it was started, monotonic; what it listed): a
        # drain verifying its removal takes a read started after its removal ended, whoever
        # made it, so a tick reads a group once for all the drains it removed there.
        self._last_read: dict[tuple[Any, ...], tuple[float, list[Membership]]] = {}
        self._active = 0
        self.batch_size = 1  # notices of different instances delivered together (the handler's)
        self.index = (MembershipIndex(store, clock)  # type: ignore[arg-type]
                      if settings.lb_index and hasattr(store, "index_lookup") else None)

    @property
    def steps(self) -> Sequence[Step]:
        return self._steps if self._steps is not None else STEPS  # STEPS read at call time

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
        return self.clients.for_region(region)

    def phase(self, run: Run) -> Phase:
        return run.deadline.phase(self.clock())

    # --- entry points --------------------------------------------------------------------

    def drain(self, event: EcsEvent, *, party: Party | None = None) -> DrainResult:
        """Drain the instance of one interruption notice (module docstring). ``party``: its
        pass through the delivered batch's meeting point before its first write (weight 0, or
        the removal on the fast path), given up whatever happens (duplicate, refused, nothing
        to remove, failed) so no other drain waits for it."""
        try:
            return self._drain(event, party)
        finally:
            if party is not None:
                party.arrive(wait=False)

    def _drain(self, event: EcsEvent, party: Party | None) -> DrainResult:
        iid = event.instance_id
        if iid is None:
            raise ValueError(f"interruption {event.event_id} names no instance")
        deadline = Deadline.for_notice(event.event_time, self.settings)
        now = self.clock()
        region = event.region or self.settings.region
        emit(log, "drain decision", event_id=event.event_id, instance_id=iid, region=region,
             decision=deadline.phase(now).value, time_left_s=round(deadline.time_left_s(now), 3),
             deadline=iso(deadline.at), dry_run=self.settings.dry_run or None)
        history = list(self.store.ledger_find(Kind.DRAIN.value, instance_id=iid))
        joined = self._joined(history, event.event_time)
        if self.settings.dry_run:
            return self._dry_run(event, iid, deadline, region, joined)
        if joined is not None:
            return self._join(joined, event, party)
        instance = self._describe(iid, region)
        refusal = notice_refusal(instance, region)
        if refusal is not None:
            return self._refuse(event, iid, deadline, region, refusal)
        key = ledger.drain_key(iid, _sequence(history))
        initial: dict[str, Any] = {
            "event_id": event.event_id, "envelope": event.envelope.value, "region": region,
            "notice_time": iso(deadline.notice_time), "deadline": iso(deadline.at),
            "instance": {"status": instance.status if instance else None,
                         "spot_strategy": instance.spot_strategy if instance else None,
                         "lock_reasons": list(instance.lock_reasons) if instance else [],
                         "private_ips": list(instance.private_ips) if instance else [],
                         "eni_ids": list(instance.eni_ids) if instance else [],
                         "vpc_id": instance.vpc_id if instance else None},
            "verified_at": iso(now),
            "index_keys": instance_keys(iid, instance.private_ips if instance else (),
                                        instance.eni_ids if instance else ()),
        }
        if instance is None:
            initial["released"] = True
            initial["reason"] = (f"instance not found in {region}: released already; its "
                                 "memberships removed at once, without the gentle wait")
        got = ledger.acquire(self.store, key, kind=Kind.DRAIN, owner=self.owner,
                             until=self._lease_until(deadline, now), now=now, instance_id=iid,
                             data=initial, status=DrainStatus.CLAIMED,
                             finished=REMOVED_DRAIN | FINISHED_DRAIN)
        if not isinstance(got, Acquired):  # a concurrent copy of this notice finished first
            return self._duplicate(got.entry, event)
        emit(log, "drain claimed", event_id=event.event_id, instance_id=iid, key=key,
             generation=got.lease.generation, created=got.created)
        run = self._run_of(got, event.event_id)
        run.party = party
        return self._run(run)

    def resume(self, entry: EntryLike, *, allow_wait: bool = False,
               party: Party | None = None) -> DrainResult | None:
        """Take an unfinished drain over (its lease expired) and finish it: the sweep's path.
        None when it is finished already. ``party``: its pass through the finisher round's
        meeting point before the removal (shared.spot.finish), given up whatever happens
        (taken by another, failed, no removal) so no other drain waits for it."""
        try:
            return self._resume(entry, allow_wait, party)
        finally:
            if party is not None:
                party.arrive(wait=False)

    def _resume(self, entry: EntryLike, allow_wait: bool, party: Party | None
                ) -> DrainResult | None:
        now = self.clock()
        deadline = _deadline_of(entry.data, self.settings)
        # A taker that does not wait leases no wait: one that dies holds the drain only for the
        # grace (the finisher's deadline proof counts on it; Deadline.removal_schedulable).
        got = ledger.acquire(self.store, entry.key, kind=Kind.DRAIN, owner=self.owner,
                             until=self._lease_until(deadline, now, None if allow_wait else 0.0),
                             now=now, finished=REMOVED_DRAIN | FINISHED_DRAIN)
        if not isinstance(got, Acquired):
            return None
        run = self._run_of(got, str(entry.data.get("event_id") or ""))
        run.allow_wait = allow_wait
        if party is not None and run.status in step_named(StepName.REMOVE, self.steps).after:
            run.party = party
        elif party is not None:  # removed already, verify left: nobody waits for it
            party.arrive(wait=False)
        return self._run(run)

    # --- claim, join, takeover -----------------------------------------------------------

    def _joined(self, history: Sequence[EntryLike], notice_time: datetime) -> EntryLike | None:
        for entry in reversed(history):  # newest first
            if joinable(entry, notice_time, float(self.settings.spot_notice_s)):
                return entry
        return None

    def _join(self, entry: EntryLike, event: EcsEvent, party: Party | None = None) -> DrainResult:
        status = DrainStatus(entry.status)
        if status not in OPEN_DRAIN:
            return self._duplicate(entry, event)
        deadline = _deadline_of(entry.data, self.settings)
        now = self.clock()
        # A live lease raises LeaseHeldError here: the platform retries this delivery.
        got = ledger.acquire(self.store, entry.key, kind=Kind.DRAIN, owner=self.owner,
                             until=self._lease_until(deadline, now), now=now,
                             finished=REMOVED_DRAIN | FINISHED_DRAIN)
        if not isinstance(got, Acquired):
            return self._duplicate(got.entry, event)
        emit(log, "drain resumed", event_id=event.event_id, instance_id=entry.instance_id,
             key=entry.key, resumed_from=got.previous, generation=got.lease.generation)
        run = self._run_of(got, event.event_id)
        run.party = party
        return self._run(run)

    def _run_of(self, got: Acquired, event_id: str) -> Run:
        data = dict(got.entry.data)
        data["api_writes_before"] = int(data.get("api_writes") or 0)
        return Run(
            lease=got.lease, instance_id=got.entry.instance_id or "", event_id=event_id,
            region=str(data.get("region") or self.settings.region),
            deadline=_deadline_of(data, self.settings), status=DrainStatus(got.entry.status),
            data=data, resumed_from=None if got.created else DrainStatus(got.entry.status),
        )

    def _lease_until(self, deadline: Deadline, now: datetime, wait_s: float | None = None) -> datetime:
        if wait_s is None:
            wait_s = deadline.wait_s(now, self.settings.drain_time_s)
        return now + timedelta(seconds=wait_s + self.settings.drain_lease_grace_s)

    def _describe(self, iid: str, region: str) -> Instance | None:
        """DescribeInstances in the notice's region; its errors raise (the platform retries).
        The drains of one invocation describe their instances in one call."""
        ecs = self.clients_in(region).ecs
        # Alone, no window: joined only by a call under way or made (its replacement's).
        alone = self._active <= 1 and self.batch_size <= 1
        found, _ = self.coalescer.call(("describe", region), [iid], ecs.describe_instances,
                                       window_s=0.0 if alone else None, reuse=True)
        return found.get(iid)

    def _duplicate(self, entry: EntryLike, event: EcsEvent) -> DrainResult:
        reason = f"already {entry.status}: {entry.data.get('outcome')}"
        emit(log, "drain skipped", event_id=event.event_id, instance_id=entry.instance_id,
             key=entry.key, decision=Outcome.DUPLICATE.value, reason=reason)
        return DrainResult.recorded(entry, event.event_id, reason)

    def _refuse(self, event: EcsEvent, iid: str, deadline: Deadline, region: str,
                reason: str) -> DrainResult:
        emit(log, "drain refused", level=30, event_id=event.event_id, instance_id=iid,
             region=region, decision=Outcome.REFUSED.value, reason=reason)
        stamp = deadline.notice_time.strftime("%Y%m%dT%H%M%SZ")
        result = DrainResult(
            instance_id=iid, outcome=Outcome.REFUSED, event_id=event.event_id,
            key=f"drain-refused:{iid}:{stamp}", phase=deadline.phase(self.clock()),
            reason=reason, dry_run=self.settings.dry_run)
        self._notify(result, deadline)
        return result

    # --- the machine ---------------------------------------------------------------------

    def rule(self, name: StepName) -> Resume:
        return step_named(name, self.steps).resume if any(
            s.name is name for s in self.steps) else Resume.REDO

    def next_step(self, run: Run) -> Step | None:
        for step in self.steps:
            if run.status in step.after and step.when(self, run):
                return step
        return None

    def _run(self, run: Run) -> DrainResult:
        with self._scope_lock:
            self._active += 1
        try:
            return self._run_steps(run)
        finally:
            with self._scope_lock:
                self._active -= 1

    def _coalesced(self, key: tuple[Any, ...], items: Sequence[Any],
                   send: Callable[[list[Any]], Any],
                   coalescer: Coalescer | None = None) -> tuple[Any, bool]:
        """One call for the drains of this invocation that need the same one at once; alone,
        the call is made at once."""
        if self._active <= 1 and self.batch_size <= 1:
            return send(list(items)), True
        return (coalescer or self.coalescer).call(key, items, send)

    def _run_steps(self, run: Run) -> DrainResult:
        try:
            if run.resumed_from is not None:
                self._apply_resume_rule(run)
            while run.status in OPEN_DRAIN:
                step = self.next_step(run)
                if step is None and run.data.get("remove_after"):
                    return self._scheduled(run)
                if step is None:
                    raise AssertionError(f"no step runs after {run.status.value}")
                self._call_hook("before", step.name, run)
                status, data = step.act(self, run)
                if status not in step.records:
                    raise AssertionError(f"{step.name.value} may not record {status.value}")
                self._call_hook("acted", step.name, run)
                run.record(status, **data)
                self._call_hook("after", step.name, run)
        except Exception:
            # A failure we see: give the lease up so the platform's retry takes over at once.
            # A kill (SIGKILL, the FC timeout; BaseException in tests) releases nothing: the
            # lease then expires and the next delivery or the sweep takes over.
            self._release(run)
            raise
        return self._result(run)

    def _apply_resume_rule(self, run: Run) -> None:
        """A takeover: the previous holder died inside the step after ``run.status``."""
        step = self.next_step(run)
        if step is not None and step.resume is Resume.REFIND:
            status, data = self.find(run)
            run.record(status, **data)

    def _call_hook(self, point: str, name: StepName, run: Run) -> None:
        if self.hook is not None:
            self.hook(point, name, run)

    def _release(self, run: Run) -> None:
        """After a failure: drop the lease so the platform's retry takes over at once."""
        try:
            run.lease.release()
        except Exception as err:  # the original failure matters more than this one
            emit(log, "lease release failed", level=30, key=run.key, error=str(err))

    # --- the steps -----------------------------------------------------------------------

    def find(self, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
        """Discover the memberships and record their ORIGINAL weights (before any write)."""
        now = self.clock()
        if run.deadline.phase(now) is Phase.LEFTOVER:
            instance = self._describe(run.instance_id, run.region)
            if in_service(instance):
                return DrainStatus.DONE, self._final(
                    run, Outcome.SKIPPED, Phase.LEFTOVER, [], reason=(
                        "notice long past its deadline and the instance is Running without a "
                        "recycling lock: not reclaimed, left in its groups"))
        indexed = self._find_indexed(run)
        if indexed is not None:
            removable, kept, scope, index_report = indexed
        else:
            removable, kept, scope = self._discover_in_time(run)
            index_report = {"used": False}
            if self.index is not None:  # what the scan of the scope found keeps the index fresh
                self.index.record_found(run.region, self._keys(run), [*removable, *kept],
                                        self._owner(run))
        master_slave = [m for m in kept if m.group_kind is GroupKind.MASTER_SLAVE]
        managed = [m for m in kept if m.group_kind is not GroupKind.MASTER_SLAVE]
        history = record.drain_history(self.store, run.instance_id, exclude=run.key)
        recorded, unknown = record.original_weights(removable, history)
        data: dict[str, Any] = {
            "memberships": [m.snapshot() for m in recorded],
            "master_slave": [m.snapshot() for m in master_slave],
            "managed": [m.snapshot() for m in managed],
            "unknown_weights": unknown, "scope": scope, "found_at": iso(self.clock()),
            "index": index_report,
        }
        if not recorded:
            run.data.update(data)
            return DrainStatus.DONE, {**data, **self._final(
                run, Outcome.NOTHING_TO_REMOVE, run.deadline.phase(self.clock()), [])}
        return DrainStatus.FOUND, data

    def weight0(self, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
        """Stop new traffic: each membership by the best path its group offers. A group that
        drains connections natively, with a timeout that ends before deadline - margin, gets
        its removal at once (its own drain is the gentle wait); every other one weight 0."""
        until = run.deadline.at - timedelta(seconds=run.deadline.margin_s)
        left = (until - self.clock()).total_seconds()
        memberships = run.memberships()
        # Alone, a group that drains connections natively is removed at once. In a burst (other
        # drains in this invocation) it takes weight 0 like the others: a removal keeps such a
        # group busy for its whole drain timeout, so a second delivery's drains could not stop
        # their traffic there before it ends; weight 0 keeps it busy for a job, and the
        # removal after the wait still drains the connections.
        burst = self._active > 1 or self.batch_size > 1
        if run.party is not None:  # a delivered batch: weight 0 together with the others
            run.party.arrive()
        native = [] if burst else [
            m for m in memberships
            if m.product is not Product.CLB and m.drains_natively_within(left)]
        data: dict[str, Any] = {}
        # Weight 0 first: a natively draining group may be busy with another removal for its
        # whole timeout (a burst), and the other groups' traffic must not wait for it.
        gentle = [m for m in memberships if m not in native]
        queued = self._native_submit(run, native)  # sent meanwhile (a burst's shared removal)
        failed_weight = self._rounds("weight0", run, gentle, until) if gentle else None
        if native:
            jobs, failed = self._native_removal(run, native, queued)
            native = [m for m in native if m not in failed]
            data["native"] = [m.snapshot() for m in native]
            data["native_jobs"] = jobs
            if failed and failed_weight is None:  # refused: they take the weight-0 path
                failed_weight = self._rounds("weight0", run, failed, until)
                gentle += failed
        data["weighted"] = len(gentle)
        if failed_weight is None:
            return DrainStatus.WEIGHTED, {**data, "weight0_at": iso(self.clock())}
        return DrainStatus.FOUND, {
            **data, "weight_failed": True,
            "reason": "weight change failed: removed without the gentle wait"}

    def _native_submit(self, run: Run, native: Sequence[Membership]
                       ) -> dict[GroupRef, Ticket[list[Write]]]:
        """With other drains in this invocation: queue each natively draining group's removal
        now (shared with theirs, shared.spot.batch.GroupQueue), before the weight-0 writes,
        so that a burst's removals meet in one write per group. Alone: nothing queued."""
        if not native or (self._active <= 1 and self.batch_size <= 1):
            return {}
        lbs = self.clients_in(run.region).lbs
        seed = _native_seed(run)
        queued: dict[GroupRef, Ticket[list[Write]]] = {}
        for group, members in groups(native).items():
            timeout = float(max((m.drain_timeout_s or 0) for m in members)) + NATIVE_HOLD_SLACK_S
            queued[group] = self.queue.submit(
                ("native", run.region, group), members,
                lambda batch: lbs.remove(batch, token_seed=seed),
                hold=lambda writes, timeout=timeout: lbs.wait(writes, timeout_s=timeout),  # type: ignore[misc]
                window_s=max(self.queue.window_s, NATIVE_WINDOW_S))
        return queued

    def _native_removal(self, run: Run, native: Sequence[Membership],
                        queued: Mapping[GroupRef, Ticket[list[Write]]] | None = None,
                        ) -> tuple[list[dict[str, Any]], list[Membership]]:
        """Send the removals of the natively draining groups (jobs not awaited here: the
        group drains for its timeout; the remove step waits for them). Returns the jobs and
        the memberships whose removal was refused (they take the weight-0 path)."""
        lbs = self.clients_in(run.region).lbs
        jobs: list[dict[str, Any]] = []
        failed: list[Membership] = []
        for group, members in groups(native).items():
            try:
                ticket = (queued or {}).get(group)
                if ticket is None:
                    writes = lbs.remove(members, token_seed=_native_seed(run))
                else:
                    shared = ticket.wait() or []
                    writes = shared if ticket.first else [
                        Write(w.group, w.action, tuple(members), w.job_id, w.token)
                        for w in shared]
            except NotFoundError:
                continue  # the group is gone: nothing to drain there
            except CloudError as err:
                emit(log, "native drain refused", level=30, instance_id=run.instance_id,
                     group=str(members[0].group), code=err.code)
                failed.extend(members)
                continue
            run.writes += len(writes)
            jobs += [_job_record(w) for w in writes if w.job_id]
        emit(log, "native drain started", instance_id=run.instance_id, key=run.key,
             groups=len(groups(native)) - len(groups(failed)), jobs=len(jobs))
        return jobs, failed

    def wait(self, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
        now = self.clock()
        wait = 0.0
        # Every membership drains natively (weight0 weighted none): the groups wait themselves.
        nothing_weighted = run.data.get("weighted") == 0
        if (run.allow_wait and run.deadline.phase(now) is not Phase.LEFTOVER
                and not nothing_weighted):
            # Resume.OWED: the drain time already served since weight 0 counts (a fresh run
            # weighted just now, so the same sum gives it the whole drain time).
            served_since = (parse_iso_or_none(run.data.get("weight0_at"))
                            if self.rule(StepName.WAIT) is Resume.OWED else None)
            wait = run.deadline.wait_s(now, self.settings.drain_time_s, served_since)
        remove_after = now + timedelta(seconds=wait)
        if wait > 0 and run.deadline.removal_schedulable(
                remove_after, self.settings.drain_finish_every_s, self.settings.drain_lease_grace_s,
                self.settings.drain_round_s):
            # No instance asleep through the wait: the lease runs until the removal is due, the
            # finisher tick (or a redelivery, or the sweep) takes it over then.
            emit(log, "draining", instance_id=run.instance_id, key=run.key,
                 wait_s=round(wait, 3), remove_after=iso(remove_after), scheduled=True,
                 time_left_s=round(run.deadline.time_left_s(now), 3))
            return DrainStatus.WAITED, {"remove_after": iso(remove_after),
                                        "scheduled_wait_s": round(wait, 3),
                                        "lease_until": iso(remove_after)}
        emit(log, "draining", instance_id=run.instance_id, key=run.key, wait_s=round(wait, 3),
             time_left_s=round(run.deadline.time_left_s(now), 3))
        if wait > 0:
            run.lease.renew(self._lease_until(run.deadline, now, wait))
            self.sleep(wait)
        return DrainStatus.WAITED, {"waited_at": iso(self.clock()), "waited_s": round(wait, 3)}

    def _scheduled(self, run: Run) -> DrainResult:
        """End the invocation at weight 0: the removal is due at ``remove_after``, the lease
        held until then (a taker that found it early hands it back the same way)."""
        remove_after = parse_iso_or_none(run.data.get("remove_after"))
        if remove_after is None:
            raise AssertionError(f"{run.key}: scheduled without remove_after")
        if parse_iso_or_none(run.data.get("lease_until")) != remove_after:
            run.lease.renew(remove_after)
            run.data["lease_until"] = iso(remove_after)
        every = self.settings.drain_finish_every_s
        reason = (f"weight 0; removal scheduled at {iso(remove_after)} for the finisher tick "
                  f"(every {every:g} s; latest start {iso(run.deadline.at)} minus the margin)")
        emit(log, "drain scheduled", event_id=run.event_id, instance_id=run.instance_id,
             key=run.key, decision=Outcome.SCHEDULED.value, remove_after=iso(remove_after),
             time_left_s=round(run.deadline.time_left_s(self.clock()), 3),
             generation=run.lease.generation)
        return DrainResult(
            instance_id=run.instance_id, outcome=Outcome.SCHEDULED, event_id=run.event_id,
            key=run.key, phase=Phase.GENTLE,
            reported_master_slave=tuple(summary(m) for m in run.memberships("master_slave")),
            reported_managed=tuple(summary(m) for m in run.memberships("managed")),
            time_left_s=round(run.deadline.time_left_s(remove_after), 3), reason=reason,
            unknown_weights=tuple(run.data.get("unknown_weights") or ()),
            index=run.data.get("index"),
        )

    def remove(self, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
        memberships = run.memberships()
        # The path is what was done, not where the clock is now: the gentle wait ends at
        # deadline - margin by design, so the clock alone would always say "fast" here.
        path = run.deadline.phase(self.clock())
        if run.status in (DrainStatus.WEIGHTED, DrainStatus.WAITED) and path is not Phase.LEFTOVER:
            path = Phase.GENTLE
        elif path is Phase.GENTLE:
            path = Phase.FAST
        native = {m.key for m in memberships_of(run.data, "native")}
        targets = [m for m in memberships if m.key not in native]
        # A taker may meet a removal cut short: re-read what is left. Not after a scheduled
        # wait (the holder ended at ``waited`` on purpose, nothing of the removal was sent; a
        # burst's tick would otherwise read every group again before its first removal): a
        # member already gone is removed as a no-op and verify reads the groups after.
        scheduled = (run.resumed_from is DrainStatus.WAITED and bool(run.data.get("remove_after"))
                     and not run.data.get("removal_started_at"))
        if (run.resumed_from is not None and self.rule(StepName.REMOVE) is Resume.PRESENT
                and not scheduled):
            targets = self._present(run, targets)  # the dead holder may have removed some
        if scheduled:
            run.lease.save(removal_started_at=iso(self.clock()))
        peers = self._native_peers(run, targets) if path is Phase.GENTLE else []
        if run.party is not None:  # a finisher round: remove together with the others
            run.party.arrive()
        try:
            err = self._rounds("remove", run, [*targets, *peers], run.deadline.at) if targets else None
        except CloudError:
            if not peers:
                raise
            err = self._rounds("remove", run, targets, run.deadline.at)  # without the others'
        if err is not None:  # out of time: the platform's retry (or the sweep) goes on
            raise err
        self._native_done(run)
        removed_at = self.clock()
        if self.index is not None:
            self.index.forget(run.region, self._keys(run), self._owner(run))
        time_left = run.deadline.time_left_s(removed_at)
        return DrainStatus.REMOVED, {
            "removed_at": iso(removed_at), "path": path.value,
            "removed": [summary(m) for m in memberships],
            "notice_to_removed_s": round((removed_at - run.deadline.notice_time).total_seconds(), 3),
            "time_left_s": round(time_left, 3),
            "missed_deadline": path is Phase.LEFTOVER or time_left < 0,
        }

    def _native_peers(self, run: Run, targets: Sequence[Membership]) -> list[Membership]:
        """The other open drains' memberships of the natively draining groups this removal
        writes to, taken into the same write. Such a group is busy (``Configuring``) for its
        whole drain timeout after a removal, so a burst's removals arriving from different
        deliveries and ticks would otherwise queue one drain timeout after another. Only
        drains already at weight 0 (``weighted``/``waited``) whose deadline leaves the group's
        drain timeout: their connections then drain natively, as a lone drain's do (weight0).
        Their own removal later finds the member gone (no write); their verify reads it."""
        native = {m.group for m in targets if m.product is not Product.CLB and m.native_drain}
        if not native:
            return []
        now = self.clock()
        mine = set(targets)
        peers: list[Membership] = []
        for status in (DrainStatus.WEIGHTED, DrainStatus.WAITED):
            for entry in self.store.ledger_find(Kind.DRAIN.value, status=status.value,
                                                limit=100_000):
                data = entry.data
                if (entry.key == run.key or not data.get("weight0_at")
                        or str(data.get("region") or self.settings.region) != run.region):
                    continue
                deadline = parse_iso_or_none(data.get("deadline"))
                if deadline is None:
                    continue
                left = (deadline - now).total_seconds() - run.deadline.margin_s
                removing = {m.key for m in memberships_of(data, "native")}  # removed at once
                peers += [m for m in memberships_of(data) if m.group in native
                          and m.key not in removing and m not in mine and m not in peers
                          and m.drains_natively_within(left)]
        if peers:
            emit(log, "native removals shared", instance_id=run.instance_id, key=run.key,
                 groups=len(groups(peers)), others=len(peers))
        return peers

    def verify(self, run: Run) -> tuple[DrainStatus, dict[str, Any]]:
        memberships = run.memberships()
        lb = self.clients_in(run.region).lb
        still: list[Membership] = []
        removed_again_at: datetime | None = None
        since = time.monotonic()  # the removal ended: any read started since shows it
        for attempt in range(VERIFY_ROUNDS):
            still = self._read_patiently(
                run, lambda since=since: self._present(run, memberships, lb, since=since))  # type: ignore[misc]
            if not still or attempt == VERIFY_ROUNDS - 1:
                break
            emit(log, "still registered", level=30, instance_id=run.instance_id,
                 memberships=[label(summary(m)) for m in still], attempt=attempt + 1)
            self._per_group("remove", still, run)
            since = time.monotonic()
            removed_again_at = self.clock()
            self.sleep(VERIFY_PAUSE_S)
        # A membership removed again here left only then: past the deadline, that is a miss even
        # though the remove step itself finished in time.
        late = removed_again_at is not None and run.deadline.time_left_s(removed_again_at) < 0
        path = Phase(run.data.get("path") or Phase.FAST.value)
        if still:
            outcome = Outcome.PARTIAL
        elif path is Phase.GENTLE:
            outcome = Outcome.DRAINED
        elif path is Phase.FAST:
            outcome = Outcome.REMOVED
        else:
            outcome = Outcome.LEFTOVERS_REMOVED
        status = DrainStatus.PARTIAL if still else DrainStatus.DONE
        return status, self._final(run, outcome, path, still, late=late)

    def _read_patiently(self, run: Run, read: Callable[[], list[Membership]]) -> list[Membership]:
        """A verification read, again after jittered pauses while throttled or busy, until the
        deadline: the removal is done, so its check may wait for the API (a burst's shared scan
        reads the same action meanwhile) rather than hand the drain to the next tick."""
        for attempt in range(MAX_ROUNDS):
            try:
                return read()
            except CloudError as err:
                pause = ROUND_PAUSES_S[min(attempt, len(ROUND_PAUSES_S) - 1)]
                pause *= random.uniform(0.5, 1.0)
                if not err.retryable or run.deadline.time_left_s(self.clock()) - pause <= 0:
                    raise
                emit(log, "verification read failed", level=30, instance_id=run.instance_id,
                     code=err.code, attempt=attempt + 1)
                run.lease.renew(self.clock() + timedelta(
                    seconds=pause + self.settings.drain_lease_grace_s))
                self.sleep(pause)
        return read()

    def _final(self, run: Run, outcome: Outcome, path: Phase, leftover: Sequence[Membership],
               *, reason: str | None = None, late: bool = False) -> dict[str, Any]:
        return {
            "outcome": outcome.value, "path": run.data.get("path") or path.value,
            "leftover": [summary(m) for m in leftover], "verified_at": iso(self.clock()),
            "missed_deadline": (bool(run.data.get("missed_deadline")) or path is Phase.LEFTOVER
                                or late),
            "lease_until": None, "reason": reason or run.data.get("reason"),
        }

    def _native_done(self, run: Run) -> None:
        """Wait (until the deadline) for the removal jobs of the natively draining groups."""
        jobs = run.data.get("native_jobs") or ()
        if not jobs:
            return
        writes = [_job_write(j) for j in jobs]
        longest = max((m.drain_timeout_s or 0 for m in memberships_of(run.data, "native")),
                      default=0)
        wait = min(max(run.deadline.time_left_s(self.clock()), 0.0), longest + JOB_SLACK_S)
        run.lease.renew(self.clock() + timedelta(seconds=wait + self.settings.drain_lease_grace_s))
        pending = self.clients_in(run.region).lbs.wait(writes, timeout_s=wait)
        if pending:
            emit(log, "native drain unfinished", level=30, instance_id=run.instance_id,
                 jobs=[w.job_id for w in pending])

    # --- cloud work ----------------------------------------------------------------------

    def scope(self, region: str | None = None) -> list[str]:
        """The CLBs in scope (none when CLB is not in ``lb_products``)."""
        region = region or self.settings.region
        if Product.CLB.value not in self.settings.lb_products:
            return []
        with self._scope_lock:
            if region not in self._scopes:
                self._scopes[region] = lb_scope(self.clients_in(region).lb, self.settings, region)
            return list(self._scopes[region])

    def full_scope(self, region: str | None = None) -> LbScope:
        """Every product's pools in scope (:func:`full_scope`), resolved once per region."""
        region = region or self.settings.region
        clb = self.scope(region)
        with self._scope_lock:
            if region not in self._full_scopes:
                self._full_scopes[region] = full_scope(
                    self.clients_in(region), self.settings, region, clb)
            return self._full_scopes[region]

    def _present(self, run: Run, memberships: Sequence[Membership],
                 lb: LbPort | None = None, *, since: float | None = None) -> list[Membership]:
        """The memberships still registered. A member leaving a group that drains connections
        natively (``Removing``) is not: its removal is under way. ``since`` (monotonic): a
        read of the group started at or after it, by any drain of this invocation, serves."""
        clients = self.clients_in(run.region)
        present: list[Membership] = []
        for group, members in groups(memberships).items():
            key = ("members", run.region, group)
            with self._scope_lock:
                last = self._last_read.get(key)
            if since is not None and last is not None and last[0] >= since:
                current = last[1]
            else:
                started = time.monotonic()
                try:
                    current, _ = self._coalesced(  # one read of a group for concurrent drains
                        key, [],
                        lambda _none, group=group: self._members_of(clients, group, lb),  # type: ignore[misc]
                        self.reads)
                except NotFoundError:
                    continue
                with self._scope_lock:
                    last = self._last_read.get(key)
                    if last is None or last[0] < started:
                        self._last_read[key] = (started, list(current))
            current = [c for c in current if not (c.native_drain and c.status == "Removing")]
            present.extend(still_there(members, current))
        return present

    def _keys(self, run: Run) -> list[str]:
        return list(run.data.get("index_keys") or [run.instance_id])

    @staticmethod
    def _owner(run: Run) -> Owner:
        return Owner.of(run.instance_id, run.data)

    def _find_indexed(self, run: Run
                      ) -> tuple[list[Membership], list[Membership], list[str], dict[str, Any]] | None:
        """The memberships the index knows (shared.spot.index), or None when it cannot answer
        (off, or the region never scanned): no cloud read. Found by IP, only a member
        registered by that IP (eni / Ip type), in the instance's VPC, counts (Owner)."""
        if self.index is None:
            return None
        lookup = self.index.lookup(run.region, self._keys(run), self._owner(run))
        if not lookup.known:
            return None
        found = [Membership.from_snapshot(s) for s in lookup.snapshots]
        removable = [m for m in found if m.removable]
        kept = [m for m in found if reported(m)]
        entry = self.store.ledger_get(f"lbscan:{run.region}")
        scope = list((entry.data.get("scope") if entry is not None else None) or [])
        report = {"used": True, **lookup.report(self.clock())}
        emit(log, "memberships found", instance_id=run.instance_id, source="index",
             removable=len(removable), reported=len(kept), index_age_s=report["age_s"])
        return removable, kept, scope, report

    @staticmethod
    def _members_of(clients: ClientsPort, group: GroupRef,
                    lb: LbPort | None = None) -> list[Membership]:
        if group.product is Product.CLB:
            return (lb or clients.lb).group_members(group.load_balancer_id, group.kind,
                                                    group.group_id)
        return clients.lbs.members_of(group)

    def _discover_in_time(self, run: Run) -> tuple[list[Membership], list[Membership], list[str]]:
        """Discovery, retried in jittered rounds while throttled, never past the deadline."""
        instance = run.data.get("instance")
        ips = list(instance.get("private_ips") or ()) if isinstance(instance, Mapping) else []
        for attempt in range(MAX_ROUNDS):
            try:
                return self._discover(run.instance_id, run.region, [*self._keys(run), *ips],
                                      self._owner(run))
            except TransientError as err:
                pause = ROUND_PAUSES_S[min(attempt, len(ROUND_PAUSES_S) - 1)]
                pause *= random.uniform(0.5, 1.0)
                left = run.deadline.time_left_s(self.clock())
                emit(log, "step failed", level=30, instance_id=run.instance_id,
                     step="discover", code=err.code, attempt=attempt + 1,
                     time_left_s=round(left, 3))
                if left - pause <= 0 or attempt == MAX_ROUNDS - 1:
                    raise
                run.lease.renew(self.clock() + timedelta(seconds=pause + self.settings.drain_lease_grace_s))
                self.sleep(pause)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _discover(self, iid: str, region: str, keys: Sequence[str] = (),
                  owner: Owner | None = None
                  ) -> tuple[list[Membership], list[Membership], list[str]]:
        """(removable, reported, CLB scope): every membership of the instance on the products
        in scope; ALB/NLB also by its other ``keys`` (ENI ids, private IPs: Eni and Ip
        members), those of ``owner`` only. Reported: CLB master-slave members and groups a
        controller manages."""
        scope = self.scope(region)
        clients = self.clients_in(region)
        found: list[Membership] = []
        hinted: set[str] = set()
        if scope:
            lb_client = clients.lb
            try:
                hinted = {lb.id for lb in lb_client.list_load_balancers(
                    ids=self.settings.lb_ids, tag=_tag(self.settings), server_id=iid)}
            except CloudError as err:  # only a hint: scan in the plain order
                emit(log, "server id hint failed", level=30, instance_id=iid, code=err.code)
            ordered = ([lb for lb in scope if lb in hinted]
                       + [lb for lb in scope if lb not in hinted])
            found = lb_client.find_memberships(iid, ordered)
        products = set(self.settings.lb_products) - {Product.CLB.value}
        if products:
            full = self.full_scope(region)
            others = replace(full, products=full.products - {Product.CLB})
            found += [m for m in clients.lbs.find([iid, *keys], others)
                      if owner is None or owner.owns(m)]
        removable = [m for m in found if m.removable]
        kept = [m for m in found if reported(m)]
        emit(log, "memberships found", instance_id=iid, scope=len(scope), hinted=len(hinted),
             removable=len(removable), master_slave=len(kept),
             products=sorted({m.product.value for m in found}) or None,
             unhinted=sorted({m.load_balancer_id for m in found
                              if m.product is Product.CLB} - hinted) or None)
        return removable, kept, scope

    def _per_group(self, operation: str, memberships: Sequence[Membership], run: Run,
                   until: datetime | None = None) -> list[tuple[list[Membership], CloudError]]:
        """Apply ``operation`` group by group, so one failing or vanished group cannot keep
        the instance in the others. Returns the groups that failed, with their errors. The
        drains of this invocation at the same step share the calls: one write per group for
        all of them (shared.spot.batch)."""
        if self._active <= 1 and self.batch_size <= 1:
            calls, failures = self._write_groups(operation, memberships, run, until)
            run.writes += calls
            return failures
        tickets = [(members, self.queue.submit(
            (operation, run.region, group), members,
            lambda batch: self._write_retrying(operation, batch, run, until)))
            for group, members in groups(memberships).items()]
        mine = set(memberships)
        failed: list[tuple[list[Membership], CloudError]] = []
        for _members, ticket in tickets:
            calls, failures = ticket.wait() or (0, [])
            run.writes += calls if ticket.first else 0
            failed += [([m for m in members if m in mine], err) for members, err in failures
                       if any(m in mine for m in members)]
        return failed

    def _write_retrying(self, operation: str, memberships: Sequence[Membership], run: Run,
                        until: datetime | None
                        ) -> tuple[int, list[tuple[list[Membership], CloudError]]]:
        """A shared write, retried in the group's writer while it fails with a retryable
        error (throttled, busy), so its callers' memberships stay in one write instead of
        each caller retrying on its own and splitting it."""
        calls = 0
        for attempt in range(MAX_ROUNDS):
            made, failures = self._write_groups(operation, memberships, run, until)
            calls += made
            if not failures or not all(err.retryable for _, err in failures):
                return calls, failures
            pause = ROUND_PAUSES_S[min(attempt, len(ROUND_PAUSES_S) - 1)] * random.uniform(0.5, 1.0)
            left = ((until - self.clock()).total_seconds() if until is not None
                    else float(JOB_WAIT_S))
            if left - pause <= 0:
                return calls, failures
            memberships = [m for members, _ in failures for m in members]
            self.sleep(pause)
        return calls, failures

    def _write_groups(self, operation: str, memberships: Sequence[Membership], run: Run,
                      until: datetime | None) -> tuple[int, list[tuple[list[Membership], CloudError]]]:
        """One write per group (per call limit); the ALB/NLB jobs of all groups then waited for
        together (one status poll per product and round), never past ``until``. Returns the
        calls made and the groups that failed, with their errors."""
        clients = self.clients_in(run.region)
        failures: list[tuple[list[Membership], CloudError]] = []
        pending: list[Write] = []
        made = 0
        for group, members in groups(memberships).items():
            try:
                if group.product is Product.CLB:
                    lb = clients.lb
                    calls = (lb.set_weights(members, 0) if operation == "weight0"
                             else lb.remove_members(members))
                else:
                    # A new token after a failed job (the same one answers the failed job
                    # again), and for every new holder: a run that died, or raised after a
                    # failed job, leaves no count behind, and its taker re-reads what it sends.
                    failed_before = run.failed_jobs.get(group, 0)
                    generation = run.lease.generation
                    seed = (f"{run.key}:{operation}" + (f":g{generation}" if generation else "")
                            + (f":{failed_before}" if failed_before else ""))
                    writes = (clients.lbs.set_weights(members, 0, token_seed=seed)
                              if operation == "weight0"
                              else clients.lbs.remove(members, token_seed=seed))
                    calls = len(writes)
                    pending += writes
            except NotFoundError as err:  # the group or load balancer is gone: nothing to do
                emit(log, "group gone", level=30, instance_id=members[0].server_id,
                     load_balancer_id=members[0].load_balancer_id, group_id=members[0].group_id,
                     code=err.code)
                continue
            except CloudError as err:
                failures.append((members, err))
                continue
            made += calls
        if pending:
            left = (until - self.clock()).total_seconds() if until is not None else JOB_WAIT_S
            left = min(left, job_wait_cap(operation, memberships))
            failed, unfinished = clients.lbs.wait_jobs(pending, timeout_s=max(left, JOB_MIN_WAIT_S))
            # NLB's GetJobStatus has no failed state: a job still unfinished at the end of the
            # wait may have failed, so the next write to its group takes a new token too (a
            # job still running then answers Conflict.Lock, retried; never a doubled effect).
            for write in failed + [w for w in unfinished if w.group.product is Product.NLB]:
                run.failed_jobs[write.group] = run.failed_jobs.get(write.group, 0) + 1
            for write in failed + unfinished:
                failures.append((list(write.members), TransientError(
                    "JobFailed" if write in failed else "JobNotFinished",
                    f"{write.action} job {write.job_id} did not succeed",
                    action=write.action, resource_ids=[str(write.group)], retryable=True)))
        return made, failures

    def _rounds(self, operation: str, run: Run, memberships: Sequence[Membership],
                until: datetime) -> CloudError | None:
        """Apply ``operation`` per group; retry the groups that failed with a retryable error
        in rounds, with jittered pauses, while a pause still ends before ``until``."""
        remaining = list(memberships)
        err: CloudError | None = None
        for attempt in range(MAX_ROUNDS):
            failures = self._per_group(operation, remaining, run, until)
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
            run.lease.renew(self.clock() + timedelta(seconds=pause + self.settings.drain_lease_grace_s))
            self.sleep(pause)
        return err

    # --- the result ----------------------------------------------------------------------

    def _result(self, run: Run) -> DrainResult:
        data = run.data
        result = DrainResult(
            instance_id=run.instance_id,
            outcome=Outcome(data.get("outcome") or Outcome.PARTIAL.value),
            event_id=run.event_id, key=run.key,
            phase=Phase(data.get("path") or Phase.FAST.value),
            removed=tuple(data.get("removed") or ()),
            reported_master_slave=tuple(summary(m) for m in run.memberships("master_slave")),
            reported_managed=tuple(summary(m) for m in run.memberships("managed")),
            time_left_s=data.get("time_left_s"),
            missed_deadline=bool(data.get("missed_deadline")),
            notice_to_removed_s=data.get("notice_to_removed_s"),
            leftover=tuple(data.get("leftover") or ()),
            reason=data.get("reason"),
            unknown_weights=tuple(data.get("unknown_weights") or ()),
            index=data.get("index"), scan=self._scan_findings(run),
        )
        emit(log, "drain finished", event_id=run.event_id, instance_id=run.instance_id,
             key=run.key, decision=result.outcome.value, path=result.phase.value,
             reason=result.reason, removed=len(result.removed),
             reported_master_slave=len(result.reported_master_slave),
             leftover=len(result.leftover), time_left_s=result.time_left_s,
             notice_to_removed_s=result.notice_to_removed_s,
             missed_deadline=result.missed_deadline, api_writes=data.get("api_writes"),
             generation=run.lease.generation)
        self._notify(result, run.deadline)
        return result

    def _scan_findings(self, run: Run) -> dict[str, Any] | None:
        """What a shared scan merged into this drain's entry meanwhile (shared.spot.scan)."""
        if self.index is None:
            return None
        entry = self.store.ledger_get(run.key)
        found = entry.data.get("scan") if entry is not None else None
        return dict(found) if isinstance(found, Mapping) else None

    def _notify(self, result: DrainResult, deadline: Deadline) -> None:
        if self.notifier is None:
            return
        notification = drain_notification(result, deadline)
        try:
            self.notifier.send(notification)
        except Exception as err:  # Notifier.send never raises; a fake might: never fail a drain
            emit(log, "notification failed", level=30, key=notification.key, error=str(err))

    # --- dry run -------------------------------------------------------------------------

    def _dry_run(self, event: EcsEvent, iid: str, deadline: Deadline, region: str,
                 joined: EntryLike | None) -> DrainResult:
        """Decide and log as usual; no mutating call, no ledger write."""
        if joined is not None and DrainStatus(joined.status) not in OPEN_DRAIN:
            return self._duplicate(joined, event)
        instance = self._describe(iid, region)
        refusal = notice_refusal(instance, region)
        if refusal is not None:
            return self._refuse(event, iid, deadline, region, refusal)
        key = ledger.drain_key(iid, 0, dry_run=True)
        phase = deadline.phase(self.clock())
        removable: list[Membership] = []
        kept: list[Membership] = []
        reason: str | None = None
        if phase is Phase.LEFTOVER and in_service(instance):
            reason = "late notice, instance in service: would be left in place"
        else:
            keys = instance_keys(iid, instance.private_ips, instance.eni_ids) if instance else ()
            owner = Owner(iid, frozenset(instance.eni_ids), instance.vpc_id) if instance else None
            removable, kept, _ = self._discover(iid, region, keys, owner)
        master_slave = [m for m in kept if m.group_kind is GroupKind.MASTER_SLAVE]
        managed = [m for m in kept if m.group_kind is not GroupKind.MASTER_SLAVE]
        if self.settings.dry_run_reason:  # a dry run nobody asked for says why
            reason = f"{reason or 'dry run'} [dry run: {self.settings.dry_run_reason}]"
        clients = self.clients_in(region)
        clb = [m for m in removable if m.product is Product.CLB]
        others = [m for m in removable if m.product is not Product.CLB]
        if removable and phase is Phase.GENTLE:
            if clb:
                clients.lb.set_weights(clb, 0, dry_run=True)
            if others:
                clients.lbs.set_weights(others, 0, token_seed=f"{key}:weight0", dry_run=True)
            emit(log, "draining", instance_id=iid, key=key, dry_run=True,
                 wait_s=round(deadline.wait_s(self.clock(), self.settings.drain_time_s), 3))
        if clb:
            clients.lb.remove_members(clb, dry_run=True)
        if others:
            clients.lbs.remove(others, token_seed=f"{key}:remove", dry_run=True)
        now = self.clock()
        result = DrainResult(
            instance_id=iid, outcome=Outcome.DRY_RUN, event_id=event.event_id, key=key,
            phase=phase, reported_master_slave=tuple(summary(m) for m in master_slave),
            reported_managed=tuple(summary(m) for m in managed),
            time_left_s=round(deadline.time_left_s(now), 3),
            missed_deadline=phase is Phase.LEFTOVER or deadline.time_left_s(now) < 0,
            planned=tuple(summary(m) for m in removable), reason=reason, dry_run=True,
        )
        emit(log, "drain finished", event_id=event.event_id, instance_id=iid, key=key,
             decision=Outcome.DRY_RUN.value, path=phase.value, planned=len(removable),
             reported_master_slave=len(master_slave), time_left_s=result.time_left_s,
             missed_deadline=result.missed_deadline, dry_run=True)
        self._notify(result, deadline)
        return result


def job_wait_cap(operation: str, memberships: Sequence[Membership]) -> float:
    """How long a write's jobs are waited for at most (:data:`JOB_STEP_WAIT_S`)."""
    if operation != "remove":
        return JOB_STEP_WAIT_S
    drains = [(m.drain_timeout_s or 0) + JOB_SLACK_S for m in memberships
              if m.product is not Product.CLB and m.native_drain]
    return max([JOB_STEP_WAIT_S, *drains])


def _native_seed(run: Run) -> str:
    """A native removal's token seed: per holder (a takeover after a failed job must not be
    answered that job again)."""
    generation = run.lease.generation
    return f"{run.key}:native" + (f":g{generation}" if generation else "")


def _job_record(write: Write) -> dict[str, Any]:
    return {"product": write.group.product.value, "group_id": write.group.group_id,
            "action": write.action, "job_id": write.job_id}


def _job_write(job: Mapping[str, Any]) -> Write:
    group = GroupRef(Product(job["product"]), "", GroupKind.SERVER_GROUP, job.get("group_id"))
    return Write(group, str(job.get("action") or ""), (), job_id=str(job["job_id"]))


def _deadline_of(data: Mapping[str, Any], settings: Settings) -> Deadline:
    notice = parse_iso_or_none(data.get("notice_time"))
    at = parse_iso_or_none(data.get("deadline"))
    if notice is None or at is None:
        raise ValueError(f"drain entry without notice_time/deadline: {dict(data)!r}")
    return Deadline(notice_time=notice, at=at, margin_s=float(settings.spot_margin_s))

