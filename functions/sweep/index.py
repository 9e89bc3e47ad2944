"""Timer: catch what events missed, every few minutes.

* auto-start: escalate starts not verified (no Running) within the incident timeout, and re-check
  opted-in instances that are Stopped with no incident (a missed event);
* spot drain (shared.spot.sweep): take over every unfinished drain whose lease expired and
  finish it before its deadline (remove what is left) or, after it, undo it when the instance was
  not reclaimed (the recorded original weights back); put back finished drains whose instance
  was not reclaimed after all; remove backends whose instance no longer exists from the load
  balancers in scope.

Both parts always run; a cloud or store error in one is raised after the other has run, so the
platform retries and nothing is hidden.

Regions: ``ECS_EVENT_OPS_REGIONS`` when set; otherwise the function's own region plus every region
the store has recorded an instance in (the events are account-wide, so those are the regions
where there is anything of ours to re-check). Each drain is swept in the region it was made in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from shared.autostart import sweep_auto_start
from shared.clients import Clients, credentials_from_context
from shared.drain import sweep_drains
from shared.lb.actions import ram_actions_attribute
from shared.log import bind, emit, get_logger
from shared.notify import Notifier
from shared.settings import Settings
from shared.store import Store, store_for

# Practice metadata, declared once: read by the deploy files' tests and the least-privilege check.
EVENT_TYPES: tuple[str, ...] = ()
SCHEDULE = "0 */5 * * * *"  # every five minutes (FC cron has seconds)
# The API actions of its own calls; the load-balancer ones follow from LB_OPERATIONS, composed
# from the adapters' declarations (shared/lb/actions.py; tools/ram_policy.py reads both).
OWN_ACTIONS: tuple[str, ...] = (
    "ecs:DescribeInstances",
    "ecs:StartInstance",
    "ecs:StartInstances",
    "actiontrail:LookupEvents",
    "cms:DescribeMetricLast",  # an escalated incident's alert carries the last CPU/memory
)
# Restore (members, add, weight, wait), finish drains and remove released backends (list, find,
# scan, remove), on every load-balancer product; a successor's health in its CLB groups
# (health) before it counts as serving.
LB_OPERATIONS: tuple[str, ...] = ("list", "find", "scan", "members", "add", "remove", "weight",
                                  "wait", "health")

# RAM_ACTIONS: OWN_ACTIONS + the actions of LB_OPERATIONS, composed on first access.
__getattr__ = ram_actions_attribute(__name__, OWN_ACTIONS, LB_OPERATIONS)


log = get_logger(__name__)


def handler(event: bytes, context: Any) -> dict[str, Any]:
    settings = Settings.from_env()
    with bind(request_id=getattr(context, "request_id", None), function="sweep"):
        now = datetime.now(timezone.utc)
        store = store_for(settings.db_url)
        clients = Clients.warm(settings, credentials_from_context(context))
        notifier = Notifier.from_env(ledger=store, timeout_s=settings.notify_timeout_s)
        regions = sweep_regions(settings, store)
        result: dict[str, Any] = {"dry_run": settings.dry_run, "regions": list(regions)}
        if settings.dry_run_reason:
            result["dry_run_reason"] = settings.dry_run_reason
        failures: list[Exception] = []
        parts: tuple[tuple[str, Callable[[], dict[str, Any]]], ...] = (
            ("auto_start", lambda: sweep_auto_start(
                store, clients, notifier, settings, now, regions=regions).to_dict()),
            ("drains", lambda: sweep_drains(
                store, clients, notifier, settings, now, regions=regions)),
            # Successors Running recorded (and notified), stalled ones reported (shared.replace).
            ("replacements", lambda: _sweep_replacements(store, clients, notifier, settings)),
        )
        for part, run in parts:
            try:
                result[part] = run()
            except Exception as error:  # the other part still runs; raised below
                emit(log, "sweep part failed", logging.ERROR, part=part, decision="failed",
                     reason=f"{type(error).__name__}: {error}")
                result[part] = {"error": f"{type(error).__name__}: {error}"}
                failures.append(error)
        emit(log, "sweep done", decision="swept", failed_parts=len(failures))
        if failures:
            raise failures[0]
        return result


def _sweep_replacements(store: Store, clients: Clients, notifier: Notifier,
                        settings: Settings) -> dict[str, Any]:
    from shared.replace.launcher import Replacer
    from shared.replace.sweep import sweep_replacements

    return sweep_replacements(Replacer(store, clients, settings, notifier=notifier),
                              resume=False).to_dict()


def sweep_regions(settings: Settings, store: Store) -> tuple[str, ...]:
    """``ECS_EVENT_OPS_REGIONS``, else our region plus the regions recorded in the store."""
    if settings.regions:
        return tuple(dict.fromkeys(settings.regions))
    return tuple(sorted({settings.region, *store.known_regions()}))
