"""Writing, verifying and digesting the hash-chained audit log.

Each entity (a task, a project, a worker, an API key) has its own chain; an entry's hash covers its
fields and the previous entry's hash. Appending locks only that entity's head row, so busy tasks
never wait on each other. Verification recomputes every chain from the visible columns, so an
edit, deletion, reordering or hand-made insert shows up as the first entry whose hash disagrees.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic_core import to_jsonable_python
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.errors import Unavailable, ValidationFailed

GENESIS = bytes(32)
SEP = "\x1f"

_APPEND = text(
    """
    WITH head AS (
        INSERT INTO audit_heads AS h (entity_type, entity_id, seq, head_hash, prev_hash)
        VALUES (:entity_type, :entity_id, 1,
                sha256(CAST(:genesis AS bytea) || CAST(:payload AS bytea)),
                CAST(:genesis AS bytea))
        ON CONFLICT (entity_type, entity_id) DO UPDATE
           SET seq = h.seq + 1,
               prev_hash = h.head_hash,
               head_hash = sha256(h.head_hash || CAST(:payload AS bytea))
        RETURNING seq, prev_hash, head_hash
    )
    INSERT INTO audit_log (entity_type, entity_id, seq, project_id, task_id, action, actor_id,
                           actor_handle, actor_type, details, request_id, via, created_at,
                           prev_hash, hash)
    SELECT :entity_type, :entity_id, head.seq, :project_id, :task_id, :action, :actor_id,
           :actor_handle, :actor_type, CAST(:details AS jsonb), :request_id, :via, :created_at,
           head.prev_hash, head.head_hash
    FROM head
    RETURNING id
    """
)


# Exactly what json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) builds on
# every call; built once because verification encodes every entry.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_details(details: Any) -> str:
    """One spelling of a JSON value, so the hash survives a round trip through JSONB."""
    return _CANONICAL.encode(details)


def _canonical_from_jsonb() -> Callable[[str], str]:
    """`canonical_details(json.loads(text))` for verify's hot loop, at about half the cost: the
    C scanner without `loads`' wrapping (JSONB text has no surrounding whitespace) and one C
    encoder built once instead of per call. Same output; the pure-Python fallback is the plain
    spelling."""
    scan = json.JSONDecoder().scan_once
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return lambda text: _CANONICAL.encode(json.loads(text))
    encode = make(None, None, json.encoder.encode_basestring, None, ":", ",", True, False, True)
    join = "".join
    return lambda text: join(encode(scan(text, 0)[0], 0))


def as_jsonb(value: Any) -> Any:
    """The value as JSONB will give it back, so the hash covers what `verify` will read.

    JSONB keeps numbers as exact decimals and keys as strings: -0.0 comes back as 0.0, 1e+20 as
    the integer 100000000000000000000, and the key 10 as "10" (sorting after "9" no longer).
    """
    if isinstance(value, dict):
        return {_jsonb_key(k): as_jsonb(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_jsonb(v) for v in value]
    if isinstance(value, float) and math.isfinite(value):
        if value == 0:
            return 0.0
        if value.is_integer() and "e" in repr(value):
            return int(Decimal(repr(value)))
    return value


def _jsonb_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    return json.dumps(key) if isinstance(key, bool) or key is None else str(key)


def payload(
    *,
    entity_type: str,
    entity_id: int,
    project_id: int | None,
    task_id: int | None,
    action: str,
    actor_id: int | None,
    actor_handle: str,
    actor_type: str,
    details: str,
    request_id: str | None,
    via: str,
    created_at: datetime,
) -> bytes:
    """The bytes an entry's hash covers: every column a reader relies on."""
    parts = (
        entity_type,
        str(entity_id),
        "" if project_id is None else str(project_id),
        "" if task_id is None else str(task_id),
        action,
        "" if actor_id is None else str(actor_id),
        actor_handle,
        actor_type,
        details,
        request_id or "",
        via,
        created_at.astimezone(UTC).isoformat(timespec="microseconds"),
    )
    return SEP.join(parts).encode()


