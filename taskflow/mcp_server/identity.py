"""Who is calling a tool: the bearer token over HTTP, or the identity fixed at startup on stdio.

Over Streamable HTTP the SDK's bearer middleware asks `ActorTokenVerifier` to check the token;
it resolves it once through the core `Authenticator` and carries the resolved actor in the
`AccessToken`'s claims, so a tool call never authenticates twice. On stdio (and in tests) the
actor is resolved at startup. Headers other than `Authorization` are never identity.
"""

from __future__ import annotations

import logging
import math
import time
from contextvars import ContextVar
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context

from taskflow.core import request_id
from taskflow.core.actor import Actor
from taskflow.core.auth.identity import bearer_token, local_actor, resolve_actor
from taskflow.core.domain import Via, WorkerType
from taskflow.core.errors import Unauthenticated, Unavailable
from taskflow.core.runtime import Runtime
from taskflow.core.scopes import Scopes

log = logging.getLogger(__name__)

_NO_IDENTITY = (
    "no identity: send 'Authorization: Bearer <API key or JWT>', or start taskflow-mcp with "
    "TASKFLOW_API_KEY set (or --as @handle in local mode)"
)


def request_id_of(ctx: Context) -> str:
    """The id of this call: over HTTP the one the server's request-id middleware made (and put
    in the response header), else a fresh one."""
    request = ctx.request_context.request
    chosen = request_id.from_scope(getattr(request, "scope", None))
    return chosen if chosen is not None else request_id.new_id()


def client_request_id_of(ctx: Context) -> str | None:
    """The client's own X-Request-ID for this call, as sent (over HTTP), else None."""
    request = ctx.request_context.request
    scope = getattr(request, "scope", None)
    if scope is not None and request_id.CLIENT_SCOPE_KEY in scope:
        return request_id.client_from_scope(scope)
    return request_id.client_id((ctx.headers or {}).get("x-request-id"))


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
            "key_prefix": actor.key_prefix,
            "read_only": actor.scopes.read_only,
            "project_ids": actor.scopes.listed(),
            "manage_agents": actor.scopes.manage_agents,
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
        key_prefix=claims.get("key_prefix"),
        scopes=Scopes.of_key(
            bool(claims.get("read_only", False)),
            claims.get("project_ids"),
            bool(claims.get("manage_agents", True)),
        ),
    )


# Set per HTTP request by `http.LocalBearer` in local mode: the actor of the token it checked.
VERIFIED_ACTOR: ContextVar[Actor | None] = ContextVar("taskflow_verified_actor", default=None)

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
            actor = await resolve_actor(self.runtime.auth, Via.MCP, token=token)
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


KEY_RECHECK_SECONDS = 1.0
"""How long a stdio server trusts its last check of its API key: a revoked key, or a
deactivated agent, stops working within this long."""


class Identity:
    """Resolves the actor of one tool call.

    In order: the HTTP bearer token the SDK (or `http.LocalBearer`) verified; an `Authorization`
    header on a server without SDK auth; the stdio server's API key, checked again when the last
    check is older than `KEY_RECHECK_SECONDS`; the actor fixed at startup; the local user.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        actor: Actor | None = None,
        local_handle: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.actor = actor
        self.local_handle = local_handle
        self.api_key = api_key
        self._local: Actor | None = None
        self._checked_at = time.monotonic() if actor is not None else -math.inf

    async def resolve(self, ctx: Context) -> Actor:
        access = get_access_token()
        verified = VERIFIED_ACTOR.get()  # by `http.LocalBearer`, just now (local mode)
        if access is not None and access.claims and "worker_id" in access.claims:
            verified = actor_from_token(access)  # by the SDK's bearer middleware, just now
        token = None if verified else bearer_token((ctx.headers or {}).get("authorization"))
        if token is None and verified is None and self.api_key is not None:
            verified = await self._own_key()
        fixed = verified or self.actor
        if token is None and fixed is None and self.local_handle is not None:
            fixed = await self._local_user()
        return await resolve_actor(
            self.runtime.auth,
            Via.MCP,
            token=token,
            request_id=request_id_of(ctx),
            fixed=fixed,
            missing=_NO_IDENTITY,
            client_request_id=client_request_id_of(ctx),
        )

    async def _own_key(self) -> Actor:
        """The stdio server's key, checked again once the last check is stale (revocation
        must reach a session that stays open for days)."""
        assert self.api_key is not None
        now = time.monotonic()
        if self.actor is None or now - self._checked_at >= KEY_RECHECK_SECONDS:
            self.actor = await self.runtime.auth.authenticate(self.api_key, Via.MCP)
            self._checked_at = now
        return self.actor

    async def _local_user(self) -> Actor:
        """The local user, looked up once per server: its handle and id never change."""
        if self._local is None:
            assert self.local_handle is not None
            self._local = await local_actor(self.runtime.db, self.local_handle, Via.MCP)
        return self._local
