"""Writing, verifying and digesting the hash-chained audit log.

Each entity (a task, a project, a worker, an API key) has its own chain; an entry's hash covers its
fields and the previous entry's hash. Appending locks only that entity's head row, so busy tasks
never wait on each other. Verification recomputes every chain from the visible columns, so an
edit, deletion, reordering or hand-made insert shows up as the first entry whose hash disagrees.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import math
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
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
                           actor_key, client_request_id, prev_hash, hash)
    SELECT :entity_type, :entity_id, head.seq, :project_id, :task_id, :action, :actor_id,
           :actor_handle, :actor_type, CAST(:details AS jsonb), :request_id, :via, :created_at,
           :actor_key, :client_request_id, head.prev_hash, head.head_hash
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
    actor_key: str | None = None,
    client_request_id: str | None = None,
) -> bytes:
    """The bytes an entry's hash covers: every column a reader relies on.

    The key prefix and the client's request id follow only when either is set (`key_tail`), so
    entries written before those columns existed hash as they always did.
    """
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
    return (SEP.join(parts) + key_tail(actor_key, client_request_id)).encode()


def key_tail(actor_key: str | None, client_request_id: str | None) -> str:
    """What the payload ends with: nothing, or the key prefix and the client's request id."""
    if actor_key is None and client_request_id is None:
        return ""
    return SEP + (actor_key or "") + SEP + (client_request_id or "")


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
    "actor_key",
    "client_request_id",
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
        "actor_key": actor.key_prefix,
        "client_request_id": actor.client_request_id,
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
    actor_key: str | None = None
    client_request_id: str | None = None


