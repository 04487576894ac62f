"""Who is acting, how they proved it, and through which surface.

Every service takes an `Actor`; the audit entry it writes is built from it, so the surfaces only
have to say who the caller is, never how to audit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from taskflow.core.domain import Via, WorkerType


@dataclass(frozen=True, slots=True)
class Actor:
    worker_id: int
    handle: str
    type: WorkerType
    via: Via = Via.CORE
    auth: str = "local"  # "jwt", "api_key" or "local"
    key_id: int | None = None
    subject: str | None = None
    request_id: str | None = None

    @property
    def is_agent(self) -> bool:
        return self.type is WorkerType.AGENT

    def through(self, via: Via, request_id: str | None = None) -> Actor:
        """The same worker acting through another surface (or with a request id)."""
        return replace(self, via=via, request_id=request_id or self.request_id)


@dataclass(frozen=True, slots=True)
class KeyCaller:
    """A caller known so far only by an agent API key (its SHA-256), not looked up yet.

    An operation that can (`Operation.by_key`) checks the key inside its own statement, which
    saves authentication's round trip; anything else looks the key up first (`Authenticator`).
    """

    key_hash: str
    via: Via
    request_id: str | None = None
