"""Ask the lifecycle store about instances, including released ones.

    python -m tools.lifecycle released --since 7d --tag env=prod --format table
    python -m tools.lifecycle show i-bp1ecr1234abcd5go2go
    python -m tools.lifecycle stats --since 30d
    python -m tools.lifecycle prune --raw-older-than 90 --dry-run

History from the action ledger, newest first (what was decided, why, when)::

    python -m tools.lifecycle decisions --since 24h --instance i-bp1ecr1234abcd5go2go
    python -m tools.lifecycle decisions --decision started --format csv
    python -m tools.lifecycle incidents --decision open
    python -m tools.lifecycle drains --since 7d --format json
    python -m tools.lifecycle replacements --format json
    python -m tools.lifecycle rejected --format json     # deliveries the functions refused

Times are ISO 8601 (``2024-05-01``, ``2024-05-01T08:00:00+08:00``; no offset means UTC) or an
age (``90s``, ``30m``, ``24h``, ``7d``, ``2w``). ``--db`` defaults to ``ECS_EVENT_OPS_DB_URL``,
else the local SQLite file the functions, ``tools.invoke`` and the demo write
(``.data/ecs-event-ops.sqlite3``). The store read is named on stderr; a store that does not
exist is an error (nothing is created). Exit codes: 0 ok, 1 not found or store unavailable,
2 bad input (options, a mistyped store).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from shared.queries import (
    HISTORY_COLUMNS,
    HISTORY_LIMIT,
    RELEASED_COLUMNS,
    TIMELINE_COLUMNS,
    QueryError,
    ReleasedQuery,
    check_instance_id,
    history_kinds,
    history_rows,
    instance_answer,
    parse_limit,
    parse_time,
    released_answer,
    released_rows,
    render_csv,
    render_instance,
    render_stats,
    render_table,
    to_json,
)
from shared.store import Store, StoreError, StoreUnavailableError

FORMATS = ("table", "json", "csv")

PROG = "python -m tools.lifecycle"
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Times: ISO 8601 (no offset = UTC) or an age like 90s, 30m, 24h, 7d, 2w.",
    )
    parser.add_argument("--db", help="database URL (default: ECS_EVENT_OPS_DB_URL or .data/ SQLite)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    released = commands.add_parser("released", help="list released instances, newest release first")
    released.add_argument("--since", help="released at or after this time")
    released.add_argument("--until", help="released before this time")
    released.add_argument("--region", help="only this region, e.g. cn-hangzhou")
    released.add_argument("--tag", metavar="KEY=VALUE", help="only instances carrying this tag")
    released.add_argument("--name", metavar="GLOB", help="instance name pattern: * ? [abc]")
    released.add_argument("--limit", default="100", help="at most this many (1-1000, default 100)")
    released.add_argument("--cursor", help="continue after a previous answer's next_cursor")
    released.add_argument("--format", choices=("table", "json", "csv"), default="table")

    show = commands.add_parser("show", help="an instance's attributes and full event timeline")
    show.add_argument("instance_id", metavar="INSTANCE_ID")
    show.add_argument("--format", choices=FORMATS, default="table",
                      help="csv: the timeline only")

    stats = commands.add_parser("stats", help="counts per kind/state/name, per day, latency")
    stats.add_argument("--since", help="only events (and creations/releases) from this time")
    stats.add_argument("--format", choices=FORMATS, default="table",
                       help="csv: one section,key,value line per figure")

    prune = commands.add_parser("prune", help="drop raw payloads of old events (rows stay)")
    prune.add_argument("--raw-older-than", type=int, required=True, metavar="DAYS",
                       help="events whose time is more than DAYS days ago")
    prune.add_argument("--dry-run", action="store_true", help="only count what would be pruned")

    helps = {
        "decisions": "auto-start decisions that left a ledger entry: tries, starts, dry runs, "
                     "stops handed to the sweep, sweep re-checks (--decision: their status)",
        "incidents": "auto-start incidents: opened by a start, closed by Running or escalated "
                     "(--decision: open, closed, escalated)",
        "drains": "spot drains: notice, deadline, outcome, what was removed "
                  "(--decision: done, partial, restored, reclaimed, ...)",
        "rejected": "deliveries with elements the functions refused, payload kept (bounded, "
                    "30 days); --format json shows the payload",
        "replacements": "spot replacements: successor, offering, candidates tried, time to "
                        "Running and to serving (--decision: running, failed, exhausted, "
                        "skipped, ...; --format json: every group and its health)",
    }
    for name, text in helps.items():
        history = commands.add_parser(name, help=text, description=text)
        history.add_argument("--since", help="entries created at or after this time")
        history.add_argument("--instance", metavar="INSTANCE_ID", help="only this instance")
        history.add_argument("--decision", metavar="STATUS", help="only entries with this status")
        history.add_argument("--limit", default=str(HISTORY_LIMIT),
                             help=f"at most this many, newest first (1-1000, default {HISTORY_LIMIT})")
        history.add_argument("--format", choices=FORMATS, default="table")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    now: Callable[[], datetime] | None = None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(argv)
    moment = (now or (lambda: datetime.now(timezone.utc)))()
    try:
        url = args.db or _default_db_url()
        print(f"store: {redact_url(url)}" + ("" if args.db else " (default)"), file=err)
        store = open_existing(url)
    except StoreUnavailableError as error:  # before StoreError, its base: exists, not reachable
        print(f"{PROG}: store unavailable: {redact_url(str(error))}", file=err)
        return EXIT_NOT_FOUND
    except (StoreError, QueryError, ValueError) as error:  # a bad URL's text may hold its password
        print(f"{PROG}: error: {redact_url(str(error))}", file=err)
        return EXIT_USAGE
    try:
        return _COMMANDS[args.command](store, args, moment, out, err)
    except QueryError as error:
        print(f"{PROG} {args.command}: error: {error}", file=err)
        return EXIT_USAGE
    except StoreUnavailableError as error:
        print(f"{PROG}: store unavailable: {redact_url(str(error))}", file=err)
        return EXIT_NOT_FOUND
    finally:
        store.close()


def _default_db_url() -> str:
    """The store the functions use here: ECS_EVENT_OPS_DB_URL, else the local SQLite file."""
    from shared.settings import Settings

    return Settings.from_env().db_url


def redact_url(url: str) -> str:
    """The URL without its password (printed on stderr, pasted into tickets): every form
    (``/`` or ``@`` in the password, ``?password=``, URL-encoded) is masked by shared.redact."""
    from shared.redact import redact_url as masked

    return masked(url)


def open_existing(url: str) -> Store:
    """The store at ``url`` if it exists; never creates one (a mistyped path must not become an
    empty database that answers "(none)"). A SQLite file must exist; any other database must
    hold the schema. Raises QueryError naming what is missing."""
    sqlite_path = _sqlite_path(url)
    if sqlite_path is not None and not sqlite_path.is_file():
        raise QueryError(
            f"no store at {sqlite_path} (nothing was created): check --db or ECS_EVENT_OPS_DB_URL"
        )
    store = Store(url)
    try:
        version = store.schema_version()
    except BaseException:
        store.close()
        raise
    if version == 0:
        store.close()
        raise QueryError(f"{redact_url(url)} holds no ecs-event-ops store (no schema_version table)")
    return store


def _sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names (relative to the working directory), else None."""
    if not url.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(url).database
    except ArgumentError as error:
        raise QueryError(f"not a database URL: {url!r} ({error})") from None
    if not database or database == ":memory:" or database.startswith("file:"):
        raise QueryError(f"{url!r} names no SQLite file to read")
    return Path(database)


