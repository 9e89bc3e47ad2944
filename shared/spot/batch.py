"""One call for many drains: the writes (and reads) of the drains of one invocation, coalesced.

A burst of interruptions reaches drain_spot in batches (the EventBridge trigger's batch window,
``batchWindow`` in s.yaml / template.yml), each drained in its own thread of one invocation.
Without coordination each drain would write each of its groups itself: a group shared by 30
interrupted instances would take 30 weight-0 writes, 30 removals and 30 verification reads, and
the API's per-action throttling (writes are limited per action and per second) would push the
last of them past the deadline. :class:`Coalescer` gathers the calls that arrive for the same
key (operation + group, or "describe these instances") within a short window and makes one call
for all of them (the client still cuts it to the API's per-call limit), so a group gets one write
per step whatever the number of its instances interrupted at once; every caller gets the call's
result or its error, and retries on its own as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Batch(Generic[T]):
    items: list[T] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class Coalescer:
    """Calls for one key within ``window_s`` of the first become one call (module docstring).

    The first caller of a key waits the window, takes the batch and makes the call with every
    item gathered (in arrival order, duplicates kept out); the others wait for its result. A
    window of 0 still merges the callers that arrive while a call for the key is being made
    ("single flight" for the next round)."""

    def __init__(self, window_s: float = 0.2, sleep: Callable[[float], None] = time.sleep) -> None:
        self.window_s = window_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self._open: dict[Hashable, _Batch[Any]] = {}
        self.calls = 0  # calls made (for reports and tests)
        self.merged = 0  # callers served by another's call

    def call(self, key: Hashable, items: Sequence[T],
             send: Callable[[list[T]], R]) -> tuple[R, bool]:
        """``send(items of every caller)`` once per batch; returns (its result, whether this
        caller made the call). Raises the call's error in every caller."""
        with self._lock:
            batch = self._open.get(key)
            leader = batch is None
            if batch is None:
                batch = self._open[key] = _Batch()
            else:
                self.merged += 1
            batch.items.extend(i for i in items if i not in batch.items)
        if not leader:
            batch.done.wait()
            if batch.error is not None:
                raise batch.error
            return batch.result, False
        if self.window_s > 0:
            self._sleep(self.window_s)
        with self._lock:
            del self._open[key]
            self.calls += 1
            gathered = list(batch.items)
        try:
            batch.result = send(gathered)
        except BaseException as err:
            batch.error = err
            raise
        finally:
            batch.done.set()
        return batch.result, True
