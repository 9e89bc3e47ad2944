"""shared.autostart's pure decision rules: scope, live status, locks, spot, platform, intent, flap.

No I/O here: the rules take the live instance, stored events and ActionTrail records as values.
The same rules run against the emulator in tests/test_auto_start.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.autostart import (
    Decision,
    Go,
    Policy,
    Skip,
    StopCandidate,
    flap_skip,
    intent_verdict,
    lock_skip,
    platform_skip,
    policy_of,
    scope_skip,
    spot_skip,
    status_skip,
    unknown_stop_skip,
)
from shared.clients import CloudError, Instance, TrailRecord, TransientError
from shared.settings import Settings
from shared.store import EventRecord

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
IID = "i-bp1rules00000000001"


def inst(tag: str | None = "true", *, name: str = "app-1", status: str = "Stopped",
         locks: tuple[str, ...] = (), iid: str = IID, behaviour: str | None = None) -> Instance:
    tags = () if tag is None else (("auto-start", tag),)
    return Instance(instance_id=iid, name=name, status=status, tags=tags, lock_reasons=locks,
                    spot_strategy="SpotAsPriceGo" if behaviour else "NoSpot",
                    spot_interruption_behavior=behaviour)


def settings(**overrides: object) -> Settings:
    return Settings.from_env(environ={}, db_url="sqlite://", **overrides)


def record(name: str, status: str | None = None, at: datetime = T0, state: str | None = None) -> EventRecord:
    full = f"{name}:{status}" if status else name
    return EventRecord(
        event_id=f"ev-{name}-{status}-{at.timestamp()}", envelope="cloudmonitor", envelope_id=None,
        kind="system_event", name=name, full_name=full, status=status, instance_id=IID,
        disk_id=None, state=state, action=None, region="cn-hangzhou", account_id="1",
        event_time=at, received_at=at, latency_ms=0, raw=None,
    )


def trail(user_type: str | None = "ram-user", user: str | None = "alice") -> TrailRecord:
    return TrailRecord("StopInstance", T0 - timedelta(seconds=30), user_type, user, (IID,))


# --- scope -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "policy"),
    [("true", Policy.UNEXPECTED), (" TRUE ", Policy.UNEXPECTED), ("always", Policy.ALWAYS),
     ("Always", Policy.ALWAYS), ("false", Policy.NEVER), ("yes", Policy.NEVER), ("", Policy.NEVER),
     (None, Policy.NEVER)],
)
def test_policy_follows_the_tag_value(value: str | None, policy: Policy) -> None:
    """GIVEN a tag value WHEN read THEN true/always (any case) opt in, anything else never."""
    assert policy_of(inst(value), settings()) is policy


def test_policy_reads_the_configured_tag_key() -> None:
    """GIVEN auto_start_tag=ops/restart WHEN the instance has only auto-start THEN never."""
    custom = settings(auto_start_tag="ops/restart")
    assert policy_of(inst("always"), custom) is Policy.NEVER
    tagged = Instance(instance_id=IID, tags=(("ops/restart", "always"),))
    assert policy_of(tagged, custom) is Policy.ALWAYS


def test_scope_skips_instances_not_opted_in_with_the_value_seen() -> None:
    """GIVEN no tag / a wrong value WHEN scoped THEN skipped, the reason shows what was found."""
    assert scope_skip(inst(None), settings()) == Skip(
        Decision.SKIPPED, "not opted in: tag auto-start is absent (needs 'true' or 'always')")
    assert scope_skip(inst("yes"), settings()) == Skip(
        Decision.SKIPPED, "not opted in: tag auto-start is 'yes' (needs 'true' or 'always')")
    assert scope_skip(inst("true"), settings()) is None


def test_deny_list_wins_over_allow_list_by_id_or_name_glob() -> None:
    """GIVEN allow app-* and deny app-1 WHEN scoping app-1/app-2/db-1 THEN only app-2 passes."""
    s = settings(auto_start_allow=("app-*",), auto_start_deny=("app-1",))
    assert scope_skip(inst(name="app-1"), s) == Skip(Decision.SKIPPED, "on the deny list ('app-1')")
    assert scope_skip(inst(name="app-2"), s) is None
    assert scope_skip(inst(name="db-1"), s) == Skip(Decision.SKIPPED, "not on the allow list")
    by_id = settings(auto_start_deny=(IID,))
    assert scope_skip(inst(), by_id) == Skip(Decision.SKIPPED, f"on the deny list ({IID!r})")
    by_id_glob = settings(auto_start_allow=("i-bp1rules*",))
    assert scope_skip(inst(name="x"), by_id_glob) is None


def test_allow_and_deny_lists_come_from_comma_separated_environment() -> None:
    """GIVEN ECS_EVENT_OPS_AUTO_START_DENY='legacy-*, i-x' WHEN read THEN a tuple of two."""
    s = Settings.from_env(environ={"ECS_EVENT_OPS_AUTO_START_DENY": "legacy-*, i-x"})
    assert s.auto_start_deny == ("legacy-*", "i-x")


# --- live state and locks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [("Stopped", None),
     ("Running", Skip(Decision.ALREADY_RUNNING, "live status is Running: already started")),
     ("Starting", Skip(Decision.ALREADY_RUNNING, "live status is Starting: already started")),
     ("Stopping", Skip(Decision.SKIPPED, "live status is Stopping, not Stopped"))],
)
def test_only_a_still_stopped_instance_goes_on(status: str, expected: Skip | None) -> None:
    """GIVEN the live status WHEN checked THEN only Stopped continues."""
    assert status_skip(inst(status=status)) == expected


def test_financial_and_security_locks_skip_with_an_alert_others_without() -> None:
    """GIVEN locks WHEN checked THEN financial/security alert; recycling is a spot reclaim."""
    assert lock_skip(inst()) is None
    assert lock_skip(inst(locks=("financial",))) == Skip(
        Decision.SKIPPED, "operation locks: financial", alert="locked")
    assert lock_skip(inst(locks=("security", "financial"))) == Skip(
        Decision.SKIPPED, "operation locks: financial, security", alert="locked")
    assert lock_skip(inst(locks=("refunded",))) == Skip(Decision.SKIPPED, "operation locks: refunded")
    assert lock_skip(inst(locks=("recycling",))) == Skip(
        Decision.SKIPPED, "spot instance being reclaimed (recycling lock)")


# --- classifying the stop ---------------------------------------------------------------------


def test_recent_spot_interruption_marks_the_stop_as_a_reclaim() -> None:
    """GIVEN an interruption notice in the store WHEN checked THEN skipped, behaviour named."""
    notice = record("Instance:PreemptibleInstanceInterruption", at=T0)
    assert spot_skip(inst(behaviour="Stop"), [notice]) == Skip(
        Decision.SKIPPED,
        "spot instance reclaimed: interruption notice at 2026-11-23T10:00:00.000Z "
        "(SpotInterruptionBehavior Stop)",
    )
    assert spot_skip(inst(behaviour="Stop"), []) is None


def test_interruption_notice_naming_an_on_demand_instance_is_not_a_reclaim() -> None:
    """GIVEN a (forged) notice for an on-demand instance WHEN checked THEN no spot skip."""
    notice = record("Instance:PreemptibleInstanceInterruption", at=T0)
    assert inst(behaviour=None).spot_strategy == "NoSpot"
    assert spot_skip(inst(behaviour=None), [notice]) is None


def test_announced_platform_stop_skips_unless_configured() -> None:
    """GIVEN SystemFailure.Stop:Executing stored WHEN checked THEN skipped unless restart is on."""
    events = [record("Instance:SystemFailure.Stop", "Executing")]
    assert platform_skip(events, settings()) == Skip(
        Decision.SKIPPED,
        "platform stop: Instance:SystemFailure.Stop:Executing at 2026-11-23T10:00:00.000Z "
        "(restart_after_platform_stop is off)",
    )
    assert platform_skip(events, settings(restart_after_platform_stop=True)) is None
    assert platform_skip([], settings()) is None


def test_a_canceled_platform_stop_does_not_count() -> None:
    """GIVEN Scheduled then Canceled WHEN checked THEN the latest status wins: not a platform stop."""
    events = [
        record("Instance:SystemMaintenance.Stop", "Scheduled", at=T0),
        record("Instance:SystemMaintenance.Stop", "Canceled", at=T0 + timedelta(minutes=5)),
    ]
    assert platform_skip(events, settings()) is None


def test_intent_always_starts_after_any_stop() -> None:
    """GIVEN tag always and a user's StopInstance WHEN judged THEN go."""
    verdict = intent_verdict(Policy.ALWAYS, [trail()], None, settings())
    assert verdict == Go("tag auto-start=always: start after any stop")


