"""StartInstance's capacity and conflict refusals are "retry later", end to end.

ERROR_RULES marks StartInstance's documented capacity codes (LackResource, no stock, host
repair, elastic quota, instance not ready) RETRY_LATER: the auto_start function, run through
the local FC runtime against the emulator, must fail the invocation with RetryLaterError (so FC
redelivers the event), send a warning (not the critical "Auto-start failed"), and start the
instance on the redelivery once the refusal is gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.autostart import RetryLaterError
from shared.clients import ERROR_RULES, Rule
from tests.helpers import FLEETS
from tests.http_receiver import HttpReceiver
from tools.emulator import Emulator, load_fleet
from tools.invoke import invoke_local

STOCK = "i-bp1as000000000000008"  # tag true, StopCharging
RETRY_LATER = sorted(code for (scope, code), entry in ERROR_RULES.items()
                     if scope == "StartInstance" and entry.rule is Rule.RETRY_LATER)


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "autostart.yaml"), start_delay_s=0.005) as emulator:
        cred = emulator.credentials[0]
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", cred["access_key_id"])
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", cred["access_key_secret"])
        monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", cred.get("security_token", ""))
        yield emulator


def _stopped_event(emu: Emulator) -> bytes:
    before = len(emu.events())
    emu.stop_instance(STOCK, by="crash")
    emu.wait_for_status(STOCK, "Stopped")
    event = next(p for p in emu.events()[before:]
                 if p["resourceId"].endswith(STOCK) and p["content"].get("state") == "Stopped")
    return json.dumps(event).encode()


def test_the_table_names_the_documented_capacity_codes() -> None:
    assert RETRY_LATER == [
        "InstanceNotReady", "Invalid.PrivatePoolOptions.NoStock",
        "InvalidDedicatedHost.NotEnoughResource", "LackResource", "OperationDenied.HostRepairing",
        "OperationDenied.NoStock", "QuotaExceed.ElasticQuota"]


@pytest.mark.parametrize("code", RETRY_LATER)
def test_a_capacity_refusal_is_retried_by_redelivery_not_alerted_as_critical(
    emu: Emulator, tmp_path: Path, code: str
) -> None:
    """GIVEN StartInstance answers the code once WHEN the Stopped event is invoked THEN
    RetryLaterError, one StartInstance call, one warning; the redelivery starts the instance."""
    body = _stopped_event(emu)
    status = emu.contract.statuses_of("ecs", "StartInstance", code)[0]
    emu.set_faults(fail_next={"StartInstance": [f"{code}:{status}"]})
    with HttpReceiver() as rx:
        env = {"ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": rx.url_for("/hook"),
               "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": "0"}

        def invoke() -> Any:
            return invoke_local("auto_start", body, cloud_url=emu.url,
                                db_url=f"sqlite:///{tmp_path / 'store.sqlite3'}", env=env)

        failed = invoke()
        retried = invoke()
        alerts = [json.loads(r.body) for r in rx.requests]

    assert isinstance(failed.error, RetryLaterError)
    assert str(failed.error) == f"start refused for now, retry the event: {STOCK} ({code})"
    assert retried.error is None
    assert retried.value["decisions"][0]["decision"] == "started"
    assert [c.code for c in emu.calls() if c.action == "StartInstance"] == [code, None]
    assert [(a["title"], a["severity"]) for a in alerts] == [
        ("Auto-start refused for now", "warning")]
