"""PostgreSQL URLs, read and rewritten without SQLAlchemy.

A plain read from the CLI (`taskflow list`) must not pay SQLAlchemy's import (about 0.25 s, more
than the rest of the command), yet it needs the same URL handling as the engine: the embedded
server's URL, the app role's variant of it, and what asyncpg is handed. These few rules live
here, on the standard library's `urllib.parse`, for both.

Accepted spellings: `postgresql://` (as Neon and psql print it), `postgres://`, and the
SQLAlchemy forms `postgresql+asyncpg://`, `+psycopg`, `+psycopg2`. Query parameters keep their
libpq meaning (`host=/socket/dir`, `sslmode`), which is also what asyncpg's own DSN parser reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

ENGINE_SCHEME = "postgresql+asyncpg"
"""The scheme SQLAlchemy's engine is given."""

_SCHEMES = ("postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg")
_SCHEMES += ("postgresql+psycopg2",)
_NOT_FOR_ASYNCPG = ("channel_binding",)
"""libpq parameters asyncpg does not know (it would send them to the server as settings)."""


@dataclass(frozen=True, slots=True)
class Dsn:
    """A parsed PostgreSQL URL: the parts TaskFlow reads or changes."""

    scheme: str
    user: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str
    query: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, url: str) -> Dsn:
        """Refuse anything but a PostgreSQL URL, naming what was given."""
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ValueError(f"not a PostgreSQL URL (postgresql://...): {parts.scheme}://")
        return cls(
            scheme=parts.scheme,
            user=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            host=parts.hostname,
            port=parts.port,
            database=unquote(parts.path.lstrip("/")),
            query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
        )

    def params(self) -> dict[str, str]:
        return dict(self.query)

    def with_(self, **changes: object) -> Dsn:
        fields = {f: getattr(self, f) for f in self.__slots__}
        fields.update(changes)
        return Dsn(**fields)  # type: ignore[arg-type]

    def render(self) -> str:
        """The URL again (the password included: this is for connecting, never for logs)."""
        netloc = ""
        if self.user is not None:
            netloc = quote(self.user, safe="")
            if self.password:
                netloc += ":" + quote(self.password, safe="")
            netloc += "@"
        if self.host:
            netloc += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            netloc += f":{self.port}"
        path = "/" + quote(self.database, safe="")
        return urlunsplit((self.scheme, netloc, path, urlencode(self.query), ""))


def engine_url(url: str) -> str:
    """The URL for SQLAlchemy's asyncpg engine: its scheme, and libpq's `sslmode` under the
    name the dialect passes on (`ssl`); `channel_binding` dropped (asyncpg has no such
    option)."""
    dsn = Dsn.parse(url)
    query = [("ssl" if k == "sslmode" else k, v) for k, v in dsn.query if k not in _NOT_FOR_ASYNCPG]
    return dsn.with_(scheme=ENGINE_SCHEME, query=tuple(query)).render()


def asyncpg_dsn(url: str) -> str:
    """The URL as asyncpg's own `connect(dsn)` reads it (libpq's spelling, `postgresql://`)."""
    dsn = Dsn.parse(url)
    query = tuple(
        ("sslmode" if k == "ssl" else k, v) for k, v in dsn.query if k not in _NOT_FOR_ASYNCPG
    )
    return dsn.with_(scheme="postgresql", query=query).render()


def as_role(url: str, role: str) -> str:
    """The same server and database, logged in as `role` with no password (the embedded server
    trusts local logins)."""
    return Dsn.parse(url).with_(user=role, password=None).render()


def with_database(url: str, database: str) -> str:
    return Dsn.parse(url).with_(database=database).render()


def is_pooled(url: str, setting: bool | None) -> bool:
    """Transaction-mode poolers break prepared statements; detect the common ones by address
    (`DATABASE_POOLED` decides when set)."""
    if setting is not None:
        return setting
    dsn = Dsn.parse(url)
    return "-pooler" in (dsn.host or "") or dsn.port == 6432
