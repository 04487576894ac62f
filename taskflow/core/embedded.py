"""The embedded PostgreSQL (pgserver) over its whole life: start or join it, tell a crash from a
clean stop, restart it, know who uses it, stop it, and let it stop by itself when idle.

pgserver runs one PostgreSQL per `pgdata` directory and lists the processes using it in
`pgdata/.handle_pids.json`: each adds its pid when it joins and removes it at exit (atexit), and
the last one out stops the server unless it asked to keep it running (the CLI does, so the next
command starts fast). What pgserver leaves out, this module adds:

- a killed postmaster leaves `postmaster.pid` behind: `state` tells that crash from a clean stop,
  so whoever starts it again can say it recovered;
- a long-running process (the server) restarts it when it finds it gone (`Healer`);
- a process killed by a signal never removes its pid: dead pids never count as users;
- a detached watchdog (`python -m taskflow.core.embedded DATA_DIR MINUTES`) stops a server that
  no live process and no client connection has used for `TASKFLOW_EMBEDDED_IDLE_MINUTES`;
- a command that finds the server running joins it cheaply (`_join_running`): its pid into the
  handle list and the URL from `postmaster.pid`, without pgserver's per-process set-up (user and
  permission checks) or a `psql` process asking whether the database exists (`DATABASE_MADE`
  says so). That join is what a warm `taskflow list` pays: about 1 ms instead of 15.

Kept free of SQLAlchemy: the watchdog imports only this module.
"""

from __future__ import annotations

import asyncio
import atexit
import enum
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

DB_NAME = "taskflow"
HANDLES_FILE = ".handle_pids.json"  # pgserver's list of the processes using the server
WATCHDOG_LOCK = ".embedded-watchdog.lock"  # held by the one watchdog of a data dir
START_ATTEMPTS = 3  # a restart right after a kill may find the old backends still exiting
CHECK_EVERY_MAX_SECONDS = 60.0
DATABASE_MADE = ".taskflow-database-made"
"""In pgdata once `DB_NAME` exists (a database dropped by hand is made again: `forget_database`)."""
CLIENTS_SQL = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


class State(enum.Enum):
    ABSENT = "absent"  # no database initialised in this data dir yet
    STOPPED = "stopped"  # cleanly stopped (no postmaster.pid)
    RUNNING = "running"
    CRASHED = "crashed"  # postmaster.pid left behind by a postmaster that is gone


class StopOutcome(enum.Enum):
    STOPPED = "stopped"
    NOT_RUNNING = "not running"
    IN_USE = "in use"
    ABSENT = "absent"


@dataclass(frozen=True)
class Started:
    """What `start` found and did: the URL, and whether the caller should tell the user."""

    url: str
    started: bool  # this call started the postmaster (it was not running)
    recovered: bool  # ... after a crash: PostgreSQL replayed its write-ahead log


def pgdata(data_dir: Path) -> Path:
    return data_dir / "pgdata"


def recovered_line(data_dir: Path) -> str:
    """The one line every surface prints after restarting a crashed embedded database."""
    return (
        f"the embedded PostgreSQL in {pgdata(data_dir)} had stopped unexpectedly (killed or "
        "crashed): restarted it; PostgreSQL recovered its data from its write-ahead log"
    )


def left_running_line(idle_minutes: float) -> str:
    """Told once per data dir: a command leaves the embedded PostgreSQL running."""
    if idle_minutes <= 0:
        when = "it keeps running until stopped"
    else:
        when = f"stops after {idle_minutes:g} idle minutes"
    return (
        f"embedded PostgreSQL left running in the background ({when}; "
        "`taskflow db stop` stops it now)"
    )


# ------------------------------------------------------------------ state


def _process_alive(pid: int) -> bool:
    """A live process (a zombie has exited; it only waits to be reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid in `postmaster.pid`, None without one (0 while it is being written)."""
    try:
        first = (pgdata(data_dir) / "postmaster.pid").read_text().split("\n", 1)[0]
    except FileNotFoundError:
        return None
    try:
        return int(first.strip())
    except ValueError:
        return 0


