"""The membership index: which load-balancer memberships an instance had when last seen.

Finding an instance's memberships by reading the fleet costs one read per group of every load
balancer in scope (1,155 reads and a minute for 50 CLBs x 20 groups at 50 ms a call, issue 13),
and a burst of notices multiplies it into the API's throttling. The index turns that into one
store read per notice: rows ``server key -> membership`` in the store's ``lb_index`` table
(schema v6), where a server key is what a group may register the instance by: its instance id,
one of its ENI ids (DescribeInstances NetworkInterfaces; an ``eni``-type member names one) or a
private IP (an ``Ip``-type member is its IP; an ``eni`` one carries it too).

Which of the memberships found by those keys are the instance's (:class:`Owner`): one
registered by its id or one of its ENI ids; one found only by a private IP (``Ip`` type, an
``eni`` the instance is not known to have) only when its group is in the instance's VPC (ALB /
NLB ListServerGroups ``VpcId``), since the same private IP may be in use in another VPC; where
either VPC is unknown (CLB, a drain or snapshot recorded before they were kept) it counts; an
``ecs`` member found by an IP is another instance's. A drain replacing or forgetting its rows
keeps the rows of the same keys that are not its instance's.

Kept fresh by:

* **full scans** (:meth:`MembershipIndex.record_scan`): the sweep's released-backend scan reads
  every member of every load balancer in scope anyway, and the burst's shared scan
  (:mod:`shared.spot.scan`) does too; each replaces the rows of the sources it read (a CLB, an
  ALB/NLB server group), so a membership gone since is forgotten;
* **every drain** (:meth:`MembershipIndex.record_found`): what a drain found replaces the
  instance's rows; what it removed is forgotten.

Every row keeps the time it was seen; a drain reports the index's age (since the region's last
full scan) with what it found there, and the shared scan reports what the index did not know.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.events import iso, parse_iso_or_none
from shared.lb.model import Membership
from shared.ledger import Kind
from shared.spot.deadline import utc_now

__all__ = [
    "IndexLookup",
    "IndexStore",
    "MembershipIndex",
    "Owner",
    "instance_keys",
    "member_id",
    "scan_key",
    "server_keys",
    "source_of",
]


class _MembershipLike(Protocol):
    """What the index needs of a membership (shared.clients' CLB one, shared.lb's)."""

    @property
    def load_balancer_id(self) -> str: ...
    @property
    def group_id(self) -> str | None: ...
    @property
    def server_id(self) -> str: ...
    @property
    def server_ip(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def server_type(self) -> str: ...
    @property
    def vpc_id(self) -> str | None: ...
    def snapshot(self) -> dict[str, Any]: ...


class _Row(Protocol):
    @property
    def server_key(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def member(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def seen_at(self) -> datetime: ...


class IndexStore(Protocol):
    """The store's index and ledger methods the index uses (shared.store.Store)."""

    def index_lookup(self, region: str, server_keys: Sequence[str]) -> Sequence[_Row]: ...

    def index_replace(self, region: str, rows: Sequence[Any], *, sources: Sequence[str] = (),
                      server_keys: Sequence[str] = ()) -> int: ...

    def ledger_get(self, key: str) -> Any: ...


def _product(m: _MembershipLike) -> str:
    product = getattr(m, "product", None)
    return str(getattr(product, "value", product) or "clb")


def source_of(m: _MembershipLike) -> str:
    """What one scan reads and replaces: a CLB by its id, an ALB/NLB server group by its id
    (a server group is shared by the load balancers that use it)."""
    product = _product(m)
    return m.load_balancer_id if product == "clb" else f"{product}:{m.group_id}"


def member_id(m: _MembershipLike) -> str:
    """A membership's identity: product, load balancer, group, server, port."""
    group = m.group_id or "default"
    return "|".join((_product(m), m.load_balancer_id, group, m.server_id, str(m.port)))


def server_keys(m: _MembershipLike) -> list[str]:
    """The keys a membership is found by: its server id, and its IP when it has one."""
    return list(dict.fromkeys(k for k in (m.server_id, m.server_ip) if k))


def instance_keys(instance_id: str, private_ips: Sequence[str] = (),
                  eni_ids: Sequence[str] = ()) -> list[str]:
    """The keys an instance's memberships may be registered under."""
    return list(dict.fromkeys(k for k in (instance_id, *eni_ids, *private_ips) if k))


