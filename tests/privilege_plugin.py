"""Least privilege, proven by the suite: every API call a function made is granted to it, and on a
full run every action granted to a function was used by it.

Each function declares ``RAM_ACTIONS`` (``"ecs:DescribeInstances"`` …). ``shared.clients`` puts
``ecs-event-ops/<FC_FUNCTION_NAME>`` in the SDK User-Agent; the emulator counts the actions it
received per function (``Emulator.actions_by_function``), and hands every emulator to
``tools.emulator.server.ON_CLOSE`` once closed. This plugin sums them over the session, then:

- used but not granted: always a failure (the deployed function would get ``Forbidden.RAM``);
- granted but never used: a failure only when the run was complete for the function tests
  (every ``tests/test_<function>*.py`` collected, nothing deselected, every item finished), as
  a subset run (``-k``, one file, ``-x``) cannot tell unused from not exercised;
- a function that declares actions but made no attributed call in a complete run is reported as
  unexercised: a warning, or a failure with ``--privileges-strict`` (a stub handler, or tests
  that bypass the handler, give no evidence either way).

Calls without a function in the User-Agent (client tests calling the adapters directly) do not
count. The report goes to ``.cache/privileges.json``.

This check is per action. The deployed policies also scope each action to resources
(tools/ram_policy.py: the account's instances under the auto-start tag condition, the CLBs in
scope, ``*`` only where Alibaba has no resource-level authorization); tests/test_deploy.py checks
that template.yml states exactly those statements for the same RAM_ACTIONS.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tools import ram_policy

if TYPE_CHECKING:
    from tools.emulator import Emulator

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
TESTS_DIR = REPO_ROOT / "tests"
REPORT_PATH = REPO_ROOT / ".cache" / "privileges.json"


# --- the declarations ------------------------------------------------------------------------------


def declared_actions(functions_dir: Path = FUNCTIONS_DIR) -> dict[str, frozenset[str]]:
    """``{function: RAM_ACTIONS}``, read from each ``index.py`` without importing it (the same
    reader tools/ram_policy.py builds the deployed policies from)."""
    return {fn: frozenset(actions) for fn, actions in ram_policy.declared_actions(functions_dir).items()}


def function_test_files(functions: Iterable[str], tests_dir: Path = TESTS_DIR) -> set[Path]:
    """``tests/test_<function>*.py`` for each function, as they exist on disk."""
    return {p.resolve() for f in functions for p in tests_dir.glob(f"test_{f}*.py")}


# --- the check ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    used_not_granted: dict[str, list[str]]
    granted_not_used: dict[str, list[str]]
    unexercised: list[str]
    complete: bool

    def failures(self, *, strict: bool = False) -> list[str]:
        lines = [f"{fn}: used but not in RAM_ACTIONS: {', '.join(actions)}"
                 for fn, actions in sorted(self.used_not_granted.items())]
        lines += [f"{fn}: in RAM_ACTIONS but never used: {', '.join(actions)}"
                  for fn, actions in sorted(self.granted_not_used.items())]
        if strict:
            lines += [f"{fn}: declares RAM_ACTIONS but no test made an attributed call"
                      for fn in self.unexercised]
        return lines


def check(used: Mapping[str, Iterable[str]], granted: Mapping[str, Iterable[str]], *,
          complete: bool) -> Verdict:
    """Compare the actions used per function with those granted.

    ``used`` may name functions that declare nothing (all their actions are then violations).
    Unused grants are judged only when ``complete``; a function with grants and no use at all
    is ``unexercised`` rather than "granted but unused".
    """
    used_sets = {fn: set(actions) for fn, actions in used.items() if actions}
    granted_sets = {fn: set(actions) for fn, actions in granted.items()}
    used_not_granted = {
        fn: sorted(actions - granted_sets.get(fn, set()))
        for fn, actions in used_sets.items() if actions - granted_sets.get(fn, set())
    }
    granted_not_used: dict[str, list[str]] = {}
    unexercised: list[str] = []
    if complete:
        for fn, actions in sorted(granted_sets.items()):
            if not actions:
                continue
            if fn not in used_sets:
                unexercised.append(fn)
            elif actions - used_sets[fn]:
                granted_not_used[fn] = sorted(actions - used_sets[fn])
    return Verdict(used_not_granted, granted_not_used, unexercised, complete)


def is_complete(required: set[Path], collected: Mapping[str, Path], finished: set[str],
                deselected: set[Path]) -> bool:
    """Every required file collected, none of its items deselected, every item finished.

    ``collected`` maps node ids to their file; ``deselected`` holds files with a deselected
    item.
    """
    if not required or required & deselected:
        return False
    files = set(collected.values())
    if not required <= files:
        return False
    return all(nodeid in finished for nodeid, path in collected.items() if path in required)


# --- the session plugin ------------------------------------------------------------------------


@dataclass
class _Session:
    used: dict[str, dict[str, int]] = field(default_factory=dict)
    emulators: int = 0
    collected: dict[str, Path] = field(default_factory=dict)
    deselected: set[Path] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)
    verdict: Verdict | None = None
    strict: bool = False

    def on_close(self, emu: Emulator) -> None:
        self.emulators += 1
        for function, actions in emu.actions_by_function().items():
            mine = self.used.setdefault(function, {})
            for action, count in actions.items():
                mine[action] = mine.get(action, 0) + count


_STATE_KEY = pytest.StashKey[_Session]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--privileges-strict", action="store_true",
                     help="least-privilege check: also fail when a function with RAM_ACTIONS "
                     "made no attributed call in a complete run")


def pytest_configure(config: pytest.Config) -> None:
    from tools.emulator import server

    state = _Session(strict=bool(config.getoption("--privileges-strict")))
    config.stash[_STATE_KEY] = state
    server.ON_CLOSE.append(state.on_close)


def pytest_unconfigure(config: pytest.Config) -> None:
    from tools.emulator import server

    state = config.stash.get(_STATE_KEY, None)
    if state is not None and state.on_close in server.ON_CLOSE:
        server.ON_CLOSE.remove(state.on_close)


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        state = items[0].config.stash[_STATE_KEY]
        state.deselected.update(Path(item.path).resolve() for item in items)


def pytest_collection_finish(session: pytest.Session) -> None:
    state = session.config.stash[_STATE_KEY]
    state.collected = {item.nodeid: Path(item.path).resolve() for item in session.items}


class _FinishRecorder:
    """``pytest_runtest_logfinish`` gets no config: a per-session object holds the state."""

    def __init__(self, state: _Session) -> None:
        self._state = state

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self._state.finished.add(nodeid)


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash[_STATE_KEY]
    session.config.pluginmanager.register(_FinishRecorder(state), "privilege-finish-recorder")


def report(state: _Session, granted: Mapping[str, frozenset[str]], verdict: Verdict,
           required: set[Path]) -> dict[str, Any]:
    return {
        "complete_run": verdict.complete,
        "required_test_files": sorted(str(p.relative_to(REPO_ROOT)) for p in required),
        "emulators": state.emulators,
        "functions": {
            fn: {
                "granted": sorted(granted.get(fn, ())),
                "used": dict(sorted(state.used.get(fn, {}).items())),
            }
            for fn in sorted(set(granted) | set(state.used))
        },
        "used_not_granted": verdict.used_not_granted,
        "granted_not_used": verdict.granted_not_used,
        "unexercised": verdict.unexercised,
    }


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE_KEY, None)
    if state is None or session.config.option.collectonly:
        return
    granted = declared_actions()
    required = function_test_files(granted)
    complete = is_complete(required, state.collected, state.finished, state.deselected)
    state.verdict = check({fn: set(a) for fn, a in state.used.items()}, granted,
                          complete=complete)
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(json.dumps(report(state, granted, state.verdict, required), indent=2)
                           + "\n", encoding="utf-8")
    if state.verdict.failures(strict=state.strict) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, None)
    if state is None or state.verdict is None:
        return
    verdict = state.verdict
    failures = verdict.failures(strict=state.strict)
    if failures:
        terminalreporter.section("least privilege: violations", sep="=", red=True, bold=True)
        for line in failures:
            terminalreporter.line(line, red=True)
    if verdict.unexercised and not state.strict:
        terminalreporter.section("least privilege: unexercised functions", sep="-", yellow=True)
        for fn in verdict.unexercised:
            terminalreporter.line(f"{fn}: declares RAM_ACTIONS but no test made an attributed "
                                  "call through its handler (unused grants unchecked)")
    if failures or verdict.unexercised:
        terminalreporter.line(f"least-privilege report: {REPORT_PATH.relative_to(REPO_ROOT)}")
