"""Bounded, selective retries with full jitter, built on tenacity.

Why tenacity and not the SDK's own ``RetryOptions``: the Tea SDK sleeps through
``DaraCore.sleep`` (``time.sleep``), which cannot be injected, so a test of the retry path
would have to really wait; its policy matches exceptions by class name or code only, so
"any HTTP 5xx" or "a refused connection" cannot be expressed; and its attempts are invisible
to our logs. tenacity takes the ``sleep`` callable, a predicate and a wait function, all
plain Python, so the whole policy lives here and is tested with a recording fake ``sleep``.

tenacity itself is imported lazily (it pulls in asyncio: ~50 ms) on the first retried call.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["RETRY_AFTER_CAP_S", "RetryPolicy", "full_jitter"]

T = TypeVar("T")

# A server-sent ``x-acs-retry-after`` is honoured, but never beyond this: an FC invoke has a
# timeout of its own, and waiting longer is better left to FC's retry of the whole event.
RETRY_AFTER_CAP_S = 30.0


def full_jitter(attempt: int, base_s: float, max_s: float, uniform: Callable[[float, float], float]) -> float:
    """AWS "full jitter": uniform in [0, min(max, base * 2**(attempt-1))] (attempt from 1)."""
    ceiling = min(max_s, base_s * (2 ** max(attempt - 1, 0)))
    return uniform(0.0, ceiling)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    ``max_attempts`` counts every call, the first one included (4 = 1 call + 3 retries).
    ``retry_after_s(exc)`` may return a server-requested delay, which replaces the jitter.
    ``budget_s`` bounds the total sleep of one call: a retry whose pause would take the sum past
    it is not made and the last error propagates (the function's own timeout is finite, and a
    long wait is better spent by FC's redelivery of the whole event). ``None``: no bound.
    """

    max_attempts: int = 4
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)
    budget_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError("backoff delays must not be negative")
        if self.budget_s is not None and self.budget_s < 0:
            raise ValueError(f"budget_s must not be negative, not {self.budget_s}")

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        """The pause after failed attempt number ``attempt`` (from 1)."""
        if retry_after_s is not None and retry_after_s > 0:
            return min(retry_after_s, RETRY_AFTER_CAP_S)
        return full_jitter(attempt, self.backoff_base_s, self.backoff_max_s, self.uniform)

    def call(
        self,
        fn: Callable[[], T],
        *,
        retryable: Callable[[BaseException], bool],
        retry_after_s: Callable[[BaseException], float | None] = lambda _exc: None,
        on_retry: Callable[[int, float, BaseException], None] | None = None,
    ) -> T:
        """Run ``fn``; on an exception for which ``retryable`` holds, sleep and call again.

        At most ``max_attempts`` calls, and at most ``budget_s`` of sleep in all. The last
        exception propagates unchanged (reraise), so callers see their own exception types,
        never tenacity's ``RetryError``. ``on_retry(attempt, delay_s, exc)`` runs before each
        sleep (for logging).
        """
        if self.max_attempts == 1:
            return fn()
        from tenacity import Retrying, retry_if_exception

        # The pause after each attempt is drawn once and shared by ``wait`` and ``stop``:
        # tenacity 8 asks ``stop`` before ``wait`` and tenacity 9 the other way round.
        planned: dict[int, float] = {}

        def pause(state: RetryCallState) -> float:
            number = state.attempt_number
            if number not in planned:
                exc = _exception_of(state)
                planned[number] = self.delay(number, retry_after_s(exc) if exc else None)
            return planned[number]

        def wait(state: RetryCallState) -> float:
            return pause(state)

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= self.max_attempts:
                return True
            slept = sum(planned.get(n, 0.0) for n in range(1, state.attempt_number))
            return self.budget_s is not None and slept + pause(state) > self.budget_s

        def before_sleep(state: RetryCallState) -> None:
            exc = _exception_of(state)
            if on_retry is not None and exc is not None:
                delay = state.next_action.sleep if state.next_action else 0.0
                on_retry(state.attempt_number, delay, exc)

        retrying = Retrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(retryable),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)


def _exception_of(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()
