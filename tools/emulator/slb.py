"""CLB (SLB) 2014-05-15 actions: load balancers, default / vServer / master-slave groups, health.

Emulator choices where the API reference is silent (documented here, asserted in tests):

- ``DescribeLoadBalancers(ServerId=…)`` matches members of the default group, of every vServer
  group and of every master-slave group.
- Without ``PageSize`` it returns every match (``PageSize`` 1..100 pages them).
- Adding: identical servers in one request count once (the first; documented for
  AddBackendServers); a server already a member is refused with 400 ``InvalidParameter`` (the
  reference says "an error message is returned" without a code); an ECS server must exist
  (AddBackendServers: 400 ``InvalidParameter``; vServer groups: 400
  ``InvalidServerId.NotExist``, their documented code) and be Running (400
  ``InvalidParameter``: "must be in the Running state", no code documented); more than 20
  entries: 400 ``InvalidParameter``. Removing non-members is silently ignored (documented).
- A missing vServer / master-slave group answers 400 ``InvalidParameter`` "The specified
  VServerGroupId does not exist." (CLB's observed answer, no .NotFound code is documented); a
  missing load balancer 404 ``InvalidLoadBalancerId.NotFound`` (see contract.PLATFORM_CODES).
- Member lists in answers carry exactly the fields each action documents: no ``ServerIp`` in
  write answers, ``Weight`` a string in AddBackendServers / SetBackendServers.
- ``DescribeHealthStatus`` uses the fleet's ``listeners``; without them each vServer group
  member is reported on its own port and default members on port 80. A member is ``normal``
  when its instance exists and has been Running for the fleet's
  ``provisioning.healthy_after_s`` (``never``: it never is; ``Emulator.set_healthy_after``),
  else ``abnormal``; on a listener with ``health_check: false`` it is ``unavailable`` (the
  reference: unavailable when the health check is off or not completed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tools.emulator.ecs import Context, Handler, integer, require
from tools.emulator.world import ApiError, LoadBalancer, Member, ServerGroup, World

__all__ = ["ACTIONS", "MAX_BACKENDS", "VERSION"]

VERSION = "2014-05-15"
MAX_BACKENDS = 20
SERVER_TYPES = ("ecs", "eni", "eci")


# --- lookups ---------------------------------------------------------------------------------

def _lb(world: World, params: Mapping[str, str]) -> LoadBalancer:
    lb_id = require(params, "LoadBalancerId")
    lb = world.lbs.get(lb_id)
    if lb is None or params.get("RegionId", world.region) != world.region:
        raise ApiError("InvalidLoadBalancerId.NotFound", f"The specified LoadBalancerId {lb_id} "
                       "does not exist.", 404)
    return lb


def _group(world: World, params: Mapping[str, str], key: str, kind: str) -> ServerGroup:
    gid = require(params, key)
    group = world.groups.get(gid)
    if group is None or group.kind != kind or params.get("RegionId", world.region) != world.region:
        # CLB answers a missing group with 400 InvalidParameter and this message (what
        # terraform-provider-alicloud matches: VServerGroupNotFoundMessage,
        # MasterSlaveServerGroupNotFoundMessage); no .NotFound code is documented.
        name = "VServerGroupId" if kind == "vserver" else "MasterSlaveGroupId"
        raise ApiError("InvalidParameter", f"The specified {name} does not exist. ({gid})", 400)
    return group


# --- BackendServers JSON ---------------------------------------------------------------------

def _weight(value: Any, where: str) -> int:
    try:
        weight = int(value)
    except (TypeError, ValueError):
        raise ApiError("InvalidParameter", f"{where}: Weight {value!r} is not an integer.") \
            from None
    if not 0 <= weight <= 100:
        raise ApiError("InvalidParameter", f"{where}: Weight {weight} is not within 0..100.")
    return weight


def _port(value: Any, where: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ApiError("InvalidParameter", f"{where}: Port {value!r} is not an integer.") \
            from None
    if not 1 <= port <= 65535:
        raise ApiError("InvalidParameter", f"{where}: Port {port} is not within 1..65535.")
    return port


def _backends(params: Mapping[str, str], key: str, with_port: bool,
              allow_id_strings: bool = False) -> list[dict[str, Any]]:
    """Parse a ``BackendServers`` JSON string: ≤ 20 entries, normalised dicts."""
    raw = require(params, key)
    try:
        items = json.loads(raw)
    except ValueError:
        raise ApiError("InvalidParameter", f"{key} is not valid JSON.") from None
    if not isinstance(items, list):
        raise ApiError("InvalidParameter", f"{key} must be a JSON array.")
    if len(items) > MAX_BACKENDS:
        raise ApiError("InvalidParameter", f"{key} holds {len(items)} backend servers; at most "
                       f"{MAX_BACKENDS} per call.")
    out = []
    for n, item in enumerate(items):
        where = f"{key}[{n}]"
        if isinstance(item, str) and allow_id_strings:
            item = {"ServerId": item}  # noqa: PLW2901 - the old form is a bare id list
        if not isinstance(item, dict) or not isinstance(item.get("ServerId"), str) \
                or not item["ServerId"]:
            raise ApiError("InvalidParameter", f"{where}: ServerId is required.")
        entry: dict[str, Any] = {"ServerId": item["ServerId"]}
        if with_port:
            if "Port" not in item:
                raise ApiError("InvalidParameter", f"{where}: Port is required.")
            entry["Port"] = _port(item["Port"], where)
        if "Weight" in item:
            entry["Weight"] = _weight(item["Weight"], where)
        server_type = item.get("Type", "ecs")
        if server_type not in SERVER_TYPES:
            raise ApiError("InvalidParameter", f"{where}: Type {server_type!r} is not one of "
                           f"{list(SERVER_TYPES)}.")
        entry["Type"] = server_type
        if "Description" in item:
            entry["Description"] = str(item["Description"])
        out.append(entry)
    return out


def _require_instances(world: World, entries: list[dict[str, Any]], unknown_code: str) -> None:
    """ECS members must exist (``unknown_code``) and be Running: the API reference of
    AddBackendServers says the servers added "must be in the Running state" and names no code
    for it; the emulator answers 400 ``InvalidParameter`` (documented for AddBackendServers,
    platform-wide elsewhere)."""
    for entry in entries:
        if entry["Type"] != "ecs":
            continue
        inst = world.instances.get(entry["ServerId"])
        if inst is None:
            raise ApiError(unknown_code, f"The specified ServerId {entry['ServerId']} does not "
                           "exist.", 400)
        if inst.status != "Running":
            raise ApiError("InvalidParameter", f"The backend server {entry['ServerId']} is "
                           f"{inst.status}; only Running servers can be added.", 400)


def _first_of_each(entries: list[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """Identical servers in one request: the first is added, the others ignored (documented
    for AddBackendServers; the emulator does the same for vServer groups)."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for entry in entries:
        ident = tuple(entry.get(k) for k in key)
        if ident not in seen:
            seen.add(ident)
            out.append(entry)
    return out


