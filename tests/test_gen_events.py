"""tools.gen_events: real-format events for your own instances, from the store or from
DescribeInstances (real SDK against the emulator), in every envelope the normaliser reads."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from shared.events import EventKind, parse
from shared.store import Store
from tests.helpers import FLEETS
from tools import gen_events
from tools.emulator import Emulator, load_fleet
from tools.envelopes import ENVELOPES

ACCOUNT = "1234567890123456"
WEB1 = "i-bp1aaaaaaaaaaaaaaaa1"
NOW = datetime(2026, 12, 1, 23, 30, 5, 250000, tzinfo=timezone.utc)
FLEET_IDS = [f"i-bp1aaaaaaaaaaaaaaaa{n}" for n in range(1, 8)]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.01) as emulator:
        yield emulator


def gen(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = gen_events.main(list(argv), environ=environ or {}, stdout=out, stderr=err, now=NOW)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("envelope", ENVELOPES)
def test_every_envelope_reads_back_as_the_asked_event(emu: Emulator, envelope: str) -> None:
    """GIVEN web-1 from DescribeInstances WHEN a spot notice is generated in ``envelope`` THEN
    the normaliser reads one spot interruption of web-1, this account and region, at NOW."""
    code, out, err = gen("spot", "--cloud", emu.url, "--account", ACCOUNT, "--instance", WEB1,
                         "--envelope", envelope, environ=emu.signing_environment())
    assert (code, err) == (0, "")
    batch = parse(out.strip())
    assert batch.errors == ()
    (event,) = batch.events
    assert (event.kind, event.instance_id, event.account_id, event.region, event.action) == (
        EventKind.SPOT_INTERRUPTION, WEB1, ACCOUNT, "cn-hangzhou", "delete")
    assert event.event_time == NOW.replace(microsecond=250000)


def test_without_instances_every_instance_of_the_region_gets_one_event(
        emu: Emulator, tmp_path: Path) -> None:
    code, out, _ = gen("stopped", "--cloud", emu.url, "--account", ACCOUNT, "--batch", "--out",
                       str(tmp_path / "ev"), environ=emu.signing_environment())
    assert code == 0
    (path,) = out.split()
    assert Path(path) == tmp_path / "ev" / "stopped-eventbridge-batch.json"
    batch = parse(Path(path).read_bytes())
    assert [(e.instance_id, e.state) for e in batch.events] == [(i, "Stopped") for i in FLEET_IDS]
    assert len({e.event_id for e in batch.events}) == 7  # one occurrence each


def test_from_the_store_region_and_account_are_the_recorded_ones(tmp_path: Path) -> None:
    """GIVEN an instance the store recorded in cn-shanghai WHEN a stop is generated from the
    store THEN its region and account come from the record, and record_lifecycle stores it."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    seed = {"ver": "1.0", "id": "seed-1", "product": "ECS", "level": "INFO",
            "resourceId": f"acs:ecs:cn-shanghai:{ACCOUNT}:instance/i-uf6aaaaaaaaaaaaaaaa1",
            "name": "Instance:StateChange", "userId": ACCOUNT,
            "eventTime": "20261201T230000.000+0000", "regionId": "cn-shanghai",
            "content": {"resourceId": "i-uf6aaaaaaaaaaaaaaaa1", "state": "Running",
                        "resourceType": "ALIYUN::ECS::Instance"}}
    store = Store(url)
    try:
        store.record(parse(json.dumps(seed)).events)
    finally:
        store.close()
    code, out, _ = gen("stopped", "--db", url, "--instance", "i-uf6aaaaaaaaaaaaaaaa1",
                       "--envelope", "cloudmonitor")
    assert code == 0
    payload = json.loads(out)
    assert (payload["regionId"], payload["userId"], payload["eventTime"]) == (
        "cn-shanghai", ACCOUNT, "20261201T233005.250+0000")
    assert payload["resourceId"] == f"acs:ecs:cn-shanghai:{ACCOUNT}:instance/i-uf6aaaaaaaaaaaaaaaa1"
    store = Store(url)
    try:
        store.record(parse(out.strip()).events)  # what record_lifecycle stores
        record = store.instance("i-uf6aaaaaaaaaaaaaaaa1")
        assert record is not None and record.last_state == "Stopped"
    finally:
        store.close()


def test_unknown_sources_fail_without_creating_anything(emu: Emulator, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "s.sqlite3"
    code, out, err = gen("stopped", "--db", f"sqlite:///{missing}", "--instance", WEB1)
    assert (code, out) == (1, "")
    assert err == f"python -m tools.gen_events: no store at {missing} (nothing was created): check --db\n"
    assert not missing.parent.exists()
    code, _, err = gen("running", "--cloud", emu.url, "--account", ACCOUNT, "--instance",
                       "i-bp1zzzzzzzzzzzzzzzz9", environ=emu.signing_environment())
    assert (code, err) == (1, "python -m tools.gen_events: i-bp1zzzzzzzzzzzzzzzz9 is not an "
                              "instance of cn-hangzhou\n")


def test_bad_input_exits_2(emu: Emulator) -> None:
    assert gen("stopped", "--db", "sqlite:///x.sqlite3")[0] == 2  # no --instance
    code, _, err = gen("stopped", "--cloud", emu.url)
    assert code == 2 and "--account is required" in err
    assert gen("exploded", "--cloud", emu.url, "--account", ACCOUNT)[0] == 2
    assert gen("stopped", "--cloud", emu.url, "--account", "12ab")[0] == 2
