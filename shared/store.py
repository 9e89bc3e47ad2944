"""The durable lifecycle store: every event received, one row per instance, the action ledger.

SQLAlchemy Core over SQLite (default, file under ``.data/``), PostgreSQL (``postgresql+psycopg``)
or MySQL/MariaDB (``mysql+pymysql``). SQLAlchemy is imported only when a method first touches the
database, so importing this module costs a cold start nothing.

Guarantees the practices build on:

- :meth:`Store.record` stores each event id once (race-safe insert-if-absent on every backend) and
  folds only the newly stored events into the instance rows with a monotonic upsert (min / max
  per field), so duplicates, retries, any delivery order and concurrent writers all give the same
  row. ``Deleted`` is terminal: a late ``Pending`` (or any state) never resurrects a released
  instance. A batch is two statements whatever its size (a multi-row INSERT of the events, a
  multi-row upsert of their instances) where RETURNING exists (SQLite, PostgreSQL, MariaDB).
  Triggers keep per-day counters of events and instances in the same transaction (schema v4):
  :meth:`Store.stats` reads those instead of aggregating every event and counting every instance.
  On PostgreSQL and MariaDB each writer connection bumps its own shard of a counter (schema v5),
  so concurrent writers do not queue on one hot counter row until each other's commit.
- The membership index (schema v6, ``lb_index``): which load-balancer memberships a server id or
  private IP had when last seen, written by the spot sweep's scans and the drains
  (:mod:`shared.spot.index`), so a drain finds an instance's groups without reading the fleet.
- The schema is versioned (``schema_version``); :meth:`Store.ensure_schema` creates or upgrades it
  under a backend lock (SQLite write lock, PostgreSQL advisory lock, MySQL ``GET_LOCK``), so many
  processes may start at once. Migrations are additive only, so code one version behind keeps
  working while a newer one upgrades.
- Connection and operational failures surface as :class:`StoreUnavailableError` (chained), which
  handlers let propagate so Function Compute retries. Deadlocks and serialization failures are
  retried here a few times first: every write is idempotent, so a rerun is safe.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shared.events import is_valid_instance_id, iso, parse_iso, parse_iso_or_none
from shared.log import emit, get_logger
from shared.redact import redact, redact_url

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection, Engine, Row
    from sqlalchemy.exc import SQLAlchemyError

    from shared.events import EcsEvent

__all__ = [
    "SCHEMA_VERSION",
    "EventRecord",
    "IndexRow",
    "InstanceRecord",
    "InvalidCursorError",
    "LedgerEntry",
    "Page",
    "RecordResult",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "store_for",
    "utc_now",
]

SCHEMA_VERSION = 6
T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000  # SQLite: how long a writer waits for the write lock
WAL_ATTEMPTS = 50  # x 20 ms growing steps: ~25 s at worst, like busy_timeout
CONNECT_TIMEOUT_S = 5
MAX_ATTEMPTS = 5  # deadlock / serialization-failure retries of one transaction
MAX_PAGE = 1000
MAX_CURSOR_CHARS = 512  # ours are about 100; a longer one is not ours (and is not decoded)
# stats(): latency percentiles over at most this many of the window's most recent events. Ranking
# them is the one part of stats whose cost grows with the sample (100,000: ~300 ms on SQLite);
# 2,000 keeps stats under 50 ms on every backend and still puts 20 events above the p99.
LATENCY_SAMPLE_CAP = 2_000
PRUNE_CHUNK = 5000
SCHEMA_LOCK_NAME = "ecs_event_ops_schema"
SCHEMA_LOCK_KEY = 0x6563_735F_6F70  # PostgreSQL advisory lock id ("ecs_op")
# PostgreSQL deadlock / serialization failure; MySQL deadlock / lock wait timeout.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
TRANSIENT_MYSQL_CODES = frozenset({1213, 1205})
SNAPSHOT_COLUMNS = (
    "name", "instance_type", "zone_id", "image_id", "vpc_id", "charge_type", "spot_strategy",
)
_LIKE_ESCAPE = "/"
# Rejected deliveries kept for a person to read (ledger kind "rejected", Store.keep_rejected).
REJECTED_KIND = "rejected"
REJECTED_MAX_CHARS = 16_384
REJECTED_MAX_COUNT = 1000
REJECTED_RETENTION_DAYS = 30

log = get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------------------------------------
# errors and values


class StoreError(Exception):
    """Anything the store cannot do; the message names the operation."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached or refused the operation; retrying later may work."""


class StoreRefusedError(StoreError):
    """The database refused this data (a value too long for its column, a NUL byte, text that
    is not UTF-8): retrying the same data cannot help."""


class InvalidCursorError(StoreError, ValueError):
    """A pagination cursor that this store did not produce."""


@dataclass(frozen=True)
class RecordResult:
    """Event ids newly stored and ids already stored before; each id once, in input order."""

    inserted: tuple[str, ...]
    duplicates: tuple[str, ...]
    refused: tuple[tuple[str, str], ...] = ()  # (event id, why) the database refused, alone


@dataclass(frozen=True)
class EventRecord:
    """One stored event. Times are aware UTC datetimes; ``raw`` is None once pruned."""

    event_id: str
    envelope: str
    envelope_id: str | None
    kind: str
    name: str
    full_name: str
    status: str | None
    instance_id: str | None
    disk_id: str | None
    state: str | None
    action: str | None
    region: str | None
    account_id: str | None
    event_time: datetime
    received_at: datetime
    latency_ms: int | None
    raw: str | None = field(repr=False)

    def to_dict(self, *, include_raw: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_time": iso(self.event_time),
            "full_name": self.full_name,
            "kind": self.kind,
            "name": self.name,
            "state": self.state,
            "status": self.status,
            "action": self.action,
            "event_id": self.event_id,
            "envelope": self.envelope,
            "envelope_id": self.envelope_id,
            "instance_id": self.instance_id,
            "disk_id": self.disk_id,
            "region": self.region,
            "account_id": self.account_id,
            "received_at": iso(self.received_at),
            "latency_ms": self.latency_ms,
        }
        if include_raw:
            out["raw"] = self.raw
        return out


@dataclass(frozen=True)
class InstanceRecord:
    """One instance as the store knows it: lifecycle times plus its creation-time snapshot."""

    instance_id: str
    region: str | None
    account_id: str | None
    first_seen: datetime | None
    created_at: datetime | None
    released_at: datetime | None
    last_state: str | None
    last_state_at: datetime | None
    name: str | None
    instance_type: str | None
    zone_id: str | None
    image_id: str | None
    vpc_id: str | None
    private_ips: tuple[str, ...]
    public_ips: tuple[str, ...]
    tags: Mapping[str, str]
    charge_type: str | None
    spot_strategy: str | None
    creation_time: datetime | None
    snapshot: Mapping[str, Any] | None = field(repr=False)
    snapshot_at: datetime | None
    snapshot_attempts: int

    @property
    def lifetime(self) -> timedelta | None:
        start = self.created_at or self.creation_time or self.first_seen
        if start is None or self.released_at is None:
            return None
        return self.released_at - start

    def to_dict(self, *, include_snapshot: bool = False) -> dict[str, Any]:
        lifetime = self.lifetime
        out: dict[str, Any] = {
            "instance_id": self.instance_id,
            "name": self.name,
            "region": self.region,
            "zone_id": self.zone_id,
            "account_id": self.account_id,
            "instance_type": self.instance_type,
            "image_id": self.image_id,
            "vpc_id": self.vpc_id,
            "private_ips": list(self.private_ips),
            "public_ips": list(self.public_ips),
            "tags": dict(self.tags),
            "charge_type": self.charge_type,
            "spot_strategy": self.spot_strategy,
            "creation_time": iso(self.creation_time),
            "first_seen": iso(self.first_seen),
            "created_at": iso(self.created_at),
            "released_at": iso(self.released_at),
            "lifetime_s": None if lifetime is None else round(lifetime.total_seconds(), 3),
            "last_state": self.last_state,
            "last_state_at": iso(self.last_state_at),
            "snapshot_at": iso(self.snapshot_at),
            "snapshot_attempts": self.snapshot_attempts,
        }
        if include_snapshot:
            out["snapshot"] = None if self.snapshot is None else dict(self.snapshot)
        return out


@dataclass(frozen=True)
class LedgerEntry:
    """One action-ledger row: idempotency key, kind of action, status and free-form data."""

    key: str
    kind: str
    instance_id: str | None
    status: str
    created_at: datetime
    updated_at: datetime
    data: Mapping[str, Any]


