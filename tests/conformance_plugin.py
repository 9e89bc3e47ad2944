"""The documented contract, proven by the whole suite: every answer any emulator gave during the
session, and every request the product sent, conforms to ``../shared/api-meta``.

Each emulator checks its answers and the product's requests (``ecs-event-ops`` User-Agent) in
``Emulator._api`` against :mod:`tools.emulator.contract` and keeps the departures
(``Emulator.contract_violations()``). Emulators reach ``tools.emulator.server.ON_CLOSE`` once
closed; this plugin collects their violations, with the test that was running, and fails the
session listing them. A test that must provoke a departure on purpose says so with
``@pytest.mark.contract_exempt("why")``; its emulators' violations are left out.
The report (``.cache/conformance.json``) also lists, per action, every parameter name the product
sent during the session (request violations are judged call by call as they arrive).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tools.emulator import Emulator

REPO_ROOT = Path(__file__).resolve().parent.parent
REPORT_PATH = REPO_ROOT / ".cache" / "conformance.json"


@dataclass
class _Session:
    current: str = "(outside any test)"
    exempt: bool = False
    emulators: int = 0
    violations: dict[str, list[str]] = field(default_factory=dict)  # violation -> test ids
    # "product:Action" -> parameter names the product sent (list indexes folded to N)
    sent: dict[str, set[str]] = field(default_factory=dict)
    failed: bool = False

    def on_close(self, emulator: Emulator) -> None:
        self.emulators += 1
        if self.exempt:
            return
        for call in emulator.calls():
            if call.from_product and call.product and call.action:
                names = self.sent.setdefault(f"{call.product}:{call.action}", set())
                names.update(_INDEX.sub(".N", name) for name in call.params)
        for violation in emulator.contract_violations():
            tests = self.violations.setdefault(str(violation), [])
            if self.current not in tests:
                tests.append(self.current)


_STATE_KEY = pytest.StashKey[_Session]()
_INDEX = re.compile(r"\.\d+(?=\.|$)")


def pytest_configure(config: pytest.Config) -> None:
    from tools.emulator import server

    config.addinivalue_line("markers", "contract_exempt(reason): the emulators of this test "
                            "may depart from api-meta on purpose (the reason says why)")
    state = _Session()
    config.stash[_STATE_KEY] = state
    server.ON_CLOSE.append(state.on_close)


def pytest_unconfigure(config: pytest.Config) -> None:
    from tools.emulator import server

    state = config.stash.get(_STATE_KEY, None)
    if state is not None and state.on_close in server.ON_CLOSE:
        server.ON_CLOSE.remove(state.on_close)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    state = item.config.stash[_STATE_KEY]
    state.current = item.nodeid
    state.exempt = item.get_closest_marker("contract_exempt") is not None
    yield
    # Module/session fixtures close their emulators later: attributed to the last test.
    state.exempt = False


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE_KEY, None)
    if state is None or session.config.option.collectonly:
        return
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(json.dumps({
        "emulators": state.emulators, "violations": state.violations,
        "product_parameters": {k: sorted(v) for k, v in sorted(state.sent.items())},
    }, indent=2) + "\n", encoding="utf-8")
    if state.violations:
        state.failed = True
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, None)
    if state is None or not state.violations:
        return
    terminalreporter.section("api-meta conformance: violations", sep="=", red=True, bold=True)
    for violation, tests in sorted(state.violations.items()):
        terminalreporter.line(f"{violation}  [{tests[0]}{' +' + str(len(tests) - 1) if len(tests) > 1 else ''}]",
                              red=True)
    terminalreporter.line(f"conformance report: {REPORT_PATH.relative_to(REPO_ROOT)}")
