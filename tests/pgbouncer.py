"""A real PgBouncer in transaction mode in front of the test PostgreSQL: the setup Neon's pooled
endpoints use, where a client's consecutive transactions may run on different server connections.

`running_pgbouncer(server_url)` writes a config to a temp dir and starts the Debian `pgbouncer`
binary (installing it with apt-get when missing and possible) with a wildcard database entry, so
every per-test database made with CREATE DATABASE ... TEMPLATE is reachable through it at once.
It listens on port 6432 (PgBouncer's own default, which `taskflow.core.db.is_pooled` recognises)
of a random 127.x.y.z address, so URLs through it describe themselves as pooled and two runs on
one machine never collide. Admin work (CREATE/DROP DATABASE, migrations) stays on the direct URL.

`admin_query(bouncer, "SHOW POOLS")` reads the admin console, which speaks only the simple query
protocol (asyncpg always uses the extended one), so it has a minimal client of its own.
"""

from __future__ import annotations

import atexit
import os
import pwd
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from taskflow.core.db import to_async_url

PORT = 6432  # PgBouncer's default port; is_pooled() treats it as a transaction-mode pooler
ENV_FLAG = "TASKFLOW_TEST_PGBOUNCER"


class PgBouncerUnavailable(RuntimeError):
    """PgBouncer is not installed and could not be installed here (not root, no apt-get)."""


def find_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


