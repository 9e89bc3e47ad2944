"""The drain killed at every point of every step (the step table's ``hook``), and once for real
(SIGKILL of a process mid-wait); then the redelivery, or the sweep before the deadline, or the
sweep after it: the load balancers end exactly drained, or exactly as they were.

Emulator + real SDK over HTTP + a real SQLite store. The drain's clock is real time plus an
offset the fake ``sleep`` advances, so leases expire without waiting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.drain import Drainer, StepName, sweep_drains
from shared.events import parse
from shared.ledger import LeaseHeldError, drain_key
from shared.settings import Settings
from shared.store import Store
from tests.helpers import Killed, Time, clients_for, emulator_for
from tools.emulator import Emulator

SPOT = "i-bp1spot000000000001"
MS_GROUP = "rsp-bp1ms000000000001"
KEY = drain_key(SPOT, 1)
POINTS = [(step, point) for step in (StepName.FIND, StepName.WEIGHT0, StepName.WAIT,
                                     StepName.REMOVE, StepName.VERIFY)
          for point in ("before", "acted", "after")]
ENV = {"ECS_EVENT_OPS_DRAIN_TIME_S": "20", "ECS_EVENT_OPS_LB_TAG": "app=web",
       "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01", "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05"}


class Sent(list[Any]):
    """A notifier that keeps what it was given."""

    def send(self, notification: Any) -> None:
        self.append(notification)


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("spot.yaml", monkeypatch, start_delay_s=0.01) as emulator:
        yield emulator


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    instance = Store(f"sqlite:///{tmp_path / 'crash.sqlite3'}")
    yield instance
    instance.close()


def settings_for(emu: Emulator, store: Store) -> Settings:
    return Settings.from_env({**ENV, "ECS_EVENT_OPS_CLOUD_URL": emu.url,
                              "ECS_EVENT_OPS_DB_URL": store.url})


def groups(emu: Emulator) -> dict[tuple[str, str, str, int | None], int]:
    """(lb, group, server, port) -> weight, every group of every load balancer."""
    out: dict[tuple[str, str, str, int | None], int] = {}
    for lb in emu.state()["load_balancers"]:
        for s in lb["default_servers"]:
            out[(lb["id"], "default", s["server_id"], None)] = s["weight"]
        for group in lb["vserver_groups"] + lb["master_slave_groups"]:
            for s in group["servers"]:
                out[(lb["id"], group["id"], s["server_id"], s.get("port"))] = s["weight"]
    return out


def drained(before: dict[tuple[str, str, str, int | None], int]) -> dict[Any, int]:
    """The groups as a finished drain leaves them: spot-1 gone but from its master-slave group."""
    return {k: v for k, v in before.items() if k[2] != SPOT or k[1] == MS_GROUP}


def killer(step: StepName, point: str) -> Any:
    def hook(at: str, name: StepName, _run: Any) -> None:
        if (name, at) == (step, point):
            raise Killed(f"{point} {step.value}")
    return hook


def notice(emu: Emulator) -> Any:
    emu.interrupt_spot(SPOT)
    (event,) = parse(json.dumps(emu.events()[-1])).events
    return event


def kill_at(emu: Emulator, store: Store, step: StepName, point: str) -> tuple[Any, Time]:
    settings = settings_for(emu, store)
    clock = Time()
    event = notice(emu)
    with pytest.raises(Killed):
        Drainer(store, clients_for(emu, settings), settings, clock=clock, sleep=clock.sleep,
                hook=killer(step, point)).drain(event)
    return event, clock


@pytest.mark.parametrize(("step", "point"), POINTS, ids=[f"{s.value}-{p}" for s, p in POINTS])
def test_killed_anywhere_the_redelivery_finishes_the_drain_exactly(
    emu: Emulator, store: Store, step: StepName, point: str
) -> None:
    """GIVEN a drain killed at a point WHEN the notice is redelivered while the lease is live
    THEN it raises (retry later); once the lease expired THEN the retry takes over and the
    groups end exactly drained, with the original weights recorded."""
    before = groups(emu)
    event, clock = kill_at(emu, store, step, point)
    settings = settings_for(emu, store)
    entry = store.ledger_get(KEY)
    assert entry is not None
    if entry.status in ("done", "partial"):  # killed after the last record: already finished
        result = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                         sleep=clock.sleep).drain(event)
        assert result.outcome.value == "duplicate"
    else:
        with pytest.raises(LeaseHeldError):
            Drainer(store, clients_for(emu, settings), settings, clock=clock,
                    sleep=clock.sleep).drain(event)
        clock.offset_s += 60  # past the lease (planned wait + 30 s grace, from the last renewal)
        result = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                         sleep=clock.sleep).drain(event)
        assert result.outcome.value in ("drained", "removed")
    assert groups(emu) == drained(before)
    final = store.ledger_get(KEY)
    assert final is not None
    assert final.status == "done"
    assert {(m["group_id"], m["port"], m["weight"]) for m in final.data["memberships"]} == {
        ("rsp-bp1api000000000001", 8080, 80), ("rsp-bp1http00000000001", 80, 100),
        ("rsp-bp1https0000000001", 443, 100), (None, None, 100)}


@pytest.mark.parametrize(("step", "point"), POINTS, ids=[f"{s.value}-{p}" for s, p in POINTS])
def test_killed_anywhere_the_sweep_after_the_deadline_puts_everything_back(
    emu: Emulator, store: Store, step: StepName, point: str
) -> None:
    """GIVEN a drain killed at a point and the instance NOT reclaimed (still Running, the
    Recycling lock lifted) WHEN the sweep runs after the deadline THEN every group is exactly as
    before the notice (original weights), and the entry is closed or restored."""
    before = groups(emu)
    _, clock = kill_at(emu, store, step, point)
    emu.unlock(SPOT)
    settings = settings_for(emu, store)
    later = clock() + timedelta(seconds=300 + settings.restore_after_s + 1)
    sent = Sent()
    report = sweep_drains(store, clients_for(emu, settings), sent, settings, later)
    assert groups(emu) == before
    entry = store.ledger_get(KEY)
    assert entry is not None
    expected = "closed" if step is StepName.FIND and point != "after" else "restored"
    assert entry.status == expected
    assert report["restored" if expected == "restored" else "closed"] == [SPOT]
    assert [(n.key, n.title) for n in sent] == [(f"{KEY}:{expected}", f"Spot drain {SPOT}: {expected}")]


@pytest.mark.parametrize(("step", "point"), POINTS, ids=[f"{s.value}-{p}" for s, p in POINTS])
def test_killed_anywhere_the_sweep_before_the_deadline_finishes_the_drain(
    emu: Emulator, store: Store, step: StepName, point: str
) -> None:
    """GIVEN a drain killed at a point WHEN the sweep runs before the deadline, once the lease
    expired THEN it removes what is left at once: the groups end exactly drained."""
    before = groups(emu)
    _, clock = kill_at(emu, store, step, point)
    settings = settings_for(emu, store)
    at = clock() + timedelta(seconds=60)
    report = sweep_drains(store, clients_for(emu, settings), None, settings, at,
                          clock=lambda: at, sleep=lambda _s: None)
    assert groups(emu) == drained(before)
    entry = store.ledger_get(KEY)
    assert entry is not None
    assert entry.status == "done"
    finished_by_sweep = not (step is StepName.VERIFY and point == "after")
    assert report["finished"] == ([SPOT] if finished_by_sweep else [])


CHILD = """
import json, sys
from tools.invoke import invoke_local
body, cloud_url, db_url = sys.argv[1], sys.argv[2], sys.argv[3]
result = invoke_local("drain_spot", body.encode(), cloud_url=cloud_url, db_url=db_url,
                      env=json.loads(sys.argv[4]))
