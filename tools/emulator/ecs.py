"""ECS 2014-05-26 actions: DescribeInstances, DescribeInstanceStatus, Start/Stop/Reboot/Delete."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from tools.emulator.world import ApiError, Instance, World

__all__ = ["ACTIONS", "Context", "flag", "indexed", "page_args"]

VERSION = "2014-05-26"
MAX_IDS = 100
STATUSES = ("Pending", "Running", "Starting", "Stopping", "Stopped")


class Context:
    """Who is calling (for ActionTrail) and the per-instance start failures."""

    def __init__(self, identity: dict[str, str], start_errors: Mapping[str, str],
                 status_of: Callable[[str], int] | None = None) -> None:
        self.identity = identity
        self.start_errors = start_errors
        # The documented HTTP status of a code for the action being answered (the contract).
        self.status_of = status_of


Handler = Callable[[World, dict[str, str], Context], dict[str, Any]]


# --- parameter helpers -------------------------------------------------------------------------

def flag(params: Mapping[str, str], name: str) -> bool:
    """Booleans arrive as ``str(bool)`` (``True``) from the SDK: parse case-insensitively."""
    value = params.get(name)
    if value is None or value == "":
        return False
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ApiError("InvalidParameter", f"The specified parameter {name} is not valid.")
    return lowered == "true"


def require(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise ApiError("MissingParameter", f"The input parameter \"{name}\" that is mandatory "
                       "for processing this request is not supplied.")
    return value


def integer(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError("InvalidParameter", f"The specified parameter {name} is not valid.") \
            from None
    if not lo <= number <= hi:
        raise ApiError("InvalidParameter", f"The specified parameter {name} ({number}) is out "
                       f"of range {lo}..{hi}.")
    return number


_INDEXED_RE_CACHE: dict[str, re.Pattern[str]] = {}


def indexed(params: Mapping[str, str], prefix: str, limit: int,
            too_many: tuple[str, int] = ("InvalidParameter", 400)) -> list[str]:
    """Values of ``Prefix.1``, ``Prefix.2`` ... in index order (flattened SDK lists); more than
    ``limit`` answers ``too_many`` (code, HTTP status)."""
    pattern = _INDEXED_RE_CACHE.setdefault(prefix, re.compile(re.escape(prefix) + r"\.(\d+)$"))
    found: list[tuple[int, str]] = []
    for key, value in params.items():
        match = pattern.match(key)
        if match:
            found.append((int(match.group(1)), value))
    if len(found) > limit:
        raise ApiError(too_many[0], f"The number of {prefix} exceeds {limit}.", too_many[1])
    return [value for _, value in sorted(found)]


def page_args(params: Mapping[str, str], max_size: int, default_size: int = 10
              ) -> tuple[int, int]:
    number = integer(params, "PageNumber", 1, 1, 10**9)
    size = integer(params, "PageSize", default_size, 1, max_size)
    return number, size


def token_page(items: list[Any], params: Mapping[str, str], max_size: int,
               default_size: int = 10) -> tuple[list[Any], str]:
    """MaxResults + NextToken paging; the token is the opaque offset of the next item."""
    size = integer(params, "MaxResults", default_size, 1, max_size)
    token = params.get("NextToken") or ""
    start = 0
    if token:
        if not token.startswith("t") or not token[1:].isdigit():
            raise ApiError("InvalidParameter", "The specified NextToken is not valid.")
        start = int(token[1:])
    chunk = items[start:start + size]
    nxt = f"t{start + size}" if start + size < len(items) else ""
    return chunk, nxt


# --- views -----------------------------------------------------------------------------------

def instance_view(world: World, inst: Instance) -> dict[str, Any]:
    return {
        "InstanceId": inst.id,
        "InstanceName": inst.name,
        "HostName": inst.name,
        "Description": "",
        "Status": inst.status,
        "InstanceType": inst.instance_type,
        "ZoneId": inst.zone,
        "RegionId": world.region,
        "ImageId": inst.image_id,
        "CreationTime": inst.creation_time,
        "StartTime": inst.creation_time,
        "InstanceChargeType": inst.charge_type,
        "InternetChargeType": "PayByTraffic",
        "InstanceNetworkType": "vpc",
        "SpotStrategy": inst.spot_strategy,
        "SpotInterruptionBehavior": inst.spot_interruption_behavior,
        "StoppedMode": inst.stopped_mode,
        "OperationLocks": {"LockReason": [{"LockReason": r} for r in inst.lock_reasons]},
        "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in inst.tags.items()]},
        "SecurityGroupIds": {"SecurityGroupId": list(inst.launch.security_group_ids)},
        "KeyPairName": inst.launch.key_pair_name or "",
        "SpotPriceLimit": inst.spot_price_limit,
        "VpcAttributes": {
            "VpcId": inst.vpc_id,
            "VSwitchId": world.vswitch_of(inst),
            "PrivateIpAddress": {"IpAddress": [inst.private_ip]},
            "NatIpAddress": "",
        },
        "PublicIpAddress": {"IpAddress": [inst.public_ip] if inst.public_ip else []},
        "InnerIpAddress": {"IpAddress": []},
        "ExpiredTime": inst.expired_time,
        "AutoReleaseTime": inst.auto_release_time,
        "NetworkInterfaces": {"NetworkInterface": [
            {"NetworkInterfaceId": eni.id, "Type": "Primary" if n == 0 else "Secondary",
             "PrimaryIpAddress": eni.private_ip,
             "PrivateIpSets": {"PrivateIpSet": [
                 {"PrivateIpAddress": eni.private_ip, "Primary": True}]}}
            for n, eni in enumerate(inst.interfaces())]},
    }


def _region(world: World, params: Mapping[str, str]) -> bool:
    """True when the call addresses the fleet's region (others are valid but empty)."""
    return require(params, "RegionId") == world.region


