"""Slow clients are disconnected: a real server (as `taskflow serve` runs it) with a 1 s
receipt deadline, and real sockets that trickle their headers or body, or say nothing."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Role
from tests.http.conftest import register_agent
from tests.support.servers import Server, serve

DEADLINE = 1.0


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    with serve("slow-clients", db_url, {"HTTP_REQUEST_TIMEOUT_SECONDS": str(DEADLINE)}) as s:
        yield s


def _connect(server: Server) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _until_closed(
    sock: socket.socket, trickle: bytes = b"", gap: float = 0.2
) -> tuple[bytes, float]:
    """Send `trickle` one byte per `gap` seconds until the server closes; what it answered and
    how long it took."""
    started = time.monotonic()
    answer = b""
    sock.settimeout(gap)
    sent = 0
    while time.monotonic() - started < 10:
        try:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        except TimeoutError:
            pass
        except ConnectionResetError:
            break
        if sent < len(trickle):
            try:
                sock.send(trickle[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
    return answer, time.monotonic() - started


HEADERS = b"GET /health HTTP/1.1\r\nHost: localhost:8000\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"


def _trickle_headers(server: Server) -> tuple[bytes, float]:
    sock = _connect(server)
    try:
        return _until_closed(sock, HEADERS)
    finally:
        sock.close()


def test_trickled_headers_are_cut_off_with_408(server: Server) -> None:
    """50 clients trickling their headers a byte at a time, as the probe did."""
    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(lambda _: _trickle_headers(server), range(50)))
    for answer, took in outcomes:
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert DEADLINE * 0.8 <= took < DEADLINE + 3
    assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200


async def test_a_trickled_body_is_cut_off(server: Server, db: Database, owner: Actor) -> None:
    """The app is already waiting for the body (the caller authenticated): it hears the client
    left, and the client gets the 408."""
    bot = await register_agent(db, owner, "@bot", project_role=Role.MEMBER)
    head = (
        b"POST /api/projects/default/tasks HTTP/1.1\r\nHost: localhost:8000\r\n"
        b"Authorization: Bearer " + bot.token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    )
    sock = _connect(server)
    try:
        sock.sendall(head)
        answer, took = _until_closed(sock, b"{" + b" " * 499)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert DEADLINE * 0.8 <= took < DEADLINE + 2
    assert "Traceback" not in server.logs()


def test_half_open_connections_are_closed_and_the_server_still_answers(server: Server) -> None:
    socks = [_connect(server) for _ in range(2000)]  # as many as the probe held
    try:
        assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200
        time.sleep(DEADLINE + 0.5)
        closed = 0
        for sock in socks:
            sock.settimeout(2)
            try:
                data = sock.recv(4096)
                closed += data == b"" or data.startswith(b"HTTP/1.1 408")
            except (TimeoutError, ConnectionResetError):
                closed += 0
        assert closed == len(socks)
    finally:
        for sock in socks:
            sock.close()
    assert httpx.get(server.base_url + "/health", timeout=10).status_code == 200


def test_a_prompt_request_on_a_kept_alive_connection_is_not_cut(server: Server) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(DEADLINE * 0.7)  # idle between requests: keep-alive's time, not ours
        assert client.get("/health").status_code == 200