@dataclass(frozen=True)
class Owner:
    """An instance as its drain recorded it: which memberships found by its keys are its own
    (module docstring)."""

    instance_id: str
    eni_ids: frozenset[str] = frozenset()
    vpc_id: str | None = None

    @classmethod
    def of(cls, instance_id: str | None, data: Mapping[str, Any]) -> Owner:
        """From a drain's ledger data (its ``instance``; older entries have neither its ENIs
        nor its VPC)."""
        instance = data.get("instance")
        if not isinstance(instance, Mapping):
            return cls(instance_id or "")
        return cls(instance_id or "", frozenset(str(e) for e in instance.get("eni_ids") or ()),
                   str(instance["vpc_id"]) if instance.get("vpc_id") else None)

    def owns(self, m: _MembershipLike) -> bool:
        """Whether ``m``, found by one of the instance's keys, is its own."""
        if m.server_id == self.instance_id or m.server_id in self.eni_ids:
            return True
        if m.server_type.lower() == "ecs":  # found by an IP: another instance's
            return False
        return self.vpc_id is None or m.vpc_id is None or m.vpc_id == self.vpc_id


def scan_key(region: str) -> str:
    """The ledger entry of a region's last full scan (shared.spot.scan)."""
    return f"lbscan:{region}"


@dataclass(frozen=True)
class IndexLookup:
    """What the index knows of one instance."""

    snapshots: tuple[Mapping[str, Any], ...]  # one per membership, as last seen
    scanned_at: datetime | None  # the region's last full scan; None: never scanned
    oldest_seen_at: datetime | None  # of the rows found

    @property
    def known(self) -> bool:
        """The region was scanned at least once: an empty answer means "in no group"."""
        return self.scanned_at is not None

    def age_s(self, now: datetime) -> float | None:
        """Seconds since the region's last full scan."""
        return None if self.scanned_at is None else round((now - self.scanned_at).total_seconds(), 3)

    def report(self, now: datetime) -> dict[str, Any]:
        return {"age_s": self.age_s(now), "scanned_at": iso(self.scanned_at) if self.scanned_at
                else None, "hits": len(self.snapshots),
                "oldest_seen_at": iso(self.oldest_seen_at) if self.oldest_seen_at else None}


class MembershipIndex:
    """The index over the store (module docstring)."""

    def __init__(self, store: IndexStore, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock

    def lookup(self, region: str, keys: Sequence[str], owner: Owner | None = None
               ) -> IndexLookup:
        """What the index knows under ``keys``; with ``owner``, only what is its own."""
        rows = [r for r in self.store.index_lookup(region, keys)
                if owner is None or owner.owns(Membership.from_snapshot(r.data))]
        by_member: dict[str, _Row] = {}
        for row in rows:  # a membership found by id and by IP is one membership
            if row.member not in by_member or row.seen_at > by_member[row.member].seen_at:
                by_member[row.member] = row
        chosen = sorted(by_member.values(), key=lambda r: r.member)
        return IndexLookup(
            snapshots=tuple(r.data for r in chosen),
            scanned_at=self.scanned_at(region),
            oldest_seen_at=min((r.seen_at for r in chosen), default=None),
        )

    def scanned_at(self, region: str) -> datetime | None:
        entry = self.store.ledger_get(scan_key(region))
        return None if entry is None else parse_iso_or_none(entry.data.get("scanned_at"))

    def record_scan(self, region: str, memberships: Sequence[_MembershipLike],
                    sources: Sequence[str], seen_at: datetime | None = None) -> int:
        """A full read of ``sources`` (CLB ids, ``alb:``/``nlb:`` group ids): their rows are
        replaced by what was seen."""
        return self.store.index_replace(region, self._rows(memberships, seen_at),
                                        sources=list(sources))

    def record_found(self, region: str, keys: Sequence[str],
                     memberships: Sequence[_MembershipLike], owner: Owner | None = None
                     ) -> int:
        """What a drain found for the instance known by ``keys`` replaces its rows (with
        ``owner``: the rows of these keys that are not its own stay)."""
        return self.store.index_replace(
            region, [*self._others(region, keys, owner), *self._rows(memberships, None)],
            server_keys=list(keys))

    def forget(self, region: str, keys: Sequence[str], owner: Owner | None = None) -> int:
        """The instance's memberships are gone (removed by its drain); with ``owner``, the
        rows of these keys that are not its own stay."""
        return self.store.index_replace(region, self._others(region, keys, owner),
                                        server_keys=list(keys))

    def _others(self, region: str, keys: Sequence[str], owner: Owner | None) -> list[Any]:
        """The rows of ``keys`` that are not ``owner``'s (another VPC's member of the same
        private IP, another instance's ecs member by its IP), as they are."""
        if owner is None:
            return []
        return [r for r in self.store.index_lookup(region, keys)
                if not owner.owns(Membership.from_snapshot(r.data))]

    def _rows(self, memberships: Sequence[_MembershipLike], seen_at: datetime | None
              ) -> list[Any]:
        from shared.store import IndexRow

        seen = seen_at or self.clock()
        return [IndexRow(key, source_of(m), member_id(m), m.snapshot(), seen)
                for m in memberships for key in server_keys(m)]


SCAN_KIND = Kind.LB_SCAN.value