def ensure_installed() -> str:
    """The pgbouncer binary, installed from the distribution when missing (needs root + apt)."""
    found = find_binary()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PgBouncerUnavailable(
            "pgbouncer is not installed and cannot be installed here (needs root and apt-get): "
            "run `apt-get install -y pgbouncer`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "pgbouncer"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False)
    found = find_binary()
    if not found:
        raise PgBouncerUnavailable("`apt-get install -y pgbouncer` failed: no pgbouncer binary")
    return found


@dataclass
class PgBouncer:
    """A running PgBouncer: where it listens, its files, and URLs through it."""

    host: str
    port: int
    user: str
    password: str | None
    workdir: Path
    process: subprocess.Popen[bytes]

    @property
    def server_url(self) -> str:
        """A server URL (database `postgres`) through the pooler, in the suite's URL spelling."""
        return self.url("postgres")

    def url(self, database: str) -> str:
        auth = self.user if self.password is None else f"{self.user}:{self.password}"
        return f"postgresql+asyncpg://{auth}@{self.host}:{self.port}/{database}"

    @property
    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _free_address() -> str:
    """A 127.x.y.z whose port 6432 is free (all of 127/8 is loopback on Linux)."""
    for _ in range(50):
        host = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        with socket.socket() as probe:
            try:
                probe.bind((host, PORT))
            except OSError:
                continue
            return host
    raise PgBouncerUnavailable("no free 127.x.y.z:6432 address for pgbouncer")


def _target(server_url: str) -> tuple[str, int, str, str | None]:
    """Host (or unix socket dir), port, user and password of the real server."""
    url = to_async_url(server_url)
    socket_dir = url.query.get("host")
    host = str(socket_dir) if socket_dir else (url.host or "127.0.0.1")
    return host, url.port or 5432, url.username or "postgres", url.password or None


def _run_as(host: str) -> str | None:
    """PgBouncer refuses to run as root: when root, run as the user that owns the server's
    unix socket directory (the embedded server's `pgserver` user can reach it), else nobody."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/") and Path(host).exists():
        return pwd.getpwuid(Path(host).stat().st_uid).pw_name
    return "nobody"


def write_config(
    workdir: Path,
    server_url: str,
    listen: str,
    *,
    pool_size: int,
    server_lifetime: int = 3600,
) -> tuple[str, str | None]:
    host, port, user, password = _target(server_url)
    target = f"host={host} port={port} user={user}"
    if password:
        target += f" password={password}"
    (workdir / "userlist.txt").write_text(f'"{user}" "{password or ""}"\n')
    (workdir / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"* = {target}",
                "",
                "[pgbouncer]",
                f"listen_addr = {listen}",
                f"listen_port = {PORT}",
                "unix_socket_dir =",
                "pool_mode = transaction",
                "auth_type = trust",
                f"auth_file = {workdir / 'userlist.txt'}",
                f"admin_users = {user}",
                f"stats_users = {user}",
                f"default_pool_size = {pool_size}",
                "min_pool_size = 0",
                "reserve_pool_size = 0",
                "max_client_conn = 1000",
                "server_idle_timeout = 30",
                f"server_lifetime = {server_lifetime}",
                "stats_period = 1",
                "log_connections = 0",
                "log_disconnections = 0",
                "log_stats = 0",
                "ignore_startup_parameters = extra_float_digits,options",
                f"pidfile = {workdir / 'pgbouncer.pid'}",
                "",
            ]
        )
    )
    return user, password


def _wait_listening(bouncer: PgBouncer, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bouncer.process.poll() is not None:
            break
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((bouncer.host, bouncer.port)) == 0:
                return
        time.sleep(0.05)
    log = bouncer.log
    bouncer.stop()
    raise PgBouncerUnavailable(f"pgbouncer did not start:\n{log}")


def start_pgbouncer(server_url: str, *, pool_size: int = 40) -> PgBouncer:
    """Start PgBouncer (transaction mode) in front of `server_url`; stop it with `.stop()`.

    `pool_size` is the server connections per database: keep it above the number of transactions
    a test holds open at once (they may wait on each other's locks).
    """
    binary = ensure_installed()
    workdir = Path(tempfile.mkdtemp(prefix="tf-pgbouncer-"))
    listen = _free_address()
    user, password = write_config(workdir, server_url, listen, pool_size=pool_size)
    command = [binary, str(workdir / "pgbouncer.ini")]
    run_as = _run_as(_target(server_url)[0])
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        for path in (workdir, *workdir.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        command[1:1] = ["-u", run_as]
    # Its log goes to a file: a pipe nobody reads fills up and blocks PgBouncer mid-run.
    with (workdir / "pgbouncer.log").open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    bouncer = PgBouncer(listen, PORT, user, password, workdir, process)
    atexit.register(bouncer.stop)  # also when a run dies before its fixture's teardown
    _wait_listening(bouncer)
    return bouncer


@contextmanager
def running_pgbouncer(server_url: str, *, pool_size: int = 40) -> Iterator[PgBouncer]:
    bouncer = start_pgbouncer(server_url, pool_size=pool_size)
    try:
        yield bouncer
    finally:
        bouncer.stop()


# ------------------------------------------------------------------ admin console


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("pgbouncer closed the admin connection")
        data += chunk
    return data


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    header = _recv_exact(sock, 5)
    (length,) = struct.unpack("!I", header[1:])
    return header[:1], _recv_exact(sock, length - 4)


def admin_query(bouncer: PgBouncer, command: str) -> list[dict[str, str | None]]:
    """Rows of an admin console command (SHOW POOLS, SHOW STATS, ...) as dicts of text values.

    A minimal simple-query client: trust auth, one query, text results.
    """
    params = f"user\0{bouncer.user}\0database\0pgbouncer\0\0".encode()
    startup = struct.pack("!II", len(params) + 8, 196608) + params
    with socket.create_connection((bouncer.host, bouncer.port), timeout=10) as sock:
        sock.sendall(startup)
        _until_ready(sock)
        sock.sendall(_message(b"Q", command.encode() + b"\0"))
        columns: list[str] = []
        rows: list[dict[str, str | None]] = []
        while True:
            kind, body = _read_message(sock)
            if kind == b"T":
                columns = _column_names(body)
            elif kind == b"D":
                rows.append(dict(zip(columns, _values(body), strict=True)))
            elif kind == b"E":
                raise RuntimeError(f"pgbouncer admin error: {body!r}")
            elif kind == b"Z":
                with suppress(OSError):
                    sock.sendall(_message(b"X", b""))
                return rows


def _until_ready(sock: socket.socket) -> None:
    while True:
        kind, body = _read_message(sock)
        if kind == b"E":
            raise RuntimeError(f"pgbouncer refused the admin login: {body!r}")
        if kind == b"R" and struct.unpack("!I", body[:4])[0] != 0:
            raise RuntimeError("pgbouncer asked for a password on the admin console")
        if kind == b"Z":
            return


def _column_names(body: bytes) -> list[str]:
    (count,) = struct.unpack("!H", body[:2])
    names, offset = [], 2
    for _ in range(count):
        end = body.index(b"\0", offset)
        names.append(body[offset:end].decode())
        offset = end + 1 + 18  # table oid, attnum, type oid, size, typmod, format
    return names


def _values(body: bytes) -> list[str | None]:
    (count,) = struct.unpack("!H", body[:2])
    values: list[str | None] = []
    offset = 2
    for _ in range(count):
        (length,) = struct.unpack("!i", body[offset : offset + 4])
        offset += 4
        if length < 0:
            values.append(None)
        else:
            values.append(body[offset : offset + length].decode())
            offset += length
    return values


def flag_set() -> bool:
    """True when the suite should hand out URLs through PgBouncer (TASKFLOW_TEST_PGBOUNCER=1)."""
    return os.environ.get(ENV_FLAG, "").lower() in ("1", "true", "yes")
