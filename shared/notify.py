"""Operator notifications: DingTalk, Lark/Feishu, WeCom, Slack and a generic JSON webhook.

A notification must never block or fail the action that raised it, must survive a flaky
webhook, and must not repeat per incident (NTH's 5 s, no-retry webhook lost 10-20 % of Slack
messages and every Feishu message)::

    notifier = Notifier.from_env(ledger=store)
    report = notifier.send(Notification(key="auto_start:capped:i-abc:2026-11-23T10",
                                        title="Auto-start capped", text="...", instance_id="i-abc"))

:meth:`Notifier.send` never raises and returns within ``timeout_s`` (the budget covers every
retry on every channel: channels are sent concurrently, each in its own daemon thread, against
one deadline). With a ledger, the first send of a key claims ``notify:<key>`` (shared.ledger,
with a lease of :data:`NOTIFY_LEASE_S`); later sends of the same key are reported as duplicates
and send nothing, unless the claim is still ``claimed`` past its lease: its sender died before
delivering, and the message goes out now (a repeat beats a loss).

Webhook URLs carry tokens and the signing secrets are secrets, so they are read here from the
environment (``ECS_EVENT_OPS_NOTIFY_*``), never from :class:`shared.settings.Settings`, and
never logged: logs show the scheme and host only.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from shared import ledger as ledger_vocab
from shared.events import iso
from shared.ledger import Kind, claim_once, notify_key
from shared.log import emit, get_logger
from shared.redact import redact, register

__all__ = [
    "CHANNEL_NAMES",
    "ENV_PREFIX",
    "SIGNED_CHANNELS",
    "VARIABLES",
    "Channel",
    "DeliveryError",
    "DingTalkChannel",
    "LarkChannel",
    "Ledger",
    "Notification",
    "Notifier",
    "NotifyConfigError",
    "NotifyError",
    "SendReport",
    "Severity",
    "SlackChannel",
    "WeComChannel",
    "WebhookChannel",
    "dingtalk_sign",
    "lark_sign",
    "redact_url",
]

log = get_logger(__name__)

ENV_PREFIX = "ECS_EVENT_OPS_NOTIFY_"
# The channels channels_from_env builds, in order, and those signed with a secret: the one
# declaration of the variables read here (shared.settings lists them as known names).
CHANNEL_NAMES = ("DINGTALK", "LARK", "WECOM", "SLACK", "WEBHOOK")
SIGNED_CHANNELS = ("DINGTALK", "LARK")
VARIABLES: tuple[str, ...] = (
    *(f"{ENV_PREFIX}{name}_URL" for name in CHANNEL_NAMES),
    *(f"{ENV_PREFIX}{name}_SECRET" for name in SIGNED_CHANNELS),
)

# HTTP statuses worth another attempt; every other non-2xx fails at once.
RETRYABLE_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})
# Backoff before attempt n+1: BASE * 2**(n-1), capped, times a jitter factor in [0.5, 1].
BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 1.0
# No attempt is started with less budget left than this: it could not complete anyway.
MIN_ATTEMPT_S = 0.05
_USER_AGENT = "ecs-event-ops-notify/1"


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


_LOG_LEVELS = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.CRITICAL: logging.ERROR,
}


class NotifyError(Exception):
    """Base of this module's errors."""


class NotifyConfigError(NotifyError, ValueError):
    """A channel cannot be built from its configuration (the message names the variable)."""


class DeliveryError(NotifyError):
    """One attempt to deliver to one channel failed; ``retryable`` says whether to try again."""

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Notification:
    key: str  # dedup key, e.g. "auto_start:capped:i-abc:2026-11-23T10": one message per incident
    title: str
    text: str  # plain text / markdown-lite body
    severity: str = "warning"  # info|warning|critical (a Severity also fits)
    instance_id: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def level(self) -> Severity:
        """The severity as an enum; an unknown value reads as WARNING rather than failing."""
        try:
            return Severity(self.severity)
        except ValueError:
            return Severity.WARNING


@dataclass(frozen=True)
class SendReport:
    key: str
    duplicate: bool
    delivered: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()  # (channel, error)

    @property
    def ok(self) -> bool:
        """Nothing failed (a duplicate, or no channel configured, counts as ok)."""
        return not self.failed


