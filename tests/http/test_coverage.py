"""Every operation is reachable over REST, through a route that really is served.

Routes come from the operations' declarations: one Starlette route per path, serving every
method declared there.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from taskflow.core.declarations import REGISTRY

DECLARED = {
    f"{route.method} {route.path}": name for name, op in REGISTRY.items() for route in op.routes
}


def _route_table(app: Starlette) -> set[str]:
    return {
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
    }


def test_every_operation_has_a_rest_route() -> None:
    unrouted = sorted(name for name, op in REGISTRY.items() if not op.routes)
    assert not unrouted


def test_every_route_is_in_the_app(api: Starlette) -> None:
    assert not sorted(set(DECLARED) - _route_table(api))
