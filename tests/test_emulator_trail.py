"""The emulator's ActionTrail as Alibaba documents it: lag, clock skew, 90-day retention, rate.

Driven through the product's TrailClient (the real ActionTrail SDK) over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from shared.clients import Clients, Credentials, TrailClient
from shared.settings import Settings
from tests.helpers import FLEETS
from tools.emulator import Emulator, Fleet, FleetError, load_fleet
from tools.emulator.__main__ import build_parser
from tools.emulator.fleet import TrailSpec

APP1 = "i-bp1as000000000000001"


def trail_of(emu: Emulator) -> TrailClient:
    c = emu.credentials[0]
    settings = Settings.from_env(environ={}, cloud_url=emu.url, api_max_attempts=1)
    return Clients.from_settings(
        settings, Credentials(c["access_key_id"], c["access_key_secret"], c.get("security_token"))
    ).trail


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "autostart.yaml"), start_delay_s=0.005) as emulator:
        yield emulator


def _around(emu: Emulator, minutes: int = 30) -> tuple[datetime, datetime]:
    now = datetime.fromtimestamp(emu.now(), timezone.utc)
    return now - timedelta(minutes=minutes), now + timedelta(minutes=minutes)


def test_a_record_shows_only_after_the_lag(emu: Emulator) -> None:
    """GIVEN a 600 s lag WHEN alice stops app-1 THEN LookupEvents shows nothing 590 s later (on
    the emulated clock) and her StopInstance once 600 s have passed."""
    emu.set_trail(lag_s=600)
    trail = trail_of(emu)
    start, end = _around(emu)
    emu.stop_instance(APP1, by="user", user="alice")
    called = emu.now()
    emu.advance_clock(590)
    assert trail.lookup_instance_events(APP1, start, end) == []
    emu.advance_clock(max(0.0, called + 600 - emu.now()))
    (record,) = trail.lookup_instance_events(APP1, start, end)
    assert (record.event_name, record.user_type, record.user_name) == ("StopInstance", "ram-user", "alice")


@pytest.mark.parametrize("skew", [-600, 600])
def test_event_time_is_stamped_with_the_skew_and_selected_on(emu: Emulator, skew: int) -> None:
    """GIVEN the trail's clock ``skew`` s off WHEN alice stops app-1 THEN eventTime is the call's
    time plus the skew, and a window around the call's own time that excludes it finds nothing."""
    emu.set_trail(skew_s=skew)
    called = emu.now()
    emu.stop_instance(APP1, by="user")
    trail = trail_of(emu)
    start, end = _around(emu, minutes=30)
    (record,) = trail.lookup_instance_events(APP1, start, end)
    assert abs(record.event_time.timestamp() - (called + skew)) < 2
    moment = datetime.fromtimestamp(called, timezone.utc)
    assert trail.lookup_instance_events(APP1, moment - timedelta(minutes=5), moment + timedelta(minutes=5)) == []


def test_records_older_than_90_days_are_gone(emu: Emulator) -> None:
    """GIVEN alice's stop WHEN the clock passes 90 days and a minute THEN LookupEvents no longer
    returns it, whatever the window."""
    emu.stop_instance(APP1, by="user")
    trail = trail_of(emu)
    start, _ = _around(emu)
    emu.advance_clock(90 * 86400 - 60)
    assert len(trail.lookup_instance_events(APP1, start, datetime.fromtimestamp(emu.now(), timezone.utc))) == 1
    emu.advance_clock(120)
    assert trail.lookup_instance_events(APP1, start, datetime.fromtimestamp(emu.now(), timezone.utc)) == []


def test_the_fleet_file_and_the_cli_set_the_trail() -> None:
    """GIVEN an ``actiontrail`` section THEN it is parsed; bad values name their path; the CLI
    flags are read (and left unset when absent, so the fleet's values apply)."""
    fleet = Fleet.from_dict({"actiontrail": {"lag_s": 600, "skew_s": -120, "qps": 2}})
    assert fleet.actiontrail == TrailSpec(lag_s=600.0, skew_s=-120.0, qps=2.0)
    assert Fleet.from_dict({}).actiontrail == TrailSpec()
    with pytest.raises(FleetError, match=r"^actiontrail\.lag_s: -1 is not within 0\.\.86400$"):
        Fleet.from_dict({"actiontrail": {"lag_s": -1}})
    with pytest.raises(FleetError, match=r"^actiontrail\.delay: unknown key"):
        Fleet.from_dict({"actiontrail": {"delay": 1}})
    args = build_parser().parse_args(["--fleet", "f.yaml", "--trail-lag", "600", "--trail-skew", "-60",
                                      "--trail-qps", "2"])
    assert (args.trail_lag, args.trail_skew, args.trail_qps) == (600.0, -60.0, 2.0)
    bare = build_parser().parse_args(["--fleet", "f.yaml"])
    assert (bare.trail_lag, bare.trail_skew, bare.trail_qps) == (None, None, None)
    with Emulator(Fleet.from_dict({"instances": [{"id": APP1}], "actiontrail": {"lag_s": 600}}),
                  start_delay_s=0.005) as lagging, \
            Emulator(Fleet.from_dict({"instances": [{"id": APP1}], "actiontrail": {"lag_s": 600}}),
                     start_delay_s=0.005, trail_lag_s=0) as instant:
        seen = []
        for emulator in (lagging, instant):  # the fleet's lag, then the argument winning over it
            emulator.stop_instance(APP1, by="user")
            seen.append(len(trail_of(emulator).lookup_instance_events(APP1, *_around(emulator))))
        assert seen == [0, 1]
