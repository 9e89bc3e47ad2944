"""The emulated account's mutable state: instances, load balancers, events, ActionTrail.

Everything is guarded by one re-entrant lock (``World.lock``); API handlers and control
operations take it for their whole duration, so every call sees a consistent state.
Asynchronous transitions (Starting -> Running, ...) run on a :class:`Scheduler` thread after
``start_delay_s`` and emit an ``Instance:StateChange`` CloudMonitor payload each.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any

from tools.emulator.fleet import (
    EniSpec,
    Fleet,
    GroupSpec,
    InstanceSpec,
    LaunchAttributes,
    ServerSpec,
    StockSpec,
    VSwitchSpec,
    primary_eni_id,
)
from tools.emulator.netlb import NetLbState

__all__ = ["ApiError", "Instance", "LoadBalancer", "Member", "Scheduler", "ServerGroup", "World",
           "status_for"]

CST = timezone(timedelta(hours=8))  # CloudMonitor stamps eventTime in China Standard Time

# HTTP status the real services answer with, by error code (default 400).
_STATUS_BY_CODE = {
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "InstanceNotReady": 403,
    "IncorrectInstanceStatus": 403,
    "InstanceLockedForSecurity": 403,
    "InsufficientBalance": 403,
    "InstanceExpired": 403,
    "DiskInArrears": 403,
    "OperationDenied.NoStock": 403,
    "QuotaExceed.ElasticQuota": 403,
    "OperationConflict": 403,
    "Forbidden.RAM": 403,
    "InvalidSecurityToken.MismatchWithAccessKey": 403,
}


def status_for(code: str) -> int:
    """The HTTP status for an error code: explicit table, then *NotFound -> 404, else 400."""
    if code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[code]
    if code.endswith(".NotFound") or code.endswith("NotFound"):
        return 404
    if code.startswith(("OperationDenied", "Forbidden", "QuotaExceed")):
        return 403
    return 400


class ApiError(Exception):
    """An API error answered as ``{"RequestId","HostId","Code","Message"}``."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else status_for(code)


def iso_minutes(ts: float) -> str:
    """ECS style UTC time: ``2026-11-20T08:00Z``."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def iso_seconds(ts: float) -> str:
    """ActionTrail style UTC time: ``2026-11-23T10:00:00Z``."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def compact_time(ts: float) -> str:
    """CloudMonitor eventTime: ``20190409T121826.922+0800``."""
    moment = datetime.fromtimestamp(ts, CST)
    return moment.strftime("%Y%m%dT%H%M%S.") + f"{moment.microsecond // 1000:03d}+0800"


@dataclass
class Instance:
    """Mutable state of one instance; ``gen`` invalidates pending transitions."""

    id: str
    name: str
    status: str
    instance_type: str
    zone: str
    spot_strategy: str
    spot_interruption_behavior: str
    stopped_mode: str
    charge_type: str
    image_id: str
    tags: dict[str, str]
    lock_reasons: list[str]
    private_ip: str
    public_ip: str | None
    vpc_id: str
    creation_time: str
    expired_time: str
    auto_release_time: str
    gen: int = 0
    # What DescribeInstances does not show (or shows only in part): provisioning.instances in
    # the fleet file, or what RunInstances was given.
    launch: LaunchAttributes = field(default_factory=LaunchAttributes)
    spot_price_limit: float = 0.0
    # When it last became Running (World clock); 0.0: Running since before the emulator began.
    running_since: float = 0.0
    enis: tuple[EniSpec, ...] = ()  # the fleet's; () is one primary ENI (interfaces())

    def interfaces(self) -> tuple[EniSpec, ...]:
        """Its ENIs, the primary one first (it holds the instance's private IP)."""
        return self.enis or (EniSpec(primary_eni_id(self.id), self.private_ip),)

    @classmethod
    def from_spec(cls, spec: InstanceSpec) -> Instance:
        return cls(
            id=spec.id, name=spec.name, status=spec.status, instance_type=spec.instance_type,
            zone=spec.zone, spot_strategy=spec.spot_strategy,
            spot_interruption_behavior=spec.spot_interruption_behavior,
            stopped_mode=spec.stopped_mode, charge_type=spec.charge_type, image_id=spec.image_id,
            tags=dict(spec.tags), lock_reasons=list(spec.lock_reasons),
            private_ip=spec.private_ip, public_ip=spec.public_ip, vpc_id=spec.vpc_id,
            creation_time=spec.creation_time, expired_time=spec.expired_time,
            auto_release_time=spec.auto_release_time, enis=spec.enis,
        )

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy in the fleet file's vocabulary."""
        return {
            "id": self.id, "name": self.name, "status": self.status,
            "instance_type": self.instance_type, "zone": self.zone,
            "spot_strategy": self.spot_strategy,
            "spot_interruption_behavior": self.spot_interruption_behavior,
            "stopped_mode": self.stopped_mode, "charge_type": self.charge_type,
            "image_id": self.image_id, "tags": dict(self.tags),
            "lock_reasons": list(self.lock_reasons), "private_ip": self.private_ip,
            "public_ip": self.public_ip, "vpc_id": self.vpc_id,
            "creation_time": self.creation_time, "expired_time": self.expired_time,
            "auto_release_time": self.auto_release_time,
            "enis": [{"id": e.id, "private_ip": e.private_ip} for e in self.interfaces()],
        }


