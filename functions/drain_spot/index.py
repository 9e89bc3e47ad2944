"""Practice 3: drain a spot instance from every load-balancer group before it is reclaimed.

parse → refuse other accounts' events and regions out of scope (shared.scope) → no notice and no
guard input (shared.triage)? answer without loading the store or an SDK → record the rest
(the lifecycle knows the interruption) → drain each instance's notices concurrently with the other
instances', in its own region (shared.spot: verified as a spot instance of ours first, then the
step table) → result. Store unreachable, a cloud call that outlasted its retries, or a copy of a
notice whose drain another invocation holds (a live lease: LeaseHeldError): raise, so Function
Compute retries; the ledger makes the retry resume, take over an expired lease, or answer
``duplicate`` once the drain is done. Nothing answers success for a drain not done.

A tick of the function's timer (``SCHEDULE``) is the finisher: it removes the drains whose
removal was scheduled (``scheduled``: weight 0 done, removal due after the drain time, held by
the ledger's lease, see shared.spot.finish) instead of an invocation sleeping through the wait.
"""

from __future__ import annotations

import contextvars
import json

from shared.events import SPOT_INTERRUPTION, Batch, EventKind, eventbridge_type, parse
from shared.lb.actions import ram_actions_attribute
from shared.log import BOUNDED_LINES, bind, emit, emit_bounded, get_logger
from shared.scope import EventScope, Refusal
from shared.settings import Settings
from shared.triage import drain_spot_has_work

# typing is not imported at run time: the annotations are strings (a cold start saves ~2 ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from shared.drain import Drainer, DrainResult
    from shared.events import EcsEvent
    from shared.notify import Notifier
    from shared.replace.launcher import Replacer
    from shared.replace.parallel import Pending
    from shared.spot.batch import Party
    from shared.store import Store

# Practice metadata, declared once (deploy files and the least-privilege check read these).
EVENT_TYPES: tuple[str, ...] = (eventbridge_type(SPOT_INTERRUPTION),)
# Exactly what the drain calls: DescribeInstances (the notice's instance, its IPs, notices long
# past their deadline) and its load-balancer operations (LB_OPERATIONS below).
# The replacement (shared.replace): the successor by tag (DescribeInstances), the spec ECS
# does not show, the candidates, the launch.
OWN_ACTIONS: tuple[str, ...] = (
    "ecs:DescribeInstances",
    "ecs:DescribeInstanceRamRole",
    "ecs:DescribeUserData",
    "ecs:DescribeLaunchTemplateVersions",
    "ecs:DescribeRecommendInstanceType",
    "ecs:RunInstances",
)
# Find the memberships, weight 0, wait for the jobs, remove, verify, and the burst's shared scan
# of the membership index (shared.spot.scan): on every load-balancer product, composed from the
# adapters' declarations (shared/lb/actions.py).
# "add": the successor of a replaced instance joins every group its predecessor was in;
# "health": it serves in a CLB group once the group reports it healthy (DescribeHealthStatus).
LB_OPERATIONS: tuple[str, ...] = ("list", "find", "scan", "members", "weight", "remove", "add",
                                  "wait", "health")

# RAM_ACTIONS: OWN_ACTIONS + the actions of LB_OPERATIONS, composed on first access.
__getattr__ = ram_actions_attribute(__name__, OWN_ACTIONS, LB_OPERATIONS)

# The finisher tick; ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S (deployed with it) is its period (60 s).
SCHEDULE = "0 * * * * *"
# = the trigger's batchWindow count (s.yaml): a delivered batch drains at once, so its drains
# share one write per group and step (shared.spot.batch); beyond it, drains queue
MAX_PARALLEL_DRAINS = 100
# How long the drains of a batch wait for each other before weight 0 (their claims and finds
# are a few store writes each: ~2 s for 100 drains on SQLite, far less on a server database).
WEIGHT0_GATE_S = 3.0

log = get_logger(__name__)


def handler(event: bytes, context: Any) -> dict[str, Any]:
    from shared.lb.servergroups import invocation_group_cache

    with invocation_group_cache():  # ALB/NLB groups listed once per invocation, not per thread
        return _handle(event, context)


