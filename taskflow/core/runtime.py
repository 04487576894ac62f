"""What a running surface holds: settings, the database and the authenticator, built once."""

from __future__ import annotations

from dataclasses import dataclass

from taskflow.core.auth.identity import Authenticator
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.limits import RateLimiter


@dataclass
class Runtime:
    settings: Settings
    db: Database
    auth: Authenticator
    limiter: RateLimiter | None = None
    """Rate limits per worker (servers and stdio MCP); None for the CLI (one local user)."""

    @property
    def local_mode(self) -> bool:
        """No auth server: a single-user installation, as Phase 1 was."""
        return self.auth.verifier is None

    async def close(self) -> None:
        if self.limiter is not None:
            await self.limiter.close()
        if self.auth.verifier is not None:
            await self.auth.verifier.jwks.aclose()
        await self.db.close()


async def open_runtime(settings: Settings, *, db: Database | None = None) -> Runtime:
    """The runtime for `settings` (or over `db`): `taskflow.core.bootstrap.open_runtime`."""
    from taskflow.core import bootstrap  # here: bootstrap builds on this module

    return await bootstrap.open_runtime(settings, db=db)
