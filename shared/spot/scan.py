"""The full scan a burst of notices shares: what the membership index did not know, drained.

A drain finds its memberships in the index (:mod:`shared.spot.index`) and sets them to weight 0
at once. A membership registered since the index was last refreshed would be missed; so, when no
scan started at most ``lb_index_fresh_s`` before a notice, one full scan of the region's load
balancers in scope runs (``lbscan:<region>`` in the ledger: one holder at a time, its lease
bounds a holder that dies). Every notice of the burst is covered by it: a later notice meets a
scan that started after it minus the fresh time and starts none. The scan refreshes the index
(each source it read replaces its rows), then, for every drain of the region whose deadline is
ahead, takes what the index now shows for the drain's instance and the drain did not record
(*late* memberships) through the same path: weight 0 (one write per group for all instances),
the drain time or what the earliest deadline leaves, removal. Each drain's entry gets the
findings under ``scan`` (its result and notification report them), the scan's entry the totals.

Who runs it: the drain_spot invocation that delivered the notices, after its drains (a batch's
drains have recorded what they found by then), or the finisher tick for open drains that no scan
covers (a delivery that died first). Cost: one read per group of every load balancer in scope,
once per burst, instead of once per notice.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from shared import ledger
from shared.clients import CloudError, NotFoundError
from shared.events import iso, parse_iso_or_none
from shared.lb.model import GroupRef, Membership, Product
from shared.lb.pools import LbScope
from shared.ledger import DrainStatus, EntryLike, Kind
from shared.log import emit, get_logger
from shared.spot.deadline import utc_now
from shared.spot.index import MembershipIndex, Owner, member_id, scan_key, server_keys, source_of
from shared.spot.machine import full_scope, job_wait_cap, lb_scope
from shared.spot.record import ClientsPort, Ledger, memberships_of, summary

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["ScanReport", "covered", "shared_scan", "uncovered_scans"]

log = get_logger(__name__)
T = TypeVar("T")

SCAN_PAUSES_S = (1.0, 2.0, 4.0, 8.0, 8.0, 8.0)  # a source's retries while throttled
SCAN_LEASE_S = 240.0  # longer than a scan of a large scope under throttling; a dead holder's ends
UNCOVERED_AFTER_S = 60.0  # the finisher scans for a burst whose delivery did not, after this
LIVE_DRAINS = frozenset({DrainStatus.CLAIMED, DrainStatus.FOUND, DrainStatus.WEIGHTED,
                         DrainStatus.WAITED, DrainStatus.REMOVED, DrainStatus.DONE,
                         DrainStatus.PARTIAL})


@dataclass
class ScanReport:
    key: str
    region: str
    started_at: str
    scanned_at: str | None = None
    sources: int = 0
    memberships: int = 0
    late: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # instance -> late
    removed_at: str | None = None
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def covered(entry: Any, notice_time: datetime, fresh_s: float, now: datetime) -> bool:
    """A scan that started at most ``fresh_s`` before the notice, done or still held, covers
    it."""
    if entry is None:
        return False
    started = parse_iso_or_none(entry.data.get("started_at"))
    if started is None or started < notice_time - timedelta(seconds=fresh_s):
        return False
    return entry.status == "done" or ledger.lease_live(entry.data, now)


def _take(store: Ledger, region: str, notice_time: datetime, *, fresh_s: float, owner: str,
          now: datetime) -> bool:
    """Become the scan's holder unless a scan covers the notice or another holds it."""
    key = scan_key(region)
    entry = store.ledger_get(key)
    if covered(entry, notice_time, fresh_s, now):
        return False
    data = {"owner": owner, "started_at": iso(now),
            "lease_until": iso(now + timedelta(seconds=SCAN_LEASE_S))}
    if entry is None:
        return store.ledger_claim(key, kind=Kind.LB_SCAN.value, data={**data, "generation": 1},
                                  status="running")
    if entry.status == "running" and ledger.lease_live(entry.data, now):
        return False  # another scan runs; it started before this notice's fresh time
    generation = int(entry.data.get("generation") or 0)
    return store.ledger_swap(key, expect={"generation": entry.data.get("generation")},
                             status="running", data={**data, "generation": generation + 1})


