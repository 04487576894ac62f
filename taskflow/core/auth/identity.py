"""One function from `Authorization: Bearer ...` to an `Actor`, for every surface.

Tokens with the API-key prefix are agent keys, looked up by their SHA-256; anything else is a
Better Auth JWT, verified against the JWKS, whose first appearance provisions a human worker.
In local mode (no auth server configured) only API keys are accepted as bearer tokens, and the
surfaces act as the local user for requests without one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from taskflow.core import driver
from taskflow.core.actor import Actor
from taskflow.core.auth.keys import checksum_ok, hash_api_key, is_api_key
from taskflow.core.db import Database
from taskflow.core.domain import RESERVED_HANDLES, Via, WorkerType
from taskflow.core.errors import Unauthenticated
from taskflow.core.scopes import Scopes

if TYPE_CHECKING:  # the JWT stack (PyJWT, cryptography, httpx) loads only with an auth server
    from taskflow.core.auth.jwt import JwtClaims, JwtVerifier
    from taskflow.core.models import Worker

_BAD_KEY = (  # one message for every refusal, so a caller cannot tell which keys exist
    "invalid API key: it is unknown, revoked or expired. Ask whoever registered the agent for a "
    "new key"
)


# Static SQL on the driver connection (`taskflow.core.driver`): asyncpg prepares it once per
# connection, so a key costs one bind-and-execute round trip and no SQLAlchemy work. The key is
# read on every request (never cached), so a revoked key or a deactivated agent is refused at
# once.
_KEY_LOOKUP = """
SELECT k.id AS key_id, k.revoked_at, k.expires_at, k.last_used_at, k.display_prefix,
       k.read_only, k.project_ids, k.manage_agents,
       w.id AS worker_id, w.handle, w.type, w.deactivated_at
