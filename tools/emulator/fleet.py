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
         auto_release_time: "",
         enis: [{id: eni-..., private_ip: 10.0.0.11}, {id: eni-..., private_ip: 10.0.0.12}]}
                                      # enis: its network interfaces, the primary one first
                                      # (its private_ip: the instance's); default one primary
                                      # ENI, eni-<the instance id without "i-">
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
        listeners: [{port: 80, protocol: http, vserver_group_id: rsp-...,
                     health_check: true}]   # optional; health_check false: "unavailable"
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

    provisioning:                     # optional: what RunInstances and its neighbours see
      boot_s: 0.05                    # Pending -> Starting -> Running, half each (default: the
                                      # emulator's start delay)
      healthy_after_s: 0              # CLB health checks pass this long after an instance is
                                      # Running; "never": they never pass (default 0)
      vswitches: [{id: vsw-..., zone: cn-hangzhou-h, vpc_id: vpc-..., cidr_prefix: "10.0.1"}]
      security_groups: [sg-...]
      images: [aliyun_3_x64_20G_alibase_20240819.vhd]   # default: the instances' images
      ram_roles: [web-role]
      instance_types: [{type: ecs.g7.large, cores: 2, memory: 8}]
      stock: [{instance_type: ecs.g7.large, zone: cn-hangzhou-h, spot_strategy: SpotAsPriceGo,
               count: 0, answer: OperationDenied.NoStock}]   # absent: unlimited
      instances: {i-...: {vswitch_id: vsw-..., security_group_ids: [sg-...], ram_role_name: r,
                          user_data: <base64>, key_pair_name: k, launch_template_id: lt-...,
                          launch_template_version: 1}}
      launch_templates: [{id: lt-..., name: web, versions: [{number: 1, default: true,
                           data: {instance_type: ..., image_id: ..., vswitch_id: ...,
                                  security_group_ids: [...], ram_role_name: ..., user_data: ...,
                                  spot_strategy: SpotAsPriceGo, tags: {k: v}}}]}]

ALB/NLB server group ids are unique across both products; a member is keyed by
``(server_id, server_ip, port)``; ``server_type`` is ``Ecs`` | ``Eni`` | ``Eci`` (Instance
groups, ``server_id`` the resource id, ``server_ip`` required for ``Eni``) or ``Ip`` (Ip groups,
``server_id`` the address).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from shared.events import ACCOUNT_RE, INSTANCE_ID_RE, REGION_RE  # one rule for ids

__all__ = [
    "DEFAULT_CREDENTIAL",
    "Credential",
    "EniSpec",
    "Fleet",
    "FleetError",
    "GroupSpec",
    "InstanceSpec",
    "LbGroupSpec",
    "LbMemberSpec",
    "ListenerSpec",
    "LoadBalancerSpec",
    "NetLbSpec",
    "ProvisioningSpec",
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
class EniSpec:
    """An elastic network interface of an instance (DescribeInstances NetworkInterfaces)."""

    id: str
    private_ip: str


def primary_eni_id(instance_id: str) -> str:
    """The primary ENI of an instance whose fleet entry names none: ``eni-`` + the id's tail."""
    return "eni-" + instance_id.removeprefix("i-")


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
    enis: tuple[EniSpec, ...] = ()  # the primary one first; () when the entry names none


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
    """A CLB listener (only used by DescribeHealthStatus); without a health check its members
    are ``unavailable`` (the API reference: no health check, no health status)."""

    port: int
    protocol: str = "http"
    vserver_group_id: str | None = None
    health_check: bool = True


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
    # A lambda: ProvisioningSpec is defined further down, with the rest of its section.
    provisioning: ProvisioningSpec = field(default_factory=lambda: ProvisioningSpec())  # noqa: PLW0108

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


T = TypeVar("T")


def _each(data: Mapping[str, Any], key: str, path: str, parse: Callable[[Any, str], T]
          ) -> tuple[T, ...]:
    """The list ``data[key]`` (absent: empty), each item parsed at its own path."""
    return tuple(parse(item, f"{path}.{key}[{n}]")
                 for n, item in enumerate(_list(data.get(key, []), f"{path}.{key}")))


def _new_group_id(value: Any, path: str, pattern: re.Pattern[str], seen_groups: set[str]) -> str:
    """A server group id, unique across the fleet (``seen_groups`` takes it)."""
    gid = _string(value, path, pattern)
    if gid in seen_groups:
        raise _fail(path, f"duplicate server group id {gid!r}")
    seen_groups.add(gid)
    return gid


def _no_duplicate_member(path: str, members: Sequence[T], key: Callable[[T], Hashable],
                         label: Callable[[T], str]) -> None:
    """Two members of one group with the same ``key`` are refused at the second one."""
    seen: set[Hashable] = set()
    for n, member in enumerate(members):
        if key(member) in seen:
            raise _fail(f"{path}[{n}]", f"duplicate member {label(member)}")
        seen.add(key(member))


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
              "albs", "nlbs", "provisioning")
