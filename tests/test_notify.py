"""Notifications: signing, message shapes, retries, dedup and the time budget, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from shared.notify import (
    DeliveryError,
    DingTalkChannel,
    LarkChannel,
    Notification,
    Notifier,
    NotifyConfigError,
    SendReport,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    channels_from_env,
    dingtalk_sign,
    lark_sign,
    redact_url,
)
from tests.http_receiver import HttpReceiver, Reply, closed_port_url

DING_SECRET = "SECd1ngTalkS3cretValue0123456789abcdef"
LARK_SECRET = "l4rkS3cretValue-xyz"
TOKEN = "tok3nSecretAccess9876"
NOW = 1_795_000_000.25  # a fixed wall clock for signatures
SLACK_OK = Reply(200, "ok")
DING_OK = Reply(200, {"errcode": 0, "errmsg": "ok"})
LARK_OK = Reply(200, {"code": 0, "msg": "success", "data": {}})


class FakeLedger:
    """In-memory implementation of the notify Ledger protocol."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.fail_claims = False

    def ledger_claim(
        self,
        key: str,
        *,
        kind: str,
        instance_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        status: str = "claimed",
    ) -> bool:
        if self.fail_claims:
            raise ConnectionError("database is down")
        if key in self.rows:
            return False
        self.rows[key] = {
            "kind": kind,
            "instance_id": instance_id,
            "status": status,
            "data": dict(data or {}),
        }
        return True

    def ledger_update(
        self, key: str, *, status: str | None = None, data: Mapping[str, Any] | None = None
    ) -> None:
        row = self.rows[key]
        if status is not None:
            row["status"] = status
        if data is not None:
            row["data"] = {**row["data"], **data}

    def ledger_get(self, key: str) -> Any:
        row = self.rows.get(key)
        if row is None:
            return None
        return SimpleNamespace(key=key, instance_id=row["instance_id"], status=row["status"],
                               data=dict(row["data"]))

    def ledger_swap(self, key: str, *, expect: Mapping[str, Any], status: str | None = None,
                    data: Mapping[str, Any] | None = None,
                    statuses: Collection[str] | None = None) -> bool:
        row = self.rows.get(key)
        if row is None or (statuses is not None and row["status"] not in statuses):
            return False
        if any(row["data"].get(k) != v for k, v in expect.items()):
            return False
        self.ledger_update(key, status=status, data=data)
        return True


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def note(key: str = "auto_start:capped:i-abc123:2026-11-23T10", **kw: Any) -> Notification:
    values: dict[str, Any] = {
        "title": "Auto-start capped",
        "text": "i-abc123 was started 3 times in 1 h; giving up.",
        "severity": "critical",
        "instance_id": "i-abc123",
        "fields": {"starts": 3, "window_s": 3600},
    }
    values.update(kw)
    return Notification(key=key, **values)


@pytest.fixture
def rx() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


def notifier(*channels: Any, **kw: Any) -> Notifier:
    kw.setdefault("clock", lambda: NOW)
    kw.setdefault("sleep", Sleeps())
    return Notifier(channels, **kw)


# --- signing -------------------------------------------------------------------------------------


def test_dingtalk_sign_matches_published_known_answer() -> None:
    """DingTalk signature equals the dingding crate's known answer for ("1700000000000", "secret")."""
    # GIVEN the vector from https://docs.rs/crate/dingding/latest/source/src/signature.rs
    # WHEN signing THEN the base64 matches (the crate shows it URL-encoded)
    assert (
        dingtalk_sign("secret", "1700000000000") == "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY="
    )


def test_dingtalk_request_is_signed_in_query(rx: HttpReceiver) -> None:
    """DingTalk: timestamp (ms) and url-encoded sign are added next to access_token."""
    # GIVEN a DingTalk channel with a secret
    rx.script(DING_OK)
    channel = DingTalkChannel(rx.url_for(f"/robot/send?access_token={TOKEN}"), DING_SECRET)
    # WHEN a notification is sent
    report = notifier(channel).send(note())
    # THEN the receiver can verify the signature from the query and the shared secret
    assert report.delivered == ("dingtalk",)
    (request,) = rx.requests
    assert request.path == "/robot/send"
    query = request.query
    assert query["access_token"] == TOKEN
    assert query["timestamp"] == str(int(NOW * 1000))
    expected = base64.b64encode(
        hmac.new(
            DING_SECRET.encode(),
            f"{query['timestamp']}\n{DING_SECRET}".encode(),
            hashlib.sha256,
        ).digest()
    ).decode()
    assert query["sign"] == expected
    # the raw query carries it percent-encoded (quote_plus), never a bare "+" or "/"
    assert "+" not in request.raw_query.split("sign=", 1)[1]
    assert "/" not in request.raw_query.split("sign=", 1)[1]