@dataclass(frozen=True)
class IndexRow:
    """One membership of one server key (instance id, ENI id or private IP) in the index."""

    server_key: str
    source: str  # what one scan replaces: a CLB id, or "alb:<group>" / "nlb:<group>"
    member: str  # the membership's identity (shared.spot.index.member_id)
    data: dict[str, Any]  # the membership's snapshot
    seen_at: datetime


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results; pass ``next_cursor`` back to get the next (None: last page)."""

    items: tuple[T, ...]
    next_cursor: str | None


# ---------------------------------------------------------------------------------------------
# schema (built on first use so that importing this module does not import SQLAlchemy)


@dataclass(frozen=True)
class _Schema:
    metadata: sa.MetaData
    metadata_v1: sa.MetaData
    schema_version: sa.Table
    events: sa.Table
    instances: sa.Table
    ledger: sa.Table
    v2_indexes: tuple[sa.Index, ...]
    v3_indexes: tuple[sa.Index, ...]
    event_counts: sa.Table
    event_counts_hourly: sa.Table
    instance_counts: sa.Table
    lb_index: sa.Table


@lru_cache(maxsize=2)
def _schema(mysql: bool = False) -> _Schema:
    """The tables. Queries use the plain one; creating tables on MySQL/MariaDB uses
    ``mysql=True``, whose MySQL table options make SQLAlchemy load the MySQL dialect to check
    them (a SQLite or PostgreSQL cold start never builds it)."""
    import sqlalchemy as sa

    # The MySQL types are chosen when a dialect compiles the column, so that the MySQL dialect
    # module is imported only on MySQL/MariaDB (a SQLite or PostgreSQL cold start skips it).
    class DateTimeUs(sa.types.TypeDecorator[Any]):
        """DATETIME(6) on MySQL/MariaDB (microseconds), the generic DateTime elsewhere."""

        impl = sa.DateTime
        cache_ok = True

        def load_dialect_impl(self, dialect: Any) -> Any:
            if dialect.name in ("mysql", "mariadb"):
                from sqlalchemy.dialects import mysql

                return dialect.type_descriptor(mysql.DATETIME(fsp=6))
            return dialect.type_descriptor(sa.DateTime())

    class LongText(sa.types.TypeDecorator[Any]):
        """MEDIUMTEXT on MySQL/MariaDB (TEXT holds 64 KB there), the generic Text elsewhere."""

        impl = sa.Text
        cache_ok = True

        def load_dialect_impl(self, dialect: Any) -> Any:
            if dialect.name in ("mysql", "mariadb"):
                from sqlalchemy.dialects import mysql

                return dialect.type_descriptor(mysql.MEDIUMTEXT())
            return dialect.type_descriptor(sa.Text())

    def dt() -> Any:
        return DateTimeUs()

    def text() -> Any:
        return LongText()

    def pk() -> Any:  # SQLite needs INTEGER (not BIGINT) to alias the rowid and autoincrement
        return sa.BigInteger().with_variant(sa.Integer(), "sqlite")

    # MySQL: binary collation so that ids, names and LIKE compare case-sensitively everywhere.
    opts: dict[str, Any] = {
        "mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin",
    } if mysql else {}

    def event_columns(with_latency: bool) -> list[Any]:
        cols = [
            sa.Column("id", pk(), primary_key=True, autoincrement=True),
            sa.Column("event_id", sa.String(128), nullable=False, unique=True),
            sa.Column("envelope", sa.String(32), nullable=False),
            sa.Column("envelope_id", sa.String(128)),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("full_name", sa.String(200), nullable=False),
            sa.Column("status", sa.String(32)),
            sa.Column("instance_id", sa.String(70)),
            sa.Column("disk_id", sa.String(70)),
            sa.Column("state", sa.String(32)),
            sa.Column("action", sa.String(32)),
            sa.Column("region", sa.String(64)),
            sa.Column("account_id", sa.String(32)),
            sa.Column("event_time", dt(), nullable=False),
            sa.Column("received_at", dt(), nullable=False),
        ]
        if with_latency:
            cols.append(sa.Column("latency_ms", sa.BigInteger()))
        cols.append(sa.Column("raw", text()))
        return cols

    metadata = sa.MetaData()
    metadata_v1 = sa.MetaData()

    schema_version = sa.Table(
        "schema_version", metadata,
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("applied_at", dt(), nullable=False),
        **opts,
    )
    instances = sa.Table(
        "instances", metadata,
        sa.Column("instance_id", sa.String(70), primary_key=True),
        sa.Column("region", sa.String(64)),
        sa.Column("account_id", sa.String(32)),
        sa.Column("first_seen", dt()),
        sa.Column("created_at", dt()),
        sa.Column("released_at", dt()),
        sa.Column("last_state", sa.String(32)),
        sa.Column("last_state_at", dt()),
        sa.Column("name", sa.String(255)),
        sa.Column("instance_type", sa.String(64)),
        sa.Column("zone_id", sa.String(64)),
        sa.Column("image_id", sa.String(255)),
        sa.Column("vpc_id", sa.String(64)),
        sa.Column("private_ips", sa.Text()),
        sa.Column("public_ips", sa.Text()),
        sa.Column("tags", sa.Text()),
        sa.Column("charge_type", sa.String(32)),
        sa.Column("spot_strategy", sa.String(32)),
        sa.Column("creation_time", dt()),
        sa.Column("snapshot", text()),
        sa.Column("snapshot_at", dt()),
        sa.Column("snapshot_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Index("ix_instances_released", "released_at", "instance_id"),
        sa.Index("ix_instances_region_released", "region", "released_at"),
        **opts,
    )
    events = sa.Table(
        "events", metadata, *event_columns(with_latency=True),
        sa.Index("ix_events_instance_time", "instance_id", "event_time"),
        sa.Index("ix_events_kind_time", "kind", "event_time"),
        **opts,
    )
    name_index = sa.Index(
        "ix_events_name_instance_time", events.c.name, events.c.instance_id, events.c.event_time
    )
    ledger = sa.Table(
        "ledger", metadata,
        sa.Column("id", pk(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(255), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.String(70)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", dt(), nullable=False),
        sa.Column("updated_at", dt(), nullable=False),
        sa.Column("data", sa.Text()),
        sa.Index("ix_ledger_kind_instance_created", "kind", "instance_id", "created_at"),
        sa.Index("ix_ledger_kind_status_updated", "kind", "status", "updated_at"),
        **opts,
    )

    # Version 1, frozen as it shipped: no latency column, no name index, no ledger.
    schema_version.to_metadata(metadata_v1)
    instances.to_metadata(metadata_v1)
    sa.Table(
        "events", metadata_v1, *event_columns(with_latency=False),
        sa.Index("ix_events_instance_time", "instance_id", "event_time"),
        sa.Index("ix_events_kind_time", "kind", "event_time"),
        **opts,
    )
    # Version 3 (after the v1 freeze above, which copies the instances table's indexes): what
    # keeps the other reads an index lookup over 1 M events. stats(since=...) reads a window of
    # events by time and the creations per day; instances_needing_snapshot looks up the few
    # running instances without a snapshot (IS NULL is an index equality on every backend).
    v3_indexes = (
        # covering: stats(since=...) counts states and names and samples latencies from it alone
        sa.Index(
            "ix_events_time",
            events.c.event_time, events.c.kind, events.c.state, events.c.full_name,
            events.c.latency_ms,
        ),
        sa.Index("ix_instances_created", instances.c.created_at),
        sa.Index(
            "ix_instances_snapshot_pending",
            instances.c.snapshot_at, instances.c.released_at, instances.c.snapshot_attempts,
        ),
    )
    # Version 4: counters kept by triggers in the transaction that records (see _migrate_v4),
    # so stats reads a few hundred rows instead of every event and every instance.
    event_counts = sa.Table(
        "event_counts", metadata,
        sa.Column("day", sa.Date(), primary_key=True),  # of event_time (UTC)
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(32), primary_key=True),  # '' for an event without a state
        sa.Column("full_name", sa.String(200), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
        **opts,
    )
    # The same per hour: a ``since`` inside a day reads its day's remaining hours from here and
    # less than an hour of events (a day of events grouped cost 24 ms on SQLite at 8,600/day).
    event_counts_hourly = sa.Table(
        "event_counts_hourly", metadata,
        sa.Column("hour", dt(), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(32), primary_key=True),
        sa.Column("full_name", sa.String(200), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
        **opts,
    )
    instance_counts = sa.Table(
        "instance_counts", metadata,
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("what", sa.String(16), primary_key=True),  # known (first_seen), created, released
        sa.Column("n", sa.BigInteger(), nullable=False),
        **opts,
    )
    # Version 6: the load-balancer membership index (shared.spot.index).
    lb_index = sa.Table(
        "lb_index", metadata,
        sa.Column("id", pk(), primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("server_key", sa.String(128), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("member", sa.String(255), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("seen_at", dt(), nullable=False),
        sa.Index("ix_lb_index_region_key", "region", "server_key"),
        sa.Index("ix_lb_index_region_source", "region", "source"),
        **opts,
    )
    return _Schema(
        metadata=metadata, metadata_v1=metadata_v1, schema_version=schema_version,
        events=events, instances=instances, ledger=ledger, v2_indexes=(name_index,),
        v3_indexes=v3_indexes, event_counts=event_counts, event_counts_hourly=event_counts_hourly,
        instance_counts=instance_counts, lb_index=lb_index,
    )


def _ddl_schema(conn: Connection) -> _Schema:
    """The tables as created on this connection's database (MySQL table options on MySQL)."""
    return _schema(mysql=conn.dialect.name in ("mysql", "mariadb"))


def _migrate_v1(conn: Connection) -> None:
    _ddl_schema(conn).metadata_v1.create_all(conn, checkfirst=True)


def _migrate_v2(conn: Connection) -> None:
    """Processing latency per event (backfilled), the name index, the action ledger."""
    import sqlalchemy as sa

    schema = _ddl_schema(conn)
    columns = {c["name"] for c in sa.inspect(conn).get_columns("events")}
    if "latency_ms" not in columns:
        column_type = sa.BigInteger().compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE events ADD COLUMN latency_ms {column_type}")
    backfill = {
        "sqlite": "CAST(ROUND((julianday(received_at) - julianday(event_time)) * 86400000) AS INTEGER)",
        "postgresql": "CAST(ROUND(EXTRACT(EPOCH FROM (received_at - event_time)) * 1000) AS BIGINT)",
        "mysql": "ROUND(TIMESTAMPDIFF(MICROSECOND, event_time, received_at) / 1000)",
        "mariadb": "ROUND(TIMESTAMPDIFF(MICROSECOND, event_time, received_at) / 1000)",
    }[conn.dialect.name]
    # Constant SQL picked by dialect; no value from outside reaches it.
    conn.exec_driver_sql(f"UPDATE events SET latency_ms = {backfill} WHERE latency_ms IS NULL")  # noqa: S608
    for index in schema.v2_indexes:
        index.create(conn, checkfirst=True)
    schema.ledger.create(conn, checkfirst=True)


def _migrate_v3(conn: Connection) -> None:
    """Indexes for the time-windowed stats and the snapshot retry list (additive only)."""
    for index in _ddl_schema(conn).v3_indexes:
        index.create(conn, checkfirst=True)


def _migrate_v4(conn: Connection) -> None:
    """Counters for stats, kept by triggers, rebuilt here from the rows already stored.

    Events are counted per day, kind, state and name; instances per day of first sighting,
    creation and release. Triggers keep them in the same transaction as every insert (the
    record path, a bulk load, anything), so record stays two statements from the client. A
    counter row is created, or moved when an upsert moves ``created_at``/``released_at`` to
    another day. The rebuild replaces whatever counters a dropped schema left behind.
    """
    schema = _ddl_schema(conn)
    for counters in (schema.event_counts, schema.event_counts_hourly, schema.instance_counts):
        counters.create(conn, checkfirst=True)
    dialect = conn.dialect.name
    statements = _COUNTER_TRIGGERS["mysql" if dialect == "mariadb" else dialect]
    for statement in statements:
        conn.exec_driver_sql(statement)
    day = {"sqlite": "date({})", "postgresql": "CAST({} AS date)"}.get(dialect, "DATE({})")
    hour = {
        "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', {})", "postgresql": "date_trunc('hour', {})",
    }.get(dialect, "TIMESTAMP(DATE({0}), MAKETIME(HOUR({0}), 0, 0))")
    for name in ("event_counts", "event_counts_hourly", "instance_counts"):
        conn.exec_driver_sql(f"DELETE FROM {name}")  # noqa: S608 - constant names
    # Constant SQL picked by dialect; no value from outside reaches it.
    for name, bucket in (("event_counts", day), ("event_counts_hourly", hour)):
        key = bucket.format("event_time")
        column = "day" if name == "event_counts" else "hour"
        conn.exec_driver_sql(
            f"INSERT INTO {name} ({column}, kind, state, full_name, n) "  # noqa: S608
            f"SELECT {key}, kind, COALESCE(state, ''), full_name, COUNT(*) "
            f"FROM events GROUP BY {key}, kind, COALESCE(state, ''), full_name"
        )
    for what, column in (("known", "first_seen"), ("created", "created_at"), ("released", "released_at")):
        conn.exec_driver_sql(
            "INSERT INTO instance_counts (day, what, n) "  # noqa: S608
            f"SELECT {day.format(column)}, '{what}', COUNT(*) FROM instances "
            f"WHERE {column} IS NOT NULL GROUP BY {day.format(column)}"
        )


