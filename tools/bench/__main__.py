"""The benchmark: ``python -m tools.bench [--quick] [--json FILE]``.

Sections (each printed as a table, all written to one JSON file):
  cold     cold start of each function in a fresh process (import + first event), for an event
           it ignores and one it acts on, beside `python -c "import json"` and the SDK imports
  warm     per-event cost on a warm instance (events/s) and the normaliser's throughput
  bytecode cold import of a read-only bundle with and without its pycs (tools.package)
  store    statements per batch, record throughput, `released` and the other reads before/after
           (tools.bench_store; PostgreSQL and MariaDB too when their test URLs are set)
  --markdown FILE / --readme: the figures as the README's tables (tools/bench/_readme.py)
  autostart  decision latency: event in -> StartInstance received by the emulator
  drain    the spot burst against deadlines, and the naive seed-doc handler (tools.bench_drain)
  reliability  tools.reliability --full (--quick: the small size) on SQLite, and on PostgreSQL and
           MariaDB when their test URLs are set: invariants, faults injected, deadline overrun
  lb       issue 13: one notice, a 200-notice burst, reads per notice vs fleet size and the spot
           burst, scan per notice (old) vs the membership index (new) on CLB/ALB/NLB (tools.bench.lb)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.envelopes import wrap

REPO = Path(__file__).resolve().parent.parent.parent
FLEET = REPO / "tools" / "fleets" / "demo.yaml"
FIXTURES = REPO / "tests" / "fixtures" / "events"
SECTIONS = ("cold", "warm", "bytecode", "store", "autostart", "drain", "reliability", "lb")
WARM_UP = 20  # invocations before the warm clock starts


def _run(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(list(cmd), cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return done.stdout


def _wall(cmd: Sequence[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        _run(cmd)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- an emulator in its own process, driven over its control endpoints -------------------------


class EmulatorProcess:
    def __init__(self, fleet: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.emulator", "--fleet", str(fleet), "--start-delay", "0.05",
             *extra], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the emulator did not start")
        from tools.emulator import load_fleet

        self.env = load_fleet(fleet).credentials[0].environment()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            return json.loads(answer.read())

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body or {}).encode(),
                                         headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read() or b"null")

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for payload in reversed(self.get("/_emulator/events")):
                if predicate(payload):
                    return dict(payload)
            time.sleep(0.05)
        raise RuntimeError("the expected event never came")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@contextmanager
def emulator(fleet: Path = FLEET, *extra: str) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(fleet, *extra)
    try:
        yield emu
    finally:
        emu.close()


def _state_event(iid: str, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p.get("name") == "Instance:StateChange" and p["content"].get("resourceId") == iid \
        and p["content"].get("state") == state


# --- cold start ---------------------------------------------------------------------------------


def bench_cold(reps: int, workdir: Path) -> dict[str, Any]:
    py = sys.executable
    baseline = {
        "python -c 'import json'": _wall([py, "-c", "import json"], reps),
        "import ECS client": _wall([py, "-c", "import alibabacloud_ecs20140526.client"], reps),
        "import ECS + SLB clients": _wall(
            [py, "-c", "import alibabacloud_ecs20140526.client, alibabacloud_slb20140515.client"], reps),
    }
    rows: list[dict[str, Any]] = []
    with emulator() as emu:
        fleet_ids = {i["name"]: i["id"] for i in emu.get("/_emulator/state")["instances"]}

        def event_file(name: str, body: bytes) -> Path:
            path = workdir / name
            path.write_bytes(body)
            return path

        def acted(function: str, rep: int) -> Path:
            if function == "record_lifecycle":
                iid = emu.post("/_emulator/instances", {"id": f"i-bp1bench{rep:012d}", "name": f"bench-{rep}", "instance_type": "ecs.g7.large",
                                                        "zone": "cn-hangzhou-h"})["instance_id"]
                payload = emu.wait_event(_state_event(iid, "Pending"))
            elif function == "auto_start":
                iid = fleet_ids[f"web-{rep + 1:02d}"]
                emu.post(f"/_emulator/instances/{iid}/stop", {"by": "crash"})
                payload = emu.wait_event(_state_event(iid, "Stopped"))
            elif function == "drain_spot":
                iid = fleet_ids[f"spot-{rep + 1:02d}"]
                emu.post(f"/_emulator/instances/{iid}/interrupt")
                payload = emu.wait_event(lambda p: p.get("name") == "Instance:PreemptibleInstanceInterruption"
                                         and p["content"].get("instanceId") == iid)
            elif function == "sweep":
                return event_file("timer.json", json.dumps({"triggerTime": "2026-11-23T00:00:00Z",
                                                            "triggerName": "sweep", "payload": ""}).encode())
            else:
                return event_file("http.json", json.dumps(_http_event("/released")).encode())
            return event_file(f"{function}-{rep}.json", wrap(payload, "eventbridge"))

        ignored = {
            "record_lifecycle": event_file("poison.json", b'{"hello": "world"}'),
            "auto_start": FIXTURES / "eventbridge" / "disk_stalled_executing.json",
            "drain_spot": FIXTURES / "eventbridge" / "state_running.json",
            "lifecycle_api": event_file("http404.json", json.dumps(_http_event("/nowhere")).encode()),
        }
        functions = sorted(p.parent.name for p in (REPO / "functions").glob("*/index.py"))
        for function in functions:
            for case in ("ignored", "acted"):
                if case == "ignored" and function not in ignored:
                    continue
                samples = []
                for rep in range(reps):
                    db = f"sqlite:///{workdir / f'cold-{function}-{case}-{rep}.sqlite3'}"
                    path = ignored[function] if case == "ignored" else acted(function, rep)
                    started = time.perf_counter()
                    out = _run([py, "-m", "tools.bench._cold", function, str(path), "--cloud", emu.url,
                                "--db", db, "--env", "ECS_EVENT_OPS_DRAIN_TIME_S=0"], env=emu.env)
                    wall = time.perf_counter() - started
                    samples.append({**json.loads(out.strip().splitlines()[-1]), "process_s": wall})
                med = {k: statistics.median(s[k] for s in samples) for k in
                       ("load_s", "first_event_s", "import_and_first_event_s", "max_rss_mb", "process_s")}
                errors = [s["error"] for s in samples if s["error"]]
                rows.append({"function": function, "case": case, **{k: round(v, 4) for k, v in med.items()},
                             "vs_bare_python": round(med["process_s"] / baseline["python -c 'import json'"], 1),
                             "vs_sdk_import": round(med["process_s"] / baseline["import ECS client"], 2),
                             "sdk_loaded": samples[-1]["sdk_loaded"], "errors": errors})
    return {"baseline_s": {k: round(v, 4) for k, v in baseline.items()}, "functions": rows}


# Deliveries a function has nothing to do with (issue 16), and one with a bad element, which
# every function keeps in the store for review (so it is work, and pays for the store engine).
IGNORABLE: tuple[tuple[str, str, str], ...] = (
    ("auto_start", "other kind (disk event)", "eventbridge/disk_stalled_executing.json"),
    ("auto_start", "Starting state change", "eventbridge/state_starting.json"),
    ("drain_spot", "Running state change", "eventbridge/state_running.json"),
    ("record_lifecycle", "other account's event", "cloudmonitor/state_running_foreign_account.json"),
    ("record_lifecycle", "bad element (kept for review)", ""),
)


def _databases(workdir: Path) -> dict[str, str]:
    """SQLite always; PostgreSQL and MariaDB when their test URLs are set (tables dropped)."""
    dbs = {"sqlite": f"sqlite:///{workdir / 'ignorable.sqlite3'}"}
    for name, env in (("postgresql", "ECS_EVENT_OPS_TEST_PG_URL"), ("mysql", "ECS_EVENT_OPS_TEST_MYSQL_URL")):
        if os.environ.get(env):
            dbs[name] = os.environ[env]
    return dbs


def bench_ignorable(reps: int, workdir: Path, before: Path | None) -> dict[str, Any]:
    """Process time of an ignorable event, FC-style (``python -I``, import index, handler once:
    tools/bench/_fc.py), against a bare ``python -I -c "import json"``, on every database, for
    this tree and, side by side, a checkout of the code before (``--before DIR``).

    Bytecode is written by a first, unmeasured run of each case (``-I`` writes ``__pycache__``
    next to the sources, as the bundles now ship pycs); the first run also creates the schema.
    """
    from tools.bench_store import _reset
    from tools.invoke import fc_environment

    py = sys.executable
    trees = {"after": REPO, **({"before": before.resolve()} if before else {})}
    poison = workdir / "poison.json"
    poison.write_bytes(b'{"hello": "world"}')
    bare_cmd = [py, "-I", "-c", "import json"]
    bare_all: list[float] = []
    rows: list[dict[str, Any]] = []
    for db, url in _databases(workdir).items():
        if db != "sqlite":
            _reset(url)
        for tree_name in ("before", "after"):
            tree = trees.get(tree_name)
            if tree is None:
                continue
            for function, case, fixture in IGNORABLE:
                event = FIXTURES / fixture if fixture else poison
                env = {"PATH": os.environ.get("PATH", ""),
                       **fc_environment(function, "python3.10", db_url=url, base={})}
                cmd = [py, "-I", str(REPO / "tools" / "bench" / "_fc.py"), str(tree), function, str(event)]
                times, bare = [], []
                for rep in range(reps + 1):
                    started = time.perf_counter()
                    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True,
                                          timeout=120, check=False)
                    if done.returncode != 0:
                        raise RuntimeError(f"{function} ({case}, {db}, {tree_name}): {done.stderr.strip()[-800:]}")
                    if rep:  # the first run compiled the bytecode (and made the schema)
                        times.append(time.perf_counter() - started)
                        # The bare interpreter beside each run: the machine's load is shared.
                        bare.append(_wall(bare_cmd, 1))
                med, bare_med = statistics.median(times), statistics.median(bare)
                bare_all += bare
                rows.append({"function": function, "case": case, "db": db, "tree": tree_name,
                             "process_s": round(med, 4), "vs_bare_python": round(med / bare_med, 1)})
    table: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        entry = table.setdefault((row["function"], row["case"], row["db"]),
                                 {"function": row["function"], "case": row["case"], "db": row["db"]})
        entry[f"{row['tree']}_s"] = row["process_s"]
        entry[f"{row['tree']}_x"] = row["vs_bare_python"]
    return {"bare_python_s": round(statistics.median(bare_all), 4), "before": str(before) if before else None,
            "rows": list(table.values())}


def _http_event(path: str) -> dict[str, Any]:
    return {"version": "v1", "rawPath": path, "headers": {}, "queryParameters": {}, "body": "",
            "isBase64Encoded": False,
            "requestContext": {"http": {"method": "GET", "path": path}, "requestId": "bench"}}


# --- warm per-event cost -------------------------------------------------------------------------


def bench_warm(seconds: float, workdir: Path) -> dict[str, Any]:
    """Warm handler cost in-process, against an in-process emulator (no call leaves the host)."""
    from shared import log

    with log.redirect(io.StringIO()):  # the functions' JSON logs are not the measurement
        return _bench_warm(seconds, workdir)


def _bench_warm(seconds: float, workdir: Path) -> dict[str, Any]:
    from shared.events import parse
    from tools.emulator import Emulator, load_fleet
    from tools.invoke import applied_environment, build_context, fc_environment, load_function

    bodies = [p.read_bytes() for p in sorted(FIXTURES.rglob("*.json")) if p.name != "expected.json"]
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for body in bodies:
            count += len(parse(body).events)
    parse_rate = count / (time.perf_counter() - started)
    template = json.loads((FIXTURES / "cloudmonitor" / "state_stopped.json").read_bytes())
    rows = [{"function": "shared.events.parse (all fixtures)", "events_per_s": round(parse_rate)}]
    cases: dict[str, str | Path] = {
        "record_lifecycle": "record",
        "auto_start": FIXTURES / "eventbridge" / "disk_stalled_executing.json",
        "drain_spot": FIXTURES / "eventbridge" / "state_running.json",
    }
    with Emulator(load_fleet(FLEET)) as emu:
        for function, case in cases.items():
            env = fc_environment(function, "python3.10", cloud_url=emu.url,
                                 db_url=f"sqlite:///{workdir / f'warm-{function}.sqlite3'}",
                                 extra=emu.signing_environment())
            with applied_environment(env):
                module = load_function(function).module
                context = build_context(function, "python3.10", env)

                def body_for(n: int, case: str | Path = case) -> bytes:
                    if case == "record":  # a new event each time: recording is the work
                        return json.dumps({**template, "id": f"bench-{n:08d}"}).encode()
                    return Path(case).read_bytes()

                for n in range(WARM_UP):  # SDK import, schema, one-off snapshot tries: not warm
                    module.handler(body_for(-1 - n), context)
                n, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds:
                    module.handler(body_for(n), context)
                    n += 1
            what = "record a new state change" if case == "record" else "ignore another kind (no store: shared.triage)"
            rows.append({"function": f"{function} ({what})",
                         "events_per_s": round(n / (time.perf_counter() - started))})
    return {"rows": rows}


# --- sections delegated to the practice benchmarks -----------------------------------------------


def bench_module(module: str, args: Sequence[str], workdir: Path) -> dict[str, Any]:
    """Run a practice's own benchmark, which writes its JSON to a file. 30 minutes at most:
    the drain section alone runs three 200-notice bursts and the old-vs-index comparison, whose
    old design spends its ~6 minutes throttled."""
    out = workdir / f"{module.rsplit('.', 1)[-1]}.json"
    _run([sys.executable, "-m", module, *args, "--json", str(out)], timeout=1800)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def bench_reliability(full: bool, workdir: Path) -> dict[str, Any]:
    """tools.reliability on each store; a broken invariant is a result here, not a crash."""
    results: dict[str, Any] = {}
    for name, server in _databases(workdir).items():
        url = f"sqlite:///{workdir / 'reliability.sqlite3'}" if name == "sqlite" else server
        out = workdir / f"reliability-{name}.json"
        cmd = [sys.executable, "-m", "tools.reliability", *(["--full"] if full else []), "--db", url,
               "--reset", "--json", str(out)]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
        if not out.exists():
            raise RuntimeError(f"tools.reliability on {name} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
        results[name] = json.loads(out.read_text())
    return results


def _reliability_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"db": name, "broken": [k for k, ok in r["invariants"].items() if not ok] or "none",
             "events": r["events_emitted"], "deliveries": r["deliveries"], "retried": r["raised_and_retried"],
             "killed": r["killed"], "mid_wait": r["killed_mid_wait"], "lost": r["answers_lost"],
             "overrun_s": r["largest_deadline_overrun_s"], "seconds": r["seconds"]}
            for name, r in results.items()]


def bench_store(args: Sequence[str]) -> dict[str, Any]:
    """tools.bench_store prints its JSON on stdout (``--json`` is a flag there)."""
    data: dict[str, Any] = json.loads(_run([sys.executable, "-m", "tools.bench_store", *args, "--json"],
                                          timeout=3600))
    return data


def _store_rows(store: dict[str, Any]) -> list[dict[str, Any]]:
    """One table of the store section: before -> after per database."""
    from tools.bench._readme import STATEMENTS_BEFORE

    rows: list[dict[str, Any]] = []
    for db, figures in store.items():
        for size, count in figures["statements_per_batch"].items():
            rows.append({"db": db, "what": f"statements, batch of {size} ({count['instances']} instances)",
                         "before": STATEMENTS_BEFORE.get(db, {}).get(size, ""), "after": count["statements"]})
        for schema, cases in figures.get("batch_of_1", {}).items():
            for case, figure in cases.items():
                rows.append({"db": db, "what": f"record events/s, batch of 1, {case}, schema {schema}",
                             "before": "", "after": figure["median"]})
        if "record" in figures:
            r = figures["record"]
            rows.append({"db": db, "what": f"record events/s, {r['writers']} writer(s), batch {r['batch']}",
                         "before": "", "after": r["events_per_s"]})
        released = figures.get("released")
        if released:
            rows.append({"db": db, "what": f"released p95 ms over {figures['load']['events']} events",
                         "before": released["before"]["all"]["p95_ms"], "after": released["after"]["all"]["p95_ms"]})
            for name, q in released["other_queries"].items():
                if name.startswith("stats") and "stats" in released:
                    continue  # below, before -> after
                rows.append({"db": db, "what": f"{name} p95 ms", "before": "", "after": q["p95_ms"]})
            for window in ("since 1d", "all time"):
                stats = released.get("stats", {})
                if f"after {window}" in stats:
                    rows.append({"db": db, "what": f"stats {window} p95 ms", "before": stats[f"before {window}"]["p95_ms"],
                                 "after": stats[f"after {window}"]["p95_ms"]})
    return rows


def bench_autostart(runs: int, workdir: Path) -> dict[str, Any]:
    """Event in -> StartInstance received, in-process, through the local runtime."""
    from shared import log
    from tools.emulator import Emulator, load_fleet
    from tools.invoke import applied_environment, invoke_local

    latencies: list[float] = []
    with log.redirect(io.StringIO()), Emulator(load_fleet(FLEET), start_delay_s=0.02) as emu:
        db = f"sqlite:///{workdir / 'autostart.sqlite3'}"
        targets = [i["id"] for i in emu.state()["instances"] if i["name"].startswith(("web-", "app-"))]
        with applied_environment(emu.signing_environment()):
            for run in range(runs):
                iid = targets[run % len(targets)]
                emu.wait_for_status(iid, "Running", 10)
                emu.stop_instance(iid, by="crash")
                emu.wait_for_status(iid, "Stopped", 10)
                payload = next(p for p in reversed(emu.events()) if _state_event(iid, "Stopped")(p))
                emu.clear_calls()
                started = time.time()
                result = invoke_local("auto_start", wrap(payload, "eventbridge"), cloud_url=emu.url,
                                      db_url=db, env={"ECS_EVENT_OPS_FLAP_MAX_STARTS": "1000",
                                                      # the decision path itself: the emulator's
                                                      # trail is instant, no settle window (with
                                                      # the default, the sweep starts "true" stops)
                                                      "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": "0"})
                if result.error is not None:
                    raise RuntimeError(f"auto_start failed: {result.error}")
                starts = [c for c in emu.calls() if c.action in ("StartInstance", "StartInstances")]
                if starts:
                    latencies.append((starts[0].time - started) * 1000)
    latencies.sort()
    return {"runs": runs, "started": len(latencies),
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1) if latencies else None}


# --- output ----------------------------------------------------------------------------------------


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (under five minutes)")
    parser.add_argument("--json", metavar="FILE", default="bench-results/bench.json",
                        help="where to write the results (default: %(default)s)")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--markdown", metavar="FILE", type=Path,
                        help="also write the figures as the README's tables (tools/bench/_readme.py)")
    parser.add_argument("--readme", action="store_true",
                        help="write those tables into README.md between its bench markers")
    parser.add_argument("--before", metavar="DIR", type=Path,
                        help="a checkout of the code before (git archive COMMIT | tar -x -C DIR): the "
                             "cold section times its ignorable events side by side")
    args = parser.parse_args(argv)
    sections = args.only or list(SECTIONS)
    quick = args.quick
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                           "platform": platform.platform()}, "quick": quick}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ecs-bench-") as tmp:
        workdir = Path(tmp)
        for section in sections:
            print(f"== {section} ...", flush=True)
            t0 = time.perf_counter()
            if section == "cold":
                results["cold"] = bench_cold(3 if quick else 7, workdir)
                print(_table([{"what": k, "median_s": v} for k, v in results["cold"]["baseline_s"].items()],
                             ["what", "median_s"]))
                print(_table(results["cold"]["functions"],
                             ["function", "case", "process_s", "load_s", "first_event_s", "max_rss_mb",
                              "vs_bare_python", "vs_sdk_import", "errors"]))
                results["cold"]["ignorable"] = bench_ignorable(3 if quick else 7, workdir, args.before)
                print(f"ignorable events, FC-style process (python -I {results['cold']['ignorable']['bare_python_s']} s):")
                print(_table(results["cold"]["ignorable"]["rows"],
                             ["function", "case", "db", "before_s", "after_s", "before_x", "after_x"]))
            elif section == "warm":
                results["warm"] = bench_warm(1.0 if quick else 3.0, workdir)
                print(_table(results["warm"]["rows"], ["function", "events_per_s"]))
            elif section == "bytecode":
                from tools.bench._bytecode import bench_bytecode, columns

                results["bytecode"] = bench_bytecode(3 if quick else 7, workdir)
                print(f"python {results['bytecode']['python']} ({results['bytecode']['note']}), read-only bundle:")
                print(_table(results["bytecode"]["rows"], columns()))
            elif section == "store":
                size = (["--events", "20000", "--released-events", "200000"] if quick
                        else ["--events", "50000", "--released-events", "1000000"])
                results["store"] = {"sqlite": bench_store(size)}
                for name, env in (("postgresql", "ECS_EVENT_OPS_TEST_PG_URL"),
                                  ("mysql", "ECS_EVENT_OPS_TEST_MYSQL_URL")):
                    if os.environ.get(env):  # the server URL tests use; --reset drops our tables
                        results["store"][name] = bench_store([*size, "--db", os.environ[env], "--reset"])
                print(_table(_store_rows(results["store"]), ["db", "what", "before", "after"]))
            elif section == "autostart":
                results["autostart"] = bench_autostart(20 if quick else 100, workdir)
                print(_table([results["autostart"]], ["runs", "started", "p50_ms", "p99_ms"]))
            elif section == "drain":
                # the deployed drain time (s.yaml): the billed seconds of issue 16's burst
                size = ["--instances", "200", "--latency-ms", "50", "--drain-time-s", "60"]
                results["drain"] = bench_module("tools.bench_drain", size, workdir)
                print(json.dumps(results["drain"], indent=1)[:3000])
            elif section == "reliability":
                results["reliability"] = bench_reliability(not quick, workdir)
                print(_table(_reliability_rows(results["reliability"]),
                             ["db", "broken", "events", "deliveries", "retried", "killed", "mid_wait", "lost",
                              "overrun_s", "seconds"]))
            elif section == "lb":
                from tools.bench.lb import COLUMNS
                from tools.bench.lb import bench as bench_lb

                results["lb"] = bench_lb(["one", "burst", "growth", "spot"], small=quick)
                for name, rows in results["lb"]["sections"].items():
                    print(f"-- {name}")
                    print(_table(rows, (("clbs",) if name == "growth" else ()) + COLUMNS))
            print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    results["total_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {out} in {results['total_s']} s")
    if args.markdown or args.readme:
        from tools.bench._readme import readme_markdown, write_readme

        command = "python -m tools.bench " + " ".join(
            a if not a.startswith("/") else "DIR" for a in (argv if argv is not None else sys.argv[1:]))
        markdown = readme_markdown(results, command.strip())
        if args.markdown:
            args.markdown.write_text(markdown, encoding="utf-8")
            print(f"wrote {args.markdown}")
        if args.readme:
            write_readme(REPO / "README.md", markdown)
            print("wrote the README's benchmark tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
