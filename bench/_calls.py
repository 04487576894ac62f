"""Requests as a client sees them: REST calls and MCP tool calls, each recorded with its latency,
how it ended, and the audit entries it must have written if it succeeded.

Every request carries its own `X-Request-ID`, which the server writes on each audit entry the
request produces, so the checks in bench/_verdicts.py can compare what a request should have
written with what it did, request by request. MCP calls are raw JSON-RPC `tools/call` POSTs to
the stateless, JSON-response `/mcp` endpoint, as any HTTP MCP client sends them.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

MCP_PROTOCOL = "2025-11-25"
OK, REFUSED, UNAVAILABLE, SERVER_ERROR, NO_ANSWER = (
    "ok",
    "refused",
    "unavailable",
    "server_error",
    "no_answer",
)


@dataclass(slots=True)
class Answer:
    """How a request ended: its outcome class, the error code, and what came back."""

    status: int  # HTTP status; 0 when there was no answer
    outcome: str
    code: str = ""  # problem type / MCP error code
    detail: str = ""
    shape_ok: bool = True  # a refusal in its documented shape (problem+json, Retry-After, ...)
    replayed: bool = False  # answered from an idempotency record: ran nothing, wrote nothing
    payload: Any = None


@dataclass(slots=True)
class Call:
    """One request as its client saw it."""

    who: str
    op: str
    surface: str  # "rest" or "mcp"
    server: str
    request_id: str
    started: float  # seconds since the recorder started
    seconds: float
    answer: Answer
    audits: dict[str, int]  # audit entries by action this request wrote if it succeeded
    spec: tuple[Any, ...] = ()  # what was sent, so `Speaker.resend` can send it again

    @property
    def ended(self) -> float:
        return self.started + self.seconds

    @property
    def outcome(self) -> str:
        return self.answer.outcome

    @property
    def http_status(self) -> int:
        return self.answer.status

    @property
    def code(self) -> str:
        return self.answer.code

    @property
    def detail(self) -> str:
        return self.answer.detail


@dataclass
class Recorder:
    t0: float = field(default_factory=time.perf_counter)
    calls: list[Call] = field(default_factory=list)

    def now(self) -> float:
        return time.perf_counter() - self.t0


def _json(response: httpx.Response) -> Any:
    with contextlib.suppress(ValueError):
        return response.json() if response.content else None
    return None


def rest_answer(response: httpx.Response) -> Answer:
    """2xx: ok; 503: unavailable (problem+json, `unavailable`, Retry-After: 5); other 4xx:
    refused (problem+json); other 5xx: a server error."""
    status, body = response.status_code, _json(response)
    if status < 400:
        replayed = response.headers.get("idempotent-replayed") == "true"
        return Answer(status, OK, replayed=replayed, payload=body)
    problem = body if isinstance(body, dict) else {}
    code = str(problem.get("type", "")).rsplit(":", 1)[-1]
    detail = str(problem.get("detail", response.text[:200]))[:200]
    is_problem = response.headers.get("content-type", "").startswith("application/problem+json")
    if status == 503:
        retry_after = response.headers.get("retry-after") == "5"
        return Answer(status, UNAVAILABLE, code, detail, is_problem and retry_after)
    return Answer(status, SERVER_ERROR if status >= 500 else REFUSED, code, detail, is_problem)


def mcp_answer(response: httpx.Response) -> Answer:
    """A tool result (ok, or isError: refused / unavailable by its `_meta` code), a JSON-RPC
    error, or an HTTP refusal before any tool ran (503 when the token could not be checked)."""
    status, body = response.status_code, _json(response)
    if status != 200 or not isinstance(body, dict):
        error = body if isinstance(body, dict) else {}
        code = str(error.get("error", status))
        detail = str(error.get("error_description", response.text[:200]))[:200]
        if status == 503:
            return Answer(status, UNAVAILABLE, code, detail, "retry-after" in response.headers)
        outcome = SERVER_ERROR if status >= 500 else REFUSED
        return Answer(status, outcome, code, detail, status < 500)
    if "error" in body:  # a JSON-RPC protocol error: -32603 is the server failing
        err = body["error"]
        outcome = SERVER_ERROR if err.get("code") == -32603 else REFUSED
        return Answer(status, outcome, str(err.get("code")), str(err.get("message"))[:200])
    result = body.get("result") or {}
    meta = result.get("_meta") or {}
    if not result.get("isError"):
        replayed = bool(meta.get("taskflow/replayed"))
        return Answer(status, OK, replayed=replayed, payload=result.get("structuredContent"))
    code = str((meta.get("taskflow/error") or {}).get("code", ""))
    text = " ".join(c.get("text", "") for c in result.get("content", []))[:200]
    if not code:  # "Error executing tool ...": an unexpected exception, a bug
        return Answer(status, SERVER_ERROR, "crash", text, False)
    if code == "unavailable":
        return Answer(status, UNAVAILABLE, code, text, "database" in text)
    return Answer(status, REFUSED, code, text)


def no_answer(exc: httpx.HTTPError) -> Answer:
    return Answer(0, NO_ANSWER, type(exc).__name__, str(exc)[:200], False)


class Speaker:
    """One worker's connection to one server: REST calls and MCP tool calls, each recorded."""

    def __init__(
        self,
        who: str,
        server: str,
        base_url: str,
        token: str | None,
        recorder: Recorder,
        *,
        timeout: float = 30.0,
        connections: int = 4,
    ) -> None:
        self.who = who
        self.server = server
        self.recorder = recorder
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout,
            limits=httpx.Limits(max_connections=connections),
        )
        self._ids = itertools.count(1)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _request_id(self) -> str:
        return f"{self.who[1:]}-{uuid.uuid4().hex[:12]}"

    def _record(
        self,
        op: str,
        surface: str,
        rid: str,
        t: float,
        answer: Answer,
        audits: dict[str, int] | None,
        spec: tuple[Any, ...],
    ) -> Call:
        wrote = {} if answer.replayed else dict(audits or {})
        call = Call(
            self.who, op, surface, self.server, rid, t, self.recorder.now() - t, answer, wrote, spec
        )
        self.recorder.calls.append(call)
        return call

    async def rest(
        self,
        op: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        version: int | None = None,
        headers: dict[str, str] | None = None,
        audits: dict[str, int] | None = None,
    ) -> tuple[Call, Any]:
        """A REST call (`version` becomes If-Match); the call and, if it worked, its body."""
        spec = ("rest", op, method, path, json, params, version, headers, audits)
        rid = self._request_id()
        sent = {"X-Request-ID": rid, **(headers or {})}
        if version is not None:
            sent["If-Match"] = f'"{version}"'
        t = self.recorder.now()
        try:
            response = await self.http.request(method, path, json=json, params=params, headers=sent)
            answer = rest_answer(response)
        except httpx.HTTPError as exc:
            answer = no_answer(exc)
        return self._record(op, "rest", rid, t, answer, audits, spec), answer.payload

    async def mcp(
        self, op: str, tool: str, arguments: dict[str, Any], *, audits: dict[str, int] | None = None
    ) -> tuple[Call, Any]:
        """A tool call; the call and, if it worked, the result's structuredContent."""
        spec = ("mcp", op, tool, arguments, audits)
        rid = self._request_id()
        message = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        headers = {
            "X-Request-ID": rid,
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": MCP_PROTOCOL,
        }
        t = self.recorder.now()
        try:
            answer = mcp_answer(await self.http.post("/mcp", json=message, headers=headers))
        except httpx.HTTPError as exc:
            answer = no_answer(exc)
        return self._record(op, "mcp", rid, t, answer, audits, spec), answer.payload

    async def resend(self, call: Call, op: str | None = None) -> tuple[Call, Any]:
        """Send a recorded request again, identically (same idempotency key, if it had one)."""
        if call.spec[0] == "rest":
            _, o, method, path, json, params, version, headers, audits = call.spec
            return await self.rest(
                op or o,
                method,
                path,
                json=json,
                params=params,
                version=version,
                headers=headers,
                audits=audits,
            )
        _, o, tool, arguments, audits = call.spec
        return await self.mcp(op or o, tool, arguments, audits=audits)