def _is_postmaster(pid: int) -> bool:
    """Alive and still PostgreSQL (after a crash its pid may go to another program)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.name().startswith("postgres")
    except psutil.Error:
        return False


def state(data_dir: Path) -> State:
    if not (pgdata(data_dir) / "PG_VERSION").exists():
        return State.ABSENT
    pid = postmaster_pid(data_dir)
    if pid is None:
        return State.STOPPED
    if pid == 0 or _is_postmaster(pid):  # 0: a postmaster is writing its pid file right now
        return State.RUNNING
    return State.CRASHED


def handles(data_dir: Path) -> list[int]:
    """pgserver's list of processes using the server, dead ones included."""
    try:
        return [int(p) for p in json.loads((pgdata(data_dir) / HANDLES_FILE).read_text())]
    except (FileNotFoundError, ValueError, TypeError):
        return []


def live_users(data_dir: Path, *, exclude: int | None = None) -> list[int]:
    """The processes in the handle list that are still alive: only they use the server."""
    return [p for p in handles(data_dir) if p != exclude and _process_alive(p)]


# ------------------------------------------------------------------ pgserver


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir at import time, which warns on headless
        # machines. Imported lazily: a server with DATABASE_URL never needs it.
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver


@contextmanager
def _pgserver_lock() -> Iterator[None]:
    """pgserver's own inter-process lock: held while a process starts, joins or leaves."""
    with _pgserver().PostgresServer._lock:
        yield


def _system_user() -> str | None:
    """pgserver runs PostgreSQL as `pgserver` when started by root."""
    return "pgserver" if os.name != "nt" and os.geteuid() == 0 else None


def _server(data_dir: Path, keep_running: bool) -> Any:
    """This process's pgserver handle (pgserver keeps one per pgdata and process)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return _pgserver().get_server(pgdata(data_dir), cleanup_mode=None if keep_running else "stop")


def _join(data_dir: Path, keep_running: bool) -> Any:
    """Get this process's handle and make sure the postmaster runs, restarting it if it died.

    pgserver starts it only when a process first asks; a handle it already gave out is returned
    as is, so a postmaster that died since is started here, under pgserver's lock.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            _wait_reaped(data_dir)
            server = _server(data_dir, keep_running)
            if state(data_dir) is not State.RUNNING:
                with _pgserver_lock():
                    server.ensure_postgres_running()
            with _pgserver_lock():
                server.global_process_id_list.get_and_add(os.getpid())
                forget_dead_handles(data_dir)
            if data_dir not in _exit_hooks:  # runs before pgserver's own (atexit is LIFO)
                _exit_hooks.add(data_dir)
                atexit.register(_forget_dead_handles_locked, data_dir)
            return server
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if attempt == START_ATTEMPTS:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _wait_reaped(data_dir: Path, seconds: float = 10.0) -> None:
    """Wait until a killed postmaster has been reaped by its parent: until then its pid still
    exists (a zombie), and pgserver and PostgreSQL would both take it for a running server."""
    pid = postmaster_pid(data_dir)
    if not pid or state(data_dir) is not State.CRASHED:
        return
    deadline = time.monotonic() + seconds
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def start(data_dir: Path, *, keep_running: bool = False, idle_minutes: float = 0) -> Started:
    """Start (or join) the embedded PostgreSQL and return an asyncpg URL to its database.

    By default the server stops when the last process using it exits. `keep_running` leaves it
    up for the next process; the watchdog then stops it after `idle_minutes` unused (0: never).
    A process that keeps it running and finds it up with its database made joins it cheaply.
    """
    before = state(data_dir)
    uri = _join_running(data_dir) if keep_running and before is State.RUNNING else None
    if uri is None:
        server = _join(data_dir, keep_running)
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DB_NAME};")
        (pgdata(data_dir) / DATABASE_MADE).touch()
        uri = server.get_uri()
    spawn_watchdog(data_dir, idle_minutes)
    return Started(
        _asyncpg_url(uri), started=before is not State.RUNNING, recovered=before is State.CRASHED
    )


