"""`taskflow interactive`: the real console script driven through a pseudo-terminal.

The session must keep one database connection for all its lines (the point of the REPL: start-up
is paid once), survive mistakes and refusals, honour `use`, and keep its history on disk.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import asyncpg
import pexpect
import pytest
from sqlalchemy.engine import make_url

from tests import pgbouncer
from tests.cli.conftest import Cli

TASKFLOW = Path(sys.executable).parent / "taskflow"
UP = "\x1b[A"


class Repl:
    """One `taskflow interactive` process on a pseudo-terminal."""

    def __init__(self, prompt: str) -> None:
        env = {**os.environ, "TERM": "dumb", "PROMPT_TOOLKIT_NO_CPR": "1"}
        self.child = pexpect.spawn(
            str(TASKFLOW),
            ["interactive"],
            env=env,
            encoding="utf-8",
            timeout=60,
            dimensions=(50, 200),
        )
        self.wait(prompt)

    def wait(self, prompt: str) -> str:
        """Everything printed until `prompt` shows again (the line's output)."""
        self.child.expect_exact(prompt)
        return str(self.child.before).replace("\r", "")

    def line(self, text: str, prompt: str) -> str:
        self.child.sendline(text)
        return self.wait(prompt)

    def leave(self, keys: str = "exit\r") -> int:
        self.child.send(keys)
        self.child.expect(pexpect.EOF)
        self.child.close()
        assert self.child.exitstatus is not None
        return self.child.exitstatus


def _dsn(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


HELD_CONNECTIONS = 2
"""What the session keeps open for all its commands: the driver's one and one pooled."""
OPENED_CONNECTIONS = 3
"""What it opens in all: with DATABASE_URL set, the check for an undeclared transaction pooler
(core/db.check_pooling) opens two at once and keeps one as the driver's."""


async def _other_backends(conn: asyncpg.Connection) -> set[tuple[int, object]]:
    """The sessions on this test's database other than `conn`: here, the REPL's."""
    rows = await conn.fetch(
        "SELECT pid, backend_start FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return {(r["pid"], r["backend_start"]) for r in rows}


async def _sessions_so_far(conn: asyncpg.Connection) -> int:
    """Sessions ever opened on this database (PostgreSQL's cumulative `sessions` counter)."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    count = await conn.fetchval(
        "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(count)


async def _sessions_opened_since(conn: asyncpg.Connection, before: int) -> int:
    """How many sessions were opened after `before` was read, once their exits are counted.

    A backend adds its connection to the counter when it flushes its statistics, at the latest
    when it exits, which may be a moment after its client has gone: wait for the count to settle.
    """
    seen, settled_at = -1, time.monotonic()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = await _sessions_so_far(conn) - before
        if now != seen:
            seen, settled_at = now, time.monotonic()
        elif seen > 0 and time.monotonic() - settled_at > 1.5:
            break
        await asyncio.sleep(0.2)
    return seen


async def test_one_session_one_connection_many_commands(sarah: Cli, db_url: str) -> None:
    await sarah.ok("project", "add", "web", "Web app")
    observer = await asyncpg.connect(_dsn(db_url))
    count_backends = not pgbouncer.flag_set()  # a pooler hides the REPL's own connection
    try:
        await observer.execute("SELECT pg_stat_force_next_flush()")  # count our own session now
        sessions_before = await _sessions_so_far(observer)
        repl = Repl("taskflow @sarah/default> ")
        out = repl.line('add "Write the REPL"', "taskflow @sarah/default> ")
        assert "Created task #1 Write the REPL in default" in out
        first = await _other_backends(observer)
        if count_backends:
            # Opened once at start-up and kept for every later command.
            assert len(first) == HELD_CONNECTIONS, first

        out = repl.line("use web", "taskflow @sarah/web> ")
        assert "Using project web (Web app)" in out
        out = repl.line('add "Ship the web page" --priority high', "taskflow @sarah/web> ")
        assert "Created task #2 Ship the web page in web" in out
        out = repl.line("list", "taskflow @sarah/web> ")
        assert "Tasks (1)" in out and "Ship the web page" in out and "Write the REPL" not in out
        out = repl.line("list -p default", "taskflow @sarah/web> ")
        assert "Write the REPL" in out and "Ship the web page" not in out

        out = repl.line("bogus 1", "taskflow @sarah/web> ")
        assert "Error: No such command 'bogus'" in out
        out = repl.line("list --sort nope", "taskflow @sarah/web> ")
        assert "Error: --sort:" in out
        out = repl.line("start 99", "taskflow @sarah/web> ")
        assert "Error: task 99 not found" in out
        out = repl.line("use nope", "taskflow @sarah/web> ")
        assert "Error: project 'nope' not found" in out
        out = repl.line('add "unclosed', "taskflow @sarah/web> ")
        assert "Error: cannot read that line" in out
        for nested in ("interactive", "i"):
            out = repl.line(nested, "taskflow @sarah/web> ")
            assert "Error: you are in the interactive session already" in out
        # Ctrl-C drops the line being typed, not the session. Typed first and echoed back, the
        # half line proves the prompt is reading keys (the terminal in raw mode, where Ctrl-C is
        # a key): sent a moment earlier, while the terminal was still cooked, it was a SIGINT
        # that Python may deliver inside a garbage-collection callback, which swallows it.
        repl.child.send("delete 2 --force")
        repl.child.expect_exact("delete 2 --force")
        repl.child.sendintr()
        repl.wait("taskflow @sarah/web> ")
        out = repl.line("list", "taskflow @sarah/web> ")
        assert "Ship the web page" in out  # the dropped line did not run
        out = repl.line("help", "taskflow @sarah/web> ")
        assert "use PROJECT" in out and "Add a task" in out and "audit" in out
        assert "Traceback" not in repl.child.before

        last = await _other_backends(observer)
        if count_backends:
            assert last == first, "the session opened another database connection"
        assert repl.leave() == 0
        if count_backends:
            opened = await _sessions_opened_since(observer, sessions_before)
            assert opened == OPENED_CONNECTIONS, f"the session opened {opened} connections"
        assert await _other_backends(observer) == set(), "the session left a connection open"
        rows = await observer.fetch(
            "SELECT t.title, p.slug, t.priority FROM tasks t "
            "JOIN projects p ON p.id = t.project_id ORDER BY t.id"
        )
        assert [tuple(r) for r in rows] == [
            ("Write the REPL", "default", "medium"),
            ("Ship the web page", "web", "high"),
        ]
        via = await observer.fetch("SELECT DISTINCT via FROM audit_log WHERE entity_type = 'task'")
        assert [r["via"] for r in via] == ["cli"]
    finally:
        await observer.close()


async def test_history_is_kept_in_the_data_dir(sarah: Cli) -> None:
    repl = Repl("taskflow @sarah/default> ")
    out = repl.line('add "Remember me"', "taskflow @sarah/default> ")
    assert "Created task #1" in out
    assert repl.leave() == 0
    history = sarah.data_dir / "history"
    assert 'add "Remember me"' in history.read_text()

    again = Repl("taskflow @sarah/default> ")
    again.child.send(UP + UP)  # back past `exit`: the previous session's command comes back
    out = again.line("", "taskflow @sarah/default> ")
    assert "Created task #2 Remember me" in out
    assert again.leave("\x04") == 0  # Ctrl-D leaves too


async def test_without_a_local_user_the_session_still_starts(cli: Cli) -> None:
    repl = Repl("taskflow (nobody)/default> ")
    out = repl.line("list", "taskflow (nobody)/default> ")
    assert "Error: no local user yet" in out
    out = repl.line("init --user @zoe", "taskflow @zoe/default> ")
    assert "You are @zoe from now on" in out
    out = repl.line('add "First"', "taskflow @zoe/default> ")
    assert "Created task #1 First in default" in out
    assert repl.leave("quit\r") == 0


@pytest.mark.parametrize("nested", ["mcp", "db stop"])
async def test_commands_that_would_end_the_session_are_refused(sarah: Cli, nested: str) -> None:
    repl = Repl("taskflow @sarah/default> ")
    out = repl.line(nested, "taskflow @sarah/default> ")
    assert "Error:" in out and "this session" in out
    assert repl.line("whoami", "taskflow @sarah/default> ").count("@sarah") == 1
    assert repl.leave() == 0
