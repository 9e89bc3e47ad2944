"""The sweep's part of the spot drain: finish or undo every drain that is not live, restore what
was not reclaimed, mark what was released, remove backends of released instances.

Per drain entry (each in the region it was made in):

* **open** (claimed … removed) with its lease **live**: someone is on it; left alone.
* **open**, lease expired, **before the deadline**: taken over and finished at once (no wait:
  the owner already had its chance), removing what is left; notified as the drain would be.
* **open**, lease expired, **after the deadline**: finished the same way (leftovers removed;
  released → ``reclaimed``), unless it is still Running without a recycling lock
  ``restore_after_s`` past the deadline (no sweep ran in between) → **undone** by the step's undo rule
  (``shared.spot.machine.STEPS``): nothing written → ``closed``, else the recorded memberships
  are put back with their original weights → ``restored``, and notified.
* **done / partial**, ``restore_after_s`` past the deadline: released → ``reclaimed`` (a partial
  drain's leftovers removed first); Running without a recycling lock → restored, once, under the
  drain's lease (a sweep that dies mid-restore leaves a lease that expires after
  :data:`RESTORE_LEASE_S`; the next sweep takes over; :data:`MAX_RESTORE_ATTEMPTS` at most).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from shared import ledger
from shared.clients import Instance, NotFoundError, TransientError
from shared.events import iso, parse_iso_or_none
from shared.lb.model import Membership, Product
from shared.ledger import (
    FINISHED_DRAIN,
    OPEN_DRAIN,
    Acquired,
    DrainStatus,
    EntryLike,
    Kind,
    LeaseHeldError,
)
from shared.log import emit, get_logger
from shared.notify import Notification
from shared.spot.deadline import utc_now
from shared.spot.machine import Drainer, Undo, full_scope, in_service, lb_scope, undo_rule
from shared.spot.record import (
    REMOVAL_OUTCOMES,
    ClientsPort,
    Ledger,
    NotifierPort,
    groups,
    label,
    memberships_of,
    summary,
)

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["SweepReport", "restore", "sweep_drains"]

log = get_logger(__name__)

RESTORE_HORIZON_S = 86400.0  # stop watching an un-restored, un-released instance after a day
MAX_RESTORE_ATTEMPTS = 5
RESTORE_LEASE_S = 900.0  # longer than any sweep can run (its FC timeout is 300 s)


@dataclass
class SweepReport:
    restored: list[str] = field(default_factory=list)
    reclaimed: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)  # open drains taken over and finished
    live: list[str] = field(default_factory=list)  # open drains whose lease is live
    released_backends_removed: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    started_at: str = ""  # the sweep's "now" (ISO)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Sweep:
    store: Ledger
    notifier: NotifierPort | None
    settings: Settings
    now: datetime
    report: SweepReport
    drainer: Drainer
    owner: str

    @property
    def dry(self) -> bool:
        return self.settings.dry_run

    def restore_due(self, entry: EntryLike) -> bool:
        deadline = parse_iso_or_none(entry.data.get("deadline")) or self.now
        return self.now >= deadline + timedelta(seconds=self.settings.restore_after_s)


def sweep_drains(
    store: Ledger,
    clients: ClientsPort,
    notifier: NotifierPort | None,
    settings: Settings,
    now: datetime,
    *,
    regions: Sequence[str] = (),
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Finish, undo or restore every drain that needs it (module docstring); then remove the
    backends of released instances in every region of ``regions`` (default ours). A
    TransientError on one entry is reported and the others go on; store errors propagate.
    Dry run: decide and log, no mutating call, no ledger write."""
    report = SweepReport(dry_run=settings.dry_run, started_at=iso(now) or "")
    owner = f"sweep:{uuid.uuid4().hex[:12]}"
    if clock is None:  # the sweep's "now", moving on in real time while it works
        started = utc_now()
        clock = lambda: now + (utc_now() - started)  # noqa: E731 - a one-line clock
    drainer = Drainer(store, clients, settings, notifier=notifier, clock=clock, sleep=sleep,
                      owner=owner)
    sweep = _Sweep(store, notifier, settings, now, report, drainer, owner)
    by_region: dict[str, list[EntryLike]] = {}
    for status in (*sorted(OPEN_DRAIN), DrainStatus.DONE, DrainStatus.PARTIAL):
        for entry in store.ledger_find(Kind.DRAIN.value, status=status.value):
            iid = entry.instance_id
            deadline = parse_iso_or_none(entry.data.get("deadline"))
            if iid is None or deadline is None:
                continue
            if status in OPEN_DRAIN and ledger.lease_live(entry.data, now):
                report.live.append(iid)
            elif status in OPEN_DRAIN and now < deadline:
                _guarded(sweep, entry, lambda e: _finish(sweep, e))
            elif status in OPEN_DRAIN or sweep.restore_due(entry):
                by_region.setdefault(_region(entry, settings), []).append(entry)
            else:
                report.waiting.append(iid)
    for region, entries in sorted(by_region.items()):
        regional = clients.for_region(region)
        try:
            instances = regional.ecs.describe_instances(
                sorted({e.instance_id for e in entries if e.instance_id}))
        except TransientError as err:
            report.errors.append({"step": "describe_instances", "region": region,
                                  "error": str(err)})
            continue
        for entry in entries:
            _guarded(sweep, entry, partial(
                _after_deadline, sweep, instance=instances.get(entry.instance_id or ""),
                clients=regional))
    for region in regions or (settings.region,):
        _sweep_released_backends(clients.for_region(region), settings, report, region, store)
    emit(log, "drain sweep", restored=len(report.restored), reclaimed=len(report.reclaimed),
         closed=len(report.closed), waiting=len(report.waiting), finished=len(report.finished),
         live=len(report.live), released_backends_removed=len(report.released_backends_removed),
         errors=len(report.errors), dry_run=settings.dry_run or None)
    return report.to_dict()