@dataclass
class Member:
    """A backend server of a group."""

    server_id: str
    weight: int
    port: int | None = None
    description: str = ""
    server_type: str | None = None
    type: str = "ecs"

    @classmethod
    def from_spec(cls, spec: ServerSpec) -> Member:
        return cls(spec.server_id, spec.weight, spec.port, spec.description, spec.server_type)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"server_id": self.server_id, "weight": self.weight,
                               "type": self.type}
        if self.port is not None:
            out["port"] = self.port
        if self.server_type is not None:
            out["server_type"] = self.server_type
        if self.description:
            out["description"] = self.description
        return out


@dataclass
class ServerGroup:
    """A vServer group or master-slave group; knows its load balancer."""

    id: str
    name: str
    lb_id: str
    kind: str  # "vserver" | "master_slave"
    members: list[Member]

    @classmethod
    def from_spec(cls, spec: GroupSpec, lb_id: str, kind: str) -> ServerGroup:
        return cls(spec.id, spec.name, lb_id, kind, [Member.from_spec(s) for s in spec.servers])

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name,
                "servers": [m.snapshot() for m in self.members]}


@dataclass
class LoadBalancer:
    """A CLB instance."""

    id: str
    name: str
    tags: dict[str, str]
    address: str
    default_members: list[Member]
    vserver_group_ids: list[str]
    master_slave_group_ids: list[str]
    # (port, protocol, vServer group id or None, health check on)
    listeners: list[tuple[int, str, str | None, bool]] = field(default_factory=list)


