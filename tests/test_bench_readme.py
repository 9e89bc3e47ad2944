"""The benchmark writes the README's tables from one run's results, and only there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.bench._readme import BEGIN, END, readme_markdown, write_readme

RESULTS = {
    "machine": {"python": "3.11.7", "cpus": 2}, "total_s": 12.5,
    "cold": {"ignorable": {"bare_python_s": 0.0123, "before": "/tmp/before", "rows": [
        {"function": "auto_start", "case": "other kind", "db": "sqlite",
         "before_s": 0.5, "after_s": 0.037, "before_x": 11.8, "after_x": 2.9},
        {"function": "auto_start", "case": "other kind", "db": "postgresql",
         "before_s": 0.6, "after_s": 0.038, "before_x": 28.6, "after_x": 3.1},
    ]}},
    "store": {"sqlite": {
        "statements_per_batch": {"1": {"statements": 3, "instances": 1}, "10": {"statements": 3, "instances": 2},
                                 "100": {"statements": 3, "instances": 17}},
        "batch_of_1": {f"v{v}": {"one writer": {"median": 1000 + v, "runs": [1000 + v]}} for v in (3, 4, 5)},
        "record": {"events_per_s": 4321, "writers": 4, "batch": 50},
    }},
}


def test_markdown_has_every_measured_figure_and_the_command() -> None:
    """GIVEN a run's results WHEN rendered THEN each figure appears in its table, with the command."""
    text = readme_markdown(RESULTS, "python -m tools.bench --only cold --only store")
    assert "`python -m tools.bench --only cold --only store` in one run (12.5 s)" in text
    assert "| `auto_start`, other kind | 11.8× → **2.9×** (0.04 s) | 28.6× → **3.1×** (0.04 s) |" in text
    assert "| … now (one multi-row INSERT, one upsert; SQLite adds BEGIN IMMEDIATE) | 3 / 3 / 3 |" in text
    assert "| SQL statements per batch of 1 / 10 / 100 new events, before issue 16 | 8 / 14 / 116 |" in text
    assert "1,003 / 1,004 / **1,005**" in text
    assert "| record, 4 writer processes, batches of 50, events/s | 4,321 |" in text
    assert "Spot burst" not in text  # a section the run did not measure is not written


def test_the_tables_replace_only_what_stands_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\nold tables\n{END}\noutro\n", encoding="utf-8")
    write_readme(readme, "new tables\n")
    assert readme.read_text(encoding="utf-8") == f"intro\n{BEGIN}\nnew tables\n{END}\noutro\n"
    readme.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bench:begin"):
        write_readme(readme, "x\n")


def test_the_readme_has_the_markers() -> None:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert text.index(BEGIN) < text.index(END)
