"""deploy/s.mns.yaml (the seed's CloudMonitor -> MNS queue -> FC path) and the pre-deploy hooks.

s.mns.yaml is rendered by the real Serverless Devs CLI and validated with tests/test_deploy.py's
machinery (the fc3 component schema, then each trigger's config against its own definition; an
MNS-sourced eventbridge trigger keeps every required field). It must agree with s.yaml in
everything but the event functions' triggers and the relative paths, and its queues must be the
ones tools/wiring.py targets.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_deploy import (  # noqa: F401 - fixtures used by name
    FUNCTIONS,
    REPO,
    S_YAML,
    Doc,
    fc3_errors,
    fc3_functions,
    fc3_schema,
    render,
    rendered,
    s_cli,
    schemas_dir,
)
from tools.wiring import EVENT_FUNCTIONS, Mode, Wiring, queue_name

S_MNS = REPO / "deploy" / "s.mns.yaml"


@pytest.fixture(scope="module")
def rendered_mns(s_cli: Path) -> Doc:  # noqa: F811 - the fixture imported above
    return render(s_cli, S_MNS)


def test_s_mns_yaml_is_valid_fc3(rendered_mns: Doc, fc3_schema: Doc) -> None:  # noqa: F811
    functions = fc3_functions(rendered_mns)
    assert sorted(functions) == sorted(FUNCTIONS)
    errors = {name: fc3_errors(props, fc3_schema) for name, props in functions.items()}
    assert errors == {name: [] for name in functions}


def test_a_broken_mns_trigger_fails_the_same_validator(rendered_mns: Doc,
                                                      fc3_schema: Doc) -> None:  # noqa: F811
    props = copy.deepcopy(fc3_functions(rendered_mns)["auto_start"])
    del props["triggers"][0]["triggerConfig"]["runOptions"]
    assert fc3_errors(props, fc3_schema) == [
        "triggers[0].triggerConfig: 'runOptions' is a required property"]


def test_each_event_function_reads_its_own_queue_the_wiring_targets(rendered_mns: Doc) -> None:
    functions = fc3_functions(rendered_mns)
    for name in EVENT_FUNCTIONS:
        (trigger,) = _event_triggers(functions[name])
        source = trigger["triggerConfig"]["eventSourceConfig"]
        assert source["eventSourceType"] == "MNS"
        params = source["eventSourceParameters"]["sourceMNSParameters"]
        target = Wiring(Mode.MNS, "cn-hangzhou").target(name)
        assert (params["QueueName"], params["RegionId"]) == (target.queue, target.region)
        assert params["QueueName"] == queue_name("ecs-cms-event", name)
    queues = [_event_triggers(functions[n])[0]["triggerConfig"]["eventSourceConfig"][
        "eventSourceParameters"]["sourceMNSParameters"]["QueueName"] for n in EVENT_FUNCTIONS]
    assert len(set(queues)) == len(queues)  # a queue hands a message to one consumer only


def _event_triggers(props: dict[str, Any]) -> list[dict[str, Any]]:
    """The event-source triggers (EventBridge/MNS); timers are the same in both files."""
    return [t for t in props.get("triggers", []) if t["triggerType"] == "eventbridge"]


def _without_event_triggers(doc: Doc) -> dict[str, Any]:
    out = {}
    for name, original in fc3_functions(doc).items():
        props = copy.deepcopy(original)
        if name in EVENT_FUNCTIONS:
            props["triggers"] = [t for t in props["triggers"] if t["triggerType"] != "eventbridge"]
        props["code"] = Path(props["code"]).name
        out[name] = props
    return out


def test_s_mns_yaml_agrees_with_s_yaml_but_for_the_event_triggers(
        rendered: Doc, rendered_mns: Doc) -> None:  # noqa: F811
    assert _without_event_triggers(rendered_mns) == _without_event_triggers(rendered)
    assert rendered_mns["vars"] == rendered["vars"]
    hooks = {k: r["actions"]["pre-deploy"] for k, r in rendered_mns["resources"].items()}
    assert hooks == {k: [{"run": f"make package FUNCTIONS={k}", "path": "../"}]
                     for k in FUNCTIONS}


def test_pre_deploy_hooks_run_through_make_with_the_venv_interpreter(tmp_path: Path) -> None:
    """GIVEN s.yaml's hooks WHEN each is expanded by make from a bare environment (no venv
    activated, no python on PATH) THEN the command is the venv's interpreter running the
    packager for that function only."""
    doc = yaml.safe_load(S_YAML.read_text(encoding="utf-8"))
    hooks = {k: r["actions"]["pre-deploy"] for k, r in doc["resources"].items()}
    assert hooks == {k: [{"run": f"make package FUNCTIONS={k}", "path": "./"}]
                     for k in FUNCTIONS}
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    bare_path = os.pathsep.join(p for p in ("/usr/bin", "/bin") if Path(p).is_dir())
    completed = subprocess.run(
        [make, "-n", "-W", "requirements.txt", "package", "FUNCTIONS=auto_start"],
        cwd=REPO, env={"PATH": bare_path, "HOME": str(tmp_path)}, capture_output=True,
        text=True, timeout=30, check=False)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    # the venv is (re)built with python3 when missing, then the venv's own interpreter packages
    assert lines[0] == "test -x .venv/bin/python || python3 -m venv .venv"
    assert lines[-1] == ".venv/bin/python -m tools.package auto_start"
    assert not any(re.match(r"^python\b", line) for line in lines)
