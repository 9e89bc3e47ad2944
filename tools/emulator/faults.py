"""Injected faults: latency, throttling, random 5xx / dropped connections, queued errors.

Decisions, in order, for each API call (after the signature check):

1. ``fail_next[action]`` queue: pop the next code and answer it, with the HTTP status the
   contract documents for that code on that action (``tools/emulator/contract.py``: the action's
   own ``errorCodes`` or the platform-wide table). ``"Code:Status"`` picks one of the documented
   statuses when there are several; the pseudo code ``ConnectionDropped`` closes the socket
   without answering. A code the contract does not allow for the action is refused when set
   (``ValueError``), so a test cannot inject what Alibaba never answers. Deterministic.
2. Rate limit: ``throttle_actions[action]``, else ``throttle_reads`` / ``throttle_writes`` by the
   action's kind (api-meta's ``operationType``: ``read`` is a read, ``write`` and
   ``readAndWrite`` are writes, an action without one is a read when its name starts with
   ``Describe``/``List``/``Lookup``/``Get``), else ``throttle_qps``: a token bucket per product
   and action (ALB and NLB share action names, not limits), burst = max(1, qps) -> 400
   ``Throttling.User`` (platform-wide, the status the contract documents first).
3. ``fault_rate``: a seeded ``random.Random`` picks 500 ``InternalError``, 503
   ``ServiceUnavailable``, a dropped connection, or one of the "busy, try again" codes the action
   documents (``contract.BUSY_CODES``: CLB writes' ``SystemBusy``, ``OperationBusy``, …).

After a successful write, ``lose_answer[action]`` (a queue like ``fail_next``) replaces the 200
with the popped code (a documented 5xx such as ``InternalError``) or ``ConnectionDropped``: the
change took effect, the caller does not know it ("applied but the answer was lost").
``lose_rate`` does the same at random (seeded) for a fraction of successful writes (every action
that is not a ``Describe*``/``List*``/``Lookup*``/``Get*`` read): a 500 ``InternalError`` or a
dropped connection.

Throttling answers carry ``x-acs-retry-after: <ms>`` only when ``retry_after_ms`` is set: with
that header the SDK raises ``ThrottlingException`` (not ``ClientException``), so both shapes can
be tested.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["DROP", "UNSET", "Faults", "Verdict"]

DROP = "ConnectionDropped"
UNSET: object = object()
# (action, code) -> the HTTP statuses the contract allows, documented first; [] = not allowed.
StatusLookup = Callable[[str, str], "list[int]"]
# action -> the (busy code, HTTP status) pairs it documents.
BusyLookup = Callable[[str], "list[tuple[str, int]]"]
# (product, action) -> "read" or "write" (api-meta's operationType; see the module docstring).
KindLookup = Callable[[str, str], str]
_READ_PREFIXES = ("Describe", "List", "Lookup", "Get")


@dataclass(frozen=True)
class Verdict:
    """What to do instead of the real answer."""

    code: str  # DROP means: close the connection without a response
    status: int
    message: str
    retry_after_ms: int | None = None


class _Bucket:
    def __init__(self, qps: float) -> None:
        self.qps = qps
        self.capacity = max(1.0, qps)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Faults:
    """Thread-safe fault configuration and decisions."""

    def __init__(self, latency_ms: float = 0, throttle_qps: float | None = None,
                 throttle_actions: Mapping[str, float] | None = None, fault_rate: float = 0.0,
                 seed: int | None = 0, *, statuses: StatusLookup | None = None,
                 busy: BusyLookup | None = None, kind: KindLookup | None = None,
                 throttle_reads: float | None = None,
                 throttle_writes: float | None = None) -> None:
        self._lock = threading.Lock()
        self._statuses = statuses
        self._busy = busy
        self._kind = kind
        self.throttle_reads = throttle_reads
        self.throttle_writes = throttle_writes
        self.lose_rate = 0.0
        self.latency_ms = float(latency_ms)
        self.throttle_qps = throttle_qps
        self.throttle_actions: dict[str, float] = dict(throttle_actions or {})
        self.fault_rate = float(fault_rate)
        self.retry_after_ms: int | None = None
        self.fail_next: dict[str, deque[str]] = {}
        self.lose_answer: dict[str, deque[str]] = {}
        self.start_error: dict[str, str] = {}
        self._rng = random.Random(seed)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._validate()

    def _validate(self) -> None:
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within 0..1")
        if not 0.0 <= self.lose_rate <= 1.0:
            raise ValueError("lose_rate must be within 0..1")
        for qps in [self.throttle_qps, self.throttle_reads, self.throttle_writes,
                    *self.throttle_actions.values()]:
            if qps is not None and qps <= 0:
                raise ValueError("throttle rates must be > 0")

    def update(self, *, latency_ms: float | None = None, throttle_qps: object = UNSET,
               throttle_actions: Mapping[str, float] | None = None,
               fault_rate: float | None = None, seed: int | None = None,
               fail_next: Mapping[str, Iterable[str]] | None = None,
               start_error: Mapping[str, str | None] | None = None,
               retry_after_ms: object = UNSET,
               lose_answer: Mapping[str, Iterable[str]] | None = None,
               lose_rate: float | None = None, throttle_reads: object = UNSET,
               throttle_writes: object = UNSET) -> None:
        """Change settings; only the given ones. ``fail_next`` / ``lose_answer`` replace the
        queue of each named action; ``start_error`` sets (or with ``None``, clears) per
        instance. Codes the contract does not allow raise ``ValueError`` and change nothing."""
        queued = {a: list(codes) for a, codes in (fail_next or {}).items()}
        lost = {a: list(codes) for a, codes in (lose_answer or {}).items()}
        for action, specs in queued.items():
            for spec in specs:
                self._verdict(action, str(spec))
        for action, specs in lost.items():
            for spec in specs:
                if self._verdict(action, str(spec)).status not in (0, 500, 502, 503, 504):
                    raise ValueError(f"lose_answer {spec!r} for {action}: a lost answer is a "
                                     "documented 5xx or ConnectionDropped")
        for code in (start_error or {}).values():
            if code and self._statuses is not None and not (
                    self._statuses("StartInstance", code) or self._statuses("StartInstances", code)):
                raise ValueError(f"start_error {code!r} is documented neither for StartInstance "
                                 "nor for StartInstances")
        with self._lock:
            if latency_ms is not None:
                self.latency_ms = float(latency_ms)
            if throttle_qps is not UNSET:
                self.throttle_qps = None if throttle_qps is None else float(throttle_qps)  # type: ignore[arg-type]
                self._buckets.clear()
            if throttle_actions is not None:
                self.throttle_actions = dict(throttle_actions)
                self._buckets.clear()
            if throttle_reads is not UNSET:
                self.throttle_reads = None if throttle_reads is None else float(throttle_reads)  # type: ignore[arg-type]
                self._buckets.clear()
            if throttle_writes is not UNSET:
                self.throttle_writes = None if throttle_writes is None else float(throttle_writes)  # type: ignore[arg-type]
                self._buckets.clear()
            if fault_rate is not None:
                self.fault_rate = float(fault_rate)
            if lose_rate is not None:
                self.lose_rate = float(lose_rate)
            if seed is not None:
                self._rng = random.Random(seed)
            for action, specs in queued.items():
                self.fail_next[action] = deque(str(s) for s in specs)
            for action, specs in lost.items():
                self.lose_answer[action] = deque(str(s) for s in specs)
            if start_error is not None:
                for iid, code in start_error.items():
                    if code:
                        self.start_error[iid] = code
                    else:
                        self.start_error.pop(iid, None)
            if retry_after_ms is not UNSET:
                self.retry_after_ms = None if retry_after_ms is None else int(retry_after_ms)  # type: ignore[call-overload]
            self._validate()

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "latency_ms": self.latency_ms, "throttle_qps": self.throttle_qps,
                "throttle_actions": dict(self.throttle_actions),
                "throttle_reads": self.throttle_reads, "throttle_writes": self.throttle_writes,
                "fault_rate": self.fault_rate,
                "lose_rate": self.lose_rate, "retry_after_ms": self.retry_after_ms,
                "fail_next": {a: list(q) for a, q in self.fail_next.items() if q},
                "lose_answer": {a: list(q) for a, q in self.lose_answer.items() if q},
                "start_error": dict(self.start_error),
            }

    def start_errors(self) -> dict[str, str]:
        with self._lock:
            return dict(self.start_error)

    def is_read(self, product: str, action: str) -> bool:
        if self._kind is not None:
            return self._kind(product, action) == "read"
        return action.startswith(_READ_PREFIXES)

    def _rate(self, product: str, action: str) -> float | None:
        if action in self.throttle_actions:
            return self.throttle_actions[action]
        by_kind = (self.throttle_reads if self.is_read(product, action)
                   else self.throttle_writes)
        return by_kind if by_kind is not None else self.throttle_qps

    def decide(self, action: str, product: str = "") -> Verdict | None:
        """The fault to inject for this call of ``action``, or None to answer normally."""
        with self._lock:
            queue = self.fail_next.get(action)
            if queue:
                return self._verdict(action, queue.popleft())
            qps = self._rate(product, action)
            if qps is not None:
                bucket = self._buckets.get((product, action))
                if bucket is None or bucket.qps != qps:
                    bucket = self._buckets[(product, action)] = _Bucket(qps)
                if not bucket.take():
                    statuses = (self._statuses(action, "Throttling.User")
                                if self._statuses is not None else [])
                    return Verdict("Throttling.User", statuses[0] if statuses else 400,
                                   "Request was denied due to user flow control.",
                                   self.retry_after_ms)
            if self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                busy = self._busy(action) if self._busy is not None else []
                pick = self._rng.choice(
                    [("InternalError", 500), ("ServiceUnavailable", 503), (DROP, 0), *busy])
                return Verdict(pick[0], pick[1], f"{pick[0]} (emulator fault).")
            return None

    def lost_answer(self, action: str) -> Verdict | None:
        """After a successful call of ``action``: the answer to send instead, or None."""
        with self._lock:
            queue = self.lose_answer.get(action)
            if queue:
                return self._verdict(action, queue.popleft())
            if (self.lose_rate > 0 and not action.rpartition(":")[2].startswith(_READ_PREFIXES)
                    and self._rng.random() < self.lose_rate):
                code, status = self._rng.choice((("InternalError", 500), (DROP, 0)))
                return Verdict(code, status, f"{code} after the change was applied "
                               "(emulator fault).")
            return None

    def _verdict(self, action: str, spec: str) -> Verdict:
        """``Code``, ``Code:Status`` or ``ConnectionDropped``, checked against the contract."""
        code, sep, status = spec.partition(":")
        if code == DROP and not sep:
            return Verdict(DROP, 0, "connection dropped")
        if not code:
            raise ValueError(f"empty fault code in {spec!r} for {action}")
        allowed = self._statuses(action, code) if self._statuses is not None else [400]
        if not allowed:
            raise ValueError(f"{action} cannot answer {code}: it is neither documented for the "
                             "action nor a platform-wide code (tools/emulator/contract.py)")
        if sep:
            if not status.isdigit() or int(status) not in allowed:
                raise ValueError(f"{action} answers {code} with HTTP {allowed}, not {status!r}")
            http = int(status)
        else:
            http = allowed[0]
        retry = self.retry_after_ms if code.startswith("Throttling") else None
        return Verdict(code, http, f"{code} (emulator fault).", retry)