def _refuse_existing(existing: set[tuple[Any, ...]], entries: list[dict[str, Any]],
                     key: tuple[str, ...], where: str) -> None:
    """Adding a server that is already a member is refused ("an error message is returned",
    AddBackendServers); the code is not documented: 400 ``InvalidParameter``."""
    for entry in entries:
        if tuple(entry.get(k) for k in key) in existing:
            port = f":{entry['Port']}" if "Port" in key else ""
            raise ApiError("InvalidParameter", f"The backend server {entry['ServerId']}{port} "
                           f"already exists in {where}.", 400)


# --- views -----------------------------------------------------------------------------------

def _ip(world: World, server_id: str) -> str:
    inst = world.instances.get(server_id)
    return inst.private_ip if inst is not None else ""


# The member fields each answer documents (api-meta slb 2014-05-15): write answers carry no
# ServerIp; AddBackendServers and SetBackendServers document Weight as a string, every other
# answer as an integer; RemoveVServerGroupBackendServers documents no Description.
_DESCRIBE_FIELDS = ("ServerId", "Port", "Weight", "Type", "ServerIp", "Description")
_WRITE_FIELDS = ("ServerId", "Port", "Weight", "Type", "Description")
_STRING_WEIGHT = frozenset({"AddBackendServers", "SetBackendServers"})


