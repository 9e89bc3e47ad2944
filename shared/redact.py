"""Secrets never leave: one redactor for every text that leaves the process.

Applied at the boundaries: the JSON log formatter (every field of every line), the store's error
translation, the notifier's error paths and the tools' error printing. Two layers, because
either alone misses something:

- **Shapes** that carry a secret wherever it appears: the password of any URL
  (``postgresql://user:pa/ss@host/db``: everything between the user's ``:`` and the last ``@``
  before the host, so a ``/`` or ``@`` inside the password does not end it), query and DSN
  parameters named like a credential (``?password=``, ``access_token=``, ``sign=``,
  ``SecurityToken=``, ``Signature=``, libpq's ``password=…``) and webhook paths that are tokens
  (Lark/Feishu ``/bot/v2/hook/<token>``, Slack ``/services/…``).
- **Values** known to be secret, however they are spelled in the text (raw, URL-encoded,
  URL-decoded, JSON-escaped): the values of the environment's credential variables
  (``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, ``ALIBABA_CLOUD_SECURITY_TOKEN``, ``*_SECRET``,
  ``*_TOKEN``, ``*_PASSWORD``), the passwords inside the environment's database URLs
  (``ECS_EVENT_OPS_DB_URL``), the notification webhook URLs, and whatever :func:`register` was
  given (the FC context's STS keys, which are not in the environment on python3.9/3.10).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping

__all__ = ["MASK", "known_spellings", "redact", "redact_url", "register", "secret_values"]

MASK = "***"
MIN_SECRET_CHARS = 6  # shorter values would mask ordinary words ("test", "root")

# scheme://user:password@ — the password runs to the LAST "@" before a space or quote.
_URL_PASSWORD = re.compile(r"""(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'"<>]*):[^\s'"<>]*@""")
# name=value in a query string, a DSN or a form body: the value runs to & ; space quote or #.
_CREDENTIAL_PARAM = re.compile(
    r"""(?i)((?<![A-Za-z0-9_])(?:password|passwd|pwd|access_token|accesstoken|token|secret|"""
    r"""client_secret|sign|signature|securitytoken|security_token|x-acs-security-token|"""
    r"""accesskeysecret|access_key_secret|api_key|apikey)\s*=\s*)([^&;\s'"#<>,)]+)"""
)
# ?key=… / &key=… (WeCom webhooks): only as a query parameter ("key=" alone is too common).
_QUERY_KEY = re.compile(r"""([?&]key=)([^&\s'"#<>]+)""")
_HOOK_PATH = re.compile(
    r"""((?:/open-apis/bot/v2/hook/|/bot/v2/hook/|hooks\.slack\.com/services/))([^\s'"?#<>]+)"""
)
_SECRET_VARIABLE = re.compile(r"(?i)(SECRET|TOKEN|PASSWORD|PASSWD)")
_URL_VARIABLE = re.compile(r"(?i)(DB_URL|_URL$|DATABASE_URL|DSN)")
_WEBHOOK_VARIABLE = re.compile(r"(?i)NOTIFY_.*_URL$")

_version = [0]  # bumped on every change of the registered values (the spellings' cache key)
MAX_REGISTERED = 64  # the most recent registered values kept (STS keys rotate; tests add many)
_registered: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first
_lock = threading.Lock()
# (the environment's hash, the registry's version) -> the spellings; one entry
_cache: dict[tuple[int, int], tuple[str, ...]] = {}


def register(*values: str | None) -> None:
    """Values that must never be printed from now on (e.g. the invocation's STS keys). A URL
    registers itself and its secret parts (password, token parameters, token path)."""
    fresh = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_CHARS}
    fresh |= {part for v in fresh if "://" in v for part in _url_secrets(v, whole=True)
              if len(part) >= MIN_SECRET_CHARS}
    if fresh - _registered.keys():
        with _lock:
            for value in sorted(fresh):
                _registered.pop(value, None)
                _registered[value] = None
            while len(_registered) > MAX_REGISTERED:
                del _registered[next(iter(_registered))]
            _version[0] += 1


def redact(text: str, spellings: tuple[str, ...] | None = None) -> str:
    """``text`` with every secret it holds replaced by ``***``. ``spellings`` (from
    :func:`known_spellings`) saves re-reading the environment when redacting many texts."""
    if len(text) < MIN_SECRET_CHARS:
        return text
    for value in known_spellings() if spellings is None else spellings:
        if value in text:
            text = text.replace(value, MASK)
    # The shapes need a "://" or an "=": most texts (ids, names, decisions) have neither.
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1:" + MASK + "@", text)
        text = _HOOK_PATH.sub(r"\1" + MASK, text)
    if "=" in text:
        text = _CREDENTIAL_PARAM.sub(r"\1" + MASK, text)
        text = _QUERY_KEY.sub(r"\1" + MASK, text)
    return text


def redact_url(url: str) -> str:
    """A URL fit to print: no password, no credential parameters, no token path."""
    return redact(url)


def secret_values(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The secret values the environment holds (and those registered), as configured."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in env.items():
        if not value:
            continue
        if _SECRET_VARIABLE.search(name) and "://" not in value:
            found.add(value)
        if "://" in value and (_URL_VARIABLE.search(name) or _SECRET_VARIABLE.search(name)):
            found.update(_url_secrets(value, whole=_WEBHOOK_VARIABLE.search(name) is not None))
    with _lock:
        found.update(_registered)
    return frozenset(v for v in found if len(v) >= MIN_SECRET_CHARS)


def _url_secrets(url: str, *, whole: bool) -> Iterable[str]:
    """The parts of a URL that are secret: its password, credential parameters, token path."""
    match = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*:(.*)@[^@]*$", url.split("?", 1)[0])
    if match:
        yield match.group(1)
    for match in _CREDENTIAL_PARAM.finditer(url):
        yield match.group(2)
    for match in _QUERY_KEY.finditer(url):
        yield match.group(2)
    for match in _HOOK_PATH.finditer(url):
        yield match.group(2)
    if whole:  # a webhook URL as a whole is a credential: whoever holds it can post
        yield url


def known_spellings() -> tuple[str, ...]:
    """Every spelling of every secret value, longest first (so a value's longer spellings are
    masked before a shorter one would split them). Cached while the environment is unchanged."""
    # Keyed by the whole environment as it is now (a tuple of its items hashes in microseconds;
    # the scan for secret variables runs only when something changed).
    raw = getattr(os.environ, "_data", None)  # CPython's encoded store: no decoding per item
    items = raw.items() if isinstance(raw, dict) else os.environ.items()
    key = (hash(tuple(items)), _version[0])
    cached = _cache.get(key)
    if cached is not None:
        return cached
    spellings: set[str] = set()
    values = secret_values()
    if values:  # urllib.parse (and ipaddress under it) only when there is a secret to spell
        import urllib.parse
    for value in values:
        decoded = urllib.parse.unquote(value)
        for form in (value, decoded, urllib.parse.quote(decoded, safe=""),
                     urllib.parse.quote_plus(decoded, safe=""), urllib.parse.quote(decoded),
                     json.dumps(decoded)[1:-1], json.dumps(value)[1:-1]):
            if len(form) >= MIN_SECRET_CHARS:
                spellings.add(form)
    ordered = tuple(sorted(spellings, key=len, reverse=True))
    with _lock:
        _cache.clear()
        _cache[key] = ordered
    return ordered
