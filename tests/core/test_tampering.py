"""The audit log resists change: the trigger refuses UPDATE/DELETE/TRUNCATE, and with the trigger
disabled (as a superuser could), `verify` names the entry that was changed, removed, swapped or
forged; the digest catches even a consistent rewrite."""

from __future__ import annotations

import json

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from taskflow.core import audit
from taskflow.core.errors import ValidationFailed
from taskflow.core.schemas import CreateTask
from taskflow.core.services import tasks, workflow


def _dsn(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _superuser(db_url: str, *statements: str) -> None:
    """Run statements with the append-only trigger disabled, as a superuser with psql could."""
    conn = await asyncpg.connect(_dsn(db_url))
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
            for s in statements:
                await conn.execute(s)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()


@pytest.fixture
async def history(db, owner):
    """Two tasks with five-entry chains each (created, started, progressed x2, completed)."""
    ids = []
    for title in ("one", "two"):
        t = (await tasks.create_task(db, owner, CreateTask(title=title, project="web"))).task
        await workflow.start(db, owner, t.id)
        await workflow.progress(db, owner, t.id, 30, "first pass")
        await workflow.progress(db, owner, t.id, 60)
        await workflow.complete(db, owner, t.id)
        ids.append(t.id)
    result = await audit.verify(db)
    assert result.ok, result.problems
    return ids


async def _entry_id(db_url, task_id, seq):
    conn = await asyncpg.connect(_dsn(db_url))
    try:
        return await conn.fetchval(
            "SELECT id FROM audit_log WHERE entity_type = 'task' AND entity_id = $1 AND seq = $2",
            task_id,
            seq,
        )
    finally:
        await conn.close()


async def _column(db_url, entry_id, column):
    conn = await asyncpg.connect(_dsn(db_url))
    try:
        return await conn.fetchval(f"SELECT {column} FROM audit_log WHERE id = $1", entry_id)
    finally:
        await conn.close()


async def _count(db_url, sql, *args):
    conn = await asyncpg.connect(_dsn(db_url))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def test_untouched_log_verifies(db, owner, history):
    result = await audit.verify(db)
    assert result.ok and result.problems == []
    assert result.chains_checked == 5  # @sarah, projects default and web, tasks one and two
    assert result.entries_checked == 1 + 2 + 2 * 5


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET details = '{}' WHERE id = (SELECT max(id) FROM audit_log)",
        "DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)",
        "TRUNCATE audit_log",
    ],
    ids=["update", "delete", "truncate"],
)
async def test_trigger_refuses_changes_to_history(db_url, db, history, statement):
    conn = await asyncpg.connect(_dsn(db_url))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()
    assert (await audit.verify(db)).ok


async def test_edited_detail_is_named(db_url, db, history):
    target = await _entry_id(db_url, history[0], 3)
    await _superuser(
        db_url,
        f"UPDATE audit_log SET details = jsonb_set(details, '{{note}}', '\"all done\"') "
        f"WHERE id = {target}",
    )
    result = await audit.verify(db)
    assert not result.ok
    assert result.first_problem["entry_id"] == target
    assert result.first_problem["entity"] == f"task:{history[0]}"
    assert "content does not match" in result.first_problem["reason"]
    assert result.first_problem["action"] == await _column(db_url, target, "action")
    assert len(result.problems) == 1


async def test_rewired_link_is_named(db_url, db, history):
    """An entry whose previous-hash no longer points at the entry before it: the chain is broken
    there even though the entry's own content is untouched."""
    target = await _entry_id(db_url, history[0], 4)
    await _superuser(
        db_url, f"UPDATE audit_log SET prev_hash = sha256('elsewhere') WHERE id = {target}"
    )
    result = await audit.verify(db)
    assert [p["entry_id"] for p in result.problems] == [target]
    assert "previous-hash does not match" in result.first_problem["reason"]


