"""The OpenAPI 3.1 document served at ``GET /api/openapi.json`` (no token needed).

The document is built from the live aiohttp router: every registered route is looked up in ``OPERATIONS``,
keyed by (method, route template as aiohttp prints it, e.g. ``/api/w/{workspace}/scripts/get/p/{path}``).
A route with no entry is left out of the document and logged, and tests/api/test_openapi.py fails; an
entry whose route is gone is simply not emitted. Plugin routes under /api/plugins/ get a generic entry.

Conventions the entries rely on:
- every error is ``ErrorBody`` (``{"error": {"code", "message", ...}}``); 404 is on every operation
  because a path parameter that does not fit its route falls through to the catch-all 404;
- path parameters that hold slashes (aiohttp ``{path:.+}``) are plain ``{path}`` here; send them raw;
- Windmill-compatible routes keep Windmill's surprising shapes (text/plain job id, text/plain hash).
"""
from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from aiohttp import web

from headrace.core.triggers import MODES

from .http import dumps
from .keys import KINDS

log = logging.getLogger(__name__)

JSON = "application/json"
TEXT = "text/plain"
_SKIPPED_METHODS = {"HEAD", "OPTIONS"}  # HEAD is aiohttp's automatic twin of each GET
_ANY_METHODS = ("get", "post", "put", "patch", "delete")
_CACHE = web.AppKey("openapi_cache", dict)


# -- small schema helpers -----------------------------------------------------------------------------

def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: Iterable[str] = (), **props: dict) -> dict:
    return {"type": "object", "required": list(required), "properties": props}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def int_range(minimum: int, maximum: int = 2**31 - 1) -> dict:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
ANY: dict = {}
TIME = {"type": "string", "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
OBJECT = {"type": "object"}
WM_PATH = {"type": "string", "minLength": 1, "description": "a Windmill path such as f/folder/name; slashes raw",
           "example": "f/examples/hello"}


@dataclass
class Resp:
    """One documented answer: a media type and schema (none: no body), optional response headers."""

    description: str
    media: str | None = JSON
    schema: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)  # name -> description (string values)

    def render(self) -> dict:
        out: dict[str, Any] = {"description": self.description}
        if self.media is not None:
            out["content"] = {self.media: {"schema": self.schema if self.schema is not None else {}}}
        if self.headers:
            out["headers"] = {n: {"description": d, "schema": STR} for n, d in self.headers.items()}
        return out


def ok(schema: dict, description: str = "OK", status: int = 200, **kw) -> dict[int, Resp]:
    return {status: Resp(description, JSON, schema, **kw)}


def text(description: str, status: int = 200, schema: dict = STR, **kw) -> dict[int, Resp]:
    return {status: Resp(description, TEXT, schema, **kw)}


def err(status: int, description: str) -> dict[int, Resp]:
    return {status: Resp(description, JSON, ref("ErrorBody"))}


@dataclass
class Query:
    name: str
    schema: dict
    description: str = ""
    required: bool = False

    def render(self) -> dict:
        out = {"name": self.name, "in": "query", "required": self.required, "schema": self.schema}
        if self.description:
            out["description"] = self.description
        return out


@dataclass
class Op:
    """One operation; ``scope`` None means no token is needed."""

    summary: str
    tag: str
    responses: dict[int | str, Resp]
    scope: str | None = "*"
    description: str = ""
    body: dict | None = None  # JSON schema of a JSON body
    body_required: bool = True
    body_media: tuple[str, ...] = (JSON,)
    query: list[Query] = field(default_factory=list)
    path_params: dict[str, dict] = field(default_factory=dict)  # schema per path parameter
    doc_path: str | None = None  # when the document spells the path differently from the router
    query_token: bool = False  # ?token= accepted (webhooks)
    may_400: bool = False  # refuses bad path parameters with 400 even without body or query


# -- shared component schemas -------------------------------------------------------------------------