def _guarded(sweep: _Sweep, entry: EntryLike, work: Callable[[EntryLike], None]) -> None:
    try:
        work(entry)
    except LeaseHeldError:  # another sweep or a redelivery took it between our read and now
        sweep.report.live.append(entry.instance_id or "")
    except (TransientError, NotFoundError) as err:
        sweep.report.errors.append({"key": entry.key, "error": str(err)})
        emit(log, "sweep step failed", level=30, key=entry.key, error=str(err))


def _region(entry: EntryLike, settings: Settings) -> str:
    """A drain's region, as recorded; entries from before regions were recorded are ours."""
    region = entry.data.get("region")
    return region if isinstance(region, str) and region else settings.region


def _finish(sweep: _Sweep, entry: EntryLike) -> None:
    """Take an unfinished drain over and run it to its end (remove what is left)."""
    iid = entry.instance_id or ""
    if sweep.dry:
        sweep.report.notes.append(f"{iid}: would finish its unfinished drain ({entry.status})")
        return
    result = sweep.drainer.resume(entry, allow_wait=False)
    emit(log, "drain finished by the sweep", instance_id=iid, key=entry.key,
         resumed_from=entry.status, decision=None if result is None else result.outcome.value)
    sweep.report.finished.append(iid)


def _after_deadline(sweep: _Sweep, entry: EntryLike, *, instance: Instance | None,
                    clients: ClientsPort) -> None:
    iid = entry.instance_id or ""
    status = DrainStatus(entry.status)
    if status in OPEN_DRAIN:
        if in_service(instance) and sweep.restore_due(entry):
            _undo(sweep, entry, clients, undo_rule(status))
            return
        # Released, being reclaimed, stopped, or still in service but not yet past
        # restore_after_s (the reclaim may lag): remove what is left, so no instance sits at
        # weight 0 without a live drain; a done drain is restored later if it was not reclaimed.
        _finish(sweep, entry)
        if instance is None and not sweep.dry:
            sweep.store.ledger_update(entry.key, status=DrainStatus.RECLAIMED.value,
                                      data={"reclaimed_at": iso(sweep.now)})
            sweep.report.reclaimed.append(iid)
        return
    if instance is None:
        _reclaimed(sweep, entry, clients)
        return
    data = entry.data
    if (not in_service(instance) or data.get("outcome") not in {o.value for o in REMOVAL_OUTCOMES}
            or not memberships_of(data)):
        deadline = parse_iso_or_none(data.get("deadline")) or sweep.now
        if sweep.now - deadline > timedelta(seconds=RESTORE_HORIZON_S) or (
            in_service(instance) and not memberships_of(data)
        ):
            _close(sweep, entry, None)
        else:
            sweep.report.waiting.append(iid)
        return
    _undo(sweep, entry, clients, Undo.RESTORE)


# Sweeps that try a reclaimed drain's ALB/NLB leftovers before reporting them for a person.
RECLAIM_ATTEMPTS = 3


