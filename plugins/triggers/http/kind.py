"""The `http` trigger kind: a method and a path under /api/r/<workspace>/ that run a script.

One request: authenticate (config.auth) -> read args (the webhook rules of hub.request_args, plus the
path's parameters) -> one ledger event with its job -> answer by config.request_type (async: 201 and
the job id; sync: the job's result; sse: a stream of the job's progress). Modes: suspended keeps the
event as a suspended job, capture records it with no job (both answer 202 at once).
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from headrace.core import trigger_store
from headrace.core.args import ArgsError
from headrace.core.error_handlers import wants_done_notice
from headrace.core.ledger import Accepted, Event, EventSink, ScriptMissing
from headrace.core.schema import triggers
from headrace.core.triggers import Trigger, TriggerConfigError, TriggerKind
from headrace.hub.api.jobs import wait_for_job
from headrace.hub.http import ApiError, json_response
from headrace.hub.keys import WAITER
from headrace.hub.request_args import (
    args_from_payload,
    args_from_request,
    header_arg_name,
    response_from_job,
)

from . import config as cfg
from .auth import RouteAuthError, authenticate, secret_headers
from .sse import stream_job

MAX_IDEMPOTENCY_KEY = 255


class HttpRouteKind(TriggerKind):
    id = "http"
    family = "http"
    summary = "An HTTP route under /api/r/<workspace>/ with its own auth (token, API key, basic, HMAC, JWT)"
    config_schema = cfg.CONFIG_SCHEMA
    secret_fields = tuple(f"auth.{name}" for name in cfg.SECRET_FIELDS)  # sealed at rest, masked in reads

    # -- config -------------------------------------------------------------------------------
    def check_config(self, config: dict[str, Any]) -> None:
        cfg.check(config)

    async def prepare_config(self, conn, workspace_id: str, path: str | None,
                             config: dict[str, Any]) -> dict[str, Any]:
        """Restore masked secrets and refuse a route that another trigger of the workspace serves."""
        old = await trigger_store.get(conn, workspace_id, self.id, path) if path is not None else None
        config = cfg.keep_masked_secrets(config, old.config if old else None)
        # Serialises route changes per workspace, so two concurrent creates cannot both pass.
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
            sa.func.hashtext(f"headrace-http-routes:{workspace_id}"))))
        key = cfg.route_key(config)
        others = await conn.execute(sa.select(triggers.c.path, triggers.c.config).where(
            triggers.c.workspace_id == workspace_id, triggers.c.kind == self.id,
            triggers.c.path != (path or ""),
        ))
        for other_path, other_config in others:
            if cfg.clashes(key, cfg.route_key(other_config)):
                raise trigger_store.TriggerInputError(
                    "config.route_path",
                    f"{key[0]} {config['route_path']} clashes with the route of trigger {other_path!r}",
                    status=409)
        return config

    def args_from_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """main()'s arguments rebuilt from a stored event (replay): body args, then path params."""
        return {**args_from_payload(event), **(event.get("params") or {})}

    # -- serving ------------------------------------------------------------------------------
    def route(self, trigger: Trigger) -> tuple[str, str]:
        return trigger.config.get("method", "POST"), trigger.config["route_path"]

    async def handle(self, request: web.Request, trigger: Trigger, params: dict[str, str],
                     events: EventSink) -> web.StreamResponse:
        config = trigger.config
        body = b""
        if (config.get("auth") or {}).get("method") == "hmac":
            if request.content_type == "multipart/form-data":
                # The signature needs the raw bytes, and aiohttp cannot parse multipart once read.
                raise ApiError(415, "unsupported_media_type", "a signed route takes JSON, form-urlencoded "
                               "or text bodies, not multipart/form-data")
            body = await request.read()  # cached by aiohttp: args_from_request reads it again
        try:
            verified = await authenticate(request, trigger, body)
        except RouteAuthError as exc:
            return exc.response()
        args, payload = await args_from_request(
            request, raw=config.get("raw", False), headers=config.get("include_headers") or [])
        hidden = secret_headers(trigger)
        payload["headers"] = {k: v for k, v in payload["headers"].items() if k not in hidden}
        for name in config.get("include_headers") or ():  # nor an argument: the API key stays out of jobs
            if name.lower() in hidden:
                args.pop(header_arg_name(name), None)
        args.update(params)  # the path's own parameters win over body keys of the same name
        payload = {"trigger": trigger.path, "route": config["route_path"], **payload,
                   "params": params, "auth": verified.info}
        event = Event(
            workspace_id=trigger.workspace_id, source=trigger.source, kind=self.id,
            script_path=trigger.script_path, payload=payload, args=args, mode=trigger.mode,
            trigger_id=trigger.id, created_by=f"trigger:{trigger.path}",
            dedup_key=_dedup_key(request, verified),
        )
        request_type = config.get("request_type", "async")
        waits = request_type != "async" and trigger.mode == "enabled"
        # Run-and-wait callers, and the trigger's error handler, hear of the job's end by NOTIFY.
        event.notify_done = waits or wants_done_notice(trigger)
        acc = await _accept(events, event)
        if acc.duplicate and verified.replay_key is not None and event.dedup_key == verified.replay_key:
            raise ApiError(409, "replay_refused", "this signature was already accepted: refused as a replay")
        if acc.job_id is None or acc.status != "queued" or not waits:
            return _accepted_response(acc)
        timeout = float(config.get("wait_timeout_s", cfg.DEFAULT_WAIT_S))
        # Both waits read the job once after registering, so a job that finished already is seen.
        fut = request.app[WAITER].register(acc.job_id)
        if request_type == "sse":
            return await stream_job(request, trigger.workspace_id, acc.job_id, fut, timeout,
                                    extra={"event_id": str(acc.event_id), "duplicate": acc.duplicate})
        row = await wait_for_job(request, trigger.workspace_id, acc.job_id, fut, timeout, check_first=True)
        return response_from_job(row)


def _dedup_key(request: web.Request, verified) -> str | None:
    """A timestamped signature is its own key (replays refused); else Idempotency-Key or a delivery id."""
    if verified.replay_key is not None:
        return verified.replay_key
    key = request.headers.get("Idempotency-Key") or None
    if key is not None:
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise ApiError(400, "invalid_header", f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} "
                           "characters", field="Idempotency-Key")
        return "idem:" + key
    return verified.delivery_key


async def _accept(events: EventSink, event: Event) -> Accepted:
    try:
        return await events.accept(event)
    except ArgsError as exc:
        raise ApiError(400, "invalid_args", exc.message, field=exc.field) from None
    except ScriptMissing as exc:
        raise ApiError(404, "script_not_found", f"the route's script is missing: {exc}") from None


def _accepted_response(acc: Accepted) -> web.Response:
    """async mode, and every suspended or captured event: the ids, without waiting."""
    body = {"job_id": acc.job_id, "event_id": acc.event_id, "status": acc.status, "duplicate": acc.duplicate}
    status = 201 if acc.status == "queued" else 202
    if acc.duplicate:
        status = 200
    headers = {"X-Headrace-Job-Id": str(acc.job_id)} if acc.job_id else None
    return json_response(body, status=status, headers=headers)


__all__ = ["HttpRouteKind", "TriggerConfigError"]