# The slice of the store notifications need: a durable claim per key, then its outcome.
Ledger = ledger_vocab.LeasePort


# A send takes at most the notifier's timeout (seconds); a claim still "claimed" this long after
# it was made lost its sender (killed mid-send).
NOTIFY_LEASE_S = 60.0


# ---------------------------------------------------------------------------------------------
# Signing


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk custom robot "加签": base64(HMAC-SHA256(key=secret, msg=f"{ts}\\n{secret}")).

    The caller URL-encodes it into the ``sign`` query parameter next to ``timestamp`` (ms).
    Source: DingTalk's Python sample, quoted in https://blog.csdn.net/weixin_31560545/article/
    details/116255918; known answer ("1700000000000", "secret") ->
    "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY=" from the ``dingding`` crate's test
    (https://docs.rs/crate/dingding/latest/source/src/signature.rs).
    """
    message = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def lark_sign(secret: str, timestamp_s: str) -> str:
    """Lark/Feishu custom bot signature: base64(HMAC-SHA256(key=f"{ts}\\n{secret}", msg=b"")).

    Unlike DingTalk the string to sign is the HMAC *key* and the message is empty; ``timestamp``
    is in seconds and both go in the JSON body. Source: Feishu's Python sample, quoted in
    http://www.createh5.com/post/277.html and in go-gitea/gitea#34802 ("The HMAC-SHA256
    algorithm is applied to an empty string using the signature string as the key").
    """
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Channels


@dataclass(frozen=True)
class HttpRequest:
    """One POST, built fresh for every attempt (signatures carry the attempt's timestamp)."""

    url: str
    body: bytes
    headers: Mapping[str, str] = field(
        default_factory=lambda: {"Content-Type": "application/json; charset=utf-8"}
    )


class Channel(ABC):
    """One destination. Subclasses render the message and judge the answer."""

    name: str
    url: str

    @abstractmethod
    def build(self, notification: Notification, now_s: float) -> HttpRequest:
        """The request for one attempt at wall-clock time ``now_s``."""

    def check(self, status: int, body: bytes) -> None:
        """Raise :class:`DeliveryError` if a 2xx answer still means failure (default: never)."""
        return

    def secrets(self) -> tuple[str, ...]:
        """Values that must never reach a log line (the URL, signing secrets)."""
        return (self.url,)


def _validate_url(url: str, variable: str) -> None:
    parts = urllib.parse.urlsplit(url)
    # urllib would also open file:// and ftp:// URLs: only HTTP(S) webhooks are allowed.
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyConfigError(f"{variable} must be an http(s) URL (got scheme {parts.scheme!r})")


def _json_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")


def _truncate(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode("utf-8", errors="ignore") + "..."


def _field_lines(notification: Notification) -> list[str]:
    lines = []
    if notification.instance_id:
        lines.append(f"instance: {notification.instance_id}")
    lines.extend(f"{name}: {value}" for name, value in notification.fields.items())
    return lines


def render_markdown(notification: Notification) -> str:
    """Markdown for DingTalk and WeCom: heading, body, then one bullet per field."""
    parts = [f"### [{notification.level.value.upper()}] {notification.title}", notification.text]
    bullets = [f"- {line}" for line in _field_lines(notification)]
    if bullets:
        parts.append("\n".join(bullets))
    return "\n\n".join(part for part in parts if part)


def render_text(notification: Notification) -> str:
    """Plain text for Lark and Slack."""
    lines = [f"[{notification.level.value.upper()}] {notification.title}"]
    if notification.text:
        lines.append(notification.text)
    lines.extend(_field_lines(notification))
    return "\n".join(lines)


def _errcode(body: bytes, fields_: tuple[str, ...]) -> tuple[int, str]:
    """The (code, message) of a robot API answer; a missing or garbled body is a failure."""
    try:
        answer = json.loads(body)
    except ValueError:
        raise DeliveryError("answer is not JSON", retryable=False) from None
    if not isinstance(answer, dict):
        raise DeliveryError("answer is not a JSON object", retryable=False)
    for name in fields_:
        if name in answer:
            try:
                code = int(answer[name])
            except (TypeError, ValueError):
                raise DeliveryError(
                    f"{name}={answer[name]!r} is not a number", retryable=False
                ) from None
            message = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage")
            return code, str(message or "")
    raise DeliveryError(f"answer carries none of {', '.join(fields_)}", retryable=False)


def _check_code(body: bytes, fields_: tuple[str, ...], rate_limited: frozenset[int]) -> None:
    code, message = _errcode(body, fields_)
    if code != 0:
        raise DeliveryError(f"code {code}: {message}"[:300], retryable=code in rate_limited)


# Robot APIs answer HTTP 200 with an error code in the body. Only their rate-limit codes are
# retried; a wrong signature, a disabled robot or a bad payload fails at once.
# DingTalk 130101 "send too fast, exceed 20 times per minute" (DingTalk robot error table; not
# in the search corpus, from the vendor documentation). 90030 "webhook over limit" is a quota,
# not a burst limit: retrying within seconds cannot help.
DINGTALK_RATE_LIMIT_CODES = frozenset({130101})
# Lark 11232: message service frequency limit (openclaw commit 90c787096 "retry HTTP 429 and
# code 11232 for message send rate limits").
LARK_RATE_LIMIT_CODES = frozenset({11232})
# WeCom 45009 "api freq out of limit" (WeChat/WeCom API call limits; jishuzhan.net article
# 2012338890507075586: group robots allow 20 messages per minute).
WECOM_RATE_LIMIT_CODES = frozenset({45009})


@dataclass(frozen=True)
class DingTalkChannel(Channel):
    """DingTalk custom robot; with a secret, every request is signed (timestamp ms + sign)."""

    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    name: str = "dingtalk"
    max_bytes = 18000

    def __post_init__(self) -> None:
        _validate_url(self.url, ENV_PREFIX + "DINGTALK_URL")

    def build(self, notification: Notification, now_s: float) -> HttpRequest:
        url = self.url
        if self.secret:
            timestamp = str(int(now_s * 1000))
            url = _add_query(url, timestamp=timestamp, sign=dingtalk_sign(self.secret, timestamp))
        payload = {
            "msgtype": "markdown",
            "markdown": {
                "title": notification.title,
                "text": _truncate(render_markdown(notification), self.max_bytes),
            },
        }
        return HttpRequest(url, _json_body(payload))

    def check(self, status: int, body: bytes) -> None:
        _check_code(body, ("errcode",), DINGTALK_RATE_LIMIT_CODES)

    def secrets(self) -> tuple[str, ...]:
        return (self.url, *((self.secret,) if self.secret else ()))


@dataclass(frozen=True)
class LarkChannel(Channel):
    """Lark/Feishu custom bot; with a secret, ``timestamp`` (s) and ``sign`` go in the body."""

    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    name: str = "lark"
    max_bytes = 18000

    def __post_init__(self) -> None:
        _validate_url(self.url, ENV_PREFIX + "LARK_URL")

    def build(self, notification: Notification, now_s: float) -> HttpRequest:
        payload: dict[str, Any] = {
            "msg_type": "text",
            "content": {"text": _truncate(render_text(notification), self.max_bytes)},
        }
        if self.secret:
            timestamp = str(int(now_s))
            payload["timestamp"] = timestamp
            payload["sign"] = lark_sign(self.secret, timestamp)
        return HttpRequest(self.url, _json_body(payload))

    def check(self, status: int, body: bytes) -> None:
        # Current answers carry "code"; older ones "StatusCode".
        _check_code(body, ("code", "StatusCode"), LARK_RATE_LIMIT_CODES)

    def secrets(self) -> tuple[str, ...]:
        return (self.url, *((self.secret,) if self.secret else ()))


@dataclass(frozen=True)
class WeComChannel(Channel):
    """WeCom (企业微信) group robot, markdown message (content at most 4096 bytes)."""

    url: str = field(repr=False)
    name: str = "wecom"
    max_bytes = 4096

    def __post_init__(self) -> None:
        _validate_url(self.url, ENV_PREFIX + "WECOM_URL")

    def build(self, notification: Notification, now_s: float) -> HttpRequest:
        content = _truncate(render_markdown(notification), self.max_bytes)
        return HttpRequest(
            self.url, _json_body({"msgtype": "markdown", "markdown": {"content": content}})
        )

    def check(self, status: int, body: bytes) -> None:
        _check_code(body, ("errcode",), WECOM_RATE_LIMIT_CODES)


@dataclass(frozen=True)
class SlackChannel(Channel):
    """Slack incoming webhook: any 2xx is success; errors come as 4xx/429/5xx statuses."""

    url: str = field(repr=False)
    name: str = "slack"
    max_bytes = 35000

    def __post_init__(self) -> None:
        _validate_url(self.url, ENV_PREFIX + "SLACK_URL")

    def build(self, notification: Notification, now_s: float) -> HttpRequest:
        text = _truncate(render_text(notification), self.max_bytes)
        return HttpRequest(self.url, _json_body({"text": text}))


@dataclass(frozen=True)
class WebhookChannel(Channel):
    """Generic webhook: the notification's fields as one JSON object; any 2xx is success."""

    url: str = field(repr=False)
    name: str = "webhook"

    def __post_init__(self) -> None:
        _validate_url(self.url, ENV_PREFIX + "WEBHOOK_URL")

    def build(self, notification: Notification, now_s: float) -> HttpRequest:
        payload = {
            "key": notification.key,
            "title": notification.title,
            "text": notification.text,
            "severity": notification.level.value,
            "instance_id": notification.instance_id,
            "fields": dict(notification.fields),
            "time": int(now_s),
        }
        return HttpRequest(self.url, _json_body(payload))


def _add_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode(params)  # quote_plus: "+" -> %2B, "/" -> %2F, "=" -> %3D
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=query))


def redact_url(url: str) -> str:
    """Scheme and host only: webhook tokens live in the path or the query string."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..."


# ---------------------------------------------------------------------------------------------
# Transport


@functools.cache
def _opener() -> Any:
    """One opener that follows no redirect (a redirected POST would be replayed as a GET
    somewhere else: a 3xx is a failure). urllib.request is imported only once an alert is sent:
    it and its email parser cost the functions' cold start otherwise."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(NoRedirect)


def _post(request: HttpRequest, timeout_s: float) -> tuple[int, bytes]:
    """POST once; return (status, body) for 2xx, raise :class:`DeliveryError` otherwise."""
    import urllib.error
    import urllib.request
    from http.client import HTTPException

    opener = _opener()
    # S310: channels accept only http(s) URLs (_validate_url), checked at construction.
    req = urllib.request.Request(  # noqa: S310
        request.url,
        data=request.body,
        headers={**request.headers, "User-Agent": _USER_AGENT},
        method="POST",
    )
    try:
        with opener.open(req, timeout=timeout_s) as response:
            return int(response.status), response.read(65536)
    except urllib.error.HTTPError as error:
        status = error.code
        retry_after = _retry_after(error.headers.get("Retry-After") if error.headers else None)
        error.close()
        raise DeliveryError(
            f"HTTP {status}", retryable=status in RETRYABLE_HTTP_STATUSES, retry_after_s=retry_after
        ) from None
    except urllib.error.URLError as error:
        reason = error.reason
        kind = "timeout" if isinstance(reason, TimeoutError) else "connection"
        raise DeliveryError(f"{kind} error: {reason}", retryable=True) from None
    except TimeoutError:
        raise DeliveryError("timeout error: read timed out", retryable=True) from None
    except (OSError, HTTPException) as error:
        raise DeliveryError(
            f"connection error: {type(error).__name__}: {error}", retryable=True
        ) from None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _scrub(message: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return redact(message)


def _masked(notification: Notification) -> Notification:
    """The notification with any secret in its texts masked (an error message quoted in an
    alert must not carry a password to a chat room, nor into the ledger)."""
    return dataclasses.replace(
        notification, title=redact(notification.title), text=redact(notification.text),
        fields={k: redact(v) if isinstance(v, str) else v for k, v in notification.fields.items()},
    )


# ---------------------------------------------------------------------------------------------
# Notifier


class Notifier:
    """Sends one notification to every configured channel, deduplicated, within a budget."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        ledger: Ledger | None = None,
        timeout_s: float = 3.0,
        max_attempts: int = 3,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [channel.name for channel in channels]
        if len(set(names)) != len(names):
            raise NotifyConfigError(f"channel names must be unique, got {names}")
        self.channels = tuple(channels)
        for channel in self.channels:  # masked from every log line and error from now on
            register(*channel.secrets())
        self.ledger = ledger
        self.timeout_s = max(0.1, float(timeout_s))
        self.max_attempts = max(1, int(max_attempts))
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        ledger: Ledger | None = None,
        timeout_s: float = 3.0,
    ) -> Notifier:
        """Channels from ``ECS_EVENT_OPS_NOTIFY_*``; a bad URL is logged and left out."""
        return cls(channels_from_env(environ), ledger=ledger, timeout_s=timeout_s)

    def send(self, notification: Notification) -> SendReport:
        """Deliver (never raises; returns within ``timeout_s`` plus thread start-up)."""
        try:
            return self._send(notification)
        except Exception as error:  # a notification must never fail the action
            emit(
                log,
                "notify_internal_error",
                logging.ERROR,
                key=notification.key,
                error=f"{type(error).__name__}: {error}",
            )
            return SendReport(notification.key, False, (), (("notify", type(error).__name__),))

    def _send(self, notification: Notification) -> SendReport:
        notification = _masked(notification)
        ledger_key = notify_key(notification.key)
        if not self._claim(ledger_key, notification):
            emit(
                log,
                "notify_duplicate",
                key=notification.key,
                instance_id=notification.instance_id,
                outcome="skipped",
                reason="already notified for this key",
            )
            return SendReport(notification.key, duplicate=True)

        emit(
            log,
            "notification",
            _LOG_LEVELS[notification.level],
            key=notification.key,
            title=notification.title,
            text=notification.text,
            severity=notification.level.value,
            instance_id=notification.instance_id,
            fields=dict(notification.fields) or None,
            channels=[channel.name for channel in self.channels],
        )
        started = time.monotonic()
        deadline = started + self.timeout_s
        results = self._deliver_all(notification, deadline)

        delivered = tuple(name for name, error in results if error is None)
        failed = tuple((name, error) for name, error in results if error is not None)
        report = SendReport(notification.key, False, delivered, failed)
        status = "failed" if failed and not delivered else "sent"
        self._update(
            ledger_key,
            status,
            {
                "delivered": list(delivered),
                "failed": [list(item) for item in failed],
                "logged_only": not self.channels,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return report

    def _deliver_all(
        self, notification: Notification, deadline: float
    ) -> list[tuple[str, str | None]]:
        if not self.channels:
            return []
        lock = threading.Lock()
        outcomes: dict[str, str | None] = {}

        def run(channel: Channel) -> None:
            error = self._deliver(channel, notification, deadline)
            with lock:
                outcomes[channel.name] = error

        threads = [
            threading.Thread(
                target=run, args=(channel,), name=f"notify-{channel.name}", daemon=True
            )
            for channel in self.channels
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with lock:
            snapshot = dict(outcomes)
        results: list[tuple[str, str | None]] = []
        for channel in self.channels:
            if channel.name in snapshot:
                results.append((channel.name, snapshot[channel.name]))
            else:
                # Still running: a hanging webhook. Its thread is a daemon and its socket
                # timeout ends at the deadline; the caller does not wait for it.
                emit(
                    log,
                    "notify_failed",
                    logging.WARNING,
                    key=notification.key,
                    channel=channel.name,
                    target=redact_url(channel.url),
                    outcome="failed",
                    error="deadline exceeded",
                )
                results.append((channel.name, f"deadline of {self.timeout_s:g}s exceeded"))
        return results

    def _deliver(self, channel: Channel, notification: Notification, deadline: float) -> str | None:
        """Attempts with backoff until success, a permanent error or the deadline; the error."""
        secrets = channel.secrets()
        target = redact_url(channel.url)
        last_error = "not attempted"
        for attempt in range(1, self.max_attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_S:
                last_error = f"{last_error} (budget exhausted)"
                break
            started = time.monotonic()
            try:
                request = channel.build(notification, self._clock())
                status, body = _post(request, remaining)
                channel.check(status, body)
            except DeliveryError as error:
                last_error = _scrub(str(error), secrets)
                retry = error.retryable and attempt < self.max_attempts
                delay = self._backoff(attempt, error.retry_after_s) if retry else 0.0
                if retry and deadline - time.monotonic() - delay < MIN_ATTEMPT_S:
                    retry = False
                    last_error = f"{last_error} (no budget left to retry)"
                emit(
                    log,
                    "notify_retry" if retry else "notify_failed",
                    logging.INFO if retry else logging.WARNING,
                    key=notification.key,
                    channel=channel.name,
                    target=target,
                    attempt=attempt,
                    outcome="retry" if retry else "failed",
                    error=last_error,
                    latency_ms=round((time.monotonic() - started) * 1000, 1),
                )
                if not retry:
                    return last_error
                self._sleep(delay)
                continue
            except Exception as error:  # a rendering bug must not escape
                last_error = _scrub(f"{type(error).__name__}: {error}", secrets)
                emit(
                    log,
                    "notify_failed",
                    logging.ERROR,
                    key=notification.key,
                    channel=channel.name,
                    target=target,
                    attempt=attempt,
                    outcome="failed",
                    error=last_error,
                )
                return last_error
            late = time.monotonic() > deadline
            emit(
                log,
                "notify_delivered",
                key=notification.key,
                channel=channel.name,
                target=target,
                attempt=attempt,
                outcome="delivered_late" if late else "delivered",
                status=status,
                latency_ms=round((time.monotonic() - started) * 1000, 1),
            )
            return None
        return last_error

    @staticmethod
    def _backoff(attempt: int, retry_after_s: float | None) -> float:
        delay: float = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay

    def _claim(self, ledger_key: str, notification: Notification) -> bool:
        if self.ledger is None:
            return True
        now = datetime.now(timezone.utc)
        until = iso(now + timedelta(seconds=max(NOTIFY_LEASE_S, 2 * self.timeout_s)))
        try:
            if claim_once(
                self.ledger,
                ledger_key,
                kind=Kind.NOTIFY,
                instance_id=notification.instance_id,
                data={"title": notification.title, "severity": notification.level.value,
                      "lease_until": until},
            ):
                return True
            entry = self.ledger.ledger_get(ledger_key)
            if entry is None or entry.status != "claimed" or ledger_vocab.lease_live(entry.data, now):
                return False
            # Claimed, never sent, lease over: its sender died. One taker wins the swap.
            taken = self.ledger.ledger_swap(
                ledger_key, expect={"lease_until": entry.data.get("lease_until")},
                statuses=["claimed"], data={"lease_until": until, "taken_over": True})
            if taken:
                emit(log, "notify_taken_over", logging.WARNING, key=notification.key,
                     reason="claimed by a sender that never recorded a delivery")
            return taken
        except Exception as error:  # better a repeated message than a lost one
            emit(
                log,
                "notify_ledger_error",
                logging.WARNING,
                key=notification.key,
                operation="claim",
                error=f"{type(error).__name__}: {error}",
                decision="send without dedup",
            )
            return True

    def _update(self, ledger_key: str, status: str, data: Mapping[str, Any]) -> None:
        if self.ledger is None:
            return
        try:
            self.ledger.ledger_update(ledger_key, status=status, data=data)
        except Exception as error:  # the message went out; only the record failed
            emit(
                log,
                "notify_ledger_error",
                logging.WARNING,
                key=ledger_key,
                operation="update",
                error=f"{type(error).__name__}: {error}",
            )


def channels_from_env(environ: Mapping[str, str] | None = None) -> list[Channel]:
    """The configured channels, in a fixed order; none means notifications are only logged."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(ENV_PREFIX + name, "").strip()
        return value or None

    factories: dict[str, Callable[[str], Channel]] = {
        "DINGTALK": lambda url: DingTalkChannel(url, get("DINGTALK_SECRET")),
        "LARK": lambda url: LarkChannel(url, get("LARK_SECRET")),
        "WECOM": WeComChannel,
        "SLACK": SlackChannel,
        "WEBHOOK": WebhookChannel,
    }
    channels: list[Channel] = []
    for name in CHANNEL_NAMES:
        factory = factories[name]
        url = get(f"{name}_URL")
        if url is None:
            if name in SIGNED_CHANNELS and get(f"{name}_SECRET"):
                emit(
                    log,
                    "notify_config",
                    logging.WARNING,
                    variable=f"{ENV_PREFIX}{name}_SECRET",
                    reason="secret set without a URL: ignored",
                )
            continue
        try:
            channels.append(factory(url))
        except NotifyConfigError as error:
            emit(
                log,
                "notify_config",
                logging.ERROR,
                variable=f"{ENV_PREFIX}{name}_URL",
                reason=str(error),
                decision="channel disabled",
            )
    if not channels:
        emit(log, "notify_config", logging.DEBUG, reason="no channel configured: log only")
    return channels
