"""Practice 2: start an opted-in instance again after an unexpected stop (issue 5).

parse → refuse other accounts' events and regions out of scope (shared.scope) → nothing for
auto_start (shared.triage)? answer without loading the store or an SDK → record the rest
→ decide and act in each instance's own region (shared.autostart) → result. Stopped events may
start the instance; Running events close the incident its start opened; anything else is ignored
with a reason. An unreachable store and exhausted cloud retries raise, so the platform retries; so
does a start refused for now (OperationDenied.NoStock): the redelivery may start it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from shared.events import STATE_CHANGE, Batch, eventbridge_type, parse
from shared.log import BOUNDED_LINES, bind, emit_bounded, get_logger
from shared.scope import EventScope
from shared.settings import Settings
from shared.triage import auto_start_has_work, auto_start_ignored

# typing is not imported at run time: the annotations are strings (a cold start saves ~2 ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Practice metadata, declared once: read by the deploy files' tests and the least-privilege check.
EVENT_TYPES: tuple[str, ...] = (eventbridge_type(STATE_CHANGE),)
RAM_ACTIONS: tuple[str, ...] = (
    "ecs:DescribeInstances",
    "ecs:StartInstance",
    "ecs:StartInstances",
    "actiontrail:LookupEvents",
)

log = get_logger(__name__)


def handler(event: bytes, context: Any) -> dict[str, Any]:
    settings = Settings.from_env()
    with bind(request_id=getattr(context, "request_id", None), function="auto_start"):
        batch = parse(event, data_only_type=settings.data_only_type)
        # Bounded whatever the input: the first bad elements one line each, then a summary.
        emit_bounded(log, "bad element", [bad.to_dict() for bad in batch.errors[:BOUNDED_LINES]],
                     total=batch.bad_count, decision="rejected")
        scope = EventScope.resolve(settings, context)
        events, refused = scope.split(batch.events)
        if not auto_start_has_work(events, batch.bad_count):  # no store engine, no SDK loaded
            answer: dict[str, Any] = {"decisions": auto_start_ignored(events, settings.dry_run_reason),
                                      "bad": [], "refused": [r.to_dict() for r in refused]}
            if scope.warnings:
                answer["warnings"] = list(scope.warnings)
            return answer
        from shared.autostart import handle_events
        from shared.clients import Clients, credentials_from_context
        from shared.notify import Notifier
        from shared.store import store_for

        store = store_for(settings.db_url)
        if batch.errors:  # kept for a person to read: python -m tools.lifecycle rejected
            store.keep_rejected("auto_start", event, [f"element {e.index}: {e.reason}" for e in batch.errors])
        result = handle_events(
            Batch(events, batch.errors),
            store=store,
            clients=Clients.warm(settings, credentials_from_context(context)),
            notifier=Notifier.from_env(ledger=store, timeout_s=settings.notify_timeout_s),
            settings=settings,
            now=datetime.now(timezone.utc),
        )
        answer = result.to_dict()
        answer["refused"] = [r.to_dict() for r in refused]
        if scope.warnings:
            answer["warnings"] = list(scope.warnings)
        return answer
