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

import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer", "Gate", "GroupQueue", "Party", "Ticket"]

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
    ("single flight" for the next round). ``reuse``: a caller whose items a call under way or
    already made for the key covers takes that call's result (a describe of the same instances
    within one invocation: a lone notice's drain and its replacement read it once)."""

    def __init__(self, window_s: float = 0.2, sleep: Callable[[float], None] = time.sleep) -> None:
        self.window_s = window_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self._open: dict[Hashable, _Batch[Any]] = {}
        self._sent: dict[Hashable, list[_Batch[Any]]] = {}  # calls under way or made, per key
        self.calls = 0  # calls made (for reports and tests)
        self.merged = 0  # callers served by another's call

    def call(self, key: Hashable, items: Sequence[T], send: Callable[[list[T]], R], *,
             window_s: float | None = None, reuse: bool = False) -> tuple[R, bool]:
        """``send(items of every caller)`` once per batch; returns (its result, whether this
        caller made the call). Raises the call's error in every caller."""
        with self._lock:
            batch = self._covering(key, items) if reuse else None
            leader = False
            if batch is None:
                batch = self._open.get(key)
                leader = batch is None
                if batch is None:
                    batch = self._open[key] = _Batch()
                batch.items.extend(i for i in items if i not in batch.items)
            if not leader:
                self.merged += 1
        if not leader:
            batch.done.wait()
            if batch.error is not None:
                raise batch.error
            return batch.result, False
        window = self.window_s if window_s is None else window_s
        if window > 0:
            self._sleep(window)
        with self._lock:
            del self._open[key]
            self.calls += 1
            gathered = list(batch.items)
            if reuse:
                self._sent.setdefault(key, []).append(batch)
        try:
            batch.result = send(gathered)
        except BaseException as err:
            batch.error = err
            with self._lock:  # a failed call serves nobody later
                sent = self._sent.get(key, [])
                if batch in sent:
                    sent.remove(batch)
            raise
        finally:
            batch.done.set()
        return batch.result, True

    def _covering(self, key: Hashable, items: Sequence[Any]) -> _Batch[Any] | None:
        sent: list[_Batch[Any]] = self._sent.get(key, [])
        return next((made for made in reversed(sent) if all(i in made.items for i in items)),
                    None)


@dataclass
class Ticket(Generic[R]):
    """One caller's share of a :class:`GroupQueue` write."""

    items: list[Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: R | None = None
    error: BaseException | None = None
    first: bool = False  # its write's first caller: the one that counts the calls made

    def wait(self) -> R | None:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class _Queue:
    pending: list[Ticket[Any]] = field(default_factory=list)


class GroupQueue:
    """One writer per key (a group and step), never two writes at once on it: what arrives
    while a write (and its job, and its retries) is under way goes into the next write,
    together. A group whose writes hold it for a while (ALB's connection draining keeps it
    ``Configuring`` for the drain timeout) then takes two or three writes for a whole burst,
    not one per instance. Each key's writes run in a thread of their own, so one slow group
    never holds a drain's other groups back."""

    def __init__(self, window_s: float = 0.2, sleep: Callable[[float], None] = time.sleep,
                 start: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.window_s = window_s
        self._sleep = sleep
        self._start = start or _thread
        self._lock = threading.Lock()
        self._queues: dict[Hashable, _Queue] = {}
        self.writes = 0

    def submit(self, key: Hashable, items: Sequence[Any], write: Callable[[list[Any]], R], *,
               hold: Callable[[R], object] | None = None, window_s: float | None = None
               ) -> Ticket[R]:
        """Queue ``items`` for the next write of ``key``. ``hold(result)`` runs after a write's
        callers are released and before the next write: a write that keeps the group busy
        (ALB's connection draining) holds the queue, not its callers."""
        ticket: Ticket[R] = Ticket(list(items))
        with self._lock:
            queue = self._queues.get(key)
            idle = queue is None
            if queue is None:
                queue = self._queues[key] = _Queue()
            queue.pending.append(ticket)
        if idle:
            window = self.window_s if window_s is None else window_s
            self._start(lambda: self._work(key, queue, write, hold, window))
        return ticket

    def _work(self, key: Hashable, queue: _Queue, write: Callable[[list[Any]], Any],
              hold: Callable[[Any], object] | None, window_s: float) -> None:
        if window_s > 0:
            self._sleep(window_s)
        while True:
            with self._lock:
                batch, queue.pending = queue.pending, []
                if not batch:
                    del self._queues[key]
                    return
                self.writes += 1
            items: list[Any] = []
            for ticket in batch:
                items.extend(i for i in ticket.items if i not in items)
            batch[0].first = True
            result: Any = None
            try:
                result = write(items)
            except BaseException as err:  # every caller of this write gets its error
                for ticket in batch:
                    ticket.error = err
            else:
                for ticket in batch:
                    ticket.result = result
            for ticket in batch:
                ticket.done.set()
            if hold is not None and batch[0].error is None:
                # a failed hold: the next write meets the group's state itself
                with contextlib.suppress(Exception):
                    hold(result)


class Gate:
    """Drains that should write together meet here: a delivered batch's before its first write
    (weight 0), a finisher round's before its removal. Each waits until every one of them has
    arrived (or left without such a write, or ``timeout_s`` passed since the gate was built), so
    their writes reach the :class:`GroupQueue` within one window and a group gets one write for
    them all. Without it, their claims or takeovers (a few store writes each, which a shared
    database serializes) spread the arrivals over seconds, and a group got one write for every
    few of them."""

    def __init__(self, parties: int, timeout_s: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._cond = threading.Condition()
        self._missing = parties
        self._monotonic = monotonic
        self._until = monotonic() + timeout_s

    @property
    def missing(self) -> int:
        with self._cond:
            return self._missing

    def party(self) -> Party:
        """One party's pass: arriving twice counts once."""
        return Party(self)

    def _arrive(self, wait: bool) -> None:
        with self._cond:
            self._missing -= 1
            if self._missing <= 0:
                self._cond.notify_all()
                return
            if wait:
                self._cond.wait_for(lambda: self._missing <= 0,
                                    timeout=max(0.0, self._until - self._monotonic()))


class Party:
    """One drain's pass through a :class:`Gate`."""

    def __init__(self, gate: Gate) -> None:
        self._gate: Gate | None = gate

    def arrive(self, *, wait: bool = True) -> None:
        """Count in (once); with ``wait``, wait for the others (bounded by the gate's timeout).
        A party that leaves without a removal arrives with ``wait=False``."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._arrive(wait)


def _thread(work: Callable[[], None]) -> None:
    import contextvars

    context = contextvars.copy_context()  # the drain's log context follows its writes
    threading.Thread(target=context.run, args=(work,), daemon=True, name="group-writer").start()
