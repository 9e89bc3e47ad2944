"""Practice 3 (spot drain): the handler and the sweep against the emulator, real SDK over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.clients import TransientError
from shared.drain import DRAIN_KIND, Drainer, sweep_drains
from shared.events import parse
from shared.ledger import LeaseHeldError, drain_key
from shared.settings import Settings
from shared.store import Store, StoreError
from tests.helpers import clients_for, emulator_for, json_log
from tests.http_receiver import HttpReceiver
from tools.emulator import Emulator
from tools.envelopes import eventbridge_copy
from tools.invoke import build_context, fc_environment, invoke_local, load_function

SPOT = "i-bp1spot000000000001"
WEB1 = "i-bp1web0000000000001"
WEB2 = "i-bp1web0000000000002"
LB_FRONT = "lb-bp1front000000000001"
LB_SECURE = "lb-bp1secure0000000000001"
CST = timezone(timedelta(hours=8))
SET_ACTIONS = {"SetBackendServers", "SetVServerGroupAttribute"}
REMOVE_ACTIONS = {"RemoveBackendServers", "RemoveVServerGroupBackendServers"}
MUTATING = SET_ACTIONS | REMOVE_ACTIONS | {"AddBackendServers", "AddVServerGroupBackendServers"}
FUNCTION_ENV = {
    "ECS_EVENT_OPS_DRAIN_TIME_S": "0.2",
    "ECS_EVENT_OPS_LB_TAG": "app=web",
    "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01",
    "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05",
}


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("spot.yaml", monkeypatch, start_delay_s=0.01) as emulator:
        yield emulator


@pytest.fixture
def emu2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """The spot fleet with web-2 a spot instance too (two interruptions at once)."""
    from dataclasses import replace

    from tests.helpers import FLEETS
    from tools.emulator import load_fleet

    fleet = load_fleet(FLEETS / "spot.yaml")
    fleet = replace(fleet, instances=tuple(
        replace(i, spot_strategy="SpotAsPriceGo") if i.id == WEB2 else i
        for i in fleet.instances))
    with Emulator(fleet, start_delay_s=0.01) as emulator:
        for name, value in emulator.signing_environment().items():
            monkeypatch.setenv(name, value)
        yield emulator


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'drain.sqlite3'}"


def settings_for(emu: Emulator, db_url: str, **overrides: Any) -> Settings:
    env = {f"ECS_EVENT_OPS_{k}": v for k, v in {"CLOUD_URL": emu.url, "DB_URL": db_url}.items()}
    return Settings.from_env({**FUNCTION_ENV, **env}, **overrides)


def compact(moment: datetime) -> str:
    local = moment.astimezone(CST)
    return local.strftime("%Y%m%dT%H%M%S.") + f"{local.microsecond // 1000:03d}+0800"


def notice(emu: Emulator, iid: str = SPOT, age_s: float = 0.0) -> dict[str, Any]:
    """The emulator's interruption payload, its eventTime moved ``age_s`` into the past."""
    emu.interrupt_spot(iid)
    payload = dict(emu.events()[-1])
    assert payload["name"] == "Instance:PreemptibleInstanceInterruption"
    if age_s:
        payload["eventTime"] = compact(datetime.now(timezone.utc) - timedelta(seconds=age_s))
    return payload


def invoke(emu: Emulator, db_url: str, body: Any, *, dry_run: bool = False,
           env: dict[str, str] | None = None,
           base_env: dict[str, str] = FUNCTION_ENV) -> dict[str, Any]:
    """drain_spot's answer to ``body`` (its error raised), on ``base_env`` updated by ``env``."""
    result = invoke_local("drain_spot", json.dumps(body).encode(), cloud_url=emu.url,
                          db_url=db_url, dry_run=dry_run, env={**base_env, **(env or {})})
    if result.error is not None:
        raise result.error
    assert isinstance(result.value, dict)
    return result.value


def invoke_error(emu: Emulator, db_url: str, body: Any) -> BaseException | None:
    return invoke_local("drain_spot", json.dumps(body).encode(), cloud_url=emu.url,
                        db_url=db_url, env=FUNCTION_ENV).error