def test_lark_request_is_signed_in_body(rx: HttpReceiver) -> None:
    """Lark: timestamp (s, string) and sign (HMAC keyed by "ts\\nsecret" over b"") in the body."""
    # GIVEN a Lark channel with a secret
    rx.script(LARK_OK)
    channel = LarkChannel(rx.url_for(f"/open-apis/bot/v2/hook/{TOKEN}"), LARK_SECRET)
    # WHEN a notification is sent
    report = notifier(channel).send(note())
    # THEN the body carries a verifiable signature and the text message
    assert report.delivered == ("lark",)
    body = rx.requests[0].json
    assert body["timestamp"] == str(int(NOW))
    key = f"{body['timestamp']}\n{LARK_SECRET}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["sign"] == lark_sign(LARK_SECRET, str(int(NOW)))
    assert body["msg_type"] == "text"
    assert body["content"]["text"].startswith("[CRITICAL] Auto-start capped\n")


def test_unsigned_channels_add_no_signature(rx: HttpReceiver) -> None:
    """Without a secret, neither DingTalk's query nor Lark's body carries signing fields."""
    # GIVEN DingTalk and Lark channels without secrets on one receiver (sent concurrently, so
    # one answer that satisfies both)
    rx.script(default=Reply(200, {"errcode": 0, "code": 0}))
    ding = DingTalkChannel(rx.url_for(f"/robot/send?access_token={TOKEN}"))
    lark = LarkChannel(rx.url_for("/lark"))
    # WHEN sent
    report = notifier(ding, lark, max_attempts=1).send(note())
    # THEN both delivered and nothing signed
    assert sorted(report.delivered) == ["dingtalk", "lark"]
    by_path = {r.path: r for r in rx.requests}
    assert by_path["/robot/send"].query == {"access_token": TOKEN}
    assert set(by_path["/lark"].json) == {"msg_type", "content"}


# --- message shapes ------------------------------------------------------------------------------


def test_message_shape_per_channel() -> None:
    """Each channel renders the documented JSON shape."""
    # GIVEN one notification and each channel
    n = note()
    base = "https://example.invalid/x"
    # WHEN built THEN the shapes match the vendors' formats
    ding = json.loads(DingTalkChannel(base).build(n, NOW).body)
    assert ding["msgtype"] == "markdown"
    assert ding["markdown"]["title"] == "Auto-start capped"
    assert ding["markdown"]["text"] == (
        "### [CRITICAL] Auto-start capped\n\n"
        "i-abc123 was started 3 times in 1 h; giving up.\n\n"
        "- instance: i-abc123\n- starts: 3\n- window_s: 3600"
    )
    wecom = json.loads(WeComChannel(base).build(n, NOW).body)
    assert wecom == {"msgtype": "markdown", "markdown": {"content": ding["markdown"]["text"]}}
    lark = json.loads(LarkChannel(base).build(n, NOW).body)
    assert lark == {
        "msg_type": "text",
        "content": {
            "text": "[CRITICAL] Auto-start capped\n"
            "i-abc123 was started 3 times in 1 h; giving up.\n"
            "instance: i-abc123\nstarts: 3\nwindow_s: 3600"
        },
    }
    slack = json.loads(SlackChannel(base).build(n, NOW).body)
    assert slack == {"text": lark["content"]["text"]}
    hook = json.loads(WebhookChannel(base).build(n, NOW).body)
    assert hook == {
        "key": n.key,
        "title": n.title,
        "text": n.text,
        "severity": "critical",
        "instance_id": "i-abc123",
        "fields": {"starts": 3, "window_s": 3600},
        "time": int(NOW),
    }


def test_wecom_content_is_truncated_to_its_limit() -> None:
    """WeCom markdown content stays within 4096 bytes even for a huge multibyte body."""
    # GIVEN a body far over the limit, in 3-byte characters
    n = note(text="告警" * 5000)
    # WHEN built
    content = json.loads(WeComChannel("https://example.invalid/x").build(n, NOW).body)
    # THEN it is cut, valid UTF-8, and marked
    text = content["markdown"]["content"]
    assert len(text.encode("utf-8")) <= 4096
    assert text.endswith("...")


