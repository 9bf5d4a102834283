"""The config of an `http` trigger: its JSON Schema, cross-field checks, route keys and secret masking.

Secrets (``auth.secret``, ``auth.password``: the kind's ``secret_fields``) are sealed by the trigger
store (core.trigger_secrets) and never returned in clear: reads show ``MASK``; an update that sends
``MASK`` back keeps the stored value.
"""
from __future__ import annotations

import re
from typing import Any

from headrace.core.trigger_secrets import MASK
from headrace.core.triggers import TriggerConfigError
from headrace.hub.http_triggers import RoutePatternError, compile_pattern

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "*")
REQUEST_TYPES = ("async", "sync", "sse")
AUTH_METHODS = ("none", "token", "api_key", "basic", "hmac", "jwt")
HMAC_PRESETS = ("github", "slack", "stripe", "custom")
HMAC_ALGORITHMS = ("sha1", "sha256", "sha512")
JWT_HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
JWT_KEY_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
SECRET_FIELDS = ("secret", "password")  # under auth
DEFAULT_TOLERANCE_S = 300
DEFAULT_WAIT_S = 300


def _when(method: str, required: list[str]) -> dict[str, Any]:
    return {"if": {"properties": {"method": {"const": method}}},
            "then": {"required": required}}


_STR = {"type": "string", "minLength": 1, "maxLength": 4096}
_HEADER = {"type": "string", "pattern": r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", "maxLength": 200}

AUTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["method"],
    "additionalProperties": False,
    "properties": {
        "method": {"enum": list(AUTH_METHODS)},
        # token: the scope the caller's Headrace token must grant.
        "scope": {"type": "string", "minLength": 1, "maxLength": 200},
        # api_key: the header carrying the key; the key itself is `secret`.
        "header": _HEADER,
        "secret": _STR,
        # basic
        "username": {"type": "string", "minLength": 1, "maxLength": 200},
        "password": _STR,
        # hmac
        "preset": {"enum": list(HMAC_PRESETS)},
        "algorithm": {"type": "string"},  # hmac: sha1|sha256|sha512; jwt: HS256, RS256...
        "prefix": {"type": "string", "maxLength": 100},
        "encoding": {"enum": ["hex", "base64"]},
        "timestamp_header": _HEADER,
        "tolerance_s": {"type": "integer", "minimum": 1, "maximum": 86400},
        # jwt
        "jwks_url": {"type": "string", "pattern": "^https?://", "maxLength": 2000},
        "issuer": {"type": "string", "minLength": 1},
        "audience": {"type": "string", "minLength": 1},
        "leeway_s": {"type": "integer", "minimum": 0, "maximum": 3600},
    },
    "allOf": [
        _when("api_key", ["secret"]),
        _when("basic", ["username", "password"]),
        _when("hmac", ["preset", "secret"]),
        _when("jwt", ["algorithm"]),
    ],
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["route_path"],
    "additionalProperties": False,
    "properties": {
        # Served at /api/r/<workspace><route_path>; `:name` segments and a last `*rest` become args.
        "route_path": {"type": "string", "minLength": 1, "maxLength": 1000},
        "method": {"enum": list(METHODS)},
        "request_type": {"enum": list(REQUEST_TYPES)},
        "auth": AUTH_SCHEMA,
        "raw": {"type": "boolean"},
        "include_headers": {"type": "array", "items": _HEADER, "maxItems": 50},
        "wait_timeout_s": {"type": "integer", "minimum": 1, "maximum": 3600},
    },
}


def check(config: dict[str, Any]) -> None:
    """Checks the schema cannot express; raises TriggerConfigError naming the field."""
    try:
        compile_pattern(config["route_path"])
    except (RoutePatternError, re.error) as exc:
        raise TriggerConfigError("route_path", str(exc)) from None
    auth = config.get("auth") or {"method": "none"}
    method = auth["method"]
    if method == "hmac":
        if auth["preset"] == "custom":
            if "header" not in auth:
                raise TriggerConfigError("auth.header", "a custom HMAC needs the signature's header")
            if auth.get("algorithm", "sha256") not in HMAC_ALGORITHMS:
                raise TriggerConfigError("auth.algorithm", f"must be one of {', '.join(HMAC_ALGORITHMS)}")
        elif "algorithm" in auth or "header" in auth or "prefix" in auth:
            field = next(f for f in ("algorithm", "header", "prefix") if f in auth)
            raise TriggerConfigError(f"auth.{field}", f"the {auth['preset']} preset fixes {field}; "
                                                      "use preset custom to choose it")
    if method == "jwt":
        alg = auth["algorithm"]
        if alg in JWT_HMAC_ALGORITHMS:
            if "secret" not in auth:
                raise TriggerConfigError("auth.secret", f"{alg} needs a shared secret")
        elif alg in JWT_KEY_ALGORITHMS:
            if "jwks_url" not in auth:
                raise TriggerConfigError("auth.jwks_url", f"{alg} needs a JWKS URL for the public keys")
        else:
            allowed = JWT_HMAC_ALGORITHMS + JWT_KEY_ALGORITHMS
            raise TriggerConfigError("auth.algorithm", f"must be one of {', '.join(allowed)}")


def route_key(config: dict[str, Any]) -> tuple[str, str]:
    """(method, pattern with parameter names erased): two routes with the same key would clash."""
    parts = []
    for part in config["route_path"].strip("/").split("/"):
        if part.startswith(":"):
            parts.append(":")
        elif part.startswith("*"):
            parts.append("*")
        elif part:
            parts.append(part)
    return config.get("method", "POST"), "/" + "/".join(parts)


def clashes(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return a[1] == b[1] and (a[0] == b[0] or "*" in (a[0], b[0]))


def keep_masked_secrets(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """An update that sends MASK keeps the stored secret (same auth method only)."""
    auth = new.get("auth")
    if not isinstance(auth, dict):
        return new
    old_auth = (old or {}).get("auth") or {}
    auth = dict(auth)
    for name in SECRET_FIELDS:
        if auth.get(name) != MASK:
            continue
        if old_auth.get("method") != auth.get("method") or name not in old_auth:
            raise TriggerConfigError(f"auth.{name}", f"send the {name} itself, not its mask")
        auth[name] = old_auth[name]
    return {**new, "auth": auth}