SCRIPT_FIELDS = dict(
    hash=STR, path=STR, parent_hash=nullable(STR), language=STR, summary=nullable(STR),
    description=nullable(STR), schema=nullable(OBJECT), created_by=STR, created_at=TIME, archived=BOOL,
    lock=nullable(STR),
)
JOB_COMMON = dict(
    id=UUID, workspace_id=STR, script_path=nullable(STR), script_hash=nullable(STR), language=STR,
    args=ANY, tag=STR, created_at=TIME, created_by=STR, parent_job=nullable(UUID), started_at=nullable(TIME),
    job_kind=STR, attempts=INT,
)

COMPONENT_SCHEMAS: dict[str, dict] = {
    "ErrorBody": obj(
        ["error"],
        error={**obj(["code", "message"], code=STR, message=STR,
                     field={"type": ["string", "null"], "description": "the offending field, when one is to blame"}),
               "additionalProperties": True},
    ),
    "Script": obj(["hash", "path", "language", "content"], content=STR, **SCRIPT_FIELDS),
    "ScriptSummary": obj(["hash", "path", "language"], **SCRIPT_FIELDS),
    "ScriptVersion": obj(["hash", "created_at"], hash=STR, parent_hash=nullable(STR), created_at=TIME,
                         summary=nullable(STR)),
    "NewScript": obj(["path", "content", "language"], path=WM_PATH, content=STR,
                     language={"type": "string", "description": "python3, bun, go, bash (aliases: python, typescript)"},
                     summary=STR, description=STR,
                     parent_hash={"type": "string", "description": "refuse (409) unless this is the latest version"}),
    "QueuedJob": obj(["id", "type", "running"], type={"const": "QueuedJob"}, running=BOOL,
                     scheduled_for=nullable(TIME), canceled=BOOL, canceled_reason=nullable(STR),
                     logs=STR, **JOB_COMMON),
    "CompletedJob": obj(["id", "type", "success", "result"], type={"const": "CompletedJob"}, success=BOOL,
                        status=STR, result=ANY, completed_at=TIME, duration_ms=nullable(INT), canceled=BOOL,
                        running={"const": False}, logs=STR, **JOB_COMMON),
    "Job": {"oneOf": [ref("QueuedJob"), ref("CompletedJob")], "discriminator": {"propertyName": "type"}},
    "ResultMaybe": obj(["completed", "started", "success", "result"], completed=BOOL, started=BOOL,
                       success=nullable(BOOL), result=ANY),
    "TokenInfo": obj(["prefix", "scopes"], prefix=STR, label=nullable(STR), owner=nullable(STR),
                     scopes=array(STR), script_path=nullable(STR), expires_at=nullable(TIME), created_at=TIME),
    "NewToken": obj([], scopes={**array(STR), "minItems": 1}, label=STR,
                    expires_in_s=int_range(1),
                    script_path={"type": "string", "description": "the token may only run this script"}),
    "CreatedToken": obj(["token", "prefix"], token={"type": "string", "description": "shown once"}, prefix=STR),
    "Trigger": obj(
        ["id", "path", "kind", "script_path", "config", "mode"],
        id=UUID, path=STR, kind=STR, script_path=STR, config=OBJECT, mode={"type": "string", "enum": list(MODES)},
        enabled=BOOL, error_handler_path=nullable(STR), error_handler_args=nullable(OBJECT),
        summary=nullable(STR), last_error=nullable(STR), last_error_at=nullable(TIME), created_by=STR,
        created_at=TIME, updated_at=nullable(TIME), server_id=nullable(STR),
    ),
    "TriggerKind": obj(["id", "family", "config_schema"], id=STR,
                       family={"type": "string", "enum": ["listener", "http"]}, summary=STR, config_schema=OBJECT),
    "Plugin": {"type": "object"},
}


def trigger_body(config: dict, *, required: Iterable[str]) -> dict:
    return obj(
        required, path=WM_PATH, script_path=WM_PATH, config=config, mode={"type": "string", "enum": list(MODES)},
        error_handler_path=nullable(WM_PATH), error_handler_args=nullable(OBJECT), summary=STR,
    )


# -- the table: (method, aiohttp route template) -> Op or [Op, ...] -----------------------------------