def test_http_post_carries_json_content_type(rx: HttpReceiver) -> None:
    """Requests are POSTs with a JSON content type and a UTF-8 body."""
    # GIVEN a Slack channel
    rx.script(SLACK_OK)
    # WHEN sent with non-ASCII text
    notifier(SlackChannel(rx.url_for("/services/T/B/X"))).send(note(text="实例已停止"))
    # THEN
    (request,) = rx.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert "实例已停止" in request.json["text"]


# --- retries and errors --------------------------------------------------------------------------


def test_retries_on_5xx_then_succeeds(rx: HttpReceiver) -> None:
    """503, 503, then 200: three requests, delivered, two backoff sleeps that grow."""
    # GIVEN a webhook failing twice
    rx.script(503, 503, 200)
    sleeps = Sleeps()
    # WHEN sent
    report = notifier(WebhookChannel(rx.url_for("/hook")), sleep=sleeps).send(note())
    # THEN
    assert report == SendReport(note().key, False, ("webhook",), ())
    assert len(rx.requests) == 3
    assert len(sleeps.calls) == 2
    assert 0.1 <= sleeps.calls[0] <= 0.2
    assert 0.2 <= sleeps.calls[1] <= 0.4


def test_gives_up_after_max_attempts(rx: HttpReceiver) -> None:
    """A webhook that keeps answering 502 is tried max_attempts times, then reported failed."""
    # GIVEN a webhook that always fails
    rx.script(default=502)
    # WHEN sent with 3 attempts
    report = notifier(WebhookChannel(rx.url_for("/hook")), max_attempts=3).send(note())
    # THEN
    assert len(rx.requests) == 3
    assert report.delivered == ()
    assert report.failed == (("webhook", "HTTP 502"),)


def test_429_is_retried_and_honours_retry_after(rx: HttpReceiver) -> None:
    """Slack 429 with Retry-After: 1 is retried after at least that long."""
    # GIVEN a rate-limited Slack webhook
    rx.script(Reply(429, "rate_limited", {"Retry-After": "1"}), SLACK_OK)
    sleeps = Sleeps()
    # WHEN sent
    report = notifier(SlackChannel(rx.url_for("/s")), sleep=sleeps).send(note())
    # THEN
    assert report.delivered == ("slack",)
    assert sleeps.calls == [1.0]
    assert len(rx.requests) == 2


def test_client_error_fails_fast(rx: HttpReceiver) -> None:
    """A 400/404 is permanent: one request, failed, no sleep."""
    # GIVEN a webhook that rejects the payload
    rx.script(Reply(404, "no_service"))
    sleeps = Sleeps()
    # WHEN sent
    report = notifier(SlackChannel(rx.url_for("/s")), sleep=sleeps).send(note())
    # THEN
    assert len(rx.requests) == 1
    assert report.failed == (("slack", "HTTP 404"),)
    assert sleeps.calls == []


def test_redirect_is_not_followed(rx: HttpReceiver) -> None:
    """A 302 fails the channel instead of replaying the POST elsewhere."""
    # GIVEN a webhook that redirects
    rx.script(Reply(302, "", {"Location": "/elsewhere"}))
    # WHEN sent
    report = notifier(WebhookChannel(rx.url_for("/hook"))).send(note())
    # THEN exactly one request, to the original path
    assert [r.path for r in rx.requests] == ["/hook"]
    assert report.failed == (("webhook", "HTTP 302"),)


@pytest.mark.parametrize(
    ("channel_cls", "answer", "error"),
    [
        (
            DingTalkChannel,
            {"errcode": 310000, "errmsg": "sign not match"},
            "code 310000: sign not match",
        ),
        (
            WeComChannel,
            {"errcode": 93000, "errmsg": "invalid webhook url"},
            "code 93000: invalid webhook url",
        ),
        (LarkChannel, {"code": 19021, "msg": "sign match fail"}, "code 19021: sign match fail"),
        (
            LarkChannel,
            {"StatusCode": 9499, "StatusMessage": "Bad Request"},
            "code 9499: Bad Request",
        ),
    ],
)
def test_nonzero_errcode_fails_fast(
    rx: HttpReceiver, channel_cls: type[Any], answer: dict[str, Any], error: str
) -> None:
    """HTTP 200 with a non-zero, non-rate-limit code is a failure without retry."""
    # GIVEN a robot answering 200 with an error code
    rx.script(Reply(200, answer))
    sleeps = Sleeps()
    # WHEN sent
    report = notifier(channel_cls(rx.url_for("/robot")), sleep=sleeps).send(note())
    # THEN
    assert report.failed == ((channel_cls(rx.url).name, error),)
    assert len(rx.requests) == 1
    assert sleeps.calls == []


