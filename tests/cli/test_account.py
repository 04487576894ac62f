"""init, login, logout, whoami, status, db status/upgrade, --version, and how errors look."""

from __future__ import annotations

import json
import os
import stat

import pytest
from sqlalchemy import text

from taskflow.core.db import Database
from tests.cli.conftest import Cli, audit_rows, snapshot


async def test_init_creates_user_project_and_config(cli: Cli, db: Database) -> None:
    result = await cli.ok("init", "--user", "@sarah", "--name", "Sarah Chen")
    assert "Created human worker @sarah" in result.stdout
    assert "Created project default" in result.stdout
    config = json.loads((cli.data_dir / "config.json").read_text())
    assert config == {"current_user": "@sarah", "default_project": "default"}
    rows = await audit_rows(db)
    assert [(r["entity_type"], r["action"], r["actor_handle"], r["via"]) for r in rows] == [
        ("worker", "created", "@sarah", "cli"),
        ("project", "created", "@sarah", "cli"),
    ]
    async with db.engine.connect() as conn:
        role = await conn.scalar(
            text(
                "SELECT m.role FROM project_members m JOIN projects p ON p.id = m.project_id "
                "JOIN workers w ON w.id = m.worker_id WHERE p.slug = 'default' "
                "AND w.handle = '@sarah'"
            )
        )
    assert role == "owner"


async def test_init_again_changes_nothing_and_json_shape(cli: Cli, db: Database) -> None:
    await cli.ok("init", "--user", "@sarah")
    before = await snapshot(db)
    data = await cli.json("init", "--user", "@sarah")
    assert data["user_created"] is False and data["project_created"] is False
    assert data["user"]["handle"] == "@sarah" and data["role"] == "owner"
    assert set(data) >= {"user", "project", "role", "config"}
    assert await snapshot(db) == before


async def test_init_refuses_bad_handle_and_auth_mode(cli: Cli, db: Database) -> None:
    before = await snapshot(db)
    err = await cli.refused("init", "--user", "Sarah", code=2)
    assert "--user" in err and "invalid handle" in err
    err = await cli.refused("init", "--user", "@sarah", env={"AUTH_SERVER_URL": "http://x"})
    assert "taskflow login" in err
    assert await snapshot(db) == before
    assert not (cli.data_dir / "config.json").exists()


async def test_commands_before_init_say_what_to_do(cli: Cli) -> None:
    err = await cli.refused("list")
    assert "taskflow init" in err


async def test_whoami_local(sarah: Cli) -> None:
    result = await sarah.ok("whoami")
    assert "@sarah" in result.stdout and "local user" in result.stdout
    data = await sarah.json("whoami")
    assert data["worker"]["handle"] == "@sarah" and data["worker"]["type"] == "human"
    assert (data["worker"]["email"], data["worker"]["sso_subject"]) == (None, None)


async def test_login_with_agent_key_then_logout(sarah: Cli, agent_key: str, db: Database) -> None:
    result = await sarah.ok("login", input=agent_key + "\n")
    assert "Signed in as @claude-code" in result.stdout
    token_file = sarah.data_dir / "token"
    assert token_file.read_text().strip() == agent_key
    if os.name == "posix":
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    data = await sarah.json("whoami")
    assert data["worker"]["handle"] == "@claude-code"
    assert "api_key" in data["via"]
    # The agent now acts: its entries name it, through the CLI.
    await sarah.ok("add", "Agent task")
    last = (await audit_rows(db))[-1]
    who = (last["actor_handle"], last["actor_type"], last["via"])
    assert who == ("@claude-code", "agent", "cli")
    result = await sarah.ok("logout")
    assert "Signed out" in result.stdout and not token_file.exists()
    assert (await sarah.json("whoami"))["worker"]["handle"] == "@sarah"


async def test_login_refuses_a_bad_token_and_stores_nothing(sarah: Cli) -> None:
    err = await sarah.refused("login", "--token", "tf_notarealkey")
    assert "invalid API key" in err
    err = await sarah.refused("login", "--token", "eyJhbGciOi.x.y")
    assert "AUTH_SERVER_URL" in err
    assert not (sarah.data_dir / "token").exists()
    await sarah.refused("login", input="\n", code=2)


