"""Declaring an endpoint once: what it is, enough to route it, run it and document it.

A route module declares each endpoint with its method, path, core operation and the pydantic
types of its body, query and response; its handler is a few lines that call one core service.
Everything around that call (identity, parsing, idempotency, ETags, problem documents) happens in
`runner.py`, the same way for every endpoint, and `openapi.py` documents the same declarations,
so the documentation cannot drift from what is served.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.errors import ValidationFailed
from taskflow.core.runtime import Runtime
from taskflow.core.schemas import ProjectOut, TaskDetail, TaskOut

VERSIONED = (ProjectOut, TaskOut, TaskDetail)


@dataclass(slots=True)
class Call:
    """One validated request, as a handler sees it."""

    request: Request
    runtime: Runtime
    path: dict[str, Any]
    query: Any
    body: Any
    if_match: int | None
    _actor: Actor | None

    @property
    def db(self) -> Database:
        return self.runtime.db

    @property
    def actor(self) -> Actor:
        assert self._actor is not None, "public endpoints have no actor"
        return self._actor

    def version(self, in_body: int | None = None) -> int | None:
        """The version the change is based on, from If-Match or the body (they must agree)."""
        if self.if_match is not None and in_body is not None and self.if_match != in_body:
            raise ValidationFailed(
                f"If-Match says version {self.if_match} but expected_version is {in_body}: "
                "send one of them",
                field="expected_version",
            )
        return self.if_match if self.if_match is not None else in_body


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    """What an endpoint is: enough to route it, run it and document it."""

    method: str
    path: str
    handler: Handler
    tag: str
    operation: str | None = None
    body: Any = None
    response: Any = None
    status: int = 200
    query: type[BaseModel] | None = None
    from_path: frozenset[str] = frozenset()
    public: bool = False
    precondition: bool = False
    operation_id: str | None = None

    @property
    def name(self) -> str:
        return self.operation_id or self.handler.__name__

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.handler) or self.name).split("\n\n", 1)[0].replace("\n", " ")

    @property
    def description(self) -> str | None:
        parts = (inspect.getdoc(self.handler) or "").split("\n\n", 1)
        return parts[1] if len(parts) > 1 else None

    @property
    def idempotent_post(self) -> bool:
        return self.method == "POST" and not self.public

    @property
    def versioned(self) -> bool:
        """Does the answer carry a version (and so an ETag)?"""
        return self.response in VERSIONED

    def query_fields(self) -> dict[str, bool]:
        """Query parameter names (the query model's fields not taken from the path) -> is-list."""
        if self.query is None:
            return {}
        return {
            name: typing.get_origin(info.annotation) is list
            for name, info in self.query.model_fields.items()
            if name not in self.from_path
        }


class Endpoints:
    """The endpoints of one route module, declared with decorators, kept in order."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.items: list[Endpoint] = []

    def route(self, method: str, path: str, **options: Any) -> Callable[[Handler], Handler]:
        if "from_path" in options:
            options["from_path"] = frozenset(options["from_path"])

        def register(handler: Handler) -> Handler:
            self.items.append(Endpoint(method, path, handler, self.tag, **options))
            return handler

        return register

    def get(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **options)

    def put(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **options)

    def patch(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **options)

    def __iter__(self) -> typing.Iterator[Endpoint]:
        return iter(self.items)
