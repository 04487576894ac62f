"""Who is calling: `Authorization: Bearer` through the core's Authenticator, or the local user.

With `serve --no-auth` (a local handle given) a request without a token acts as that user, but
only from the loopback interface, so a server bound wider by mistake still asks for a token.
"""

from __future__ import annotations

from starlette.requests import Request

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import bearer_token, local_actor
from taskflow.core.domain import Via
from taskflow.core.errors import Unauthenticated
from taskflow.core.runtime import Runtime
from taskflow.http.request_id import SCOPE_KEY

_LOOPBACK = ("127.", "::1")

NO_TOKEN = (
    "this endpoint needs 'Authorization: Bearer <token>': a Better Auth JWT (sign in through "
    "the frontend) or an agent API key (tf_...)"
)


def _from_loopback(request: Request) -> bool:
    client = request.client
    return client is None or client.host.startswith(_LOOPBACK)


async def identify(request: Request, runtime: Runtime, local_handle: str | None) -> Actor:
    """The actor for this request, carrying `via=http` and the request id for its audit entries."""
    request_id = request.scope.get(SCOPE_KEY)
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        if local_handle is not None and _from_loopback(request):
            actor = await local_actor(runtime.db, local_handle, Via.HTTP)
            return actor.through(Via.HTTP, request_id)
        raise Unauthenticated(NO_TOKEN)
    return await runtime.auth.authenticate(token, Via.HTTP, request_id)
