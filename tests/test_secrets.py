"""Secrets never leave: database passwords, AccessKeys, STS tokens and webhook secrets are
masked in logs, errors, CLI output and notifications, and never stored.

The scenario test runs the functions against the emulator with secrets in every place a
deployment holds them, captures everything printed and stored, and greps for each secret.
"""

from __future__ import annotations

import dataclasses
import io
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import log
from shared.redact import redact, redact_url, register
from shared.store import Store, StoreError, StoreUnavailableError, store_for
from tests.helpers import FLEETS
from tests.http_receiver import HttpReceiver, Reply
from tools import lifecycle
from tools.emulator import Emulator, load_fleet
from tools.emulator.fleet import Credential
from tools.envelopes import wrap
from tools.invoke import invoke_local

DB_PASSWORD = "Db/Pa55w0rd-x9"  # a "/" inside: the old mask stopped there and printed the rest
QUERY_PASSWORD = "QueryPa55-w0rd"
AK_SECRET = "AkS3cret/Key+Value=9"
STS_TOKEN = "STS.T0ken/with+slash=end"
DINGTALK_TOKEN = "dtAccessT0ken0123456789"
DINGTALK_SECRET = "SECd1ngT4lkS3cretValue0123"
SECRETS = (DB_PASSWORD, QUERY_PASSWORD, AK_SECRET, STS_TOKEN, DINGTALK_TOKEN, DINGTALK_SECRET)

SPOT = "i-bp1spot000000000001"
APP = "i-bp1as000000000000001"  # auto-start: "true"


def _spellings(secret: str) -> set[str]:
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
            json.dumps(secret)[1:-1]}


def _leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    return sorted(s for secret in SECRETS for s in _spellings(secret) if s.encode() in data)


# ---------------------------------------------------------------------------------------------
# the redactor, form by form


@pytest.mark.parametrize(("text", "want"), [
    ("postgresql://user:pa/ss@host/db", "postgresql://user:***@host/db"),
    ("postgresql+psycopg://ops:p@ss/w:rd@db.internal:5432/ops?sslmode=require",
     "postgresql+psycopg://ops:***@db.internal:5432/ops?sslmode=require"),
    ("mysql+pymysql://root:r00t%2Fpw%40x@127.0.0.1:3306/test", "mysql+pymysql://root:***@127.0.0.1:3306/test"),
    ("postgresql://ops@host/db?password=s3cretpw&sslmode=require", "postgresql://ops@host/db?password=***&sslmode=require"),
    ("connection failed: host=db user=ops password=s3cret dbname=x", "connection failed: host=db user=ops password=*** dbname=x"),
    ("https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=1&sign=xyz%3D",
     "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=1&sign=***"),
    ("https://open.feishu.cn/open-apis/bot/v2/hook/0a1b2c3d-token", "https://open.feishu.cn/open-apis/bot/v2/hook/***"),
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecomkey123", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"),
    ("https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/services/***"),
    ("GET /?Action=DescribeInstances&AccessKeyId=LTAI1&SecurityToken=STS.abc%2Fdef&Signature=s1g",
     "GET /?Action=DescribeInstances&AccessKeyId=LTAI1&SecurityToken=***&Signature=***"),
    ("sqlite:////tmp/store.sqlite3", "sqlite:////tmp/store.sqlite3"),
    ("user@example.com wrote 10:30 at postgresql://ops@host/db", "user@example.com wrote 10:30 at postgresql://ops@host/db"),
])
def test_every_form_of_a_secret_in_text_is_masked(text: str, want: str) -> None:
    """URL passwords (with / and @ inside, encoded), ?password=, DSN password=, webhook tokens
    in query and path, signed-request parameters: masked; texts without secrets unchanged."""
    assert redact(text) == want


