"""When an added successor counts as serving in a group: what each product lets us observe.

- **CLB** documents a health status per backend server and listener (``DescribeHealthStatus``:
  ``normal`` | ``abnormal`` | ``unavailable``, the last when the listener has no health check or
  it did not complete). The successor serves in a group once every listener row of its member
  there that is health-checked says ``normal`` (``healthy``, at the moment it was first seen);
  with no checked row the group does not health-check it (``unchecked``: serving once added).
- **ALB / NLB** document no health status for a member: ``ListServerGroupServers`` gives
  ``Status`` ``Adding | Available | Configuring | Removing`` (registration, not health), and
  the API metadata has no health action. The successor serves there once its member is
  ``Available``, which the add (``shared.spot.sweep.restore``, jobs waited) has ensured
  (``available``, at the moment it was added).

A group still ``waiting`` ``replace_healthy_s`` after the add is ``not_healthy``: reported with
the reason, never silently counted as serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Protocol

from shared.clients import NotFoundError
from shared.lb.clb import BackendHealth
from shared.lb.model import GroupKind, Membership, Product

__all__ = ["GroupState", "HealthPort", "describe", "group_label", "observe"]


class GroupState(str, Enum):
    HEALTHY = "healthy"  # the group reported it healthy (CLB: normal on every checked listener)
    UNCHECKED = "unchecked"  # the group does not health-check it (CLB: unavailable / no row)
    AVAILABLE = "available"  # ALB/NLB: member Available (no documented member health)
    WAITING = "waiting"  # health-checked, not healthy yet
    NOT_HEALTHY = "not_healthy"  # still not healthy replace_healthy_s after the add

    @property
    def serving(self) -> bool:
        return self in (GroupState.HEALTHY, GroupState.UNCHECKED, GroupState.AVAILABLE)


class HealthPort(Protocol):
    def health_status(self, load_balancer_id: str) -> list[BackendHealth]: ...


def group_label(m: Membership) -> str:
    """One group, as the record and the notification name it: ``clb lb-x default``,
    ``clb lb-x rsp-y``, ``alb sgp-z``."""
    if m.product is Product.CLB:
        return f"clb {m.load_balancer_id} {m.group_id or 'default'}"
    return f"{m.product.value} {m.group_id}"


def _clb_state(rows: Sequence[BackendHealth], m: Membership,
               registered: Sequence[Membership]) -> GroupState:
    mine = [r for r in rows if r.server_id == m.server_id]
    if m.group_kind is GroupKind.DEFAULT:
        # Default-group rows carry the listener's backend port; the successor's vServer
        # memberships on the same load balancer own the rows on their ports.
        vports = {x.port for x in registered if x.product is Product.CLB
                  and x.load_balancer_id == m.load_balancer_id and x.server_id == m.server_id
                  and x.group_kind is not GroupKind.DEFAULT}
        mine = [r for r in mine if r.port not in vports] or mine
    else:
        mine = [r for r in mine if r.port == m.port]
    checked = [r for r in mine if r.status != "unavailable"]
    if not checked:
        return GroupState.UNCHECKED
    return (GroupState.HEALTHY if all(r.status == "normal" for r in checked)
            else GroupState.WAITING)


def observe(clb: HealthPort, memberships: Sequence[Membership],
            among: Sequence[Membership] = ()) -> dict[str, GroupState]:
    """The state of the successor in each group of ``memberships`` (its own, moved to it): one
    DescribeHealthStatus per CLB, nothing read for ALB/NLB. A group with several memberships
    (ports) serves when all of them do. ``among``: all of the successor's memberships (which
    vServer ports the default group's rows are not on), default ``memberships``."""
    context = list(among) or list(memberships)
    rows: dict[str, list[BackendHealth]] = {}
    out: dict[str, GroupState] = {}
    for m in memberships:
        if m.product is not Product.CLB:
            state = GroupState.AVAILABLE
        else:
            if m.load_balancer_id not in rows:
                try:
                    rows[m.load_balancer_id] = clb.health_status(m.load_balancer_id)
                except NotFoundError:
                    rows[m.load_balancer_id] = []  # gone: nothing will ever check it
            state = _clb_state(rows[m.load_balancer_id], m, context)
        label = group_label(m)
        out[label] = _worse(out.get(label), state)
    return out


_ORDER = (GroupState.WAITING, GroupState.HEALTHY, GroupState.AVAILABLE, GroupState.UNCHECKED)


def _worse(a: GroupState | None, b: GroupState) -> GroupState:
    if a is None:
        return b
    return a if _ORDER.index(a) <= _ORDER.index(b) else b


def describe(groups: Mapping[str, Mapping[str, object]]) -> list[str]:
    """Notification lines: one per group, its state and when it started serving."""
    lines = []
    for label, g in sorted(groups.items()):
        state = str(g.get("state"))
        if state == GroupState.NOT_HEALTHY.value:
            lines.append(f"- {label}: NOT healthy: {g.get('reason')}")
            continue
        how = {GroupState.HEALTHY.value: "healthy",
               GroupState.UNCHECKED.value: "no health check, serving once added",
               GroupState.AVAILABLE.value: "member Available (no documented health status)",
               }.get(state, state)
        secs = g.get("seconds_to_serving")
        when = f" {float(secs):.1f} s after the notice" if isinstance(secs, (int, float)) else ""
        lines.append(f"- {label}: {how}{when}")
    return lines
