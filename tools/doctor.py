"""Preflight check: settings, credentials, endpoints, the store and each function's grants.

    python -m tools.doctor --cloud http://127.0.0.1:8642       # against the local emulator
    python -m tools.doctor --real-cloud --format json          # your account: explicit consent
    python -m tools.doctor --fc                                # judge the store as deployed on FC

It reads the environment the functions would run with (``ECS_EVENT_OPS_*``, the
``ALIBABA_CLOUD_*`` keys): export the deployment's variables, or run it inside the function's
environment. Cloud checks need ``--cloud URL`` (or ``ECS_EVENT_OPS_CLOUD_URL``) or
``--real-cloud``; without either they are skipped, never sent. They make read calls
(DescribeInstances, CLB DescribeLoadBalancers, ALB/NLB ListServerGroups, LookupEvents,
CloudMonitor DescribeMetricLast, one page or one id each) and ``DryRun`` calls (StartInstance(s):
the API checks the permission and changes nothing); write actions that have no DryRun are listed
as not verifiable without acting.

Each check reports ``ok``, ``warn``, ``fail`` or ``skip`` per subject; progress goes to stderr,
the report to stdout (``--format table|json|csv``). Exit codes: 0 nothing failed (warnings
allowed), 1 a check failed, 2 bad input.

More checks plug in with :func:`check` (a decorator adding to :data:`CHECKS`); a module that
registers checks is listed in :data:`EXTRA_CHECK_MODULES` so the CLI imports it first.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, TextIO

from shared.settings import (
    PREFIX,
    Settings,
    SettingsError,
    local_store_reason,
    on_function_compute,
    unknown_variables,
)
from tools.cloud_choice import CloudChoiceError, add_cloud_options, resolve_cloud

if TYPE_CHECKING:
    from shared.clients import Clients, Credentials, Product

PROG = "python -m tools.doctor"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FORMATS = ("table", "json", "csv")
COLUMNS = ("status", "check", "subject", "message")
# The endpoints checked in every region; ALB and NLB (:data:`LB_ONLY_PRODUCTS`) only when they are
# in ECS_EVENT_OPS_LB_PRODUCTS, since nothing calls them otherwise.
PRODUCTS: tuple[Product, ...] = ("ecs", "slb", "actiontrail", "cms")
LB_ONLY_PRODUCTS: tuple[Product, ...] = ("alb", "nlb")
# Syntactically valid ids nothing carries: a read call for them is signed, authorized and
# answered like any other, and returns nothing.
PROBE_INSTANCE_ID = "i-doctorprobe0000000000"
PROBE_LB_ID = "lb-doctorprobe000000000"
PROBE_SERVER_GROUP_ID = "sgp-doctorprobe0000000"
# The functions' actions the APIs let us verify with DryRun (their request has a DryRun
# parameter: ../shared/api-meta, checked by tests/test_doctor.py).
DRY_RUN_ACTIONS = ("ecs:StartInstance", "ecs:StartInstances", "ecs:RunInstances",
                   "alb:UpdateServerGroupServersAttribute", "alb:RemoveServersFromServerGroup",
                   "alb:AddServersToServerGroup", "nlb:UpdateServerGroupServersAttribute",
                   "nlb:RemoveServersFromServerGroup", "nlb:AddServersToServerGroup")
LB_GROUPS_PROBED = 20  # server groups looked through for a member to DryRun against
# Read actions one probe verifies (the probe call is that action).
PROBED_READS = {
    "ecs:DescribeInstances": "ecs",
    "slb:DescribeLoadBalancers": "slb",
    "actiontrail:LookupEvents": "actiontrail",
    "alb:ListServerGroups": "alb",
    "nlb:ListServerGroups": "nlb",
    "cms:DescribeMetricLast": "cms",
}
# The spot replacement's reads, each verified by one call for a probe id (a NotFound answer is
# an authorized call); DescribeRecommendInstanceType by a question about the region's offerings.
LAUNCH_READS = ("ecs:DescribeInstanceRamRole", "ecs:DescribeUserData",
                "ecs:DescribeLaunchTemplateVersions", "ecs:DescribeRecommendInstanceType")
PROBE_TEMPLATE_ID = "lt-doctorprobe00000000"
# Modules that register more checks with @check (imported by main before the checks run).
EXTRA_CHECK_MODULES: tuple[str, ...] = ("tools.wiring",)  # the CloudMonitor rules (15b)


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    subject: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"status": self.status.value, "check": self.check, "subject": self.subject,
                "message": self.message}


@dataclass(frozen=True)
class Context:
    """What every check reads. ``probes`` caches cloud answers shared between checks."""

    environ: Mapping[str, str]
    settings: Settings | None  # None: the settings themselves are broken (see that check)
    cloud_url: str | None  # the emulator (or any non-default cloud) every client talks to
    real_cloud: bool  # consent to call the real Alibaba Cloud endpoints
    as_fc: bool  # judge as deployed on Function Compute
    now: datetime
    probes: dict[str, Any] = field(default_factory=dict)

    @property
    def cloud_allowed(self) -> bool:
        return bool(self.cloud_url) or self.real_cloud

    def regions(self) -> tuple[str, ...]:
        s = self.settings
        if s is None:
            return ()
        return tuple(dict.fromkeys(s.regions or (s.region,)))


CheckFn = Callable[[Context], list[Finding]]


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    run: CheckFn
    cloud: bool = False  # calls the cloud: skipped without --cloud / --real-cloud


CHECKS: list[Check] = []


def check(name: str, title: str, *, cloud: bool = False) -> Callable[[CheckFn], CheckFn]:
    """Register a check (run in registration order). ``cloud``: it sends API calls."""

    def register(run: CheckFn) -> CheckFn:
        if any(c.name == name for c in CHECKS):
            raise ValueError(f"doctor check {name!r} registered twice")
        CHECKS.append(Check(name, title, run, cloud))
        return run

    return register


# ---------------------------------------------------------------------------------------------
# settings


def effective_environment(environ: Mapping[str, str], *, as_fc: bool) -> dict[str, str]:
    """The environment as the functions see it: on FC, FC_FUNC_CODE_PATH is set (the default
    store is then the per-instance /tmp SQLite)."""
    env = dict(environ)
    if as_fc and not on_function_compute(env):
        env["FC_FUNC_CODE_PATH"] = "/code/"
    return env


def load_settings(environ: Mapping[str, str]) -> tuple[Settings | None, str | None]:
    """(settings, error): the values of the known variables (unknown ones are reported apart)."""
    unknown = {u.name for u in unknown_variables(environ)}
    try:
        return Settings.from_env({k: v for k, v in environ.items() if k not in unknown}), None
    except SettingsError as error:
        return None, str(error)


@check("settings", "every ECS_EVENT_OPS_* variable is known and its value usable")
def check_settings(ctx: Context) -> list[Finding]:
    findings = [Finding("settings", Status.FAIL, u.name, u.message())
                for u in unknown_variables(ctx.environ)]
    _, error = load_settings(ctx.environ)
    if error is not None:
        findings.append(Finding("settings", Status.FAIL, "values", error))
    if findings:
        return findings
    names = sorted(k for k in ctx.environ if k.startswith(PREFIX))
    findings.append(Finding("settings", Status.OK, "variables",
                            f"{len(names)} set, all known, values valid"))
    s = ctx.settings
    if s is not None and s.dry_run and not s.dry_run_reason:
        findings.append(Finding("settings", Status.WARN, f"{PREFIX}DRY_RUN",
                                "dry run: the functions decide and log, and change nothing"))
    return findings


# ---------------------------------------------------------------------------------------------
# credentials


def credentials_in(environ: Mapping[str, str]) -> Credentials | None:
    from shared.clients import credentials_from_context

    return credentials_from_context(None, environ)


def _masked(key_id: str) -> str:
    return key_id if len(key_id) <= 8 else f"{key_id[:4]}...{key_id[-2:]}"


@check("credentials", "an AccessKey is there, and where it comes from")
def check_credentials(ctx: Context) -> list[Finding]:
    env = ctx.environ
    creds = credentials_in(env)
    if creds is not None:
        kind = "STS token (temporary keys)" if creds.security_token else "AccessKey pair"
        return [Finding("credentials", Status.OK, "source",
                        f"environment ALIBABA_CLOUD_ACCESS_KEY_ID={_masked(creds.access_key_id)}: "
                        f"{kind}")]
    half = [n for n in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET") if env.get(n)]
    if half:
        return [Finding("credentials", Status.FAIL, "source",
                        f"only {half[0]} is set: both the id and the secret are needed")]
    if on_function_compute(env) and not ctx.as_fc:
        return [Finding("credentials", Status.OK, "source",
                        "Function Compute: the function role's STS keys, given per invocation")]
    if ctx.as_fc:
        return [Finding("credentials", Status.WARN, "source",
                        "none here; deployed, each function uses its role's keys (set "
                        f"{PREFIX}ROLE_ARN_<FUNCTION>); run doctor with keys to check the calls")]
    mode = ctx.settings.credentials if ctx.settings else "auto"
    if mode == "default-chain":
        return [Finding("credentials", Status.WARN, "source",
                        "SDK default credential chain (ECS_EVENT_OPS_CREDENTIALS=default-chain): "
                        "not inspected")]
    return [Finding("credentials", Status.FAIL, "source",
                    "no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
                    "ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS)")]


# ---------------------------------------------------------------------------------------------
# endpoints (host per product and region, then one signed read call each)


def resolved_host(product: Product, settings: Settings, region: str) -> str:
    """The host the SDK client will call (built, not called; placeholder keys suffice)."""
    from shared.clients import Credentials, build_sdk_client

    client = build_sdk_client(product, settings, Credentials("doctor", "doctor"), region)
    return str(getattr(client, "_endpoint", None) or "?")


def probe_settings(settings: Settings) -> Settings:
    """Quick verdicts: few retries (a dead endpoint must not take a minute per product)."""
    return settings.with_(api_max_attempts=min(settings.api_max_attempts, 2),
                          api_retry_budget_s=min(settings.api_retry_budget_s, 2.0),
                          api_connect_timeout_ms=min(settings.api_connect_timeout_ms, 3000))


def clients_for(ctx: Context) -> Clients:
    from shared.clients import Clients

    cached = ctx.probes.get("clients")
    if cached is None:
        assert ctx.settings is not None
        settings = probe_settings(ctx.settings)
        if ctx.cloud_url:
            settings = settings.with_(cloud_url=ctx.cloud_url)
        cached = Clients.from_settings(settings, credentials_in(ctx.environ))
        ctx.probes["clients"] = cached
    return cached


def endpoint_products(settings: Settings) -> tuple[Product, ...]:
    """The products whose endpoint is checked: :data:`PRODUCTS`, plus ALB and NLB when
    ``lb_products`` names them."""
    return (*PRODUCTS, *(p for p in LB_ONLY_PRODUCTS if p in settings.lb_products))


def probe(ctx: Context, product: str, region: str) -> tuple[Exception | None, float]:
    """One signed read call of ``product`` in ``region`` (cached): (error or None, ms). Each
    goes through the adapter the functions use, for an id that names at most one thing."""
    from shared.cms import CPU_METRIC

    key = f"probe:{product}:{region}"
    if key in ctx.probes:
        return ctx.probes[key]  # type: ignore[no-any-return]
    clients = clients_for(ctx).for_region(region)
    s = ctx.settings
    started = time.monotonic()
    error: Exception | None = None
    try:
        if product == "ecs":
            clients.ecs.describe_instances([PROBE_INSTANCE_ID])
        elif product == "slb":
            ids = s.lb_ids[:1] if s and s.lb_ids else (PROBE_LB_ID,)
            clients.lb.list_load_balancers(ids=ids)
        elif product in ("alb", "nlb"):
            configured = (s.alb_group_ids if product == "alb" else s.nlb_group_ids) if s else ()
            adapter = clients.alb if product == "alb" else clients.nlb
            adapter.list_server_groups(group_ids=configured[:1] or (PROBE_SERVER_GROUP_ID,))
        elif product == "cms":
            clients.cms.last_reading(PROBE_INSTANCE_ID, CPU_METRIC)
        else:
            clients.trail.lookup_instance_events(
                PROBE_INSTANCE_ID, ctx.now - timedelta(minutes=1), ctx.now)
    except Exception as err:  # every failure is the verdict, reported with its type
        error = err
    result = (error, (time.monotonic() - started) * 1000)
    ctx.probes[key] = result
    return result


PROBE_ACTIONS = {"ecs": "DescribeInstances", "slb": "DescribeLoadBalancers",
                 "alb": "ListServerGroups", "nlb": "ListServerGroups",
                 "actiontrail": "LookupEvents", "cms": "DescribeMetricLast"}


def _describe_error(error: Exception) -> str:
    code = getattr(error, "code", None)
    return f"{code}: {error}" if code else f"{type(error).__name__}: {error}"


@check("endpoints", "which host each product is called at, and that it answers a signed call",
       cloud=True)
def check_endpoints(ctx: Context) -> list[Finding]:
    if ctx.settings is None:
        return [Finding("endpoints", Status.SKIP, "-", "settings are broken (see settings)")]
    findings = []
    for region in ctx.regions():
        for product in endpoint_products(ctx.settings):
            subject = f"{product} {region}"
            settings = ctx.settings.with_(cloud_url=ctx.cloud_url) if ctx.cloud_url else ctx.settings
            try:
                host = resolved_host(product, settings, region)
            except (SettingsError, ValueError) as bad:
                findings.append(Finding("endpoints", Status.FAIL, subject, str(bad)))
                continue
            error, ms = probe(ctx, product, region)
            if error is None:
                findings.append(Finding("endpoints", Status.OK, subject,
                                        f"{host}: signed {PROBE_ACTIONS[product]} answered in "
                                        f"{ms:.0f} ms"))
            else:
                findings.append(Finding("endpoints", Status.FAIL, subject,
                                        f"{host}: {PROBE_ACTIONS[product]} failed: "
                                        f"{_describe_error(error)}"))
    return findings


# ---------------------------------------------------------------------------------------------
# the store


def _redact(url: str) -> str:
    from tools.lifecycle import redact_url

    return redact_url(url)


@check("store", "the store is reachable, at the code's schema, and shared by the functions")
def check_store(ctx: Context) -> list[Finding]:
    from shared.store import SCHEMA_VERSION, Store, StoreError, StoreUnavailableError
    from tools.lifecycle import _sqlite_path

    s = ctx.settings
    if s is None:
        return [Finding("store", Status.SKIP, "-", "settings are broken (see settings)")]
    url = s.db_url
    findings: list[Finding] = []
    fc_env = effective_environment(ctx.environ, as_fc=True)
    unshared = local_store_reason(s, fc_env) if (ctx.as_fc or on_function_compute(ctx.environ)) else None
    if unshared is not None:
        if s.allow_local_store:
            findings.append(Finding("store", Status.WARN, "shared",
                                    f"{PREFIX}ALLOW_LOCAL_STORE=true: each function instance "
                                    "keeps its own /tmp SQLite; the platform-stop guard and the "
                                    "once-only claims do not hold across functions"))
        else:
            findings.append(Finding("store", Status.FAIL, "shared", unshared))
        findings.append(Finding("store", Status.SKIP, _redact(url),
                                "exists only inside each function instance"))
        return findings
    if url.startswith("sqlite:"):
        where = "on FC: shared only if every function mounts this path (NAS)" if ctx.as_fc else (
            "fine locally; on FC set ECS_EVENT_OPS_DB_URL to a database every function reaches "
            "(check with --fc)")
        findings.append(Finding("store", Status.WARN if ctx.as_fc else Status.OK, "shared",
                                f"SQLite: {where}"))
        try:
            path = _sqlite_path(url)
        except ValueError as error:
            return [*findings, Finding("store", Status.FAIL, _redact(url), str(error))]
        if path is not None and not path.is_file():
            findings.append(Finding("store", Status.WARN, _redact(url),
                                    f"no store at {path} yet: the first invocation creates it "
                                    "(doctor creates nothing)"))
            return findings
    else:
        findings.append(Finding("store", Status.OK, "shared",
                                "a database server: one store for every function"))
    store = Store(url)
    try:
        version = store.schema_version()
    except StoreUnavailableError as error:
        return [*findings, Finding("store", Status.FAIL, _redact(url), f"unreachable: {error}")]
    except StoreError as error:
        return [*findings, Finding("store", Status.FAIL, _redact(url), str(error))]
    finally:
        store.close()
    if version == 0:
        findings.append(Finding("store", Status.WARN, _redact(url),
                                "reachable, no schema yet: the first invocation creates it"))
    elif version < SCHEMA_VERSION:
        findings.append(Finding("store", Status.WARN, _redact(url),
                                f"reachable, schema v{version}: the next invocation upgrades it "
                                f"to v{SCHEMA_VERSION}"))
    elif version > SCHEMA_VERSION:
        findings.append(Finding("store", Status.WARN, _redact(url),
                                f"reachable, schema v{version} is newer than this code's "
                                f"v{SCHEMA_VERSION}: deploy the newer code"))
    else:
        findings.append(Finding("store", Status.OK, _redact(url),
                                f"reachable, schema v{version} (the code's)"))
    return findings


# ---------------------------------------------------------------------------------------------
# RAM grants


def _dry_run_start(ctx: Context, action: str) -> tuple[Status, str]:
    """StartInstance(s) with DryRun on an opted-in instance: the API checks the permission."""
    from shared.clients import AuthError, StartOutcome

    key = f"dryrun:{action}"
    if key in ctx.probes:
        return ctx.probes[key]  # type: ignore[no-any-return]
    assert ctx.settings is not None
    clients = clients_for(ctx)
    tag = ctx.settings.auto_start_tag
    verdict: tuple[Status, str]
    try:
        target = ctx.probes.get("dryrun:target")
        if target is None:
            found = [i for value in ("true", "always")
                     for i in clients.ecs.list_instances(tags={tag: value})]
            # A Stopped one: a start of a Running instance may be refused for its status
            # before the permission is known.
            found.sort(key=lambda i: i.status != "Stopped")
            target = found[0].instance_id if found else ""
            ctx.probes["dryrun:target"] = target
        if not target:
            verdict = (Status.WARN, f"not verified: no instance carries {tag}=true|always in "
                                    f"{clients.region_id} to DryRun against")
        else:
            name = action.split(":", 1)[1]
            if name == "StartInstance":
                result = clients.ecs.start_instance(target, dry_run=True)
            else:
                result = clients.ecs.start_instances([target], dry_run=True)[0]
            if result.outcome is StartOutcome.DRY_RUN_OK:
                verdict = (Status.OK, f"granted ({name} DryRun on {target}: {result.code})")
            else:
                verdict = (Status.WARN, f"{name} DryRun on {target} answered {result.code}")
    except AuthError as error:
        verdict = (Status.FAIL, f"refused: {_describe_error(error)}")
    except Exception as error:  # unreachable and the like: reported, the check goes on
        verdict = (Status.FAIL, f"not verified: {_describe_error(error)}")
    ctx.probes[key] = verdict
    return verdict


def _launch_read(ctx: Context, action: str) -> tuple[Status, str]:
    """One call of a replacement read: answered (a probe id not found included) is granted."""
    from shared.clients import AuthError, CloudError, NotFoundError

    key = f"read:{action}"
    if key in ctx.probes:
        return ctx.probes[key]  # type: ignore[no-any-return]
    launch = clients_for(ctx).launch
    verdict: tuple[Status, str]
    try:
        if action == "ecs:DescribeInstanceRamRole":
            launch.ram_roles([PROBE_INSTANCE_ID])
        elif action == "ecs:DescribeUserData":
            launch.user_data(PROBE_INSTANCE_ID)
        elif action == "ecs:DescribeLaunchTemplateVersions":
            launch.template_version(PROBE_TEMPLATE_ID, None)
        else:
            launch.recommend("ecs.g7.large", "SpotAsPriceGo")
        verdict = (Status.OK, "granted (answered)")
    except NotFoundError as error:
        verdict = (Status.OK, f"granted (answered {error.code})")
    except AuthError as error:
        verdict = (Status.FAIL, f"refused: {_describe_error(error)}")
    except CloudError as error:
        verdict = ((Status.FAIL, f"not verified: {_describe_error(error)}") if error.retryable
                   else (Status.OK, f"granted (answered {error.code})"))
    ctx.probes[key] = verdict
    return verdict


def _dry_run_launch(ctx: Context) -> tuple[Status, str]:
    """RunInstances with DryRun for a probe launch: refused (Forbidden.RAM) fails; the DryRun
    verdict proves the grant; any other answer (a parameter of the probe) proves nothing."""
    from shared.clients import AuthError, CloudError
    from shared.launch import LaunchRequest

    key = "dryrun:ecs:RunInstances"
    if key in ctx.probes:
        return ctx.probes[key]  # type: ignore[no-any-return]
    request = LaunchRequest(instance_type="ecs.g7.large", zone_id=None, vswitch_id=None,
                            image_id="doctor-probe-image", spot_strategy="SpotAsPriceGo")
    verdict: tuple[Status, str]
    try:
        # A ClientToken names one request (idempotence), no secret.
        clients_for(ctx).launch.run_instance(request, client_token="doctor-probe",  # noqa: S106
                                             dry_run=True)
        verdict = (Status.OK, "granted (RunInstances DryRun passed)")
    except AuthError as error:
        verdict = (Status.FAIL, f"refused: {_describe_error(error)}")
    except CloudError as error:
        verdict = (Status.WARN, f"RunInstances DryRun answered {error.code} for the probe "
                                "launch: the grant is not proven")
    ctx.probes[key] = verdict
    return verdict


def _dry_run_lb(ctx: Context, action: str) -> tuple[Status, str]:
    """An ALB/NLB server-group write with DryRun on an existing member (its own port and
    weight; an add on a port it is not registered on): the API checks the permission and the
    request, changes nothing."""
    from dataclasses import replace

    from shared.clients import AuthError

    key = f"dryrun:{action}"
    if key in ctx.probes:
        return ctx.probes[key]  # type: ignore[no-any-return]
    assert ctx.settings is not None
    clients = clients_for(ctx)
    product, name = action.split(":", 1)
    adapter = clients.alb if product == "alb" else clients.nlb
    verdict: tuple[Status, str]
    try:
        target = ctx.probes.get(f"dryrun:{product}:target")
        if target is None:
            ids = (ctx.settings.alb_group_ids if product == "alb"
                   else ctx.settings.nlb_group_ids)
            target = None
            for group in adapter.list_server_groups(group_ids=ids)[:LB_GROUPS_PROBED]:
                if group.managed_by is None:
                    target = next(iter(adapter.group_members(group.group_id)), None)
                if target is not None:
                    break
            ctx.probes[f"dryrun:{product}:target"] = target or False
        if not target:
            verdict = (Status.WARN, f"not verified: no {product.upper()} server group member "
                                    f"in {clients.region_id} to DryRun against")
        else:
            write = {"UpdateServerGroupServersAttribute": adapter.write_weights,
                     "RemoveServersFromServerGroup": adapter.write_remove,
                     "AddServersToServerGroup": adapter.write_add}[name]
            if name == "AddServersToServerGroup":  # a port the server is not registered on
                taken = {m.port for m in adapter.group_members(target.group_id or "")
                         if m.server_id == target.server_id}
                port = next(p for p in range(1024, 65536) if p not in taken)
                target = replace(target, port=port)
            writes = write([target], dry_run=True)
            where = f"{target.group_id} {target.server_id}"
            verdict = ((Status.OK, f"granted ({name} DryRun on {where})")
                       if writes and all(w.dry_run for w in writes)
                       else (Status.WARN, f"{name} DryRun on {where} gave no verdict"))
    except AuthError as error:
        verdict = (Status.FAIL, f"refused: {_describe_error(error)}")
    except Exception as error:  # refused for another reason, unreachable: reported
        verdict = (Status.FAIL, f"not verified: {_describe_error(error)}")
    ctx.probes[key] = verdict
    return verdict


def _read_verdict(ctx: Context, product: str) -> tuple[Status, str]:
    from shared.clients import AuthError

    assert ctx.settings is not None
    error, _ = probe(ctx, product, ctx.settings.region)
    if error is None:
        return Status.OK, "granted (answered)"
    if isinstance(error, AuthError):
        return Status.FAIL, f"refused: {_describe_error(error)}"
    return Status.FAIL, f"not verified: {_describe_error(error)}"


@check("grants", "each function's RAM actions: read calls and DryRun where the API has it",
       cloud=True)
def check_grants(ctx: Context) -> list[Finding]:
    from tools.ram_policy import declared_actions

    if ctx.settings is None:
        return [Finding("grants", Status.SKIP, "-", "settings are broken (see settings)")]
    creds = credentials_in(ctx.environ)
    whose = (f"the keys doctor runs with ({_masked(creds.access_key_id)})" if creds else
             "the SDK's credentials")
    findings = []
    for function, actions in sorted(declared_actions().items()):
        verified: list[str] = []
        refused: list[str] = []
        unverified: dict[str, list[str]] = {}  # why -> actions
        for action in actions:
            if action == "ecs:RunInstances":
                status, text = _dry_run_launch(ctx)
            elif action in DRY_RUN_ACTIONS:
                status, text = (_dry_run_start(ctx, action) if action.startswith("ecs:")
                                else _dry_run_lb(ctx, action))
            elif action in LAUNCH_READS:
                status, text = _launch_read(ctx, action)
            elif action in PROBED_READS:
                status, text = _read_verdict(ctx, PROBED_READS[action])
            elif ":Describe" in action:
                status, text = Status.WARN, "reads not probed"
            else:
                status, text = Status.WARN, "cannot be verified without acting (no DryRun)"
            short = action.split(":", 1)[1]
            if status is Status.OK:
                verified.append(short)
            elif status is Status.FAIL:
                refused.append(f"{short} ({text})")
            else:
                unverified.setdefault(text, []).append(short)
        if not actions:
            findings.append(Finding("grants", Status.OK, function, "calls no cloud API"))
            continue
        parts = [f"with {whose}"]
        if verified:
            parts.append("verified " + ", ".join(verified))
        if refused:
            parts.append("FAILED " + "; ".join(refused))
        parts += [f"{why}: {', '.join(names)}" for why, names in unverified.items()]
        role = ctx.environ.get(f"{PREFIX}ROLE_ARN_{function.upper()}")
        if role:
            parts.append(f"the role {role} itself is not assumed: run doctor with its keys")
        status = Status.FAIL if refused else (Status.WARN if unverified else Status.OK)
        findings.append(Finding("grants", status, function, "; ".join(parts)))
    return findings


# ---------------------------------------------------------------------------------------------
# running and reporting


def run_checks(ctx: Context, *, only: Sequence[str] = (), progress: TextIO | None = None) -> list[Finding]:
    findings: list[Finding] = []
    selected = [c for c in CHECKS if not only or c.name in only]
    for n, item in enumerate(selected, 1):
        if progress is not None:
            print(f"doctor [{n}/{len(selected)}] {item.name}: {item.title}", file=progress,
                  flush=True)
        if item.cloud and not ctx.cloud_allowed:
            findings.append(Finding(item.name, Status.SKIP, "-",
                                    "sends API calls: pass --cloud URL (the emulator) or "
                                    "--real-cloud (your account: read and DryRun calls only)"))
            continue
        really_on_fc = on_function_compute(ctx.environ) and not ctx.as_fc
        if item.cloud and credentials_in(ctx.environ) is None and not really_on_fc:
            findings.append(Finding(item.name, Status.SKIP, "-", "no credentials (see credentials)"))
            continue
        try:
            findings += item.run(ctx)
        except Exception as error:  # a broken check is a finding, never a traceback
            findings.append(Finding(item.name, Status.FAIL, "-",
                                    f"the check itself failed: {type(error).__name__}: {error}"))
    return findings


def report(findings: Sequence[Finding], fmt: str, out: TextIO) -> None:
    from shared.queries import render_csv, render_table

    rows = [f.to_dict() for f in findings]
    counts = {s.value: sum(1 for f in findings if f.status is s) for s in Status}
    if fmt == "json":
        body = {"ok": counts["fail"] == 0, "counts": counts, "findings": rows}
        print(json.dumps(body, ensure_ascii=False, indent=2), file=out)
    elif fmt == "csv":
        print(render_csv(rows, COLUMNS), file=out, end="")
    else:
        print(render_table(rows, COLUMNS), file=out)
        print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()), file=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=(__doc__ or "").split("\n\n")[0],
        epilog="Exit codes: 0 nothing failed, 1 a check failed, 2 bad input.")
    add_cloud_options(parser, real_cloud_help="call the real Alibaba Cloud endpoints with your "
                      "keys (read and DryRun calls only); refused unless given")
    parser.add_argument("--fc", action="store_true",
                        help="judge as deployed on Function Compute (as if FC_FUNC_CODE_PATH "
                        "were set: the default store is each instance's /tmp SQLite)")
    parser.add_argument("--db", metavar="URL", help="the store to check (default: "
                        "$ECS_EVENT_OPS_DB_URL, else the functions' default)")
    parser.add_argument("--check", action="append", default=[], metavar="NAME",
                        help="only these checks (repeatable)")
    parser.add_argument("--format", choices=FORMATS, default="table")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(argv)
    for module in EXTRA_CHECK_MODULES:
        importlib.import_module(module)
    env = dict(os.environ if environ is None else environ)
    if args.db:
        env[f"{PREFIX}DB_URL"] = args.db
    problem = None
    try:
        cloud = resolve_cloud(args, env, required=False)
    except CloudChoiceError as error:
        cloud, problem = None, str(error)
    unknown_checks = sorted(set(args.check) - {c.name for c in CHECKS})
    if unknown_checks:
        problem = (f"unknown check {unknown_checks[0]!r}; checks: "
                   + ", ".join(c.name for c in CHECKS))
    if problem:
        print(f"{PROG}: error: {problem}", file=err)
        return EXIT_USAGE
    fc_env = effective_environment(env, as_fc=args.fc)
    settings, _ = load_settings(fc_env)
    ctx = Context(environ=fc_env, settings=settings, cloud_url=cloud, real_cloud=args.real_cloud,
                  as_fc=args.fc, now=datetime.now(timezone.utc))
    findings = run_checks(ctx, only=args.check, progress=err)
    report(findings, args.format, out)
    return EXIT_FAILED if any(f.status is Status.FAIL for f in findings) else EXIT_OK


if __name__ == "__main__":
    from shared.log import configure

    configure(level="ERROR", stream=sys.stderr)  # the report is the answer; logs stay quiet
    sys.exit(main())
