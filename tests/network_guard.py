"""No traffic off this machine from the test suite: a pytest plugin (tests/conftest.py loads it).

For the whole session, ``socket.socket.connect`` / ``connect_ex`` (and so
``socket.create_connection``, ``ssl`` and asyncio connections, which go through them) refuse any
address outside 127.0.0.0/8 and ::1, and ``socket.getaddrinfo`` refuses to resolve any name but
the local ones (a DNS query is traffic too). A refused attempt raises
:class:`OffMachineConnectionError` (an ``OSError``, so the code under test sees an ordinary
connection failure) AND is recorded: the test during which it happened fails at teardown even if
the code swallowed or retried the error; attempts outside any test fail the session.

Unix sockets are allowed. Not covered: subprocesses the tests start (their own interpreter has no
guard), and C libraries that open sockets themselves (libpq: the PostgreSQL tests connect to
127.0.0.1 by their URL).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

__all__ = ["GUARD", "NetworkGuard", "OffMachineConnectionError", "is_local_address"]

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost",
                         "ip6-loopback"})


class OffMachineConnectionError(OSError):
    """A connection (or name lookup) to somewhere other than this machine was attempted."""


def _is_loopback_ip(text: str) -> bool | None:
    """True/False for an IP literal, None for a name."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def is_local_address(family: int, address: Any) -> bool:
    """Whether ``connect(address)`` on a socket of ``family`` stays on this machine."""
    if getattr(socket, "AF_UNIX", None) is not None and family == socket.AF_UNIX:
        return True
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return False
    host = address[0]
    verdict = _is_loopback_ip(host)
    return host.lower() in LOCAL_NAMES if verdict is None else verdict


def _is_local_name(host: object) -> bool:
    if host is None or host in ("", b""):
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    verdict = _is_loopback_ip(text)
    if verdict is not None:
        return True  # a literal needs no lookup; connect() decides whether it is allowed
    return text.lower() in LOCAL_NAMES or text == socket.gethostname()


@dataclass
class NetworkGuard:
    """The patched socket functions and what they refused."""

    attempts: list[str] = field(default_factory=list)
    outside_tests: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _saved: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def refuse(self, what: str) -> OffMachineConnectionError:
        with self._lock:
            self.attempts.append(what)
        return OffMachineConnectionError(f"test suite: no traffic off this machine ({what})")

    def take(self) -> list[str]:
        """The attempts recorded so far, forgotten by the guard."""
        with self._lock:
            taken, self.attempts = self.attempts, []
        return taken

    def install(self) -> None:
        if self._saved:
            return
        connect = socket.socket.connect
        connect_ex = socket.socket.connect_ex
        getaddrinfo = socket.getaddrinfo
        self._saved = {"connect": connect, "connect_ex": connect_ex, "getaddrinfo": getaddrinfo}
        guard = self

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            if not is_local_address(sock.family, address):
                raise guard.refuse(f"connect {address!r}")
            connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            if not is_local_address(sock.family, address):
                raise guard.refuse(f"connect_ex {address!r}")
            return connect_ex(sock, address)

        def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if not _is_local_name(host):
                raise guard.refuse(f"getaddrinfo {host!r}")
            return getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = guarded_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = guarded_getaddrinfo

    def uninstall(self) -> None:
        if not self._saved:
            return
        socket.socket.connect = self._saved["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = self._saved["connect_ex"]  # type: ignore[method-assign]
        socket.getaddrinfo = self._saved["getaddrinfo"]
        self._saved = {}


GUARD = NetworkGuard()


def pytest_configure(config: pytest.Config) -> None:
    GUARD.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    GUARD.uninstall()


@pytest.fixture(autouse=True)
def _no_traffic_off_this_machine() -> Iterator[None]:
    """Fails the test whose fixtures tried to reach another machine (an error at teardown)."""
    GUARD.outside_tests.extend(GUARD.take())  # collection, session fixtures, stray threads
    yield
    attempts = GUARD.take()
    if attempts:
        pytest.fail("connections off this machine were attempted: " + "; ".join(attempts))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fails the test that tried to reach another machine, whatever the code did with the
    error (a retry loop or a broad ``except`` must not hide it)."""
    result = yield
    attempts = GUARD.take()
    if attempts:
        pytest.fail("connections off this machine were attempted: " + "; ".join(attempts))
    return result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leftover = GUARD.outside_tests + GUARD.take()
    if leftover:
        print("\nconnections off this machine were attempted outside any test: "
              + "; ".join(leftover))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
