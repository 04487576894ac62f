"""Result envelopes for tools that answer with more than one core model.

The records inside are the core's own output models (`taskflow.core.schemas`); these classes
only give list answers and grouped tools one object shape, as `structuredContent` requires.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from taskflow.core.schemas import ApiKeyOut, IssuedKey, WorkerOut


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkersOut(Envelope):
    workers: list[WorkerOut]


class AgentResult(Envelope):
    action: str
    issued: IssuedKey | None = Field(
        default=None, description="The new key is shown only here: store api_key now"
    )
    keys: list[ApiKeyOut] = Field(
        default_factory=list, description="Listed keys, or the keys a revoke/deactivate revoked"
    )
    worker: WorkerOut | None = Field(default=None, description="The agent, after deactivate")