@pytest.mark.parametrize(
    ("channel_cls", "limited", "ok"),
    [
        (DingTalkChannel, {"errcode": 130101, "errmsg": "send too fast"}, DING_OK),
        (WeComChannel, {"errcode": 45009, "errmsg": "api freq out of limit"}, DING_OK),
        (LarkChannel, {"code": 11232, "msg": "frequency limited"}, LARK_OK),
    ],
)
def test_rate_limit_errcode_is_retried(
    rx: HttpReceiver, channel_cls: type[Any], limited: dict[str, Any], ok: Reply
) -> None:
    """A rate-limit code in a 200 answer is retried, then delivered."""
    # GIVEN a robot that is rate limited once
    rx.script(Reply(200, limited), ok)
    # WHEN sent
    report = notifier(channel_cls(rx.url_for("/robot"))).send(note())
    # THEN two requests and delivered
    assert len(rx.requests) == 2
    assert report.delivered == (channel_cls(rx.url).name,)


def test_robot_answer_that_is_not_json_fails(rx: HttpReceiver) -> None:
    """A DingTalk 200 with an HTML body (a proxy page) is not counted as delivered."""
    rx.script(Reply(200, "<html>gateway</html>"))
    report = notifier(DingTalkChannel(rx.url_for("/robot"))).send(note())
    assert report.failed == (("dingtalk", "answer is not JSON"),)


def test_dropped_connection_is_retried(rx: HttpReceiver) -> None:
    """A connection closed without an answer is retried."""
    rx.script("drop", 200)
    report = notifier(WebhookChannel(rx.url_for("/hook"))).send(note())
    assert report.delivered == ("webhook",)
    assert len(rx.requests) == 2


# --- the time budget -----------------------------------------------------------------------------


def test_dead_webhook_does_not_exceed_budget() -> None:
    """Connection refused: retried with real backoff, reported failed, within the budget."""
    # GIVEN a URL where nothing listens, real sleep, a 1 s budget
    dead = WebhookChannel(closed_port_url())
    n = Notifier([dead], timeout_s=1.0)
    # WHEN sent
    started = time.monotonic()
    report = n.send(note())
    elapsed = time.monotonic() - started
    # THEN it fails quickly and says why
    assert elapsed < 1.0 + 0.3
    assert report.delivered == ()
    ((name, error),) = report.failed
    assert name == "webhook"
    assert error.startswith("connection error")


def test_hanging_webhook_returns_within_budget_and_others_still_deliver() -> None:
    """A hanging webhook costs at most timeout_s; a healthy channel sent alongside is delivered."""
    # GIVEN one receiver that never answers and one that does
    with HttpReceiver(default="hang") as hanging, HttpReceiver([SLACK_OK]) as healthy:
        n = Notifier(
            [WebhookChannel(hanging.url_for("/hook")), SlackChannel(healthy.url_for("/s"))],
            timeout_s=0.8,
        )
        # WHEN sent
        started = time.monotonic()
        report = n.send(note())
        elapsed = time.monotonic() - started
    # THEN the call returns at the deadline with the hang reported and Slack delivered
    assert elapsed < 0.8 + 0.3
    assert report.delivered == ("slack",)
    ((name, error),) = report.failed
    assert name == "webhook"
    assert "timeout" in error or "deadline" in error
    assert len(hanging.requests) == 1  # no retry could fit after a full-budget hang


def test_retries_stop_when_the_budget_is_spent(rx: HttpReceiver) -> None:
    """A slow 503 uses the budget: no further attempt starts that could not finish."""
    # GIVEN a webhook answering 503 after 0.4 s, a 0.6 s budget, real sleep
    rx.script(default=Reply(503, delay_s=0.4))
    n = Notifier([WebhookChannel(rx.url_for("/hook"))], timeout_s=0.6, max_attempts=5)
    # WHEN sent
    started = time.monotonic()
    report = n.send(note())
    elapsed = time.monotonic() - started
    # THEN at most two attempts were made and the call kept to the budget
    assert elapsed < 0.6 + 0.3
    assert 1 <= len(rx.requests) <= 2
    assert report.delivered == ()


