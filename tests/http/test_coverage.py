"""Every operation is reachable over REST, through an endpoint that really is routed.

Routes come from the operations' declarations; an operation whose REST shape the generated
route cannot take (add_subtasks accepts an object or an array) is served by a hand-written
alias that names the operation it runs.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from taskflow.core.declarations import REGISTRY
from taskflow.http.routes import ALL

DECLARED = {
    f"{route.method} {route.path}": name for name, op in REGISTRY.items() for route in op.routes
}
ALIASES = {f"{ep.method} {ep.path}": ep.operation for ep in ALL if ep.operation}


def _route_table(app: Starlette) -> set[str]:
    return {
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
    }


def test_every_operation_has_a_rest_route() -> None:
    reached = set(DECLARED.values()) | set(ALIASES.values())
    assert reached == set(REGISTRY), sorted(set(REGISTRY) - reached)
    assert not set(ALIASES.values()) - set(REGISTRY), "an alias names no declared operation"


def test_every_route_is_in_the_app(api: Starlette) -> None:
    table = _route_table(api)
    missing = sorted(set(DECLARED) - table) + sorted(set(ALIASES) - table)
    assert not missing