class Scheduler:
    """Runs callbacks after a delay on one daemon thread (cheaper than a Timer each)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="emulator-scheduler", daemon=True)
        self._thread.start()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay_s), next(self._seq), fn))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._heap or self._heap[0][0] > time.monotonic()
                ):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            fn()


class World:
    """All emulated resources and the logs of what happened to them."""

    def __init__(self, fleet: Fleet, start_delay_s: float = 0.05,
                 events_out: str | None = None, *, trail_lag_s: float = 0.0,
                 trail_skew_s: float = 0.0, trail_qps: float | None = None) -> None:
        self.lock = threading.RLock()
        self.fleet = fleet
        self.region = fleet.region
        self.account_id = fleet.account_id
        self.start_delay_s = start_delay_s
        # ActionTrail realism (tools/emulator/trail.py): a record becomes visible trail_lag_s
        # after the call, its eventTime is stamped trail_skew_s off the call's time, and
        # LookupEvents answers at most trail_qps calls per second for the account (None: no
        # limit).
        self.trail_lag_s = trail_lag_s
        self.trail_skew_s = trail_skew_s
        self.trail_qps = trail_qps
        # Seconds the emulated clock runs ahead of this machine's (Emulator.advance_clock):
        # lets a test look minutes ahead (ActionTrail lag) without waiting for them.
        self.clock_offset_s = 0.0
        self.instances: dict[str, Instance] = {}
        self.released: dict[str, dict[str, Any]] = {}
        self.lbs: dict[str, LoadBalancer] = {}
        self.groups: dict[str, ServerGroup] = {}
        self.events: list[dict[str, Any]] = []
        self.trail: list[dict[str, Any]] = []
        self._events_file: IO[str] | None = (
            open(events_out, "a", encoding="utf-8") if events_out else None  # noqa: SIM115
        )
        self.scheduler = Scheduler()
        for spec in fleet.instances:
            inst = Instance.from_spec(spec)
            self.instances[inst.id] = inst
        for lb_spec in fleet.load_balancers:
            lb = LoadBalancer(
                id=lb_spec.id, name=lb_spec.name, tags=dict(lb_spec.tags),
                address=lb_spec.address,
                default_members=[Member.from_spec(s) for s in lb_spec.default_servers],
                vserver_group_ids=[g.id for g in lb_spec.vserver_groups],
                master_slave_group_ids=[g.id for g in lb_spec.master_slave_groups],
                listeners=[(li.port, li.protocol, li.vserver_group_id, li.health_check)
                           for li in lb_spec.listeners],
            )
            self.lbs[lb.id] = lb
            for g in lb_spec.vserver_groups:
                self.groups[g.id] = ServerGroup.from_spec(g, lb.id, "vserver")
            for g in lb_spec.master_slave_groups:
                self.groups[g.id] = ServerGroup.from_spec(g, lb.id, "master_slave")
        # ALB / NLB server groups and their asynchronous jobs (tools/emulator/netlb.py).
        self.albs = NetLbState("alb", fleet.albs, self.ip_and_zone, iso_seconds(time.time()))
        self.nlbs = NetLbState("nlb", fleet.nlbs, self.ip_and_zone, iso_seconds(time.time()))
        self._init_provisioning()
        # Fleet entries caught mid-transition finish it like real ones would.
        for inst in self.instances.values():
            if inst.status == "Starting":
                self._later(inst, "Running")
            elif inst.status == "Stopping":
                self._later(inst, "Stopped")
            elif inst.status == "Pending":
                self._later(inst, "Starting", then="Running")

    def now(self) -> float:
        """The emulated account's clock (epoch seconds): this machine's plus the offset."""
        return time.time() + self.clock_offset_s

    def close(self) -> None:
        self.scheduler.stop()
        with self.lock:
            if self._events_file is not None:
                self._events_file.close()
                self._events_file = None

    # --- events --------------------------------------------------------------------------

    def emit(self, name: str, iid: str, content: dict[str, Any], level: str = "INFO") -> None:
        """Append one CloudMonitor payload (events.md §1) and write it to events_out."""
        payload = {
            "ver": "1.0",
            "id": str(uuid.uuid4()),
            "product": "ECS",
            "resourceId": f"acs:ecs:{self.region}:{self.account_id}:instance/{iid}",
            "level": level,
            "name": name,
            "userId": self.account_id,
            "eventTime": compact_time(self.now()),
            "regionId": self.region,
            "content": content,
        }
        with self.lock:
            self.events.append(payload)
            if self._events_file is not None:
                self._events_file.write(json.dumps(payload, ensure_ascii=False) + "\n")
                self._events_file.flush()

    def _state_change(self, inst: Instance, state: str) -> None:
        inst.status = state
        if state == "Running":
            inst.running_since = self.now()
        self.emit("Instance:StateChange", inst.id, {
            "resourceId": inst.id, "resourceType": "ALIYUN::ECS::Instance", "state": state,
        })

    def _later(self, inst: Instance, state: str, then: str | None = None,
               then2: str | None = None, *,
               on_done: Callable[[Instance], None] | None = None,
               delay_s: float | None = None) -> None:
        """After start_delay_s, move ``inst`` to ``state`` unless something else moved it."""
        iid, gen = inst.id, inst.gen

        def fire() -> None:
            with self.lock:
                current = self.instances.get(iid)
                if current is None or current.gen != gen:
                    return
                self._state_change(current, state)
                if on_done is not None and then is None:
                    on_done(current)
                if then is not None:
                    self._later(current, then, then2, on_done=on_done, delay_s=delay_s)

        self.scheduler.call_later(self.start_delay_s if delay_s is None else delay_s, fire)

    # --- transitions (callers hold the lock and checked preconditions) ---------------------

    def begin_start(self, inst: Instance) -> None:
        inst.gen += 1
        self._state_change(inst, "Starting")
        self._later(inst, "Running")

    def begin_stop(self, inst: Instance, stopped_mode: str | None = None) -> None:
        inst.gen += 1
        self._state_change(inst, "Stopping")

        def done(current: Instance) -> None:
            if stopped_mode is not None:
                current.stopped_mode = stopped_mode

        self._later(inst, "Stopped", on_done=done)

    def begin_reboot(self, inst: Instance) -> None:
        inst.gen += 1
        self._state_change(inst, "Stopping")
        self._later(inst, "Starting", then="Running")

    def release(self, iid: str) -> None:
        with self.lock:
            inst = self.require(iid)
            inst.gen += 1
            del self.instances[iid]
            snap = inst.snapshot()
            snap["status"] = "Deleted"
            self.released[iid] = snap
            self.emit("Instance:StateChange", iid, {
                "resourceId": iid, "resourceType": "ALIYUN::ECS::Instance", "state": "Deleted",
            })

    def create(self, spec: InstanceSpec) -> str:
        with self.lock:
            if spec.id in self.instances or spec.id in self.released:
                raise ValueError(f"instance {spec.id} already exists")
            inst = Instance.from_spec(spec)
            inst.status = "Pending"
            self.instances[inst.id] = inst
            self._state_change(inst, "Pending")
            self._later(inst, "Starting", then="Running")
            return inst.id

    def ip_and_zone(self, iid: str) -> tuple[str, str]:
        """An instance's private IP and zone (released ones too); empty when unknown."""
        inst = self.instances.get(iid)
        if inst is not None:
            return inst.private_ip, inst.zone
        gone = self.released.get(iid)
        return (str(gone["private_ip"]), str(gone["zone"])) if gone else ("", "")

    def require(self, iid: str) -> Instance:
        inst = self.instances.get(iid)
        if inst is None:
            raise KeyError(f"no instance {iid}")
        return inst

    # --- ActionTrail ---------------------------------------------------------------------

    def record_trail(self, event_name: str, iid: str, identity: dict[str, str],
                     source_ip: str = "127.0.0.1") -> None:
        """Record an API call now. It is stamped ``trail_skew_s`` off the call's time (the
        trail's clock against the events') and LookupEvents shows it only ``trail_lag_s``
        after the call; both are taken when the call is made."""
        with self.lock:
            now = self.now()
            stamped = now + self.trail_skew_s
            self.trail.append({
                "eventId": str(uuid.uuid4()).upper(),
                "eventVersion": "1",
                "eventName": event_name,
                "eventTime": iso_seconds(stamped),
                "eventSource": f"ecs-{self.region}.aliyuncs.com",
                "eventType": "ApiCall",
                "eventRW": "Write",
                "acsRegion": self.region,
                "serviceName": "Ecs",
                "sourceIpAddress": source_ip,
                "userAgent": "emulator",
                "requestId": str(uuid.uuid4()).upper(),
                "userIdentity": dict(identity),
                "requestParameters": {"InstanceId": iid, "RegionId": self.region},
                "resourceName": iid,
                "resourceType": "ACS::ECS::Instance",
                "_ts": now,  # when the call was made (the emulated clock)
                "_stamped": stamped,  # eventTime, what StartTime/EndTime select on
                "_visible_at": now + self.trail_lag_s,
            })

    # --- snapshots -----------------------------------------------------------------------

    def lb_snapshot(self, lb: LoadBalancer) -> dict[str, Any]:
        return {
            "id": lb.id, "name": lb.name, "tags": dict(lb.tags), "address": lb.address,
            "default_servers": [m.snapshot() for m in lb.default_members],
            "vserver_groups": [self.groups[g].snapshot() for g in lb.vserver_group_ids],
            "master_slave_groups": [self.groups[g].snapshot() for g in lb.master_slave_group_ids],
            "listeners": [{"port": p, "protocol": proto, "vserver_group_id": vg,
                           "health_check": checked}
                          for p, proto, vg, checked in lb.listeners],
        }

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "region": self.region,
                "account_id": self.account_id,
                "instances": [i.snapshot() for i in self.instances.values()],
                "released": list(self.released.values()),
                "load_balancers": [self.lb_snapshot(lb) for lb in self.lbs.values()],
                "trail": [{k: v for k, v in t.items() if not k.startswith("_")}
                          for t in self.trail],
                "events": len(self.events),
                **self.net_lb_state(),
            }

    def net_lb_state(self) -> dict[str, Any]:
        """ALB and NLB load balancers, server groups and jobs (due jobs settled first)."""
        with self.lock:
            now = self.now()
            self.albs.settle(now)
            self.nlbs.settle(now)
            return {"albs": self.albs.snapshot(), "nlbs": self.nlbs.snapshot()}
    # --- provisioning: RunInstances and its neighbours (issue 14) ---------------------------

    def _init_provisioning(self) -> None:
        spec = self.fleet.provisioning
        # Seconds after Running before a health check passes (None: never); see healthy().
        self.healthy_after_s: float | None = spec.healthy_after_s
        self.vswitches: dict[str, VSwitchSpec] = {v.id: v for v in spec.vswitches}
        # (instance type, zone, spot strategy) -> launches left and the answer once none is.
        self.stock: dict[tuple[str, str, str], list[Any]] = {
            (s.instance_type, s.zone, s.spot_strategy): [s.count, s.answer] for s in spec.stock
        }
        # ClientToken -> (fingerprint of the request, the instance ids it created).
        self.client_tokens: dict[str, tuple[str, list[str]]] = {}
        self.launched: list[dict[str, Any]] = []  # every RunInstances that created instances
        self._launch_seq = itertools.count(1)
        for iid, attrs in spec.instances:
            self.instances[iid].launch = attrs

    def healthy(self, inst: Instance | None) -> bool:
        """Whether a load balancer's health check passes on ``inst``: Running for at least
        ``healthy_after_s`` (never when it is None; a fleet instance Running from the start
        has been Running for ever)."""
        if inst is None or inst.status != "Running" or self.healthy_after_s is None:
            return False
        return self.now() - inst.running_since >= self.healthy_after_s

    def set_healthy_after(self, seconds: float | None) -> None:
        """Control: how long after Running health checks pass (None: they never do)."""
        with self.lock:
            self.healthy_after_s = seconds

    def vswitch_of(self, inst: Instance) -> str:
        """The instance's vSwitch: the one it was given, else one of its VPC and zone in the
        fleet, else a stand-in named after its VPC."""
        if inst.launch.vswitch_id:
            return inst.launch.vswitch_id
        for vsw in self.vswitches.values():
            if vsw.vpc_id == inst.vpc_id and vsw.zone == inst.zone:
                return vsw.id
        return "vsw-" + inst.vpc_id[4:]

    def stock_left(self, instance_type: str, zone: str, spot_strategy: str) -> int | None:
        """Launches left for the offering; None: unlimited (no stock entry)."""
        found = self.stock.get((instance_type, zone, spot_strategy))
        return None if found is None else int(found[0])

    def stock_answer(self, instance_type: str, zone: str, spot_strategy: str) -> str:
        found = self.stock.get((instance_type, zone, spot_strategy))
        return StockSpec.answer if found is None else str(found[1])

    def set_stock(self, instance_type: str, zone: str, spot_strategy: str, count: int | None,
                  answer: str = "OperationDenied.NoStock") -> None:
        """Control: change an offering's stock (None: unlimited again)."""
        with self.lock:
            key = (instance_type, zone, spot_strategy)
            if count is None:
                self.stock.pop(key, None)
            else:
                self.stock[key] = [count, answer]

    def launch_instances(self, *, amount: int, instance_type: str, zone: str, vsw: VSwitchSpec,
                         spot_strategy: str, spot_price_limit: float, image_id: str, name: str,
                         tags: dict[str, str], attrs: LaunchAttributes,
                         spot_interruption_behavior: str) -> list[str]:
        """Create ``amount`` instances (callers hold the lock and checked stock): Pending, then
        Starting and Running after the fleet's boot time, half each."""
        boot = self.fleet.provisioning.boot_s
        half = (self.start_delay_s if boot is None else boot) / 2
        key = (instance_type, zone, spot_strategy)
        if key in self.stock:
            self.stock[key][0] = int(self.stock[key][0]) - amount
        created = []
        for _ in range(amount):
            n = next(self._launch_seq)
            iid = f"i-rpl{uuid.uuid4().hex[:17]}"
            inst = Instance(
                id=iid, name=name or iid, status="Pending", instance_type=instance_type,
                zone=zone, spot_strategy=spot_strategy,
                spot_interruption_behavior=spot_interruption_behavior,
                stopped_mode="Not-applicable", charge_type="PostPaid", image_id=image_id,
                tags=dict(tags), lock_reasons=[],
                private_ip=f"{vsw.cidr_prefix}.{n % 250 + 2}", public_ip=None,
                vpc_id=vsw.vpc_id, creation_time=iso_minutes(self.now()),
                expired_time="2099-12-31T15:59Z", auto_release_time="", launch=attrs,
                spot_price_limit=spot_price_limit,
            )
            self.instances[iid] = inst
            self._state_change(inst, "Pending")
            self._later(inst, "Starting", then="Running", delay_s=half)
            created.append(iid)
        self.launched.append({"instance_ids": list(created), "instance_type": instance_type,
                              "zone": zone, "spot_strategy": spot_strategy,
                              "at": self.now()})
        return created