def inserted_entry(
    *,
    entity_type: str,
    action: str,
    via: str,
    request_id: str | None,
    details: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    actor_key: str | None = None,
    client_request_id: str | None = None,
) -> InsertedEntry:
    """`_append_params` for an entry built by the statement itself (see `InsertedEntry`)."""
    when = (created_at or datetime.now(UTC)).astimezone(UTC)
    body = canonical_details(as_jsonb(to_jsonable_python(details or {})))
    after = (body, request_id or "", via, when.isoformat(timespec="microseconds"))
    return InsertedEntry(
        before=(entity_type + SEP).encode(),
        middle=(SEP + action + SEP).encode(),
        after=(SEP + SEP.join(after) + key_tail(actor_key, client_request_id)).encode(),
        details=body,
        request_id=request_id,
        via=via,
        created_at=when,
        actor_key=actor_key,
        client_request_id=client_request_id,
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

# What verify reads of each entry, in chain order. PostgreSQL formats every field of the payload
# but the first two and the details: the server formats while Python hashes. Python adds the
# chain's `entity_type SEP entity_id SEP` once per chain, re-serialises the details canonically
# (PostgreSQL cannot: JSONB orders keys by length first) and hashes. `payload()` stays the one
# definition; `test_sql_built_payload_matches_payload` holds the two spellings together. The order
# needs no `id`: (entity_type, entity_id, seq) is unique, so its index gives it without a sort.
_VERIFY_SQL = """
    SELECT entity_type, entity_id, seq, id, prev_hash,
           concat_ws(chr(31), coalesce(project_id::text, ''), coalesce(task_id::text, ''), action,
                     coalesce(actor_id::text, ''), actor_handle, actor_type, '') AS head,
           details::text AS details,
           concat_ws(chr(31), '', coalesce(request_id, ''), via,
                     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
           || CASE WHEN actor_key IS NULL AND client_request_id IS NULL THEN ''
                   ELSE chr(31) || coalesce(actor_key, '') || chr(31)
                        || coalesce(client_request_id, '') END
               AS tail,
           hash
    FROM audit_log ORDER BY entity_type, entity_id, seq
"""

_ACTIONS_SQL = "SELECT id, action FROM audit_log WHERE id = ANY($1::bigint[])"

_SORTED = orjson.OPT_SORT_KEYS


def _fast_canonical(text: str) -> bytes:
    """`canonical_details(json.loads(text)).encode()` for nearly every entry, four times faster:
    orjson sorts keys by code point and writes compact UTF-8 as the standard encoder does."""
    return orjson.dumps(orjson.loads(text), option=_SORTED)


_SPELLINGS = 4_096  # distinct details texts remembered at once (a few hundred KB at most)


def _spell(spellings: dict[str, bytes], details: str) -> bytes:
    """The canonical spelling of a details text, remembered: details repeat (status and progress
    changes, empty objects), and a lookup costs a quarter of a re-serialisation.

    orjson's spelling is used only where it reads the text exactly as `json.loads` does, so that
    verification stays exactly as strict as with the standard spelling: orjson reads integers
    beyond 64 bits as floats and writes small floats its own way, and in both cases its spelling
    holds a number with an exponent. Any exponent (or a text orjson refuses) sends the details
    to the standard spelling; a mismatch left after that is settled by `_exact_match`.
    """
    try:
        text = _fast_canonical(details)
        exact = b"e+" in text or b"e-" in text
    except (orjson.JSONDecodeError, TypeError):
        exact = True
    if exact:
        text = canonical_details(json.loads(details)).encode()
    if len(spellings) >= _SPELLINGS:
        spellings.clear()
    spellings[details] = text
    return text


def _exact_match(
    prev: bytes, prefix: str, head: str, details: str, tail: str, stored: bytes
) -> bool:
    """The entry's hash over `payload()`'s own spelling of the details (the slow, exact path)."""
    body = (prefix + head + canonical_details(json.loads(details)) + tail).encode()
    return hashlib.sha256(prev + body).digest() == stored


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


# A chain whose end disagrees with its recorded head: (entity, head (seq, hash) or None,
# last entry found (seq, hash, id) or None).
_End = tuple[tuple[str, int], tuple[int, bytes] | None, tuple[int, bytes, int] | None]


@dataclass(slots=True)
class _Walk:
    """How far the walk through the chains got, and the recorded heads not yet matched."""

    heads: dict[tuple[str, int], tuple[int, bytes]]
    problems: list[dict[str, Any]]
    max_problems: int
    ends: list[_End] = field(default_factory=list)
    spellings: dict[str, bytes] = field(default_factory=dict)
    etype: str | None = None
    eid: int = 0
    prefix: str = ""
    prev: bytes = GENESIS
    seq: int = 0
    last_id: int = 0
    entries: int = 0
    chains: int = 0

    @property
    def full(self) -> bool:
        return len(self.problems) >= self.max_problems

    def finish(self) -> None:
        """Match the last chain with its head; heads left over have lost every entry."""
        if self.etype is not None:
            _end_chain(
                self.heads, self.ends, (self.etype, self.eid), self.seq, self.prev, self.last_id
            )
        self.ends.extend((key, head, None) for key, head in self.heads.items())
        self.heads.clear()


def _end_chain(
    heads: dict[tuple[str, int], tuple[int, bytes]],
    ends: list[_End],
    key: tuple[str, int],
    seq: int,
    last_hash: bytes,
    last_id: int,
) -> None:
    """Compare a chain's last entry with its recorded head as soon as the chain is walked
    (`_walk_batch` spells the same test inline, once per chain)."""
    head = heads.pop(key, None)
    if head is None or head[0] != seq or head[1] != last_hash:
        ends.append((key, head, (seq, last_hash, last_id)))


def _position(rows: list[Any], row: Any) -> int:
    """Where `row` (the very object) sits in `rows`: only needed when a walk stops early."""
    return next(n for n, r in enumerate(rows) if r is row)


def _walk_batch(rows: list[Any], walk: _Walk) -> bool:
    """Check a batch of entries in chain order; True once `max_problems` were found.

    The hot loop of `verify`: state lives in locals and goes back into `walk` at the end. Per
    entry it checks the sequence, the link to the entry before (`prev_hash`) and recomputes the
    hash over the payload; a chain's end is compared with its recorded head when the next begins.
    """
    etype_now, eid_now, prefix, prev = walk.etype, walk.eid, walk.prefix, walk.prev
    seq, last_id, entries, chains = walk.seq, walk.last_id, walk.entries, walk.chains
    heads, ends, problems = walk.heads, walk.ends, walk.problems
    spellings = walk.spellings
    sha256, spelled, genesis, sep = hashlib.sha256, spellings.get, GENESIS, SEP
    full = False
    entries += len(rows)
    for row in rows:
        etype, eid, found, entry_id, prev_hash, head, details, tail, stored = row
        if eid != eid_now or etype != etype_now:
            if etype_now is not None:
                end = heads.pop((etype_now, eid_now), None)
                if end is None or end[0] != seq or end[1] != prev:
                    ends.append(((etype_now, eid_now), end, (seq, prev, last_id)))
            etype_now, eid_now, prev, seq = etype, eid, genesis, 0
            prefix = f"{etype}{sep}{eid}{sep}"
            chains += 1
        seq += 1
        text = spelled(details)
        if text is None:
            text = _spell(spellings, details)
        if (
            found != seq
            or prev_hash != prev
            or (
                sha256(prev + (prefix + head).encode() + text + tail.encode()).digest() != stored
                and not _exact_match(prev, prefix, head, details, tail, stored)
            )
        ):
            problems.append(
                {
                    "entry_id": entry_id,
                    "entity": f"{etype}:{eid}",
                    "seq": found,
                    "action": None,  # named after the walk (`_name_actions`)
                    "reason": _why(found, seq, prev_hash == prev),
                }
            )
            if len(problems) >= walk.max_problems:
                entries -= len(rows) - 1 - _position(rows, row)  # the rest was not walked
                full = True
                break
        prev, seq, last_id = stored, found, entry_id
    walk.etype, walk.eid, walk.prefix, walk.prev = etype_now, eid_now, prefix, prev
    walk.seq, walk.last_id, walk.entries, walk.chains = seq, last_id, entries, chains
    return full


async def verify(db: Database, *, max_problems: int = 10) -> VerifyResult:
    """Recompute every chain in a read-only snapshot of its own (for the CLI, bench and tests);
    operations use `verify_in` on their unit of work's connection."""
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        async with raw.transaction(isolation="repeatable_read", readonly=True):
            return await verify_in(raw, max_problems=max_problems)


async def verify_in(raw: Any, *, max_problems: int = 10) -> VerifyResult:
    """Recompute every chain and compare with the stored heads; streams, so memory stays flat
    (two batches of entries, plus one head per chain).

    `raw` is an asyncpg connection inside a REPEATABLE READ transaction, so the heads and the
    entries are read from the same moment.
    """
    with _cyclic_gc_paused():
        heads = {(r[0], r[1]): (r[2], r[3]) for r in await raw.fetch(_HEADS_SQL)}
        walk = _Walk(heads=heads, problems=[], max_problems=max_problems)
        async with aclosing(_batches_ahead(raw, _VERIFY_SQL)) as batches:
            async for rows in batches:
                if _walk_batch(rows, walk):
                    break
    if not walk.full:
        walk.finish()
        _compare_heads(walk.problems, walk.ends, max_problems)
    await _name_actions(raw, walk.problems)
    return VerifyResult(
        ok=not walk.problems,
        entries_checked=walk.entries,
        chains_checked=walk.chains,
        problems=walk.problems,
    )


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while verify streams: it allocates millions of short-lived
    rows and one head per chain, none in a cycle, and the collector's passes over them (and over
    the growing heads) cost a tenth of the run. Reference counting still frees every row; the
    collector's earlier state comes back at the end (a concurrent verify may re-enable it first,
    which costs only speed)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _name_actions(raw: Any, problems: list[dict[str, Any]]) -> None:
    """Fill in the action of each entry found broken (read only for the few that are)."""
    ids = [p["entry_id"] for p in problems if "action" in p]
    if ids:
        actions = {r["id"]: r["action"] for r in await raw.fetch(_ACTIONS_SQL, ids)}
        for p in problems:
            if "action" in p:
                p["action"] = actions.get(p["entry_id"])


