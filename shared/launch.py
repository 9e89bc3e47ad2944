"""ECS 2014-05-26 launch adapter: RunInstances and the reads a replacement launch needs.

One narrow adapter (the rules of :mod:`shared.clients` apply: errors typed by ERROR_RULES at
this boundary, each request built afresh, no SDK type escapes). What it adds to the error
family: :class:`CapacityError`, the codes that say "this offering (instance type, zone, spot
strategy) cannot be had now, try another" (rule ``NO_CAPACITY``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.clients import (
    CloudError,
    Rule,
    _Adapter,
    _int,
    _items,
    _mapping,
    _opt,
    _str,
    _strings,
    _validate_ids,
)

__all__ = [
    "CapacityError",
    "LaunchClient",
    "LaunchRequest",
    "LaunchResult",
    "Offering",
    "TemplateVersion",
]

MAX_TAGS = 20  # RunInstances Tag.N
RAM_ROLE_IDS_PER_CALL = 100  # DescribeInstanceRamRole InstanceIds (a JSON array, ≤100)


class CapacityError(CloudError):
    """The offering is sold out, not on sale, or not supported here: try another one."""


@dataclass(frozen=True)
class LaunchRequest:
    """What RunInstances is given for one instance (the copy route or a launch template)."""

    instance_type: str | None
    zone_id: str | None
    vswitch_id: str | None
    image_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    key_pair_name: str | None = None
    ram_role_name: str | None = None
    user_data: str | None = field(default=None, repr=False)  # may hold secrets: never shown
    spot_strategy: str = "NoSpot"
    spot_price_limit: float | None = None
    spot_interruption_behavior: str | None = None
    instance_name: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    launch_template_id: str | None = None
    launch_template_version: int | None = None


@dataclass(frozen=True)
class LaunchResult:
    """RunInstances' answer: the instance ids (none for a passed DryRun)."""

    instance_ids: tuple[str, ...]
    dry_run_ok: bool = False


@dataclass(frozen=True)
class Offering:
    """An instance type in a zone (DescribeRecommendInstanceType's answer)."""

    instance_type: str
    zone_id: str


@dataclass(frozen=True)
class TemplateVersion:
    """The parts of a launch template version a replacement needs to know."""

    template_id: str
    version: int
    instance_type: str | None
    zone_id: str | None
    vswitch_id: str | None
    spot_strategy: str | None
    ram_role_name: str | None = None  # the role it launches with (ram:PassRole is needed)


