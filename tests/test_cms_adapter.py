"""shared/cms.py's reading of CloudMonitor's own error shape: HTTP 200 with ``Success: false``
(its API pages show both shapes) is an error typed by ERROR_RULES, never a success. The real SDK
talks to a scripted local endpoint (the emulator answers errors as HTTP errors only)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.clients import Clients, CloudError, Credentials, TransientError
from shared.settings import Settings
from tests.http_receiver import HttpReceiver, Reply

IID = "i-bp1aaaaaaaaaaaaaaaa1"


def _failed(code: str) -> Reply:
    return Reply(200, {"RequestId": "R-1", "Success": False, "Code": code,
                       "Message": "denied by the rule engine"})


def _ok() -> Reply:
    points = json.dumps([
        {"timestamp": 1700000000000, "instanceId": IID, "Average": 12.5},
        {"timestamp": 1700000060000, "instanceId": IID, "Average": 15.0},
        {"timestamp": 1700000120000, "instanceId": "i-other", "Average": 99.0}])
    return Reply(200, {"RequestId": "R-2", "Success": True, "Code": "200", "Datapoints": points,
                       "Period": "60"})


def _cms(url: str, sleeps: list[float]) -> Any:
    settings = Settings.from_env({}, cloud_url=url, region="cn-hangzhou",
                                 api_backoff_base_s=0.01, api_max_attempts=3)
    return Clients.from_settings(settings, Credentials("ak", "sk"), sleep=sleeps.append).cms


def test_success_false_in_a_200_is_an_error_with_the_body_s_code() -> None:
    sleeps: list[float] = []
    with HttpReceiver([_failed("403")]) as rx:
        with pytest.raises(CloudError) as caught:
            _cms(f"http://127.0.0.1:{rx.port}", sleeps).last_reading(IID, "CPUUtilization")
        assert len(rx.requests) == 1
    assert (caught.value.code, caught.value.http_status, caught.value.request_id) == (
        "403", 403, "R-1")
    assert not caught.value.retryable and sleeps == []


def test_a_5xx_code_in_the_body_is_retried_then_the_latest_own_point_is_read() -> None:
    sleeps: list[float] = []
    with HttpReceiver([_failed("500"), _ok()]) as rx:
        reading = _cms(f"http://127.0.0.1:{rx.port}", sleeps).last_reading(IID, "CPUUtilization")
        assert len(rx.requests) == 2
    assert reading is not None
    assert (reading.metric, reading.value, reading.at.timestamp()) == (
        "CPUUtilization", 15.0, 1700000060.0)
    assert len(sleeps) == 1


def test_a_5xx_code_that_never_clears_is_a_transient_error() -> None:
    with HttpReceiver([_failed("500")] * 3) as rx:
        with pytest.raises(TransientError) as caught:
            _cms(f"http://127.0.0.1:{rx.port}", []).last_reading(IID, "CPUUtilization")
        assert len(rx.requests) == 3
    assert caught.value.code == "500"
