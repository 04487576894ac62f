"""The unit of work: the one transaction every handler of one call works inside.

Only the dispatcher opens one (`taskflow.core.dispatcher`). Handlers receive it, read and write
through `session`, append audit entries through `record`, and call other handlers with the same
unit of work, so composite work (a project and its owner's membership, an import) commits or
rolls back as one, with no `insert_*` twins of the services.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskflow.core import audit
from taskflow.core.actor import Actor


@dataclass(slots=True)
class UnitOfWork:
    """An open transaction. Commit and rollback belong to whoever opened it, never to a handler."""

    session: AsyncSession

    async def record(self, actor: Actor, **entry: Any) -> int:
        """Append one audit entry in this transaction: the change and its entry commit together."""
        return await audit.record(self.session, actor, **entry)

    async def record_many(self, actor: Actor, entries: Iterable[Mapping[str, Any]]) -> None:
        """Append many entries in order, in one round trip, in this transaction."""
        await audit.record_many(self.session, actor, entries)