def memberships(state: dict[str, Any]) -> dict[tuple[str, str, str, int | None], int]:
    """(lb, group, server, port) -> weight over every group of every load balancer."""
    out: dict[tuple[str, str, str, int | None], int] = {}
    for lb in state["load_balancers"]:
        for s in lb["default_servers"]:
            out[(lb["id"], "default", s["server_id"], None)] = s["weight"]
        for group in lb["vserver_groups"] + lb["master_slave_groups"]:
            for s in group["servers"]:
                out[(lb["id"], group["id"], s["server_id"], s.get("port"))] = s["weight"]
    return out


def of(members: dict[tuple[str, str, str, int | None], int], iid: str) -> dict[Any, int]:
    return {k: v for k, v in members.items() if k[2] == iid}


def others(members: dict[tuple[str, str, str, int | None], int]) -> dict[Any, int]:
    return {k: v for k, v in members.items() if k[2] != SPOT}


def mutating_calls(emu: Emulator) -> list[Any]:
    return [c for c in emu.calls() if c.action in MUTATING]


REPLACEMENT_ACTIONS = {"ecs:DescribeInstanceRamRole", "ecs:DescribeUserData",
                       "ecs:DescribeLaunchTemplateVersions", "ecs:DescribeRecommendInstanceType",
                       "ecs:RunInstances", "slb:AddBackendServers",
                       "slb:AddVServerGroupBackendServers", "slb:DescribeHealthStatus"}
MS_KEY = (LB_SECURE, "rsp-bp1ms000000000001", SPOT, 80)


# --- the gentle drain -------------------------------------------------------------------------


def test_drain_removes_every_removable_membership_and_touches_no_other_member(
    emu: Emulator, db_url: str
) -> None:
    """A fresh notice removes the instance from the default group and all three vServer ports,
    reports the master-slave membership, and leaves every other member and weight as it was."""
    # GIVEN spot-1 in a default group, vServer groups on 80/8080/443 and a master-slave group
    before = memberships(emu.state())
    assert len(of(before, SPOT)) == 5
    # WHEN its interruption notice arrives
    out = invoke(emu, db_url, notice(emu))
    # THEN only the master-slave membership is left, and nobody else changed
    after = memberships(emu.state())
    assert of(after, SPOT) == {MS_KEY: 100}
    assert others(after) == others(before)
    (drain,) = out["drains"]
    assert drain["instance_id"] == SPOT
    assert drain["outcome"] == "drained"
    assert drain["missed_deadline"] is False
    assert 250 < drain["time_left_s"] < 300
    removed = {(m["load_balancer_id"], m["group_id"] or "default", m["port"], m["weight"])
               for m in drain["removed"]}
    assert removed == {
        (LB_FRONT, "default", None, 100),
        (LB_FRONT, "rsp-bp1http00000000001", 80, 100),
        (LB_FRONT, "rsp-bp1api000000000001", 8080, 80),
        (LB_SECURE, "rsp-bp1https0000000001", 443, 100),
    }
    assert [(m["group_id"], m["role"]) for m in drain["reported_master_slave"]] == [
        ("rsp-bp1ms000000000001", "Slave")]
    assert out["bad"] == []


def test_weights_go_to_zero_in_every_group_before_any_removal(emu: Emulator, db_url: str) -> None:
    """Every weight-0 call (spot-1 only, JSON) comes before the first removal, and each
    removal names exactly the (ServerId, Port) pairs that were registered."""
    # GIVEN a fresh notice
    body = notice(emu)
    emu.clear_calls()
    # WHEN the handler drains
    invoke(emu, db_url, body)
    # THEN the call order is: all weight-0 calls, then all removals
    writes = [c for c in emu.calls() if c.action in SET_ACTIONS | REMOVE_ACTIONS]
    kinds = ["set" if c.action in SET_ACTIONS else "remove" for c in writes]
    assert kinds == ["set"] * 4 + ["remove"] * 4
    for call in writes:
        servers = json.loads(call.params["BackendServers"])
        assert [s["ServerId"] for s in servers] == [SPOT]
        if call.action in SET_ACTIONS:
            assert servers[0]["Weight"] == "0"
    ports = sorted(json.loads(c.params["BackendServers"])[0].get("Port", "-")
                   for c in writes if c.action in REMOVE_ACTIONS)
    assert ports == ["-", "443", "80", "8080"]
    first_remove = next(c.time for c in writes if c.action in REMOVE_ACTIONS)
    last_set = max(c.time for c in writes if c.action in SET_ACTIONS)
    assert first_remove - last_set >= 0.2  # the drain time passed between them
    # AND the verification described each group again after the removals
    after_removal = [c.action for c in emu.calls() if c.time >= first_remove]
    assert after_removal.count("DescribeVServerGroupAttribute") == 3
    assert after_removal.count("DescribeLoadBalancerAttribute") == 1