PAYLOAD_COLUMNS = (
    "entity_type",
    "entity_id",
    "project_id",
    "task_id",
    "action",
    "actor_id",
    "actor_handle",
    "actor_type",
    "request_id",
    "via",
    "created_at",
)


def payload_of(row: Mapping[str, Any], details: Any = None) -> bytes:
    """The hashed bytes of a stored entry, from its columns: for tools and tests that re-hash
    rows by hand. `details` overrides the row's (parsed JSON or JSONB text)."""
    value = row["details"] if details is None else details
    parsed = json.loads(value) if isinstance(value, str) else value
    return payload(**{k: row[k] for k in PAYLOAD_COLUMNS}, details=canonical_details(parsed))


def _append_params(
    actor: Actor,
    *,
    entity_type: str,
    entity_id: int,
    action: str,
    project_id: int | None = None,
    task_id: int | None = None,
    details: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    actor_override: tuple[int | None, str, str] | None = None,
) -> dict[str, Any]:
    """The bind parameters of `_APPEND` for one entry."""
    when = (created_at or datetime.now(UTC)).astimezone(UTC)
    actor_id, handle, actor_type = actor_override or (actor.worker_id, actor.handle, actor.type)
    body = canonical_details(as_jsonb(to_jsonable_python(details or {})))
    fields: dict[str, Any] = {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "project_id": project_id,
        "task_id": task_id,
        "action": action,
        "actor_id": actor_id,
        "actor_handle": handle,
        "actor_type": str(actor_type),
        "details": body,
        "request_id": actor.request_id,
        "via": str(actor.via),
        "created_at": when,
    }
    return {**fields, "payload": payload(**fields), "genesis": GENESIS}


async def record(
    session: AsyncSession,
    actor: Actor,
    *,
    entity_type: str,
    entity_id: int,
    action: str,
    project_id: int | None = None,
    task_id: int | None = None,
    details: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    actor_override: tuple[int | None, str, str] | None = None,
) -> int:
    """Append one entry inside the caller's transaction and return its id.

    `actor_override` (id, handle, type) lets the Phase 1 importer keep the original actor while
    `via` still says `import`.
    """
    params = _append_params(
        actor,
        entity_type=entity_type,
        entity_id=entity_id,
        action=action,
        project_id=project_id,
        task_id=task_id,
        details=details,
        created_at=created_at,
        actor_override=actor_override,
    )
    result = await session.execute(_APPEND, params)
    return int(result.scalar_one())


async def record_many(
    session: AsyncSession, actor: Actor, entries: Iterable[Mapping[str, Any]]
) -> None:
    """Append many entries, in order, inside the caller's transaction, in one round trip.

    Each item holds `record`'s keyword arguments. The entries are the same as `record` called
    once per item (the statements run one after another, so entries of one entity still chain);
    no ids come back.
    """
    params = [_append_params(actor, **entry) for entry in entries]
    if params:
        await session.execute(_APPEND, params)


@dataclass(frozen=True, slots=True)
class InsertedEntry:
    """An entry that one statement appends about a row it inserts in the same statement, where
    the row's id (and the acting worker, read from the same statement) only the database knows.

    The hashed bytes are `before || "<entity_id>\x1f<project_id>\x1f<task_id>" || middle ||
    "<actor_id>\x1f<actor_handle>\x1f<actor_type>" || after`, the statement rendering the ids
    (`id::text`) and the actor's columns exactly as `payload` renders them, so the entry hashes
    and verifies like any other. The remaining columns are bound as given here.
    """

    before: bytes
    middle: bytes
    after: bytes
    details: str
    request_id: str | None
    via: str
    created_at: datetime