# SQLite: row triggers (in-process, cheap); the UPSERT's DO UPDATE fires the UPDATE trigger.
_SQLITE_COUNTERS = (
    "DROP TRIGGER IF EXISTS trg_events_counts",
    """CREATE TRIGGER trg_events_counts AFTER INSERT ON events BEGIN
    INSERT INTO event_counts (day, kind, state, full_name, n)
    VALUES (date(NEW.event_time), NEW.kind, COALESCE(NEW.state, ''), NEW.full_name, 1)
    ON CONFLICT (day, kind, state, full_name) DO UPDATE SET n = n + 1;
    INSERT INTO event_counts_hourly (hour, kind, state, full_name, n)
    VALUES (strftime('%Y-%m-%d %H:00:00.000000', NEW.event_time), NEW.kind, COALESCE(NEW.state, ''),
            NEW.full_name, 1)
    ON CONFLICT (hour, kind, state, full_name) DO UPDATE SET n = n + 1;
END""",
    "DROP TRIGGER IF EXISTS trg_instances_counts_insert",
    """CREATE TRIGGER trg_instances_counts_insert AFTER INSERT ON instances BEGIN
    INSERT INTO instance_counts (day, what, n)
    SELECT date(NEW.first_seen), 'known', 1 WHERE NEW.first_seen IS NOT NULL
    ON CONFLICT (day, what) DO UPDATE SET n = n + 1;
    INSERT INTO instance_counts (day, what, n)
    SELECT date(NEW.created_at), 'created', 1 WHERE NEW.created_at IS NOT NULL
    ON CONFLICT (day, what) DO UPDATE SET n = n + 1;
    INSERT INTO instance_counts (day, what, n)
    SELECT date(NEW.released_at), 'released', 1 WHERE NEW.released_at IS NOT NULL
    ON CONFLICT (day, what) DO UPDATE SET n = n + 1;
END""",
    "DROP TRIGGER IF EXISTS trg_instances_counts_update",
    """CREATE TRIGGER trg_instances_counts_update AFTER UPDATE OF created_at, released_at ON instances
WHEN OLD.created_at IS NOT NEW.created_at OR OLD.released_at IS NOT NEW.released_at BEGIN
    INSERT INTO instance_counts (day, what, n)
    SELECT date(OLD.created_at), 'created', -1
    WHERE OLD.created_at IS NOT NULL AND OLD.created_at IS NOT NEW.created_at
    ON CONFLICT (day, what) DO UPDATE SET n = n - 1;
    INSERT INTO instance_counts (day, what, n)
    SELECT date(NEW.created_at), 'created', 1
    WHERE NEW.created_at IS NOT NULL AND OLD.created_at IS NOT NEW.created_at
    ON CONFLICT (day, what) DO UPDATE SET n = n + 1;
    INSERT INTO instance_counts (day, what, n)
    SELECT date(OLD.released_at), 'released', -1
    WHERE OLD.released_at IS NOT NULL AND OLD.released_at IS NOT NEW.released_at
    ON CONFLICT (day, what) DO UPDATE SET n = n - 1;
    INSERT INTO instance_counts (day, what, n)
    SELECT date(NEW.released_at), 'released', 1
    WHERE NEW.released_at IS NOT NULL AND OLD.released_at IS NOT NEW.released_at
    ON CONFLICT (day, what) DO UPDATE SET n = n + 1;
END""",
)

# PostgreSQL: statement triggers over transition tables: one grouped upsert per statement,
# its rows in key order (concurrent writers lock the counters in one order: no deadlock).
# Counter rows are updated in place all day: room on their pages for HOT updates (no index
# change, old versions pruned on access) and a vacuum after every 500 dead ones.
_PG_COUNTER_STORAGE = tuple(
    f"ALTER TABLE {name} SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, "
    "autovacuum_vacuum_threshold = 500, autovacuum_analyze_scale_factor = 0, "
    "autovacuum_analyze_threshold = 500)"
    for name in ("event_counts", "event_counts_hourly", "instance_counts")
)


def _pg_counters(shard: str | None) -> tuple[str, ...]:
    """The PostgreSQL counter triggers; ``shard``: the SQL of the shard column's value (v5) or
    None (v4, no shard column). Constant SQL: no value from outside reaches it."""
    col, val, key = ("", "", "") if shard is None else (", shard", f", {shard}", ", shard")
    return (
        f"""CREATE OR REPLACE FUNCTION ecs_event_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_counts (day, kind, state, full_name{col}, n)
    SELECT CAST(event_time AS date), kind, COALESCE(state, ''), full_name{val}, COUNT(*) FROM new_events
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (day, kind, state, full_name{key}) DO UPDATE SET n = event_counts.n + EXCLUDED.n;
    INSERT INTO event_counts_hourly (hour, kind, state, full_name{col}, n)
    SELECT date_trunc('hour', event_time), kind, COALESCE(state, ''), full_name{val}, COUNT(*)
    FROM new_events GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (hour, kind, state, full_name{key}) DO UPDATE SET n = event_counts_hourly.n + EXCLUDED.n;
    RETURN NULL;
END $$""",  # noqa: S608 - constant SQL
        "DROP TRIGGER IF EXISTS trg_events_counts ON events",
        """CREATE TRIGGER trg_events_counts AFTER INSERT ON events REFERENCING NEW TABLE AS new_events
FOR EACH STATEMENT EXECUTE FUNCTION ecs_event_counts()""",
        f"""CREATE OR REPLACE FUNCTION ecs_instance_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO instance_counts (day, what{col}, n)
    SELECT day, what{val}, SUM(n) FROM (
        SELECT CAST(first_seen AS date) AS day, 'known' AS what, 1 AS n FROM new_rows
        WHERE first_seen IS NOT NULL
        UNION ALL SELECT CAST(created_at AS date), 'created', 1 FROM new_rows
        WHERE created_at IS NOT NULL
        UNION ALL SELECT CAST(released_at AS date), 'released', 1 FROM new_rows
        WHERE released_at IS NOT NULL
    ) AS d GROUP BY day, what ORDER BY day, what
    ON CONFLICT (day, what{key}) DO UPDATE SET n = instance_counts.n + EXCLUDED.n;
    RETURN NULL;
END $$""",  # noqa: S608 - constant SQL
        "DROP TRIGGER IF EXISTS trg_instances_counts_insert ON instances",
        """CREATE TRIGGER trg_instances_counts_insert AFTER INSERT ON instances
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ecs_instance_counts_insert()""",
        f"""CREATE OR REPLACE FUNCTION ecs_instance_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO instance_counts (day, what{col}, n)
    SELECT day, what{val}, SUM(n) FROM (
        SELECT CAST(o.created_at AS date) AS day, 'created' AS what, -1 AS n
        FROM old_rows o JOIN new_rows w USING (instance_id)
        WHERE o.created_at IS NOT NULL AND o.created_at IS DISTINCT FROM w.created_at
        UNION ALL SELECT CAST(w.created_at AS date), 'created', 1
        FROM old_rows o JOIN new_rows w USING (instance_id)
        WHERE w.created_at IS NOT NULL AND o.created_at IS DISTINCT FROM w.created_at
        UNION ALL SELECT CAST(o.released_at AS date), 'released', -1
        FROM old_rows o JOIN new_rows w USING (instance_id)
        WHERE o.released_at IS NOT NULL AND o.released_at IS DISTINCT FROM w.released_at
        UNION ALL SELECT CAST(w.released_at AS date), 'released', 1
        FROM old_rows o JOIN new_rows w USING (instance_id)
        WHERE w.released_at IS NOT NULL AND o.released_at IS DISTINCT FROM w.released_at
    ) AS d GROUP BY day, what ORDER BY day, what
    ON CONFLICT (day, what{key}) DO UPDATE SET n = instance_counts.n + EXCLUDED.n;
    RETURN NULL;
END $$""",  # noqa: S608 - constant SQL
        "DROP TRIGGER IF EXISTS trg_instances_counts_update ON instances",
        """CREATE TRIGGER trg_instances_counts_update AFTER UPDATE ON instances
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION ecs_instance_counts_update()""",
    )


# MySQL/MariaDB: row triggers (no statement triggers there).
def _mysql_counters(shard: str | None) -> tuple[str, ...]:
    """The MySQL/MariaDB counter triggers; ``shard`` as in :func:`_pg_counters`."""
    col, val = ("", "") if shard is None else (", shard", f", {shard}")

    def bump(day: str, what: str, delta: int) -> str:
        return (
            f"INSERT INTO instance_counts (day, what{col}, n) VALUES (DATE({day}), '{what}'{val}, {delta}) "  # noqa: S608
            f"ON DUPLICATE KEY UPDATE n = n + ({delta});"
        )

    return (
        "DROP TRIGGER IF EXISTS trg_events_counts",
        f"""CREATE TRIGGER trg_events_counts AFTER INSERT ON events FOR EACH ROW BEGIN
INSERT INTO event_counts (day, kind, state, full_name{col}, n)
VALUES (DATE(NEW.event_time), NEW.kind, COALESCE(NEW.state, ''), NEW.full_name{val}, 1)
ON DUPLICATE KEY UPDATE n = n + 1;
INSERT INTO event_counts_hourly (hour, kind, state, full_name{col}, n)
VALUES (TIMESTAMP(DATE(NEW.event_time), MAKETIME(HOUR(NEW.event_time), 0, 0)), NEW.kind,
        COALESCE(NEW.state, ''), NEW.full_name{val}, 1)
ON DUPLICATE KEY UPDATE n = n + 1;
END""",  # noqa: S608 - constant SQL
        "DROP TRIGGER IF EXISTS trg_instances_counts_insert",
        "CREATE TRIGGER trg_instances_counts_insert AFTER INSERT ON instances FOR EACH ROW BEGIN\n"
        + "".join(
            f"IF NEW.{column} IS NOT NULL THEN {bump('NEW.' + column, what, 1)} END IF;\n"
            for what, column in (("known", "first_seen"), ("created", "created_at"), ("released", "released_at"))
        )
        + "END",
        "DROP TRIGGER IF EXISTS trg_instances_counts_update",
        "CREATE TRIGGER trg_instances_counts_update AFTER UPDATE ON instances FOR EACH ROW BEGIN\n"
        + "".join(
            f"IF NOT (OLD.{column} <=> NEW.{column}) THEN\n"
            f"  IF OLD.{column} IS NOT NULL THEN {bump('OLD.' + column, what, -1)} END IF;\n"
            f"  IF NEW.{column} IS NOT NULL THEN {bump('NEW.' + column, what, 1)} END IF;\n"
            "END IF;\n"
            for what, column in (("created", "created_at"), ("released", "released_at"))
        )
        + "END",
    )


# Schema v4's triggers (what _migrate_v4 installs, before v5 shards the counters).
_COUNTER_TRIGGERS: dict[str, tuple[str, ...]] = {
    "sqlite": _SQLITE_COUNTERS,
    "postgresql": (*_PG_COUNTER_STORAGE, *_pg_counters(None)),
    "mysql": _mysql_counters(None),
}


COUNTER_SHARDS = 16  # rows per counter on PostgreSQL/MariaDB: one per writer connection, mostly
# Each counter table's key before v5 (the shard column is added to it).
_COUNTER_KEYS = {
    "event_counts": "day, kind, state, full_name",
    "event_counts_hourly": "hour, kind, state, full_name",
    "instance_counts": "day, what",
}
_SHARDED_COUNTER_TRIGGERS: dict[str, tuple[str, ...]] = {
    "postgresql": _pg_counters(f"CAST(mod(pg_backend_pid(), {COUNTER_SHARDS}) AS SMALLINT)"),
    "mysql": _mysql_counters(f"MOD(CONNECTION_ID(), {COUNTER_SHARDS})"),
}