def test_ram_actions_are_exactly_the_slb_actions_called(emu: Emulator, db_url: str) -> None:
    """RAM_ACTIONS lists exactly the SLB actions a full drain calls (and ECS for late ones);
    its ALB/NLB ones: tests/test_drain_spot_lb.py."""
    # GIVEN the function's declared permissions
    module = load_function("drain_spot").module
    declared = set(module.RAM_ACTIONS)
    assert module.EVENT_TYPES == ("ecs:Instance:PreemptibleInstanceInterruption",)
    # WHEN a gentle drain and a late notice run
    invoke(emu, db_url, notice(emu))
    invoke(emu, db_url, notice(emu, WEB2, age_s=4 * 3600))
    # THEN every action called is declared, and every declared action was called (but the
    # replacement's, which no instance of this fleet opts in to: test_drain_spot_replace.py)
    called = {f"{c.product}:{c.action}" for c in emu.calls()}
    assert called == {a for a in declared - REPLACEMENT_ACTIONS if a.split(":")[0] in ("ecs", "slb")}


def test_drain_records_metrics_in_log_and_ledger(emu: Emulator, db_url: str) -> None:
    """notice_to_removed_s and missed_deadline appear in the 'drain finished' log line and in
    the ledger entry's data, next to the memberships with their original weights."""
    # GIVEN a JSON log capture next to the configured handler
    with json_log() as stream:
        # WHEN a notice is drained
        body = notice(emu)
        invoke(emu, db_url, body)
    # THEN the log has the metrics
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (finished,) = [x for x in lines if x["message"] == "drain finished"]
    assert finished["instance_id"] == SPOT
    assert finished["decision"] == "drained"
    assert finished["missed_deadline"] is False
    assert 0.2 <= finished["notice_to_removed_s"] < 30
    # AND the ledger entry carries them
    store = Store(db_url)
    entry = store.ledger_get(drain_key(SPOT, 1))
    assert entry is not None
    assert entry.kind == DRAIN_KIND
    assert entry.status == "done"
    assert entry.data["notice_to_removed_s"] == finished["notice_to_removed_s"]
    assert entry.data["missed_deadline"] is False
    assert entry.data["path"] == "gentle"
    assert entry.data["api_writes"] == 8
    weights = {(m["group_id"], m["port"]): m["weight"] for m in entry.data["memberships"]}
    assert weights[("rsp-bp1api000000000001", 8080)] == 80
    assert entry.data["weight0_at"] < entry.data["removed_at"] <= entry.data["verified_at"]
    store.close()


# --- duplicates, concurrency, resumption ------------------------------------------------------


def test_same_notice_through_another_envelope_does_nothing_again(
    emu: Emulator, db_url: str
) -> None:
    """The same notice via EventBridge (other id, second-precision time) is a duplicate."""
    # GIVEN a notice drained through CloudMonitor
    body = notice(emu)
    first = invoke(emu, db_url, body)["drains"][0]
    emu.clear_calls()
    # WHEN it arrives again through EventBridge, and once more as an FC retry
    second = invoke(emu, db_url, eventbridge_copy(body))["drains"][0]
    third = invoke(emu, db_url, body)["drains"][0]
    # THEN nothing is changed again, and the duplicates report what was done
    assert mutating_calls(emu) == []
    for dup in (second, third):
        assert dup["outcome"] == "duplicate"
        assert dup["removed"] == first["removed"]
        assert dup["time_left_s"] == first["time_left_s"]