def _released(store: Store, args: argparse.Namespace, now: datetime, out: TextIO, err: TextIO) -> int:
    params = {k: getattr(args, k) for k in ("since", "until", "region", "tag", "name", "limit", "cursor")}
    body = released_answer(ReleasedQuery.from_params(params, now=now).run(store))
    if args.format == "json":
        print(to_json(body), file=out)
    elif args.format == "csv":
        print(render_csv(released_rows(body), RELEASED_COLUMNS), file=out, end="")
    else:
        print(render_table(released_rows(body), RELEASED_COLUMNS), file=out)
        if body["next_cursor"]:
            print(f"more: --cursor {body['next_cursor']}", file=err)
    return 0


def _show(store: Store, args: argparse.Namespace, now: datetime, out: TextIO, err: TextIO) -> int:
    instance_id = check_instance_id(args.instance_id)
    record = store.instance(instance_id)
    if record is None:
        print(f"{PROG} show: {instance_id} is not in the store", file=err)
        return EXIT_NOT_FOUND
    body = instance_answer(record, store.timeline(instance_id))
    if args.format == "csv":
        print(render_csv(body["timeline"], TIMELINE_COLUMNS), file=out, end="")
    else:
        print(to_json(body) if args.format == "json" else render_instance(body), file=out)
    return 0


