"""What ALB (2020-06-16) and NLB (2022-04-30) share: server-group writes as asynchronous jobs,
the member lists, paging, tag filters. :mod:`tools.emulator.alb` and :mod:`tools.emulator.nlb`
give a :class:`Profile` (codes, limits, answer shapes) and their action tables.

Write order (each step answers the first problem it finds):

1. ``ClientToken`` seen before for this action: the same request (parameters other than the
   signing ones) answers the same ``JobId`` again and starts no job; a different request
   answers the action's documented mismatch code where it has one (ALB
   ``ReplaceServersInServerGroup`` ``IdempotentParameterMismatch``, NLB Add/Remove
   ``IdempotenceSignatureMismatch``), else the first request's ``JobId`` (emulator choice).
2. The group exists (404 ``ResourceNotFound.ServerGroup`` / ``.serverGroup``).
3. ``Servers`` (parameters, per-call limit, types, ports, duplicates, members known).
4. The group is not held by another job: ALB 400 ``IncorrectStatus.ServerGroup``, NLB 400
   ``Conflict.Lock`` (both documented for every write of their product).
5. ``DryRun=true``: 400 ``DryRunOperation`` (the SDK's DryRun description), nothing changes.
6. A job: see :mod:`tools.emulator.netlb`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tools.emulator.contract import IGNORED_REQUEST_PARAMS
from tools.emulator.ecs import Context, flag, indexed, integer, require
from tools.emulator.netlb import Job, LbMember, NetLb, NetLbGroup, NetLbState
from tools.emulator.world import ApiError, World

__all__ = [
    "Profile",
    "job_time_ms",
    "list_load_balancers",
    "list_server_group_servers",
    "list_server_groups",
    "page",
    "write",
]

_SERVER_KEY = re.compile(r"^(?P<prefix>[A-Za-z]+)\.(?P<n>\d+)\.(?P<field>[A-Za-z]+)$")
_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
INSTANCE_TYPES = ("Ecs", "Eni", "Eci")
GROUP_SERVER_TYPES = {"Instance": INSTANCE_TYPES, "Ip": ("Ip",)}


@dataclass(frozen=True)
class Profile:
    """What differs between ALB and NLB."""

    product: str
    state: Callable[[World], NetLbState]
    group_not_found: str
    conflict: str
    already_member: str
    duplicated: str
    # action -> the most ``Servers`` one call takes
    max_servers: Mapping[str, int]
    # action -> the documented "same ClientToken, other request" code
    token_mismatch: Mapping[str, str]
    port_min: int
    # (action, field) -> code for a missing / illegal member field
    missing: Callable[[str, str], str]
    illegal: Callable[[str, str], str]
    # actions whose Servers[].Port is required (for every server type)
    port_required: frozenset[str]
    answer: Callable[[Job, NetLbGroup], dict[str, Any]]
    member_view: Callable[[NetLbGroup, LbMember], dict[str, Any]]


# --- parameters ------------------------------------------------------------------------------

def servers(params: Mapping[str, str], prefix: str) -> list[dict[str, str]]:
    """``Prefix.N.Field`` parameters as one dict per N, in index order."""
    found: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        match = _SERVER_KEY.match(key)
        if match and match.group("prefix") == prefix:
            found.setdefault(int(match.group("n")), {})[match.group("field")] = value
    return [found[n] for n in sorted(found)]


def _int_field(raw: str, code: str, lo: int, hi: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(code, f"{raw!r} is not an integer.") from None
    if not lo <= value <= hi:
        raise ApiError(code, f"{value} is not within {lo}..{hi}.")
    return value


def _is_ipv4(text: str) -> bool:
    match = _IPV4.match(text)
    return match is not None and all(int(p) <= 255 for p in match.groups())


@dataclass
class _Entry:
    server_id: str
    server_type: str
    port: int | None
    server_ip: str
    weight: int | None
    description: str | None
    remote_ip: bool


def _entries(profile: Profile, action: str, params: Mapping[str, str], prefix: str,
             group: NetLbGroup, *, adding: bool = False) -> list[_Entry]:
    """The servers of one list. ``adding``: new members (their type must fit the group:
    ``Mismatch.ServerType``, and a server twice is ``duplicated``, both documented for the
    adding actions only); elsewhere a type the group does not hold is simply not a member and
    a server twice is an illegal list."""
    raw = servers(params, prefix)
    if not raw:
        raise ApiError("MissingParameter", f"The input parameter \"{prefix}\" that is mandatory "
                       "for processing this request is not supplied.")
    limit = profile.max_servers[action]
    if len(raw) > limit:
        raise ApiError(profile.illegal(action, prefix), f"{prefix} holds {len(raw)} servers; at "
                       f"most {limit} per call.")
    out: list[_Entry] = []
    seen: set[tuple[str, int | None, str]] = set()
    for item in raw:
        for name in ("ServerId", "ServerType"):
            if not item.get(name):
                raise ApiError(profile.missing(action, name), f"{prefix}.N.{name} is required.")
        server_type = item["ServerType"]
        if server_type not in GROUP_SERVER_TYPES[group.type]:
            if adding and server_type in (*INSTANCE_TYPES, "Ip"):
                raise ApiError("Mismatch.ServerType", f"ServerType {server_type} does not fit "
                               f"the {group.type} server group {group.id}.")
            if server_type not in (*INSTANCE_TYPES, "Ip"):
                raise ApiError(profile.illegal(action, "ServerType"),
                               f"ServerType {server_type!r} is not valid.")
        port_raw = item.get("Port", "")
        if port_raw == "" and action in profile.port_required:
            raise ApiError(profile.missing(action, "Port"), f"{prefix}.N.Port is required.")
        port = (None if port_raw == "" else
                _int_field(port_raw, profile.illegal(action, "Port"), profile.port_min, 65535))
        weight_raw = item.get("Weight", "")
        weight = (None if weight_raw == "" else
                  _int_field(weight_raw, profile.illegal(action, "Weight"), 0, 100))
        key = (item["ServerId"], port, item.get("ServerIp", ""))
        if key in seen:
            raise ApiError(profile.duplicated if adding else profile.illegal(action, prefix),
                           f"{item['ServerId']}:{port} appears twice.")
        seen.add(key)
        out.append(_Entry(item["ServerId"], server_type, port, item.get("ServerIp", ""),
                          weight, item.get("Description"),
                          item.get("RemoteIpEnabled", "").lower() == "true"))
    return out


def _fingerprint(params: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    skip = IGNORED_REQUEST_PARAMS | {"ClientToken", "RegionId"}
    return tuple(sorted((k, v) for k, v in params.items() if k not in skip))


# --- writes ----------------------------------------------------------------------------------

def _existing(profile: Profile, group: NetLbGroup, entry: _Entry) -> LbMember:
    member = group.find(entry.server_id, entry.server_type, entry.port, entry.server_ip)
    if member is None:
        raise ApiError("ResourceNotFound.BackendServer", f"The backend server "
                       f"{entry.server_id}:{entry.port} is not in server group {group.id}.", 404)
    return member


def _new_member(profile: Profile, action: str, world: World, group: NetLbGroup, entry: _Entry
                ) -> LbMember:
    ip, zone = "", ""
    if entry.server_type == "Ecs":
        inst = world.instances.get(entry.server_id)
        if inst is None:
            raise ApiError("ResourceNotFound.Ecs", f"The ECS instance {entry.server_id} does "
                           "not exist.", 404)
        ip, zone = inst.private_ip, inst.zone
        if entry.server_ip and entry.server_ip != ip:
            raise ApiError(profile.illegal(action, "ServerIp"),
                           f"{entry.server_ip} is not an address of {entry.server_id}.")
    elif entry.server_type == "Ip":
        if not _is_ipv4(entry.server_id):
            raise ApiError(profile.illegal(action, "ServerIp"),
                           f"{entry.server_id!r} is not an IP address.")
        ip = entry.server_id
    elif entry.server_type == "Eni" and not entry.server_ip:
        raise ApiError(profile.missing(action, "ServerIp"), "ServerIp is required for an "
                       "Eni server.")
    port = entry.port if entry.port is not None else 0
    member = LbMember(entry.server_id, entry.server_type, port,
                      100 if entry.weight is None else entry.weight,
                      entry.server_ip or ip, entry.description or "", zone,
                      entry.remote_ip, status="Adding")
    if any(m.key == member.key for m in group.members):
        raise ApiError(profile.already_member, f"{member.server_id}:{member.port} is already a "
                       f"backend server of {group.id}.")
    return member


def write(profile: Profile, action: str, world: World, params: Mapping[str, str],
          ctx: Context) -> dict[str, Any]:
    """AddServersToServerGroup, RemoveServersFromServerGroup,
    UpdateServerGroupServersAttribute, ReplaceServersInServerGroup."""
    state = profile.state(world)
    now = world.now()
    state.settle(now)
    token = params.get("ClientToken", "")
    dry_run = flag(params, "DryRun")
    fingerprint = _fingerprint(params)
    if token and not dry_run and (action, token) in state.tokens:
        first, job_id = state.tokens[(action, token)]
        if first != fingerprint and action in profile.token_mismatch:
            raise ApiError(profile.token_mismatch[action], "The ClientToken was used with "
                           "another request.")
        job = state.jobs[job_id]
        return profile.answer(job, state.groups[job.group_id])
    gid = require(params, "ServerGroupId")
    group = state.groups.get(gid)
    if group is None:
        raise ApiError(profile.group_not_found, f"The server group {gid} does not exist.", 404)
    added: list[LbMember] = []
    updated: list[tuple[LbMember, _Entry]] = []
    removed: list[LbMember] = []
    if action == "AddServersToServerGroup":
        added = [_new_member(profile, action, world, group, e)
                 for e in _entries(profile, action, params, "Servers", group, adding=True)]
    elif action == "UpdateServerGroupServersAttribute":
        updated = [(_existing(profile, group, e), e)
                   for e in _entries(profile, action, params, "Servers", group)]
    elif action == "RemoveServersFromServerGroup":
        removed = [_existing(profile, group, e)
                   for e in _entries(profile, action, params, "Servers", group)]
    else:  # ReplaceServersInServerGroup (ALB)
        removed = [_existing(profile, group, e)
                   for e in _entries(profile, action, params, "RemovedServers", group)]
        gone = {m.key for m in removed}
        kept = NetLbGroup(group.id, group.name, group.type, group.protocol, {}, False, 0, [],
                          group.vpc_id, [m for m in group.members if m.key not in gone])
        added = [_new_member(profile, action, world, kept, e)
                 for e in _entries(profile, action, params, "AddedServers", group,
                                   adding=True)]
    if group.job_id is not None:
        raise ApiError(profile.conflict, f"The server group {gid} is Configuring (job "
                       f"{group.job_id}); try again when it is Available.")
    if dry_run:
        raise ApiError("DryRunOperation", "Request validation has been passed with DryRun "
                       "flag set.")
    job = state.new_job(action, group, now, drain=bool(removed))
    for member in added:
        group.members.append(member)
    job.added = added
    for member, entry in updated:
        if entry.weight is not None:
            member.pending_weight = entry.weight
        if entry.description is not None:
            member.pending_description = entry.description
        member.status = "Configuring"
    job.updated = [m for m, _ in updated]
    for member in removed:
        member.status = "Removing"
    job.removed = removed
    if token:
        state.tokens[(action, token)] = (fingerprint, job.id)
    return profile.answer(job, group)


# --- reads -----------------------------------------------------------------------------------

def page(items: list[Any], params: Mapping[str, str], default: int = 20, hi: int = 100
         ) -> tuple[list[Any], dict[str, Any]]:
    """``MaxResults`` + ``NextToken`` paging: the chunk and the paging fields of the answer."""
    size = integer(params, "MaxResults", default, 1, hi)
    token = params.get("NextToken") or ""
    start = 0
    if token:
        if not token.startswith("t") or not token[1:].isdigit():
            raise ApiError("InvalidParameter", "The specified NextToken is not valid.")
        start = int(token[1:])
    chunk = items[start:start + size]
    nxt = f"t{start + size}" if start + size < len(items) else ""
    return chunk, {"MaxResults": size, "NextToken": nxt, "TotalCount": len(items)}


def tag_filter(params: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``Tag.N.Key`` / ``Tag.N.Value`` pairs (a pair without Value matches any value)."""
    out: list[tuple[str, str | None]] = []
    for item in servers(params, "Tag"):
        key = item.get("Key", "")
        if key:
            out.append((key, item.get("Value") or None))
    return out


