"""Practice 1: record every ECS event so released instances stay queryable.

parse → refuse other accounts' events and regions out of scope (shared.scope: reported, not
stored: the store is this account's lifecycle, and a forged Deleted must not release one of our
instances) → record (deduplicated, out-of-order safe) → snapshot the attributes of new instances
with one DescribeInstances call per region, in the instance's own region, so they remain known
after release. A failed snapshot is noted and retried on a later invocation; it never blocks the
record. An unreachable store raises, so the platform retries and nothing is dropped silently.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from shared.events import (
    ALL_EVENT_NAMES,
    EcsEvent,
    EventKind,
    InstanceState,
    eventbridge_type,
    parse,
)
from shared.log import BOUNDED_LINES, bind, emit, emit_bounded, get_logger
from shared.scope import EventScope, Refusal
from shared.settings import Settings

# typing is not imported at run time: the annotations are strings (a cold start saves ~2 ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from shared.clients import Clients, Instance
    from shared.store import Store

# Practice metadata, declared once: read by the deploy files' tests and the least-privilege check.
EVENT_TYPES: tuple[str, ...] = tuple(eventbridge_type(name) for name in ALL_EVENT_NAMES)
# The spot replacement's launch spec of opted-in instances, captured with their snapshot (what
# DescribeInstances does not show: RAM role, user data, the launch template version).
RAM_ACTIONS: tuple[str, ...] = (
    "ecs:DescribeInstances",
    "ecs:DescribeInstanceRamRole",
    "ecs:DescribeUserData",
    "ecs:DescribeLaunchTemplateVersions",
)

SNAPSHOT_RETRY_BATCH = 20  # earlier failed snapshots retried per invocation
MAX_LISTED = 100  # bad or refused elements listed in the answer (the counts are exact)

log = get_logger(__name__)


def handler(event: bytes, context: Any) -> dict[str, Any]:
    settings = Settings.from_env()
    with bind(request_id=getattr(context, "request_id", None), function="record_lifecycle"):
        received_at = datetime.now(timezone.utc)
        batch = parse(event, data_only_type=settings.data_only_type, received_at=received_at)
        # Bounded whatever the input: the first bad elements one line each, then a summary.
        emit_bounded(
            log, "bad element", [bad.to_dict() for bad in batch.errors[:BOUNDED_LINES]],
            total=batch.bad_count, decision="rejected",
        )
        scope = EventScope.resolve(settings, context)
        events, refused = scope.split(batch.events)
        if not events and not batch.errors:  # only other accounts' or regions' events
            return _nothing_recorded(refused, scope)
        from shared.store import store_for

        store = store_for(settings.db_url)
        if batch.errors:  # kept for a person to read: python -m tools.lifecycle rejected
            store.keep_rejected("record_lifecycle", event, [f"element {e.index}: {e.reason}" for e in batch.errors])
        recorded = store.record(events, received_at=received_at)
        new_ids = set(recorded.inserted)
        store_refused = dict(recorded.refused)
        # A refusal is the database's verdict on that element's data: a retry would meet it again.
        emit_bounded(
            log, "event refused by the store",
            [{"event_id": i, "reason": why} for i, why in recorded.refused[:BOUNDED_LINES]],
            total=len(recorded.refused), decision="refused",
        )
        for ecs_event in events:
            if ecs_event.event_id in store_refused:
                continue
            emit(
                log, "event recorded" if ecs_event.event_id in new_ids else "duplicate event",
                event_id=ecs_event.event_id, instance_id=ecs_event.instance_id,
                kind=ecs_event.kind.value, name=ecs_event.full_name, state=ecs_event.state,
                decision="recorded" if ecs_event.event_id in new_ids else "duplicate",
                latency_ms=round((received_at - ecs_event.event_time).total_seconds() * 1000),
            )
        stored = tuple(e for e in events if e.event_id not in store_refused)
        snapshots = _snapshot(store, settings, context, stored, scope)
        result: dict[str, Any] = {
            "recorded": len(recorded.inserted),
            "duplicates": len(recorded.duplicates),
            "snapshots": snapshots,
            "refused": [r.to_dict() for r in refused],
            "store_refused": [{"event_id": i, "reason": why} for i, why in recorded.refused[:MAX_LISTED]],
            "bad": [bad.to_dict() for bad in batch.errors[:MAX_LISTED]],
            "bad_count": batch.bad_count,
        }
        if scope.warnings:
            result["warnings"] = list(scope.warnings)
        return result


def _nothing_recorded(refused: tuple[Refusal, ...], scope: EventScope) -> dict[str, Any]:
    """The answer to a delivery with nothing to record, given without loading the store."""
    result: dict[str, Any] = {
        "recorded": 0, "duplicates": 0, "snapshots": {"taken": [], "failed": []},
        "refused": [r.to_dict() for r in refused], "store_refused": [], "bad": [], "bad_count": 0,
    }
    if scope.warnings:
        result["warnings"] = list(scope.warnings)
    return result


def _wants_snapshot(event: EcsEvent) -> bool:
    state = event.instance_state
    return (
        event.kind is EventKind.STATE_CHANGE
        and event.instance_id is not None
        and state is not None
        and (state.is_creation or state is InstanceState.RUNNING)
    )


def _snapshot(
    store: Store, settings: Settings, context: Any, events: tuple[EcsEvent, ...], scope: EventScope
) -> dict[str, Any]:
    """Snapshot new instances (and earlier failures): one DescribeInstances per region.

    Each instance is described in its own region (the event's; a retried one's as recorded):
    asked anywhere else, DescribeInstances answers an empty list. Only an invocation that
    carried at least one valid event does cloud work: a delivery of nothing but bad elements
    must never reach an API.
    """
    if not events:
        return {"taken": [], "failed": []}
    wanted: dict[str, str] = {}
    for e in events:
        if _wants_snapshot(e) and e.instance_id:
            wanted.setdefault(e.instance_id, scope.region_of(e))
    regions = {
        iid: wanted[iid] for iid in sorted(wanted)
        if (record := store.instance(iid)) is None or record.snapshot_at is None
    }
    backlog = [
        iid for iid in store.instances_needing_snapshot(limit=SNAPSHOT_RETRY_BATCH)
        if iid not in regions
    ]
    for iid, recorded in store.instance_regions(backlog).items():
        region = recorded or settings.region
        if scope.in_scope(region):
            regions[iid] = region
    if not regions:
        return {"taken": [], "failed": []}
    from shared.clients import AuthError, Clients, CloudError, credentials_from_context

    clients = Clients.warm(settings, credentials_from_context(context))
    by_region: dict[str, list[str]] = {}
    for iid, region in regions.items():
        by_region.setdefault(region, []).append(iid)
    taken: list[str] = []
    failed: list[str] = []
    for region, candidates in sorted(by_region.items()):
        try:
            found = clients.for_region(region).ecs.describe_instances(candidates)
        except CloudError as error:  # the record stands; the snapshot is retried later
            for iid in candidates:
                store.note_snapshot_failure(iid)
            # A person must see it: bad keys or a missing grant never heal on their own.
            level = logging.ERROR if isinstance(error, AuthError) else logging.WARNING
            emit(log, "snapshot failed", level, decision="snapshot_deferred", region=region,
                 reason=f"{error.code}: {error.message}", instances=candidates)
            failed += candidates
            continue
        missing = []
        for iid in candidates:
            if iid in found:
                store.set_snapshot(iid, found[iid].snapshot())
                taken.append(iid)
        _capture_launch_specs(store, settings, clients.for_region(region), region,
                              [found[iid] for iid in candidates if iid in found])
        for iid in candidates:
            if iid in found:
                continue
            # not visible (yet, or already released): retried later, a bounded number of times
            store.note_snapshot_failure(iid)
            missing.append(iid)
        emit(log, "snapshot", decision="snapshot_taken", region=region,
             instances=[iid for iid in candidates if iid in found], missing=missing)
        failed += missing
    return {"taken": taken, "failed": failed}


def _capture_launch_specs(store: Store, settings: Settings, clients: Clients, region: str,
                          described: list[Instance]) -> None:
    """The launch spec of each new instance opted in to the spot replacement, stored with it
    (shared.replace.spec): captured now, while it is described, not in the five minutes of
    its notice. A failure is logged and left to the notice, which captures what is missing."""
    from shared.replace.policy import verdict

    opted = [i for i in described if verdict(dict(i.tags), settings.replace_tag).replace]
    if not opted:
        return
    from shared.clients import CloudError
    from shared.replace.spec import capture_specs

    try:
        captured = capture_specs(store, clients.launch, opted, tag_name=settings.replace_tag,
                                 now=datetime.now(timezone.utc))
    except CloudError as error:
        emit(log, "launch spec deferred", logging.WARNING, region=region,
             decision="capture_deferred", reason=f"{error.code}: {error.message}",
             instances=[i.instance_id for i in opted])
        return
    emit(log, "launch specs captured", region=region, decision="captured", instances=captured)