# --- dedup via the ledger ------------------------------------------------------------------------


def test_same_key_twice_sends_once(rx: HttpReceiver) -> None:
    """The second send of one key is a duplicate: one request, ledger row marked sent."""
    # GIVEN a ledger and a healthy webhook
    ledger = FakeLedger()
    n = notifier(WebhookChannel(rx.url_for("/hook")), ledger=ledger)
    # WHEN the same incident is notified twice
    first = n.send(note())
    second = n.send(note(text="a redelivered event"))
    # THEN one message went out
    assert first.delivered == ("webhook",)
    assert not first.duplicate
    assert second == SendReport(note().key, True, (), ())
    assert len(rx.requests) == 1
    row = ledger.rows["notify:" + note().key]
    assert row["kind"] == "notify"
    assert row["instance_id"] == "i-abc123"
    assert row["status"] == "sent"
    assert row["data"]["delivered"] == ["webhook"]


def test_ledger_records_failure(rx: HttpReceiver) -> None:
    """When every channel fails the ledger row is marked failed with the errors."""
    rx.script(default=400)
    ledger = FakeLedger()
    notifier(WebhookChannel(rx.url_for("/hook")), ledger=ledger).send(note())
    row = ledger.rows["notify:" + note().key]
    assert row["status"] == "failed"
    assert row["data"]["failed"] == [["webhook", "HTTP 400"]]


def test_a_claim_whose_sender_died_is_sent_after_its_lease(rx: HttpReceiver) -> None:
    """A key claimed but never marked sent: within its lease a send is a duplicate (the first
    sender may still be delivering); past it the message goes out, once."""
    # GIVEN a claim made by a sender that died, its lease running until one minute from now
    ledger = FakeLedger()
    key = "notify:" + note().key
    until = (datetime.now(timezone.utc) + timedelta(seconds=60)).isoformat()
    ledger.ledger_claim(key, kind="notify", data={"lease_until": until})
    n = notifier(WebhookChannel(rx.url_for("/hook")), ledger=ledger)
    # WHEN sent within the lease THEN a duplicate
    assert n.send(note()).duplicate
    # WHEN sent after it THEN delivered, and only once
    ledger.rows[key]["data"]["lease_until"] = "2020-01-01T00:00:00Z"
    assert n.send(note()).delivered == ("webhook",)
    assert n.send(note()).duplicate
    assert len(rx.requests) == 1
    assert (ledger.rows[key]["status"], ledger.rows[key]["data"]["taken_over"]) == ("sent", True)


def test_ledger_outage_still_sends(rx: HttpReceiver) -> None:
    """If the ledger cannot claim, the message is sent anyway (repeat beats loss), no raise."""
    ledger = FakeLedger()
    ledger.fail_claims = True
    report = notifier(WebhookChannel(rx.url_for("/hook")), ledger=ledger).send(note())
    assert report.delivered == ("webhook",)
    assert len(rx.requests) == 1


def test_no_channels_logs_only(capsys: pytest.CaptureFixture[str]) -> None:
    """With no channel configured the notification is logged, deduplicated, and ok."""
    ledger = FakeLedger()
    n = Notifier.from_env({}, ledger=ledger)
    report = n.send(note())
    assert report == SendReport(note().key, False, (), ())
    assert report.ok
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    logged = [line for line in lines if line["message"] == "notification"]
    assert logged[0]["title"] == "Auto-start capped"
    assert logged[0]["level"] == "ERROR"  # critical
    assert ledger.rows["notify:" + note().key]["data"]["logged_only"] is True
    assert n.send(note()).duplicate


def test_send_never_raises_on_a_broken_channel() -> None:
    """A channel whose build() crashes is reported failed; send() does not raise."""

    class Broken(WebhookChannel):
        def build(self, notification: Notification, now_s: float) -> Any:
            raise RuntimeError("template bug")

    report = notifier(Broken("http://127.0.0.1:9/x")).send(note())
    assert report.failed == (("webhook", "RuntimeError: template bug"),)


# --- configuration -------------------------------------------------------------------------------


