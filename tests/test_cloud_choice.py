"""One consent rule for every tool that sends API calls (tools/cloud_choice.py)."""

from __future__ import annotations

import argparse
import io

import pytest

from tools import doctor, gen_events, invoke, wiring
from tools.cloud_choice import BOTH, NEITHER, CloudChoiceError, resolve_cloud


def ns(cloud: str | None = None, real: bool = False) -> argparse.Namespace:
    return argparse.Namespace(cloud=cloud, real_cloud=real)


def test_rule() -> None:
    assert resolve_cloud(ns("http://127.0.0.1:1")) == "http://127.0.0.1:1"
    assert resolve_cloud(ns(real=True)) is None
    assert resolve_cloud(ns(), {"ECS_EVENT_OPS_CLOUD_URL": "http://127.0.0.1:2"}) == \
        "http://127.0.0.1:2"
    assert resolve_cloud(ns(), {}, required=False) is None
    with pytest.raises(CloudChoiceError, match="refusing to call the real"):
        resolve_cloud(ns())
    with pytest.raises(CloudChoiceError, match="exclude each other"):
        resolve_cloud(ns(real=True), {"ECS_EVENT_OPS_CLOUD_URL": "http://127.0.0.1:2"})
    with pytest.raises(CloudChoiceError, match=r"must be http\(s\)://host\[:port\], not 'ftp://x'"):
        resolve_cloud(ns("ftp://x"))


@pytest.mark.parametrize("tool", ["doctor", "invoke", "wiring", "gen_events"])
def test_every_tool_refuses_both_clouds_with_the_same_words(
    tool: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ECS_EVENT_OPS_CLOUD_URL", raising=False)
    both = ["--cloud", "http://127.0.0.1:9", "--real-cloud"]
    err = io.StringIO()
    if tool == "doctor":
        code = doctor.main(both, environ={}, stdout=io.StringIO(), stderr=err)
    elif tool == "invoke":
        code = invoke.main(["auto_start", "-", *both])
        err.write(capsys.readouterr().err)
    elif tool == "wiring":
        code = wiring.main(["apply", *both], environ={}, stdout=io.StringIO(), stderr=err)
    else:  # argparse keeps --db/--cloud/--real-cloud exclusive: a usage error too
        code = gen_events.main(["spot", *both], environ={}, stdout=io.StringIO(), stderr=err)
    assert code == 2
    if tool != "gen_events":
        assert BOTH in err.getvalue()


@pytest.mark.parametrize("tool", ["invoke", "wiring"])
def test_tools_that_need_a_cloud_refuse_none_with_the_same_words(
    tool: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ECS_EVENT_OPS_CLOUD_URL", raising=False)
    err = io.StringIO()
    if tool == "invoke":
        code = invoke.main(["auto_start", "-"])
        err.write(capsys.readouterr().err)
    else:
        code = wiring.main(["apply"], environ={}, stdout=io.StringIO(), stderr=err)
    assert code == 2 and NEITHER in err.getvalue()


def test_gen_events_checks_the_url() -> None:
    err = io.StringIO()
    code = gen_events.main(["spot", "--cloud", "127.0.0.1:9", "--account", "1"], environ={},
                           stdout=io.StringIO(), stderr=err)
    assert code == 2 and "--cloud must be http(s)://host[:port], not '127.0.0.1:9'" in \
        err.getvalue()

