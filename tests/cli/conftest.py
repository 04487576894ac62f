"""Fixtures for the CLI: Typer's CliRunner against a fresh real PostgreSQL per test.

Each command runs its own `asyncio.run`, so the runner is called in a worker thread: the tests
themselves are async and check the database (audit entries, rows) through the `db` fixture.
The CLI reads its settings fresh on every command, so the environment set here applies at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from taskflow.cli.app import app
from taskflow.core.db import Database

CLEARED = (
    "AUTH_SERVER_URL",
    "AUTH_JWKS_URL",
    "AUTH_ISSUER",
    "AUTH_AUDIENCE",
    "TASKFLOW_TOKEN",
    "TASKFLOW_API_KEY",
    "DATABASE_POOLED",
    "FORCE_COLOR",
)


@dataclass
class Cli:
    runner: CliRunner
    data_dir: Path

    async def __call__(
        self, *args: Any, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> Result:
        argv = [str(a) for a in args]
        return await asyncio.to_thread(
            self.runner.invoke, app, argv, input=input, env=dict(env or {})
        )

    async def ok(self, *args: Any, **kwargs: Any) -> Result:
        """Run a command that must succeed."""
        result = await self(*args, **kwargs)
        assert result.exit_code == 0, (args, result.exit_code, result.stdout, result.stderr)
        assert not result.stderr.strip() or "Error" not in result.stderr, result.stderr
        return result

    async def json(self, *args: Any, **kwargs: Any) -> Any:
        """Run a command with --json and parse its output."""
        result = await self.ok(*args, "--json", **kwargs)
        return json.loads(result.stdout)

    async def refused(self, *args: Any, code: int = 1, **kwargs: Any) -> str:
        """Run a command that must fail with `code` and one red line; return that line."""
        result = await self(*args, **kwargs)
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert "Traceback" not in result.stderr
        if code == 1:
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith("Error: "), result.stderr
        return result.stderr


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI at this test's database and a data directory of its own."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TASKFLOW_DATA_DIR", str(data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    return data_dir


@pytest.fixture
def cli(cli_env: Path) -> Cli:
    return Cli(CliRunner(), cli_env)


@pytest.fixture
async def sarah(cli: Cli) -> Cli:
    """The CLI after `taskflow init --user @sarah`: local mode, owner of `default`."""
    await cli.ok("init", "--user", "@sarah", "--name", "Sarah Chen")
    return cli


@pytest.fixture
async def agent_key(sarah: Cli) -> str:
    """@claude-code, an agent member of `default`, and its API key."""
    added = await sarah.json(
        "worker", "add", "@claude-code", "--type", "agent", "--name", "Claude Code", "-a", "claude"
    )
    return str(added["api_key"])


async def audit_rows(db: Database, after: int = 0) -> list[dict[str, Any]]:
    """Audit entries written after entry id `after`, oldest first."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, entity_type, entity_id, action, actor_handle, actor_type, via, "
                "details, task_id, project_id, created_at FROM audit_log WHERE id > :after "
                "ORDER BY id"
            ),
            {"after": after},
        )
        return [dict(r._mapping) for r in rows]


async def last_audit_id(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT coalesce(max(id), 0) FROM audit_log")))


async def snapshot(db: Database) -> dict[str, Any]:
    """Counts and contents that a refused command must leave unchanged."""
    tables = ("workers", "projects", "project_members", "tasks", "audit_log", "import_records")
    async with db.engine.connect() as conn:
        counts = {t: await conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables}
        tasks = (await conn.execute(text("SELECT * FROM tasks ORDER BY id"))).all()
    return {"counts": counts, "tasks": [tuple(r) for r in tasks]}