def _reclaimed(sweep: _Sweep, entry: EntryLike, clients: ClientsPort) -> None:
    iid = entry.instance_id or ""
    leftover = [m for m in entry.data.get("leftover") or () if isinstance(m, dict)]
    # The late memberships the burst's shared scan found and could not remove are left too.
    scan = entry.data.get("scan") or {}
    late = ([m for m in scan.get("late_snapshots") or () if isinstance(m, dict)]
            if isinstance(scan, dict) and not scan.get("removed_at") else [])
    leftover += late
    clb_left = sorted({str(m.get("load_balancer_id")) for m in leftover
                       if (m.get("product") or Product.CLB.value) == Product.CLB.value})
    if clb_left:
        found = [m for m in clients.lb.find_memberships(iid, clb_left) if m.removable]
        if found:
            clients.lb.remove_members(found, dry_run=sweep.dry)
            sweep.report.released_backends_removed += [
                {"instance_id": iid, **summary(m)} for m in found]
    other_groups = {(m.get("product"), m.get("group_id")) for m in leftover
                    if m.get("product") not in (None, Product.CLB.value)}
    if other_groups:
        recorded = [m for m in [*memberships_of(entry.data),
                                *(Membership.from_snapshot(s) for s in late)]
                    if (m.product.value, m.group_id) in other_groups]
        found = _still_registered(clients, recorded)
        if found:
            lbs = clients.lbs
            # One seed per sweep: a failed job of an earlier sweep is not answered again.
            pending = lbs.wait(lbs.remove(found, token_seed=f"{entry.key}:reclaimed:{iso(sweep.now)}",
                                          dry_run=sweep.dry), timeout_s=RESTORE_JOB_WAIT_S)
            if pending:
                attempts = int(entry.data.get("reclaim_attempts") or 0) + 1
                if attempts < RECLAIM_ATTEMPTS:  # the entry stays for the next sweep
                    if not sweep.dry:
                        sweep.store.ledger_update(entry.key,
                                                  data={"reclaim_attempts": attempts})
                    raise TransientError(
                        "JobNotFinished", f"{len(pending)} removal job(s) did not succeed",
                        action="reclaimed leftovers",
                        resource_ids=[str(w.group) for w in pending], retryable=True)
                # Given up (each try holds the sweep for the job wait): a person must look.
                left = {str(w.group) for w in pending}
                emit(log, "reclaimed leftovers not removed", level=40, instance_id=iid,
                     key=entry.key, groups=sorted(left), attempts=attempts,
                     decision="reported")
                sweep.report.errors.append({"step": "reclaimed leftovers", "key": entry.key,
                                            "error": f"removal jobs did not succeed in "
                                                     f"{attempts} sweeps: {sorted(left)}"})
                found = [m for m in found if str(m.group) not in left]
            sweep.report.released_backends_removed += [
                {"instance_id": iid, **summary(m)} for m in found]
    emit(log, "drain reclaimed", instance_id=iid, key=entry.key, dry_run=sweep.dry or None)
    if not sweep.dry:
        sweep.store.ledger_update(entry.key, status=DrainStatus.RECLAIMED.value,
                                  data={"reclaimed_at": iso(sweep.now)})
    sweep.report.reclaimed.append(iid)


def _close(sweep: _Sweep, entry: EntryLike, reason: str | None) -> None:
    if not sweep.dry:
        sweep.store.ledger_update(entry.key, status=DrainStatus.CLOSED.value,
                                  data={"closed_at": iso(sweep.now), "closed_reason": reason})
    sweep.report.closed.append(entry.instance_id or "")