def _get(world: World, iid: str) -> Instance:
    inst = world.instances.get(iid)
    if inst is None:
        raise ApiError("InvalidInstanceId.NotFound", f"The specified InstanceId {iid} does not "
                       "exist.")
    return inst


def _check_lock(inst: Instance) -> None:
    reasons = {r.lower() for r in inst.lock_reasons}
    if "security" in reasons:
        raise ApiError("InstanceLockedForSecurity", "The specified operation is denied as your "
                       "instance is locked for security reasons.")
    if reasons & {"financial", "dedicatedhostfinancial"}:
        raise ApiError("InsufficientBalance", "Your account does not have enough balance.")
    if reasons & {"recycling", "refunded"}:
        raise ApiError("IncorrectInstanceStatus", "The current status of the resource does not "
                       "support this operation (instance is being recycled).")


# InstanceId.N beyond 100 (DescribeInstanceStatus, StartInstances, StopInstances: documented 403).
TOO_MANY_IDS = ("InvalidParameter.TooManyInstanceIds", 403)


def _dry_run(params: Mapping[str, str]) -> None:
    """Single-instance actions: "If the request passes the dry run, the DryRunOperation error
    code is returned" (their DryRun parameter; contract.PLATFORM_CODES)."""
    if flag(params, "DryRun"):
        raise ApiError("DryRunOperation", "Request validation has been passed with DryRun flag "
                       "set.")


# --- actions ---------------------------------------------------------------------------------

