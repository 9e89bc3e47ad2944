"""Whose events a deployment acts on: its own account, in the regions in scope.

CloudMonitor event rules and EventBridge's default bus are account-wide: one function receives
every region's events, and nothing but this check stops an event naming another account (a
forged, misrouted or cross-account-forwarded one) from being acted on. Every function splits its
batch here first:

* an event whose account id is not the deployment's is **rejected**: reported, logged at
  WARNING, neither stored nor acted on;
* an event of a region outside ``ECS_EVENT_OPS_REGIONS`` is **ignored**: reported with its reason,
  neither stored nor acted on (empty setting: every region is in scope);
* an event naming no region (EventBridge ``$.data`` only) belongs to the function's own region;
  one naming no account cannot be checked and is accepted (CloudMonitor and EventBridge always
  name it; only the ``$.data``-only delivery drops it).

The deployment's account is ``ECS_EVENT_OPS_ACCOUNT_ID``, else the FC context's ``account_id``
(python3.10 and 3.12 both have it), else ``FC_ACCOUNT_ID``. When none is known (a local run
without FC's variables) nothing can be rejected: every result then says so in ``warnings``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from shared.events import ACCOUNT_RE
from shared.log import emit, get_logger

# typing is not imported at run time: the annotations are strings (a cold start saves ~2 ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from shared.events import EcsEvent
    from shared.settings import Settings

__all__ = ["AccountSource", "EventScope", "Refusal", "RefusalKind"]

log = get_logger(__name__)


class AccountSource(str, Enum):
    """Where the deployment's account id came from."""

    SETTING = "setting"  # ECS_EVENT_OPS_ACCOUNT_ID
    CONTEXT = "context"  # the FC invocation context's account_id
    ENVIRONMENT = "environment"  # FC_ACCOUNT_ID, reserved and set by Function Compute
    UNKNOWN = "unknown"


class RefusalKind(str, Enum):
    """The ``decision`` of a refused event."""

    REJECTED = "rejected"  # another account's event: never ours to act on
    IGNORED = "ignored"  # our account, a region outside ECS_EVENT_OPS_REGIONS


@dataclass(frozen=True)
class Refusal:
    """An event the deployment does not act on, and why."""

    decision: RefusalKind
    reason: str
    event_id: str
    instance_id: str | None
    region: str | None
    account_id: str | None
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "instance_id": self.instance_id,
            "name": self.name,
            "region": self.region,
            "account_id": self.account_id,
            "decision": self.decision.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class EventScope:
    """The deployment's account and regions, and the rule that splits a batch by them."""

    home_region: str
    regions: frozenset[str] = frozenset()  # empty: every region
    account_id: str | None = None
    account_source: AccountSource = AccountSource.UNKNOWN

    @classmethod
    def resolve(
        cls, settings: Settings, context: object | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> EventScope:
        """The scope of this invocation: settings first, then what FC tells about itself."""
        env = os.environ if environ is None else environ
        account, source = settings.account_id, AccountSource.SETTING
        if account is None:
            account, source = _valid(getattr(context, "account_id", None)), AccountSource.CONTEXT
        if account is None:
            account, source = _valid(env.get("FC_ACCOUNT_ID")), AccountSource.ENVIRONMENT
        if account is None:
            source = AccountSource.UNKNOWN
        return cls(settings.region, frozenset(settings.regions), account, source)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What a result must say about checks that could not be made."""
        if self.account_id is not None:
            return ()
        return (
            "deployment account unknown (no ECS_EVENT_OPS_ACCOUNT_ID, no account in the FC "
            "context or FC_ACCOUNT_ID): events of every account are accepted",
        )

    def in_scope(self, region: str) -> bool:
        return not self.regions or region in self.regions

    def region_of(self, event: EcsEvent) -> str:
        """The region to act in: the event's own, else (no region in the event) ours."""
        return event.region or self.home_region

    def refusal(self, event: EcsEvent) -> Refusal | None:
        """Why this event is not ours to act on; None when it is."""
        if (
            self.account_id is not None
            and event.account_id is not None
            and event.account_id != self.account_id
        ):
            return self._refuse(
                event, RefusalKind.REJECTED,
                f"account {event.account_id} is not this deployment's "
                f"({self.account_id}, from {self.account_source.value})",
            )
        region = self.region_of(event)
        if not self.in_scope(region):
            return self._refuse(
                event, RefusalKind.IGNORED,
                f"region {region} is outside ECS_EVENT_OPS_REGIONS "
                f"({', '.join(sorted(self.regions))})",
            )
        return None

    def split(self, events: Iterable[EcsEvent]) -> tuple[tuple[EcsEvent, ...], tuple[Refusal, ...]]:
        """(events to act on, refused events), each in input order; every refusal is logged."""
        accepted: list[EcsEvent] = []
        refused: list[Refusal] = []
        for event in events:
            refusal = self.refusal(event)
            if refusal is None:
                accepted.append(event)
                continue
            refused.append(refusal)
            emit(
                log, "event refused",
                logging.WARNING if refusal.decision is RefusalKind.REJECTED else logging.INFO,
                event_id=event.event_id, instance_id=event.instance_id, region=event.region,
                account_id=event.account_id, decision=refusal.decision.value,
                reason=refusal.reason,
            )
        if self.account_id is None and accepted:
            emit(log, "account not checked", logging.WARNING, reason=self.warnings[0])
        return tuple(accepted), tuple(refused)

    @staticmethod
    def _refuse(event: EcsEvent, decision: RefusalKind, reason: str) -> Refusal:
        return Refusal(
            decision, reason, event.event_id, event.instance_id, event.region, event.account_id,
            event.full_name,
        )


def _valid(value: object) -> str | None:
    """An account id as FC gives it (a string of digits); anything else is unknown."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and ACCOUNT_RE.fullmatch(value.strip()):
        return value.strip()
    return None
