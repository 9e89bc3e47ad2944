"""A notice's time budget: every decision of a drain reads the time left from here.

The notice (``Instance:PreemptibleInstanceInterruption``) comes about 5 minutes before release.
Everything is budgeted from the notice time, never from when we happen to run:
**deadline** = notice time + ``spot_notice_s``. Before ``deadline - spot_margin_s`` the drain is
*gentle* (weight 0, wait, remove); closer than that it is *fast* (remove at once); more than
:data:`LATE_AFTER_DEADLINE_S` past the deadline (a platform retry hours later) only *leftovers*
are removed and the deadline is recorded as missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["FINISH_LATENESS_S", "LATE_AFTER_DEADLINE_S", "Deadline", "Phase", "utc_now"]

# A notice this far past its deadline is a platform retry (FC retries run for hours): the
# instance is gone or going, so only leftover memberships are removed.
LATE_AFTER_DEADLINE_S = 600.0
# What a finisher tick may start late by, from its cron second to the takeover of a due drain:
# the timer's own lateness, a cold start (the ignorable path is ~0.1 s; an import of the store
# and the SDK ~2 s) and the ledger read. Generous on purpose: it only decides between the
# scheduled removal and the in-invocation wait, never whether a drain is removed in time.
FINISH_LATENESS_S = 15.0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Phase(str, Enum):
    """What the time left allows, decided at every step."""

    GENTLE = "gentle"  # weight 0, wait, remove
    FAST = "fast"  # inside the margin or just past the deadline: remove at once
    LEFTOVER = "leftover"  # long past the deadline: remove what is left, record the miss


@dataclass(frozen=True)
class Deadline:
    """The notice's budget."""

    notice_time: datetime
    at: datetime
    margin_s: float
    late_after_s: float = LATE_AFTER_DEADLINE_S

    @classmethod
    def for_notice(cls, notice_time: datetime, settings: Settings) -> Deadline:
        return cls(
            notice_time=notice_time,
            at=notice_time + timedelta(seconds=settings.spot_notice_s),
            margin_s=float(settings.spot_margin_s),
        )

    def time_left_s(self, now: datetime) -> float:
        return (self.at - now).total_seconds()

    def phase(self, now: datetime) -> Phase:
        left = self.time_left_s(now)
        if left < -self.late_after_s:
            return Phase.LEFTOVER
        if left <= self.margin_s:
            return Phase.FAST
        return Phase.GENTLE

    def removal_schedulable(self, remove_after: datetime, every_s: float,
                            lease_grace_s: float = 0.0, round_s: float = 0.0) -> bool:
        """Whether a removal handed to a finisher ticking every ``every_s`` seconds provably
        starts no later than an in-invocation wait would remove (``deadline - margin``), even if
        one tick fails or dies: the first tick at or after ``remove_after`` comes within
        ``every_s`` (plus :data:`FINISH_LATENESS_S`); one that died holding the drain leaves a
        lease that expires ``lease_grace_s`` after its round, which comes up to ``round_s``
        after ``remove_after`` (shared.spot.finish), and the next tick comes within another
        ``every_s`` (plus the lateness)."""
        if every_s <= 0:
            return False
        bound_s = 2 * (every_s + FINISH_LATENESS_S) + lease_grace_s + round_s
        return remove_after + timedelta(seconds=bound_s) <= self.at - timedelta(seconds=self.margin_s)

    def wait_s(self, now: datetime, drain_time_s: float, weight0_at: datetime | None = None) -> float:
        """How long to let connections finish after weight 0: the drain time still owed,
        never past ``deadline - margin``."""
        owed = drain_time_s - ((now - weight0_at).total_seconds() if weight0_at else 0.0)
        return max(0.0, min(owed, self.time_left_s(now) - self.margin_s))
