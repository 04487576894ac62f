"""What an API key allows: its scopes, and the one place each is enforced.

A key may be `read_only` (every mutating operation is refused, by the dispatcher), limited to
named projects (`project_ids`: other projects are "not found", through `access`), and may or
may not `manage_agents` (register agents, issue keys: refused by the worker handlers). Humans
(Better Auth JWTs, the local user) and callers without a key have every scope (`FULL`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from taskflow.core.errors import Forbidden

WRITE = "write"
MANAGE_AGENTS = "manage_agents"


@dataclass(frozen=True, slots=True)
class Scopes:
    read_only: bool = False
    project_ids: frozenset[int] | None = None
    """None: every project the worker is a member of; else only these."""
    manage_agents: bool = True

    @classmethod
    def of_key(
        cls, read_only: bool, project_ids: Iterable[int] | None, manage_agents: bool
    ) -> Scopes:
        projects = None if project_ids is None else frozenset(int(p) for p in project_ids)
        return cls(bool(read_only), projects, bool(manage_agents))

    def sees(self, project_id: int) -> bool:
        return self.project_ids is None or project_id in self.project_ids

    def listed(self) -> list[int] | None:
        """The projects as a SQL array parameter (NULL: no limit)."""
        return None if self.project_ids is None else sorted(self.project_ids)


FULL = Scopes()


def _key(prefix: str | None) -> str:
    return f"API key {prefix}" if prefix else "this API key"


def refuse_write(scopes: Scopes, prefix: str | None, operation: str) -> None:
    """A read-only key may not change anything: 403 naming the scope it lacks."""
    if scopes.read_only:
        raise Forbidden(
            f"{_key(prefix)} is read-only: {operation} changes data and needs the {WRITE} scope; "
            "use a key created without read_only",
            scope=WRITE,
        )


def refuse_unmanaging(scopes: Scopes, prefix: str | None, what: str) -> None:
    """Registering agents and issuing keys needs the `manage_agents` scope."""
    if not scopes.manage_agents:
        raise Forbidden(
            f"{_key(prefix)} lacks the {MANAGE_AGENTS} scope, which {what} needs: ask whoever "
            f"registered the agent for a key with {MANAGE_AGENTS}",
            scope=MANAGE_AGENTS,
        )
