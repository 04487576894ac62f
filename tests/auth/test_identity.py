"""Bearer token -> actor for humans: real Better Auth JWTs provision a worker on first sight.

Tokens come from the session's real Better Auth server (sign-up, then /api/auth/token); the
database is a fresh real PostgreSQL per test. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import jwt as pyjwt
import pytest
from sqlalchemy import func, select

from taskflow.core.auth.identity import Authenticator, bearer_token
from taskflow.core.auth.jwt import JwtVerifier
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.domain import AuditAction, Via, WorkerType
from taskflow.core.errors import Unauthenticated, Unavailable
from taskflow.core.models import AuditEntry, Worker
from taskflow.core.schemas import AuditFilter
from taskflow.core.services import history
from tests.auth.conftest import audit_entries, sign_up
from tests.conftest import make_human

if TYPE_CHECKING:
    from tests.better_auth import BetterAuthServer


async def worker_by_subject(db: Database, sub: str) -> Worker | None:
    async with db.transaction() as session:
        return await session.scalar(select(Worker).where(Worker.sso_subject == sub))


async def count(db: Database, model: type) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def subject_of(token: str) -> str:
    return pyjwt.decode(token, options={"verify_signature": False})["sub"]


# ---------------------------------------------------------------- provisioning


async def test_first_jwt_provisions_an_audited_human(
    auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    token = sign_up(better_auth, "ada", "Ada Lovelace")
    sub = subject_of(token)

    actor = await auth.authenticate(token, Via.HTTP, request_id="req-1")

    worker = await worker_by_subject(db, sub)
    assert worker is not None
    assert (actor.worker_id, actor.handle) == (worker.id, "@ada")
    assert actor.type is WorkerType.HUMAN and not actor.is_agent
    assert (actor.auth, actor.subject, actor.key_id) == ("jwt", sub, None)
    assert (actor.via, actor.request_id) == (Via.HTTP, "req-1")
    assert worker.type == "human" and worker.name == "Ada Lovelace"
    assert worker.email is not None and worker.email.startswith("ada@")
    assert worker.created_by_id is None  # nobody created it: it signed itself in

    [entry] = await audit_entries(db, entity_type="worker", entity_id=worker.id)
    assert entry.action == AuditAction.CREATED
    assert (entry.actor_id, entry.actor_handle, entry.actor_type) == (worker.id, "@ada", "human")
    assert (entry.via, entry.request_id) == ("http", "req-1")
    assert entry.details["new"]["handle"] == "@ada"
    assert "sso_subject" not in entry.details["new"]


async def test_provisioning_puts_no_personal_data_in_the_audit_log(
    auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    """Any worker can read project-less audit entries, and the log can never be edited."""
    token = sign_up(better_auth, "priya", "Priya Patel")
    priya = await auth.authenticate(token, Via.HTTP)
    nosy = await auth.authenticate(sign_up(better_auth, "nosy"), Via.HTTP)

    page = await history.list_audit(db, nosy, AuditFilter(actor="@priya"))

    [entry] = page.items
    assert (entry.action, entry.entity_id) == ("created", priya.worker_id)
    dumped = entry.model_dump_json()
    assert "@" + "priya" in dumped
    assert ".example.com" not in dumped and subject_of(token) not in dumped


async def test_second_jwt_returns_the_same_worker_without_a_new_audit_entry(
    auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    session = better_auth.sign_up(f"bob@{uuid.uuid4().hex[:8]}.example.com", "pw-123456789", "Bob")
    first = await auth.authenticate(better_auth.get_jwt(session), Via.HTTP)
    entries = await count(db, AuditEntry)

    again = await auth.authenticate(better_auth.get_jwt(session), Via.MCP)  # a new token, same sub

    assert (again.worker_id, again.handle, again.via) == (first.worker_id, "@bob", Via.MCP)
    assert await count(db, Worker) == 1
    assert await count(db, AuditEntry) == entries


async def test_same_email_local_part_gets_distinct_handles(
    auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    first = await auth.authenticate(sign_up(better_auth, "ann", "Ann One"), Via.HTTP)
    second = await auth.authenticate(sign_up(better_auth, "ann", "Ann Two"), Via.HTTP)
    third = await auth.authenticate(sign_up(better_auth, "ann", "Ann Three"), Via.HTTP)

    assert [first.handle, second.handle, third.handle] == ["@ann", "@ann-2", "@ann-3"]
    assert len({first.worker_id, second.worker_id, third.worker_id}) == 3
    for actor in (first, second, third):
        [entry] = await audit_entries(db, entity_type="worker", entity_id=actor.worker_id)
        assert (entry.action, entry.actor_id) == ("created", actor.worker_id)


async def test_an_existing_worker_with_that_handle_is_not_taken_over(
    auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    """A Phase 1 human @ada exists: a new sign-in as ada@... is another person, not her."""
    local_ada = await make_human(db, "@ada")

    actor = await auth.authenticate(sign_up(better_auth, "ada"), Via.HTTP)

    assert actor.handle == "@ada-2" and actor.worker_id != local_ada.worker_id


async def test_handle_is_normalised_from_the_email_local_part(
    auth: Authenticator, better_auth: BetterAuthServer
) -> None:
    actor = await auth.authenticate(sign_up(better_auth, "Ann.Smith+work", "Ann"), Via.HTTP)
    assert actor.handle == "@ann-smith-work"


async def test_without_email_the_handle_comes_from_the_name(
    auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    sub = f"sub-{uuid.uuid4().hex}"
    token = better_auth.sign_jwt({"sub": sub, "name": "Grace Hopper"})

    actor = await auth.authenticate(token, Via.CLI)

    worker = await worker_by_subject(db, sub)
    assert worker is not None and worker.email is None
    assert (actor.handle, worker.name) == ("@grace-hopper", "Grace Hopper")


async def test_a_blank_name_claim_falls_back_to_the_handle(
    auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    sub = f"sub-{uuid.uuid4().hex}"
    token = better_auth.sign_jwt({"sub": sub, "email": "kim@example.org", "name": "   "})

    actor = await auth.authenticate(token, Via.HTTP)

    worker = await worker_by_subject(db, sub)
    assert worker is not None
    assert (actor.handle, worker.name, worker.email) == ("@kim", "kim", "kim@example.org")


async def test_concurrent_first_requests_provision_one_worker(
    auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    """A browser's first page load sends several API calls at once with the same new token."""
    token = sign_up(better_auth, "eve", "Eve")

    actors = await asyncio.gather(*(auth.authenticate(token, Via.HTTP) for _ in range(5)))

    assert {a.worker_id for a in actors} == {actors[0].worker_id}
    assert {a.handle for a in actors} == {"@eve"}
    assert await count(db, Worker) == 1
    assert len(await audit_entries(db, entity_type="worker", action="created")) == 1