print(repr(result.error))
"""


def kill_mid_wait(emu: Emulator, store: Store) -> str:
    """Run drain_spot in a real process and SIGKILL it once it recorded 'weighted' (waiting)."""
    emu.interrupt_spot(SPOT)
    body = json.dumps(emu.events()[-1])
    env = {**ENV, "ECS_EVENT_OPS_DRAIN_TIME_S": "40"}
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, body, emu.url, store.url, json.dumps(env)],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            entry = store.ledger_get(KEY)
            if entry is not None and entry.status == "weighted":
                break
            assert child.poll() is None, "the drain ended before its wait"
            time.sleep(0.05)
        else:
            pytest.fail("the drain never reached its wait")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    return body


def test_a_process_killed_mid_wait_is_finished_by_the_retry(emu: Emulator, store: Store) -> None:
    """GIVEN drain_spot running in a real process, SIGKILLed during its weight-0 wait WHEN
    the notice is redelivered THEN while the dead process's lease is live it raises; once the
    lease expired the retry removes at once, and the groups end exactly drained."""
    before = groups(emu)
    body = kill_mid_wait(emu, store)
    assert {k: v for k, v in groups(emu).items() if k[2] == SPOT and k[1] != MS_GROUP} == {
        k: 0 for k in before if k[2] == SPOT and k[1] != MS_GROUP}
    settings = settings_for(emu, store)
    (event,) = parse(body).events
    clock = Time()
    with pytest.raises(LeaseHeldError):
        Drainer(store, clients_for(emu, settings), settings, clock=clock,
                sleep=clock.sleep).drain(event)
    clock.offset_s += 75  # the dead process's lease: its 40 s wait + 30 s grace
    result = Drainer(store, clients_for(emu, settings), settings, clock=clock,
                     sleep=clock.sleep).drain(event)
    assert result.outcome.value == "drained"
    assert groups(emu) == drained(before)
    entry = store.ledger_get(KEY)
    assert entry is not None
    assert (entry.status, entry.data["generation"], entry.data["taken_over_from"]) == (
        "done", 1, "weighted")


def test_a_process_killed_mid_wait_is_undone_by_the_sweep_when_not_reclaimed(
    emu: Emulator, store: Store
) -> None:
    """GIVEN drain_spot SIGKILLed mid-wait (weights at 0) and the instance not reclaimed WHEN
    the sweep runs after the deadline THEN the original weights are back, exactly, and a
    sweep while the lease is live leaves it alone."""
    before = groups(emu)
    kill_mid_wait(emu, store)
    emu.unlock(SPOT)
    settings = settings_for(emu, store)
    now = datetime.now(timezone.utc)
    live = sweep_drains(store, clients_for(emu, settings), None, settings, now)
    assert live["live"] == [SPOT]
    later = now + timedelta(seconds=300 + settings.restore_after_s + 1)
    report = sweep_drains(store, clients_for(emu, settings), None, settings, later)
    assert report["restored"] == [SPOT]
    assert groups(emu) == before
    entry = store.ledger_get(KEY)
    assert entry is not None
    assert (entry.status, entry.data["restored_from"]) == ("restored", "weighted")


def test_sweeps_on_their_timer_finish_a_killed_drain_then_restore_it_when_not_reclaimed(
    emu: Emulator, store: Store
) -> None:
    """GIVEN a drain killed mid-wait and the instance not reclaimed WHEN the sweep ticks just
    after the deadline THEN it removes what is left (nothing stays at weight 0 without a live
    drain); WHEN it ticks again past restore_after_s THEN the groups are exactly as before."""
    before = groups(emu)
    _, clock = kill_at(emu, store, StepName.WAIT, "before")
    emu.unlock(SPOT)
    settings = settings_for(emu, store)
    just_after = clock() + timedelta(seconds=301)
    first = sweep_drains(store, clients_for(emu, settings), None, settings, just_after,
                         clock=lambda: just_after, sleep=lambda _s: None)
    assert (first["finished"], first["restored"]) == ([SPOT], [])
    assert groups(emu) == drained(before)
    later = just_after + timedelta(seconds=settings.restore_after_s)
    second = sweep_drains(store, clients_for(emu, settings), None, settings, later)
    assert second["restored"] == [SPOT]
    assert groups(emu) == before