W = "/api/w/{workspace}"
RUN_QUERY = [
    Query("scheduled_in_secs", int_range(0), "start no earlier than this many seconds"),
    Query("tag", STR, "worker tag (default: default)"),
    Query("parent_job", UUID, "the job that started this one"),
    Query("priority", int_range(0)),
    Query("max_retries", int_range(0)),
    Query("timeout", int_range(1), "seconds before the job is killed"),
    Query("raw", {"type": "string", "enum": ["true", "false"]}, "add the raw body as raw_string"),
    Query("include_header", STR, "comma-separated header names passed to the script as arguments"),
]
WEBHOOK_BODY_MEDIA = (JSON, "application/x-www-form-urlencoded", "multipart/form-data", TEXT)
WEBHOOK_DOC = (
    "The body becomes the script's arguments: a JSON object's keys are arguments, any other JSON value is "
    "`body`; form fields are arguments; text is `body`. An `Idempotency-Key` header returns the first job "
    "for a repeated key (200) instead of enqueueing again. `?token=` may carry the token."
)


def _run(kind: str, sync: bool) -> Op:
    what = "path" if kind == "p" else "version hash"
    param = "path" if kind == "p" else "hash"
    route = "run_wait_result" if sync else "run"
    if sync:
        responses = {
            200: Resp("the job's result as JSON (a result with `headrace_response` shapes its own answer)",
                      JSON, ANY, headers={"X-Headrace-Job-Id": "the job's id"}),
            "default": Resp("status, content type and headers chosen by a result with `headrace_response`", None),
            **err(408, "the job did not finish within wait_timeout; it keeps running"),
            **err(409, "the Idempotency-Key names an event that has no job"),
            **err(422, "the job failed: error.name, error.message, error.stack, error.job_id"),
        }
        query = RUN_QUERY + [Query("wait_timeout", int_range(1), "seconds to wait (default 300)")]
        summary = f"Run a script by {what} and wait for its result (sync webhook)"
    else:
        responses = {
            **text("the job's id as bare text (Windmill's shape)", 201, UUID,
                   headers={"X-Headrace-Event-Id": "the event ledger row"}),
            **text("an earlier call with the same Idempotency-Key: its job's id", 200, UUID,
                   headers={"X-Headrace-Event-Id": "the event ledger row"}),
            **err(409, "the Idempotency-Key names an event that has no job"),
        }
        query = RUN_QUERY
        summary = f"Run a script by {what} (async webhook)"
    return Op(
        summary, "jobs", responses, scope="jobs:run", description=WEBHOOK_DOC,
        body=ANY, body_required=False, body_media=WEBHOOK_BODY_MEDIA, query=query, query_token=True,
        path_params={param: WM_PATH if kind == "p" else STR}, doc_path=f"{W}/jobs/{route}/{kind}/{{{param}}}",
    )


JOB_ID = {"id": {**STR, "description": "a job id (UUID)"}}

