"""shared.clients: ECS adapter, error translation, retries and credentials.

The real Tea SDK talks HTTP to the emulator (tools/emulator); nothing is patched. Retries use a
recording fake ``sleep``, so the retry tests assert the exact number of attempts the emulator
saw and the delays the policy chose, without waiting.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from shared.clients import (
    AuthError,
    Clients,
    CloudError,
    Credentials,
    EcsClient,
    Instance,
    StartOutcome,
    ThrottledError,
    TransientError,
    credentials_from_context,
)
from shared.settings import Settings
from tests.helpers import FLEETS
from tools.emulator import Emulator, Fleet, load_fleet

REPO_ROOT = FLEETS.parent.parent.parent

WEB1 = "i-bp1aaaaaaaaaaaaaaaa1"  # Running, tags auto-start/env, public ip
WEB2 = "i-bp1aaaaaaaaaaaaaaaa2"  # Running
BATCH1 = "i-bp1aaaaaaaaaaaaaaaa3"  # Stopped
SPOT1 = "i-bp1aaaaaaaaaaaaaaaa4"  # Running spot, interruption behaviour Stop
LOCKED1 = "i-bp1aaaaaaaaaaaaaaaa5"  # Stopped, financial lock
SEC1 = "i-bp1aaaaaaaaaaaaaaaa6"  # Stopped, security lock
STOPPED1 = "i-bp1aaaaaaaaaaaaaaaa7"  # Stopped, StopCharging
ABSENT = "i-bp1zzzzzzzzzzzzzzzz9"  # well-formed, never existed


class RecordingSleep:
    """A fake ``time.sleep`` that only remembers what it was asked to wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "basic.yaml"), start_delay_s=0.01) as emulator:
        yield emulator


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"cloud_url": url, "region": "cn-hangzhou", "api_max_attempts": 4,
                              "api_backoff_base_s": 0.2, "api_backoff_max_s": 5.0,
                              "api_connect_timeout_ms": 1000, "api_read_timeout_ms": 5000}
    values.update(overrides)
    return Settings.from_env({}, **values)


def clients_for(emu: Emulator, sleep: RecordingSleep, *, credential: int = 0,
                secret: str | None = None, token: str | None = None,
                url: str | None = None, **overrides: Any) -> Clients:
    cred = emu.credentials[credential]
    creds = Credentials(cred["access_key_id"], secret or cred["access_key_secret"],
                        token or cred.get("security_token"))
    return Clients.from_settings(settings_for(url or emu.url, **overrides), creds, sleep=sleep)


def calls_of(emu: Emulator, action: str) -> list[Any]:
    return [c for c in emu.calls() if c.action == action]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- DescribeInstances -------------------------------------------------------------------------


