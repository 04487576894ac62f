"""The feed: the audit log read as a stream of events, resumable by entry id, woken by NOTIFY.

**The channel** (for anything else that wants to be woken by new entries: webhooks, MCP
subscriptions): `CHANNEL = "taskflow_audit"`, payload JSON `{"id": <entry id>}` (`parse_notice`):
every entry up to that one, in feed order, is committed and readable. It is sent by one hub per
database, the announcer (see `Hub`), after it read new entries, never by the writers; so a
rolled-back change, which never reaches the log, announces nothing. A notification only says
"look": read the log after your own position (`read_after`) for the rows.

**The order.** Entry ids are handed out at insert while transactions commit in any order, so a
reader that resumed "after id N" could miss an entry N-1 that committed later. Each entry keeps
its transaction id (`audit_log.xact`); the feed reads in (xact, id) order and only entries whose
transaction is older than the oldest still running (`pg_snapshot_xmin`): nothing can commit
behind such a position later. An event's id is still its entry id; resuming after id N looks up
N's position. A long-running writing transaction delays the feed (not the writers) until it
ends.

**Delivery.** One `Hub` per process holds one direct connection that LISTENs, reads each new
settled batch once, and hands it to every `Subscription`; each subscription filters it for its
reader (the audit trail's visibility rule: entries of the reader's projects and entries outside
any project) and its filters. A reader first catches up from its own position by query, then
follows the hub; one that falls too far behind catches up by query again, so nothing is lost
and nothing comes twice. Behind a transaction-mode pooler (which cannot LISTEN) the hub polls
the log every `FEED_POLL_SECONDS` instead, unless `DATABASE_DIRECT_URL` names a direct URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import orjson

from taskflow.core.actor import Actor
from taskflow.core.db import Database, to_async_url
from taskflow.core.errors import NotFound, Unavailable, ValidationFailed

log = logging.getLogger("taskflow.feed")
T = TypeVar("T")

CHANNEL = "taskflow_audit"
"""The NOTIFY channel of new audit entries (payload: see `parse_notice`)."""

HEARTBEAT_SECONDS = 15.0
ANNOUNCE_SECONDS = 0.05
"""How often the announcer reads the log for new entries (each find is one NOTIFY)."""
ANNOUNCER_RETRY_SECONDS = 2.0
"""How often a hub that does not announce tries to become the announcer, and reads anyway."""
ANNOUNCER_LOCK = 0x7466_6565_6401
"""The session advisory lock the announcing hub holds (one per database)."""
BATCH = 1_000
QUEUE_BATCHES = 256
"""Batches a subscription may hold unread before it falls back to catching up by query."""

MEMBERSHIP_ACTIONS = frozenset({"member_added", "member_removed", "role_changed"})


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification: the newest settled entry's id (every entry up to it, in feed order,
    is committed and readable: read after your position)."""

    id: int


def notice_payload(entry_id: int) -> str:
    return orjson.dumps({"id": entry_id}).decode()


