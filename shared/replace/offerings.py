"""Where a successor may go: the candidates, and the offerings left out for a while.

Order (reference §8.2): for each allowed spot strategy (the predecessor's, then NoSpot when the
tag allows on-demand), the same instance type in the predecessor's vSwitch and then in the other
vSwitches of its VPC (``replace_vswitches``), then DescribeRecommendInstanceType's offerings
(InventoryFirst) in zones the VPC has a vSwitch in. An offering (type, zone, strategy) that was
reclaimed or answered a stock error is left out for ``replace_avoid_s`` (ledger entry
``offering:<type>:<zone>:<strategy>`` holding its ``until``), shared by every replacement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared import ledger
from shared.events import iso, parse_iso_or_none
from shared.launch import Offering
from shared.ledger import Kind

__all__ = ["Candidate", "RecommendPort", "avoid", "avoided", "candidates", "vswitches_in"]

ON_DEMAND = "NoSpot"


class RecommendPort(Protocol):
    def recommend(self, instance_type: str, spot_strategy: str, *,
                  zone_id: str | None = None) -> list[Offering]: ...


class OfferingStore(ledger.ClaimPort, Protocol):
    def ledger_get(self, key: str) -> ledger.EntryLike | None: ...

    def ledger_update(self, key: str, *, status: str | None = None,
                      data: Mapping[str, Any] | None = None) -> None: ...


@dataclass(frozen=True)
class Candidate:
    """One place to launch: an offering and the vSwitch that puts it in its zone."""

    instance_type: str
    zone_id: str
    vswitch_id: str | None
    spot_strategy: str
    source: str = "same-type"  # same-type | recommended | recorded

    @property
    def on_demand(self) -> bool:
        return self.spot_strategy == ON_DEMAND

    @property
    def offering(self) -> tuple[str, str, str]:
        return self.instance_type, self.zone_id, self.spot_strategy

    def client_token(self, predecessor: str) -> str:
        """Derived from the predecessor and the offering, never from time or order: every
        copy and retry of one notice sends one token per candidate, so ECS launches at most
        once per candidate (and the ledger moves on only after a stock error, which launched
        nothing). ``rpl-<instance>-<16 hex>``, within the 64 ASCII characters allowed."""
        digest = hashlib.sha256("|".join((predecessor, *self.offering,
                                          self.vswitch_id or "")).encode()).hexdigest()
        return f"rpl-{predecessor}-{digest[:16]}"[:64]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(str(data["instance_type"]), str(data["zone_id"]), data.get("vswitch_id"),
                   str(data["spot_strategy"]), "recorded")


def vswitches_in(entries: Sequence[str], vpc_id: str | None) -> dict[str, str]:
    """zone -> vSwitch of ``vpc_id`` from ``replace_vswitches`` (``vpc/zone=vsw``)."""
    found: dict[str, str] = {}
    for entry in entries:
        left, _, vswitch = entry.partition("=")
        vpc, _, zone = left.partition("/")
        if vpc_id is not None and vpc == vpc_id:
            found.setdefault(zone, vswitch)
    return found


def avoid(store: OfferingStore, offering: tuple[str, str, str], *, now: datetime,
          seconds: float, reason: str) -> None:
    """Leave the offering out until ``now + seconds`` (never shortens a longer exclusion)."""
    key = ledger.offering_key(*offering)
    until = iso(now + timedelta(seconds=seconds))
    data = {"until": until, "reason": reason}
    if ledger.claim_once(store, key, kind=Kind.OFFERING, data=data, status="avoided"):
        return
    entry = store.ledger_get(key)
    current = parse_iso_or_none(entry.data.get("until")) if entry is not None else None
    if current is None or current < now + timedelta(seconds=seconds):
        store.ledger_update(key, status="avoided", data=data)


def avoided(store: OfferingStore, offering: tuple[str, str, str], now: datetime) -> bool:
    entry = store.ledger_get(ledger.offering_key(*offering))
    if entry is None:
        return False
    until = parse_iso_or_none(entry.data.get("until"))
    return until is not None and until > now


def candidates(*, instance_type: str, zone_id: str, vswitch_id: str | None,
               vswitches: Mapping[str, str], strategies: Sequence[str],
               launch: RecommendPort) -> Iterator[Candidate]:
    """Every candidate in order (module docstring), before the avoided ones are left out;
    lazily: DescribeRecommendInstanceType is asked (once per strategy) only when the same
    type's candidates of that strategy are used up."""
    zones = dict(vswitches)
    if vswitch_id is not None:
        zones[zone_id] = vswitch_id
    seen: set[tuple[str, str, str]] = set()
    for strategy in strategies:
        same = [Candidate(instance_type, zone_id, zones.get(zone_id), strategy)]
        same += [Candidate(instance_type, zone, vsw, strategy)
                 for zone, vsw in sorted(zones.items()) if zone != zone_id]
        for candidate in same:
            if candidate.offering not in seen:
                seen.add(candidate.offering)
                yield candidate
        for offer in launch.recommend(instance_type, strategy):
            candidate = Candidate(offer.instance_type, offer.zone_id, zones.get(offer.zone_id),
                                  strategy, "recommended")
            if offer.zone_id in zones and candidate.offering not in seen:
                seen.add(candidate.offering)
                yield candidate
