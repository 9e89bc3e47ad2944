"""Conformance: every action the emulator serves, driven through the real Tea SDKs in success
and in its error cases, answers what Alibaba documents (``../shared/api-meta``).

Each case runs one SDK call against a fresh emulator, then checks the raw body the emulator
answered (``Call.body``, not the SDK's parsed model, which drops unknown fields) with
:class:`tools.emulator.contract.Contract`: no undocumented field at any path, documented JSON
types, an error code documented for the action with that HTTP status (or in the platform-wide
table), and the request parameters the SDK sent documented. The checker itself is tested with
known-bad bodies, codes and parameters so that it can fail. FC (``fc-2023-03-30``) is ROA and
not routed through ``Emulator._api``: see ``test_fc_get_function_body_conforms``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from alibabacloud_actiontrail20200706 import models as trail_models
from alibabacloud_actiontrail20200706.client import Client as Trail
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as Ecs
from alibabacloud_slb20140515 import models as slb_models
from alibabacloud_slb20140515.client import Client as Slb
from alibabacloud_tea_openapi.models import Config
from Tea.exceptions import TeaException

from tests.helpers import FLEETS
from tools.emulator import Emulator, load_fleet
from tools.emulator.contract import (
    PLATFORM_CODES,
    Contract,
    ViolationKind,
    load_contract,
    platform_table,
)
from tools.emulator.server import PRODUCTS, Call

REGION = "cn-hangzhou"
# basic.yaml
WEB1 = "i-bp1aaaaaaaaaaaaaaaa1"  # Running
BATCH1 = "i-bp1aaaaaaaaaaaaaaaa3"  # Stopped
LOCKED_SEC = "i-bp1aaaaaaaaaaaaaaaa6"  # Stopped, security lock
STOPPED1 = "i-bp1aaaaaaaaaaaaaaaa7"  # Stopped
ABSENT = "i-bp1zzzzzzzzzzzzzzzz9"
# spot.yaml
SPOT = "i-bp1spot000000000001"
WEB_A = "i-bp1web0000000000001"
WEB_B = "i-bp1web0000000000002"
FRONT = "lb-bp1front000000000001"
SECURE = "lb-bp1secure0000000000001"
HTTP_GROUP = "rsp-bp1http00000000001"
API_GROUP = "rsp-bp1api000000000001"
MS_GROUP = "rsp-bp1ms000000000001"
NO_LB = "lb-bp1nothere000000001"
NO_GROUP = "rsp-bp1nothere0000001"


@dataclass(frozen=True)
class Sdk:
    ecs: Ecs
    slb: Slb
    trail: Trail
    emu: Emulator


@dataclass(frozen=True)
class Case:
    """One SDK call: ``code`` None means it must succeed, else fail with that code."""

    id: str
    product: str
    action: str
    fleet: str
    call: Callable[[Sdk], Any]
    code: str | None = None
    setup: Callable[[Emulator], None] | None = None


def _servers(*entries: dict[str, Any]) -> str:
    return json.dumps(list(entries))


def _ecs(case_id: str, action: str, call: Callable[[Ecs], Any], code: str | None = None,
         setup: Callable[[Emulator], None] | None = None) -> Case:
    return Case(case_id, "ecs", action, "basic.yaml", lambda s: call(s.ecs), code, setup)


def _slb(case_id: str, action: str, call: Callable[[Slb], Any], code: str | None = None,
         setup: Callable[[Emulator], None] | None = None) -> Case:
    return Case(case_id, "slb", action, "spot.yaml", lambda s: call(s.slb), code, setup)


E, S, T = ecs_models, slb_models, trail_models
CASES: list[Case] = [
    # --- ECS ---------------------------------------------------------------------------------
    _ecs("describe-instances", "DescribeInstances", lambda c: c.describe_instances(
        E.DescribeInstancesRequest(region_id=REGION, page_size=100))),
    _ecs("describe-instances-tags-token", "DescribeInstances", lambda c: c.describe_instances(
        E.DescribeInstancesRequest(region_id=REGION, max_results=2, tag=[
            E.DescribeInstancesRequestTag(key="env", value="prod")]))),
    _ecs("describe-instances-bad-status", "DescribeInstances", lambda c: c.describe_instances(
        E.DescribeInstancesRequest(region_id=REGION, status="Sleeping")),
        "InvalidStatus.NotFound"),
    _ecs("describe-instances-malformed-ids", "DescribeInstances", lambda c: c.describe_instances(
        E.DescribeInstancesRequest(region_id=REGION, instance_ids="i-1")), "InvalidParameter"),
    _ecs("describe-instances-no-region", "DescribeInstances", lambda c: c.describe_instances(
        E.DescribeInstancesRequest()), "MissingParameter"),
    _ecs("describe-status", "DescribeInstanceStatus", lambda c: c.describe_instance_status(
        E.DescribeInstanceStatusRequest(region_id=REGION, instance_id=[WEB1, BATCH1]))),
    _ecs("describe-status-too-many", "DescribeInstanceStatus",
         lambda c: c.describe_instance_status(E.DescribeInstanceStatusRequest(
             region_id=REGION, instance_id=[f"i-bp1x{n:016d}" for n in range(101)])),
         "InvalidParameter.TooManyInstanceIds"),
    _ecs("start", "StartInstance", lambda c: c.start_instance(
        E.StartInstanceRequest(instance_id=BATCH1))),
    _ecs("start-dry-run", "StartInstance", lambda c: c.start_instance(
        E.StartInstanceRequest(instance_id=BATCH1, dry_run=True)), "DryRunOperation"),
    _ecs("start-running", "StartInstance", lambda c: c.start_instance(
        E.StartInstanceRequest(instance_id=WEB1)), "IncorrectInstanceStatus"),
    _ecs("start-absent", "StartInstance", lambda c: c.start_instance(
        E.StartInstanceRequest(instance_id=ABSENT)), "InvalidInstanceId.NotFound"),
    _ecs("start-security-lock", "StartInstance", lambda c: c.start_instance(
        E.StartInstanceRequest(instance_id=LOCKED_SEC)), "InstanceLockedForSecurity"),
    _ecs("start-no-id", "StartInstance", lambda c: c.start_instance(E.StartInstanceRequest()),
         "MissingParameter"),
    *[_ecs(f"start-fault-{code}", "StartInstance", lambda c: c.start_instance(
        E.StartInstanceRequest(instance_id=BATCH1)), code,
        lambda emu, code=code: emu.set_faults(start_error={BATCH1: code}))  # type: ignore[misc]
      for code in ("LackResource", "Invalid.PrivatePoolOptions.NoStock",
                   "OperationDenied.HostRepairing", "QuotaExceed.ElasticQuota",
                   "OperationDenied.NoStock")],
    _ecs("starts", "StartInstances", lambda c: c.start_instances(E.StartInstancesRequest(
        region_id=REGION, instance_id=[BATCH1, WEB1], batch_optimization="SuccessFirst"))),
    _ecs("starts-dry-run", "StartInstances", lambda c: c.start_instances(E.StartInstancesRequest(
        region_id=REGION, instance_id=[BATCH1, STOPPED1], dry_run=True)), "DRYRUN.SUCCESS"),
    _ecs("starts-conflict", "StartInstances", lambda c: c.start_instances(
        E.StartInstancesRequest(region_id=REGION, instance_id=[BATCH1])),
        "InvalidOperation.Conflict",
        lambda emu: emu.set_faults(fail_next={"StartInstances": ["InvalidOperation.Conflict"]})),
    _ecs("starts-all-together-locked", "StartInstances", lambda c: c.start_instances(
        E.StartInstancesRequest(region_id=REGION, instance_id=[BATCH1, LOCKED_SEC])),
        "InstanceLockedForSecurity"),
    _ecs("stop", "StopInstance", lambda c: c.stop_instance(
        E.StopInstanceRequest(instance_id=WEB1, stopped_mode="StopCharging"))),
    _ecs("stop-stopped", "StopInstance", lambda c: c.stop_instance(
        E.StopInstanceRequest(instance_id=BATCH1)), "IncorrectInstanceStatus"),
    _ecs("stop-dry-run", "StopInstance", lambda c: c.stop_instance(
        E.StopInstanceRequest(instance_id=WEB1, dry_run=True)), "DryRunOperation"),
    _ecs("stops", "StopInstances", lambda c: c.stop_instances(E.StopInstancesRequest(
        region_id=REGION, instance_id=[WEB1]))),
    _ecs("stops-dry-run", "StopInstances", lambda c: c.stop_instances(E.StopInstancesRequest(
        region_id=REGION, instance_id=[WEB1], dry_run=True)), "DRYRUN.SUCCESS"),
    _ecs("stops-absent", "StopInstances", lambda c: c.stop_instances(E.StopInstancesRequest(
        region_id=REGION, instance_id=[ABSENT])), "InvalidInstanceId.NotFound"),
    _ecs("reboot", "RebootInstance", lambda c: c.reboot_instance(
        E.RebootInstanceRequest(instance_id=WEB1))),
    _ecs("reboot-stopped", "RebootInstance", lambda c: c.reboot_instance(
        E.RebootInstanceRequest(instance_id=BATCH1)), "IncorrectInstanceStatus"),
    _ecs("delete", "DeleteInstance", lambda c: c.delete_instance(
        E.DeleteInstanceRequest(instance_id=BATCH1))),
    _ecs("delete-running", "DeleteInstance", lambda c: c.delete_instance(
        E.DeleteInstanceRequest(instance_id=WEB1)), "IncorrectInstanceStatus"),
    _ecs("delete-absent", "DeleteInstance", lambda c: c.delete_instance(
        E.DeleteInstanceRequest(instance_id=ABSENT)), "InvalidInstanceId.NotFound"),
    # --- CLB ---------------------------------------------------------------------------------
    _slb("describe-lbs", "DescribeLoadBalancers", lambda c: c.describe_load_balancers(
        S.DescribeLoadBalancersRequest(region_id=REGION, server_id=SPOT))),
    _slb("describe-lbs-no-region", "DescribeLoadBalancers", lambda c: c.describe_load_balancers(
        S.DescribeLoadBalancersRequest()), "MissingParameter"),
    _slb("describe-lb", "DescribeLoadBalancerAttribute",
         lambda c: c.describe_load_balancer_attribute(S.DescribeLoadBalancerAttributeRequest(
             region_id=REGION, load_balancer_id=FRONT))),
    _slb("describe-lb-missing", "DescribeLoadBalancerAttribute",
         lambda c: c.describe_load_balancer_attribute(S.DescribeLoadBalancerAttributeRequest(
             region_id=REGION, load_balancer_id=NO_LB)), "InvalidLoadBalancerId.NotFound"),
    _slb("add-default", "AddBackendServers", lambda c: c.add_backend_servers(
        S.AddBackendServersRequest(region_id=REGION, load_balancer_id=FRONT,
                                   backend_servers=_servers({"ServerId": WEB_B, "Weight": "50"},
                                                            {"ServerId": WEB_B})))),
    _slb("add-default-existing", "AddBackendServers", lambda c: c.add_backend_servers(
        S.AddBackendServersRequest(region_id=REGION, load_balancer_id=FRONT,
                                   backend_servers=_servers({"ServerId": SPOT}))),
        "InvalidParameter"),
    _slb("add-default-stopped", "AddBackendServers", lambda c: c.add_backend_servers(
        S.AddBackendServersRequest(region_id=REGION, load_balancer_id=FRONT,
                                   backend_servers=_servers({"ServerId": WEB_B}))),
        "InvalidParameter", lambda emu: emu.stop_instance(WEB_B, by="crash")),
    _slb("add-default-unknown", "AddBackendServers", lambda c: c.add_backend_servers(
        S.AddBackendServersRequest(region_id=REGION, load_balancer_id=FRONT,
                                   backend_servers=_servers({"ServerId": ABSENT}))),
        "InvalidParameter"),
    _slb("add-default-busy", "AddBackendServers", lambda c: c.add_backend_servers(
        S.AddBackendServersRequest(region_id=REGION, load_balancer_id=FRONT,
                                   backend_servers=_servers({"ServerId": WEB_B}))),
        "BackendServerProcessing",
        lambda emu: emu.set_faults(fail_next={"AddBackendServers": ["BackendServerProcessing"]})),
    _slb("remove-default", "RemoveBackendServers", lambda c: c.remove_backend_servers(
        S.RemoveBackendServersRequest(region_id=REGION, load_balancer_id=FRONT,
                                      backend_servers=_servers({"ServerId": SPOT})))),
    _slb("remove-default-missing-lb", "RemoveBackendServers", lambda c: c.remove_backend_servers(
        S.RemoveBackendServersRequest(region_id=REGION, load_balancer_id=NO_LB,
                                      backend_servers=_servers({"ServerId": SPOT}))),
        "InvalidLoadBalancerId.NotFound"),
    _slb("remove-default-busy", "RemoveBackendServers", lambda c: c.remove_backend_servers(
        S.RemoveBackendServersRequest(region_id=REGION, load_balancer_id=FRONT,
                                      backend_servers=_servers({"ServerId": SPOT}))),
        "SystemBusy", lambda emu: emu.set_faults(fail_next={"RemoveBackendServers": ["SystemBusy"]})),
    _slb("set-default", "SetBackendServers", lambda c: c.set_backend_servers(
        S.SetBackendServersRequest(region_id=REGION, load_balancer_id=FRONT,
                                   backend_servers=_servers({"ServerId": SPOT, "Weight": "0"})))),
    _slb("set-default-bad-weight", "SetBackendServers", lambda c: c.set_backend_servers(
        S.SetBackendServersRequest(region_id=REGION, load_balancer_id=FRONT,
                                   backend_servers=_servers({"ServerId": SPOT, "Weight": 101}))),
        "InvalidParameter"),
    _slb("describe-groups", "DescribeVServerGroups", lambda c: c.describe_vserver_groups(
        S.DescribeVServerGroupsRequest(region_id=REGION, load_balancer_id=FRONT))),
    _slb("describe-groups-missing-lb", "DescribeVServerGroups",
         lambda c: c.describe_vserver_groups(S.DescribeVServerGroupsRequest(
             region_id=REGION, load_balancer_id=NO_LB)), "InvalidLoadBalancerId.NotFound"),
    _slb("describe-group", "DescribeVServerGroupAttribute",
         lambda c: c.describe_vserver_group_attribute(S.DescribeVServerGroupAttributeRequest(
             region_id=REGION, vserver_group_id=HTTP_GROUP))),
    _slb("describe-group-missing", "DescribeVServerGroupAttribute",
         lambda c: c.describe_vserver_group_attribute(S.DescribeVServerGroupAttributeRequest(
             region_id=REGION, vserver_group_id=NO_GROUP)), "InvalidParameter"),
    _slb("describe-group-no-region", "DescribeVServerGroupAttribute",
         lambda c: c.describe_vserver_group_attribute(S.DescribeVServerGroupAttributeRequest(
             vserver_group_id=HTTP_GROUP)), "MissingParameter"),
    _slb("add-group", "AddVServerGroupBackendServers",
         lambda c: c.add_vserver_group_backend_servers(S.AddVServerGroupBackendServersRequest(
             region_id=REGION, vserver_group_id=API_GROUP,
             backend_servers=_servers({"ServerId": WEB_A, "Port": 8080, "Weight": 10})))),
    _slb("add-group-unknown", "AddVServerGroupBackendServers",
         lambda c: c.add_vserver_group_backend_servers(S.AddVServerGroupBackendServersRequest(
             region_id=REGION, vserver_group_id=API_GROUP,
             backend_servers=_servers({"ServerId": ABSENT, "Port": 8080}))),
         "InvalidServerId.NotExist"),
    _slb("add-group-existing", "AddVServerGroupBackendServers",
         lambda c: c.add_vserver_group_backend_servers(S.AddVServerGroupBackendServersRequest(
             region_id=REGION, vserver_group_id=API_GROUP,
             backend_servers=_servers({"ServerId": SPOT, "Port": 8080}))), "InvalidParameter"),
    _slb("add-group-over-20", "AddVServerGroupBackendServers",
         lambda c: c.add_vserver_group_backend_servers(S.AddVServerGroupBackendServersRequest(
             region_id=REGION, vserver_group_id=API_GROUP,
             backend_servers=_servers(*[{"ServerId": WEB_A, "Port": 9000 + n}
                                        for n in range(21)]))), "InvalidParameter"),
    *[_slb(f"add-group-fault-{code}", "AddVServerGroupBackendServers",
           lambda c: c.add_vserver_group_backend_servers(S.AddVServerGroupBackendServersRequest(
               region_id=REGION, vserver_group_id=API_GROUP,
               backend_servers=_servers({"ServerId": WEB_A, "Port": 8080}))), code,
           lambda emu, code=code: emu.set_faults(  # type: ignore[misc]
               fail_next={"AddVServerGroupBackendServers": [code]}))
      for code in ("SystemBusy", "OperationBusy", "OperationFailed.ServiceGroupProcessing",
                   "BackendServerProcessing", "VpcSystemBusy")],
    _slb("remove-group", "RemoveVServerGroupBackendServers",
         lambda c: c.remove_vserver_group_backend_servers(
             S.RemoveVServerGroupBackendServersRequest(
                 region_id=REGION, vserver_group_id=HTTP_GROUP,
                 backend_servers=_servers({"ServerId": SPOT, "Port": 80})))),
    *[_slb(f"remove-group-fault-{code}", "RemoveVServerGroupBackendServers",
           lambda c: c.remove_vserver_group_backend_servers(
               S.RemoveVServerGroupBackendServersRequest(
                   region_id=REGION, vserver_group_id=HTTP_GROUP,
                   backend_servers=_servers({"ServerId": SPOT, "Port": 80}))), code,
           lambda emu, code=code: emu.set_faults(  # type: ignore[misc]
               fail_next={"RemoveVServerGroupBackendServers": [code]}))
      for code in ("SystemBusy", "OperationBusy", "OperationFailed.ServiceGroupProcessing",
                   "BackendServerProcessing", "VpcSystemBusy", "LbStatusNotSupport")],
    _slb("set-group", "SetVServerGroupAttribute", lambda c: c.set_vserver_group_attribute(
        S.SetVServerGroupAttributeRequest(
            region_id=REGION, vserver_group_id=HTTP_GROUP,
            backend_servers=_servers({"ServerId": SPOT, "Port": 80, "Weight": 0})))),
    _slb("set-group-missing", "SetVServerGroupAttribute", lambda c: c.set_vserver_group_attribute(
        S.SetVServerGroupAttributeRequest(region_id=REGION, vserver_group_id=NO_GROUP,
                                          vserver_group_name="x")), "InvalidParameter"),
    _slb("modify-group", "ModifyVServerGroupBackendServers",
         lambda c: c.modify_vserver_group_backend_servers(
             S.ModifyVServerGroupBackendServersRequest(
                 region_id=REGION, vserver_group_id=API_GROUP,
                 old_backend_servers=_servers({"ServerId": SPOT, "Port": 8080}),
                 new_backend_servers=_servers({"ServerId": WEB_A, "Port": 8080, "Weight": 5})))),
    _slb("modify-group-unknown", "ModifyVServerGroupBackendServers",
         lambda c: c.modify_vserver_group_backend_servers(
             S.ModifyVServerGroupBackendServersRequest(
                 region_id=REGION, vserver_group_id=API_GROUP,
                 new_backend_servers=_servers({"ServerId": ABSENT, "Port": 8080}))),
         "InvalidServerId.NotExist"),
    _slb("describe-ms-groups", "DescribeMasterSlaveServerGroups",
         lambda c: c.describe_master_slave_server_groups(
             S.DescribeMasterSlaveServerGroupsRequest(region_id=REGION,
                                                       load_balancer_id=SECURE))),
    _slb("describe-ms-groups-missing-lb", "DescribeMasterSlaveServerGroups",
         lambda c: c.describe_master_slave_server_groups(
             S.DescribeMasterSlaveServerGroupsRequest(region_id=REGION, load_balancer_id=NO_LB)),
         "InvalidLoadBalancerId.NotFound"),
    _slb("describe-ms-group", "DescribeMasterSlaveServerGroupAttribute",
         lambda c: c.describe_master_slave_server_group_attribute(
             S.DescribeMasterSlaveServerGroupAttributeRequest(
                 region_id=REGION, master_slave_server_group_id=MS_GROUP))),
    _slb("describe-ms-group-missing", "DescribeMasterSlaveServerGroupAttribute",
         lambda c: c.describe_master_slave_server_group_attribute(
             S.DescribeMasterSlaveServerGroupAttributeRequest(
                 region_id=REGION, master_slave_server_group_id=NO_GROUP)), "InvalidParameter"),
    _slb("health", "DescribeHealthStatus", lambda c: c.describe_health_status(
        S.DescribeHealthStatusRequest(region_id=REGION, load_balancer_id=FRONT))),
    _slb("health-missing-lb", "DescribeHealthStatus", lambda c: c.describe_health_status(
        S.DescribeHealthStatusRequest(region_id=REGION, load_balancer_id=NO_LB)),
        "InvalidLoadBalancerId.NotFound"),
    # --- ActionTrail -------------------------------------------------------------------------
    Case("lookup-events", "actiontrail", "LookupEvents", "basic.yaml",
         lambda s: s.trail.lookup_events(T.LookupEventsRequest(max_results="5", lookup_attribute=[
             T.LookupEventsRequestLookupAttribute(key="ResourceName", value=WEB1)])),
         setup=lambda emu: emu.stop_instance(WEB1, by="user", user="alice")),
    Case("lookup-events-bad-time", "actiontrail", "LookupEvents", "basic.yaml",
         lambda s: s.trail.lookup_events(T.LookupEventsRequest(start_time="yesterday")),
         "InvalidParameter"),
]


@pytest.fixture(scope="module")
def contract() -> Contract:
    return load_contract()


def _sdk(emu: Emulator) -> Sdk:
    cred = emu.credentials[0]
    config = Config(endpoint=emu.endpoint, protocol="http", region_id=REGION,
                    access_key_id=cred["access_key_id"],
                    access_key_secret=cred["access_key_secret"],
                    read_timeout=5000, connect_timeout=2000)
    return Sdk(Ecs(config), Slb(config), Trail(config), emu)


@pytest.fixture
def emulators() -> Iterator[dict[str, Emulator]]:
    opened: dict[str, Emulator] = {}

    yield opened
    for emu in opened.values():
        emu.close()


def _run(case: Case, emulators: dict[str, Emulator]) -> tuple[Emulator, Call, Any]:
    emu = Emulator(load_fleet(FLEETS / case.fleet), start_delay_s=0.01)
    emulators[case.id] = emu
    if case.setup is not None:
        case.setup(emu)
    outcome: Any
    try:
        outcome = case.call(_sdk(emu))
    except TeaException as err:
        outcome = err
    calls = [c for c in emu.calls() if c.action == case.action]
    assert len(calls) == 1, f"{case.id}: {len(calls)} {case.action} calls"
    return emu, calls[0], outcome


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_action_answers_as_documented(case: Case, contract: Contract,
                                      emulators: dict[str, Emulator]) -> None:
    """The raw answer of one SDK call conforms to api-meta, and so does what the SDK sent."""
    emu, call, outcome = _run(case, emulators)
    assert call.body is not None
    if case.code is None:
        assert not isinstance(outcome, TeaException), f"{case.id}: {outcome}"
        assert (call.status, call.code) == (200, None)
        assert contract.check_response(case.product, case.action, call.body) == []
    else:
        assert isinstance(outcome, TeaException)
        assert (outcome.code, call.code, call.body["Code"]) == (case.code, case.code, case.code)
        assert call.status == outcome.data["statusCode"]
        assert call.status in contract.statuses_of(case.product, case.action, case.code)
        assert contract.check_error(case.product, case.action, call.status, case.code) == []
    # Only the cases that break a documented request rule on purpose send a bad request.
    expected = {"MissingParameter": [ViolationKind.MISSING_REQUIRED],
                "InvalidParameter.TooManyInstanceIds": [ViolationKind.BAD_PARAM_VALUE]}
    request = contract.check_request(case.product, case.action, call.params)
    assert [v.kind for v in request] == expected.get(case.code or "", [])
    assert emu.contract_violations() == []


def test_every_served_action_is_covered_in_success_and_error() -> None:
    """Each action of ECS, CLB and ActionTrail has a success case and an error case here, each
    CloudMonitor action in tests/test_emulator_cms.py, each ALB / NLB action in
    tests/test_emulator_alb.py / test_emulator_nlb.py, each ECS launch action in
    tests/test_emulator_launch.py."""
    from tests.test_emulator_alb import ALB_COVERED_ERROR, ALB_COVERED_OK
    from tests.test_emulator_cms import CMS_COVERED_ERROR, CMS_COVERED_OK
    from tests.test_emulator_launch import LAUNCH_COVERED_ERROR, LAUNCH_COVERED_OK
    from tests.test_emulator_nlb import NLB_COVERED_ERROR, NLB_COVERED_OK

    served = {(product, action) for product, actions, _ in PRODUCTS.values() for action in actions}
    ok = ({(c.product, c.action) for c in CASES if c.code is None} | CMS_COVERED_OK
          | ALB_COVERED_OK | NLB_COVERED_OK | LAUNCH_COVERED_OK)
    failing = ({(c.product, c.action) for c in CASES if c.code is not None} | CMS_COVERED_ERROR
               | ALB_COVERED_ERROR | NLB_COVERED_ERROR | LAUNCH_COVERED_ERROR)
    assert sorted(served - ok) == []
    assert sorted(served - failing) == []
    assert len(served) == 30 + 8 + 8 + 5


# --- the checker can fail ----------------------------------------------------------------------


def test_checker_flags_undocumented_fields_and_wrong_types(contract: Contract) -> None:
    """A body with ServerIp in a write answer, an integer Weight where a string is documented,
    a top-level Description and a string count is refused, field by field."""
    body = {"RequestId": "r", "LoadBalancerId": FRONT, "Description": "front",
            "BackendServers": {"BackendServer": [
                {"ServerId": SPOT, "Weight": 100, "Type": "ecs", "ServerIp": "10.0.1.21"}]}}
    found = contract.check_response("slb", "AddBackendServers", body)
    assert [(v.kind, v.where) for v in found] == [
        (ViolationKind.UNDOCUMENTED_FIELD, "Description"),
        (ViolationKind.WRONG_TYPE, "BackendServers.BackendServer[].Weight"),
        (ViolationKind.UNDOCUMENTED_FIELD, "BackendServers.BackendServer[].ServerIp"),
    ]
    listing = contract.check_response("ecs", "DescribeInstanceStatus", {
        "RequestId": "r", "TotalCount": "2", "PageNumber": True,
        "InstanceStatuses": {"InstanceStatus": [{"InstanceId": WEB1, "Status": 1}]}})
    assert [(v.kind, v.where) for v in listing] == [
        (ViolationKind.WRONG_TYPE, "TotalCount"), (ViolationKind.WRONG_TYPE, "PageNumber"),
        (ViolationKind.WRONG_TYPE, "InstanceStatuses.InstanceStatus[].Status")]


def test_checker_flags_job_statuses_no_page_lists(contract: Contract) -> None:
    """NLB GetJobStatus answers only Succeeded or processing (no Failed, no Processing), NLB and
    ALB ListAsynJobs only Succeeded, Failed or Processing: any other value is refused."""
    def kinds(product: str, action: str, body: dict[str, Any]) -> list[tuple[ViolationKind, str]]:
        return [(v.kind, v.where) for v in contract.check_response(product, action, body)]

    for ok in ("Succeeded", "processing"):
        assert kinds("nlb", "GetJobStatus", {"RequestId": "r", "Status": ok}) == []
    for bad in ("Failed", "Processing", "succeeded"):
        assert kinds("nlb", "nlb:GetJobStatus", {"RequestId": "r", "Status": bad}) == [
            (ViolationKind.UNDOCUMENTED_VALUE, "Status")]
    jobs = {"RequestId": "r", "TotalCount": 3, "Jobs": [
        {"Id": "j1", "Status": "Failed"}, {"Id": "j2", "Status": "processing"},
        {"Id": "j3", "Status": "Succeeded"}]}
    for product in ("nlb", "alb"):
        assert kinds(product, "ListAsynJobs", jobs) == [
            (ViolationKind.UNDOCUMENTED_VALUE, "Jobs[].Status")]


def test_checker_flags_undocumented_codes_and_statuses(contract: Contract) -> None:
    """An error code neither documented for the action nor platform-wide, or a documented code
    with another HTTP status, is refused; the known gaps are accepted through the table."""
    assert [v.kind for v in contract.check_error("ecs", "StartInstances", 400,
                                                 "DryRunOperation")] == [
        ViolationKind.UNDOCUMENTED_ERROR]
    assert len(contract.check_error("ecs", "StartInstance", 400, "IncorrectInstanceStatus")) == 1
    assert len(contract.check_error("slb", "DescribeVServerGroupAttribute", 404,
                                    "InvalidVServerGroupId.NotFound")) == 1
    assert contract.check_error("ecs", "StartInstances", 400, "DRYRUN.SUCCESS") == []
    assert contract.check_error("slb", "RemoveVServerGroupBackendServers", 400,
                                "OperationBusy") == []
    assert len(contract.check_error("slb", "DescribeLoadBalancers", 400, "OperationBusy")) == 1
    assert contract.check_error("actiontrail", "LookupEvents", 400, "Throttling.User") == []


def test_checker_flags_undocumented_and_missing_parameters(contract: Contract) -> None:
    """Parameters the action does not document, missing required ones, bad flattened lists."""
    found = contract.check_request("ecs", "StartInstances", {
        "RegionId": REGION, "InstanceIds": "[]", "DryRun": "maybe", "Tag.1.Key": "a",
        "Action": "StartInstances", "SignatureNonce": "n"})
    assert sorted((v.kind.value, v.where) for v in found) == [
        ("bad-param-value", "DryRun"), ("missing-required", "InstanceId"),
        ("undocumented-param", "InstanceIds"), ("undocumented-param", "Tag.1.Key")]
    assert contract.check_request("ecs", "DescribeInstances", {
        "RegionId": REGION, "Tag.1.Key": "env", "Tag.1.Value": "prod", "PageSize": "10"}) == []
    too_many = contract.check_request("actiontrail", "LookupEvents", {
        f"LookupAttribute.{n}.Key": "EventName" for n in range(1, 4)})
    assert [(v.kind, v.where) for v in too_many] == [
        (ViolationKind.BAD_PARAM_VALUE, "LookupAttribute")]


@pytest.mark.contract_exempt("sends an undocumented parameter (Filter.5.Key: api-meta documents "
                             "Filter.1..4) with the product's User-Agent, on purpose")
def test_product_requests_are_checked_and_sdk_test_requests_are_not() -> None:
    """The emulator records request violations only for the product's User-Agent."""
    filters = [E.DescribeInstancesRequestFilter(key="CreationStartTime", value="2026-01-01T00:00Z")
               for _ in range(5)]
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.01) as emu:
        cred = emu.credentials[0]
        plain = _sdk(emu).ecs
        product = Ecs(Config(endpoint=emu.endpoint, protocol="http", region_id=REGION,
                             user_agent="ecs-event-ops",
                             access_key_id=cred["access_key_id"],
                             access_key_secret=cred["access_key_secret"]))
        # WHEN a test client and the product both send a fifth Filter, and the product a
        # documented request
        plain.describe_instances(E.DescribeInstancesRequest(region_id=REGION, filter=filters))
        product.describe_instances(E.DescribeInstancesRequest(region_id=REGION))
        product.describe_instances(E.DescribeInstancesRequest(region_id=REGION, filter=filters))
        # THEN only the product's undocumented parameters are violations
        assert [c.from_product for c in emu.calls()] == [False, True, True]
        assert sorted(str(v) for v in emu.contract_violations()) == [
            "ecs:DescribeInstances undocumented-param at Filter.5.Key: not a documented "
            "parameter of the action",
            "ecs:DescribeInstances undocumented-param at Filter.5.Value: not a documented "
            "parameter of the action"]


