"""REST routes generated from the operation declarations (`taskflow.core.declarations`).

Each declared operation with a `rest` route becomes one Starlette route: identify the caller,
gather the command's arguments from the path, the query string (GET, DELETE) or the JSON body
(POST, PUT, PATCH) and `If-Match`, dispatch the command (once per `Idempotency-Key`), and render
the answer with its ETag. Refusals are raised and rendered by the app's exception handlers
(`problems.py`), so this module only parses, dispatches and renders.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import from_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskflow.core.actor import Actor
from taskflow.core.declarations import Operation
from taskflow.core.declarations import Route as RestRoute
from taskflow.core.dispatcher import dispatch, dispatch_by_key
from taskflow.core.errors import TaskFlowError, Unavailable, ValidationFailed
from taskflow.core.runtime import Runtime
from taskflow.core.schemas import ProjectOut, TaskDetail, TaskOut
from taskflow.http import inputs
from taskflow.http.identity import identify, key_caller
from taskflow.http.problems import SOURCES_KEY, ClientError

JSON = "application/json"
VERSION_FIELD = "expected_version"
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def path_names(route: RestRoute) -> list[str]:
    """The command fields a route's path carries: `/api/tasks/{task_id}` carries task_id."""
    return [part[1:-1].split(":")[0] for part in route.path.split("/") if "{" in part]


def body_fields(operation: Operation, route: RestRoute) -> list[str]:
    """The command fields a route takes from its body (or query): those its path does not carry."""
    in_path = set(path_names(route))
    return [name for name in operation.command.model_fields if name not in in_path]


def version_of(payload: Any) -> int | None:
    """The version an answer carries (a project, a task, or a task with its subtree): its ETag."""
    if isinstance(payload, TaskDetail):
        return payload.task.version
    if isinstance(payload, ProjectOut | TaskOut):
        return payload.version
    return None


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    return any(typing.get_origin(arg) is list for arg in typing.get_args(annotation))


