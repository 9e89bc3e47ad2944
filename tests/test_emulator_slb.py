"""The emulator's CLB (SLB 2014-05-15) side, driven by the real Tea SDK over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_slb20140515 import models as slb_models
from alibabacloud_slb20140515.client import Client as Slb
from alibabacloud_tea_openapi.models import Config
from Tea.exceptions import TeaException

from tools.emulator import Emulator, load_fleet
from tools.emulator.fleet import Fleet, FleetError

FLEETS = Path(__file__).parent / "fixtures" / "fleets"
REGION = "cn-hangzhou"
SPOT = "i-bp1spot000000000001"
WEB1 = "i-bp1web0000000000001"
WEB2 = "i-bp1web0000000000002"
FRONT = "lb-bp1front000000000001"
SECURE = "lb-bp1secure0000000000001"
HTTP_GROUP = "rsp-bp1http00000000001"
API_GROUP = "rsp-bp1api000000000001"
HTTPS_GROUP = "rsp-bp1https0000000001"
MS_GROUP = "rsp-bp1ms000000000001"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "spot.yaml"), start_delay_s=0.01) as emulator:
        yield emulator


@pytest.fixture
def slb(emu: Emulator) -> Slb:
    cred = emu.credentials[0]
    return Slb(Config(endpoint=emu.endpoint, protocol="http", region_id=REGION,
                      access_key_id=cred["access_key_id"],
                      access_key_secret=cred["access_key_secret"]))


def api_error(call: Callable[[], object]) -> Any:
    with pytest.raises(TeaException) as info:
        call()
    return info.value


def members(slb: Slb, group: str) -> list[tuple[str, int, int]]:
    body = slb.describe_vserver_group_attribute(slb_models.DescribeVServerGroupAttributeRequest(
        region_id=REGION, vserver_group_id=group)).body
    return [(b.server_id, b.port, b.weight) for b in body.backend_servers.backend_server]


def test_describe_load_balancers_by_server_id_matches_every_group_kind(slb: Slb) -> None:
    """ServerId matches default, vServer and master-slave members (the emulator's choice)."""
    # GIVEN spot-1 in the default group of FRONT and in vServer/master-slave groups of SECURE
    # WHEN listing load balancers by server id
    spot = slb.describe_load_balancers(slb_models.DescribeLoadBalancersRequest(
        region_id=REGION, server_id=SPOT)).body
    web2 = slb.describe_load_balancers(slb_models.DescribeLoadBalancersRequest(
        region_id=REGION, server_id=WEB2)).body
    # THEN both CLBs are found for spot-1; web-2 (vServer member of FRONT only) finds FRONT
    assert [lb.load_balancer_id for lb in spot.load_balancers.load_balancer] == [FRONT, SECURE]
    assert [lb.load_balancer_id for lb in web2.load_balancers.load_balancer] == [FRONT]
    assert spot.total_count == 2


def test_describe_load_balancers_ids_tags_paging(slb: Slb) -> None:
    """LoadBalancerId comma list, Tags JSON and PageSize filter and page the CLBs."""
    by_ids = slb.describe_load_balancers(slb_models.DescribeLoadBalancersRequest(
        region_id=REGION, load_balancer_id=f"{SECURE},lb-bp1nothere000001")).body
    assert [lb.load_balancer_id for lb in by_ids.load_balancers.load_balancer] == [SECURE]
    tagged = slb.describe_load_balancers(slb_models.DescribeLoadBalancersRequest(
        region_id=REGION, tags=json.dumps([{"TagKey": "app", "TagValue": "web"}]))).body
    assert tagged.total_count == 2
    none = slb.describe_load_balancers(slb_models.DescribeLoadBalancersRequest(
        region_id=REGION, tags=json.dumps([{"TagKey": "env", "TagValue": "dev"}]))).body
    assert none.total_count == 0
    page2 = slb.describe_load_balancers(slb_models.DescribeLoadBalancersRequest(
        region_id=REGION, page_number=2, page_size=1)).body
    assert [lb.load_balancer_id for lb in page2.load_balancers.load_balancer] == [SECURE]
    tags = {t.tag_key: t.tag_value for t in page2.load_balancers.load_balancer[0].tags.tag}
    assert tags == {"env": "prod", "app": "web"}


def test_default_group_and_vserver_groups_are_described(slb: Slb) -> None:
    """DescribeLoadBalancerAttribute lists the default group; vServer groups know their LB."""
    attr = slb.describe_load_balancer_attribute(slb_models.DescribeLoadBalancerAttributeRequest(
        region_id=REGION, load_balancer_id=FRONT)).body
    assert [(b.server_id, b.weight, b.type) for b in attr.backend_servers.backend_server] == [
        (SPOT, 100, "ecs"), (WEB1, 100, "ecs")]
    assert attr.load_balancer_name == "front"
    groups = slb.describe_vserver_groups(slb_models.DescribeVServerGroupsRequest(
        region_id=REGION, load_balancer_id=FRONT)).body
    assert [(g.vserver_group_id, g.vserver_group_name) for g in groups.vserver_groups.vserver_group
            ] == [(HTTP_GROUP, "http"), (API_GROUP, "api")]
    group = slb.describe_vserver_group_attribute(slb_models.DescribeVServerGroupAttributeRequest(
        region_id=REGION, vserver_group_id=HTTPS_GROUP)).body
    assert group.load_balancer_id == SECURE
    assert group.vserver_group_name == "https"
    first = group.backend_servers.backend_server[0]
    assert (first.server_id, first.port, first.weight, first.type, first.server_ip) == (
        SPOT, 443, 100, "ecs", "10.0.1.21")


def test_remove_vserver_members_matches_server_and_port(slb: Slb, emu: Emulator) -> None:
    """Only (ServerId, Port) pairs that match are removed; the rest is silently ignored."""
    # GIVEN spot-1 on port 80 in the http group
    # WHEN removing it with the wrong port, a non-member, and then the right port
    wrong = slb.remove_vserver_group_backend_servers(
        slb_models.RemoveVServerGroupBackendServersRequest(
            region_id=REGION, vserver_group_id=HTTP_GROUP,
            backend_servers=json.dumps([{"ServerId": SPOT, "Port": 8080},
                                        {"ServerId": "i-bp1stranger000001", "Port": 80}]))).body
    right = slb.remove_vserver_group_backend_servers(
        slb_models.RemoveVServerGroupBackendServersRequest(
            region_id=REGION, vserver_group_id=HTTP_GROUP,
            backend_servers=json.dumps([{"ServerId": SPOT, "Port": "80", "Weight": 100,
                                         "Type": "ecs"}]))).body
    # THEN the first call changed nothing and the second removed exactly spot-1:80
    assert len(wrong.backend_servers.backend_server) == 3
    assert [(b.server_id, b.port) for b in right.backend_servers.backend_server] == [
        (WEB1, 80), (WEB2, 80)]
    assert right.vserver_group_id == HTTP_GROUP
    assert members(slb, API_GROUP)[0] == (SPOT, 8080, 80)
    assert [c.code for c in emu.calls()] == [None, None, None]


def test_backend_server_lists_over_twenty_are_refused(slb: Slb) -> None:
    """BackendServers with more than 20 entries is a 400 and changes nothing."""
    servers = [{"ServerId": WEB1, "Port": 1000 + n} for n in range(21)]
    err = api_error(lambda: slb.add_vserver_group_backend_servers(
        slb_models.AddVServerGroupBackendServersRequest(
            region_id=REGION, vserver_group_id=HTTP_GROUP, backend_servers=json.dumps(servers))))
    assert (err.code, err.data["statusCode"]) == ("InvalidParameter", 400)
    ok = slb.add_vserver_group_backend_servers(slb_models.AddVServerGroupBackendServersRequest(
        region_id=REGION, vserver_group_id=HTTP_GROUP, backend_servers=json.dumps(servers[:20])))
    assert len(ok.body.backend_servers.backend_server) == 23
    bad_json = api_error(lambda: slb.remove_backend_servers(
        slb_models.RemoveBackendServersRequest(region_id=REGION, load_balancer_id=FRONT,
                                               backend_servers="[{'ServerId':'" + SPOT + "'}]")))
    assert bad_json.code == "InvalidParameter"


def test_set_weight_then_add_back_and_modify(slb: Slb) -> None:
    """SetVServerGroupAttribute changes weights; Add/Modify re-add and replace members."""
    slb.set_vserver_group_attribute(slb_models.SetVServerGroupAttributeRequest(
        region_id=REGION, vserver_group_id=API_GROUP,
        backend_servers=json.dumps([{"ServerId": SPOT, "Port": 8080, "Weight": 0},
                                    {"ServerId": WEB1, "Port": 8080, "Weight": 0}])))
    assert members(slb, API_GROUP) == [(SPOT, 8080, 0), (WEB2, 8080, 100)]
    slb.modify_vserver_group_backend_servers(slb_models.ModifyVServerGroupBackendServersRequest(
        region_id=REGION, vserver_group_id=API_GROUP,
        old_backend_servers=json.dumps([{"ServerId": SPOT, "Port": 8080}]),
        new_backend_servers=json.dumps([{"ServerId": WEB1, "Port": 8080, "Weight": 50}])))
    assert members(slb, API_GROUP) == [(WEB2, 8080, 100), (WEB1, 8080, 50)]
    unknown = api_error(lambda: slb.add_vserver_group_backend_servers(
        slb_models.AddVServerGroupBackendServersRequest(
            region_id=REGION, vserver_group_id=API_GROUP,
            backend_servers=json.dumps([{"ServerId": "i-bp1unknown0000001", "Port": 80}]))))
    assert (unknown.code, unknown.data["statusCode"]) == ("InvalidServerId.NotExist", 400)
    missing = api_error(lambda: slb.describe_vserver_group_attribute(
        slb_models.DescribeVServerGroupAttributeRequest(region_id=REGION,
                                                        vserver_group_id="rsp-bp1nothere01")))
    assert (missing.code, missing.data["statusCode"]) == ("InvalidParameter", 400)
    assert "The specified VServerGroupId does not exist. (rsp-bp1nothere01)" in missing.message


def test_default_group_remove_add_set(slb: Slb) -> None:
    """Default-group members change through Remove/Add/SetBackendServers, old id-list form too."""
    removed = slb.remove_backend_servers(slb_models.RemoveBackendServersRequest(
        region_id=REGION, load_balancer_id=FRONT, backend_servers=json.dumps([SPOT]))).body
    assert [b.server_id for b in removed.backend_servers.backend_server] == [WEB1]
    added = slb.add_backend_servers(slb_models.AddBackendServersRequest(
        region_id=REGION, load_balancer_id=FRONT,
        backend_servers=json.dumps([{"ServerId": SPOT, "Weight": "30", "Type": "ecs"}]))).body
    # AddBackendServers and SetBackendServers document Weight as a string
    assert [(b.server_id, b.weight) for b in added.backend_servers.backend_server] == [
        (WEB1, "100"), (SPOT, "30")]
    weights = slb.set_backend_servers(slb_models.SetBackendServersRequest(
        region_id=REGION, load_balancer_id=FRONT,
        backend_servers=json.dumps([{"ServerId": SPOT, "Weight": "0"}]))).body
    assert [(b.server_id, b.weight) for b in weights.backend_servers.backend_server] == [
        (WEB1, "100"), (SPOT, "0")]
    missing = api_error(lambda: slb.describe_load_balancer_attribute(
        slb_models.DescribeLoadBalancerAttributeRequest(region_id=REGION,
                                                        load_balancer_id="lb-bp1nothere01")))
    assert (missing.code, missing.data["statusCode"]) == ("InvalidLoadBalancerId.NotFound", 404)


def test_master_slave_groups_are_described(slb: Slb) -> None:
    """Master-slave groups list their members with ServerType."""
    groups = slb.describe_master_slave_server_groups(
        slb_models.DescribeMasterSlaveServerGroupsRequest(region_id=REGION,
                                                          load_balancer_id=SECURE)).body
    assert [g.master_slave_server_group_id
            for g in groups.master_slave_server_groups.master_slave_server_group] == [MS_GROUP]
    attr = slb.describe_master_slave_server_group_attribute(
        slb_models.DescribeMasterSlaveServerGroupAttributeRequest(
            region_id=REGION, master_slave_server_group_id=MS_GROUP)).body
    assert attr.load_balancer_id == SECURE
    assert [(s.server_id, s.port, s.weight, s.server_type)
            for s in attr.master_slave_backend_servers.master_slave_backend_server] == [
        (WEB1, 80, 100, "Master"), (SPOT, 80, 100, "Slave")]


def test_health_status_follows_instance_state(slb: Slb, emu: Emulator) -> None:
    """Members are normal while Running and abnormal once stopped or released."""
    def health(port: int) -> dict[str, str]:
        body = slb.describe_health_status(slb_models.DescribeHealthStatusRequest(
            region_id=REGION, load_balancer_id=FRONT, listener_port=port)).body
        return {f"{b.server_id}:{b.port}": b.server_health_status
                for b in body.backend_servers.backend_server}

    assert health(8080) == {f"{SPOT}:8080": "normal", f"{WEB2}:8080": "normal"}
    assert health(8000) == {f"{SPOT}:8000": "normal", f"{WEB1}:8000": "normal"}
    emu.stop_instance(WEB2, by="user")
    emu.wait_for_status(WEB2, "Stopped", timeout_s=2)
    emu.release(SPOT)
    assert health(8080) == {f"{SPOT}:8080": "abnormal", f"{WEB2}:8080": "abnormal"}


def test_adding_refuses_what_clb_refuses_and_counts_duplicates_once(slb: Slb,
                                                                    emu: Emulator) -> None:
    """Adds: identical servers in one request count once; an existing member, an unknown or a
    non-Running server is refused with the documented code, and nothing changes."""
    # WHEN adding web-2 twice in one request to the api group's port 9090
    added = slb.add_vserver_group_backend_servers(slb_models.AddVServerGroupBackendServersRequest(
        region_id=REGION, vserver_group_id=API_GROUP,
        backend_servers=json.dumps([{"ServerId": WEB2, "Port": 9090, "Weight": 7},
                                    {"ServerId": WEB2, "Port": 9090, "Weight": 9}]))).body
    # THEN it is added once, with the first entry's weight
    assert [(b.server_id, b.port, b.weight) for b in added.backend_servers.backend_server] == [
        (SPOT, 8080, 80), (WEB2, 8080, 100), (WEB2, 9090, 7)]
    before = members(slb, API_GROUP)
    # AND an existing member, an unknown server and a stopped one are refused
    emu.stop_instance(WEB1, by="crash")
    emu.wait_for_status(WEB1, "Stopped", timeout_s=2)
    refusals = [api_error(lambda entry=entry: slb.add_vserver_group_backend_servers(  # type: ignore[misc]
        slb_models.AddVServerGroupBackendServersRequest(
            region_id=REGION, vserver_group_id=API_GROUP, backend_servers=json.dumps([entry]))))
        for entry in ({"ServerId": SPOT, "Port": 8080}, {"ServerId": "i-bp1unknown000001",
                                                          "Port": 8080},
                      {"ServerId": WEB1, "Port": 8080})]
    assert [(r.code, r.data["statusCode"]) for r in refusals] == [
        ("InvalidParameter", 400), ("InvalidServerId.NotExist", 400), ("InvalidParameter", 400)]
    assert "already exists" in refusals[0].message
    assert "only Running servers can be added" in refusals[2].message
    default = api_error(lambda: slb.add_backend_servers(slb_models.AddBackendServersRequest(
        region_id=REGION, load_balancer_id=FRONT,
        backend_servers=json.dumps([{"ServerId": WEB1}]))))
    assert (default.code, default.data["statusCode"]) == ("InvalidParameter", 400)
    assert f"{WEB1} is Stopped; only Running servers can be added" in default.message
    assert members(slb, API_GROUP) == before
    # AND a missing required RegionId is the documented MissingParameter
    no_region = api_error(lambda: slb.remove_vserver_group_backend_servers(
        slb_models.RemoveVServerGroupBackendServersRequest(
            vserver_group_id=API_GROUP, backend_servers=json.dumps([{"ServerId": SPOT,
                                                                     "Port": 8080}]))))
    assert (no_region.code, no_region.data["statusCode"]) == ("MissingParameter", 400)
    assert members(slb, API_GROUP) == before


def test_health_passes_a_delay_after_running_never_or_is_unavailable_without_check() -> None:
    """GIVEN an instance that becomes Running after the emulator starts, healthy_after_s 30,
    a listener with a health check (default group) and one without (a vServer group)
    WHEN DescribeHealthStatus is asked along the clock
    THEN it is abnormal until 30 s after Running, then normal; ``never`` keeps it abnormal; the
    listener without a health check says unavailable throughout."""
    iid, lb, group = "i-bp1health0000000001", "lb-bp1health000000001", "rsp-bp1health00000001"
    fleet = Fleet.from_dict({
        "instances": [{"id": iid, "status": "Starting"}],
        "load_balancers": [{
            "id": lb, "default_servers": [{"server_id": iid}],
            "vserver_groups": [{"id": group, "servers": [{"server_id": iid, "port": 8080}]}],
            "listeners": [{"port": 80}, {"port": 8080, "vserver_group_id": group,
                                         "health_check": False}]}],
        "provisioning": {"healthy_after_s": 30},
    })
    with Emulator(fleet, start_delay_s=0.01) as emu:
        client = Slb(Config(**emu.credentials[0], endpoint=emu.endpoint, protocol="http",
                            region_id=REGION))

        def health() -> dict[int, str]:
            body = client.describe_health_status(slb_models.DescribeHealthStatusRequest(
                region_id=REGION, load_balancer_id=lb)).body
            return {b.listener_port: b.server_health_status
                    for b in body.backend_servers.backend_server if b.server_id == iid}

        assert health() == {80: "abnormal", 8080: "unavailable"}  # Starting
        emu.wait_for_status(iid, "Running", timeout_s=2)
        assert health() == {80: "abnormal", 8080: "unavailable"}  # Running, not 30 s yet
        emu.advance_clock(29)
        assert health()[80] == "abnormal"
        emu.advance_clock(2)
        assert health() == {80: "normal", 8080: "unavailable"}
        emu.set_healthy_after(None)
        assert health() == {80: "abnormal", 8080: "unavailable"}


def test_fleet_health_settings_are_validated() -> None:
    with pytest.raises(FleetError, match=r"provisioning.healthy_after_s"):
        Fleet.from_dict({"provisioning": {"healthy_after_s": "soon"}})
    with pytest.raises(FleetError, match=r"listeners\[0\].health_check"):
        Fleet.from_dict({"load_balancers": [{"id": "lb-bp1x0001",
                                             "listeners": [{"port": 80,
                                                            "health_check": "yes"}]}]})
    assert Fleet.from_dict({"provisioning": {"healthy_after_s": "never"}}
                           ).provisioning.healthy_after_s is None
