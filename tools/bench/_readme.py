"""The benchmark's figures as the README's tables, from one run's results (``tools.bench``).

``python -m tools.bench --readme`` writes them into README.md between the markers
``<!-- bench:begin -->`` and ``<!-- bench:end -->``; ``--markdown FILE`` writes them to a file.
Only the sections the run measured are written; every figure comes from ``results``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
DB_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB"}
# Statements per recorded batch before issue 16 (measured on commit 1baf801 with
# tools.bench_store.bench_statements; the code that ran them is gone, the counts are fixed by it).
STATEMENTS_BEFORE = {"sqlite": {"1": 8, "10": 14, "100": 116},
                     "postgresql": {"1": 7, "10": 13, "100": 115},
                     "mysql": {"1": 7, "10": 12, "100": 99}}


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def _num(value: object, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def cold_tables(cold: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    ignorable = cold.get("ignorable")
    if ignorable:
        dbs = list(dict.fromkeys(r["db"] for r in ignorable["rows"]))
        before = ignorable.get("before") is not None
        header = ["an ignorable event, FC-style process (median)"] + [
            f"{DB_NAMES.get(db, db)}{' before → after' if before else ''}" for db in dbs
        ]
        cases: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for r in ignorable["rows"]:
            cases.setdefault((r["function"], r["case"]), {})[r["db"]] = r
        rows = []
        for (function, case), per_db in cases.items():
            cells: list[object] = [f"`{function}`, {case}"]
            for db in dbs:
                r = per_db.get(db, {})
                after = f"**{_num(r.get('after_x'))}×** ({_num(r.get('after_s'), 2)} s)"
                cells.append(f"{_num(r.get('before_x'))}× → {after}" if before else after)
            rows.append(cells)
        out += [f"Bare `python -I -c \"import json\"`: {_num(ignorable['bare_python_s'] * 1000)} ms "
                "(median, timed beside each run).", ""]
        out += _table(header, rows)
    functions = cold.get("functions")
    if functions:
        base = cold.get("baseline_s", {})
        rows = [[f"`{k}`", f"{_num(v, 2)} s", "", "", ""] for k, v in base.items()]
        rows += [[f"`{r['function']}`, {r['case']}", f"{_num(r['process_s'], 2)} s",
                  f"{_num(r['load_s'], 3)} s", f"{_num(r['first_event_s'], 3)} s",
                  f"{_num(r['max_rss_mb'], 0)} MB"] for r in functions]
        out += _table(["cold start via `tools.bench._cold`, SQLite (median)", "process", "import",
                       "first event", "peak RSS"], rows)
    return out


def bytecode_table(bytecode: Mapping[str, Any]) -> list[str]:
    rows = [[r["case"], f"{_num(r['source_only_s'], 3)} s", f"{_num(r['with_pyc_s'], 3)} s",
             f"{_num(r['speedup'], 2)}×"] for r in bytecode["rows"]]
    return [f"Read-only `record_lifecycle` bundle, python {bytecode['python']} ({bytecode['note']}):", "",
            *_table(["fresh process (median)", "source only", "with pycs", "speedup"], rows)]


def store_tables(store: Mapping[str, Mapping[str, Any]]) -> list[str]:
    dbs = list(store)
    header = ["store", *(DB_NAMES.get(db, db) for db in dbs)]
    rows: list[list[object]] = []

    def add(label: str, cell: Any) -> None:
        values = [cell(store[db], db) for db in dbs]
        if any(v not in ("", None) for v in values):
            rows.append([label, *values])

    def statements(figures: Mapping[str, Any], db: str, which: str) -> str:
        counts = figures.get("statements_per_batch", {})
        if which == "before":
            return " / ".join(str(STATEMENTS_BEFORE.get(db, {}).get(s, "?")) for s in counts)
        return " / ".join(str(c["statements"]) for c in counts.values())

    add("SQL statements per batch of 1 / 10 / 100 new events, before issue 16",
        lambda f, db: statements(f, db, "before"))
    add("… now (one multi-row INSERT, one upsert; SQLite adds BEGIN IMMEDIATE)",
        lambda f, db: statements(f, db, "after"))
    cases = next((list(next(iter(f["batch_of_1"].values()))) for f in store.values() if f.get("batch_of_1")), [])
    for case in cases:
        add(f"record batch of 1, {case}, events/s: schema 3 (no counters) / 4 (counters) / **5 (sharded)**",
            lambda f, db, case=case: " / ".join(
                (f"**{_num(s[case]['median'], 0)}**" if name == "v5" else _num(s[case]["median"], 0))
                for name, s in f.get("batch_of_1", {}).items()))
    add("record, 4 writer processes, batches of 50, events/s",
        lambda f, db: _num(f["record"]["events_per_s"], 0) if "record" in f else "")
    add("`released` p95 over the load (7 shapes), pre-issue shape → now",
        lambda f, db: (f"{_num(f['released']['before']['all']['p95_ms'])} ms → "
                       f"**{_num(f['released']['after']['all']['p95_ms'])} ms**") if "released" in f else "")
    add("`released` p50, now", lambda f, db: f"{_num(f['released']['after']['all']['p50_ms'])} ms" if "released" in f else "")
    other = next((list(f["released"]["other_queries"]) for f in store.values() if "released" in f), [])
    for name in other:
        if name.startswith("stats"):
            continue
        add(f"`{name}` p95 / p50", lambda f, db, name=name: (
            f"{_num(f['released']['other_queries'][name]['p95_ms'])} / "
            f"{_num(f['released']['other_queries'][name]['p50_ms'])} ms") if "released" in f else "")
    for window in ("since 1d", "all time"):
        add(f"`stats` {window} p95, pre-counter shape → now (p50 now)", lambda f, db, w=window: (
            f"{_num(f['released']['stats'][f'before {w}']['p95_ms'])} ms → "
            f"**{_num(f['released']['stats'][f'after {w}']['p95_ms'])} ms** "
            f"({_num(f['released']['stats'][f'after {w}']['p50_ms'])})") if "released" in f else "")
    loads = {db: f.get("load", {}).get("events") for db, f in store.items()}
    note = ", ".join(f"{DB_NAMES.get(db, db)} {_num(n, 0)}" for db, n in loads.items() if n)
    return [f"Events loaded for the queries: {note}." if note else "", "", *_table(header, rows)]


def drain_tables(drain: Mapping[str, Any]) -> list[str]:
    setup = drain.get("setup", {})
    rows = []
    for r in drain.get("billing", []):
        rows.append([r["design"], _num(r.get("invocations"), 0), _num(r.get("peak_instances"), 0),
                     _num(r.get("billed_instance_s")),
                     " / ".join(_num(r.get(k)) for k in ("notice_to_removed_p50_s", "notice_to_removed_max_s")
                                if r.get(k) is not None),
                     _num(r.get("time_left_min_s")), _num(r.get("missed_deadlines"), 0)])
    out = [f"{_num(setup.get('instances'), 0)} notices at once, drain time {_num(setup.get('drain_time_s'), 0)} s, "
           f"{_num(setup.get('removable_spot_memberships'), 0)} removable memberships, "
           f"{_num(setup.get('latency_ms'), 0)} ms per call:", ""]
    out += _table(["design", "invocations", "peak instances", "billed instance-s",
                   "notice → removed p50 / max s", "least time left s", "missed"], rows)
    practice, naive = drain.get("practice"), drain.get("naive") or {}
    if practice:
        def failures(run: Mapping[str, Any]) -> str:
            counts = run.get("failed_invocations") or {}
            detail = ", ".join(f"{code} {n}" for code, n in counts.items())
            return f"{sum(counts.values())}" + (f" ({detail})" if detail else "")

        out += _table(["the sleeping run, beside a naive handler", "`drain_spot`", "naive (seed doc's way)"], [
            ["drained gently", f"{practice.get('drained')} / {setup.get('instances')}",
             _num(naive.get("drained_gently"), 0)],
            ["memberships left behind", _num(practice.get("memberships_left_behind"), 0),
             _num(naive.get("memberships_left_behind"), 0)],
            ["failed invocations", failures(practice), failures(naive) if naive else ""],
        ])
    return out


def readme_markdown(results: Mapping[str, Any], command: str) -> str:
    machine = results.get("machine", {})
    lines = [f"Generated by `{command}` in one run ({results.get('total_s')} s) on "
             f"{machine.get('cpus')} cores, Python {machine.get('python')}; the machine is shared with "
             "other jobs, so every figure is a median (p95 where marked) and the load is part of it.", ""]
    if "cold" in results:
        lines += ["#### Cold start", "", *cold_tables(results["cold"])]
    if "bytecode" in results:
        lines += ["#### Bytecode in the bundles", "", *bytecode_table(results["bytecode"])]
    if "store" in results:
        lines += ["#### Store", "", *store_tables(results["store"])]
    if "drain" in results:
        lines += ["#### Spot burst: billed time and instances", "", *drain_tables(results["drain"])]
    return "\n".join(lines).rstrip() + "\n"


def write_readme(readme: Path, markdown: str) -> None:
    """Replace what stands between the markers in ``readme`` (raises if they are missing)."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no {BEGIN} … {END} section to replace")
    readme.write_text(text[: start + len(BEGIN)] + "\n" + markdown + text[end:], encoding="utf-8")
