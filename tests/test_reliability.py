"""The reliability suite (small size) holds, and its checker catches a deliberately broken run."""

from __future__ import annotations

from pathlib import Path

from tools.reliability import SMALL, Run, check_invariants, run_suite


def test_hostile_delivery_keeps_every_invariant(tmp_path: Path) -> None:
    """GIVEN duplicates, shuffling, poison, API faults and a store outage WHEN the stream is
    delivered THEN every invariant holds (recorded once, started once, drained, nothing lost)."""
    run, problems = run_suite(SMALL, seed=11, workdir=tmp_path)
    assert problems == []
    assert run.raised > 0, "the store outage and faults must have forced platform retries"
    assert run.poison_sent > 0
    assert run.poison_reported == run.poison_sent
    assert len(run.eligible) == 9 and len(run.interrupted) == 6
    assert sorted(run.recorded_ids.values()) == [1] * len(run.recorded_ids)


def test_a_platform_that_does_not_retry_loses_events_and_the_checker_says_so(tmp_path: Path) -> None:
    """GIVEN the retries of failed deliveries switched off (a broken platform) THEN the events
    delivered during the store outage are reported as never recorded."""
    _, problems = run_suite(SMALL, seed=11, workdir=tmp_path, sabotage="no_platform_retry")
    assert any("never recorded" in p for p in problems), problems


def test_starting_an_ineligible_instance_is_caught(tmp_path: Path) -> None:
    """GIVEN a bug that starts an instance no rule allows THEN the checker names it."""
    _, problems = run_suite(SMALL, seed=11, workdir=tmp_path, sabotage="start_ineligible")
    assert any(p.startswith("ineligible ") and "was started" in p for p in problems), problems


def test_checker_flags_each_kind_of_violation() -> None:
    """Each invariant, broken alone on a synthetic run, is reported with what broke."""
    run = Run()
    run.recorded_ids.update({"a": 1, "b": 0, "c": 2})
    run.eligible, run.ineligible, run.interrupted = {"i-elig"}, {"i-inel"}, {"i-spot", "i-late"}
    run.starting_events.update({"i-elig": 2, "i-inel": 1})
    run.leftover_memberships = {"i-spot": 2, "i-late": 1}
    run.drains = [{"instance_id": "i-spot", "time_left_s": 100, "missed_deadline": False},
                  {"instance_id": "i-late", "time_left_s": -5, "missed_deadline": True}]
    run.poison_cloud_calls, run.poison_sent, run.poison_reported = 1, 3, 2
    problems = check_invariants(run)
    assert problems == [
        "1 emitted events never recorded (e.g. ['b'])",
        "1 events recorded more than once (e.g. ['c'])",
        "eligible i-elig started 2 times, not once",
        "ineligible i-inel was started 1 times",
        "interrupted i-spot still in 2 removable groups, unflagged",
        "poison elements caused 1 cloud calls",
        "3 poison elements delivered, 2 reported",
    ]