FROM api_keys k JOIN workers w ON w.id = k.worker_id
WHERE k.key_hash = $1
"""
# `touch_key`'s UPDATE: record use at most once a minute (re-checked here, so concurrent
# requests write once).
_TOUCH_KEY = """
UPDATE api_keys SET last_used_at = $2
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)
"""


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


REALM = 'Bearer realm="taskflow"'


def bearer_challenge(refusal: str | None) -> str:
    """The `WWW-Authenticate` value: plain when no token was sent (`refusal` None), else
    `invalid_token` with the reason, as a safe header value (printable ASCII, no quotes or
    backslashes, so no header injection)."""
    if refusal is None:
        return REALM
    reason = "".join(c for c in refusal if " " <= c <= "~" and c not in '"\\')[:300]
    return f'{REALM}, error="invalid_token", error_description="{reason}"'


KEY_USE_EVERY = timedelta(minutes=1)


def key_use_is_stale(last_used_at: datetime | None, now: datetime) -> bool:
    """Is a key's recorded last use older than a minute (so recording this use would write)?

    Authentication checks this on the row it already read and skips the UPDATE round trip
    on most requests; the UPDATE re-checks in SQL, so concurrent requests still write once.
    """
    return last_used_at is None or last_used_at < now - KEY_USE_EVERY


_MAX_CACHED_HUMANS = 10_000


class Authenticator:
    """Resolves bearer tokens to actors. One per process: it owns the JWKS cache."""

    def __init__(self, db: Database, verifier: JwtVerifier | None) -> None:
        self.db = db
        self.verifier = verifier
        # sub -> (worker id, handle). Workers are never deleted and handles never change, so a
        # signed-in human costs no database round trip after the first request.
        self._humans: dict[str, tuple[int, str]] = {}

    async def authenticate(self, token: str, via: Via, request_id: str | None = None) -> Actor:
        if is_api_key(token):
            actor = await self._from_api_key(token)
        else:
            actor = await self._from_jwt(token, via, request_id)
        return actor.through(via, request_id)

    async def _from_api_key(self, token: str) -> Actor:
        if not checksum_ok(token):
            raise Unauthenticated(_BAD_KEY)
        # Each statement alone (no BEGIN/COMMIT): one SELECT, and once a minute one UPDATE.
        async with self.db.guarded():
            row = await driver.fetchrow(self.db, _KEY_LOOKUP, hash_api_key(token))
            now = datetime.now(UTC)
            if row is None:
                raise Unauthenticated(_BAD_KEY)
            if row["revoked_at"] is not None or (row["expires_at"] and row["expires_at"] <= now):
                raise Unauthenticated(_BAD_KEY)
            if row["deactivated_at"] is not None:  # its keys are revoked too: belt and braces
                raise Unauthenticated(_BAD_KEY)
            if key_use_is_stale(row["last_used_at"], now):
                await driver.fetchrow(self.db, _TOUCH_KEY, row["key_id"], now, now - KEY_USE_EVERY)
        return Actor(
            worker_id=row["worker_id"],
            handle=row["handle"],
            type=WorkerType(row["type"]),
            auth="api_key",
            key_id=row["key_id"],
            key_prefix=row["display_prefix"],
            scopes=Scopes.of_key(row["read_only"], row["project_ids"], row["manage_agents"]),
        )

    async def _from_jwt(self, token: str, via: Via, request_id: str | None) -> Actor:
        if self.verifier is None:
            raise Unauthenticated(
                "this server has no auth server configured (AUTH_SERVER_URL), so it accepts only "
                "agent API keys (tf_...) as bearer tokens"
            )
        claims = await self.verifier.verify(token)
        known = self._humans.get(claims.sub)
        if known is None:
            worker = await provision_human(self.db, claims, via, request_id)
            refuse_deactivated(worker.handle, worker.deactivated_at)
            known = (worker.id, worker.handle)
            if len(self._humans) >= _MAX_CACHED_HUMANS:
                self._humans.clear()
            self._humans[claims.sub] = known
        return Actor(
            worker_id=known[0],
            handle=known[1],
            type=WorkerType.HUMAN,
            auth="jwt",
            subject=claims.sub,
        )


def refuse_deactivated(handle: str, deactivated_at: datetime | None) -> None:
    """A deactivated worker keeps its history but cannot act, whatever credential it shows."""
    if deactivated_at is not None:
        raise Unauthenticated(
            f"{handle} is deactivated and cannot sign in: ask whoever manages it to reactivate it"
        )


def handle_base(claims: JwtClaims) -> str:
    """A handle from the email's local part or the name: lowercase, Phase 1's alphabet."""
    source = (claims.email or "").split("@")[0] or claims.name or "user"
    base = re.sub(r"[^a-z0-9_-]+", "-", source.lower()).strip("-") or "user"
    return "@" + base[:60]


_PROVISION_ATTEMPTS = 3


async def provision_human(
    db: Database, claims: JwtClaims, via: Via = Via.CORE, request_id: str | None = None
) -> Worker:
    """The worker for this `sub`, created (and audited) the first time it signs in.

    A browser's first page load sends several requests with the same new token at once, and two
    people with the same email local part can sign in together: a transaction-scoped advisory
    lock on the handle base serialises those, and a unique violation from any other writer of
    the same handle is retried, so the caller never sees a 500 for signing in.
    """
    from sqlalchemy.exc import IntegrityError  # here: local mode never provisions

    for attempt in range(1, _PROVISION_ATTEMPTS + 1):
        try:
            return await _find_or_create_human(db, claims, via, request_id)
        except IntegrityError:
            if attempt == _PROVISION_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _find_or_create_human(
    db: Database, claims: JwtClaims, via: Via, request_id: str | None
) -> Worker:
    from sqlalchemy import select, text

    from taskflow.core.handlers.workers import create_human
    from taskflow.core.models import Worker
    from taskflow.core.schemas import CreateHuman
    from taskflow.core.uow import UnitOfWork

    by_subject = select(Worker).where(Worker.sso_subject == claims.sub)
    async with db.transaction() as session:
        worker = await session.scalar(by_subject)
        if worker is not None:
            return worker
        base = handle_base(claims)
        await session.execute(text(_LOCK_HANDLE), {"key": "taskflow:provision:" + base})
        worker = await session.scalar(by_subject)  # a concurrent request may have won
        if worker is not None:
            return worker
        handle, n = base, 1
        while handle in RESERVED_HANDLES or await session.scalar(
            select(Worker.id).where(Worker.handle == handle)
        ):
            n += 1
            handle = f"{base}-{n}"
        cmd = CreateHuman(
            handle=handle,
            name=(claims.name or "").strip()[:200] or handle[1:],
            email=claims.email,
            sso_subject=claims.sub,
        )
        # Outside any dispatcher (there is no actor yet): this transaction is the unit of work,
        # and the new human writes its own `created` entry through the surface it came by.
        return await create_human(cmd, UnitOfWork(session), via=via, request_id=request_id)


_LOCK_HANDLE = "SELECT pg_advisory_xact_lock(hashtext(:key))"


async def local_actor(db: Database, handle: str, via: Via) -> Actor:
    """The local user of a single-user installation (Phase 1's `current_user`)."""
    async with db.guarded():
        worker = await driver.fetchrow(db, _LOCAL_USER, handle)
    if worker is None:
        raise Unauthenticated(
            f"local user {handle} does not exist: run `taskflow init --user {handle}` first"
        )
    refuse_deactivated(worker["handle"], worker["deactivated_at"])
    return Actor(
        worker_id=worker["id"], handle=worker["handle"], type=WorkerType(worker["type"]), via=via
    )


_LOCAL_USER = "SELECT id, handle, type, deactivated_at FROM workers WHERE handle = $1"


NO_IDENTITY = "no identity: send a bearer token (an agent API key or a Better Auth JWT)"


async def resolve_actor(
    auth: Authenticator,
    via: Via,
    *,
    token: str | None = None,
    request_id: str | None = None,
    fixed: Actor | None = None,
    local_handle: str | None = None,
    missing: str = NO_IDENTITY,
    client_request_id: str | None = None,
) -> Actor:
    """Who acts, the same way on every surface; `Unauthenticated` when nobody can be named.

    In order: a bearer token (an agent key, or a JWT when an auth server is configured); an actor
    the surface already holds (fixed at startup, or verified earlier in this request); the local
    user of a single-user installation. Each surface says in `missing` what its caller should do
    when none is there. The actor carries `via`, the request id and the client's own request id
    into its audit entries.
    """
    if token is not None:
        actor = await auth.authenticate(token, via, request_id)
    elif fixed is not None:
        actor = fixed
    elif local_handle is not None:
        actor = await local_actor(auth.db, local_handle, via)
    else:
        raise Unauthenticated(missing)
    return actor.through(via, request_id, client_request_id)
