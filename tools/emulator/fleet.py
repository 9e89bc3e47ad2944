"""The fleet file: what the emulated account holds when the emulator starts.

A YAML (or dict) document, validated strictly: an unknown key or a bad value raises
:class:`FleetError` whose message starts with the path of the bad entry, e.g.
``instances[2].status: 'Runing' is not one of ['Pending', 'Running', ...]``.

Format (every key but ``instances[].id`` and the ids of load balancers and groups has a
default)::

    region: cn-hangzhou
    account_id: "1234567890123456"
    credentials:                      # default: one pair, see DEFAULT_CREDENTIAL
      - {access_key_id: LTAIexample, access_key_secret: example-secret,
         security_token: optional, user_name: optional, identity_type: ram-user}
    instances:
      - {id: i-bp1..., name: web-1, status: Running, instance_type: ecs.g7.large,
         zone: cn-hangzhou-h, spot_strategy: NoSpot, spot_interruption_behavior: Terminate,
         stopped_mode: KeepCharging, charge_type: PostPaid, tags: {auto-start: "true"},
         lock_reasons: [], private_ip: 10.0.0.11, public_ip: null, vpc_id: vpc-..., image_id: ...,
         creation_time: "2026-11-20T08:00Z", expired_time: "2099-12-31T15:59Z",
         auto_release_time: ""}
    load_balancers:
      - id: lb-bp1...
        name: web
        tags: {env: prod}
        address: 47.0.0.1
        default_servers: [{server_id: i-..., weight: 100}]
        vserver_groups: [{id: rsp-..., name: api, servers: [{server_id: i-..., port: 8080,
                                                               weight: 100, description: ""}]}]
        master_slave_groups: [{id: rsp-..., name: ms, servers: [{server_id: i-..., port: 80,
                                                                  weight: 100, server_type: Master}]}]
        listeners: [{port: 80, protocol: http, vserver_group_id: rsp-...}]   # optional
    actiontrail: {lag_s: 0, skew_s: 0, qps: null}   # optional: LookupEvents realism (trail.py)
    albs:                             # optional: ALB 2020-06-16 (tools/emulator/alb.py)
      - id: alb-bp1...
        name: web-alb
        tags: {env: prod}
        edition: Standard             # ALB only: Basic | Standard | StandardWithWaf; Basic
                                      # groups cannot drain connections (reference §1.5)
        vpc_id: vpc-bp1emulator0000000001
        server_groups:
          - id: sgp-...
            name: api
            type: Instance            # Instance (Ecs/Eni/Eci members) | Ip (Ip members)
            protocol: HTTP            # ALB: HTTP|HTTPS|gRPC; NLB: TCP|UDP|TCPSSL
            tags: {ack.aliyun.com: c-123, kubernetes.do.not.delete: svc}   # ACK-managed
            connection_drain: {enabled: true, timeout_s: 30}   # ALB 0..900, NLB 10..900
            members:
              - {server_id: i-..., server_type: Ecs, port: 80, weight: 100,
                 server_ip: 10.0.0.11, description: ""}   # server_ip: default the instance's
    nlbs:                             # optional: NLB 2022-04-30 (tools/emulator/nlb.py), same
      - id: nlb-bp1...                # shape; members may leave port out (0, AnyPort groups)
        server_groups: [...]

ALB/NLB server group ids are unique across both products; a member is keyed by
``(server_id, server_ip, port)``; ``server_type`` is ``Ecs`` | ``Eni`` | ``Eci`` (Instance
groups, ``server_id`` the resource id, ``server_ip`` required for ``Eni``) or ``Ip`` (Ip groups,
``server_id`` the address).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.events import ACCOUNT_RE, INSTANCE_ID_RE, REGION_RE  # one rule for ids

__all__ = [
    "DEFAULT_CREDENTIAL",
    "Credential",
    "Fleet",
    "FleetError",
    "GroupSpec",
    "InstanceSpec",
    "LbGroupSpec",
    "LbMemberSpec",
    "ListenerSpec",
    "LoadBalancerSpec",
    "NetLbSpec",
    "ServerSpec",
    "TrailSpec",
    "load_fleet",
    "validate_instance",
]

LB_ID_RE = re.compile(r"^lb-[a-z0-9]{4,64}$")
GROUP_ID_RE = re.compile(r"^rsp-[a-z0-9]{4,64}$")
IPV4_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")

INSTANCE_STATUSES = ("Pending", "Running", "Starting", "Stopping", "Stopped")
SPOT_STRATEGIES = ("NoSpot", "SpotWithPriceLimit", "SpotAsPriceGo")
SPOT_BEHAVIORS = ("Terminate", "Stop")
STOPPED_MODES = ("KeepCharging", "StopCharging", "Not-applicable")
CHARGE_TYPES = ("PostPaid", "PrePaid")
LOCK_REASONS = (
    "financial", "security", "recycling", "Recycling", "dedicatedhostfinancial", "refunded",
)
IDENTITY_TYPES = ("ram-user", "root-account", "assumed-role")
SERVER_TYPES = ("Master", "Slave")
LISTENER_PROTOCOLS = ("http", "https", "tcp", "udp")

# Used when the fleet has no ``credentials`` key (documented in the module and README of tests).
DEFAULT_CREDENTIAL = {
    "access_key_id": "LTAIemulatorDefaultKey",
    "access_key_secret": "emulator-default-secret",
}


class FleetError(ValueError):
    """A fleet document is invalid; the message starts with the path of the bad entry."""


@dataclass(frozen=True)
class Credential:
    """An access key the emulator accepts, and who ActionTrail says used it."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    user_name: str | None = None  # default: the access key id
    identity_type: str = "ram-user"  # assumed-role when a security token is set

    def as_dict(self) -> dict[str, str]:
        """The keys a test passes to ``Config`` (security_token only when set)."""
        out = {"access_key_id": self.access_key_id, "access_key_secret": self.access_key_secret}
        if self.security_token is not None:
            out["security_token"] = self.security_token
        return out

    def environment(self) -> dict[str, str]:
        """The ``ALIBABA_CLOUD_*`` variables a function signs with (FC sets the same names)."""
        env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": self.access_key_id,
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": self.access_key_secret}
        if self.security_token is not None:
            env["ALIBABA_CLOUD_SECURITY_TOKEN"] = self.security_token
        return env


