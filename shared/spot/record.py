"""What a drain records and reports: outcomes, the result, summaries, the notification, the
original weights, and the ports (store, clients, notifier slices) the drain and sweep use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from shared.clients import Instance
from shared.events import iso
from shared.lb.clb import LoadBalancer
from shared.lb.model import GroupKind, GroupRef, Membership, Product, grouped
from shared.lb.pools import LoadBalancers, ServerGroupsPort
from shared.ledger import EntryLike, Kind, LedgerPort
from shared.notify import Notification
from shared.spot.deadline import Deadline, Phase

__all__ = [
    "UNKNOWN_WEIGHT_RESTORE",
    "ClientsPort",
    "DrainResult",
    "LbPort",
    "NotifierPort",
    "Outcome",
    "drain_notification",
    "original_weights",
]

# A membership already at weight 0 when a drain first sees it, with no earlier drain of the
# instance that recorded a weight for it, is recorded with its weight *unknown* and restored at
# this weight. Every weight-0 write of ours is preceded by a recorded FIND step (the step table's
# order), so such a 0 is not ours: it is the operator's (a parked backend). Restoring 0 puts back
# exactly what was there and never sends traffic to a backend nobody asked to serve; the
# notification names it so a person can set it if they meant otherwise.
UNKNOWN_WEIGHT_RESTORE = 0


class Outcome(str, Enum):
    DRAINED = "drained"  # weight 0, waited, removed, verified
    REMOVED = "removed"  # fast path: removed at once, verified
    LEFTOVERS_REMOVED = "leftovers_removed"  # notice long past its deadline
    NOTHING_TO_REMOVE = "nothing_to_remove"  # no removable membership in scope
    PARTIAL = "partial"  # still registered somewhere after the bounded retries
    SKIPPED = "skipped"  # late notice, instance still in service: left in place
    REFUSED = "refused"  # the notice names no spot instance of ours in its region
    DUPLICATE = "duplicate"  # done before (ledger): nothing repeated
    DRY_RUN = "dry_run"
    # At weight 0, the removal scheduled after the drain time for the finisher tick (the entry's
    # lease runs until then): nothing is notified yet, the tick's run reports the end.
    SCHEDULED = "scheduled"


REMOVAL_OUTCOMES = frozenset(
    {Outcome.DRAINED, Outcome.REMOVED, Outcome.LEFTOVERS_REMOVED, Outcome.PARTIAL}
)


# --- ports -----------------------------------------------------------------------------------


class Ledger(LedgerPort, Protocol):
    """The store's ledger as the drain uses it (shared.ledger's port)."""


class LbPort(Protocol):
    def list_load_balancers(
        self,
        *,
        ids: Sequence[str] = (),
        tag: tuple[str, str] | None = None,
        server_id: str | None = None,
    ) -> list[LoadBalancer]: ...

    def find_memberships(
        self, instance_id: str, load_balancer_ids: Sequence[str]
    ) -> list[Membership]: ...

    def group_members(
        self, load_balancer_id: str, group_kind: GroupKind | str, group_id: str | None
    ) -> list[Membership]: ...

    def set_weights(
        self, memberships: Sequence[Membership], weight: int | None = None, *, dry_run: bool = False
    ) -> int: ...

    def remove_members(
        self, memberships: Sequence[Membership], *, dry_run: bool = False
    ) -> int: ...

    def add_members(self, memberships: Sequence[Membership], *, dry_run: bool = False) -> int: ...

    def all_members(self, lb_id: str) -> list[Membership]: ...


class EcsPort(Protocol):
    def describe_instances(self, instance_ids: Sequence[str]) -> dict[str, Instance]: ...


class ClientsPort(Protocol):
    @property
    def lb(self) -> LbPort: ...
    @property
    def lbs(self) -> LoadBalancers: ...
    @property
    def alb(self) -> ServerGroupsPort: ...
    @property
    def nlb(self) -> ServerGroupsPort: ...
    @property
    def ecs(self) -> EcsPort: ...
    def for_region(self, region: str | None) -> ClientsPort: ...


class NotifierPort(Protocol):
    def send(self, notification: Notification) -> object: ...


# --- memberships -----------------------------------------------------------------------------

MemberKey = tuple[Any, ...]


def member_key(m: Membership) -> MemberKey:
    return m.key


def groups(memberships: Sequence[Membership]) -> dict[GroupRef, list[Membership]]:
    """Memberships by pool (CLB: load balancer, kind, group; ALB/NLB: the server group)."""
    return grouped(memberships)


def still_there(wanted: Sequence[Membership], members: Sequence[Membership]) -> list[Membership]:
    present = {(m.server_id, m.port) for m in members}
    return [m for m in wanted if (m.server_id, m.port) in present]


def reported(m: Membership) -> bool:
    """Found but never touched: a master-slave member or a controller-managed group."""
    return not m.removable


def memberships_of(data: Mapping[str, Any], name: str = "memberships") -> list[Membership]:
    return [Membership.from_snapshot(m) for m in data.get(name) or ()]


def summary(m: Membership) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m.product is not Product.CLB:
        out["product"] = m.product.value
    out |= {
        "load_balancer_id": m.load_balancer_id,
        "group_kind": GroupKind(m.group_kind).value,
        "group_id": m.group_id,
        "port": m.port,
        "weight": m.weight,
    }
    if m.role:
        out["role"] = m.role
    if m.managed_by:
        out["managed_by"] = m.managed_by
    if m.native_drain and m.product is not Product.CLB:
        out["drain_timeout_s"] = m.drain_timeout_s
    if m.product is not Product.CLB and m.server_type.lower() != "ecs":
        out["server"] = m.server_id
    return out


def label(m: Mapping[str, Any]) -> str:
    group = m.get("group_id") or "default"
    port = f":{m['port']}" if m.get("port") is not None else ""
    role = f" {m['role']}" if m.get("role") else ""
    managed = f", managed by {m['managed_by']}" if m.get("managed_by") else ""
    if m.get("product"):  # ALB / NLB: the server group, and its load balancer if any
        lb = f" on {m['load_balancer_id']}" if m.get("load_balancer_id") else ""
        server = f" as {m['server']}" if m.get("server") else ""
        return (f"{str(m['product']).upper()} {group}{port}{lb}{server} "
                f"(weight {m.get('weight')}{managed})")
    return f"{m.get('load_balancer_id')}/{group}{port} (weight {m.get('weight')}{role}{managed})"


def original_weights(
    found: Sequence[Membership], history: Sequence[EntryLike]
) -> tuple[list[Membership], list[dict[str, Any]]]:
    """The memberships to record, each with its ORIGINAL weight, and the ones whose weight is
    unknown. Never our own write: a weight seen > 0 is the original (we write only 0); a weight
    seen at 0 takes the weight an earlier drain of the instance recorded for that membership
    (newest first), else it is unknown and recorded at :data:`UNKNOWN_WEIGHT_RESTORE`."""
    earlier: dict[MemberKey, int] = {}
    for entry in history:  # oldest first: newer drains overwrite
        for m in memberships_of(entry.data):
            if m.weight > 0:
                earlier[member_key(m)] = m.weight
    recorded: list[Membership] = []
    unknown: list[dict[str, Any]] = []
    for m in found:
        if m.weight > 0:
            recorded.append(m)
            continue
        weight = earlier.get(member_key(m))
        if weight is None:
            unknown.append(summary(m))
            weight = UNKNOWN_WEIGHT_RESTORE
        recorded.append(m.with_weight(weight))
    return recorded, unknown


def drain_history(store: LedgerPort, instance_id: str, exclude: str) -> list[EntryLike]:
    return [e for e in store.ledger_find(Kind.DRAIN.value, instance_id=instance_id)
            if e.key != exclude]


# --- the result and its notification ---------------------------------------------------------


@dataclass(frozen=True)
class DrainResult:
    """One interruption's outcome, as the handler returns it."""

    instance_id: str
    outcome: Outcome
    event_id: str
    key: str
    phase: Phase
    removed: tuple[Mapping[str, Any], ...] = ()
    reported_master_slave: tuple[Mapping[str, Any], ...] = ()
    time_left_s: float | None = None
    missed_deadline: bool = False
    notice_to_removed_s: float | None = None
    leftover: tuple[Mapping[str, Any], ...] = ()
    planned: tuple[Mapping[str, Any], ...] = ()  # dry run: what would be removed
    reason: str | None = None
    dry_run: bool = False
    unknown_weights: tuple[Mapping[str, Any], ...] = ()
    # Memberships in groups a controller manages (Kubernetes): reported, never touched.
    reported_managed: tuple[Mapping[str, Any], ...] = ()
    # How the memberships were found: the membership index's answer and age (shared.spot.index)
    index: Mapping[str, Any] | None = None
    # What the burst's shared scan found that the index did not know (shared.spot.scan)
    scan: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "outcome": self.outcome.value,
            "removed": [dict(m) for m in self.removed],
            "reported_master_slave": [dict(m) for m in self.reported_master_slave],
            "time_left_s": self.time_left_s,
            "missed_deadline": self.missed_deadline,
            "notice_to_removed_s": self.notice_to_removed_s,
            "leftover": [dict(m) for m in self.leftover],
            "planned": [dict(m) for m in self.planned],
            "phase": self.phase.value,
            "event_id": self.event_id,
            "key": self.key,
            "reason": self.reason,
            "dry_run": self.dry_run,
            "unknown_weights": [dict(m) for m in self.unknown_weights],
            "reported_managed": [dict(m) for m in self.reported_managed],
            "index": dict(self.index) if self.index is not None else None,
            "scan": dict(self.scan) if self.scan is not None else None,
        }

    @classmethod
    def recorded(cls, entry: EntryLike, event_id: str, reason: str) -> DrainResult:
        """What a finished entry says, for a duplicate."""
        data = entry.data
        return cls(
            instance_id=entry.instance_id or "",
            outcome=Outcome.DUPLICATE,
            event_id=event_id,
            key=entry.key,
            phase=Phase(data.get("path") or Phase.FAST.value),
            removed=tuple(data.get("removed") or ()),
            reported_master_slave=tuple(summary(m) for m in memberships_of(data, "master_slave")),
            reported_managed=tuple(summary(m) for m in memberships_of(data, "managed")),
            time_left_s=data.get("time_left_s"),
            missed_deadline=bool(data.get("missed_deadline")),
            notice_to_removed_s=data.get("notice_to_removed_s"),
            leftover=tuple(data.get("leftover") or ()),
            reason=reason,
        )


