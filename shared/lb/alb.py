"""ALB (Application Load Balancer, API 2020-06-16) server groups, over
``alibabacloud_alb20200616`` (imported when a call is made).

Per-call limits (reference/load-balancers-and-replacement.md §1.8): ListServerGroupServers
``ServerIds`` ≤ 20 (the metadata's maxItems; the page says 40), UpdateServerGroupServersAttribute
``Servers`` ≤ 40, Remove/Add ≤ 200, ListAsynJobs ``JobIds`` ≤ 10. ALB has no GetJobStatus: a
job is read back with ListAsynJobs (``Succeeded`` | ``Failed`` | ``Processing``). Connection
draining is the group's ``ConnectionDrainConfig`` (0–900 s, Standard/WAF editions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from shared.clients import _chunks, _int, _opt, _str
from shared.lb.model import JobStatus, Product, ServerGroup
from shared.lb.servergroups import Operation, ServerGroupClient, _ids, _list, _mapping, _tags

__all__ = ["AlbClient"]

JOB_IDS_PER_CALL = 10


class AlbClient(ServerGroupClient):
    """ALB server groups: find, scan, weight, remove, add, jobs."""

    product: ClassVar[Product] = Product.ALB
    RAM_ACTIONS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "list": ("alb:ListServerGroups",),
        "find": ("alb:ListServerGroups", "alb:ListServerGroupServers"),
        "scan": ("alb:ListServerGroups", "alb:ListServerGroupServers"),
        "members": ("alb:ListServerGroups", "alb:ListServerGroupServers"),
        "weight": ("alb:UpdateServerGroupServersAttribute", "alb:ListAsynJobs"),
        "remove": ("alb:RemoveServersFromServerGroup", "alb:ListAsynJobs"),
        "add": ("alb:AddServersToServerGroup", "alb:ListAsynJobs"),
        "wait": ("alb:ListAsynJobs",),
    }
    LIST_SERVER_IDS: ClassVar[int] = 20
    LIST_GROUP_IDS: ClassVar[int] = 20
    WRITE_LIMITS: ClassVar[Mapping[Operation, int]] = {"weight": 40, "remove": 200, "add": 200}

    def _models(self) -> Any:
        from alibabacloud_alb20200616 import models

        return models

    def _group_from_map(self, item: Mapping[str, Any]) -> ServerGroup:
        drain = _mapping(item.get("ConnectionDrainConfig"))
        return ServerGroup(
            product=Product.ALB,
            group_id=_str(item.get("ServerGroupId")),
            name=_str(item.get("ServerGroupName")),
            group_type=_str(item.get("ServerGroupType")) or "Instance",
            status=_str(item.get("ServerGroupStatus")) or "Available",
            load_balancer_ids=_ids(item.get("RelatedLoadBalancerIds")),
            native_drain=drain.get("ConnectionDrainEnabled") is True,
            drain_timeout_s=_int(drain.get("ConnectionDrainTimeout")),
            tags=_tags(item.get("Tags")),
            vpc_id=_opt(item.get("VpcId")),
        )

    def job_statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        """ListAsynJobs, ≤ 10 job ids per call."""
        models = self._models()
        out: dict[str, tuple[JobStatus, str | None]] = {}
        for chunk in _chunks(list(dict.fromkeys(j for j in job_ids if j)), JOB_IDS_PER_CALL):

            def send(chunk: Sequence[str] = chunk) -> Any:
                return self._sdk.list_asyn_jobs(models.ListAsynJobsRequest(
                    job_ids=list(chunk), max_results=len(chunk)))

            body = self._call("alb:ListAsynJobs", list(chunk), send)
            for job in _list(body.get("Jobs")):
                out[_str(job.get("Id"))] = (_job_status(job.get("Status")),
                                            _opt(job.get("ErrorCode")))
        return out


def _job_status(value: object) -> JobStatus:
    text = _str(value).lower()
    if text == "succeeded":
        return JobStatus.SUCCEEDED
    if text == "failed":
        return JobStatus.FAILED
    return JobStatus.PROCESSING
