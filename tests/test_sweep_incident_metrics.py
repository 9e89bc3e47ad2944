"""The sweep's escalation page carries the instance's last CPU and memory readings (CloudMonitor
DescribeMetricLast), so the person paged sees whether it died loaded or idle; unreadable
metrics never hold the page back. Both functions run on the local FC runtime (attributed calls:
the least-privilege check sees sweep's cms:DescribeMetricLast)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FLEETS
from tests.http_receiver import HttpReceiver
from tools.emulator import Emulator, load_fleet
from tools.invoke import InvokeResult, invoke_local

APP2 = "i-bp1as000000000000002"  # autostart.yaml: tag always
TIMER = json.dumps({"triggerTime": "2026-11-23T00:00:00Z", "triggerName": "sweep",
                    "payload": ""}).encode()
TIMEOUT_S = 1  # incident_timeout_s: the sweep escalates an incident open longer than this


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(load_fleet(FLEETS / "autostart.yaml"), start_delay_s=0.01) as emulator:
        for key, value in emulator.signing_environment().items():
            monkeypatch.setenv(key, value)
        yield emulator


def _env(hook: str) -> dict[str, str]:
    return {"ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01", "ECS_EVENT_OPS_API_MAX_ATTEMPTS": "2",
            "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": "0",
            "ECS_EVENT_OPS_INCIDENT_TIMEOUT_S": str(TIMEOUT_S),
            "ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": hook}


def _escalate(emu: Emulator, db: str, hook: str) -> InvokeResult:
    """app-2 crashes, auto_start starts it, it stops again before Running is reported; past
    the incident timeout the sweep runs."""
    before = len(emu.events())
    emu.stop_instance(APP2, by="crash")
    emu.wait_for_status(APP2, "Stopped")
    stopped = next(p for p in emu.events()[before:]
                   if p["resourceId"].endswith(APP2) and p["content"].get("state") == "Stopped")
    started = invoke_local("auto_start", json.dumps(stopped).encode(), cloud_url=emu.url,
                           db_url=db, env=_env(hook))
    assert started.error is None, started.error
    assert [d["decision"] for d in started.value["decisions"]] == ["started"]
    emu.wait_for_status(APP2, "Running")
    emu.stop_instance(APP2, by="crash")
    emu.wait_for_status(APP2, "Stopped")
    time.sleep(TIMEOUT_S + 0.2)
    emu.clear_calls()
    return invoke_local("sweep", TIMER, cloud_url=emu.url, db_url=db, env=_env(hook))


def _page(rx: HttpReceiver) -> dict[str, Any]:
    pages = [r.json for r in rx.requests if r.json.get("title") == "Auto-started instance not running"]
    assert len(pages) == 1, [r.json for r in rx.requests]
    page: dict[str, Any] = pages[0]
    return page


def test_the_escalation_page_carries_the_last_cpu_and_memory(emu: Emulator, tmp_path: Path) -> None:
    """GIVEN CloudMonitor's last readings of app-2 (CPU 97.3 %, memory 41.0 %) WHEN its incident
    is escalated THEN the page's text and fields carry both, read with one DescribeMetricLast
    per metric by the sweep."""
    emu.set_metric(APP2, "CPUUtilization", 97.3, timestamp_ms=1_795_000_000_000)
    emu.set_metric(APP2, "memory_usedutilization", 41.0, timestamp_ms=1_795_000_060_000)
    with HttpReceiver() as rx:
        result = _escalate(emu, f"sqlite:///{tmp_path / 's.sqlite3'}", rx.url_for("/hook"))
        assert result.error is None, result.error
        page = _page(rx)
    assert page["text"].endswith(
        "Last readings: CPU 97.3 % at 2026-11-18T11:06:40Z; memory 41.0 % at "
        "2026-11-18T11:07:40Z.")
    assert {k: page["fields"][k] for k in ("cpu_percent", "cpu_at", "memory_percent",
                                           "memory_at")} == {
        "cpu_percent": 97.3, "cpu_at": "2026-11-18T11:06:40Z",
        "memory_percent": 41.0, "memory_at": "2026-11-18T11:07:40Z"}
    metric_calls = [(c.function, c.params["MetricName"], json.loads(c.params["Dimensions"]))
                    for c in emu.calls() if c.action == "DescribeMetricLast"]
    assert metric_calls == [("sweep", "CPUUtilization", [{"instanceId": APP2}]),
                            ("sweep", "memory_usedutilization", [{"instanceId": APP2}])]


def test_no_agent_and_a_failing_read_still_page_and_say_why(emu: Emulator, tmp_path: Path) -> None:
    """GIVEN a CPU reading but no memory datapoint (no CloudMonitor agent), then CPU reads
    answering AccessForbidden WHEN the incident is escalated THEN the page is sent, says memory
    has no datapoint and CPU's read was refused, and carries no reading field for either."""
    emu.set_faults(fail_next={"DescribeMetricLast": ["AccessForbidden"]})
    with HttpReceiver() as rx:
        result = _escalate(emu, f"sqlite:///{tmp_path / 's.sqlite3'}", rx.url_for("/hook"))
        assert result.error is None, result.error
        page = _page(rx)
    assert page["text"].endswith(
        "Last readings: CPU unavailable (DescribeMetricLast answered AccessForbidden); memory "
        "unavailable (no datapoint: is the CloudMonitor agent installed?).")
    assert not {"cpu_percent", "memory_percent"} & set(page["fields"])
