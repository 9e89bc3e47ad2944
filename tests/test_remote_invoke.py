"""``python -m tools.invoke --remote``: a deployed function invoked with a fixture, over the real
FC 3.0 (alibabacloud_fc20230330) and FC 2.0 (aliyun-fc2) SDKs against the emulator's FC endpoints.

Successful invokes run the CLI as a subprocess (the served function logs to this process's
stdout, so the CLI's own stdout stays clean); calls that never reach a function run in-process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EVENTS, FLEETS
from tools.emulator import Call, Emulator, load_fleet
from tools.invoke import RemoteTarget, invoke_remote, main

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNNING_EVENT = EVENTS / "eventbridge" / "state_running.json"  # i-bp1ecr1234abcd5go2go
APP1 = "i-bp1as000000000000001"  # autostart.yaml: tag auto-start=true
SERVICE = "ecs-event-ops"
FC2 = ["--fc-version", "2", "--service", SERVICE]
REQUEST_ID = re.compile(r"^request id: (1-[0-9a-f]{8}-[0-9a-f]{24}) ", re.MULTILINE)
BROKEN = "broken"  # a version whose snapshot carries a setting every handler rejects
FAST_RETRIES = {"ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01", "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.01"}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(
        load_fleet(FLEETS / "autostart.yaml"), start_delay_s=0.005,
        # the emulator's ActionTrail shows calls at once here: no settle window to wait out
        function_env={"*": {**FAST_RETRIES, "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": "0"}},
        qualifiers={"dry-run": {"ECS_EVENT_OPS_DRY_RUN": "true"}, "live": {},
                    BROKEN: {"ECS_EVENT_OPS_API_MAX_ATTEMPTS": "0"}},
    ) as emulator:
        yield emulator


def credentials(emu: Emulator, *, secret: str | None = None) -> dict[str, str]:
    """The invoker's keys (the fleet's STS credential, so the token path is exercised too)."""
    cred = emu.credentials[0]
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": cred["access_key_id"],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret or cred["access_key_secret"],
        "ALIBABA_CLOUD_SECURITY_TOKEN": cred.get("security_token", ""),
    }


def cli(emu: Emulator, *args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "FC_"))}
    env.update(credentials(emu, secret=secret))
    return subprocess.run(
        [sys.executable, "-m", "tools.invoke", "--remote", *args, "--endpoint", emu.url],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )


def in_process(emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
               *args: str, secret: str | None = None) -> tuple[int, str, str]:
    for key, value in credentials(emu, secret=secret).items():
        monkeypatch.setenv(key, value)
    code = main(["--remote", *args, "--endpoint", emu.url])
    out, err = capsys.readouterr()
    return code, out, err


def fc_calls(emu: Emulator) -> list[Call]:
    return [c for c in emu.calls() if c.product == "fc"]


def write_event(tmp_path: Path, payload: Any) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return str(path)


# --- success -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version_args", [[], FC2], ids=["fc3", "fc2"])
def test_fixture_reaches_the_deployed_function_and_its_answer_is_printed(
        emu: Emulator, version_args: list[str]) -> None:
    """A fixture event is recorded by the served function; its JSON answer and request id print."""
    # GIVEN the emulator serving the repository's functions
    # WHEN record_lifecycle is invoked remotely with a real-format fixture
    done = cli(emu, "record_lifecycle", str(RUNNING_EVENT), *version_args)
    # THEN the CLI prints the function's own answer, pretty JSON, and FC's request id
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "recorded": 1, "duplicates": 0, "bad": [], "bad_count": 0, "refused": [],
        "store_refused": [], "snapshots": {"taken": [], "failed": ["i-bp1ecr1234abcd5go2go"]},
    }
    assert done.stdout.startswith("{\n  ")
    match = REQUEST_ID.search(done.stderr)
    assert match is not None, done.stderr
    # AND the emulator saw one signed InvokeFunction, and the function's own SDK call came back
    # to it, attributed to the function
    (invoke,) = fc_calls(emu)
    assert (invoke.action, invoke.status, invoke.code) == ("InvokeFunction", 200, None)
    assert invoke.params["FunctionName"] == "record_lifecycle"
    assert invoke.params["InvocationType"] == "Sync"
    assert invoke.access_key_id == emu.credentials[0]["access_key_id"]
    if version_args:
        assert invoke.params["ServiceName"] == SERVICE
    assert emu.actions_by_function() == {"record_lifecycle": {"ecs:DescribeInstances": 1}}


@pytest.mark.parametrize("version_args", [[], FC2], ids=["fc3", "fc2"])
def test_async_invoke_is_accepted_and_runs_in_the_background(
        emu: Emulator, version_args: list[str]) -> None:
    """--async: FC answers 202 with a request id; the function runs afterwards."""
    # WHEN invoked asynchronously
    done = cli(emu, "record_lifecycle", str(RUNNING_EVENT), "--async", *version_args)
    # THEN the CLI reports the acceptance, prints no answer, and the function still runs
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "accepted for asynchronous invocation" in done.stderr
    assert REQUEST_ID.search(done.stderr) is not None
    assert [(c.action, c.status, c.params["InvocationType"]) for c in fc_calls(emu)] == [
        ("InvokeFunction", 202, "Async")]
    deadline = time.monotonic() + 10
    while not emu.actions_by_function() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.actions_by_function() == {"record_lifecycle": {"ecs:DescribeInstances": 1}}


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version_args", [[], FC2], ids=["fc3", "fc2"])
def test_unknown_function_is_function_not_found(
        emu: Emulator, version_args: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown function: FC's 404 FunctionNotFound, exit 2, nothing printed on stdout."""
    code, out, err = in_process(emu, monkeypatch, capsys, "no_such_function", str(RUNNING_EVENT),
                                *version_args)
    assert code == 2
    assert out == ""
    assert err.startswith("error: FunctionNotFound: function 'no_such_function' does not exist "
                          "(HTTP 404, request id 1-")
    assert [(c.action, c.status, c.code) for c in fc_calls(emu)] == [
        ("InvokeFunction", 404, "FunctionNotFound")]


