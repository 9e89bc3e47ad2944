"""tools.package stages complete, minimal bundles that import with nothing but themselves.

The bundles are built once per session by the real CLI into tmp (dependencies cached under
``.cache/``: the first run downloads ~40 MB of wheels, later runs reuse them).

Limitation: this machine runs Python 3.11 while the bundles carry cp310 wheels. Pure-Python
packages import; compiled ones fall back (SQLAlchemy, aiohttp, yarl, multidict have pure-Python
paths) or are simply not imported by the code under test (psycopg_binary, greenlet, cffi).
The closure check below is what proves the bundles are complete for python3.10.

Bytecode: the 3.10 bundles are compiled by python3.10 when this machine has one (pyenv here);
that the pycs are *used* on a read-only bundle is shown on the bundle built for this interpreter.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import EVENTS, FLEETS
from tools.emulator import Emulator, load_fleet
from tools.package import (
    GROUPS,
    NEEDS,
    SDK_GROUP_OF_SERVICE,
    discover_functions,
    group_requirements,
    installed_distributions,
    load_practice,
    read_requirements,
    requirements_hash,
    target_closure,
    unmet_requirements,
)

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements.txt"
WEB1 = "i-bp1aaaaaaaaaaaaaaaa1"  # Running in fleets/basic.yaml

# Top-level import names of the heavy packages, and the bundles that must not carry them.
ABSENT = {
    "lifecycle_api": ("Tea", "darabonba", "alibabacloud_tea_openapi", "alibabacloud_credentials",
                      "alibabacloud_ecs20140526", "alibabacloud_slb20140515",
                      "alibabacloud_actiontrail20200706", "aiohttp", "cryptography", "tenacity"),
    "record_lifecycle": ("alibabacloud_slb20140515", "alibabacloud_actiontrail20200706"),
    "auto_start": ("alibabacloud_slb20140515",),
    "drain_spot": ("alibabacloud_actiontrail20200706",),
    "sweep": (),  # the sweep does both practices' work: it needs every SDK
}
PRESENT = {
    "lifecycle_api": ("sqlalchemy", "pymysql", "psycopg", "psycopg_binary"),
    "record_lifecycle": ("alibabacloud_ecs20140526", "alibabacloud_tea_openapi", "darabonba", "Tea",
                         "sqlalchemy", "psycopg_binary", "tenacity"),
    "auto_start": ("alibabacloud_ecs20140526", "alibabacloud_actiontrail20200706", "Tea",
                   "sqlalchemy", "tenacity"),
    "drain_spot": ("alibabacloud_slb20140515", "alibabacloud_ecs20140526", "alibabacloud_tea_openapi",
                   "sqlalchemy", "tenacity"),
    "sweep": ("alibabacloud_ecs20140526", "alibabacloud_slb20140515",
              "alibabacloud_actiontrail20200706", "sqlalchemy", "tenacity"),
}


@dataclass(frozen=True)
class Built:
    out: Path
    functions: tuple[str, ...]
    output: str
    seconds: float


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Every function packaged once by the real CLI (deps installed once, cached in .cache/)."""
    out = tmp_path_factory.mktemp("package") / "build"
    deps_cache = REPO / ".cache" / f"deps-{requirements_hash(REQUIREMENTS)}"
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "tools.package", "--out", str(out), "--quiet",
         "--deps-cache", str(deps_cache), "--pip-cache", str(REPO / ".cache" / "pip")],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )
    seconds = time.monotonic() - started
    if completed.returncode != 0 and "pip install failed" in completed.stderr:
        pytest.skip(f"cannot install the runtime requirements here: {completed.stderr[-400:]}")
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return Built(out, tuple(discover_functions(REPO)), completed.stdout, seconds)


