"""Per-route authentication of `http` triggers: none, Headrace token, API key, basic, HMAC, JWT.

``authenticate`` either returns a :class:`Verified` or raises :class:`RouteAuthError` (turned into a
401/403 JSON answer). Secrets are compared with ``hmac.compare_digest`` only. Signed requests carry a
``replay_key`` (or, for GitHub, a ``delivery_key``) that the kind writes as the event's dedup key.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from headrace.hub.auth import authenticate as authenticate_token
from headrace.hub.http import ApiError

from .config import DEFAULT_TOLERANCE_S

JWKS_TTL_S = 300.0
JWKS_MIN_REFRESH_S = 10.0  # an unknown `kid` refetches the set at most this often


class RouteAuthError(Exception):
    def __init__(self, status: int, code: str, message: str, challenge: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.challenge = status, code, message, challenge

    def response(self) -> web.Response:
        resp = ApiError(self.status, self.code, self.message).response()
        if self.challenge:
            resp.headers["WWW-Authenticate"] = self.challenge
        return resp


def _refuse(message: str, challenge: str | None = None) -> RouteAuthError:
    return RouteAuthError(401, "unauthorized", message, challenge)


@dataclass
class Verified:
    """Who called, for the event envelope, and the dedup keys that signatures imply."""

    info: dict[str, Any] = field(default_factory=dict)
    replay_key: str | None = None  # a repeat is refused (timestamped signatures)
    delivery_key: str | None = None  # a repeat returns the first job (GitHub's delivery id)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() or None if header[:7].lower() == "bearer " else None


# -- token, API key, basic ---------------------------------------------------------------------

async def _token(request: web.Request, trigger, auth: dict) -> Verified:
    try:
        principal = await authenticate_token(request)
    except ApiError as exc:
        raise _refuse(exc.message, 'Bearer realm="headrace"') from None
    scope = auth.get("scope", "jobs:run")
    if principal.workspace_id != trigger.workspace_id:
        raise RouteAuthError(403, "forbidden", f"this token is not valid for workspace {trigger.workspace_id!r}")
    if not principal.allows(scope):
        raise RouteAuthError(403, "forbidden", f"this token lacks the scope {scope!r}")
    if principal.script_path is not None and principal.script_path != trigger.script_path:
        raise RouteAuthError(403, "forbidden", f"this token may only run {principal.script_path!r}")
    return Verified({"method": "token", "owner": principal.owner})


def _api_key(request: web.Request, auth: dict) -> Verified:
    header = auth.get("header", "X-API-Key")
    given = request.headers.get(header)
    if given is None:
        raise _refuse(f"missing API key: send it in the {header} header")
    if not _same(given, auth["secret"]):
        raise _refuse("invalid API key")
    return Verified({"method": "api_key"})


def _basic(request: web.Request, auth: dict) -> Verified:
    challenge = 'Basic realm="headrace", charset="UTF-8"'
    header = request.headers.get("Authorization", "")
    if header[:6].lower() != "basic ":
        raise _refuse("missing credentials: send Authorization: Basic", challenge)
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _refuse("malformed Basic credentials", challenge) from None
    # Both compared every time, so that timing tells nothing about which one was wrong.
    ok_user = _same(user, auth["username"])
    ok_password = _same(password, auth["password"])
    if not (sep and ok_user and ok_password):
        raise _refuse("invalid username or password", challenge)
    return Verified({"method": "basic", "username": user})


# -- HMAC signatures ---------------------------------------------------------------------------

def _digest(secret: str, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()


def _check_timestamp(raw: str | None, header: str, tolerance: int) -> str:
    if not raw:
        raise _refuse(f"missing {header}")
    try:
        ts = int(raw)
    except ValueError:
        raise _refuse(f"{header} must be a Unix time in seconds") from None
    if abs(time.time() - ts) > tolerance:
        raise _refuse(f"{header} is more than {tolerance} s away from now: refused as a possible replay")
    return raw


def _replay_key(timestamp: str, signature: str) -> str:
    return "replay:" + hashlib.sha256(f"{timestamp}:{signature}".encode()).hexdigest()


def _github(request: web.Request, body: bytes, auth: dict) -> Verified:
    given = request.headers.get("X-Hub-Signature-256", "")
    if not given.startswith("sha256="):
        raise _refuse("missing X-Hub-Signature-256: sha256=<hex>")
    if not _same(given[7:].lower(), _digest(auth["secret"], body).hex()):
        raise _refuse("X-Hub-Signature-256 does not match the body")
    delivery = request.headers.get("X-GitHub-Delivery")
    return Verified({"method": "hmac", "preset": "github"},
                    delivery_key=f"delivery:{delivery}"[:255] if delivery else None)


def _slack(request: web.Request, body: bytes, auth: dict) -> Verified:
    tolerance = auth.get("tolerance_s", DEFAULT_TOLERANCE_S)
    ts = _check_timestamp(request.headers.get("X-Slack-Request-Timestamp"), "X-Slack-Request-Timestamp", tolerance)
    given = request.headers.get("X-Slack-Signature", "")
    if not given.startswith("v0="):
        raise _refuse("missing X-Slack-Signature: v0=<hex>")
    expected = _digest(auth["secret"], b"v0:" + ts.encode() + b":" + body).hex()
    if not _same(given[3:].lower(), expected):
        raise _refuse("X-Slack-Signature does not match the timestamp and body")
    return Verified({"method": "hmac", "preset": "slack"}, replay_key=_replay_key(ts, expected))


def _stripe(request: web.Request, body: bytes, auth: dict) -> Verified:
    header = request.headers.get("Stripe-Signature", "")
    items = [part.strip().partition("=") for part in header.split(",")]
    ts = next((v for k, _, v in items if k == "t"), None)
    signatures = [v.lower() for k, _, v in items if k == "v1"]
    if not ts or not signatures:
        raise _refuse("missing Stripe-Signature: t=<time>,v1=<hex>")
    ts = _check_timestamp(ts, "Stripe-Signature t", auth.get("tolerance_s", DEFAULT_TOLERANCE_S))
    expected = _digest(auth["secret"], ts.encode() + b"." + body).hex()
    # Every v1 is compared (Stripe sends one per active secret while rolling them).
    matched = [_same(sig, expected) for sig in signatures]
    if not any(matched):
        raise _refuse("no v1 signature in Stripe-Signature matches the timestamp and body")
    return Verified({"method": "hmac", "preset": "stripe"}, replay_key=_replay_key(ts, expected))


def _custom(request: web.Request, body: bytes, auth: dict) -> Verified:
    header, prefix = auth["header"], auth.get("prefix", "")
    given = request.headers.get(header)
    if given is None or not given.startswith(prefix):
        raise _refuse(f"missing {header}" + (f": {prefix}<signature>" if prefix else ""))
    given = given[len(prefix):].strip()
    message, ts = body, None
    if "timestamp_header" in auth:
        ts = _check_timestamp(request.headers.get(auth["timestamp_header"]), auth["timestamp_header"],
                              auth.get("tolerance_s", DEFAULT_TOLERANCE_S))
        message = ts.encode() + b"." + body
    digest = _digest(auth["secret"], message, auth.get("algorithm", "sha256"))
    if auth.get("encoding", "hex") == "base64":
        expected, given_cmp = base64.b64encode(digest).decode(), given
    else:
        expected, given_cmp = digest.hex(), given.lower()
    if not _same(given_cmp, expected):
        raise _refuse(f"{header} does not match the " + ("timestamp and body" if ts else "body"))
    return Verified({"method": "hmac", "preset": "custom"},
                    replay_key=_replay_key(ts, expected) if ts is not None else None)


_PRESETS = {"github": _github, "slack": _slack, "stripe": _stripe, "custom": _custom}


# -- JWT ---------------------------------------------------------------------------------------

class JwksCache:
    """Public key sets fetched (asynchronously) from JWKS URLs, kept for JWKS_TTL_S."""

    def __init__(self) -> None:
        self._sets: dict[str, tuple[float, jwt.PyJWKSet]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def key(self, url: str, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        hit = self._sets.get(url)
        if hit is None or hit[0] + JWKS_TTL_S < now or (
            self._find(hit[1], kid) is None and hit[0] + JWKS_MIN_REFRESH_S < now
        ):
            async with self._locks.setdefault(url, asyncio.Lock()):
                hit = self._sets.get(url)
                if hit is None or hit[0] + JWKS_MIN_REFRESH_S < time.monotonic():
                    hit = (time.monotonic(), await self._fetch(url))
                    self._sets[url] = hit
        found = self._find(hit[1], kid)
        if found is None:
            raise _refuse(f"no key {kid!r} in the JWKS" if kid else "the token names no key (kid) "
                          "and the JWKS holds more than one")
        return found

    @staticmethod
    def _find(keys: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return keys.keys[0] if len(keys.keys) == 1 else None
        return next((k for k in keys.keys if k.key_id == kid), None)

    @staticmethod
    async def _fetch(url: str) -> jwt.PyJWKSet:
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                if resp.status != 200:
                    raise RouteAuthError(503, "jwks_unavailable", f"JWKS URL answered {resp.status}")
                data = json.loads(await resp.read())
            return jwt.PyJWKSet.from_dict(data)
        except RouteAuthError:
            raise
        except (TimeoutError, aiohttp.ClientError, ValueError, jwt.PyJWTError) as exc:
            raise RouteAuthError(503, "jwks_unavailable", f"cannot load the JWKS: {exc}") from None


JWKS = JwksCache()


async def _jwt(request: web.Request, auth: dict) -> Verified:
    token = _bearer(request)
    if token is None:
        raise _refuse("missing token: send Authorization: Bearer <JWT>", 'Bearer realm="headrace"')
    alg = auth["algorithm"]
    try:
        if "secret" in auth and alg.startswith("HS"):
            key: Any = auth["secret"]
        else:
            key = (await JWKS.key(auth["jwks_url"], jwt.get_unverified_header(token).get("kid"))).key
        claims = jwt.decode(
            token, key, algorithms=[alg], audience=auth.get("audience"), issuer=auth.get("issuer"),
            leeway=auth.get("leeway_s", 0),
            options={"require": ["exp"] + [c for c in ("iss", "aud") if c in _claim_names(auth)]},
        )
    except jwt.PyJWTError as exc:
        raise _refuse(f"invalid JWT: {exc}", 'Bearer error="invalid_token"') from None
    return Verified({"method": "jwt", "claims": claims})


def _claim_names(auth: dict) -> set[str]:
    return {"iss" if "issuer" in auth else "", "aud" if "audience" in auth else ""} - {""}


# -- entry point -------------------------------------------------------------------------------

async def authenticate(request: web.Request, trigger, body: bytes) -> Verified:
    """Check the request against the trigger's ``config.auth``; ``body`` is the raw request body."""
    auth = trigger.config.get("auth") or {"method": "none"}
    method = auth["method"]
    if method == "none":
        return Verified({"method": "none"})
    if method == "token":
        return await _token(request, trigger, auth)
    if method == "api_key":
        return _api_key(request, auth)
    if method == "basic":
        return _basic(request, auth)
    if method == "hmac":
        return _PRESETS[auth["preset"]](request, body, auth)
    if method == "jwt":
        return await _jwt(request, auth)
    raise RouteAuthError(500, "bad_trigger", f"unknown auth method {method!r}")  # schema forbids it


def secret_headers(trigger) -> set[str]:
    """Headers (lower-cased) that carry this route's credentials: never copied into events."""
    auth = trigger.config.get("auth") or {}
    if auth.get("method") == "api_key":
        return {auth.get("header", "X-API-Key").lower()}
    return set()