def _migrate_v5(conn: Connection) -> None:
    """Counter rows sharded per writer connection (PostgreSQL, MariaDB/MySQL).

    With one row per counter, every writer recording an event of the same day, kind, state and
    name updated the same row, and held its lock until it committed: concurrent writers queued
    behind each other for the rest of each other's transaction (the instance upsert and the
    commit, two round trips). Each counter now has up to ``COUNTER_SHARDS`` rows, the shard
    picked from the connection (``pg_backend_pid()``, ``CONNECTION_ID()``); stats sums them.
    SQLite has one writer at a time (its database lock): its counters stay as they are.

    Readers of v4 summed the counters already. The key is widened in place (MySQL: one
    statement, under which the v4 triggers keep counting into shard 0), then the triggers are
    replaced; every step is skipped or repeated safely should an attempt die half-way.
    """
    import sqlalchemy as sa

    dialect = conn.dialect.name
    if dialect == "sqlite":
        return
    inspector = sa.inspect(conn)
    # Constant SQL built from the names above; no value from outside reaches it.
    for table, key in _COUNTER_KEYS.items():
        if "shard" in {c["name"] for c in inspector.get_columns(table)}:
            continue
        if dialect == "postgresql":  # transactional DDL: all of v5 or nothing
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0")
            conn.exec_driver_sql(
                f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, ADD PRIMARY KEY ({key}, shard)"
            )
        else:
            conn.exec_driver_sql(
                f"ALTER TABLE {table} ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0, "
                f"DROP PRIMARY KEY, ADD PRIMARY KEY ({key}, shard)"
            )
    for statement in _SHARDED_COUNTER_TRIGGERS["mysql" if dialect == "mariadb" else dialect]:
        conn.exec_driver_sql(statement)


def _migrate_v6(conn: Connection) -> None:
    """The load-balancer membership index (additive: a new table)."""
    _ddl_schema(conn).lb_index.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _migrate_v1, 2: _migrate_v2, 3: _migrate_v3, 4: _migrate_v4, 5: _migrate_v5,
    6: _migrate_v6,
}


# ---------------------------------------------------------------------------------------------
# the store