def test_one_notice_through_two_envelopes_in_one_batch_is_one_drain(
    emu: Emulator, db_url: str
) -> None:
    """Both copies in one batch: the first drains, the second (run after it, in the same
    instance's thread) is its duplicate; the batch answers without raising."""
    # GIVEN one batch carrying the notice through CloudMonitor and EventBridge
    body = notice(emu)
    # WHEN the handler runs
    drains = invoke(emu, db_url, [body, eventbridge_copy(body)])["drains"]
    # THEN one drain, one duplicate naming the same ledger entry
    assert [d["outcome"] for d in drains] == ["drained", "duplicate"]
    assert drains[0]["key"] == drains[1]["key"] == drain_key(SPOT, 1)
    assert sorted(c.action for c in mutating_calls(emu)) == sorted(
        ["SetBackendServers"] + ["SetVServerGroupAttribute"] * 3
        + ["RemoveBackendServers"] + ["RemoveVServerGroupBackendServers"] * 3)


def race(handler: Any, bodies: list[bytes], env: dict[str, str], join_s: float
         ) -> tuple[list[dict[str, Any]], list[BaseException]]:
    """Each body to ``handler`` in its own thread, started together: the answers, and the
    LeaseHeldErrors raised (the platform retries those)."""
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(bodies))

    def run(body: bytes) -> None:
        barrier.wait()
        try:
            results.append(handler(body, build_context("drain_spot", "python3.10", env)))
        except LeaseHeldError as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_s)
    return results, errors


