"""Test helpers: the one loader for fixtures, and the SDK's way to the emulator."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from alibabacloud_tea_openapi.models import Config

    from shared.clients import Clients
    from shared.settings import Settings
    from tools.emulator import Emulator

FIXTURES = Path(__file__).parent / "fixtures"
EVENTS = FIXTURES / "events"
FLEETS = FIXTURES / "fleets"


def event_bytes(rel: str) -> bytes:
    """A fixture event exactly as a trigger would deliver it."""
    return (EVENTS / rel).read_bytes()


def expected_events() -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = json.loads((EVENTS / "expected.json").read_text())
    return data


def sdk_config(emu: Emulator, region: str = "cn-hangzhou", **options: Any) -> Config:
    """A Tea SDK config that reaches the emulator, signed with its first credential."""
    from alibabacloud_tea_openapi.models import Config

    cred = emu.credentials[0]
    return Config(endpoint=emu.endpoint, protocol="http", region_id=region,
                  access_key_id=cred["access_key_id"], access_key_secret=cred["access_key_secret"],
                  **options)


def api_error(call: Callable[[], object]) -> Any:
    """The TeaException ``call`` must raise."""
    from Tea.exceptions import TeaException

    with pytest.raises(TeaException) as info:
        call()
    return info.value


def clients_for(emu: Emulator, settings: Settings) -> Clients:
    """The functions' clients on ``settings``, signed with the emulator's first credential."""
    from shared.clients import Clients, Credentials

    cred = emu.credentials[0]
    return Clients.from_settings(
        settings, Credentials(cred["access_key_id"], cred["access_key_secret"]))


@contextmanager
def json_log() -> Iterator[io.StringIO]:
    """The project's log lines, as its JSON formatter writes them, while the block runs."""
    from shared.log import JsonFormatter

    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(JsonFormatter())
    root = logging.getLogger("ecs_event_ops")
    root.addHandler(capture)
    try:
        yield stream
    finally:
        root.removeHandler(capture)


class Killed(BaseException):
    """The function instance dies here (nothing runs after it, the lease is not released)."""


@dataclass
class Time:
    """Real time plus an offset; sleeping advances the offset only."""

    offset_s: float = 0.0

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset_s)

    def sleep(self, seconds: float) -> None:
        self.offset_s += seconds


@contextmanager
def emulator_for(fleet: str, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[Emulator]:
    """An emulator on ``fleets/<fleet>``, with its first credential in the ALIBABA_CLOUD_*
    variables the functions sign with, and no notification channel configured."""
    from tools.emulator import Emulator, load_fleet

    with Emulator(load_fleet(FLEETS / fleet), **{"start_delay_s": 0.02, **options}) as emulator:
        for name, value in emulator.signing_environment().items():
            monkeypatch.setenv(name, value)
        for name in ("WEBHOOK_URL", "DINGTALK_URL", "LARK_URL", "WECOM_URL", "SLACK_URL"):
            monkeypatch.delenv("ECS_EVENT_OPS_NOTIFY_" + name, raising=False)
        yield emulator
