"""What a running surface holds: settings, the database and the authenticator, built once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskflow.core.auth.identity import Authenticator
from taskflow.core.config import Settings
from taskflow.core.db import Database

if TYPE_CHECKING:
    from taskflow.core.feed import Hub
    from taskflow.core.limits import RateLimiter


@dataclass
class Runtime:
    settings: Settings
    db: Database
    auth: Authenticator
    limiter: RateLimiter | None = None
    """Rate limits per worker (servers and stdio MCP); None for the CLI (one local user)."""
    _hub: Hub | None = field(default=None, repr=False)

    def hub(self) -> Hub:
        """The process's feed hub (`taskflow.core.feed`), made on first use and started by
        the first reader; it LISTENs on one direct connection, or polls behind a pooler."""
        if self._hub is None:
            from taskflow.core import feed  # here: processes without a reader never load it

            url = feed.listen_url_for(self.db, self.settings.database_direct_url)
            self._hub = feed.Hub(
                self.db, listen_url=url, poll_seconds=self.settings.feed_poll_seconds
            )
        return self._hub

    @property
    def local_mode(self) -> bool:
        """No auth server: a single-user installation, as Phase 1 was."""
        return self.auth.verifier is None

    async def close(self) -> None:
        if self.limiter is not None:
            await self.limiter.close()
        if self._hub is not None:
            await self._hub.close()
        if self.auth.verifier is not None:
            await self.auth.verifier.jwks.aclose()
        await self.db.close()


async def open_runtime(settings: Settings, *, db: Database | None = None) -> Runtime:
    """The runtime for `settings` (or over `db`): `taskflow.core.bootstrap.open_runtime`."""
    from taskflow.core import bootstrap  # here: bootstrap builds on this module

    return await bootstrap.open_runtime(settings, db=db)
