"""What every tool and resource of one server shares: the runtime and the caller's identity."""

from __future__ import annotations

from dataclasses import dataclass

from taskflow.core.db import Database
from taskflow.core.runtime import Runtime
from taskflow.mcp_server.identity import Identity

REPLAYED_META = "taskflow/replayed"
"""`_meta` key on an answer replayed from an earlier call with the same idempotency key."""


@dataclass(frozen=True, slots=True)
class Surface:
    runtime: Runtime
    identity: Identity

    @property
    def db(self) -> Database:
        return self.runtime.db
