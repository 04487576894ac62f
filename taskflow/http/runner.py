"""Running a declared endpoint: the one place requests meet the core.

For every request: validate the path, identify the caller, validate query and body, read
If-Match, run the handler (once per Idempotency-Key for a POST), and render the answer with its
ETag, or the refusal as a problem document.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json, to_json
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskflow.core.actor import Actor
from taskflow.core.errors import TaskFlowError
from taskflow.core.idempotency import run_once
from taskflow.core.runtime import Runtime
from taskflow.core.schemas import ProjectOut, TaskDetail, TaskOut
from taskflow.http import inputs
from taskflow.http.endpoint import Call, Endpoint
from taskflow.http.identity import identify
from taskflow.http.problems import (
    ClientError,
    InputInvalid,
    from_client_error,
    from_domain,
    from_validation,
    internal_error,
    problem_response,
)

JSON = "application/json"


def version_of(payload: Any) -> int | None:
    """The version an answer carries (a project, a task, or a task with its subtree)."""
    if isinstance(payload, TaskDetail):
        return payload.task.version
    if isinstance(payload, ProjectOut | TaskOut):
        return payload.version
    if isinstance(payload, dict):
        inner = payload.get("task", payload)
        if isinstance(inner, dict) and isinstance(inner.get("version"), int):
            return int(inner["version"])
    return None


@dataclass
class Runner:
    """An endpoint bound to a runtime, with its validators built once."""

    endpoint: Endpoint
    runtime: Runtime
    local_handle: str | None
    path_adapter: TypeAdapter[Any] = field(init=False)
    query_adapter: TypeAdapter[Any] | None = field(init=False)
    body_adapter: TypeAdapter[Any] | None = field(init=False)
    out_adapter: TypeAdapter[Any] | None = field(init=False)
    query_fields: dict[str, bool] = field(init=False)

    def __post_init__(self) -> None:
        ep = self.endpoint
        self.path_adapter = TypeAdapter(inputs.path_model(ep.path))
        self.query_adapter = TypeAdapter(ep.query) if ep.query is not None else None
        self.body_adapter = TypeAdapter(ep.body) if ep.body is not None else None
        self.out_adapter = TypeAdapter(ep.response) if ep.response is not None else None
        self.query_fields = ep.query_fields()

    async def __call__(self, request: Request) -> Response:
        try:
            return await self._run(request)
        except TaskFlowError as exc:
            return from_domain(request, exc)
        except InputInvalid as exc:
            return from_validation(request, exc)
        except ClientError as exc:
            return from_client_error(request, exc)
        except IntegrityError:
            return problem_response(
                request, 409, "a concurrent change collided with this one: read again and retry"
            )
        except Exception as exc:
            return internal_error(request, exc)

    async def _run(self, request: Request) -> Response:
        ep = self.endpoint
        path = inputs.path_values(request, self.path_adapter)
        actor = None if ep.public else await identify(request, self.runtime, self.local_handle)
        query = self._query(request, path)
        raw = await inputs.body_bytes(request) if self.body_adapter is not None else b""
        body = inputs.parse_body(raw, self.body_adapter) if self.body_adapter else None
        if_match = inputs.expected_version(request) if ep.precondition else None
        call = Call(request, self.runtime, path, query, body, if_match, actor)
        key = inputs.idempotency_key(request) if ep.idempotent_post else None
        if key is None or actor is None:
            return self.render(await ep.handler(call))
        return await self._once(call, actor, key, raw)

    def _query(self, request: Request, path: dict[str, Any]) -> Any:
        if self.query_adapter is None:
            return None
        values = inputs.query_values(request, self.query_fields)
        values.update({name: path[name] for name in self.endpoint.from_path})
        try:
            return self.query_adapter.validate_python(values)
        except ValidationError as exc:
            raise InputInvalid("query", exc) from None

    async def _once(self, call: Call, actor: Actor, key: str, raw: bytes) -> Response:
        """Run a POST at most once per Idempotency-Key; a retry gets the first answer again."""

        async def operation() -> tuple[int, Any]:
            result = await self.endpoint.handler(call)
            payload = (
                self.out_adapter.dump_python(result, mode="json") if self.out_adapter else None
            )
            return self.endpoint.status if self.out_adapter else 204, payload

        body = from_json(raw) if raw.strip() else None
        scope = f"POST {call.request.url.path}"
        status, payload, replayed = await run_once(
            self.runtime.db, actor, key, scope, body, operation
        )
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        if status == 204:
            return Response(status_code=204, headers=headers)
        version = version_of(payload)
        if version is not None:
            headers["ETag"] = f'"{version}"'
        return Response(to_json(payload), status_code=status, media_type=JSON, headers=headers)

    def render(self, result: Any) -> Response:
        if self.out_adapter is None:
            return Response(status_code=204)
        version = version_of(result)
        headers = {"ETag": f'"{version}"'} if version is not None else None
        body = self.out_adapter.dump_json(result)
        return Response(body, status_code=self.endpoint.status, media_type=JSON, headers=headers)


def routes_for(
    endpoints: Iterable[Endpoint], runtime: Runtime, local_handle: str | None
) -> list[Route]:
    """Starlette routes for the endpoints; a duplicate (method, path) is a programming error."""
    seen: set[tuple[str, str]] = set()
    routes = []
    for ep in endpoints:
        if (ep.method, ep.path) in seen:
            raise ValueError(f"two endpoints for {ep.method} {ep.path}")
        seen.add((ep.method, ep.path))
        runner = Runner(ep, runtime, local_handle)

        async def endpoint(request: Request, runner: Runner = runner) -> Response:
            return await runner(request)

        routes.append(Route(ep.path, endpoint, methods=[ep.method], name=ep.name))
    return routes