def describe_instances(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    in_region = _region(world, params)
    items = list(world.instances.values()) if in_region else []
    raw_ids = params.get("InstanceIds")
    if raw_ids:
        try:
            ids = json.loads(raw_ids)
        except ValueError:
            raise ApiError("InvalidParameter", "The specified parameter InstanceIds is not a "
                           "JSON array.") from None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError("InvalidParameter", "The specified parameter InstanceIds is not a "
                           "JSON array of strings.")
        if len(ids) > MAX_IDS:
            raise ApiError("InvalidParameter", f"The number of InstanceIds exceeds {MAX_IDS}.")
        wanted = set(ids)
        items = [i for i in items if i.id in wanted]
    status = params.get("Status")
    if status:
        if status not in STATUSES:
            raise ApiError("InvalidStatus.NotFound", f"The specified Status {status} is not "
                           "valid.", 404)
        items = [i for i in items if i.status == status]
    lock_reason = params.get("LockReason")
    if lock_reason:
        items = [i for i in items if lock_reason.lower() in (r.lower() for r in i.lock_reasons)]
    for key, name in (("InstanceName", "name"), ("ZoneId", "zone"),
                      ("InstanceType", "instance_type")):
        if params.get(key):
            items = [i for i in items if getattr(i, name) == params[key]]
    for n in range(1, 21):
        tag_key = params.get(f"Tag.{n}.Key")
        tag_value = params.get(f"Tag.{n}.Value")
        if tag_key is None and tag_value is None:
            continue
        if not tag_key:
            raise ApiError("InvalidParameter", f"Tag.{n}.Key is required with a value.")
        items = [i for i in items if tag_key in i.tags
                 and (tag_value is None or i.tags[tag_key] == tag_value)]
    if any(re.match(r"Tag\.(\d+)\.", k) and int(k.split(".")[1]) > 20 for k in params):
        raise ApiError("InvalidTagCount", "At most 20 tags can be specified.")
    body: dict[str, Any] = {"TotalCount": len(items)}
    if "MaxResults" in params or "NextToken" in params:
        chunk, nxt = token_page(items, params, 100)
        body["NextToken"] = nxt
    else:
        number, size = page_args(params, 100)
        chunk = items[(number - 1) * size:number * size]
        body["PageNumber"] = number
        body["PageSize"] = size
        body["NextToken"] = ""
    body["Instances"] = {"Instance": [instance_view(world, i) for i in chunk]}
    return body


def describe_instance_status(world: World, params: dict[str, str], ctx: Context
                             ) -> dict[str, Any]:
    in_region = _region(world, params)
    items = list(world.instances.values()) if in_region else []
    ids = indexed(params, "InstanceId", MAX_IDS, TOO_MANY_IDS)
    if ids:
        wanted = set(ids)
        items = [i for i in items if i.id in wanted]
    if params.get("ZoneId"):
        items = [i for i in items if i.zone == params["ZoneId"]]
    number, size = page_args(params, 50)
    chunk = items[(number - 1) * size:number * size]
    return {
        "TotalCount": len(items), "PageNumber": number, "PageSize": size,
        "InstanceStatuses": {"InstanceStatus": [{"InstanceId": i.id, "Status": i.status}
                                                for i in chunk]},
    }


def _check_start(inst: Instance, ctx: Context) -> None:
    _check_lock(inst)
    if inst.status != "Stopped":
        raise ApiError("IncorrectInstanceStatus", f"The current status of the resource does not "
                       f"support this operation (instance is {inst.status}).")
    err = ctx.start_errors.get(inst.id)
    if err:
        status = ctx.status_of(err) if ctx.status_of is not None else None
        raise ApiError(err, f"StartInstance on {inst.id} fails with {err} (emulator fault).",
                       status)


def start_instance(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    inst = _get(world, require(params, "InstanceId"))
    _check_start(inst, ctx)
    _dry_run(params)
    world.begin_start(inst)
    world.record_trail("StartInstance", inst.id, ctx.identity)
    return {}


def _batch(world: World, params: dict[str, str], ctx: Context, *, event: str,
           check: Callable[[Instance], None], act: Callable[[Instance], None],
           next_status: str) -> dict[str, Any]:
    """Start/StopInstances: AllTogether fails entirely on any failure; SuccessFirst reports.

    DryRun answers 400 ``DRYRUN.SUCCESS`` (their documented code) when the check passes; with
    SuccessFirst "only DRYRUN.SUCCESS is returned regardless of whether the request passes the
    dry run" (StartInstances reference, DryRun).
    """
    _region(world, params)
    ids = indexed(params, "InstanceId", MAX_IDS, TOO_MANY_IDS)
    if not ids:
        require(params, "InstanceId.1")
    mode = params.get("BatchOptimization") or "AllTogether"
    if mode not in ("AllTogether", "SuccessFirst"):
        raise ApiError("InvalidParameter", f"The specified BatchOptimization {mode} is not "
                       "valid.")
    dry_run = flag(params, "DryRun")
    outcomes: list[tuple[str, Instance | None, ApiError | None]] = []
    for iid in ids:
        try:
            found = _get(world, iid)
            check(found)
            outcomes.append((iid, found, None))
        except ApiError as failure:
            outcomes.append((iid, world.instances.get(iid), failure))
    failures = [bad for _, _, bad in outcomes if bad is not None]
    if dry_run and (mode == "SuccessFirst" or not failures):
        raise ApiError("DRYRUN.SUCCESS", "Request validation has been passed with DryRun flag "
                       "set.", 400)
    if mode == "AllTogether" and failures:
        raise failures[0]
    responses = []
    for iid, inst, problem in outcomes:
        previous = inst.status if inst is not None else ""
        if problem is not None or inst is None:
            err = problem or ApiError("InvalidInstanceId.NotFound", f"{iid} does not exist.")
            responses.append({"InstanceId": iid, "Code": err.code,
                              "Message": err.message, "PreviousStatus": previous,
                              "CurrentStatus": previous})
        else:
            act(inst)
            world.record_trail(event, iid, ctx.identity)
            responses.append({"InstanceId": iid, "Code": "200", "Message": "success",
                              "PreviousStatus": previous, "CurrentStatus": next_status})
    return {"InstanceResponses": {"InstanceResponse": responses}}


def start_instances(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    return _batch(world, params, ctx, event="StartInstances",
                  check=lambda i: _check_start(i, ctx), act=world.begin_start,
                  next_status="Starting")


def _stop_mode(params: Mapping[str, str]) -> str | None:
    mode = params.get("StoppedMode")
    if mode and mode not in ("KeepCharging", "StopCharging"):
        raise ApiError("InvalidParameter", f"The specified StoppedMode {mode} is not valid.")
    return mode or None


def _check_stop(inst: Instance) -> None:
    if "security" in (r.lower() for r in inst.lock_reasons):
        _check_lock(inst)
    if inst.status != "Running":
        raise ApiError("IncorrectInstanceStatus", f"The current status of the resource does not "
                       f"support this operation (instance is {inst.status}).")


def stop_instance(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    inst = _get(world, require(params, "InstanceId"))
    mode = _stop_mode(params)
    flag(params, "ForceStop")
    _check_stop(inst)
    _dry_run(params)
    world.begin_stop(inst, mode)
    world.record_trail("StopInstance", inst.id, ctx.identity)
    return {}


def stop_instances(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    mode = _stop_mode(params)
    flag(params, "ForceStop")
    return _batch(world, params, ctx, event="StopInstances", check=_check_stop,
                  act=lambda i: world.begin_stop(i, mode), next_status="Stopping")


def reboot_instance(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    inst = _get(world, require(params, "InstanceId"))
    flag(params, "ForceStop")
    _check_stop(inst)
    _dry_run(params)
    world.begin_reboot(inst)
    world.record_trail("RebootInstance", inst.id, ctx.identity)
    return {}


def delete_instance(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    inst = _get(world, require(params, "InstanceId"))
    force = flag(params, "Force")
    if inst.status != "Stopped" and not force:
        raise ApiError("IncorrectInstanceStatus", f"The current status of the resource does not "
                       f"support this operation (instance is {inst.status}; use Force).")
    _dry_run(params)
    world.release(inst.id)
    world.record_trail("DeleteInstance", inst.id, ctx.identity)
    return {}


from tools.emulator.launch import LAUNCH_ACTIONS  # noqa: E402 (uses the helpers above)

ACTIONS: dict[str, Handler] = {
    **LAUNCH_ACTIONS,
    "DescribeInstances": describe_instances,
    "DescribeInstanceStatus": describe_instance_status,
    "StartInstance": start_instance,
    "StartInstances": start_instances,
    "StopInstance": stop_instance,
    "StopInstances": stop_instances,
    "RebootInstance": reboot_instance,
    "DeleteInstance": delete_instance,
}