async def test_token_env_overrides_local_user(sarah: Cli, agent_key: str) -> None:
    data = await sarah.json("whoami", env={"TASKFLOW_TOKEN": agent_key})
    assert data["worker"]["handle"] == "@claude-code"
    assert "TASKFLOW_TOKEN" in data["via"]
    wrong = agent_key[:-1] + ("y" if agent_key.endswith("x") else "x")  # never the key itself
    err = await sarah.refused("whoami", env={"TASKFLOW_TOKEN": wrong})
    assert "invalid API key" in err


async def test_login_with_better_auth_jwt(sarah: Cli, better_auth, db: Database) -> None:  # type: ignore[no-untyped-def]
    session = better_auth.sign_up("ann@example.com", "password1234", "Ann Lee")
    token = better_auth.get_jwt(session)
    env = {"AUTH_SERVER_URL": better_auth.base_url}
    result = await sarah.ok("login", "--token", token, env=env)
    assert "Signed in as @ann" in result.stdout and "jwt" in result.stdout
    data = await sarah.json("whoami", env=env)
    assert data["worker"]["handle"] == "@ann" and data["worker"]["name"] == "Ann Lee"
    assert data["worker"]["email"] == "ann@example.com" and data["worker"]["sso_subject"]
    shown = (await sarah.ok("whoami", env=env)).stdout
    assert "Email: ann@example.com" in shown and data["worker"]["sso_subject"] in shown
    assert "email" not in await sarah.json("worker", "show", "@ann", env=env)
    rows = await audit_rows(db)
    created = [r for r in rows if r["actor_handle"] == "@ann"]
    assert created and created[0]["action"] == "created" and created[0]["via"] == "cli"
    # With an auth server configured, the local user no longer counts: a token is required.
    await sarah.ok("logout")
    err = await sarah.refused("list", env=env)
    assert "taskflow login" in err


async def test_status(sarah: Cli) -> None:
    await sarah.ok("add", "One", "--due", "2000-01-01")
    await sarah.ok("add", "Two")
    await sarah.ok("start", "2")
    result = await sarah.ok("status")
    assert "@sarah" in result.stdout and "local" in result.stdout
    data = await sarah.json("status")
    summary = data["summary"]
    assert summary["tasks"] == 2 and summary["projects"] == 1
    assert summary["by_status"]["pending"] == 1 and summary["by_status"]["in_progress"] == 1
    assert summary["overdue"] == 1 and summary["mine_open"] == 1
    assert data["mode"] == "local" and data["schema"]["current"] == data["schema"]["head"]