def test_intent_true_skips_a_stop_by_a_user_or_role() -> None:
    """GIVEN tag true and StopInstance by ram-user alice WHEN judged THEN deliberate: skipped."""
    verdict = intent_verdict(Policy.UNEXPECTED, [trail()], None, settings())
    assert verdict == Skip(
        Decision.SKIPPED,
        "deliberate stop: StopInstance by ram-user alice at 2026-11-23T09:59:30.000Z (ActionTrail)",
    )
    role = intent_verdict(Policy.UNEXPECTED, [trail("assumed-role", "ops/ci")], None, settings())
    assert isinstance(role, Skip)


def test_intent_true_starts_when_nobody_stopped_it() -> None:
    """GIVEN tag true, no record (or only a system one) WHEN judged THEN unexpected: go."""
    expected = Go("unexpected stop: no StopInstance(s) by a user or role in ActionTrail")
    assert intent_verdict(Policy.UNEXPECTED, [], None, settings()) == expected
    assert intent_verdict(Policy.UNEXPECTED, [trail("system", None)], None, settings()) == expected


@pytest.mark.parametrize(
    ("fallback", "expected"),
    [("skip", Skip(Decision.SKIPPED,
                   "ActionTrail unreadable (InternalError); fallback 'skip': stop treated as deliberate")),
     ("start", Go("ActionTrail unreadable (InternalError); fallback 'start': stop treated as unexpected"))],
)
def test_intent_falls_back_when_actiontrail_is_unreadable(fallback: str, expected: Skip | Go) -> None:
    """GIVEN LookupEvents failing WHEN judged THEN actiontrail_fallback decides and says so."""
    error: CloudError = TransientError("InternalError", "boom", action="LookupEvents")
    assert intent_verdict(Policy.UNEXPECTED, None, error, settings(actiontrail_fallback=fallback)) == expected


