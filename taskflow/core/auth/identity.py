"""One function from `Authorization: Bearer ...` to an `Actor`, for every surface.

Tokens with the API-key prefix are agent keys, looked up by their SHA-256; anything else is a
Better Auth JWT, verified against the JWKS, whose first appearance provisions a human worker.
In local mode (no auth server configured) only API keys are accepted as bearer tokens, and the
surfaces act as the local user for requests without one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import select

from taskflow.core.actor import Actor
from taskflow.core.auth.jwt import JwtClaims, JwtVerifier
from taskflow.core.auth.keys import checksum_ok, hash_api_key, is_api_key
from taskflow.core.db import Database
from taskflow.core.domain import Via, WorkerType
from taskflow.core.errors import Unauthenticated
from taskflow.core.models import ApiKey, Worker
from taskflow.core.schemas import CreateHuman
from taskflow.core.services.workers import insert_human, touch_key

_BAD_KEY = (
    "invalid API key: it is unknown, revoked or expired. Ask the agent's owner for a new key "
    "(`taskflow agent rotate` or POST /api/workers/agents/{handle}/keys)"
)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None when there is none."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "malformed Authorization header: send 'Authorization: Bearer <token>'"
        )
    return token.strip()


class Authenticator:
    """Resolves bearer tokens to actors. One per process: it owns the JWKS cache."""

    def __init__(self, db: Database, verifier: JwtVerifier | None) -> None:
        self.db = db
        self.verifier = verifier

    async def authenticate(self, token: str, via: Via, request_id: str | None = None) -> Actor:
        if is_api_key(token):
            actor = await self._from_api_key(token)
        else:
            actor = await self._from_jwt(token)
        return actor.through(via, request_id)

    async def _from_api_key(self, token: str) -> Actor:
        if not checksum_ok(token):
            raise Unauthenticated(_BAD_KEY)
        async with self.db.transaction() as session:
            row = (
                await session.execute(
                    select(ApiKey, Worker)
                    .join(Worker, Worker.id == ApiKey.worker_id)
                    .where(ApiKey.key_hash == hash_api_key(token))
                )
            ).first()
            now = datetime.now(UTC)
            if row is None:
                raise Unauthenticated(_BAD_KEY)
            key, worker = row
            if key.revoked_at is not None or (key.expires_at and key.expires_at <= now):
                raise Unauthenticated(_BAD_KEY)
            await touch_key(session, key.id)
        return Actor(
            worker_id=worker.id,
            handle=worker.handle,
            type=WorkerType(worker.type),
            auth="api_key",
            key_id=key.id,
        )

    async def _from_jwt(self, token: str) -> Actor:
        if self.verifier is None:
            raise Unauthenticated(
                "this server has no auth server configured (AUTH_SERVER_URL), so it accepts only "
                "agent API keys (tf_...) as bearer tokens"
            )
        claims = await self.verifier.verify(token)
        worker = await provision_human(self.db, claims)
        return Actor(
            worker_id=worker.id,
            handle=worker.handle,
            type=WorkerType.HUMAN,
            auth="jwt",
            subject=claims.sub,
        )


def handle_base(claims: JwtClaims) -> str:
    """A handle from the email's local part or the name: lowercase, Phase 1's alphabet."""
    source = (claims.email or "").split("@")[0] or claims.name or "user"
    base = re.sub(r"[^a-z0-9_-]+", "-", source.lower()).strip("-") or "user"
    return "@" + base[:60]


async def provision_human(db: Database, claims: JwtClaims) -> Worker:
    """The worker for this `sub`, created (and audited) the first time it signs in."""
    async with db.transaction() as session:
        worker = await session.scalar(select(Worker).where(Worker.sso_subject == claims.sub))
        if worker is not None:
            return worker
        base = handle_base(claims)
        handle, n = base, 1
        while await session.scalar(select(Worker.id).where(Worker.handle == handle)):
            n += 1
            handle = f"{base}-{n}"
        cmd = CreateHuman(
            handle=handle,
            name=(claims.name or handle[1:])[:200],
            email=claims.email,
            sso_subject=claims.sub,
        )
        worker = await insert_human(session, cmd)
        return worker


async def local_actor(db: Database, handle: str, via: Via) -> Actor:
    """The local user of a single-user installation (Phase 1's `current_user`)."""
    async with db.transaction() as session:
        worker = await session.scalar(select(Worker).where(Worker.handle == handle))
    if worker is None:
        raise Unauthenticated(
            f"local user {handle} does not exist: run `taskflow init --user {handle}` first"
        )
    return Actor(worker_id=worker.id, handle=worker.handle, type=WorkerType(worker.type), via=via)
