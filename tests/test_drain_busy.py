"""A spot drain rides out CLB's documented "busy" answers (issue 11: one of them aborted it).

CLB serializes the backend-server writes of a load balancer and answers a concurrent one with
HTTP 400 SystemBusy, OperationBusy, OperationFailed.ServiceGroupProcessing,
BackendServerProcessing or VpcSystemBusy. ERROR_RULES retries them; here the emulator answers
the code once on each of the drain's write actions and the drain_spot function, run through the
local FC runtime, must still end with the instance out of every removable group.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.clients import ERROR_RULES, Rule
from tests.helpers import emulator_for
from tests.test_drain_spot import FUNCTION_ENV
from tools.emulator import Emulator
from tools.invoke import invoke_local

SPOT = "i-bp1spot000000000001"
WRITES = ("SetBackendServers", "SetVServerGroupAttribute", "RemoveBackendServers",
          "RemoveVServerGroupBackendServers")
BUSY = sorted(code for (scope, code), entry in ERROR_RULES.items()
              if scope == "slb" and entry.rule is Rule.TRANSIENT
              and code != "LocationServiceTimeout")


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("spot.yaml", monkeypatch, start_delay_s=0.01) as emulator:
        yield emulator


def _spot_members(state: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    out = []
    for lb in state["load_balancers"]:
        out += [(lb["id"], "default", None) for s in lb["default_servers"]
                if s["server_id"] == SPOT]
        for group in lb["vserver_groups"] + lb["master_slave_groups"]:
            out += [(lb["id"], group["id"], s.get("port")) for s in group["servers"]
                    if s["server_id"] == SPOT]
    return sorted(out, key=repr)


def test_the_busy_codes_are_the_documented_five() -> None:
    assert BUSY == ["BackendServerProcessing", "OperationBusy",
                    "OperationFailed.ServiceGroupProcessing", "SystemBusy", "VpcSystemBusy"]


@pytest.mark.parametrize("code", BUSY)
def test_a_busy_answer_on_every_write_does_not_abort_the_drain(
    emu: Emulator, tmp_path: Path, code: str
) -> None:
    """GIVEN every CLB write of the drain answered ``code`` (HTTP 400) once WHEN the spot
    notice is handled THEN each write is retried and the drain ends 'drained', the instance left
    only in its master-slave group (which has no per-member removal)."""
    emu.interrupt_spot(SPOT)
    body = json.dumps(emu.events()[-1]).encode()
    emu.set_faults(fail_next={action: [f"{code}:400"] for action in WRITES})
    emu.clear_calls()

    result = invoke_local("drain_spot", body, cloud_url=emu.url,
                          db_url=f"sqlite:///{tmp_path / 'drain.sqlite3'}", env=FUNCTION_ENV)

    assert result.error is None, result.error
    (drain,) = result.value["drains"]
    assert drain["outcome"] == "drained"
    assert _spot_members(emu.state()) == [
        ("lb-bp1secure0000000000001", "rsp-bp1ms000000000001", 80)]
    for action in WRITES:
        codes = [c.code for c in emu.calls() if c.action == action]
        assert codes[:2] == [code, None], (action, codes)
