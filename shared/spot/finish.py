"""The finisher tick: remove the drains whose scheduled removal is due, each at its time.

A drain scheduled by its ``wait`` step (:mod:`shared.spot.machine`) sits at ``waited`` with
``remove_after`` and its lease until then; no function instance waits for it. Every tick of
``drain_spot``'s timer (``SCHEDULE``, every ``drain_finish_every_s``) takes the drains whose
removal falls due before the next tick (and any left overdue: lease expired, deadline not yet
passed), and removes them in *rounds* (:func:`plan`): the removals due within
``drain_round_s`` of each other form one round, made at the latest of their times, so none is
removed before its drain time, none later than ``drain_round_s`` after it, and a group shared
by the round's instances gets one write for all of them. The tick holds a round's parked
drains from its plan (their lease, until the round plus the grace: :func:`_hold`), so the next
tick does not split the round; at the round it takes them over, runs ``remove`` and ``verify``
as the drain itself would (or ``verify`` alone
after a tick that died between them), one thread each, the drains meeting before their removal
(:class:`shared.spot.batch.Gate`) so their writes go together; then it notifies as the drain
would.

Why a tick and not the sweep: the sweep rescans everything every five minutes (too coarse for a
5-minute notice and too dear to run every minute); the tick reads one ledger status and, with
nothing due before the next tick, builds no client and makes no cloud call. Why the tick waits
for removals due within its period instead of leaving them to the next tick: a removal would
otherwise come up to a whole period (60 s deployed) after its time. Why not a delayed
invocation: FC's async invocation has no delay, and a delay queue (MNS DelaySeconds) would be
one more service, one more role and one more failure mode to deploy. Why not instance
concurrency: on FC 3.0 it applies only to custom and custom-container runtimes (the fc3
component's spec), not to python3.10.

Past the deadline nothing is done here: the sweep decides between finishing and undoing.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import ledger
from shared.clients import CloudError
from shared.events import iso, parse_iso_or_none
from shared.ledger import DrainStatus, EntryLike, Kind, LeaseHeldError, LeaseLostError
from shared.log import emit, get_logger
from shared.spot.batch import Gate
from shared.spot.deadline import utc_now
from shared.spot.machine import Drainer
from shared.spot.record import ClientsPort, Ledger, NotifierPort

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["FinishReport", "Round", "finish_due", "parked", "plan"]

log = get_logger(__name__)

# The drains of one round at once (a burst's are due together): their removals share one write
# per group (shared.spot.batch); a bigger round is cut into parts of this size.
MAX_PARALLEL_FINISHES = 200
# How long a round's drains wait for each other before their removal: their takeovers are a
# few store writes each, which a shared database serializes (SQLite: ~1 s for 100 drains).
GATE_S = 5.0
# A tick looks this far ahead at most, whatever its period: it waits for those removals, and
# the function's timeout (300 s deployed) must leave room for the wait and the removals.
LOOKAHEAD_MAX_S = 120.0


@dataclass
class FinishReport:
    finished: list[dict[str, Any]] = field(default_factory=list)  # key, instance, outcome
    live: list[str] = field(default_factory=list)  # taken by someone else meanwhile
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Round:
    """Removals made together, at ``at`` (the latest of their times, or now)."""

    at: datetime
    entries: tuple[EntryLike, ...]


def plan(entries: Sequence[EntryLike], now: datetime, *, horizon: datetime | None = None,
         window_s: float = 0.0) -> list[Round]:
    """The rounds of one tick: the scheduled drains whose removal is due by ``horizon`` (the
    next tick; default: now), deadline ahead, and lease expired (those due later are still
    leased to their scheduler until ``remove_after``, which is then expired); those due within
    ``window_s`` of the first of a round join it, made at the latest of their times. A round
    begun by the horizon takes its members due after it too (the next tick would otherwise
    split it: two writes per group for one round)."""
    horizon = horizon or now
    timed: list[tuple[datetime, EntryLike]] = []
    for entry in entries:
        remove_after = parse_iso_or_none(entry.data.get("remove_after"))
        deadline = parse_iso_or_none(entry.data.get("deadline"))
        if remove_after is None or deadline is None or entry.instance_id is None:
            continue
        if not remove_after <= horizon + timedelta(seconds=window_s) or not now < deadline:
            continue
        # held past its removal time by someone (a redelivery, another tick): theirs
        if ledger.lease_live(entry.data, max(now, remove_after)):
            continue
        timed.append((max(remove_after, now), entry))
    timed.sort(key=lambda t: t[0])
    rounds: list[Round] = []
    first: datetime | None = None
    members: list[tuple[datetime, EntryLike]] = []
    for at, entry in timed:
        if first is not None and (at - first).total_seconds() > window_s:
            rounds.append(Round(members[-1][0], tuple(e for _, e in members)))
            members = []
        if not members:
            if at > horizon:  # begins after the horizon: the next tick's
                break
            first = at
        members.append((at, entry))
    if members:
        rounds.append(Round(members[-1][0], tuple(e for _, e in members)))
    return rounds


def parked(entry: EntryLike) -> bool:
    """A drain its scheduler left at weight 0 (``waited``, leased exactly until its removal
    time): nobody acts on it until then, so a tick may take it for its round at once."""
    return (entry.status == DrainStatus.WAITED.value
            and entry.data.get("lease_until") is not None
            and entry.data.get("lease_until") == entry.data.get("remove_after"))


def _hold(store: Ledger, round_: Round, owner: str, *, now: datetime, grace_s: float,
          report: FinishReport) -> Round:
    """Take the round's parked drains for this tick until the round's time plus the grace, so
    the next tick leaves them to this round (a tick that dies holding them leaves them for the
    grace, as a dead taker does). A drain taken by someone else meanwhile (a redelivery) is
    theirs: reported ``live``, left out of the round."""
    until = iso(max(round_.at, now) + timedelta(seconds=grace_s))
    kept: list[EntryLike] = []
    for entry in round_.entries:
        if not parked(entry) or not ledger.lease_live(entry.data, now):
            kept.append(entry)  # expired: taken over at the round as before
        elif store.ledger_swap(entry.key, statuses=[DrainStatus.WAITED.value],
                               expect={"owner": entry.data.get("owner"),
                                       "generation": entry.data.get("generation")},
                               data={"owner": owner, "lease_until": until}):
            kept.append(entry)
        else:
            report.live.append(entry.key)
    return Round(round_.at, tuple(kept))


def finish_due(
    store: Ledger,
    clients: ClientsPort | Callable[[], ClientsPort],
    notifier: NotifierPort | None,
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    owner: str | None = None,
    lookahead: bool = True,
) -> FinishReport:
    """Take over and finish every scheduled drain due before the next tick, in rounds, each
    at its time (module docstring). A drain another holder took meanwhile is left to it; a
    cloud error on one is logged, the others go on, and the first such error is raised at the
    end (the tick fails visibly; its drain's lease was released, so the next tick, a redelivery
    or the sweep goes on). ``clients`` may be a factory (one set of adapters per thread).
    ``lookahead`` False: only what is due now."""
    report = FinishReport()
    # waited: scheduled; removed: a tick died between its removal and its verification
    found = [e for status in (DrainStatus.WAITED, DrainStatus.REMOVED)
             for e in store.ledger_find(Kind.DRAIN.value, status=status.value)]
    now = clock()
    ahead = min(settings.drain_finish_every_s, LOOKAHEAD_MAX_S) if lookahead else 0.0
    rounds = plan(found, now, horizon=now + timedelta(seconds=max(ahead, 0.0)),
                  window_s=settings.drain_round_s)
    if not rounds:
        return report
    drainer = Drainer(store, clients, settings, notifier=notifier, clock=clock, sleep=sleep,
                      owner=owner or f"finish:{uuid.uuid4().hex[:12]}")
    rounds = [_hold(store, r, drainer.owner, now=now, grace_s=settings.drain_lease_grace_s,
                    report=report) for r in rounds]
    emit(log, "scheduled removals planned", rounds=len(rounds),
         drains=sum(len(r.entries) for r in rounds),
         first_at=iso(rounds[0].at), last_at=iso(rounds[-1].at))
    errors: list[CloudError] = []
    lock = threading.Lock()

    def run_round(round_: Round) -> None:
        wait = (round_.at - clock()).total_seconds()
        if wait > 0:
            sleep(wait)
        for part in _parts(round_.entries, MAX_PARALLEL_FINISHES):
            outcome = _finish(drainer, part)
            with lock:
                report.finished += outcome.finished
                report.live += outcome.live
                report.errors += outcome.errors
                errors.extend(outcome.raised)

    if len(rounds) == 1:
        run_round(rounds[0])
    else:  # each round at its own time, whatever the others' removals take
        with ThreadPoolExecutor(max_workers=len(rounds)) as pool:
            for future in [pool.submit(contextvars.copy_context().run, run_round, r)
                           for r in rounds]:
                future.result()
    emit(log, "scheduled removals", due=sum(len(r.entries) for r in rounds), rounds=len(rounds),
         finished=len(report.finished), live=len(report.live), errors=len(report.errors))
    if errors:
        raise errors[0]
    return report


@dataclass
class _Outcome(FinishReport):
    raised: list[CloudError] = field(default_factory=list)


def _finish(drainer: Drainer, entries: Sequence[EntryLike]) -> _Outcome:
    """One round's drains at once, meeting before their removal."""
    out = _Outcome()
    gate = Gate(len(entries), GATE_S)
    with ThreadPoolExecutor(max_workers=len(entries)) as pool:
        futures = [pool.submit(contextvars.copy_context().run, drainer.resume, entry,
                               party=gate.party())
                   for entry in entries]
    for entry, future in zip(entries, futures, strict=True):
        error = future.exception()
        if isinstance(error, (LeaseHeldError, LeaseLostError)):  # a redelivery or the sweep holds it now
            out.live.append(entry.key)
        elif isinstance(error, CloudError):
            out.errors.append({"key": entry.key, "error": f"{type(error).__name__}: {error}"})
            out.raised.append(error)
            emit(log, "scheduled removal failed", level=30, key=entry.key,
                 instance_id=entry.instance_id, error=str(error), decision="next tick")
        elif error is not None:
            raise error
        else:
            result = future.result()
            out.finished.append({
                "key": entry.key, "instance_id": entry.instance_id,
                "outcome": None if result is None else result.outcome.value})
    return out


def _parts(entries: Sequence[EntryLike], size: int) -> list[Sequence[EntryLike]]:
    return [entries[i:i + size] for i in range(0, len(entries), size)]