async def test_concurrent_first_requests_of_namesakes_get_distinct_handles(
    auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    tokens = [sign_up(better_auth, "sam", f"Sam {i}") for i in range(4)]

    actors = await asyncio.gather(*(auth.authenticate(t, Via.HTTP) for t in tokens))

    assert sorted(a.handle for a in actors) == ["@sam", "@sam-2", "@sam-3", "@sam-4"]
    assert len(await audit_entries(db, entity_type="worker", action="created")) == 4


# ---------------------------------------------------------------- refusals change nothing


async def test_a_tampered_jwt_is_refused_and_provisions_nothing(
    auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    head, body, signature = sign_up(better_auth, "mallory").split(".")
    tampered = f"{head}.{body}.{signature[:-4]}AAAA"

    with pytest.raises(Unauthenticated, match="signature"):
        await auth.authenticate(tampered, Via.HTTP)

    assert await count(db, Worker) == 0
    assert await count(db, AuditEntry) == 0


async def test_auth_server_down_is_unavailable_and_provisions_nothing(
    db: Database, better_auth: BetterAuthServer
) -> None:
    token = sign_up(better_auth, "oscar")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        auth_server_url=better_auth.base_url,
        auth_jwks_url="http://127.0.0.1:9/api/auth/jwks",  # discard port: nothing listens
    )
    verifier = JwtVerifier.from_settings(settings)
    try:
        with pytest.raises(Unavailable, match="auth server unavailable"):
            await Authenticator(db, verifier).authenticate(token, Via.HTTP)
    finally:
        await verifier.jwks.aclose()
    assert await count(db, Worker) == 0


# ---------------------------------------------------------------- Authorization header


@pytest.mark.parametrize("header", [None, ""])
def test_no_authorization_header_means_no_token(header: str | None) -> None:
    assert bearer_token(header) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer tf_key", "tf_key"),
        ("BEARER   spaced  ", "spaced"),
    ],
)
def test_bearer_header_yields_its_token(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc", "abc.def.ghi", "   "]
)
def test_malformed_authorization_header_is_refused_clearly(header: str) -> None:
    with pytest.raises(Unauthenticated, match=r"malformed Authorization header.*Bearer <token>"):
        bearer_token(header)
