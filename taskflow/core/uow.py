"""The unit of work: the one transaction every handler of one call works inside.

Only the dispatcher opens one (`taskflow.core.dispatcher`). Handlers receive it, read and write
through `session`, append audit entries through `record`, and call other handlers with the same
unit of work, so composite work (a project and its owner's membership, an import) commits or
rolls back as one, with no `insert_*` twins of the services.

The dispatcher's unit begins lazily: its session (and transaction) exists from the first use of
`session`. A handler whose whole change is one statement says so with `write_alone`; run before
anything else in the unit, that statement is its own transaction on the driver connection
(`taskflow.core.driver`): one round trip instead of BEGIN, statement, COMMIT and SQLAlchemy's
cost per statement. Inside a begun unit (an idempotency key was reserved first, the operation
reads a snapshot) the same statement simply runs in the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from taskflow.core import driver
from taskflow.core.actor import Actor
from taskflow.core.db import Database

if TYPE_CHECKING:  # a unit that only reads through `fetch` never loads SQLAlchemy
    from sqlalchemy.ext.asyncio import AsyncSession


class UnitOfWork:
    """An open transaction. Commit and rollback belong to whoever opened it, never to a handler.

    `UnitOfWork(session)` works in a transaction someone already opened; `UnitOfWork.lazy(db)`
    (the dispatcher's) opens its session on first use and is finished by `commit`/`close`.
    """

    __slots__ = ("_db", "_session")

    def __init__(self, session: AsyncSession | None = None, *, db: Database | None = None) -> None:
        if session is None and db is None:
            raise ValueError("a unit of work needs a session or a database")
        self._session = session
        self._db = db

    @classmethod
    def lazy(cls, db: Database) -> UnitOfWork:
        return cls(db=db)

    @property
    def begun(self) -> bool:
        """Whether the unit's transaction has begun (so a statement now runs inside it)."""
        return self._session is not None and self._session.in_transaction()

    @property
    def session(self) -> AsyncSession:
        """The unit's session; a lazy unit makes it now (its transaction begins on first use)."""
        if self._session is None:
            assert self._db is not None
            self._session = self._db.sessions()
        return self._session

    async def write_alone(self, sql: str, *args: Any) -> Mapping[str, Any] | None:
        """Run `sql` (static text, `$n` parameters) as this unit's one write; its first row.

        In a unit that has not begun, the statement is its own transaction (one round trip);
        later statements of the unit would not be atomic with it, so a handler may only read
        afterwards (to explain a refusal). In a begun unit it runs in the transaction.
        """
        if self.begun or self._db is None:
            return await self.fetchrow(sql, *args)
        return await driver.fetchrow(self._db, sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Mapping[str, Any] | None:
        """Run `sql` (static text, `$n` parameters) in the unit's transaction; its first row."""
        return await driver.fetchrow_in(await self.session.connection(), sql, *args)

    async def read(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        """Every row of one read-only statement (static text, `$n` parameters).

        In a unit that has not begun it runs alone on the driver connection, with no session:
        a read that needs nothing else (`list_tasks`) then costs one round trip and never
        loads SQLAlchemy. In a begun unit it runs in the transaction, seeing its changes.
        """
        if self.begun or self._db is None:
            return await driver.fetch_in(await self.session.connection(), sql, *args)
        return await driver.fetch(self._db, sql, *args)

    async def commit(self) -> None:
        if self.begun:
            await self._session.commit()  # type: ignore[union-attr]

    async def close(self) -> None:
        """Roll back whatever was not committed and give the connection back."""
        if self.begun:
            await self._session.close()  # type: ignore[union-attr]

    async def record(self, actor: Actor, **entry: Any) -> int:
        """Append one audit entry in this transaction: the change and its entry commit together."""
        from taskflow.core import audit  # here: a unit that only reads never loads it

        return await audit.record(self.session, actor, **entry)

    async def record_many(self, actor: Actor, entries: Iterable[Mapping[str, Any]]) -> None:
        """Append many entries in order, in one round trip, in this transaction."""
        from taskflow.core import audit

        await audit.record_many(self.session, actor, entries)