class LaunchClient(_Adapter):
    """ECS: RunInstances, DescribeRecommendInstanceType, DescribeInstanceRamRole,
    DescribeUserData, DescribeLaunchTemplateVersions."""

    def _models(self) -> Any:
        from alibabacloud_ecs20140526 import models

        return models

    def run_instance(self, request: LaunchRequest, *, client_token: str,
                     dry_run: bool = False) -> LaunchResult:
        """Launch one instance (Amount 1). ``client_token`` makes a repeat (same token, same
        request) answer the first launch's id instead of launching again.

        Raises :class:`CapacityError` for the NO_CAPACITY codes, other :class:`CloudError`s as
        typed by ERROR_RULES; a passed DryRun is ``dry_run_ok``."""
        if len(request.tags) > MAX_TAGS:
            raise ValueError(f"RunInstances takes at most {MAX_TAGS} tags")
        if not 0 < len(client_token) <= 64 or not client_token.isascii():
            raise ValueError("a ClientToken is 1 to 64 ASCII characters")
        models = self._models()

        def send() -> Any:
            return self._sdk.run_instances(models.RunInstancesRequest(
                region_id=self.region,
                launch_template_id=request.launch_template_id,
                launch_template_version=request.launch_template_version,
                instance_type=request.instance_type,
                image_id=request.image_id,
                zone_id=request.zone_id,
                v_switch_id=request.vswitch_id,
                security_group_ids=list(request.security_group_ids) or None,
                key_pair_name=request.key_pair_name,
                ram_role_name=request.ram_role_name,
                user_data=request.user_data,
                spot_strategy=request.spot_strategy,
                spot_price_limit=(request.spot_price_limit
                                  if request.spot_strategy == "SpotWithPriceLimit" else None),
                spot_interruption_behavior=(request.spot_interruption_behavior
                                            if request.spot_strategy != "NoSpot" else None),
                instance_name=request.instance_name,
                tag=[models.RunInstancesRequestTag(key=k, value=v) for k, v in request.tags]
                or None,
                amount=1,
                client_token=client_token,
                dry_run=True if dry_run else None,
            ))

        try:
            body = self._call("RunInstances", (), send)
        except CloudError as err:
            if dry_run and err.rule is Rule.DRY_RUN_OK:
                return LaunchResult((), dry_run_ok=True)
            if err.rule is Rule.NO_CAPACITY:
                raise _capacity(err) from err
            raise
        ids = _strings(body.get("InstanceIdSets"), "InstanceIdSet")
        return LaunchResult(tuple(ids))

    def recommend(self, instance_type: str, spot_strategy: str, *,
                  zone_id: str | None = None) -> list[Offering]:
        """Offerings like ``instance_type`` with stock first (PriorityStrategy InventoryFirst),
        best first; [] when Alibaba recommends nothing (the RecommendEmpty.* codes)."""
        models = self._models()

        def send() -> Any:
            return self._sdk.describe_recommend_instance_type(
                models.DescribeRecommendInstanceTypeRequest(
                    region_id=self.region, network_type="vpc", instance_type=instance_type,
                    spot_strategy=spot_strategy, instance_charge_type="PostPaid",
                    priority_strategy="InventoryFirst", scene="CREATE",
                    zone_id=zone_id, zone_match_mode="Include" if zone_id else None))

        try:
            body = self._call("DescribeRecommendInstanceType", (), send)
        except CloudError as err:
            if err.rule is Rule.NO_CAPACITY:
                return []
            raise
        found = []
        items = _items(body.get("Data"), "RecommendInstanceType")
        items.sort(key=lambda item: _int(item.get("Priority"), 10**6) or 0)
        for item in items:
            kind = _str(_mapping(item.get("InstanceType")).get("InstanceType"))
            zone = _str(item.get("ZoneId"))
            if kind and zone:
                found.append(Offering(kind, zone))
        return list(dict.fromkeys(found))

    def ram_roles(self, instance_ids: Sequence[str]) -> dict[str, str]:
        """The RAM role of each instance that has one (others are absent)."""
        ids = _validate_ids(instance_ids)
        models = self._models()
        roles: dict[str, str] = {}
        for start in range(0, len(ids), RAM_ROLE_IDS_PER_CALL):
            chunk = ids[start:start + RAM_ROLE_IDS_PER_CALL]

            def send(chunk: Sequence[str] = chunk) -> Any:
                return self._sdk.describe_instance_ram_role(
                    models.DescribeInstanceRamRoleRequest(
                        region_id=self.region, instance_ids=json.dumps(list(chunk)),
                        page_size=50))

            body = self._call("DescribeInstanceRamRole", chunk, send)
            for item in _items(body.get("InstanceRamRoleSets"), "InstanceRamRoleSet"):
                iid, role = _str(item.get("InstanceId")), _opt(item.get("RamRoleName"))
                if iid in chunk and role:
                    roles[iid] = role
        return roles

    def user_data(self, instance_id: str) -> str | None:
        """The instance's user data, Base64 as given at launch; None when it has none."""
        _validate_ids([instance_id])
        models = self._models()
        body = self._call("DescribeUserData", [instance_id], lambda: self._sdk.describe_user_data(
            models.DescribeUserDataRequest(region_id=self.region, instance_id=instance_id)))
        return _opt(body.get("UserData"))

    def template_version(self, template_id: str, version: int | None) -> TemplateVersion:
        """One version of a launch template (its default version when ``version`` is None)."""
        models = self._models()

        def send() -> Any:
            return self._sdk.describe_launch_template_versions(
                models.DescribeLaunchTemplateVersionsRequest(
                    region_id=self.region, launch_template_id=template_id,
                    launch_template_version=[version] if version is not None else None,
                    default_version=True if version is None else None, detail_flag=True))

        body = self._call("DescribeLaunchTemplateVersions", [template_id], send)
        for item in _items(body.get("LaunchTemplateVersionSets"), "LaunchTemplateVersionSet"):
            data: Mapping[str, Any] = _mapping(item.get("LaunchTemplateData"))
            return TemplateVersion(
                template_id=template_id,
                version=_int(item.get("VersionNumber"), 0) or 0,
                instance_type=_opt(data.get("InstanceType")),
                zone_id=_opt(data.get("ZoneId")),
                vswitch_id=_opt(data.get("VSwitchId")),
                spot_strategy=_opt(data.get("SpotStrategy")),
                ram_role_name=_opt(data.get("RamRoleName")),
            )
        raise CloudError("InvalidLaunchTemplateVersion.NotFound",
                         f"version {version} is not in the answer", rule=Rule.NOT_FOUND,
                         action="DescribeLaunchTemplateVersions", resource_ids=[template_id])


def _capacity(err: CloudError) -> CapacityError:
    out = CapacityError(err.code, err.server_message, action=err.action,
                        resource_ids=err.resource_ids, request_id=err.request_id,
                        http_status=err.http_status, rule=err.rule)
    out.attempts = err.attempts
    return out
