"""Practice 3 (spot drain) on ALB and NLB: the handler, the drain killed at each step, restore
and the released-backend sweep, through the real SDKs against the emulator (tests/fixtures/
fleets/lb.yaml: spot-1 in an ALB group draining natively (30 s), an ALB group without draining,
an ACK-managed ALB group, an NLB TCP group and, by its private IP, an NLB Ip group draining
natively (10 s))."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.clients import TransientError
from shared.drain import Drainer, StepName, sweep_drains
from shared.events import parse
from shared.lb.model import GroupKind, Membership, Product
from shared.ledger import LeaseHeldError, drain_key
from shared.settings import Settings
from shared.spot import machine
from shared.store import Store
from tests.helpers import Killed, Time, clients_for
from tests.lb_helpers import (
    ALB_ACK,
    ALB_DRAIN,
    ALB_PLAIN,
    NLB_IP,
    NLB_TCP,
    SPOT,
    SPOT_IP,
    WEB1,
    JobPauses,
    Member,
    groups,
    lb_functions_emulator,
)
from tools.emulator import Emulator
from tools.invoke import invoke_local, load_function

NATIVE = {ALB_DRAIN, NLB_IP}
KEY = drain_key(SPOT, 1)
ENV = {"ECS_EVENT_OPS_DRAIN_TIME_S": "20", "ECS_EVENT_OPS_LB_PRODUCTS": "alb,nlb",
       "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01", "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05"}


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with lb_functions_emulator(monkeypatch) as emulator:
        yield emulator


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    instance = Store(f"sqlite:///{tmp_path / 'lb.sqlite3'}")
    yield instance
    instance.close()


def settings_for(emu: Emulator, store: Store, **env: str) -> Settings:
    return Settings.from_env({**ENV, "ECS_EVENT_OPS_CLOUD_URL": emu.url,
                              "ECS_EVENT_OPS_DB_URL": store.url, **env})


def drained(before: dict[Member, int]) -> dict[Member, int]:
    """spot-1 (and its IP) gone from every group but the Kubernetes-managed one."""
    return {k: v for k, v in before.items() if k[1] not in (SPOT, SPOT_IP) or k[0] == ALB_ACK}


def writes(emu: Emulator, action: str) -> list[Any]:
    return [c for c in emu.calls() if c.action == action and c.product in ("alb", "nlb")
            and c.status == 200]


def group_of(call: Any) -> str:
    return str(call.params.get("ServerGroupId"))


def notice(emu: Emulator, age_s: float = 0.0) -> Any:
    emu.interrupt_spot(SPOT)
    payload = dict(emu.events()[-1])
    if age_s:
        moment = datetime.now(timezone.utc) - timedelta(seconds=age_s)
        local = moment.astimezone(timezone(timedelta(hours=8)))
        payload["eventTime"] = (local.strftime("%Y%m%dT%H%M%S.")
                                + f"{local.microsecond // 1000:03d}+0800")
    (event,) = parse(json.dumps(payload)).events
    return event


def test_the_handler_drains_every_alb_and_nlb_membership_by_the_best_path(
        emu: Emulator, store: Store) -> None:
    """GIVEN spot-1 in 5 ALB/NLB groups WHEN drain_spot gets its notice THEN the two natively
    draining groups get one removal and no weight change, the two others weight 0 then
    removal, the ACK-managed one nothing (reported); every write carries a ClientToken; the
    other members are untouched."""
    before = groups(emu)
    emu.interrupt_spot(SPOT)
    env = {**ENV, "ECS_EVENT_OPS_DRAIN_TIME_S": "0.2"}
    result = invoke_local("drain_spot", json.dumps(emu.events()[-1]).encode(), cloud_url=emu.url,
                          db_url=store.url, env=env)
    assert result.error is None, result.error
    value = result.value
    assert isinstance(value, dict)
    (drain,) = value["drains"]
    assert drain["outcome"] == "drained"
    assert groups(emu) == drained(before)
    weighted = writes(emu, "UpdateServerGroupServersAttribute")
    removed = writes(emu, "RemoveServersFromServerGroup")
    assert sorted(group_of(c) for c in weighted) == sorted([ALB_PLAIN, NLB_TCP])
    assert sorted(group_of(c) for c in removed) == sorted([ALB_DRAIN, ALB_PLAIN, NLB_TCP, NLB_IP])
    assert all(c.params.get("ClientToken", "").startswith("eeo-") for c in weighted + removed)
    assert ALB_ACK not in {group_of(c) for c in emu.calls() if c.action.endswith(
        ("Attribute", "FromServerGroup", "ToServerGroup"))}
    assert [m["group_id"] for m in drain["reported_managed"]] == [ALB_ACK]
    entry = store.ledger_get(KEY)
    assert entry is not None
    assert {m["group_id"] for m in entry.data["native"]} == NATIVE
    assert entry.data["weighted"] == 2
    declared = load_function("drain_spot").module.RAM_ACTIONS
    # (AddServersToServerGroup: the spot replacement's successor joining the groups,
    # tests/test_drain_spot_replace.py)
    assert {f"{c.product}:{c.action}" for c in emu.calls() if c.product in ("alb", "nlb")} == {
        a for a in declared if a.startswith(("alb:", "nlb:"))
        and a not in ("alb:AddServersToServerGroup", "nlb:AddServersToServerGroup")}


def test_a_native_drain_longer_than_the_time_left_takes_the_weight_path(
        emu: Emulator, store: Store) -> None:
    """GIVEN a notice so old that 30 s of connection draining would end after deadline -
    margin WHEN drained THEN the ALB group draining 30 s is set to weight 0 first; the NLB Ip
    group (10 s) still takes its one removal."""
    settings = settings_for(emu, store, ECS_EVENT_OPS_DRAIN_TIME_S="0.2")
    clock = Time()
    event = notice(emu, age_s=245)  # 25 s left before deadline - margin
    before = groups(emu)
    result = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                     sleep=clock.sleep).drain(event)
    assert result.outcome.value == "drained"
    assert groups(emu) == drained(before)
    assert sorted(group_of(c) for c in writes(emu, "UpdateServerGroupServersAttribute")) == sorted(
        [ALB_DRAIN, ALB_PLAIN, NLB_TCP])


def test_not_reclaimed_the_sweep_restores_ports_ips_and_original_weights(
        emu: Emulator, store: Store) -> None:
    """GIVEN a finished ALB/NLB drain and the instance not reclaimed WHEN the sweep runs past
    restore_after_s THEN every group holds spot-1 again exactly as before the notice (the
    50-weight ALB member included, the Ip member by its IP and port)."""
    settings = settings_for(emu, store, ECS_EVENT_OPS_DRAIN_TIME_S="0.2")
    before = groups(emu)
    clock = Time()
    Drainer(store, clients_for(emu, settings), settings, clock=clock,
            sleep=clock.sleep).drain(notice(emu))
    assert groups(emu) == drained(before)
    emu.unlock(SPOT)
    later = clock() + timedelta(seconds=300 + settings.restore_after_s + 1)
    report = sweep_drains(store, clients_for(emu, settings), None, settings, later)
    assert report["restored"] == [SPOT]
    assert groups(emu) == before
    assert all(c.params.get("ClientToken") for c in writes(emu, "AddServersToServerGroup"))


def test_the_sweep_removes_released_backends_from_alb_and_nlb_groups(
        emu: Emulator, store: Store) -> None:
    """GIVEN web-1 released while still registered (ALB drain group) and the groups in scope
    by id WHEN the sweep runs THEN web-1's stale member is removed, nothing else."""
    settings = settings_for(emu, store, ECS_EVENT_OPS_ALB_GROUP_IDS=f"{ALB_DRAIN},{ALB_PLAIN}",
                            ECS_EVENT_OPS_NLB_GROUP_IDS=NLB_TCP)
    before = groups(emu)
    emu.release(WEB1)
    report = sweep_drains(store, clients_for(emu, settings), None, settings,
                          datetime.now(timezone.utc))
    assert [(r["instance_id"], r["group_id"]) for r in report["released_backends_removed"]] == [
        (WEB1, ALB_DRAIN)]
    assert groups(emu) == {k: v for k, v in before.items() if k[1] != WEB1}