TRAIL_KEYS = ("lag_s", "skew_s", "qps")
CREDENTIAL_KEYS = (
    "access_key_id", "access_key_secret", "security_token", "user_name", "identity_type",
)
INSTANCE_KEYS = (
    "id", "name", "status", "instance_type", "zone", "spot_strategy",
    "spot_interruption_behavior", "stopped_mode", "charge_type", "image_id", "tags",
    "lock_reasons", "private_ip", "public_ip", "vpc_id", "creation_time", "expired_time",
    "auto_release_time", "enis",
)
ENI_KEYS = ("id", "private_ip")
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
    seen_enis: set[str] = set()
    for n, item in enumerate(_list(data.get("instances", []), "instances")):
        spec = validate_instance(item, f"instances[{n}]", region)
        if spec.id in seen_ids:
            raise _fail(f"instances[{n}].id", f"duplicate instance id {spec.id!r}")
        seen_ids.add(spec.id)
        for k, eni in enumerate(spec.enis or (EniSpec(primary_eni_id(spec.id), ""),)):
            if eni.id in seen_enis:
                raise _fail(f"instances[{n}].enis[{k}].id", f"duplicate ENI id {eni.id!r}")
            seen_enis.add(eni.id)
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
    provisioning = _provisioning(data.get("provisioning", {}), "provisioning", region,
                                 tuple(instances))
    return Fleet(region, account_id, credentials, tuple(instances), tuple(lbs), trail, albs, nlbs,
                 provisioning=provisioning)


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
    private_ip = _ip(data.get("private_ip", "10.0.0.1"), f"{path}.private_ip")
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
        private_ip=private_ip,
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
        enis=_enis(data, path, private_ip),
    )


def _enis(data: Mapping[str, Any], path: str, private_ip: str) -> tuple[EniSpec, ...]:
    """``enis``: the primary one first, its private_ip the instance's (by default); each other
    one with its own."""
    if "enis" not in data:
        return ()
    items = _list(data["enis"], f"{path}.enis")
    if not items:
        raise _fail(f"{path}.enis", "names no ENI (leave it out for the default primary one)")
    out: list[EniSpec] = []
    for n, item in enumerate(items):
        at = f"{path}.enis[{n}]"
        entry = _object(item, at, ENI_KEYS, ("id",) if n == 0 else ("id", "private_ip"))
        ip = _ip(entry.get("private_ip", private_ip), f"{at}.private_ip")
        if n == 0 and ip != private_ip:
            raise _fail(f"{at}.private_ip", f"the primary ENI has the instance's {private_ip}")
        eni = EniSpec(_string(entry["id"], f"{at}.id", ENI_ID_RE), ip)
        if any(e.id == eni.id for e in out):
            raise _fail(f"{at}.id", f"duplicate ENI id {eni.id!r}")
        out.append(eni)
    return tuple(out)


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
    gid = _new_group_id(data["id"], f"{path}.id", GROUP_ID_RE, seen_groups)
    servers = _each(data, "servers", path, lambda item, at: _server(item, at, kind))
    _no_duplicate_member(f"{path}.servers", servers, lambda s: (s.server_id, s.port),
                         lambda s: f"{s.server_id}:{s.port}")
    return GroupSpec(gid, _string(data.get("name", gid), f"{path}.name"), servers)