def test_concurrent_invocations_drain_once(
    emu: Emulator, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two invocations of the same notice (two envelopes) at once: one drains, the other meets the live lease
    and raises LeaseHeldError (the platform retries it; it never answers success)."""
    # GIVEN the function's environment and one notice delivered twice at the same moment
    env = fc_environment("drain_spot", "python3.10", cloud_url=emu.url, db_url=db_url,
                         extra=FUNCTION_ENV)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    handler = load_function("drain_spot").module.handler
    Store(db_url).ping()  # create the schema before the race
    payload = notice(emu)
    body = json.dumps(payload).encode()
    bodies = [body, json.dumps(eventbridge_copy(payload)).encode()]  # two envelopes of one notice
    # WHEN both run concurrently
    results, errors = race(handler, bodies, env, 10)
    # THEN the work was done once
    assert [r["drains"][0]["outcome"] for r in results] == ["drained"]
    assert [type(e) for e in errors] == [LeaseHeldError]
    # AND the platform's retry of the second finds the drain done: a duplicate
    assert handler(body, build_context("drain_spot", "python3.10", env))["drains"][0][
        "outcome"] == "duplicate"
    actions = [c.action for c in mutating_calls(emu)]
    assert sorted(actions) == sorted(
        ["SetBackendServers"] + ["SetVServerGroupAttribute"] * 3
        + ["RemoveBackendServers"] + ["RemoveVServerGroupBackendServers"] * 3)


def test_retry_after_a_crash_resumes_from_the_recorded_step(emu: Emulator, db_url: str) -> None:
    """An invocation killed during the drain wait leaves 'weighted'; the retry removes at once
    after the remaining wait, without setting weights again."""
    # GIVEN a drain that dies while waiting (weights already at 0)
    body = notice(emu)
    (event,) = parse(json.dumps(body)).events
    settings = settings_for(emu, db_url)
    store = Store(db_url)

    def killed(_: float) -> None:
        raise RuntimeError("function instance killed")

    with pytest.raises(RuntimeError):
        Drainer(store, clients_for(emu, settings), settings, sleep=killed).drain(event)
    entry = store.ledger_get(drain_key(SPOT, 1))
    assert entry is not None
    assert entry.status == "weighted"
    assert of(memberships(emu.state()), SPOT)[(LB_FRONT, "default", SPOT, None)] == 0
    emu.clear_calls()
    # WHEN the platform retries the event
    drain = invoke(emu, db_url, body)["drains"][0]
    # THEN it resumes: no weight calls, removal and verification only
    assert drain["outcome"] == "drained"
    assert {c.action for c in mutating_calls(emu)} == REMOVE_ACTIONS
    assert of(memberships(emu.state()), SPOT) == {MS_KEY: 100}
    assert store.ledger_get(drain_key(SPOT, 1)).data["generation"] == 1  # type: ignore[union-attr]
    store.close()


def test_several_interruptions_in_one_batch_drain_concurrently(
    emu2: Emulator, db_url: str
) -> None:
    """Two notices in one batch both reach weight 0 before either is removed."""
    # GIVEN a batch with notices for spot-1 and web-2, and a non-spot event
    emu2.stop_instance(WEB1, by="user")
    state_event = emu2.events()[-1]
    batch = [notice(emu2, SPOT), notice(emu2, WEB2), state_event, {"not": "an event"}]
    emu2.clear_calls()
    # WHEN the handler runs
    out = invoke(emu2, db_url, batch)
    # THEN both drained, overlapping in time
    assert sorted((d["instance_id"], d["outcome"]) for d in out["drains"]) == [
        (SPOT, "drained"), (WEB2, "drained")]
    writes = mutating_calls(emu2)
    last_set = max(c.time for c in writes if c.action in SET_ACTIONS)
    first_remove = min(c.time for c in writes if c.action in REMOVE_ACTIONS)
    assert last_set < first_remove
    # AND the other events are ignored or reported with a reason
    assert [i["kind"] for i in out["ignored"]] == ["state_change"]
    assert "not a spot interruption" in out["ignored"][0]["reason"]
    assert [b["index"] for b in out["bad"]] == [3]
    assert of(memberships(emu2.state()), WEB2) == {}


# --- the deadline -----------------------------------------------------------------------------


def test_notice_inside_the_margin_takes_the_fast_path(emu: Emulator, db_url: str) -> None:
    """10 s before the deadline (margin 30 s): no weight calls, removal at once."""
    # GIVEN a notice 290 s old
    body = notice(emu, age_s=290)
    emu.clear_calls()
    # WHEN it is handled
    drain = invoke(emu, db_url, body)["drains"][0]
    # THEN removal only, before the deadline
    actions = [c.action for c in mutating_calls(emu)]
    assert not SET_ACTIONS & set(actions)
    assert sorted(actions) == sorted(["RemoveBackendServers"] + ["RemoveVServerGroupBackendServers"] * 3)
    assert drain["outcome"] == "removed"
    assert drain["missed_deadline"] is False
    assert 0 < drain["time_left_s"] <= 10
    assert of(memberships(emu.state()), SPOT) == {MS_KEY: 100}


def test_notice_hours_late_removes_leftovers_and_records_the_miss(
    emu: Emulator, db_url: str
) -> None:
    """A platform retry hours after the deadline (instance still locked for recycling)
    removes what is left and records a missed deadline."""
    # GIVEN a notice four hours old, the instance still pending recycling
    body = notice(emu, age_s=4 * 3600)
    emu.clear_calls()
    # WHEN it is handled
    drain = invoke(emu, db_url, body)["drains"][0]
    # THEN leftovers are removed without weight calls, and the miss is recorded
    assert drain["outcome"] == "leftovers_removed"
    assert drain["missed_deadline"] is True
    assert not SET_ACTIONS & {c.action for c in mutating_calls(emu)}
    assert of(memberships(emu.state()), SPOT) == {MS_KEY: 100}


def test_notice_hours_late_for_an_instance_still_in_service_leaves_it(
    emu: Emulator, db_url: str
) -> None:
    """A stale notice for an instance Running without a recycling lock changes nothing."""
    # GIVEN a four-hour-old notice and an instance that was not reclaimed
    body = notice(emu, age_s=4 * 3600)
    emu.unlock(SPOT, "Recycling")
    before = memberships(emu.state())
    # WHEN it is handled
    drain = invoke(emu, db_url, body)["drains"][0]
    # THEN it is skipped, recorded as a missed deadline, and nothing changed
    assert drain["outcome"] == "skipped"
    assert drain["missed_deadline"] is True
    assert memberships(emu.state()) == before


def test_throttled_removal_still_finishes_before_the_deadline(emu: Emulator, db_url: str) -> None:
    """Two throttled removals are retried and the drain completes in time."""
    # GIVEN removal calls that are throttled twice
    body = notice(emu)
    emu.set_faults(fail_next={"RemoveVServerGroupBackendServers": ["Throttling.User"] * 2})
    # WHEN the handler drains
    drain = invoke(emu, db_url, body)["drains"][0]
    # THEN everything removable is gone, before the deadline
    assert drain["outcome"] == "drained"
    assert drain["time_left_s"] > 0
    assert drain["missed_deadline"] is False
    assert of(memberships(emu.state()), SPOT) == {MS_KEY: 100}
    throttled = [c for c in emu.calls() if c.code == "Throttling.User"]
    assert len(throttled) == 2


def test_removal_throttled_past_the_retries_raises_then_the_retry_finishes(
    emu: Emulator, db_url: str
) -> None:
    """Past the deadline, throttling that outlasts the client's retries raises at once (no
    round can end before the deadline); the platform's retry finishes the removal."""
    # GIVEN a notice just past its deadline and removals throttled beyond the client's retries
    body = notice(emu, age_s=301)
    emu.set_faults(fail_next={"RemoveBackendServers": ["Throttling.User"] * 4})
    # WHEN the handler runs, then the platform retries
    error = invoke_error(emu, db_url, body)
    assert isinstance(error, TransientError)
    drain = invoke(emu, db_url, body)["drains"][0]
    # THEN the retry resumed and removed everything, recording the miss
    assert drain["outcome"] == "removed"
    assert drain["missed_deadline"] is True
    assert of(memberships(emu.state()), SPOT) == {MS_KEY: 100}


