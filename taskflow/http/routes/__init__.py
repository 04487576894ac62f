"""The REST endpoints, one module per resource; `ALL` is every endpoint in routing order."""

from __future__ import annotations

from taskflow.http.endpoint import Endpoint
from taskflow.http.routes import audit, health, projects, tasks, workers, workflow

ALL: tuple[Endpoint, ...] = (
    *health.endpoints,
    *projects.endpoints,
    *workers.endpoints,
    *tasks.endpoints,
    *workflow.endpoints,
    *audit.endpoints,
)
