"""shared.spot.batch.Coalescer's reuse: a describe of the same instances within one invocation
is one call, whichever caller comes first."""

from __future__ import annotations

import threading

import pytest

from shared.spot.batch import Coalescer


def test_a_caller_covered_by_a_call_made_takes_its_result_without_calling() -> None:
    sent: list[list[str]] = []

    def send(items: list[str]) -> dict[str, int]:
        sent.append(items)
        return {i: len(i) for i in items}

    calls = Coalescer(0.0)
    assert calls.call("k", ["a", "bb"], send, reuse=True) == ({"a": 1, "bb": 2}, True)
    assert calls.call("k", ["bb"], send, reuse=True) == ({"a": 1, "bb": 2}, False)
    assert sent == [["a", "bb"]]
    # not covered, or not asked to reuse, or another key: a call of its own
    calls.call("k", ["c"], send, reuse=True)
    calls.call("k", ["a"], send)
    calls.call("other", ["a"], send, reuse=True)
    assert sent == [["a", "bb"], ["c"], ["a"], ["a"]]


def test_a_caller_covered_by_a_call_under_way_waits_for_it() -> None:
    started, release = threading.Event(), threading.Event()
    sent: list[list[str]] = []

    def slow(items: list[str]) -> dict[str, int]:
        sent.append(items)
        started.set()
        release.wait(5)
        return dict.fromkeys(items, 1)

    calls = Coalescer(0.0)
    first: list[object] = []
    leader = threading.Thread(target=lambda: first.append(calls.call("k", ["a"], slow, reuse=True)))
    leader.start()
    assert started.wait(5)
    got: list[object] = []
    follower = threading.Thread(target=lambda: got.append(calls.call("k", ["a"], slow, reuse=True)))
    follower.start()
    release.set()
    leader.join(5)
    follower.join(5)
    assert sent == [["a"]]
    assert first == [({"a": 1}, True)] and got == [({"a": 1}, False)]


def test_a_failed_call_is_not_reused() -> None:
    attempts: list[list[str]] = []

    def flaky(items: list[str]) -> dict[str, int]:
        attempts.append(items)
        if len(attempts) == 1:
            raise RuntimeError("throttled")
        return dict.fromkeys(items, 1)

    calls = Coalescer(0.0)
    with pytest.raises(RuntimeError):
        calls.call("k", ["a"], flaky, reuse=True)
    assert calls.call("k", ["a"], flaky, reuse=True) == ({"a": 1}, True)
    assert attempts == [["a"], ["a"]]