def _members_view(world: World, members: list[Member], fields: tuple[str, ...],
                  string_weight: bool = False) -> dict[str, Any]:
    out = []
    for m in members:
        values: dict[str, Any] = {
            "ServerId": m.server_id, "Port": m.port,
            "Weight": str(m.weight) if string_weight else m.weight, "Type": m.type,
            "ServerIp": _ip(world, m.server_id), "Description": m.description}
        out.append({f: values[f] for f in fields if values[f] is not None})
    return {"BackendServer": out}


def _default_view(world: World, lb: LoadBalancer, action: str = "") -> dict[str, Any]:
    fields = _WRITE_FIELDS if action else _DESCRIBE_FIELDS
    return _members_view(world, lb.default_members, fields, action in _STRING_WEIGHT)


def _vgroup_view(world: World, group: ServerGroup, action: str = "") -> dict[str, Any]:
    fields: tuple[str, ...]
    if not action:
        fields = _DESCRIBE_FIELDS
    elif action == "RemoveVServerGroupBackendServers":
        fields = ("ServerId", "Port", "Weight", "Type")
    else:
        fields = _WRITE_FIELDS
    return _members_view(world, group.members, fields)


def _tags_view(tags: Mapping[str, str]) -> dict[str, Any]:
    return {"Tag": [{"TagKey": k, "TagValue": v} for k, v in tags.items()]}


def _lb_view(world: World, lb: LoadBalancer) -> dict[str, Any]:
    return {
        "LoadBalancerId": lb.id, "LoadBalancerName": lb.name, "LoadBalancerStatus": "active",
        "Address": lb.address, "AddressType": "internet", "AddressIPVersion": "ipv4",
        "RegionId": world.region, "RegionIdAlias": world.region, "NetworkType": "vpc",
        "VpcId": "", "VSwitchId": "", "MasterZoneId": f"{world.region}-h",
        "SlaveZoneId": f"{world.region}-i", "PayType": "PayOnDemand",
        "InternetChargeType": "paybytraffic", "LoadBalancerSpec": "slb.s1.small",
        "CreateTime": "2026-11-20T08:00Z", "Tags": _tags_view(lb.tags),
    }


def _listeners(world: World, lb: LoadBalancer
               ) -> list[tuple[int, str, ServerGroup | None, bool]]:
    """(port, protocol, vServer group or None for the default group, health check on)."""
    if lb.listeners:
        return [(port, proto, world.groups[vg] if vg else None, checked)
                for port, proto, vg, checked in lb.listeners]
    derived: list[tuple[int, str, ServerGroup | None, bool]] = [(80, "http", None, True)]
    for gid in lb.vserver_group_ids:
        group = world.groups[gid]
        for port in sorted({m.port for m in group.members if m.port is not None}):
            derived.append((port, "http", group, True))
    return derived


# --- load balancers --------------------------------------------------------------------------

def _member_of(world: World, lb: LoadBalancer, server_id: str) -> bool:
    if any(m.server_id == server_id for m in lb.default_members):
        return True
    return any(m.server_id == server_id
               for gid in lb.vserver_group_ids + lb.master_slave_group_ids
               for m in world.groups[gid].members)