def _stats(store: Store, args: argparse.Namespace, now: datetime, out: TextIO, err: TextIO) -> int:
    since = parse_time(args.since, now=now, what="since") if args.since else None
    stats = store.stats(since=since)
    if args.format == "csv":
        rows = [{"section": section, "key": key, "value": value}
                for section, key, value in _flatten(stats)]
        print(render_csv(rows, ("section", "key", "value")), file=out, end="")
    else:
        print(to_json(stats) if args.format == "json" else render_stats(stats), file=out)
    return 0


def _flatten(stats: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """``section, key, value`` triples of a stats answer (one level of nesting)."""
    triples: list[tuple[str, str, Any]] = []
    for section, value in stats.items():
        if isinstance(value, Mapping):
            triples += [(section, str(k), v) for k, v in value.items()]
        else:
            triples.append(("", section, value))
    return triples


def _history(store: Store, args: argparse.Namespace, now: datetime, out: TextIO, err: TextIO) -> int:
    since = parse_time(args.since, now=now, what="since") if args.since else None
    instance_id = check_instance_id(args.instance) if args.instance else None
    limit = parse_limit(args.limit)
    kinds = history_kinds(args.command)
    # The status filter runs here: the ledger's statuses are few per kind, the rows per page few.
    entries = store.ledger_history(kinds, since=since, instance_id=instance_id,
                                   limit=limit if args.decision is None else 100_000)
    if args.decision is not None:
        entries = [e for e in entries if e.status == args.decision][:limit]
    rows = history_rows(args.command, entries)
    columns = HISTORY_COLUMNS[args.command]
    if args.format == "json":
        print(to_json({"items": rows}), file=out)
    elif args.format == "csv":
        print(render_csv(rows, columns), file=out, end="")
    else:
        print(render_table(rows, columns), file=out)
    return 0


def _prune(store: Store, args: argparse.Namespace, now: datetime, out: TextIO, err: TextIO) -> int:
    if args.raw_older_than < 0:
        raise QueryError("--raw-older-than must be 0 or more days")
    cutoff = now - timedelta(days=args.raw_older_than)
    count = store.prune_raw(cutoff, dry_run=args.dry_run)
    verb = "would prune" if args.dry_run else "pruned"
    stamp = cutoff.isoformat(timespec="seconds").replace("+00:00", "Z")
    print(f"{verb} {count} raw payloads of events older than {stamp}", file=out)
    return 0


_COMMANDS: dict[str, Callable[[Store, argparse.Namespace, datetime, TextIO, TextIO], int]] = {
    "released": _released,
    "show": _show,
    "stats": _stats,
    "prune": _prune,
    "decisions": _history,
    "incidents": _history,
    "drains": _history,
    "rejected": _history,
    "replacements": _history,
}


if __name__ == "__main__":
    from shared.log import configure

    configure(level="WARNING", stream=sys.stderr)  # stdout carries the answer (JSON, CSV)
    sys.exit(main())
