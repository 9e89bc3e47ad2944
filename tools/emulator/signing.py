"""Request signature verification, rebuilt the way the Tea SDK signs.

- ACS3-HMAC-SHA256 (the SDK default, ``alibabacloud_tea_openapi.utils.Utils.get_authorization``):
  canonical request = method, path, sorted ``key=quote(value, safe='~')`` query, the signed
  headers (lower-cased names, stripped values, sorted) and the hex sha256 of the body; string to
  sign = ``ACS3-HMAC-SHA256\\n`` + hex sha256 of it; signature = hex HMAC-SHA256 with the secret.
- v2 RPC HMAC-SHA1 (``Config(signature_algorithm="v2")``, ``Utils.get_rpcsignature``):
  ``METHOD&%2F&`` + quote_plus of the sorted, percent-encoded params (query + form body, not
  ``Signature``); base64 HMAC-SHA1 keyed with ``secret + '&'``.
- Function Compute 2.0 (``fc2.auth.Auth``): ``Authorization: FC <AK>:<signature>``, see
  :func:`verify_fc2`. (FC 3.0 uses ACS3 over its ROA path, verified by :func:`verify_acs3`.)

Neither timestamps nor nonces are checked for replay (a local emulator has no use for it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote, quote_plus

from tools.emulator.fleet import Credential
from tools.emulator.world import ApiError

__all__ = ["verify_acs3", "verify_fc2", "verify_v2"]

_AUTH_RE = re.compile(
    r"^(?P<algo>ACS3-[A-Z0-9-]+) Credential=(?P<ak>[^,]+),SignedHeaders=(?P<signed>[^,]*),"
    r"Signature=(?P<sig>[0-9a-fA-F]+)$"
)
_REQUIRED_SIGNED = ("host", "x-acs-action", "x-acs-version", "x-acs-date",
                    "x-acs-signature-nonce", "x-acs-content-sha256")


def _first(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _lookup(credentials: Mapping[str, Credential], access_key_id: str) -> Credential:
    cred = credentials.get(access_key_id)
    if cred is None:
        raise ApiError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
    return cred


def _check_token(cred: Credential, token: str | None) -> None:
    if cred.security_token is None:
        if token:
            raise ApiError("InvalidSecurityToken.Malformed", "This access key takes no security "
                           "token, but one was sent.", 400)
        return
    if not token:
        raise ApiError("InvalidSecurityToken.Missing", "The security token is required for "
                       "this STS access key.", 400)
    if not hmac.compare_digest(token.encode(), cred.security_token.encode()):
        raise ApiError("InvalidSecurityToken.MismatchWithAccessKey", "The security token does "
                       "not match the access key.", 403)


def _mismatch(expected_source: str) -> ApiError:
    return ApiError("SignatureDoesNotMatch", "The request signature does not conform to Aliyun "
                    f"standards. server string to sign is:{expected_source}", 400)


def verify_acs3(*, method: str, path: str, query: Sequence[tuple[str, str]],
                headers: Mapping[str, list[str]], body: bytes, authorization: str,
                credentials: Mapping[str, Credential]) -> Credential:
    """Check an ACS3-HMAC-SHA256 request; return the credential that signed it."""
    match = _AUTH_RE.match(authorization.strip())
    if match is None:
        raise ApiError("IncompleteSignature", "The Authorization header is malformed.", 400)
    if match.group("algo") != "ACS3-HMAC-SHA256":
        raise ApiError("InvalidSignatureMethod", f"Signature method {match.group('algo')} is "
                       "not supported by the emulator.", 400)
    cred = _lookup(credentials, match.group("ak"))
    token = _first(headers, "x-acs-security-token")
    _check_token(cred, token)
    if cred.security_token is not None:
        ak_header = _first(headers, "x-acs-accesskey-id")
        if ak_header is not None and ak_header != cred.access_key_id:
            raise ApiError("InvalidSecurityToken.MismatchWithAccessKey", "x-acs-accesskey-id "
                           "does not match the Credential.", 403)
    signed = [h for h in match.group("signed").split(";") if h]
    missing = [h for h in _REQUIRED_SIGNED if h not in signed]
    if cred.security_token is not None and "x-acs-security-token" not in signed:
        missing.append("x-acs-security-token")
    if missing:
        raise ApiError("IncompleteSignature", f"Headers not signed: {', '.join(missing)}.", 400)
    payload_hash = hashlib.sha256(body).hexdigest()
    claimed_hash = (headers.get("x-acs-content-sha256") or [""])[0]
    if claimed_hash != payload_hash:
        # No documented code names a body/hash mismatch; the signed hash no longer matches,
        # so the answer is the documented SignatureDoesNotMatch.
        raise ApiError("SignatureDoesNotMatch", "x-acs-content-sha256 does not match the body.",
                       400)

    pairs = sorted((k, v) for k, v in query)
    canonical_query = "&".join(f"{k}={quote(v, safe='~', encoding='utf-8')}" for k, v in pairs)
    canonical_headers = ""
    for name in sorted(signed):
        values = headers.get(name)
        if values is None:
            raise ApiError("IncompleteSignature", f"Signed header {name} is absent.", 400)
        canonical_headers += f"{name}:{','.join(sorted(v.strip() for v in values))}\n"
    canonical_request = (f"{method}\n{path or '/'}\n{canonical_query}\n{canonical_headers}\n"
                         f"{';'.join(signed)}\n{payload_hash}")
    string_to_sign = ("ACS3-HMAC-SHA256\n"
                      + hashlib.sha256(canonical_request.encode("utf-8")).hexdigest())
    expected = hmac.new(cred.access_key_secret.encode("utf-8"), string_to_sign.encode("utf-8"),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match.group("sig").lower()):
        raise _mismatch(string_to_sign.replace("\n", " "))
    return cred


def verify_v2(method: str, params: Sequence[tuple[str, str]],
              credentials: Mapping[str, Credential]) -> Credential:
    """Check a v2 RPC (HMAC-SHA1) request; return the credential that signed it."""
    values = dict(params)
    signature = values.get("Signature")
    access_key_id = values.get("AccessKeyId")
    if not signature or not access_key_id:
        raise ApiError("IncompleteSignature", "Signature and AccessKeyId are required.", 400)
    if values.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
        raise ApiError("InvalidSignatureMethod", "Only HMAC-SHA1 is supported for v2.", 400)
    cred = _lookup(credentials, access_key_id)
    _check_token(cred, values.get("SecurityToken"))
    signed = sorted((k, v) for k, v in params if k != "Signature")
    canonical = "".join(
        f"&{quote(k, safe='~', encoding='utf-8')}={quote(v, safe='~', encoding='utf-8')}"
        for k, v in signed
    )
    string_to_sign = f"{method}&%2F&{quote_plus(canonical[1:], safe='~', encoding='utf-8')}"
    digest = hmac.new((cred.access_key_secret + "&").encode("utf-8"),
                      string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    expected = base64.b64encode(digest).decode("ascii")
    if not hmac.compare_digest(expected, signature):
        raise _mismatch(string_to_sign)
    return cred


_FC_AUTH_RE = re.compile(r"^FC (?P<ak>[^:\s]+):(?P<sig>\S+)$")


def verify_fc2(*, method: str, path: str, query: Sequence[tuple[str, str]],
               headers: Mapping[str, list[str]], body: bytes,
               credentials: Mapping[str, Credential]) -> Credential:
    """Check a Function Compute 2.0 (2016-08-15) request as ``fc2.auth.Auth`` signs it.

    ``Authorization: FC <AK>:<signature>``; signature = base64 HMAC-SHA256 (aliyun-fc2 2.x) of
    method, content-md5, content-type, date, the sorted ``x-fc-*`` headers (``name:value``
    lines) followed by the unescaped path (and, with a query, ``\\n`` + sorted ``k=v`` lines).
    Errors use FC's own codes: 403 ``InvalidAccessKeyID`` and ``SignatureNotMatch``.
    """
    authorization = _first(headers, "authorization") or ""
    match = _FC_AUTH_RE.match(authorization.strip())
    if match is None:
        raise ApiError("MissingRequiredHeader", "required HTTP header Authorization was not "
                       "specified or is not 'FC <AccessKeyID>:<Signature>'", 400)
    cred = credentials.get(match.group("ak"))
    if cred is None:
        raise ApiError("InvalidAccessKeyID", f"invalid access key ID '{match.group('ak')}'", 403)
    _check_token(cred, _first(headers, "x-fc-security-token"))
    content_md5 = _first(headers, "content-md5") or ""
    if content_md5 and base64.b64encode(hashlib.md5(body).digest()).decode() != content_md5:  # noqa: S324 - the protocol's checksum, not a secret
        raise ApiError("InvalidArgument", "Content-MD5 does not match the body.", 400)
    fc_headers = sorted((name, values[0]) for name, values in headers.items()
                        if name.startswith("x-fc-"))
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in fc_headers)
    resource = path
    if query:
        resource += "\n" + "\n".join(sorted(f"{k}={v}" if v else k for k, v in query))
    string_to_sign = "\n".join([method.upper(), content_md5, _first(headers, "content-type") or "",
                                _first(headers, "date") or "", canonical_headers + resource])
    digest = hmac.new(cred.access_key_secret.encode("utf-8"), string_to_sign.encode("utf-8"),
                      hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode("ascii"), match.group("sig")):
        raise ApiError("SignatureNotMatch", "The request signature we calculated does not match "
                       "the signature you provided. Check your access key and signing method",
                       403)
    return cred