def inserted_entry(
    *,
    entity_type: str,
    action: str,
    via: str,
    request_id: str | None,
    details: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> InsertedEntry:
    """`_append_params` for an entry built by the statement itself (see `InsertedEntry`)."""
    when = (created_at or datetime.now(UTC)).astimezone(UTC)
    body = canonical_details(as_jsonb(to_jsonable_python(details or {})))
    after = (body, request_id or "", via, when.isoformat(timespec="microseconds"))
    return InsertedEntry(
        before=(entity_type + SEP).encode(),
        middle=(SEP + action + SEP).encode(),
        after=(SEP + SEP.join(after)).encode(),
        details=body,
        request_id=request_id,
        via=via,
        created_at=when,
    )


@dataclass
class VerifyResult:
    """What `verify` found: ok, or the first entry that breaks its chain and why."""

    ok: bool
    entries_checked: int
    chains_checked: int
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first_problem(self) -> dict[str, Any] | None:
        return self.problems[0] if self.problems else None


_HEADS_SQL = "SELECT entity_type, entity_id, seq, head_hash FROM audit_heads"

# The payload of each entry is assembled by PostgreSQL around the details (which Python must
# re-serialise canonically): the server formats while Python hashes, which keeps verification
# well above 100,000 entries/s. `payload()` stays the one definition, and the test
# `test_sql_built_payload_matches_payload` holds the two spellings together.
_VERIFY_SQL = """
    SELECT id, entity_type, entity_id, seq, action,
           concat_ws(chr(31), entity_type, entity_id::text, coalesce(project_id::text, ''),
                     coalesce(task_id::text, ''), action, coalesce(actor_id::text, ''),
                     actor_handle, actor_type, '') AS head,
           details::text AS details,
           concat_ws(chr(31), '', coalesce(request_id, ''), via,
                     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
                     || '+00:00') AS tail,
           prev_hash, hash
    FROM audit_log ORDER BY entity_type, entity_id, seq, id
"""


def _why(found_seq: int, expected_seq: int, prev_ok: bool) -> str:
    """Why an entry breaks its chain (only called for an entry that does)."""
    if found_seq != expected_seq:
        return (
            f"expected sequence {expected_seq} but found {found_seq}: an entry before it was "
            "removed, or this one was inserted or reordered by hand"
        )
    if not prev_ok:
        return "its previous-hash does not match the entry before it (removed or reordered)"
    return "its content does not match its hash (changed after it was written)"


async def _batches_ahead(raw: Any, query: str, batch: int = 1_000) -> AsyncIterator[list[Any]]:
    """Rows of `query` (inside the caller's transaction) with the next batch already requested,
    so the server reads and formats batch n+1 while Python hashes batch n. Memory stays at two
    batches; stopping early lets the request in flight finish instead of cancelling it."""
    cursor = await raw.cursor(query)
    queue: asyncio.Queue[list[Any] | None] = asyncio.Queue(maxsize=1)
    stop = False

    async def produce() -> None:
        try:
            while not stop:
                rows = await cursor.fetch(batch)
                if rows:
                    await queue.put(rows)
                if len(rows) < batch:
                    break
        finally:
            await queue.put(None)

    producer = asyncio.create_task(produce())
    finished = False
    try:
        while (rows := await queue.get()) is not None:
            yield rows
        finished = True
    finally:
        stop = True
        while not finished:
            finished = await queue.get() is None
        await producer


@dataclass(slots=True)
class _Walk:
    """How far the walk through the chains got: the current chain and its last entry."""

    etype: str | None = None
    eid: int | None = None
    prev: bytes = GENESIS
    seq: int = 0
    last_id: int = 0
    entries: int = 0
    chains: int = 0

    def close_chain(self, seen: dict[tuple[str, int], tuple[int, bytes, int]]) -> None:
        if self.etype is not None and self.eid is not None:
            seen[(self.etype, self.eid)] = (self.seq, self.prev, self.last_id)


def _walk_batch(
    rows: list[Any],
    walk: _Walk,
    seen: dict[tuple[str, int], tuple[int, bytes, int]],
    problems: list[dict[str, Any]],
    max_problems: int,
) -> bool:
    """Check a batch of entries in chain order; True once `max_problems` were found.

    The hot loop of `verify`: state lives in locals and goes back into `walk` at the end.
    """
    etype_now, eid_now, prev, seq, last_id = walk.etype, walk.eid, walk.prev, walk.seq, walk.last_id
    entries, chains = walk.entries, walk.chains
    canonical, sha256 = _canonical_from_jsonb(), hashlib.sha256
    full = False
    for entry_id, etype, eid, found, action, head, details, tail, prev_hash, stored in rows:
        if eid != eid_now or etype != etype_now:
            if etype_now is not None:
                seen[(etype_now, eid_now)] = (seq, prev, last_id)
            etype_now, eid_now, prev, seq = etype, eid, GENESIS, 0
            chains += 1
        seq += 1
        entries += 1
        body = (head + canonical(details) + tail).encode()
        if found != seq or prev_hash != prev or sha256(prev + body).digest() != stored:
            problems.append(
                {
                    "entry_id": entry_id,
                    "entity": f"{etype}:{eid}",
                    "seq": found,
                    "action": action,
                    "reason": _why(found, seq, prev_hash == prev),
                }
            )
            if len(problems) >= max_problems:
                full = True
                break
        prev, seq, last_id = stored, found, entry_id
    walk.etype, walk.eid, walk.prev, walk.seq, walk.last_id = etype_now, eid_now, prev, seq, last_id
    walk.entries, walk.chains = entries, chains
    return full


async def verify(db: Database, *, max_problems: int = 10) -> VerifyResult:
    """Recompute every chain in a read-only snapshot of its own (for the CLI, bench and tests);
    operations use `verify_in` on their unit of work's connection."""
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        async with raw.transaction(isolation="repeatable_read", readonly=True):
            return await verify_in(raw, max_problems=max_problems)


async def verify_in(raw: Any, *, max_problems: int = 10) -> VerifyResult:
    """Recompute every chain and compare with the stored heads; streams, so memory stays flat.

    `raw` is an asyncpg connection inside a REPEATABLE READ transaction, so the heads and the
    entries are read from the same moment.
    """
    result = VerifyResult(ok=True, entries_checked=0, chains_checked=0)
    seen: dict[tuple[str, int], tuple[int, bytes, int]] = {}
    walk = _Walk()
    heads = {
        (r["entity_type"], r["entity_id"]): (r["seq"], bytes(r["head_hash"]))
        for r in await raw.fetch(_HEADS_SQL)
    }
    async with aclosing(_batches_ahead(raw, _VERIFY_SQL)) as batches:
        async for rows in batches:
            if _walk_batch(rows, walk, seen, result.problems, max_problems):
                break
    walk.close_chain(seen)
    result.entries_checked, result.chains_checked = walk.entries, walk.chains
    _compare_heads(result, heads, seen, max_problems)
    result.ok = not result.problems
    return result


def _compare_heads(
    result: VerifyResult,
    heads: dict[tuple[str, int], tuple[int, bytes]],
    seen: dict[tuple[str, int], tuple[int, bytes, int]],
    max_problems: int,
) -> None:
    """A chain whose last entry is not its recorded head lost its tail or gained one by hand.

    `seen` maps each chain to (last seq, last hash, last entry id) as found in the log.
    """
    if len(result.problems) >= max_problems:
        return
    for key in sorted(set(heads) | set(seen)):
        head, last = heads.get(key), seen.get(key)
        if head is not None and last is not None and head == last[:2]:
            continue
        entity = f"{key[0]}:{key[1]}"
        entry_id = None
        if last is None:
            why = f"the chain's head says {head[0]} entries but none remain (all removed)"
        elif head is None:
            why = "entries exist for an entity no append ever registered (inserted by hand)"
            entry_id = last[2]
        elif head[0] > last[0]:
            why = f"the last {head[0] - last[0]} entry(ies) of this chain were removed"
        else:
            why = "the chain ends in an entry its recorded head does not know (inserted or changed)"
            entry_id = last[2]
        result.problems.append(
            {
                "entry_id": entry_id,
                "entity": entity,
                "seq": last[0] if last else None,
                "reason": why,
            }
        )
        if len(result.problems) >= max_problems:
            return


_DIGEST_SQL = """
    SELECT DISTINCT ON (entity_type, entity_id) entity_type, entity_id, seq, hash
    FROM audit_log WHERE id <= $1
    ORDER BY entity_type, entity_id, seq DESC
"""


def _fold(rows: Iterable[Any]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r['entity_type']}{SEP}{r['entity_id']}{SEP}{r['seq']}{SEP}".encode())
        h.update(bytes(r["hash"]))
    return h.hexdigest()


async def digest(db: Database) -> str:
    """One value over every chain head, as `tfd1:<last id>:<sha256>`: store it somewhere else.

    The last id makes the value checkable later, after more entries were appended.
    """
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        last = await _settled_last_id(raw)
        rows = await raw.fetch(_DIGEST_SQL, last)
    return f"tfd1:{last}:{_fold(rows)}"


_LOCK_NOT_AVAILABLE = "55P03"


async def settle_snapshot(session: AsyncSession) -> int:
    """Start the caller's REPEATABLE READ snapshot at a settled moment; the settled last id.

    Called before any read of the transaction: under the SHARE lock (see
    `_settled_last_id`) no entry is being written, so the snapshot the first read takes holds
    every entry up to the newest id. The lock is taken in a savepoint that is rolled back at
    once, which releases it while the snapshot stays: writers pause only for that moment.
    """
    savepoint = await session.begin_nested()
    try:
        await session.execute(text("LOCK TABLE audit_log IN SHARE MODE"))
        last = int(await session.scalar(text("SELECT coalesce(max(id), 0) FROM audit_log")) or 0)
    except DBAPIError as exc:
        await savepoint.rollback()
        if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise Unavailable("the audit log is busy with a long write: retry the digest") from None
        raise
    await savepoint.rollback()
    return last


async def digest_in(raw: Any, last: int) -> str:
    """The digest up to `last` (from `settle_snapshot`), read in the caller's snapshot."""
    return f"tfd1:{last}:{_fold(await raw.fetch(_DIGEST_SQL, last))}"


async def raw_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's transaction, for the streaming reads.

    SQLAlchemy sends BEGIN with the first statement; a `SET LOCAL` (which takes no snapshot)
    sends it now, so asyncpg's cursors run inside the transaction and a REPEATABLE READ snapshot
    still starts at the caller's first read. No lock is waited on for more than 10 seconds.
    """
    await session.execute(text("SET LOCAL lock_timeout = '10s'"))
    conn = await session.connection()
    return (await conn.get_raw_connection()).driver_connection


async def _settled_last_id(raw: Any) -> int:
    """The newest entry id below which no transaction can still commit an entry.

    Ids are handed out at insert but commits land in any order, so the newest visible id may
    have an older id still uncommitted below it; a digest taken then would later miss it. A SHARE
    lock waits for every transaction that is inserting right now (writers hold ROW EXCLUSIVE until
    they end) and is released at once: later writers get higher ids. Appends pause only for that
    moment.
    """
    try:
        async with raw.transaction():
            await raw.execute("SET LOCAL lock_timeout = '10s'")
            await raw.execute("LOCK TABLE audit_log IN SHARE MODE")
            return int(await raw.fetchval("SELECT coalesce(max(id), 0) FROM audit_log"))
    except asyncpg.LockNotAvailableError:
        raise Unavailable("the audit log is busy with a long write: retry the digest") from None


async def check_digest(db: Database, value: str) -> bool:
    """True when the log up to the digest's last id still hashes to the stored value."""
    try:
        tag, last_text, expected = value.strip().split(":")
        last = int(last_text)
    except ValueError:
        raise ValidationFailed(
            "not a TaskFlow audit digest: expected 'tfd1:<last id>:<hex>' as printed by "
            "`taskflow audit digest`",
            field="digest",
        ) from None
    if tag != "tfd1":
        raise ValidationFailed(f"unknown digest version {tag!r}", field="digest")
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        rows = await raw.fetch(_DIGEST_SQL, last)
    return _fold(rows) == expected