def test_flap_guard_caps_at_the_configured_number() -> None:
    """GIVEN flap_max_starts=3 WHEN 2 / 3 starts are in the window THEN go / capped with an alert."""
    s = settings(flap_max_starts=3, flap_window_s=3600)
    assert flap_skip(2, s) is None
    assert flap_skip(3, s) == Skip(
        Decision.CAPPED, "flap guard: 3 starts in the last 3600 s (max 3)", alert="capped")


def test_sweep_leaves_a_true_instance_alone_when_its_stop_time_is_unknown() -> None:
    """GIVEN a sweep candidate the store never saw WHEN tag true THEN skipped; always goes on;
    a known stop time or a last-seen-running time lets true go on too."""
    unknown = StopCandidate(IID, "sweep:x", None, origin="sweep")
    skip = unknown_stop_skip(Policy.UNEXPECTED, unknown)
    assert skip is not None
    assert skip.reason.startswith("stop time unknown (no event for this instance in the store)")
    assert unknown_stop_skip(Policy.ALWAYS, unknown) is None
    seen = StopCandidate(IID, "sweep:x", None, origin="sweep", stopped_after=T0)
    assert unknown_stop_skip(Policy.UNEXPECTED, seen) is None
    assert unknown_stop_skip(Policy.UNEXPECTED, StopCandidate(IID, "ev", T0)) is None