POINTS = [(step, point) for step in (StepName.FIND, StepName.WEIGHT0, StepName.WAIT,
                                     StepName.REMOVE, StepName.VERIFY)
          for point in ("before", "acted")]


def kill_at(emu: Emulator, store: Store, step: StepName, point: str) -> tuple[Any, Time]:
    settings = settings_for(emu, store)
    clock = Time()
    event = notice(emu)

    def hook(at: str, name: StepName, _run: Any) -> None:
        if (name, at) == (step, point):
            raise Killed(f"{point} {step.value}")

    with pytest.raises(Killed):
        Drainer(store, clients_for(emu, settings), settings, clock=clock, sleep=clock.sleep,
                hook=hook).drain(event)
    return event, clock


@pytest.mark.parametrize(("step", "point"), POINTS, ids=[f"{s.value}-{p}" for s, p in POINTS])
def test_killed_at_a_step_the_redelivery_finishes_the_alb_nlb_drain_exactly(
        emu: Emulator, store: Store, step: StepName, point: str) -> None:
    """GIVEN an ALB/NLB drain killed at a step WHEN redelivered after its lease expired THEN
    the groups end exactly drained, original weights recorded, no write doubled."""
    before = groups(emu)
    event, clock = kill_at(emu, store, step, point)
    settings = settings_for(emu, store)
    with pytest.raises(LeaseHeldError):
        Drainer(store, clients_for(emu, settings), settings, clock=clock,
                sleep=clock.sleep).drain(event)
    clock.offset_s += 90  # past the lease: the planned wait (or the 30 s drain + 15 s) + grace
    result = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                     sleep=clock.sleep).drain(event)
    assert result.outcome.value in ("drained", "removed")
    assert groups(emu) == drained(before)
    final = store.ledger_get(KEY)
    assert final is not None and final.status == "done"
    assert {(m["group_id"], m["port"], m["weight"]) for m in final.data["memberships"]} == {
        (ALB_DRAIN, 80, 100), (ALB_PLAIN, 8080, 50), (NLB_TCP, 443, 100), (NLB_IP, 5432, 100)}
    tokens = [c.params.get("ClientToken") for c in writes(emu, "RemoveServersFromServerGroup")]
    jobs = [j for p in ("alb", "nlb") for j in emu.lb_jobs(p)
            if j.get("api_name") == "RemoveServersFromServerGroup"]
    assert len(jobs) == len(set(tokens)) <= 4