@dataclass(frozen=True)
class InstanceSpec:
    """One ECS instance as the fleet file declares it."""

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
    tags: tuple[tuple[str, str], ...]
    lock_reasons: tuple[str, ...]
    private_ip: str
    public_ip: str | None
    vpc_id: str
    creation_time: str
    expired_time: str
    auto_release_time: str


@dataclass(frozen=True)
class ServerSpec:
    """A backend server of a server group."""

    server_id: str
    weight: int = 100
    port: int | None = None  # None in the default group (it uses the listener port)
    server_type: str | None = None  # master-slave groups only
    description: str = ""


@dataclass(frozen=True)
class GroupSpec:
    """A vServer group or a master-slave server group."""

    id: str
    name: str
    servers: tuple[ServerSpec, ...]


@dataclass(frozen=True)
class ListenerSpec:
    """A CLB listener (only used by DescribeHealthStatus)."""

    port: int
    protocol: str = "http"
    vserver_group_id: str | None = None


@dataclass(frozen=True)
class LoadBalancerSpec:
    """A CLB instance with its server groups."""

    id: str
    name: str
    tags: tuple[tuple[str, str], ...]
    address: str
    default_servers: tuple[ServerSpec, ...]
    vserver_groups: tuple[GroupSpec, ...]
    master_slave_groups: tuple[GroupSpec, ...]
    listeners: tuple[ListenerSpec, ...]


