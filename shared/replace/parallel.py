"""The replacement beside the drain: started with it, one thread per instance, joined after.

The drain's notices go to :func:`start` before the drain begins; its replacements run on their
own threads while the drains run, and :meth:`Pending.results` joins them. A launched successor
is settled (Running, then serving where its predecessor did) every ``SETTLE_EVERY_S`` while the
drains still run (:meth:`Pending.drains_done` ends that): the drain's own wait is put to use,
and nothing waits longer than the drain would; what is left goes to the timer's tick. A replacement that
failed with a retryable error (a cloud call that outlasted its retries, a live lease of another
copy) is raised after the drains finished, so the platform retries the delivery; the ledger
answers ``duplicate`` for what is done and resumes what is not.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.ledger import ReplaceStatus
from shared.log import emit, get_logger
from shared.replace.record import Outcome, ReplaceResult

if TYPE_CHECKING:
    from shared.events import EcsEvent
    from shared.replace.launcher import Replacer

__all__ = ["SETTLE_EVERY_S", "Pending", "start"]

log = get_logger(__name__)

SETTLE_EVERY_S = 2.0
SETTLING = (Outcome.LAUNCHED, Outcome.REUSED)


class Pending:
    """Replacements under way."""

    def __init__(self, notices: Sequence[EcsEvent], replacer: Replacer, *,
                 settle_every_s: float = SETTLE_EVERY_S) -> None:
        self._settle_every_s = settle_every_s
        self._drains_done = threading.Event()
        self._results: list[ReplaceResult] = []
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        by_instance: dict[str | None, list[EcsEvent]] = {}
        for notice in notices:
            by_instance.setdefault(notice.instance_id, []).append(notice)
        self._threads = [
            threading.Thread(target=contextvars.copy_context().run,
                             args=(self._each, replacer, copies),
                             name=f"replace-{iid}", daemon=True)
            for iid, copies in by_instance.items()
        ]
        for thread in self._threads:
            thread.start()

    def _each(self, replacer: Replacer, copies: list[EcsEvent]) -> None:
        for notice in copies:  # copies of one instance's notice one after the other
            try:
                result = replacer.replace(notice)
            except Exception as error:  # reported by results(), after the drains
                emit(log, "replacement failed", level=30 if getattr(error, "retryable", False)
                     else 40, event_id=notice.event_id, instance_id=notice.instance_id,
                     error_type=type(error).__name__, error=str(error),
                     decision="platform retry")
                with self._lock:
                    self._errors.append(error)
                return
            if result.outcome in SETTLING:
                result = self._settle(replacer, result)
            with self._lock:
                self._results.append(result)

    def _settle(self, replacer: Replacer, launched: ReplaceResult) -> ReplaceResult:
        """Settle while the drains run; the launch result when they end first."""
        while not self._drains_done.wait(self._settle_every_s):
            try:
                entry = replacer.store.ledger_get(launched.key or "")
                if entry is None or entry.status != ReplaceStatus.LAUNCHED.value:
                    return launched
                settled = replacer.settle(entry)
            except Exception as error:  # the timer's tick settles it later
                emit(log, "settle deferred", level=30, instance_id=launched.instance_id,
                     error_type=type(error).__name__, error=str(error), decision="to the tick")
                return launched
            if settled is not None:
                return settled
        return launched

    def drains_done(self) -> None:
        """The drains ended: stop settling (the invocation is not kept for it)."""
        self._drains_done.set()

    def wait(self) -> None:
        """Join without raising (the drain failed: its error is the one reported)."""
        self._drains_done.set()
        for thread in self._threads:
            thread.join()

    def results(self) -> list[ReplaceResult]:
        """Wait for every replacement; raise the first error (the platform retries)."""
        self._drains_done.set()
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        return list(self._results)


def start(notices: Sequence[EcsEvent], replacer: Replacer) -> Pending:
    return Pending(notices, replacer)