OPERATIONS: dict[tuple[str, str], Op | list[Op]] = {
    # meta
    ("GET", "/api/version"): Op("Server version", "meta", text("`Headrace v<version>`"), scope=None),
    ("GET", "/api/health"): Op(
        "Health probe", "meta",
        {**ok(obj(["status"], status={"enum": ["ok"]}, database=STR)),
         503: Resp("the database is unreachable", JSON, obj(["status"], status={"enum": ["degraded"]}, database=STR))},
        scope=None),
    ("GET", "/api/openapi.json"): Op("This document", "meta", ok(OBJECT), scope=None),
    ("GET", "/api/users/whoami"): Op(
        "The caller's identity", "meta",
        ok(obj(["username", "workspace_id", "scopes"], email=STR, username=STR, workspace_id=STR, is_admin=BOOL,
               is_super_admin=BOOL, scopes=array(STR))), scope=""),
    ("GET", "/api/workspaces/list"): Op(
        "The caller's workspaces", "meta", ok(array(obj(["id", "name"], id=STR, name=STR))), scope=""),
    ("GET", f"{W}/plugins"): Op("Installed plugins and their status", "meta", ok(array(ref("Plugin")))),
    # tokens
    ("POST", f"{W}/tokens/create"): Op(
        "Create a token (shown once)", "tokens", ok(ref("CreatedToken"), "created", 201),
        scope="tokens:write", body=ref("NewToken")),
    ("GET", f"{W}/tokens/list"): Op("List tokens (no secrets)", "tokens", ok(array(ref("TokenInfo"))),
                                    scope="tokens:read"),
    ("POST", f"{W}/tokens/delete/{{prefix}}"): Op(
        "Revoke tokens by prefix", "tokens", ok(obj(["deleted"], deleted=INT)), scope="tokens:write"),
    # scripts
    ("POST", f"{W}/scripts/create"): Op(
        "Save a new script version", "scripts",
        {**text("the new version's hash as bare text (Windmill's shape)", 201),
         **err(409, "parent_hash is not the latest version")},
        scope="scripts:write", body=ref("NewScript")),
    ("GET", f"{W}/scripts/get/p/{{path}}"): Op(
        "The latest version of a script", "scripts", ok(ref("Script")), scope="scripts:read",
        path_params={"path": WM_PATH}),
    ("GET", f"{W}/scripts/get/h/{{hash}}"): Op(
        "One script version by hash", "scripts", ok(ref("Script")), scope="scripts:read"),
    ("GET", f"{W}/scripts/list"): Op(
        "Latest version of every script (no content)", "scripts", ok(array(ref("ScriptSummary"))),
        scope="scripts:read"),
    ("GET", f"{W}/scripts/history/p/{{path}}"): Op(
        "Every version of a script, newest first", "scripts", ok(array(ref("ScriptVersion"))),
        scope="scripts:read", path_params={"path": WM_PATH}),
    ("POST", f"{W}/scripts/archive/p/{{path}}"): Op(
        "Archive a script (every version)", "scripts", ok(obj(["archived"], archived=INT)),
        scope="scripts:write", path_params={"path": WM_PATH}),
    # jobs
    ("POST", f"{W}/jobs/run/{{kind}}/{{ref}}"): [_run("p", False), _run("h", False)],
    ("POST", f"{W}/jobs/run_wait_result/{{kind}}/{{ref}}"): [_run("p", True), _run("h", True)],
    ("GET", f"{W}/jobs_u/get/{{id}}"): Op(
        "A queued, running or completed job", "jobs", ok(ref("Job")), scope="jobs:read", path_params=JOB_ID,
        query=[Query("no_logs", {"type": "string", "enum": ["true", "false", "1", "0"]}, "leave out the logs")]),
    ("GET", f"{W}/jobs_u/get_logs/{{id}}"): Op(
        "A job's logs as text", "jobs", text("the logs so far"), scope="jobs:read", path_params=JOB_ID,
        may_400=True),
    ("GET", f"{W}/jobs_u/completed/get_result/{{id}}"): Op(
        "A completed job's result", "jobs", ok(ANY, "the result as JSON"), scope="jobs:read",
        path_params=JOB_ID, may_400=True),
    ("GET", f"{W}/jobs_u/completed/get_result_maybe/{{id}}"): Op(
        "A job's result if it has completed (every key always present)", "jobs", ok(ref("ResultMaybe")),
        scope="jobs:read", path_params=JOB_ID, may_400=True),
    ("POST", f"{W}/jobs_u/queue/cancel/{{id}}"): Op(
        "Cancel a queued or running job", "jobs",
        {**text("what happened, as text"), **err(409, "the job has already completed")},
        scope="jobs:cancel", path_params=JOB_ID, body=obj([], reason=STR), body_required=False),
    ("GET", f"{W}/jobs/list"): Op(
        "Recent jobs, queued and completed", "jobs", ok(array(OBJECT)), scope="jobs:read",
        query=[Query("script_path_exact", STR), Query("per_page", int_range(1))]),
    # triggers (one set of routes for every kind; per-kind create/update are added from the catalog)
    ("GET", f"{W}/triggers/kinds"): Op(
        "Trigger kinds and their config schemas", "triggers", ok(array(ref("TriggerKind"))), scope="triggers:read"),
    ("POST", f"{W}/triggers/{{kind}}/create"): Op(
        "Create a trigger", "triggers", {**ok(ref("Trigger"), "created", 201), **err(409, "path taken")},
        scope="triggers:write", body=trigger_body(OBJECT, required=("path", "script_path"))),
    ("GET", f"{W}/triggers/{{kind}}/list"): Op(
        "List triggers of a kind", "triggers", ok(array(ref("Trigger"))), scope="triggers:read",
        query=[Query("script_path", STR)]),
    ("GET", f"{W}/triggers/{{kind}}/get/{{path}}"): Op(
        "One trigger", "triggers", ok(ref("Trigger")), scope="triggers:read", path_params={"path": WM_PATH}),
    ("GET", f"{W}/triggers/{{kind}}/exists/{{path}}"): Op(
        "Whether a trigger exists (JSON boolean)", "triggers", ok(BOOL), scope="triggers:read",
        path_params={"path": WM_PATH}),
    ("POST", f"{W}/triggers/{{kind}}/update/{{path}}"): Op(
        "Change a trigger (partial)", "triggers", {**ok(ref("Trigger")), **err(409, "new path taken")},
        scope="triggers:write", body=trigger_body(OBJECT, required=()), path_params={"path": WM_PATH}),
    ("POST", f"{W}/triggers/{{kind}}/setmode/{{path}}"): Op(
        "Enable, disable, suspend or capture", "triggers", ok(ref("Trigger")), scope="triggers:write",
        body=obj(["mode"], mode={"type": "string", "enum": list(MODES)}), path_params={"path": WM_PATH}),
    ("POST", f"{W}/triggers/{{kind}}/delete/{{path}}"): Op(
        "Delete a trigger", "triggers", ok(obj(["deleted"], deleted=STR)), scope="triggers:write",
        path_params={"path": WM_PATH}),
    ("DELETE", f"{W}/triggers/{{kind}}/delete/{{path}}"): Op(
        "Delete a trigger", "triggers", ok(obj(["deleted"], deleted=STR)), scope="triggers:write",
        path_params={"path": WM_PATH}),
    # HTTP-route triggers: one catch-all whose routes are defined at run time
    ("*", "/api/r/{tail}"): Op(
        "An HTTP-route trigger", "http routes",
        {**err(404, "no HTTP route trigger matches"),
         "default": Resp("whatever the route's auth, mode and script answer", None)},
        scope=None, description="Routes are created through /triggers/http/...; their auth is set per route.",
        path_params={"tail": {**STR, "description": "the route's path below /api/r/; slashes raw"}}),
}