def test_from_env_picks_configured_channels() -> None:
    """Only channels with a URL are built, in a fixed order, with their secrets."""
    env = {
        "ECS_EVENT_OPS_NOTIFY_SLACK_URL": "https://hooks.slack.com/services/T/B/X",
        "ECS_EVENT_OPS_NOTIFY_DINGTALK_URL": f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}",
        "ECS_EVENT_OPS_NOTIFY_DINGTALK_SECRET": DING_SECRET,
        "ECS_EVENT_OPS_NOTIFY_WECOM_URL": "",
        "ECS_EVENT_OPS_NOTIFY_LARK_SECRET": LARK_SECRET,  # no URL: ignored
    }
    n = Notifier.from_env(env, timeout_s=2.0)
    assert [c.name for c in n.channels] == ["dingtalk", "slack"]
    ding = n.channels[0]
    assert isinstance(ding, DingTalkChannel)
    assert ding.secret == DING_SECRET
    assert n.timeout_s == 2.0
    assert DING_SECRET not in repr(ding)
    assert TOKEN not in repr(ding)


def test_from_env_all_channels() -> None:
    """Every variable maps to its channel."""
    env = {
        f"ECS_EVENT_OPS_NOTIFY_{name}_URL": f"https://example.invalid/{name}"
        for name in ("DINGTALK", "LARK", "WECOM", "SLACK", "WEBHOOK")
    }
    assert [c.name for c in channels_from_env(env)] == [
        "dingtalk",
        "lark",
        "wecom",
        "slack",
        "webhook",
    ]


def test_from_env_rejects_non_http_url(capsys: pytest.CaptureFixture[str]) -> None:
    """A file:// URL is refused (logged, channel disabled), not opened."""
    env = {
        "ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL": "file:///etc/passwd",
        "ECS_EVENT_OPS_NOTIFY_SLACK_URL": "https://hooks.slack.com/services/T/B/X",
    }
    assert [c.name for c in channels_from_env(env)] == ["slack"]
    assert "ECS_EVENT_OPS_NOTIFY_WEBHOOK_URL" in capsys.readouterr().out
    with pytest.raises(NotifyConfigError):
        WebhookChannel("ftp://example.invalid/x")


def test_duplicate_channel_names_rejected() -> None:
    with pytest.raises(NotifyConfigError):
        Notifier([SlackChannel("https://a.invalid/x"), SlackChannel("https://b.invalid/y")])


# --- no secrets in logs --------------------------------------------------------------------------


def test_logs_carry_outcomes_but_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """Structured outcome lines name the channel and host only; tokens and secrets never appear."""
    # GIVEN signed DingTalk and Lark robots, one retried, one failing on the signature
    with (
        HttpReceiver([503, DING_OK]) as ding_rx,
        HttpReceiver([Reply(200, {"code": 19021, "msg": "sign match fail"})]) as lark_rx,
    ):
        n = notifier(
            DingTalkChannel(ding_rx.url_for(f"/robot/send?access_token={TOKEN}"), DING_SECRET),
            LarkChannel(lark_rx.url_for(f"/open-apis/bot/v2/hook/{TOKEN}"), LARK_SECRET),
        )
        capsys.readouterr()
        # WHEN sent
        report = n.send(note())
        port = ding_rx.port
    out = capsys.readouterr().out
    # THEN
    assert report.delivered == ("dingtalk",)
    assert TOKEN not in out
    assert DING_SECRET not in out
    assert LARK_SECRET not in out
    assert "sign=" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    outcomes = [(x["message"], x.get("channel"), x.get("attempt")) for x in lines]
    assert ("notify_retry", "dingtalk", 1) in outcomes
    assert ("notify_delivered", "dingtalk", 2) in outcomes
    assert ("notify_failed", "lark", 1) in outcomes
    delivered = next(x for x in lines if x["message"] == "notify_delivered")
    assert delivered["target"] == f"http://127.0.0.1:{port}/..."
    assert delivered["key"] == note().key


def test_redact_url_keeps_scheme_and_host_only() -> None:
    assert redact_url(f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}") == (
        "https://oapi.dingtalk.com/..."
    )
    assert TOKEN not in redact_url(f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}")


def test_delivery_error_carries_retry_flag() -> None:
    error = DeliveryError("HTTP 503", retryable=True, retry_after_s=2.0)
    assert error.retryable
    assert error.retry_after_s == 2.0
