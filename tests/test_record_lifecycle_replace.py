"""Issue 14: the lifecycle record captures the launch spec of opted-in instances at creation,
so the notice's five minutes are not spent on it (real SDK against the emulator)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.replace.spec import stored_spec
from shared.store import Store
from tests.helpers import emulator_for
from tools.emulator import Emulator
from tools.invoke import invoke_local

SPOT1 = "i-bp1spot000000000001"
TMPL1 = "i-bp1tmpl000000000001"
ESS1 = "i-bp1ess0000000000001"
PLAIN1 = "i-bp1plain00000000001"
CST = timezone(timedelta(hours=8))


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with emulator_for("replace.yaml", monkeypatch, start_delay_s=0.01) as emulator:
        yield emulator


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lifecycle.sqlite3'}"


def running(iid: str) -> dict[str, Any]:
    """A CloudMonitor Instance:StateChange payload, state Running."""
    local = datetime.now(timezone.utc).astimezone(CST)
    return {
        "ver": "1.0", "id": str(uuid.uuid4()), "product": "ECS",
        "resourceId": f"acs:ecs:cn-hangzhou:1234567890123456:instance/{iid}", "level": "INFO",
        "name": "Instance:StateChange", "userId": "1234567890123456",
        "eventTime": local.strftime("%Y%m%dT%H%M%S.") + f"{local.microsecond // 1000:03d}+0800",
        "regionId": "cn-hangzhou",
        "content": {"resourceId": iid, "resourceType": "ALIYUN::ECS::Instance",
                    "state": "Running"},
    }


def record(emu: Emulator, db_url: str, body: Any) -> dict[str, Any]:
    result = invoke_local("record_lifecycle", json.dumps(body).encode(), cloud_url=emu.url,
                          db_url=db_url)
    if result.error is not None:
        raise result.error
    assert isinstance(result.value, dict)
    return result.value


def test_new_opted_in_instances_get_their_launch_spec_with_their_snapshot(
    emu: Emulator, db_url: str
) -> None:
    """One DescribeInstanceRamRole for the batch, DescribeUserData per copied spec, the template
    version resolved for an instance from a template; owned and not-opted-in ones get none."""
    out = record(emu, db_url, [running(SPOT1), running(TMPL1), running(ESS1), running(PLAIN1)])
    assert sorted(out["snapshots"]["taken"]) == sorted([SPOT1, TMPL1, ESS1, PLAIN1])
    store = Store(db_url)
    spec = stored_spec(store, SPOT1)
    assert spec is not None
    assert (spec.ram_role_name, spec.user_data, spec.vswitch_id) == (
        "web-role", "c2VjcmV0PWh1bnRlcjI=", "vsw-bp1zoneh0000000001")
    template = stored_spec(store, TMPL1)
    assert template is not None
    assert (template.launch_template_id, template.launch_template_version,
            template.ram_role_name) == ("lt-bp1web000000000001", 2, "web-role")
    assert stored_spec(store, ESS1) is None and stored_spec(store, PLAIN1) is None
    actions = [c.action for c in emu.calls()]
    assert actions.count("DescribeInstanceRamRole") == 1
    assert actions.count("DescribeUserData") == 1
    assert actions.count("DescribeLaunchTemplateVersions") == 1


def test_the_notice_then_launches_from_the_stored_spec_without_reading_it_again(
    emu: Emulator, db_url: str
) -> None:
    record(emu, db_url, running(SPOT1))
    emu.clear_calls()
    emu.interrupt_spot(SPOT1)
    notice = emu.events()[-1]
    result = invoke_local("drain_spot", json.dumps(notice).encode(), cloud_url=emu.url,
                          db_url=db_url, env={"ECS_EVENT_OPS_LB_TAG": "app=web",
                                              "ECS_EVENT_OPS_REPLACE_RAM_ROLES": "web-role",
                                              "ECS_EVENT_OPS_DRAIN_TIME_S": "0.1"})
    assert result.error is None
    assert isinstance(result.value, dict)
    (replaced,) = result.value["replacements"]
    assert replaced["outcome"] == "launched"
    actions = {c.action for c in emu.calls()}
    assert "DescribeUserData" not in actions and "DescribeInstanceRamRole" not in actions
    run = [c for c in emu.calls() if c.action == "RunInstances" and c.code is None]
    assert run[0].params["UserData"] == "c2VjcmV0PWh1bnRlcjI="


def test_a_failed_capture_never_blocks_the_record(emu: Emulator, db_url: str) -> None:
    emu.set_faults(fail_next={"DescribeInstanceRamRole": ["InvalidParameter.AllEmpty:403"]})
    out = record(emu, db_url, running(SPOT1))
    assert out["snapshots"]["taken"] == [SPOT1]
    assert stored_spec(Store(db_url), SPOT1) is None
