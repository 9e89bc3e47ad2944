"""The replacement of one interrupted instance, step by step, every step in the ledger.

=========  ==========================================  ==================================
record     what happened                               a crash after it (lease expired)
=========  ==========================================  ==================================
(none)     verified: a spot instance, opted in, not    a redelivery starts afresh
           owned by ESS/ACK (owned: ``skipped``)
claimed    lease on ``replace:<id>`` taken             the taker starts from the spec
launching  a RunInstances for the recorded candidate   the taker looks for a successor by
           (and its ClientToken) may have been sent    tag, then sends the recorded
                                                       candidate's call again: same token,
                                                       so ECS answers the same instance
launched   the successor's id (lease released)         duplicates answer ``duplicate``; the
                                                       sweep waits for Running
(launched) ``registered_at``: added to every recorded    the sweep resumes the health wait
           group; ``health``: groups serving so far   (shared/replace/health.py), it does
                                                       not add again
running / failed / exhausted / stalled / skipped: finished
=========  ==========================================  ==================================

Stock and availability errors (NO_CAPACITY) move to the next candidate and leave that
offering out for ``replace_avoid_s``; any other refusal (quota, permission, parameters) stops
with an alert; a transient error releases the lease and raises (the platform retries, the
ledger resumes). ``hook(point, run)`` is called at ``launching`` (before RunInstances) and
``launched`` (its answer in hand, not yet recorded): tests raise from it to kill a replacement
between the two.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

from shared import ledger
from shared.clients import CloudError, Instance, TransientError
from shared.events import iso, parse_iso_or_none
from shared.launch import CapacityError, LaunchRequest, LaunchResult, Offering, TemplateVersion
from shared.lb.model import Membership, Product
from shared.ledger import FINISHED_REPLACE, OPEN_DRAIN, Acquired, Kind, Lease, ReplaceStatus
from shared.log import emit, get_logger
from shared.replace.health import GroupState, HealthPort, group_label, observe
from shared.replace.offerings import ON_DEMAND, Candidate, avoid, avoided, candidates, vswitches_in
from shared.replace.policy import REPLACES_TAG, Opt, verdict
from shared.replace.record import Outcome, ReplaceResult, replace_notification
from shared.replace.spec import LaunchSpec, capture, store_spec, stored_spec
from shared.spot.deadline import utc_now

if TYPE_CHECKING:
    from shared.events import EcsEvent
    from shared.settings import Settings
    from shared.spot.batch import Coalescer
    from shared.spot.record import ClientsPort as SpotClients
    from shared.spot.record import NotifierPort

__all__ = ["REPLACE_LEASE_S", "Replacer"]

log = get_logger(__name__)

# A replacement is a handful of calls: a holder silent this long is presumed dead.
REPLACE_LEASE_S = 120.0
S = ReplaceStatus
# A notice meeting these answers ``duplicate``: decided, or launched and waiting for Running.
DECIDED = frozenset({*FINISHED_REPLACE, S.LAUNCHED})


class EcsPort(Protocol):
    def describe_instances(self, instance_ids: Sequence[str]) -> dict[str, Instance]: ...
    def list_instances(self, *, status: str | None = None,
                       tags: Mapping[str, str] | None = None) -> list[Instance]: ...


class LaunchPort(Protocol):
    def run_instance(self, request: LaunchRequest, *, client_token: str,
                     dry_run: bool = False) -> LaunchResult: ...
    def recommend(self, instance_type: str, spot_strategy: str, *,
                  zone_id: str | None = None) -> list[Offering]: ...
    def ram_roles(self, instance_ids: Sequence[str]) -> dict[str, str]: ...
    def user_data(self, instance_id: str) -> str | None: ...
    def template_version(self, template_id: str, version: int | None) -> TemplateVersion: ...


class ClientsPort(Protocol):
    @property
    def ecs(self) -> EcsPort: ...
    @property
    def lb(self) -> HealthPort: ...
    @property
    def launch(self) -> LaunchPort: ...
    def for_region(self, region: str | None) -> ClientsPort: ...


class Store(ledger.LedgerPort, Protocol):
    pass


Hook = Callable[[str, "Run"], None]


@dataclass
class Run:
    """The replacement being executed: its lease, region and what it recorded."""

    lease: Lease
    instance_id: str
    region: str
    opt: Opt
    data: dict[str, Any]

    def save(self, status: ReplaceStatus, **data: Any) -> None:
        self.lease.save(status, **data)
        self.data.update(data)


class Replacer:
    """Launches successors; one per invocation, safe to share between its threads."""

    def __init__(
        self,
        store: Store,
        clients: ClientsPort | Callable[[], ClientsPort],
        settings: Settings,
        *,
        notifier: NotifierPort | None = None,
        clock: Callable[[], datetime] = utc_now,
        owner: str | None = None,
        hook: Hook | None = None,
        coalescer: Coalescer | None = None,
    ) -> None:
        self.store = store
        # The drains' (shared.spot.batch): the notices of one delivery are described in one
        # DescribeInstances, drains and replacements alike.
        self.coalescer = coalescer
        self._clients = clients
        self._local = threading.local()
        self.settings = settings
        self.notifier = notifier
        self.clock = clock
        self.owner = f"{owner or 'replace'}:{uuid.uuid4().hex[:12]}"
        self.hook = hook

    def clients_in(self, region: str) -> ClientsPort:
        if not callable(self._clients):
            return self._clients.for_region(region)
        built: ClientsPort | None = getattr(self._local, "clients", None)
        if built is None:
            built = self._clients()
            self._local.clients = built
        return built.for_region(region)

    # --- the notice path -----------------------------------------------------------------

    def replace(self, event: EcsEvent) -> ReplaceResult:
        """Launch the successor of one interrupted instance (module docstring)."""
        iid = event.instance_id
        if iid is None:
            raise ValueError(f"interruption {event.event_id} names no instance")
        region = event.region or self.settings.region
        dry_run = self.settings.dry_run
        key = ledger.replace_key(iid, dry_run=dry_run)
        entry = self.store.ledger_get(key)
        if entry is not None and entry.status in DECIDED:
            return self._duplicate(entry, event)
        clients = self.clients_in(region)
        instance = self._describe(clients, region, iid)
        spec = stored_spec(self.store, iid)
        tags = dict(instance.tags) if instance is not None else dict(spec.tags if spec else ())
        if instance is None and spec is None:  # its opt-in is unknown, and there is nothing to copy
            return self._not_replaced(event, iid, Outcome.SKIPPED, "gone before its launch spec was "
                                      "captured: its tags and spec are unknown", None)
        if instance is not None and not instance.is_spot:
            return self._not_replaced(event, iid, Outcome.SKIPPED, "not a spot instance "
                                      f"(SpotStrategy {instance.spot_strategy}): a forged or "
                                      "misrouted notice", key)
        found = verdict(tags, self.settings.replace_tag)
        if found.opt is None:
            return self._not_replaced(event, iid, Outcome.NOT_OPTED_IN, found.reason, None)
        if found.reason is not None:
            if not dry_run:
                ledger.claim_once(self.store, key, kind=Kind.REPLACE, instance_id=iid,
                                  status=S.SKIPPED.value,
                                  data={"event_id": event.event_id, "reason": found.reason})
            return self._not_replaced(event, iid, Outcome.SKIPPED, found.reason, key)
        if dry_run:
            return self._dry_run(event, iid, region, instance=instance, spec=spec,
                                 opt=found.opt, key=key)
        now = self.clock()
        got = ledger.acquire(
            self.store, key, kind=Kind.REPLACE, owner=self.owner,
            until=now + timedelta(seconds=REPLACE_LEASE_S), now=now, instance_id=iid,
            data={"event_id": event.event_id, "region": region, "opt": found.opt.value,
                  "notice_time": iso(event.event_time)},
            status=S.CLAIMED, finished=DECIDED)
        if not isinstance(got, Acquired):  # a concurrent copy decided first
            return self._duplicate(got.entry, event)
        emit(log, "replacement claimed", event_id=event.event_id, instance_id=iid, key=key,
             generation=got.lease.generation, created=got.created, resumed_from=got.previous)
        run = Run(got.lease, iid, region, found.opt, dict(got.entry.data))
        return self._run(run, instance, spec)

    def _describe(self, clients: ClientsPort, region: str, iid: str) -> Instance | None:
        if self.coalescer is None:
            return clients.ecs.describe_instances([iid]).get(iid)
        found, _ = self.coalescer.call(("describe", region), [iid], clients.ecs.describe_instances,
                                       reuse=True)
        return found.get(iid) if isinstance(found, dict) else None

    def resume(self, entry: ledger.EntryLike) -> ReplaceResult | None:
        """Take an unfinished replacement over (its lease expired): the sweep's path."""
        now = self.clock()
        got = ledger.acquire(self.store, entry.key, kind=Kind.REPLACE, owner=self.owner,
                             until=now + timedelta(seconds=REPLACE_LEASE_S), now=now,
                             finished=DECIDED)
        if not isinstance(got, Acquired):
            return None
        data = dict(got.entry.data)
        iid = str(entry.instance_id)
        region = str(data.get("region") or self.settings.region)
        instance = self.clients_in(region).ecs.describe_instances([iid]).get(iid)
        run = Run(got.lease, iid, region, Opt(str(data.get("opt") or Opt.SPOT.value)), data)
        return self._run(run, instance, stored_spec(self.store, iid))

    # --- the steps -----------------------------------------------------------------------

    def _run(self, run: Run, instance: Instance | None, spec: LaunchSpec | None
             ) -> ReplaceResult:
        clients = self.clients_in(run.region)
        try:
            if spec is None and instance is not None:
                spec = capture(instance, clients.launch, tag_name=self.settings.replace_tag,
                               now=self.clock())
                store_spec(self.store, spec)
            if spec is None:
                return self._stop(run, S.FAILED, Outcome.FAILED, "no launch spec: the "
                                  "instance was gone before its spec was captured")
            role = spec.ram_role_name
            if role and role not in self.settings.replace_ram_roles:
                return self._stop(run, S.FAILED, Outcome.FAILED, f"RAM role {role} is not in "
                                  "ECS_EVENT_OPS_REPLACE_RAM_ROLES: the function may pass (ram:"
                                  "PassRole) only the roles listed there")
            if spec.spot_strategy != ON_DEMAND:
                avoid(self.store, (spec.instance_type, spec.zone_id, spec.spot_strategy),
                      now=self.clock(), seconds=self.settings.replace_avoid_s,
                      reason=f"reclaimed: {run.instance_id}")
            successor = self._successor(clients, run.instance_id)
            if successor is not None:
                return self._launched(run, successor, None, reused=True)
            return self._launch(run, clients, spec)
        except TransientError:
            run.lease.release()  # the platform's retry takes over at once
            raise

    def _successor(self, clients: ClientsPort, iid: str) -> str | None:
        """An instance tagged ``replaces=<iid>`` (launched by an earlier holder)."""
        found = clients.ecs.list_instances(tags={REPLACES_TAG: iid})
        alive = sorted(i.instance_id for i in found if i.tag(REPLACES_TAG) == iid)
        return alive[0] if alive else None

    def _candidates(self, run: Run, clients: ClientsPort, spec: LaunchSpec
                    ) -> Iterator[Candidate]:
        """The recorded candidate first (a resumed launch), then the list, lazily."""
        strategies = [spec.spot_strategy if spec.spot_strategy != ON_DEMAND else "SpotAsPriceGo"]
        if run.opt.allows_on_demand:
            strategies.append(ON_DEMAND)
        recorded = run.data.get("attempt")
        first = Candidate.from_dict(recorded) if isinstance(recorded, Mapping) else None
        if first is not None:
            yield first
        for candidate in candidates(
                instance_type=spec.instance_type, zone_id=spec.zone_id,
                vswitch_id=spec.vswitch_id,
                vswitches=vswitches_in(self.settings.replace_vswitches, spec.vpc_id),
                strategies=strategies, launch=clients.launch):
            if first is None or candidate.offering != first.offering:
                yield candidate

    def _launch(self, run: Run, clients: ClientsPort, spec: LaunchSpec) -> ReplaceResult:
        tried: list[dict[str, Any]] = list(run.data.get("tried") or [])
        done = {(t.get("instance_type"), t.get("zone_id"), t.get("spot_strategy"))
                for t in tried}
        for candidate in self._candidates(run, clients, spec):
            if candidate.offering in done:
                continue
            if candidate.source != "recorded" and avoided(self.store, candidate.offering,
                                                          self.clock()):
                continue
            token = candidate.client_token(run.instance_id)
            run.save(S.LAUNCHING, attempt={**candidate.to_dict(), "token": token}, tried=tried)
            if self.hook is not None:
                self.hook("launching", run)
            request = spec.request(instance_type=candidate.instance_type,
                                   zone_id=candidate.zone_id, vswitch_id=candidate.vswitch_id,
                                   spot_strategy=candidate.spot_strategy)
            try:
                answer = clients.launch.run_instance(request, client_token=token)
            except CapacityError as err:
                tried.append({**candidate.to_dict(), "code": err.code})
                done.add(candidate.offering)
                avoid(self.store, candidate.offering, now=self.clock(),
                      seconds=self.settings.replace_avoid_s, reason=err.code)
                emit(log, "replacement candidate refused", instance_id=run.instance_id,
                     decision="next_candidate", code=err.code, candidate=candidate.to_dict())
                continue
            except TransientError:
                raise
            except CloudError as err:
                tried.append({**candidate.to_dict(), "code": err.code})
                return self._stop(run, S.FAILED, Outcome.FAILED,
                                  f"{err.code}: {err.server_message} (stopped: a quota, "
                                  "permission or parameter error is not a matter of another "
                                  "candidate)", tried=tried)
            if self.hook is not None:
                self.hook("launched", run)
            if not answer.instance_ids:
                return self._stop(run, S.FAILED, Outcome.FAILED, "RunInstances answered no "
                                  "instance id", tried=tried)
            return self._launched(run, answer.instance_ids[0], candidate, tried=tried)
        on_demand = "" if run.opt.allows_on_demand else (
            f" (on-demand not allowed: tag {self.settings.replace_tag}={run.opt.value})")
        return self._stop(run, S.EXHAUSTED, Outcome.EXHAUSTED,
                          f"every candidate answered a stock error or is left out{on_demand}",
                          tried=tried)

    def _launched(self, run: Run, successor: str, candidate: Candidate | None, *,
                  reused: bool = False, tried: Sequence[dict[str, Any]] = ()) -> ReplaceResult:
        now = self.clock()
        recorded = run.data.get("attempt") if reused else None
        where = candidate.to_dict() if candidate is not None else (
            dict(recorded) if isinstance(recorded, Mapping) else None)
        run.lease.finish(S.LAUNCHED, successor_id=successor, candidate=where,
                         launched_at=iso(now), reused=reused, tried=list(tried))
        emit(log, "replacement launched", instance_id=run.instance_id, successor_id=successor,
             decision="reused" if reused else "launched", candidate=where, tried=len(tried))
        return ReplaceResult(run.instance_id, Outcome.REUSED if reused else Outcome.LAUNCHED,
                             run.lease.key, successor, where, tried=tuple(tried),
                             launched_at=iso(now))

    def _stop(self, run: Run, status: ReplaceStatus, outcome: Outcome, reason: str, *,
              tried: Sequence[dict[str, Any]] = ()) -> ReplaceResult:
        run.lease.finish(status, reason=reason, tried=list(tried), stopped_at=iso(self.clock()))
        emit(log, "replacement stopped", level=40, instance_id=run.instance_id,
             decision=outcome.value, reason=reason, tried=list(tried))
        result = ReplaceResult(run.instance_id, outcome, run.lease.key, reason=reason,
                               tried=tuple(tried))
        self._notify(result)
        return result

    def _notify(self, result: ReplaceResult) -> None:
        if self.notifier is not None:
            self.notifier.send(replace_notification(result))

    def _not_replaced(self, event: EcsEvent, iid: str, outcome: Outcome, reason: str | None,
                      key: str | None) -> ReplaceResult:
        emit(log, "replacement skipped", event_id=event.event_id, instance_id=iid,
             decision=outcome.value, reason=reason)
        return ReplaceResult(iid, outcome, key, reason=reason)

    def _duplicate(self, entry: ledger.EntryLike, event: EcsEvent) -> ReplaceResult:
        emit(log, "replacement duplicate", event_id=event.event_id,
             instance_id=entry.instance_id, key=entry.key, status=entry.status,
             decision="duplicate")
        return ReplaceResult(str(entry.instance_id), Outcome.DUPLICATE, entry.key,
                             entry.data.get("successor_id"), entry.data.get("candidate"),
                             reason=f"decided before: {entry.status}")

    def _dry_run(self, event: EcsEvent, iid: str, region: str, *, instance: Instance | None,
                 spec: LaunchSpec | None, opt: Opt, key: str) -> ReplaceResult:
        """RunInstances with DryRun for the candidates in order until one would launch: the
        checks ECS makes (parameters, quota, stock) without launching; nothing recorded."""
        clients = self.clients_in(region)
        if spec is None and instance is not None:
            spec = capture(instance, clients.launch, tag_name=self.settings.replace_tag,
                           now=self.clock())
        if spec is None:
            return self._not_replaced(event, iid, Outcome.DRY_RUN, "no launch spec", key)
        run = Run(Lease(self.store, key, self.owner, 0), iid, region, opt, {})
        tried: list[dict[str, Any]] = []
        reclaimed = (spec.instance_type, spec.zone_id, spec.spot_strategy)
        for candidate in self._candidates(run, clients, spec):
            if candidate.offering == reclaimed or avoided(self.store, candidate.offering,
                                                          self.clock()):
                continue
            request = spec.request(instance_type=candidate.instance_type,
                                   zone_id=candidate.zone_id, vswitch_id=candidate.vswitch_id,
                                   spot_strategy=candidate.spot_strategy)
            try:
                clients.launch.run_instance(request, client_token=candidate.client_token(iid),
                                           dry_run=True)
            except CapacityError as err:
                tried.append({**candidate.to_dict(), "code": err.code})
                continue
            except CloudError as err:
                if isinstance(err, TransientError):
                    raise
                tried.append({**candidate.to_dict(), "code": err.code})
                return ReplaceResult(iid, Outcome.DRY_RUN, key, reason=f"would stop: "
                                     f"{err.code}", tried=tuple(tried))
            emit(log, "replacement dry run", event_id=event.event_id, instance_id=iid,
                 decision="would_launch", candidate=candidate.to_dict(), spec=spec.described())
            return ReplaceResult(iid, Outcome.DRY_RUN, key, candidate=candidate.to_dict(),
                                 reason="would launch", tried=tuple(tried))
        return ReplaceResult(iid, Outcome.DRY_RUN, key, reason="would find no candidate",
                             tried=tuple(tried))

    # --- after the launch (the sweep) ----------------------------------------------------

    def _wanted(self, entry: ledger.EntryLike, successor: Instance) -> list[Membership] | None:
        """The memberships the successor takes over: every one the predecessor's drain
        recorded, moved to the successor; None while the drain has not recorded them."""
        from shared.spot.record import memberships_of

        drains = list(self.store.ledger_find(Kind.DRAIN.value,
                                             instance_id=str(entry.instance_id)))
        if not drains:
            return []  # not drained by us (another copy of the function, or no notice kept)
        drain = drains[-1]
        if "memberships" not in drain.data:
            return [] if drain.status not in {s.value for s in OPEN_DRAIN} else None
        ips = successor.private_ips
        return [_moved(m, successor.instance_id, ips[0] if ips else None)
                for m in memberships_of(drain.data)]

    def _serve(self, entry: ledger.EntryLike, successor: Instance, region: str
               ) -> list[Membership] | None:
        """Register the successor in every membership the predecessor's drain recorded, with
        the original ports and weights (CLB, ALB, NLB; master-slave and Kubernetes-managed
        groups are left to their owners, as the drain left them); None while the drain has not
        recorded its memberships. Idempotent: what is already there is left, a weight that
        differs is set (shared.spot.sweep.restore)."""
        from shared.spot.sweep import restore

        wanted = self._wanted(entry, successor)
        if not wanted:
            return wanted
        clients = cast("SpotClients", self.clients_in(region))
        restore(clients, wanted, dry=False, token_seed=f"{entry.key}:serve")
        emit(log, "successor registered", instance_id=entry.instance_id,
             successor_id=successor.instance_id, decision="registered",
             memberships=[m.snapshot() for m in wanted])
        return wanted

    def serve_batch(self, entries: Sequence[ledger.EntryLike]) -> int:
        """Register every Running successor of ``entries`` (launched ones) at once, per region:
        one write per group for all of them (restore groups them), instead of one per
        successor (a group takes one write at a time on ALB/NLB). :meth:`settle` then finds
        them registered. The memberships written."""
        from shared.spot.sweep import restore

        by_region: dict[str, list[ledger.EntryLike]] = {}
        for entry in entries:
            if (entry.status == S.LAUNCHED.value and entry.data.get("successor_id")
                    and entry.data.get("registered_at") is None):  # added: health wait only
                region = str(entry.data.get("region") or self.settings.region)
                by_region.setdefault(region, []).append(entry)
        written = 0
        for region, listed in sorted(by_region.items()):
            clients = self.clients_in(region)
            found = clients.ecs.describe_instances(
                [str(e.data["successor_id"]) for e in listed])
            wanted: list[Membership] = []
            for entry in listed:
                successor = found.get(str(entry.data["successor_id"]))
                if successor is None or successor.status != "Running":
                    continue
                if entry.data.get("running_at") is None:
                    self.store.ledger_swap(entry.key, expect={}, statuses=[S.LAUNCHED.value],
                                           data={"running_at": iso(self.clock())})
                wanted += self._wanted(entry, successor) or []
            if not wanted:
                continue
            seed = hashlib.sha256(json.dumps(sorted(m.key for m in wanted), default=str)
                                  .encode()).hexdigest()[:16]
            restore(cast("SpotClients", clients), wanted, dry=False,
                    token_seed=f"serve:{seed}")
            written += len(wanted)
        return written

    def settle(self, entry: ledger.EntryLike) -> ReplaceResult | None:
        """A launched replacement: Running, added to its groups and serving in each (recorded,
        one notification), or past ``replace_stall_s`` (reported stalled), or still booting,
        being added or waiting for a group's health check (None).

        Steps, each in the entry (status stays ``launched`` until the end): ``running_at``;
        ``registered_at`` + ``registered`` once added everywhere (a later call resumes the
        health wait, it does not add again); ``health`` per group as it starts serving
        (shared/replace/health.py); then ``running`` with every group's state."""
        data = entry.data
        successor = data.get("successor_id")
        iid = str(entry.instance_id)
        region = str(data.get("region") or self.settings.region)
        if not successor:
            return None
        now = self.clock()
        launched = parse_iso_or_none(data.get("launched_at")) or entry.created_at
        if data.get("registered_at") is not None:  # added before: only the health wait is left
            return self._await_health(entry, data, region)
        found = self.clients_in(region).ecs.describe_instances([str(successor)]).get(
            str(successor))
        if found is not None and found.status == "Running":
            running = parse_iso_or_none(data.get("running_at")) or now
            if data.get("running_at") is None:  # kept if serving has to wait or be retried
                self.store.ledger_swap(entry.key, expect={}, statuses=[S.LAUNCHED.value],
                                       data={"running_at": iso(running)})
            served = self._serve(entry, found, region)
            if served is None:  # the drain has not recorded its memberships yet
                return None
            added = {"running_at": iso(running), "registered_at": iso(self.clock()),
                     "registered": [m.snapshot() for m in served]}
            if not self.store.ledger_swap(entry.key, expect={}, statuses=[S.LAUNCHED.value],
                                          data=added):
                return None
            return self._await_health(entry, {**data, **added}, region)
        if (now - launched).total_seconds() < self.settings.replace_stall_s:
            return None
        reason = (f"successor {successor} is "
                  f"{found.status if found is not None else 'not found'} "
                  f"{(now - launched).total_seconds():.0f} s after its launch")
        if not self.store.ledger_swap(entry.key, expect={}, statuses=[S.LAUNCHED.value],
                                      status=S.STALLED.value,
                                      data={"reason": reason, "stalled_at": iso(now)}):
            return None
        result = ReplaceResult(iid, Outcome.STALLED, entry.key, str(successor),
                               data.get("candidate"), reason=reason)
        emit(log, "replacement stalled", level=40, instance_id=iid, successor_id=successor,
             decision="stalled", reason=reason)
        self._notify(result)
        return result

    def _await_health(self, entry: ledger.EntryLike, data: Mapping[str, Any], region: str
                      ) -> ReplaceResult | None:
        """Added everywhere: each group's state (shared/replace/health.py) is recorded as it
        starts serving; once all serve, or ``replace_healthy_s`` after the add (the rest
        ``not_healthy``, reported), the replacement is ``running``: one notification."""
        now = self.clock()
        iid, successor = str(entry.instance_id), str(data.get("successor_id"))
        notice = parse_iso_or_none(data.get("notice_time")) or entry.created_at
        added_at = parse_iso_or_none(data.get("registered_at")) or now
        running = parse_iso_or_none(data.get("running_at")) or added_at
        registered = [dict(d) for d in data.get("registered") or ()]
        memberships = [Membership.from_snapshot(d) for d in registered]
        health: dict[str, dict[str, Any]] = {
            k: dict(v) for k, v in (data.get("health") or {}).items()}
        pending = [m for m in memberships if group_label(m) not in health]
        if pending:
            seen = observe(self.clients_in(region).lb, pending, among=memberships)
            for label, state in seen.items():
                if state.serving:
                    at = now if state is GroupState.HEALTHY else added_at
                    health[label] = {"state": state.value, "serving_at": iso(at),
                                     "seconds_to_serving":
                                         round((at - notice).total_seconds(), 3)}
        waiting = sorted({group_label(m) for m in memberships} - set(health))
        waited = (now - added_at).total_seconds()
        if waiting and waited < self.settings.replace_healthy_s:
            if health != (data.get("health") or {}):
                self.store.ledger_swap(entry.key, expect={}, statuses=[S.LAUNCHED.value],
                                       data={"health": health})
            return None
        for label in waiting:
            health[label] = {"state": GroupState.NOT_HEALTHY.value,
                             "reason": f"not reported healthy {waited:.0f} s after it was "
                                       "added"}
        served = [float(g["seconds_to_serving"]) for g in health.values()
                  if "seconds_to_serving" in g]
        to_running = round((running - notice).total_seconds(), 3)
        # Serving in every recorded group: the last group's time; undefined while one is not.
        to_serving: float | None = (
            None if waiting else max(served) if served
            else round((added_at - notice).total_seconds(), 3))
        reason = (f"not healthy in {', '.join(waiting)} {waited:.0f} s after it was added "
                  f"(ECS_EVENT_OPS_REPLACE_HEALTHY_S={self.settings.replace_healthy_s})"
                  if waiting else None)
        done = {"running_at": iso(running), "seconds_to_running": to_running,
                "serving_at": (None if to_serving is None
                               else iso(notice + timedelta(seconds=to_serving))),
                "seconds_to_serving": to_serving, "health": health,
                "not_healthy": waiting}
        if reason:
            done["reason"] = reason
        if not self.store.ledger_swap(entry.key, expect={}, statuses=[S.LAUNCHED.value],
                                      status=S.RUNNING.value, data=done):
            return None
        result = ReplaceResult(iid, Outcome.NOT_HEALTHY if waiting else Outcome.RUNNING,
                               entry.key, successor, data.get("candidate"),
                               reason=reason, running_at=iso(running),
                               launched_at=data.get("launched_at"),
                               seconds_to_running=to_running,
                               seconds_to_serving=to_serving,
                               registered=tuple(registered),
                               tried=tuple(data.get("tried") or ()), health=health)
        emit(log, "replacement running", level=40 if waiting else 20, instance_id=iid,
             successor_id=successor, decision="not_healthy" if waiting else "serving",
             seconds_to_running=to_running, seconds_to_serving=to_serving,
             registered=len(registered), groups={k: v["state"] for k, v in health.items()})
        self._notify(result)
        return result


def _moved(m: Membership, server_id: str, ip: str | None) -> Membership:
    """The predecessor's membership for its successor: same group, port, weight, type and
    description; an Ip member (its id is the address) moves to the successor's address."""
    if m.server_type == "Ip":
        return replace(m, server_id=ip or m.server_id, server_ip=ip)
    return replace(m, server_id=server_id,
                   server_ip=ip if m.product is not Product.CLB else m.server_ip)
