"""audit list/show/task/actor, verify (and against a saved digest), digest, and tampering."""

from __future__ import annotations

from sqlalchemy import text

from taskflow.core.db import Database
from tests.cli.conftest import Cli

ENTRY_KEYS = {
    "id",
    "entity_type",
    "entity_id",
    "seq",
    "project_id",
    "task_id",
    "action",
    "actor",
    "actor_type",
    "details",
    "request_id",
    "via",
    "created_at",
    "actor_key",
    "client_request_id",
}


async def _history(cli: Cli, agent_key: str) -> None:
    await cli.ok("add", "First")
    await cli.ok("add", "Second")
    await cli.ok("start", "1")
    await cli.ok("progress", "1", "--percent", "30", "--note", "begun")
    await cli.ok("start", "2", env={"TASKFLOW_TOKEN": agent_key})


async def test_audit_list_filters(sarah: Cli, agent_key: str) -> None:
    await _history(sarah, agent_key)
    newest = await sarah.json("audit", "list")
    assert set(newest[0]) == ENTRY_KEYS
    assert newest[0]["action"] == "started" and newest[0]["actor"] == "@claude-code"
    assert [e["id"] for e in newest] == sorted((e["id"] for e in newest), reverse=True)
    assert len(await sarah.json("audit", "list", "--limit", "2")) == 2
    assert {e["task_id"] for e in await sarah.json("audit", "list", "--task", "1")} == {1}
    by_agent = await sarah.json("audit", "list", "--actor", "@claude-code")
    assert by_agent and {e["actor"] for e in by_agent} == {"@claude-code"}
    progressed = await sarah.json("audit", "list", "--action", "progressed")
    assert [e["details"]["note"] for e in progressed] == ["begun"]
    assert len(await sarah.json("audit", "list", "-p", "default", "-n", "100")) >= 6
    table = (await sarah.ok("audit", "list")).stdout
    assert "progressed" in table and "note: begun" in table and "cli" in table
    await sarah.refused("audit", "list", "--actor", "claude", code=2)
    assert "No audit entries match" in (await sarah.ok("audit", "list", "--action", "nope")).stdout


async def test_audit_show_task_actor(sarah: Cli, agent_key: str) -> None:
    await _history(sarah, agent_key)
    history = await sarah.json("audit", "task", "1")
    assert [e["action"] for e in history] == ["created", "started", "progressed"]
    entry_id = history[-1]["id"]
    shown = await sarah.json("audit", "show", entry_id)
    assert shown == history[-1]
    panel = (await sarah.ok("audit", "show", entry_id)).stdout
    assert "progressed" in panel and '"note": "begun"' in panel and "@sarah (human)" in panel
    assert "History of task 1" in (await sarah.ok("audit", "task", "1")).stdout
    by_agent = await sarah.json("audit", "actor", "@claude-code")
    assert by_agent[0]["action"] == "started"
    await sarah.refused("audit", "show", "9999")
    await sarah.refused("audit", "task", "77")


async def test_verify_and_digest(sarah: Cli, agent_key: str, db: Database) -> None:
    await _history(sarah, agent_key)
    result = await sarah.ok("audit", "verify")
    assert "Audit log intact" in result.stdout and "digest: tfd1:" in result.stdout
    report = await sarah.json("audit", "verify")
    assert report["ok"] is True and report["problems"] == [] and report["digest_matches"] is None
    saved = (await sarah.ok("audit", "digest")).stdout.strip()
    assert saved.startswith("tfd1:")
    assert (await sarah.json("audit", "digest"))["digest"] == saved
    # More work later: the saved digest still checks out, since it covers entries up to its id.
    await sarah.ok("add", "Third")
    ok = await sarah.ok("audit", "verify", "--digest", saved)
    assert "The saved digest matches" in ok.stdout
    assert (await sarah.json("audit", "verify", "--digest", saved))["digest_matches"] is True
    await sarah.refused("audit", "verify", "--digest", "garbage")

    # Someone with database superpowers rewrites history: verify names the entry.
    target = await _forge(db, rehash=False)
    broken = await sarah("audit", "verify")
    assert broken.exit_code == 1
    assert f"entry {target}" in broken.stderr and "changed after it was written" in broken.stderr
    assert "Traceback" not in broken.stderr
    data = await sarah("audit", "verify", "--json")
    assert data.exit_code == 1
    assert '"ok": false' in data.stdout and f'"entry_id": {target}' in data.stdout


async def test_saved_digest_catches_a_rehashed_forgery(
    sarah: Cli, agent_key: str, db: Database
) -> None:
    await _history(sarah, agent_key)
    saved = (await sarah.ok("audit", "digest")).stdout.strip()
    # A careful forger recomputes the chain after the edit: the chains verify again...
    await _forge(db, rehash=True)
    assert (await sarah.json("audit", "verify"))["ok"] is True
    # ...but the digest saved elsewhere before the forgery no longer matches.
    result = await sarah("audit", "verify", "--digest", saved)
    assert result.exit_code == 1
    assert "does NOT match" in result.stderr and "Traceback" not in result.stderr


async def _forge(db: Database, *, rehash: bool) -> int:
    """Change the first `progressed` entry's details behind the application's back."""
    import hashlib

    from taskflow.core.audit import GENESIS, payload_of

    async with db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete"))
        target = await conn.scalar(
            text("SELECT id FROM audit_log WHERE action = 'progressed' ORDER BY id LIMIT 1")
        )
        await conn.execute(
            text('UPDATE audit_log SET details = \'{"note": "forged"}\' WHERE id = :id'),
            {"id": target},
        )
        if rehash:
            rows = (
                (
                    await conn.execute(
                        text(
                            "SELECT * FROM audit_log WHERE (entity_type, entity_id) = "
                            "(SELECT entity_type, entity_id FROM audit_log WHERE id = :id) "
                            "ORDER BY seq"
                        ),
                        {"id": target},
                    )
                )
                .mappings()
                .all()
            )
            prev = GENESIS
            for row in rows:
                body = payload_of(row)
                digest = hashlib.sha256(prev + body).digest()
                await conn.execute(
                    text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE id = :id"),
                    {"p": prev, "h": digest, "id": row["id"]},
                )
                prev = digest
            await conn.execute(
                text(
                    "UPDATE audit_heads SET head_hash = :h "
                    "WHERE entity_type = :t AND entity_id = :e"
                ),
                {"h": prev, "t": rows[0]["entity_type"], "e": rows[0]["entity_id"]},
            )
        await conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete"))
    return int(target)


async def test_audit_commands_refuse_unknown_options_naming_the_nearest(
    sarah: Cli, agent_key: str, db: Database
) -> None:
    await _history(sarah, agent_key)
    async with db.engine.connect() as conn:
        before = (await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar_one()
    listed = await sarah.refused("audit", "list", "--acton", "x", code=2)
    assert "No such option: --acton (Possible options: --action," in listed
    verified = await sarah.refused("audit", "verify", "--digets", "x", code=2)
    assert "No such option: --digets (Possible options: --digest)" in verified
    shown = await sarah.refused("audit", "show", "1", "--jsn", code=2)
    assert "No such option: --jsn (Possible options: --json)" in shown
    async with db.engine.connect() as conn:
        after = (await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar_one()
    assert after == before
