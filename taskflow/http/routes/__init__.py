"""The hand-written REST endpoints, one module per resource; `ALL` is every endpoint in routing
order. Operations on the kernel are routed from their declarations instead
(`taskflow.http.operations`); a module here disappears once its operations have moved."""

from __future__ import annotations

from taskflow.http.endpoint import Endpoint
from taskflow.http.routes import health, task_aliases

ALL: tuple[Endpoint, ...] = (
    *health.endpoints,
    *task_aliases.endpoints,
)
