"""The emulator's ECS and ActionTrail side, driven by the real Tea SDK over HTTP.

Nothing is patched: each test starts an :class:`Emulator` on a free port from a fleet fixture
and talks to it with ``alibabacloud_ecs20140526`` / ``alibabacloud_actiontrail20200706``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_actiontrail20200706 import models as trail_models
from alibabacloud_actiontrail20200706.client import Client as Trail
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as Ecs
from alibabacloud_tea_openapi.models import Config
from Tea.exceptions import TeaException

from shared.events import EventKind, parse
from tools.emulator import Emulator, load_fleet

FLEETS = Path(__file__).parent / "fixtures" / "fleets"
REGION = "cn-hangzhou"
WEB1 = "i-bp1aaaaaaaaaaaaaaaa1"
WEB2 = "i-bp1aaaaaaaaaaaaaaaa2"
BATCH1 = "i-bp1aaaaaaaaaaaaaaaa3"
SPOT1 = "i-bp1aaaaaaaaaaaaaaaa4"
LOCKED_FIN = "i-bp1aaaaaaaaaaaaaaaa5"
LOCKED_SEC = "i-bp1aaaaaaaaaaaaaaaa6"
STOPPED1 = "i-bp1aaaaaaaaaaaaaaaa7"
ALL_IDS = [WEB1, WEB2, BATCH1, SPOT1, LOCKED_FIN, LOCKED_SEC, STOPPED1]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.2) as emulator:
        yield emulator


def config(emu: Emulator, cred: int = 0, **overrides: Any) -> Config:
    values = dict(emu.credentials[cred])
    values.update(overrides)
    return Config(endpoint=emu.endpoint, protocol="http", region_id=REGION,
                  read_timeout=5000, connect_timeout=2000, **values)


def ecs(emu: Emulator, cred: int = 0, **overrides: Any) -> Ecs:
    return Ecs(config(emu, cred, **overrides))


def api_error(call: Callable[[], object]) -> Any:
    """Run an SDK call that must fail; return the SDK exception."""
    with pytest.raises(TeaException) as info:
        call()
    return info.value


def describe(client: Ecs, **kwargs: Any) -> Any:
    return client.describe_instances(
        ecs_models.DescribeInstancesRequest(region_id=REGION, **kwargs)).body


def states(emu: Emulator, iid: str) -> list[str]:
    return [e["content"]["state"] for e in emu.events()
            if e["name"] == "Instance:StateChange" and e["content"]["resourceId"] == iid]


# --- state machine ---------------------------------------------------------------------------

def test_start_instance_goes_starting_then_running_with_events() -> None:
    """StartInstance moves Stopped -> Starting -> Running and emits one StateChange per step."""
    # GIVEN a stopped instance (a long step so the Starting state is observable on slow CI)
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.6) as emu:
        _start_and_watch(emu)


def _start_and_watch(emu: Emulator) -> None:
    client = ecs(emu)
    # WHEN it is started through the API
    client.start_instance(ecs_models.StartInstanceRequest(instance_id=BATCH1))
    # THEN it is Starting at once, Running after start_delay, with both events in order
    assert describe(client, instance_ids=json.dumps([BATCH1])).instances.instance[0].status \
        == "Starting"
    emu.wait_for_status(BATCH1, "Running", timeout_s=2)
    assert states(emu, BATCH1) == ["Starting", "Running"]
    event = emu.events()[0]
    assert event["resourceId"] == f"acs:ecs:{REGION}:1234567890123456:instance/{BATCH1}"
    assert (event["product"], event["ver"], event["level"]) == ("ECS", "1.0", "INFO")
    assert event["userId"] == "1234567890123456"
    assert event["regionId"] == REGION
    assert len({e["id"] for e in emu.events()}) == 2


def test_stop_via_api_is_a_user_stop_in_actiontrail(emu: Emulator) -> None:
    """StopInstance goes Stopping -> Stopped and ActionTrail names the calling key's user."""
    # GIVEN a running instance
    client = ecs(emu)
    # WHEN a user stops it through the API with StopCharging
    client.stop_instance(ecs_models.StopInstanceRequest(instance_id=WEB1,
                                                        stopped_mode="StopCharging"))
    emu.wait_for_status(WEB1, "Stopped", timeout_s=2)
    # THEN events and state reflect it, and LookupEvents finds the StopInstance by that user
    assert states(emu, WEB1) == ["Stopping", "Stopped"]
    assert emu.instance(WEB1)["stopped_mode"] == "StopCharging"
    trail = Trail(config(emu))
    body = trail.lookup_events(trail_models.LookupEventsRequest(
        lookup_attribute=[
            trail_models.LookupEventsRequestLookupAttribute(key="ResourceName", value=WEB1),
            trail_models.LookupEventsRequestLookupAttribute(key="EventName",
                                                            value="StopInstance"),
        ])).body
    assert len(body.events) == 1
    record = body.events[0]
    assert record["eventName"] == "StopInstance"
    assert record["serviceName"] == "Ecs"
    assert record["resourceName"] == WEB1
    assert record["requestParameters"]["InstanceId"] == WEB1
    assert record["userIdentity"]["type"] == "ram-user"
    assert record["userIdentity"]["userName"] == "ops-bot"
    assert record["userIdentity"]["accessKeyId"] == "LTAIexampleKey01"
    assert time.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert body.next_token == ""


