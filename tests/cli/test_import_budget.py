"""What a plain read loads: `taskflow list` imports no ORM, no server, no migration tool and no
other command area (issue 12: the command's start-up is most of its time).

The console script's entry point (`taskflow.cli.app:main`) runs in a subprocess that writes the
names in `sys.modules` when it exits (`python -X importtime` would miss modules loaded through
`importlib.import_module`, as the command areas are). No time is asserted, only what was loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from taskflow.cli.app import AREAS, build_app
from tests.cli.conftest import Cli

DRIVER = """
import atexit, json, sys
report = sys.argv.pop(1)
atexit.register(lambda: open(report, "w").write(json.dumps(sorted(sys.modules))))
from taskflow.cli.app import main
main(sys.argv[1:])
"""

NOT_ON_A_READ = (
    "sqlalchemy",  # the listing is one driver statement (decision 77)
    "taskflow.core.models",
    "taskflow.core.audit",  # a read appends nothing
    "taskflow.core.idempotency",
    "taskflow.core.handlers.tasks",  # only the listing's own handler module
    "taskflow.core.handlers.workers",
    "taskflow.cli.commands.tasks",
    "alembic",  # the schema check compares revisions; it never loads the migration tool
    "mcp",
    "starlette",
    "uvicorn",
    "httpx",  # the JWT stack, only with an auth server
    "jwt",
    "prompt_toolkit",  # the interactive session's line editor
    "taskflow.http",
    "taskflow.mcp_server",
    "taskflow.core.phase1",  # `taskflow import`
    "taskflow.core.services.importer",
    "taskflow.cli.demo",
    "taskflow.cli.repl",
    "taskflow.cli.commands.account",
    "taskflow.cli.commands.ops",
    "taskflow.cli.commands.projects",
    "taskflow.cli.commands.workers",
    "taskflow.cli.commands.workflow",
    "taskflow.cli.commands.audit",
)


def loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def run_cli(tmp: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`taskflow ARGS` as the console script runs it, and every module it had loaded at exit."""
    report = tmp / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(report), *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, set(json.loads(report.read_text()))


@pytest.mark.parametrize(
    "line",
    [
        ("list",),
        ("list", "-p", "default", "--status", "in_progress", "--sort", "title"),
        ("list", "--mine", "--ready"),
        ("search", "Read"),
        ("overdue",),
    ],
    ids=lambda line: " ".join(line),
)
async def test_a_listing_loads_no_orm_no_servers_no_migrations_no_other_commands(
    sarah: Cli, tmp_path: Path, line: tuple[str, ...]
) -> None:
    await sarah.ok("add", "Read me", "--due", "2020-01-01")
    await sarah.ok("start", "1")
    done, modules = run_cli(tmp_path, *line, "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [t["title"] for t in json.loads(done.stdout)] == ["Read me"]
    assert "taskflow.cli.commands.listing" in modules  # the report is real: it names what ran
    assert "taskflow.core.handlers.task_list" in modules
    found = {package: loaded(modules, package) for package in NOT_ON_A_READ}
    assert not {package: names for package, names in found.items() if names}


async def test_a_refused_read_loads_no_more(cli: Cli, tmp_path: Path) -> None:
    """Without a local user the same command refuses in one line, still loading only its area."""
    done, modules = run_cli(tmp_path, "list")
    assert done.returncode == 1
    assert "taskflow init --user" in done.stderr
    assert not [p for p in NOT_ON_A_READ if loaded(modules, p)]


@pytest.mark.parametrize("area", list(AREAS))
def test_each_area_registers_the_commands_it_is_listed_with(area: str) -> None:
    """A command line loads the module `AREAS` names for its command: the list must be true."""
    root = typer.main.get_command(build_app([area]))
    assert set(root.commands) == set(AREAS[area])  # type: ignore[attr-defined]


def test_the_areas_together_are_the_whole_app() -> None:
    """Every command is in exactly one area, so no command line loads the wrong module."""
    listed = [name for names in AREAS.values() for name in names]
    assert len(listed) == len(set(listed))
    root = typer.main.get_command(build_app())
    assert set(root.commands) == set(listed)  # type: ignore[attr-defined]
