"""Shared fixtures. Database ones: every store test runs on SQLite, PostgreSQL and MariaDB.

PostgreSQL and MariaDB run only when their URLs are set (a server-level URL; the fixtures create
and drop their own database per test session, so they never touch anything else on the server)::

    ECS_EVENT_OPS_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test
    ECS_EVENT_OPS_TEST_MYSQL_URL=mysql+pymysql://root@127.0.0.1:3306/test
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The SDK's default credential chain (built by the tests of ECS_EVENT_OPS_CREDENTIALS=default-chain)
# would otherwise include the ECS RAM-role provider, which asks the instance metadata service
# (100.100.100.200) and schedules a background refresh: never in a test. Read by
# alibabacloud_credentials at its import, so set before any test imports it; subprocesses inherit.
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")

from shared.store import Store

PG_ENV = "ECS_EVENT_OPS_TEST_PG_URL"
MYSQL_ENV = "ECS_EVENT_OPS_TEST_MYSQL_URL"
PROJECT_TABLES = ("events", "instances", "ledger", "schema_version", "event_counts", "event_counts_hourly", "instance_counts")


def _logger_state() -> tuple[int, list[Any], bool, list[Any]]:
    import logging

    from shared import log as shared_log

    root = logging.getLogger("ecs_event_ops")
    return root.level, list(root.handlers), root.propagate, list(shared_log._configured)


# The project's logger as the session found it, before any test, fixture or collected module ran.
_LOGGER_AT_START = _logger_state()


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Whatever a test, a fixture of any scope or a tool run in-process (a benchmark) does to
    the project's logger, every test starts from the session's starting level, handlers and
    propagation, and leaves them so."""
    import logging

    from shared import log as shared_log

    def restore() -> None:
        root = logging.getLogger("ecs_event_ops")
        level, handlers, propagate, configured = _LOGGER_AT_START
        root.setLevel(level)
        root.handlers[:] = handlers
        root.propagate = propagate
        shared_log._configured[:] = configured

    restore()
    yield
    restore()


def _session_database(env: str, backend: str) -> Iterator[str | None]:
    """A database of our own on the server named by ``env``, dropped at the end of the session."""
    server_url = os.environ.get(env)
    if not server_url:
        yield None
        return
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"ecs_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    quoted = f'"{name}"' if backend == "postgres" else f"`{name}`"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if backend == "postgres" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}{force}")
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str | None]:
    yield from _session_database(PG_ENV, "postgres")


@pytest.fixture(scope="session")
def mysql_database_url() -> Iterator[str | None]:
    yield from _session_database(MYSQL_ENV, "mariadb")


def drop_project_tables(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for table in PROJECT_TABLES:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def store_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_database_url: str | None,
    mysql_database_url: str | None,
) -> Iterator[str]:
    """An empty database (no project tables) on each backend in turn."""
    backend = request.param
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    url, env, example = (
        (pg_database_url, PG_ENV, "postgresql+psycopg://postgres@127.0.0.1:5432/test")
        if backend == "postgres"
        else (mysql_database_url, MYSQL_ENV, "mysql+pymysql://root@127.0.0.1:3306/test")
    )
    if url is None:
        pytest.skip(f"{backend} tests disabled: set {env}={example} to run them")
    drop_project_tables(url)
    yield url
    drop_project_tables(url)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on an empty database of each backend; closed afterwards."""
    instance = Store(store_url)
    yield instance
    instance.close()
pytest_plugins = [
    "tests.privilege_plugin",  # least-privilege check over the whole session
    "tests.conformance_plugin",  # every emulator answer and product request against api-meta
    "tests.network_guard",  # fails any connection off this machine (127.0.0.0/8, ::1, unix only)
]
