"""The lifecycle HTTP API in both trigger shapes: FC 3.0 JSON events and FC 2.0 WSGI."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from functions.lifecycle_api import index
from shared.store import store_for
from tests.test_lifecycle_cli import seed


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'api.sqlite3'}"
    seed(url)
    monkeypatch.setenv("ECS_EVENT_OPS_DB_URL", url)
    yield url
    store_for(url).close()  # the handler keeps it warm; release the file


class Context:
    request_id = "req-1"


def fc3(path: str, params: dict[str, Any] | None = None, method: str = "GET") -> tuple[int, dict[str, Any]]:
    """Call the handler the way an FC 3.0 HTTP trigger does: JSON event bytes."""
    event = {
        "version": "v1", "rawPath": path, "headers": {"Accept": "application/json"},
        "queryParameters": params or {}, "body": "", "isBase64Encoded": False,
        "requestContext": {"requestId": "req-1", "http": {"method": method, "path": path}},
    }
    response = index.handler(json.dumps(event).encode(), Context())
    assert response["headers"]["Content-Type"].startswith("application/json")
    return response["statusCode"], json.loads(response["body"])


def wsgi(path: str, params: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, Any]]:
    """Call the handler the way FC 2.0 does: WSGI environ and start_response."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": urlencode(params or {}), "fc.request_id": "req-2"}
    body = b"".join(index.handler(environ, start_response))
    assert seen["headers"]["Content-Length"] == str(len(body))
    return int(seen["status"].split()[0]), json.loads(body)


SHAPES = pytest.mark.parametrize("call", [fc3, wsgi], ids=["fc3", "wsgi"])


@SHAPES
def test_released_answers_with_pagination(db: str, call: Any) -> None:
    """GIVEN released instances WHEN /released is paged THEN items in order and a next_cursor."""
    status, body = call("/released", {"limit": "2"})
    assert status == 200
    assert [i["instance_id"] for i in body["items"]] == ["i-cli00003", "i-cli00001"]
    status, body = call("/released", {"limit": "2", "cursor": body["next_cursor"]})
    assert (status, [i["instance_id"] for i in body["items"]], body["next_cursor"]) == (200, ["i-cli00002"], None)
    status, body = call("/released/", {"tag": "env=prod", "region": "cn-hangzhou", "since": "2024-05-01"})
    assert [i["instance_id"] for i in body["items"]] == ["i-cli00001"]


@SHAPES
def test_instance_and_stats_routes(db: str, call: Any) -> None:
    """GIVEN a stored instance WHEN /instances/{id} and /stats THEN its timeline and the counts."""
    status, body = call("/instances/i-cli00001")
    assert status == 200
    assert body["instance"]["released_at"] == "2024-05-08T12:00:00.000Z"
    assert [e["state"] for e in body["timeline"]] == ["Pending", "Deleted"]
    status, body = call("/stats", {"since": "2024-05-09T00:00:00Z"})
    assert status == 200
    assert body["per_state"] == {"Deleted": 1, "Pending": 1, "Running": 1}


@SHAPES
@pytest.mark.parametrize(
    "case",
    [
        ("/released", {"since": "yesterday"}, 400, "invalid since 'yesterday'"),
        ("/released", {"limit": "0"}, 400, "invalid limit 0"),
        ("/released", {"tag": "env"}, 400, "invalid tag 'env'"),
        ("/released", {"region": "CN_HZ'--"}, 400, "invalid region"),
        ("/released", {"cursor": "abc"}, 400, "invalid cursor"),
        ("/released", {"cursor": "WyI5OTk5LTEyLTMxVDIzOjU5OjU5LTAxOjAwIiwgImktYWJjZDEyMzQiXQ"}, 400, "invalid cursor"),  # no UTC time
        ("/released", {"since": "999999d"}, 400, "invalid since '999999d'"),  # before year 1
        ("/released", {"until": "9999-12-31T23:59:59-01:00"}, 400, "invalid until"),
        ("/released", {"color": "red"}, 400, "unknown parameter 'color'"),
        ("/stats", {"since": "2024-13-01"}, 400, "invalid since"),
        ("/instances/I-BAD", {}, 400, "invalid instance id 'I-BAD'"),
        ("/instances/i-unknown01", {}, 404, "i-unknown01 is not in the store"),
        ("/nope", {}, 404, "no route /nope"),
    ],
)
def test_bad_requests_answer_4xx_with_error(
    db: str, call: Any, case: tuple[str, dict[str, str], int, str]
) -> None:
    """GIVEN a bad parameter or route WHEN called THEN the status and an error message."""
    path, params, status, message = case
    got_status, body = call(path, params)
    assert got_status == status
    assert message in body["error"]