def test_describe_instances_parses_every_attribute(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN the basic fleet WHEN describing two instances THEN typed Instances come back."""
    ecs = clients_for(emu, sleep).ecs

    found = ecs.describe_instances([WEB1, SPOT1])

    assert set(found) == {WEB1, SPOT1}
    web = found[WEB1]
    assert isinstance(web, Instance)
    assert (web.name, web.status, web.instance_type, web.zone_id, web.region_id) == (
        "web-1", "Running", "ecs.g7.large", "cn-hangzhou-h", "cn-hangzhou")
    assert web.tag("auto-start") == "true"
    assert web.tag("env") == "prod"
    assert web.tag("x") is None
    assert web.private_ips == ("10.0.0.11",)
    assert web.public_ips == ("47.96.10.11",)
    assert web.eni_ids == ("eni-bp1aaaaaaaaaaaaaaaa1",)  # the emulator's default primary ENI
    assert not web.is_spot
    assert web.lock_reasons == ()
    spot = found[SPOT1]
    assert spot.is_spot
    assert spot.spot_strategy == "SpotAsPriceGo"
    assert spot.spot_interruption_behavior == "Stop"
    snap = web.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["tags"] == {"auto-start": "true", "env": "prod"}
    assert snap["eni_ids"] == ["eni-bp1aaaaaaaaaaaaaaaa1"]
    [call] = calls_of(emu, "DescribeInstances")
    assert json.loads(call.params["InstanceIds"]) == [WEB1, SPOT1]
    assert call.params["RegionId"] == "cn-hangzhou"


def test_describe_instances_lower_cases_lock_reasons(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN locked instances WHEN described THEN lock reasons are lower-cased strings."""
    found = clients_for(emu, sleep).ecs.describe_instances([LOCKED1, SEC1])

    assert found[LOCKED1].lock_reasons == ("financial",)
    assert found[SEC1].lock_reasons == ("security",)
    assert found[LOCKED1].stopped_mode == "StopCharging"


def test_describe_instances_omits_released_ids(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN a released and a never-existing id WHEN described THEN both are simply absent."""
    emu.release(BATCH1)

    found = clients_for(emu, sleep).ecs.describe_instances([BATCH1, ABSENT, WEB2])

    assert list(found) == [WEB2]


def test_describe_instances_rejects_bad_ids_before_any_call(
    emu: Emulator, sleep: RecordingSleep
) -> None:
    """GIVEN a malformed id WHEN describing THEN ValueError and no request is sent."""
    ecs = clients_for(emu, sleep).ecs

    with pytest.raises(ValueError, match="not ECS instance ids"):
        ecs.describe_instances([WEB1, '"]; DROP'])

    assert emu.calls() == []


def _big_fleet(count: int) -> Fleet:
    instances = [{"id": f"i-big{n:05d}", "name": f"n{n}", "status": "Running",
                  "tags": {"team": "a" if n % 2 else "b"}} for n in range(count)]
    return Fleet.from_dict({"instances": instances})


def test_describe_instances_chunks_by_100(sleep: RecordingSleep) -> None:
    """GIVEN 150 ids WHEN described THEN two calls of 100 and 50 ids, all found."""
    with Emulator(_big_fleet(150), start_delay_s=0.01) as emu:
        ids = [f"i-big{n:05d}" for n in range(150)]
        found = clients_for(emu, sleep).ecs.describe_instances(ids)
        sizes = [len(json.loads(c.params["InstanceIds"])) for c in calls_of(emu, "DescribeInstances")]

    assert sorted(found) == sorted(ids)
    assert sizes == [100, 50]


def test_list_instances_reads_every_page_with_tag_filter(sleep: RecordingSleep) -> None:
    """GIVEN 250 instances, half tagged team=a WHEN listed by tag THEN all 125, over 2 pages."""
    with Emulator(_big_fleet(250), start_delay_s=0.01) as emu:
        listed = clients_for(emu, sleep).ecs.list_instances(tags={"team": "a"}, status="Running")
        calls = calls_of(emu, "DescribeInstances")

    assert len(listed) == 125
    assert all(i.tag("team") == "a" for i in listed)
    assert [c.params["PageNumber"] for c in calls] == ["1", "2"]
    assert calls[0].params["Tag.1.Key"] == "team"
    assert calls[0].params["Tag.1.Value"] == "a"
    assert calls[0].params["Status"] == "Running"


# --- StartInstance -----------------------------------------------------------------------------


def test_start_instance_starts_a_stopped_instance(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN a stopped instance WHEN started THEN outcome started and it reaches Running."""
    result = clients_for(emu, sleep).ecs.start_instance(BATCH1)

    assert result.outcome is StartOutcome.STARTED
    assert result.outcome.value == "started"
    assert result.ok
    assert result.code is None
    emu.wait_for_status(BATCH1, "Running")
    [call] = calls_of(emu, "StartInstance")
    assert call.params == {"InstanceId": BATCH1}


def test_start_instance_dry_run_changes_nothing(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN a stopped instance WHEN started with DryRun THEN dry_run_ok and still Stopped."""
    result = clients_for(emu, sleep).ecs.start_instance(BATCH1, dry_run=True)

    assert result.outcome == "dry_run_ok"
    assert result.code == "DryRunOperation"
    assert emu.instance(BATCH1)["status"] == "Stopped"
    [call] = calls_of(emu, "StartInstance")
    assert call.params["DryRun"].lower() == "true"


@pytest.mark.parametrize(
    "case",
    [
        (WEB1, None, "already_running", "IncorrectInstanceStatus", False),
        (ABSENT, None, "failed", "InvalidInstanceId.NotFound", False),
        (SEC1, None, "failed", "InstanceLockedForSecurity", False),
        (LOCKED1, None, "failed", "InsufficientBalance", False),
        (STOPPED1, "OperationDenied.NoStock", "failed", "OperationDenied.NoStock", True),
        (STOPPED1, "InstanceExpired", "failed", "InstanceExpired", False),
        (STOPPED1, "DiskInArrears", "failed", "DiskInArrears", False),
    ],
    ids=lambda case: str(case[3]),
)
def test_start_instance_maps_each_documented_error(
    emu: Emulator, sleep: RecordingSleep, case: tuple[str, str | None, str, str, bool]
) -> None:
    """GIVEN an instance StartInstance refuses WHEN started THEN one call, a typed verdict."""
    iid, start_error, outcome, code, retryable = case
    if start_error:
        emu.set_faults(start_error={iid: start_error})

    result = clients_for(emu, sleep).ecs.start_instance(iid)

    assert (result.instance_id, result.outcome, result.code, result.retryable) == (
        iid, outcome, code, retryable)
    assert result.message
    assert len(calls_of(emu, "StartInstance")) == 1  # never retried
    assert sleep.delays == []


def test_start_instance_retries_throttling_then_succeeds(
    emu: Emulator, sleep: RecordingSleep
) -> None:
    """GIVEN two throttled answers WHEN starting THEN 3 calls, 2 jittered sleeps, started."""
    emu.set_faults(fail_next={"StartInstance": ["Throttling.User", "Throttling.User"]})

    result = clients_for(emu, sleep).ecs.start_instance(BATCH1)

    assert result.outcome == "started"
    assert [c.code for c in calls_of(emu, "StartInstance")] == [
        "Throttling.User", "Throttling.User", None]
    assert len(sleep.delays) == 2
    # full jitter: uniform in [0, min(max, base * 2**(n-1))]
    assert 0.0 <= sleep.delays[0] <= 0.2
    assert 0.0 <= sleep.delays[1] <= 0.4


def test_retry_honours_x_acs_retry_after(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN a throttle answer with x-acs-retry-after 1500 ms WHEN called THEN it waits 1.5 s."""
    emu.set_faults(retry_after_ms=1500, fail_next={"DescribeInstances": ["Throttling.User"]})

    found = clients_for(emu, sleep).ecs.describe_instances([WEB1])

    assert list(found) == [WEB1]
    assert sleep.delays == [1.5]
    assert len(calls_of(emu, "DescribeInstances")) == 2


@pytest.mark.parametrize("code", ["Throttling", "Throttling.Api", "ServiceUnavailable",
                                  "InternalError", "ConnectionDropped"])
def test_each_retryable_failure_is_retried_once_then_succeeds(
    emu: Emulator, sleep: RecordingSleep, code: str
) -> None:
    """GIVEN one retryable failure WHEN describing THEN a second call succeeds."""
    emu.set_faults(fail_next={"DescribeInstances": [code]})

    found = clients_for(emu, sleep).ecs.describe_instances([WEB1])

    assert list(found) == [WEB1]
    assert len(calls_of(emu, "DescribeInstances")) == 2
    assert len(sleep.delays) == 1


def test_5xx_past_the_retry_budget_raises_transient_error(
    emu: Emulator, sleep: RecordingSleep
) -> None:
    """GIVEN InternalError on every attempt WHEN starting THEN TransientError after 4 calls."""
    emu.set_faults(fail_next={"StartInstance": ["InternalError"] * 5})

    with pytest.raises(TransientError) as caught:
        clients_for(emu, sleep).ecs.start_instance(BATCH1)

    err = caught.value
    assert (err.code, err.http_status, err.attempts, err.action) == (
        "InternalError", 500, 4, "StartInstance")
    assert err.retryable
    assert err.request_id
    assert BATCH1 in str(err)
    assert BATCH1 in err.message
    assert "after 4 attempts" in str(err)
    assert len(calls_of(emu, "StartInstance")) == 4
    assert len(sleep.delays) == 3
    assert all(0.0 <= d <= cap for d, cap in zip(sleep.delays, (0.2, 0.4, 0.8), strict=True))
    assert not isinstance(err.__cause__, CloudError)  # chained from the SDK exception
    assert err.__cause__ is not None


def test_throttling_past_the_budget_is_a_throttled_transient_error(
    emu: Emulator, sleep: RecordingSleep
) -> None:
    """GIVEN throttling on every attempt WHEN describing THEN ThrottledError (a TransientError)."""
    emu.set_faults(fail_next={"DescribeInstances": ["Throttling.User"] * 4})

    with pytest.raises(ThrottledError) as caught:
        clients_for(emu, sleep, api_max_attempts=2).ecs.describe_instances([WEB1])

    assert isinstance(caught.value, TransientError)
    assert caught.value.attempts == 2
    assert len(calls_of(emu, "DescribeInstances")) == 2


def test_refused_connection_raises_transient_error(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN a closed port WHEN describing THEN the connection error is retried, then raised."""
    clients = clients_for(emu, sleep, url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(TransientError) as caught:
        clients.ecs.describe_instances([WEB1])

    assert caught.value.attempts == 4
    assert len(sleep.delays) == 3
    assert caught.value.http_status is None
    assert "Connection" in caught.value.code
    assert emu.calls() == []


def test_wrong_secret_raises_auth_error_without_retry(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN a wrong AccessKey secret WHEN describing THEN AuthError SignatureDoesNotMatch."""
    with pytest.raises(AuthError) as caught:
        clients_for(emu, sleep, secret="not-the-secret").ecs.describe_instances([WEB1])

    assert caught.value.code == "SignatureDoesNotMatch"
    assert not caught.value.retryable
    assert caught.value.attempts == 1
    assert [c.code for c in emu.calls()] == ["SignatureDoesNotMatch"]
    assert sleep.delays == []


def test_auth_error_from_start_instance_raises(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN a wrong secret WHEN starting THEN AuthError is raised, not a 'failed' result."""
    with pytest.raises(AuthError):
        clients_for(emu, sleep, secret="nope").ecs.start_instance(BATCH1)


def test_sts_token_credentials_work(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN STS keys with their token WHEN describing THEN the call is signed and accepted."""
    sts = emu.credentials[1]
    assert sts.get("security_token")

    found = clients_for(emu, sleep, credential=1).ecs.describe_instances([WEB1])

    assert list(found) == [WEB1]
    assert emu.calls()[-1].access_key_id == sts["access_key_id"]


def test_no_explicit_credentials_use_the_default_chain_when_asked(emu: Emulator) -> None:
    """GIVEN no Credentials, ECS_EVENT_OPS_CREDENTIALS=default-chain and keys in the environment
    WHEN calling THEN the chain finds them.

    A subprocess, because alibabacloud_credentials reads these variables once, at import.
    """
    cred = emu.credentials[0]
    code = (
        "import os\n"
        "from shared.clients import Clients\n"
        "from shared.settings import Settings\n"
        "s = Settings.from_env({}, cloud_url=os.environ['TEST_CLOUD_URL'], api_max_attempts=1,\n"
        "                      credentials='default-chain')\n"
        f"print(sorted(Clients.from_settings(s, None).ecs.describe_instances(['{WEB1}'])))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": cred["access_key_id"],
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": cred["access_key_secret"],
                "TEST_CLOUD_URL": emu.url})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, cwd=str(REPO_ROOT), env=env, timeout=60)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"['{WEB1}']"
    assert emu.calls()[-1].access_key_id == cred["access_key_id"]


def test_sts_keys_with_a_wrong_token_raise_auth_error(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN STS keys with the wrong token WHEN describing THEN AuthError, one attempt."""
    with pytest.raises(AuthError) as caught:
        clients_for(emu, sleep, credential=1, token="forged").ecs.describe_instances([WEB1])

    assert caught.value.code == "InvalidSecurityToken.MismatchWithAccessKey"
    assert len(emu.calls()) == 1


# --- StartInstances / StopInstance --------------------------------------------------------------


def test_start_instances_success_first_reports_each_instance(
    emu: Emulator, sleep: RecordingSleep
) -> None:
    """GIVEN a mixed batch WHEN started together THEN one SuccessFirst call, per-id verdicts."""
    ids = [BATCH1, WEB1, SEC1, STOPPED1, ABSENT]

    results = clients_for(emu, sleep).ecs.start_instances(ids)

    assert [(r.instance_id, r.outcome.value, r.code) for r in results] == [
        (BATCH1, "started", None),
        (WEB1, "already_running", "IncorrectInstanceStatus"),
        (SEC1, "failed", "InstanceLockedForSecurity"),
        (STOPPED1, "started", None),
        (ABSENT, "failed", "InvalidInstanceId.NotFound"),
    ]
    [call] = calls_of(emu, "StartInstances")
    assert call.params["BatchOptimization"] == "SuccessFirst"
    assert [call.params[f"InstanceId.{n}"] for n in range(1, 6)] == ids


def test_start_instances_dry_run(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN startable instances WHEN started with DryRun THEN dry_run_ok, nothing starts."""
    results = clients_for(emu, sleep).ecs.start_instances([BATCH1, STOPPED1], dry_run=True)

    assert [r.outcome for r in results] == [StartOutcome.DRY_RUN_OK] * 2
    assert emu.instance(BATCH1)["status"] == "Stopped"


def test_start_instances_chunks_by_100(sleep: RecordingSleep) -> None:
    """GIVEN 120 running instances WHEN started THEN 2 calls (100 + 20), all already running."""
    with Emulator(_big_fleet(120), start_delay_s=0.01) as emu:
        ids = [f"i-big{n:05d}" for n in range(120)]
        results = clients_for(emu, sleep).ecs.start_instances(ids)
        sizes = [len(c.params) - 2 for c in calls_of(emu, "StartInstances")]

    assert sizes == [100, 20]  # minus RegionId and BatchOptimization
    assert [r.outcome for r in results] == [StartOutcome.ALREADY_RUNNING] * 120


def test_stop_instance_and_its_dry_run(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN a running instance WHEN stopped with DryRun THEN unchanged; for real THEN Stopped."""
    ecs = clients_for(emu, sleep).ecs

    ecs.stop_instance(WEB2, dry_run=True)
    assert emu.instance(WEB2)["status"] == "Running"
    ecs.stop_instance(WEB2)
    emu.wait_for_status(WEB2, "Stopped")

    with pytest.raises(CloudError) as caught:
        ecs.stop_instance(BATCH1)  # already stopped
    assert caught.value.code == "IncorrectInstanceStatus"


# --- construction, credentials, import cost -----------------------------------------------------


def test_adapter_takes_an_injected_sdk_client(emu: Emulator, sleep: RecordingSleep) -> None:
    """GIVEN an SDK client built elsewhere WHEN wrapped in EcsClient THEN it is used as is."""
    from shared.clients import build_sdk_client

    cred = emu.credentials[0]
    sdk = build_sdk_client("ecs", settings_for(emu.url),
                           Credentials(cred["access_key_id"], cred["access_key_secret"]))
    ecs = EcsClient(sdk, "cn-hangzhou", max_attempts=1, sleep=sleep)

    assert list(ecs.describe_instances([WEB1])) == [WEB1]


def test_credentials_from_python310_context() -> None:
    """GIVEN an FC python3.10 context WHEN read THEN its STS keys win over the environment."""
    context = SimpleNamespace(credentials=SimpleNamespace(
        access_key_id="STS.ctx", access_key_secret="ctx-secret", security_token="ctx-token"))
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "env-id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-s"}

    assert credentials_from_context(context, env) == Credentials("STS.ctx", "ctx-secret",
                                                                 "ctx-token")


def test_credentials_from_python312_environment() -> None:
    """GIVEN a python3.12 context (no credentials) WHEN read THEN the environment keys are used."""
    context = SimpleNamespace(request_id="r-1", function=SimpleNamespace(name="f"))
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.env", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-s",
           "ALIBABA_CLOUD_SECURITY_TOKEN": "env-token"}

    assert credentials_from_context(context, env) == Credentials("STS.env", "env-s", "env-token")
    no_token = {k: v for k, v in env.items() if k != "ALIBABA_CLOUD_SECURITY_TOKEN"}
    assert credentials_from_context(None, no_token) == Credentials("STS.env", "env-s", None)


def test_credentials_absent_means_default_chain() -> None:
    """GIVEN empty context credentials and no keys in env WHEN read THEN None (default chain)."""
    context = SimpleNamespace(credentials=SimpleNamespace(
        access_key_id="", access_key_secret="", security_token=""))

    assert credentials_from_context(context, {}) is None
    assert credentials_from_context(None, {"ALIBABA_CLOUD_ACCESS_KEY_ID": "only-id"}) is None


def test_credentials_repr_hides_secrets() -> None:
    """GIVEN credentials WHEN logged via repr THEN neither secret nor token appears."""
    text = repr(Credentials("id-1", "very-secret", "very-token"))
    assert "id-1" in text
    assert "very-secret" not in text
    assert "very-token" not in text


def test_import_is_cheap_and_clients_are_lazy() -> None:
    """GIVEN a fresh interpreter WHEN shared.clients is imported and Clients built THEN no SDK."""
    code = (
        "import sys, shared.clients as c\n"
        "from shared.settings import Settings\n"
        "clients = c.Clients.from_settings(Settings.from_env({}), None)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0].startswith("
        "('alibabacloud', 'Tea', 'darabonba', 'tenacity', 'requests')))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(REPO_ROOT))
    assert out.stdout.strip() == ""


def test_backoff_is_full_jitter_capped_and_retry_after_is_capped() -> None:
    """GIVEN the policy WHEN delays are drawn at their ceiling THEN base*2^(n-1) up to max."""
    from shared.retry import RETRY_AFTER_CAP_S, RetryPolicy

    top = RetryPolicy(backoff_base_s=0.2, backoff_max_s=5.0, uniform=lambda lo, hi: hi)
    bottom = RetryPolicy(uniform=lambda lo, hi: lo)

    assert [top.delay(n, None) for n in range(1, 8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert bottom.delay(3, None) == 0.0
    assert top.delay(1, 2.5) == 2.5
    assert top.delay(1, 3600.0) == RETRY_AFTER_CAP_S
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
