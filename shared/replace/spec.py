"""The launch spec: what a successor is launched with, captured before a notice needs it.

DescribeInstances (the lifecycle record's creation snapshot) gives the type, image, zone,
vSwitch, security groups, key pair, tags and spot terms; the RAM role and the user data it does
not return come from DescribeInstanceRamRole and DescribeUserData; an instance that came from a
launch template (``<replace_tag>-template`` tag) is launched from that template and version
instead. The spec is stored with the instance (ledger entry ``launch_spec:<id>``); the user
data may hold secrets: it is stored for the launch, and only its size and a digest are ever
logged or shown (:meth:`LaunchSpec.described`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from shared import ledger
from shared.clients import Instance
from shared.events import iso
from shared.launch import LaunchRequest, TemplateVersion
from shared.ledger import Kind
from shared.log import emit, get_logger
from shared.replace.policy import successor_tags, template_of, verdict

__all__ = ["LaunchPort", "LaunchSpec", "SpecStore", "capture", "capture_specs", "stored_spec"]

log = get_logger(__name__)


class LaunchPort(Protocol):
    def ram_roles(self, instance_ids: Sequence[str]) -> dict[str, str]: ...
    def user_data(self, instance_id: str) -> str | None: ...
    def template_version(self, template_id: str, version: int | None) -> TemplateVersion: ...


class SpecStore(ledger.ClaimPort, Protocol):
    def ledger_get(self, key: str) -> ledger.EntryLike | None: ...

    def ledger_update(self, key: str, *, status: str | None = None,
                      data: Mapping[str, Any] | None = None) -> None: ...


@dataclass(frozen=True, kw_only=True)
class LaunchSpec(LaunchRequest):
    """One instance's launch, as captured: the request fields (from the instance, or its
    template and version), with whose it is and when they were read (JSON-ready through
    :meth:`to_dict`); :meth:`request` is the launch on one candidate."""

    instance_id: str
    region_id: str
    vpc_id: str | None
    # A described instance always has these (a bare request may leave them to its template).
    instance_type: str
    zone_id: str
    image_id: str
    spot_strategy: str = "SpotAsPriceGo"
    captured_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["security_group_ids"] = list(self.security_group_ids)
        out["tags"] = [list(t) for t in self.tags]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LaunchSpec:
        price = data.get("spot_price_limit")
        version = data.get("launch_template_version")
        return cls(
            instance_id=str(data["instance_id"]), region_id=str(data.get("region_id") or ""),
            instance_type=str(data["instance_type"]), zone_id=str(data["zone_id"]),
            vswitch_id=data.get("vswitch_id"), vpc_id=data.get("vpc_id"),
            image_id=str(data.get("image_id") or ""),
            security_group_ids=tuple(data.get("security_group_ids") or ()),
            key_pair_name=data.get("key_pair_name"), ram_role_name=data.get("ram_role_name"),
            user_data=data.get("user_data"),
            spot_strategy=str(data.get("spot_strategy") or "SpotAsPriceGo"),
            spot_price_limit=None if price is None else float(price),
            spot_interruption_behavior=data.get("spot_interruption_behavior"),
            instance_name=data.get("instance_name"),
            tags=tuple((str(k), str(v)) for k, v in data.get("tags") or ()),
            launch_template_id=data.get("launch_template_id"),
            launch_template_version=None if version is None else int(version),
            captured_at=data.get("captured_at"),
        )

    def described(self) -> dict[str, Any]:
        """The spec for logs and answers: the user data as its size and digest only."""
        out = self.to_dict()
        if self.user_data:
            digest = hashlib.sha256(self.user_data.encode()).hexdigest()[:12]
            out["user_data"] = {"bytes": len(self.user_data), "sha256": digest}
        return out

    def request(self, *, instance_type: str, zone_id: str, vswitch_id: str | None,
                spot_strategy: str) -> LaunchRequest:
        """RunInstances for this spec on one candidate offering."""
        tags = successor_tags(self.tags, self.instance_id)
        if self.launch_template_id:
            # The template holds image, groups, role and user data; the candidate overrides
            # where it goes and what it is.
            return LaunchRequest(
                instance_type=instance_type, zone_id=zone_id, vswitch_id=vswitch_id,
                spot_strategy=spot_strategy, spot_price_limit=self.spot_price_limit,
                spot_interruption_behavior=self.spot_interruption_behavior, tags=tags,
                launch_template_id=self.launch_template_id,
                launch_template_version=self.launch_template_version)
        return LaunchRequest(
            instance_type=instance_type, zone_id=zone_id, vswitch_id=vswitch_id,
            image_id=self.image_id, security_group_ids=self.security_group_ids,
            key_pair_name=self.key_pair_name, ram_role_name=self.ram_role_name,
            user_data=self.user_data, spot_strategy=spot_strategy,
            spot_price_limit=self.spot_price_limit,
            spot_interruption_behavior=self.spot_interruption_behavior,
            instance_name=self.instance_name, tags=tags)


def capture(instance: Instance, launch: LaunchPort, *, tag_name: str, now: datetime,
            ram_role: str | None = None, look_up_role: bool = True) -> LaunchSpec:
    """The spec of one described instance (``ram_role`` given when already looked up)."""
    tags = dict(instance.tags)
    template = template_of(tags, tag_name)
    template_id, version = template if template is not None else (None, None)
    role, user_data = ram_role, None
    if template_id is not None:
        # The template version is resolved now: a later default version must not change what
        # this instance's successor is.
        found = launch.template_version(template_id, version)
        version = found.version
        role = found.ram_role_name  # what the launch will pass (ram:PassRole)
    else:
        if look_up_role and role is None:
            role = launch.ram_roles([instance.instance_id]).get(instance.instance_id)
        user_data = launch.user_data(instance.instance_id)
    return LaunchSpec(
        instance_id=instance.instance_id, region_id=instance.region_id,
        instance_type=instance.instance_type, zone_id=instance.zone_id,
        vswitch_id=instance.vswitch_id, vpc_id=instance.vpc_id, image_id=instance.image_id,
        security_group_ids=instance.security_group_ids, key_pair_name=instance.key_pair_name,
        ram_role_name=role, user_data=user_data,
        spot_strategy=instance.spot_strategy if instance.is_spot else "SpotAsPriceGo",
        spot_price_limit=instance.spot_price_limit,
        spot_interruption_behavior=instance.spot_interruption_behavior,
        instance_name=instance.name or None, tags=instance.tags,
        launch_template_id=template_id, launch_template_version=version,
        captured_at=iso(now),
    )


def store_spec(store: SpecStore, spec: LaunchSpec) -> None:
    key = ledger.launch_spec_key(spec.instance_id)
    data = spec.to_dict()
    if not ledger.claim_once(store, key, kind=Kind.LAUNCH_SPEC, instance_id=spec.instance_id,
                             data=data, status="captured"):
        store.ledger_update(key, status="captured", data=data)
    emit(log, "launch spec captured", instance_id=spec.instance_id, decision="captured",
         spec=spec.described())


def stored_spec(store: SpecStore, instance_id: str) -> LaunchSpec | None:
    entry = store.ledger_get(ledger.launch_spec_key(instance_id))
    if entry is None or not entry.data.get("instance_type"):
        return None
    return LaunchSpec.from_dict(entry.data)


def capture_specs(store: SpecStore, launch: LaunchPort, instances: Sequence[Instance], *,
                  tag_name: str, now: datetime) -> list[str]:
    """Capture and store the spec of each opted-in instance not owned by ESS or ACK (one
    DescribeInstanceRamRole for all, one DescribeUserData each): the lifecycle record calls
    this when it snapshots new instances. The captured ids."""
    wanted = [i for i in instances if verdict(dict(i.tags), tag_name).replace]
    if not wanted:
        return []
    roles = launch.ram_roles([i.instance_id for i in wanted])
    captured = []
    for instance in wanted:
        spec = capture(instance, launch, tag_name=tag_name, now=now,
                       ram_role=roles.get(instance.instance_id), look_up_role=False)
        store_spec(store, spec)
        captured.append(instance.instance_id)
    return captured
