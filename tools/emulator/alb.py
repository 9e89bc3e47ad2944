"""ALB (Application Load Balancer) 2020-06-16: load balancers, server groups, members, jobs.

Shared behaviour (asynchronous writes, ``Configuring``, ``ClientToken``, ``DryRun``) is in
:mod:`tools.emulator.lbapi` and :mod:`tools.emulator.netlb`. ALB specifics (reference §1):

- conflict while a job holds the group: 400 ``IncorrectStatus.ServerGroup``;
- per call: ``UpdateServerGroupServersAttribute`` 40 servers (SDK and help page; the metadata
  says 200), Add / Remove / Replace 200, ``ListServerGroupServers`` ``ServerIds`` 20,
  ``ListAsynJobs`` ``JobIds`` / ``ResourceIds`` 10: more answers 400 ``InvalidParameter`` (no
  specific code is documented);
- ``Port`` is required on Add / Remove / Replace (every server type the emulator serves);
- ``ListServerGroupServers`` without ``ServerGroupId`` lists the members of every group (the
  schema allows it; no source shows what the real service does, reference §1.2); with an
  unknown ``ServerGroupId`` it answers an empty list (no 404 is documented for it);
- already a member: 400 ``Conflict.BackendServer``; twice in one call: 400
  ``DuplicatedParam.BackendServer``; unknown instance: 404 ``ResourceNotFound.Ecs``.
- jobs are read back with ``ListAsynJobs`` (``Status`` ``Processing`` | ``Succeeded`` |
  ``Failed`` with ``ErrorCode`` / ``ErrorMessage``, ``ResourceType`` ``servergroup``,
  ``OperateType`` ``Update``).
"""

from __future__ import annotations

from typing import Any

from tools.emulator import lbapi
from tools.emulator.ecs import Context, Handler, indexed, integer
from tools.emulator.netlb import Job, LbMember, NetLb, NetLbGroup, NetLbState
from tools.emulator.world import ApiError, World

__all__ = ["ACTIONS", "PROFILE", "VERSION"]

VERSION = "2020-06-16"
_WRITES = ("AddServersToServerGroup", "RemoveServersFromServerGroup",
           "UpdateServerGroupServersAttribute", "ReplaceServersInServerGroup")


def _state(world: World) -> NetLbState:
    return world.albs


def _answer(job: Job, group: NetLbGroup) -> dict[str, Any]:
    return {"JobId": job.id}


def _member_view(group: NetLbGroup, m: LbMember) -> dict[str, Any]:
    return {"ServerGroupId": group.id, "ServerId": m.server_id, "ServerIp": m.server_ip,
            "ServerType": m.server_type, "Port": m.port, "Weight": m.weight,
            "Description": m.description, "RemoteIpEnabled": m.remote_ip_enabled,
            "Status": m.status}


PROFILE = lbapi.Profile(
    product="alb", state=_state,
    group_not_found="ResourceNotFound.ServerGroup", conflict="IncorrectStatus.ServerGroup",
    already_member="Conflict.BackendServer", duplicated="DuplicatedParam.BackendServer",
    max_servers={"AddServersToServerGroup": 200, "RemoveServersFromServerGroup": 200,
                 "UpdateServerGroupServersAttribute": 40, "ReplaceServersInServerGroup": 200},
    token_mismatch={"ReplaceServersInServerGroup": "IdempotentParameterMismatch"},
    port_min=1,
    missing=lambda action, name: "MissingParameter",
    illegal=lambda action, name: ("IllegalParam.ServerIp" if name == "ServerIp"
                                  and action == "AddServersToServerGroup"
                                  else "InvalidParameter"),
    port_required=frozenset({"AddServersToServerGroup", "RemoveServersFromServerGroup",
                             "ReplaceServersInServerGroup"}),
    answer=_answer, member_view=_member_view,
)


def _group_view(group: NetLbGroup) -> dict[str, Any]:
    return {
        "ServerGroupId": group.id, "ServerGroupName": group.name,
        "ServerGroupType": group.type, "ServerGroupStatus": group.status,
        "Protocol": group.protocol, "Scheduler": "Wrr", "VpcId": group.vpc_id,
        "ServerCount": len(group.members), "RelatedLoadBalancerIds": list(group.lb_ids),
        "ConnectionDrainConfig": {"ConnectionDrainEnabled": group.drain_enabled,
                                  "ConnectionDrainTimeout": group.drain_timeout_s},
        "Tags": lbapi.tags_view(group.tags),
    }


def _lb_view(lb: NetLb) -> dict[str, Any]:
    return {
        "LoadBalancerId": lb.id, "LoadBalancerName": lb.name, "LoadBalancerStatus": "Active",
        "LoadBalancerBussinessStatus": "Normal", "LoadBalancerEdition": lb.edition,
        "AddressType": "Intranet", "AddressIpVersion": "IPv4", "VpcId": lb.vpc_id,
        "DNSName": f"{lb.id}.emulator.alb.aliyuncs.com", "CreateTime": lb.create_time,
        "Tags": lbapi.tags_view(lb.tags),
    }


def _write(action: str) -> Handler:
    def handler(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
        return lbapi.write(PROFILE, action, world, params, ctx)
    return handler


def list_load_balancers(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    return lbapi.list_load_balancers(PROFILE, world, params, _lb_view, max_ids=20,
                                     max_names=10)


def list_server_groups(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    return lbapi.list_server_groups(PROFILE, world, params, _group_view, max_names=10)


def list_server_group_servers(world: World, params: dict[str, str], ctx: Context
                              ) -> dict[str, Any]:
    return lbapi.list_server_group_servers(PROFILE, world, params, unknown_group_fails=False,
                                           max_ids=20, with_ips=False)


def _job_view(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Id": job.id, "ApiName": job.api_name, "Status": job.status, "OperateType": "Update",
        "ResourceId": job.group_id, "ResourceType": "servergroup",
        "CreateTime": lbapi.job_time_ms(job.created),
        "ModifyTime": lbapi.job_time_ms(job.modified)}
    if job.status == "Failed":
        out.update(ErrorCode=job.error_code, ErrorMessage=job.error_message)
    return out


def list_asyn_jobs(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    state = world.albs
    state.settle(world.now())
    too_many = ("InvalidParameter", 400)
    job_ids = indexed(params, "JobIds", 10, too_many)
    resource_ids = indexed(params, "ResourceIds", 10, too_many)
    resource_type = params.get("ResourceType", "")
    api_name = params.get("ApiName", "")
    begin = integer(params, "BeginTime", 0, 0, 2**62)
    end = integer(params, "EndTime", 2**62, 0, 2**62)
    if begin > end:
        raise ApiError("InvalidParameter", "BeginTime is later than EndTime.")
    found = [j for j in state.jobs.values()
             if (not job_ids or j.id in job_ids) and (not resource_ids or j.group_id in
                                                       resource_ids)
             and resource_type in ("", "servergroup") and (not api_name or j.api_name == api_name)
             and begin <= lbapi.job_time_ms(j.created) <= end]
    chunk, paging = lbapi.page(found, params)
    return {"Jobs": [_job_view(j) for j in chunk], **paging}


ACTIONS: dict[str, Handler] = {
    "ListLoadBalancers": list_load_balancers,
    "ListServerGroups": list_server_groups,
    "ListServerGroupServers": list_server_group_servers,
    "ListAsynJobs": list_asyn_jobs,
    **{action: _write(action) for action in _WRITES},
}
