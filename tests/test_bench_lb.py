"""tools.bench.lb's small mode: issue 13's performance figures, measured, must hold (they can
fail: the old design is measured beside the new one on the same fleet)."""

from __future__ import annotations

from typing import Any

import pytest

from tools.bench.lb import Shape, bench, build_fleet


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return bench(["one", "spot"], small=True)


def test_one_notice_stops_traffic_fast_with_few_calls_when_the_index_is_fresh(
    report: dict[str, Any]
) -> None:
    """GIVEN a fresh index WHEN one notice arrives THEN every membership is at weight 0 (or
    draining natively) within 5 s, with <= 2 writes per membership and <= 10 + 2 reads per
    membership; the old design reads more for the same notice."""
    new, old = report["sections"]["one"]
    assert (new["design"], old["design"]) == ("new", "old")
    assert new["removed_pct"] == 100.0 and new["missed_deadlines"] == 0
    assert new["stop_p99_s"] is not None and new["stop_p99_s"] <= 5.0
    assert new["writes_per_membership"] <= 2.0
    assert new["reads"] <= 10 + 2 * new["memberships"]
    assert new["index_used"] == 1 and old["index_used"] == 0
    assert new["reads"] < old["reads"]


def test_a_burst_reads_one_scan_plus_a_few_per_notice(report: dict[str, Any]) -> None:
    """GIVEN the spot-burst fleet, an index older than the fresh time and memberships it does
    not know WHEN every spot instance is interrupted at once THEN all are removed before their
    deadlines, one shared scan catches the unknown memberships, and the burst reads at most one
    full scan + 5 per notice, fewer than the old design."""
    old, new = report["sections"]["spot"]
    assert new["removed_pct"] == 100.0 and new["missed_deadlines"] == 0
    assert new["scan_status"] == "done"
    assert new["late_found_by_scan"] == new["late_added"]
    assert new["reads"] <= new["full_scan_reads"] + 5 * new["notices"]
    assert new["reads"] < old["reads"]
    assert new["writes_per_membership"] < old["writes_per_membership"]


def test_every_interrupted_instance_is_in_three_to_five_groups_across_products() -> None:
    """The benchmark's fleet is what issue 13 describes."""
    fleet = build_fleet(Shape(clbs=3, groups=4, alb_groups=3, nlb_groups=3, spot=30))
    sizes = {len(groups) for groups in fleet.members.values()}
    assert sizes <= {3, 4, 5} and min(sizes) >= 3
    assert all({p for p, _ in groups} == {"clb", "alb", "nlb"} for groups in fleet.members.values())