def test_lookup_events_time_window_and_paging(emu: Emulator) -> None:
    """LookupEvents filters on the time window and pages newest first with NextToken."""
    # GIVEN three user stops recorded now
    for iid in (WEB1, WEB2, SPOT1):
        emu.stop_instance(iid, by="user", user="alice")
    trail = Trail(config(emu))
    # WHEN looking them up two at a time, then in a window that ended yesterday
    first = trail.lookup_events(trail_models.LookupEventsRequest(max_results="2")).body
    second = trail.lookup_events(trail_models.LookupEventsRequest(
        max_results="2", next_token=first.next_token)).body
    old = trail.lookup_events(trail_models.LookupEventsRequest(
        start_time="2020-01-01T00:00:00Z", end_time="2020-01-02T00:00:00Z")).body
    # THEN the pages hold all three, newest first, and the old window is empty
    names = [e["resourceName"] for e in first.events + second.events]
    assert names == [SPOT1, WEB2, WEB1]
    assert second.next_token == ""
    assert {e["userIdentity"]["userName"] for e in first.events} == {"alice"}
    assert old.events == []


def test_platform_stop_emits_om_event_before_stopping(emu: Emulator) -> None:
    """A platform stop emits SystemFailure.Stop:Executing, then Stopping and Stopped, no trail."""
    # GIVEN a running instance
    # WHEN the platform stops it
    emu.stop_instance(WEB2, by="platform")
    emu.wait_for_status(WEB2, "Stopped", timeout_s=2)
    # THEN the O&M event comes first and parses with its status and type
    names = [e["name"] for e in emu.events()]
    assert names == ["Instance:SystemFailure.Stop:Executing", "Instance:StateChange",
                     "Instance:StateChange"]
    batch = parse(json.dumps(emu.events()[0]).encode())
    assert batch.errors == ()
    (event,) = batch.events
    assert event.kind is EventKind.SYSTEM_EVENT
    assert (event.name, event.status) == ("Instance:SystemFailure.Stop", "Executing")
    assert event.om_event_type == "SystemFailure.Stop"
    assert event.instance_id == WEB2
    assert event.not_before is not None
    assert event.om_event_id is not None
    assert emu.trail() == []


def test_events_parse_into_expected_ecs_events(emu: Emulator, tmp_path: Path) -> None:
    """Every payload the emulator emits parses through shared.events.parse as intended."""
    # GIVEN an emulator writing its events to a file
    out = tmp_path / "events.jsonl"
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.01,
                  events_out=str(out)) as local:
        # WHEN an instance is created, a spot one interrupted, an O&M event raised, one released
        new_id = local.create_instance({"id": "i-bp1new0000000000001", "name": "new-1"})
        local.wait_for_status(new_id, "Running", timeout_s=2)
        local.interrupt_spot(SPOT1)
        local.raise_om_event(WEB1, "SystemMaintenance.Reboot", "Scheduled")
        local.release(BATCH1)
        payloads = local.events()
        snapshot = local.instance(SPOT1)
    # THEN parse() yields the right kinds and fields, and the file holds the same payloads
    batch = parse(json.dumps(payloads).encode())
    assert batch.errors == ()
    got = [(e.kind, e.instance_id, e.state, e.action, e.status) for e in batch.events]
    assert got == [
        (EventKind.STATE_CHANGE, new_id, "Pending", None, None),
        (EventKind.STATE_CHANGE, new_id, "Starting", None, None),
        (EventKind.STATE_CHANGE, new_id, "Running", None, None),
        (EventKind.SPOT_INTERRUPTION, SPOT1, None, "delete", None),
        (EventKind.SYSTEM_EVENT, WEB1, None, None, "Scheduled"),
        (EventKind.STATE_CHANGE, BATCH1, "Deleted", None, None),
    ]
    assert batch.events[3].level == "WARN"
    assert batch.events[0].region == REGION
    assert batch.events[0].account_id == "1234567890123456"
    times = [e.event_time for e in batch.events]
    assert times == sorted(times)
    assert snapshot["lock_reasons"] == ["Recycling"]
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == payloads


