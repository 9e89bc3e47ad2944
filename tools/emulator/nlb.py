"""NLB (Network Load Balancer) 2022-04-30: load balancers, server groups, members, jobs.

Shared behaviour (asynchronous writes, ``Configuring``, ``ClientToken``, ``DryRun``) is in
:mod:`tools.emulator.lbapi` and :mod:`tools.emulator.netlb`. NLB specifics (reference §2):

- conflict while a job holds the group: 400 ``Conflict.Lock`` (``IncorrectStatus.serverGroup``
  is documented too: inject it with ``set_faults(fail_next=...)``);
- per call: Add / Remove / Update 200 servers: more answers 400 ``IllegalParam.Servers``
  (Remove / Update document ``IllegalParam.%s``; Add ``IllegalParam``);
  ``ListServerGroupServers`` ``ServerIds`` / ``ServerIps`` 40 (the help page; the metadata
  says 100), ``ListServerGroups`` ``ServerGroupIds`` / ``ServerGroupNames`` 20: more answers
  400 ``InvalidParameter``;
- ``Port`` is required on Update (the contract), optional elsewhere (0: multi-port groups);
- ``ListServerGroupServers`` without ``ServerGroupId`` lists every group's members (used that
  way by terraform-provider-alicloud, reference §2.2); an unknown ``ServerGroupId`` answers 404
  ``ResourceNotFound.serverGroup``;
- already a member or twice in one call: 400 ``DuplicatedParam.Server``; unknown instance: 404
  ``ResourceNotFound.Ecs``; a missing member field: ``MissingParam.<Field>`` (Add, Update),
  ``IllegalParam.<Field>`` (Remove, which documents no ``MissingParam``);
- ``ListAsynJobs`` (SDK-documented, not in api-meta: ``contract.SUPPLEMENTARY_APIS``) answers
  ``Jobs[]{Id, Status}`` with ``Processing`` | ``Succeeded`` | ``Failed``;
- ``GetJobStatus`` answers only the two values its page and the SDK document: ``Succeeded``, or
  ``processing`` (lower case) for every job that has not succeeded, a failed one included
  (``Emulator.fail_lb_job``): no failed state is documented there, and ACK's cloud controller
  waits for ``Succeeded`` until its timeout (reference §2.6), so a failed job is one that never
  succeeds; an unknown job 404 ``ResourceNotFound.JobId``.
"""

from __future__ import annotations

from typing import Any

from tools.emulator import lbapi
from tools.emulator.ecs import Context, Handler, indexed, require
from tools.emulator.netlb import Job, LbMember, NetLb, NetLbGroup, NetLbState
from tools.emulator.world import ApiError, World

__all__ = ["ACTIONS", "PROFILE", "VERSION"]

VERSION = "2022-04-30"
_WRITES = ("AddServersToServerGroup", "RemoveServersFromServerGroup",
           "UpdateServerGroupServersAttribute")


def _state(world: World) -> NetLbState:
    return world.nlbs


def _answer(job: Job, group: NetLbGroup) -> dict[str, Any]:
    return {"JobId": job.id, "ServerGroupId": group.id}


def _member_view(group: NetLbGroup, m: LbMember) -> dict[str, Any]:
    return {"ServerGroupId": group.id, "ServerId": m.server_id, "ServerIp": m.server_ip,
            "ServerType": m.server_type, "Port": m.port, "Weight": m.weight,
            "Description": m.description, "ZoneId": m.zone_id, "Status": m.status}


def _missing(action: str, name: str) -> str:
    if action == "RemoveServersFromServerGroup":
        return f"IllegalParam.{name}"
    return f"MissingParam.{name}"


def _illegal(action: str, name: str) -> str:
    if action == "AddServersToServerGroup":
        return "IllegalParam.IP" if name == "ServerIp" else "IllegalParam"
    return f"IllegalParam.{name}"