async def test_reordered_entries_are_named(db_url, db, history):
    """Two entries of a chain trade places (their sequence numbers): both are named, the first
    at the place where the order breaks."""
    a = await _entry_id(db_url, history[1], 2)
    b = await _entry_id(db_url, history[1], 3)
    await _superuser(
        db_url,
        "ALTER TABLE audit_log DROP CONSTRAINT uq_audit_log_entity_seq",
        f"UPDATE audit_log SET seq = CASE id WHEN {a} THEN 3 ELSE 2 END WHERE id IN ({a}, {b})",
        "ALTER TABLE audit_log ADD CONSTRAINT uq_audit_log_entity_seq "
        "UNIQUE (entity_type, entity_id, seq)",
    )
    result = await audit.verify(db)
    assert not result.ok
    assert result.first_problem["entry_id"] == b
    assert result.first_problem["entity"] == f"task:{history[1]}"
    assert {p["entry_id"] for p in result.problems} >= {a, b}


async def test_change_to_details_beyond_the_fast_spelling_is_named(db_url, db, owner):
    """Details that the fast re-serialisation cannot spell (an integer beyond 64 bits) go the
    exact way: untouched they verify, changed they are named."""
    async with db.transaction() as session:
        entry = await audit.record(
            session,
            owner,
            entity_type="test",
            entity_id=1,
            action="noted",
            details={"big": 2**70, "tiny": 1e-7},
        )
    assert (await audit.verify(db)).ok
    await _superuser(
        db_url,
        f'UPDATE audit_log SET details = \'{{"big": {2**70 + 1}, "tiny": 1e-7}}\' '
        f"WHERE id = {entry}",
    )
    result = await audit.verify(db)
    assert [p["entry_id"] for p in result.problems] == [entry]
    assert "content does not match" in result.first_problem["reason"]


async def test_repeated_details_do_not_hide_a_change_elsewhere(db_url, db, owner):
    """Entries with the same details share their re-serialised spelling; a change to any other
    field of one of them is still named."""
    async with db.transaction() as session:
        ids = [
            await audit.record(
                session,
                owner,
                entity_type="test",
                entity_id=i,
                action="noted",
                details={"same": True},
            )
            for i in range(3)
        ]
    await _superuser(db_url, f"UPDATE audit_log SET actor_handle = '@mallory' WHERE id = {ids[1]}")
    result = await audit.verify(db)
    assert [p["entry_id"] for p in result.problems] == [ids[1]]


@pytest.mark.parametrize("column", ["actor_handle", "action", "created_at", "via", "task_id"])
async def test_every_covered_column_is_protected(db_url, db, history, column):
    target = await _entry_id(db_url, history[1], 2)
    value = {
        "actor_handle": "'@mallory'",
        "action": "'approved'",
        "created_at": "created_at - interval '1 day'",
        "via": "'cli'",
        "task_id": "task_id + 1",
    }[column]
    await _superuser(db_url, f"UPDATE audit_log SET {column} = {value} WHERE id = {target}")
    result = await audit.verify(db)
    assert [p["entry_id"] for p in result.problems] == [target]


async def test_deleted_middle_entry_is_named(db_url, db, history):
    removed = await _entry_id(db_url, history[0], 2)
    after = await _entry_id(db_url, history[0], 3)
    await _superuser(db_url, f"DELETE FROM audit_log WHERE id = {removed}")
    result = await audit.verify(db)
    assert not result.ok
    problem = result.first_problem
    assert (problem["entry_id"], problem["entity"]) == (after, f"task:{history[0]}")
    assert "expected sequence 2 but found 3" in problem["reason"]
    assert "removed" in problem["reason"]


async def test_deleted_last_entry_of_a_chain_is_detected(db_url, db, history):
    last = await _entry_id(db_url, history[1], 5)
    await _superuser(db_url, f"DELETE FROM audit_log WHERE id = {last}")
    result = await audit.verify(db)
    assert not result.ok
    problem = result.first_problem
    assert problem["entity"] == f"task:{history[1]}"
    assert "last 1 entry(ies) of this chain were removed" in problem["reason"]


