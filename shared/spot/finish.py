"""The finisher tick: remove the drains whose scheduled removal is due.

A drain scheduled by its ``wait`` step (:mod:`shared.spot.machine`) sits at ``waited`` with
``remove_after`` and its lease until then; no function instance waits for it. Every tick of
``drain_spot``'s timer (``SCHEDULE``, every ``drain_finish_every_s``) takes over each such drain
whose time came (lease expired, ``remove_after`` passed, deadline not yet passed) and runs
``remove`` and ``verify`` as the drain itself would (or ``verify`` alone after a tick that died
between them), all due drains at once (one thread each,
bounded), then notifies as the drain would.

Why a tick and not the sweep: the sweep rescans everything every five minutes (too coarse for a
5-minute notice and too dear to run every minute); the tick reads one ledger status and, with
nothing due, builds no client and makes no cloud call. Why not a delayed invocation: FC's async
invocation has no delay, and a delay queue (MNS DelaySeconds) would be one more service, one more
role and one more failure mode to deploy. Why not instance concurrency: on FC 3.0 it applies only
to custom and custom-container runtimes (the fc3 component's spec), not to python3.10.

Past the deadline nothing is done here: the sweep decides between finishing and undoing.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared import ledger
from shared.clients import CloudError
from shared.events import parse_iso_or_none
from shared.ledger import DrainStatus, EntryLike, Kind, LeaseHeldError, LeaseLostError
from shared.log import emit, get_logger
from shared.spot.deadline import utc_now
from shared.spot.machine import Drainer
from shared.spot.record import ClientsPort, Ledger, NotifierPort

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["FinishReport", "due", "finish_due"]

log = get_logger(__name__)

# Every due drain at once (a burst's are due together): their removals share one write per
# group (shared.spot.batch); in waves, each wave would write each group again.
MAX_PARALLEL_FINISHES = 200


@dataclass
class FinishReport:
    finished: list[dict[str, Any]] = field(default_factory=list)  # key, instance, outcome
    live: list[str] = field(default_factory=list)  # taken by someone else meanwhile
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def due(entries: Sequence[EntryLike], now: datetime) -> list[EntryLike]:
    """The scheduled drains whose removal is due: ``remove_after`` passed, lease expired,
    deadline ahead (after it the sweep decides)."""
    out: list[EntryLike] = []
    for entry in entries:
        remove_after = parse_iso_or_none(entry.data.get("remove_after"))
        deadline = parse_iso_or_none(entry.data.get("deadline"))
        if remove_after is None or deadline is None or entry.instance_id is None:
            continue
        if remove_after <= now < deadline and not ledger.lease_live(entry.data, now):
            out.append(entry)
    return out


def finish_due(
    store: Ledger,
    clients: ClientsPort | Callable[[], ClientsPort],
    notifier: NotifierPort | None,
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    owner: str | None = None,
) -> FinishReport:
    """Take over and finish every due scheduled drain (module docstring). A drain another
    holder took meanwhile is left to it; a cloud error on one is logged, the others go on, and
    the first such error is raised at the end (the tick fails visibly; its drain's lease was
    released, so the next tick, a redelivery or the sweep goes on). ``clients`` may be a
    factory (one set of adapters per thread)."""
    report = FinishReport()
    # waited: scheduled; removed: a tick died between its removal and its verification
    found = [e for status in (DrainStatus.WAITED, DrainStatus.REMOVED)
             for e in store.ledger_find(Kind.DRAIN.value, status=status.value)]
    entries = due(found, clock())
    if not entries:
        return report
    drainer = Drainer(store, clients, settings, notifier=notifier, clock=clock, sleep=sleep,
                      owner=owner or f"finish:{uuid.uuid4().hex[:12]}")
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_FINISHES, len(entries))) as pool:
        futures = [pool.submit(contextvars.copy_context().run, drainer.resume, entry)
                   for entry in entries]
    first_error: CloudError | None = None
    for entry, future in zip(entries, futures, strict=True):
        error = future.exception()
        if isinstance(error, (LeaseHeldError, LeaseLostError)):  # a redelivery or the sweep holds it now
            report.live.append(entry.key)
        elif isinstance(error, CloudError):
            report.errors.append({"key": entry.key, "error": f"{type(error).__name__}: {error}"})
            first_error = first_error or error
            emit(log, "scheduled removal failed", level=30, key=entry.key,
                 instance_id=entry.instance_id, error=str(error), decision="next tick")
        elif error is not None:
            raise error
        else:
            result = future.result()
            report.finished.append({
                "key": entry.key, "instance_id": entry.instance_id,
                "outcome": None if result is None else result.outcome.value})
    emit(log, "scheduled removals", due=len(entries), finished=len(report.finished),
         live=len(report.live), errors=len(report.errors))
    if first_error is not None:
        raise first_error
    return report
