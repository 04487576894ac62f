"""The embedded PostgreSQL heals itself and goes away by itself, tested with real processes.

Each test gets its own data directory (a copy of one `taskflow init` made once per module) and
runs the real `taskflow` binary: `taskflow serve --no-auth` on a free port, CLI commands, a
`kill -9` of the postmaster (its pid from `pgdata/postmaster.pid`), SIGTERM and SIGINT of the
server, and the idle watchdog with an idle time of a few seconds. The last test points
DATABASE_URL at a real PgBouncer in transaction mode without declaring it pooled.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy.engine import make_url

from taskflow.core import embedded
from tests.pgbouncer import PgBouncerUnavailable, start_pgbouncer

TASKFLOW = Path(sys.executable).parent / "taskflow"
RECOVERED = "had stopped unexpectedly"
LEFT_RUNNING = "left running in the background"
CLEARED = (
    "DATABASE_URL",
    "DATABASE_POOLED",
    "AUTH_SERVER_URL",
    "AUTH_JWKS_URL",
    "TASKFLOW_TOKEN",
    "TASKFLOW_API_KEY",
    "TASKFLOW_LOCAL_USER",
    "FORCE_COLOR",
)


def env_for(data_dir: Path, idle_minutes: float = 30, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(
        TASKFLOW_DATA_DIR=str(data_dir),
        TASKFLOW_EMBEDDED_IDLE_MINUTES=f"{idle_minutes:g}",
        NO_COLOR="1",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def run(
    data_dir: Path, *args: str, idle_minutes: float = 30, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TASKFLOW), *args],
        env=env_for(data_dir, idle_minutes, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def kill_postmaster(data_dir: Path) -> None:
    pid = embedded.postmaster_pid(data_dir)
    assert pid, "the embedded PostgreSQL is not running"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: embedded.state(data_dir) is embedded.State.CRASHED, 10, "postmaster death")


def wait_for(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {seconds} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A running `taskflow serve --no-auth`, its output collected line by line."""

    proc: subprocess.Popen[str]
    client: httpx.Client
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.output)