@dataclass(frozen=True)
class TrailSpec:
    """ActionTrail realism (tools/emulator/trail.py): seconds before a record is visible,
    seconds its eventTime is stamped off the call's time, LookupEvents calls/s (None: no
    limit)."""

    lag_s: float = 0.0
    skew_s: float = 0.0
    qps: float | None = None


@dataclass(frozen=True)
class LbMemberSpec:
    """A backend server of an ALB / NLB server group."""

    server_id: str
    server_type: str = "Ecs"  # Ecs | Eni | Eci | Ip
    port: int = 0  # 0: NLB multi-port (AnyPort) groups only
    weight: int = 100
    server_ip: str | None = None  # None: the instance's private IP (Ecs), the id (Ip)
    description: str = ""


@dataclass(frozen=True)
class LbGroupSpec:
    """An ALB / NLB server group: drain settings, tags (ACK marks its groups), members."""

    id: str
    name: str
    type: str  # Instance | Ip
    protocol: str
    tags: tuple[tuple[str, str], ...]
    drain_enabled: bool
    drain_timeout_s: int
    members: tuple[LbMemberSpec, ...]


@dataclass(frozen=True)
class NetLbSpec:
    """An ALB or NLB instance with the server groups attached to it."""

    id: str
    name: str
    tags: tuple[tuple[str, str], ...]
    vpc_id: str
    server_groups: tuple[LbGroupSpec, ...]
    edition: str = "Standard"  # ALB: Basic | Standard | StandardWithWaf; NLB: ""


