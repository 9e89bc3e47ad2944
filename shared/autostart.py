"""Practice 2, safe auto-start: start an opted-in instance again after an unexpected stop.

Every public "start stopped instances" automation starts *every* stopped instance and so fights
operators, spot reclaims and locks (../shared/reference/lessons.md). This one:

1. acts only on instances opted in by the tag ``settings.auto_start_tag``: ``true`` starts after
   an unexpected stop, ``always`` after any stop; the allow/deny lists (ids or name globs) narrow
   it further;
2. re-reads the live state (one DescribeInstances per batch) and skips, with a stated reason,
   anything not still ``Stopped``, locked (alert for financial/security locks), being reclaimed
   as spot, stopped by an announced platform event, or (``true`` only) stopped on purpose by a
   user or role according to ActionTrail (``settings.actiontrail_fallback`` when unreadable);
3. caps starts per instance (``flap_max_starts`` per ``flap_window_s``, counted in the ledger,
   one alert per window);
4. starts each stop once: the ledger claim ``start:<iid>:<stop id>`` makes redeliveries and
   concurrent invocations harmless; a retryable refusal (NoStock) marks the claim ``retry`` so a
   redelivery claims ``…:retry<n>`` and tries again (:class:`RetryLaterError` asks FC for it);
   a try still claimed by another invocation (a live lease, shared.ledger) raises it too, and
   one whose lease expired (that invocation died) is taken over by the next try;
5. verifies: every start opens ``incident:<iid>:<stop id>``, the next ``Running`` event closes it,
   and :func:`sweep_auto_start` escalates the ones left open and re-checks stops nobody saw.

Dry run (``settings.dry_run``): the same decisions and logs, StartInstance(s) with ``DryRun``,
ledger claims under a ``dryrun:`` prefix only, no incident, no notification (logged instead).

Ledger kinds written here: ``start_attempt`` (one per try of a stop), ``start`` (one per real
start: the flap count), ``incident``, ``sweep_check`` and ``dry_run``.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any

from shared import ledger as ledger_vocab
from shared.clients import (
    CloudError,
    StartOutcome,
    StartResult,
    ThrottledError,
    TransientError,
)
from shared.cms import incident_readings
from shared.events import (
    PLATFORM_STOP_EVENTS,
    SPOT_INTERRUPTION,
    Batch,
    EcsEvent,
    EventKind,
    InstanceState,
    iso,
    parse_iso_or_none,
)
from shared.ledger import DRY_RUN_PREFIX, Kind, claim_once, start_key
from shared.log import emit, get_logger
from shared.notify import Notification

if TYPE_CHECKING:
    from shared.clients import Clients, Instance, TrailRecord
    from shared.notify import Notifier
    from shared.settings import Settings
    from shared.store import EventRecord, LedgerEntry, Store

__all__ = [
    "AutoStartResult",
    "AutoStarter",
    "Decision",
    "DecisionRecord",
    "Go",
    "Policy",
    "RetryLaterError",
    "Skip",
    "StopCandidate",
    "beyond_reach_skip",
    "flap_skip",
    "handle_events",
    "intent_verdict",
    "lock_skip",
    "platform_skip",
    "policy_of",
    "scope_skip",
    "settle_skip",
    "spot_skip",
    "status_skip",
    "sweep_auto_start",
    "unknown_stop_skip",
]

log = get_logger(__name__)

# The ledger's vocabulary (shared.ledger) under the names this module has always used.
KIND_ATTEMPT = Kind.START_ATTEMPT.value
KIND_START = Kind.START.value
KIND_INCIDENT = Kind.INCIDENT.value
KIND_SWEEP = Kind.SWEEP_CHECK.value
KIND_DRY_RUN = Kind.DRY_RUN.value
# The event path handed a "true" stop to the sweep (ActionTrail not settled, or throttled): from
# then on only the sweep decides it, measuring the settle window from ``data["anchor"]``.
KIND_DEFERRED = Kind.START_DEFERRED.value

# Statuses of a start_attempt entry. Only RETRY lets a later delivery of the same stop try again.
STATUS_CLAIMED = "claimed"
STATUS_RETRY = "retry"
INCIDENT_OPEN = "open"
INCIDENT_CLOSED = "closed"
INCIDENT_ESCALATED = "escalated"

# A claim still "claimed" after this long belongs to an invocation that died before its start
# call (FC's own timeout is far shorter): a redelivery may take the next try.
STALE_CLAIM_S = 900
MAX_START_ATTEMPTS = 20  # tries of one stop (FC redeliveries after NoStock); then the sweep's turn
# ActionTrail's "Retention period for queryable events": 90 days (product-overview/limits).
TRAIL_RETENTION_S = 90 * 86400
# A query starts this far inside the retention, so its StartTime is never beyond the reach.
TRAIL_REACH_MARGIN_S = 60
RECHECK_INTERVAL_S = 3600  # one sweep re-check per instance per rolling hour
SWEEP_GRACE_S = 300  # a stop event younger than this belongs to the event path, not the sweep
INCIDENT_CLOSE_SLACK_S = 60  # a Running this much before the recorded start still closes it
# Locks that mean someone must act (billing, security): they alert. Recycling is a spot reclaim.
ALERT_LOCKS = frozenset({"financial", "security", "dedicatedhostfinancial"})
RUNNING_LIKE = frozenset({"Running", "Starting", "Pending"})
# O&M statuses meaning the announced platform stop did not happen (the latest event decides).
INACTIVE_OM_STATUSES = frozenset({"Canceled", "Avoided", "Failed"})
# ActionTrail identities that are not "a user or role" stopping on purpose.
NON_HUMAN_IDENTITIES = frozenset({"system"})


class Decision(str, Enum):
    """What became of one event or instance; the ``decision`` field of every log line."""

    STARTED = "started"
    SKIPPED = "skipped"
    DRY_RUN = "dry-run"
    CAPPED = "capped"
    FAILED = "failed"
    ALREADY_RUNNING = "already_running"
    VERIFIED = "verified"  # a Running event (or the sweep) closed the start's incident
    ESCALATED = "escalated"  # the sweep: started but not Running in time
    IGNORED = "ignored"  # not an event this practice acts on


class Policy(str, Enum):
    """The opt-in tag's meaning."""

    NEVER = "never"
    UNEXPECTED = "true"  # start after an unexpected stop only
    ALWAYS = "always"  # start after any stop