@pytest.mark.parametrize(("step", "point"), POINTS, ids=[f"{s.value}-{p}" for s, p in POINTS])
def test_killed_at_a_step_the_sweep_after_the_deadline_puts_alb_nlb_back(
        emu: Emulator, store: Store, step: StepName, point: str) -> None:
    """GIVEN an ALB/NLB drain killed at a step and the instance not reclaimed WHEN the sweep
    runs after the deadline THEN every group is exactly as before the notice."""
    before = groups(emu)
    _, clock = kill_at(emu, store, step, point)
    emu.unlock(SPOT)
    emu.finish_lb_jobs()
    settings = settings_for(emu, store)
    later = clock() + timedelta(seconds=300 + settings.restore_after_s + 1)
    sweep_drains(store, clients_for(emu, settings), None, settings, later)
    assert groups(emu) == before
    entry = store.ledger_get(KEY)
    assert entry is not None
    assert entry.status == ("closed" if step is StepName.FIND else "restored")


def test_a_scheduled_alb_nlb_drain_is_finished_by_the_tick(emu: Emulator, store: Store) -> None:
    """GIVEN the finisher timer (drain_finish_every_s) WHEN spot-1 is drained THEN the
    invocation ends at weight 0 (native groups already draining) and the tick after the drain
    time removes the rest: the groups end exactly drained."""
    from shared.spot.finish import finish_due

    settings = settings_for(emu, store, ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S="60")
    before = groups(emu)
    clock = Time()
    result = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                     sleep=clock.sleep).drain(notice(emu))
    assert result.outcome.value == "scheduled"
    assert {m["status"] for m in emu.lb_group(ALB_DRAIN)["members"] if m["server_id"] == SPOT} <= {
        "Removing"}  # its connection drain under way
    emu.finish_lb_jobs()
    assert {k: v for k, v in groups(emu).items() if k[1] == SPOT and k[0] != ALB_ACK} == {
        (ALB_PLAIN, SPOT, 8080): 0, (NLB_TCP, SPOT, 443): 0}
    clock.offset_s += 25.0
    report = finish_due(store, clients_for(emu, settings), None, settings, clock=clock,
                        sleep=clock.sleep)
    assert [(f["instance_id"], f["outcome"]) for f in report.finished] == [(SPOT, "drained")]
    assert groups(emu) == drained(before)


