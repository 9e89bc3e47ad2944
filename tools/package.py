"""Stage one deployable folder per function: ``build/<function>/`` = ``index.py`` + ``shared/`` + deps.

Each bundle is what Function Compute mounts at ``/code``: the function's module is top-level
(handler ``index.handler``), ``shared/`` sits next to it, and the runtime dependencies are installed
at the root for **python3.10 on Linux x86_64** (manylinux2014 wheels only, no Docker needed)::

    python -m tools.package                      # every function
    python -m tools.package auto_start sweep     # some of them
    python -m tools.package --no-deps            # code only (fast; e.g. deps in a layer)
    python -m tools.package --print-policy auto_start --log-project ecs-event-ops-123

Dependencies are installed once per ``requirements.txt`` content into a cache folder
(``<out>/.deps-<hash>``) and hard-linked (or copied) into each bundle. A bundle receives only the
distributions its function needs: :data:`NEEDS` names requirement groups per function, and the
packager follows each group's dependency closure, so shared transitive packages (the Tea core,
``alibabacloud_tea_openapi``, ``darabonba``) stay wherever any SDK needs them.

pip evaluates environment markers against the interpreter running it, not against
``--python-version``; a 3.11 machine therefore skips ``async-timeout`` (needed by aiohttp on 3.10
only). The packager re-checks every installed distribution's requirements with the *target's*
markers and installs whatever is missing, so the bundle is complete for python3.10.

Bytecode: FC's ``/code`` is read-only, so a bundle without ``__pycache__`` makes every cold start
compile every module it imports (2.3-3.3x the import time). The packager therefore compiles each
bundle (``index.py``, ``shared/``, the dependencies: those once, in the cache) with an interpreter
of the *target* version (a pyc is only valid for the version that wrote it), found as
``--target-interpreter`` or ``python3.10`` on PATH. Without one it says so (a warning, and
``bytecode: null`` in ``<out>/bundles.json``) and ships source only: run the packaging where
python3.10 exists (the ``python:3.10`` image, ``pyenv install 3.10``, FC's own build image).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = "functions"
SHARED_DIR = "shared"
REQUIREMENTS = "requirements.txt"

# Bump when the cache layout or the install flags change: old caches are then ignored.
CACHE_FORMAT = "1"

# The FC runtime the bundles target (python3.10, Linux x86_64, CPython).
TARGET_PYTHON = "3.10"
TARGET_PLATFORM = "manylinux2014_x86_64"
TARGET_IMPLEMENTATION = "cp"
# FC also offers python3.12 (``--python-version 3.12``); the tests package for the host's version
# to run the bundled SDK, because cp310 binary wheels do not load on another interpreter.
TARGET_MARKERS: Mapping[str, str] = {
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "platform_release": "",
    "platform_version": "",
    "sys_platform": "linux",
    "os_name": "posix",
}

# Every line of requirements.txt belongs to exactly one group (the packager refuses otherwise, so
# a new dependency forces a decision about which bundles get it). Names are PyPI names.
GROUPS: Mapping[str, tuple[str, ...]] = {
    # the Tea/OpenAPI core and the credential chain every SDK client is built on
    "cloud": ("alibabacloud_tea_openapi", "alibabacloud_credentials"),
    "ecs": ("alibabacloud_ecs20140526",),
    "slb": ("alibabacloud_slb20140515",),
    "alb": ("alibabacloud_alb20200616",),
    "nlb": ("alibabacloud_nlb20220430",),
    "actiontrail": ("alibabacloud_actiontrail20200706",),
    "cms": ("alibabacloud_cms20190101",),
    # the lifecycle store: SQLAlchemy Core + drivers (psycopg[binary] is the biggest part)
    "store": ("SQLAlchemy", "PyMySQL", "psycopg"),
    "retry": ("tenacity",),
}

# Which groups each function ships. An SDK group belongs to a function exactly when the function
# declares a RAM action of that service (checked by tests/test_package.py).
NEEDS: Mapping[str, frozenset[str]] = {
    "record_lifecycle": frozenset({"cloud", "ecs", "store", "retry"}),
    "auto_start": frozenset({"cloud", "ecs", "actiontrail", "store", "retry"}),
    "drain_spot": frozenset({"cloud", "ecs", "slb", "alb", "nlb", "store", "retry"}),
    "sweep": frozenset({"cloud", "ecs", "slb", "alb", "nlb", "actiontrail", "cms", "store",
                        "retry"}),
    # read-only HTTP API over the store: no cloud SDK at all
    "lifecycle_api": frozenset({"store"}),
}
# RAM action prefix -> the SDK group that calls that service.
SDK_GROUP_OF_SERVICE: Mapping[str, str] = {
    "ecs": "ecs", "slb": "slb", "alb": "alb", "nlb": "nlb", "actiontrail": "actiontrail",
    "cms": "cms",
}

LOG_STATEMENT_ACTION = "log:PostLogStoreLogs"

# Hash-based pycs that the import system uses without looking at the source (PEP 552). The
# default timestamp pycs hold the source's mtime and size and are discarded when they differ:
# the deploy zips the folder (DOS timestamps: 2-second steps, local time without a zone unless
# the zipper adds the extended field), so after FC unpacks it an odd-second or shifted mtime
# would silently invalidate every pyc and, on the read-only /code, compile every module again at
# each cold start. checked-hash would hash every source at each import. The bundle is immutable
# once deployed (source and pyc are built together), so nothing can make an unchecked pyc stale.
INVALIDATION_MODE = "unchecked-hash"

__all__ = [
    "GROUPS",
    "NEEDS",
    "BundleInfo",
    "Interpreter",
    "PackageError",
    "Practice",
    "build_bundle",
    "compile_tree",
    "discover_functions",
    "ensure_bytecode",
    "ensure_deps",
    "find_interpreter",
    "installed_distributions",
    "load_practice",
    "main",
    "policy_document",
    "target_closure",
    "unmet_requirements",
]


class PackageError(RuntimeError):
    """Packaging cannot go on; the message says what to fix."""


# --------------------------------------------------------------------------- practice metadata


@dataclass(frozen=True)
class Practice:
    """What a function module declares about itself (read by importing it; the modules are light)."""

    name: str
    event_types: tuple[str, ...]
    ram_actions: tuple[str, ...]
    schedule: str | None = None


def discover_functions(root: Path = REPO_ROOT) -> list[str]:
    """Names of the folders under ``functions/`` that contain an ``index.py``, sorted."""
    base = root / FUNCTIONS_DIR
    return sorted(p.parent.name for p in base.glob("*/index.py"))


def load_practice(name: str, root: Path = REPO_ROOT) -> Practice:
    """Import ``functions/<name>/index.py`` and read EVENT_TYPES, RAM_ACTIONS and SCHEDULE."""
    import importlib

    if not (root / FUNCTIONS_DIR / name / "index.py").is_file():
        raise PackageError(f"{FUNCTIONS_DIR}/{name}/index.py does not exist")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module(f"{FUNCTIONS_DIR}.{name}.index")
    event_types = tuple(getattr(module, "EVENT_TYPES", ()))
    ram_actions = tuple(getattr(module, "RAM_ACTIONS", ()))
    schedule = getattr(module, "SCHEDULE", None)
    return Practice(name, event_types, ram_actions, schedule if isinstance(schedule, str) else None)


def policy_document(
    practice: Practice, *, log_project: str | None = None, log_store: str = "functions"
) -> dict[str, Any]:
    """The least-privilege RAM policy of a practice: exactly its RAM_ACTIONS (+ writing its logs).

    The ECS, CLB and ActionTrail actions used here either have no resource-level control
    (Describe*, LookupEvents) or would need every instance anyway, so their Resource is ``*``.
    """
    statements: list[dict[str, Any]] = []
    if practice.ram_actions:
        statements.append(
            {"Effect": "Allow", "Action": list(practice.ram_actions), "Resource": "*"}
        )
    if log_project:
        statements.append(
            {
                "Effect": "Allow",
                "Action": [LOG_STATEMENT_ACTION],
                "Resource": f"acs:log:*:*:project/{log_project}/logstore/{log_store}",
            }
        )
    return {"Version": "1", "Statement": statements}


# --------------------------------------------------------------------------- requirements


def read_requirements(path: Path) -> list[Requirement]:
    """Requirement lines of a requirements file (comments, blanks and pip options skipped)."""
    result: list[Requirement] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            result.append(Requirement(line))
        except InvalidRequirement as error:
            raise PackageError(f"{path.name}:{number}: {error}") from None
    return result


def group_requirements(requirements: Iterable[Requirement]) -> dict[str, list[Requirement]]:
    """Split requirements into :data:`GROUPS`; every requirement must belong to exactly one."""
    owner: dict[str, str] = {}
    for group, names in GROUPS.items():
        for name in names:
            owner[canonicalize_name(name)] = group
    grouped: dict[str, list[Requirement]] = {group: [] for group in GROUPS}
    for requirement in requirements:
        found = owner.get(canonicalize_name(requirement.name))
        if found is None:
            raise PackageError(
                f"{requirement.name} is in {REQUIREMENTS} but in no group of tools/package.py "
                "GROUPS: add it to the group of the functions that need it"
            )
        grouped[found].append(requirement)
    return grouped


def target_markers(python: str = TARGET_PYTHON) -> dict[str, str]:
    """Environment-marker values of the FC runtime for ``python`` (e.g. ``"3.10"``)."""
    return dict(
        TARGET_MARKERS, python_version=python, python_full_version=f"{python}.0",
        implementation_version=f"{python}.0",
    )


def requirements_hash(path: Path, python: str = TARGET_PYTHON) -> str:
    digest = hashlib.sha256()
    digest.update(path.read_bytes())
    target = (CACHE_FORMAT, python, TARGET_PLATFORM, TARGET_IMPLEMENTATION)
    digest.update("|".join(target).encode())
    return digest.hexdigest()[:12]


# --------------------------------------------------------------------------- installed distributions


@dataclass(frozen=True)
class Distribution:
    """One installed distribution in a ``--target`` folder, read from its ``.dist-info``."""

    name: str  # canonical
    version: str
    requires: tuple[Requirement, ...]
    files: tuple[str, ...]  # RECORD paths that live inside the folder


def installed_distributions(folder: Path) -> dict[str, Distribution]:
    """Every ``*.dist-info`` in ``folder``, keyed by canonical name."""
    result: dict[str, Distribution] = {}
    for info in sorted(folder.glob("*.dist-info")):
        meta = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        name = canonicalize_name(meta["Name"] or info.name.split("-")[0])
        requires = tuple(Requirement(text) for text in meta.get_all("Requires-Dist") or [])
        files: list[str] = []
        record = info / "RECORD"
        if record.is_file():
            with record.open(newline="", encoding="utf-8") as stream:
                for row in csv.reader(stream):
                    if row and _ships(row[0]):
                        files.append(row[0])
        result[name] = Distribution(name, meta["Version"] or "0", requires, tuple(files))
    return result


def _ships(relative: str) -> bool:
    """Whether a RECORD path belongs in a bundle (not scripts, headers or bytecode)."""
    parts = Path(relative).parts
    if not parts or relative.startswith(("/", "..")) or parts[0] in ("bin", "include"):
        return False
    return "__pycache__" not in parts and not relative.endswith(".pyc")


def _marker_ok(requirement: Requirement, extras: Iterable[str], python: str) -> bool:
    if requirement.marker is None:
        return True
    environments = [dict(target_markers(python), extra=extra) for extra in (*extras, "")]
    try:
        return any(requirement.marker.evaluate(env) for env in environments)
    except UndefinedEnvironmentName:
        return True


def _walk(
    dists: Mapping[str, Distribution], roots: Iterable[Requirement], python: str
) -> Iterator[tuple[Requirement, Distribution | None]]:
    """Breadth-first over the requirements reachable from ``roots`` under the target's markers."""
    queue: list[tuple[Requirement, tuple[str, ...]]] = [(r, ()) for r in roots]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while queue:
        requirement, parent_extras = queue.pop(0)
        if not _marker_ok(requirement, parent_extras, python):
            continue
        name = canonicalize_name(requirement.name)
        extras = tuple(sorted(requirement.extras))
        dist = dists.get(name)
        yield requirement, dist
        if dist is None or (name, extras) in seen:
            continue
        seen.add((name, extras))
        queue.extend((child, extras) for child in dist.requires)


