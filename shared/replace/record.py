"""What a replacement answers and says: its result and its one notification per outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from shared.notify import Notification
from shared.replace.health import describe

__all__ = ["Outcome", "ReplaceResult", "replace_notification"]


class Outcome(str, Enum):
    LAUNCHED = "launched"  # RunInstances created the successor (Running comes later)
    REUSED = "reused"  # a successor tagged replaces=<id> existed already: no launch
    RUNNING = "running"  # Running and serving in every group (healthy where checked)
    NOT_HEALTHY = "not_healthy"  # Running and added, not healthy in a group in time: reported
    DUPLICATE = "duplicate"  # this interruption's replacement was decided before
    NOT_OPTED_IN = "not_opted_in"
    SKIPPED = "skipped"  # owned by ESS / ACK, not a spot instance, or gone with no spec
    FAILED = "failed"  # stopped with an alert: quota, permission, parameters, no spec
    EXHAUSTED = "exhausted"  # every candidate answered a stock error
    STALLED = "stalled"  # launched, not Running in time
    DRY_RUN = "dry_run"  # RunInstances DryRun passed (or said why not) for the first candidate


@dataclass(frozen=True)
class ReplaceResult:
    instance_id: str
    outcome: Outcome
    key: str | None = None
    successor_id: str | None = None
    candidate: dict[str, Any] | None = None
    reason: str | None = None
    tried: tuple[dict[str, Any], ...] = field(default=())
    launched_at: str | None = None
    running_at: str | None = None
    seconds_to_running: float | None = None
    seconds_to_serving: float | None = None
    registered: tuple[dict[str, Any], ...] = field(default=())
    # group label -> {state, serving_at, seconds_to_serving | reason} (shared/replace/health.py)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instance_id": self.instance_id, "outcome": self.outcome.value}
        for name in ("key", "successor_id", "candidate", "reason", "launched_at", "running_at",
                     "seconds_to_running", "seconds_to_serving"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.tried:
            out["tried"] = list(self.tried)
        if self.registered:
            out["registered"] = list(self.registered)
        if self.health:
            out["health"] = {k: dict(v) for k, v in self.health.items()}
        return out


_HEADLINES = {
    Outcome.LAUNCHED: "successor launched",
    Outcome.REUSED: "successor found (launched before)",
    Outcome.RUNNING: "replaced",
    Outcome.NOT_HEALTHY: "successor Running and added, but NOT healthy in every group",
    Outcome.FAILED: "NOT replaced: the launch was refused",
    Outcome.EXHAUSTED: "NOT replaced: no candidate had stock",
    Outcome.STALLED: "successor launched but NOT Running",
    Outcome.SKIPPED: "not replaced (its owner replaces it)",
}


def replace_notification(result: ReplaceResult) -> Notification:
    """One message per outcome worth a person's eyes: what replaced what, where, how long; or
    why nothing did."""
    iid = result.instance_id
    lines = [f"Spot instance {iid}: {_HEADLINES.get(result.outcome, result.outcome.value)}."]
    if result.successor_id:
        lines.append(f"Successor: {result.successor_id}.")
    if result.candidate:
        c = result.candidate
        lines.append(f"Where: {c.get('instance_type')} in {c.get('zone_id')} "
                     f"({c.get('vswitch_id')}), {c.get('spot_strategy')}.")
    if result.seconds_to_running is not None:
        lines.append(f"Notice to Running: {result.seconds_to_running:.1f} s.")
    if result.seconds_to_serving is not None:
        lines.append(f"Notice to serving: {result.seconds_to_serving:.1f} s"
                     f"{' (healthy where the group checks)' if result.health else ''}.")
    if result.registered:
        lines.append("Serving where its predecessor did:")
        lines += [f"- {m.get('product', 'clb')} {m.get('load_balancer_id') or ''} "
                  f"{m.get('group_id') or 'default'} port {m.get('port')} weight "
                  f"{m.get('weight')}" for m in result.registered]
    if result.health:
        lines.append("Per group:")
        lines += describe(result.health)
    if result.tried:
        lines.append("Tried first:")
        lines += [f"- {t.get('instance_type')} in {t.get('zone_id')} "
                  f"({t.get('spot_strategy')}): {t.get('code')}" for t in result.tried]
    if result.reason:
        lines.append(result.reason)
    severity = ("critical" if result.outcome in (Outcome.FAILED, Outcome.EXHAUSTED,
                                                  Outcome.STALLED, Outcome.NOT_HEALTHY)
                else "info")
    return Notification(
        key=f"replace:{iid}:{result.outcome.value}",
        title=f"Spot replacement {iid}: {result.outcome.value}",
        text="\n".join(lines),
        severity=severity,
        instance_id=iid,
        fields={"outcome": result.outcome.value, "successor": result.successor_id,
                "seconds_to_running": result.seconds_to_running,
                "seconds_to_serving": result.seconds_to_serving,
                "registered": len(result.registered),
                "groups": {k: v.get("state") for k, v in result.health.items()}},
    )