class Store:
    """The lifecycle store. Cheap to construct: connects and migrates on first use."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        if not url:
            raise StoreError("no database URL configured (ECS_EVENT_OPS_DB_URL)")
        self.url = url
        self._clock = clock
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._schema_ready = False
        self._use_returning: bool | None = None  # None: whatever the dialect supports

    def __repr__(self) -> str:
        return f"Store({_redact(self.url)!r})"

    # -- lifecycle ------------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` unless the database answers."""
        import sqlalchemy as sa
        import sqlalchemy.exc as sa_exc

        try:
            with self._get_engine().connect() as conn:
                conn.execute(sa.text("SELECT 1")).scalar_one()
        except sa_exc.SQLAlchemyError as error:
            raise _translate(error, "ping", self.url) from error

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._schema_ready = False

    def schema_version(self) -> int:
        """The schema version in the database (0: none yet)."""
        import sqlalchemy.exc as sa_exc

        try:
            with self._get_engine().connect() as conn:
                return _read_version(conn)
        except sa_exc.SQLAlchemyError as error:
            raise _translate(error, "read schema version", self.url) from error

    def ensure_schema(self, *, target_version: int = SCHEMA_VERSION) -> int:
        """Create or upgrade the schema to ``target_version``; returns the version in place.

        Safe to call from many processes at once: the upgrade runs under a backend lock and
        re-reads the version once it holds it.
        """
        import sqlalchemy.exc as sa_exc

        if not 1 <= target_version <= SCHEMA_VERSION:
            raise ValueError(f"target_version must be between 1 and {SCHEMA_VERSION}")
        try:
            with self._get_engine().connect() as conn:
                current = _read_version(conn)
                conn.rollback()
                if current < target_version:
                    current = self._upgrade(conn, target_version)
        except sa_exc.SQLAlchemyError as error:
            raise _translate(error, "ensure schema", self.url) from error
        if current > SCHEMA_VERSION:
            emit(log, "schema newer than code", db_version=current, code_version=SCHEMA_VERSION)
        if target_version == SCHEMA_VERSION:
            self._schema_ready = True
        return current

    def _upgrade(self, conn: Connection, target: int) -> int:
        import sqlalchemy as sa

        dialect = conn.dialect.name

        def migrate() -> int:
            current = _read_version(conn)
            for version in range(current + 1, target + 1):
                MIGRATIONS[version](conn)
                conn.execute(
                    sa.insert(_schema().schema_version),
                    {"version": version, "applied_at": _naive(self._clock())},
                )
                emit(log, "schema upgraded", version=version, db=_redact(self.url))
            return max(current, target)

        if dialect == "sqlite":  # DDL is transactional; BEGIN IMMEDIATE is the lock
            conn.execution_options(ecs_write=True)
            with conn.begin():
                return migrate()
        if dialect == "postgresql":  # DDL is transactional; the advisory lock ends with it
            with conn.begin():
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
                return migrate()
        # MySQL/MariaDB: DDL commits implicitly, so hold a named lock around the whole upgrade;
        # every migration step is idempotent should a previous attempt have died half-way.
        got = conn.execute(
            sa.text("SELECT GET_LOCK(:n, :t)"), {"n": SCHEMA_LOCK_NAME, "t": 60}
        ).scalar()
        conn.commit()
        if got != 1:
            raise StoreUnavailableError(f"timed out waiting for the schema lock on {_redact(self.url)}")
        try:
            with conn.begin():
                return migrate()
        finally:
            conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": SCHEMA_LOCK_NAME})
            conn.commit()

    # -- events ---------------------------------------------------------------------------------

    def record(
        self, events: Sequence[EcsEvent], *, received_at: datetime | None = None
    ) -> RecordResult:
        """Store events not seen before and fold them into their instances (one transaction)."""
        if not events:
            return RecordResult(inserted=(), duplicates=())
        received = _naive(received_at or self._clock())
        unique: dict[str, EcsEvent] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        rows = [_event_row(e, received) for e in sorted(unique.values(), key=_counter_order)]

        def work(conn: Connection) -> set[str]:
            inserted = self._insert_events(conn, rows)
            _apply_to_instances(conn, [unique[i] for i in sorted(inserted)])
            return inserted

        try:
            inserted = self._run("record events", work)
        except StoreRefusedError:
            # One element's data sinks the whole transaction on every retry: store them one by
            # one and report those the database refuses (an unreachable store still raises).
            return self._record_each(list(unique.values()), received_at)
        return RecordResult(
            inserted=tuple(i for i in unique if i in inserted),
            duplicates=tuple(i for i in unique if i not in inserted),
        )

    def _record_each(self, events: list[EcsEvent], received_at: datetime | None) -> RecordResult:
        inserted: list[str] = []
        duplicates: list[str] = []
        refused: list[tuple[str, str]] = []
        for event in events:
            try:
                one = self._run_refusable([event], received_at)
            except StoreRefusedError as error:
                refused.append((event.event_id, str(error)))  # the caller reports them
                continue
            inserted += one.inserted
            duplicates += one.duplicates
        return RecordResult(inserted=tuple(inserted), duplicates=tuple(duplicates), refused=tuple(refused))

    def _run_refusable(self, events: list[EcsEvent], received_at: datetime | None) -> RecordResult:
        received = _naive(received_at or self._clock())
        rows = [_event_row(e, received) for e in events]

        def work(conn: Connection) -> set[str]:
            inserted = self._insert_events(conn, rows)
            _apply_to_instances(conn, [e for e in events if e.event_id in inserted])
            return inserted

        inserted = self._run("record event", work)
        return RecordResult(
            inserted=tuple(e.event_id for e in events if e.event_id in inserted),
            duplicates=tuple(e.event_id for e in events if e.event_id not in inserted),
        )

    def _insert_events(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        table = _schema().events
        stmt = _insert_ignore(conn, table)
        use_returning = self._use_returning
        if use_returning is None:
            use_returning = bool(conn.dialect.insert_executemany_returning)
        if use_returning:
            result = conn.execute(stmt.returning(table.c.event_id), rows)
            return {row[0] for row in result}
        # MySQL has no RETURNING: one statement per row, whose rowcount tells.
        return {r["event_id"] for r in rows if self._insert_one(conn, table, r, "event_id")}

    def _insert_one(self, conn: Connection, table: sa.Table, row: dict[str, Any], key: str) -> bool:
        """Insert-if-absent one row; True when this statement stored it."""
        stmt = _insert_ignore(conn, table)
        use_returning = self._use_returning
        if use_returning is None:
            use_returning = bool(conn.dialect.insert_returning)
        if use_returning:
            return conn.execute(stmt.returning(table.c[key]), row).first() is not None
        return bool(conn.execute(stmt.execution_options(preserve_rowcount=True), row).rowcount == 1)

    def timeline(self, instance_id: str) -> list[EventRecord]:
        """Every stored event of an instance, oldest first."""
        import sqlalchemy as sa

        table = _schema().events
        query = (
            sa.select(table)
            .where(table.c.instance_id == instance_id)
            .order_by(table.c.event_time, table.c.id)
        )
        return self._run("read timeline", lambda c: [_event_record(r) for r in c.execute(query)], write=False)

    def timeline_page(
        self, instance_id: str, *, limit: int = 100, cursor: str | None = None,
        max_chars: int | None = None,
    ) -> Page[EventRecord]:
        """One page of an instance's events, oldest first (keyset on event time and row id);
        pass ``next_cursor`` back for the next. ``max_chars`` ends the page early once its raw
        events hold that many characters (never before its first event). Raises
        InvalidCursorError for a cursor this store did not produce."""
        import sqlalchemy as sa

        table = _schema().events
        limit = _check_limit(limit)
        query = sa.select(table).where(table.c.instance_id == instance_id)
        if cursor is not None:
            after_time, after_id = _decode_timeline_cursor(cursor)
            query = query.where(
                table.c.event_time >= after_time,
                sa.or_(table.c.event_time > after_time, table.c.id > after_id),
            )
        query = query.order_by(table.c.event_time, table.c.id).limit(limit + 1)
        rows = self._run("read timeline page", lambda c: list(c.execute(query)), write=False)
        more = len(rows) > limit
        rows = rows[:limit]
        if max_chars is not None:
            total = 0
            for kept, row in enumerate(rows):
                total += len(row._mapping["raw"] or "")
                if total > max_chars and kept > 0:
                    rows, more = rows[:kept], True
                    break
        last = rows[-1]._mapping if rows else None
        next_cursor = _encode_timeline_cursor(last["event_time"], int(last["id"])) if more and last else None
        return Page(items=tuple(_event_record(r) for r in rows), next_cursor=next_cursor)

    def recent_events(
        self,
        instance_id: str,
        *,
        names: Sequence[str] = (),
        kinds: Sequence[str] = (),
        since: datetime,
    ) -> list[EventRecord]:
        """Events of an instance at or after ``since``, optionally only these names or kinds.

        ``names`` match either the base name (``Instance:SystemFailure.Stop``) or the full name
        (``Instance:SystemFailure.Stop:Executed``).
        """
        import sqlalchemy as sa

        table = _schema().events
        query = sa.select(table).where(
            table.c.instance_id == instance_id, table.c.event_time >= _naive(since)
        )
        if names:
            query = query.where(sa.or_(table.c.name.in_(list(names)), table.c.full_name.in_(list(names))))
        if kinds:
            query = query.where(table.c.kind.in_([getattr(k, "value", k) for k in kinds]))
        query = query.order_by(table.c.event_time, table.c.id)
        return self._run("read recent events", lambda c: [_event_record(r) for r in c.execute(query)], write=False)

    def prune_raw(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Drop the raw payload of events older than ``older_than``; rows and timelines stay.

        Works in chunks so that writers are never blocked for long. Returns the number of
        events pruned (with ``dry_run``: that would be pruned).
        """
        import sqlalchemy as sa

        table = _schema().events
        cutoff = _naive(older_than)
        old = sa.and_(table.c.event_time < cutoff, table.c.raw.is_not(None))
        total = self._run(
            "count prunable events",
            lambda c: int(c.execute(sa.select(sa.func.count()).where(old)).scalar_one()),
            write=False,
        )
        if dry_run:
            return total
        if total == 0:
            self.analyze()
            return 0

        def chunk(conn: Connection) -> int:
            ids = [r[0] for r in conn.execute(sa.select(table.c.id).where(old).limit(PRUNE_CHUNK))]
            if ids:
                conn.execute(sa.update(table).where(table.c.id.in_(ids)).values(raw=None))
            return len(ids)

        pruned = 0
        for _ in range(total // PRUNE_CHUNK + 2):  # events older than the cutoff do not grow
            done = self._run("prune raw payloads", chunk)
            pruned += done
            if done < PRUNE_CHUNK:
                break
        emit(log, "raw payloads pruned", count=pruned, older_than=iso(older_than))
        self.analyze()
        return pruned

    def analyze(self) -> None:
        """Refresh the query planner's statistics of the project's tables.

        PostgreSQL plans ``released`` and the timelines from these statistics: after a bulk load
        or months of growth without them it picks sequential scans (tens of ms over 1 M events
        where an index answers in a few). Autovacuum refreshes them eventually on its own
        thresholds; the maintenance path (:meth:`prune_raw`, run periodically) refreshes them
        now (PostgreSQL: ``VACUUM (ANALYZE)``). MariaDB's ANALYZE TABLE re-samples the index
        statistics, SQLite's ANALYZE fills ``sqlite_stat1``; seconds at most over 1 M events.
        """
        import sqlalchemy.exc as sa_exc

        # The counters too: on PostgreSQL every recorded batch updates a few of their rows, and
        # a burst leaves dead versions behind (1 M events bulk-loaded: 81 MB for 468 rows) that
        # stats would scan until autovacuum comes by.
        tables = ("events", "instances", "ledger", "event_counts", "event_counts_hourly", "instance_counts")
        if not self._schema_ready:
            self.ensure_schema()
        engine = self._get_engine()
        if engine.dialect.name == "postgresql":
            # VACUUM also marks the pages all-visible, without which the index-only scans (the
            # counts of stats) visit the table anyway; it refuses to run in a transaction.
            try:
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql("VACUUM (ANALYZE) " + ", ".join(tables))
                    _compact_counters(conn)
            except sa_exc.SQLAlchemyError as error:
                raise _translate(error, "analyze tables", self.url) from error
        else:

            def work(conn: Connection) -> None:
                if getattr(conn.dialect, "is_mariadb", False):
                    # Also the engine-independent index statistics (mysql.index_stats), which
                    # the optimizer prefers; no column histograms (a full scan, not needed).
                    conn.exec_driver_sql(
                        "ANALYZE TABLE " + ", ".join(tables) + " PERSISTENT FOR COLUMNS () INDEXES ALL"
                    ).fetchall()
                elif conn.dialect.name == "mysql":
                    conn.exec_driver_sql("ANALYZE TABLE " + ", ".join(tables)).fetchall()
                else:
                    conn.exec_driver_sql("ANALYZE")

            self._run("analyze tables", work)
        emit(log, "statistics refreshed", tables=list(tables))

    # -- instances ------------------------------------------------------------------------------

    def instance(self, instance_id: str) -> InstanceRecord | None:
        import sqlalchemy as sa

        table = _schema().instances
        query = sa.select(table).where(table.c.instance_id == instance_id)

        def work(conn: Connection) -> InstanceRecord | None:
            row = conn.execute(query).first()
            return None if row is None else _instance_record(row)

        return self._run("read instance", work, write=False)

    def set_snapshot(
        self, instance_id: str, attributes: Mapping[str, Any], *, taken_at: datetime | None = None
    ) -> None:
        """Keep the instance's attributes (taken while it exists; after release nothing answers).

        ``attributes`` is :meth:`shared.clients.Instance.snapshot`: ``region_id``, ``zone_id``, …
        """
        import sqlalchemy as sa

        table = _schema().instances
        values: dict[str, Any] = {c: _opt_text(attributes.get(c)) for c in SNAPSHOT_COLUMNS}
        values["private_ips"] = json.dumps(_str_list(attributes.get("private_ips")))
        values["public_ips"] = json.dumps(_str_list(attributes.get("public_ips")))
        values["tags"] = json.dumps(_tags(attributes.get("tags")), sort_keys=True, ensure_ascii=False)
        values["creation_time"] = _opt_naive(_parse_datetime(attributes.get("creation_time")))
        values["snapshot"] = json.dumps(dict(attributes), sort_keys=True, ensure_ascii=False, default=str)
        values["snapshot_at"] = _naive(taken_at or self._clock())
        region = _opt_text(attributes.get("region_id"))
        if region is not None:
            values["region"] = region

        def work(conn: Connection) -> None:
            conn.execute(_insert_ignore(conn, table), {"instance_id": instance_id, "region": region})
            conn.execute(sa.update(table).where(table.c.instance_id == instance_id).values(**values))

        self._run("store snapshot", work)

    def note_snapshot_failure(self, instance_id: str) -> None:
        import sqlalchemy as sa

        table = _schema().instances

        def work(conn: Connection) -> None:
            conn.execute(_insert_ignore(conn, table), {"instance_id": instance_id})
            conn.execute(
                sa.update(table)
                .where(table.c.instance_id == instance_id)
                .values(snapshot_attempts=table.c.snapshot_attempts + 1)
            )

        self._run("note snapshot failure", work)

    def instances_needing_snapshot(self, limit: int = 100, max_attempts: int = 10) -> list[str]:
        """Instances still running (not released: DescribeInstances can never see those again)
        without a snapshot and with fewer than ``max_attempts`` failures, newest first."""
        import sqlalchemy as sa

        table = _schema().instances
        query = (
            sa.select(table.c.instance_id)
            .where(
                table.c.snapshot_at.is_(None),
                table.c.released_at.is_(None),
                table.c.snapshot_attempts < max_attempts,
            )
            .order_by(
                table.c.snapshot_attempts,
                sa.case((table.c.first_seen.is_(None), 1), else_=0),
                table.c.first_seen.desc(),
                table.c.instance_id,
            )
            .limit(_check_limit(limit))
        )
        return self._run("list instances needing a snapshot", lambda c: [r[0] for r in c.execute(query)], write=False)

    def instance_regions(self, instance_ids: Sequence[str]) -> dict[str, str | None]:
        """The recorded region of each of these instances (None: never recorded); one query."""
        import sqlalchemy as sa

        ids = sorted(set(instance_ids))
        if not ids:
            return {}
        table = _schema().instances
        query = sa.select(table.c.instance_id, table.c.region).where(table.c.instance_id.in_(ids))
        found = self._run(
            "read instance regions", lambda c: {r[0]: r[1] for r in c.execute(query)}, write=False
        )
        return {iid: found.get(iid) for iid in ids}

    def known_regions(self) -> list[str]:
        """Every region an instance was recorded in, sorted (what the sweep covers by default)."""
        import sqlalchemy as sa

        table = _schema().instances
        query = sa.select(table.c.region).where(table.c.region.is_not(None)).distinct()
        return self._run(
            "list known regions", lambda c: sorted(str(r[0]) for r in c.execute(query)),
            write=False,
        )

    def released(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        region: str | None = None,
        tag: tuple[str, str] | None = None,
        name_glob: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[InstanceRecord]:
        """Released instances, most recent release first (keyset pagination).

        The items carry no ``snapshot`` (None): a listing never shows it, and it is the largest
        column (the whole DescribeInstances answer); :meth:`instance` returns it.
        """
        import sqlalchemy as sa

        table = _schema().instances
        limit = _check_limit(limit)
        listed = [c for c in table.c if c.name != "snapshot"]
        query = sa.select(*listed).where(table.c.released_at.is_not(None))
        if since is not None:
            query = query.where(table.c.released_at >= _naive(since))
        if until is not None:
            query = query.where(table.c.released_at < _naive(until))
        if region is not None:
            query = query.where(table.c.region == region)
        if tag is not None:
            key, value = tag
            fragment = json.dumps(key, ensure_ascii=False) + ": " + json.dumps(value, ensure_ascii=False)
            query = query.where(table.c.tags.like(f"%{_like_escape(fragment)}%", escape=_LIKE_ESCAPE))
        if name_glob is not None:
            query = query.where(table.c.name.like(_glob_to_like(name_glob), escape=_LIKE_ESCAPE))
        if cursor is not None:
            after_time, after_id = _decode_cursor(cursor)
            # The first condition alone is an index range; the OR only filters within it.
            query = query.where(
                table.c.released_at <= after_time,
                sa.or_(table.c.released_at < after_time, table.c.instance_id < after_id),
            )
        # Both keys descending: one backward scan of ix_instances_released on every backend.
        # A mixed direction (time desc, id asc) cannot be read from that index by MariaDB, which
        # then sorts every released row for each page (282 ms over 1 M events).
        query = query.order_by(table.c.released_at.desc(), table.c.instance_id.desc()).limit(limit + 1)
        rows = self._run("list released instances", lambda c: list(c.execute(query)), write=False)
        more = len(rows) > limit
        rows = rows[:limit]
        # LIKE narrows in SQL; this makes the match exact (case, JSON structure, [classes]).
        items = tuple(
            record for record in (_instance_record(r) for r in rows)
            if (tag is None or record.tags.get(tag[0]) == tag[1])
            and (name_glob is None or (record.name is not None and fnmatch.fnmatchcase(record.name, name_glob)))
        )
        next_cursor = _encode_cursor(rows[-1].released_at, rows[-1].instance_id) if more else None
        return Page(items=items, next_cursor=next_cursor)

    def stats(self, *, since: datetime | None = None) -> dict[str, Any]:
        """Counts per kind, state and name; creations and releases per day; latency percentiles."""
        import sqlalchemy as sa

        schema = _schema()
        ev, inst = schema.events, schema.instances
        cutoff = None if since is None else _naive(since)

        ec, eh, ic = schema.event_counts, schema.event_counts_hourly, schema.instance_counts
        # The counters hold whole days and whole hours: a ``since`` inside a day reads the days
        # after from the daily counters, the rest of its day from the hourly ones, and the part
        # of its first hour from the events themselves (a range of the covering time index).
        edge_end: datetime | None = None  # the first whole day
        hour_end: datetime | None = None  # the first whole hour
        if cutoff is not None:
            midnight = cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
            edge_end = midnight if cutoff == midnight else midnight + timedelta(days=1)
            hour = cutoff.replace(minute=0, second=0, microsecond=0)
            hour_end = hour if cutoff == hour else hour + timedelta(hours=1)

        def counted(conn: Connection) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
            """Events per kind, per state and per name: the counters' rows (a handful per day)
            plus the partial first day grouped from the covering time index."""
            query = sa.select(ec.c.kind, ec.c.state, ec.c.full_name, sa.func.sum(ec.c.n)).group_by(
                ec.c.kind, ec.c.state, ec.c.full_name
            )
            if edge_end is not None:
                query = query.where(ec.c.day >= edge_end.date())
            groups = [(kind, state or None, name, n) for kind, state, name, n in conn.execute(query)]
            if cutoff is not None and edge_end is not None and hour_end is not None:
                if hour_end < edge_end:
                    hours = sa.select(
                        eh.c.kind, eh.c.state, eh.c.full_name, sa.func.sum(eh.c.n)
                    ).where(eh.c.hour >= hour_end, eh.c.hour < edge_end).group_by(
                        eh.c.kind, eh.c.state, eh.c.full_name
                    )
                    groups += [(k, st or None, name, n) for k, st, name, n in conn.execute(hours)]
                if cutoff < hour_end:
                    edge = sa.select(ev.c.kind, ev.c.state, ev.c.full_name, sa.func.count()).where(
                        ev.c.event_time >= cutoff, ev.c.event_time < min(hour_end, edge_end)
                    ).group_by(ev.c.kind, ev.c.state, ev.c.full_name)
                    groups += list(conn.execute(edge))
            kinds: dict[str, int] = {}
            states: dict[str, int] = {}
            names: dict[str, int] = {}
            for kind, state, full_name, n in groups:
                if not n:
                    continue
                kinds[str(kind)] = kinds.get(str(kind), 0) + int(n)
                if state is not None:
                    states[str(state)] = states.get(str(state), 0) + int(n)
                names[str(full_name)] = names.get(str(full_name), 0) + int(n)
            return dict(sorted(kinds.items())), dict(sorted(states.items())), dict(sorted(names.items()))

        def per_day(conn: Connection, what: str, column: Any) -> dict[str, int]:
            # a counter's shards summed (schema v5); a day whose instances all moved away is 0
            query = sa.select(ic.c.day, sa.func.sum(ic.c.n)).where(ic.c.what == what).group_by(ic.c.day)
            if edge_end is not None:
                query = query.where(ic.c.day >= edge_end.date())
            days = {str(d)[:10]: int(n) for d, n in conn.execute(query) if n}
            if cutoff is not None and edge_end is not None and cutoff < edge_end:
                edge = sa.select(sa.func.count()).select_from(inst).where(
                    column >= cutoff, column < edge_end
                )
                n = int(conn.execute(edge).scalar_one())
                if n:
                    days[cutoff.date().isoformat()] = n
            return dict(sorted(days.items()))

        def work(conn: Connection) -> dict[str, Any]:
            per_kind, per_state, per_name = counted(conn)
            latency_query = sa.select(ev.c.latency_ms).where(ev.c.latency_ms.is_not(None))
            if cutoff is not None:
                latency_query = latency_query.where(ev.c.event_time >= cutoff)
            # The most recent events by event time: a backward range of ix_events_time, which
            # holds latency_ms (ordering by id made SQLite read the whole table instead). The
            # percentiles are picked in SQL: shipping a day's latencies to Python cost more than
            # every other part of stats (PyMySQL parses ~100 rows per ms).
            sample = latency_query.order_by(ev.c.event_time.desc()).limit(LATENCY_SAMPLE_CAP).subquery()
            sampled, latency = _sql_percentiles(conn, sample.c.latency_ms, (50, 99))
            totals = {
                str(what): int(n) for what, n in conn.execute(
                    sa.select(ic.c.what, sa.func.sum(ic.c.n)).group_by(ic.c.what)
                )
            }
            ledger = schema.ledger
            actions_query = sa.select(ledger).where(ledger.c.kind.in_(("drain", "start", "incident")))
            if cutoff is not None:
                actions_query = actions_query.where(ledger.c.created_at >= cutoff)
            entries = [_ledger_entry(r) for r in conn.execute(actions_query)]
            return {
                "since": iso(since),
                "events": sum(per_kind.values()),
                "per_kind": per_kind,
                "per_state": per_state,
                "per_name": per_name,
                "instances": {
                    "known": totals.get("known", 0),
                    "created": totals.get("created", 0),
                    "released": totals.get("released", 0),
                },
                "creations_per_day": per_day(conn, "created", inst.c.created_at),
                "releases_per_day": per_day(conn, "released", inst.c.released_at),
                "latency_ms": {
                    "count": sampled,
                    "median": latency[50],
                    "p99": latency[99],
                    "max": None if latency[100] is None else int(latency[100]),
                    "sampled": sampled >= LATENCY_SAMPLE_CAP,
                },
                **_action_stats(entries),
            }

        return self._run("compute stats", work, write=False)

    # -- ledger ---------------------------------------------------------------------------------

    def ledger_claim(
        self,
        key: str,
        *,
        kind: str,
        instance_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        status: str = "claimed",
    ) -> bool:
        """Create the entry ``key``; True only for the one caller that created it."""
        now = _naive(self._clock())
        row = {
            "key": key, "kind": kind, "instance_id": instance_id, "status": status,
            "created_at": now, "updated_at": now, "data": _dump(data or {}),
        }
        table = _schema().ledger
        return self._run("claim ledger entry", lambda c: self._insert_one(c, table, row, "key"))

    def ledger_get(self, key: str) -> LedgerEntry | None:
        import sqlalchemy as sa

        table = _schema().ledger

        def work(conn: Connection) -> LedgerEntry | None:
            row = conn.execute(sa.select(table).where(table.c.key == key)).first()
            return None if row is None else _ledger_entry(row)

        return self._run("read ledger entry", work, write=False)

    def ledger_update(
        self, key: str, *, status: str | None = None, data: Mapping[str, Any] | None = None
    ) -> None:
        """Set the status and/or merge ``data`` into the entry's data; unknown key: StoreError."""
        import sqlalchemy as sa

        table = _schema().ledger

        def work(conn: Connection) -> None:
            row = conn.execute(
                sa.select(table.c.data).where(table.c.key == key).with_for_update()
            ).first()
            if row is None:
                raise StoreError(f"no ledger entry {key!r}")
            values: dict[str, Any] = {"updated_at": _naive(self._clock())}
            if status is not None:
                values["status"] = status
            if data:
                values["data"] = _dump({**_load_dict(row[0]), **data})
            conn.execute(sa.update(table).where(table.c.key == key).values(**values))

        self._run("update ledger entry", work)

    def ledger_swap(
        self,
        key: str,
        *,
        expect: Mapping[str, Any],
        status: str | None = None,
        data: Mapping[str, Any] | None = None,
        statuses: Collection[str] | None = None,
    ) -> bool:
        """Compare-and-set: when the entry exists, its status is one of ``statuses`` (any when
        None) and its data holds every ``expect`` item (a missing key reads as None), set the
        status and merge ``data``; True when applied. The row is read under its write lock
        (FOR UPDATE; SQLite writers hold the database lock from BEGIN IMMEDIATE), so of racing
        callers expecting the same values exactly one applies: the ledger's leases rest on it."""
        import sqlalchemy as sa

        table = _schema().ledger

        def work(conn: Connection) -> bool:
            row = conn.execute(
                sa.select(table.c.status, table.c.data).where(table.c.key == key).with_for_update()
            ).first()
            if row is None or (statuses is not None and row[0] not in statuses):
                return False
            current = _load_dict(row[1])
            if any(current.get(k) != v for k, v in expect.items()):
                return False
            values: dict[str, Any] = {"updated_at": _naive(self._clock())}
            if status is not None:
                values["status"] = status
            if data:
                values["data"] = _dump({**current, **data})
            conn.execute(sa.update(table).where(table.c.key == key).values(**values))
            return True

        return self._run("swap ledger entry", work)

    def ledger_count(self, kind: str, instance_id: str | None, since: datetime) -> int:
        """Entries of ``kind`` for ``instance_id`` created at or after ``since``."""
        import sqlalchemy as sa

        table = _schema().ledger
        query = sa.select(sa.func.count()).where(
            table.c.kind == kind,
            table.c.instance_id.is_(None) if instance_id is None else table.c.instance_id == instance_id,
            table.c.created_at >= _naive(since),
        )
        return self._run("count ledger entries", lambda c: int(c.execute(query).scalar_one()), write=False)

    def ledger_find(
        self,
        kind: str,
        *,
        status: str | None = None,
        instance_id: str | None = None,
        older_than: datetime | None = None,
        limit: int = 1000,
    ) -> list[LedgerEntry]:
        """Entries of ``kind``, oldest first; optionally by status, instance, or created before
        ``older_than`` (e.g. incidents opened longer ago than a timeout; later updates of an
        entry do not postpone it)."""
        import sqlalchemy as sa

        table = _schema().ledger
        query = sa.select(table).where(table.c.kind == kind)
        if status is not None:
            query = query.where(table.c.status == status)
        if instance_id is not None:
            query = query.where(table.c.instance_id == instance_id)
        if older_than is not None:
            query = query.where(table.c.created_at < _naive(older_than))
        query = query.order_by(table.c.created_at, table.c.id).limit(_check_limit(limit, 100_000))
        return self._run("find ledger entries", lambda c: [_ledger_entry(r) for r in c.execute(query)], write=False)

    def ledger_history(
        self,
        kinds: Sequence[str],
        *,
        since: datetime | None = None,
        instance_id: str | None = None,
        limit: int = 100,
    ) -> list[LedgerEntry]:
        """Entries of these kinds, newest first (history reads: what was decided, when)."""
        import sqlalchemy as sa

        table = _schema().ledger
        query = sa.select(table).where(table.c.kind.in_(sorted(kinds)))
        if since is not None:
            query = query.where(table.c.created_at >= _naive(since))
        if instance_id is not None:
            query = query.where(table.c.instance_id == instance_id)
        query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(
            _check_limit(limit, 100_000)
        )
        return self._run("read ledger history", lambda c: [_ledger_entry(r) for r in c.execute(query)], write=False)

    def keep_rejected(
        self, function: str, payload: object, reasons: Sequence[str], *, now: datetime | None = None
    ) -> bool:
        """Keep a delivery that had rejected elements (ledger kind ``rejected``), so a person can
        read what was refused and why. Bounded: the payload is cut at REJECTED_MAX_CHARS, one
        entry per distinct payload and function, entries older than REJECTED_RETENTION_DAYS and
        beyond the newest REJECTED_MAX_COUNT are deleted. True when a new entry was kept."""
        import hashlib

        import sqlalchemy as sa

        if isinstance(payload, (bytes, bytearray)):
            text = bytes(payload).decode("utf-8", "replace")
        else:
            text = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:32]
        moment = now or self._clock()
        kept = self.ledger_claim(
            f"rejected:{function}:{digest}", kind=REJECTED_KIND, status="kept",
            data={
                "function": function, "reasons": list(reasons)[:100], "size": len(text),
                "truncated": len(text) > REJECTED_MAX_CHARS, "payload": text[:REJECTED_MAX_CHARS],
                "received_at": iso(moment),
            },
        )
        if kept:
            table = _schema().ledger
            cutoff = _naive(moment - timedelta(days=REJECTED_RETENTION_DAYS))

            def trim(conn: Connection) -> None:
                conn.execute(sa.delete(table).where(
                    table.c.kind == REJECTED_KIND, table.c.created_at < cutoff
                ))
                keep = (
                    sa.select(table.c.id).where(table.c.kind == REJECTED_KIND)
                    .order_by(table.c.created_at.desc(), table.c.id.desc())
                    .limit(REJECTED_MAX_COUNT)
                )
                ids = [row[0] for row in conn.execute(keep)]
                if len(ids) == REJECTED_MAX_COUNT:
                    conn.execute(sa.delete(table).where(
                        table.c.kind == REJECTED_KIND, table.c.id < min(ids)
                    ))

            self._run("trim rejected payloads", trim)
        return kept

    # -- membership index (schema v6; shared.spot.index) ------------------------------------

    def index_lookup(self, region: str, server_keys: Sequence[str]) -> list[IndexRow]:
        """The index rows of these server keys in ``region``."""
        import sqlalchemy as sa

        table = _schema().lb_index
        keys = sorted(set(server_keys))

        def work(conn: Connection) -> list[IndexRow]:
            rows: list[IndexRow] = []
            for chunk in _index_chunks(keys):
                query = sa.select(table).where(table.c.region == region,
                                               table.c.server_key.in_(chunk))
                rows += [IndexRow(r.server_key, r.source, r.member, _load_dict(r.data),
                                  _aware(r.seen_at)) for r in conn.execute(query)]
            return rows

        return self._run("read membership index", work, write=False) if keys else []

    def index_replace(self, region: str, rows: Sequence[IndexRow], *,
                      sources: Sequence[str] = (), server_keys: Sequence[str] = ()) -> int:
        """In one transaction: forget the rows of ``region`` from these sources (a scan's load
        balancers or groups) and of these server keys (a drain's instance), then store
        ``rows``. Returns the rows stored."""
        import sqlalchemy as sa

        table = _schema().lb_index

        def work(conn: Connection) -> int:
            for column, values in ((table.c.source, sources), (table.c.server_key, server_keys)):
                for chunk in _index_chunks(sorted(set(values))):
                    conn.execute(sa.delete(table).where(table.c.region == region,
                                                        column.in_(chunk)))
            if rows:
                conn.execute(sa.insert(table), [
                    {"region": region, "server_key": r.server_key, "source": r.source,
                     "member": r.member, "data": _dump(r.data), "seen_at": _naive(r.seen_at)}
                    for r in rows])
            return len(rows)

        return self._run("write membership index", work)

    # -- plumbing -------------------------------------------------------------------------------

    def _get_engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = _make_engine(self.url)
                engine = self._engine
        return engine

    def _run(self, what: str, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """Run ``work`` in one transaction; retry deadlocks; translate errors."""
        import sqlalchemy.exc as sa_exc

        if not self._schema_ready:
            self.ensure_schema()
        engine = self._get_engine()
        for attempt in range(1, self._max_attempts + 1):
            try:
                with engine.connect() as conn:
                    if write:
                        conn.execution_options(ecs_write=True)
                    with conn.begin():
                        return work(conn)
            except sa_exc.DBAPIError as error:
                if attempt < self._max_attempts and _is_transient(error):
                    emit(log, "transaction retried", operation=what, attempt=attempt, error=str(error.orig))
                    self._sleep(random.uniform(0.01, 0.05) * 2**attempt)
                    continue
                raise _translate(error, what, self.url) from error
            except sa_exc.SQLAlchemyError as error:
                raise _translate(error, what, self.url) from error
            except UnicodeEncodeError as error:  # the driver cannot send it (a lone surrogate)
                raise StoreRefusedError(f"{what} refused: text not encodable as UTF-8 ({error.reason})") from error
        raise StoreError(f"{what}: gave up after {self._max_attempts} attempts")  # not reached


# ---------------------------------------------------------------------------------------------
# helpers


def _action_stats(entries: Sequence[LedgerEntry]) -> dict[str, Any]:
    """What the practices did, from their ledger entries: starts and incidents, and the spot
    drains' notice-to-removed time and missed deadlines (written by shared.drain)."""
    incidents: dict[str, int] = {}
    for entry in entries:
        if entry.kind == "incident":
            incidents[entry.status] = incidents.get(entry.status, 0) + 1
    drains = [e for e in entries if e.kind == "drain"]
    removed_s = sorted(
        float(e.data["notice_to_removed_s"]) for e in drains
        if isinstance(e.data.get("notice_to_removed_s"), int | float)
    )
    return {
        "auto_start": {
            "starts": sum(1 for e in entries if e.kind == "start"),
            "incidents": dict(sorted(incidents.items())),
        },
        "spot_drains": {
            "count": len(drains),
            "missed_deadlines": sum(1 for e in drains if e.data.get("missed_deadline") is True),
            "notice_to_removed_s": {
                "median": _percentile(removed_s, 50),
                "p99": _percentile(removed_s, 99),
                "max": removed_s[-1] if removed_s else None,
            },
        },
    }


# PostgreSQL: a counter table this many times larger than its live rows need (at fillfactor 50,
# about 40 rows per 8 KB page), and at least this many pages, is rewritten by Store.analyze.
COUNTER_BLOAT_FACTOR = 4
COUNTER_COMPACT_MIN_PAGES = 128  # 1 MB


def _compact_counters(conn: Connection) -> None:
    """Rewrite PostgreSQL counter tables a burst left mostly empty (run after VACUUM ANALYZE).

    A burst updates the same few counter rows many times over: VACUUM frees the dead versions
    but keeps the file (1 M bulk-loaded events left 89 MB behind 492 rows), and the all-time
    ``stats`` reads every page of it. ``VACUUM FULL`` rewrites those few rows into a new file;
    it locks the table while it does, which holds back recording writers for as long (a few
    milliseconds for a few hundred rows; the maintenance path runs it, rarely needed).
    """
    import sqlalchemy as sa

    sizes = conn.execute(sa.text(
        "SELECT relname, relpages, reltuples FROM pg_class WHERE relkind = 'r' "
        "AND relname IN ('event_counts', 'event_counts_hourly', 'instance_counts') "
        "AND relnamespace = to_regnamespace(current_schema())::oid"
    )).all()
    for name, pages, rows in sizes:
        needed = max(1, int(max(rows, 0)) // 40 + 1)
        if pages >= COUNTER_COMPACT_MIN_PAGES and pages > COUNTER_BLOAT_FACTOR * needed:
            conn.exec_driver_sql(f"VACUUM (FULL, ANALYZE) {name}")  # a name from the list above
            emit(log, "counters compacted", table=name, pages_before=int(pages), rows=int(rows))

def _enable_wal(cursor: Any) -> None:
    """Switch a SQLite file to WAL (persistent: later connections find it already set).

    The switch needs an exclusive lock and does not wait on busy_timeout, so two processes
    opening a new file at once can collide: re-check and retry briefly instead of failing.
    """
    import sqlite3

    for attempt in range(WAL_ATTEMPTS):
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


def _make_engine(url: str) -> Engine:
    import sqlalchemy as sa
    import sqlalchemy.exc as sa_exc
    from sqlalchemy import event
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import StaticPool

    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as error:
        raise StoreError(f"invalid database URL {_redact(url)!r}") from error
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            database = parsed.database or ""
            memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
            kwargs: dict[str, Any] = {}
            if memory:
                kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
            else:
                try:
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise StoreUnavailableError(
                        f"cannot create the directory of {database}: {error}"
                    ) from error
                kwargs = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
            engine = sa.create_engine(url, **kwargs)

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # pysqlite must not BEGIN on its own
                cursor = dbapi_conn.cursor()
                cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                if not memory:
                    _enable_wal(cursor)
                    cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL
                cursor.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                # Writers take the write lock up front: no lock upgrade, so busy_timeout applies.
                write = conn.get_execution_options().get("ecs_write")
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        if backend == "postgresql":
            return sa.create_engine(
                url, pool_pre_ping=True, pool_recycle=300,
                connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
            )
        if backend in ("mysql", "mariadb"):
            return sa.create_engine(
                url, pool_pre_ping=True, pool_recycle=300, isolation_level="READ COMMITTED",
                connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "charset": "utf8mb4"},
            )
    except (sa_exc.ArgumentError, ImportError) as error:
        raise StoreError(f"cannot use database URL {_redact(url)!r}: {error}") from error
    raise StoreError(
        f"unsupported database {backend!r} in {_redact(url)!r}: use sqlite, postgresql+psycopg or "
        "mysql+pymysql"
    )


def _read_version(conn: Connection) -> int:
    import sqlalchemy as sa

    if not conn.dialect.has_table(conn, "schema_version"):
        return 0
    table = _schema().schema_version
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.version), 0))).scalar_one())