def _compare_heads(problems: list[dict[str, Any]], ends: list[_End], max_problems: int) -> None:
    """A chain whose last entry is not its recorded head lost its tail or gained one by hand.

    `ends` holds each chain whose recorded head (seq, hash) and last entry found (seq, hash, id)
    disagree, or where one of the two is missing; reported in entity order.
    """
    for key, head, last in sorted(ends, key=lambda end: end[0]):
        if len(problems) >= max_problems:
            return
        entity = f"{key[0]}:{key[1]}"
        entry_id = None
        if last is None:
            assert head is not None
            why = f"the chain's head says {head[0]} entries but none remain (all removed)"
        elif head is None:
            why = "entries exist for an entity no append ever registered (inserted by hand)"
            entry_id = last[2]
        elif head[0] > last[0]:
            why = f"the last {head[0] - last[0]} entry(ies) of this chain were removed"
        else:
            why = "the chain ends in an entry its recorded head does not know (inserted or changed)"
            entry_id = last[2]
        problems.append(
            {
                "entry_id": entry_id,
                "entity": entity,
                "seq": last[0] if last else None,
                "reason": why,
            }
        )


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
SHARE_LOCK = "SELECT audit_log_share_lock()"
"""`LOCK TABLE audit_log IN SHARE MODE`, through the owner's function (migration 0010): the app's
role may not take that lock itself, since it holds no UPDATE, DELETE or TRUNCATE right there."""


async def settle_snapshot(session: AsyncSession) -> int:
    """Start the caller's REPEATABLE READ snapshot at a settled moment; the settled last id.

    Called before any read of the transaction: under the SHARE lock (see
    `_settled_last_id`) no entry is being written, so the snapshot the first read takes holds
    every entry up to the newest id. The lock is taken in a savepoint that is rolled back at
    once, which releases it while the snapshot stays: writers pause only for that moment.
    """
    savepoint = await session.begin_nested()
    try:
        await session.execute(text(SHARE_LOCK))
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
            await raw.execute(SHARE_LOCK)
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