@contextmanager
def serving(data_dir: Path, idle_minutes: float = 30) -> Iterator[Served]:
    port = free_port()
    proc = subprocess.Popen(
        [str(TASKFLOW), "serve", "--no-auth", "--port", str(port)],
        env=env_for(data_dir, idle_minutes),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(proc, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10))
    reader = threading.Thread(target=lambda: served.output.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the server exited:\n{served.text()}"
            assert time.monotonic() < deadline, "the server did not start within 60 s"
            try:
                if served.client.get("/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield served
    finally:
        served.client.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(20)
        reader.join(5)


def scratch_dir() -> Path:
    """A directory of its own under /tmp, not under pytest's: as root, PostgreSQL runs as
    `pgserver`, which must traverse the path, and pytest makes /tmp/pytest-of-root private
    again whenever any session starts."""
    return Path(tempfile.mkdtemp(prefix="tf-emb-"))


@pytest.fixture(scope="module")
def initialised() -> Iterator[Path]:
    """A data dir after `taskflow init --user @me`, its database stopped: copied by each test."""
    data_dir = scratch_dir() / "data"
    done = run(data_dir, "init", "--user", "@me", "--name", "Me")
    assert done.returncode == 0, done.stderr
    assert embedded.stop(data_dir)[0] is embedded.StopOutcome.STOPPED
    yield data_dir
    shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.fixture
def data_dir(initialised: Path) -> Iterator[Path]:
    target = scratch_dir() / "d"
    # cp -a keeps the owner: as root, PostgreSQL runs as `pgserver` and refuses foreign files.
    subprocess.run(["cp", "-a", str(initialised), str(target)], check=True)
    yield target
    embedded.stop(target)
    shutil.rmtree(target.parent, ignore_errors=True)


def test_the_server_restarts_its_killed_database_and_says_so_once(data_dir: Path) -> None:
    with serving(data_dir) as server:
        added = server.client.post("/api/projects/default/tasks", json={"title": "Before"})
        assert added.status_code == 201, added.text
        kill_postmaster(data_dir)
        answers: list[httpx.Response] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            answers.append(server.client.get("/api/tasks"))
            if answers[-1].status_code == 200:
                break
            time.sleep(0.2)
        assert answers[-1].status_code == 200, [a.text for a in answers]
        assert [t["title"] for t in answers[-1].json()["items"]] == ["Before"]
        assert {a.status_code for a in answers} <= {200, 503}, server.text()
        assert embedded.state(data_dir) is embedded.State.RUNNING
        wait_for(lambda: lines_with(server.text(), RECOVERED), 5, "recovery line")
        assert len(lines_with(server.text(), RECOVERED)) == 1, server.text()

        # The readiness probe heals by itself too, and answers for the restarted database.
        kill_postmaster(data_dir)
        ready = server.client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert "DATABASE_URL" not in ready.text
        wait_for(lambda: len(lines_with(server.text(), RECOVERED)) == 2, 5, "second line")


def test_a_command_after_a_kill_recovers_the_database_and_says_so_in_one_line(
    data_dir: Path,
) -> None:
    (data_dir / ".embedded-notice-shown").unlink()  # as on a fresh machine
    first = run(data_dir, "list", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == []  # stdout stays pure JSON
    assert len(lines_with(first.stderr, LEFT_RUNNING)) == 1, first.stderr
    assert "taskflow db stop" in first.stderr and "30 idle minutes" in first.stderr

    kill_postmaster(data_dir)
    after = run(data_dir, "add", "After the crash")
    assert after.returncode == 0, after.stderr
    assert len(after.stderr.strip().splitlines()) == 1, after.stderr
    assert RECOVERED in after.stderr and LEFT_RUNNING not in after.stderr

    quiet = run(data_dir, "list")
    assert quiet.returncode == 0 and quiet.stderr.strip() == "", quiet.stderr
    assert "After the crash" in quiet.stdout


def test_a_command_on_the_running_server_counts_as_its_user_until_it_exits(
    data_dir: Path,
) -> None:
    """A command that finds the server up joins it the cheap way (no pgserver set-up, no psql):
    it is still in the handle list while it runs, so `db stop` leaves the server alone, and it
    is out of the list once it exits, so the next `db stop` stops it."""
    assert run(data_dir, "list").returncode == 0  # starts the server and leaves it running
    session = subprocess.Popen(
        [str(TASKFLOW), "interactive"],
        env=env_for(data_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: session.pid in embedded.handles(data_dir), 60, "the session's handle")
        refused = run(data_dir, "db", "stop")
        assert f"process {session.pid}" in refused.stderr, refused
        out, err = session.communicate("add Warm\nlist\n", timeout=60)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait(20)
    assert session.returncode == 0 and "Warm" in out, err
    assert embedded.handles(data_dir) == []
    assert embedded.state(data_dir) is embedded.State.RUNNING
    stop = run(data_dir, "db", "stop")
    assert "Stopped the embedded PostgreSQL" in stop.stdout, stop


def test_a_database_dropped_by_hand_is_made_again(data_dir: Path) -> None:
    """The cheap join trusts a marker that the database was made; when it is gone anyway, the
    command opens the database the full way, which makes (and migrates) it again."""
    assert run(data_dir, "add", "Dropped with the database").returncode == 0
    import pgserver

    info = pgserver.utils.PostmasterInfo.read_from_pgdata(embedded.pgdata(data_dir))
    psql = pgserver._commands.POSTGRES_BIN_PATH / "psql"
    drop = [str(psql), info.get_uri(), "-c", f"DROP DATABASE {embedded.DB_NAME} WITH (FORCE)"]
    subprocess.run(drop, check=True, capture_output=True)
    again = run(data_dir, "list")
    # Opened, made and migrated: the local user went with the old database, and it says so.
    assert again.returncode == 1, again
    assert again.stderr.strip().splitlines() == [
        "Error: local user @me does not exist: run `taskflow init --user @me` first"
    ]
    assert run(data_dir, "init", "--user", "@me").returncode == 0
    listed = run(data_dir, "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_server_releases_its_handle(data_dir: Path, sig: signal.Signals) -> None:
    with serving(data_dir) as server:
        assert server.proc.pid in embedded.handles(data_dir)
        server.proc.send_signal(sig)
        assert server.proc.wait(30) == 128 + sig
    assert server.proc.pid not in embedded.handles(data_dir)
    # No one else used it: the server stopped it on its way out, as pgserver intends.
    assert embedded.state(data_dir) is embedded.State.STOPPED
    stop = run(data_dir, "db", "stop")
    assert stop.returncode == 0 and "not running" in stop.stderr, stop.stderr


def test_db_stop_ignores_the_handle_of_a_killed_server(data_dir: Path) -> None:
    with serving(data_dir) as server:
        server.proc.kill()
        server.proc.wait(20)
    assert server.proc.pid in embedded.handles(data_dir)  # a killed process never leaves
    assert embedded.state(data_dir) is embedded.State.RUNNING
    stop = run(data_dir, "db", "stop")
    assert stop.returncode == 0 and "Stopped the embedded PostgreSQL" in stop.stdout, stop
    assert embedded.state(data_dir) is embedded.State.STOPPED


def test_db_stop_refuses_while_a_server_uses_it(data_dir: Path) -> None:
    with serving(data_dir) as server:
        stop = run(data_dir, "db", "stop")
        assert stop.returncode == 0 and f"process {server.proc.pid}" in stop.stderr, stop
        assert server.client.get("/api/tasks").status_code == 200


def watchdogs(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "taskflow.core.embedded" in cmdline and str(data_dir) in cmdline:
            found.append(proc)
    return found


def test_left_running_it_stops_by_itself_when_idle(data_dir: Path) -> None:
    done = run(data_dir, "list", idle_minutes=0.05)  # 3 seconds
    assert done.returncode == 0, done.stderr
    assert embedded.state(data_dir) is embedded.State.RUNNING
    assert len(watchdogs(data_dir)) == 1
    wait_for(lambda: embedded.state(data_dir) is embedded.State.STOPPED, 15, "idle stop")
    wait_for(lambda: not watchdogs(data_dir), 5, "watchdog exit")


def test_it_does_not_stop_while_a_server_holds_it(data_dir: Path) -> None:
    with serving(data_dir, idle_minutes=0.05) as server:
        time.sleep(7)  # more than twice the idle time, with no request at all
        assert embedded.state(data_dir) is embedded.State.RUNNING
        assert server.client.get("/api/tasks").status_code == 200
        assert len(watchdogs(data_dir)) == 1
        server.proc.terminate()
        server.proc.wait(30)
    assert embedded.state(data_dir) is embedded.State.STOPPED
    wait_for(lambda: not watchdogs(data_dir), 5, "watchdog exit")


def test_an_undeclared_transaction_pooler_fails_in_one_line(
    pg_server_url: str, db_url: str, tmp_path: Path
) -> None:
    try:
        bouncer = start_pgbouncer(pg_server_url, pool_size=4)
    except PgBouncerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        through = bouncer.url(str(make_url(db_url).database))
        declared_not = {"DATABASE_URL": through, "DATABASE_POOLED": "false"}
        status = run(tmp_path, "db", "status", **declared_not)
        assert status.returncode == 1, status
        assert status.stderr.strip().splitlines() == [
            "Error: the database at DATABASE_URL is behind a transaction-mode pooler "
            "(PgBouncer, a -pooler host): set DATABASE_POOLED=true"
        ]
        serve = run(tmp_path, "serve", AUTH_SERVER_URL="http://127.0.0.1:9", **declared_not)
        assert serve.returncode == 1 and "Traceback" not in serve.stderr, serve
        assert len(serve.stderr.strip().splitlines()) == 1 and "DATABASE_POOLED" in serve.stderr

        detected = run(tmp_path, "db", "status", DATABASE_URL=through)  # port 6432: pooled
        assert detected.returncode == 0, detected.stderr
        direct = run(tmp_path, "db", "status", DATABASE_URL=db_url, DATABASE_POOLED="false")
        assert direct.returncode == 0, direct.stderr  # no false alarm straight to PostgreSQL
    finally:
        bouncer.stop()


def test_db_status_names_the_app_role_which_cannot_alter_the_audit_log(data_dir: Path) -> None:
    """The embedded default migrates as its superuser and runs as `taskflow_app`."""
    done = run(data_dir, "db", "status", "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["role"] == "taskflow_app" and info["role_could_alter_audit_log"] is False
    shown = run(data_dir, "db", "status")
    assert "Role:     taskflow_app" in shown.stdout
    assert "could alter" not in shown.stdout + shown.stderr