def test_known_secret_values_are_masked_in_every_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values from the environment and registered ones are masked raw, URL-encoded, decoded
    and JSON-escaped, wherever they appear (a driver quoting a password alone)."""
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET)
    monkeypatch.setenv("ECS_EVENT_OPS_DB_URL", f"postgresql+psycopg://ops:{DB_PASSWORD}@db/ops")
    monkeypatch.setenv("ECS_EVENT_OPS_NOTIFY_DINGTALK_URL", f"https://oapi.dingtalk.com/robot/send?access_token={DINGTALK_TOKEN}")
    register("registered-sts-token-1")
    text = " | ".join([AK_SECRET, urllib.parse.quote(AK_SECRET, safe=""), json.dumps(AK_SECRET),
                       DB_PASSWORD, urllib.parse.quote(DB_PASSWORD, safe=""), DINGTALK_TOKEN,
                       "registered-sts-token-1"])
    assert redact(text) == '*** | *** | "***" | *** | *** | *** | ***'
    assert redact_url(f"https://oapi.dingtalk.com/robot/send?access_token={DINGTALK_TOKEN}") == "***"


def test_the_log_formatter_masks_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages, fields (nested too), exception texts: masked before the line is written."""
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", AK_SECRET)
    stream = io.StringIO()
    with log.redirect(stream):
        logger = log.get_logger("tests.secrets")
        log.emit(logger, "connecting to postgresql://ops:" + DB_PASSWORD + "@db/ops",
                 nested={"urls": ["mysql://root:" + DB_PASSWORD + "@h/d"], "secret": AK_SECRET})
        try:
            raise RuntimeError("token " + AK_SECRET)
        except RuntimeError:
            logger.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "connecting to postgresql://ops:***@db/ops"
    assert lines[0]["nested"] == {"urls": ["mysql://root:***@h/d"], "secret": "***"}
    assert (lines[1]["error_type"], lines[1]["error"]) == ("RuntimeError", "token ***")
    assert _leaks(stream.getvalue()) == []


@pytest.mark.parametrize("url", [
    f"postgresql+psycopg://ops:{DB_PASSWORD}@127.0.0.1:1/ops",
    f"postgresql+psycopg://ops@127.0.0.1:1/ops?password={QUERY_PASSWORD}",
    f"postgresql+psycopg://ops:{urllib.parse.quote(DB_PASSWORD, safe='')}@127.0.0.1:1/ops",
    f"mysql+pymysql://root:{DB_PASSWORD}@127.0.0.1:1/test",
])
def test_an_unreachable_database_never_shows_its_password(url: str) -> None:
    """GIVEN a database URL with a password in any form and nothing listening WHEN the store,
    the CLI and the function meet it THEN errors, logs and stderr name the host, not the password."""
    stream = io.StringIO()
    with log.redirect(stream):
        store = Store(url, max_attempts=1)
        with pytest.raises(StoreUnavailableError) as caught:
            store.ping()
        assert "127.0.0.1:1" in str(caught.value)
        out, err = io.StringIO(), io.StringIO()
        code = lifecycle.main(["--db", url, "released"], stdout=out, stderr=err)
        result = invoke_local("record_lifecycle", b'{"hello": 1}', db_url=url, cloud_url="http://127.0.0.1:1")
    assert code != 0 and "store" in err.getvalue()
    assert isinstance(result.error, StoreError)
    printed = "\n".join([str(caught.value), repr(caught.value), repr(store), out.getvalue(),
                         err.getvalue(), str(result.error), stream.getvalue()])
    assert _leaks(printed) == []


# ---------------------------------------------------------------------------------------------
# the whole scenario


@pytest.fixture(params=["sqlite", "postgres"])
def scenario_db(request: pytest.FixtureRequest, tmp_path: Path, pg_database_url: str | None) -> Iterator[str]:
    """A store URL: a SQLite file, or PostgreSQL reached with a password holding a "/" (the
    test server trusts 127.0.0.1, so any password is accepted and carried everywhere)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scenario.sqlite3'}"
        return
    if pg_database_url is None:
        pytest.skip("postgres tests disabled: set ECS_EVENT_OPS_TEST_PG_URL")
    from tests.conftest import drop_project_tables

    scheme, rest = pg_database_url.split("://", 1)
    url = f"{scheme}://postgres:{DB_PASSWORD}@{rest.rpartition('@')[2]}"
    drop_project_tables(url)
    yield url
    store_for(url).close()  # the functions' warm store; the next test starts from no tables
    drop_project_tables(url)


def _stored_text(url: str, tmp_path: Path) -> bytes:
    """Everything the store holds: the SQLite files' bytes, or every row of every table."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = [json.dumps([str(v) for v in row]) for table in ("events", "instances", "ledger", "schema_version")
                    for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]  # noqa: S608 (fixed names)
    finally:
        engine.dispose()
    assert rows
    return "\n".join(rows).encode()