def test_unreachable_store_raises(emu: Emulator) -> None:
    """No ledger, no drain: the store error propagates so FC retries, and nothing changes."""
    # GIVEN a database server that refuses connections
    db = "postgresql+psycopg://ops@127.0.0.1:9/ledger?connect_timeout=2"
    body = notice(emu)
    # WHEN the handler runs
    error = invoke_error(emu, db, body)
    # THEN it raised a store error and made no call
    assert isinstance(error, StoreError)
    assert mutating_calls(emu) == []


# --- dry run and notifications -----------------------------------------------------------------


def test_dry_run_changes_nothing_and_does_not_mark_the_ledger(emu: Emulator, db_url: str) -> None:
    """Dry run: the plan is reported, no mutating call is made, no drain entry is written,
    and a later real run still drains."""
    # GIVEN a notice and the state before
    body = notice(emu)
    before = memberships(emu.state())
    # WHEN handled in dry run
    drain = invoke(emu, db_url, body, dry_run=True)["drains"][0]
    # THEN nothing changed
    assert memberships(emu.state()) == before
    assert mutating_calls(emu) == []
    assert drain["outcome"] == "dry_run"
    assert drain["removed"] == []
    assert len(drain["planned"]) == 4
    assert len(drain["reported_master_slave"]) == 1
    store = Store(db_url)
    assert store.ledger_find(DRAIN_KIND) == []
    store.close()
    # AND a real run afterwards does the work
    assert invoke(emu, db_url, body)["drains"][0]["outcome"] == "drained"


def test_one_notification_per_interruption(emu: Emulator, db_url: str) -> None:
    """One message per interruption lists the drained groups, the master-slave group and the
    time left; a duplicate notice sends nothing."""
    with HttpReceiver() as receiver:
        # GIVEN a webhook channel
        env = {"ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": receiver.url_for("/hook")}
        body = notice(emu)
        # WHEN the notice is handled twice
        invoke(emu, db_url, body, env=env)
        invoke(emu, db_url, eventbridge_copy(body), env=env)
        # THEN exactly one message went out, with the details
        assert receiver.wait_for(1)
        (request,) = receiver.requests
    message = request.json
    assert message["instance_id"] == SPOT
    assert "rsp-bp1api000000000001:8080 (weight 80)" in message["text"]
    assert "Master-slave" in message["text"]
    assert "rsp-bp1ms000000000001:80" in message["text"]
    assert "Time left at removal" in message["text"]
    assert message["severity"] == "warning"  # a master-slave membership could not be drained


