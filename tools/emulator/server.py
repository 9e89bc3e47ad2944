"""The HTTP side: routing, signatures, faults, the control endpoints and :class:`Emulator`."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tools.emulator import alb, cms, ecs, nlb, slb, trail
from tools.emulator.contract import Contract, Violation, load_contract
from tools.emulator.faults import DROP, UNSET, Faults
from tools.emulator.fc import FC2_PREFIX, FC3_PREFIX, FcResponse, FunctionHost, handle_fc
from tools.emulator.fleet import (
    LOCK_REASONS,
    Credential,
    Fleet,
    FleetError,
    validate_instance,
)
from tools.emulator.signing import verify_acs3, verify_v2
from tools.emulator.world import ApiError, World, iso_seconds

__all__ = ["ON_CLOSE", "PRODUCTS", "Call", "Emulator"]

# version -> (product, actions, HostId)
PRODUCTS: dict[str, tuple[str, Mapping[str, ecs.Handler], str]] = {
    ecs.VERSION: ("ecs", ecs.ACTIONS, "ecs.aliyuncs.com"),
    slb.VERSION: ("slb", slb.ACTIONS, "slb.aliyuncs.com"),
    trail.VERSION: ("actiontrail", trail.ACTIONS, "actiontrail.aliyuncs.com"),
    cms.VERSION: ("cms", cms.ACTIONS, "metrics.aliyuncs.com"),
    alb.VERSION: ("alb", alb.ACTIONS, "alb.aliyuncs.com"),
    nlb.VERSION: ("nlb", nlb.ACTIONS, "nlb.aliyuncs.com"),
}
# Products whose action names collide (ALB and NLB both have ListServerGroups ...): their
# faults, throttles and contract look-ups are keyed ``product:Action`` (``alb:ListServerGroups``).
QUALIFIED_PRODUCTS = frozenset({"alb", "nlb"})
# Signing and protocol parameters: not recorded in Call.params.
COMMON_PARAMS = frozenset({
    "Action", "Version", "Format", "AccessKeyId", "Signature", "SignatureMethod",
    "SignatureVersion", "SignatureNonce", "SignatureType", "Timestamp", "SecurityToken",
    "BearerToken",
})


# ``ecs-event-ops/<function>`` in the User-Agent (shared.clients.user_agent) names the caller.
_FUNCTION_UA = re.compile(r"(?:^|\s)ecs-event-ops/(?P<function>[A-Za-z0-9_.-]+)")
# Any ``ecs-event-ops`` User-Agent is the product: its request parameters are checked against the
# contract (tests that send deliberately bad requests use the SDK's own User-Agent).
_PRODUCT_UA = re.compile(r"(?:^|\s)ecs-event-ops(?:/|\s|$)")


def fault_key(product: str, action: str) -> str:
    """The name faults and throttles know an action by: ``Action``, or ``alb:Action``."""
    return f"{product}:{action}" if product in QUALIFIED_PRODUCTS else action


# fault key -> product, for the faults' contract look-ups.
ACTION_PRODUCT: dict[str, str] = {fault_key(product, action): product
                                  for product, actions, _ in PRODUCTS.values()
                                  for action in actions}


@dataclass(frozen=True)
class Call:
    """One API call the emulator answered (or dropped: status 0, code ConnectionDropped)."""

    product: str
    action: str
    params: dict[str, str]
    access_key_id: str
    time: float
    status: int
    code: str | None
    user_agent: str = ""
    # The JSON body answered (None for a dropped connection): what the conformance suite checks.
    body: dict[str, Any] | None = None
    # The write took effect but its answer was replaced by an error or a dropped connection
    # (``set_faults(lose_answer=...)``).
    answer_lost: bool = False

    @property
    def from_product(self) -> bool:
        """True when the call came from the product (``ecs-event-ops`` User-Agent)."""
        return _PRODUCT_UA.search(self.user_agent) is not None

    @property
    def function(self) -> str | None:
        """The function that made the call, from its User-Agent; None if not attributed."""
        match = _FUNCTION_UA.search(self.user_agent)
        return match.group("function") if match else None


# Called with each Emulator once it has closed (every call is in by then): the test suite's
# least-privilege plugin collects the calls of every emulator of the session this way.
ON_CLOSE: list[Callable[[Emulator], None]] = []


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: Emulator


class _Discard(io.BufferedIOBase):
    """A write sink for a connection being dropped."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses connections
    wbufsize = 64 * 1024  # headers and body leave in one write (flushed per request)
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle + delayed ACK adds ~40 ms to every keep-alive answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the call log is the record

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        split = urlsplit(self.path)
        emu = self.server.emulator
        if split.path.startswith("/_emulator/") or split.path == "/_emulator":
            status, payload = emu._control(method, split.path, body)
            self._send_json(status, payload)
            return
        if split.path.startswith((FC3_PREFIX, FC2_PREFIX)):
            self._send_raw(emu._fc(method=method, path=split.path, raw_query=split.query,
                                   headers=self._header_map(), body=body))
            return
        result = emu._api(method=method, path=split.path, raw_query=split.query,
                          headers=self._header_map(), body=body,
                          content_type=self.headers.get("Content-Type") or "")
        if result is None:
            self._drop()
            return
        status, payload, extra = result
        self._send_json(status, payload, extra)

    def _header_map(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            out.setdefault(name.lower(), []).append(value)
        return out

    def _send_json(self, status: int, payload: Any,
                   extra: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_raw(self, response: FcResponse) -> None:
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def _drop(self) -> None:
        self.close_connection = True
        buffered, self.wfile = self.wfile, _Discard()  # nothing may reach the client
        with contextlib.suppress(OSError):
            buffered.close()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class Emulator:
    """A local Alibaba Cloud (ECS, CLB, ActionTrail, FC invoke) on 127.0.0.1; use as a context
    manager.

    FC options (see :mod:`tools.emulator.fc`): ``db_url`` is the store the served functions use
    (default: SQLite in a temporary directory removed on close); ``function_env`` maps a function
    name (or ``"*"``) to its environment variables; ``qualifiers`` maps a version or alias name
    to the environment overrides its snapshot carries; ``fc_service`` is the FC 2.0 service
    name; ``function_credential`` is the access key id of the fleet credential the functions run
    with (their role; default the first credential).
    """

    def __init__(self, fleet: Fleet, *, latency_ms: float = 0, throttle_qps: float | None = None,
                 throttle_actions: Mapping[str, float] | None = None, fault_rate: float = 0.0,
                 seed: int | None = 0, start_delay_s: float = 0.05,
                 events_out: str | None = None, port: int = 0, host: str = "127.0.0.1",
                 db_url: str | None = None,
                 function_env: Mapping[str, Mapping[str, str]] | None = None,
                 qualifiers: Mapping[str, Mapping[str, str]] | None = None,
                 fc_service: str = "ecs-event-ops", function_credential: str | None = None,
                 function_timeout_s: float = 120.0, contract: Contract | None = None,
                 trail_lag_s: float | None = None, trail_skew_s: float | None = None,
                 trail_qps: object = UNSET, lb_job_s: float | None = None,
                 throttle_reads: float | None = None,
                 throttle_writes: float | None = None) -> None:
        self._creds = {c.access_key_id: c for c in fleet.credentials}
        if function_credential is not None and function_credential not in self._creds:
            raise ValueError(f"function_credential {function_credential!r} is not a fleet "
                             "credential")
        role = (self._creds[function_credential] if function_credential is not None
                else (fleet.credentials[0] if fleet.credentials else None))
        self.fleet = fleet
        self._host = host
        self.contract = contract if contract is not None else load_contract()
        self.faults = Faults(latency_ms, throttle_qps, throttle_actions, fault_rate, seed,
                             statuses=self._fault_statuses,
                             busy=self._busy_codes, kind=self._operation_kind,
                             throttle_reads=throttle_reads, throttle_writes=throttle_writes)
        # Every departure from the documented contract seen in an answer, or in a request from
        # the product (tests/conformance_plugin.py fails the session on any).
        self._violations: list[Violation] = []
        # ActionTrail realism: the arguments win over the fleet file's ``actiontrail`` section
        # (tools/emulator/trail.py).
        self._world = World(
            fleet, start_delay_s, events_out,
            trail_lag_s=fleet.actiontrail.lag_s if trail_lag_s is None else trail_lag_s,
            trail_skew_s=fleet.actiontrail.skew_s if trail_skew_s is None else trail_skew_s,
            trail_qps=fleet.actiontrail.qps if trail_qps is UNSET else trail_qps,  # type: ignore[arg-type]
        )
        if lb_job_s is not None:
            self.set_lb_jobs(job_s=lb_job_s)
        self._calls: list[Call] = []
        self._calls_lock = threading.Lock()
        # (function, "product:Action") -> count; kept apart from _calls so clear_calls() does
        # not hide a call from the least-privilege check.
        self._attributed: dict[tuple[str, str], int] = {}
        self.fc_service = fc_service
        self._functions = FunctionHost(
            cloud_url=lambda: self.url, db_url=db_url, function_env=function_env,
            qualifiers=qualifiers, credential=role, region=self._world.region,
            account_id=self._world.account_id, timeout_s=function_timeout_s)
        self._server = _Server((host, port), _Handler)
        self._server.emulator = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="emulator-http", daemon=True)
        self._thread.start()
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """``host:port``, what ``Config(endpoint=..., protocol="http")`` takes."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def credentials(self) -> list[dict[str, str]]:
        return [c.as_dict() for c in self.fleet.credentials]

    def signing_environment(self) -> dict[str, str]:
        """The first credential as the ``ALIBABA_CLOUD_*`` variables functions sign with."""
        return self.fleet.credentials[0].environment()

    @property
    def db_url(self) -> str:
        """The store URL the functions served over FC use."""
        return self._functions.db_url

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._functions.close()  # async invocations finish first: their calls count
        self._server.shutdown()
        self._server.server_close()
        self._world.close()
        for callback in list(ON_CLOSE):
            callback(self)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- inspection ----------------------------------------------------------------------

    def calls(self) -> list[Call]:
        with self._calls_lock:
            return list(self._calls)

    def contract_violations(self) -> list[Violation]:
        """Departures from api-meta over the emulator's life: every answer it gave, and every
        request the product (``ecs-event-ops`` User-Agent) sent. ``clear_calls`` keeps them."""
        with self._calls_lock:
            return list(self._violations)

    def _violation(self, found: list[Violation]) -> None:
        if found:
            with self._calls_lock:
                self._violations.extend(found)

    def _fault_statuses(self, action: str, code: str) -> list[int]:
        product = ACTION_PRODUCT.get(action)
        if product is None:
            raise ValueError(f"{action!r} is not an action the emulator serves "
                             f"({sorted(ACTION_PRODUCT)})")
        return self.contract.statuses_of(product, action.rpartition(":")[2], code)

    def _operation_kind(self, product: str, action: str) -> str:
        """"read" or "write" by api-meta's operationType (tools.emulator.faults)."""
        product = product or ACTION_PRODUCT.get(action, "")
        action = action.rpartition(":")[2]  # ALB/NLB fault keys are "alb:<Action>"
        kind = (self.contract.api(product, action) or {}).get("operationType")
        if kind in ("read", "write", "readAndWrite"):
            return "read" if kind == "read" else "write"
        return "read" if action.startswith(("Describe", "List", "Lookup", "Get")) else "write"

    def _busy_codes(self, action: str) -> list[tuple[str, int]]:
        product = ACTION_PRODUCT.get(action)
        return [] if product is None else self.contract.busy_codes(
            product, action.rpartition(":")[2])

    def clear_calls(self) -> None:
        with self._calls_lock:
            self._calls.clear()

    def actions_by_function(self) -> dict[str, dict[str, int]]:
        """``{function: {"ecs:DescribeInstances": count}}`` over the emulator's whole life
        (``clear_calls`` does not reset it); calls without a function in the User-Agent are
        left out."""
        out: dict[str, dict[str, int]] = {}
        with self._calls_lock:
            for (function, action), count in self._attributed.items():
                out.setdefault(function, {})[action] = count
        return out

    def _record(self, call: Call) -> None:
        with self._calls_lock:
            self._calls.append(call)
            function = call.function
            if function is not None and call.product and call.action:
                key = (function, f"{call.product}:{call.action}")
                self._attributed[key] = self._attributed.get(key, 0) + 1

    def events(self) -> list[dict[str, Any]]:
        with self._world.lock:
            return json.loads(json.dumps(self._world.events))  # type: ignore[no-any-return]

    def now(self) -> float:
        """The emulated clock (epoch seconds): events and ActionTrail records are stamped by it."""
        return self._world.now()

    def advance_clock(self, seconds: float) -> None:
        """Move the emulated clock forward (tests that pass ``now`` to the product look minutes
        ahead, e.g. past the ActionTrail lag, without waiting). Instance transitions still run
        on this machine's time (``start_delay_s``)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._world.lock:
            self._world.clock_offset_s += seconds

    def set_trail(self, *, lag_s: float | None = None, skew_s: float | None = None,
                  qps: object = UNSET) -> None:
        """Change the ActionTrail realism for the calls made from now on (records keep the lag
        and skew of their call); ``qps=None`` removes the LookupEvents rate limit."""
        with self._world.lock:
            if lag_s is not None:
                if lag_s < 0:
                    raise ValueError("lag_s must be >= 0")
                self._world.trail_lag_s = float(lag_s)
            if skew_s is not None:
                self._world.trail_skew_s = float(skew_s)
            if qps is not UNSET:
                if qps is not None and float(qps) <= 0:  # type: ignore[arg-type]
                    raise ValueError("qps must be > 0 or None")
                self._world.trail_qps = None if qps is None else float(qps)  # type: ignore[arg-type]

    def trail(self) -> list[dict[str, Any]]:
        """ActionTrail records so far (oldest first)."""
        return list(self._world.state()["trail"])

    def instance(self, iid: str) -> dict[str, Any]:
        with self._world.lock:
            inst = self._world.instances.get(iid)
            if inst is not None:
                return inst.snapshot()
            if iid in self._world.released:
                return dict(self._world.released[iid])
        raise KeyError(f"no instance {iid}")

    def load_balancer(self, lb_id: str) -> dict[str, Any]:
        with self._world.lock:
            lb = self._world.lbs.get(lb_id)
            if lb is None:
                raise KeyError(f"no load balancer {lb_id}")
            return self._world.lb_snapshot(lb)

    # --- ALB / NLB (tools/emulator/netlb.py) ----------------------------------------------------

    def set_lb_jobs(self, *, job_s: float | None = None, drain_scale: float | None = None
                    ) -> None:
        """ALB/NLB job timing: a write's job is due ``job_s`` after it is accepted (default
        1.5); a removal from a draining group ``timeout × drain_scale`` later still."""
        with self._world.lock:
            for state in (self._world.albs, self._world.nlbs):
                if job_s is not None:
                    if job_s < 0:
                        raise ValueError("job_s must be >= 0")
                    state.job_s = float(job_s)
                if drain_scale is not None:
                    if drain_scale < 0:
                        raise ValueError("drain_scale must be >= 0")
                    state.drain_scale = float(drain_scale)

    def finish_lb_jobs(self) -> int:
        """Finish every pending ALB/NLB job now (drains included); how many there were."""
        with self._world.lock:
            now = self._world.now()
            return self._world.albs.finish_all(now) + self._world.nlbs.finish_all(now)

    def fail_lb_job(self, job_id: str, code: str, message: str = "") -> None:
        """End a Processing ALB/NLB job as ``Failed`` with ``code`` (one the contract documents
        for the job's action; ``ValueError`` otherwise): its changes are undone, the group is
        ``Available`` again. ALB ``ListAsynJobs`` shows ``ErrorCode`` / ``ErrorMessage``; NLB
        ``GetJobStatus`` keeps answering ``processing`` (it documents no failed state)."""
        with self._world.lock:
            now = self._world.now()
            for product, state in (("alb", self._world.albs), ("nlb", self._world.nlbs)):
                state.settle(now)
                job = state.jobs.get(job_id)
                if job is None:
                    continue
                if job.status != "Processing":
                    raise ValueError(f"job {job_id} is {job.status}, not Processing")
                if not self.contract.statuses_of(product, job.api_name, code):
                    raise ValueError(f"{product}:{job.api_name} does not document {code}")
                state.fail(job, code, message or f"{code} (emulator fault).", now)
                return
        raise KeyError(f"no ALB/NLB job {job_id}")

    def lb_group(self, group_id: str) -> dict[str, Any]:
        """An ALB or NLB server group (members, status, job) as ``state()`` shows it, with
        ``product``; due jobs settled first."""
        with self._world.lock:
            self._world.net_lb_state()
            for product, state in (("alb", self._world.albs), ("nlb", self._world.nlbs)):
                group = state.groups.get(group_id)
                if group is not None:
                    return {"product": product, **group.snapshot()}
        raise KeyError(f"no ALB/NLB server group {group_id}")

    def lb_jobs(self, product: str) -> list[dict[str, Any]]:
        """The jobs of ``alb`` or ``nlb``, oldest first (due ones settled)."""
        return list(self._world.net_lb_state()[f"{product}s"]["jobs"])

    def state(self) -> dict[str, Any]:
        out = self._world.state()
        out["faults"] = self.faults.snapshot()
        return out

    def wait_for_status(self, iid: str, status: str, timeout_s: float = 5.0) -> None:
        """Block until the instance reaches ``status`` (raises TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.instance(iid)["status"] == status:
                return
            time.sleep(0.005)
        raise TimeoutError(f"{iid} did not reach {status} within {timeout_s}s")

    # --- control -------------------------------------------------------------------------

    def create_instance(self, spec: Mapping[str, Any]) -> str:
        """Launch an instance: Pending now, then Starting and Running (StateChange each)."""
        parsed = validate_instance(dict(spec), "instance", self._world.region)
        return self._world.create(parsed)

    def stop_instance(self, iid: str, by: str = "user", user: str = "alice") -> None:
        """Stop a Running instance as a user (ActionTrail record), the platform (O&M event), or
        unexpectedly (``crash``: an OS shutdown or failure, no record and no notice)."""
        if by not in ("user", "platform", "crash"):
            raise ValueError(f"by must be 'user', 'platform' or 'crash', not {by!r}")
        world = self._world
        with world.lock:
            inst = world.require(iid)
            if inst.status != "Running":
                raise ValueError(f"{iid} is {inst.status}, not Running")
            if by == "platform":
                self._om_event(iid, "SystemFailure.Stop", "Executing")
            elif by == "user":
                world.record_trail("StopInstance", iid, {
                    "type": "ram-user", "userName": user, "accountId": world.account_id,
                    "principalId": str(abs(hash(user)) % 10**16),
                }, source_ip="console")
            world.begin_stop(inst)

    def interrupt_spot(self, iid: str) -> None:
        """The 5-minute notice: PreemptibleInstanceInterruption (WARN) + Recycling lock."""
        world = self._world
        with world.lock:
            inst = world.require(iid)
            if "Recycling" not in inst.lock_reasons:
                inst.lock_reasons.append("Recycling")
            world.emit("Instance:PreemptibleInstanceInterruption", iid,
                       {"instanceId": iid, "action": "delete"}, level="WARN")

    def raise_om_event(self, iid: str, event_type: str = "SystemMaintenance.Reboot",
                       status: str = "Scheduled") -> str:
        """Emit ``Instance:<event_type>:<status>``; returns the O&M event id."""
        with self._world.lock:
            self._world.require(iid)
            return self._om_event(iid, event_type, status)

    def _om_event(self, iid: str, event_type: str, status: str) -> str:
        now = time.time()
        event_id = "e-" + uuid.uuid4().hex[:20]
        level = "CRITICAL" if event_type.startswith("SystemFailure") else "WARN"
        self._world.emit(f"Instance:{event_type}:{status}", iid, {
            "eventId": event_id, "eventType": event_type, "eventStatus": status,
            "publishTime": iso_seconds(now), "notBefore": iso_seconds(now + 300),
            "instanceId": iid,
        }, level=level)
        return event_id

    def set_metric(self, iid: str, metric: str, value: float, *,
                   timestamp_ms: int | None = None) -> None:
        """Report one CloudMonitor reading of an instance (``acs_ecs_dashboard``:
        ``CPUUtilization``, ``memory_usedutilization`` …) that DescribeMetricLast answers."""
        cms.set_metric(self._world, iid, metric, value, timestamp_ms=timestamp_ms)

    def lock(self, iid: str, reason: str = "security") -> None:
        """Add an OperationLocks reason (does not change the status)."""
        if reason not in LOCK_REASONS:
            raise ValueError(f"lock reason {reason!r} is not one of {list(LOCK_REASONS)}")
        with self._world.lock:
            inst = self._world.require(iid)
            if reason not in inst.lock_reasons:
                inst.lock_reasons.append(reason)

    def unlock(self, iid: str, reason: str | None = None) -> None:
        """Remove one lock reason, or all of them."""
        with self._world.lock:
            inst = self._world.require(iid)
            inst.lock_reasons = [] if reason is None else [
                r for r in inst.lock_reasons if r != reason]

    def release(self, iid: str) -> None:
        """Release (Deleted event); load balancer members stay (CLB, ALB and NLB: stale
        backends)."""
        self._world.release(iid)

    def set_stock(self, instance_type: str, zone: str, spot_strategy: str, count: int | None,
                  answer: str = "OperationDenied.NoStock") -> None:
        """Launches left for one offering (None: unlimited), and what RunInstances answers once
        none is (tools/emulator/launch.py)."""
        self._world.set_stock(instance_type, zone, spot_strategy, count, answer)

    def set_healthy_after(self, seconds: float | None) -> None:
        """How long after Running CLB health checks pass (None: never), like the fleet's
        ``provisioning.healthy_after_s`` (tools/emulator/slb.py DescribeHealthStatus)."""
        self._world.set_healthy_after(seconds)

    def launched(self) -> list[dict[str, Any]]:
        """Every RunInstances that created instances: ids, type, zone, spot strategy."""
        with self._world.lock:
            return [dict(entry) for entry in self._world.launched]

    def set_faults(self, *, latency_ms: float | None = None, throttle_qps: object = UNSET,
                   throttle_actions: Mapping[str, float] | None = None,
                   fault_rate: float | None = None, seed: int | None = None,
                   fail_next: Mapping[str, Iterable[str]] | None = None,
                   start_error: Mapping[str, str | None] | None = None,
                   retry_after_ms: object = UNSET,
                   lose_answer: Mapping[str, Iterable[str]] | None = None,
                   lose_rate: float | None = None, throttle_reads: object = UNSET,
                   throttle_writes: object = UNSET) -> None:
        """See :mod:`tools.emulator.faults`; only the given settings change. Error codes are
        checked against the contract (``ValueError`` for one the action cannot answer)."""
        self.faults.update(latency_ms=latency_ms, throttle_qps=throttle_qps,
                           throttle_actions=throttle_actions, fault_rate=fault_rate, seed=seed,
                           fail_next=fail_next, start_error=start_error,
                           retry_after_ms=retry_after_ms, lose_answer=lose_answer,
                           lose_rate=lose_rate, throttle_reads=throttle_reads,
                           throttle_writes=throttle_writes)

    # --- HTTP API ------------------------------------------------------------------------

    def _api(self, *, method: str, path: str, raw_query: str, headers: Mapping[str, list[str]],
             body: bytes, content_type: str
             ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """Answer one API request: (status, JSON body, extra headers), or None to drop."""
        query = parse_qsl(raw_query, keep_blank_values=True)
        form: list[tuple[str, str]] = []
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            form = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        params = dict(query)
        params.update(form)
        action = (headers.get("x-acs-action") or [params.get("Action", "")])[0]
        version = (headers.get("x-acs-version") or [params.get("Version", "")])[0]
        product, actions, host_id = PRODUCTS.get(version, ("", {}, "emulator.aliyuncs.com"))
        request_id = str(uuid.uuid4()).upper()
        access_key_id = ""
        api_params = {k: v for k, v in params.items() if k not in COMMON_PARAMS}

        user_agent = (headers.get("user-agent") or [""])[0]
        contract = self.contract

        def record(status: int, code: str | None, body: dict[str, Any] | None,
                   lost: bool = False) -> None:
            self._record(Call(product, action, api_params, access_key_id, time.time(), status,
                              code, user_agent, body, lost))

        def error(err: ApiError, lost: bool = False
                  ) -> tuple[int, dict[str, Any], dict[str, str]]:
            # Every code the emulator answers, whatever its origin (handler, signature, fault),
            # is checked here: the one place all error answers pass.
            self._violation(contract.check_error(product, action, err.status, err.code))
            payload = {"RequestId": request_id, "HostId": host_id, "Code": err.code,
                       "Message": err.message,
                       "Recommend": "https://api.aliyun.com/troubleshoot"}
            record(err.status, err.code, payload, lost)
            return err.status, payload, {}

        if self.faults.latency_ms > 0:
            time.sleep(self.faults.latency_ms / 1000.0)
        try:
            authorization = (headers.get("authorization") or [""])[0]
            if authorization:
                cred = verify_acs3(method=method, path=unquote(path), query=query,
                                   headers=headers, body=body, authorization=authorization,
                                   credentials=self._creds)
            elif "Signature" in params:
                cred = verify_v2(method, query + form, self._creds)
            else:
                raise ApiError("IncompleteSignature", "The request is not signed.", 400)
            access_key_id = cred.access_key_id
            if not action:
                raise ApiError("MissingParameter", "The input parameter \"Action\" that is "
                               "mandatory for processing this request is not supplied.", 400)
            if not product:
                raise ApiError("InvalidVersion", f"Specified parameter Version {version!r} is "
                               "not valid.", 400)
            handler = actions.get(action)
            if handler is None:
                raise ApiError("InvalidAction.NotFound", f"Specified api {action} is not found "
                               "(not emulated).", 404)
        except ApiError as err:
            return error(err)

        if _PRODUCT_UA.search(user_agent):
            self._violation(contract.check_request(product, action, api_params))
        verdict = self.faults.decide(fault_key(product, action), product)
        if verdict is not None:
            if verdict.code == DROP:
                record(0, DROP, None)
                return None
            status, payload, extra = error(ApiError(verdict.code, verdict.message,
                                                    verdict.status))
            if verdict.retry_after_ms is not None:
                extra = {"x-acs-retry-after": str(verdict.retry_after_ms)}
            return status, payload, extra

        ctx = ecs.Context(self._identity(cred), self.faults.start_errors(),
                          lambda code: contract.status_of(product, action, code))
        try:
            missing = contract.missing_required(product, action, params)
            if missing:
                # The documented answer for an absent required parameter, before any handler.
                raise ApiError("MissingParameter", f"The input parameter \"{missing[0]}\" that "
                               "is mandatory for processing this request is not supplied.", 400)
            with self._world.lock:
                result = handler(self._world, params, ctx)
        except ApiError as err:
            return error(err)
        out = {"RequestId": request_id}
        out.update(result)
        self._violation(contract.check_response(product, action, out))
        lost = self.faults.lost_answer(fault_key(product, action))
        if lost is not None:
            # Applied, then the answer is lost: the state changed, the caller sees a 5xx or a
            # dropped connection.
            if lost.code == DROP:
                record(0, DROP, None, lost=True)
                return None
            return error(ApiError(lost.code, lost.message, lost.status), lost=True)
        record(200, None, out)
        return 200, out, {}

    def _fc(self, *, method: str, path: str, raw_query: str, headers: Mapping[str, list[str]],
            body: bytes) -> FcResponse:
        """Function Compute's InvokeFunction / GetFunction (FC 3.0 and 2.0)."""
        user_agent = (headers.get("user-agent") or [""])[0]

        def record(action: str, params: dict[str, str], access_key_id: str, status: int,
                   code: str | None) -> None:
            self._record(Call("fc", action, params, access_key_id, time.time(), status, code,
                              user_agent))

        if self.faults.latency_ms > 0:
            time.sleep(self.faults.latency_ms / 1000.0)
        return handle_fc(host=self._functions, method=method, path=path, raw_query=raw_query,
                         headers=headers, body=body, credentials=self._creds,
                         fc2_service=self.fc_service, record=record)

    def _identity(self, cred: Credential) -> dict[str, str]:
        out = {
            "type": cred.identity_type,
            "userName": cred.user_name or cred.access_key_id,
            "accessKeyId": cred.access_key_id,
            "accountId": self._world.account_id,
            "principalId": str(abs(hash(cred.access_key_id)) % 10**16),
        }
        if cred.identity_type == "root-account":
            out["userName"] = "root"
        return out

    # --- HTTP control --------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p][1:]  # drop "_emulator"
        try:
            data: Any = json.loads(body) if body.strip() else {}
        except ValueError:
            return 400, {"error": "body is not JSON"}
        if not isinstance(data, dict):
            return 400, {"error": "body must be a JSON object"}
        try:
            return self._control_route(method, parts, data)
        except KeyError as exc:
            return 404, {"error": str(exc.args[0]) if exc.args else "not found"}
        except (ValueError, TypeError, FleetError) as exc:
            return 400, {"error": str(exc)}

    def _control_route(self, method: str, parts: list[str], data: dict[str, Any]
                       ) -> tuple[int, Any]:
        if method == "GET" and parts == ["state"]:
            return 200, self.state()
        if method == "GET" and parts == ["calls"]:
            return 200, [asdict(c) for c in self.calls()]
        if method in ("DELETE", "POST") and parts in (["calls"], ["calls", "clear"]):
            self.clear_calls()
            return 200, {"ok": True}
        if method == "GET" and parts == ["events"]:
            return 200, self.events()
        if method == "GET" and parts == ["faults"]:
            return 200, self.faults.snapshot()
        if method == "POST" and parts == ["faults"]:
            self.set_faults(**data)
            return 200, self.faults.snapshot()
        if method == "POST" and parts == ["instances"]:
            return 200, {"instance_id": self.create_instance(data)}
        if method == "GET" and len(parts) == 2 and parts[0] == "instances":
            return 200, self.instance(parts[1])
        if method == "GET" and len(parts) == 2 and parts[0] == "load_balancers":
            return 200, self.load_balancer(parts[1])
        if method == "GET" and len(parts) == 2 and parts[0] == "server_groups":
            return 200, self.lb_group(parts[1])
        if method == "POST" and len(parts) == 3 and parts[0] == "lb_jobs" and parts[2] == "fail":
            self.fail_lb_job(parts[1], str(data["code"]), str(data.get("message", "")))
            return 200, {"ok": True}
        if method == "POST" and parts == ["lb_jobs", "finish"]:
            return 200, {"finished": self.finish_lb_jobs()}
        if method == "POST" and parts == ["lb_jobs"]:
            self.set_lb_jobs(**data)
            return 200, {"ok": True}
        if method == "POST" and len(parts) == 3 and parts[0] == "instances":
            iid, verb = parts[1], parts[2]
            if verb == "stop":
                self.stop_instance(iid, by=str(data.get("by", "user")),
                                   user=str(data.get("user", "alice")))
            elif verb == "interrupt":
                self.interrupt_spot(iid)
            elif verb == "om-event":
                event_id = self.raise_om_event(
                    iid, str(data.get("event_type", "SystemMaintenance.Reboot")),
                    str(data.get("status", "Scheduled")))
                return 200, {"ok": True, "event_id": event_id}
            elif verb == "lock":
                self.lock(iid, str(data.get("reason", "security")))
            elif verb == "unlock":
                reason = data.get("reason")
                self.unlock(iid, None if reason is None else str(reason))
            elif verb == "release":
                self.release(iid)
            elif verb == "metric":
                stamp = data.get("timestamp_ms")
                self.set_metric(iid, str(data["metric"]), float(data["value"]),
                                timestamp_ms=None if stamp is None else int(stamp))
            else:
                return 404, {"error": f"unknown control verb {verb!r}"}
            return 200, {"ok": True}
        return 404, {"error": f"unknown control endpoint {method} /_emulator/{'/'.join(parts)}"}
