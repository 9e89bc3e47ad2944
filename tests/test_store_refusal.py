"""One element the database refuses never sinks the batch it came in; sizes fit the columns."""

from __future__ import annotations

import dataclasses

import pytest

from shared.events import FIELD_LIMITS, EcsEvent, parse
from shared.store import Store, StoreUnavailableError, _schema
from tests.helpers import event_bytes


def _event(event_id: str) -> EcsEvent:
    event = parse(event_bytes("cloudmonitor/state_running.json")).events[0]
    return dataclasses.replace(event, event_id=event_id)


def test_every_field_limit_of_the_parser_fits_its_store_column() -> None:
    """The parser's FIELD_LIMITS are the events table's column sizes: what parses, fits."""
    columns = _schema().events.c
    assert {name: columns[name].type.length for name in FIELD_LIMITS} == FIELD_LIMITS


def test_a_refused_element_is_reported_and_the_rest_of_the_batch_is_stored(store: Store) -> None:
    """GIVEN a batch of good events, one whose region is longer than its column and one whose
    raw JSON holds a lone surrogate (built past the parser, which refuses both) WHEN recorded on
    each backend THEN the good ones are stored and the refused ones reported, no raise."""
    good, later = _event("e-good-1"), _event("e-good-2")
    too_long = dataclasses.replace(_event("e-long"), region="r" * 100)
    unencodable = dataclasses.replace(_event("e-surrogate"), raw='{"a": "\ud800"}')
    result = store.record([good, too_long, unencodable, later])
    refused = dict(result.refused)
    backend = store.url.split(":", 1)[0]
    if backend == "sqlite":  # SQLite does not enforce a VARCHAR's length
        assert (result.inserted, sorted(refused)) == (("e-good-1", "e-long", "e-good-2"), ["e-surrogate"])
    else:
        assert (result.inserted, sorted(refused)) == (("e-good-1", "e-good-2"), ["e-long", "e-surrogate"])
        assert "too long" in refused["e-long"].lower()
    assert refused["e-surrogate"] == "record event refused: text not encodable as UTF-8 (surrogates not allowed)"
    assert sorted(e.event_id for e in store.timeline(good.instance_id or "")) == sorted(result.inserted)
    again = store.record([good, later])
    assert (again.inserted, again.duplicates, again.refused) == ((), ("e-good-1", "e-good-2"), ())


def test_an_unreachable_store_still_raises_for_the_whole_batch() -> None:
    """A connection failure is not a refusal: the invocation raises so the platform retries."""
    store = Store("postgresql+psycopg://nobody:pa/ss@127.0.0.1:1/none", max_attempts=1)
    with pytest.raises(StoreUnavailableError) as caught:
        store.record([_event("e-1"), _event("e-2")])
    assert "pa/ss" not in str(caught.value) and "nobody:***@127.0.0.1:1/none" in str(caught.value)