def test_platform_table_names_a_source_for_every_entry() -> None:
    """Every platform-wide code names where it is documented; the table renders as Markdown."""
    assert all(entry.source.strip() for entry in PLATFORM_CODES)
    assert all(entry.statuses for entry in PLATFORM_CODES)
    assert len({(e.code, e.products, e.actions) for e in PLATFORM_CODES}) == len(PLATFORM_CODES)
    table = platform_table()
    assert table.count("\n") == len(PLATFORM_CODES) + 1


def test_fc_get_function_body_conforms() -> None:
    """FC 3.0 GetFunction (ROA, fc-2023-03-30.json): the raw JSON the emulator answers uses only
    fields of the documented ``Function`` schema, with their types. InvokeFunction's documented
    answer is the function's binary payload (``format: binary``), so there is no body schema to
    check, and the FC metadata lists no error codes for either action."""
    from alibabacloud_tea_openapi.client import Client as OpenApi
    from alibabacloud_tea_openapi.models import OpenApiRequest, Params
    from alibabacloud_tea_util.models import RuntimeOptions

    fc = Contract(files={"fc": "fc-2023-03-30.json"})
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.01) as emu:
        cred = emu.credentials[0]
        api = OpenApi(Config(endpoint=emu.endpoint, protocol="http", region_id=REGION,
                             access_key_id=cred["access_key_id"],
                             access_key_secret=cred["access_key_secret"]))
        params = Params(action="GetFunction", version="2023-03-30", protocol="HTTP",
                        pathname="/2023-03-30/functions/auto_start", method="GET",
                        auth_type="AK", style="ROA", req_body_type="json", body_type="json")
        answer = api.call_api(params, OpenApiRequest(), RuntimeOptions())
    body = answer["body"]
    assert (body["functionName"], body["runtime"]) == ("auto_start", "python3.10")
    assert fc.check_response("fc", "GetFunction", body) == []
    # AND the check can fail on this schema too
    assert [v.where for v in fc.check_response("fc", "GetFunction", {**body, "memory": 512,
                                                                       "timeout": "60"})] == [
        "timeout", "memory"]


def test_readme_carries_the_platform_table() -> None:
    """tools/emulator/README.md shows exactly the table the checker uses."""
    readme = (FLEETS.parent.parent.parent / "tools" / "emulator" / "README.md").read_text()
    assert platform_table() in readme