def test_locked_and_stock_errors_on_start(emu: Emulator) -> None:
    """Locks and injected stock errors refuse StartInstance with the real codes and statuses."""
    # GIVEN a financial lock, a security lock and a NoStock fault
    client = ecs(emu)
    emu.set_faults(start_error={STOPPED1: "OperationDenied.NoStock"})
    # WHEN each is started
    def start(iid: str) -> Any:
        return api_error(lambda: client.start_instance(
            ecs_models.StartInstanceRequest(instance_id=iid)))

    cases = {iid: start(iid)
             for iid in (LOCKED_FIN, LOCKED_SEC, STOPPED1, WEB1, "i-bp1doesnotexist0001")}
    # THEN the codes and HTTP statuses are the real ones, and nothing changed state
    got = {iid: (e.code, e.data["statusCode"]) for iid, e in cases.items()}
    assert got == {
        LOCKED_FIN: ("InsufficientBalance", 403),
        LOCKED_SEC: ("InstanceLockedForSecurity", 403),
        STOPPED1: ("OperationDenied.NoStock", 403),
        WEB1: ("IncorrectInstanceStatus", 403),
        "i-bp1doesnotexist0001": ("InvalidInstanceId.NotFound", 404),
    }
    assert emu.events() == []
    # AND clearing the fault lets the start through
    emu.set_faults(start_error={STOPPED1: None})
    client.start_instance(ecs_models.StartInstanceRequest(instance_id=STOPPED1))
    assert states(emu, STOPPED1)[0] == "Starting"


def test_dry_run_answers_documented_codes_and_changes_nothing(emu: Emulator) -> None:
    """DryRun=True: StartInstance answers DryRunOperation, StartInstances DRYRUN.SUCCESS (each
    action's documented code) when the start would succeed, else the real error."""
    client = ecs(emu)
    # WHEN dry-running a start of a stopped and of a running instance
    ok = api_error(lambda: client.start_instance(
        ecs_models.StartInstanceRequest(instance_id=BATCH1, dry_run=True)))
    bad = api_error(lambda: client.start_instance(
        ecs_models.StartInstanceRequest(instance_id=WEB1, dry_run=True)))
    batch = api_error(lambda: client.start_instances(ecs_models.StartInstancesRequest(
        region_id=REGION, instance_id=[BATCH1, STOPPED1], dry_run=True)))
    success_first = api_error(lambda: client.start_instances(ecs_models.StartInstancesRequest(
        region_id=REGION, instance_id=[BATCH1, WEB1], dry_run=True,
        batch_optimization="SuccessFirst")))
    # THEN the codes are DryRunOperation (400) / IncorrectInstanceStatus / DRYRUN.SUCCESS (400;
    # with SuccessFirst whatever the instances, as documented) and nothing moved
    assert (ok.code, ok.data["statusCode"]) == ("DryRunOperation", 400)
    assert (bad.code, bad.data["statusCode"]) == ("IncorrectInstanceStatus", 403)
    assert (batch.code, batch.data["statusCode"]) == ("DRYRUN.SUCCESS", 400)
    assert (success_first.code, success_first.data["statusCode"]) == ("DRYRUN.SUCCESS", 400)
    assert emu.instance(BATCH1)["status"] == "Stopped"
    assert emu.events() == []
    assert emu.calls()[0].params == {"InstanceId": BATCH1, "DryRun": "True"}


