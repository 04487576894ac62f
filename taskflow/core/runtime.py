"""What a running surface holds: settings, the database and the authenticator, built once."""

from __future__ import annotations

from dataclasses import dataclass

from taskflow.core.auth.identity import Authenticator
from taskflow.core.config import Settings
from taskflow.core.db import Database, open_database


@dataclass
class Runtime:
    settings: Settings
    db: Database
    auth: Authenticator

    @property
    def local_mode(self) -> bool:
        """No auth server: a single-user installation, as Phase 1 was."""
        return self.auth.verifier is None

    async def close(self) -> None:
        if self.auth.verifier is not None:
            await self.auth.verifier.jwks.aclose()
        await self.db.close()


async def open_runtime(settings: Settings, *, db: Database | None = None) -> Runtime:
    """Connect (and migrate) unless a database is given, and set up token verification."""
    database = db or await open_database(settings)
    verifier = None
    if settings.jwks_url:  # imported here: local mode never loads the JWT stack
        from taskflow.core.auth.jwt import JwtVerifier

        verifier = JwtVerifier.from_settings(settings)
    return Runtime(settings=settings, db=database, auth=Authenticator(database, verifier))