PROFILE = lbapi.Profile(
    product="nlb", state=_state,
    group_not_found="ResourceNotFound.serverGroup", conflict="Conflict.Lock",
    already_member="DuplicatedParam.Server", duplicated="DuplicatedParam.Server",
    max_servers=dict.fromkeys(_WRITES, 200),
    token_mismatch={"AddServersToServerGroup": "IdempotenceSignatureMismatch",
                    "RemoveServersFromServerGroup": "IdempotenceSignatureMismatch"},
    port_min=0, missing=_missing, illegal=_illegal,
    port_required=frozenset({"UpdateServerGroupServersAttribute"}),
    answer=_answer, member_view=_member_view,
)


def _group_view_for(world: World) -> Any:
    def view(group: NetLbGroup) -> dict[str, Any]:
        return {
            "ServerGroupId": group.id, "ServerGroupName": group.name,
            "ServerGroupType": group.type, "ServerGroupStatus": group.status,
            "Protocol": group.protocol, "Scheduler": "Wrr", "VpcId": group.vpc_id,
            "RegionId": world.region, "AliUid": int(world.account_id),
            "AddressIPVersion": "ipv4", "AnyPortEnabled": False,
            "PreserveClientIpEnabled": True,
            "ServerCount": len(group.members), "RelatedLoadBalancerIds": list(group.lb_ids),
            "ConnectionDrainEnabled": group.drain_enabled,
            "ConnectionDrainTimeout": group.drain_timeout_s,
            "Tags": lbapi.tags_view(group.tags),
        }
    return view


def _lb_view_for(world: World) -> Any:
    def view(lb: NetLb) -> dict[str, Any]:
        return {
            "LoadBalancerId": lb.id, "LoadBalancerName": lb.name, "LoadBalancerType": "Network",
            "LoadBalancerStatus": "Active", "LoadBalancerBusinessStatus": "Normal",
            "AddressType": "Intranet", "AddressIpVersion": "ipv4", "VpcId": lb.vpc_id,
            "RegionId": world.region, "DNSName": f"{lb.id}.emulator.nlb.aliyuncs.com",
            "CreateTime": lb.create_time, "Tags": lbapi.tags_view(lb.tags),
        }
    return view


def _write(action: str) -> Handler:
    def handler(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
        return lbapi.write(PROFILE, action, world, params, ctx)
    return handler


def list_load_balancers(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    return lbapi.list_load_balancers(PROFILE, world, params, _lb_view_for(world), max_ids=20,
                                     max_names=20)


def list_server_groups(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    return lbapi.list_server_groups(PROFILE, world, params, _group_view_for(world),
                                    max_names=20)


def list_server_group_servers(world: World, params: dict[str, str], ctx: Context
                              ) -> dict[str, Any]:
    return lbapi.list_server_group_servers(PROFILE, world, params, unknown_group_fails=True,
                                           max_ids=40, with_ips=True)


def get_job_status(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    world.nlbs.settle(world.now())
    job_id = require(params, "JobId")
    job = world.nlbs.jobs.get(job_id)
    if job is None:
        raise ApiError("ResourceNotFound.JobId", f"The job {job_id} does not exist.", 404)
    # Only Succeeded and processing are documented (module note): a failed job never succeeds.
    return {"Status": "Succeeded" if job.status == "Succeeded" else "processing"}


def list_asyn_jobs(world: World, params: dict[str, str], ctx: Context) -> dict[str, Any]:
    """The asked jobs that exist (unknown ids are left out), or every job without JobIds."""
    world.nlbs.settle(world.now())
    job_ids = indexed(params, "JobIds", 1000)
    jobs = world.nlbs.jobs
    found = [jobs[j] for j in job_ids if j in jobs] if job_ids else list(jobs.values())
    return {"Jobs": [{"Id": j.id, "Status": j.status} for j in found], "TotalCount": len(found)}


ACTIONS: dict[str, Handler] = {
    "ListLoadBalancers": list_load_balancers,
    "ListAsynJobs": list_asyn_jobs,
    "ListServerGroups": list_server_groups,
    "ListServerGroupServers": list_server_group_servers,
    "GetJobStatus": get_job_status,
    **{action: _write(action) for action in _WRITES},
}