class RetryLaterError(Exception):
    """Some starts were refused for now (NoStock…): raised so Function Compute redelivers."""

    def __init__(self, result: AutoStartResult) -> None:
        self.result = result
        failed = [d for d in result.decisions if d.instance_id in result.retry_later]
        detail = ", ".join(f"{d.instance_id} ({d.code})" for d in failed)
        super().__init__(f"start refused for now, retry the event: {detail}")


# ---------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class Skip:
    """A reason not to start. ``alert`` names the notification to send (None: log only)."""

    decision: Decision
    reason: str
    alert: str | None = None


@dataclass(frozen=True)
class Go:
    """The instance may be started; ``reason`` says why the stop counts as one to undo."""

    reason: str


@dataclass(frozen=True)
class StopCandidate:
    """One stop to consider: from a Stopped event, or synthesized by the sweep."""

    instance_id: str
    stop_id: str  # identity of the stop: the event id, or "sweep:<iid>:<hour>"
    stop_time: datetime | None  # None: unknown (a stop the store never saw)
    event_id: str | None = None
    origin: str = "event"  # "event" | "sweep"
    stopped_after: datetime | None = None  # sweep: last seen running then (stop time unknown)
    # The latest moment the stop call can have been made, on this deployment's clock (the
    # event's receipt, or its time plus the skew bound if earlier; the sweep's first sighting):
    # the settle window runs from here, since the event's own time may be skewed by minutes.
    # None: the stop time.
    anchor: datetime | None = None
    region: str | None = None  # where the instance lives (None: the function's own region)


@dataclass(frozen=True)
class DecisionRecord:
    instance_id: str | None
    decision: Decision
    reason: str
    event_id: str | None = None
    stop_id: str | None = None
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "instance_id": self.instance_id,
            "decision": self.decision.value,
            "reason": self.reason,
        }
        if self.event_id is not None:
            out["event_id"] = self.event_id
        if self.code is not None:
            out["code"] = self.code
        return out


@dataclass(frozen=True)
class AutoStartResult:
    decisions: tuple[DecisionRecord, ...]
    retry_later: tuple[str, ...] = ()  # instance ids whose start should be retried (NoStock)
    bad: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decisions": [d.to_dict() for d in self.decisions],
            "bad": list(self.bad),
        }
        if self.retry_later:
            out["retry_later"] = list(self.retry_later)
        return out


@dataclass(frozen=True)
class _Eligible:
    candidate: StopCandidate
    instance: Instance
    reason: str
    key: str  # the claimed start_attempt key


# ---------------------------------------------------------------------------------------------
# Pure decision rules (no I/O): each returns a Skip, or None when the rule lets the start go on


def policy_of(instance: Instance, settings: Settings) -> Policy:
    """``true`` / ``always`` (case and surrounding blanks ignored); anything else never."""
    value = (instance.tag(settings.auto_start_tag) or "").strip().lower()
    if value == Policy.UNEXPECTED.value:
        return Policy.UNEXPECTED
    if value == Policy.ALWAYS.value:
        return Policy.ALWAYS
    return Policy.NEVER


def _list_match(instance: Instance, patterns: Sequence[str]) -> str | None:
    for pattern in patterns:
        if pattern == instance.instance_id or fnmatch.fnmatchcase(instance.instance_id, pattern):
            return pattern
        if instance.name and fnmatch.fnmatchcase(instance.name, pattern):
            return pattern
    return None


def scope_skip(instance: Instance, settings: Settings) -> Skip | None:
    """Opt-in tag, then the deny list (wins), then the allow list (when not empty)."""
    tag = settings.auto_start_tag
    if policy_of(instance, settings) is Policy.NEVER:
        value = instance.tag(tag)
        shown = "absent" if value is None else repr(value)
        return Skip(Decision.SKIPPED, f"not opted in: tag {tag} is {shown} (needs 'true' or 'always')")
    denied = _list_match(instance, settings.auto_start_deny)
    if denied is not None:
        return Skip(Decision.SKIPPED, f"on the deny list ({denied!r})")
    if settings.auto_start_allow and _list_match(instance, settings.auto_start_allow) is None:
        return Skip(Decision.SKIPPED, "not on the allow list")
    return None


def status_skip(instance: Instance) -> Skip | None:
    """Only a still-Stopped instance is started."""
    status = instance.status
    if status == InstanceState.STOPPED.value:
        return None
    if status in RUNNING_LIKE:
        return Skip(Decision.ALREADY_RUNNING, f"live status is {status}: already started")
    return Skip(Decision.SKIPPED, f"live status is {status or 'unknown'}, not Stopped")


def lock_skip(instance: Instance) -> Skip | None:
    """Any OperationLocks: no start. Financial and security locks need a human: alert."""
    reasons = sorted(set(instance.lock_reasons))
    if not reasons:
        return None
    if "recycling" in reasons:
        return Skip(Decision.SKIPPED, "spot instance being reclaimed (recycling lock)")
    alerting = [r for r in reasons if r in ALERT_LOCKS]
    return Skip(
        Decision.SKIPPED,
        f"operation locks: {', '.join(reasons)}",
        alert="locked" if alerting else None,
    )


def spot_skip(instance: Instance, interruptions: Sequence[EventRecord]) -> Skip | None:
    """A recent PreemptibleInstanceInterruption: the stop is the spot reclaim.

    Only for a spot instance: a notice naming an on-demand one is forged or misrouted (the drain
    refuses it too) and must not keep a crashed instance down."""
    if not interruptions or not instance.is_spot:
        return None
    last = interruptions[-1]
    behaviour = instance.spot_interruption_behavior or "unknown"
    return Skip(
        Decision.SKIPPED,
        f"spot instance reclaimed: interruption notice at {iso(last.event_time)} "
        f"(SpotInterruptionBehavior {behaviour})",
    )


def active_platform_stop(events: Sequence[EventRecord]) -> EventRecord | None:
    """The latest announced platform stop, unless its latest status says it did not happen."""
    if not events:
        return None
    last = max(events, key=lambda e: e.event_time)
    return None if (last.status or "") in INACTIVE_OM_STATUSES else last


def platform_skip(events: Sequence[EventRecord], settings: Settings) -> Skip | None:
    """SystemMaintenance.Stop / SystemFailure.Stop announced: skip unless configured."""
    event = active_platform_stop(events)
    if event is None or settings.restart_after_platform_stop:
        return None
    return Skip(
        Decision.SKIPPED,
        f"platform stop: {event.full_name} at {iso(event.event_time)} "
        "(restart_after_platform_stop is off)",
    )


