"""Practice 3: take a spot instance out of every CLB group before it is reclaimed.

The code lives in :mod:`shared.spot` (deadline, record, machine, sweep); the ledger vocabulary
in :mod:`shared.ledger`. This module is the practice's front door for the handlers
(``functions/drain_spot`` and ``functions/sweep``), kept so their imports name the practice.
"""

from __future__ import annotations

from shared.ledger import DrainStatus as Status
from shared.ledger import Kind
from shared.spot.deadline import LATE_AFTER_DEADLINE_S, Deadline, Phase
from shared.spot.machine import STEPS, Drainer, Resume, Step, StepName, Undo, notice_refusal
from shared.spot.record import UNKNOWN_WEIGHT_RESTORE, DrainResult, Outcome, drain_notification
from shared.spot.sweep import SweepReport, sweep_drains

DRAIN_KIND = Kind.DRAIN.value

__all__ = [
    "DRAIN_KIND",
    "LATE_AFTER_DEADLINE_S",
    "STEPS",
    "UNKNOWN_WEIGHT_RESTORE",
    "Deadline",
    "DrainResult",
    "Drainer",
    "Outcome",
    "Phase",
    "Resume",
    "Status",
    "Step",
    "StepName",
    "SweepReport",
    "Undo",
    "drain_notification",
    "notice_refusal",
    "sweep_drains",
]
