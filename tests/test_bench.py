"""The benchmark's in-process sections still run and measure what they say (small sizes)."""

from __future__ import annotations

from pathlib import Path

from tools.bench.__main__ import bench_autostart, bench_warm


def test_warm_section_measures_each_function_against_a_local_emulator(tmp_path: Path) -> None:
    """Every row has a positive rate; the parse row counts events, not files."""
    rows = {r["function"]: r["events_per_s"] for r in bench_warm(0.1, tmp_path)["rows"]}
    assert set(rows) == {
        "shared.events.parse (all fixtures)",
        "record_lifecycle (record a new state change)",
        "auto_start (ignore another kind (no store: shared.triage))",
        "drain_spot (ignore another kind (no store: shared.triage))",
    }
    assert all(rate > 0 for rate in rows.values())


def test_autostart_latency_counts_one_start_per_run(tmp_path: Path) -> None:
    """Three crash-stops of opted-in instances give three StartInstance latencies."""
    result = bench_autostart(3, tmp_path)
    assert (result["runs"], result["started"]) == (3, 3)
    assert 0 < result["p50_ms"] <= result["p99_ms"]