def _undo(sweep: _Sweep, entry: EntryLike, clients: ClientsPort, rule: Undo) -> None:
    """Put a not-reclaimed instance back as recorded, under the drain's lease."""
    iid = entry.instance_id or ""
    # ... and those the burst's shared scan drained for it (shared.spot.scan)
    memberships = [*memberships_of(entry.data),
                   *memberships_of(entry.data.get("scan") or {}, "late_snapshots")]
    attempts = int(entry.data.get("restore_attempts") or 0)
    if rule is Undo.NOTHING or not memberships:
        _close(sweep, entry, "not reclaimed; the drain had written nothing")
        if not sweep.dry:
            _send(sweep, Notification(
                key=entry.key + ":closed", title=f"Spot drain {iid}: closed",
                text=(f"Spot instance {iid} was not reclaimed after its interruption notice; its "
                      f"drain stopped ({entry.status}) before changing any load balancer, so "
                      "there was nothing to put back."),
                severity="info", instance_id=iid, fields={"from_status": entry.status}))
        return
    if attempts >= MAX_RESTORE_ATTEMPTS:
        _close(sweep, entry, "restore kept failing")
        sweep.report.notes.append(f"{iid}: restore failed {attempts} times; closed")
        return
    if sweep.dry:
        restore(clients, memberships, dry=True)
        sweep.report.restored.append(iid)
        return
    got = ledger.acquire(sweep.store, entry.key, kind=Kind.DRAIN, owner=sweep.owner,
                         until=sweep.now + timedelta(seconds=RESTORE_LEASE_S), now=sweep.now,
                         finished=FINISHED_DRAIN)
    if not isinstance(got, Acquired):
        return
    if got.previous is not None and got.previous != entry.status:
        got.lease.release()  # it moved on between our read and the takeover: next sweep
        return
    attempts = int(got.entry.data.get("restore_attempts") or 0)
    if attempts:
        sweep.report.notes.append(f"{iid}: restore attempt {attempts} abandoned; retried")
    # Counted before the calls: a sweep dying mid-restore still spends its attempt.
    got.lease.save(restore_attempts=attempts + 1)
    try:
        # A seed per attempt: a failed job of an earlier attempt is not answered again.
        restored = restore(clients, memberships, dry=False,
                           token_seed=f"{entry.key}:restore:{attempts + 1}")
    except BaseException:
        got.lease.release()
        raise
    got.lease.finish(DrainStatus.RESTORED, restored_at=iso(sweep.now),
                     restored=[summary(m) for m in restored],
                     restored_from=entry.status)
    emit(log, "drain restored", instance_id=iid, key=entry.key, restored=len(restored),
         from_status=entry.status,
         reason="still Running without a recycling lock after the deadline")
    sweep.report.restored.append(iid)
    _notify_restored(sweep, entry, memberships)


def _notify_restored(sweep: _Sweep, entry: EntryLike, memberships: Sequence[Membership]) -> None:
    iid = entry.instance_id or ""
    unknown = {(m.get("load_balancer_id"), m.get("group_id"), m.get("port"))
               for m in entry.data.get("unknown_weights") or ()}
    lines = [f"Spot instance {iid} was not reclaimed after its interruption notice; "
             "its load-balancer memberships were put back with their original weights:"]
    for m in memberships:
        tail = (" - weight unknown before the drain"
                if (m.load_balancer_id, m.group_id, m.port) in unknown else "")
        lines.append(f"- {label(summary(m))}{tail}")
    _send(sweep, Notification(
        key=entry.key + ":restored", title=f"Spot drain {iid}: restored",
        text="\n".join(lines), severity="warning" if unknown else "info", instance_id=iid,
        fields={"restored": len(memberships), "from_status": entry.status},
    ))


def _send(sweep: _Sweep, notification: Notification) -> None:
    if sweep.notifier is None:
        return
    try:
        sweep.notifier.send(notification)
    except Exception as err:  # never fail the sweep on a notification
        emit(log, "notification failed", level=30, key=notification.key, error=str(err))


RESTORE_JOB_WAIT_S = 60.0  # the ALB/NLB jobs of one restore


def _still_registered(clients: ClientsPort, memberships: Sequence[Membership]
                      ) -> list[Membership]:
    """The ALB/NLB memberships still in their groups (a gone group holds none)."""
    out: list[Membership] = []
    for group, members in groups(memberships).items():
        try:
            current = {(m.server_id, m.port) for m in clients.lbs.members_of(group)}
        except NotFoundError:
            continue
        out += [m for m in members if (m.server_id, m.port) in current]
    return out


