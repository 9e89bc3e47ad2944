"""The product-neutral model of load-balancer memberships (CLB, ALB, NLB): no SDK import here.

A :class:`Membership` is one registration of one server in one backend pool: a CLB default
group, vServer group or master-slave group, or an ALB / NLB server group. It carries what a drain
must know to take the server out and to put it back exactly as it was (port, weight, server type
and IP, description), and what the pool offers (``native_drain``: the group drains connections
itself on removal, within ``drain_timeout_s``) or forbids (``role``: CLB master-slave, no
per-member change; ``managed_by``: a controller such as Kubernetes owns the group and would
revert any change, so it is reported, never touched).

:class:`GroupRef` names a pool across products; :class:`Write` is one write call made on one pool
(CLB: done when it returns; ALB/NLB: a ``job_id`` to wait for); :class:`ServerGroup` is an
ALB/NLB server group as ``ListServerGroups`` describes it.

Snapshots (:meth:`Membership.snapshot`) are what the ledger stores so a drain can be undone
later. A snapshot without ``product`` (every one written before ALB/NLB existed) is CLB.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "KUBERNETES_GROUP_TAGS",
    "GroupKind",
    "GroupRef",
    "JobStatus",
    "Membership",
    "Product",
    "ServerGroup",
    "Write",
    "client_token",
    "grouped",
    "managed_by",
]


class Product(str, Enum):
    """Alibaba's load-balancer products (API versions in shared/lb/<product>.py)."""

    CLB = "clb"  # SLB 2014-05-15
    ALB = "alb"  # Alb 2020-06-16
    NLB = "nlb"  # Nlb 2022-04-30


class GroupKind(str, Enum):
    """Where a backend server is registered."""

    DEFAULT = "default"  # CLB default server group (no port: listener ports apply)
    VSERVER = "vserver"  # CLB vServer group
    MASTER_SLAVE = "master_slave"  # CLB: only whole-group create/delete, no per-member change
    SERVER_GROUP = "server_group"  # ALB / NLB server group


class JobStatus(str, Enum):
    """An asynchronous write's state (ALB ListAsynJobs; NLB GetJobStatus, which documents no
    failed state: an NLB job is never FAILED, a failed one stays PROCESSING)."""

    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# ACK's cloud controller (Services on CLB/NLB) and ALB Ingress controller tag the server groups
# they own with these keys (reference/load-balancers-and-replacement.md §4.3; [CODE]
# kubernetes/cloud-provider-alibaba-cloud pkg/controller/service/nlbv2/server_groups.go): they
# reconcile membership continuously, so a drain's removal would be reverted.
KUBERNETES_GROUP_TAGS: tuple[str, ...] = ("kubernetes.do.not.delete", "ack.aliyun.com")


def managed_by(tags: Sequence[tuple[str, str]] | Mapping[str, str]) -> str | None:
    """``"kubernetes"`` when the tags name an ACK-managed group, else None."""
    keys = set(tags) if isinstance(tags, Mapping) else {k for k, _ in tags}
    return "kubernetes" if keys & set(KUBERNETES_GROUP_TAGS) else None


@dataclass(frozen=True)
class GroupRef:
    """One backend pool. CLB pools belong to one load balancer (the default group has no id);
    an ALB/NLB server group is known by its id alone (it may serve several load balancers), so
    its ``load_balancer_id`` here is always ""."""

    product: Product
    load_balancer_id: str
    kind: GroupKind
    group_id: str | None

    def __str__(self) -> str:
        if self.product is Product.CLB:
            return f"{self.load_balancer_id}/{self.group_id or 'default'}"
        return f"{self.product.value}:{self.group_id}"