class OperationRoute:
    """One route of an operation bound to a runtime, with its parsers and renderer built once."""

    def __init__(
        self, operation: Operation, rest: RestRoute, runtime: Runtime, local_handle: str | None
    ) -> None:
        self.operation = operation
        self.rest = rest
        self.runtime = runtime
        self.local_handle = local_handle
        self.from_path = frozenset(path_names(rest))
        fields = operation.command.model_fields
        self.list_fields = frozenset(n for n, f in fields.items() if _is_list(f.annotation))
        self.versioned = VERSION_FIELD in fields
        self.takes_body = self.rest.method in WITH_BODY
        output = operation.output()
        self.empty = self.rest.status == 204 or output is type(None)
        self.out = None if self.empty else TypeAdapter(output)
        self.by_key = operation.by_key is not None
        self.writes = operation.mutating

    async def __call__(self, request: Request) -> Response:
        # A well-formed API key on an operation that checks keys in its own statement is not
        # looked up first: one round trip instead of two. Anyone else is identified first.
        # With rate limits, a key already seen is charged (or refused) before anything else,
        # so a worker over its limit costs no database work; a key not seen yet is identified
        # once, which teaches the limiter its worker.
        limiter = self.runtime.limiter
        presented = key_caller(request) if self.by_key or limiter is not None else None
        charged = False
        if limiter is not None and presented is not None:
            known = limiter.worker_of(presented.key_hash)
            if known is not None:
                await limiter.admit(known[0], self.writes, known[1])
                charged = True
        fast = self.by_key and (limiter is None or charged)
        caller = presented if fast else None
        actor = None if caller is not None else await self._identify(request)
        if limiter is not None and not charged:
            assert actor is not None
            await limiter.admit(actor.worker_id, self.writes, actor.handle)
            if presented is not None and actor.auth == "api_key":
                limiter.learn(presented.key_hash, actor.worker_id, actor.handle)
        try:
            arguments, sources = await self._arguments(request)
            request.scope[SOURCES_KEY] = sources
            command = self.operation.parse(arguments)
            key = inputs.idempotency_key(request) if self.operation.mutating else None
            outcome = None
            if caller is not None and key is None:
                outcome = await dispatch_by_key(self.runtime.db, caller, command)
        except Unavailable:
            raise  # no point asking the database who the caller is
        except (TaskFlowError, ClientError):
            if actor is None:  # an unknown key hears that first, as on the usual path
                await self._identify(request)
            raise
        if outcome is None:
            actor = actor or await self._identify(request)
            outcome = await dispatch(self.runtime.db, actor, command, idempotency_key=key)
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
        if self.out is None:
            return Response(status_code=204, headers=headers)
        version = version_of(outcome.value)
        if version is not None:
            headers["ETag"] = f'"{version}"'
        body = self.out.dump_json(outcome.value)
        return Response(body, status_code=self.rest.status, media_type=JSON, headers=headers)

    async def _identify(self, request: Request) -> Actor:
        return await identify(request, self.runtime, self.local_handle)

    async def _arguments(self, request: Request) -> tuple[dict[str, Any], dict[str, str]]:
        arguments: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if self.takes_body:
            arguments.update(await self._body(request))
            sources.update(dict.fromkeys(arguments, "body"))
        else:
            for name, value in request.query_params.multi_items():
                if name in self.list_fields:
                    arguments.setdefault(name, []).append(value)
                else:
                    arguments[name] = value
                sources[name] = "query"
        part = "body" if self.takes_body else "query"
        for name in self.from_path:
            if name in arguments:
                raise ClientError(400, f"{name!r} comes from the path: leave it out of the {part}")
            arguments[name] = request.path_params[name]
            sources[name] = "path"
        if self.versioned:
            self._if_match(request, arguments, sources)
        return arguments, sources

    async def _body(self, request: Request) -> dict[str, Any]:
        """The JSON body as arguments: its fields, or for a `body=` route, that one field."""
        raw = await inputs.body_bytes(request)
        if not raw.strip():
            return {}
        try:
            parsed = from_json(raw)
        except ValueError as exc:
            raise ClientError(400, f"the body is not valid JSON ({exc})") from None
        if self.rest.body is not None:
            return {self.rest.body: parsed}
        if not isinstance(parsed, dict):
            raise ValidationFailed("the body must be a JSON object", field="body")
        return parsed

    @staticmethod
    def _if_match(request: Request, arguments: dict[str, Any], sources: dict[str, str]) -> None:
        """`If-Match` names the version the change is based on; a body that says otherwise is
        refused rather than one of the two silently winning."""
        version = inputs.expected_version(request)
        if version is None:
            return
        sent = arguments.get(VERSION_FIELD)
        if sent is not None and sent != version:
            raise ValidationFailed(
                f"If-Match says version {version} but expected_version is {sent}: send one of them",
                field=VERSION_FIELD,
            )
        arguments[VERSION_FIELD] = version
        sources.setdefault(VERSION_FIELD, "header")


def routes_for(
    operations: Iterable[Operation], runtime: Runtime, local_handle: str | None
) -> list[Route]:
    """One Starlette route per path, serving each method some operation declares there (so a
    wrong method gets a 405 whose `Allow` lists every method the path has)."""
    by_path: dict[str, dict[str, OperationRoute]] = {}
    for operation in operations:
        for rest in operation.routes:
            methods = by_path.setdefault(rest.path, {})
            if rest.method in methods:
                raise ValueError(f"two operations for {rest.method} {rest.path}")
            methods[rest.method] = OperationRoute(operation, rest, runtime, local_handle)
    return [_route(path, methods) for path, methods in by_path.items()]


def _route(path: str, methods: dict[str, OperationRoute]) -> Route:
    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method  # Starlette adds HEAD
        return await methods[method](request)

    name = "+".join(bound.operation.name for bound in methods.values())
    return Route(path, endpoint, methods=list(methods), name=name)