def target_closure(
    dists: Mapping[str, Distribution], roots: Iterable[Requirement], python: str = TARGET_PYTHON
) -> set[str]:
    """Canonical names of the installed distributions needed by ``roots`` on the target."""
    return {dist.name for _, dist in _walk(dists, roots, python) if dist is not None}


def unmet_requirements(
    dists: Mapping[str, Distribution], roots: Iterable[Requirement], python: str = TARGET_PYTHON
) -> list[Requirement]:
    """Requirements (evaluated for the target) that no installed distribution satisfies."""
    unmet: dict[str, Requirement] = {}
    for requirement, dist in _walk(dists, roots, python):
        if dist is not None:
            try:
                version = Version(dist.version)
            except InvalidVersion:
                continue
            if requirement.specifier.contains(version, prereleases=True):
                continue
        key = str(requirement)
        unmet.setdefault(key, requirement)
    return list(unmet.values())


# --------------------------------------------------------------------------- installing


def _pip_install(
    target: Path, args: Sequence[str], pip_cache: Path | None, quiet: bool, python: str
) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-compile",
        "--target", str(target),
        "--python-version", python, "--implementation", TARGET_IMPLEMENTATION,
        "--platform", TARGET_PLATFORM, "--only-binary=:all:",
    ]
    if pip_cache is not None:
        command += ["--cache-dir", str(pip_cache)]
    if quiet:
        command.append("--quiet")
    command += list(args)
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise PackageError(f"pip install failed (exit {completed.returncode}): {' '.join(args)}")


