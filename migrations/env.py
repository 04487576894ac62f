"""Alembic environment: runs on a connection handed in by `taskflow.core.db`, or its own."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from taskflow.core.config import Settings
from taskflow.core.db import database_url, to_async_url
from taskflow.core.models import Base

config = context.config
target_metadata = Base.metadata


def run_on(connection: object) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_standalone() -> None:
    """`alembic upgrade head` by hand: as the owner (DATABASE_MIGRATION_URL) when one is set."""
    settings = Settings()
    url = settings.database_migration_url if settings.database_url else None
    engine = create_async_engine(to_async_url(url or database_url(settings)))
    async with engine.begin() as conn:
        await conn.run_sync(run_on)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    asyncio.run(run_standalone())
