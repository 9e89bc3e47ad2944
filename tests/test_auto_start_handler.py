"""functions/auto_start through the local FC runtime (tools.invoke): bytes in, JSON-able result out.

The handler is thin (parse → store/clients/notifier → shared.autostart); these tests check the
platform contract around it: result shape, bad elements, ignored events, the dry-run switch,
errors that must reach FC (store down, NoStock), its declared metadata, and the decision latency.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.autostart import RetryLaterError
from shared.store import Store, StoreUnavailableError
from tests.helpers import FLEETS, event_bytes
from tests.http_receiver import HttpReceiver
from tools.emulator import Emulator, load_fleet
from tools.invoke import invoke_local, load_function

APP1 = "i-bp1as000000000000001"  # tag true
APP2 = "i-bp1as000000000000002"  # tag always
STOCK = "i-bp1as000000000000008"  # tag true, StopCharging


class Harness:
    def __init__(self, emu: Emulator, db_url: str, rx: HttpReceiver) -> None:
        self.emu = emu
        self.db_url = db_url
        self.rx = rx
        self.env = {
            "ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": rx.url_for("/hook"),
            "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01",
            "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.01",
            "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": "0",  # the emulator's trail has no lag here
        }

    def invoke(self, body: bytes, *, dry_run: bool = False, env: dict[str, str] | None = None) -> Any:
        return invoke_local("auto_start", body, cloud_url=self.emu.url, db_url=self.db_url,
                            dry_run=dry_run, env={**self.env, **(env or {})})

    def stop(self, iid: str, by: str = "crash") -> dict[str, Any]:
        before = len(self.emu.events())
        self.emu.stop_instance(iid, by=by)
        self.emu.wait_for_status(iid, "Stopped")
        return next(p for p in self.emu.events()[before:]
                    if p["resourceId"].endswith(iid) and p["content"].get("state") == "Stopped")

    def start_calls(self) -> list[Any]:
        return [c for c in self.emu.calls() if c.action in ("StartInstance", "StartInstances")]


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with Emulator(load_fleet(FLEETS / "autostart.yaml"), start_delay_s=0.005) as emu, \
            HttpReceiver() as rx:
        cred = emu.credentials[0]
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", cred["access_key_id"])
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", cred["access_key_secret"])
        monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", cred.get("security_token", ""))
        yield Harness(emu, f"sqlite:///{tmp_path / 'store.sqlite3'}", rx)


def as_bytes(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def test_handler_returns_decisions_and_bad_elements(harness: Harness) -> None:
    """GIVEN a batch: app-2's Stopped event, a bad element and a Starting event WHEN invoked THEN
    one decision per good event (started / ignored) and the bad element reported."""
    stopped = harness.stop(APP2)
    starting = json.loads(event_bytes("cloudmonitor/state_starting.json"))
    body = as_bytes([stopped, {"foo": "bar"}, starting])

    result = harness.invoke(body)

    assert result.error is None, result.error
    value = result.value
    assert json.loads(json.dumps(value)) == value  # JSON-able
    assert [(d["instance_id"], d["decision"]) for d in value["decisions"]] == [
        (starting["content"]["resourceId"], "ignored"),
        (APP2, "started"),
    ]
    assert value["decisions"][0]["reason"] == "state Starting: auto-start acts on Stopped and Running only"
    assert len(value["bad"]) == 1
    assert value["bad"][0]["index"] == 1
    assert [c.params["InstanceId"] for c in harness.start_calls()] == [APP2]


def test_handler_ignores_events_other_than_state_changes(harness: Harness) -> None:
    """GIVEN a spot interruption notice (not subscribed, but delivered) WHEN invoked THEN ignored
    with a reason, and recorded in the store for later classification."""
    body = event_bytes("cloudmonitor/spot_interruption.json")

    result = harness.invoke(body)

    assert result.error is None, result.error
    (decision,) = result.value["decisions"]
    assert decision["decision"] == "ignored"
    assert decision["reason"] == "not a state change (Instance:PreemptibleInstanceInterruption)"
    store = Store(harness.db_url)
    try:
        assert store.timeline(decision["instance_id"])[0].name == "Instance:PreemptibleInstanceInterruption"
    finally:
        store.close()


def test_handler_closes_the_incident_on_running(harness: Harness) -> None:
    """GIVEN app-2 auto-started WHEN its Running event is invoked THEN decision verified."""
    stopped = harness.stop(APP2)
    mark = len(harness.emu.events())
    harness.invoke(as_bytes(stopped))
    harness.emu.wait_for_status(APP2, "Running")
    running = next(p for p in harness.emu.events()[mark:] if p["content"].get("state") == "Running")

    result = harness.invoke(as_bytes(running))

    assert result.value["decisions"][0]["decision"] == "verified"


def test_dry_run_flag_of_the_invoker_reaches_the_decision(harness: Harness) -> None:
    """GIVEN tools.invoke --dry-run WHEN app-2's Stopped event is invoked THEN dry-run decision,
    StartInstance sent with DryRun, the instance stays Stopped."""
    body = as_bytes(harness.stop(APP2))

    result = harness.invoke(body, dry_run=True)

    assert result.value["decisions"][0]["decision"] == "dry-run"
    (call,) = harness.start_calls()
    assert call.params["DryRun"].lower() == "true"
    time.sleep(0.02)
    assert harness.emu.instance(APP2)["status"] == "Stopped"


def test_no_stock_makes_the_invocation_fail_so_fc_retries(harness: Harness) -> None:
    """GIVEN StartInstance refused with NoStock WHEN invoked THEN the invocation fails with
    RetryLaterError; the retried invocation starts the instance once stock is back."""
    body = as_bytes(harness.stop(STOCK))
    harness.emu.set_faults(start_error={STOCK: "OperationDenied.NoStock"})

    failed = harness.invoke(body)
    harness.emu.set_faults(start_error={STOCK: None})
    retried = harness.invoke(body)

    assert isinstance(failed.error, RetryLaterError)
    assert retried.error is None
    assert retried.value["decisions"][0]["decision"] == "started"
    assert len(harness.rx.requests) == 1  # one NoStock alert


def test_unreachable_store_raises_before_any_action(harness: Harness) -> None:
    """GIVEN a database nobody listens on WHEN invoked THEN StoreUnavailableError reaches FC and
    no cloud call was made."""
    body = as_bytes(harness.stop(APP2))
    harness.emu.clear_calls()
    harness.db_url = "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"

    result = harness.invoke(body)

    assert isinstance(result.error, StoreUnavailableError)
    assert harness.emu.calls() == []


def test_declared_metadata_matches_what_the_function_does(harness: Harness) -> None:
    """GIVEN EVENT_TYPES and RAM_ACTIONS WHEN a run exercises every cloud call THEN each call the
    emulator saw is declared, and the only event type is Instance:StateChange."""
    module = load_function("auto_start").module
    assert module.EVENT_TYPES == ("ecs:Instance:StateChange",)
    batch = [harness.stop(iid) for iid in (APP1, APP2)]
    harness.invoke(as_bytes(batch))  # two eligible: StartInstances
    harness.invoke(as_bytes(harness.stop(STOCK)))  # one: StartInstance
    products = {"ecs": "ecs", "actiontrail": "actiontrail"}
    seen = {f"{products[c.product]}:{c.action}" for c in harness.emu.calls()}
    assert seen == set(module.RAM_ACTIONS)


@pytest.mark.parametrize(("lease_age_s", "started"), [(60, False), (901, True)])
def test_a_try_claimed_by_a_dead_invocation_is_retried_once_its_lease_expired(
    harness: Harness, lease_age_s: int, started: bool
) -> None:
    """GIVEN app-2's stop already claimed (status claimed, a lease of STALE_CLAIM_S) by an
    invocation that died before its start call WHEN the event is redelivered THEN within the
    lease nothing is started and the invocation raises RetryLaterError (never a success for a
    start not made); after it the next try (``…:retry2``) starts it."""
    from datetime import datetime, timedelta, timezone

    from shared import ledger

    stopped = harness.stop(APP2)
    key = ledger.start_key(APP2, str(stopped["id"]))
    store = Store(harness.db_url)
    try:
        claimed_at = datetime.now(timezone.utc) - timedelta(seconds=lease_age_s)
        assert ledger.claim_once(store, key, kind=ledger.Kind.START_ATTEMPT, instance_id=APP2,
                                 data={"lease_until": (claimed_at + timedelta(seconds=900)).isoformat()})
        result = harness.invoke(as_bytes(stopped))
        if started:
            assert result.error is None, result.error
            (decision,) = result.value["decisions"]
            assert decision["decision"] == "started"
        else:  # held: not answered as handled, FC redelivers
            assert isinstance(result.error, RetryLaterError)
            assert str(result.error) == f"start refused for now, retry the event: {APP2} (ClaimHeld)"
        assert [c.params["InstanceId"] for c in harness.start_calls()] == ([APP2] if started else [])
        retry = store.ledger_get(f"{key}:retry2")
        assert (retry is not None) is started
    finally:
        store.close()