def test_a_dry_run_sends_only_dry_runs_to_alb_and_nlb(emu: Emulator, store: Store) -> None:
    """GIVEN dry run WHEN spot-1's notice comes THEN every ALB/NLB write is a DryRun (answered
    DryRunOperation), nothing changes, and the plan names the four removable memberships."""
    settings = settings_for(emu, store, ECS_EVENT_OPS_DRY_RUN="true")
    before = groups(emu)
    result = Drainer(store, clients_for(emu, settings), settings).drain(notice(emu))
    assert result.outcome.value == "dry_run"
    assert sorted(m["group_id"] for m in result.planned) == sorted(
        [ALB_DRAIN, ALB_PLAIN, NLB_TCP, NLB_IP])
    assert [m["group_id"] for m in result.reported_managed] == [ALB_ACK]
    sent = [c for c in emu.calls() if c.product in ("alb", "nlb")
            and c.action.endswith(("Attribute", "FromServerGroup"))]
    assert sent and all(c.params.get("DryRun", "").lower() == "true"
                        and c.code == "DryRunOperation" for c in sent)
    assert groups(emu) == before


def test_a_failed_weight_job_is_written_again_with_a_new_token(
        emu: Emulator, store: Store) -> None:
    """GIVEN the ALB weight-0 job of spot-1's plain group ends Failed WHEN the drain goes on
    THEN that group's write is sent again with another ClientToken (the first one would answer
    the failed job again) and the drain ends exactly drained."""
    import threading
    import time

    settings = settings_for(emu, store, ECS_EVENT_OPS_DRAIN_TIME_S="0.2")
    emu.set_lb_jobs(job_s=0.5)
    before = groups(emu)
    failed: list[str] = []

    def fail_first_weight_job() -> None:
        deadline = time.monotonic() + 10
        while not failed and time.monotonic() < deadline:
            for job in emu.lb_jobs("alb"):
                if (job["api_name"] == "UpdateServerGroupServersAttribute"
                        and job["group_id"] == ALB_PLAIN and job["status"] == "Processing"):
                    emu.fail_lb_job(job["id"], "IncorrectStatus.ServerGroup")
                    failed.append(job["id"])
                    return
            time.sleep(0.01)

    watcher = threading.Thread(target=fail_first_weight_job)
    watcher.start()
    clock = Time()
    result = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                     sleep=clock.sleep).drain(notice(emu))
    watcher.join()
    assert failed
    assert result.outcome.value == "drained"
    assert groups(emu) == drained(before)
    tokens = [c.params.get("ClientToken") for c in writes(emu, "UpdateServerGroupServersAttribute")
              if group_of(c) == ALB_PLAIN]
    assert len(tokens) == len(set(tokens)) == 2


