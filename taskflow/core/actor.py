"""Who is acting, how they proved it, and through which surface.

Every service takes an `Actor`; the audit entry it writes is built from it, so the surfaces only
have to say who the caller is, never how to audit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from taskflow.core.domain import Via, WorkerType
from taskflow.core.scopes import FULL, Scopes


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
    key_prefix: str | None = None
    """The display prefix of the API key it authenticated with (its audit entries name it)."""
    scopes: Scopes = FULL
    """What the key allows; humans and keyless callers have every scope."""
    client_request_id: str | None = None
    """The X-Request-ID the client sent, as sent (`request_id` is the server's own)."""

    @property
    def is_agent(self) -> bool:
        return self.type is WorkerType.AGENT

    def through(
        self, via: Via, request_id: str | None = None, client_request_id: str | None = None
    ) -> Actor:
        """The same worker acting through another surface (or with a request id)."""
        return replace(
            self,
            via=via,
            request_id=request_id or self.request_id,
            client_request_id=client_request_id or self.client_request_id,
        )


@dataclass(frozen=True, slots=True)
class KeyCaller:
    """A caller known so far only by an agent API key (its SHA-256), not looked up yet.

    An operation that can (`Operation.by_key`) checks the key inside its own statement, which
    saves authentication's round trip; anything else looks the key up first (`Authenticator`).
    """

    key_hash: str
    via: Via
    request_id: str | None = None
    key_prefix: str | None = None
    client_request_id: str | None = None
