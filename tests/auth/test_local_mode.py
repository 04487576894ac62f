"""Local mode: no AUTH_SERVER_URL. Agent keys still work; JWTs are refused with a clear reason;
the local user is looked up by handle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from taskflow.core.auth.identity import Authenticator, local_actor
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.domain import Via, WorkerType
from taskflow.core.errors import Unauthenticated
from taskflow.core.runtime import open_runtime
from taskflow.core.schemas import RegisterAgent
from taskflow.core.services import workers
from tests.auth.conftest import audit_entries, scalar, sign_up
from tests.conftest import make_human

if TYPE_CHECKING:
    from tests.better_auth import BetterAuthServer


async def test_runtime_without_auth_server_is_local_mode(db: Database, db_url: str) -> None:
    runtime = await open_runtime(Settings(_env_file=None, database_url=db_url), db=db)  # type: ignore[call-arg]
    assert runtime.local_mode and runtime.auth.verifier is None


async def test_a_jwt_is_refused_saying_only_api_keys_are_accepted(
    local_auth: Authenticator, db: Database, better_auth: BetterAuthServer
) -> None:
    token = sign_up(better_auth, "ada")  # a perfectly valid JWT, from a server we do not trust

    with pytest.raises(Unauthenticated) as caught:
        await local_auth.authenticate(token, Via.HTTP)

    message = caught.value.message
    assert "AUTH_SERVER_URL" in message and "only agent API keys (tf_...)" in message
    assert await scalar(db, "SELECT count(*) FROM workers") == 0
    assert await audit_entries(db) == []


@pytest.mark.parametrize("token", ["eyJhbGciOiJub25lIn0.e30.", "not-a-token", ""])
async def test_anything_but_a_key_is_refused_the_same_way(
    local_auth: Authenticator, token: str
) -> None:
    with pytest.raises(Unauthenticated, match="accepts only agent API keys"):
        await local_auth.authenticate(token, Via.HTTP)


async def test_api_keys_work_in_local_mode(local_auth: Authenticator, db: Database) -> None:
    me = await make_human(db, "@me")
    issued = await workers.register_agent(db, me, RegisterAgent(handle="@bot", name="Bot"))

    actor = await local_auth.authenticate(issued.api_key, Via.MCP)

    assert (actor.handle, actor.type, actor.auth) == ("@bot", WorkerType.AGENT, "api_key")
    await workers.revoke_api_key(db, me, "@bot", issued.key.id)
    with pytest.raises(Unauthenticated, match="invalid API key"):
        await local_auth.authenticate(issued.api_key, Via.MCP)


async def test_local_actor_is_the_named_worker(db: Database) -> None:
    me = await make_human(db, "@me", "Me Myself")

    actor = await local_actor(db, "@me", Via.CLI)

    assert (actor.worker_id, actor.handle, actor.type) == (me.worker_id, "@me", WorkerType.HUMAN)
    assert (actor.via, actor.auth, actor.key_id, actor.subject) == (Via.CLI, "local", None, None)


async def test_local_actor_may_be_an_agent(db: Database) -> None:
    """`taskflow-mcp --as @bot` in local mode acts as a registered agent."""
    me = await make_human(db, "@me")
    await workers.register_agent(db, me, RegisterAgent(handle="@bot", name="Bot"))
    actor = await local_actor(db, "@bot", Via.MCP)
    assert actor.type is WorkerType.AGENT and actor.via is Via.MCP


async def test_local_actor_for_a_missing_handle_says_what_to_run(db: Database) -> None:
    with pytest.raises(Unauthenticated, match=r"local user @nobody does not exist.*taskflow init"):
        await local_actor(db, "@nobody", Via.CLI)
    assert await scalar(db, "SELECT count(*) FROM workers") == 0
