"""CLB (SLB 2014-05-15): find every membership of a server, drain, remove, restore.

Moved out of shared/clients.py (issue 13): the memberships are the product-neutral
:class:`shared.lb.model.Membership` (product CLB). Writes are synchronous: a CLB write is done
when its call returns. CLB has no DryRun on these writes: ``dry_run`` makes no call. The SDK
(``alibabacloud_slb20140515``) is imported when a call is made.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from shared.clients import (
    MAX_PAGES,
    SLB_IDS_PER_CALL,
    SLB_MEMBERS_PER_CALL,
    NotFoundError,
    _Adapter,
    _chunks,
    _int,
    _items,
    _opt,
    _str,
    _unique,
    _validate_ids,
)
from shared.lb.model import GroupKind, GroupRef, JobStatus, Membership, Product, Write
from shared.log import emit, get_logger

__all__ = ["ClbClient", "GroupKind", "LbClient", "LoadBalancer", "Membership"]

log = get_logger(__name__)

@dataclass(frozen=True)
class LoadBalancer:
    id: str
    name: str = ""
    tags: tuple[tuple[str, str], ...] = ()


GroupKey = tuple[str, GroupKind, "str | None"]


def _grouped(memberships: Sequence[Membership]) -> dict[GroupKey, list[Membership]]:
    groups: dict[GroupKey, list[Membership]] = {}
    seen: set[tuple[GroupKey, str, int | None]] = set()
    for m in memberships:
        key: GroupKey = (m.load_balancer_id, GroupKind(m.group_kind), m.group_id)
        if key[1] is not GroupKind.DEFAULT and not m.group_id:
            raise ValueError(f"{key[1].value} membership without a group id: {m!r}")
        ident = (key, m.server_id, m.port)
        if ident in seen:
            continue
        seen.add(ident)
        groups.setdefault(key, []).append(m)
    return groups


class ClbClient(_Adapter):
    """CLB (SLB 2014-05-15): find every membership of a server, drain, remove, restore.

    Two faces: the CLB-shaped calls (``find_memberships``, ``group_members``, ``set_weights``
    … returning the number of calls made), and the product-neutral ones of
    :class:`shared.lb.pools.ProductClient` (``find``, ``scan``, ``members_of``,
    ``write_weights`` … returning :class:`Write`)."""

    product: ClassVar[Product] = Product.CLB
    RAM_ACTIONS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "list": ("slb:DescribeLoadBalancers",),
        "find": ("slb:DescribeLoadBalancers", "slb:DescribeLoadBalancerAttribute",
                 "slb:DescribeVServerGroups", "slb:DescribeVServerGroupAttribute",
                 "slb:DescribeMasterSlaveServerGroups",
                 "slb:DescribeMasterSlaveServerGroupAttribute"),
        "scan": ("slb:DescribeLoadBalancerAttribute", "slb:DescribeVServerGroups",
                 "slb:DescribeVServerGroupAttribute", "slb:DescribeMasterSlaveServerGroups",
                 "slb:DescribeMasterSlaveServerGroupAttribute"),
        "members": ("slb:DescribeLoadBalancerAttribute", "slb:DescribeVServerGroupAttribute",
                    "slb:DescribeMasterSlaveServerGroupAttribute"),
        "weight": ("slb:SetBackendServers", "slb:SetVServerGroupAttribute"),
        "remove": ("slb:RemoveBackendServers", "slb:RemoveVServerGroupBackendServers"),
        "add": ("slb:AddBackendServers", "slb:AddVServerGroupBackendServers"),
        "wait": (),
    }

    # --- the product-neutral interface (shared.lb.pools.ProductClient) ------------------------

    def find(self, server_ids: Sequence[str], where: Sequence[str]) -> list[Membership]:
        """Memberships of these servers in the load balancers ``where`` (one scan each)."""
        wanted = set(server_ids)
        out: list[Membership] = []
        for lb_id in _unique(where):
            try:
                members = self.all_members(lb_id)
            except NotFoundError as err:
                emit(log, "load balancer not found", level=30, load_balancer_id=lb_id,
                     code=err.code)
                continue
            out.extend(m for m in members if m.server_id in wanted)
        return out

    def scan(self, where: Sequence[str]) -> list[Membership]:
        return self.find_all(where)

    def find_all(self, where: Sequence[str]) -> list[Membership]:
        out: list[Membership] = []
        for lb_id in _unique(where):
            try:
                out.extend(self.all_members(lb_id))
            except NotFoundError as err:
                emit(log, "load balancer not found", level=30, load_balancer_id=lb_id,
                     code=err.code)
        return out

    def members_of(self, group: GroupRef) -> list[Membership]:
        return self.group_members(group.load_balancer_id, group.kind, group.group_id)

    def write_weights(self, memberships: Sequence[Membership], weight: int | None = None, *,
                      token_seed: str | None = None, dry_run: bool = False) -> list[Write]:
        return self._writes("set", memberships, weight, dry_run)

    def write_remove(self, memberships: Sequence[Membership], *, token_seed: str | None = None,
                     dry_run: bool = False) -> list[Write]:
        return self._writes("remove", memberships, None, dry_run)

    def write_add(self, memberships: Sequence[Membership], *, token_seed: str | None = None,
                  dry_run: bool = False) -> list[Write]:
        return self._writes("add", memberships, None, dry_run)

    def job_statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        return {}  # CLB writes are synchronous: no jobs

    def _writes(self, operation: Literal["set", "remove", "add"],
                memberships: Sequence[Membership], weight: int | None,
                dry_run: bool) -> list[Write]:
        out: list[Write] = []
        for (_lb, kind, _gid), members in _grouped(memberships).items():
            if operation == "set":
                self.set_weights(members, weight, dry_run=dry_run)
            elif operation == "remove":
                self.remove_members(members, dry_run=dry_run)
            else:
                self.add_members(members, dry_run=dry_run)
            action = (_WRITE_APIS[(operation, kind)][0]
                      if kind is not GroupKind.MASTER_SLAVE else operation)
            out.append(Write(members[0].group, action, tuple(members), dry_run=dry_run))
        return out

    # --- the CLB-shaped calls ----------------------------------------------------------------

    def _models(self) -> Any:
        from alibabacloud_slb20140515 import models

        return models

    def list_load_balancers(
        self,
        *,
        ids: Sequence[str] = (),
        tag: tuple[str, str] | None = None,
        server_id: str | None = None,
    ) -> list[LoadBalancer]:
        """CLB instances of the region, filtered by ids, one tag and/or a backend server id."""
        models = self._models()
        id_chunks: list[Sequence[str] | None] = list(_chunks(_unique(ids), SLB_IDS_PER_CALL))
        found: dict[str, LoadBalancer] = {}
        for chunk in id_chunks or [None]:
            page, seen = 1, 0
            while page <= MAX_PAGES:

                def send(chunk: Sequence[str] | None = chunk, page: int = page) -> Any:
                    return self._sdk.describe_load_balancers(
                        models.DescribeLoadBalancersRequest(
                            region_id=self.region,
                            load_balancer_id=",".join(chunk) if chunk else None,
                            server_id=server_id,
                            tag=[models.DescribeLoadBalancersRequestTag(key=tag[0], value=tag[1])]
                            if tag
                            else None,
                            page_number=page,
                            page_size=100,
                        )
                    )

                body = self._call("DescribeLoadBalancers", list(chunk or ()), send)
                items = _items(body.get("LoadBalancers"), "LoadBalancer")
                seen += len(items)
                for item in items:
                    lb_id = _str(item.get("LoadBalancerId"))
                    found[lb_id] = LoadBalancer(
                        id=lb_id,
                        name=_str(item.get("LoadBalancerName")),
                        tags=tuple(
                            (_str(t.get("TagKey")), _str(t.get("TagValue")))
                            for t in _items(item.get("Tags"), "Tag")
                        ),
                    )
                total = _int(body.get("TotalCount"))
                if not items or len(items) < 100 or (total is not None and seen >= total):
                    break
                page += 1
        return list(found.values())

    def find_memberships(
        self, instance_id: str, load_balancer_ids: Sequence[str]
    ) -> list[Membership]:
        """Every registration of ``instance_id``: default group, every vServer group port,
        master-slave groups (reported, not removable). A load balancer that no longer exists
        is skipped with a warning, so one stale id cannot block draining the others."""
        _validate_ids([instance_id])
        result: list[Membership] = []
        for lb_id in _unique(load_balancer_ids):
            try:
                members = self.all_members(lb_id)
            except NotFoundError as err:
                emit(log, "load balancer not found", level=30, load_balancer_id=lb_id,
                     code=err.code)
                continue
            result.extend(m for m in members if m.server_id == instance_id)
        return result

    def all_members(self, lb_id: str) -> list[Membership]:
        """Every member of every group of one load balancer (default, vServer, master-slave)."""
        members = self.group_members(lb_id, GroupKind.DEFAULT, None)
        models = self._models()
        body = self._call(
            "DescribeVServerGroups",
            [lb_id],
            lambda: self._sdk.describe_vserver_groups(
                models.DescribeVServerGroupsRequest(region_id=self.region, load_balancer_id=lb_id)
            ),
        )
        for group in _items(body.get("VServerGroups"), "VServerGroup"):
            members.extend(self._members_if_any(lb_id, GroupKind.VSERVER, group, "VServerGroupId"))
        body = self._call(
            "DescribeMasterSlaveServerGroups",
            [lb_id],
            lambda: self._sdk.describe_master_slave_server_groups(
                models.DescribeMasterSlaveServerGroupsRequest(
                    region_id=self.region, load_balancer_id=lb_id
                )
            ),
        )
        for group in _items(body.get("MasterSlaveServerGroups"), "MasterSlaveServerGroup"):
            members.extend(
                self._members_if_any(lb_id, GroupKind.MASTER_SLAVE, group, "MasterSlaveServerGroupId")
            )
        return members

    def _members_if_any(
        self, lb_id: str, kind: GroupKind, group: Mapping[str, Any], id_key: str
    ) -> list[Membership]:
        """A group listed a moment ago may be deleted by now: that is no member, not an error."""
        group_id = _str(group.get(id_key))
        if not group_id:
            return []
        try:
            return self.group_members(lb_id, kind, group_id)
        except NotFoundError:
            emit(log, "server group vanished", level=30, load_balancer_id=lb_id, group_id=group_id)
            return []

    def group_members(
        self, load_balancer_id: str, group_kind: GroupKind | str, group_id: str | None
    ) -> list[Membership]:
        """All members of one group (verification after a drain, sweep cleanup)."""
        kind = GroupKind(group_kind)
        models = self._models()
        if kind is GroupKind.DEFAULT:
            body = self._call(
                "DescribeLoadBalancerAttribute",
                [load_balancer_id],
                lambda: self._sdk.describe_load_balancer_attribute(
                    models.DescribeLoadBalancerAttributeRequest(
                        region_id=self.region, load_balancer_id=load_balancer_id
                    )
                ),
            )
            return [
                Membership(
                    load_balancer_id=load_balancer_id,
                    group_kind=kind,
                    group_id=None,
                    server_id=_str(s.get("ServerId")),
                    port=None,
                    weight=_int(s.get("Weight"), 100) or 0,
                    server_type=_str(s.get("Type")) or "ecs",
                    server_ip=_opt(s.get("ServerIp")),
                    description=_opt(s.get("Description")),
                )
                for s in _items(body.get("BackendServers"), "BackendServer")
            ]
        if not group_id:
            raise ValueError(f"a {kind.value} group needs its group id")
        if kind is GroupKind.VSERVER:
            body = self._call(
                "DescribeVServerGroupAttribute",
                [load_balancer_id, group_id],
                lambda: self._sdk.describe_vserver_group_attribute(
                    models.DescribeVServerGroupAttributeRequest(
                        region_id=self.region, vserver_group_id=group_id
                    )
                ),
            )
            servers = _items(body.get("BackendServers"), "BackendServer")
        else:
            body = self._call(
                "DescribeMasterSlaveServerGroupAttribute",
                [load_balancer_id, group_id],
                lambda: self._sdk.describe_master_slave_server_group_attribute(
                    models.DescribeMasterSlaveServerGroupAttributeRequest(
                        region_id=self.region, master_slave_server_group_id=group_id
                    )
                ),
            )
            servers = _items(body.get("MasterSlaveBackendServers"), "MasterSlaveBackendServer")
        return [
            Membership(
                load_balancer_id=load_balancer_id,
                group_kind=kind,
                group_id=group_id,
                server_id=_str(s.get("ServerId")),
                port=_int(s.get("Port")),
                weight=_int(s.get("Weight"), 100) or 0,
                server_type=_str(s.get("Type")) or "ecs",
                server_ip=_opt(s.get("ServerIp")),
                description=_opt(s.get("Description")),
                role=_opt(s.get("ServerType")) if kind is GroupKind.MASTER_SLAVE else None,
            )
            for s in servers
        ]

    def set_weights(
        self, memberships: Sequence[Membership], weight: int | None = None, *, dry_run: bool = False
    ) -> int:
        """Set every membership's weight (``None``: each one's own ``.weight``, i.e. restore).

        Weight 0 drains gently. Default group via SetBackendServers, vServer groups via
        SetVServerGroupAttribute, ≤20 servers per call. Master-slave weights cannot be changed
        (ValueError). CLB has no DryRun here: ``dry_run`` makes no call. Returns calls made.
        """
        if weight is not None and not 0 <= weight <= 100:
            raise ValueError(f"weight must be 0..100, not {weight}")
        return self._write(
            "set",
            memberships,
            lambda m: _entry(m, weight=m.weight if weight is None else weight),
            dry_run=dry_run,
        )

    def remove_members(self, memberships: Sequence[Membership], *, dry_run: bool = False) -> int:
        """Deregister exactly these (ServerId, Port) pairs; other members are untouched.

        RemoveBackendServers (default group) / RemoveVServerGroupBackendServers, ≤20 per call.
        Master-slave memberships are refused (ValueError). Returns calls made.
        """
        return self._write("remove", memberships, _entry, dry_run=dry_run)

    def add_members(self, memberships: Sequence[Membership], *, dry_run: bool = False) -> int:
        """Register these memberships again with their own weights (undo of a removal).

        AddBackendServers / AddVServerGroupBackendServers, ≤20 per call. Returns calls made.
        """
        return self._write(
            "add", memberships, lambda m: _entry(m, weight=m.weight, full=True), dry_run=dry_run
        )

    def _write(
        self,
        operation: Literal["set", "remove", "add"],
        memberships: Sequence[Membership],
        entry: Callable[[Membership], dict[str, str]],
        *,
        dry_run: bool,
    ) -> int:
        """One call per group and per 20 members; BackendServers serialized with json.dumps."""
        groups = _grouped(memberships)
        refused = sorted(
            {f"{lb}/{gid}" for (lb, kind, gid) in groups if kind is GroupKind.MASTER_SLAVE}
        )
        if refused:
            raise ValueError(
                f"{operation}: master-slave groups have no per-member operations: "
                + ", ".join(refused)
            )
        if dry_run:
            return 0
        models = self._models()
        calls = 0
        for (lb_id, kind, group_id), members in groups.items():
            action, method, request_name = _WRITE_APIS[(operation, kind)]
            target: dict[str, str | None] = (
                {"load_balancer_id": lb_id}
                if kind is GroupKind.DEFAULT
                else {"vserver_group_id": group_id}
            )
            for chunk in _chunks(members, SLB_MEMBERS_PER_CALL):
                servers = json.dumps([entry(m) for m in chunk])

                def send(
                    servers: str = servers,
                    target: dict[str, str | None] = target,
                    method: str = method,
                    request_name: str = request_name,
                ) -> Any:
                    request = getattr(models, request_name)(
                        region_id=self.region, backend_servers=servers, **target
                    )
                    return getattr(self._sdk, method)(request)

                ids = [lb_id, *([group_id] if group_id else []), *(m.server_id for m in chunk)]
                self._call(action, ids, send)
                calls += 1
        return calls


# (operation, group kind) -> (API action, SDK method, SDK request class)
_WRITE_APIS: dict[tuple[str, GroupKind], tuple[str, str, str]] = {
    ("set", GroupKind.DEFAULT): (
        "SetBackendServers", "set_backend_servers", "SetBackendServersRequest"),
    ("set", GroupKind.VSERVER): (
        "SetVServerGroupAttribute", "set_vserver_group_attribute",
        "SetVServerGroupAttributeRequest"),
    ("remove", GroupKind.DEFAULT): (
        "RemoveBackendServers", "remove_backend_servers", "RemoveBackendServersRequest"),
    ("remove", GroupKind.VSERVER): (
        "RemoveVServerGroupBackendServers", "remove_vserver_group_backend_servers",
        "RemoveVServerGroupBackendServersRequest"),
    ("add", GroupKind.DEFAULT): (
        "AddBackendServers", "add_backend_servers", "AddBackendServersRequest"),
    ("add", GroupKind.VSERVER): (
        "AddVServerGroupBackendServers", "add_vserver_group_backend_servers",
        "AddVServerGroupBackendServersRequest"),
}


def _entry(m: Membership, *, weight: int | None = None, full: bool = False) -> dict[str, str]:
    """One BackendServers element, from the membership itself (its real port); the API
    documents every value as a string. Default-group entries carry no port."""
    entry = {"ServerId": m.server_id}
    if m.group_kind is not GroupKind.DEFAULT:
        if m.port is None:
            raise ValueError(f"vServer membership without a port: {m!r}")
        entry["Port"] = str(m.port)
    if weight is not None:
        entry["Weight"] = str(weight)
    entry["Type"] = m.server_type
    if full and m.server_ip and m.server_type != "ecs":
        entry["ServerIp"] = m.server_ip
    if full and m.description:
        entry["Description"] = m.description
    return entry




LbClient = ClbClient  # the name it had in shared/clients.py
