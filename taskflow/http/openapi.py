"""The OpenAPI 3.1 document, generated from the operation declarations and the core's models.

Every route comes from the same declarations the router is built from (`taskflow.core.
declarations`), plus the few plain routes that are not operations (health); every schema comes
from pydantic (`TypeAdapter.json_schemas`, one batch, so shared models such as TaskOut appear once
under components/schemas). A frontend can generate a typed client from it (openapi-typescript).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError, create_model

from taskflow.core.declarations import Operation
from taskflow.core.declarations import Route as RestRoute
from taskflow.core.schemas import Model, ProjectOut, TaskDetail, TaskOut
from taskflow.http.operations import VERSION_FIELD, WITH_BODY, body_fields, path_names
from taskflow.http.problems import PROBLEM_JSON, Problem

REF = "#/components/schemas/{model}"
VERSIONED = (ProjectOut, TaskOut, TaskDetail)


@dataclass(frozen=True)
class RouteDoc:
    """What the document says about one route: enough to describe it, nothing to run it."""

    method: str
    path: str
    tag: str
    name: str
    summary: str
    description: str | None = None
    operation: str | None = None
    body: Any = None
    query: type[BaseModel] | None = None
    path_params: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    public: bool = False
    precondition: bool = False
    media_type: str = "application/json"
    """The answer's media type (`text/event-stream`: `response` describes each event's data)."""

    @property
    def idempotent_post(self) -> bool:
        return self.method == "POST" and not self.public

    @property
    def versioned(self) -> bool:
        """Does the answer carry a version (and so an ETag)?"""
        return self.response in VERSIONED


def _part(
    operation: Operation, keep: Iterable[str], suffix: str, variant: int = 0
) -> type[BaseModel] | None:
    """The command's fields that travel in one part of the request, as a model for OpenAPI."""
    fields = operation.command.model_fields
    chosen = {name: (fields[name].annotation, fields[name]) for name in keep}
    if not chosen:
        return None
    name = operation.command.__name__ + suffix + (str(variant + 1) if variant else "")
    return create_model(name, __base__=Model, **chosen)  # type: ignore[call-overload,no-any-return]


def documented(operation: Operation) -> list[RouteDoc]:
    """Each route of the operation as the document describes it."""
    return [_documented(operation, route, n) for n, route in enumerate(operation.routes)]


def _documented(operation: Operation, route: RestRoute, variant: int) -> RouteDoc:
    """One route: its path parameters, its body or query (the other fields), its answer."""
    in_path = path_names(route)
    fields = body_fields(operation, route)
    takes_body = route.method in WITH_BODY
    if route.body is not None:
        body: Any = operation.command.model_fields[route.body].annotation
    elif takes_body:
        body = _part(operation, fields, "Body", variant)
    else:
        body = None
    output = operation.output()
    doc = (operation.handler.__doc__ or "").strip().split("\n\n", 1)
    return RouteDoc(
        method=route.method,
        path=route.path,
        tag=operation.handler.__module__.rsplit(".", 1)[-1],  # the aggregate: projects, tasks
        name=route.name or operation.name,
        summary=" ".join(doc[0].split()) or operation.name,
        description=doc[1] if len(doc) > 1 else None,
        operation=operation.name,
        body=body,
        query=None if takes_body else _part(operation, fields, "Query", variant),
        path_params=_part(operation, in_path, "Path", variant),
        response=None if route.status == 204 or output is type(None) else output,
        status=route.status,
        precondition=VERSION_FIELD in operation.command.model_fields,
    )


_ERRORS = {
    400: ("BadRequest", "Malformed request: bad JSON, unknown query parameter, bad header"),
    401: ("Unauthenticated", "No valid bearer token"),
    403: ("Forbidden", "Your role in the project does not allow this"),
    404: ("NotFound", "No such thing, or in a project you are not a member of"),
    409: ("Conflict", "Invalid status transition, duplicate, or a concurrent duplicate request"),
    412: ("PreconditionFailed", "If-Match (or expected_version) names an older version"),
    413: ("ContentTooLarge", "Request body over 1 MiB"),
    415: ("UnsupportedMediaType", "The body is not application/json"),
    422: ("ValidationFailed", "A field is invalid; `errors` lists each one"),
    429: (
        "RateLimited",
        "Over your worker's rate (writes and reads counted apart), or an audit verification is "
        "already running: retry after `Retry-After` seconds",
    ),
    503: ("Unavailable", "The database or the auth server is unreachable; retry"),
}