def test_a_burst_removes_a_natively_draining_group_s_members_in_one_write(
        monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    """GIVEN spot-1 and web-1 (both spot) in the ALB group that drains connections (30 s),
    drained in a burst (weight 0, removals scheduled) WHEN the tick takes spot-1's removal
    first THEN its one removal names web-1 too (the group stays busy for its drain timeout
    after a removal: one per burst, not one per instance); web-1's own removal later writes
    nothing there and both end drained."""
    from dataclasses import replace

    from shared.spot.finish import finish_due
    from tests.helpers import FLEETS
    from tools.emulator import load_fleet

    fleet = load_fleet(FLEETS / "lb.yaml")
    fleet = replace(fleet, instances=tuple(
        replace(i, spot_strategy="SpotAsPriceGo") if i.id == WEB1 else i
        for i in fleet.instances))
    with Emulator(fleet, start_delay_s=0.01, lb_job_s=0.05) as emu:
        for name, value in emu.signing_environment().items():
            monkeypatch.setenv(name, value)
        emu.set_lb_jobs(drain_scale=0.01)
        settings = settings_for(emu, store, ECS_EVENT_OPS_DRAIN_FINISH_EVERY_S="60")
        clock = Time()
        drainer = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                          sleep=clock.sleep)
        drainer.batch_size = 2  # delivered together: natively draining groups take weight 0
        emu.interrupt_spot(SPOT)
        emu.interrupt_spot(WEB1)
        events = [e for p in emu.events()[-2:] for e in parse(json.dumps(p)).events]
        assert [drainer.drain(e).outcome.value for e in events] == ["scheduled", "scheduled"]
        emu.finish_lb_jobs()
        assert {(m["server_id"], m["weight"]) for m in emu.lb_group(ALB_DRAIN)["members"]} == {
            (SPOT, 0), (WEB1, 0)}
        emu.clear_calls()
        clock.offset_s += 25.0
        spot_entry = store.ledger_get(KEY)
        assert spot_entry is not None
        Drainer(store, clients_for(emu, settings), settings, clock=clock,
                sleep=clock.sleep).resume(spot_entry)
        (removal,) = [c for c in writes(emu, "RemoveServersFromServerGroup")
                      if group_of(c) == ALB_DRAIN]
        assert {v for k, v in removal.params.items() if k.endswith(".ServerId")} == {SPOT, WEB1}
        emu.finish_lb_jobs()
        emu.clear_calls()
        report = finish_due(store, clients_for(emu, settings), None, settings, clock=clock,
                            sleep=clock.sleep)
        assert [(f["instance_id"], f["outcome"]) for f in report.finished] == [(WEB1, "drained")]
        assert not [c for c in writes(emu, "RemoveServersFromServerGroup")
                    if group_of(c) == ALB_DRAIN]
        assert {m["server_id"] for m in emu.lb_group(ALB_DRAIN)["members"]} == set()


@dataclass
class Standing:
    """A drain's clock that stands still but for the drain's own sleeps."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_a_job_that_never_succeeds_is_waited_for_a_step_s_cap_not_until_the_deadline(
        emu: Emulator, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN spot-1's NLB weight-0 job failed silently (GetJobStatus answers ``processing``
    forever) with the whole notice ahead WHEN the drain waits for it THEN it waits the step's cap
    (JOB_STEP_WAIT_S, shortened here), not until deadline - margin, writes again with a new
    token, and ends drained the gentle way."""
    monkeypatch.setattr(machine, "JOB_STEP_WAIT_S", 1.0)
    settings = settings_for(emu, store, ECS_EVENT_OPS_DRAIN_TIME_S="0.2")
    emu.set_lb_jobs(job_s=60)  # the jobs end at the clients' pauses
    pauses = JobPauses(emu, fail=("UpdateServerGroupServersAttribute", NLB_TCP), real=True)
    before = groups(emu)
    result = Drainer(store, pauses.clients(settings), settings).drain(notice(emu))
    assert result.outcome.value == "drained" and result.phase.value == "gentle"
    assert groups(emu) == drained(before)
    tokens = [c.params.get("ClientToken") for c in writes(emu, "UpdateServerGroupServersAttribute")
              if group_of(c) == NLB_TCP]
    assert len(tokens) == len(set(tokens)) == 2


def test_the_job_wait_cap_covers_a_native_drain_s_timeout_on_removal_only() -> None:
    native = Membership("", GroupKind.SERVER_GROUP, "sgp-a", SPOT, 80, 100, "Ecs",
                        product=Product.ALB, native_drain=True, drain_timeout_s=120)
    plain = replace(native, native_drain=False, drain_timeout_s=None)
    assert machine.job_wait_cap("weight0", [native]) == machine.JOB_STEP_WAIT_S
    assert machine.job_wait_cap("remove", [plain]) == machine.JOB_STEP_WAIT_S
    assert machine.job_wait_cap("remove", [plain, native]) == 120 + machine.JOB_SLACK_S


