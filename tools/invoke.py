"""A local Function Compute runtime: run ``functions/<name>/index.py`` on an event file.

It follows the platform contract (../shared/reference/runtime-and-deploy.md): the code root is
importable as top-level modules, ``initialize(context)`` runs once before the first invoke, the
event file's bytes are passed verbatim, the context has the real attribute names (``credentials``
and ``service`` on python3.10 only), the FC_* and ALIBABA_CLOUD_* variables are set, and the
function's environment is applied and then restored.

    python -m tools.invoke record_lifecycle tests/fixtures/events/cloudmonitor/state_running.json \
        --cloud http://127.0.0.1:8642

A local run talks to the cloud named by ``--cloud`` (the local emulator). Without it the SDKs
would reach the real Alibaba Cloud endpoints with your keys, so that must be asked for with
``--real-cloud``: a local run never leaves this machine by accident.

With ``--remote`` it smoke-tests a DEPLOYED function instead: the same event file goes to FC's
InvokeFunction (FC 3.0 through ``alibabacloud_fc20230330``, FC 2.0 through ``aliyun-fc2`` with
``--service``), and the answer and request id are printed::

    python -m tools.invoke --remote auto_start tests/fixtures/events/eventbridge/state_stopped.json \
        --account-id 1234567890123456 --region cn-hangzhou

Dry run, remotely: FC has no per-invocation dry-run switch and the functions read their settings
from their environment only, so a dry run is a deployment: publish a version whose environment
has ``ECS_EVENT_OPS_DRY_RUN=true`` and point an alias (``dry-run`` by default) at it (FC versions
snapshot the environment variables). ``--remote --dry-run`` then reads that qualifier's
configuration with GetFunction, refuses (exit 2) unless ECS_EVENT_OPS_DRY_RUN is true there, and
invokes through it. Name an immutable version number with ``--qualifier`` to rule out the alias
being moved between the check and the invoke. The invoker's key then needs fc:GetFunction too.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from tools import cloud_choice
from tools.cloud_choice import CloudChoiceError, add_cloud_options, resolve_cloud

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
RUNTIMES = ("python3.10", "python3.12")
DEFAULT_MEMORY_MB = 256
DEFAULT_TIMEOUT_S = 120
CREDENTIAL_VARS = (
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
)
FC_VERSIONS = ("3", "2")
DRY_RUN_ALIAS = "dry-run"  # the alias --remote --dry-run invokes unless --qualifier names another
DRY_RUN_VAR = "ECS_EVENT_OPS_DRY_RUN"
LOCAL_ONLY_OPTIONS = ("runtime", "cloud", "real_cloud", "db", "env")
CLOUD_URL_VAR = cloud_choice.CLOUD_URL_VAR


class InvokeError(Exception):
    """The invocation could not be set up (unknown function, bad option)."""


class FunctionTimeoutError(Exception):
    """The handler ran past the function's timeout."""


# --- the context object, with FC's attribute names -----------------------------------------------


@dataclass(frozen=True)
class FcCredentials:
    access_key_id: str
    access_key_secret: str
    security_token: str


@dataclass(frozen=True)
class FcFunction:
    name: str
    handler: str
    memory: int
    timeout: int


@dataclass(frozen=True)
class FcService:
    name: str
    log_project: str = ""
    log_store: str = ""
    qualifier: str = "LATEST"
    version_id: str = ""


@dataclass(frozen=True)
class FcContext:
    """python3.12's context: no ``credentials`` and no ``service`` attribute."""

    request_id: str
    function: FcFunction
    region: str
    account_id: str


@dataclass(frozen=True)
class FcContext310(FcContext):
    """python3.9/3.10's context: adds ``credentials`` (the role's STS keys) and ``service``."""

    credentials: FcCredentials = field(default_factory=lambda: FcCredentials("", "", ""))
    service: FcService = field(default_factory=lambda: FcService("ecs-event-ops"))


def known_functions() -> list[str]:
    return sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/index.py"))