async def test_deleted_whole_chain_is_detected(db_url, db, history):
    await _superuser(
        db_url, f"DELETE FROM audit_log WHERE entity_type = 'task' AND entity_id = {history[0]}"
    )
    result = await audit.verify(db)
    assert [p["entity"] for p in result.problems] == [f"task:{history[0]}"]
    assert "none remain" in result.first_problem["reason"]


async def test_swapped_entries_are_detected(db_url, db, history):
    """Two entries of one chain trade their contents: the history reads in the wrong order."""
    a = await _entry_id(db_url, history[0], 3)
    b = await _entry_id(db_url, history[0], 4)
    await _superuser(
        db_url,
        f"""UPDATE audit_log x SET action = y.action, details = y.details,
                                 created_at = y.created_at
            FROM audit_log y
            WHERE (x.id, y.id) IN (({a}, {b}), ({b}, {a}))""",
    )
    result = await audit.verify(db)
    assert not result.ok
    assert result.first_problem["entry_id"] == a
    assert {p["entry_id"] for p in result.problems} == {a, b}


async def test_forged_entry_with_bad_hash_is_named(db_url, db, owner, history):
    await _superuser(
        db_url,
        f"""INSERT INTO audit_log (entity_type, entity_id, seq, project_id, task_id, action,
                                   actor_id, actor_handle, actor_type, details, via, created_at,
                                   prev_hash, hash)
            SELECT entity_type, entity_id, 6, project_id, task_id, 'approved', actor_id,
                   '@mallory', actor_type, '{{}}', via, now(), hash, sha256('forged')
            FROM audit_log WHERE entity_type = 'task' AND entity_id = {history[0]} AND seq = 5""",
    )
    forged = await _entry_id(db_url, history[0], 6)
    result = await audit.verify(db)
    assert not result.ok
    assert result.first_problem["entry_id"] == forged
    assert "content does not match" in result.first_problem["reason"]


async def test_forged_entry_with_correct_hash_is_caught_by_the_head(db_url, db, owner, history):
    """A forger who knows the hash recipe appends a well-formed entry: the chain's recorded
    head does not know it."""
    conn = await asyncpg.connect(_dsn(db_url))
    try:
        last = await conn.fetchrow(
            "SELECT * FROM audit_log WHERE entity_type = 'task' AND entity_id = $1 AND seq = 5",
            history[0],
        )
    finally:
        await conn.close()
    fields = {
        "entity_type": "task",
        "entity_id": history[0],
        "project_id": last["project_id"],
        "task_id": history[0],
        "action": "reopened",
        "actor_id": last["actor_id"],
        "actor_handle": "@sarah",
        "actor_type": "human",
        "details": audit.canonical_details({"why": "forged"}),
        "request_id": None,
        "via": "core",
        "created_at": last["created_at"],
    }
    import hashlib

    new_hash = hashlib.sha256(bytes(last["hash"]) + audit.payload(**fields)).hexdigest()
    await _superuser(
        db_url,
        f"""INSERT INTO audit_log (entity_type, entity_id, seq, project_id, task_id, action,
                                   actor_id, actor_handle, actor_type, details, via, created_at,
                                   prev_hash, hash)
            VALUES ('task', {history[0]}, 6, {last["project_id"]}, {history[0]}, 'reopened',
                    {last["actor_id"]}, '@sarah', 'human', '{{"why": "forged"}}', 'core',
                    '{last["created_at"].isoformat()}', '\\x{bytes(last["hash"]).hex()}',
                    '\\x{new_hash}')""",
    )
    forged = await _entry_id(db_url, history[0], 6)
    result = await audit.verify(db)
    assert not result.ok
    assert [p["entity"] for p in result.problems] == [f"task:{history[0]}"]
    assert result.first_problem["entry_id"] == forged
    assert "head does not know" in result.first_problem["reason"]


async def test_forged_chain_for_a_new_entity_is_named(db_url, db, history):
    await _superuser(
        db_url,
        """INSERT INTO audit_log (entity_type, entity_id, seq, action, actor_handle, actor_type,
                                  via, created_at, prev_hash, hash)
           VALUES ('task', 999999, 1, 'created', '@mallory', 'human', 'core', now(),
                   '\\x00', '\\x00')""",
    )
    forged = await _entry_id(db_url, 999999, 1)
    result = await audit.verify(db)
    assert not result.ok
    assert forged in {p["entry_id"] for p in result.problems}
    assert all(p["entity"] == "task:999999" for p in result.problems)