def parse_notice(payload: str) -> Notice | None:
    """The notification's entry id, or None for a payload not ours."""
    try:
        return Notice(int(orjson.loads(payload)["id"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a reader stands: (transaction id, entry id) of the last entry it passed."""

    xact: int
    id: int


START = Position(0, 0)

_COLUMNS = """
    a.id, a.xact::text AS xact, a.entity_type, a.entity_id, a.seq, a.project_id,
    a.task_id, a.action, a.actor_handle, a.actor_type, a.details::text AS details,
    a.request_id, a.via, a.created_at
"""
_SETTLED = "a.xact < pg_snapshot_xmin(pg_current_snapshot())"
_AFTER = "(a.xact, a.id) > ($1::text::xid8, $2::bigint)"


@dataclass(frozen=True, slots=True)
class Event:
    """One audit entry as the feed hands it out (`as_json` is `AuditEntryOut`'s shape)."""

    position: Position
    entity_type: str
    entity_id: int
    seq: int
    project_id: int | None
    task_id: int | None
    action: str
    actor: str
    actor_type: str
    details: dict[str, Any]
    request_id: str | None
    via: str
    created_at: datetime

    @property
    def id(self) -> int:
        return self.position.id

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "seq": self.seq,
            "project_id": self.project_id,
            "task_id": self.task_id,
            "action": self.action,
            "actor": self.actor,
            "actor_type": self.actor_type,
            "details": self.details,
            "request_id": self.request_id,
            "via": self.via,
            "created_at": self.created_at.isoformat(),
        }


def _event(row: Any) -> Event:
    return Event(
        position=Position(int(row["xact"]), row["id"]),
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        seq=row["seq"],
        project_id=row["project_id"],
        task_id=row["task_id"],
        action=row["action"],
        actor=row["actor_handle"],
        actor_type=row["actor_type"],
        details=orjson.loads(row["details"]),
        request_id=row["request_id"],
        via=row["via"],
        created_at=row["created_at"],
    )


@dataclass
class Scope:
    """What one reader may see and asked to see, resolved (ids, not slugs).

    `worker_id`/`handle`: the reader (visibility: entries of their projects, and entries outside
    any project). Filters: `project_id`, `task_id` (the task and its whole subtree), `actor`
    (handle), `action`, `mine` (entries mentioning the reader, about tasks assigned to them, or
    about their own worker record).
    """

    worker_id: int | None
    handle: str
    project_id: int | None = None
    task_id: int | None = None
    actor: str | None = None
    action: str | None = None
    mine: bool = False
    projects: frozenset[int] = frozenset()
    seen_tasks: set[int] = field(default_factory=set)
    """Tasks of the subtree already passed: their deletion still reaches a `task_id` reader."""

    @property
    def needs_query(self) -> bool:
        """Whether a batch must be checked in the database (subtree, assignments)."""
        return self.task_id is not None or self.mine

    def clause(self, params: list[Any]) -> str:
        """The SQL conditions of this scope over `audit_log a`; appends their parameters."""

        def p(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        conds = [
            "(a.project_id IS NULL OR a.project_id IN "
            f"(SELECT project_id FROM project_members WHERE worker_id = {p(self.worker_id)}))"
        ]
        if self.project_id is not None:
            conds.append(f"a.project_id = {p(self.project_id)}")
        if self.actor is not None:
            conds.append(f"a.actor_handle = {p(self.actor)}")
        if self.action is not None:
            conds.append(f"a.action = {p(self.action)}")
        if self.task_id is not None:
            conds.append(
                "a.task_id IN (WITH RECURSIVE sub AS ("
                f"SELECT id FROM tasks WHERE id = {p(self.task_id)} "
                "UNION ALL SELECT c.id FROM tasks c JOIN sub ON c.parent_id = sub.id) "
                "SELECT id FROM sub)"
            )
        if self.mine:
            me = p(self.worker_id)
            conds.append(
                f"(a.details -> 'mentions' ? {p(self.handle)}"
                f" OR a.task_id IN (SELECT id FROM tasks WHERE assignee_id = {me})"
                f" OR (a.entity_type = 'worker' AND a.entity_id = {me}))"
            )
        return " AND ".join(conds)

    def passes(self, event: Event) -> bool:
        """The conditions Python can check alone (everything but subtree and assignments)."""
        if event.project_id is not None and event.project_id not in self.projects:
            return False
        if self.project_id is not None and event.project_id != self.project_id:
            return False
        if self.actor is not None and event.actor != self.actor:
            return False
        return self.action is None or event.action == self.action


async def resolve_scope(
    conn: Any,
    actor: Actor,
    *,
    project: str | int | None = None,
    task_id: int | None = None,
    actor_handle: str | None = None,
    action: str | None = None,
    mine: bool = False,
) -> Scope:
    """The reader's scope; a project or task they cannot see is `NotFound`, as everywhere."""
    scope = Scope(actor.worker_id, actor.handle, actor=actor_handle, action=action, mine=mine)
    if project is not None:
        ref = str(project)
        as_id = int(ref) if ref.isascii() and ref.isdigit() and len(ref) <= 18 else None
        row = await conn.fetchrow(
            "SELECT p.id FROM projects p JOIN project_members m ON m.project_id = p.id "
            "AND m.worker_id = $1 WHERE p.slug = $2 OR p.id = $3 "
            "ORDER BY p.slug = $2 DESC LIMIT 1",
            actor.worker_id,
            ref,
            as_id,
        )
        if row is None:
            raise NotFound(f"project {ref} not found", entity="project")
        scope.project_id = row["id"]
    if task_id is not None:
        seen = await conn.fetchval(
            "SELECT 1 FROM tasks t JOIN project_members m ON m.project_id = t.project_id "
            "AND m.worker_id = $1 WHERE t.id = $2",
            actor.worker_id,
            task_id,
        )
        if seen is None:
            raise NotFound(f"task {task_id} not found", entity="task")
        scope.task_id = task_id
    await refresh_projects(conn, scope)
    return scope


async def refresh_projects(conn: Any, scope: Scope) -> None:
    rows = await conn.fetch(
        "SELECT project_id FROM project_members WHERE worker_id = $1", scope.worker_id
    )
    scope.projects = frozenset(r["project_id"] for r in rows)


async def position_of(conn: Any, entry_id: int) -> Position:
    """Where the entry `entry_id` stands in the feed (0: before the first entry)."""
    if entry_id == 0:
        return START
    xact = await conn.fetchval("SELECT xact::text FROM audit_log WHERE id = $1", entry_id)
    if xact is None:
        raise ValidationFailed(
            f"no audit entry {entry_id} to resume after: pass the id of the last event you "
            "received (or 0 for the beginning)",
            field="after",
        )
    return Position(int(xact), entry_id)


async def latest(conn: Any) -> Position:
    """The newest settled position: a reader starting here gets only what comes next."""
    row = await conn.fetchrow(
        f"SELECT a.xact::text AS xact, a.id FROM audit_log a WHERE {_SETTLED} "
        "ORDER BY a.xact DESC, a.id DESC LIMIT 1"
    )
    return START if row is None else Position(int(row["xact"]), row["id"])


async def read_after(
    conn: Any,
    after: Position,
    *,
    scope: Scope | None = None,
    upto: Position | None = None,
    limit: int = BATCH,
) -> tuple[list[Event], Position]:
    """Settled entries after `after` in feed order (at most `limit` scanned), and the position
    of the last one scanned (so a page whose every entry the scope filtered out still moves).

    With `scope`, only what that reader may see and asked for comes back; `upto` stops there.
    """
    params: list[Any] = [str(after.xact), after.id]
    conds = [_AFTER, _SETTLED]
    if upto is not None:
        params += [str(upto.xact), upto.id]
        conds.append("(a.xact, a.id) <= ($3::text::xid8, $4::bigint)")
    scanned = await conn.fetch(
        f"SELECT a.xact::text AS xact, a.id FROM audit_log a WHERE {' AND '.join(conds)} "
        f"ORDER BY a.xact, a.id LIMIT {int(limit)}",
        *params,
    )
    if not scanned:
        return [], after
    end = Position(int(scanned[-1]["xact"]), scanned[-1]["id"])
    ids = [r["id"] for r in scanned]
    return await fetch_events(conn, ids, scope), end


async def fetch_events(conn: Any, ids: Sequence[int], scope: Scope | None) -> list[Event]:
    """The entries `ids` (in feed order) that `scope` lets through (all of them without one)."""
    params: list[Any] = [list(ids)]
    where = "a.id = ANY($1::bigint[])"
    if scope is not None:
        where += " AND " + scope.clause(params)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM audit_log a WHERE {where} ORDER BY a.xact, a.id", *params
    )
    return [_event(r) for r in rows]


async def recent(conn: Any, scope: Scope, limit: int) -> tuple[list[Event], Position]:
    """The last `limit` settled entries the reader may see (oldest first), and the position of
    the newest settled entry (the reader's bookmark)."""
    params: list[Any] = []
    clause = scope.clause(params)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM audit_log a WHERE {_SETTLED} AND {clause} "
        f"ORDER BY a.xact DESC, a.id DESC LIMIT {int(limit)}",
        *params,
    )
    return [_event(r) for r in reversed(rows)], await latest(conn)


_LOST = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    OSError,
)


@contextlib.asynccontextmanager
async def connection(db: Database) -> AsyncIterator[Any]:
    """A pooled connection's asyncpg driver for the feed's reads. These statements bypass
    SQLAlchemy, so a connection found dead here is invalidated by hand (else the pool would hand
    it out again) and the loss is `Unavailable`, as SQLAlchemy's would be."""
    async with db.guarded(), db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        try:
            yield raw
        except _LOST as exc:
            await conn.invalidate()
            raise Unavailable(f"the database connection was lost ({exc})") from None


class Subscription:
    """One reader's queue of batches from the hub, and where the hub stood when it joined."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.queue: asyncio.Queue[list[Event]] = asyncio.Queue()
        self.start = hub.position
        self.overflowed = False

    def push(self, batch: list[Event]) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= QUEUE_BATCHES:
            self.overflowed = True  # the reader catches up by query (`rejoin`)
            self._drain()
            self.queue.put_nowait([])  # wake it
            return
        self.queue.put_nowait(batch)

    def rejoin(self) -> Position:
        """Start over from the hub's current position (after an overflow); where to catch up to."""
        self._drain()
        self.overflowed = False
        self.start = self.hub.position
        return self.start

    def _drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()


class Hub:
    """The process's one reader of new entries: woken by NOTIFY (or polling), reads once, fans
    out.

    With a direct connection the hub LISTENs on `CHANNEL` and competes for `ANNOUNCER_LOCK`, a
    session advisory lock: the one hub (per database) that holds it is the announcer. It reads
    the log every `ANNOUNCE_SECONDS` and, whenever it found new settled entries, sends one
    `NOTIFY` naming the newest; every other hub, on any replica, reads when woken. Writers never
    NOTIFY: PostgreSQL serializes the commits of notifying transactions (a global lock held
    through the commit's flush), which cost the hot create path half its throughput (decision
    52). An announcer that dies releases its lock with its connection; another hub takes over
    within `ANNOUNCER_RETRY_SECONDS`, and every hub reads at least that often meanwhile.
    """

    def __init__(
        self,
        db: Database,
        *,
        listen_url: str | None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.db = db
        self.listen_url = listen_url
        self.poll_seconds = poll_seconds
        self.position = START
        self.subscriptions: set[Subscription] = set()
        self.listening = False
        self.announcing = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        self._started = asyncio.Lock()
        self._lock_tried = 0.0

    @property
    def mode(self) -> str:
        """ "listen" (NOTIFY wakes the hub) or "poll" (no direct connection to LISTEN on)."""
        return "listen" if self.listen_url else "poll"

    async def start(self) -> None:
        async with self._started:
            if self._task is not None:
                return
            async with connection(self.db) as raw:
                self.position = await latest(raw)
            if self.listen_url:
                await self._listen()
            self._task = asyncio.create_task(self._run(), name="taskflow-feed-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._unlisten()

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self.subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscriptions.discard(sub)

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        notice = parse_notice(payload)
        if notice is not None:
            self._wake.set()

    def _lost(self, conn: Any) -> None:
        self.listening = self.announcing = False
        self._listener = None
        self._wake.set()

    async def _listen(self) -> None:
        try:
            assert self.listen_url is not None
            conn = await asyncpg.connect(self.listen_url, timeout=10)
            await conn.add_listener(CHANNEL, self._notified)
            conn.add_termination_listener(self._lost)
        except (*_LOST, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("feed: cannot LISTEN (%s); polling until it can", exc)
            return
        self._listener = conn
        self.listening = True
        self._lock_tried = 0.0
        self._wake.set()  # anything written while we were not listening

    async def _unlisten(self) -> None:
        conn, self._listener = self._listener, None
        self.listening = self.announcing = False
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def _try_to_announce(self) -> None:
        """Become the announcer if none is (the lock is free), at most once per retry period."""
        now = asyncio.get_running_loop().time()
        if self._listener is None or now - self._lock_tried < ANNOUNCER_RETRY_SECONDS:
            return
        self._lock_tried = now
        got = await self._listener.fetchval("SELECT pg_try_advisory_lock($1)", ANNOUNCER_LOCK)
        if got and not self.announcing:
            log.info("feed: this process announces new audit entries")
        self.announcing = bool(got)

    def _timeout(self) -> float:
        if not self.listening:
            return self.poll_seconds
        return ANNOUNCE_SECONDS if self.announcing else ANNOUNCER_RETRY_SECONDS

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._timeout())
            self._wake.clear()
            try:
                if self.listen_url and not self.listening:
                    await self._listen()
                if self.listening and not self.announcing:
                    await self._try_to_announce()
                moved = await self._advance()
                if moved and self.announcing and self._listener is not None:
                    await self._listener.execute(
                        "SELECT pg_notify($1, $2)", CHANNEL, notice_payload(self.position.id)
                    )
            except Exception as exc:  # an outage: keep the position, try again shortly
                log.warning("feed: reading the audit log failed (%s); retrying", exc)
                await asyncio.sleep(min(self.poll_seconds, 1.0))

    async def _advance(self) -> bool:
        """Read every settled entry after the hub's position and hand it to each subscriber."""
        moved = False
        async with connection(self.db) as raw:
            while True:
                events, end = await read_after(raw, self.position)
                if end == self.position:
                    break
                moved = True
                # No await between moving the position and pushing: a subscriber that joins
                # sees either this batch in its queue or the position after it.
                self.position = end
                if events:
                    for sub in list(self.subscriptions):
                        sub.push(events)
                if len(events) < BATCH:
                    break
        return moved


def listen_url_for(db: Database, direct_url: str | None) -> str | None:
    """The URL the hub LISTENs on: the direct URL when given, else the database's own unless it
    is a transaction-mode pooler (which cannot LISTEN: the hub polls)."""
    url = direct_url or (None if db.pooled else db.engine.url.render_as_string(False))
    if url is None:
        return None
    return to_async_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def follow(
    hub: Hub,
    db: Database,
    scope: Scope,
    after: Position | None,
    *,
    on_ready: Callable[[Hub], None] | None = None,
) -> AsyncIterator[Event]:
    """Every event `scope` lets through after `after` (None: from now), live, exactly once:
    caught up by query from `after` to where the hub stood, then the hub's batches.
    `on_ready` is told once the reader is subscribed (from then on nothing is missed)."""
    await hub.start()
    sub = hub.subscribe()
    if on_ready is not None:
        on_ready(hub)
    try:
        cursor = sub.start if after is None else after
        upto: Position | None = sub.start
        while True:
            if upto is not None:
                async for event in _catch_up(db, scope, cursor, upto):
                    cursor = event.position
                    yield event
                cursor = max(cursor, upto)
                upto = None
            batch = await sub.queue.get()
            if sub.overflowed:
                upto = sub.rejoin()
                continue
            batch = [e for e in batch if e.position > cursor]
            if not batch:
                continue
            for event in await _admit(db, scope, batch):
                yield event
            cursor = batch[-1].position
    finally:
        hub.unsubscribe(sub)


async def _catch_up(
    db: Database, scope: Scope, cursor: Position, upto: Position
) -> AsyncIterator[Event]:
    while cursor < upto:
        events, end = await _retrying(
            lambda raw, at=cursor: read_after(raw, at, scope=scope, upto=upto), db
        )
        if end == cursor:
            return
        for event in events:
            _remember(scope, event)
            yield event
        cursor = end


async def _retrying(read: Callable[[Any], Awaitable[T]], db: Database) -> T:
    """`read(conn)` until the database answers: a follower waits out an outage (its stream
    stays open, heartbeats go on) and resumes at its position, losing nothing."""
    delay = 0.1
    while True:
        try:
            async with connection(db) as raw:
                return await read(raw)
        except Unavailable as exc:
            log.warning("feed: %s; retrying in %.1f s", exc.message, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _remember(scope: Scope, event: Event) -> None:
    if scope.task_id is not None and event.task_id is not None:
        scope.seen_tasks.add(event.task_id)


async def _admit(db: Database, scope: Scope, batch: list[Event]) -> list[Event]:
    """The events of a hub batch this reader may see and asked for."""
    if any(e.action in MEMBERSHIP_ACTIONS or e.entity_type == "project" for e in batch):
        await _retrying(lambda raw: refresh_projects(raw, scope), db)
    chosen = [e for e in batch if scope.passes(e)]
    if scope.needs_query and chosen:
        found = await _retrying(lambda raw: fetch_events(raw, [e.id for e in chosen], scope), db)
        ids = {e.id for e in found}
        chosen = [
            e
            for e in chosen
            if e.id in ids or (e.action == "deleted" and e.task_id in scope.seen_tasks)
        ]
    for event in chosen:
        _remember(scope, event)
    return chosen
