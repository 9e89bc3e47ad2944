"""The sweep's part: finish what the notice path left (Running, stalled, or a dead holder).

* ``launched`` entries: the successor Running is recorded with one notification (what replaced
  what, where, how long); past ``replace_stall_s`` it is reported stalled.
* ``claimed`` / ``launching`` entries whose lease expired (their invocation died and no copy of
  the notice came back): taken over and finished (:meth:`Replacer.resume`; the recorded
  candidate's ClientToken makes a RunInstances that did go out answer its instance again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.clients import CloudError
from shared.ledger import Kind, LeaseHeldError, ReplaceStatus, lease_live
from shared.log import emit, get_logger
from shared.replace.launcher import Replacer
from shared.replace.record import ReplaceResult

__all__ = ["ReplaceSweepReport", "sweep_replacements"]

log = get_logger(__name__)

MAX_PER_SWEEP = 200


@dataclass
class ReplaceSweepReport:
    settled: list[dict[str, Any]] = field(default_factory=list)
    resumed: list[dict[str, Any]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)  # dead holders left to the finisher
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"settled": self.settled, "resumed": self.resumed, "pending": self.pending,
                "orphaned": self.orphaned, "errors": self.errors}


def sweep_replacements(replacer: Replacer, *, resume: bool = True) -> ReplaceSweepReport:
    """Settle the launched replacements; with ``resume``, take the dead holders' over (the
    drain's finisher tick, whose role may launch), else list them as ``orphaned`` (the sweep,
    whose role may not)."""
    report = ReplaceSweepReport()
    store = replacer.store
    now = replacer.clock()
    launched = store.ledger_find(Kind.REPLACE.value, status=ReplaceStatus.LAUNCHED.value,
                                 limit=MAX_PER_SWEEP)
    try:  # one write per group for every successor Running now; settle then finds them there
        replacer.serve_batch(launched)
    except CloudError as err:
        report.errors.append({"key": "serve_batch", "error": str(err)})
    for entry in store.ledger_find(Kind.REPLACE.value, status=ReplaceStatus.LAUNCHED.value,
                                   limit=MAX_PER_SWEEP):
        try:
            result = replacer.settle(entry)
        except CloudError as err:
            report.errors.append({"key": entry.key, "error": str(err)})
            continue
        _note(report.settled, report.pending, entry.key, result)
    for status in (ReplaceStatus.CLAIMED, ReplaceStatus.LAUNCHING):
        for entry in store.ledger_find(Kind.REPLACE.value, status=status.value,
                                       limit=MAX_PER_SWEEP):
            if lease_live(entry.data, now):
                report.pending.append(entry.key)
                continue
            if not resume:
                report.orphaned.append(entry.key)
                continue
            try:
                result = replacer.resume(entry)
            except (CloudError, LeaseHeldError) as err:
                report.errors.append({"key": entry.key, "error": str(err)})
                continue
            _note(report.resumed, report.pending, entry.key, result)
    if report.settled or report.resumed or report.errors or report.orphaned:
        emit(log, "replacement sweep", decision="swept", settled=len(report.settled),
             resumed=len(report.resumed), pending=len(report.pending),
             orphaned=report.orphaned or None,
             errors=len(report.errors))
    return report


def _note(done: list[dict[str, Any]], pending: list[str], key: str,
          result: ReplaceResult | None) -> None:
    if result is None:
        pending.append(key)
    else:
        done.append(result.to_dict())