def drain_notification(result: DrainResult, deadline: Deadline) -> Notification:
    """One message per interruption: what was drained, what was only reported, time left."""
    iid = result.instance_id
    headline = {
        Outcome.DRAINED: "drained from its load balancers",
        Outcome.REMOVED: "removed at once from its load balancers (little time left)",
        Outcome.LEFTOVERS_REMOVED: "notice handled after its deadline: leftovers removed",
        Outcome.NOTHING_TO_REMOVE: "interrupted: no removable load-balancer membership",
        Outcome.PARTIAL: "NOT fully drained: still registered somewhere",
        Outcome.SKIPPED: "late notice, instance still in service: left in place",
        Outcome.REFUSED: "notice NOT acted on",
        Outcome.DRY_RUN: "would be drained (dry run)",
    }.get(result.outcome, result.outcome.value)
    lines = [f"Spot instance {iid} {headline}."]
    lines.append(f"Notice at {iso(deadline.notice_time)}, deadline {iso(deadline.at)}.")
    if result.removed:
        lines.append("Drained (weight 0, then removed):" if result.phase is Phase.GENTLE
                     else "Removed:")
        lines += [f"- {label(m)}" for m in result.removed]
    if result.planned:
        lines.append("Would drain:")
        lines += [f"- {label(m)}" for m in result.planned]
    if result.reported_master_slave:
        lines.append("Master-slave groups (members cannot be removed one by one: NOT drained):")
        lines += [f"- {label(m)}" for m in result.reported_master_slave]
    if result.reported_managed:
        lines.append("Groups managed by a controller (it would revert a change: NOT drained; "
                     "exclude the node in Kubernetes instead):")
        lines += [f"- {label(m)}" for m in result.reported_managed]
    if result.leftover:
        lines.append("Still registered after retries:")
        lines += [f"- {label(m)}" for m in result.leftover]
    if result.unknown_weights:
        lines.append(f"At weight 0 before the drain, no earlier weight known (restored at "
                     f"{UNKNOWN_WEIGHT_RESTORE}):")
        lines += [f"- {label(m)}" for m in result.unknown_weights]
    if result.index and result.index.get("used"):
        lines.append(f"Found in the membership index ({result.index.get('hits')} memberships, "
                     f"last full scan {result.index.get('age_s')} s before).")
    if result.scan:
        late = result.scan.get("late") or []
        lines.append(f"Shared scan {result.scan.get('key')}: " + (
            f"{len(late)} memberships the index did not know, drained: "
            + ", ".join(label(m) for m in late) if late else "nothing the index did not know."))
    if result.time_left_s is not None:
        lines.append(f"Time left at removal: {result.time_left_s:.1f} s.")
    if result.missed_deadline:
        lines.append("Deadline missed.")
    if result.reason:
        lines.append(result.reason)
    if result.leftover or result.missed_deadline:
        severity = "critical"
    elif (result.reported_master_slave or result.reported_managed
          or result.outcome in (Outcome.SKIPPED, Outcome.REFUSED)):
        severity = "warning"
    else:
        severity = "info"
    return Notification(
        key=("dry-run:" if result.dry_run else "") + result.key,
        title=f"{'[dry run] ' if result.dry_run else ''}Spot drain {iid}: {result.outcome.value}",
        text="\n".join(lines),
        severity=severity,
        instance_id=iid,
        fields={
            "outcome": result.outcome.value,
            "removed": len(result.removed),
            "master_slave": len(result.reported_master_slave),
            **({"managed": len(result.reported_managed)} if result.reported_managed else {}),
            "time_left_s": result.time_left_s,
            "missed_deadline": result.missed_deadline,
        },
    )