@dataclass(frozen=True)
class Membership:
    """One registration of a server in one group: what to drain, remove and restore.

    The first ten fields keep the order of the CLB-only model (positional constructions stay
    valid); ``product`` defaults to CLB."""

    load_balancer_id: str  # CLB: the instance; ALB/NLB: the first related load balancer, or ""
    group_kind: GroupKind
    group_id: str | None  # None for the CLB default group
    server_id: str  # instance id, ENI id, ECI id, or the IP for Ip-type groups
    port: int | None  # None for the CLB default group
    weight: int
    server_type: str = "ecs"  # CLB: ecs|eni|eci; ALB/NLB: Ecs|Eni|Eci|Ip (as the API spells it)
    server_ip: str | None = None
    description: str | None = None
    role: str | None = None  # CLB master-slave groups: "Master" or "Slave"
    product: Product = Product.CLB
    native_drain: bool = False  # the group drains connections itself when a member is removed
    drain_timeout_s: int | None = None  # ... for this long at most
    managed_by: str | None = None  # e.g. "kubernetes": reported, never touched
    # The member's state as last read (ALB/NLB: Adding|Available|Configuring|Removing); not
    # part of identity or of the snapshot.
    status: str | None = field(default=None, compare=False)
    # ALB/NLB: its group's VPC (ListServerGroups VpcId), None when unknown (CLB, a snapshot
    # written before it was kept). A property of the group, not of the membership's identity:
    # a member found by a private IP is an instance's only in the instance's VPC
    # (shared.spot.index.Owner).
    vpc_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Accept the plain strings too ("vserver", "alb"), so `is` comparisons stay right.
        object.__setattr__(self, "group_kind", GroupKind(self.group_kind))
        object.__setattr__(self, "product", Product(self.product))

    @property
    def group(self) -> GroupRef:
        lb = self.load_balancer_id if self.product is Product.CLB else ""
        return GroupRef(self.product, lb, self.group_kind, self.group_id)

    @property
    def removable(self) -> bool:
        """Whether a drain may touch it: not master-slave, not owned by a controller."""
        return self.group_kind is not GroupKind.MASTER_SLAVE and self.managed_by is None

    @property
    def not_removable_reason(self) -> str | None:
        if self.group_kind is GroupKind.MASTER_SLAVE:
            return "master-slave group: members cannot be removed one by one"
        if self.managed_by is not None:
            return f"managed by {self.managed_by}: its controller would revert the change"
        return None

    def drains_natively_within(self, seconds: float) -> bool:
        """One removal is enough: the group drains connections itself and its timeout ends
        within ``seconds``."""
        return (self.native_drain and self.drain_timeout_s is not None
                and self.drain_timeout_s <= seconds)

    @property
    def key(self) -> tuple[str, str, str, str | None, str, int | None, str | None]:
        """Identity within its group's product: (product, load balancer, kind, group, server,
        port, server ip); the load balancer is "" for ALB/NLB, like :attr:`group`."""
        g = self.group
        return (g.product.value, g.load_balancer_id, g.kind.value, g.group_id, self.server_id,
                self.port, self.server_ip if self.product is not Product.CLB else None)

    def with_weight(self, weight: int) -> Membership:
        return Membership(
            self.load_balancer_id, self.group_kind, self.group_id, self.server_id, self.port,
            weight, self.server_type, self.server_ip, self.description, self.role, self.product,
            self.native_drain, self.drain_timeout_s, self.managed_by, self.status, self.vpc_id)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready form, so a drain can be undone from the store later. CLB memberships keep
        exactly the keys they always had (plus ``managed_by`` when set); ``vpc_id`` only when
        known."""
        out: dict[str, Any] = {
            "load_balancer_id": self.load_balancer_id,
            "group_kind": self.group_kind.value,
            "group_id": self.group_id,
            "server_id": self.server_id,
            "port": self.port,
            "weight": self.weight,
            "server_type": self.server_type,
            "server_ip": self.server_ip,
            "description": self.description,
            "role": self.role,
        }
        if self.product is not Product.CLB:
            out["product"] = self.product.value
            out["native_drain"] = self.native_drain
            out["drain_timeout_s"] = self.drain_timeout_s
        if self.managed_by is not None:
            out["managed_by"] = self.managed_by
        if self.vpc_id is not None:
            out["vpc_id"] = self.vpc_id
        return out

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Membership:
        """The inverse of :meth:`snapshot`; a snapshot without ``product`` is CLB."""
        return cls(
            load_balancer_id=str(data["load_balancer_id"]),
            group_kind=GroupKind(data["group_kind"]),
            group_id=_opt(data.get("group_id")),
            server_id=str(data["server_id"]),
            port=_int(data.get("port")),
            weight=_weight(data.get("weight")),
            server_type=_opt(data.get("server_type")) or "ecs",
            server_ip=_opt(data.get("server_ip")),
            description=_opt(data.get("description")),
            role=_opt(data.get("role")),
            product=Product(data.get("product") or Product.CLB.value),
            native_drain=bool(data.get("native_drain")),
            drain_timeout_s=_int(data.get("drain_timeout_s")),
            managed_by=_opt(data.get("managed_by")),
            vpc_id=_opt(data.get("vpc_id")),
        )


@dataclass(frozen=True)
class ServerGroup:
    """An ALB or NLB server group as ListServerGroups describes it."""

    product: Product
    group_id: str
    name: str = ""
    group_type: str = "Instance"  # Instance | Ip (| Fc on ALB)
    status: str = "Available"  # Creating | Available | Configuring
    load_balancer_ids: tuple[str, ...] = ()
    native_drain: bool = False  # ConnectionDrainConfig.ConnectionDrainEnabled (ALB) / NLB's
    drain_timeout_s: int | None = None
    tags: tuple[tuple[str, str], ...] = ()
    vpc_id: str | None = None

    @property
    def managed_by(self) -> str | None:
        return managed_by(self.tags)

    @property
    def ref(self) -> GroupRef:
        return GroupRef(self.product, "", GroupKind.SERVER_GROUP, self.group_id)


@dataclass(frozen=True)
class Write:
    """One write call on one pool. ``job_id`` None: done when the call returned (CLB, or a
    DryRun); otherwise wait for the job (:meth:`shared.lb.pools.LoadBalancers.wait`)."""

    group: GroupRef
    action: str  # the API action, e.g. "UpdateServerGroupServersAttribute"
    members: tuple[Membership, ...]
    job_id: str | None = None
    token: str | None = None  # the ClientToken sent (ALB/NLB)
    dry_run: bool = False

    @property
    def asynchronous(self) -> bool:
        return self.job_id is not None


def grouped(memberships: Sequence[Membership]) -> dict[GroupRef, list[Membership]]:
    """Memberships by pool, in first-seen order, duplicates (same key) dropped."""
    out: dict[GroupRef, list[Membership]] = {}
    seen: set[tuple[Any, ...]] = set()
    for m in memberships:
        if m.key in seen:
            continue
        seen.add(m.key)
        out.setdefault(m.group, []).append(m)
    return out


CLIENT_TOKEN_MAX = 64  # ALB/NLB ClientToken: ASCII, at most 64 characters


def client_token(seed: str, action: str, members: Sequence[Membership],
                 weight: int | None = None) -> str:
    """The ClientToken of one write: derived from ``seed`` (e.g. the drain's ledger key), the
    action and exactly the members and weight sent, so a retry of the same request reuses it
    (never doubled) and a different request never collides with it (which ALB/NLB would
    refuse as ``IdempotenceSignatureMismatch``)."""
    body = json.dumps([seed, action, weight, sorted(repr(m.key) for m in members)])
    return "eeo-" + hashlib.sha256(body.encode()).hexdigest()[: CLIENT_TOKEN_MAX - 4 - 28]


def _opt(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _weight(value: object) -> int:
    found = _int(value)
    return 100 if found is None else found
