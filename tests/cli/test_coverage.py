"""Every operation is reachable from the CLI, through the command its declaration names."""

from __future__ import annotations

import typer

from taskflow.cli.app import app
from taskflow.core.declarations import REGISTRY

PHASE1_COMMANDS = (
    "init",
    "project add",
    "project list",
    "worker add",
    "worker list",
    "add",
    "subtask",
    "list",
    "show",
    "edit",
    "delete",
    "search",
    "start",
    "progress",
    "complete",
    "review",
    "approve",
    "reject",
    "delegate",
    "upcoming",
    "overdue",
    "due",
    "audit list",
    "audit show",
    "audit task",
    "audit actor",
    "status",
    "demo",
    "interactive",
    "i",
)
PHASE2_COMMANDS = (
    "login",
    "logout",
    "whoami",
    "agent register",
    "agent list",
    "agent revoke",
    "agent rotate",
    "member add",
    "member remove",
    "member role",
    "claim",
    "audit verify",
    "audit digest",
    "db upgrade",
    "db status",
    "serve",
    "mcp",
    "import",
)


def command_paths() -> set[str]:
    root = typer.main.get_command(app)
    paths: set[str] = set()

    def walk(group: object, prefix: str) -> None:
        for name, command in getattr(group, "commands", {}).items():
            path = f"{prefix} {name}".strip()
            if getattr(command, "commands", None):
                walk(command, path)
            else:
                paths.add(path)

    walk(root, "")
    return paths


def test_every_operation_has_a_command() -> None:
    """Each declaration names the CLI command that reaches it; that command exists."""
    assert all(op.cli for op in REGISTRY.values()), [n for n, o in REGISTRY.items() if not o.cli]
    missing = {n: op.cli for n, op in REGISTRY.items() if op.cli not in command_paths()}
    assert not missing


def test_phase1_and_phase2_commands_exist() -> None:
    paths = command_paths()
    assert not [c for c in (*PHASE1_COMMANDS, *PHASE2_COMMANDS) if c not in paths]


def test_phase1_option_names_are_kept() -> None:
    root = typer.main.get_command(app)

    def options(path: str) -> set[str]:
        command = root
        for part in path.split():
            command = command.commands[part]  # type: ignore[attr-defined]
        return {opt for p in command.params for opt in getattr(p, "opts", [])}

    assert {"--path", "-p", "--user", "-u"} <= options("init")
    assert {"-d", "-p", "--assign", "-a", "--priority", "--tags", "--parent", "--due"} <= options(
        "add"
    )
    assert {"--created-by"} <= options("add")
    assert {
        "-p",
        "-s",
        "-a",
        "--parent",
        "--search",
        "--priority",
        "--tag",
        "--created-by",
        "--due-before",
        "--due-after",
        "--no-assignee",
        "--sort",
        "--reverse",
    } <= options("list")
    assert {"--type", "-t", "--name", "-n", "--agent-type", "-a"} <= options("worker add")
    assert {"--title", "--description", "--status", "--priority", "--assign", "--parent"} <= (
        options("edit")
    )
    assert {"--tree"} <= options("show")
    assert {"-f"} <= options("delete")
    assert {"-p", "-s"} <= options("search")
    assert {"--percent", "--note"} <= options("progress")
    assert {"--reason"} <= options("reject")
    assert {"--to"} <= options("delegate")
    assert {"--days"} <= options("upcoming")
    assert {"--date", "--clear"} <= options("due")
    assert {"--task", "--actor", "--action", "--limit"} <= options("audit list")
    assert {"--fast", "--no-cleanup"} <= options("demo")
    assert {"--host", "--port", "--no-auth"} <= options("serve")
    assert {"-d"} <= options("project add")