def _tag_filter(params: Mapping[str, str]) -> list[tuple[str, str | None]]:
    wanted: list[tuple[str, str | None]] = []
    raw = params.get("Tags")
    if raw:
        try:
            tags = json.loads(raw)
        except ValueError:
            raise ApiError("InvalidParameter", "Tags is not valid JSON.") from None
        if isinstance(tags, dict):
            tags = [{"TagKey": k, "TagValue": v} for k, v in tags.items()]
        if not isinstance(tags, list) or not all(isinstance(t, dict) for t in tags):
            raise ApiError("InvalidParameter", "Tags must be a JSON array of {TagKey, TagValue}.")
        if len(tags) > 10:
            raise ApiError("InvalidParameter", "At most 10 tags can be specified.")
        for tag in tags:
            key = tag.get("TagKey") or tag.get("Key")
            if not isinstance(key, str) or not key:
                raise ApiError("InvalidParameter", "Each tag needs a TagKey.")
            value = tag.get("TagValue", tag.get("Value"))
            wanted.append((key, None if value is None else str(value)))
    for n in range(1, 21):
        key = params.get(f"Tag.{n}.Key")
        if key:
            wanted.append((key, params.get(f"Tag.{n}.Value")))
    return wanted


def describe_load_balancers(world: World, params: dict[str, str], ctx: Context
                            ) -> dict[str, Any]:
    region = require(params, "RegionId")
    items = list(world.lbs.values()) if region == world.region else []
    if params.get("LoadBalancerId"):
        ids = {i.strip() for i in params["LoadBalancerId"].split(",") if i.strip()}
        if len(ids) > 10:
            raise ApiError("InvalidParameter", "At most 10 LoadBalancerId values can be given.")
        items = [lb for lb in items if lb.id in ids]
    if params.get("LoadBalancerName"):
        items = [lb for lb in items if lb.name == params["LoadBalancerName"]]
    if params.get("ServerId"):
        items = [lb for lb in items if _member_of(world, lb, params["ServerId"])]
    if params.get("Address"):
        items = [lb for lb in items if lb.address == params["Address"]]
    for key, value in _tag_filter(params):
        items = [lb for lb in items if key in lb.tags and (value is None or lb.tags[key] == value)]
    if params.get("PageSize"):
        number = integer(params, "PageNumber", 1, 1, 10**9)
        size = integer(params, "PageSize", 10, 1, 100)
        chunk = items[(number - 1) * size:number * size]
    else:
        number, size, chunk = 1, max(1, len(items)), items
    return {"TotalCount": len(items), "PageNumber": number, "PageSize": size,
            "LoadBalancers": {"LoadBalancer": [_lb_view(world, lb) for lb in chunk]}}


def describe_load_balancer_attribute(world: World, params: dict[str, str], ctx: Context
                                     ) -> dict[str, Any]:
    lb = _lb(world, params)
    out = _lb_view(world, lb)
    listeners = _listeners(world, lb) if lb.listeners else []
    out.update({
        "BackendServers": _default_view(world, lb),
        "ListenerPorts": {"ListenerPort": [p for p, _, _, _ in listeners]},
        "ListenerPortsAndProtocol": {"ListenerPortAndProtocol": [
            {"ListenerPort": p, "ListenerProtocol": proto} for p, proto, _, _ in listeners]},
        "Bandwidth": 5120, "DeleteProtection": "off",
    })
    return out


def _set_default(world: World, params: dict[str, str], mode: str) -> dict[str, Any]:
    lb = _lb(world, params)
    entries = _backends(params, "BackendServers", with_port=False, allow_id_strings=True)
    by_id = {m.server_id: m for m in lb.default_members}
    if mode == "add":
        entries = _first_of_each(entries, ("ServerId",))
        _require_instances(world, entries, "InvalidParameter")
        _refuse_existing({(sid,) for sid in by_id}, entries, ("ServerId",), lb.id)
        for e in entries:
            lb.default_members.append(Member(e["ServerId"], e.get("Weight", 100), None,
                                             e.get("Description", ""), None, e["Type"]))
        action = "AddBackendServers"
    elif mode == "remove":
        gone = {e["ServerId"] for e in entries}
        lb.default_members = [m for m in lb.default_members if m.server_id not in gone]
        action = "RemoveBackendServers"
    else:  # set: weights of existing members
        for e in entries:
            existing = by_id.get(e["ServerId"])
            if existing is not None and "Weight" in e:
                existing.weight = e["Weight"]
        action = "SetBackendServers"
    return {"LoadBalancerId": lb.id, "BackendServers": _default_view(world, lb, action)}