def _insert_ignore(conn: Connection, table: sa.Table) -> Any:
    """INSERT that silently skips rows whose unique key exists (race-safe on every backend)."""
    import sqlalchemy as sa

    name = conn.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).on_conflict_do_nothing()
    return sa.insert(table).prefix_with("IGNORE")


def _apply_to_instances(conn: Connection, events: Sequence[EcsEvent]) -> None:
    """Fold newly stored events into instance rows: one multi-row upsert per batch.

    Each field is a function of the *set* of events (min / max), so any order of arrival, any
    batching and concurrent writers converge on the same row. ``Deleted`` is terminal. The batch
    is first reduced to one row per instance (earliest sighting, creation and release, latest
    other state); the upsert then merges that row into the stored one in SQL, so a batch costs
    one statement whatever its size instead of one UPDATE per field per instance.
    """
    agg: dict[str, dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: (e.event_time, e.event_id)):
        if event.instance_id is None:
            continue
        t = _naive(event.event_time)
        a = agg.setdefault(
            event.instance_id,
            {"first": t, "region": None, "account": None, "created": None, "deleted": None,
             "latest": None},
        )
        a["first"] = min(a["first"], t)
        a["region"] = a["region"] or event.region
        a["account"] = a["account"] or event.account_id
        if event.kind.value != "state_change" or not event.state:
            continue
        if event.is_creation:
            a["created"] = min(a["created"] or t, t)
        if event.state == "Deleted":
            a["deleted"] = min(a["deleted"] or t, t)
        elif a["latest"] is None or (t, event.state) > a["latest"]:
            a["latest"] = (t, event.state)
    if not agg:
        return
    rows = []
    for instance_id in sorted(agg):  # one lock order for every writer: fewer deadlocks
        a = agg[instance_id]
        # A released row's last state is its release; otherwise the batch's latest state.
        last_state, last_at = (
            ("Deleted", a["deleted"]) if a["deleted"]
            else (a["latest"][1], a["latest"][0]) if a["latest"] else (None, None)
        )
        rows.append({
            "instance_id": instance_id, "region": a["region"], "account_id": a["account"],
            "first_seen": a["first"], "created_at": a["created"], "released_at": a["deleted"],
            "last_state": last_state, "last_state_at": last_at,
        })
    size = UPSERT_CHUNK_SQLITE if conn.dialect.name == "sqlite" else UPSERT_CHUNK
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        params = {f"r{n}_{key}": value for n, row in enumerate(chunk) for key, value in row.items()}
        conn.execute(_instances_upsert(conn.dialect.name, len(chunk)), params)


