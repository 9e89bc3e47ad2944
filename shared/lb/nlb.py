"""NLB (Network Load Balancer, API 2022-04-30) server groups, over
``alibabacloud_nlb20220430`` (imported when a call is made).

Per-call limits (reference/load-balancers-and-replacement.md §2.8): ListServerGroupServers
``ServerIds`` ≤ 40 (the page; metadata 100), Update/Remove/Add ``Servers`` ≤ 200,
ListServerGroups ``ServerGroupIds`` ≤ 20. ``ServerGroupId`` is optional on
ListServerGroupServers: with ``where`` empty, :meth:`NlbClient.find` asks across every group in
one paged call. Connection draining: ``ConnectionDrainEnabled`` / ``ConnectionDrainTimeout``
(10–900 s) on the group.

Jobs are read with GetJobStatus, whose ``Status`` is documented as ``Succeeded`` or
``processing`` and nothing else (reference §2.6): no failed state. A job that fails therefore
never reads ``Succeeded``: it stays :attr:`JobStatus.PROCESSING` here and the wait for it ends
by its timeout, never as done: :meth:`shared.lb.pools.LoadBalancers.wait_jobs` returns it among
the unfinished writes (the drain reports them as ``JobNotFinished``), the wait for a chunk's job
before the next chunk raises the retryable ``JobTimeout``. ACK's cloud controller reads NLB jobs
the same way (GetJobStatus until ``Succeeded`` or its timeout). NLB ListAsynJobs would say
``Failed``, but the api-meta snapshot does not document it, so it is not called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from shared.clients import _chunks, _int, _opt, _str, _unique
from shared.lb.model import JobStatus, Membership, Product, ServerGroup
from shared.lb.servergroups import Operation, ServerGroupClient, _ids, _tags
from shared.log import emit, get_logger

__all__ = ["NlbClient"]

log = get_logger(__name__)


class NlbClient(ServerGroupClient):
    """NLB server groups: find (across groups), scan, weight, remove, add, jobs."""

    product: ClassVar[Product] = Product.NLB
    RAM_ACTIONS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "list": ("nlb:ListServerGroups",),
        "find": ("nlb:ListServerGroups", "nlb:ListServerGroupServers"),
        "scan": ("nlb:ListServerGroups", "nlb:ListServerGroupServers"),
        "members": ("nlb:ListServerGroups", "nlb:ListServerGroupServers"),
        "weight": ("nlb:UpdateServerGroupServersAttribute", "nlb:GetJobStatus"),
        "remove": ("nlb:RemoveServersFromServerGroup", "nlb:GetJobStatus"),
        "add": ("nlb:AddServersToServerGroup", "nlb:GetJobStatus"),
        "wait": ("nlb:GetJobStatus",),
        # No member health status is documented for ALB/NLB (api-meta): nothing to read.
        "health": (),
    }
    LIST_SERVER_IDS: ClassVar[int] = 40
    LIST_GROUP_IDS: ClassVar[int] = 20
    WRITE_LIMITS: ClassVar[Mapping[Operation, int]] = {"weight": 200, "remove": 200, "add": 200}

    def _models(self) -> Any:
        from alibabacloud_nlb20220430 import models

        return models

    def _region_kwargs(self) -> dict[str, Any]:
        return {"region_id": self.region}

    def _group_from_map(self, item: Mapping[str, Any]) -> ServerGroup:
        return ServerGroup(
            product=Product.NLB,
            group_id=_str(item.get("ServerGroupId")),
            name=_str(item.get("ServerGroupName")),
            group_type=_str(item.get("ServerGroupType")) or "Instance",
            status=_str(item.get("ServerGroupStatus")) or "Available",
            load_balancer_ids=_ids(item.get("RelatedLoadBalancerIds")),
            native_drain=item.get("ConnectionDrainEnabled") is True,
            drain_timeout_s=_int(item.get("ConnectionDrainTimeout")),
            tags=_tags(item.get("Tags")),
            vpc_id=_opt(item.get("VpcId")),
        )

    def find(self, server_ids: Sequence[str], where: Sequence[str]) -> list[Membership]:
        """With ``where`` empty: one paged ListServerGroupServers(ServerIds) across every group
        (≤ 40 ids per call), then the groups it named described once; else per group."""
        if where:
            return super().find(server_ids, where)
        ids = _unique(server_ids)
        items = [i for chunk in _chunks(ids, self.LIST_SERVER_IDS)
                 for i in self._members(None, chunk) if _str(i.get("ServerId")) in set(chunk)]
        groups = self._groups_of([_str(i.get("ServerGroupId")) for i in items])
        out: list[Membership] = []
        for item in items:
            group = groups.get(_str(item.get("ServerGroupId")))
            if group is None:  # deleted between the two calls
                emit(log, "server group vanished", level=30, product="nlb",
                     group_id=_str(item.get("ServerGroupId")))
                continue
            out.append(self._membership(item, group))
        return out

    def job_statuses(self, job_ids: Sequence[str]) -> dict[str, tuple[JobStatus, str | None]]:
        """GetJobStatus, one call per job: ``Succeeded`` is done, anything else is still
        processing (a failed job included: module note). Never FAILED, never an error code."""
        models = self._models()
        out: dict[str, tuple[JobStatus, str | None]] = {}
        for job_id in dict.fromkeys(j for j in job_ids if j):

            def send(job_id: str = job_id) -> Any:
                return self._sdk.get_job_status(models.GetJobStatusRequest(job_id=job_id))

            body = self._call("nlb:GetJobStatus", [job_id], send)
            succeeded = _str(body.get("Status")).lower() == "succeeded"
            out[job_id] = (JobStatus.SUCCEEDED if succeeded else JobStatus.PROCESSING, None)
        return out