def settle_skip(
    policy: Policy, candidate: StopCandidate, now: datetime, settings: Settings
) -> Skip | None:
    """Under ``true``, a stop too fresh for ActionTrail to show its caller waits for the sweep.

    The age is counted from ``candidate.anchor`` (when this deployment first knew of the stop,
    on its own clock), so neither a skewed event time nor a late delivery shortens the wait.
    """
    if policy is not Policy.UNEXPECTED or not settings.actiontrail_settle_s:
        return None
    anchor = candidate.anchor or candidate.stop_time
    if anchor is None:
        return None
    age = (now - anchor).total_seconds()
    if age >= settings.actiontrail_settle_s:
        return None
    return Skip(
        Decision.SKIPPED,
        f"no ActionTrail record yet, but the stop is only {max(age, 0):.0f} s old "
        f"(known since {iso(anchor)}) and ActionTrail can take {settings.actiontrail_settle_s} s "
        f"to show a call: the sweep decides once it is {settings.actiontrail_settle_s} s old",
    )


def beyond_reach_skip(policy: Policy, window_start: datetime, oldest: datetime) -> Skip | None:
    """Under ``true``, no record is no proof when the window reaches past the 90 days ActionTrail
    keeps: the stop is "unknown", not "unexpected"."""
    if policy is not Policy.UNEXPECTED or window_start >= oldest:
        return None
    return Skip(
        Decision.SKIPPED,
        f"unknown stop: no StopInstance(s) by a user or role found, but the stop may predate "
        f"{iso(oldest)}, beyond the {TRAIL_RETENTION_S // 86400} days ActionTrail keeps; "
        "not treated as unexpected",
    )


def intent_verdict(
    policy: Policy,
    records: Sequence[TrailRecord] | None,
    error: CloudError | None,
    settings: Settings,
) -> Skip | Go:
    """``always`` starts after any stop; ``true`` only when nobody stopped it on purpose."""
    if policy is Policy.ALWAYS:
        return Go(f"tag {settings.auto_start_tag}=always: start after any stop")
    if error is not None:
        unreadable = f"ActionTrail unreadable ({error.code})"
        if settings.actiontrail_fallback == "start":
            return Go(f"{unreadable}; fallback 'start': stop treated as unexpected")
        return Skip(Decision.SKIPPED, f"{unreadable}; fallback 'skip': stop treated as deliberate")
    deliberate = [r for r in records or () if (r.user_type or "") not in NON_HUMAN_IDENTITIES]
    if deliberate:
        record = deliberate[0]
        who = " ".join(p for p in (record.user_type, record.user_name) if p) or "unknown identity"
        return Skip(
            Decision.SKIPPED,
            f"deliberate stop: {record.event_name} by {who} at {iso(record.event_time)} "
            "(ActionTrail)",
        )
    return Go("unexpected stop: no StopInstance(s) by a user or role in ActionTrail")


def unknown_stop_skip(policy: Policy, candidate: StopCandidate) -> Skip | None:
    """Under ``true`` a stop nobody recorded (it may predate this deployment) is left alone."""
    if policy is not Policy.UNEXPECTED or candidate.stop_time or candidate.stopped_after:
        return None
    return Skip(
        Decision.SKIPPED,
        "stop time unknown (no event for this instance in the store): under tag 'true' the "
        "sweep cannot tell an unexpected stop from an old deliberate one",
    )


def flap_skip(starts_in_window: int, settings: Settings) -> Skip | None:
    if starts_in_window < settings.flap_max_starts:
        return None
    return Skip(
        Decision.CAPPED,
        f"flap guard: {starts_in_window} starts in the last {settings.flap_window_s} s "
        f"(max {settings.flap_max_starts})",
        alert="capped",
    )


# ---------------------------------------------------------------------------------------------
# The practice