def test_start_instances_success_first_reports_each(emu: Emulator) -> None:
    """SuccessFirst starts what it can and reports a code per instance."""
    client = ecs(emu)
    # WHEN starting a startable, a locked and a running instance together
    body = client.start_instances(ecs_models.StartInstancesRequest(
        region_id=REGION, instance_id=[BATCH1, LOCKED_FIN, WEB1],
        batch_optimization="SuccessFirst")).body
    # THEN each instance has its outcome and only the startable one moved
    got = [(r.instance_id, r.code, r.previous_status, r.current_status)
           for r in body.instance_responses.instance_response]
    assert got == [
        (BATCH1, "200", "Stopped", "Starting"),
        (LOCKED_FIN, "InsufficientBalance", "Stopped", "Stopped"),
        (WEB1, "IncorrectInstanceStatus", "Running", "Running"),
    ]
    assert states(emu, BATCH1)[0] == "Starting"
    assert states(emu, LOCKED_FIN) == []


def test_start_instances_all_together_fails_entirely(emu: Emulator) -> None:
    """AllTogether refuses the whole batch when one instance cannot start."""
    client = ecs(emu)
    err = api_error(lambda: client.start_instances(ecs_models.StartInstancesRequest(
        region_id=REGION, instance_id=[BATCH1, LOCKED_SEC], batch_optimization="AllTogether")))
    assert err.code == "InstanceLockedForSecurity"
    assert emu.instance(BATCH1)["status"] == "Stopped"
    too_many = api_error(lambda: client.start_instances(ecs_models.StartInstancesRequest(
        region_id=REGION, instance_id=[f"i-bp1x{n:016d}" for n in range(101)])))
    assert (too_many.code, too_many.data["statusCode"]) == (
        "InvalidParameter.TooManyInstanceIds", 403)


def test_stop_instances_and_reboot_and_delete(emu: Emulator) -> None:
    """StopInstances, RebootInstance and DeleteInstance (Stopped only unless Force)."""
    client = ecs(emu)
    client.stop_instances(ecs_models.StopInstancesRequest(region_id=REGION,
                                                          instance_id=[WEB1, WEB2]))
    client.reboot_instance(ecs_models.RebootInstanceRequest(instance_id=SPOT1))
    emu.wait_for_status(WEB2, "Stopped", timeout_s=2)
    emu.wait_for_status(SPOT1, "Running", timeout_s=2)
    assert states(emu, SPOT1) == ["Stopping", "Starting", "Running"]
    running = api_error(lambda: client.delete_instance(
        ecs_models.DeleteInstanceRequest(instance_id=SPOT1)))
    assert running.code == "IncorrectInstanceStatus"
    client.delete_instance(ecs_models.DeleteInstanceRequest(instance_id=SPOT1, force=True))
    client.delete_instance(ecs_models.DeleteInstanceRequest(instance_id=WEB1))
    assert describe(client, instance_ids=json.dumps([WEB1, SPOT1])).total_count == 0
    assert states(emu, WEB1)[-1] == "Deleted"
    assert [t["eventName"] for t in emu.trail()] == [
        "StopInstances", "StopInstances", "RebootInstance", "DeleteInstance", "DeleteInstance"]


# --- DescribeInstances / DescribeInstanceStatus ----------------------------------------------

def test_describe_instances_pages_with_page_number(emu: Emulator) -> None:
    """PageNumber/PageSize cover every instance exactly once; PageSize > 100 is refused."""
    client = ecs(emu)
    pages = [describe(client, page_number=n, page_size=3) for n in (1, 2, 3, 4)]
    ids = [i.instance_id for p in pages for i in p.instances.instance]
    assert ids == ALL_IDS
    assert [len(p.instances.instance) for p in pages] == [3, 3, 1, 0]
    assert {p.total_count for p in pages} == {7}
    assert (pages[1].page_number, pages[1].page_size) == (2, 3)
    err = api_error(lambda: describe(client, page_size=101))
    assert (err.code, err.data["statusCode"]) == ("InvalidParameter", 400)


def test_describe_instances_pages_with_next_token(emu: Emulator) -> None:
    """MaxResults + NextToken walk the list; the last page has an empty token."""
    client = ecs(emu)
    seen: list[str] = []
    token = None
    for _ in range(10):
        body = describe(client, max_results=2, next_token=token)
        seen += [i.instance_id for i in body.instances.instance]
        token = body.next_token
        if not token:
            break
    assert seen == ALL_IDS