def restore(clients: ClientsPort, memberships: Sequence[Membership], *, dry: bool,
            token_seed: str | None = None) -> list[Membership]:
    """Put memberships back as recorded: add missing ones (their own port, type, IP, weight
    and description), re-weight present ones; on ALB/NLB the jobs are waited for, and one that
    does not succeed raises TransientError (the next sweep tries again)."""
    seed = token_seed or "restore"
    missing: list[Membership] = []
    reweight: list[Membership] = []
    for group, members in groups(memberships).items():
        try:
            if group.product is Product.CLB:
                listed = clients.lb.group_members(group.load_balancer_id, group.kind,
                                                  group.group_id)
            else:
                listed = clients.lbs.members_of(group)
        except NotFoundError:
            emit(log, "group gone", level=30, load_balancer_id=group.load_balancer_id,
                 group_id=group.group_id, product=group.product.value)
            continue
        current = {(m.server_id, m.port): m for m in listed}
        for m in members:
            found = current.get((m.server_id, m.port))
            if found is None or (found.native_drain and found.status == "Removing"):
                missing.append(m)
            elif found.weight != m.weight:
                reweight.append(m)
    clb_missing = [m for m in missing if m.product is Product.CLB]
    clb_reweight = [m for m in reweight if m.product is Product.CLB]
    if clb_missing:
        clients.lb.add_members(clb_missing, dry_run=dry)
    if clb_reweight:
        clients.lb.set_weights(clb_reweight, None, dry_run=dry)
    others_missing = [m for m in missing if m.product is not Product.CLB]
    others_reweight = [m for m in reweight if m.product is not Product.CLB]
    if others_missing or others_reweight:
        lbs = clients.lbs
        writes = lbs.add(others_missing, token_seed=seed + ":add", dry_run=dry)
        writes += lbs.set_weights(others_reweight, None, token_seed=seed + ":weight",
                                  dry_run=dry)
        unfinished = lbs.wait(writes, timeout_s=RESTORE_JOB_WAIT_S)
        if unfinished:
            raise TransientError(
                "JobNotFinished", f"{len(unfinished)} restore job(s) did not succeed",
                action="restore", resource_ids=[str(w.group) for w in unfinished],
                retryable=True)
    return missing + reweight


def _sweep_released_backends(
    clients: ClientsPort, settings: Settings, report: SweepReport, region: str,
    store: Ledger | None = None,
) -> None:
    """Remove backends (type ecs) whose instance no longer exists, in the configured scope of
    ``region`` (``clients`` are that region's), on every product of ``lb_products`` whose scope
    is bounded (CLB: lb_ids / lb_tag; ALB/NLB: group ids / lb_tag); ALB/NLB members go with
    their own port and IP."""
    bounded = {
        Product.CLB: bool(settings.lb_ids or settings.lb_tag),
        Product.ALB: bool(settings.alb_group_ids or settings.lb_tag),
        Product.NLB: bool(settings.nlb_group_ids or settings.lb_tag),
    }
    products = [p for p in (Product.CLB, Product.ALB, Product.NLB)
                if p.value in settings.lb_products and bounded[p]]
    if not products:
        if "released-backend scan skipped: no lb_ids/lb_tag scope" not in report.notes:
            report.notes.append("released-backend scan skipped: no lb_ids/lb_tag scope")
        return
    try:
        started = utc_now()
        members: list[Membership] = []
        scope = lb_scope(clients.lb, settings, region) if Product.CLB in products else []
        for lb_id in scope:
            try:
                members.extend(clients.lb.all_members(lb_id))
            except NotFoundError as err:  # lb_ids may name other regions' (or deleted) ones
                emit(log, "load balancer not found", level=30, region=region,
                     load_balancer_id=lb_id, code=err.code)
        others = [p for p in products if p is not Product.CLB]
        sources = list(scope)
        if others:
            full = full_scope(clients, settings, region, scope)
            full = replace(full, products=full.products & frozenset(others))
            members.extend(clients.lbs.scan(full))
            sources += [f"{p.value}:{g}" for p in others for g in full.where(p)]
        if settings.lb_index and hasattr(store, "index_replace") and not settings.dry_run:
            from shared.spot.scan import record_sweep_scan

            record_sweep_scan(store, region, sources, members=members, started_at=started)  # type: ignore[arg-type]
        ecs_members = [m for m in members if m.server_type.lower() == "ecs" and m.removable]
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
            clb_gone = [m for m in gone if m.product is Product.CLB]
            if clb_gone:
                clients.lb.remove_members(clb_gone, dry_run=settings.dry_run)
            other_gone = [m for m in gone if m.product is not Product.CLB]
            if other_gone:
                lbs = clients.lbs
                # One seed per sweep: a failed job of an earlier sweep is not answered again.
                seed = f"released:{region}:{report.started_at}"
                unfinished = lbs.wait(lbs.remove(other_gone, token_seed=seed,
                                                 dry_run=settings.dry_run),
                                      timeout_s=RESTORE_JOB_WAIT_S)
                if unfinished:
                    raise TransientError(
                        "JobNotFinished", f"{len(unfinished)} removal job(s) did not succeed",
                        action="released backends", resource_ids=[str(w.group) for w in unfinished],
                        retryable=True)
        except (TransientError, NotFoundError) as err:
            report.errors.append({"step": "released backends", "region": region,
                                  "error": str(err)})
            return
        report.released_backends_removed += [
            {"instance_id": m.server_id, **summary(m)} for m in gone]
        emit(log, "released backends removed", count=len(gone),
             instances=sorted({m.server_id for m in gone}), dry_run=settings.dry_run or None)

