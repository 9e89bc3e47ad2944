"""Cold import of a packaged bundle with and without its bytecode, on a read-only copy (FC's /code).

Used by ``python -m tools.bench`` (section ``bytecode``). The record_lifecycle bundle is packaged
twice by the real CLI for the target Python when an interpreter of that version exists (else for
this interpreter's version, and the result says so): once compiled, once ``--no-compile``. Both
are made read-only, as FC mounts them, so the source-only bundle compiles every module it
imports at every start and cannot cache the result. Each case is a fresh ``-I -B`` process.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.package import TARGET_PYTHON, Interpreter, find_interpreter, requirements_hash

REPO = Path(__file__).resolve().parent.parent.parent
FUNCTION = "record_lifecycle"
# What an invocation imports: the handler alone (an event it ignores), and the handler with the
# store engine and the ECS client (an event it records and snapshots).
CASES = {
    "import json (bare interpreter)": "import json",
    "ignorable: import index": "import index",
    "acting: index + store engine + ECS client": (
        "import index\n"
        "from shared.store import Store\n"
        "Store('sqlite://').ping()\n"
        "import alibabacloud_ecs20140526.client\n"
    ),
}


def _package(out: Path, interpreter: Interpreter, compiled: bool) -> Path:
    version = interpreter.version
    command = [
        sys.executable, "-m", "tools.package", FUNCTION, "--out", str(out), "--quiet",
        "--python-version", version,
        "--deps-cache", str(REPO / ".cache" / f"deps-{requirements_hash(REPO / 'requirements.txt', version)}"),
        "--pip-cache", str(REPO / ".cache" / "pip"),
    ]
    command += ["--target-interpreter", interpreter.path] if compiled else ["--no-compile"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"packaging failed: {done.stderr[-800:]}")
    return out / FUNCTION


@contextmanager
def _read_only(*trees: Path) -> Iterator[None]:
    def chmod(writable: bool) -> None:
        for tree in trees:
            for path in [tree, *tree.rglob("*")]:
                if path.is_symlink():
                    continue
                mode = path.stat().st_mode
                path.chmod(mode | 0o200 if writable else mode & ~0o222)

    chmod(False)
    try:
        yield
    finally:
        chmod(True)


def _median_wall(interpreter: Interpreter, bundle: Path, code: str, reps: int) -> float:
    bootstrap = f"import sys\nsys.path.insert(0, {str(bundle)!r})\n{code}"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(bundle.parent)}
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run([interpreter.path, "-I", "-B", "-c", bootstrap], cwd=bundle.parent, env=env,
                       check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_bytecode(reps: int, workdir: Path) -> dict[str, Any]:
    interpreter, note = find_interpreter(TARGET_PYTHON)
    if interpreter is None:  # measure the effect on this interpreter instead, and say so
        host = f"{sys.version_info.major}.{sys.version_info.minor}"
        interpreter = Interpreter(sys.executable, host, sys.implementation.cache_tag or "")
        note = f"python{TARGET_PYTHON} not found ({note}); measured with {host}"
    with_pyc = _package(workdir / "bytecode-on", interpreter, compiled=True)
    without = _package(workdir / "bytecode-off", interpreter, compiled=False)
    rows: list[dict[str, Any]] = []
    with _read_only(with_pyc, without):
        for case, code in CASES.items():
            source_s = _median_wall(interpreter, without, code, reps)
            pyc_s = _median_wall(interpreter, with_pyc, code, reps)
            rows.append({"case": case, "source_only_s": round(source_s, 4), "with_pyc_s": round(pyc_s, 4),
                         "speedup": round(source_s / pyc_s, 2)})
    bare = rows[0]["with_pyc_s"]
    for row in rows:
        row["source_vs_bare"] = round(row["source_only_s"] / bare, 1)
        row["pyc_vs_bare"] = round(row["with_pyc_s"] / bare, 1)
    return {"python": interpreter.version, "interpreter": interpreter.path, "note": note,
            "function": FUNCTION, "read_only": True, "reps": reps, "rows": rows}


def columns() -> Sequence[str]:
    return ("case", "source_only_s", "with_pyc_s", "speedup", "source_vs_bare", "pyc_vs_bare")