class AutoStarter:
    """One invocation's worth of auto-start: decide, act, verify, alert.

    Collaborators are injected; the handler builds the real ones. Alerts are queued and sent
    after the StartInstance calls, so a slow webhook never delays a start.
    """

    def __init__(
        self,
        store: Store,
        clients: Clients,
        notifier: Notifier,
        settings: Settings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clients = clients
        self.notifier = notifier
        self.settings = settings
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._alerts: list[Notification] = []
        self._deferred: set[str] = set()  # stop ids left to a later sweep in this invocation
        # Instances whose try another invocation holds (a live claim, its start not done yet):
        # the event is not answered as handled; FC redelivers it (RetryLaterError).
        self._held: set[str] = set()

    # -- entry points ------------------------------------------------------------------------

    def handle_batch(self, batch: Batch, now: datetime) -> AutoStartResult:
        """Record the events, act on Stopped ones, close incidents on Running ones."""
        self.store.record(batch.events)  # StoreUnavailableError propagates: FC retries
        decisions: list[DecisionRecord] = []
        stops: dict[str, StopCandidate] = {}
        running: list[EcsEvent] = []
        for event in sorted(batch.events, key=lambda e: e.event_time):
            iid = event.instance_id
            state = event.instance_state
            if event.kind is not EventKind.STATE_CHANGE or iid is None:
                decisions.append(self._ignore(event, f"not a state change ({event.full_name})"))
            elif state is InstanceState.STOPPED:
                previous = stops.get(iid)
                if previous is not None and previous.event_id == event.event_id:
                    decisions.append(self._ignore(event, "same event twice in this batch"))
                    continue
                if previous is not None and previous.event_id is not None:
                    decisions.append(self._ignore(
                        event, f"superseded by a later Stopped event {event.event_id} in this batch",
                        event_id=previous.event_id,
                    ))
                stops[iid] = StopCandidate(
                    iid, event.event_id, event.event_time, event.event_id, region=event.region,
                    anchor=self._known_since(event.event_time, now),
                )
            elif state is InstanceState.RUNNING:
                running.append(event)
            else:
                decisions.append(self._ignore(
                    event, f"state {event.state}: auto-start acts on Stopped and Running only"
                ))
        started, retry_later = self.process(list(stops.values()), now)
        decisions.extend(started)
        decisions.extend(self._close_incidents(event, now) for event in running)
        self._flush_alerts()
        return AutoStartResult(tuple(decisions), tuple(retry_later))

    def sweep(self, now: datetime, regions: Sequence[str] = ()) -> AutoStartResult:
        """Escalate incidents not closed in time; re-check opted-in Stopped instances in every
        region of ``regions`` (default: the function's own)."""
        decisions = self._escalate(now)
        for region in regions or (self.settings.region,):
            rechecked, _ = self._recheck(now, region)
            decisions.extend(rechecked)
        self._flush_alerts()
        return AutoStartResult(tuple(decisions))

    # -- the decision path (events and sweep alike) ------------------------------------------

    def process(
        self,
        candidates: Sequence[StopCandidate],
        now: datetime,
        live: Mapping[str, Instance] | None = None,
    ) -> tuple[list[DecisionRecord], list[str]]:
        """Decide every candidate against its live state, then start the eligible ones."""
        if not candidates:
            return [], []
        if live is None:
            live = self._describe([(c.instance_id, c.region) for c in candidates])
        decisions: list[DecisionRecord] = []
        eligible: list[_Eligible] = []
        for candidate in candidates:
            verdict = self._assess(candidate, live.get(candidate.instance_id), now)
            if isinstance(verdict, DecisionRecord):
                decisions.append(verdict)
            else:
                eligible.append(verdict)
        started, retry_later = self._start(eligible, now)
        decisions.extend(started)
        held = [c.instance_id for c in candidates if c.instance_id in self._held]
        return decisions, retry_later + held

    def _assess(
        self, candidate: StopCandidate, instance: Instance | None, now: datetime
    ) -> DecisionRecord | _Eligible:
        s = self.settings
        iid = candidate.instance_id
        if instance is None:
            return self._decide(candidate, Decision.SKIPPED, "instance not found (released?)")
        skip = scope_skip(instance, s) or status_skip(instance) or lock_skip(instance)
        if skip is not None:
            return self._skipped(candidate, instance, skip, now)
        interruptions = self.store.recent_events(
            iid, names=(SPOT_INTERRUPTION,), since=now - timedelta(seconds=s.spot_lookback_s)
        )
        skip = spot_skip(instance, interruptions)
        if skip is not None:
            return self._skipped(candidate, instance, skip, now)
        platform = self.store.recent_events(
            iid,
            names=tuple(sorted(PLATFORM_STOP_EVENTS)),
            since=(candidate.stop_time or now) - timedelta(seconds=s.platform_stop_lookback_s),
        )
        skip = platform_skip(platform, s)
        if skip is not None:
            return self._skipped(candidate, instance, skip, now)
        policy = policy_of(instance, s)
        skip = unknown_stop_skip(policy, candidate)
        if skip is not None:
            return self._skipped(candidate, instance, skip, now)
        verdict = (
            self._unexpected_verdict(candidate, now)
            if policy is Policy.UNEXPECTED
            else intent_verdict(policy, None, None, s)
        )
        if isinstance(verdict, Skip):
            return self._skipped(candidate, instance, verdict, now)
        reason = verdict.reason
        platform_event = active_platform_stop(platform)
        if platform_event is not None:
            reason += f"; platform stop {platform_event.full_name} (restart_after_platform_stop on)"
        count = self.store.ledger_count(
            KIND_START, iid, now - timedelta(seconds=s.flap_window_s)
        )
        skip = flap_skip(count, s)
        if skip is not None:
            return self._skipped(candidate, instance, skip, now)
        key, status = self._claim_attempt(candidate, reason, now)
        if key is None and status == STATUS_CLAIMED:
            self._held.add(iid)
            return self._decide(
                candidate, Decision.SKIPPED,
                f"stop {candidate.stop_id} is being started by another invocation (its claim is "
                "live): retry later", code="ClaimHeld",
            )
        if key is None:
            return self._decide(
                candidate, Decision.SKIPPED,
                f"already handled for stop {candidate.stop_id} (status {status})",
            )
        return _Eligible(candidate, instance, reason, key)

    def _unexpected_verdict(self, candidate: StopCandidate, now: datetime) -> Skip | Go:
        """Tag ``true``: was it stopped on purpose? Only a read of ActionTrail that can know says
        "unexpected"; anything less defers (to the sweep) or is "unknown", never a start."""
        s = self.settings
        iid = candidate.instance_id
        handed = self._handed_over(candidate)
        if handed is not None:
            return handed
        start, end = self._trail_window(candidate, now)
        oldest = now - timedelta(seconds=TRAIL_RETENTION_S - TRAIL_REACH_MARGIN_S)
        if end < oldest:  # the whole window is past the retention: nothing to read
            return beyond_reach_skip(Policy.UNEXPECTED, start, oldest) or Skip(
                Decision.SKIPPED, "unknown stop: beyond ActionTrail's reach"
            )
        try:
            records = self._clients(candidate.region).trail.lookup_instance_events(
                iid, max(start, oldest), end
            )
        except CloudError as err:
            # Throttling (LookupEvents allows 2 calls/s per account) says nothing about the stop:
            # it defers (the event path hands the stop to the sweep, the sweep reads it again
            # next time), never through the fallback, whose 'start' could start a person's stop.
            # Any other failure after the retries is an unreadable trail: the fallback decides.
            if isinstance(err, ThrottledError):
                return self._defer(candidate, now, Skip(
                    Decision.SKIPPED,
                    f"ActionTrail throttled ({err.code}) after retries: not read as unexpected; "
                    + ("the sweep decides it" if candidate.origin == "event"
                       else "the next sweep reads it again"),
                ))
            return intent_verdict(Policy.UNEXPECTED, None, err, s)
        verdict = intent_verdict(Policy.UNEXPECTED, records, None, s)
        if isinstance(verdict, Skip):  # a user or role stopped it: final, whatever its age
            return verdict
        unknown = beyond_reach_skip(Policy.UNEXPECTED, start, oldest)
        if unknown is not None:
            return unknown
        settle = settle_skip(Policy.UNEXPECTED, candidate, now, s)
        if settle is not None:
            return self._defer(candidate, now, settle)
        return verdict

    def _handed_over(self, candidate: StopCandidate) -> Skip | None:
        """A stop the event path already handed to the sweep stays the sweep's (redeliveries)."""
        if candidate.origin != "event":
            return None
        entry = self.store.ledger_get(self._defer_key(candidate.instance_id, candidate.stop_id))
        if entry is None:
            return None
        return Skip(
            Decision.SKIPPED,
            f"handed to the sweep at {entry.data.get('anchor')} ({entry.data.get('reason')})",
        )

    def _defer(self, candidate: StopCandidate, now: datetime, skip: Skip) -> Skip:
        """Leave the stop to the sweep: no claim is spent, so a later sweep decides it."""
        self._deferred.add(candidate.stop_id)
        if candidate.origin == "event":
            self.store.ledger_claim(
                self._defer_key(candidate.instance_id, candidate.stop_id), kind=KIND_DEFERRED,
                instance_id=candidate.instance_id, status="deferred",
                data={"anchor": iso(candidate.anchor or now), "stop_time": iso(candidate.stop_time),
                      "event_id": candidate.event_id, "reason": skip.reason},
            )
        return skip

    def _defer_key(self, iid: str, stop: str) -> str:
        return f"{DRY_RUN_PREFIX if self.settings.dry_run else ''}defer:{iid}:{stop}"

    def _trail_window(self, candidate: StopCandidate, now: datetime) -> tuple[datetime, datetime]:
        """Where the caller's record can be, on ActionTrail's clock: the stop call precedes the
        Stopped event by up to ``actiontrail_window_s``, and the trail's clock may be off the
        event's by ``actiontrail_skew_s`` either way (the end may lie in the future)."""
        s = self.settings
        skew = timedelta(seconds=s.actiontrail_skew_s)
        if candidate.stop_time is None:
            # The sweep: the stop came after the instance was last seen running.
            after = candidate.stopped_after or now - timedelta(seconds=s.actiontrail_window_s)
            return after - skew, now + skew
        start = candidate.stop_time - timedelta(seconds=s.actiontrail_window_s) - skew
        return start, candidate.stop_time + skew

    def _claim_attempt(
        self, candidate: StopCandidate, reason: str, now: datetime
    ) -> tuple[str | None, str | None]:
        """Claim the next try of this stop: ``start:<iid>:<stop>``, then ``…:retry<n>``.

        A later try is open only when the previous one ended in ``retry`` (NoStock, a transient
        failure) or its claim's lease expired (``lease_until``, :data:`STALE_CLAIM_S` after the
        claim: the invocation died before the start call); any other status (claimed, started,
        failed…) means the stop is handled. Each try has its own key (ledger.claim_once), so two
        invocations racing for the same try still start once.
        """
        dry = self.settings.dry_run
        data = {
            "stop_id": candidate.stop_id,
            "event_id": candidate.event_id,
            "stop_time": iso(candidate.stop_time),
            "origin": candidate.origin,
            "reason": reason,
            "lease_until": iso(now + timedelta(seconds=STALE_CLAIM_S)),
        }
        status: str | None = None
        for attempt in range(1, MAX_START_ATTEMPTS + 1):
            key = start_key(candidate.instance_id, candidate.stop_id, attempt, dry_run=dry)
            if claim_once(
                self.store, key, kind=KIND_DRY_RUN if dry else KIND_ATTEMPT,
                instance_id=candidate.instance_id, data={**data, "attempt": attempt},
            ):
                return key, None
            entry = self.store.ledger_get(key)
            status = entry.status if entry is not None else "unknown"
            stale = entry is not None and status == STATUS_CLAIMED and not _claim_live(entry, now)
            if status != STATUS_RETRY and not stale:
                return None, status
        return None, f"{MAX_START_ATTEMPTS} tries used"

    def _start(
        self, eligible: Sequence[_Eligible], now: datetime
    ) -> tuple[list[DecisionRecord], list[str]]:
        """Start the eligible instances, one call per region; a region whose call failed is
        raised once every other region's starts are recorded."""
        by_region: dict[str | None, list[_Eligible]] = {}
        for item in eligible:
            by_region.setdefault(item.candidate.region, []).append(item)
        decisions: list[DecisionRecord] = []
        retry_later: list[str] = []
        failure: Exception | None = None
        for region, items in by_region.items():
            try:
                started, later = self._start_in(region, items, now)
            except Exception as error:  # recorded by _start_in; the other regions go on
                failure = failure or error
                continue
            decisions.extend(started)
            retry_later.extend(later)
        if failure is not None:
            raise failure
        return decisions, retry_later

    def _start_in(
        self, region: str | None, eligible: Sequence[_Eligible], now: datetime
    ) -> tuple[list[DecisionRecord], list[str]]:
        ids = [e.instance.instance_id for e in eligible]
        dry = self.settings.dry_run
        ecs = self._clients(region).ecs
        try:
            if len(ids) == 1:
                results = [ecs.start_instance(ids[0], dry_run=dry)]
            else:
                results = ecs.start_instances(ids, dry_run=dry)
        except Exception as error:  # transient/auth: reopen the claims, then let FC retry
            # A transient failure may have lost the answer, not the start: read before retrying.
            live = self._reread(region, ids) if isinstance(error, TransientError) and not dry else {}
            started = [e for e in eligible if live.get(e.instance.instance_id) in RUNNING_LIKE]
            decisions = [
                self._apply(item, StartResult(item.instance.instance_id, StartOutcome.STARTED), now,
                            note=f"the start call failed ({getattr(error, 'code', None)}) but "
                            f"DescribeInstances shows {live[item.instance.instance_id]}: its answer "
                            "was lost, counted as a start")
                for item in started
            ]
            pending = [e for e in eligible if e not in started]
            for item in pending:
                self._update(item.key, STATUS_RETRY, {"error": f"{type(error).__name__}: {error}"})
            for item in pending:
                self._decide(
                    item.candidate, Decision.FAILED, f"start call failed, event to be retried: {error}",
                    code=getattr(error, "code", None), level=logging.WARNING,
                )
            if pending:
                raise
            return decisions, []
        by_id = {r.instance_id: r for r in results}
        # "Already running" although it was Stopped a moment ago: most likely this start, its
        # first answer lost and the retry refused (IncorrectInstanceStatus). Read it again: a
        # Starting/Running instance counts as started (flap guard, incident).
        unsure = [i for i, r in by_id.items() if r.outcome is StartOutcome.ALREADY_RUNNING]
        live = self._reread(region, unsure) if unsure and not dry else {}
        decisions = []
        retry_later: list[str] = []
        for item in eligible:
            iid = item.instance.instance_id
            result = by_id[iid]
            if live.get(iid) in RUNNING_LIKE:
                record = self._apply(
                    item, StartResult(iid, StartOutcome.STARTED), now,
                    note=f"StartInstance answered {result.code} but DescribeInstances shows "
                    f"{live[iid]} after it was Stopped: this start (its answer lost and the retry "
                    "refused) or a concurrent one, counted as a start",
                )
                decisions.append(record)
                continue
            record = self._apply(item, result, now)
            decisions.append(record)
            if (
                record.decision is Decision.FAILED
                and by_id[item.instance.instance_id].retryable
                and not dry
                and item.candidate.origin == "event"
            ):
                retry_later.append(item.instance.instance_id)
        return decisions, retry_later

    def _reread(self, region: str | None, ids: Sequence[str]) -> dict[str, str]:
        """Live statuses after an ambiguous start ({} when they cannot be read: not counted)."""
        try:
            return {i: inst.status for i, inst in self._clients(region).ecs.describe_instances(ids).items()}
        except Exception as error:  # the start's outcome stays unknown; the caller's path decides
            emit(log, "re-read after start failed", logging.WARNING, resource_ids=list(ids),
                 error=f"{type(error).__name__}: {error}")
            return {}

    def _apply(
        self, item: _Eligible, result: StartResult, now: datetime, note: str | None = None
    ) -> DecisionRecord:
        cand = item.candidate
        iid = cand.instance_id
        reason = f"{item.reason}; {note}" if note else item.reason
        if result.outcome is StartOutcome.STARTED:
            self._update(item.key, "started", {"started_at": iso(now)})
            common = {
                "stop_id": cand.stop_id,
                "event_id": cand.event_id,
                "stop_time": iso(cand.stop_time),
                "started_at": iso(now),
                "origin": cand.origin,
                "reason": reason,
            }
            self.store.ledger_claim(
                f"started:{iid}:{cand.stop_id}", kind=KIND_START, instance_id=iid,
                status="started", data=common,
            )
            self.store.ledger_claim(
                f"incident:{iid}:{cand.stop_id}", kind=KIND_INCIDENT, instance_id=iid,
                status=INCIDENT_OPEN, data=common,
            )
            return self._decide(cand, Decision.STARTED, reason, sent=True)
        if result.outcome is StartOutcome.ALREADY_RUNNING:
            self._update(item.key, "already_running", {"code": result.code})
            return self._decide(
                cand, Decision.ALREADY_RUNNING,
                f"StartInstance answered {result.code}: already started by someone else",
                code=result.code, sent=True,
            )
        if result.outcome is StartOutcome.DRY_RUN_OK:
            self._update(item.key, "dry_run_ok", {"code": result.code})
            return self._decide(
                cand, Decision.DRY_RUN, f"would start ({item.reason}); DryRun request accepted",
                code=result.code, sent=True,
            )
        code = result.code or "Unknown"
        if result.retryable:
            self._update(item.key, STATUS_RETRY, {"code": code, "message": result.message})
            self._alert(
                f"auto_start:retry:{iid}:{cand.stop_id}", "Auto-start refused for now",
                f"StartInstance {iid} answered {code} ({result.message}); the start is retried.",
                iid, severity="warning", code=code, stop_id=cand.stop_id,
            )
            return self._decide(
                cand, Decision.FAILED, f"StartInstance answered {code}: retry later",
                code=code, level=logging.WARNING, sent=True,
            )
        self._update(item.key, "failed", {"code": code, "message": result.message})
        self._alert(
            f"auto_start:failed:{iid}:{code}:{cand.stop_id}", "Auto-start failed",
            f"StartInstance {iid} answered {code} ({result.message}); not retried.",
            iid, severity="critical", code=code, stop_id=cand.stop_id,
        )
        return self._decide(
            cand, Decision.FAILED, f"StartInstance answered {code}: not retried",
            code=code, level=logging.ERROR, sent=True,
        )

    # -- verification ------------------------------------------------------------------------

    def _close_incidents(self, event: EcsEvent, now: datetime) -> DecisionRecord:
        iid = event.instance_id or ""
        entries = [
            entry
            for status in (INCIDENT_OPEN, INCIDENT_ESCALATED)
            for entry in self.store.ledger_find(KIND_INCIDENT, status=status, instance_id=iid)
            if _closed_by(entry, event.event_time)
        ]
        candidate = StopCandidate(iid, "", None, event.event_id)
        if not entries:
            return self._decide(candidate, Decision.IGNORED, "Running: no open incident")
        keys = ", ".join(e.key for e in entries)
        if self.settings.dry_run:
            return self._decide(candidate, Decision.DRY_RUN, f"Running: would close {keys}")
        for entry in entries:
            self._update(entry.key, INCIDENT_CLOSED, {
                "closed_by": event.event_id,
                "running_at": iso(event.event_time),
                "closed_at": iso(now),
                "previous_status": entry.status,
            })
        return self._decide(candidate, Decision.VERIFIED, f"Running: closed {keys}")

    def _escalate(self, now: datetime) -> list[DecisionRecord]:
        timeout = self.settings.incident_timeout_s
        overdue = self.store.ledger_find(
            KIND_INCIDENT, status=INCIDENT_OPEN, older_than=now - timedelta(seconds=timeout)
        )
        if not overdue:
            return []
        ids = sorted({e.instance_id for e in overdue if e.instance_id})
        regions = self.store.instance_regions(ids)
        live = self._describe(list(regions.items()))
        decisions: list[DecisionRecord] = []
        dry = self.settings.dry_run
        for entry in overdue:
            iid = entry.instance_id or ""
            candidate = StopCandidate(
                iid, str(entry.data.get("stop_id", "")), None,
                _opt_str(entry.data.get("event_id")), origin="sweep",
            )
            instance = live.get(iid)
            if instance is not None and instance.status == InstanceState.RUNNING.value:
                if not dry:
                    self._update(entry.key, INCIDENT_CLOSED, {
                        "closed_by": "sweep", "closed_at": iso(now),
                    })
                decisions.append(self._decide(
                    candidate, Decision.VERIFIED,
                    f"{entry.key}: Running (seen by the sweep; the Running event was missed)",
                ))
                continue
            status = instance.status if instance is not None else "gone"
            # The page says whether it died loaded or idle (CloudMonitor's last readings); not
            # read in a dry run, whose alerts are only logged.
            readings = (None if dry or instance is None
                        else incident_readings(self._clients(regions.get(iid)).cms, iid))
            self._alert(
                f"auto_start:escalated:{entry.key}", "Auto-started instance not running",
                f"{iid} was started {timeout} s ago but is {status}; check it."
                + (f" {readings.text}" if readings is not None else ""),
                iid, severity="critical", incident=entry.key, live_status=status,
                **(dict(readings.fields) if readings is not None else {}),
            )
            if not dry:
                self._update(entry.key, INCIDENT_ESCALATED, {
                    "escalated_at": iso(now), "live_status": status,
                })
            decisions.append(self._decide(
                candidate, Decision.ESCALATED,
                f"{entry.key}: not Running {timeout} s after the start (live status {status})",
                level=logging.WARNING,
            ))
        return decisions

    def _recheck(self, now: datetime, region: str) -> tuple[list[DecisionRecord], list[str]]:
        """Opted-in Stopped instances of ``region`` without an incident: a missed stop event."""
        stopped = [
            i for i in self._clients(region).ecs.list_instances(status=InstanceState.STOPPED.value)
            if policy_of(i, self.settings) is not Policy.NEVER
        ]
        if not stopped:
            return [], []
        busy = {
            e.instance_id
            for status in (INCIDENT_OPEN, INCIDENT_ESCALATED)
            for e in self.store.ledger_find(KIND_INCIDENT, status=status)
        }
        bucket = now.astimezone(timezone.utc).strftime("%Y%m%dT%H")
        prefix = DRY_RUN_PREFIX if self.settings.dry_run else ""
        kind = KIND_DRY_RUN if self.settings.dry_run else KIND_SWEEP
        decisions: list[DecisionRecord] = []
        candidates: list[StopCandidate] = []
        checks: dict[str, tuple[str, dict[str, Any]]] = {}  # stop id -> (instance, check data)
        live: dict[str, Instance] = {}
        for instance in sorted(stopped, key=lambda i: i.instance_id):
            iid = instance.instance_id
            stop_id = f"sweep:{iid}:{bucket}"
            if iid in busy:
                decisions.append(self._decide(
                    StopCandidate(iid, stop_id, None, origin="sweep"), Decision.SKIPPED,
                    "an incident is open or escalated for this instance",
                ))
                continue
            # What the store saw last: a Stopped state dates the stop; a running-like state
            # bounds it (it stopped after that); nothing at all leaves it unknown.
            known = self.store.instance(iid)
            state = known.last_state if known is not None else None
            state_at = known.last_state_at if known is not None else None
            stop_time = state_at if state == InstanceState.STOPPED.value else None
            stopped_after = state_at if stop_time is None else None
            policy = policy_of(instance, self.settings)
            handed, anchor, learnt = self._sweep_anchor(iid, policy, stop_time, stopped_after, now)
            candidate = StopCandidate(
                iid, stop_id, stop_time, origin="sweep", stopped_after=stopped_after,
                region=region, anchor=anchor,
            )
            if (
                not handed
                and stop_time is not None
                and now - stop_time < timedelta(seconds=SWEEP_GRACE_S)
            ):
                decisions.append(self._decide(
                    candidate, Decision.SKIPPED,
                    f"stop event at {iso(stop_time)} is recent: the event path handles it",
                ))
                continue
            settle = settle_skip(policy, candidate, now, self.settings)
            if settle is not None:  # not claimed: a later sweep re-checks it once settled
                decisions.append(self._decide(candidate, settle.decision, settle.reason))
                continue
            # Re-checked within the last hour (a rolling hour, not the clock's) since this stop was
            # learnt of: a check made before its event arrived (or was handed over) was about
            # what the store knew then, and must not hold the stop back for an hour.
            since = now - timedelta(seconds=RECHECK_INTERVAL_S)
            if self.store.ledger_count(kind, iid, max(since, learnt) if learnt else since):
                continue
            candidates.append(candidate)
            checks[candidate.stop_id] = (iid, {"last_state": state, "last_state_at": iso(state_at)})
            live[iid] = instance
        try:
            processed, retry_later = self.process(candidates, now, live)
        finally:
            # The hourly re-check is spent once decided; a deferred one (ActionTrail throttled)
            # is read again by the next sweep. Concurrent sweeps share the start claim.
            for stop_id, (iid, data) in checks.items():
                if stop_id not in self._deferred:
                    self.store.ledger_claim(f"{prefix}{stop_id}", kind=kind, instance_id=iid,
                                            data=data)
        decisions.extend(processed)
        return decisions, retry_later

    def _known_since(self, stop_time: datetime, received: datetime) -> datetime:
        """The latest moment the stop call can have been made, on this deployment's clock: not
        after the event's receipt, nor after its stamped time plus the clock skew bound."""
        return min(received, stop_time + timedelta(seconds=self.settings.actiontrail_skew_s))

    def _sweep_anchor(
        self, iid: str, policy: Policy, stop_time: datetime | None,
        stopped_after: datetime | None, now: datetime,
    ) -> tuple[bool, datetime | None, datetime | None]:
        """(handed over by the event path?, the settle anchor, when the store learnt of it).

        A stop the store dates: the event path's hand-over anchor, else from the Stopped
        event's first receipt and stamped time (:meth:`_known_since`). A stop the store only
        bounds (its event was missed): the first sweep that saw it Stopped, kept in the ledger.
        """
        if policy is not Policy.UNEXPECTED:
            return False, None, None
        if stop_time is not None:
            seen = [
                e for e in self.store.recent_events(
                    iid, kinds=(EventKind.STATE_CHANGE.value,), since=stop_time
                )
                if e.state == InstanceState.STOPPED.value and e.event_time == stop_time
            ]
            received = min((e.received_at for e in seen), default=None)
            for event in seen:
                entry = self.store.ledger_get(self._defer_key(iid, event.event_id))
                anchor = parse_iso_or_none(entry.data.get("anchor")) if entry is not None else None
                if entry is not None and anchor is not None:
                    return True, anchor, entry.created_at
            return False, self._known_since(stop_time, received or now), received
        if stopped_after is None:
            return False, None, None  # unknown: unknown_stop_skip decides
        key = self._defer_key(iid, f"after:{iso(stopped_after)}")
        self.store.ledger_claim(key, kind=KIND_DEFERRED, instance_id=iid, status="deferred",
                                data={"anchor": iso(now), "reason": "first seen Stopped by the sweep"})
        entry = self.store.ledger_get(key)
        anchor = parse_iso_or_none(entry.data.get("anchor")) if entry is not None else None
        return True, anchor or now, entry.created_at if entry is not None else None

    # -- plumbing ----------------------------------------------------------------------------

    def _clients(self, region: str | None) -> Clients:
        """The clients of the instance's region (None: the function's own)."""
        return self.clients.for_region(region)

    def _describe(self, wanted: Sequence[tuple[str, str | None]]) -> dict[str, Instance]:
        """Live state of (instance, region) pairs: one DescribeInstances per region, since
        asked in another region an instance is simply absent (read as released)."""
        by_region: dict[str | None, list[str]] = {}
        for iid, region in wanted:
            by_region.setdefault(region or self.settings.region, []).append(iid)
        live: dict[str, Instance] = {}
        for region, ids in by_region.items():
            live.update(self._clients(region).ecs.describe_instances(ids))
        return live

    def _skipped(
        self, candidate: StopCandidate, instance: Instance, skip: Skip, now: datetime
    ) -> DecisionRecord:
        iid = instance.instance_id
        if skip.alert == "locked":
            locks = "+".join(sorted(r for r in set(instance.lock_reasons) if r in ALERT_LOCKS))
            self._alert(
                f"auto_start:locked:{iid}:{locks}:{now:%Y%m%d}", "Stopped instance is locked",
                f"{iid} ({instance.name}) stopped and is locked ({locks}); auto-start will not "
                "start it.",
                iid, severity="critical" if "security" in locks else "warning", locks=locks,
            )
        elif skip.alert == "capped":
            window = int(now.timestamp()) // self.settings.flap_window_s
            self._alert(
                f"auto_start:capped:{iid}:{window}", "Auto-start capped (flapping instance)",
                f"{iid} ({instance.name}) keeps stopping: {skip.reason}. Not started again.",
                iid, severity="critical",
            )
        return self._decide(candidate, skip.decision, skip.reason)

    def _decide(
        self,
        candidate: StopCandidate,
        decision: Decision,
        reason: str,
        *,
        code: str | None = None,
        level: int = logging.INFO,
        sent: bool = False,
    ) -> DecisionRecord:
        if self.settings.dry_run_reason:  # a dry run nobody asked for says why, every time
            reason = f"{reason} [dry run: {self.settings.dry_run_reason}]"
        emit(
            log, "auto_start decision", level,
            instance_id=candidate.instance_id or None,
            event_id=candidate.event_id,
            stop_id=candidate.stop_id or None,
            origin=candidate.origin,
            decision=decision.value,
            reason=reason,
            code=code,
            dry_run=self.settings.dry_run or None,
            elapsed_ms=round((self._monotonic() - self._t0) * 1000, 1),
            api_call_sent=sent or None,
        )
        return DecisionRecord(
            candidate.instance_id or None, decision, reason, candidate.event_id,
            candidate.stop_id or None, code,
        )

    def _ignore(self, event: EcsEvent, reason: str, event_id: str | None = None) -> DecisionRecord:
        candidate = StopCandidate(event.instance_id or "", "", None, event_id or event.event_id)
        return self._decide(candidate, Decision.IGNORED, reason)

    def _update(self, key: str, status: str, data: Mapping[str, Any]) -> None:
        try:
            self.store.ledger_update(key, status=status, data=data)
        except Exception as error:  # the action happened; a lost status must not hide it
            emit(log, "ledger update failed", logging.ERROR, key=key, status=status,
                 error=f"{type(error).__name__}: {error}")

    def _alert(
        self, key: str, title: str, text: str, instance_id: str, *, severity: str, **fields: Any
    ) -> None:
        self._alerts.append(Notification(
            key=key, title=title, text=text, severity=severity, instance_id=instance_id,
            fields={k: v for k, v in fields.items() if v is not None},
        ))

    def _flush_alerts(self) -> None:
        """Send the queued alerts (after the starts: a webhook never delays an action)."""
        alerts, self._alerts = self._alerts, []
        for alert in alerts:
            if self.settings.dry_run:
                emit(log, "alert not sent (dry run)", key=alert.key, title=alert.title,
                     instance_id=alert.instance_id)
                continue
            try:
                self.notifier.send(alert)
            except Exception as error:  # send() never raises by contract; belt and braces
                emit(log, "alert failed", logging.ERROR, key=alert.key,
                     error=f"{type(error).__name__}: {error}")


# ---------------------------------------------------------------------------------------------
# Module-level entry points (the handler and the sweep call these)


def handle_events(
    batch: Batch,
    *,
    store: Store,
    clients: Clients,
    notifier: Notifier,
    settings: Settings,
    now: datetime | None = None,
) -> AutoStartResult:
    """The auto_start function's work. Raises :class:`RetryLaterError` after NoStock & co."""
    starter = AutoStarter(store, clients, notifier, settings)
    outcome = starter.handle_batch(batch, now or datetime.now(timezone.utc))
    result = AutoStartResult(
        outcome.decisions, outcome.retry_later, tuple(e.to_dict() for e in batch.errors)
    )
    if result.retry_later:
        raise RetryLaterError(result)
    return result


def sweep_auto_start(
    store: Store,
    clients: Clients,
    notifier: Notifier,
    settings: Settings,
    now: datetime | None = None,
    *,
    regions: Sequence[str] = (),
) -> AutoStartResult:
    """The sweep's auto-start part: escalate overdue incidents, re-check missed stops.

    Never raises for a refused start (the next sweep, an hour bucket later, tries again);
    cloud TransientError and StoreUnavailableError propagate.
    """
    starter = AutoStarter(store, clients, notifier, settings)
    return starter.sweep(now or datetime.now(timezone.utc), regions)


# ---------------------------------------------------------------------------------------------
# helpers


def _claim_live(entry: LedgerEntry, now: datetime) -> bool:
    """A try's claim is a lease (shared.ledger.lease_live); claims from before leases were
    written carry no ``lease_until``: their last update dates them."""
    if "lease_until" in entry.data:
        return ledger_vocab.lease_live(entry.data, now)
    return entry.updated_at >= now - timedelta(seconds=STALE_CLAIM_S)


def _closed_by(entry: LedgerEntry, running_time: datetime) -> bool:
    """Does a Running at ``running_time`` come after this incident's stop (not a stale one)?"""
    stop_time = parse_iso_or_none(entry.data.get("stop_time"))
    if stop_time is not None:
        return running_time > stop_time
    started = parse_iso_or_none(entry.data.get("started_at")) or entry.created_at
    return running_time >= started - timedelta(seconds=INCIDENT_CLOSE_SLACK_S)




def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None

