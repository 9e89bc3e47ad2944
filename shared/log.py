"""Structured logging: one JSON object per line on stdout, which FC ships to SLS.

Every line carries the invocation context (request id, function) bound with :func:`bind`, plus
whatever fields the call gives (event id, instance id, decision, reason, …)::

    log = get_logger(__name__)
    log.info("decision", extra=fields(instance_id=iid, decision="skipped", reason="locked"))

or the shortcut :func:`emit` (``emit(log, "decision", instance_id=iid, …)``).

Every line leaves through :class:`JsonFormatter`, the one boundary where secrets are masked
(:mod:`shared.redact`) and sizes are bounded: a text field is cut at ``MAX_FIELD_CHARS``, a list
at ``MAX_ITEMS``, nesting at ``MAX_DEPTH``, so no input, however large, makes a line large.
Bad input is logged through :func:`emit_bounded`: the first few items one line each, then one
summary line with the count of the rest.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone

from shared.redact import known_spellings, redact

# typing is not imported at run time: the annotations are strings (a cold start saves ~2 ms)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = [
    "JsonFormatter", "bind", "configure", "emit", "emit_bounded", "fields", "get_logger", "redirect",
]

MAX_FIELD_CHARS = 2000  # one text field of one line (an excerpt, a reason, an error message)
MAX_ITEMS = 100  # entries of one list or mapping field
MAX_DEPTH = 6
BOUNDED_LINES = 20  # lines per invocation for one kind of bad input; then a summary

_CONTEXT: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "ecs_event_ops_log_context", default=None
)
_FIELDS_ATTR = "ecs_fields"
_ROOT = "ecs_event_ops"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, context, fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_CONTEXT.get() or {})
        line.update(getattr(record, _FIELDS_ATTR, {}))
        if record.exc_info and record.exc_info[0] is not None:
            line["error_type"] = record.exc_info[0].__name__
            line["error"] = str(record.exc_info[1])
        spellings = known_spellings()
        return json.dumps(
            {str(k): _safe(v, spellings, 0) for k, v in line.items()}, ensure_ascii=False
        )


def _safe(value: Any, spellings: tuple[str, ...], depth: int) -> Any:
    """A JSON-ready copy of a field: secrets masked, texts cut, lists and nesting bounded."""
    if value is None or isinstance(value, (bool, int, float)):
        if isinstance(value, int) and value.bit_length() > 10_000:  # str() refuses past 4300 digits
            return f"<integer of {value.bit_length()} bits>"
        return value
    if isinstance(value, str):
        return _text(value, spellings)
    if depth >= MAX_DEPTH:
        return "..."
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {str(k)[:MAX_FIELD_CHARS]: _safe(v, spellings, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["..."] = f"{len(items) - MAX_ITEMS} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(value)
        out_list = [_safe(v, spellings, depth + 1) for v in seq[:MAX_ITEMS]]
        if len(seq) > MAX_ITEMS:
            out_list.append(f"... {len(seq) - MAX_ITEMS} more")
        return out_list
    try:
        text = str(value)
    except Exception as error:  # a broken __str__ must not lose the line
        text = f"<unprintable {type(value).__name__}: {type(error).__name__}>"
    return _text(text, spellings)


def _text(text: str, spellings: tuple[str, ...]) -> str:
    # Cut before masking (bounded work), but mask a window wide enough that a secret straddling
    # the cut is still seen whole, then cut the masked text.
    if len(text) > MAX_FIELD_CHARS:
        cut = redact(text[: MAX_FIELD_CHARS + 512], spellings)[:MAX_FIELD_CHARS]
        return f"{cut}...(+{len(text) - MAX_FIELD_CHARS} chars)"
    return redact(text, spellings)


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra=`` argument that attaches structured fields to one log call."""
    return {_FIELDS_ATTR: {k: v for k, v in values.items() if v is not None}}


def emit(logger: logging.Logger, message: str, level: int = logging.INFO, **values: Any) -> None:
    logger.log(level, message, extra=fields(**values))


def emit_bounded(
    logger: logging.Logger,
    message: str,
    items: Sequence[Mapping[str, Any]],
    *,
    total: int | None = None,
    level: int = logging.WARNING,
    limit: int = BOUNDED_LINES,
    **common: Any,
) -> None:
    """One line per item for the first ``limit`` items, then one summary line: bad input of any
    size costs at most ``limit + 1`` lines (6 MB of bad elements logged 113 MB before).
    ``total`` counts items not even listed (default: ``len(items)``)."""
    count = len(items) if total is None else max(total, len(items))
    logged = min(limit, len(items))
    for item in items[:limit]:
        emit(logger, message, level, **common, **item)
    if count > logged:
        emit(logger, message + "s not logged one by one", level, **common,
             logged=logged, not_logged=count - logged, total=count)


def get_logger(name: str) -> logging.Logger:
    """A logger under the project's root logger, which :func:`configure` sets up."""
    configure()
    short = name.rsplit(".", 1)[-1] if name.startswith(("functions.", "index")) else name
    return logging.getLogger(f"{_ROOT}.{short}")


_configured: list[logging.Handler] = []


def configure(level: str | None = None, stream: TextIO | None = None) -> None:
    """Install the JSON handler once (idempotent); ``stream`` replaces it (tests, tools)."""
    root = logging.getLogger(_ROOT)
    if stream is not None or not _configured:
        for handler in _configured:
            root.removeHandler(handler)
        _configured.clear()
        handler = _StdoutHandler(stream)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        _configured.append(handler)
        root.propagate = False
    if level is not None or root.level == logging.NOTSET:
        root.setLevel(_level(level or os.environ.get(LEVEL_VARIABLE, "")))


LEVEL_VARIABLE = "ECS_EVENT_OPS_LOG_LEVEL"  # Settings.log_level: read here, where it takes effect


def _level(name: str) -> int:
    """A level name, or INFO for anything else (a typo must not stop a function from starting)."""
    value = logging.getLevelName(name.strip().upper())
    return value if isinstance(value, int) else logging.INFO


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the *current* ``sys.stdout`` unless a stream was given (capture-friendly)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stdout)
        self._fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self._fixed or sys.stdout
        super().emit(record)


@contextmanager
def bind(**values: Any) -> Iterator[None]:
    """Add fields to every line logged inside the block (request id, function, …)."""
    merged = {**(_CONTEXT.get() or {}), **{k: v for k, v in values.items() if v is not None}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


@contextmanager
def redirect(stream: TextIO) -> Iterator[None]:
    """Send the JSON lines to ``stream`` inside the block only (tools run inside tests)."""
    configure()
    handler = _configured[0]
    assert isinstance(handler, _StdoutHandler)
    previous = handler._fixed
    handler._fixed = stream
    try:
        yield
    finally:
        handler._fixed = previous
