"""From an HTTP request to a job's arguments and event payload, and from a job's result to a response.

Shared by webhooks (``/jobs/run*``) and HTTP-route triggers, so that both read bodies and shape answers
the same way (documented in docs/triggers.md, "Webhooks"):

- body to args: a JSON object's keys become main()'s arguments; any other JSON value becomes ``body``;
  form-urlencoded and multipart fields become arguments; text becomes ``body``; other bytes become
  ``body`` as base64. ``raw=True`` adds the body as text under ``raw_string``; each name in
  ``headers`` adds that header's value under its lower-cased name with ``-`` replaced by ``_``.
- a result may shape its own HTTP answer: a JSON object with the key ``"headrace_response"`` whose
  value is ``{"status_code"?, "headers"?, "content_type"?, "body"?}``. Any other result is the JSON body.
"""
from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from aiohttp import web

from .http import ApiError, dumps, json_response

RESPONSE_KEY = "headrace_response"
# Never copied into an event: they carry credentials.
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
# Query keys that steer the webhook itself rather than the script.
CONTROL_QUERY = frozenset({"token", "raw", "include_header"})
# Headers a result may not set: the server computes them.
_MANAGED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "content-type"})


def header_arg_name(header: str) -> str:
    return header.strip().lower().replace("-", "_")


def parse_header_list(value: str | None) -> list[str]:
    """``include_header=a,b`` -> ["a", "b"]."""
    return [h.strip() for h in (value or "").split(",") if h.strip()]


def _is_true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def webhook_options(request: web.Request) -> tuple[bool, list[str]]:
    """(raw, headers) from the Windmill-style query: ``raw=true``, ``include_header=a,b``."""
    return _is_true(request.query.get("raw")), parse_header_list(request.query.get("include_header"))


async def _multipart(request: web.Request) -> dict[str, Any]:
    """Form fields; files as {filename, content_type, base64}. ``post()`` enforces the size limit."""
    fields: dict[str, Any] = {}
    try:
        form = await request.post()
    except ValueError as exc:  # no boundary, a malformed part (bad part headers: the error middleware)
        raise ApiError(400, "invalid_body", f"malformed multipart body: {exc}") from None
    for name, value in form.items():
        if isinstance(value, web.FileField):
            data = value.file.read()
            value = {
                "filename": value.filename,
                "content_type": value.content_type,
                "base64": base64.b64encode(data).decode(),
            }
        _add(fields, name, value)
    return fields


def _add(fields: dict[str, Any], name: str, value: Any) -> None:
    """A repeated field becomes a list of its values."""
    if name in fields:
        prev = fields[name]
        fields[name] = prev + [value] if isinstance(prev, list) else [prev, value]
    else:
        fields[name] = value


def _decode_body(ctype: str, raw: bytes) -> Any:
    """The body as a JSON-able value; raises ApiError(400) for JSON that does not parse."""
    if not raw:
        return None
    if ctype in ("", "application/json") or ctype.endswith("+json"):
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if ctype == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qsl

        fields: dict[str, Any] = {}
        try:
            for k, v in parse_qsl(raw.decode(), keep_blank_values=True):
                _add(fields, k, v)
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_form", "form body is not valid UTF-8") from None
        return fields
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode()


def args_from_body(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        return dict(body)
    if body is None:
        return {}
    return {"body": body}


async def args_from_request(
    request: web.Request, *, raw: bool, headers: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(main()'s arguments, event payload) for one request.

    The payload is what the ledger keeps and a preprocessor receives (with ``"kind"`` added):
    ``{"method", "path", "query", "headers", "body"}``, plus ``"raw_body"`` when ``raw`` and
    ``"include_header"`` when ``headers``. ``headers`` never holds credentials (Authorization, Cookie).
    An oversized body raises aiohttp's 413 (turned into JSON by the error middleware).
    """
    ctype = request.content_type if request.body_exists else ""
    if ctype == "application/octet-stream":
        ctype = ""  # no type, or the generic one that clients send by default: JSON, like Windmill's.
    if ctype == "multipart/form-data":
        raw_bytes = b""
        body: Any = await _multipart(request)
    else:
        raw_bytes = await request.read()
        body = _decode_body(ctype, raw_bytes)
    args = args_from_body(body)
    payload: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "query": {k: v for k, v in request.query.items() if k not in CONTROL_QUERY},
        "headers": {k.lower(): v for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS},
        "body": body,
    }
    if raw:
        text = raw_bytes.decode(errors="replace")
        args["raw_string"] = text
        payload["raw_body"] = text
    if headers:
        payload["include_header"] = list(headers)
        for name in headers:
            value = request.headers.get(name)
            if value is not None and name.lower() not in SECRET_HEADERS:
                args[header_arg_name(name)] = value
    return args, payload


def args_from_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """main()'s arguments rebuilt from a stored payload (replaying a webhook or HTTP-route event)."""
    args = args_from_body(payload.get("body"))
    if "raw_body" in payload:
        args["raw_string"] = payload["raw_body"]
    stored = payload.get("headers") or {}
    for name in payload.get("include_header") or ():
        if name.lower() in stored:
            args[header_arg_name(name)] = stored[name.lower()]
    return args


def _bad_response(field: str, message: str, job_id) -> ApiError:
    return ApiError(502, "invalid_script_response", f"{RESPONSE_KEY}.{field}: {message}",
                    field=f"{RESPONSE_KEY}.{field}", job_id=str(job_id))


def response_from_result(result: Any, job_id: uuid.UUID | str) -> web.Response:
    """The HTTP answer for a successful job's result (see the module docstring for the convention).

    A malformed ``headrace_response`` object is the script's fault: 502 naming the field.
    """
    base = {"X-Headrace-Job-Id": str(job_id)}
    spec = result.get(RESPONSE_KEY) if isinstance(result, dict) else None
    if not isinstance(spec, dict):
        return json_response(result, headers=base)
    status = spec.get("status_code", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise _bad_response("status_code", "must be an integer from 200 to 599", job_id)
    extra = spec.get("headers") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, (str, int, float)) for v in extra.values()):
        raise _bad_response("headers", "must be an object of header names to strings", job_id)
    headers = {str(k): str(v) for k, v in extra.items() if str(k).lower() not in _MANAGED_HEADERS}
    content_type = spec.get("content_type")
    if content_type is None:
        content_type = next((str(v) for k, v in extra.items() if str(k).lower() == "content-type"), None)
    if content_type is not None and (not isinstance(content_type, str) or "\n" in content_type):
        raise _bad_response("content_type", "must be a string", job_id)
    body = spec.get("body")
    if isinstance(body, str):
        text = body
        content_type = content_type or "text/plain; charset=utf-8"
    elif body is None and "body" not in spec:
        text = ""
    else:
        text = dumps(body)
        content_type = content_type or "application/json"
    if status in (204, 304):
        text, content_type = "", None  # these statuses carry no body
    resp = web.Response(body=text.encode(), status=status, headers={**headers, **base})
    if content_type:
        resp.headers["Content-Type"] = content_type
    return resp


def response_from_job(row: dict) -> web.Response:
    """A completed job's answer: its result on success, else 422 with the job's error as JSON."""
    if row["success"]:
        return response_from_result(row["result"], row["id"])
    result = row["result"]
    error = result.get("error") if isinstance(result, dict) else None
    error = error if isinstance(error, dict) else {}
    return json_response(
        {"error": {"code": "job_failed", "message": error.get("message", "job failed"),
                   "name": error.get("name"), "stack": error.get("stack"), "job_id": str(row["id"])}},
        status=422, headers={"X-Headrace-Job-Id": str(row["id"])},
    )
