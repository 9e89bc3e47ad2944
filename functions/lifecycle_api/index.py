"""Lifecycle queries over HTTP: GET /released, GET /instances/{id}, GET /stats.

Serves both HTTP trigger models: FC 3.0 passes a JSON event (``handler(event, context)``, answer
``{statusCode, headers, body}``); FC 2.0 calls WSGI (``handler(environ, start_response)``). Bad
parameters answer 400 ``{"error": …}``, unknown routes 404, an unreachable store 503.

Anything malformed in the request (its JSON, a parameter's type, size or characters, a cursor)
is answered 400 before the store is asked; every list is paged. An unexpected failure answers
500 with a generic message: exception texts (which may quote the database URL) never leave.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from shared.log import bind, emit, get_logger
from shared.queries import Answer, answer
from shared.settings import Settings
from shared.store import Store, StoreUnavailableError, store_for

# Practice metadata, declared once: read by the deploy files' tests and the least-privilege check.
EVENT_TYPES: tuple[str, ...] = ()  # HTTP trigger only
RAM_ACTIONS: tuple[str, ...] = ()  # reads the store, calls no cloud API

JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error", 503: "Service Unavailable"}
MAX_EVENT_BYTES = 1024 * 1024  # an HTTP trigger event with its headers; a GET has no body

log = get_logger(__name__)


def handler(event: Any, context: Any) -> Any:
    if isinstance(event, dict) and "REQUEST_METHOD" in event and callable(context):
        return _wsgi(event, context)
    return _fc3(event, context)


def _fc3(event: Any, context: Any) -> dict[str, Any]:
    with bind(request_id=getattr(context, "request_id", None), function="lifecycle_api"):
        try:
            method, path, params = _fc3_request(event)
        except (ValueError, TypeError, AttributeError, RecursionError) as error:
            result = Answer(400, {"error": f"not an FC 3.0 HTTP trigger event: {str(error)[:200]}"})
        else:
            result = _answer(method, path, params)
        return {
            "statusCode": result.status,
            "headers": JSON_HEADERS,
            "isBase64Encoded": False,
            "body": json.dumps(result.body, ensure_ascii=False),
        }


def _fc3_request(event: Any) -> tuple[str, str, dict[str, str]]:
    """Method, path and parameters of an FC 3.0 HTTP trigger event; ValueError if malformed."""
    if isinstance(event, (bytes, str)):
        if len(event) > MAX_EVENT_BYTES:
            raise ValueError(f"larger than {MAX_EVENT_BYTES} bytes")
        request = json.loads(event)
    else:
        request = event
    if not isinstance(request, dict):
        raise ValueError("not a JSON object")
    context = request.get("requestContext") or {}
    http = context.get("http") or {} if isinstance(context, dict) else None
    if not isinstance(http, dict):
        raise ValueError("requestContext.http is not an object")
    method = http.get("method") or "GET"
    path = request.get("rawPath") or http.get("path") or "/"
    if not isinstance(method, str) or not isinstance(path, str):
        raise ValueError("method and path must be text")
    params = request.get("queryParameters") or {}
    if not isinstance(params, dict):
        raise ValueError("queryParameters is not an object")
    return method, path, _single_values(params)


def _wsgi(environ: Mapping[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    with bind(request_id=environ.get("fc.request_id"), function="lifecycle_api"):
        pairs = parse_qsl(str(environ.get("QUERY_STRING") or ""), keep_blank_values=True)
        result = _answer(
            str(environ.get("REQUEST_METHOD") or "GET"), str(environ.get("PATH_INFO") or "/"),
            _single_values(pairs),
        )
        body = json.dumps(result.body, ensure_ascii=False).encode()
        headers = [*JSON_HEADERS.items(), ("Content-Length", str(len(body)))]
        start_response(f"{result.status} {REASONS.get(result.status, 'Error')}", headers)
        return [body]


def _answer(method: str, path: str, params: Mapping[str, str]) -> Answer:
    try:
        store = _store()
        result = answer(method, path, params, store=store, now=datetime.now(timezone.utc))
    except StoreUnavailableError as error:
        emit(log, "store unavailable", path=path[:200], error=str(error))
        return Answer(503, {"error": "the lifecycle store is unavailable; retry later"})
    except Exception as error:  # a bug or a refusal: logged (masked), answered plainly
        emit(log, "request failed", logging.ERROR, path=path[:200], error_type=type(error).__name__,
             error=str(error))
        return Answer(500, {"error": "internal error; the function log has the details"})
    emit(log, "request answered", method=method[:16], path=path[:200], status=result.status)
    return result


def _store() -> Store:
    return store_for(Settings.from_env().db_url)


def _single_values(params: Any) -> dict[str, str]:
    """Query parameters as text; a repeated parameter keeps its last value. A value that is
    not text (or a list of text) is malformed: TypeError."""
    items = params.items() if isinstance(params, Mapping) else params
    out: dict[str, str] = {}
    for key, raw in items:
        value = (raw[-1] if raw else "") if isinstance(raw, list) else raw
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("query parameters must be text")
        out[key] = value
    return out