_API_DESCRIPTION = """\
TaskFlow's REST API for the frontend (and for agents that prefer HTTP to MCP).

* Auth: `Authorization: Bearer <token>`, a Better Auth JWT or an agent API key (`tf_...`).
* Errors: `application/problem+json` (RFC 9457) with `type`, `title`, `status`, `detail`.
* `Idempotency-Key` on any POST: a retry within 24 h replays the first answer.
* Single projects and tasks carry an `ETag` (their version); send it back as `If-Match` on
  PUT/PATCH/DELETE and the workflow verbs to have a stale write refused with 412.
* Lists of tasks and audit entries are paged: `limit` and the opaque `cursor` (`next_cursor`).
* Every answer carries the server's `X-Request-ID` (audit entries record it); the one you sent
  comes back as `X-Client-Request-ID` and is recorded beside it (`client_request_id`).
* Limits: each worker's writes and reads per minute (429 with `Retry-After`), bodies up to
  1 MiB (413), arguments nested at most 32 levels deep, lists as each schema's `maxItems`.
"""


def _package_version() -> str:
    try:
        return metadata.version("taskflow")
    except metadata.PackageNotFoundError:
        return "0"


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Query parameters cannot be null, only absent: drop the `null` arm of an Optional."""
    variants = schema.get("anyOf")
    if isinstance(variants, list):
        kept = [v for v in variants if v != {"type": "null"}]
        if len(kept) == 1:
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            schema = {**rest, **kept[0]}
    if schema.get("default", 0) is None:
        schema = {k: v for k, v in schema.items() if k != "default"}
    return {k: v for k, v in schema.items() if k != "title"}


def _body_required(adapter: TypeAdapter[Any]) -> bool:
    """A body is required when `{}` (what an empty body means) is not valid."""
    try:
        adapter.validate_python({})
    except ValidationError:
        return True
    return False


class _Builder:
    def __init__(self, endpoints: Sequence[RouteDoc], local_mode: bool) -> None:
        self.endpoints = endpoints
        self.local_mode = local_mode
        self.schemas: dict[tuple[Any, str], dict[str, Any]] = {}
        self.components: dict[str, Any] = {}

    def build(self) -> dict[str, Any]:
        self._collect_schemas()
        paths: dict[str, dict[str, Any]] = {}
        for ep in self.endpoints:
            paths.setdefault(ep.path, {})[ep.method.lower()] = self._operation(ep)
        security: list[dict[str, list[str]]] = [{"bearerAuth": []}]
        if self.local_mode:
            security.append({})
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "TaskFlow API",
                "version": _package_version(),
                "description": _API_DESCRIPTION,
            },
            "paths": paths,
            "components": {
                "schemas": self.components,
                "responses": self._error_responses(),
                "headers": {
                    "RequestId": {
                        "description": "The server's request id (yours: X-Client-Request-ID)",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    "ETag": {
                        "description": 'The resource version as an entity tag, e.g. "3"',
                        "required": True,
                        "schema": {"type": "string"},
                    },
                },
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "A Better Auth JWT, or an agent API key (tf_...)",
                    }
                },
            },
            "security": security,
            "tags": [{"name": t} for t in dict.fromkeys(ep.tag for ep in self.endpoints)],
        }

    def _collect_schemas(self) -> None:
        inputs: list[tuple[Any, Any, TypeAdapter[Any]]] = [
            (("problem", "Problem"), "serialization", TypeAdapter(Problem))
        ]
        for ep in self.endpoints:
            if ep.body is not None:
                inputs.append(((ep.name, "body"), "validation", TypeAdapter(ep.body)))
            if ep.query is not None:
                inputs.append(((ep.name, "query"), "validation", TypeAdapter(ep.query)))
            if ep.path_params is not None:
                inputs.append(((ep.name, "path"), "validation", TypeAdapter(ep.path_params)))
            if ep.response is not None:
                inputs.append(((ep.name, "response"), "serialization", TypeAdapter(ep.response)))
        by_key, defs = TypeAdapter.json_schemas(inputs, ref_template=REF)
        self.schemas = {key: schema for (key, _mode), schema in by_key.items()}
        self.components = dict(defs.get("$defs", {}))

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.components[ref.rsplit("/", 1)[-1]]
        return schema

    def _parameters(self, ep: RouteDoc) -> list[dict[str, Any]]:
        params: list[dict[str, Any]] = []
        if ep.path_params is not None:
            model = self._resolve(self.schemas[(ep.name, "path")])
            for name, prop in model["properties"].items():
                schema = _strip_null(prop)
                fallback = name.replace("_", " ").capitalize()  # task_id: "Task id"
                params.append(
                    {
                        "name": name,
                        "in": "path",
                        "required": True,
                        "description": schema.pop("description", None) or fallback,
                        "schema": schema,
                    }
                )
        if ep.query is not None:
            model = self._resolve(self.schemas[(ep.name, "query")])
            required = set(model.get("required", []))
            for name, prop in model["properties"].items():
                schema = _strip_null(prop)
                param: dict[str, Any] = {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": schema,
                }
                if "description" in schema:
                    param["description"] = schema["description"]
                if schema.get("type") == "array":
                    param.update(style="form", explode=True)
                params.append(param)
        if ep.idempotent_post:
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Makes a retry safe: the same key within 24 h replays the "
                    "first answer; the same key with another body is refused (422)",
                    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
                }
            )
        if ep.media_type == "text/event-stream":
            params.append(
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "The last event id you received (an EventSource sends it "
                    "when it reconnects): the stream resumes after it; wins over `after`",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                }
            )
        if ep.precondition:
            params.append(
                {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "description": "The ETag you read; a newer version on the server gives 412",
                    "schema": {"type": "string", "pattern": '^(\\*|(W/)?"[0-9]{1,18}")$'},
                }
            )
        return params

    def _success(self, ep: RouteDoc) -> tuple[str, dict[str, Any]]:
        headers: dict[str, Any] = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}
        if ep.response is None:
            return "204", {"description": "Done (no content)", "headers": headers}
        if ep.versioned:
            headers["ETag"] = {"$ref": "#/components/headers/ETag"}
        schema = self.schemas[(ep.name, "response")]
        return str(ep.status), {
            "description": "Created" if ep.status == 201 else "OK",
            "headers": headers,
            "content": {ep.media_type: {"schema": schema}},
        }

    def _error_codes(self, ep: RouteDoc) -> list[int]:
        if ep.public:
            return [503] if ep.path.endswith("/ready") else []
        codes = [400, 401, 403, 404, 409, 422, 429, 503]
        if ep.precondition:
            codes.append(412)
        if ep.body is not None:
            codes += [413, 415]
        return sorted(codes)

    def _operation(self, ep: RouteDoc) -> dict[str, Any]:
        code, success = self._success(ep)
        responses: dict[str, Any] = {code: success}
        for status in self._error_codes(ep):
            responses[str(status)] = {"$ref": f"#/components/responses/{_ERRORS[status][0]}"}
        operation: dict[str, Any] = {
            "operationId": ep.name,
            "summary": ep.summary,
            "tags": [ep.tag],
            "parameters": self._parameters(ep),
            "responses": responses,
        }
        if ep.description:
            operation["description"] = ep.description
        if ep.operation:
            operation["x-taskflow-operation"] = ep.operation
        if ep.public:
            operation["security"] = []
        if ep.body is not None:
            operation["requestBody"] = {
                "required": _body_required(TypeAdapter(ep.body)),
                "content": {"application/json": {"schema": self.schemas[(ep.name, "body")]}},
            }
        return operation

    def _error_responses(self) -> dict[str, Any]:
        problem = self.schemas[("problem", "Problem")]
        responses: dict[str, Any] = {}
        for status, (name, description) in _ERRORS.items():
            headers: dict[str, Any] = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}
            if status == 401:
                headers["WWW-Authenticate"] = {
                    "description": 'Bearer realm="taskflow" (+ error="invalid_token")',
                    "required": True,
                    "schema": {"type": "string"},
                }
            if status in (429, 503):
                headers["Retry-After"] = {
                    "description": "Seconds to wait before retrying",
                    "required": True,
                    "schema": {"type": "integer"},
                }
            responses[name] = {
                "description": description,
                "headers": headers,
                "content": {PROBLEM_JSON: {"schema": problem}},
            }
        return responses


def openapi_document(
    operations: Iterable[Operation], plain: Sequence[RouteDoc] = (), *, local_mode: bool = False
) -> dict[str, Any]:
    """The whole document: the plain routes, then every declared operation's routes, in order.

    `local_mode` (serve --no-auth) makes the bearer token optional.
    """
    routes = [*plain, *(doc for operation in operations for doc in documented(operation))]
    return _Builder(routes, local_mode).build()
