"""One frozen settings object, read from the environment once. No secrets live here.

Every variable is ``ECS_EVENT_OPS_<NAME>``; the README's configuration table lists them.
Credentials come from the FC runtime (context or environment), never from settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from shared.events import ACCOUNT_RE, REGION_RE

# typing is not imported at run time: the annotations are strings (a cold start saves ~2 ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PREFIX = "ECS_EVENT_OPS_"
# os.path, not pathlib: this module is on every cold start, pathlib costs ~2 ms to import.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

__all__ = [
    "CREDENTIAL_MODES",
    "DEPLOY_VARIABLES",
    "ENDPOINT_NETWORKS",
    "FUNCTION_NAMES",
    "LOG_LEVELS",
    "TOOL_VARIABLES",
    "Settings",
    "SettingsError",
    "UnknownVariable",
    "default_db_url",
    "known_variables",
    "local_store_reason",
    "on_function_compute",
    "unknown_variables",
]

# The functions of the deployment (functions/<name>/index.py).
FUNCTION_NAMES = ("auto_start", "drain_spot", "lifecycle_api", "record_lifecycle", "sweep")
# ECS_EVENT_OPS_* names that are not Settings fields, declared here so that every other name can
# be called unknown (a misspelled ECS_EVENT_OPS_DRYRUN must not be ignored while the function
# acts for real). The notifier's channel variables are declared in shared.notify (secrets never
# enter Settings); s.yaml reads the deploy variables at deploy time; tests and tools the rest.
DEPLOY_VARIABLES: tuple[str, ...] = (
    f"{PREFIX}LOG_PROJECT",
    f"{PREFIX}LOG_STORE",
    *(f"{PREFIX}ROLE_ARN_{name.upper()}" for name in FUNCTION_NAMES),
)
TOOL_VARIABLES: tuple[str, ...] = (
    f"{PREFIX}TEST_PG_URL",  # store tests against PostgreSQL
    f"{PREFIX}TEST_MYSQL_URL",  # store tests against MariaDB/MySQL
    f"{PREFIX}API_META",  # tools.emulator.contract: where the api-meta contract lives
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The default store on FC: one SQLite file per function instance, seen by no other function.
FC_LOCAL_DB_URL = "sqlite:////tmp/ecs-event-ops.sqlite3"

# How the SDK clients find endpoints without ``cloud_url``: the public hosts the SDK resolves
# itself, or the documented VPC hosts (functions in a VPC without internet access).
ENDPOINT_NETWORKS = ("public", "vpc")
# When the SDK's default credential chain may be used: it ends by asking the instance metadata
# service (100.100.100.200), traffic off this machine nobody asked for outside Function Compute.
# "auto": only on FC and only against the real cloud; "default-chain": whenever no keys are
# given; "explicit": never (keys from the invocation context or environment only).
CREDENTIAL_MODES = ("auto", "default-chain", "explicit")


# One REPLACE_VSWITCHES entry: vpc-…/zone=vsw-….
_VSWITCH_ENTRY = re.compile(r"vpc-[a-z0-9]{4,64}/[a-z]{2,10}(-[a-z0-9]{1,20}){1,4}=vsw-[a-z0-9]{4,64}")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class UnknownVariable:
    """An ``ECS_EVENT_OPS_*`` name nothing reads, with the closest known name if any."""

    name: str
    suggestion: str | None

    def message(self) -> str:
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"{self.name} is not a setting of ecs-event-ops{hint}"


def known_variables() -> tuple[str, ...]:
    """Every ``ECS_EVENT_OPS_*`` name something reads: settings, notifier, deploy, tools."""
    # Imported here: shared.notify sets up logging on import, which must wait for the
    # function's environment (ECS_EVENT_OPS_LOG_LEVEL) when tools.invoke imports this first.
    from shared.notify import VARIABLES as NOTIFY_VARIABLES

    settings = tuple(PREFIX + f.name.upper() for f in fields(Settings) if f.metadata.get("env", True))
    return (*settings, *NOTIFY_VARIABLES, *DEPLOY_VARIABLES, *TOOL_VARIABLES)


def unknown_variables(environ: Mapping[str, str]) -> list[UnknownVariable]:
    """The ``ECS_EVENT_OPS_*`` names in ``environ`` that no part of the project reads."""
    # The settings' own names first: shared.notify (whose names complete the list) is imported
    # only when a name is none of those, so an invocation that notifies nobody never loads it.
    own = {PREFIX + f.name.upper() for f in fields(Settings) if f.metadata.get("env", True)}
    own.update(DEPLOY_VARIABLES, TOOL_VARIABLES)
    if all(name in own for name in environ if name.startswith(PREFIX)):
        return []
    known = known_variables()
    # Compared without the common prefix, which would make every name look alike.
    suffixes = [k[len(PREFIX):] for k in known]
    unknown = []
    for name in sorted(environ):
        if name.startswith(PREFIX) and name not in known:
            import difflib  # only to suggest a name for a misspelled one

            close = difflib.get_close_matches(name[len(PREFIX):], suffixes, n=1, cutoff=0.6)
            unknown.append(UnknownVariable(name, PREFIX + close[0] if close else None))
    return unknown


def local_store_reason(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """Why acting is unsafe with this store, or None: on FC, the default store is a SQLite file
    under /tmp of each function instance, so auto_start cannot see the O&M notices
    record_lifecycle stored (the platform-stop guard), nor one instance the claims of another."""
    if not on_function_compute(environ) or settings.db_url != FC_LOCAL_DB_URL:
        return None
    return (
        f"no store shared by the functions ({PREFIX}DB_URL unset: each function instance keeps "
        f"its own SQLite under /tmp, so the platform-stop guard and the once-only claims cannot "
        f"work); acting is off until {PREFIX}DB_URL names a shared database or "
        f"{PREFIX}ALLOW_LOCAL_STORE=true"
    )


def on_function_compute(environ: Mapping[str, str]) -> bool:
    """FC sets ``FC_FUNC_CODE_PATH`` (a reserved variable) in every runtime; so does
    ``tools.invoke``, which imitates the runtime locally."""
    return bool(environ.get("FC_FUNC_CODE_PATH"))


def default_db_url(environ: Mapping[str, str]) -> str:
    """SQLite under ``.data/`` locally; under /tmp on FC, where the code root is read-only."""
    if on_function_compute(environ):
        return FC_LOCAL_DB_URL
    return f"sqlite:///{os.path.join(REPO_ROOT, '.data', 'ecs-event-ops.sqlite3')}"


LB_PRODUCTS = ("clb", "alb", "nlb")


@dataclass(frozen=True)
class Settings:
    """Behaviour knobs. Field ``foo_bar`` is read from ``ECS_EVENT_OPS_FOO_BAR``."""

    db_url: str = ""
    # Base URL every SDK client talks to instead of the regional endpoints (the emulator).
    cloud_url: str | None = None
    region: str = "cn-hangzhou"
    # Regions whose events the functions act on (CloudMonitor rules are account-wide, so every
    # region's events arrive); empty = every region. Clients are built for the event's region.
    regions: tuple[str, ...] = ()
    # The deployment's account: events of any other account are rejected. Unset: the FC
    # context's account_id (or FC_ACCOUNT_ID); unknown locally, then nothing is rejected.
    account_id: str | None = None
    dry_run: bool = False
    # EventBridge target configured to deliver only $.data: the event type it carries.
    data_only_type: str | None = None

    # SDK client retries (throttling, conflicts, 5xx, connection errors)
    api_max_attempts: int = 4
    api_backoff_base_s: float = 0.2
    api_backoff_max_s: float = 5.0
    api_connect_timeout_ms: int = 3000
    api_read_timeout_ms: int = 10000
    # Total sleep between the retries of one call: a server's x-acs-retry-after beyond it ends
    # the retries (the event is retried by FC instead of outliving the function's timeout).
    api_retry_budget_s: float = 10.0
    # Endpoints without cloud_url: "public" (the SDK's own table) or "vpc" (documented VPC hosts,
    # shared/endpoints.py); a per-product host[:port] or http(s) URL overrides either.
    endpoint_network: str = "public"
    endpoint_ecs: str | None = None
    endpoint_slb: str | None = None
    endpoint_actiontrail: str | None = None
    # When the SDK's default credential chain may be used (CREDENTIAL_MODES above).
    credentials: str = "auto"

    # auto-start
    auto_start_tag: str = "auto-start"
    auto_start_allow: tuple[str, ...] = ()  # instance ids or name globs; empty = all tagged
    auto_start_deny: tuple[str, ...] = ()
    restart_after_platform_stop: bool = False
    # What to assume when ActionTrail cannot be read: "skip" (treat as deliberate) or "start".
    actiontrail_fallback: str = "skip"
    # How long before its Stopped event the StopInstance call of a stop may have been made.
    actiontrail_window_s: int = 600
    # How far ActionTrail's eventTime may be off the event's time, either way: the trail is
    # searched from stop - window - skew to stop + skew (issue 11: +-10 minutes).
    actiontrail_skew_s: int = 600
    # ActionTrail lags the call: "Time before an event is available for query: 10 minutes"
    # (ActionTrail, Quotas and limits). Under tag "true", a stop known for less than this with
    # no trail record yet is left to the sweep, which decides once the trail has caught up.
    actiontrail_settle_s: int = 600
    flap_max_starts: int = 3
    flap_window_s: int = 3600
    incident_timeout_s: int = 600
    spot_lookback_s: int = 3600
    # How far back a SystemMaintenance.Stop / SystemFailure.Stop event marks a stop as platform's.
    platform_stop_lookback_s: int = 3600

    # spot drain
    spot_notice_s: int = 300
    spot_margin_s: int = 30
    drain_time_s: float = 60.0  # float: tests and benches use fractions of a second
    lb_ids: tuple[str, ...] = ()
    lb_tag: str | None = None  # "key=value" on the load balancers (and ALB/NLB server groups) in scope
    # The load-balancer products the drain and the sweep act on: clb, alb, nlb.
    lb_products: tuple[str, ...] = ("clb",)
    # ALB / NLB server groups in scope (with the product in lb_products); empty: those tagged
    # lb_tag, else every server group of the product in the region.
    alb_group_ids: tuple[str, ...] = ()
    nlb_group_ids: tuple[str, ...] = ()
    restore_after_s: int = 900
    # A drain's lease outlives its planned wait by this much; a holder silent longer is presumed
    # dead (killed, timed out) and the next delivery or the sweep takes its drain over.
    drain_lease_grace_s: float = 30.0
    # Seconds between ticks of drain_spot's finisher timer (s.yaml / template.yml deploy it with
    # 60). Set: a drain whose removal, scheduled after the drain time, provably lands before
    # deadline - margin even if one tick fails ends its invocation at weight 0 and the tick
    # removes it (no instance held per notice through the wait). 0: the wait is slept in the
    # invocation (no timer to rely on).
    drain_finish_every_s: float = 0.0
    # A finisher tick takes the removals due before the next tick and makes each at its time;
    # those due within this many seconds of each other are made together (one write per group),
    # at the latest of their times: none before its drain time, none later than this after it.
    drain_round_s: float = 5.0
    # The membership index (shared.spot.index): a drain finds its instance's groups there, with
    # no cloud read, once the sweep (or a burst's shared scan) has scanned the region; a scan
    # started at most lb_index_fresh_s before a notice covers it, else one shared scan runs for
    # the burst (shared.spot.scan). Off: every drain reads the groups of every LB in scope.
    lb_index: bool = True
    lb_index_fresh_s: float = 60.0
    # The drains of one invocation (a batch of notices) gather their calls per group for this
    # long, so a group gets one write per step however many of its instances are interrupted.
    drain_batch_window_s: float = 0.2

    # spot replacement (issue 14, shared/replace): instances tagged replace_tag=spot (or
    # spot-or-on-demand: on-demand once no spot offering is left) get a successor on a notice.
    replace_tag: str = "replace-on-interrupt"
    # How long the reclaimed offering (instance type, zone, spot) and any offering that answered
    # a stock error are left out of the candidates (Karpenter: 3 min; Alibaba's Karpenter: 5).
    replace_avoid_s: int = 300
    # vSwitches a successor may go to besides its predecessor's, as VPC/ZONE=VSWITCH entries
    # (vpc-bp1.../cn-hangzhou-i=vsw-bp1...): only those of the predecessor's VPC are used.
    replace_vswitches: tuple[str, ...] = ()
    # A successor not Running this long after its launch is reported stalled by the sweep.
    replace_stall_s: int = 600
    # A successor added to a group that health-checks it (CLB) serves there once the group
    # reports it healthy; not healthy this long after it was added: reported (not_healthy).
    replace_healthy_s: int = 300
    # RAM roles a successor may be launched with (drain_spot's role is granted ram:PassRole on
    # these only: tools/ram_policy.py, template.yml); a predecessor with another role is not
    # replaced (failed, with an alert).
    replace_ram_roles: tuple[str, ...] = ()

    # notifications: which channels; their URLs and signing secrets are read by shared.notify
    notify_timeout_s: float = 3.0

    log_level: str = "INFO"  # applied by shared.log.configure when a function is imported

    # On FC without ECS_EVENT_OPS_DB_URL every function instance has its own /tmp SQLite: the
    # acting functions then run dry (dry_run_reason says why) unless this is set to true.
    allow_local_store: bool = False
    # Why dry_run was turned on although ECS_EVENT_OPS_DRY_RUN is not set (the unshared store,
    # local_store_reason); every decision carries it. Not read from the environment.
    dry_run_reason: str | None = field(default=None, metadata={"env": False})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from ``environ`` (default ``os.environ``); explicit overrides win."""
        env = os.environ if environ is None else environ
        unknown = unknown_variables(env)
        if unknown:
            raise SettingsError("; ".join(u.message() for u in unknown))
        values: dict[str, Any] = {}
        for f in fields(cls):
            if not f.metadata.get("env", True):
                continue
            key = PREFIX + f.name.upper()
            if key in env and env[key] != "":
                values[f.name] = _convert(key, env[key], f.default)
        if "region" not in values:
            for key in ("FC_REGION", "ALIBABA_CLOUD_REGION_ID"):
                if env.get(key):
                    values["region"] = env[key]
                    break
        if "db_url" not in values:
            values["db_url"] = default_db_url(env)
        values.update(overrides)
        settings = cls(**values)
        if not (settings.dry_run or settings.allow_local_store or "dry_run" in overrides):
            reason = local_store_reason(settings, env)
            if reason is not None:  # an honest default: not acting beats acting blind
                settings = replace(settings, dry_run=True, dry_run_reason=reason)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def validate(self) -> None:
        if self.actiontrail_fallback not in ("skip", "start"):
            raise SettingsError(
                f"{PREFIX}ACTIONTRAIL_FALLBACK must be 'skip' or 'start', not {self.actiontrail_fallback!r}"
            )
        for region in (self.region, *self.regions):
            if REGION_RE.fullmatch(region) is None:
                raise SettingsError(f"{PREFIX}REGION(S): {region!r} is not a region id (e.g. cn-hangzhou)")
        if self.account_id is not None and ACCOUNT_RE.fullmatch(self.account_id) is None:
            raise SettingsError(f"{PREFIX}ACCOUNT_ID must be digits, not {self.account_id!r}")
        if self.endpoint_network not in ENDPOINT_NETWORKS:
            raise SettingsError(
                f"{PREFIX}ENDPOINT_NETWORK must be 'public' or 'vpc', not {self.endpoint_network!r}"
            )
        if self.credentials not in CREDENTIAL_MODES:
            raise SettingsError(
                f"{PREFIX}CREDENTIALS must be one of {', '.join(CREDENTIAL_MODES)}, "
                f"not {self.credentials!r}"
            )
        if self.api_retry_budget_s < 0:
            raise SettingsError(f"{PREFIX}API_RETRY_BUDGET_S must not be negative")
        for name in ("actiontrail_window_s", "actiontrail_skew_s", "actiontrail_settle_s"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must not be negative")
        unknown = sorted(set(self.lb_products) - set(LB_PRODUCTS))
        if unknown or not self.lb_products:
            raise SettingsError(f"{PREFIX}LB_PRODUCTS: each of {', '.join(LB_PRODUCTS)}, "
                                f"at least one, not {','.join(self.lb_products)!r}")
        if self.lb_tag is not None and "=" not in self.lb_tag:
            raise SettingsError(f"{PREFIX}LB_TAG must be KEY=VALUE, not {self.lb_tag!r}")
        for name in ("api_max_attempts", "flap_max_starts", "flap_window_s", "spot_notice_s"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{PREFIX}{name.upper()} must be at least 1")
        if self.log_level.strip().upper() not in LOG_LEVELS:
            raise SettingsError(
                f"{PREFIX}LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}"
            )
        if self.spot_margin_s < 0 or self.spot_margin_s >= self.spot_notice_s:
            raise SettingsError(f"{PREFIX}SPOT_MARGIN_S must be between 0 and SPOT_NOTICE_S")
        if not self.replace_tag.strip():
            raise SettingsError(f"{PREFIX}REPLACE_TAG must not be empty")
        for name in ("replace_avoid_s", "replace_stall_s", "replace_healthy_s"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must not be negative")
        for entry in self.replace_vswitches:
            if _VSWITCH_ENTRY.fullmatch(entry) is None:
                raise SettingsError(
                    f"{PREFIX}REPLACE_VSWITCHES: {entry!r} is not VPC/ZONE=VSWITCH "
                    "(vpc-xxx/cn-hangzhou-i=vsw-xxx)"
                )
        if self.lb_index_fresh_s < 0 or self.drain_batch_window_s < 0:
            raise SettingsError(f"{PREFIX}LB_INDEX_FRESH_S and {PREFIX}DRAIN_BATCH_WINDOW_S "
                                "must be >= 0")
        if self.drain_round_s < 0:
            raise SettingsError(f"{PREFIX}DRAIN_ROUND_S must not be negative")
        if self.drain_finish_every_s < 0:
            raise SettingsError(f"{PREFIX}DRAIN_FINISH_EVERY_S must not be negative (0: no timer)")


def _convert(key: str, text: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            return tuple(part.strip() for part in text.split(",") if part.strip())
    except ValueError as error:
        raise SettingsError(f"{key}={text!r}: {error}") from None
    return text