@SHAPES
def test_method_not_allowed(db: str, call: Any) -> None:
    """GIVEN a POST WHEN called THEN 405."""
    assert call("/released", {}, "POST")[0] == 405


@SHAPES
def test_unreachable_store_answers_503(monkeypatch: pytest.MonkeyPatch, call: Any) -> None:
    """GIVEN a database that does not answer WHEN called THEN 503 with a retry message."""
    monkeypatch.setenv("ECS_EVENT_OPS_DB_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        status, body = call("/released")
    finally:
        store_for(os.environ["ECS_EVENT_OPS_DB_URL"]).close()
    assert status == 503
    assert body == {"error": "the lifecycle store is unavailable; retry later"}


def test_fc3_garbage_event_is_400(db: str) -> None:
    """GIVEN an event that is not JSON WHEN called THEN 400, not a crash."""
    response = index.handler(b"not json", Context())
    assert response["statusCode"] == 400
    assert "not an FC 3.0 HTTP trigger event" in json.loads(response["body"])["error"]


def test_practice_metadata_declares_nothing_to_subscribe() -> None:
    """GIVEN the API function WHEN its metadata is read THEN no event types and no RAM actions."""
    assert index.EVENT_TYPES == ()
    assert index.RAM_ACTIONS == ()


def _b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


MALFORMED = [
    ("/released", {"tag": "env=" + "x" * 100_000}, "invalid tag: longer than 1024 characters"),
    ("/released", {"tag": "k" * 129 + "=v"}, "invalid tag: key and value are at most 128 characters each"),
    ("/released", {"name": "web-*" * 300}, "invalid name: longer than 1024 characters"),
    ("/released", {"name": "web\x00"}, "invalid name: control or non-UTF-8 characters"),
    ("/released", {"region": "cn-" + "a" * 70}, "invalid region 'cn-" + "a" * 61 + "...': expected e.g. cn-hangzhou"),
    ("/released", {"limit": "9" * 5000}, "invalid limit: longer than 1024 characters"),
    ("/released", {"limit": "1e3"}, "invalid limit '1e3': an integer from 1 to 1000"),
    ("/released", {"cursor": _b64("[" * 5000)}, "invalid cursor: longer than 1024 characters"),
    ("/released", {"cursor": _b64("[" * 370)}, "invalid cursor: pass the next_cursor of a previous answer"),
    ("/released", {"cursor": "not base64!"}, "invalid cursor 'not base64!': pass the next_cursor of a previous answer"),
    ("/instances/i-cli00001", {"cursor": _b64("[" * 370)}, "invalid cursor: pass the next_cursor of a previous answer"),
    ("/instances/i-cli00001", {"cursor": _b64('["t", "2024-01-01T00:00:00Z", true]')}, "invalid cursor: pass the next_cursor of a previous answer"),
    ("/instances/i-cli00001", {"limit": "0"}, "invalid limit 0: an integer from 1 to 1000"),
    ("/instances/i-cli00001", {"since": "1d"}, "unknown parameter 'since': accepted are limit, cursor"),
    ("/instances/i-" + "a" * 5000, {}, "invalid instance id 'i-" + "a" * 62 + "...': expected i- followed by lowercase letters and digits"),
    ("/stats", {"since": "\ud800"}, "invalid since: control or non-UTF-8 characters"),
]


@SHAPES
@pytest.mark.parametrize("case", MALFORMED, ids=[f"{c[0][:20]}-{next(iter(c[1]), '')}-{i}" for i, c in enumerate(MALFORMED)])
def test_any_malformed_parameter_or_cursor_is_400_before_the_store(
        db: str, call: Any, case: tuple[str, dict[str, str], str]) -> None:
    """GIVEN a parameter too long, of control characters, or a cursor not ours (deep JSON
    included) WHEN asked THEN 400 naming it, never 503 (an oversized tag was) nor a crash."""
    path, params, message = case
    if call is wsgi and "\ud800" in next(iter(params.values()), ""):
        pytest.skip("a query string cannot carry a lone surrogate")
    status, body = call(path, params)
    assert (status, body["error"]) == (400, message)


@pytest.mark.parametrize("event", [
    b"[" * 100_000,
    json.dumps({"rawPath": "/released", "queryParameters": {"limit": {"deep": [1]}}}).encode(),
    json.dumps({"rawPath": "/released", "queryParameters": ["limit", "1"]}).encode(),
    json.dumps({"rawPath": ["/released"]}).encode(),
    json.dumps({"rawPath": "/released", "requestContext": {"http": "GET"}}).encode(),
    json.dumps({"rawPath": "/released", "headers": {"x": "y" * 1_100_000}}).encode(),
], ids=["deep", "param-object", "params-list", "path-list", "http-text", "oversized"])
def test_a_malformed_fc3_event_is_400(db: str, event: bytes) -> None:
    """GIVEN an FC 3.0 event that is deep, oversized or of the wrong shapes THEN 400."""
    response = index.handler(event, Context())
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"].startswith("not an FC 3.0 HTTP trigger event: ")


@SHAPES
def test_an_instance_timeline_is_paged_with_a_cursor(db: str, call: Any) -> None:
    """GIVEN an instance with 5 events WHEN /instances/{id} is read 2 at a time THEN three
    pages, oldest first, whose concatenation is the whole timeline (21.7 MB answers before)."""
    from datetime import timedelta

    from shared.store import Store
    from tests.test_store import state_event

    store = Store(db)
    start = store.timeline("i-cli00004")[0].event_time
    store.record([state_event("i-cli00004", s, start + timedelta(minutes=i + 1), event_id=f"page-{i}")
                  for i, s in enumerate(("Stopping", "Stopped", "Starting", "Running"))])
    store.close()
    pages, cursor = [], None
    for _ in range(4):
        status, body = call("/instances/i-cli00004", {"limit": "2", **({"cursor": cursor} if cursor else {})})
        assert status == 200 and body["instance"]["instance_id"] == "i-cli00004"
        pages.append([e["state"] for e in body["timeline"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [["Running", "Stopping"], ["Stopped", "Starting"], ["Running"]]


def test_a_timeline_page_ends_early_past_its_size_budget(tmp_path: Path) -> None:
    """GIVEN events of 1000-character raws WHEN paged with a 2500-character budget THEN pages
    of 2 events (the one that would cross the budget opens the next page), nothing lost."""
    from dataclasses import replace
    from datetime import datetime, timedelta, timezone

    from shared.store import Store
    from tests.test_store import state_event

    store = Store(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    t0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    store.record([replace(state_event("i-budget01", "Running", t0 + timedelta(seconds=i), event_id=f"b-{i}"),
                          raw=json.dumps({"pad": "p" * 989})) for i in range(7)])
    assert len(store.timeline("i-budget01")[0].raw or "") == 1000
    seen, cursor, sizes = [], None, []
    while True:
        page = store.timeline_page("i-budget01", limit=100, cursor=cursor, max_chars=2500)
        sizes.append(len(page.items))
        seen += [e.event_id for e in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert (sizes, seen) == ([2, 2, 2, 1], [f"b-{i}" for i in range(7)])
    store.close()


def test_a_store_that_fails_unexpectedly_answers_500_without_its_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a database file that is not a database WHEN asked THEN 500 with a generic message
    (no path, no driver text), logged; not an unhandled exception."""
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("ECS_EVENT_OPS_DB_URL", f"sqlite:///{broken}")
    status, body = fc3("/released")
    assert (status, body) == (500, {"error": "internal error; the function log has the details"})