def test_a_whole_scenario_prints_and_stores_no_secret(
        scenario_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN STS keys, a DingTalk webhook with token and signing secret, and the store's URL
    (a password with "/" on PostgreSQL) WHEN instances are created, one crashes and is started,
    a spot notice is drained (alerts sent, the first delivery failing), bad input arrives, the
    CLI and the HTTP API are read, an unreachable database and cloud are met THEN nothing printed (stdout,
    stderr, logs, answers, errors), sent in an alert or stored holds any secret."""
    spot_fleet, autostart_fleet = load_fleet(FLEETS / "spot.yaml"), load_fleet(FLEETS / "autostart.yaml")
    fleet = dataclasses.replace(
        spot_fleet,
        instances=(*spot_fleet.instances, *(i for i in autostart_fleet.instances if i.id == APP)),
        credentials=(Credential("STS.scenarioKey01", AK_SECRET, security_token=STS_TOKEN,
                                user_name="assumed/ops-role"),),
    )
    printed: list[str] = []
    with Emulator(fleet, start_delay_s=0.01) as emu, \
            HttpReceiver([500], default=Reply(200, {"errcode": 0, "errmsg": "ok"})) as rx:
        for name, value in emu.signing_environment().items():
            monkeypatch.setenv(name, value)
        env = {
            "ECS_EVENT_OPS_NOTIFY_DINGTALK_URL": rx.url_for(f"/robot/send?access_token={DINGTALK_TOKEN}"),
            "ECS_EVENT_OPS_NOTIFY_DINGTALK_SECRET": DINGTALK_SECRET,
            "ECS_EVENT_OPS_DRAIN_TIME_S": "0.2", "ECS_EVENT_OPS_LB_TAG": "app=web",
            "ECS_EVENT_OPS_API_BACKOFF_BASE_S": "0.01", "ECS_EVENT_OPS_API_BACKOFF_MAX_S": "0.05",
            "ECS_EVENT_OPS_ACTIONTRAIL_SETTLE_S": "0",
        }
        for name in ("WEBHOOK_URL", "LARK_URL", "WECOM_URL", "SLACK_URL"):
            monkeypatch.delenv("ECS_EVENT_OPS_NOTIFY_" + name, raising=False)
        results = []

        def invoke(function: str, body: bytes, db_url: str = scenario_db, cloud_url: str = emu.url) -> Any:
            result = invoke_local(function, body, cloud_url=cloud_url, db_url=db_url, env=env)
            results.append(result)
            printed.extend([json.dumps(result.value, default=str), str(result.error), repr(result.error)])
            return result

        created = emu.create_instance({"id": "i-bp1scenario000000001", "name": "scenario-1",
                                       "instance_type": "ecs.g7.large", "zone": "cn-hangzhou-h"})
        emu.wait_for_status(created, "Running", 5)
        for payload in [p for p in emu.events() if p["content"].get("resourceId") == created]:
            assert invoke("record_lifecycle", wrap(payload, "eventbridge")).error is None
        assert invoke("record_lifecycle", b'[{"hello": 1}, "not json", 12]').value["bad_count"] == 3

        emu.stop_instance(APP, by="crash")
        emu.wait_for_status(APP, "Stopped", 5)
        stopped = next(p for p in reversed(emu.events())
                       if p["content"].get("resourceId") == APP and p["content"].get("state") == "Stopped")
        started = invoke("auto_start", wrap(stopped, "cloudmonitor"))
        assert started.error is None

        emu.interrupt_spot(SPOT)
        notice = emu.events()[-1]
        drained = invoke("drain_spot", wrap(notice, "eventbridge"))
        assert drained.error is None
        unreachable = invoke("record_lifecycle", wrap(notice, "cloudmonitor"),
                             db_url=f"postgresql+psycopg://ops:{DB_PASSWORD}@127.0.0.1:1/ops")
        assert isinstance(unreachable.error, StoreUnavailableError)
        no_cloud = invoke("record_lifecycle", wrap({**emu.events()[0], "id": "scenario-no-cloud-1"}, "cloudmonitor"),
                          cloud_url="http://127.0.0.1:1")  # the SDK's connection errors are logged
        assert no_cloud.value["snapshots"]["failed"] != []

        for argv in (["released"], ["show", created], ["stats", "--format", "json"], ["show", SPOT, "--format", "json"],
                     ["drains"], ["decisions", "--format", "json"], ["rejected", "--format", "json"]):
            lifecycle.main(["--db", scenario_db, *argv])
        lifecycle.main(["--db", f"postgresql+psycopg://ops@127.0.0.1:1/ops?password={QUERY_PASSWORD}", "released"])
        monkeypatch.setenv("ECS_EVENT_OPS_DB_URL", scenario_db)
        from functions.lifecycle_api import index as api

        for path in ("/released", f"/instances/{SPOT}", "/stats"):
            answer = api.handler(json.dumps({"rawPath": path, "queryParameters": {}}).encode(), None)
            assert answer["statusCode"] == 200, answer
            printed.append(json.dumps(answer))
        alerts = rx.requests
    captured = capsys.readouterr()
    printed += [captured.out, captured.err]

    # the scenario happened: logs were written, the drain and the start ran, alerts went out
    # (the first delivery failed and was retried), signed with the secret
    assert '"message": "event recorded"' in captured.out
    assert any(r.value and r.value.get("decisions") for r in results if r.function == "auto_start")
    assert len(alerts) >= 2 and all("sign=" in a.raw_query and "timestamp=" in a.raw_query for a in alerts)
    assert all(f"access_token={DINGTALK_TOKEN}" in a.raw_query for a in alerts)  # where it must go
    leaks = {
        "printed": _leaks("\n".join(printed)),
        "alert bodies": _leaks(b"\n".join(a.body for a in alerts)),
        "stored": _leaks(_stored_text(scenario_db, tmp_path)),
    }
    assert leaks == {"printed": [], "alert bodies": [], "stored": []}


def test_an_alert_quoting_a_secret_sends_and_logs_it_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN an alert whose text and fields quote a database URL with its password and whose
    DingTalk webhook answers an error echoing its token WHEN sent THEN the chat message, the
    logs and the report carry the host, never the password, token or signing secret."""
    from shared.notify import Notification, Notifier

    url = f"postgresql+psycopg://ops:{DB_PASSWORD}@db.internal/ops"
    stream = io.StringIO()
    with HttpReceiver([Reply(200, {"errcode": 300001, "errmsg": f"token {DINGTALK_TOKEN} is invalid"})],
                      default=Reply(200, {"errcode": 0, "errmsg": "ok"})) as rx, log.redirect(stream):
        notifier = Notifier.from_env({
            "ECS_EVENT_OPS_NOTIFY_DINGTALK_URL": rx.url_for(f"/robot/send?access_token={DINGTALK_TOKEN}"),
            "ECS_EVENT_OPS_NOTIFY_DINGTALK_SECRET": DINGTALK_SECRET,
        }, timeout_s=2.0)
        report = notifier.send(Notification(
            key="secrets:1", title="store failed", text=f"record events failed ({url})",
            fields={"error": f"could not reach {url}", "attempts": 3},
        ))
        bodies = [r.body for r in rx.requests]
    assert bodies and all(b"db.internal" in body for body in bodies)
    assert _leaks(b"\n".join(bodies)) == []
    assert _leaks(stream.getvalue() + repr(report)) == []
    assert "300001" in stream.getvalue()  # the failed delivery was logged, masked