def _asyncpg_url(uri: str) -> str:
    """pgserver's libpq URI (to its `postgres` database) as an asyncpg URL to `DB_NAME`."""
    from taskflow.core import dsn  # here: the watchdog never needs it

    return dsn.Dsn.parse(dsn.with_database(uri, DB_NAME)).with_(scheme=dsn.ENGINE_SCHEME).render()


def _join_running(data_dir: Path) -> str | None:
    """Join a running server whose database is made: this pid into pgserver's handle list (so
    `db stop` and the watchdog see a user) and the URI from `postmaster.pid`. None when the full
    start must run instead (no database yet, the server stopped meanwhile, an odd pid file)."""
    if not (pgdata(data_dir) / DATABASE_MADE).exists():
        return None
    pg = _pgserver()
    with _pgserver_lock():
        if state(data_dir) is not State.RUNNING:  # stopped between the first look and the lock
            return None
        try:
            info = pg.utils.PostmasterInfo.read_from_pgdata(pgdata(data_dir))
        except (AssertionError, ValueError):  # a pid file being written: take the full path
            return None
        if info is None or info.status != "ready":
            return None
        pids = handles(data_dir)
        if os.getpid() not in pids:
            _write_handles(data_dir, [*pids, os.getpid()], create=True)
        forget_dead_handles(data_dir)
    if data_dir not in _left_hooks:
        _left_hooks.add(data_dir)
        atexit.register(_leave, data_dir)
    return str(info.get_uri())


_left_hooks: set[Path] = set()


def _leave(data_dir: Path) -> None:
    """At exit of a process that joined cheaply: out of the handle list, as pgserver's own
    clean-up does for the processes it set up (the server keeps running)."""
    with _pgserver_lock():
        _write_handles(data_dir, live_users(data_dir, exclude=os.getpid()))


def forget_database(data_dir: Path) -> bool:
    """Forget that the database was made, so the next start checks (and makes it) again; True
    when there was something to forget. For a process that could not open it."""
    try:
        (pgdata(data_dir) / DATABASE_MADE).unlink()
    except FileNotFoundError:
        return False
    return True


def stop(data_dir: Path) -> tuple[StopOutcome, list[int]]:
    """Stop the embedded PostgreSQL unless a live process still uses it (those pids returned).

    Dead pids in pgserver's list (a process killed by a signal) are dropped, never waited for.
    """
    if state(data_dir) is State.ABSENT:
        return StopOutcome.ABSENT, []
    with _pgserver_lock():
        users = live_users(data_dir, exclude=os.getpid())
        _write_handles(data_dir, users)
        if state(data_dir) is not State.RUNNING:
            return StopOutcome.NOT_RUNNING, []
        if users:
            return StopOutcome.IN_USE, users
        _pgserver().pg_ctl(["-w", "stop"], pgdata=pgdata(data_dir), user=_system_user())
    return StopOutcome.STOPPED, []


_exit_hooks: set[Path] = set()


def forget_dead_handles(data_dir: Path) -> None:
    """Drop pids of processes gone without saying so (killed by a signal), so pgserver's
    last-one-out rule sees only the living. Called under pgserver's lock."""
    _write_handles(data_dir, live_users(data_dir))


def _forget_dead_handles_locked(data_dir: Path) -> None:
    with _pgserver_lock():
        forget_dead_handles(data_dir)


def _write_handles(data_dir: Path, pids: list[int], *, create: bool = False) -> None:
    path = pgdata(data_dir) / HANDLES_FILE
    if (create or path.exists()) and handles(data_dir) != pids:
        path.write_text(json.dumps(pids))