def _handle(event: bytes, context: Any) -> dict[str, Any]:
    settings = Settings.from_env()
    with bind(request_id=getattr(context, "request_id", None), function="drain_spot"):
        if _finisher_tick(event):
            return _finish_scheduled(settings, context)
        batch = parse(event, data_only_type=settings.data_only_type)
        # Bounded whatever the input: the first bad elements one line each, then a summary.
        emit_bounded(log, "bad element", [bad.to_dict() for bad in batch.errors[:BOUNDED_LINES]],
                     total=batch.bad_count, decision="rejected")
        scope = EventScope.resolve(settings, context)
        events, refused = scope.split(batch.events)
        if not drain_spot_has_work(events, batch.bad_count):  # no store engine, no SDK loaded
            return _answer([], _select(events)[1], refused, batch, scope)
        from shared.store import store_for

        store = store_for(settings.db_url)  # kept warm across invocations of this instance
        if batch.errors:  # kept for a person to read: python -m tools.lifecycle rejected
            store.keep_rejected("drain_spot", event, [f"element {e.index}: {e.reason}" for e in batch.errors])
        store.record(events)
        notices, ignored = _select(events)
        if not notices:
            return _answer([], ignored, refused, batch, scope)
        # The successors of opted-in instances launch beside their drains (shared.replace).
        # One DescribeInstances per region for the delivery's drains and replacements alike.
        drainer = _drainer(store, settings, context)
        replacing = _start_replacements(notices, store, settings, context, drainer)
        try:
            drains = _drain_all(notices, drainer)
            # Drains that found their groups in the index share one scan for what it did not
            # know (a drain that read its scope itself needs none).
            indexed = {d.key for d in drains if d.index and d.index.get("used")}
            if indexed and not settings.dry_run:
                _shared_scans(store, settings, context, notices)
        except BaseException:
            replacing.wait()
            raise
        replacing.drains_done()
        replaced = replacing.results()
        return _answer([d.to_dict() for d in drains], ignored, refused, batch, scope,
                       replacements=[r.to_dict() for r in replaced])


def _finisher_tick(event: bytes) -> bool:
    """A timer's event (FC: triggerTime, triggerName, payload); this function's only timer is
    the finisher. Notices never carry triggerTime, so only timer bodies are decoded twice."""
    if b'"triggerTime"' not in event:
        return False
    try:
        doc = json.loads(event)
    except ValueError:
        return False
    return isinstance(doc, dict) and "triggerTime" in doc and "triggerName" in doc


def _finish_scheduled(settings: Settings, context: Any) -> dict[str, Any]:
    """The tick: the scheduled removals due before the next tick, each at its time (they may
    keep this invocation up to a period), beside the shared scans no delivery ran and the
    replacements' progress, which do not wait for them."""
    from concurrent.futures import ThreadPoolExecutor

    from shared.clients import Clients, credentials_from_context
    from shared.spot.finish import finish_due
    from shared.spot.scan import uncovered_scans
    from shared.store import store_for

    store = store_for(settings.db_url)
    credentials = credentials_from_context(context)
    owner = getattr(context, "request_id", None)
    with ThreadPoolExecutor(max_workers=1) as pool:
        removals = pool.submit(contextvars.copy_context().run, finish_due, store,
                               lambda: Clients.warm(settings, credentials),
                               _notifier(store, settings), settings, owner=owner)
        try:  # a burst whose shared scan failed or never ran (its delivery died) gets it here
            if settings.lb_index and not settings.dry_run:
                uncovered_scans(store, lambda: Clients.warm(settings, credentials), settings,
                                owner=owner)
            from shared.replace.sweep import sweep_replacements

            replaced = sweep_replacements(_replacer(store, settings, context))
        finally:
            report = removals.result()  # its error, if any, is the tick's
    return {"scheduled_removals": report.to_dict(), "replacements": replaced.to_dict()}


def _answer(drains: list[dict[str, Any]], ignored: list[dict[str, Any]], refused: tuple[Refusal, ...],
            batch: Batch, scope: EventScope, *,
            replacements: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "drains": drains,
        "replacements": replacements or [],
        "ignored": ignored,
        "refused": [r.to_dict() for r in refused],
        "bad": [bad.to_dict() for bad in batch.errors],
    }
    if scope.warnings:
        result["warnings"] = list(scope.warnings)
    return result


def _select(
    events: tuple[EcsEvent, ...] | list[EcsEvent],
) -> tuple[list[EcsEvent], list[dict[str, Any]]]:
    notices: list[EcsEvent] = []
    ignored: list[dict[str, Any]] = []
    for ecs_event in events:
        reason = None
        if ecs_event.kind is not EventKind.SPOT_INTERRUPTION:
            reason = f"not a spot interruption ({ecs_event.kind.value}): recorded only"
        elif ecs_event.instance_id is None:
            reason = "interruption without an instance id"
        if reason is None:
            notices.append(ecs_event)
            continue
        emit(log, "event ignored", event_id=ecs_event.event_id,
             instance_id=ecs_event.instance_id, decision="ignored", reason=reason)
        ignored.append({"event_id": ecs_event.event_id, "instance_id": ecs_event.instance_id,
                        "kind": ecs_event.kind.value, "reason": reason})
    return notices, ignored