async def test_db_status_and_upgrade(cli: Cli, db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The test server trusts local connections, so a password is accepted and ignored: it must
    # still never be printed.
    monkeypatch.setenv("DATABASE_URL", db_url.replace("postgres@", "postgres:s3cret@", 1))
    data = await cli.json("db", "status")
    assert data["up_to_date"] is True and data["current"] == data["head"]
    assert "s3cret" not in json.dumps(data) and "***" in data["database"]
    shown = await cli.ok("db", "status")
    assert "s3cret" not in shown.stdout
    # The suite connects as the server's superuser: that role could rewrite history.
    assert data["role_could_alter_audit_log"] is True and data["role"]
    assert f"Role:     {data['role']}" in shown.stdout
    assert "could alter the audit log" in shown.stdout + shown.stderr
    data = await cli.json("db", "upgrade")
    assert data["before"] == data["after"]
    result = await cli.ok("db", "upgrade")
    assert "Already at the latest schema" in result.stdout


async def test_the_app_role_with_a_migration_url(
    cli: Cli, db_url: str, pg_server_url: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """DATABASE_URL as `taskflow_app` (no rights over the audit log), DATABASE_MIGRATION_URL as
    the owner: commands work, and `db status` names the role without a warning."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from tests import pgbouncer
    from tests.conftest import _admin_dsn

    if os.environ.get("TASKFLOW_TEST_DATABASE_URL") or pgbouncer.flag_set():
        pytest.skip("logs in as taskflow_app without a password: the suite's own server only")
    admin = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    try:
        await admin.execute("ALTER ROLE taskflow_app LOGIN")
    finally:
        await admin.close()
    app_url = make_url(db_url).set(username="taskflow_app", password=None)
    monkeypatch.setenv("DATABASE_URL", app_url.render_as_string(hide_password=False))
    monkeypatch.setenv("DATABASE_MIGRATION_URL", db_url)
    data = await cli.json("db", "status")
    assert data["role"] == "taskflow_app" and data["role_could_alter_audit_log"] is False
    shown = await cli.ok("db", "status")
    assert "could alter" not in shown.stdout + shown.stderr
    await cli.ok("init", "--user", "@me", "--name", "Me")
    await cli.ok("add", "Written by the app role")
    assert "Audit log intact" in (await cli.ok("audit", "verify")).stdout


async def test_db_upgrade_migrates_an_empty_database(
    cli: Cli, pg_server_url: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import asyncpg

    from tests.conftest import _admin_dsn, database_url_for, drop_database

    admin = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    name = f"tf_cli_empty_{os.getpid()}"
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    try:
        monkeypatch.setenv("DATABASE_URL", database_url_for(pg_server_url, name))
        data = await cli.json("db", "status")
        assert data["current"] is None and data["up_to_date"] is False
        result = await cli.ok("db", "upgrade")
        assert "Upgraded the schema from empty" in result.stdout
        assert (await cli.json("db", "status"))["up_to_date"] is True
    finally:
        await drop_database(pg_server_url, name)


async def test_version_and_usage_errors(cli: Cli) -> None:
    result = await cli.ok("--version")
    assert result.stdout.startswith("taskflow ")
    assert (await cli.ok("-v")).stdout == result.stdout
    await cli.refused("add", code=2)
    await cli.refused("progress", "1", "--percent", "150", code=2)
    await cli.refused("list", "--sort", "sideways", code=2)


async def test_unreachable_database_is_one_line(cli: Cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    err = await cli.refused("db", "status")
    assert "cannot open the database" in err


async def test_output_has_no_colour_when_not_a_terminal(sarah: Cli) -> None:
    await sarah.ok("add", "Plain", "--priority", "critical")
    result = await sarah("list", env={"NO_COLOR": ""})
    assert result.exit_code == 0
    assert "\x1b[" not in result.stdout
    result = await sarah("show", "999")
    assert "\x1b[" not in result.stderr


def test_console_script_errors_and_completion() -> None:
    """The real entry point: usage mistakes are one red line (exit 2), completion works."""
    import subprocess
    import sys
    from pathlib import Path

    taskflow = str(Path(sys.executable).parent / "taskflow")
    env = {**os.environ, "NO_COLOR": "1"}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [taskflow, *args], env=env | extra, capture_output=True, text=True, timeout=60
        )

    missing = run("add")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [
        "Error: Missing argument 'title'. (see: taskflow add --help)"
    ]
    unknown = run("frobnicate")
    assert unknown.returncode == 2 and "No such command" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    bare = run()
    assert bare.returncode == 0 and "Usage: taskflow" in bare.stdout
    # Name the shell rather than let Typer guess it from the parent process (under CI or a
    # helper script that parent is not a shell, and detection finds nothing).
    script = run("--show-completion", "bash", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert script.returncode == 0 and "_taskflow_completion" in script.stdout
    words = run(_TASKFLOW_COMPLETE="complete_bash", COMP_WORDS="taskflow pro", COMP_CWORD="1")
    assert words.returncode == 0 and words.stdout.split() == ["progress", "project"]


async def test_init_path_is_the_data_directory(cli: Cli, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "elsewhere"
    result = await cli.ok("init", "--user", "@pat", "--path", other)
    assert "TASKFLOW_DATA_DIR=" in result.stderr
    assert json.loads((other / "config.json").read_text())["current_user"] == "@pat"
    assert not (cli.data_dir / "config.json").exists()
    monkeypatch.setenv("TASKFLOW_DATA_DIR", str(other))
    assert (await cli.json("whoami"))["worker"]["handle"] == "@pat"


async def test_the_cli_refuses_a_bad_setting_as_a_usage_error(
    sarah: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATE_LIMIT_WRITES_PER_MINUTE", "fast")
    result = await sarah("list")
    assert result.exit_code == 2, result.stdout
    assert "invalid setting RATE_LIMIT_WRITES_PER_MINUTE" in result.stderr
    assert "Traceback" not in result.stderr
    monkeypatch.delenv("RATE_LIMIT_WRITES_PER_MINUTE")
    await sarah.ok("list")  # read afresh: without it the same command works