def test_an_nlb_weight_job_that_never_succeeds_is_written_again_with_a_new_token(
        emu: Emulator, store: Store) -> None:
    """GIVEN spot-1's NLB weight-0 job in the tcp group failed (NLB's GetJobStatus documents no
    failed state: it answers ``processing`` until the wait's end) and time left before deadline
    - margin when that wait ends WHEN the drain writes that group again THEN it sends another
    ClientToken (the first would answer the failed job again), the new job succeeds, and the
    drain ends drained, the gentle way."""
    settings = settings_for(emu, store, ECS_EVENT_OPS_DRAIN_TIME_S="0.2")
    emu.set_lb_jobs(job_s=60)  # the jobs end at the clients' pauses
    pauses = JobPauses(emu, fail=("UpdateServerGroupServersAttribute", NLB_TCP), real=True)
    before = groups(emu)
    event = notice(emu)
    deadline = event.event_time + timedelta(seconds=settings.spot_notice_s)
    # 0.9 s before deadline - margin (no group's native drain fits: all four take weight 0);
    # the drain's clock stands while the load balancers' wait (JOB_MIN_WAIT_S at least) runs,
    # so that wait ends with time left for a second write.
    clock = Standing(deadline - timedelta(seconds=settings.spot_margin_s + 0.9))
    result = Drainer(store, pauses.clients(settings), settings, clock=clock,
                     sleep=clock.sleep).drain(event)
    assert [(j["api_name"], j["group_id"]) for j in pauses.failed] == [
        ("UpdateServerGroupServersAttribute", NLB_TCP)]
    assert result.outcome.value == "drained"
    assert groups(emu) == drained(before)
    tokens = [c.params.get("ClientToken") for c in writes(emu, "UpdateServerGroupServersAttribute")
              if group_of(c) == NLB_TCP]
    assert len(tokens) == len(set(tokens)) == 2
    assert [j["status"] for j in emu.lb_jobs("nlb") if j["group_id"] == NLB_TCP
            and j["api_name"] == "UpdateServerGroupServersAttribute"] == ["Failed", "Succeeded"]


@pytest.mark.parametrize("group", [ALB_PLAIN, NLB_TCP], ids=["alb", "nlb"])
def test_a_removal_job_failed_at_the_deadline_gets_a_new_token_from_the_sweep(
        emu: Emulator, store: Store, group: str) -> None:
    """GIVEN spot-1's removal job in one group failed with no time left before the deadline for a
    second write (the drain raises, its entry open) and spot-1 then released WHEN the sweep takes
    the drain over THEN its removal there sends another ClientToken (the first would answer the
    failed job again): spot-1 leaves the group and the drain ends."""
    settings = settings_for(emu, store)
    emu.set_lb_jobs(job_s=60)  # the jobs end at the clients' pauses
    event = notice(emu)
    deadline = event.event_time + timedelta(seconds=settings.spot_notice_s)
    clock = Standing(deadline - timedelta(seconds=0.1))  # remove at once, no second write
    failing = JobPauses(emu, fail=("RemoveServersFromServerGroup", group), real=True)
    with pytest.raises(TransientError):
        Drainer(store, failing.clients(settings), settings, clock=clock,
                sleep=clock.sleep).drain(event)
    assert failing.failed
    emu.release(SPOT)
    later = deadline + timedelta(seconds=settings.restore_after_s + 1)
    report = sweep_drains(store, JobPauses(emu, real=True).clients(settings), None, settings,
                          later)
    tokens = [c.params.get("ClientToken") for c in writes(emu, "RemoveServersFromServerGroup")
              if group_of(c) == group]
    assert len(tokens) == len(set(tokens)) == 2
    assert report["errors"] == [] and report["finished"] == [SPOT]
    assert not [k for k in groups(emu) if k[0] == group and k[1] == SPOT]