def build_context(
    function: str,
    runtime: str,
    environ: Mapping[str, str],
    *,
    request_id: str | None = None,
    memory: int = DEFAULT_MEMORY_MB,
    timeout: int = DEFAULT_TIMEOUT_S,
) -> FcContext:
    fn = FcFunction(name=function, handler="index.handler", memory=memory, timeout=timeout)
    base: dict[str, Any] = {
        "request_id": request_id or str(uuid.uuid4()),
        "function": fn,
        "region": environ.get("FC_REGION", "cn-hangzhou"),
        "account_id": environ.get("FC_ACCOUNT_ID", "1234567890123456"),
    }
    if runtime == "python3.12":
        return FcContext(**base)
    creds = FcCredentials(*(environ.get(name, "") for name in CREDENTIAL_VARS))
    return FcContext310(**base, credentials=creds)


# --- loading and running ---------------------------------------------------------------------------


@dataclass
class LoadedFunction:
    name: str
    module: ModuleType
    initialized: bool = False


_loaded: dict[str, LoadedFunction] = {}


def load_function(function: str) -> LoadedFunction:
    """Import ``functions/<function>/index.py`` as FC does: module ``index`` from the code root."""
    if function in _loaded:
        return _loaded[function]
    path = FUNCTIONS_DIR / function / "index.py"
    if not path.is_file():
        known = ", ".join(known_functions()) or "none"
        raise InvokeError(f"unknown function {function!r}; known functions: {known}")
    if str(REPO_ROOT) not in sys.path:  # shared/ sits next to index.py in a bundle
        sys.path.insert(0, str(REPO_ROOT))
    spec = importlib.util.spec_from_file_location("index", path)
    if spec is None or spec.loader is None:
        raise InvokeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get("index")
    sys.modules["index"] = module  # as on FC while the module executes
    try:
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            sys.modules.pop("index", None)
        else:
            sys.modules["index"] = previous
    if not callable(getattr(module, "handler", None)):
        raise InvokeError(f"{path} has no handler(event, context)")
    loaded = LoadedFunction(function, module)
    _loaded[function] = loaded
    return loaded