def test_describe_instances_fields_ids_tags_status(emu: Emulator) -> None:
    """InstanceIds, Tag.N and Status filters combine; every documented field is present."""
    client = ecs(emu)
    tagged = describe(client, tag=[ecs_models.DescribeInstancesRequestTag(
        key="auto-start", value="true")])
    assert [i.instance_id for i in tagged.instances.instance] == [
        WEB1, SPOT1, LOCKED_FIN, LOCKED_SEC, STOPPED1]
    key_only = describe(client, tag=[ecs_models.DescribeInstancesRequestTag(key="env")])
    assert [i.instance_id for i in key_only.instances.instance] == [WEB1, WEB2, STOPPED1]
    both = describe(client, tag=[
        ecs_models.DescribeInstancesRequestTag(key="auto-start", value="true"),
        ecs_models.DescribeInstancesRequestTag(key="env", value="staging")], status="Stopped")
    assert [i.instance_id for i in both.instances.instance] == [STOPPED1]
    by_ids = describe(client, instance_ids=json.dumps([SPOT1, LOCKED_FIN, "i-bp1gone000000001"]))
    spot, locked = by_ids.instances.instance
    assert by_ids.total_count == 2
    assert (spot.spot_strategy, spot.spot_interruption_behavior) == ("SpotAsPriceGo", "Stop")
    assert [lock.lock_reason for lock in locked.operation_locks.lock_reason] == ["financial"]
    assert locked.stopped_mode == "StopCharging"
    web1 = describe(client, instance_ids=json.dumps([WEB1])).instances.instance[0]
    fields = web1.to_map()
    for key in ("InstanceId", "InstanceName", "Status", "InstanceType", "ZoneId", "RegionId",
                "ImageId", "CreationTime", "InstanceChargeType", "SpotStrategy",
                "SpotInterruptionBehavior", "StoppedMode", "OperationLocks", "Tags",
                "VpcAttributes", "PublicIpAddress", "ExpiredTime", "AutoReleaseTime"):
        assert key in fields, key
    assert web1.vpc_attributes.private_ip_address.ip_address == ["10.0.0.11"]
    assert web1.public_ip_address.ip_address == ["47.96.10.11"]
    assert {t.tag_key: t.tag_value for t in web1.tags.tag} == {"auto-start": "true",
                                                              "env": "prod"}
    assert (web1.instance_charge_type, web1.zone_id) == ("PostPaid", "cn-hangzhou-h")


def test_describe_instances_rejects_bad_ids_and_other_region_is_empty(emu: Emulator) -> None:
    """More than 100 ids or a non-JSON InstanceIds is a 400; another region is just empty."""
    client = ecs(emu)
    too_many = api_error(lambda: describe(
        client, instance_ids=json.dumps([f"i-bp1x{n:016d}" for n in range(101)])))
    malformed = api_error(lambda: describe(client, instance_ids="i-bp1aaaaaaaaaaaaaaaa1"))
    assert too_many.data["statusCode"] == 400
    assert malformed.data["statusCode"] == 400
    assert malformed.code == "InvalidParameter"
    other = client.describe_instances(ecs_models.DescribeInstancesRequest(region_id="cn-beijing"))
    assert other.body.total_count == 0


def test_describe_instance_status_pages(emu: Emulator) -> None:
    """DescribeInstanceStatus filters by InstanceId.N and pages by at most 50."""
    client = ecs(emu)
    body = client.describe_instance_status(ecs_models.DescribeInstanceStatusRequest(
        region_id=REGION, instance_id=[WEB1, BATCH1], page_size=1, page_number=2)).body
    assert body.total_count == 2
    assert [(s.instance_id, s.status) for s in body.instance_statuses.instance_status] == [
        (BATCH1, "Stopped")]
    err = api_error(lambda: client.describe_instance_status(
        ecs_models.DescribeInstanceStatusRequest(region_id=REGION, page_size=51)))
    assert err.code == "InvalidParameter"


def test_released_instance_is_absent(emu: Emulator) -> None:
    """After release, DescribeInstances no longer returns the instance (no error)."""
    emu.release(WEB2)
    client = ecs(emu)
    assert describe(client, instance_ids=json.dumps([WEB2])).total_count == 0
    assert emu.instance(WEB2)["status"] == "Deleted"
    assert WEB2 in json.dumps(emu.load_balancer("lb-bp1aaaaaaaaaaaaaaaa1"))


def test_missing_parameter_is_400(emu: Emulator) -> None:
    """A call without a mandatory parameter is a 400 MissingParameter."""
    err = api_error(lambda: ecs(emu).start_instance(ecs_models.StartInstanceRequest()))
    assert (err.code, err.data["statusCode"]) == ("MissingParameter", 400)
    assert err.data["RequestId"]
    assert err.data["HostId"] == "ecs.aliyuncs.com"
