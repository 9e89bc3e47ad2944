"""The local FC runtime follows the platform contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import invoke
from tools.invoke import FcContext, FcContext310, build_context, invoke_local

REPO = Path(__file__).resolve().parent.parent
# A Stopped event needs no snapshot, so these CLI runs make no cloud call at all.
FIXTURE = "tests/fixtures/events/cloudmonitor/state_stopped.json"

PROBE = '''
import json, os
initialized = []

def initialize(context):
    initialized.append(context.request_id)

def handler(event, context):
    if event == b"boom":
        raise RuntimeError("handler failed on purpose")
    if event == b"sleep":
        import time; time.sleep(5)
    return {
        "event_type": type(event).__name__, "event": event.decode(),
        "initialized": len(initialized),
        "has_credentials": hasattr(context, "credentials"),
        "has_service": hasattr(context, "service"),
        "ak_in_context": getattr(getattr(context, "credentials", None), "access_key_id", None),
        "ak_in_env": os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        "function": [context.function.name, context.function.handler, context.function.memory,
                     context.function.timeout],
        "region": context.region, "account_id": context.account_id,
        "request_id": context.request_id,
        "fc_env": {k: os.environ.get(k) for k in ("FC_RUNTIME", "FC_FUNCTION_NAME", "FC_FUNCTION_HANDLER")},
        "cloud": os.environ.get("ECS_EVENT_OPS_CLOUD_URL"),
        "dry_run": os.environ.get("ECS_EVENT_OPS_DRY_RUN"),
        "custom": os.environ.get("CUSTOM_SETTING"),
    }
'''


@pytest.fixture
def probe_function(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A throwaway function under a temporary functions/ folder."""
    folder = tmp_path / "functions" / "probe"
    folder.mkdir(parents=True)
    (folder / "index.py").write_text(PROBE)
    monkeypatch.setattr(invoke, "FUNCTIONS_DIR", tmp_path / "functions")
    monkeypatch.setattr(invoke, "_loaded", {})
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIprobe")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "probe-secret")
    return "probe"


def test_python310_context_has_credentials_and_service(probe_function: str) -> None:
    """GIVEN python3.10 WHEN invoked THEN context.credentials carries the role's keys."""
    result = invoke_local(probe_function, b"hello", runtime="python3.10")
    assert result.error is None
    value = result.value
    assert value["event_type"] == "bytes"
    assert value["event"] == "hello"
    assert value["has_credentials"]
    assert value["has_service"]
    assert value["ak_in_context"] == "LTAIprobe"
    assert value["function"] == ["probe", "index.handler", 256, 120]
    assert value["fc_env"] == {"FC_RUNTIME": "python3.10", "FC_FUNCTION_NAME": "probe",
                               "FC_FUNCTION_HANDLER": "index.handler"}


def test_python312_context_has_no_credentials_but_the_environment_does(probe_function: str) -> None:
    """GIVEN python3.12 WHEN invoked THEN keys are only in the environment."""
    value = invoke_local(probe_function, b"x", runtime="python3.12").value
    assert not value["has_credentials"]
    assert not value["has_service"]
    assert value["ak_in_env"] == "LTAIprobe"


def test_initialize_runs_once_per_instance(probe_function: str) -> None:
    """The initializer runs before the first invoke only (a warm instance)."""
    assert invoke_local(probe_function, b"a").value["initialized"] == 1
    assert invoke_local(probe_function, b"b").value["initialized"] == 1


def test_environment_is_applied_then_restored(probe_function: str) -> None:
    """Options reach the function's environment and vanish afterwards."""
    before = dict(os.environ)
    value = invoke_local(probe_function, b"x", cloud_url="http://127.0.0.1:9", dry_run=True,
                         env={"CUSTOM_SETTING": "42"}).value
    assert (value["cloud"], value["dry_run"], value["custom"]) == ("http://127.0.0.1:9", "true", "42")
    assert dict(os.environ) == before


def test_handler_errors_are_returned_and_timeouts_reported(probe_function: str) -> None:
    """A raising handler yields its exception; a slow one a timeout error."""
    failed = invoke_local(probe_function, b"boom")
    assert isinstance(failed.error, RuntimeError)
    slow = invoke_local(probe_function, b"sleep", timeout_s=0.2)
    assert type(slow.error).__name__ == "FunctionTimeoutError"


def test_contexts_have_fc_attribute_names() -> None:
    """build_context returns the runtime's shape."""
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "a", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "b",
           "ALIBABA_CLOUD_SECURITY_TOKEN": "c", "FC_REGION": "cn-shanghai"}
    ctx310 = build_context("f", "python3.10", env, request_id="r-1")
    assert isinstance(ctx310, FcContext310)
    assert (ctx310.credentials.access_key_id, ctx310.credentials.security_token) == ("a", "c")
    assert ctx310.region == "cn-shanghai"
    assert ctx310.request_id == "r-1"
    ctx312 = build_context("f", "python3.12", env)
    assert type(ctx312) is FcContext