def _load_balancer(value: Any, path: str, seen_groups: set[str]) -> LoadBalancerSpec:
    data = _object(value, path, LB_KEYS, ("id",))
    lb_id = _string(data["id"], f"{path}.id", LB_ID_RE)
    default = _each(data, "default_servers", path, lambda item, at: _server(item, at, "default"))
    _no_duplicate_member(f"{path}.default_servers", default, lambda s: s.server_id,
                         lambda s: s.server_id)
    vgroups = _each(data, "vserver_groups", path,
                    lambda item, at: _group(item, at, "vserver", seen_groups))
    msgroups = _each(data, "master_slave_groups", path,
                     lambda item, at: _group(item, at, "master_slave", seen_groups))
    group_ids = {g.id for g in vgroups}
    listeners = []
    for n, item in enumerate(_list(data.get("listeners", []), f"{path}.listeners")):
        lpath = f"{path}.listeners[{n}]"
        ldata = _object(item, lpath, ("port", "protocol", "vserver_group_id", "health_check"),
                        ("port",))
        vgid = ldata.get("vserver_group_id")
        checked = ldata.get("health_check", True)
        if not isinstance(checked, bool):
            raise _fail(f"{lpath}.health_check", f"{checked!r} is not a boolean")
        if vgid is not None and vgid not in group_ids:
            raise _fail(f"{lpath}.vserver_group_id",
                        f"{vgid!r} is not a vServer group of this load balancer")
        listeners.append(ListenerSpec(
            port=_int(ldata["port"], f"{lpath}.port", 1, 65535),
            protocol=_choice(ldata.get("protocol", "http"), f"{lpath}.protocol",
                             LISTENER_PROTOCOLS),
            vserver_group_id=vgid,
            health_check=checked,
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
    groups = _each(data, "server_groups", path,
                   lambda item, at: _lb_group(item, at, kind, seen_groups))
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
    gid = _new_group_id(data["id"], f"{path}.id", SERVER_GROUP_ID_RE, seen_groups)
    group_type = _choice(data.get("type", "Instance"), f"{path}.type", LB_GROUP_TYPES)
    protocols = LB_PROTOCOLS[kind]
    drain = _object(data.get("connection_drain", {}), f"{path}.connection_drain",
                    ("enabled", "timeout_s"))
    enabled = drain.get("enabled", False)
    if not isinstance(enabled, bool):
        raise _fail(f"{path}.connection_drain.enabled", f"{enabled!r} is not a boolean")
    lo, hi = DRAIN_TIMEOUTS[kind]
    timeout = _int(drain.get("timeout_s", 300), f"{path}.connection_drain.timeout_s", lo, hi)
    members = _each(data, "members", path,
                    lambda item, at: _lb_member(item, at, kind, group_type))
    _no_duplicate_member(f"{path}.members", members, lambda m: (m.server_id, m.server_ip, m.port),
                         lambda m: f"{m.server_id}:{m.port}")
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


# --- provisioning: what RunInstances and its neighbours see (issue 14) -------------------------

VSWITCH_ID_RE = re.compile(r"^vsw-[a-z0-9]{4,64}$")
SECURITY_GROUP_RE = re.compile(r"^sg-[a-z0-9]{4,64}$")
TEMPLATE_ID_RE = re.compile(r"^lt-[a-z0-9]{4,64}$")
INSTANCE_TYPE_RE = re.compile(r"^ecs\.[a-z0-9-]+\.[a-z0-9]+$")
ROLE_RE = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
# What RunInstances answers for an offering that ran out (api-meta RunInstances errorCodes; the
# reference's §4.2 "No-stock / capacity errors").
STOCK_ANSWERS = ("OperationDenied.NoStock", "Zone.NotOnSale", "InvalidResourceType.NotSupported",
                 "InstanceType.Offline")
USER_DATA_MAX = 32 * 1024 * 4 // 3 + 4  # 32 KB before Base64 encoding
PROVISIONING_KEYS = ("boot_s", "healthy_after_s", "vswitches", "security_groups", "images", "ram_roles",
                     "instance_types", "stock", "instances", "launch_templates")
LAUNCH_KEYS = ("vswitch_id", "security_group_ids", "ram_role_name", "user_data", "key_pair_name",
               "launch_template_id", "launch_template_version")
TEMPLATE_DATA_KEYS = ("instance_type", "image_id", "vswitch_id", "security_group_ids",
                      "ram_role_name", "user_data", "key_pair_name", "spot_strategy",
                      "spot_price_limit", "instance_name", "tags")


@dataclass(frozen=True)
class VSwitchSpec:
    id: str
    zone: str
    vpc_id: str
    cidr_prefix: str  # the first three octets of its addresses


@dataclass(frozen=True)
class InstanceTypeSpec:
    type: str
    cores: int
    memory: int  # GiB

    @property
    def family(self) -> str:
        return self.type.rsplit(".", 1)[0]


@dataclass(frozen=True)
class StockSpec:
    """How many more instances of one offering RunInstances creates, then what it answers."""

    instance_type: str
    zone: str
    spot_strategy: str
    count: int
    answer: str = "OperationDenied.NoStock"


@dataclass(frozen=True)
class LaunchAttributes:
    """What DescribeInstances does not show of an instance (or what a template version holds)."""

    vswitch_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    ram_role_name: str | None = None
    user_data: str | None = None
    key_pair_name: str | None = None
    launch_template_id: str | None = None
    launch_template_version: int | None = None
    instance_type: str | None = None
    image_id: str | None = None
    spot_strategy: str | None = None
    spot_price_limit: float | None = None
    instance_name: str | None = None
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TemplateVersionSpec:
    number: int
    default: bool
    data: LaunchAttributes


@dataclass(frozen=True)
class LaunchTemplateSpec:
    id: str
    name: str
    versions: tuple[TemplateVersionSpec, ...]


@dataclass(frozen=True)
class ProvisioningSpec:
    boot_s: float | None = None
    # Seconds after Running before CLB reports an instance ``normal``; None: never.
    healthy_after_s: float | None = 0.0
    vswitches: tuple[VSwitchSpec, ...] = ()
    security_groups: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    ram_roles: tuple[str, ...] = ()
    instance_types: tuple[InstanceTypeSpec, ...] = ()
    stock: tuple[StockSpec, ...] = ()
    instances: tuple[tuple[str, LaunchAttributes], ...] = ()
    launch_templates: tuple[LaunchTemplateSpec, ...] = ()


def _strings_of(value: Any, path: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
    return tuple(_string(item, f"{path}[{n}]", pattern)
                 for n, item in enumerate(_list(value, path)))


def _vswitch(value: Any, path: str, region: str) -> VSwitchSpec:
    data = _object(value, path, ("id", "zone", "vpc_id", "cidr_prefix"), ("id", "zone"))
    return VSwitchSpec(
        id=_string(data["id"], f"{path}.id", VSWITCH_ID_RE),
        zone=_string(data["zone"], f"{path}.zone", REGION_RE),
        vpc_id=_string(data.get("vpc_id", "vpc-bp1emulator0000000001"), f"{path}.vpc_id",
                       re.compile(r"^vpc-[a-z0-9]{4,64}$")),
        cidr_prefix=_string(data.get("cidr_prefix", "10.0.9"), f"{path}.cidr_prefix",
                            re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}$")),
    )


def _instance_type(value: Any, path: str) -> InstanceTypeSpec:
    data = _object(value, path, ("type", "cores", "memory"), ("type", "cores", "memory"))
    return InstanceTypeSpec(_string(data["type"], f"{path}.type", INSTANCE_TYPE_RE),
                            _int(data["cores"], f"{path}.cores", 1, 1024),
                            _int(data["memory"], f"{path}.memory", 1, 16384))


def _stock(value: Any, path: str) -> StockSpec:
    data = _object(value, path, ("instance_type", "zone", "spot_strategy", "count", "answer"),
                   ("instance_type", "zone", "count"))
    return StockSpec(
        instance_type=_string(data["instance_type"], f"{path}.instance_type", INSTANCE_TYPE_RE),
        zone=_string(data["zone"], f"{path}.zone", REGION_RE),
        spot_strategy=_choice(data.get("spot_strategy", "SpotAsPriceGo"),
                              f"{path}.spot_strategy", SPOT_STRATEGIES),
        count=_int(data["count"], f"{path}.count", 0, 100000),
        answer=_choice(data.get("answer", STOCK_ANSWERS[0]), f"{path}.answer", STOCK_ANSWERS),
    )


def _launch_attributes(value: Any, path: str, allowed: tuple[str, ...]) -> LaunchAttributes:
    data = _object(value, path, allowed)
    price = data.get("spot_price_limit")
    version = data.get("launch_template_version")
    return LaunchAttributes(
        vswitch_id=(None if data.get("vswitch_id") is None else
                    _string(data["vswitch_id"], f"{path}.vswitch_id", VSWITCH_ID_RE)),
        security_group_ids=_strings_of(data.get("security_group_ids", []),
                                       f"{path}.security_group_ids", SECURITY_GROUP_RE),
        ram_role_name=(None if data.get("ram_role_name") is None else
                       _string(data["ram_role_name"], f"{path}.ram_role_name", ROLE_RE)),
        user_data=(None if data.get("user_data") is None else
                   _string(data["user_data"], f"{path}.user_data",
                           re.compile(r"^[A-Za-z0-9+/=]*$"), USER_DATA_MAX)),
        key_pair_name=(None if data.get("key_pair_name") is None else
                       _string(data["key_pair_name"], f"{path}.key_pair_name")),
        launch_template_id=(None if data.get("launch_template_id") is None else
                            _string(data["launch_template_id"], f"{path}.launch_template_id",
                                    TEMPLATE_ID_RE)),
        launch_template_version=(None if version is None else
                                 _int(version, f"{path}.launch_template_version", 1, 10**6)),
        instance_type=(None if data.get("instance_type") is None else
                       _string(data["instance_type"], f"{path}.instance_type", INSTANCE_TYPE_RE)),
        image_id=None if data.get("image_id") is None else _string(data["image_id"],
                                                                    f"{path}.image_id"),
        spot_strategy=(None if data.get("spot_strategy") is None else
                       _choice(data["spot_strategy"], f"{path}.spot_strategy", SPOT_STRATEGIES)),
        spot_price_limit=(None if price is None else
                          _seconds(price, f"{path}.spot_price_limit", 0.0, 10**6)),
        instance_name=(None if data.get("instance_name") is None else
                       _string(data["instance_name"], f"{path}.instance_name", max_len=128)),
        tags=_tags(data.get("tags", {}), f"{path}.tags"),
    )


def _template(value: Any, path: str) -> LaunchTemplateSpec:
    data = _object(value, path, ("id", "name", "versions"), ("id", "versions"))
    tid = _string(data["id"], f"{path}.id", TEMPLATE_ID_RE)
    versions = []
    for n, item in enumerate(_list(data["versions"], f"{path}.versions")):
        vpath = f"{path}.versions[{n}]"
        vdata = _object(item, vpath, ("number", "default", "data"), ("number",))
        default = vdata.get("default", False)
        if not isinstance(default, bool):
            raise _fail(f"{vpath}.default", f"{default!r} is not a boolean")
        versions.append(TemplateVersionSpec(
            _int(vdata["number"], f"{vpath}.number", 1, 10**6), default,
            _launch_attributes(vdata.get("data", {}), f"{vpath}.data", TEMPLATE_DATA_KEYS)))
    if not versions:
        raise _fail(f"{path}.versions", "must hold at least one version")
    if len({v.number for v in versions}) != len(versions):
        raise _fail(f"{path}.versions", "duplicate version numbers")
    if sum(v.default for v in versions) > 1:
        raise _fail(f"{path}.versions", "more than one default version")
    if not any(v.default for v in versions):
        first = versions[0]
        versions[0] = TemplateVersionSpec(first.number, True, first.data)
    return LaunchTemplateSpec(tid, _string(data.get("name", tid), f"{path}.name",
                                           re.compile(r"^[A-Za-z][A-Za-z0-9._-]{1,127}$")),
                              tuple(versions))


def _provisioning(value: Any, path: str, region: str, instances: tuple[InstanceSpec, ...]
                  ) -> ProvisioningSpec:
    data = _object(value, path, PROVISIONING_KEYS)
    boot = data.get("boot_s")
    healthy = data.get("healthy_after_s", 0)
    vswitches = tuple(_vswitch(v, f"{path}.vswitches[{n}]", region)
                      for n, v in enumerate(_list(data.get("vswitches", []), f"{path}.vswitches")))
    if len({v.id for v in vswitches}) != len(vswitches):
        raise _fail(f"{path}.vswitches", "duplicate vSwitch ids")
    types = tuple(_instance_type(t, f"{path}.instance_types[{n}]") for n, t in
                  enumerate(_list(data.get("instance_types", []), f"{path}.instance_types")))
    stock = tuple(_stock(s, f"{path}.stock[{n}]")
                  for n, s in enumerate(_list(data.get("stock", []), f"{path}.stock")))
    seen_offers: set[tuple[str, str, str]] = set()
    for n, entry in enumerate(stock):
        offer = (entry.instance_type, entry.zone, entry.spot_strategy)
        if offer in seen_offers:
            raise _fail(f"{path}.stock[{n}]", f"duplicate offering {offer}")
        seen_offers.add(offer)
    known = {i.id for i in instances}
    vswitch_ids = {v.id for v in vswitches}
    extras = []
    raw = data.get("instances", {})
    if not isinstance(raw, Mapping):
        raise _fail(f"{path}.instances", "expected a mapping of instance id to attributes")
    for iid, attrs in raw.items():
        ipath = f"{path}.instances.{iid}"
        if iid not in known:
            raise _fail(ipath, "not an instance of the fleet")
        parsed = _launch_attributes(attrs, ipath, LAUNCH_KEYS)
        if parsed.vswitch_id is not None and parsed.vswitch_id not in vswitch_ids:
            raise _fail(f"{ipath}.vswitch_id", f"{parsed.vswitch_id!r} is not a vSwitch of "
                        "provisioning.vswitches")
        extras.append((str(iid), parsed))
    templates = tuple(_template(t, f"{path}.launch_templates[{n}]") for n, t in
                      enumerate(_list(data.get("launch_templates", []),
                                      f"{path}.launch_templates")))
    if len({t.id for t in templates}) != len(templates):
        raise _fail(f"{path}.launch_templates", "duplicate template ids")
    return ProvisioningSpec(
        boot_s=None if boot is None else _seconds(boot, f"{path}.boot_s", 0, 3600),
        healthy_after_s=(None if healthy == "never" else
                         _seconds(healthy, f"{path}.healthy_after_s", 0, 86400)),
        vswitches=vswitches,
        security_groups=_strings_of(data.get("security_groups", []), f"{path}.security_groups",
                                    SECURITY_GROUP_RE),
        images=_strings_of(data.get("images", []), f"{path}.images"),
        ram_roles=_strings_of(data.get("ram_roles", []), f"{path}.ram_roles", ROLE_RE),
        instance_types=types,
        stock=stock,
        instances=tuple(extras),
        launch_templates=templates,
    )
