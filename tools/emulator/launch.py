"""ECS 2014-05-26 launch actions: RunInstances and what a launch needs to copy an instance.

RunInstances, DescribeRecommendInstanceType, DescribeInstanceRamRole, DescribeUserData and
DescribeLaunchTemplateVersions, over the fleet file's ``provisioning`` section (vSwitches,
security groups, images, RAM roles, instance types, launch templates and the stock of each
(instance type, zone, spot strategy)). Merged into :data:`tools.emulator.ecs.ACTIONS` (this
module uses its parameter helpers and is imported at the end of it).

What the answers follow (api-meta ecs-2014-05-26.json and the reference's §4.2):
* ``ClientToken``: the same token with the same parameters answers the first call's instance
  ids and creates nothing; with other parameters ``IdempotentParameterMismatch`` (the ECS
  idempotence page; tools/emulator/contract.py PLATFORM_CODES).
* ``DryRun``: every check (parameters, resources, stock) and then ``DryRunOperation``.
* stock: an offering whose count is used up answers its ``answer`` (default
  ``OperationDenied.NoStock``, 403); ``MinAmount`` launches what is left when that is enough.
* boot: Pending, then Starting and Running after the fleet's ``boot_s`` (half each).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from tools.emulator.ecs import Context, Handler, flag, indexed, integer, page_args, require
from tools.emulator.fleet import (
    SPOT_STRATEGIES,
    InstanceTypeSpec,
    LaunchAttributes,
    LaunchTemplateSpec,
    TemplateVersionSpec,
)
from tools.emulator.world import ApiError, Instance, World

__all__ = ["LAUNCH_ACTIONS"]

MAX_TAGS = 20
DEFAULT_IMAGE = "aliyun_3_x64_20G_alibase_20240819.vhd"
_TAG_INDEX = re.compile(r"^Tag\.(\d+)\.(Key|Value)$")
# Prices of the emulated offerings (TradePrice is a float in the contract).
ON_DEMAND_PRICE = 0.5
SPOT_PRICE = 0.1


def _fingerprint(params: Mapping[str, str]) -> str:
    """What makes two requests with one ClientToken "the same request"."""
    kept = {k: v for k, v in params.items() if k not in ("ClientToken", "DryRun")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def _tags(params: Mapping[str, str]) -> dict[str, str]:
    found: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        match = _TAG_INDEX.match(key)
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if len(found) > MAX_TAGS or any(n > MAX_TAGS or n < 1 for n in found):
        raise ApiError("InvalidTagCount", f"At most {MAX_TAGS} tags can be specified.")
    tags: dict[str, str] = {}
    for n in sorted(found):
        key = found[n].get("Key", "")
        if not key or key.startswith(("aliyun", "acs:")) or len(key) > 128:
            raise ApiError("InvalidTagKey.Malformed", f"The specified Tag.{n}.Key is not valid "
                           "(empty, longer than 128 characters, or starting with aliyun or "
                           "acs:).")
        value = found[n].get("Value", "")
        if len(value) > 128:
            raise ApiError("InvalidTagValue.Malformed", f"The specified Tag.{n}.Value is not "
                           "valid.")
        if key in tags:
            raise ApiError("Duplicate.TagKey", f"The Tag.{n}.Key {key} is duplicated.")
        tags[key] = value
    return tags


def _template_version(world: World, params: Mapping[str, str]) -> TemplateVersionSpec | None:
    tid = params.get("LaunchTemplateId")
    name = params.get("LaunchTemplateName")
    if not tid and not name:
        return None
    template = _template(world, tid, name)
    wanted = params.get("LaunchTemplateVersion")
    if not wanted:
        return next(v for v in template.versions if v.default)
    number = integer(params, "LaunchTemplateVersion", 0, 1, 10**6)
    for version in template.versions:
        if version.number == number:
            return version
    raise ApiError("InvalidLaunchTemplateVersion.NotFound", f"The specified version {number} of "
                   f"launch template {template.id} does not exist.", 404)


def _template(world: World, tid: str | None, name: str | None) -> LaunchTemplateSpec:
    for template in world.fleet.provisioning.launch_templates:
        if (tid and template.id == tid) or (not tid and name and template.name == name):
            return template
    raise ApiError("InvalidLaunchTemplate.NotFound", f"The specified launch template "
                   f"{tid or name} does not exist.", 404)


def _known_images(world: World) -> set[str]:
    declared = set(world.fleet.provisioning.images)
    return declared or {i.image_id for i in world.fleet.instances} | {DEFAULT_IMAGE}


def _spot_price_limit(params: Mapping[str, str], strategy: str, base: float | None) -> float:
    raw = params.get("SpotPriceLimit")
    if raw in (None, ""):
        return base or 0.0
    if strategy != "SpotWithPriceLimit":
        raise ApiError("InvalidSpotPriceLimit", "SpotPriceLimit is valid only with "
                       "SpotStrategy SpotWithPriceLimit.")
    try:
        return float(raw)
    except ValueError:
        raise ApiError("InvalidSpotPriceLimit", "The specified SpotPriceLimit is not valid.") \
            from None


def run_instances(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    if require(params, "RegionId") != world.region:
        raise ApiError("InvalidRegionId.NotFound", "The specified RegionId does not exist.", 404)
    token = params.get("ClientToken") or ""
    if token and (len(token) > 64 or not token.isascii()):
        raise ApiError("InvalidClientToken.ValueNotSupported", "The ClientToken is longer than "
                       "64 ASCII characters.")
    fingerprint = _fingerprint(params)
    dry_run = flag(params, "DryRun")
    if token and token in world.client_tokens and not dry_run:
        seen, ids = world.client_tokens[token]
        if seen != fingerprint:
            raise ApiError("IdempotentParameterMismatch", "The request uses the same client "
                           "token as a previous, but non-identical request.", 400)
        return _run_answer(world, ids)
    version = _template_version(world, params)
    base = version.data if version is not None else LaunchAttributes()
    instance_type = params.get("InstanceType") or base.instance_type
    image_id = params.get("ImageId") or base.image_id
    if not instance_type:
        raise ApiError("MissingParameter", "The input parameter \"InstanceType\" that is "
                       "mandatory for processing this request is not supplied.")
    if not image_id:
        raise ApiError("MissingParameter", "The input parameter \"ImageId\" that is mandatory "
                       "for processing this request is not supplied.")
    if image_id not in _known_images(world):
        raise ApiError("InvalidImageId.NotFound", f"The specified ImageId {image_id} does not "
                       "exist.", 404)
    vsw_id = params.get("VSwitchId") or base.vswitch_id
    if not vsw_id:
        raise ApiError("InvalidVSwitchId.Necessary", "VSwitchId is required for an instance "
                       "in a VPC.")
    vsw = world.vswitches.get(vsw_id)
    if vsw is None:
        raise ApiError("InvalidVSwitchId.NotFound", f"The specified VSwitchId {vsw_id} does "
                       "not exist.", 404)
    zone = params.get("ZoneId") or vsw.zone
    if zone != vsw.zone:
        raise ApiError("InvalidParameter.Mismatch", f"The ZoneId {zone} does not match the "
                       f"zone of VSwitch {vsw_id}.")
    single = params.get("SecurityGroupId")
    multiple = indexed(params, "SecurityGroupIds", 16)
    if single and multiple:
        raise ApiError("InvalidSecurityGroupId.SingleIdAndMultiIdConflict", "SecurityGroupId "
                       "and SecurityGroupIds cannot be set together.")
    groups = [single] if single else multiple or list(base.security_group_ids)
    known_groups = set(world.fleet.provisioning.security_groups)
    for group in groups:
        if known_groups and group not in known_groups:
            raise ApiError("InvalidSecurityGroupId.NotFound", f"The specified SecurityGroupId "
                           f"{group} does not exist.", 404)
    role = params.get("RamRoleName") or base.ram_role_name
    if role and role not in world.fleet.provisioning.ram_roles:
        raise ApiError("InvalidRamRole.NotFound", f"The specified RAM role {role} does not "
                       "exist.", 404)
    user_data = params.get("UserData") or base.user_data
    if user_data is not None and not re.fullmatch(r"[A-Za-z0-9+/=]*", user_data):
        raise ApiError("InvalidUserData.Base64FormatInvalid", "The UserData is not Base64.")
    strategy = params.get("SpotStrategy") or base.spot_strategy or "NoSpot"
    if strategy not in SPOT_STRATEGIES:
        raise ApiError("InvalidSpotStrategy", f"The specified SpotStrategy {strategy} is not "
                       "valid.")
    price_limit = _spot_price_limit(params, strategy, base.spot_price_limit)
    behavior = params.get("SpotInterruptionBehavior") or "Terminate"
    if behavior not in ("Terminate", "Stop"):
        raise ApiError("InvalidSpotInterruptionBehavior", f"The specified "
                       f"SpotInterruptionBehavior {behavior} is not valid.")
    integer(params, "SpotDuration", 1, 0, 1)
    amount = integer(params, "Amount", 1, 1, 100)
    min_amount = integer(params, "MinAmount", amount, 1, 100)
    if min_amount > amount:
        raise ApiError("InvalidMinAmount.Malformed", "MinAmount is greater than Amount.")
    tags = {**dict(base.tags), **_tags(params)}
    left = world.stock_left(instance_type, zone, strategy)
    if left is not None and left < min_amount:
        code = world.stock_answer(instance_type, zone, strategy)
        raise ApiError(code, f"The requested resource ({instance_type}, {zone}, {strategy}) is "
                       "sold out in the specified zone; try other types of resources or other "
                       "regions and zones.", ctx.status_of(code) if ctx.status_of else None)
    if dry_run:
        raise ApiError("DryRunOperation", "Request validation has been passed with DryRun flag "
                       "set.", 400)
    count = amount if left is None else min(amount, left)
    attrs = LaunchAttributes(
        vswitch_id=vsw.id, security_group_ids=tuple(groups), ram_role_name=role,
        user_data=user_data, key_pair_name=params.get("KeyPairName") or base.key_pair_name,
        launch_template_id=(None if version is None else
                            _template(world, params.get("LaunchTemplateId"),
                                      params.get("LaunchTemplateName")).id),
        launch_template_version=None if version is None else version.number,
    )
    ids = world.launch_instances(
        amount=count, instance_type=instance_type, zone=zone, vsw=vsw, spot_strategy=strategy,
        spot_price_limit=price_limit, image_id=image_id,
        name=params.get("InstanceName") or base.instance_name or "", tags=tags, attrs=attrs,
        spot_interruption_behavior=behavior)
    if token:
        world.client_tokens[token] = (fingerprint, ids)
    for iid in ids:
        world.record_trail("RunInstances", iid, ctx.identity)
    return _run_answer(world, ids)


def _run_answer(world: World, ids: list[str]) -> dict[str, Any]:
    price = 0.0
    for iid in ids:
        inst = world.instances.get(iid)
        if inst is not None:
            price += SPOT_PRICE if inst.spot_strategy != "NoSpot" else ON_DEMAND_PRICE
    return {"InstanceIdSets": {"InstanceIdSet": list(ids)}, "TradePrice": round(price, 3),
            "OrderId": ""}


def _type_spec(world: World, name: str) -> InstanceTypeSpec | None:
    return next((t for t in world.fleet.provisioning.instance_types if t.type == name), None)


def describe_recommend_instance_type(world: World, params: dict[str, str], ctx: Context
                                     ) -> dict[str, Any]:
    """Types like the given one (same cores, at least its memory; the same type too), in the
    zones of the fleet's vSwitches with stock for the spot strategy; InventoryFirst puts the
    offerings with the most stock (unlimited first) ahead."""
    if require(params, "RegionId") != world.region:
        raise ApiError("InvalidRegionId.NotFound", "The specified RegionId does not exist.", 404)
    network = require(params, "NetworkType")
    if network not in ("vpc", "classic"):
        raise ApiError("InvalidNetworkType.ValueNotSupported", f"NetworkType {network} is not "
                       "supported.")
    strategy = params.get("SpotStrategy") or "NoSpot"
    if strategy not in SPOT_STRATEGIES:
        raise ApiError("InvalidSpotStrategy.ValueNotSupported", f"SpotStrategy {strategy} is "
                       "not supported.")
    priority = params.get("PriorityStrategy") or "InventoryFirst"
    if priority not in ("InventoryFirst", "PriceFirst", "NewProductFirst"):
        raise ApiError("InvalidPriorityStrategy.ValueNotSupported", f"PriorityStrategy "
                       f"{priority} is not supported.")
    charge = params.get("InstanceChargeType") or "PostPaid"
    if charge not in ("PostPaid", "PrePaid"):
        raise ApiError("InvalidInstanceChargeType.NotFound", f"InstanceChargeType {charge} is "
                       "not valid.", 400)
    wanted = params.get("InstanceType")
    if wanted and (params.get("Cores") or params.get("Memory")):
        raise ApiError("InvalidParam.TypeAndCpuMem.Conflict", "InstanceType conflicts with "
                       "Cores and Memory.")
    if wanted:
        spec = _type_spec(world, wanted)
        if spec is None:
            raise ApiError("InvalidInstanceType.NotSupported", f"The instance type {wanted} "
                           "is not supported.")
        cores, memory = spec.cores, float(spec.memory)
    else:
        cores = integer(params, "Cores", 0, 1, 1024)
        memory = float(params.get("Memory") or 0)
        if not cores or not memory:
            raise ApiError("InvalidCoreAndMemory.ValueNotSupported", "Give InstanceType, or "
                           "Cores and Memory.")
    zone_wanted = params.get("ZoneId")
    strict = (params.get("ZoneMatchMode") or "Include") == "Strict"
    zones = sorted({v.zone for v in world.vswitches.values()})
    if zone_wanted and strict:
        zones = [z for z in zones if z == zone_wanted]
    found: list[tuple[float, str, InstanceTypeSpec]] = []
    for spec in world.fleet.provisioning.instance_types:
        if spec.cores != cores or spec.memory < memory:
            continue
        for zone in zones:
            left = world.stock_left(spec.type, zone, strategy)
            if left is not None and left <= 0:
                continue
            rank = -(left if left is not None else 10**9) if priority == "InventoryFirst" \
                else spec.memory
            found.append((rank, zone, spec))
    if not found:
        raise ApiError("RecommendEmpty.InstanceTypeSoldOut", "No instance type with stock "
                       "matches the request.")
    found.sort(key=lambda item: (item[0], item[2].type != wanted, item[1], item[2].type))
    items = []
    for n, (_, zone, spec) in enumerate(found, start=1):
        items.append({
            "RegionId": world.region, "ZoneId": zone, "CommodityCode": "ecs",
            "InstanceChargeType": charge, "SpotStrategy": strategy, "NetworkType": network,
            "Scene": params.get("Scene") or "CREATE", "Priority": n,
            "InstanceType": {"InstanceType": spec.type, "InstanceTypeFamily": spec.family,
                             "Cores": spec.cores, "Memory": spec.memory * 1024,
                             "Generation": "ecs-" + spec.family.split(".")[1][-1:],
                             "SupportIoOptimized": "optimized"},
            "Zones": {"zone": [{"ZoneNo": zone, "NetworkTypes": {"NetworkType": [network]}}]},
        })
    return {"Data": {"RecommendInstanceType": items}}


def _ids_param(params: Mapping[str, str], name: str) -> list[str]:
    raw = params.get(name)
    if not raw:
        return []
    try:
        ids = json.loads(raw)
    except ValueError:
        raise ApiError("InvalidInstanceIds.Malformed", f"The specified {name} is not a JSON "
                       "array.") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 100:
        raise ApiError("InvalidInstanceIds.Malformed", f"The specified {name} is not a JSON "
                       "array of at most 100 ids.")
    return ids


def describe_instance_ram_role(world: World, params: dict[str, str], ctx: Context
                               ) -> dict[str, Any]:
    """The instances (of those asked, or all) that have a RAM role attached."""
    in_region = require(params, "RegionId") == world.region
    ids = _ids_param(params, "InstanceIds")
    role = params.get("RamRoleName")
    if not ids and not role:
        raise ApiError("InvalidParameter.AllEmpty", "InstanceIds and RamRoleName cannot both "
                       "be empty.", 403)
    items: list[Instance] = list(world.instances.values()) if in_region else []
    if ids:
        missing = [i for i in ids if i not in world.instances]
        if missing and in_region:
            raise ApiError("InvalidInstanceId.NotFound", f"The specified InstanceId "
                           f"{missing[0]} does not exist.", 404)
        wanted = set(ids)
        items = [i for i in items if i.id in wanted]
    items = [i for i in items if i.launch.ram_role_name and (not role
                                                             or i.launch.ram_role_name == role)]
    number, size = page_args(params, 50)
    chunk = items[(number - 1) * size:number * size]
    return {"RegionId": world.region, "TotalCount": len(items),
            "InstanceRamRoleSets": {"InstanceRamRoleSet": [
                {"InstanceId": i.id, "RamRoleName": i.launch.ram_role_name} for i in chunk]}}


def describe_user_data(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    iid = require(params, "InstanceId")
    inst = world.instances.get(iid) if require(params, "RegionId") == world.region else None
    if inst is None:
        raise ApiError("InvalidInstanceId.NotFound", f"The specified InstanceId {iid} does not "
                       "exist.", 404)
    return {"RegionId": world.region, "InstanceId": iid, "UserData": inst.launch.user_data or ""}


def _version_view(template: LaunchTemplateSpec, version: TemplateVersionSpec, detail: bool
                  ) -> dict[str, Any]:
    data = version.data
    out: dict[str, Any] = {
        "LaunchTemplateId": template.id, "LaunchTemplateName": template.name,
        "VersionNumber": version.number, "DefaultVersion": version.default,
        "CreateTime": "2026-11-20T08:00:00Z", "ModifiedTime": "2026-11-20T08:00:00Z",
        "CreatedBy": "emulator", "VersionDescription": "",
    }
    if detail:
        body: dict[str, Any] = {
            "InstanceType": data.instance_type or "", "ImageId": data.image_id or "",
            "VSwitchId": data.vswitch_id or "", "RamRoleName": data.ram_role_name or "",
            "UserData": data.user_data or "", "KeyPairName": data.key_pair_name or "",
            "SpotStrategy": data.spot_strategy or "", "InstanceName": data.instance_name or "",
            "SecurityGroupIds": {"SecurityGroupId": list(data.security_group_ids)},
            "Tags": {"InstanceTag": [{"Key": k, "Value": v} for k, v in data.tags]},
        }
        if data.spot_price_limit is not None:
            body["SpotPriceLimit"] = data.spot_price_limit
        out["LaunchTemplateData"] = body
    return out


def describe_launch_template_versions(world: World, params: dict[str, str], ctx: Context
                                      ) -> dict[str, Any]:
    if require(params, "RegionId") != world.region:
        raise ApiError("InvalidRegion.NotExist", "The specified region does not exist.")
    tid = params.get("LaunchTemplateId")
    name = params.get("LaunchTemplateName")
    if not tid and not name:
        raise ApiError("MissingParameter", "The input parameter \"LaunchTemplateId\" or "
                       "\"LaunchTemplateName\" is not supplied.")
    template = _template(world, tid, name)
    versions = list(template.versions)
    numbers = indexed(params, "LaunchTemplateVersion", 100)
    if numbers:
        if not all(n.isdigit() for n in numbers):
            raise ApiError("InvalidParameter", "LaunchTemplateVersion.N must be numbers.")
        wanted = {int(n) for n in numbers}
        versions = [v for v in versions if v.number in wanted]
    low = integer(params, "MinVersion", 1, 1, 10**6)
    high = integer(params, "MaxVersion", 10**6, 1, 10**6)
    versions = [v for v in versions if low <= v.number <= high]
    if flag(params, "DefaultVersion"):
        versions = [v for v in versions if v.default]
    detail = params.get("DetailFlag") is None or flag(params, "DetailFlag")
    number, size = page_args(params, 50)
    chunk = versions[(number - 1) * size:number * size]
    return {"TotalCount": len(versions), "PageNumber": number, "PageSize": size,
            "LaunchTemplateVersionSets": {"LaunchTemplateVersionSet": [
                _version_view(template, v, detail) for v in chunk]}}


LAUNCH_ACTIONS: dict[str, Handler] = {
    "RunInstances": run_instances,
    "DescribeRecommendInstanceType": describe_recommend_instance_type,
    "DescribeInstanceRamRole": describe_instance_ram_role,
    "DescribeUserData": describe_user_data,
    "DescribeLaunchTemplateVersions": describe_launch_template_versions,
}
