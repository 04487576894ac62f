"""Who is calling: `Authorization: Bearer` through the core's Authenticator, or the local user.

With `serve --no-auth` (a local handle given) a request without a token acts as that user, but
only from the loopback interface, so a server bound wider by mistake still asks for a token.
"""

from __future__ import annotations

from starlette.requests import Request

from taskflow.core import request_id
from taskflow.core.actor import Actor, KeyCaller
from taskflow.core.auth.identity import bearer_token, resolve_actor
from taskflow.core.auth.keys import checksum_ok, hash_api_key, is_api_key, key_id
from taskflow.core.domain import Via
from taskflow.core.errors import Unauthenticated
from taskflow.core.runtime import Runtime

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
    token = bearer_token(request.headers.get("authorization"))
    local = local_handle if token is None and _from_loopback(request) else None
    return await resolve_actor(
        runtime.auth,
        Via.HTTP,
        token=token,
        request_id=request_id.from_scope(request.scope),
        local_handle=local,
        missing=NO_TOKEN,
        client_request_id=request_id.client_from_scope(request.scope),
    )


def key_caller(request: Request) -> KeyCaller | None:
    """The caller as an agent API key not yet looked up, when the request carries a well-formed
    one (for operations that check the key in their own statement); otherwise None, and
    `identify` decides (and refuses what is malformed)."""
    try:
        token = bearer_token(request.headers.get("authorization"))
    except Unauthenticated:
        return None
    if token is None or not is_api_key(token) or not checksum_ok(token):
        return None
    return KeyCaller(
        hash_api_key(token),
        Via.HTTP,
        request_id.from_scope(request.scope),
        key_prefix=key_id(token),
        client_request_id=request_id.client_from_scope(request.scope),
    )