def _drainer(store: Store, settings: Settings, context: Any) -> Drainer:
    from shared.clients import Clients, credentials_from_context
    from shared.drain import Drainer

    credentials = credentials_from_context(context)
    return Drainer(
        store,
        # Per thread (the drain's threads never share an SDK client), kept warm across
        # invocations; each notice is drained through .for_region(its region).
        lambda: Clients.warm(settings, credentials),
        settings,
        notifier=_notifier(store, settings),
        owner=getattr(context, "request_id", None),
    )


def _replacer(store: Store, settings: Settings, context: Any,
              drainer: Drainer | None = None) -> Replacer:
    from shared.clients import Clients, credentials_from_context
    from shared.replace.launcher import Replacer

    credentials = credentials_from_context(context)
    return Replacer(store, lambda: Clients.warm(settings, credentials), settings,
                    notifier=_notifier(store, settings),
                    owner=getattr(context, "request_id", None),
                    coalescer=drainer.coalescer if drainer is not None else None)


def _start_replacements(notices: list[EcsEvent], store: Store, settings: Settings,
                        context: Any, drainer: Drainer) -> Pending:
    from shared.replace.parallel import start

    return start(notices, _replacer(store, settings, context, drainer))


def _shared_scans(store: Store, settings: Settings, context: Any, notices: list[EcsEvent]) -> None:
    """The burst's shared scan per region, unless one covers these notices (shared.spot.scan):
    it catches the memberships the index did not know."""
    from shared.clients import Clients, credentials_from_context
    from shared.spot.scan import shared_scan

    earliest: dict[str, Any] = {}
    for notice in notices:
        region = notice.region or settings.region
        if region not in earliest or notice.event_time < earliest[region]:
            earliest[region] = notice.event_time
    clients = Clients.warm(settings, credentials_from_context(context))
    for region, notice_time in sorted(earliest.items()):
        shared_scan(store, clients.for_region(region), settings, region, notice_time,
                    owner=getattr(context, "request_id", None))


def _notifier(store: Store, settings: Settings) -> Notifier:
    from shared.notify import Notifier

    return Notifier.from_env(ledger=store, timeout_s=settings.notify_timeout_s)


def _drain_all(notices: list[EcsEvent], drainer: Drainer) -> list[DrainResult]:
    """One thread per instance, so none waits for another's drain time; an instance's copies
    of one notice (two envelopes in one batch) run one after the other in its thread, so the
    later ones meet the finished drain (duplicates) instead of its live lease."""
    by_instance: dict[str | None, list[EcsEvent]] = {}
    for notice in notices:
        by_instance.setdefault(notice.instance_id, []).append(notice)
    if len(by_instance) == 1:
        return [drainer.drain(notice) for notice in notices]
    drainer.batch_size = len(by_instance)  # their calls are gathered per group (shared.spot.batch)
    # Here, not at the top: concurrent.futures (queue, threads) is ~10 ms of every cold start,
    # and a delivery with one instance or none never needs a pool.
    from concurrent.futures import ThreadPoolExecutor

    from shared.spot.batch import Gate

    # The drains meet before their first write, so each group gets one weight-0 write for the
    # batch (their claims, a few store writes each, would otherwise spread them over seconds).
    # Not when some must queue for a thread: they would keep the others waiting.
    gate = (Gate(len(by_instance), WEIGHT0_GATE_S)
            if len(by_instance) <= MAX_PARALLEL_DRAINS else None)
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_DRAINS, len(by_instance))) as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, _drain_each, drainer, copies,
                        gate.party() if gate is not None else None)
            for copies in by_instance.values()
        ]
    results: list[DrainResult] = []
    first_error: BaseException | None = None
    for copies, future in zip(by_instance.values(), futures, strict=True):
        error = future.exception()
        if error is None:
            results.extend(future.result())
            continue
        emit(log, "drain failed", level=30 if getattr(error, "retryable", False) else 40,
             event_id=copies[0].event_id, instance_id=copies[0].instance_id,
             error_type=type(error).__name__, error=str(error), decision="platform retry")
        first_error = first_error or error
    if first_error is not None:  # the platform retries the batch; finished drains are duplicates
        raise first_error
    return results


def _drain_each(drainer: Drainer, copies: list[EcsEvent], party: Party | None
                ) -> list[DrainResult]:
    return [drainer.drain(notice, party=party) for notice in copies]  # the first one passes