def fc_environment(
    function: str,
    runtime: str,
    *,
    cloud_url: str | None = None,
    db_url: str | None = None,
    dry_run: bool = False,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables FC sets (reserved FC_*, credentials) plus the function's own."""
    source = os.environ if base is None else base
    env = {
        "FC_RUNTIME": runtime,
        "FC_TIMEOUT": str(DEFAULT_TIMEOUT_S),
        "FC_FUNC_CODE_PATH": str(FUNCTIONS_DIR / function) + "/",
        "FC_FUNCTION_HANDLER": "index.handler",
        "FC_FUNCTION_MEMORY_SIZE": str(DEFAULT_MEMORY_MB),
        "FC_FUNCTION_NAME": function,
        "FC_REGION": source.get("FC_REGION", source.get("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou")),
        "FC_INSTANCE_ID": "local-" + uuid.uuid4().hex[:12],
        "FC_ACCOUNT_ID": source.get("FC_ACCOUNT_ID", "1234567890123456"),
    }
    for name in CREDENTIAL_VARS:
        env[name] = source.get(name, "")
    # Locally the store stays in the repo's .data/ unless told otherwise (FC_FUNC_CODE_PATH
    # would otherwise select the /tmp default meant for the real platform).
    from shared.settings import default_db_url

    env["ECS_EVENT_OPS_DB_URL"] = db_url or source.get("ECS_EVENT_OPS_DB_URL") or default_db_url({})
    if cloud_url:
        env["ECS_EVENT_OPS_CLOUD_URL"] = cloud_url
    if dry_run:
        env["ECS_EVENT_OPS_DRY_RUN"] = "true"
    env.update(extra or {})
    return env


@contextmanager
def applied_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` for the duration of the block, then restore exactly what was there."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass(frozen=True)
class InvokeResult:
    function: str
    request_id: str
    value: Any
    error: BaseException | None
    duration_ms: float


def invoke_local(
    function: str,
    event: bytes,
    *,
    runtime: str = "python3.10",
    cloud_url: str | None = None,
    db_url: str | None = None,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    request_id: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> InvokeResult:
    """Run one invocation in this process; the handler's exception is returned, not raised."""
    if runtime not in RUNTIMES:
        raise InvokeError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if not isinstance(event, bytes):
        raise InvokeError("the event must be bytes, as FC passes it")
    environment = fc_environment(
        function, runtime, cloud_url=cloud_url, db_url=db_url, dry_run=dry_run, extra=env
    )
    with applied_environment(environment):  # FC imports the code with its environment set
        loaded = load_function(function)
    context = build_context(function, runtime, environment, request_id=request_id)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            if not loaded.initialized and callable(getattr(loaded.module, "initialize", None)):
                loaded.module.initialize(context)
            loaded.initialized = True
            outcome["value"] = loaded.module.handler(event, context)
        except BaseException as error:  # the handler's failure is the result
            outcome["error"] = error

    started = time.monotonic()
    with applied_environment(environment):
        worker = threading.Thread(target=run, name=f"fc-{function}", daemon=True)
        worker.start()
        worker.join(timeout_s)
    duration_ms = round((time.monotonic() - started) * 1000, 3)
    if worker.is_alive():
        outcome["error"] = FunctionTimeoutError(
            f"{function} did not finish within {timeout_s:g} s (request {context.request_id})"
        )
    return InvokeResult(
        function=function,
        request_id=context.request_id,
        value=outcome.get("value"),
        error=outcome.get("error"),
        duration_ms=duration_ms,
    )


# --- command line --------------------------------------------------------------------------------


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvokeError(f"--env takes KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.invoke",
        description="Run a function locally the way Function Compute does: the event file's "
        "bytes go to handler(event, context) verbatim; the return value is printed as JSON on "
        "stdout, the function's JSON log lines go to stderr.",
        epilog="Credentials come from ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET/_SECURITY_TOKEN. "
        f"Known functions: {', '.join(known_functions())}.",
    )
    parser.add_argument("function", help="a folder name under functions/")
    parser.add_argument("event_file", help="event file, passed as bytes ('-' reads stdin)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="python3.10",
                        help="context shape to emulate (default: %(default)s)")
    add_cloud_options(parser, real_cloud_help="no --cloud: let the SDKs call the real Alibaba "
                      "Cloud endpoints with your credentials (refused unless given)")
    parser.add_argument("--db", metavar="URL", help="store URL (default: SQLite under .data/)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the function (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="decide and log as usual, call the APIs with DryRun, change nothing; "
                        f"with --remote, invoke the '{DRY_RUN_ALIAS}' alias (or --qualifier) "
                        f"after checking that its environment sets {DRY_RUN_VAR}=true")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="function timeout in seconds; with --remote, how long to wait for "
                        "the answer (default: %(default)s)")
    remote = parser.add_argument_group(
        "remote smoke invoke",
        "--remote invokes the DEPLOYED function through FC's InvokeFunction API with the event "
        "file's bytes. Exit 0: the function answered (printed on stdout, JSON pretty-printed); "
        "1: the function raised ('ErrorType: message' on stderr); 2: the call could not be made "
        "(unknown function, credentials, signature, options). The request id goes to stderr.")
    remote.add_argument("--remote", action="store_true",
                        help="invoke the deployed function instead of running it here")
    remote.add_argument("--fc-version", choices=FC_VERSIONS, default="3",
                        help="FC API: 3 (2023-03-30, functions) or 2 (2016-08-15, services and "
                        "functions; needs --service) (default: %(default)s)")
    remote.add_argument("--service", help="FC 2.0 service name")
    remote.add_argument("--qualifier", help="version or alias to invoke (default: LATEST)")
    remote.add_argument("--endpoint", metavar="URL",
                        help="FC endpoint, e.g. the local emulator's http://127.0.0.1:PORT "
                        "(default: https://<account-id>.<region>.fc.aliyuncs.com)")
    remote.add_argument("--region", help="region (default: $ALIBABA_CLOUD_REGION_ID, $FC_REGION "
                        "or cn-hangzhou)")
    remote.add_argument("--account-id", help="Alibaba Cloud account id, for the default endpoint "
                        "(default: $ALIBABA_CLOUD_ACCOUNT_ID or $FC_ACCOUNT_ID)")
    remote.add_argument("--async", dest="asynchronous", action="store_true",
                        help="asynchronous invocation (x-fc-invocation-type: Async): prints the "
                        "request id only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.remote:
        return main_remote(args)
    remote_only = [name for name in ("service", "qualifier", "endpoint", "region", "account_id")
                   if getattr(args, name) is not None]
    if args.asynchronous or args.fc_version != "3":
        remote_only.append("async" if args.asynchronous else "fc_version")
    if remote_only:
        print(f"error: --{remote_only[0].replace('_', '-')} applies to --remote invokes only",
              file=sys.stderr)
        return 2
    try:
        env = _parse_env(args.env)
        _check_cloud_choice(args, env, os.environ)
        if args.function not in known_functions():
            raise InvokeError(
                f"unknown function {args.function!r}; known functions: {', '.join(known_functions())}"
            )
        event = sys.stdin.buffer.read() if args.event_file == "-" else Path(args.event_file).read_bytes()
    except (InvokeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from shared import log

    log.configure(stream=sys.stderr)  # stdout is for the return value only
    result = invoke_local(
        args.function, event, runtime=args.runtime, cloud_url=args.cloud, db_url=args.db,
        dry_run=args.dry_run, env=env, timeout_s=args.timeout,
    )
    if result.error is not None:
        from shared.redact import redact

        print(f"{type(result.error).__name__}: {redact(str(result.error))}", file=sys.stderr)
        return 1
    print(json.dumps(result.value, ensure_ascii=False, indent=2, default=str))
    rejected = rejected_elements(result.value)
    if rejected:  # the function handled the rest; the input still had elements it refused
        print(f"{len(rejected)} element(s) rejected: " + "; ".join(rejected), file=sys.stderr)
        return 2
    return 0


def rejected_elements(answer: object) -> list[str]:
    """The refusals a function's answer reports: bad elements and other accounts' events."""
    if not isinstance(answer, Mapping):
        return []
    found = [f"element {b.get('index')}: {b.get('reason')}" for b in answer.get("bad") or []
             if isinstance(b, Mapping)]
    found += [f"{r.get('event_id')}: {r.get('reason')}" for r in answer.get("refused") or []
              if isinstance(r, Mapping) and r.get("decision") == "rejected"]
    return found


def _check_cloud_choice(
    args: argparse.Namespace, env: Mapping[str, str], environ: Mapping[str, str]
) -> None:
    """A local run names its cloud: ``--cloud`` (or ECS_EVENT_OPS_CLOUD_URL) or ``--real-cloud``."""
    try:
        resolve_cloud(args, env, environ)
    except CloudChoiceError as error:
        raise InvokeError(str(error)) from None


# --- remote smoke invoke ---------------------------------------------------------------------------


class RemoteError(Exception):
    """The remote call could not be made or FC refused it (exit 2)."""


@dataclass(frozen=True)
class RemoteAnswer:
    """What FC answered: the payload, its request id and, when the handler raised, FC's
    ``x-fc-error-type`` with the ``errorType`` / ``errorMessage`` of the body."""

    body: bytes
    request_id: str
    error_type: str | None = None
    error: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoteTarget:
    function: str
    fc_version: str
    endpoint: str  # URL with scheme
    access_key_id: str
    access_key_secret: str
    security_token: str
    service: str | None = None
    qualifier: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _unhandled(body: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(body)
    except ValueError:
        return {"errorMessage": body.decode("utf-8", "replace")}
    return decoded if isinstance(decoded, dict) else {"errorMessage": str(decoded)}


def _fc3_client(target: RemoteTarget) -> Any:
    from alibabacloud_fc20230330.client import Client
    from alibabacloud_tea_openapi.models import Config

    parts = urlsplit(target.endpoint)
    return Client(Config(
        endpoint=parts.netloc, protocol=parts.scheme, access_key_id=target.access_key_id,
        access_key_secret=target.access_key_secret,
        security_token=target.security_token or None,
        read_timeout=int(target.timeout_s * 1000) + 5000, connect_timeout=5000,
    ))


def _fc3_error(exc: BaseException) -> RemoteError | None:
    from Tea.exceptions import TeaException

    if isinstance(exc, TeaException):
        data = exc.data if isinstance(exc.data, Mapping) else {}
        message = data.get("Message") or exc.message
        status = getattr(exc, "status_code", None) or data.get("statusCode")
        request_id = data.get("RequestId") or getattr(exc, "request_id", None)
        return RemoteError(f"{exc.code}: {message} (HTTP {status}, request id {request_id})")
    if type(exc).__module__.split(".")[0] in ("darabonba", "Tea", "requests", "urllib3"):
        return RemoteError(f"cannot reach the endpoint: {type(exc).__name__}: {exc}")
    return None


def _fc2_client(target: RemoteTarget) -> Any:
    import fc2

    return fc2.Client(endpoint=target.endpoint, accessKeyID=target.access_key_id,
                      accessKeySecret=target.access_key_secret,
                      securityToken=target.security_token, Timeout=target.timeout_s + 5)


def _fc2_error(exc: BaseException) -> RemoteError | None:
    from fc2.fc_exceptions import FcError

    if isinstance(exc, FcError):
        body = _unhandled(str(exc.message).encode())
        code = body.get("ErrorCode") or exc.err_code or "Error"
        message = body.get("ErrorMessage") or exc.message
        return RemoteError(f"{code}: {message} (HTTP {exc.status_code}, request id "
                           f"{exc.request_id})")
    if type(exc).__module__.split(".")[0] in ("requests", "urllib3"):
        return RemoteError(f"cannot reach the endpoint: {type(exc).__name__}: {exc}")
    return None


def remote_configuration(target: RemoteTarget) -> dict[str, str]:
    """The environment variables of the function's version or alias (GetFunction)."""
    try:
        if target.fc_version == "3":
            from alibabacloud_fc20230330 import models

            response = _fc3_client(target).get_function(
                target.function, models.GetFunctionRequest(qualifier=target.qualifier))
            env = getattr(response.body, "environment_variables", None)
        else:
            response = _fc2_client(target).get_function(
                target.service, target.function, qualifier=target.qualifier)
            env = response.data.get("environmentVariables") if isinstance(
                response.data, dict) else None
    except Exception as exc:
        translated = _fc3_error(exc) if target.fc_version == "3" else _fc2_error(exc)
        if translated is None:
            raise
        raise translated from exc
    return {str(k): str(v) for k, v in (env or {}).items()}


def invoke_remote(target: RemoteTarget, event: bytes, *, asynchronous: bool = False
                  ) -> RemoteAnswer:
    """Invoke a deployed function; an unhandled handler error is an answer, not an exception."""
    invocation_type = "Async" if asynchronous else "Sync"
    if target.fc_version == "3":
        from alibabacloud_fc20230330 import models

        try:
            response = _fc3_client(target).invoke_function_with_options(
                target.function,
                models.InvokeFunctionRequest(body=io.BytesIO(event), qualifier=target.qualifier),
                models.InvokeFunctionHeaders(x_fc_invocation_type=invocation_type),
                _runtime_options(),
            )
        except Exception as exc:
            translated = _fc3_error(exc)
            if translated is None:
                raise
            raise translated from exc
        stream = response.body
        body = stream.read() if hasattr(stream, "read") else (stream or b"")
        body = body.encode() if isinstance(body, str) else bytes(body)
        headers = response.headers
        error_type = _header(headers, "x-fc-error-type")
        return RemoteAnswer(body, _header(headers, "x-fc-request-id") or "",
                            error_type, _unhandled(body) if error_type else {})
    from fc2.fc_exceptions import FcError

    try:
        result = _fc2_client(target).invoke_function(
            target.service, target.function, payload=event, qualifier=target.qualifier,
            headers={"x-fc-invocation-type": invocation_type})
    except FcError as exc:
        if exc.status_code == 200:  # fc2 raises for x-fc-error-type; the body is the error
            return RemoteAnswer(b"", str(exc.request_id), "UnhandledInvocationError",
                                _unhandled(str(exc.message).encode()))
        raise _fc2_error(exc) or RemoteError(str(exc)) from exc
    except Exception as exc:
        translated = _fc2_error(exc)
        if translated is None:
            raise
        raise translated from exc
    return RemoteAnswer(bytes(result.data or b""), _header(result.headers, "x-fc-request-id") or "")


def _runtime_options() -> Any:
    from darabonba.runtime import RuntimeOptions

    return RuntimeOptions()


class _DropFc2Logs(logging.Filter):
    """aliyun-fc2 logs every failed call at ERROR on the root logger, request headers included
    (the STS security token among them): never let that reach the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}fc2{os.sep}" not in record.pathname


def _remote_target(args: argparse.Namespace, environ: Mapping[str, str]) -> RemoteTarget:
    given = [name.replace("_", "-") for name in LOCAL_ONLY_OPTIONS
             if getattr(args, name) not in (None, [], False, "python3.10")]
    if given:
        raise RemoteError(f"--{given[0]} applies to local invokes only: a deployed function "
                          "has its own runtime, store and environment")
    key_id = environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
    secret = environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")
    if not key_id or not secret:
        raise RemoteError("set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET "
                          "(and ALIBABA_CLOUD_SECURITY_TOKEN for STS keys)")
    if args.fc_version == "2" and not args.service:
        raise RemoteError("FC 2.0 functions live in a service: pass --service NAME")
    if args.fc_version == "3" and args.service:
        raise RemoteError("--service is for FC 2.0 (--fc-version 2); FC 3.0 has no services")
    region = (args.region or environ.get("ALIBABA_CLOUD_REGION_ID") or environ.get("FC_REGION")
              or "cn-hangzhou")
    endpoint = args.endpoint
    if endpoint is None:
        account = (args.account_id or environ.get("ALIBABA_CLOUD_ACCOUNT_ID")
                   or environ.get("FC_ACCOUNT_ID"))
        if not account:
            raise RemoteError("the FC endpoint names the account: pass --account-id (or "
                              "--endpoint URL)")
        endpoint = f"https://{account}.{region}.fc.aliyuncs.com"
    elif urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).netloc:
        raise RemoteError(f"--endpoint must be http(s)://host[:port], not {endpoint!r}")
    qualifier = args.qualifier or (DRY_RUN_ALIAS if args.dry_run else None)
    return RemoteTarget(
        function=args.function, fc_version=args.fc_version, endpoint=endpoint,
        access_key_id=key_id, access_key_secret=secret,
        security_token=environ.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""),
        service=args.service, qualifier=qualifier, timeout_s=args.timeout,
    )


def check_dry_run_deployment(target: RemoteTarget) -> None:
    """Refuse unless the qualifier's snapshot has ECS_EVENT_OPS_DRY_RUN=true."""
    from shared.settings import Settings, SettingsError

    env = remote_configuration(target)
    value = env.get(DRY_RUN_VAR, "")
    try:
        dry = Settings.from_env(environ={DRY_RUN_VAR: value}).dry_run
    except SettingsError:
        dry = False
    if not dry:
        raise RemoteError(
            f"refusing --dry-run: {target.function} qualifier {target.qualifier!r} runs with "
            f"{DRY_RUN_VAR}={value!r}. FC has no per-invocation dry run and the functions read "
            f"settings from their environment only, so dry run is a deployment: set "
            f"{DRY_RUN_VAR}=true on the function, publish a version, set it back, and point "
            f"the alias '{DRY_RUN_ALIAS}' at that version (or name the version with --qualifier)")


def main_remote(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """``--remote``: 0 answered, 1 the function raised, 2 the call could not be made."""
    env = os.environ if environ is None else environ
    logging.getLogger().addFilter(_DropFc2Logs())
    try:
        target = _remote_target(args, env)
        event = sys.stdin.buffer.read() if args.event_file == "-" else Path(args.event_file).read_bytes()
        if args.dry_run:
            check_dry_run_deployment(target)
        answer = invoke_remote(target, event, asynchronous=args.asynchronous)
    except (RemoteError, OSError) as error:
        from shared.redact import redact

        print(f"error: {redact(str(error))}", file=sys.stderr)
        return 2
    where = f"{target.function}" + (f":{target.qualifier}" if target.qualifier else "")
    print(f"request id: {answer.request_id} ({where}, FC {target.fc_version}.0)", file=sys.stderr)
    if answer.error_type is not None:
        error_type = answer.error.get("errorType") or answer.error_type
        print(f"{error_type}: {answer.error.get('errorMessage', '')}", file=sys.stderr)
        return 1
    if args.asynchronous:
        print("accepted for asynchronous invocation", file=sys.stderr)
        return 0
    try:
        print(json.dumps(json.loads(answer.body), ensure_ascii=False, indent=2))
    except ValueError:
        print(answer.body.decode("utf-8", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
