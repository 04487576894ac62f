"""comment, edit-comment, comments, show (with its comments), changes, and watch: a live stream
in a real subprocess that keeps going after every database connection it had was cut."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import asyncpg

from taskflow.core.db import Database
from tests.cli.conftest import Cli
from tests.support.servers import plain_dsn


async def test_comment_edit_list_show_and_changes(sarah: Cli, agent_key: str) -> None:
    await sarah.ok("add", "Write the spec")
    said = await sarah.json("comment", "1", "**Draft** it, @claude-code")
    assert (said["author"], said["mentions"]) == ("@sarah", ["@claude-code"])
    line = (await sarah.ok("comment", "1", "and keep it short")).stdout
    assert "Comment 2 on task 1" in line
    await sarah.ok("edit-comment", "2", "and keep it to one page")
    shown = (await sarah.ok("show", "1")).stdout
    assert "Comments (2)" in shown and "Draft it, @claude-code" in shown
    assert "one page" in shown and "revision 2" in shown
    history = await sarah.json("comments", "1", "--history")
    assert [c["body"] for c in history][-2:] == ["and keep it short", "and keep it to one page"]

    theirs = await sarah.json(
        "changes", "--mine", "--after", "0", env={"TASKFLOW_TOKEN": agent_key}
    )
    assert [e["action"] for e in theirs["items"]] == ["agent_registered", "commented"]
    assert theirs["items"][1]["details"]["mentions"] == ["@claude-code"]
    mentioned = theirs["items"][1]["id"]
    page = (await sarah.ok("changes", "--after", str(mentioned))).stdout
    assert (
        "comment_edited" in page
        and f"next: taskflow changes --after {theirs['next_after']}" in page
    )
    nothing = (await sarah.ok("changes", "--after", str(theirs["next_after"]))).stdout
    assert "Nothing new." in nothing

    mine = (await sarah.json("status", env={"TASKFLOW_TOKEN": agent_key}))["summary"]
    assert mine["mentioned_open"] == 1, "a mention reaches the agent's work"
    assert (await sarah.json("status"))["summary"]["mentioned_open"] == 0

    assert "task 9 not found" in await sarah.refused("comment", "9", "hello")
    assert "a comment needs some text" in await sarah.refused("comment", "1", "   ")
    assert "no audit entry 999999" in await sarah.refused("changes", "--after", "999999")


async def test_watch_streams_and_survives_a_cut_connection(sarah: Cli, db: Database) -> None:
    await sarah.ok("add", "Watched")
    watcher = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "taskflow"),
        "watch",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(os.environ["TASKFLOW_DATA_DIR"]).parent,
    )
    assert watcher.stdout is not None and watcher.stderr is not None
    try:
        ready = await asyncio.wait_for(watcher.stderr.readline(), 30)
        assert b"Watching (listening)" in ready, ready
        await sarah.ok("comment", "1", "first")
        first = await _line(watcher.stdout)
        assert (first["action"], first["details"]["body"]) == ("commented", "first")

        cut = await asyncpg.connect(plain_dsn(db.engine.url.render_as_string(False)))
        try:  # every connection the watcher holds (LISTEN and pool) is cut
            await cut.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await cut.close()
        for n in range(3):
            await sarah.ok("comment", "1", f"after the cut {n}")
        bodies = [(await _line(watcher.stdout))["details"]["body"] for _ in range(3)]
        assert bodies == [f"after the cut {n}" for n in range(3)], "none lost, none twice"
    finally:
        watcher.terminate()
        _, stderr = await asyncio.wait_for(watcher.communicate(), 10)
    assert b"Traceback" not in stderr, stderr.decode()


async def _line(stream: asyncio.StreamReader) -> dict:
    line = await asyncio.wait_for(stream.readline(), 15)
    assert line, "watch ended"
    return json.loads(line)