def shared_scan(
    store: Ledger,
    clients: ClientsPort,
    settings: Settings,
    region: str,
    notice_time: datetime,
    *,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    owner: str | None = None,
) -> ScanReport | None:
    """Run the region's shared scan for a notice of ``notice_time`` unless one covers it
    (module docstring); None when nothing ran. ``clients`` are the region's.

    The groups the burst's drains serve in are read first (*hot*: a membership registered since
    the index was built is most likely beside its siblings, in the same service's groups), and
    what they show late goes to weight 0 at once and is removed after its drain time while the
    rest of the scope is read; then the rest's late memberships take the same path."""
    owner = f"{owner or 'scan'}:{uuid.uuid4().hex[:8]}"
    if not _take(store, region, notice_time, fresh_s=settings.lb_index_fresh_s,
                 owner=owner, now=clock()):
        return None
    report = ScanReport(key=scan_key(region), region=region, started_at=iso(clock()) or "")
    index = MembershipIndex(store, clock)  # type: ignore[arg-type]
    seed = f"{report.key}:{report.started_at}"
    batches: list[_LateBatch] = []
    try:
        hot = _retrying_each(clients, _hot_groups(store, settings, region, clock()))
        first = _LateBatch.found(store, settings, region, hot, clock(), seed=f"{seed}:hot")
        if first is not None:
            batches.append(first)
            first.stop(store, clients, report, clock)
        scope, members = full_scan(clients, settings, region,
                                   between=lambda: _remove_due(batches, clients, report, clock))
    except CloudError as err:
        report.errors.append(f"scan: {err}")
        _finish_late(store, clients, batches, report, clock=clock, sleep=sleep)
        store.ledger_update(report.key, status="failed",
                            data={"lease_until": None, "errors": report.errors,
                                  "late": report.late, "removed_at": report.removed_at})
        raise
    index.record_scan(region, members, sources=scope)
    report.scanned_at, report.sources, report.memberships = iso(clock()), len(scope), len(members)
    emit(log, "membership scan", region=region, sources=len(scope), memberships=len(members),
         hot_groups_first=len({m.group for m in hot}))
    rest = _LateBatch.found(store, settings, region, members, clock(), seed=seed,
                            known={mid for b in batches for mid in b.member_ids()})
    if rest is not None:
        batches.append(rest)
        rest.stop(store, clients, report, clock)
    _finish_late(store, clients, batches, report, clock=clock, sleep=sleep)
    store.ledger_update(report.key, status="done", data={
        "scanned_at": report.scanned_at, "scope": scope, "sources": report.sources,
        "memberships": report.memberships, "late": report.late, "removed_at": report.removed_at,
        "errors": report.errors, "lease_until": None})
    return report


def full_scan(clients: ClientsPort, settings: Settings, region: str, *,
              between: Callable[[], None] | None = None) -> tuple[list[str], list[Membership]]:
    """Every member of every pool in scope on every product of ``lb_products``: (the sources
    read, the members). ``between`` runs after each source (the scan's due removals)."""
    clb = _retrying(lambda: lb_scope(clients.lb, settings, region)
                    ) if Product.CLB.value in settings.lb_products else []
    scope = _retrying(lambda: full_scope(clients, settings, region, clb))
    # Source by source, each retried while throttled: the scan runs beside a burst's drains.
    parts = [LbScope(clb_ids=(lb,), products=frozenset({Product.CLB})) for lb in scope.clb_ids]
    parts += [replace(scope, clb_ids=(), products=frozenset({p}))
              for p in (Product.ALB, Product.NLB) if p in scope.products]
    members: list[Membership] = []
    for part in parts:
        members += _retrying(lambda part=part: clients.lbs.scan(part))  # type: ignore[misc]
        if between is not None:
            between()
    read = [*scope.clb_ids, *(f"{p.value}:{g}" for p in (Product.ALB, Product.NLB)
                              for g in scope.where(p))]
    return sorted({*read, *(source_of(m) for m in members)}), members