UPSERT_CHUNK = 1000  # rows per upsert statement: 8,000 parameters, within the servers' limits
# SQLite before 3.32 (e.g. a runtime image's system library) takes at most 999 parameters.
UPSERT_CHUNK_SQLITE = 100
UPSERT_COLUMNS = (
    "instance_id", "region", "account_id", "first_seen", "created_at", "released_at",
    "last_state", "last_state_at",
)


@lru_cache(maxsize=64)
def _instances_upsert(dialect: str, count: int) -> Any:
    """``INSERT ... ON CONFLICT DO UPDATE`` (SQLite, PostgreSQL) or ``ON DUPLICATE KEY UPDATE``
    (MySQL/MariaDB) merging each batch row into the stored row with the monotonic rules.

    MySQL evaluates the assignments left to right, each seeing the columns already assigned,
    while SQLite and PostgreSQL see the old row throughout: the order below is chosen so that
    every assignment reads only columns not yet assigned (``last_state`` before
    ``last_state_at`` before ``released_at``), which gives the same row on every backend. The
    new ``last_state_at`` does not depend on the old ``last_state``: when the times tie, both
    candidates have the same time.

    Built once per dialect and row count, with bound parameters ``r<n>_<column>``: building
    this expression costs more than running it (~5 ms). A one-row statement (a batch of one
    instance, the common case) is also compiled once; SQLAlchemy never caches the compiled form
    of a multi-row VALUES, whose compilation the batch's other rows then share.
    """
    import sqlalchemy as sa

    table = _schema().instances
    many = [
        {c: sa.bindparam(f"r{n}_{c}", type_=table.c[c].type) for c in UPSERT_COLUMNS}
        for n in range(count)
    ]
    rows: Any = many[0] if count == 1 else many
    name = dialect
    if name in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        stmt: Any = mysql.insert(table).values(rows)
        new = stmt.inserted
    elif name == "postgresql":
        from sqlalchemy.dialects import postgresql

        stmt = postgresql.insert(table).values(rows)
        new = stmt.excluded
    else:
        from sqlalchemy.dialects import sqlite

        stmt = sqlite.insert(table).values(rows)
        new = stmt.excluded
    old = table.c

    def earliest(column: str) -> Any:
        return sa.case(
            (sa.and_(new[column].is_not(None), sa.or_(old[column].is_(None), old[column] > new[column])),
             new[column]),
            else_=old[column],
        )

    released_now = sa.and_(
        new.released_at.is_not(None),
        sa.or_(old.released_at.is_(None), old.released_at > new.released_at),
    )
    later = sa.and_(
        new.last_state_at.is_not(None),
        sa.or_(old.last_state_at.is_(None), old.last_state_at < new.last_state_at),
    )
    same_time_greater_state = sa.and_(
        old.last_state_at == new.last_state_at, old.last_state < new.last_state
    )
    assignments = [
        ("region", sa.func.coalesce(old.region, new.region)),
        ("account_id", sa.func.coalesce(old.account_id, new.account_id)),
        ("first_seen", earliest("first_seen")),
        ("created_at", earliest("created_at")),
        ("last_state", sa.case(
            (released_now, new.last_state),
            (old.released_at.is_not(None), old.last_state),
            (sa.and_(new.last_state.is_not(None), sa.or_(later, same_time_greater_state)),
             new.last_state),
            else_=old.last_state,
        )),
        ("last_state_at", sa.case(
            (released_now, new.last_state_at),
            (old.released_at.is_not(None), old.last_state_at),
            (later, new.last_state_at),
            else_=old.last_state_at,
        )),
        ("released_at", earliest("released_at")),
    ]
    if name in ("mysql", "mariadb"):
        return stmt.on_duplicate_key_update(assignments)
    return stmt.on_conflict_do_update(index_elements=[old.instance_id], set_=dict(assignments))


