"""The OpenAPI 3.1 document, generated from the endpoint declarations and the core's models.

Every schema comes from pydantic (`TypeAdapter.json_schemas`, one batch, so shared models such as
TaskOut appear once under components/schemas); every route comes from the same `Endpoint` list
the router is built from. A frontend can generate a typed client from it (openapi-typescript).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Any

from pydantic import TypeAdapter, ValidationError

from taskflow.http.endpoint import Endpoint
from taskflow.http.inputs import PATH_PARAMS
from taskflow.http.problems import PROBLEM_JSON, Problem

REF = "#/components/schemas/{model}"

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
* Every answer carries `X-Request-ID` (yours if you sent one); audit entries record it.
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
    def __init__(self, endpoints: Sequence[Endpoint], local_mode: bool) -> None:
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
                        "description": "The request id (yours from X-Request-ID, or generated)",
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

    def _parameters(self, ep: Endpoint) -> list[dict[str, Any]]:
        params: list[dict[str, Any]] = []
        for name in PATH_PARAMS:
            if "{" + name + "}" in ep.path:
                schema = TypeAdapter(PATH_PARAMS[name]).json_schema()
                params.append(
                    {
                        "name": name,
                        "in": "path",
                        "required": True,
                        "description": schema.pop("description", None) or name,
                        "schema": schema,
                    }
                )
        if ep.query is not None:
            model = self._resolve(self.schemas[(ep.name, "query")])
            required = set(model.get("required", []))
            for name, prop in model["properties"].items():
                if name in ep.from_path:
                    continue
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

    def _success(self, ep: Endpoint) -> tuple[str, dict[str, Any]]:
        headers: dict[str, Any] = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}
        if ep.response is None:
            return "204", {"description": "Done (no content)", "headers": headers}
        if ep.versioned:
            headers["ETag"] = {"$ref": "#/components/headers/ETag"}
        schema = self.schemas[(ep.name, "response")]
        return str(ep.status), {
            "description": "Created" if ep.status == 201 else "OK",
            "headers": headers,
            "content": {"application/json": {"schema": schema}},
        }

    def _error_codes(self, ep: Endpoint) -> list[int]:
        if ep.public:
            return [503] if ep.path == "/health/ready" else []
        codes = [400, 401, 403, 404, 409, 422, 503]
        if ep.precondition:
            codes.append(412)
        if ep.body is not None:
            codes += [413, 415]
        return sorted(codes)

    def _operation(self, ep: Endpoint) -> dict[str, Any]:
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
            responses[name] = {
                "description": description,
                "headers": headers,
                "content": {PROBLEM_JSON: {"schema": problem}},
            }
        return responses


def openapi_document(endpoints: Sequence[Endpoint], *, local_mode: bool = False) -> dict[str, Any]:
    """The whole document; `local_mode` (serve --no-auth) makes the bearer token optional."""
    return _Builder(endpoints, local_mode).build()
