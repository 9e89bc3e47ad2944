"""tests/network_guard.py: the suite cannot reach another machine, and says so when it tries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from shared.clients import Clients, Credentials, TransientError
from shared.settings import Settings
from tests.network_guard import GUARD, OffMachineConnectionError, is_local_address

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_a_connection_to_another_address_is_refused_and_recorded() -> None:
    """GIVEN the guard WHEN connecting to 192.0.2.1 (TEST-NET) or resolving a public name THEN
    OffMachineConnectionError at once, and each attempt is recorded for the test's teardown."""
    with pytest.raises(OffMachineConnectionError):
        socket.create_connection(("192.0.2.1", 443), timeout=0.5)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(
        OffMachineConnectionError
    ):
        sock.connect_ex(("100.100.100.200", 80))  # the instance metadata service
    with pytest.raises(OffMachineConnectionError):
        socket.getaddrinfo("ecs-cn-hangzhou.aliyuncs.com", 443)

    assert GUARD.take() == [
        "connect ('192.0.2.1', 443)",
        "connect_ex ('100.100.100.200', 80)",
        "getaddrinfo 'ecs-cn-hangzhou.aliyuncs.com'",
    ]


def test_an_sdk_call_to_the_real_cloud_is_stopped_before_it_leaves(monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    """GIVEN no cloud_url (the SDK resolves the real endpoint) WHEN a call is made THEN it
    fails as a connection error, and the guard names the host it would have resolved."""
    settings = Settings.from_env({}, api_max_attempts=1, api_connect_timeout_ms=500)
    clients = Clients.from_settings(settings, Credentials("LTAIexampleKey01", "secret"))

    with pytest.raises(TransientError):
        clients.lb.list_load_balancers()

    assert GUARD.take() == ["getaddrinfo 'slb.aliyuncs.com'"]


def test_loopback_and_unix_sockets_are_allowed() -> None:
    """GIVEN a listener on 127.0.0.1 and a unix socket WHEN connecting THEN both work."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
        with socket.create_connection(("localhost", server.getsockname()[1]), timeout=2):
            pass
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "s")
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(path)
            server.listen(1)
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(path)
    assert GUARD.take() == []


@pytest.mark.parametrize(("family", "address", "local"), [
    (socket.AF_INET, ("127.0.0.1", 80), True),
    (socket.AF_INET, ("127.255.0.9", 80), True),
    (socket.AF_INET, ("localhost", 80), True),
    (socket.AF_INET6, ("::1", 80, 0, 0), True),
    (socket.AF_INET6, ("::ffff:127.0.0.1", 80, 0, 0), True),
    (socket.AF_UNIX, "/tmp/x.sock", True),
    (socket.AF_INET, ("10.0.0.1", 80), False),
    (socket.AF_INET, ("128.0.0.1", 80), False),
    (socket.AF_INET6, ("::ffff:10.0.0.1", 80, 0, 0), False),
    (socket.AF_INET6, ("2001:db8::1", 80, 0, 0), False),
    (socket.AF_INET, ("example.com", 80), False),
])
def test_which_addresses_are_local(family: int, address: object, local: bool) -> None:
    assert is_local_address(family, address) is local


def test_a_test_that_reaches_out_fails_even_when_it_swallows_the_error() -> None:
    """GIVEN a test file that catches the refusal WHEN pytest runs it with the project's
    conftest THEN that test fails (the teardown check), and a local one passes."""
    code = (
        "import socket\n"
        "def test_swallows():\n"
        "    try:\n"
        "        socket.create_connection(('203.0.113.5', 80), timeout=0.2)\n"
        "    except OSError:\n"
        "        pass\n"
        "def test_local():\n"
        "    assert True\n"
    )
    probe = REPO_ROOT / "tests" / "test_zz_network_guard_probe.py"
    probe.write_text(code)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe),
             "-p", "no:randomly"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    finally:
        probe.unlink()
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed" in run.stdout
    assert "connections off this machine were attempted: connect ('203.0.113.5', 80)" in run.stdout