def _counter_order(event: EcsEvent) -> tuple[Any, ...]:
    """The order a batch's events are inserted in: by the counters their triggers bump (day,
    kind, state, name, then hour), so that concurrent writers lock the counter rows in one
    order. In event-id order, MariaDB's row triggers deadlocked 4 writers of batches of 50
    beyond the retries (a daily counter then an hourly one, each writer its own way round)."""
    moment = _naive(event.event_time)
    return (moment.date(), event.kind.value, event.state or "", event.full_name,
            moment.replace(minute=0, second=0, microsecond=0), event.event_id)


def _event_row(event: EcsEvent, received: datetime) -> dict[str, Any]:
    event_time = _naive(event.event_time)
    return {
        "event_id": event.event_id,
        "envelope": event.envelope.value,
        "envelope_id": event.envelope_id,
        "kind": event.kind.value,
        "name": event.name,
        "full_name": event.full_name,
        "status": event.status,
        "instance_id": event.instance_id,
        "disk_id": event.disk_id,
        "state": event.state,
        "action": event.action,
        "region": event.region,
        "account_id": event.account_id,
        "event_time": event_time,
        "received_at": received,
        "latency_ms": round((received - event_time).total_seconds() * 1000),
        "raw": event.raw,
    }


def _event_record(row: Row[Any]) -> EventRecord:
    m = row._mapping
    return EventRecord(
        event_id=m["event_id"], envelope=m["envelope"], envelope_id=m["envelope_id"],
        kind=m["kind"], name=m["name"], full_name=m["full_name"], status=m["status"],
        instance_id=m["instance_id"], disk_id=m["disk_id"], state=m["state"], action=m["action"],
        region=m["region"], account_id=m["account_id"], event_time=_aware(m["event_time"]),
        received_at=_aware(m["received_at"]),
        latency_ms=None if m["latency_ms"] is None else int(m["latency_ms"]), raw=m["raw"],
    )


def _instance_record(row: Row[Any]) -> InstanceRecord:
    m = row._mapping
    raw_snapshot = m.get("snapshot")  # absent from listings (see Store.released)
    snapshot = _load_dict(raw_snapshot) if raw_snapshot is not None else None
    tags = _load_dict(m["tags"])
    return InstanceRecord(
        instance_id=m["instance_id"], region=m["region"], account_id=m["account_id"],
        first_seen=_opt_aware(m["first_seen"]), created_at=_opt_aware(m["created_at"]),
        released_at=_opt_aware(m["released_at"]), last_state=m["last_state"],
        last_state_at=_opt_aware(m["last_state_at"]), name=m["name"],
        instance_type=m["instance_type"], zone_id=m["zone_id"], image_id=m["image_id"],
        vpc_id=m["vpc_id"], private_ips=tuple(_load_list(m["private_ips"])),
        public_ips=tuple(_load_list(m["public_ips"])),
        tags={str(k): str(v) for k, v in tags.items()},
        charge_type=m["charge_type"], spot_strategy=m["spot_strategy"],
        creation_time=_opt_aware(m["creation_time"]), snapshot=snapshot,
        snapshot_at=_opt_aware(m["snapshot_at"]), snapshot_attempts=int(m["snapshot_attempts"]),
    )


def _ledger_entry(row: Row[Any]) -> LedgerEntry:
    m = row._mapping
    return LedgerEntry(
        key=m["key"], kind=m["kind"], instance_id=m["instance_id"], status=m["status"],
        created_at=_aware(m["created_at"]), updated_at=_aware(m["updated_at"]),
        data=_load_dict(m["data"]),
    )


def _is_transient(error: SQLAlchemyError) -> bool:
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) in TRANSIENT_SQLSTATES:
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in TRANSIENT_MYSQL_CODES


def _translate(error: Exception, what: str, url: str) -> StoreError:
    import sqlalchemy.exc as sa_exc

    unavailable = isinstance(
        error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
    ) or getattr(error, "connection_invalidated", False)
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    # Driver messages may quote the DSN (password=…) or the URL: masked before they travel.
    detail = redact(lines[0] if lines else type(error).__name__)[:300]
    if unavailable:
        return StoreUnavailableError(f"{what}: database unavailable ({_redact(url)}): {detail}")
    if isinstance(error, sa_exc.DataError):
        return StoreRefusedError(f"{what} refused ({_redact(url)}): {detail}")
    return StoreError(f"{what} failed ({_redact(url)}): {detail}")


def _redact(url: str) -> str:
    return redact_url(url)


def _naive(moment: datetime) -> datetime:
    """Aware → naive UTC (what the columns hold); naive values are taken as UTC already."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _opt_naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else _naive(moment)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _opt_aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else _aware(moment)


def _sql_percentiles(
    conn: Connection, column: Any, pcts: Sequence[float]
) -> tuple[int, dict[float, float | None]]:
    """The count of ``column`` and its :func:`_percentile` for each of ``pcts`` (and 100: the
    maximum), from one query that numbers the sorted values server-side and returns only the
    ranks around each percentile, instead of fetching every value."""
    import sqlalchemy as sa

    ranked = sa.select(
        column.label("v"),
        sa.func.row_number().over(order_by=column).label("rn"),
        sa.func.count().over().label("n"),
    ).subquery()
    position = {pct: (ranked.c.n - 1) * (pct / 100) for pct in pcts}
    # A window of +-2 ranks around each position: the float position in SQL may differ from
    # Python's in the last bit; Python then picks the exact two ranks.
    near = [sa.and_(ranked.c.rn - 1 > p - 2, ranked.c.rn - 1 <= p + 2) for p in position.values()]
    rows = conn.execute(
        sa.select(ranked.c.rn, ranked.c.n, ranked.c.v).where(sa.or_(ranked.c.rn == ranked.c.n, *near))
    ).all()
    if not rows:
        return 0, dict.fromkeys((*pcts, 100))
    count = int(rows[0][1])
    value = {int(rn): float(v) for rn, _n, v in rows}
    out: dict[float, float | None] = {100: value[count]}
    for pct in pcts:
        exact = (count - 1) * pct / 100
        low = int(exact)
        high = min(low + 1, count - 1)
        out[pct] = round(value[low + 1] + (value[high + 1] - value[low + 1]) * (exact - low), 3)
    return count, out


def _percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * pct / 100
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return round(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low), 3)


def _check_limit(limit: int, maximum: int = MAX_PAGE) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise ValueError(f"limit must be an integer between 1 and {maximum}, not {limit!r}")
    return limit


def _like_escape(text: str) -> str:
    return (
        text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )


def _glob_to_like(glob: str) -> str:
    """``*`` → ``%``, ``?`` → ``_``, ``[...]`` → ``_`` (made exact afterwards), the rest literal."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char == "[" and "]" in glob[i + 2 :]:
            out.append("_")
            i = glob.index("]", i + 2)
        else:
            out.append(_like_escape(char))
        i += 1
    return "".join(out)


def _encode_cursor(released_at: datetime, instance_id: str) -> str:
    payload = json.dumps([_aware(released_at).isoformat(), instance_id])
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        moment_text, instance_id = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        moment = _naive(parse_iso(moment_text))
    except (ValueError, TypeError, RecursionError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidCursorError(f"invalid cursor {cursor[:40]!r}") from error
    if not is_valid_instance_id(instance_id):
        raise InvalidCursorError(f"invalid cursor {cursor[:40]!r}")
    return moment, instance_id


def _encode_timeline_cursor(event_time: datetime, row_id: int) -> str:
    payload = json.dumps(["t", _aware(event_time).isoformat(), row_id])
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_timeline_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        tag, moment_text, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        moment = _naive(parse_iso(moment_text))
    except (ValueError, TypeError, RecursionError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidCursorError(f"invalid cursor {cursor[:40]!r}") from error
    if tag != "t" or not isinstance(row_id, int) or isinstance(row_id, bool) or not 0 < row_id < 2**63:
        raise InvalidCursorError(f"invalid cursor {cursor[:40]!r}")
    return moment, row_id


def _parse_datetime(value: object) -> datetime | None:
    """A datetime or ISO 8601 text (``2024-01-02T03:04Z`` as DescribeInstances writes it)."""
    if isinstance(value, datetime):
        return _aware(value)
    return parse_iso_or_none(value)


def _opt_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _str_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v) for v in value]
    return [str(value)]


def _tags(value: object) -> dict[str, str]:
    """A mapping, or the API's list of ``{TagKey, TagValue}`` / ``{Key, Value}``."""
    if isinstance(value, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, Mapping):
                key = item.get("TagKey", item.get("Key"))
                if key is not None:
                    val = item.get("TagValue", item.get("Value"))
                    out[str(key)] = "" if val is None else str(val)
    return out


def _index_chunks(values: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [values[i:i + size] for i in range(0, len(values), size)]


def _dump(data: Mapping[str, Any]) -> str:
    return json.dumps(dict(data), sort_keys=True, ensure_ascii=False, default=str)


def _load_dict(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _load_list(text: str | None) -> list[str]:
    if not text:
        return []
    value = json.loads(text)
    return [str(v) for v in value] if isinstance(value, list) else []


_warm: dict[str, Store] = {}
_warm_lock = threading.Lock()


def store_for(url: str) -> Store:
    """The store for ``url``, kept for the life of the process (a warm FC instance reuses its
    engine and schema check across invocations)."""
    with _warm_lock:
        if url not in _warm:
            _warm[url] = Store(url)
        return _warm[url]
