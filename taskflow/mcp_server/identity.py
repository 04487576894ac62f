"""Who is calling a tool: the bearer token over HTTP, or the identity fixed at startup on stdio.

Over Streamable HTTP the SDK's bearer middleware asks `ActorTokenVerifier` to check the token;
it resolves it once through the core `Authenticator` and carries the resolved actor in the
`AccessToken`'s claims, so a tool call never authenticates twice. On stdio (and in tests) the
actor is resolved at startup. Headers other than `Authorization` are never identity.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import bearer_token, local_actor
from taskflow.core.domain import Via, WorkerType
from taskflow.core.errors import Unauthenticated, Unavailable
from taskflow.core.runtime import Runtime

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,100}$")
_NO_IDENTITY = (
    "no identity: send 'Authorization: Bearer <API key or JWT>', or start taskflow-mcp with "
    "TASKFLOW_API_KEY set (or --as @handle in local mode)"
)


def request_id_of(ctx: Context) -> str:
    """The caller's X-Request-ID when it is short printable ASCII, else a fresh id."""
    value = (ctx.headers or {}).get("x-request-id")
    if value and _REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def access_token_for(actor: Actor, token: str) -> AccessToken:
    """The SDK's view of an authenticated caller, with the TaskFlow actor in its claims."""
    return AccessToken(
        token=token,
        client_id=f"worker:{actor.handle}",
        scopes=[],
        subject=actor.handle,
        claims={
            "worker_id": actor.worker_id,
            "handle": actor.handle,
            "type": actor.type.value,
            "auth": actor.auth,
            "key_id": actor.key_id,
            "sub": actor.subject,
        },
    )


def actor_from_token(access: AccessToken) -> Actor:
    claims: dict[str, Any] = access.claims or {}
    return Actor(
        worker_id=int(claims["worker_id"]),
        handle=str(claims["handle"]),
        type=WorkerType(claims["type"]),
        auth=str(claims["auth"]),
        key_id=claims.get("key_id"),
        subject=claims.get("sub"),
    )


# Set per HTTP request by `http.UnavailableGuard`: where the verifier leaves an `Unavailable` it
# could not raise (the SDK's middleware would turn any exception into a 500).
AUTH_OUTAGE: ContextVar[list[Unavailable] | None] = ContextVar("taskflow_auth_outage", default=None)


class ActorTokenVerifier:
    """The SDK's `TokenVerifier`: API keys and Better Auth JWTs through the core Authenticator.

    A refused token answers None (the SDK then sends 401 with the RFC 9728 pointer). When the
    database or the JWKS cannot be reached the token is not refused but unverifiable: the
    outage is recorded for `http.UnavailableGuard`, which answers 503 instead of that 401.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            actor = await self.runtime.auth.authenticate(token, Via.MCP)
        except Unauthenticated as exc:
            log.info("MCP bearer token refused: %s", exc)
            return None
        except Unavailable as exc:
            outages = AUTH_OUTAGE.get()
            if outages is None:
                raise
            outages.append(exc)
            return None
        return access_token_for(actor, token)


class Identity:
    """Resolves the actor of one tool call.

    In order: the HTTP bearer token the SDK verified; an `Authorization` header on a server
    without SDK auth (local mode); the actor fixed at startup (stdio); the local user.
    """

    def __init__(
        self, runtime: Runtime, *, actor: Actor | None = None, local_handle: str | None = None
    ) -> None:
        self.runtime = runtime
        self.actor = actor
        self.local_handle = local_handle
        self._local: Actor | None = None

    async def resolve(self, ctx: Context) -> Actor:
        request_id = request_id_of(ctx)
        access = get_access_token()
        if access is not None and access.claims and "worker_id" in access.claims:
            return actor_from_token(access).through(Via.MCP, request_id)
        header = (ctx.headers or {}).get("authorization")
        if header:
            token = bearer_token(header)
            assert token is not None
            return await self.runtime.auth.authenticate(token, Via.MCP, request_id)
        if self.actor is not None:
            return self.actor.through(Via.MCP, request_id)
        if self.local_handle is not None:
            if self._local is None:
                self._local = await local_actor(self.runtime.db, self.local_handle, Via.MCP)
            return self._local.through(Via.MCP, request_id)
        raise Unauthenticated(_NO_IDENTITY)