def _retrying(call: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """``call`` again after a pause while it fails with a retryable error (throttled)."""
    for pause in SCAN_PAUSES_S:
        try:
            return call()
        except CloudError as err:
            if not err.retryable:
                raise
            sleep(pause * random.uniform(0.5, 1.0))
    return call()


def _open_drains(store: Ledger, settings: Settings, region: str, now: datetime
                 ) -> list[tuple[EntryLike, datetime]]:
    """The region's drains whose deadline is ahead (their late memberships still matter)."""
    out: list[tuple[EntryLike, datetime]] = []
    for entry in store.ledger_find(Kind.DRAIN.value, limit=100_000):
        deadline = parse_iso_or_none(entry.data.get("deadline"))
        if (entry.instance_id is None or deadline is None or deadline <= now
                or str(entry.data.get("region") or settings.region) != region
                or entry.status not in LIVE_DRAINS):
            continue
        out.append((entry, deadline))
    return out


def _hot_groups(store: Ledger, settings: Settings, region: str, now: datetime) -> list[GroupRef]:
    """The groups the open drains recorded memberships in, most shared first."""
    count: dict[GroupRef, int] = {}
    for entry, _deadline in _open_drains(store, settings, region, now):
        for m in memberships_of(entry.data):
            count[m.group] = count.get(m.group, 0) + 1
    products = set(settings.lb_products)
    return [g for g, _ in sorted(count.items(), key=lambda kv: (-kv[1], str(kv[0])))
            if g.product.value in products]


def _retrying_each(clients: ClientsPort, hot: Sequence[GroupRef]) -> list[Membership]:
    """The members of each hot group (a group gone meanwhile: none)."""
    members: list[Membership] = []
    for group in hot:
        try:
            members += _retrying(lambda group=group: clients.lbs.members_of(group))  # type: ignore[misc]
        except NotFoundError:
            continue
    return members


@dataclass
class _LateBatch:
    """Late memberships found by one read of the scan, and where their removal stands."""

    late: dict[str, list[Membership]]  # drain key -> its late memberships
    keys: dict[str, list[str]]  # drain key -> its index keys
    deadline: datetime  # the earliest of their drains'
    margin_s: float
    drain_s: float
    seed: str
    remove_at: datetime | None = None
    removed_at: datetime | None = None
    attempts: int = 0

    @classmethod
    def found(cls, store: Ledger, settings: Settings, region: str,
              members: Sequence[Membership], now: datetime, *, seed: str,
              known: set[str] | frozenset[str] = frozenset()) -> _LateBatch | None:
        """What ``members`` show of the open drains' instances that the drains did not record
        (nor an earlier batch, ``known``); None when nothing."""
        by_key: dict[str, list[Membership]] = {}
        for m in members:
            for key in server_keys(m):
                by_key.setdefault(key, []).append(m)
        late: dict[str, list[Membership]] = {}
        keys_of: dict[str, list[str]] = {}
        deadlines: list[datetime] = []
        for entry, deadline in _open_drains(store, settings, region, now):
            recorded = {member_id(Membership.from_snapshot(s))
                        for name in ("memberships", "master_slave")
                        for s in entry.data.get(name) or ()}
            # What an earlier scan recorded late and did not remove (it died after its weight-0
            # write): taken again, with the weight it recorded, not the 0 it wrote.
            scan = entry.data.get("scan") if isinstance(entry.data.get("scan"), dict) else {}
            before = {member_id(m): m for m in (Membership.from_snapshot(s)
                                                for s in (scan or {}).get("late_snapshots") or ())}
            keys = list(entry.data.get("index_keys") or [entry.instance_id])
            owner = Owner.of(entry.instance_id, entry.data)
            seen = {member_id(m): m for key in keys for m in by_key.get(key, ())
                    if owner.owns(m) and m.removable}
            extra = [before.get(mid, m) for mid, m in sorted(seen.items())
                     if mid not in recorded and mid not in known]
            if extra:
                late[entry.key], keys_of[entry.key] = extra, keys
                deadlines.append(deadline)
        if not late:
            return None
        return cls(late, keys_of, min(deadlines), float(settings.spot_margin_s),
                   float(settings.drain_time_s), seed)

    def members(self) -> list[Membership]:
        return [m for ms in self.late.values() for m in ms]

    def member_ids(self) -> set[str]:
        return {member_id(m) for m in self.members()}

    def stop(self, store: Ledger, clients: ClientsPort, report: ScanReport,
             clock: Callable[[], datetime]) -> None:
        """Recorded in each drain's entry first (their original weights: a scan that dies after
        its write leaves them for the restore, the sweep's removal or the next scan), then weight
        0 (one write per group for all of them); the removal falls due after the drain time, or
        what the earliest deadline leaves."""
        everything = self.members()
        for key, ms in self.late.items():
            report.late.setdefault(key, []).extend(summary(m) for m in ms)
            _record_late(store, key, ms, report, removed_at=None)
        emit(log, "memberships the index did not know", level=30, region=report.region,
             drains=len(self.late), memberships=len(everything))
        latest = self.deadline - timedelta(seconds=self.margin_s)
        lbs = clients.lbs
        try:
            lbs.wait(lbs.set_weights(everything, 0, token_seed=f"{self.seed}:weight0"),
                     timeout_s=max(1.0, min((latest - clock()).total_seconds() / 2,
                                            job_wait_cap("weight0", everything))))
        except CloudError as err:  # removed all the same
            report.errors.append(f"weight0: {err}")
        now = clock()
        wait = max(0.0, min(self.drain_s, (latest - now).total_seconds()))
        self.remove_at = now + timedelta(seconds=wait)

    def remove(self, clients: ClientsPort, report: ScanReport,
               clock: Callable[[], datetime]) -> bool:
        """One removal (retried while throttled or busy); whether it succeeded."""
        lbs = clients.lbs
        self.attempts += 1
        try:
            failed, unfinished = _retrying(lambda: lbs.wait_jobs(
                lbs.remove(self.members(), token_seed=f"{self.seed}:remove:{self.attempts}"),
                timeout_s=max(1.0, min((self.deadline - clock()).total_seconds(),
                                       job_wait_cap("remove", self.members())))))
            if failed or unfinished:
                report.errors.append("remove: jobs not succeeded: " + ", ".join(
                    str(w.job_id) for w in [*failed, *unfinished]))
                return False
        except CloudError as err:
            report.errors.append(f"remove: {err}")
            return False
        self.removed_at = clock()
        return True


REMOVE_ATTEMPTS = 3  # a late batch's removals (each with a new token, throttling retried inside)


def _remove_due(batches: Sequence[_LateBatch], clients: ClientsPort, report: ScanReport,
                clock: Callable[[], datetime]) -> None:
    """Between two sources of the scan: the late memberships whose drain time has passed (one
    try; what fails is tried again at the end of the scan)."""
    now = clock()
    for batch in batches:
        if batch.remove_at is not None and batch.removed_at is None and batch.remove_at <= now:
            batch.remove(clients, report, clock)


def _finish_late(store: Ledger, clients: ClientsPort, batches: Sequence[_LateBatch],
                 report: ScanReport, *, clock: Callable[[], datetime],
                 sleep: Callable[[float], None]) -> None:
    """Remove what is still due (after its time, again while it fails, before the deadline),
    then record in each drain what was removed."""
    for batch in sorted(batches, key=lambda b: b.remove_at or clock()):
        if batch.remove_at is None or batch.removed_at is not None:
            continue
        wait = (batch.remove_at - clock()).total_seconds()
        if wait > 0:
            sleep(wait)
        while (batch.removed_at is None and batch.attempts < REMOVE_ATTEMPTS
               and clock() < batch.deadline):
            if not batch.remove(clients, report, clock):
                sleep(SCAN_PAUSES_S[min(batch.attempts, len(SCAN_PAUSES_S) - 1)])
    removed = [b.removed_at for b in batches if b.removed_at is not None]
    report.removed_at = iso(max(removed)) if removed else None
    index = MembershipIndex(store, clock)  # type: ignore[arg-type]
    for batch in batches:
        if batch.removed_at is None:  # still recorded as pending in its drains (stop)
            continue
        for key, ms in batch.late.items():
            entry = _record_late(store, key, ms, report, removed_at=batch.removed_at)
            index.forget(report.region, batch.keys[key], None if entry is None
                         else Owner.of(entry.instance_id, entry.data))


def _record_late(store: Ledger, key: str, ms: Sequence[Membership], report: ScanReport, *,
                 removed_at: datetime | None) -> EntryLike | None:
    """A drain's late memberships in its entry (``scan``): their snapshots (the first seen: the
    original weight), those not yet removed (``pending``), and ``removed_at`` once none is."""
    entry = store.ledger_get(key)
    if entry is None:
        return None
    raw = entry.data.get("scan")
    scan: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
    snapshots = {member_id(Membership.from_snapshot(s)): s
                 for s in scan.get("late_snapshots") or () if isinstance(s, dict)}
    for m in ms:
        snapshots.setdefault(member_id(m), m.snapshot())
    ids = {member_id(m) for m in ms}
    pending = set(scan.get("pending") or ())
    pending = pending | ids if removed_at is None else pending - ids
    last = parse_iso_or_none(scan.get("last_removed_at"))
    if removed_at is not None:
        last = removed_at if last is None else max(last, removed_at)
    store.ledger_update(key, data={"scan": {
        "key": report.key, "late": [summary(Membership.from_snapshot(s))
                                    for s in snapshots.values()],
        "late_snapshots": list(snapshots.values()), "pending": sorted(pending),
        "last_removed_at": iso(last) if last else None,
        "removed_at": iso(last) if last and not pending else None,
        "scanned_at": report.scanned_at}})
    return entry


def record_sweep_scan(store: Ledger, region: str, scope: Sequence[str], *,
                      members: Sequence[Membership], started_at: datetime,
                      clock: Callable[[], datetime] = utc_now) -> None:
    """The sweep read every member in scope: the index takes it, and it counts as the region's
    last full scan (a notice within the fresh time after it needs no scan of its own), unless a
    shared scan holds the entry right now."""
    index = MembershipIndex(store, clock)  # type: ignore[arg-type]
    index.record_scan(region, members, sources=sorted({*scope, *(source_of(m) for m in members)}))
    key, now = scan_key(region), clock()
    data = {"started_at": iso(started_at), "scanned_at": iso(now), "scope": list(scope),
            "sources": len(scope), "memberships": len(members), "by": "sweep",
            "lease_until": None}
    entry = store.ledger_get(key)
    if entry is None:
        store.ledger_claim(key, kind=Kind.LB_SCAN.value, data={**data, "generation": 1},
                           status="done")
    elif not (entry.status == "running" and ledger.lease_live(entry.data, now)):
        store.ledger_swap(key, expect={"generation": entry.data.get("generation")},
                          status="done", data=data)


def uncovered_scans(store: Ledger, clients: Callable[[], ClientsPort], settings: Settings, *,
                    owner: str | None = None) -> list[ScanReport]:
    """The finisher tick's part: for open drains found in the index that no scan covers (the
    delivery's scan failed, or the delivery died before it), the region's shared scan. Nothing
    open: one ledger read, no client built."""
    earliest: dict[str, datetime] = {}
    # A delivery runs its burst's scan after its drains: leave it that long.
    settled = utc_now() - timedelta(seconds=max(settings.lb_index_fresh_s, UNCOVERED_AFTER_S))
    for status in (DrainStatus.FOUND, DrainStatus.WEIGHTED, DrainStatus.WAITED):
        for entry in store.ledger_find(Kind.DRAIN.value, status=status.value):
            notice = parse_iso_or_none(entry.data.get("notice_time"))
            if (notice is None or notice > settled
                    or not (entry.data.get("index") or {}).get("used")):
                continue
            region = str(entry.data.get("region") or settings.region)
            if region not in earliest or notice < earliest[region]:
                earliest[region] = notice
    reports: list[ScanReport] = []
    for region, notice in sorted(earliest.items()):
        try:
            done = shared_scan(store, clients().for_region(region), settings, region, notice,
                               owner=owner or "finish")
        except CloudError as err:  # the next tick tries again
            emit(log, "membership scan failed", level=30, region=region, error=str(err))
            continue
        if done is not None:
            reports.append(done)
    return reports
