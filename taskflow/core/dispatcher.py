"""The dispatcher: the one place that opens a unit of work and runs an operation in it.

`dispatch(db, actor, command)` finds the command's declaration, opens the unit of work (its
transaction begins with the first statement; a change made in one statement may run alone, see
`taskflow.core.uow`), lets the handler work (its audit entries go into the same transaction),
stores the answer under the caller's idempotency key in that same transaction, and commits. A
retry after a crash therefore finds either the committed answer or nothing at all: there is no
reservation that can outlive its request, so no lease and no search of the audit log. Database
failures come out as domain errors (`Database.guarded` translates them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter

from taskflow.core.actor import Actor, KeyCaller
from taskflow.core.db import Database
from taskflow.core.declarations import Operation, operation_for
from taskflow.core.scopes import refuse_write
from taskflow.core.uow import UnitOfWork

SNAPSHOT = "REPEATABLE READ"
"""The isolation of operations declared with `snapshot=True`."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A handler's answer, and whether it was replayed from an earlier call with the same key."""

    value: Any
    replayed: bool = False


@cache
def _output_adapter(operation: Operation) -> TypeAdapter[Any]:
    return TypeAdapter(operation.output())


async def dispatch(
    db: Database, actor: Actor, command: BaseModel, *, idempotency_key: str | None = None
) -> Outcome:
    """Run `command` as `actor` in one transaction; replay the first answer for a repeated key.

    A read-only key is refused every mutating operation here, before anything runs (the one
    place for every surface); the other scopes are checked where projects and agents are
    looked up (`services.access`, `handlers.workers`).
    """
    operation = operation_for(command)
    if operation.mutating:
        refuse_write(actor.scopes, actor.key_prefix, operation.mcp or operation.name)
    key = idempotency_key if operation.mutating else None
    uow = UnitOfWork.lazy(db)  # nothing is opened until the handler (or the key) needs it
    async with db.guarded():
        try:
            if operation.snapshot:  # before any statement: the whole call sees one moment
                await uow.session.connection(execution_options={"isolation_level": SNAPSHOT})
            if key:
                from taskflow.core import idempotency  # here: reads never need it

                stored = await idempotency.replay_or_reserve(
                    uow.session, actor, key, operation.name, command.model_dump(mode="json")
                )
                if stored is not None:
                    await uow.commit()
                    return Outcome(_output_adapter(operation).validate_python(stored), True)
            value = await operation.handler(command, uow, actor)
            if key:
                from taskflow.core import idempotency

                status = operation.rest.status if operation.rest else 200
                await idempotency.remember(uow.session, actor, key, status, value)
            await uow.commit()
        finally:
            await uow.close()  # rolls back whatever did not commit
    return Outcome(value)


async def dispatch_by_key(db: Database, caller: KeyCaller, command: BaseModel) -> Outcome | None:
    """Run `command` for a caller known only by an API key, through the operation's `by_key`
    form (the key checked in the same statement); None when there is none or it declined, and
    the caller then authenticates and calls `dispatch`. No idempotency key: that needs the
    reservation `dispatch` makes first."""
    operation = operation_for(command)
    if operation.by_key is None:
        return None
    uow = UnitOfWork.lazy(db)
    async with db.guarded():
        try:
            value = await operation.by_key(command, uow, caller)
            await uow.commit()
        finally:
            await uow.close()
    return None if value is None else Outcome(value)


async def run(db: Database, actor: Actor, command: BaseModel) -> Any:
    """`dispatch` for callers that want only the answer (the CLI, tests, composite scripts)."""
    return (await dispatch(db, actor, command)).value
