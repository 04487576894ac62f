"""Every core operation is reachable over REST, through an endpoint that really is routed."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from taskflow.core.declarations import REGISTRY
from taskflow.core.operations import OPERATIONS
from taskflow.http.coverage import COVERAGE
from taskflow.http.routes import ALL

DECLARED = {
    name: f"{op.rest.method} {op.rest.path}" for name, op in REGISTRY.items() if op.rest is not None
}


def _route_table(app: Starlette) -> set[str]:
    return {
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
    }


def test_coverage_names_exactly_the_core_operations() -> None:
    assert not set(COVERAGE) & set(DECLARED), "a declared operation is listed by hand too"
    assert set(COVERAGE) | set(DECLARED) == set(OPERATIONS)


def test_every_covering_endpoint_is_routed(api: Starlette) -> None:
    table = _route_table(api)
    everything = {**COVERAGE, **DECLARED}
    missing = {op: endpoint for op, endpoint in everything.items() if endpoint not in table}
    assert not missing


def test_declared_operations_agree_with_coverage() -> None:
    """An endpoint that says which operation it runs is the one COVERAGE lists for it."""
    declared = {ep.operation: f"{ep.method} {ep.path}" for ep in ALL if ep.operation}
    assert declared == COVERAGE