class Healer:
    """Restarts the embedded PostgreSQL of a long-running process (the server) found gone.

    Called when a request or the readiness probe fails to reach the database; the lock makes
    concurrent requests restart it once, the later ones finding it running again.
    """

    def __init__(self, data_dir: Path, idle_minutes: float) -> None:
        self.data_dir = data_dir
        self.idle_minutes = idle_minutes
        self._lock = asyncio.Lock()

    async def __call__(self) -> bool:
        """True when it restarted the server (the caller's pool holds only dead connections)."""
        if state(self.data_dir) is State.RUNNING:
            return False
        async with self._lock:
            if state(self.data_dir) is State.RUNNING:
                return False  # another request restarted it while this one waited
            await asyncio.to_thread(
                start, self.data_dir, keep_running=False, idle_minutes=self.idle_minutes
            )
            log.warning("%s", recovered_line(self.data_dir))
            return True


# ------------------------------------------------------------------ idle stop


def _check_every(idle_seconds: float) -> float:
    return min(CHECK_EVERY_MAX_SECONDS, max(0.5, idle_seconds / 4))


def spawn_watchdog(data_dir: Path, idle_minutes: float) -> None:
    """Start the data dir's watchdog unless one runs (it holds a lock) or idle stop is off.

    Started after the postmaster is up: a watchdog that finds it gone releases its lock before
    looking once more, so a start racing its exit is always seen by one side.
    """
    if idle_minutes <= 0:
        return
    import fasteners

    probe = fasteners.InterProcessLock(str(data_dir / WATCHDOG_LOCK))
    if not probe.acquire(blocking=False):
        return
    probe.release()
    detach: dict[str, Any] = (
        {"creationflags": subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP}
        if os.name == "nt"
        else {"start_new_session": True}
    )
    _watchdogs.append(
        subprocess.Popen(
            [sys.executable, "-m", __name__, str(data_dir), f"{idle_minutes:g}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            **detach,
        )
    )


_watchdogs: list[subprocess.Popen[bytes]] = []  # kept so Python never warns they still run


def _client_connections(data_dir: Path) -> int:
    """Client connections to the server (a psql, a tool, any TaskFlow process)."""
    pg = _pgserver()
    info = pg.utils.PostmasterInfo.read_from_pgdata(pgdata(data_dir))
    if info is None:
        return 0
    out = subprocess.run(
        [str(pg._commands.POSTGRES_BIN_PATH / "psql"), "-At", "-c", CLIENTS_SQL, info.get_uri()],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return int(out.stdout.strip() or 0)


def in_use(data_dir: Path) -> bool:
    """A live process holds a handle, or a client is connected. Unsure counts as in use."""
    if live_users(data_dir):
        return True
    try:
        return _client_connections(data_dir) > 0
    except (subprocess.SubprocessError, OSError, ValueError):
        return True


def stop_if_idle(data_dir: Path) -> bool:
    """Stop the server unless something uses it; checked again under pgserver's lock, so no
    process joins between the check and the stop."""
    with _pgserver_lock():
        if state(data_dir) is not State.RUNNING or in_use(data_dir):
            return False
        _pgserver().pg_ctl(["-w", "stop"], pgdata=pgdata(data_dir), user=_system_user())
        _write_handles(data_dir, [])
    log.info("stopped the idle embedded PostgreSQL in %s", pgdata(data_dir))
    return True


def watch(data_dir: Path, idle_minutes: float) -> None:
    """The watchdog's loop: stop the server after `idle_minutes` unused; end when it stops."""
    import fasteners

    lock = fasteners.InterProcessLock(str(data_dir / WATCHDOG_LOCK))
    if not lock.acquire(blocking=False):
        return  # another watchdog watches this data dir
    idle_seconds = idle_minutes * 60
    every = _check_every(idle_seconds)
    last_used = time.monotonic()
    while True:
        time.sleep(every)
        if not pgdata(data_dir).exists():
            return
        if state(data_dir) is not State.RUNNING:
            lock.release()  # then look again: a start that raced this sees the lock free
            if state(data_dir) is State.RUNNING and lock.acquire(blocking=False):
                last_used = time.monotonic()
                continue
            return
        if in_use(data_dir):
            last_used = time.monotonic()
        elif time.monotonic() - last_used >= idle_seconds and stop_if_idle(data_dir):
            return


if __name__ == "__main__":
    watch(Path(sys.argv[1]), float(sys.argv[2]))