async def test_digest_detects_a_consistent_rewrite_and_survives_appends(db_url, db, owner, history):
    value = await audit.digest(db)
    assert value.startswith("tfd1:") and await audit.check_digest(db, value)
    # Legitimate work after the digest was stored does not invalidate it.
    t = (await tasks.create_task(db, owner, CreateTask(title="later", project="web"))).task
    await workflow.start(db, owner, t.id)
    await workflow.progress(db, owner, t.id, 10)
    assert await audit.check_digest(db, value)
    assert (await audit.verify(db)).ok
    # A forger rewrites a chain and every hash after the change, and moves its head: verify is
    # satisfied, the digest is not.
    conn = await asyncpg.connect(_dsn(db_url))
    try:
        rows = await conn.fetch(
            "SELECT * FROM audit_log WHERE entity_type = 'task' AND entity_id = $1 ORDER BY seq",
            history[1],
        )
    finally:
        await conn.close()
    prev = audit.GENESIS
    statements = []
    import hashlib
    import json

    for row in rows:
        details = json.loads(row["details"])
        if row["seq"] == 3:
            details["note"] = "rewritten"
        h = hashlib.sha256(prev + audit.payload_of(row, details)).digest()
        body = audit.canonical_details(details)
        statements.append(
            f"UPDATE audit_log SET details = '{body}', prev_hash = '\\x{prev.hex()}', "
            f"hash = '\\x{h.hex()}' WHERE id = {row['id']}"
        )
        prev = h
    statements.append(
        f"UPDATE audit_heads SET head_hash = '\\x{prev.hex()}' "
        f"WHERE entity_type = 'task' AND entity_id = {history[1]}"
    )
    await _superuser(db_url, *statements)
    assert (await audit.verify(db)).ok, "a consistent rewrite fools verify..."
    assert not await audit.check_digest(db, value), "...but not the stored digest"


async def test_check_digest_refuses_garbage(db, history):
    for bad in ("", "nonsense", "tfd1:x:abc", "tfd9:1:abc"):
        with pytest.raises(ValidationFailed):
            await audit.check_digest(db, bad)
    assert not await audit.check_digest(db, "tfd1:1:" + "0" * 64)


async def test_verify_reports_at_most_max_problems(db_url, db, history):
    await _superuser(db_url, "UPDATE audit_log SET details = '{\"x\": 1}'")
    result = await audit.verify(db, max_problems=3)
    assert len(result.problems) == 3 and not result.ok


ODD_DETAILS = [
    {"note": "ünïcödé ✓ 日本語", "emoji": "🚀", "rtl": "שלום"},
    {"quote": 'say "hi"', "backslash": "a\\b", "ctrl": "tab\tnl\nbell\x07", "sep": "\u2028"},
    {"z": 1, "a": 2, "é": 3, "B": 4, "aa": {"y": [3, 2, 1], "x": {}}},
    {"floats": [1.5, 0.1, 1e-7, 2.0, -0.0, 123456.789], "big": 2**62, "neg": -5},
    {"integral_floats": [1e16, 1.5e16, 1e20, 1e300, -2e22]},
    {"empty": [], "null": None, "bools": [True, False], "nested": [[[{"k": "v"}]]]},
    {"by_id": {10: "ten", 9: "nine", 1.5: "x", True: "t", None: "n"}},
    {},
]


@pytest.mark.parametrize("details", ODD_DETAILS, ids=range(len(ODD_DETAILS)))
async def test_any_json_details_survive_the_jsonb_round_trip(db, owner, details):
    """verify recomputes hashes from what JSONB gives back; no value may read as tampered."""
    async with db.transaction() as session:
        await audit.record(
            session, owner, entity_type="test", entity_id=1, action="noted", details=details
        )
    result = await audit.verify(db)
    assert result.ok, result.problems
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        stored = await raw.fetchval(
            "SELECT details::text FROM audit_log WHERE entity_type = 'test' ORDER BY id DESC"
        )
    expected = audit.canonical_details(json.loads(stored)).encode()
    assert audit._spell({}, stored) == expected, "the remembered spelling is the exact one"