# A closed local port: these runs make no cloud call, and a local run must name its cloud.
CLOUD = ("--cloud", "http://127.0.0.1:9")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ECS_EVENT_OPS_CLOUD_URL"}
    env["ECS_EVENT_OPS_DB_URL"] = "sqlite://"
    return subprocess.run([sys.executable, "-m", "tools.invoke", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_prints_the_result_as_json() -> None:
    """python -m tools.invoke record_lifecycle FIXTURE prints a JSON result, exit 0."""
    run = _cli("record_lifecycle", FIXTURE, *CLOUD)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["recorded"], result["duplicates"], result["bad"]) == (1, 0, [])


def test_cli_reports_bad_elements_with_exit_2() -> None:
    """A batch with bad elements is handled: good ones processed, bad ones reported in the
    answer, and the exit code says the input was refused in part (issue 15: not 0)."""
    run = _cli("record_lifecycle", "tests/fixtures/events/batch/with_bad_elements.json", *CLOUD)
    assert run.returncode == 2, run.stderr
    bad = json.loads(run.stdout)["bad"]
    assert [b["index"] for b in bad] == [1, 2]
    assert run.stderr.splitlines()[-1] == "2 element(s) rejected: " + "; ".join(
        f"element {b['index']}: {b['reason']}" for b in bad)


def test_cli_unknown_function_lists_the_known_ones() -> None:
    """An unknown name exits 2 with the known functions listed."""
    run = _cli("no_such_function", FIXTURE, *CLOUD)
    assert run.returncode == 2
    assert "unknown function 'no_such_function'" in run.stderr
    assert "record_lifecycle" in run.stderr


def test_cli_exit_1_with_error_type_when_the_handler_raises() -> None:
    """An unreachable store makes the handler raise: exit 1 and 'ErrorType: message' on stderr."""
    run = _cli("record_lifecycle", FIXTURE, *CLOUD,
               "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("StoreUnavailableError: ")


def test_cli_missing_event_file() -> None:
    """A missing event file is a usage error (exit 2)."""
    run = _cli("record_lifecycle", "no/such/file.json", *CLOUD)
    assert run.returncode == 2
    assert "error:" in run.stderr


def test_cli_refuses_the_real_cloud_unless_asked() -> None:
    """Without --cloud a local run would reach the real endpoints: exit 2 unless --real-cloud;
    --real-cloud with a local cloud is contradictory (exit 2); ECS_EVENT_OPS_CLOUD_URL given with
    --env counts as --cloud."""
    refused = _cli("record_lifecycle", FIXTURE)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.strip() == (
        "error: refusing to call the real Alibaba Cloud endpoints: pass --cloud URL (the local "
        "emulator, e.g. http://127.0.0.1:8642) or, to reach the real cloud with your "
        "credentials, --real-cloud")
    both = _cli("record_lifecycle", FIXTURE, *CLOUD, "--real-cloud")
    assert both.returncode == 2
    assert "--real-cloud and --cloud (or ECS_EVENT_OPS_CLOUD_URL) exclude each other" in both.stderr
    # this event makes no cloud call, so asking for the real cloud sends nothing anywhere
    asked = _cli("record_lifecycle", FIXTURE, "--real-cloud")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["recorded"] == 1
    via_env = _cli("record_lifecycle", FIXTURE, "--env", "ECS_EVENT_OPS_CLOUD_URL=http://127.0.0.1:9")
    assert via_env.returncode == 0, via_env.stderr


def test_real_cloud_is_a_local_option(capsys: pytest.CaptureFixture[str]) -> None:
    """--real-cloud with --remote is refused: a deployed function has its own environment."""
    code = invoke.main(["record_lifecycle", FIXTURE, "--remote", "--real-cloud"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "error: --real-cloud applies to local invokes only: a deployed function has its own "
        "runtime, store and environment")


def test_the_log_level_setting_takes_effect_when_the_function_is_imported() -> None:
    """ECS_EVENT_OPS_LOG_LEVEL=WARNING in the function's environment drops its INFO lines (the
    bad element is a WARNING, always shown); a typo is refused by the handler, naming the
    variable (issue 15: settings nobody can use are errors, not silently INFO)."""
    code = (
        "import json, sys\n"
        "from tools.invoke import invoke_local\n"
        "body = b'[{\"hello\": 1}, ' + open(sys.argv[2], 'rb').read() + b']'\n"
        "r = invoke_local('record_lifecycle', body, db_url='sqlite://', cloud_url='http://127.0.0.1:9',\n"
        "                 env={'ECS_EVENT_OPS_LOG_LEVEL': sys.argv[1]})\n"
        "print('ERROR', r.error)\n"
    )
    expected = {"WARNING": [], "DEBUG": ["event recorded"]}
    for level, messages in expected.items():
        run = subprocess.run([sys.executable, "-c", code, level, FIXTURE], cwd=REPO,
                             capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines()[-1] == "ERROR None"
        lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        ours = [x for x in lines if x["logger"] == "ecs_event_ops.index"]
        assert [x["message"] for x in ours if x["level"] == "INFO"] == messages
        assert [x["level"] for x in ours if x["message"] == "bad element"] == ["WARNING"]
    run = subprocess.run([sys.executable, "-c", code, "loud", FIXTURE], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.stdout.splitlines()[-1] == (
        "ERROR ECS_EVENT_OPS_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
        "not 'loud'")