def test_a_notice_naming_an_on_demand_instance_is_refused_and_reported(
    emu: Emulator, db_url: str
) -> None:
    """A spot notice for web-1 (on-demand: forged or misrouted) drains nothing: no write, no
    drain entry, one warning saying why; its copy through another envelope sends nothing more."""
    with HttpReceiver() as receiver:
        env = {"ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": receiver.url_for("/hook")}
        before = memberships(emu.state())
        body = notice(emu, WEB1)
        emu.clear_calls()
        # WHEN it is delivered through two envelopes
        first = invoke(emu, db_url, body, env=env)["drains"][0]
        invoke(emu, db_url, eventbridge_copy(body), env=env)
        assert receiver.wait_for(1)
        (request,) = receiver.requests
    # THEN refused with the reason, nothing changed, one warning
    assert (first["outcome"], first["reason"]) == (
        "refused", "not a spot instance (SpotStrategy NoSpot): a forged or misrouted notice; "
        "nothing drained")
    assert [c.action for c in emu.calls() if c.action != "DescribeInstances"] == []
    assert memberships(emu.state()) == before
    store = Store(db_url)
    assert store.ledger_find(DRAIN_KIND) == []
    store.close()
    assert request.json["severity"] == "warning"
    assert request.json["instance_id"] == WEB1


# --- the sweep --------------------------------------------------------------------------------


def test_sweep_restores_an_instance_that_was_not_reclaimed_once(
    emu: Emulator, db_url: str
) -> None:
    """Still Running without a recycling lock well after the deadline: the memberships come back
    with their original weights, once."""
    # GIVEN a drained instance that was not reclaimed after all
    before = memberships(emu.state())
    body = notice(emu)
    invoke(emu, db_url, body)
    emu.unlock(SPOT, "Recycling")
    settings = settings_for(emu, db_url)
    store = Store(db_url)
    clients = clients_for(emu, settings)
    later = datetime.now(timezone.utc) + timedelta(seconds=300 + settings.restore_after_s + 1)
    # WHEN the sweep runs before and after restore_after_s, and then again
    early = sweep_drains(store, clients, None, settings, datetime.now(timezone.utc))
    assert early["restored"] == []
    assert early["waiting"] == [SPOT]
    emu.clear_calls()
    first = sweep_drains(store, clients, None, settings, later)
    second = sweep_drains(store, clients, None, settings, later)
    # THEN the memberships and weights are back as before, restored once
    assert memberships(emu.state()) == before
    assert first["restored"] == [SPOT]
    assert second["restored"] == []
    adds = [c for c in emu.calls() if c.action in MUTATING]
    assert sorted(c.action for c in adds) == sorted(
        ["AddBackendServers"] + ["AddVServerGroupBackendServers"] * 3)
    assert store.ledger_get(drain_key(SPOT, 1)).status == "restored"  # type: ignore[union-attr]
    store.close()


def test_sweep_marks_a_released_instance_reclaimed_and_dry_run_changes_nothing(
    emu2: Emulator, db_url: str
) -> None:
    """A released instance's drain becomes 'reclaimed'; a dry-run sweep of a restorable one
    changes nothing."""
    # GIVEN two drains: spot-1 released, web-2 still running without a lock
    before_all = memberships(emu2.state())
    invoke(emu2, db_url, [notice(emu2, SPOT), notice(emu2, WEB2)])
    emu2.release(SPOT)
    emu2.unlock(WEB2, "Recycling")
    settings = settings_for(emu2, db_url)
    store = Store(db_url)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    before = memberships(emu2.state())
    emu2.clear_calls()
    # WHEN a dry-run sweep runs, then a real one
    dry = sweep_drains(store, clients_for(emu2, settings), None,
                       settings.with_(dry_run=True), later)
    assert dry["restored"] == [WEB2]
    assert dry["reclaimed"] == [SPOT]
    assert mutating_calls(emu2) == []
    assert memberships(emu2.state()) == before
    assert {e.status for e in store.ledger_find(DRAIN_KIND)} == {"done"}
    real = sweep_drains(store, clients_for(emu2, settings), None, settings, later)
    # THEN spot-1 is reclaimed and web-2 restored
    assert real["reclaimed"] == [SPOT]
    assert real["restored"] == [WEB2]
    assert of(memberships(emu2.state()), WEB2) == of(before_all, WEB2)
    assert sorted(e.status for e in store.ledger_find(DRAIN_KIND)) == ["reclaimed", "restored"]
    store.close()
