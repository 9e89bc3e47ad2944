"""Explain how ecs-event-ops reads events: one normalised JSON object per line.

    python -m tools.events tests/fixtures/events/eventbridge/state_stopped.json
    cat body.bin | python -m tools.events -

    python -m tools.events --format table tests/fixtures/events/batch/*.json

Bad elements go to stderr with the reason. Exit codes: 0 every element read, 2 bad input (an
element refused, a file unreadable): the same codes as the other tools.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.events import parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.events",
        description="Normalise event files (any envelope, single or batch) and print one JSON "
        "object per event: kind, name, status, instance_id, state, action, event_id, region, "
        "account_id, event_time (UTC) and more.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="event file ('-' for stdin)")
    parser.add_argument(
        "--data-only-type", metavar="TYPE",
        help="for EventBridge targets that deliver only $.data: the event type they carry "
        "(e.g. ecs:Instance:StateChange)",
    )
    parser.add_argument("--compact", action="store_true", help="print only the main keys")
    parser.add_argument("--format", choices=("json", "table", "csv"), default="json",
                        help="json: one object per line (default); table and csv: the main keys")
    args = parser.parse_args(argv)

    bad = 0
    rows: list[dict[str, object]] = []
    for name in args.files:
        try:
            body = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as error:
            print(f"{name}: cannot read: {error}", file=sys.stderr)
            bad += 1
            continue
        batch = parse(body, data_only_type=args.data_only_type)
        for event in batch.events:
            line = event.to_dict()
            if args.compact or args.format != "json":
                line = {k: line[k] for k in COMPACT_KEYS}
            if len(args.files) > 1:
                line = {"file": name, **line}
            if args.format == "json":
                print(json.dumps(line, ensure_ascii=False))
            else:
                rows.append(line)
        for bad_element in batch.errors:
            print(f"{name}: {bad_element}", file=sys.stderr)
        bad += len(batch.errors)
    if args.format != "json":
        from shared.queries import render_csv, render_table

        columns = (("file",) if len(args.files) > 1 else ()) + COMPACT_KEYS
        if args.format == "csv":
            print(render_csv(rows, columns), end="")
        else:
            print(render_table(rows, columns))
    return EXIT_BAD_INPUT if bad else 0


COMPACT_KEYS = ("kind", "name", "status", "instance_id", "state", "action", "event_time")
EXIT_BAD_INPUT = 2


if __name__ == "__main__":
    sys.exit(main())