@dataclass(frozen=True)
class Fleet:
    """The validated fleet document."""

    region: str = "cn-hangzhou"
    account_id: str = "1234567890123456"
    credentials: tuple[Credential, ...] = (Credential(**DEFAULT_CREDENTIAL),)
    instances: tuple[InstanceSpec, ...] = ()
    load_balancers: tuple[LoadBalancerSpec, ...] = field(default=())
    actiontrail: TrailSpec = TrailSpec()
    albs: tuple[NetLbSpec, ...] = ()
    nlbs: tuple[NetLbSpec, ...] = ()

    @classmethod
    def from_dict(cls, doc: Any) -> Fleet:
        """Validate a fleet document (as loaded from YAML) and build the fleet."""
        return _parse_fleet(doc)


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a YAML fleet file."""
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FleetError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return Fleet.from_dict(doc)
    except FleetError as exc:
        raise FleetError(f"{path}: {exc}") from exc


# --- validation helpers ----------------------------------------------------------------------

Checker = Callable[[Any, str], Any]


def _fail(path: str, message: str) -> FleetError:
    return FleetError(f"{path}: {message}")


def _object(value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
            ) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path or "<root>", f"expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise _fail(_join(path, str(key)), f"unknown key (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            raise _fail(_join(path, key), "is required")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _string(value: Any, path: str, pattern: re.Pattern[str] | None = None,
            max_len: int = 256) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"{value!r} is not a string")
    if len(value) > max_len:
        raise _fail(path, f"longer than {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise _fail(path, f"{value!r} does not match {pattern.pattern}")
    return value


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(path, f"{value!r} is not one of {list(choices)}")
    return str(value)


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"{value!r} is not an integer")
    if not lo <= value <= hi:
        raise _fail(path, f"{value} is not within {lo}..{hi}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {type(value).__name__}")
    return value


def _ip(value: Any, path: str) -> str:
    text = _string(value, path)
    match = IPV4_RE.match(text)
    if match is None or any(int(part) > 255 for part in match.groups()):
        raise _fail(path, f"{value!r} is not an IPv4 address")
    return text


def _tags(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected a mapping of tag key to value, got {type(value).__name__}")
    if len(value) > 20:
        raise _fail(path, "more than 20 tags")
    out = []
    for key, tag_value in value.items():
        key_path = f"{path}.{key}"
        if not isinstance(key, str) or not key:
            raise _fail(key_path, "tag keys must be non-empty strings")
        if not isinstance(tag_value, str):
            raise _fail(key_path, f"{tag_value!r} is not a string (quote it in YAML)")
        out.append((key, tag_value))
    return tuple(out)


# --- the document ----------------------------------------------------------------------------

FLEET_KEYS = ("region", "account_id", "credentials", "instances", "load_balancers", "actiontrail",
              "albs", "nlbs")
TRAIL_KEYS = ("lag_s", "skew_s", "qps")
CREDENTIAL_KEYS = (
    "access_key_id", "access_key_secret", "security_token", "user_name", "identity_type",
)
INSTANCE_KEYS = (
    "id", "name", "status", "instance_type", "zone", "spot_strategy",
    "spot_interruption_behavior", "stopped_mode", "charge_type", "image_id", "tags",
    "lock_reasons", "private_ip", "public_ip", "vpc_id", "creation_time", "expired_time",
    "auto_release_time",
)
LB_KEYS = (
    "id", "name", "tags", "address", "default_servers", "vserver_groups",
    "master_slave_groups", "listeners",
)


def _parse_fleet(doc: Any) -> Fleet:
    if doc is None:
        doc = {}
    data = _object(doc, "", FLEET_KEYS)
    region = _string(data.get("region", "cn-hangzhou"), "region", REGION_RE)
    account = data.get("account_id", "1234567890123456")
    if isinstance(account, int) and not isinstance(account, bool):
        raise _fail("account_id", "must be a string (quote it in YAML, ids are not numbers)")
    account_id = _string(account, "account_id", ACCOUNT_RE)

    if "credentials" in data:
        raw_creds = _list(data["credentials"], "credentials")
        if not raw_creds:
            raise _fail("credentials", "must hold at least one credential")
        credentials = tuple(
            _credential(item, f"credentials[{n}]") for n, item in enumerate(raw_creds)
        )
    else:
        credentials = (Credential(**DEFAULT_CREDENTIAL),)
    seen_keys: set[str] = set()
    for n, cred in enumerate(credentials):
        if cred.access_key_id in seen_keys:
            raise _fail(f"credentials[{n}].access_key_id", f"duplicate {cred.access_key_id!r}")
        seen_keys.add(cred.access_key_id)

    instances = []
    seen_ids: set[str] = set()
    for n, item in enumerate(_list(data.get("instances", []), "instances")):
        spec = validate_instance(item, f"instances[{n}]", region)
        if spec.id in seen_ids:
            raise _fail(f"instances[{n}].id", f"duplicate instance id {spec.id!r}")
        seen_ids.add(spec.id)
        instances.append(spec)

    lbs = []
    seen_lbs: set[str] = set()
    seen_groups: set[str] = set()
    for n, item in enumerate(_list(data.get("load_balancers", []), "load_balancers")):
        lb = _load_balancer(item, f"load_balancers[{n}]", seen_groups)
        if lb.id in seen_lbs:
            raise _fail(f"load_balancers[{n}].id", f"duplicate load balancer id {lb.id!r}")
        seen_lbs.add(lb.id)
        lbs.append(lb)
    trail = _trail(data.get("actiontrail", {}), "actiontrail")
    albs, nlbs = _net_lbs(data)
    return Fleet(region, account_id, credentials, tuple(instances), tuple(lbs), trail, albs, nlbs)


def _seconds(value: Any, path: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, f"{value!r} is not a number")
    if not lo <= value <= hi:
        raise _fail(path, f"{value} is not within {lo:g}..{hi:g}")
    return float(value)


def _trail(value: Any, path: str) -> TrailSpec:
    data = _object(value, path, TRAIL_KEYS)
    qps = data.get("qps")
    return TrailSpec(
        lag_s=_seconds(data.get("lag_s", 0), f"{path}.lag_s", 0, 86400),
        skew_s=_seconds(data.get("skew_s", 0), f"{path}.skew_s", -3600, 3600),
        qps=None if qps is None else _seconds(qps, f"{path}.qps", 0.01, 10000),
    )


def _credential(value: Any, path: str) -> Credential:
    data = _object(value, path, CREDENTIAL_KEYS, ("access_key_id", "access_key_secret"))
    token = data.get("security_token")
    identity_default = "assumed-role" if token is not None else "ram-user"
    user = data.get("user_name")
    return Credential(
        access_key_id=_string(data["access_key_id"], f"{path}.access_key_id",
                              re.compile(r"^[A-Za-z0-9.]{3,128}$")),
        access_key_secret=_string(data["access_key_secret"], f"{path}.access_key_secret",
                                  re.compile(r"^\S{1,256}$")),
        security_token=None if token is None else _string(
            token, f"{path}.security_token", re.compile(r"^\S{1,4096}$"), 4096),
        user_name=None if user is None else _string(user, f"{path}.user_name"),
        identity_type=_choice(data.get("identity_type", identity_default),
                              f"{path}.identity_type", IDENTITY_TYPES),
    )


def validate_instance(value: Any, path: str, region: str) -> InstanceSpec:
    """Validate one instance entry (fleet file or ``create_instance``) with its defaults."""
    data = _object(value, path, INSTANCE_KEYS, ("id",))
    iid = _string(data["id"], f"{path}.id", INSTANCE_ID_RE)
    locks = tuple(
        _choice(reason, f"{path}.lock_reasons[{n}]", LOCK_REASONS)
        for n, reason in enumerate(_list(data.get("lock_reasons", []), f"{path}.lock_reasons"))
    )
    public_ip = data.get("public_ip")
    return InstanceSpec(
        id=iid,
        name=_string(data.get("name", iid), f"{path}.name", max_len=128),
        status=_choice(data.get("status", "Running"), f"{path}.status", INSTANCE_STATUSES),
        instance_type=_string(data.get("instance_type", "ecs.g7.large"), f"{path}.instance_type",
                              re.compile(r"^ecs\.[a-z0-9-]+\.[a-z0-9]+$")),
        zone=_string(data.get("zone", f"{region}-h"), f"{path}.zone", REGION_RE),
        spot_strategy=_choice(data.get("spot_strategy", "NoSpot"), f"{path}.spot_strategy",
                              SPOT_STRATEGIES),
        spot_interruption_behavior=_choice(
            data.get("spot_interruption_behavior", "Terminate"),
            f"{path}.spot_interruption_behavior", SPOT_BEHAVIORS),
        stopped_mode=_choice(data.get("stopped_mode", "Not-applicable"), f"{path}.stopped_mode",
                             STOPPED_MODES),
        charge_type=_choice(data.get("charge_type", "PostPaid"), f"{path}.charge_type",
                            CHARGE_TYPES),
        image_id=_string(data.get("image_id", "aliyun_3_x64_20G_alibase_20240819.vhd"),
                         f"{path}.image_id"),
        tags=_tags(data.get("tags", {}), f"{path}.tags"),
        lock_reasons=locks,
        private_ip=_ip(data.get("private_ip", "10.0.0.1"), f"{path}.private_ip"),
        public_ip=None if public_ip is None else _ip(public_ip, f"{path}.public_ip"),
        vpc_id=_string(data.get("vpc_id", "vpc-bp1emulator0000000001"), f"{path}.vpc_id",
                       re.compile(r"^vpc-[a-z0-9]{4,64}$")),
        creation_time=_string(data.get("creation_time", "2026-11-20T08:00Z"),
                              f"{path}.creation_time",
                              re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z$")),
        expired_time=_string(data.get("expired_time", "2099-12-31T15:59Z"),
                             f"{path}.expired_time",
                             re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z$")),
        auto_release_time=_string(data.get("auto_release_time", ""), f"{path}.auto_release_time",
                                  re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z)?$")),
    )


def _server(value: Any, path: str, kind: str) -> ServerSpec:
    if kind == "default":
        allowed: tuple[str, ...] = ("server_id", "weight", "description")
        required: tuple[str, ...] = ("server_id",)
    elif kind == "vserver":
        allowed = ("server_id", "port", "weight", "description")
        required = ("server_id", "port")
    else:
        allowed = ("server_id", "port", "weight", "server_type", "description")
        required = ("server_id", "port", "server_type")
    data = _object(value, path, allowed, required)
    return ServerSpec(
        server_id=_string(data["server_id"], f"{path}.server_id", INSTANCE_ID_RE),
        weight=_int(data.get("weight", 100), f"{path}.weight", 0, 100),
        port=_int(data["port"], f"{path}.port", 1, 65535) if "port" in data else None,
        server_type=(_choice(data["server_type"], f"{path}.server_type", SERVER_TYPES)
                     if "server_type" in data else None),
        description=_string(data.get("description", ""), f"{path}.description"),
    )


def _group(value: Any, path: str, kind: str, seen_groups: set[str]) -> GroupSpec:
    data = _object(value, path, ("id", "name", "servers"), ("id",))
    gid = _string(data["id"], f"{path}.id", GROUP_ID_RE)
    if gid in seen_groups:
        raise _fail(f"{path}.id", f"duplicate server group id {gid!r}")
    seen_groups.add(gid)
    servers = tuple(
        _server(item, f"{path}.servers[{n}]", kind)
        for n, item in enumerate(_list(data.get("servers", []), f"{path}.servers"))
    )
    seen: set[tuple[str, int | None]] = set()
    for n, server in enumerate(servers):
        key = (server.server_id, server.port)
        if key in seen:
            raise _fail(f"{path}.servers[{n}]", f"duplicate member {server.server_id}:{server.port}")
        seen.add(key)
    return GroupSpec(gid, _string(data.get("name", gid), f"{path}.name"), servers)


def _load_balancer(value: Any, path: str, seen_groups: set[str]) -> LoadBalancerSpec:
    data = _object(value, path, LB_KEYS, ("id",))
    lb_id = _string(data["id"], f"{path}.id", LB_ID_RE)
    default = tuple(
        _server(item, f"{path}.default_servers[{n}]", "default")
        for n, item in enumerate(_list(data.get("default_servers", []), f"{path}.default_servers"))
    )
    seen_default: set[str] = set()
    for n, server in enumerate(default):
        if server.server_id in seen_default:
            raise _fail(f"{path}.default_servers[{n}]", f"duplicate member {server.server_id}")
        seen_default.add(server.server_id)
    vgroups = tuple(
        _group(item, f"{path}.vserver_groups[{n}]", "vserver", seen_groups)
        for n, item in enumerate(_list(data.get("vserver_groups", []), f"{path}.vserver_groups"))
    )
    msgroups = tuple(
        _group(item, f"{path}.master_slave_groups[{n}]", "master_slave", seen_groups)
        for n, item in enumerate(
            _list(data.get("master_slave_groups", []), f"{path}.master_slave_groups"))
    )
    group_ids = {g.id for g in vgroups}
    listeners = []
    for n, item in enumerate(_list(data.get("listeners", []), f"{path}.listeners")):
        lpath = f"{path}.listeners[{n}]"
        ldata = _object(item, lpath, ("port", "protocol", "vserver_group_id"), ("port",))
        vgid = ldata.get("vserver_group_id")
        if vgid is not None and vgid not in group_ids:
            raise _fail(f"{lpath}.vserver_group_id",
                        f"{vgid!r} is not a vServer group of this load balancer")
        listeners.append(ListenerSpec(
            port=_int(ldata["port"], f"{lpath}.port", 1, 65535),
            protocol=_choice(ldata.get("protocol", "http"), f"{lpath}.protocol",
                             LISTENER_PROTOCOLS),
            vserver_group_id=vgid,
        ))
    return LoadBalancerSpec(
        id=lb_id,
        name=_string(data.get("name", lb_id), f"{path}.name"),
        tags=_tags(data.get("tags", {}), f"{path}.tags"),
        address=_ip(data.get("address", "47.96.0.1"), f"{path}.address"),
        default_servers=default,
        vserver_groups=vgroups,
        master_slave_groups=msgroups,
        listeners=tuple(listeners),
    )


# --- ALB / NLB (albs: / nlbs:) -----------------------------------------------------------------

NET_LB_KEYS = {"albs": ("id", "name", "tags", "vpc_id", "edition", "server_groups"),
               "nlbs": ("id", "name", "tags", "vpc_id", "server_groups")}
ALB_EDITIONS = ("Basic", "Standard", "StandardWithWaf")
LB_GROUP_KEYS = ("id", "name", "type", "protocol", "tags", "connection_drain", "members")
LB_MEMBER_KEYS = ("server_id", "server_type", "server_ip", "port", "weight", "description")
NET_LB_ID_RE = {"albs": re.compile(r"^alb-[a-z0-9]{4,64}$"),
                "nlbs": re.compile(r"^nlb-[a-z0-9]{4,64}$")}
SERVER_GROUP_ID_RE = re.compile(r"^sgp-[a-z0-9]{4,64}$")
LB_GROUP_TYPES = ("Instance", "Ip")
LB_SERVER_TYPES = {"Instance": ("Ecs", "Eni", "Eci"), "Ip": ("Ip",)}
LB_PROTOCOLS = {"albs": ("HTTP", "HTTPS", "gRPC"), "nlbs": ("TCP", "UDP", "TCPSSL")}
# Connection drain timeout, seconds: ALB 0..900, NLB 10..900 (reference §1.5, §2.5).
DRAIN_TIMEOUTS = {"albs": (0, 900), "nlbs": (10, 900)}
ENI_ID_RE = re.compile(r"^eni-[a-z0-9]{4,64}$")
ECI_ID_RE = re.compile(r"^eci-[a-z0-9]{4,64}$")
VPC_ID_RE = re.compile(r"^vpc-[a-z0-9]{4,64}$")


def _net_lbs(data: Mapping[str, Any]) -> tuple[tuple[NetLbSpec, ...], tuple[NetLbSpec, ...]]:
    """``albs:`` and ``nlbs:``; server group ids are unique across both."""
    seen_groups: set[str] = set()
    out: dict[str, tuple[NetLbSpec, ...]] = {}
    for key in ("albs", "nlbs"):
        lbs = []
        seen: set[str] = set()
        for n, item in enumerate(_list(data.get(key, []), key)):
            lb = _net_lb(item, f"{key}[{n}]", key, seen_groups)
            if lb.id in seen:
                raise _fail(f"{key}[{n}].id", f"duplicate load balancer id {lb.id!r}")
            seen.add(lb.id)
            lbs.append(lb)
        out[key] = tuple(lbs)
    return out["albs"], out["nlbs"]


def _net_lb(value: Any, path: str, kind: str, seen_groups: set[str]) -> NetLbSpec:
    data = _object(value, path, NET_LB_KEYS[kind], ("id",))
    lb_id = _string(data["id"], f"{path}.id", NET_LB_ID_RE[kind])
    edition = (_choice(data.get("edition", "Standard"), f"{path}.edition", ALB_EDITIONS)
               if kind == "albs" else "")
    groups = tuple(
        _lb_group(item, f"{path}.server_groups[{n}]", kind, seen_groups)
        for n, item in enumerate(_list(data.get("server_groups", []), f"{path}.server_groups"))
    )
    if edition == "Basic":
        for n, group in enumerate(groups):
            if group.drain_enabled:
                raise _fail(f"{path}.server_groups[{n}].connection_drain.enabled",
                            "a Basic Edition ALB does not support connection draining")
    return NetLbSpec(
        id=lb_id, name=_string(data.get("name", lb_id), f"{path}.name"),
        tags=_tags(data.get("tags", {}), f"{path}.tags"),
        vpc_id=_string(data.get("vpc_id", "vpc-bp1emulator0000000001"), f"{path}.vpc_id",
                       VPC_ID_RE),
        server_groups=groups, edition=edition,
    )


def _lb_group(value: Any, path: str, kind: str, seen_groups: set[str]) -> LbGroupSpec:
    data = _object(value, path, LB_GROUP_KEYS, ("id",))
    gid = _string(data["id"], f"{path}.id", SERVER_GROUP_ID_RE)
    if gid in seen_groups:
        raise _fail(f"{path}.id", f"duplicate server group id {gid!r}")
    seen_groups.add(gid)
    group_type = _choice(data.get("type", "Instance"), f"{path}.type", LB_GROUP_TYPES)
    protocols = LB_PROTOCOLS[kind]
    drain = _object(data.get("connection_drain", {}), f"{path}.connection_drain",
                    ("enabled", "timeout_s"))
    enabled = drain.get("enabled", False)
    if not isinstance(enabled, bool):
        raise _fail(f"{path}.connection_drain.enabled", f"{enabled!r} is not a boolean")
    lo, hi = DRAIN_TIMEOUTS[kind]
    timeout = _int(drain.get("timeout_s", 300), f"{path}.connection_drain.timeout_s", lo, hi)
    members = tuple(
        _lb_member(item, f"{path}.members[{n}]", kind, group_type)
        for n, item in enumerate(_list(data.get("members", []), f"{path}.members"))
    )
    seen: set[tuple[str, str | None, int]] = set()
    for n, member in enumerate(members):
        key = (member.server_id, member.server_ip, member.port)
        if key in seen:
            raise _fail(f"{path}.members[{n}]",
                        f"duplicate member {member.server_id}:{member.port}")
        seen.add(key)
    return LbGroupSpec(
        id=gid, name=_string(data.get("name", gid), f"{path}.name"), type=group_type,
        protocol=_choice(data.get("protocol", protocols[0]), f"{path}.protocol", protocols),
        tags=_tags(data.get("tags", {}), f"{path}.tags"), drain_enabled=enabled,
        drain_timeout_s=timeout, members=members,
    )


def _lb_member(value: Any, path: str, kind: str, group_type: str) -> LbMemberSpec:
    data = _object(value, path, LB_MEMBER_KEYS, ("server_id",) if kind == "nlbs"
                   else ("server_id", "port"))
    server_type = _choice(data.get("server_type", LB_SERVER_TYPES[group_type][0]),
                          f"{path}.server_type", LB_SERVER_TYPES[group_type])
    pattern = {"Ecs": INSTANCE_ID_RE, "Eni": ENI_ID_RE, "Eci": ECI_ID_RE}.get(server_type)
    sid_path = f"{path}.server_id"
    server_id = _ip(data["server_id"], sid_path) if pattern is None else _string(
        data["server_id"], sid_path, pattern)
    server_ip = data.get("server_ip")
    if server_ip is not None:
        server_ip = _ip(server_ip, f"{path}.server_ip")
    elif server_type == "Eni":
        raise _fail(f"{path}.server_ip", "is required for an Eni member")
    return LbMemberSpec(
        server_id=server_id, server_type=server_type,
        port=_int(data.get("port", 0), f"{path}.port", 0 if kind == "nlbs" else 1, 65535),
        weight=_int(data.get("weight", 100), f"{path}.weight", 0, 100),
        server_ip=server_ip,
        description=_string(data.get("description", ""), f"{path}.description"),
    )
