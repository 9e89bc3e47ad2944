"""The emulator's launch side (ECS 2014-05-26), driven by the real Tea SDK over HTTP.

RunInstances (ClientToken, DryRun, Tag.N, launch templates, stock per offering, boot time),
DescribeRecommendInstanceType, DescribeInstanceRamRole, DescribeUserData and
DescribeLaunchTemplateVersions against tests/fixtures/fleets/replace.yaml; every answer is
checked against api-meta by the conformance plugin as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models
from alibabacloud_ecs20140526.client import Client as Ecs

from tests.helpers import FLEETS, api_error, sdk_config
from tools.emulator import Emulator, Fleet, load_fleet
from tools.emulator.fleet import FleetError

REGION = "cn-hangzhou"
IMAGE = "aliyun_3_x64_20G_alibase_20240819.vhd"
VSW_H = "vsw-bp1zoneh0000000001"
VSW_I = "vsw-bp1zonei0000000001"
SG = "sg-bp1web000000000001"
SPOT1 = "i-bp1spot000000000001"
SPOT2 = "i-bp1spot000000000002"
TEMPLATE = "lt-bp1web000000000001"
# The actions this file drives to a success and to an error (tests/test_conformance.py checks
# every served action is covered).
LAUNCH_ACTIONS = {("ecs", a) for a in ("RunInstances", "DescribeRecommendInstanceType",
                                       "DescribeInstanceRamRole", "DescribeUserData",
                                       "DescribeLaunchTemplateVersions")}
LAUNCH_COVERED_OK = LAUNCH_ACTIONS
LAUNCH_COVERED_ERROR = LAUNCH_ACTIONS


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "replace.yaml"), start_delay_s=0.01) as emulator:
        yield emulator
        assert emulator.contract_violations() == []


@pytest.fixture
def ecs(emu: Emulator) -> Ecs:
    return Ecs(sdk_config(emu, REGION))


def status_of(error: Any) -> int:
    return int(error.data.get("statusCode"))


def run(ecs: Ecs, **overrides: Any) -> Any:
    request: dict[str, Any] = {
        "region_id": REGION, "instance_type": "ecs.g7.large", "image_id": IMAGE,
        "v_switch_id": VSW_H, "security_group_ids": [SG], "spot_strategy": "SpotAsPriceGo",
        "amount": 1, **overrides}
    return ecs.run_instances(models.RunInstancesRequest(**request)).body


# --- RunInstances ------------------------------------------------------------------------------


def test_run_instances_boots_pending_starting_running_and_shows_what_it_was_given(
    emu: Emulator, ecs: Ecs
) -> None:
    """One instance per Amount, Pending at once, Running after the fleet's boot_s; its vSwitch,
    groups, key pair, tags and spot strategy as DescribeInstances shows them."""
    body = run(ecs, key_pair_name="ops", instance_name="succ-1",
               tag=[models.RunInstancesRequestTag(key="replaces", value=SPOT1)])
    (iid,) = body.instance_id_sets.instance_id_set
    assert body.trade_price == pytest.approx(0.1)
    assert emu.instance(iid)["status"] == "Pending"
    emu.wait_for_status(iid, "Running", timeout_s=5)
    states = [e["content"]["state"] for e in emu.events()
              if e["name"] == "Instance:StateChange" and e["content"]["resourceId"] == iid]
    assert states == ["Pending", "Starting", "Running"]
    shown = ecs.describe_instances(models.DescribeInstancesRequest(
        region_id=REGION, instance_ids=json.dumps([iid]))).body.instances.instance[0]
    assert shown.vpc_attributes.v_switch_id == VSW_H
    assert shown.zone_id == "cn-hangzhou-h"
    assert shown.security_group_ids.security_group_id == [SG]
    assert shown.key_pair_name == "ops"
    assert shown.spot_strategy == "SpotAsPriceGo"
    assert {(t.tag_key, t.tag_value) for t in shown.tags.tag} == {("replaces", SPOT1)}
    assert [t["eventName"] for t in emu.trail()] == ["RunInstances"]


def test_a_client_token_repeated_answers_the_first_launch_and_launches_nothing(
    emu: Emulator, ecs: Ecs
) -> None:
    first = run(ecs, client_token="rpl-token-1").instance_id_sets.instance_id_set
    again = run(ecs, client_token="rpl-token-1").instance_id_sets.instance_id_set
    assert again == first
    assert len(emu.launched()) == 1
    # Other parameters under the same token: refused, nothing launched
    error = api_error(lambda: run(ecs, client_token="rpl-token-1", v_switch_id="vsw-bp1zonej0000000001"))
    assert (error.code, status_of(error)) == ("IdempotentParameterMismatch", 400)
    assert len(emu.launched()) == 1
    # A token longer than 64 characters
    error = api_error(lambda: run(ecs, client_token="x" * 65))
    assert error.code == "InvalidClientToken.ValueNotSupported"


def test_dry_run_checks_everything_stock_included_and_launches_nothing(
    emu: Emulator, ecs: Ecs
) -> None:
    error = api_error(lambda: run(ecs, dry_run=True))
    assert (error.code, status_of(error)) == ("DryRunOperation", 400)
    sold_out = api_error(lambda: run(ecs, dry_run=True, v_switch_id=VSW_I))
    assert (sold_out.code, status_of(sold_out)) == ("OperationDenied.NoStock", 403)
    assert emu.launched() == []
    assert [i["id"] for i in emu.state()["instances"] if i["id"].startswith("i-rpl")] == []


def test_stock_is_per_type_zone_and_spot_strategy(emu: Emulator, ecs: Ecs) -> None:
    """g7 spot is sold out in zone i (the fleet); on-demand g7 there still launches; an offering
    set to one launch answers its configured code after it."""
    error = api_error(lambda: run(ecs, v_switch_id=VSW_I))
    assert (error.code, status_of(error)) == ("OperationDenied.NoStock", 403)
    assert run(ecs, v_switch_id=VSW_I, spot_strategy="NoSpot").instance_id_sets.instance_id_set
    emu.set_stock("ecs.g7.large", "cn-hangzhou-h", "SpotAsPriceGo", 1, "Zone.NotOnSale")
    assert run(ecs).instance_id_sets.instance_id_set
    error = api_error(lambda: run(ecs))
    assert (error.code, status_of(error)) == ("Zone.NotOnSale", 400)
    # MinAmount: two asked, one left, one is enough
    emu.set_stock("ecs.g7.large", "cn-hangzhou-h", "SpotAsPriceGo", 1)
    body = run(ecs, amount=2, min_amount=1)
    assert len(body.instance_id_sets.instance_id_set) == 1
    emu.set_stock("ecs.g7.large", "cn-hangzhou-h", "SpotAsPriceGo", None)
    assert len(run(ecs, amount=3).instance_id_sets.instance_id_set) == 3


def test_tags_are_checked_as_documented(ecs: Ecs) -> None:
    system = api_error(lambda: run(ecs, tag=[models.RunInstancesRequestTag(key="acs:x", value="1")]))
    assert system.code == "InvalidTagKey.Malformed"
    aliyun = api_error(lambda: run(ecs, tag=[models.RunInstancesRequestTag(key="aliyun-k", value="1")]))
    assert aliyun.code == "InvalidTagKey.Malformed"
    many = [models.RunInstancesRequestTag(key=f"k{n}", value="v") for n in range(21)]
    assert api_error(lambda: run(ecs, tag=many)).code == "InvalidTagCount"


def test_network_and_group_parameters_are_checked(ecs: Ecs) -> None:
    assert api_error(lambda: run(ecs, v_switch_id=None)).code == "InvalidVSwitchId.Necessary"
    missing = api_error(lambda: run(ecs, v_switch_id="vsw-bp1nowhere00000001"))
    assert (missing.code, status_of(missing)) == ("InvalidVSwitchId.NotFound", 404)
    both = api_error(lambda: run(ecs, security_group_id=SG))
    assert both.code == "InvalidSecurityGroupId.SingleIdAndMultiIdConflict"
    zone = api_error(lambda: run(ecs, zone_id="cn-hangzhou-i"))
    assert zone.code == "InvalidParameter.Mismatch"
    role = api_error(lambda: run(ecs, ram_role_name="nobody"))
    assert (role.code, status_of(role)) == ("InvalidRamRole.NotFound", 404)
    image = api_error(lambda: run(ecs, image_id="m-unknown"))
    assert (image.code, status_of(image)) == ("InvalidImageId.NotFound", 404)
    price = api_error(lambda: run(ecs, spot_price_limit=0.5))
    assert price.code == "InvalidSpotPriceLimit"


def test_a_launch_template_version_fills_what_the_request_leaves_out(
    emu: Emulator, ecs: Ecs
) -> None:
    """Version 2 gives type, image, vSwitch, groups, role, spot and a tag; the default version
    (1) only a type; an unknown template or version answers the documented 404s."""
    body = ecs.run_instances(models.RunInstancesRequest(
        region_id=REGION, launch_template_id=TEMPLATE, launch_template_version=2)).body
    (iid,) = body.instance_id_sets.instance_id_set
    shown = emu.instance(iid)
    assert shown["tags"] == {"from": "template"}
    assert shown["spot_strategy"] == "SpotAsPriceGo"
    roles = ecs.describe_instance_ram_role(models.DescribeInstanceRamRoleRequest(
        region_id=REGION, instance_ids=json.dumps([iid]))).body
    assert [r.ram_role_name for r in roles.instance_ram_role_sets.instance_ram_role_set] == [
        "web-role"]
    default = api_error(lambda: ecs.run_instances(models.RunInstancesRequest(
        region_id=REGION, launch_template_id=TEMPLATE)))
    assert default.code == "MissingParameter"  # version 1 has no image
    unknown = api_error(lambda: ecs.run_instances(models.RunInstancesRequest(
        region_id=REGION, launch_template_id="lt-bp1nothere000000001")))
    assert (unknown.code, status_of(unknown)) == ("InvalidLaunchTemplate.NotFound", 404)
    version = api_error(lambda: ecs.run_instances(models.RunInstancesRequest(
        region_id=REGION, launch_template_id=TEMPLATE, launch_template_version=9)))
    assert (version.code, status_of(version)) == ("InvalidLaunchTemplateVersion.NotFound", 404)


# --- the reads -------------------------------------------------------------------------------


def test_recommend_instance_type_puts_offerings_with_stock_first(emu: Emulator, ecs: Ecs) -> None:
    def ask(**extra: Any) -> list[tuple[str, str]]:
        data = ecs.describe_recommend_instance_type(models.DescribeRecommendInstanceTypeRequest(
            region_id=REGION, network_type="vpc", instance_type="ecs.g7.large",
            spot_strategy="SpotAsPriceGo", priority_strategy="InventoryFirst", **extra)).body
        return [(r.instance_type.instance_type, r.zone_id)
                for r in data.data.recommend_instance_type]

    offers = ask()
    assert ("ecs.g7.large", "cn-hangzhou-i") not in offers  # sold out there
    assert ("ecs.g6.large", "cn-hangzhou-i") in offers
    assert all(kind != "ecs.c7.large" for kind, _ in offers)  # less memory
    emu.set_stock("ecs.g6.large", "cn-hangzhou-j", "SpotAsPriceGo", 5)
    ordered = ask()
    assert ordered.index(("ecs.g6.large", "cn-hangzhou-h")) < ordered.index(
        ("ecs.g6.large", "cn-hangzhou-j"))  # unlimited before five left
    for kind in ("ecs.g7.large", "ecs.g6.large"):
        for zone in ("h", "i", "j", "k"):
            emu.set_stock(kind, f"cn-hangzhou-{zone}", "SpotAsPriceGo", 0)
    empty = api_error(ask)
    assert (empty.code, status_of(empty)) == ("RecommendEmpty.InstanceTypeSoldOut", 400)
    conflict = api_error(lambda: ask(cores=2))
    assert conflict.code == "InvalidParam.TypeAndCpuMem.Conflict"


def test_ram_role_and_user_data_are_what_describe_instances_does_not_show(ecs: Ecs) -> None:
    roles = ecs.describe_instance_ram_role(models.DescribeInstanceRamRoleRequest(
        region_id=REGION, instance_ids=json.dumps([SPOT1, SPOT2]))).body
    assert roles.total_count == 1
    assert [(r.instance_id, r.ram_role_name)
            for r in roles.instance_ram_role_sets.instance_ram_role_set] == [(SPOT1, "web-role")]
    assert ecs.describe_user_data(models.DescribeUserDataRequest(
        region_id=REGION, instance_id=SPOT1)).body.user_data == "c2VjcmV0PWh1bnRlcjI="
    assert ecs.describe_user_data(models.DescribeUserDataRequest(
        region_id=REGION, instance_id=SPOT2)).body.user_data == ""
    gone = api_error(lambda: ecs.describe_user_data(models.DescribeUserDataRequest(
        region_id=REGION, instance_id="i-bp1nothere0000000001")))
    assert (gone.code, status_of(gone)) == ("InvalidInstanceId.NotFound", 404)
    empty = api_error(lambda: ecs.describe_instance_ram_role(
        models.DescribeInstanceRamRoleRequest(region_id=REGION)))
    assert (empty.code, status_of(empty)) == ("InvalidParameter.AllEmpty", 403)
    bad = api_error(lambda: ecs.describe_instance_ram_role(models.DescribeInstanceRamRoleRequest(
        region_id=REGION, instance_ids="i-1,i-2")))
    assert bad.code == "InvalidInstanceIds.Malformed"


def test_launch_template_versions_by_number_and_default(ecs: Ecs) -> None:
    def versions(**extra: Any) -> list[tuple[int, bool, str]]:
        body = ecs.describe_launch_template_versions(
            models.DescribeLaunchTemplateVersionsRequest(region_id=REGION,
                                                         launch_template_id=TEMPLATE,
                                                         **extra)).body
        return [(v.version_number, v.default_version, v.launch_template_data.instance_type)
                for v in body.launch_template_version_sets.launch_template_version_set]

    assert versions() == [(1, True, "ecs.g6.large"), (2, False, "ecs.g7.large")]
    assert versions(launch_template_version=[2]) == [(2, False, "ecs.g7.large")]
    assert versions(default_version=True) == [(1, True, "ecs.g6.large")]
    missing = api_error(lambda: ecs.describe_launch_template_versions(
        models.DescribeLaunchTemplateVersionsRequest(region_id=REGION,
                                                     launch_template_id="lt-bp1none0000000001")))
    assert (missing.code, status_of(missing)) == ("InvalidLaunchTemplate.NotFound", 404)


# --- the fleet file ------------------------------------------------------------------------------


@pytest.mark.parametrize(("provisioning", "message"), [
    ({"vswitches": [{"id": "vsw-x", "zone": "cn-hangzhou-h"}]},
     "provisioning.vswitches[0].id: 'vsw-x' does not match"),
    ({"stock": [{"instance_type": "ecs.g7.large", "zone": "cn-hangzhou-h", "count": -1}]},
     "provisioning.stock[0].count: -1 is not within 0..100000"),
    ({"stock": [{"instance_type": "ecs.g7.large", "zone": "cn-hangzhou-h", "count": 0,
                 "answer": "SoldOut"}]},
     "provisioning.stock[0].answer: 'SoldOut' is not one of"),
    ({"instances": {"i-bp1nobody00000000001": {"ram_role_name": "r"}}},
     "provisioning.instances.i-bp1nobody00000000001: not an instance of the fleet"),
    ({"launch_templates": [{"id": "lt-bp1web000000000001", "versions": [
        {"number": 1, "default": True}, {"number": 2, "default": True}]}]},
     "provisioning.launch_templates[0].versions: more than one default version"),
    ({"boot": 1}, "provisioning.boot: unknown key"),
])
def test_the_fleet_file_provisioning_section_is_validated_strictly(
    provisioning: dict[str, Any], message: str
) -> None:
    doc = {"instances": [{"id": "i-bp1spot000000000001"}], "provisioning": provisioning}
    with pytest.raises(FleetError) as caught:
        Fleet.from_dict(doc)
    assert str(caught.value).startswith(message)
