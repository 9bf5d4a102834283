"""JSON in and out: request bodies, responses, and errors as {"error": {"code", "message", ...}}."""
from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

MAX_BODY = web.AppKey("max_body_bytes", int)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, **self.extra)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(value: Any, status: int = 200, headers=None) -> web.Response:
    return web.Response(text=dumps(value), status=status, content_type="application/json", headers=headers)


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return json_response({"error": {"code": code, "message": message, **extra}}, status=status)


_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "unprocessable",
}


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    limit = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        # Refuse before any lookup; bodies without a length are cut off while read (below).
        return error_response(413, "payload_too_large", f"request body is larger than {limit} bytes",
                              limit=limit)
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "payload_too_large", f"request body is larger than {limit} bytes",
                              limit=limit)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    except HttpProcessingError as exc:  # a malformed body found while reading it (multipart part headers)
        return error_response(400, "bad_request", f"malformed request body: {exc.message}")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")


async def read_json(request: web.Request, *, default: Any = ..., expect: type | None = dict) -> Any:
    """The request body as JSON, or a 400 naming what is wrong with it."""
    raw = await request.read()
    if not raw.strip():
        if default is not ...:
            return default
        raise ApiError(400, "invalid_json", "request body is empty; expected JSON")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if expect is not None and not isinstance(value, expect):
        raise ApiError(400, "invalid_json", f"request body must be a JSON {expect.__name__.replace('dict', 'object')}")
    return value


def field_str(body: dict, name: str, *, required: bool = True, default: str = "") -> str:
    value = body.get(name, None)
    if value is None:
        if required:
            raise ApiError(400, "missing_field", f"field {name!r} is required", field=name)
        return default
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"field {name!r} must be a string", field=name)
    return value