async def test_sql_built_payload_matches_payload(db, owner, history):
    """verify builds each entry's payload in SQL; it must equal `audit.payload` byte for byte."""
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        built = await raw.fetch(audit._VERIFY_SQL)
        rows = {
            r["id"]: r for r in await raw.fetch("SELECT *, details::text AS details FROM audit_log")
        }
    import json as _json

    for b in built:
        r = rows[b["id"]]
        expected = audit.payload_of(r)
        prefix = f"{b['entity_type']}{audit.SEP}{b['entity_id']}{audit.SEP}"
        details = audit.canonical_details(_json.loads(b["details"]))
        assert (prefix + b["head"] + details + b["tail"]).encode() == expected
        assert audit._spell({}, b["details"]) == details.encode()


async def test_verify_streams_a_long_log_and_stops_early_cleanly(db_url, db, owner):
    async with db.transaction() as session:
        for i in range(3_500):
            await audit.record(
                session,
                owner,
                entity_type="test",
                entity_id=i % 7,
                action="noted",
                details={"i": i},
            )
    result = await audit.verify(db)
    # 3 entries from the owner fixture (@sarah, two projects) plus 3,500 in 7 chains
    assert result.ok and result.entries_checked == 3_503 and result.chains_checked == 10
    await _superuser(
        db_url,
        "UPDATE audit_log SET details = '{\"i\": -1}' WHERE entity_type = 'test' AND seq % 50 = 0",
    )
    early = await audit.verify(db, max_problems=2)
    assert len(early.problems) == 2 and not early.ok
    etype, eid = early.problems[1]["entity"].split(":")
    walked = await _count(
        db_url,
        "SELECT count(*) FROM audit_log WHERE (entity_type, entity_id, seq) <= ($1, $2, $3)",
        etype,
        int(eid),
        early.problems[1]["seq"],
    )
    assert early.entries_checked == walked, "counted up to the entry that filled the list"
    full = await audit.verify(db, max_problems=1_000)
    assert len(full.problems) == 70
    assert early.problems == full.problems[:2]


async def test_digest_is_not_fooled_by_a_transaction_still_in_flight(db, owner):
    """Ids are handed out at insert, but commits come in any order: a digest taken while an
    earlier id is uncommitted must not leave that entry out (it would later read as tampering)."""
    import asyncio

    t = (await tasks.create_task(db, owner, CreateTask(title="slow", project="web"))).task
    async with db.transaction() as session:
        await audit.record(
            session,
            owner,
            entity_type="task",
            entity_id=t.id,
            task_id=t.id,
            action="noted",
            details={"slow": True},
        )
        # Someone else commits later ids meanwhile; then the digest is taken.
        await tasks.create_task(db, owner, CreateTask(title="fast", project="web"))
        digest_task = asyncio.create_task(audit.digest(db))
        await asyncio.sleep(0.3)
    value = await digest_task
    assert await audit.check_digest(db, value), "an entry committed late changed the digest"
    assert (await audit.verify(db)).ok


async def test_record_many_writes_the_same_chains_as_record_one_by_one(db, owner):
    """One round trip for many entries; entries of one entity still chain in the given order."""
    entries = [
        {"entity_type": "test", "entity_id": i % 3, "action": "noted", "details": {"i": i}}
        for i in range(7)
    ]
    async with db.transaction() as session:
        await audit.record_many(session, owner, entries)
        await audit.record_many(session, owner, [])
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        rows = await raw.fetch(
            "SELECT entity_id, seq, details->>'i' AS i FROM audit_log "
            "WHERE entity_type = 'test' ORDER BY id"
        )
    assert [(r["entity_id"], r["seq"], int(r["i"])) for r in rows] == [
        (i % 3, i // 3 + 1, i) for i in range(7)
    ]
    assert (await audit.verify(db)).ok