def add_backend_servers(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    return _set_default(world, params, "add")


def remove_backend_servers(world: World, params: dict[str, str], ctx: Context
                           ) -> dict[str, Any]:
    return _set_default(world, params, "remove")


def set_backend_servers(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    return _set_default(world, params, "set")


# --- vServer groups --------------------------------------------------------------------------

def describe_vserver_groups(world: World, params: dict[str, str], ctx: Context
                            ) -> dict[str, Any]:
    lb = _lb(world, params)
    groups = [world.groups[g] for g in lb.vserver_group_ids]
    return {"VServerGroups": {"VServerGroup": [
        {"VServerGroupId": g.id, "VServerGroupName": g.name, "ServerCount": len(g.members),
         "CreateTime": "2026-11-20T08:00:00Z"}
        for g in groups]}}


def describe_vserver_group_attribute(world: World, params: dict[str, str], ctx: Context
                                     ) -> dict[str, Any]:
    group = _group(world, params, "VServerGroupId", "vserver")
    return {"VServerGroupId": group.id, "VServerGroupName": group.name,
            "LoadBalancerId": group.lb_id, "BackendServers": _vgroup_view(world, group)}


def _add_members(world: World, group: ServerGroup, entries: list[dict[str, Any]]) -> None:
    entries = _first_of_each(entries, ("ServerId", "Port"))
    _require_instances(world, entries, "InvalidServerId.NotExist")
    _refuse_existing({(m.server_id, m.port) for m in group.members}, entries,
                     ("ServerId", "Port"), group.id)
    for e in entries:
        group.members.append(Member(e["ServerId"], e.get("Weight", 100), e["Port"],
                                    e.get("Description", ""), None, e["Type"]))


def _remove_members(group: ServerGroup, entries: list[dict[str, Any]]) -> None:
    gone = {(e["ServerId"], e["Port"]) for e in entries}
    group.members = [m for m in group.members if (m.server_id, m.port) not in gone]


def _group_result(world: World, group: ServerGroup, action: str) -> dict[str, Any]:
    return {"VServerGroupId": group.id, "BackendServers": _vgroup_view(world, group, action)}


def add_vserver_group_backend_servers(world: World, params: dict[str, str], ctx: Context
                                      ) -> dict[str, Any]:
    group = _group(world, params, "VServerGroupId", "vserver")
    _add_members(world, group, _backends(params, "BackendServers", with_port=True))
    return _group_result(world, group, "AddVServerGroupBackendServers")


def remove_vserver_group_backend_servers(world: World, params: dict[str, str], ctx: Context
                                         ) -> dict[str, Any]:
    group = _group(world, params, "VServerGroupId", "vserver")
    _remove_members(group, _backends(params, "BackendServers", with_port=True))
    return _group_result(world, group, "RemoveVServerGroupBackendServers")


def set_vserver_group_attribute(world: World, params: dict[str, str], ctx: Context
                                ) -> dict[str, Any]:
    group = _group(world, params, "VServerGroupId", "vserver")
    entries = _backends(params, "BackendServers", with_port=True) \
        if params.get("BackendServers") else []
    if params.get("VServerGroupName"):
        group.name = params["VServerGroupName"]
    index = {(m.server_id, m.port): m for m in group.members}
    for e in entries:
        found = index.get((e["ServerId"], e["Port"]))
        if found is None:
            continue  # only existing members' attributes change
        if "Weight" in e:
            found.weight = e["Weight"]
        if "Description" in e:
            found.description = e["Description"]
    out = _group_result(world, group, "SetVServerGroupAttribute")
    out["VServerGroupName"] = group.name
    return out


def modify_vserver_group_backend_servers(world: World, params: dict[str, str], ctx: Context
                                         ) -> dict[str, Any]:
    group = _group(world, params, "VServerGroupId", "vserver")
    old = _backends(params, "OldBackendServers", with_port=True) \
        if params.get("OldBackendServers") else []
    new = _backends(params, "NewBackendServers", with_port=True) \
        if params.get("NewBackendServers") else []
    _require_instances(world, new, "InvalidServerId.NotExist")
    before = list(group.members)
    _remove_members(group, old)
    try:
        _add_members(world, group, new)
    except ApiError:
        group.members = before  # all or nothing
        raise
    return _group_result(world, group, "ModifyVServerGroupBackendServers")


# --- master-slave groups ---------------------------------------------------------------------

def describe_master_slave_server_groups(world: World, params: dict[str, str], ctx: Context
                                        ) -> dict[str, Any]:
    lb = _lb(world, params)
    return {"MasterSlaveServerGroups": {"MasterSlaveServerGroup": [
        {"MasterSlaveServerGroupId": g.id, "MasterSlaveServerGroupName": g.name,
         "CreateTime": "2026-11-20T08:00:00Z"}
        for g in (world.groups[gid] for gid in lb.master_slave_group_ids)]}}


def describe_master_slave_server_group_attribute(world: World, params: dict[str, str],
                                                 ctx: Context) -> dict[str, Any]:
    group = _group(world, params, "MasterSlaveServerGroupId", "master_slave")
    return {
        "MasterSlaveServerGroupId": group.id, "MasterSlaveServerGroupName": group.name,
        "LoadBalancerId": group.lb_id,
        "MasterSlaveBackendServers": {"MasterSlaveBackendServer": [
            {"ServerId": m.server_id, "Port": m.port, "Weight": m.weight,
             "ServerType": m.server_type, "Type": m.type, "Description": m.description}
            for m in group.members]},
    }


# --- health ----------------------------------------------------------------------------------

def describe_health_status(world: World, params: dict[str, str], ctx: Context
                           ) -> dict[str, Any]:
    lb = _lb(world, params)
    port_filter = integer(params, "ListenerPort", 0, 1, 65535) if params.get("ListenerPort") \
        else None
    servers = []
    for port, proto, group, checked in _listeners(world, lb):
        if port_filter is not None and port != port_filter:
            continue
        if group is None:
            members = [(m.server_id, port) for m in lb.default_members]
        elif lb.listeners:
            members = [(m.server_id, m.port or port) for m in group.members]
        else:
            members = [(m.server_id, port) for m in group.members if m.port == port]
        for server_id, member_port in members:
            status = ("unavailable" if not checked else
                      "normal" if world.healthy(world.instances.get(server_id)) else "abnormal")
            servers.append({"ListenerPort": port, "Protocol": proto, "ServerId": server_id,
                            "Port": member_port, "ServerIp": _ip(world, server_id),
                            "ServerHealthStatus": status})
    return {"BackendServers": {"BackendServer": servers}}


ACTIONS: dict[str, Handler] = {
    "DescribeLoadBalancers": describe_load_balancers,
    "DescribeLoadBalancerAttribute": describe_load_balancer_attribute,
    "AddBackendServers": add_backend_servers,
    "RemoveBackendServers": remove_backend_servers,
    "SetBackendServers": set_backend_servers,
    "DescribeVServerGroups": describe_vserver_groups,
    "DescribeVServerGroupAttribute": describe_vserver_group_attribute,
    "AddVServerGroupBackendServers": add_vserver_group_backend_servers,
    "RemoveVServerGroupBackendServers": remove_vserver_group_backend_servers,
    "SetVServerGroupAttribute": set_vserver_group_attribute,
    "ModifyVServerGroupBackendServers": modify_vserver_group_backend_servers,
    "DescribeMasterSlaveServerGroups": describe_master_slave_server_groups,
    "DescribeMasterSlaveServerGroupAttribute": describe_master_slave_server_group_attribute,
    "DescribeHealthStatus": describe_health_status,
}
