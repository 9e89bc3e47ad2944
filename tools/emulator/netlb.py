"""ALB and NLB state: load balancers, server groups, members and the asynchronous jobs.

One :class:`NetLbState` per product (``World.albs``, ``World.nlbs``), guarded by the World's
lock. Every server-group write is a :class:`Job`: accepted at once (the answer carries its
``JobId``), the group is ``Configuring`` and the members it touches are ``Adding`` /
``Configuring`` / ``Removing`` until the job is due, then the job is ``Succeeded``, the group
``Available``, added and updated members ``Available`` (an update's weight applies then) and
removed members gone.

Time is the World's clock (``World.now()``: this machine's plus ``Emulator.advance_clock``).
A job is due ``job_s`` after it was accepted; a removal from a group with connection draining
enabled is due ``job_s + timeout × drain_scale`` later (the member stays ``Removing`` and the
group ``Configuring`` for the drain: the emulator's reading of "the load balancer waits for the
timeout", reference §1.5). Jobs settle lazily: every API call and every snapshot first settles
the jobs that are due (:meth:`NetLbState.settle`), so advancing the clock finishes them without
waiting; :meth:`NetLbState.finish_all` finishes every pending job now and
:meth:`NetLbState.fail` ends one as ``Failed``, undoing it (test hooks,
``Emulator.finish_lb_jobs`` / ``Emulator.fail_lb_job``). ``Job.status`` is this module's own
state; each product answers it in its documented spelling (NLB ``GetJobStatus`` knows no
``Failed``: :mod:`tools.emulator.nlb`).

A released ECS instance stays registered (no source says otherwise, reference §1.13).
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.emulator.fleet import LbGroupSpec, LbMemberSpec, NetLbSpec

__all__ = ["DEFAULT_JOB_S", "Job", "LbMember", "NetLb", "NetLbGroup", "NetLbState"]

DEFAULT_JOB_S = 1.5


@dataclass
class LbMember:
    """A backend server of an ALB/NLB server group."""

    server_id: str
    server_type: str
    port: int
    weight: int
    server_ip: str
    description: str = ""
    zone_id: str = ""
    remote_ip_enabled: bool = False
    status: str = "Available"  # Adding | Available | Configuring | Removing
    pending_weight: int | None = None
    pending_description: str | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.server_id, self.server_ip, self.port)

    def snapshot(self) -> dict[str, Any]:
        return {"server_id": self.server_id, "server_type": self.server_type, "port": self.port,
                "weight": self.weight, "server_ip": self.server_ip,
                "description": self.description, "status": self.status}


@dataclass
class NetLbGroup:
    """An ALB/NLB server group."""

    id: str
    name: str
    type: str
    protocol: str
    tags: dict[str, str]
    drain_enabled: bool
    drain_timeout_s: int
    lb_ids: list[str]
    vpc_id: str
    members: list[LbMember] = field(default_factory=list)
    job_id: str | None = None  # the job holding the group (``Configuring``)

    @property
    def status(self) -> str:
        return "Configuring" if self.job_id is not None else "Available"

    def find(self, server_id: str, server_type: str, port: int | None,
             server_ip: str | None) -> LbMember | None:
        """The member a request names: id and type, the port when given, the IP when given."""
        for member in self.members:
            if member.server_id != server_id or member.server_type != server_type:
                continue
            if port is not None and member.port != port:
                continue
            if server_ip and member.server_ip != server_ip:
                continue
            return member
        return None

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": self.type, "protocol": self.protocol,
                "tags": dict(self.tags), "status": self.status, "job_id": self.job_id,
                "connection_drain": {"enabled": self.drain_enabled,
                                     "timeout_s": self.drain_timeout_s},
                "load_balancer_ids": list(self.lb_ids),
                "members": [m.snapshot() for m in self.members]}


@dataclass
class NetLb:
    """An ALB or NLB instance."""

    id: str
    name: str
    tags: dict[str, str]
    vpc_id: str
    group_ids: list[str]
    create_time: str
    edition: str = ""


@dataclass
class Job:
    """One asynchronous server-group write."""

    id: str
    api_name: str
    group_id: str
    created: float  # World clock, seconds
    due: float
    status: str = "Processing"  # Processing | Succeeded | Failed
    modified: float = 0.0
    error_code: str = ""
    error_message: str = ""
    added: list[LbMember] = field(default_factory=list)
    updated: list[LbMember] = field(default_factory=list)
    removed: list[LbMember] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "api_name": self.api_name, "group_id": self.group_id,
                "status": self.status, "created": self.created, "due": self.due,
                "error_code": self.error_code,
                "added": [m.key for m in self.added], "updated": [m.key for m in self.updated],
                "removed": [m.key for m in self.removed]}


class NetLbState:
    """The load balancers, groups and jobs of one product (``alb`` or ``nlb``)."""

    def __init__(self, product: str, specs: tuple[NetLbSpec, ...],
                 ip_of: Callable[[str], tuple[str, str]], create_time: str,
                 job_s: float = DEFAULT_JOB_S) -> None:
        self.product = product
        self.job_s = job_s
        # A drain of ``timeout`` seconds holds the member ``timeout * drain_scale`` seconds.
        self.drain_scale = 1.0
        self.lbs: dict[str, NetLb] = {}
        self.groups: dict[str, NetLbGroup] = {}
        self.jobs: dict[str, Job] = {}
        # (action, ClientToken) -> (request fingerprint, job id)
        self.tokens: dict[tuple[str, str], tuple[tuple[tuple[str, str], ...], str]] = {}
        self._seq = itertools.count(1)
        # (due, seq, job id) of the Processing jobs: settle() pops the due ones.
        self._due: list[tuple[float, int, str]] = []
        for spec in specs:
            self.lbs[spec.id] = NetLb(spec.id, spec.name, dict(spec.tags), spec.vpc_id,
                                      [g.id for g in spec.server_groups], create_time,
                                      spec.edition)
            for g in spec.server_groups:
                self.groups[g.id] = self._group(g, spec, ip_of)

    @staticmethod
    def _group(spec: LbGroupSpec, lb: NetLbSpec, ip_of: Callable[[str], tuple[str, str]]
               ) -> NetLbGroup:
        group = NetLbGroup(spec.id, spec.name, spec.type, spec.protocol, dict(spec.tags),
                           spec.drain_enabled, spec.drain_timeout_s, [lb.id], lb.vpc_id)
        group.members = [NetLbState.member_from_spec(m, ip_of) for m in spec.members]
        return group

    @staticmethod
    def member_from_spec(spec: LbMemberSpec, ip_of: Callable[[str], tuple[str, str]]
                         ) -> LbMember:
        ip, zone = ip_of(spec.server_id) if spec.server_type == "Ecs" else ("", "")
        if spec.server_type == "Ip":
            ip = spec.server_id
        return LbMember(spec.server_id, spec.server_type, spec.port, spec.weight,
                        spec.server_ip or ip, spec.description, zone)

    # --- jobs ----------------------------------------------------------------------------

    def new_job(self, api_name: str, group: NetLbGroup, now: float, *, drain: bool = False
                ) -> Job:
        """Accept a write on ``group``: the job holds it until due."""
        job_id = f"{uuid.uuid4().hex[:8]}-{next(self._seq):04d}-{uuid.uuid4().hex[:12]}"
        hold = self.job_s
        if drain and group.drain_enabled:
            hold += group.drain_timeout_s * self.drain_scale
        job = Job(job_id, api_name, group.id, now, now + hold, modified=now)
        self.jobs[job_id] = job
        heapq.heappush(self._due, (job.due, next(self._seq), job_id))
        group.job_id = job_id
        return job

    def settle(self, now: float) -> None:
        """Finish every job that is due at ``now``."""
        while self._due and self._due[0][0] <= now:
            job = self.jobs[heapq.heappop(self._due)[2]]
            if job.status == "Processing":
                self._finish(job, job.due)

    def finish_all(self, now: float) -> int:
        """Finish every pending job now (test hook); how many were pending."""
        pending = [self.jobs[entry[2]] for entry in sorted(self._due)]
        self._due.clear()
        for job in pending:
            if job.status == "Processing":
                self._finish(job, now)
        return len(pending)

    def _finish(self, job: Job, at: float) -> None:
        group = self.groups.get(job.group_id)
        job.status = "Succeeded"
        job.modified = at
        if group is None:
            return
        for member in job.added:
            member.status = "Available"
        for member in job.updated:
            if member.pending_weight is not None:
                member.weight = member.pending_weight
            if member.pending_description is not None:
                member.description = member.pending_description
            member.pending_weight = member.pending_description = None
            if member.status == "Configuring":
                member.status = "Available"
        gone = {id(m) for m in job.removed}
        group.members = [m for m in group.members if id(m) not in gone]
        if group.job_id == job.id:
            group.job_id = None

    def fail(self, job: Job, code: str, message: str, now: float) -> None:
        """End a Processing job as ``Failed`` now: nothing it asked for happens (added members
        leave, updated ones keep their weight, removed ones stay ``Available``)."""
        job.status = "Failed"
        job.modified = now
        job.error_code, job.error_message = code, message
        group = self.groups.get(job.group_id)
        if group is None:
            return
        added = {id(m) for m in job.added}
        group.members = [m for m in group.members if id(m) not in added]
        for member in [*job.updated, *job.removed]:
            member.pending_weight = member.pending_description = None
            member.status = "Available"
        if group.job_id == job.id:
            group.job_id = None

    def pending(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.status == "Processing"]

    # --- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "load_balancers": [{"id": lb.id, "name": lb.name, "tags": dict(lb.tags),
                                "vpc_id": lb.vpc_id, "server_group_ids": list(lb.group_ids)}
                               for lb in self.lbs.values()],
            "server_groups": [g.snapshot() for g in self.groups.values()],
            "jobs": [j.snapshot() for j in self.jobs.values()],
            "job_s": self.job_s, "drain_scale": self.drain_scale,
        }
