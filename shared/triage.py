"""Does a delivery hold work for a function? Decided from the parsed events alone.

A function asks this before it imports the store engine (SQLAlchemy and a driver) or any SDK,
so a delivery it has nothing to do with costs a parse and a log line (issue 16: an ignorable
event cost 14-25x a bare interpreter, most of it SQLAlchemy). What counts as work:

- ``record_lifecycle``: every event in scope (recording is its work) and any bad element (kept
  in the store for a person to read, ``Store.keep_rejected``). Only a delivery of nothing but
  other accounts' or out-of-scope regions' events is ignorable there.
- ``auto_start``: a ``Stopped`` state change (it may start the instance), ``Running`` (it closes
  the incident a start opened: whether one is open is in the store, so a Running event is
  work), ``Stopping`` (it bounds an unseen stop for the sweep's re-check), and the events its
  guards read back from the store (spot interruptions, platform stops), which it records so its
  guards see them whichever function received them. ``Pending``, ``Starting`` and ``Deleted``
  change no decision of auto_start: they are left to record_lifecycle, which records every
  event in the store the functions share (acting needs a shared store: shared.settings).
- ``drain_spot``: a spot interruption, and the same guard inputs as auto_start.

A bad element is work for every function: 15a keeps rejected deliveries in the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared.events import PLATFORM_STOP_EVENTS, SPOT_INTERRUPTION, EcsEvent, EventKind
from shared.log import emit, get_logger

# typing is not imported at run time: the annotations are strings (a cold start saves ~2 ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "AUTO_START_STATES",
    "GUARD_INPUTS",
    "auto_start_has_work",
    "auto_start_ignored",
    "drain_spot_has_work",
]

# Event names auto_start's guards read back from the store (spot_skip, platform_skip).
GUARD_INPUTS = frozenset({SPOT_INTERRUPTION, *PLATFORM_STOP_EVENTS})
# State changes auto_start acts on (Stopped, Running) or keeps for the sweep (Stopping).
AUTO_START_STATES = frozenset({"Stopped", "Running", "Stopping"})

log = get_logger(__name__)


def _guard_input(event: EcsEvent) -> bool:
    return event.name in GUARD_INPUTS


def auto_start_has_work(events: Iterable[EcsEvent], bad_count: int) -> bool:
    """True when auto_start must reach the store (and perhaps the cloud) for this delivery."""
    return bad_count > 0 or any(
        _guard_input(e)
        or (e.kind is EventKind.STATE_CHANGE and e.instance_id is not None and e.state in AUTO_START_STATES)
        for e in events
    )


def drain_spot_has_work(events: Iterable[EcsEvent], bad_count: int) -> bool:
    """True when drain_spot must reach the store (and perhaps the cloud) for this delivery."""
    return bad_count > 0 or any(_guard_input(e) or e.kind is EventKind.SPOT_INTERRUPTION for e in events)


def auto_start_ignored(events: Sequence[EcsEvent], dry_run_reason: str | None) -> list[dict[str, Any]]:
    """auto_start's decisions for a delivery without work: each event ignored, with the reason
    and the log line shared.autostart gives it (same words, same fields)."""
    decisions: list[dict[str, Any]] = []
    for event in sorted(events, key=lambda e: e.event_time):
        if event.kind is not EventKind.STATE_CHANGE or event.instance_id is None:
            reason = f"not a state change ({event.full_name})"
        else:
            reason = f"state {event.state}: auto-start acts on Stopped and Running only"
        if dry_run_reason:  # as shared.autostart says it: a dry run nobody asked for says why
            reason = f"{reason} [dry run: {dry_run_reason}]"
        emit(log, "auto_start decision", instance_id=event.instance_id, event_id=event.event_id,
             origin="event", decision="ignored", reason=reason, store="not needed")
        decisions.append({"instance_id": event.instance_id, "decision": "ignored", "reason": reason,
                          "event_id": event.event_id})
    return decisions