@pytest.mark.parametrize("version_args", [[], FC2], ids=["fc3", "fc2"])
def test_handler_error_is_fc_unhandled_error_and_exit_1(
        emu: Emulator, version_args: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A handler that raises: FC's UnhandledInvocationError; the CLI prints ErrorType: message."""
    # GIVEN a published version whose environment every handler rejects
    # WHEN it is invoked
    code, out, err = in_process(emu, monkeypatch, capsys, "record_lifecycle",
                                str(RUNNING_EVENT), "--qualifier", BROKEN, *version_args)
    # THEN exit 1 with the exception's type and message, after the request id; no answer
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert REQUEST_ID.match(lines[-2]) is not None
    assert "(record_lifecycle:broken, FC " in lines[-2]
    assert lines[-1] == "SettingsError: ECS_EVENT_OPS_API_MAX_ATTEMPTS must be at least 1"
    assert [(c.status, c.code, c.params["Qualifier"]) for c in fc_calls(emu)] == [
        (200, "UnhandledInvocationError", BROKEN)]
    assert emu.actions_by_function() == {}  # it failed before any cloud call


def test_unhandled_error_wire_shape_is_fcs(emu: Emulator) -> None:
    """On the wire: HTTP 200, x-fc-error-type, body {errorMessage, errorType, stackTrace}."""
    cred = emu.credentials[0]
    target = RemoteTarget(function="record_lifecycle", fc_version="3", endpoint=emu.url,
                          access_key_id=cred["access_key_id"],
                          access_key_secret=cred["access_key_secret"],
                          security_token=cred["security_token"], qualifier=BROKEN)
    answer = invoke_remote(target, RUNNING_EVENT.read_bytes())
    assert answer.error_type == "UnhandledInvocationError"
    assert answer.request_id.startswith("1-")
    assert sorted(answer.error) == ["errorMessage", "errorType", "stackTrace"]
    assert answer.error["errorType"] == "SettingsError"
    frames = answer.error["stackTrace"]
    assert frames and all(len(frame) == 4 and frame[0].startswith('File "') for frame in frames)


@pytest.mark.parametrize(("version_args", "expected"), [
    ([], "error: SignatureDoesNotMatch: "),
    (FC2, "error: SignatureNotMatch: The request signature we calculated does not match"),
], ids=["fc3", "fc2"])
def test_wrong_secret_is_a_clear_signature_error(
        emu: Emulator, version_args: list[str], expected: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong secret: the service's signature error, exit 2, and the function never runs."""
    code, out, err = in_process(emu, monkeypatch, capsys, "record_lifecycle",
                                str(RUNNING_EVENT), *version_args, secret="not-the-secret")
    assert code == 2
    assert out == ""
    assert err.startswith(expected), err
    assert "not-the-secret" not in err
    assert "auto-start-sts-token" not in err  # fc2 logs request headers: they must not show
    assert emu.actions_by_function() == {}


def test_fc2_needs_a_service(capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """FC 2.0 without --service: refused before any call, saying what is missing."""
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIkey")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    code = main(["--remote", "record_lifecycle", str(RUNNING_EVENT), "--fc-version", "2",
                 "--endpoint", "http://127.0.0.1:9"])
    assert code == 2
    assert capsys.readouterr().err == (
        "error: FC 2.0 functions live in a service: pass --service NAME\n")


def test_missing_credentials_and_local_only_options_are_refused(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """No keys in the environment, or a local-only option with --remote: exit 2, nothing sent."""
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--remote", "record_lifecycle", str(RUNNING_EVENT), "--account-id", "1"]) == 2
    assert "set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET" in (
        capsys.readouterr().err)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIkey")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    assert main(["--remote", "record_lifecycle", str(RUNNING_EVENT), "--db", "sqlite://"]) == 2
    assert capsys.readouterr().err.startswith("error: --db applies to local invokes only")
    assert main(["record_lifecycle", str(RUNNING_EVENT), "--service", "svc"]) == 2
    assert capsys.readouterr().err == "error: --service applies to --remote invokes only\n"


# --- dry run --------------------------------------------------------------------------------------


def stopped_event(emu: Emulator, iid: str) -> dict[str, Any]:
    before = len(emu.events())
    emu.stop_instance(iid, by="crash")
    emu.wait_for_status(iid, "Stopped")
    return next(p for p in emu.events()[before:]
                if p["resourceId"].endswith(iid) and p["content"].get("state") == "Stopped")


@pytest.mark.parametrize("version_args", [[], FC2], ids=["fc3", "fc2"])
def test_dry_run_goes_through_the_dry_run_alias_and_changes_nothing(
        emu: Emulator, tmp_path: Path, version_args: list[str]) -> None:
    """--dry-run checks the dry-run alias's environment, then invokes it: DryRun calls only."""
    # GIVEN an opted-in instance that crashed, and its Stopped event
    event_file = write_event(tmp_path, stopped_event(emu, APP1))
    # WHEN auto_start is smoke-invoked with --dry-run
    done = cli(emu, "auto_start", event_file, "--dry-run", *version_args)
    # THEN the alias's configuration was read first, then the alias was invoked
    assert done.returncode == 0, done.stderr
    assert [(c.action, c.params.get("Qualifier")) for c in fc_calls(emu)] == [
        ("GetFunction", "dry-run"), ("InvokeFunction", "dry-run")]
    # AND the function decided to start, but only with DryRun: the instance stays Stopped
    starts = [c for c in emu.calls() if c.action in ("StartInstance", "StartInstances")]
    assert starts, emu.calls()
    assert all(c.params.get("DryRun", "").lower() == "true" for c in starts)
    assert emu.instance(APP1)["status"] == "Stopped"
    assert "dry-run" in done.stderr


@pytest.mark.parametrize("version_args", [[], FC2], ids=["fc3", "fc2"])
def test_dry_run_is_refused_when_the_qualifier_is_not_a_dry_run_deployment(
        emu: Emulator, version_args: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run against a live version: refused with the reason and the fix; never invoked."""
    code, out, err = in_process(emu, monkeypatch, capsys, "auto_start", str(RUNNING_EVENT),
                                "--dry-run", "--qualifier", "live", *version_args)
    assert code == 2
    assert out == ""
    assert err.startswith("error: refusing --dry-run: auto_start qualifier 'live' runs with "
                          "ECS_EVENT_OPS_DRY_RUN=''. FC has no per-invocation dry run")
    assert "point the alias 'dry-run' at that version" in err
    assert [c.action for c in fc_calls(emu)] == ["GetFunction"]


def test_dry_run_without_the_alias_reports_alias_not_found(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run where no dry-run alias was deployed: FC's AliasNotFound, never invoked."""
    with Emulator(load_fleet(FLEETS / "autostart.yaml")) as bare:
        code, _, err = in_process(bare, monkeypatch, capsys, "auto_start", str(RUNNING_EVENT),
                                  "--dry-run")
        assert code == 2
        assert err.startswith("error: AliasNotFound: alias 'dry-run' of function 'auto_start' "
                              "does not exist (HTTP 404")
        assert [c.action for c in fc_calls(bare)] == ["GetFunction"]
