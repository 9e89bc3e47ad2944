"""tools.bench_replace at a small scale: the burst's invariants hold (issue 14's benchmark).

Every interrupted opted-in instance is replaced or reported, at most one successor each, every
notice delivered twice, some first candidates sold out, every successor serving in both of its
predecessor's groups."""

from __future__ import annotations

import json
from pathlib import Path

from tools import bench_replace


def test_a_small_burst_replaces_every_instance_once_and_serves_where_they_did(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    code = bench_replace.main(["--instances", "8", "--boot-s", "0.2", "--tick-s", "0.3",
                               "--healthy-after-s", "0.5",
                               "--drain-time-s", "0.2", "--retry-after-s", "0.3",
                               "--latency-ms", "0", "--timeout-s", "60", "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0
    assert report["deliveries"] == 16
    assert report["unfinished"] == []
    assert sum(report["statuses"].values()) == 8
    assert report["max_successors_per_instance"] == 1
    assert report["duplicate_launches"] == 0
    assert report["first_candidate_sold_out"] >= 1
    assert report["registered_per_successor"] == [2]
    # serving = healthy in the CLB group (0.5 s after Running), Available in the ALB group
    assert report["group_states"] == {"healthy": 8, "available": 8}
    assert report["not_healthy"] == {}
    assert report["notice_to_serving_s"]["p50"] >= report["notice_to_running_s"]["p50"]