# -- building the document ----------------------------------------------------------------------------

_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def route_key(route: web.AbstractRoute) -> tuple[str, str] | None:
    """(METHOD, template) of a router route, or None for routes the document leaves out."""
    info = route.resource.get_info() if route.resource is not None else {}
    template = info.get("formatter") or info.get("path")
    if template is None or route.method in _SKIPPED_METHODS:
        return None
    return route.method, template


def _operation(op: Op, method: str, path: str, op_id: str) -> dict:
    params = []
    for name in _PARAM.findall(path):
        params.append({"name": name, "in": "path", "required": True,
                       "schema": op.path_params.get(name, {"type": "string", "minLength": 1})})
    params += [q.render() for q in op.query]
    out: dict[str, Any] = {"operationId": op_id, "summary": op.summary, "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = params
    if op.body is not None:
        content = {m: {"schema": op.body if m == JSON else ({"type": "string"} if m == TEXT else OBJECT)}
                   for m in op.body_media}
        out["requestBody"] = {"required": op.body_required, "content": content}
    responses: dict[str, Any] = {str(s): r.render() for s, r in op.responses.items()}

    def add(status: int, description: str) -> None:
        responses.setdefault(str(status), Resp(description, JSON, ref("ErrorBody")).render())

    if op.body is not None or op.query or op.may_400:
        add(400, "bad input; error.field names the problem")
    if op.scope is not None:
        add(401, "missing, invalid or expired token")
        add(403, "the token lacks the scope, the workspace or the script")
    add(404, "not found (also: a path parameter that does not fit the route)")
    if op.body is not None:
        add(413, "the body is larger than the server's limit")
    out["responses"] = responses
    if op.scope is None:
        out["security"] = []
    else:
        out["security"] = [{"bearer": []}] + ([{"queryToken": []}] if op.query_token else [])
        if op.scope:
            out["x-headrace-scope"] = op.scope
    return out


def _op_id(method: str, path: str) -> str:
    words = re.sub(r"[{}]", "", path.removeprefix("/api/")).replace("w/workspace/", "")
    return method.lower() + "_" + re.sub(r"[^A-Za-z0-9]+", "_", words).strip("_")


def _kind_operations(kinds) -> dict[str, dict[str, Op]]:
    """Per-kind create and update, each with that kind's config schema."""
    out: dict[str, dict[str, Op]] = {}
    for kind in kinds.by_id.values():
        config = copy.deepcopy(kind.config_schema) or OBJECT
        config.pop("$schema", None)
        out[f"{W}/triggers/{kind.id}/create"] = {"post": Op(
            f"Create a {kind.id} trigger", "triggers",
            {**ok(ref("Trigger"), "created", 201), **err(409, "path taken")}, scope="triggers:write",
            description=kind.summary, body=trigger_body(config, required=("path", "script_path")))}
        out[f"{W}/triggers/{kind.id}/update/{{path}}"] = {"post": Op(
            f"Change a {kind.id} trigger (partial)", "triggers",
            {**ok(ref("Trigger")), **err(409, "new path taken")}, scope="triggers:write",
            description=kind.summary, body=trigger_body(config, required=()), path_params={"path": WM_PATH})}
    return out


def _plugin_op(route: web.AbstractRoute) -> Op:
    doc = (route.handler.__doc__ or "").strip()
    return Op(doc.splitlines()[0] if doc else "A plugin's route", "plugins",
              {"default": Resp("defined by the plugin", None)}, scope="", description=doc)


def build_document(app: web.Application, version: str = "0.0.0") -> dict:
    paths: dict[str, dict[str, dict]] = {}
    missing = []

    def put(path: str, method: str, op: Op) -> None:
        paths.setdefault(path, {})[method] = _operation(op, method, path, _op_id(method, path))

    for route in app.router.routes():
        key = route_key(route)
        if key is None or key == ("*", "/{tail}"):  # the catch-all 404 is not an operation
            continue
        method, template = key
        entry = OPERATIONS.get(key)
        if entry is None and template.startswith("/api/plugins/"):
            entry = _plugin_op(route)
        if entry is None:
            missing.append(key)
            continue
        for op in entry if isinstance(entry, list) else [entry]:
            path = op.doc_path or template
            for m in (_ANY_METHODS if method == "*" else (method.lower(),)):
                put(path, m, op)
    if KINDS in app:
        for path, ops in _kind_operations(app[KINDS]).items():
            for method, op in ops.items():
                put(path, method, op)
    if missing:
        log.warning("routes missing from the OpenAPI document: %s", missing)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Headrace API", "version": version,
                 "description": "Trigger and integration hub. Errors are {\"error\": {\"code\", \"message\"}}."},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": COMPONENT_SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a Headrace token"},
                "queryToken": {"type": "apiKey", "in": "query", "name": "token",
                               "description": "webhooks only: the token as ?token="},
            },
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI document; no token needed. Built once per app (the router is frozen by then)."""
    cache = request.app[_CACHE]
    if "doc" not in cache:
        from .api.meta import version_string

        cache["doc"] = dumps(build_document(request.app, version_string()))
    return web.Response(text=cache["doc"], content_type=JSON)


def add_route(app: web.Application) -> None:
    app[_CACHE] = {}
    app.router.add_get("/api/openapi.json", openapi_json)