def ensure_deps(
    requirements_file: Path,
    cache_dir: Path,
    *,
    pip_cache: Path | None = None,
    quiet: bool = False,
    say: Any = print,
    python: str = TARGET_PYTHON,
) -> Path:
    """Install the requirements for the target once into ``cache_dir``; reuse it afterwards."""
    if (cache_dir / ".complete").is_file():
        say(f"deps: cached in {cache_dir}")
        return cache_dir
    roots = read_requirements(requirements_file)
    group_requirements(roots)  # fail early on an unassigned requirement
    staging = cache_dir.with_name(cache_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = time.monotonic()
    say(f"deps: pip install -r {requirements_file.name} for python{python} "
        f"{TARGET_PLATFORM} into {cache_dir} ...")
    _pip_install(staging, ["-r", str(requirements_file)], pip_cache, quiet, python)
    for _round in range(5):
        unmet = unmet_requirements(installed_distributions(staging), roots, python)
        if not unmet:
            break
        texts = sorted(f"{r.name}{r.specifier}" for r in unmet)
        say(f"deps: pip skipped target-only requirements (markers for {python}): "
            f"{', '.join(texts)}; installing them")
        _pip_install(staging, ["--upgrade", *texts], pip_cache, quiet, python)
    else:
        raise PackageError(f"requirements still unmet for python{python}: {unmet}")
    for leftover in ("bin", "include"):
        shutil.rmtree(staging / leftover, ignore_errors=True)
    (staging / ".complete").write_text(
        json.dumps({"requirements": requirements_file.read_text(encoding="utf-8")}),
        encoding="utf-8",
    )
    shutil.rmtree(cache_dir, ignore_errors=True)
    staging.rename(cache_dir)
    say(f"deps: installed in {time.monotonic() - started:.1f} s")
    return cache_dir


# --------------------------------------------------------------------------- bytecode


@dataclass(frozen=True)
class Interpreter:
    """A Python that writes pycs for the target runtime."""

    path: str
    version: str  # "3.10"
    cache_tag: str  # "cpython-310": the pyc file names it writes


def _probe(path: str) -> Interpreter | None:
    code = "import sys; print('%d.%d' % sys.version_info[:2], sys.implementation.cache_tag)"
    try:
        completed = subprocess.run(
            [path, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return None
    fields = completed.stdout.split()
    if completed.returncode != 0 or len(fields) != 2:  # e.g. a pyenv shim of no installed version
        return None
    return Interpreter(path, fields[0], fields[1])


def find_interpreter(python: str, explicit: str | None = None) -> tuple[Interpreter | None, str]:
    """The interpreter compiling for ``python`` (e.g. ``"3.10"``), and what was found or missed.

    ``explicit`` (``--target-interpreter``) must run and be of that version; otherwise the
    first that runs as that version of: ``python<version>`` on PATH, then pyenv's installed
    ``<version>.*`` (a pyenv shim on PATH fails when that version is not selected).
    """
    if explicit is not None:
        found = _probe(explicit)
        if found is None:
            raise PackageError(f"--target-interpreter {explicit} does not run")
        if found.version != python:
            raise PackageError(
                f"--target-interpreter {explicit} is Python {found.version}, the target is {python}"
            )
        return found, f"{found.path} (--target-interpreter)"
    name = f"python{python}"
    candidates: list[tuple[str, str]] = []
    on_path = shutil.which(name)
    if on_path is not None:
        candidates.append((on_path, "PATH"))
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for version_dir in sorted((pyenv_root / "versions").glob(f"{python}.*"), reverse=True):
        candidates.append((str(version_dir / "bin" / name), "pyenv"))
    for path, origin in candidates:
        found = _probe(path)
        if found is not None and found.version == python:
            return found, f"{path} ({origin})"
    tried = ", ".join(path for path, _ in candidates) or "nothing"
    return None, f"no Python {python} found (tried {tried}) and no --target-interpreter"


def compile_tree(interpreter: Interpreter, paths: Sequence[Path]) -> list[str]:
    """Write ``__pycache__/*.<tag>.pyc`` next to every module under ``paths``; returns the lines
    compileall printed about files it could not compile (those are then compiled, or fail, at
    import exactly as without bytecode)."""
    # PYTHONPYCACHEPREFIX would put the pycs outside the bundle, where FC never looks.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    completed = subprocess.run(
        [interpreter.path, "-m", "compileall", "-q", "-j", "0",
         "--invalidation-mode", INVALIDATION_MODE, *map(str, paths)],
        capture_output=True, text=True, env=env, timeout=1800, check=False,
    )
    output = completed.stdout.splitlines() + completed.stderr.splitlines()
    problems = [line for line in output if line.strip()]
    if completed.returncode != 0 and not problems:
        problems = [f"compileall exited {completed.returncode}"]
    return problems


def ensure_bytecode(deps_dir: Path, interpreter: Interpreter, say: Any = print) -> None:
    """Compile the dependency cache once per interpreter version (each bundle links the pycs)."""
    marker = deps_dir / f".bytecode-{interpreter.cache_tag}-{INVALIDATION_MODE}"
    if marker.is_file():
        return
    started = time.monotonic()
    problems = compile_tree(interpreter, [deps_dir])
    for line in problems[:10]:
        say(f"deps: bytecode: {line}")
    marker.write_text(
        json.dumps({"interpreter": interpreter.path, "problems": problems}), encoding="utf-8"
    )
    say(f"deps: compiled for {interpreter.cache_tag} in {time.monotonic() - started:.1f} s")


def _pyc_of(relative: str, cache_tag: str) -> str | None:
    """The RECORD-relative path of a module's pyc (``a/__pycache__/b.<tag>.pyc``)."""
    path = Path(relative)
    if path.suffix != ".py":
        return None
    return str(path.parent / "__pycache__" / f"{path.stem}.{cache_tag}.pyc")


# --------------------------------------------------------------------------- bundles


@dataclass
class BundleInfo:
    name: str
    path: Path
    files: int = 0
    size: int = 0
    distributions: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    bytecode: str | None = None  # the pycs' cache tag (cpython-310); None: source only
    pyc: int = 0

    @property
    def megabytes(self) -> float:
        return self.size / 1_000_000


def _place(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _ignore_bytecode(_directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]


def build_bundle(
    name: str,
    out: Path,
    *,
    root: Path = REPO_ROOT,
    deps_dir: Path | None = None,
    requirements_file: Path | None = None,
    python: str = TARGET_PYTHON,
    interpreter: Interpreter | None = None,
) -> BundleInfo:
    """(Re)create ``out/<name>/``: index.py, shared/, and the distributions the function needs;
    with ``interpreter``, the pycs of all of them (the dependencies' from ``deps_dir``, compiled
    there by :func:`ensure_bytecode`)."""
    source = root / FUNCTIONS_DIR / name / "index.py"
    if not source.is_file():
        raise PackageError(f"{FUNCTIONS_DIR}/{name}/index.py does not exist")
    bundle = out / name
    shutil.rmtree(bundle, ignore_errors=True)
    bundle.mkdir(parents=True)
    shutil.copy2(source, bundle / "index.py")
    shutil.copytree(root / SHARED_DIR, bundle / SHARED_DIR, ignore=_ignore_bytecode)
    info = BundleInfo(name, bundle)
    if deps_dir is not None:
        grouped = group_requirements(read_requirements(requirements_file or root / REQUIREMENTS))
        info.groups = sorted(NEEDS.get(name, frozenset(GROUPS)))
        roots = [r for group in info.groups for r in grouped[group]]
        dists = installed_distributions(deps_dir)
        needed = target_closure(dists, roots, python)
        for dist_name in sorted(needed):
            for relative in dists[dist_name].files:
                path = deps_dir / relative
                if path.is_file():
                    _place(path, bundle / relative)
                pyc = _pyc_of(relative, interpreter.cache_tag) if interpreter else None
                if pyc is not None and (deps_dir / pyc).is_file():
                    _place(deps_dir / pyc, bundle / pyc)
        info.distributions = sorted(needed)
    if interpreter is not None:
        problems = compile_tree(interpreter, [bundle / "index.py", bundle / SHARED_DIR])
        if problems:
            raise PackageError(f"{name}: the project's own code does not compile: {problems[:5]}")
        info.bytecode = interpreter.cache_tag
    for path in bundle.rglob("*"):
        if path.is_file():
            info.files += 1
            info.size += path.stat().st_size
            info.pyc += int(path.suffix == ".pyc")
    return info


def _table(infos: Sequence[BundleInfo]) -> str:
    rows = [("function", "MB", "files", "pyc", "groups")]
    rows += [
        (i.name, f"{i.megabytes:.1f}", str(i.files), str(i.pyc), ",".join(i.groups) or "-")
        for i in infos
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(5)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), *(row[c].rjust(widths[c]) for c in (1, 2, 3)), row[4]]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _write_summary(
    path: Path, infos: Sequence[BundleInfo], interpreter: Interpreter | None, note: str
) -> None:
    """``<out>/bundles.json``: what was staged, and whether the bundles carry bytecode."""
    summary = {
        "bytecode": None if interpreter is None else {
            "cache_tag": interpreter.cache_tag, "interpreter": interpreter.path,
            "invalidation_mode": INVALIDATION_MODE,
        },
        "bytecode_note": note,
        "bundles": [
            {"name": i.name, "files": i.files, "pyc": i.pyc, "bytes": i.size,
             "bytecode": i.bytecode, "groups": i.groups, "distributions": i.distributions}
            for i in infos
        ],
    }
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.package",
        description=(
            "Stage Function Compute code folders: <out>/<function>/ with index.py, shared/ and "
            f"the runtime dependencies for python{TARGET_PYTHON} {TARGET_PLATFORM}, installed "
            "once into <out>/.deps-<hash> and linked into each bundle. s.yaml's pre-deploy "
            "action runs this for each function."
        ),
        epilog=(
            "Per-function dependency groups (tools/package.py NEEDS): "
            + "; ".join(f"{fn}: {','.join(sorted(g))}" for fn, g in NEEDS.items())
        ),
    )
    parser.add_argument(
        "functions", nargs="*", metavar="FUNCTION",
        help="function folder names under functions/ (default: all of them)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build",
                        help="output folder (default: build/)")
    parser.add_argument("--no-deps", action="store_true",
                        help="copy index.py and shared/ only; install no dependencies")
    parser.add_argument("--clean", action="store_true",
                        help="delete the output folder first, dependency caches included")
    parser.add_argument("--deps-cache", type=Path, default=None,
                        help="dependency cache folder (default: <out>/.deps-<hash of requirements>)")
    parser.add_argument("--pip-cache", type=Path, default=REPO_ROOT / ".cache" / "pip",
                        help="pip download cache (default: .cache/pip)")
    parser.add_argument("--requirements", type=Path, default=REPO_ROOT / REQUIREMENTS,
                        help="runtime requirements file (default: requirements.txt)")
    parser.add_argument("--python-version", default=TARGET_PYTHON, metavar="X.Y",
                        help=f"FC Python runtime to install wheels for (default: {TARGET_PYTHON})")
    parser.add_argument(
        "--target-interpreter", metavar="PATH", default=None,
        help="the Python of the target version that compiles the bundles' bytecode "
             "(default: python<--python-version> on PATH; none found: source only, with a warning)",
    )
    parser.add_argument("--no-compile", action="store_true",
                        help="ship source only (FC then compiles every module at each cold start)")
    parser.add_argument("--quiet", action="store_true", help="less pip output")
    parser.add_argument(
        "--print-policy", metavar="FUNCTION",
        help="print the function's least-privilege RAM policy document (JSON) and exit",
    )
    parser.add_argument("--log-project", default=None,
                        help="with --print-policy: also allow writing logs to this SLS project")
    parser.add_argument("--log-store", default="functions",
                        help="with --print-policy: the logstore (default: functions)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.print_policy:
            practice = load_practice(args.print_policy)
            document = policy_document(
                practice, log_project=args.log_project, log_store=args.log_store
            )
            print(json.dumps(document, indent=2))
            return 0
        return _package(args)
    except PackageError as error:
        print(f"package: error: {error}", file=sys.stderr)
        return 2


def _package(args: argparse.Namespace) -> int:
    available = discover_functions()
    names: list[str] = args.functions or available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise PackageError(
            f"unknown function(s) {', '.join(unknown)}; available: {', '.join(available)}"
        )
    out: Path = args.out.resolve()
    if args.clean and out.exists():
        print(f"clean: removing {out}")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    interpreter: Interpreter | None = None
    bytecode_note = "--no-compile"
    if not args.no_compile:
        interpreter, bytecode_note = find_interpreter(args.python_version, args.target_interpreter)
        if interpreter is None:
            print(
                f"package: warning: no bytecode: {bytecode_note}. The bundles ship source only, "
                f"so FC compiles every module at each cold start (its /code is read-only). Package "
                f"where python{args.python_version} exists (python:{args.python_version} image, "
                f"pyenv install {args.python_version}) or pass --target-interpreter.",
                file=sys.stderr,
            )
        else:
            print(f"bytecode: {interpreter.cache_tag} ({INVALIDATION_MODE}) by {bytecode_note}")
    deps_dir: Path | None = None
    if not args.no_deps:
        requirements: Path = args.requirements.resolve()
        python: str = args.python_version
        cache = args.deps_cache or out / f".deps-{requirements_hash(requirements, python)}"
        deps_dir = ensure_deps(
            requirements, cache.resolve(), pip_cache=args.pip_cache, quiet=args.quiet,
            python=python,
        )
        if interpreter is not None:
            ensure_bytecode(deps_dir, interpreter)
    infos: list[BundleInfo] = []
    for name in names:
        if name not in NEEDS and deps_dir is not None:
            print(f"{name}: not in tools/package.py NEEDS; shipping every dependency group")
        print(f"{name}: staging {out / name} ...", flush=True)
        infos.append(
            build_bundle(
                name, out, deps_dir=deps_dir, requirements_file=args.requirements,
                python=args.python_version, interpreter=interpreter,
            )
        )
    _write_summary(out / "bundles.json", infos, interpreter, bytecode_note)
    print()
    print(_table(infos))
    total = sum(i.size for i in infos) / 1_000_000
    print(f"\n{len(infos)} bundle(s), {total:.1f} MB, in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