def _tags_match(tags: Mapping[str, str], wanted: list[tuple[str, str | None]]) -> bool:
    return all(k in tags and (v is None or tags[k] == v) for k, v in wanted)


def tags_view(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _limited(params: Mapping[str, str], name: str, limit: int) -> list[str]:
    return indexed(params, name, limit, ("InvalidParameter", 400))


def list_server_groups(profile: Profile, world: World, params: Mapping[str, str],
                       view: Callable[[NetLbGroup], dict[str, Any]], *, max_names: int
                       ) -> dict[str, Any]:
    state = profile.state(world)
    state.settle(world.now())
    ids = _limited(params, "ServerGroupIds", 20)
    names = _limited(params, "ServerGroupNames", max_names)
    wanted = tag_filter(params)
    kind = params.get("ServerGroupType", "")
    vpc = params.get("VpcId", "")
    found = [g for g in state.groups.values()
             if (not ids or g.id in ids) and (not names or g.name in names)
             and (not kind or g.type == kind) and (not vpc or g.vpc_id == vpc)
             and _tags_match(g.tags, wanted)]
    chunk, paging = page(found, params)
    return {"ServerGroups": [view(g) for g in chunk], **paging}


def list_server_group_servers(profile: Profile, world: World, params: Mapping[str, str], *,
                              unknown_group_fails: bool, max_ids: int, with_ips: bool
                              ) -> dict[str, Any]:
    state = profile.state(world)
    state.settle(world.now())
    gid = params.get("ServerGroupId", "")
    server_ids = _limited(params, "ServerIds", max_ids)
    server_ips = _limited(params, "ServerIps", max_ids) if with_ips else []
    wanted = tag_filter(params)
    if gid:
        group = state.groups.get(gid)
        if group is None and unknown_group_fails:
            raise ApiError(profile.group_not_found, f"The server group {gid} does not exist.",
                           404)
        groups = [group] if group is not None else []
    else:
        groups = list(state.groups.values())
    rows = [(g, m) for g in groups if _tags_match(g.tags, wanted) for m in g.members
            if (not server_ids and not server_ips) or m.server_id in server_ids
            or (server_ips and m.server_ip in server_ips)]
    chunk, paging = page(rows, params)
    return {"Servers": [profile.member_view(g, m) for g, m in chunk], **paging}


def list_load_balancers(profile: Profile, world: World, params: Mapping[str, str],
                        view: Callable[[NetLb], dict[str, Any]], *, max_ids: int,
                        max_names: int) -> dict[str, Any]:
    state = profile.state(world)
    ids = _limited(params, "LoadBalancerIds", max_ids)
    names = _limited(params, "LoadBalancerNames", max_names)
    vpcs = _limited(params, "VpcIds", 10)
    wanted = tag_filter(params)
    found = [lb for lb in state.lbs.values()
             if (not ids or lb.id in ids) and (not names or lb.name in names)
             and (not vpcs or lb.vpc_id in vpcs) and _tags_match(lb.tags, wanted)]
    chunk, paging = page(found, params)
    return {"LoadBalancers": [view(lb) for lb in chunk], **paging}


def job_time_ms(seconds: float) -> int:
    return int(seconds * 1000)