def bundle_run(bundle: Path, code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``code`` in a fresh isolated interpreter whose only non-stdlib path is ``bundle``.

    ``-I`` ignores PYTHONPATH, the user site and the cwd; the bootstrap also drops the
    interpreter's own site-packages, then fails if any imported module came from elsewhere.
    """
    stdlib = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
    bootstrap = f"""
import json, sys
bundle = {str(bundle)!r}
sys.path[:] = [bundle] + [p for p in sys.path if 'site-packages' not in p and 'dist-packages' not in p]
result = {{}}
{code}
stdlib = {sorted(stdlib)!r}
foreign = sorted(
    m.__name__ for m in list(sys.modules.values())
    if getattr(m, '__file__', None) and not m.__file__.startswith(bundle)
    and not any(m.__file__.startswith(s) for s in stdlib)
)
result['foreign_modules'] = foreign
print(json.dumps(result, default=str))
"""
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": str(bundle.parent)}
    environ.update(env or {})
    completed = subprocess.run(
        [sys.executable, "-I", "-c", bootstrap], cwd=bundle.parent, env=environ,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["foreign_modules"] == [], "a module was imported from outside the bundle"
    return result


def top_level(bundle: Path) -> set[str]:
    return {p.name.removesuffix(".py") for p in bundle.iterdir()}


def pyc_flags(path: Path) -> int:
    """The PEP 552 flags word of a pyc: 0 timestamp, 0b01 unchecked hash, 0b11 checked hash."""
    return int.from_bytes(path.read_bytes()[4:8], "little")


# --------------------------------------------------------------------------- declarations


def test_needs_follow_the_declared_ram_actions() -> None:
    """GIVEN each function's RAM_ACTIONS WHEN compared with NEEDS THEN SDK groups match services."""
    for name in discover_functions(REPO):
        services = {action.split(":", 1)[0] for action in load_practice(name, REPO).ram_actions}
        sdk_groups = {SDK_GROUP_OF_SERVICE[s] for s in services}
        needs = NEEDS[name]
        assert needs & set(SDK_GROUP_OF_SERVICE.values()) == sdk_groups, name
        assert ("cloud" in needs) == bool(sdk_groups), name
        assert needs <= set(GROUPS), name
    assert set(NEEDS) == {"record_lifecycle", "auto_start", "drain_spot", "sweep", "lifecycle_api"}


def test_every_requirement_is_in_exactly_one_group() -> None:
    """GIVEN requirements.txt WHEN grouped THEN each line lands in one group, none is left over."""
    grouped = group_requirements(read_requirements(REQUIREMENTS))
    names = [r.name for reqs in grouped.values() for r in reqs]
    assert sorted(names) == sorted(r.name for r in read_requirements(REQUIREMENTS))
    assert len(names) == len(set(names))


def test_unknown_function_is_refused() -> None:
    """GIVEN a function name that does not exist WHEN packaging THEN exit 2 with the list."""
    completed = subprocess.run(
        [sys.executable, "-m", "tools.package", "no_such_function", "--no-deps", "--out", "/nonexistent"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 2
    assert "unknown function(s) no_such_function; available: " in completed.stderr


def test_print_policy_is_exactly_the_declared_actions() -> None:
    """GIVEN --print-policy WHEN asked for auto_start THEN its RAM_ACTIONS plus its logstore."""
    completed = subprocess.run(
        [sys.executable, "-m", "tools.package", "--print-policy", "auto_start", "--log-project", "p1"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert document["Statement"][0]["Action"] == list(load_practice("auto_start", REPO).ram_actions)
    assert document["Statement"][1] == {
        "Effect": "Allow", "Action": ["log:PostLogStoreLogs"],
        "Resource": "acs:log:*:*:project/p1/logstore/functions",
    }


def test_no_deps_bundle_is_code_only(tmp_path: Path) -> None:
    """GIVEN --no-deps --no-compile WHEN packaging sweep THEN only index.py and shared/."""
    completed = subprocess.run(
        [sys.executable, "-m", "tools.package", "sweep", "--no-deps", "--no-compile", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert top_level(tmp_path / "sweep") == {"index", "shared"}
    assert not list((tmp_path / "sweep").rglob("__pycache__"))
    row = next(line.split() for line in completed.stdout.splitlines() if line.startswith("sweep "))
    shared = [p for p in (REPO / "shared").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert row[2] == str(1 + len(shared))  # files: index + shared/
    assert row[3] == "0"  # pyc
    summary = json.loads((tmp_path / "bundles.json").read_text(encoding="utf-8"))
    assert (summary["bytecode"], summary["bytecode_note"]) == (None, "--no-compile")


def test_code_is_compiled_by_the_target_interpreter(tmp_path: Path) -> None:
    """GIVEN --target-interpreter of the target version WHEN packaging THEN every module of
    index.py and shared/ has its unchecked-hash pyc, and bundles.json says so."""
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    completed = subprocess.run(
        [sys.executable, "-m", "tools.package", "sweep", "--no-deps", "--out", str(tmp_path),
         "--python-version", host, "--target-interpreter", sys.executable],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    bundle = tmp_path / "sweep"
    tag = sys.implementation.cache_tag
    sources = sorted(p.relative_to(bundle) for p in bundle.rglob("*.py"))
    pycs = sorted(p.relative_to(bundle) for p in bundle.rglob("*.pyc"))
    assert pycs == sorted(s.parent / "__pycache__" / f"{s.stem}.{tag}.pyc" for s in sources)
    assert {pyc_flags(bundle / p) for p in pycs} == {0b01}  # hash-based, source never checked
    summary = json.loads((tmp_path / "bundles.json").read_text(encoding="utf-8"))
    assert summary["bytecode"] == {
        "cache_tag": tag, "interpreter": sys.executable, "invalidation_mode": "unchecked-hash",
    }
    assert summary["bundles"][0]["pyc"] == len(sources)


def test_wrong_target_interpreter_is_refused(tmp_path: Path) -> None:
    """GIVEN --target-interpreter of another version WHEN packaging for 3.10 THEN exit 2."""
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    if host == "3.10":
        pytest.skip("this interpreter is the target version")
    completed = subprocess.run(
        [sys.executable, "-m", "tools.package", "sweep", "--no-deps", "--out", str(tmp_path),
         "--target-interpreter", sys.executable],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 2
    assert f"is Python {host}, the target is 3.10" in completed.stderr


def test_without_a_target_interpreter_the_bundle_is_source_only_and_says_so(tmp_path: Path) -> None:
    """GIVEN no python3.10 on PATH nor in pyenv WHEN packaging THEN a warning naming the way out,
    ``bytecode: null`` in bundles.json, and a working source-only bundle (exit 0)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty), "PYENV_ROOT": str(empty)}
    completed = subprocess.run(
        [sys.executable, "-m", "tools.package", "sweep", "--no-deps", "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False, env=env,
    )
    assert completed.returncode == 0, completed.stderr
    assert "package: warning: no bytecode: no Python 3.10 found (tried nothing)" in completed.stderr
    assert "pyenv install 3.10" in completed.stderr
    summary = json.loads((tmp_path / "out" / "bundles.json").read_text(encoding="utf-8"))
    assert summary["bytecode"] is None
    assert summary["bundles"][0]["bytecode"] is None
    assert not list((tmp_path / "out" / "sweep").rglob("*.pyc"))


# --------------------------------------------------------------------------- the bundles


@pytest.mark.slow
def test_bundles_hold_code_and_shared(built: Built) -> None:
    """GIVEN the staged bundles WHEN inspected THEN index.py and shared/ are the repo's."""
    for name in built.functions:
        bundle = built.out / name
        assert filecmp.cmp(bundle / "index.py", REPO / "functions" / name / "index.py", shallow=False)
        shared = sorted(p.name for p in (REPO / "shared").glob("*.py"))
        assert sorted(p.name for p in (bundle / "shared").glob("*.py")) == shared
        assert not (bundle / "bin").exists()
        assert not (bundle / "include").exists()
    assert "function" in built.output
    assert "MB" in built.output


@pytest.mark.slow
def test_python310_bundles_hold_cpython310_bytecode_of_every_module(built: Built) -> None:
    """GIVEN python3.10 on this machine WHEN every function is packaged THEN each module of each
    bundle (code, shared/, dependencies) has an unchecked-hash cpython-310 pyc with 3.10's magic
    number, and nothing else is compiled."""
    summary = json.loads((built.out / "bundles.json").read_text(encoding="utf-8"))
    if summary["bytecode"] is None:
        pytest.skip(f"no python3.10 on this machine: {summary['bytecode_note']}")
    interpreter = summary["bytecode"]["interpreter"]
    magic = subprocess.run(
        [interpreter, "-I", "-c", "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert summary["bytecode"]["cache_tag"] == "cpython-310"
    for name in built.functions:
        bundle = built.out / name
        sources = {p.relative_to(bundle) for p in bundle.rglob("*.py")}
        pycs = {p.relative_to(bundle) for p in bundle.rglob("*.pyc")}
        assert pycs == {s.parent / "__pycache__" / f"{s.stem}.cpython-310.pyc" for s in sources}, name
        for pyc in (Path("__pycache__/index.cpython-310.pyc"), Path("shared/__pycache__/store.cpython-310.pyc"),
                    Path("sqlalchemy/__pycache__/__init__.cpython-310.pyc")):
            head = (bundle / pyc).read_bytes()[:8]
            assert (head[:4].hex(), pyc_flags(bundle / pyc)) == (magic, 0b01), (name, pyc)


@pytest.mark.slow
def test_heavy_packages_only_where_needed(built: Built) -> None:
    """GIVEN NEEDS WHEN bundles are staged THEN unneeded SDKs are absent and needed ones present."""
    for name in built.functions:
        names = top_level(built.out / name)
        assert not names & set(ABSENT[name]), (name, names & set(ABSENT[name]))
        assert set(PRESENT[name]) <= names, (name, set(PRESENT[name]) - names)


@pytest.mark.slow
def test_bundles_are_complete_for_python310(built: Built) -> None:
    """GIVEN each bundle WHEN its requirements are evaluated with python3.10 markers THEN all met.

    pip on 3.11 skips ``async-timeout`` (aiohttp needs it below 3.11): it must be there anyway.
    """
    grouped = group_requirements(read_requirements(REQUIREMENTS))
    for name in built.functions:
        dists = installed_distributions(built.out / name)
        roots = [r for group in sorted(NEEDS[name]) for r in grouped[group]]
        assert unmet_requirements(dists, roots) == [], name
        assert set(dists) == target_closure(dists, roots), f"{name} carries unneeded distributions"
        if "aiohttp" in dists:
            assert "async-timeout" in dists, name


@pytest.mark.slow
def test_each_handler_imports_from_its_bundle_alone(built: Built) -> None:
    """GIVEN a fresh isolated interpreter WHEN importing index THEN the declarations load."""
    for name in built.functions:
        result = bundle_run(
            built.out / name,
            "import index\n"
            "result['event_types'] = list(index.EVENT_TYPES)\n"
            "result['ram_actions'] = list(index.RAM_ACTIONS)\n"
            "result['handler'] = callable(index.handler)\n",
        )
        declared = load_practice(name, REPO)
        assert result["event_types"] == list(declared.event_types), name
        assert result["ram_actions"] == list(declared.ram_actions), name
        assert result["handler"] is True


RELEASED_AND_FOREIGN = json.dumps([
    {"ver": "1.0", "id": "bundle-smoke-0001", "product": "ECS", "name": "Instance:StateChange",
     "resourceId": "acs:ecs:cn-hangzhou:1234567890123456:instance/i-bp1bundlesmoke00001",
     "userId": "1234567890123456", "regionId": "cn-hangzhou", "eventTime": "20261123T120000.000+0800",
     "content": {"resourceId": "i-bp1bundlesmoke00001", "resourceType": "ALIYUN::ECS::Instance",
                 "state": "Deleted"}},
    {"foo": 1},
]).encode()


@pytest.mark.slow
def test_record_lifecycle_runs_from_its_bundle_with_sqlite_default(built: Built) -> None:
    """GIVEN the python3.10 record_lifecycle bundle alone and no DB URL WHEN a batch with a release
    and a foreign element arrives THEN the release is recorded in the embedded SQLite store (a
    released instance needs no snapshot: no cloud call) and the element is reported.

    A real event for a new instance takes a snapshot through the Tea SDK, whose cp310
    ``_cffi_backend`` cannot load on this 3.11 interpreter: that path is exercised by
    test_bundled_sdk_snapshots_through_the_emulator on a bundle built for the host's Python.
    """
    bundle = built.out / "record_lifecycle"
    code = (
        "import types, index\n"
        "ctx = types.SimpleNamespace(request_id='r-1')\n"
        f"result['out'] = index.handler({RELEASED_AND_FOREIGN!r}, ctx)\n"
        "import sqlalchemy\n"
        "result['sqlalchemy'] = sqlalchemy.__file__\n"
    )
    result = bundle_run(bundle, code)
    out = result["out"]
    assert isinstance(out, dict)
    assert (out["recorded"], out["duplicates"], len(out["bad"])) == (1, 0, 1)
    assert out["snapshots"] == {"taken": [], "failed": []}
    assert str(result["sqlalchemy"]).startswith(str(bundle))
    # the default store outside FC: .data/ next to shared/, i.e. inside the bundle
    assert (bundle / ".data" / "ecs-event-ops.sqlite3").is_file()


@pytest.fixture(scope="session")
def host_bundle(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """record_lifecycle packaged for this interpreter's Python, so its binary wheels load here."""
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    if host == "3.10":
        return built.out / "record_lifecycle"
    out = tmp_path_factory.mktemp("package-host") / "build"
    completed = subprocess.run(
        [sys.executable, "-m", "tools.package", "record_lifecycle", "--out", str(out), "--quiet",
         "--python-version", host, "--target-interpreter", sys.executable,
         "--deps-cache", str(REPO / ".cache" / f"deps-{requirements_hash(REQUIREMENTS, host)}"),
         "--pip-cache", str(REPO / ".cache" / "pip")],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return out / "record_lifecycle"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.01) as emu:
        yield emu


@pytest.mark.slow
def test_bundled_sdk_snapshots_through_the_emulator(
    host_bundle: Path, emulator: Emulator, tmp_path: Path
) -> None:
    """GIVEN a record_lifecycle bundle alone WHEN a Running event arrives twice THEN it is
    recorded once and the instance snapshotted through the bundled Tea SDK (emulator).

    Packaged for the host's Python: the cp310 ``_cffi_backend`` that cryptography needs does not
    load on another interpreter, which is the only difference from the deployed bundle.
    """
    event = json.loads((EVENTS / "eventbridge" / "state_running.json").read_text(encoding="utf-8"))
    event["data"]["resourceId"] = WEB1
    event["subject"] = f"acs:ecs:cn-hangzhou:1234567890123456:instance/{WEB1}"
    cred = emulator.credentials[0]
    env = {
        "ECS_EVENT_OPS_DB_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
        "ECS_EVENT_OPS_CLOUD_URL": emulator.url,
        "ECS_EVENT_OPS_REGION": "cn-hangzhou",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": cred["access_key_id"],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": cred["access_key_secret"],
    }
    code = (
        "import types, index\n"
        f"body = {json.dumps(event).encode()!r}\n"
        "ctx = types.SimpleNamespace(request_id='r-1')\n"
        "result['first'] = index.handler(body, ctx)\n"
        "result['second'] = index.handler(body, ctx)\n"
        "import Tea, alibabacloud_ecs20140526\n"
        "result['from'] = [Tea.__file__, alibabacloud_ecs20140526.__file__]\n"
    )
    result = bundle_run(host_bundle, code, env)
    first, second = result["first"], result["second"]
    assert isinstance(first, dict)
    assert isinstance(second, dict)
    assert (first["recorded"], first["duplicates"]) == (1, 0)
    assert first["snapshots"] == {"taken": [WEB1], "failed": []}
    assert (second["recorded"], second["duplicates"]) == (0, 1)
    assert [c.action for c in emulator.calls()] == ["DescribeInstances"]
    origin = result["from"]
    assert isinstance(origin, list)
    assert all(str(path).startswith(str(host_bundle)) for path in origin)


@pytest.mark.slow
def test_read_only_bundle_imports_from_its_bytecode(host_bundle: Path, tmp_path: Path) -> None:
    """GIVEN the bundle made read-only as FC mounts /code WHEN a fresh interpreter imports the
    handler, the store engine and the ECS client THEN every module of the bundle comes from its
    pyc (``-v``: "<pyc> matches <source>") and none is compiled from source."""
    bundle = tmp_path / "code"
    shutil.copytree(host_bundle, bundle, ignore=shutil.ignore_patterns(".data"))
    modes = {p: p.stat().st_mode for p in [bundle, *bundle.rglob("*")]}
    for path, mode in modes.items():
        path.chmod(mode & ~0o222)
    code = (
        f"import sys\nsys.path[:] = [{str(bundle)!r}] + [p for p in sys.path if 'site-packages' not in p]\n"
        "import index\nfrom shared.store import Store\nStore('sqlite://').ping()\n"
        "import alibabacloud_ecs20140526.client\n"
    )
    try:
        completed = subprocess.run(
            [sys.executable, "-I", "-B", "-v", "-c", code], cwd=tmp_path, capture_output=True,
            text=True, timeout=120, check=False, env={"PATH": os.environ.get("PATH", "")},
        )
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stderr.splitlines()
    prefix = f"# code object from {bundle}/"
    compiled_from_source = [line for line in lines if line.startswith(prefix)]
    from_pyc = [line for line in lines if line.startswith(f"# code object from '{bundle}/")]
    assert compiled_from_source == []
    tag = sys.implementation.cache_tag
    for module in ("index", "shared/store", "shared/events", "sqlalchemy/engine/base",
                   "alibabacloud_ecs20140526/client"):
        parent, _, stem = f"/{module}".rpartition("/")
        pyc = f"{bundle}{parent}/__pycache__/{stem}.{tag}.pyc"
        assert f"# {pyc} matches {bundle}/{module}.py" in lines, module
    assert len(from_pyc) > 100  # the SDK and SQLAlchemy: hundreds of modules, all from bytecode


@pytest.mark.slow
def test_packaging_time_and_sizes_are_reported(built: Built) -> None:
    """GIVEN the CLI output WHEN packaging every function THEN one table row per bundle."""
    rows = [line.split() for line in built.output.splitlines()]
    sized = {row[0]: float(row[1]) for row in rows if len(row) >= 3 and row[0] in built.functions}
    assert set(sized) == set(built.functions)
    assert all(size > 0 for size in sized.values())
    assert sized.get("lifecycle_api", 0) < min(v for k, v in sized.items() if k != "lifecycle_api")
    print(f"\npackaging {len(sized)} bundles took {built.seconds:.1f} s: {sized}")
