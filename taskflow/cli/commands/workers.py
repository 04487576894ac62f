"""`taskflow worker ...` (Phase 1) and `taskflow agent ...` (agents and their API keys)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from taskflow.cli.output import USAGE, answer, emit_json, fail, note, out, show, success
from taskflow.cli.params import Json, build, parse_date, split_tags
from taskflow.cli.render import key_table, worker_table
from taskflow.cli.session import Session, call
from taskflow.core.domain import AgentType, WorkerType
from taskflow.core.handlers.workers import ListWorkers
from taskflow.core.schemas import CreateHuman, IssuedKey, RegisterAgent, WorkerFilter
from taskflow.core.services import onboarding, workers

worker_app = typer.Typer(help="Workers (humans and agents), as in Phase 1.", no_args_is_help=True)
agent_app = typer.Typer(help="Agents and their API keys.", no_args_is_help=True)

Handle = Annotated[str, typer.Argument(help="Handle, e.g. @claude-code.")]
KeyId = Annotated[int, typer.Argument(help="Key id, from `taskflow agent keys @agent`.", min=1)]
ReadOnly = Annotated[
    bool, typer.Option("--read-only", help="The key may only read: every change is refused.")
]
Projects = Annotated[
    list[str] | None,
    typer.Option("--project", "-p", help="Limit the key to this project (repeat for more)."),
]
ManageAgents = Annotated[
    bool,
    typer.Option("--manage-agents", help="The key may register agents and issue API keys."),
]


def _scopes(read_only: bool, projects: list[str] | None, manage: bool) -> dict[str, object]:
    return {"read_only": read_only, "projects": projects or None, "manage_agents": manage}


def show_key(issued: IssuedKey) -> None:
    """The key is shown once, here; only its hash is stored."""
    out().print(
        Panel(
            f"[bold]{issued.api_key}[/]\n\n"
            f"Use it as {issued.worker.handle}: TASKFLOW_TOKEN=<key> taskflow ..., "
            "TASKFLOW_API_KEY for `taskflow mcp`, or `Authorization: Bearer <key>`.\n"
            "[yellow]This is the only time it is shown: store it now.[/]",
            title=f"API key {issued.key.id} for {issued.worker.handle}",
            title_align="left",
        )
    )


@worker_app.command("add")
def worker_add(
    handle: Handle,
    type_: Annotated[WorkerType, typer.Option("--type", "-t", help="human or agent.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Display name.")],
    agent_type: Annotated[
        AgentType | None, typer.Option("--agent-type", "-a", help="For agents.")
    ] = None,
    capabilities: Annotated[
        str | None, typer.Option("--capabilities", "-c", help="Comma-separated, for agents.")
    ] = None,
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Project to join as member (default: yours)."),
    ] = None,
    no_join: Annotated[bool, typer.Option("--no-join", help="Join no project.")] = False,
    json_: Json = False,
) -> None:
    """Add a human or an agent (agents get an API key, shown once) and add it to your project."""
    if type_ is WorkerType.AGENT:
        cmd: CreateHuman | RegisterAgent = build(
            RegisterAgent,
            handle=handle,
            name=name,
            agent_type=agent_type or AgentType.CUSTOM,
            capabilities=split_tags(capabilities),
        )
    else:
        if agent_type or capabilities:
            fail("--agent-type and --capabilities are for agents (--type agent)", USAGE)
        cmd = build(CreateHuman, handle=handle, name=name)

    async def work(s: Session) -> onboarding.AddedWorker:
        join = None if no_join else project or s.config.default_project
        return await onboarding.add_worker(s.db, s.actor, cmd, join)

    added = call(work)
    if json_:
        emit_json(added)
        return
    joined = f", {added.role} of {escape(added.project)}" if added.project else ""
    success(f"Added {added.worker.type} [bold]{added.worker.handle}[/]{joined}")
    if added.api_key and added.key:
        show_key(IssuedKey(worker=added.worker, api_key=added.api_key, key=added.key))


@worker_app.command("list")
def worker_list(
    type_: Annotated[
        WorkerType | None, typer.Option("--type", "-t", help="Only humans or only agents.")
    ] = None,
    managed: Annotated[
        bool,
        typer.Option("--managed", help="Only agents you manage (down every registration chain)."),
    ] = False,
    json_: Json = False,
) -> None:
    """Every worker, humans and agents alike (or one kind, with --type)."""
    filters = build(ListWorkers, type=type_, managed=managed or None)
    found = call(lambda s: workers.list_workers(s.db, s.actor, filters))
    show(found, json_, worker_table(found))


@worker_app.command("show")
def worker_show(handle: Handle, json_: Json = False) -> None:
    """One worker."""
    worker = call(lambda s: workers.get_worker(s.db, s.actor, handle))
    show(worker, json_, worker_table([worker], title=worker.handle))


@agent_app.command("register")
def agent_register(
    handle: Handle,
    name: Annotated[str, typer.Option("--name", "-n", help="Display name.")],
    agent_type: Annotated[AgentType, typer.Option("--agent-type", "-a")] = AgentType.CUSTOM,
    capabilities: Annotated[str | None, typer.Option("--capabilities", "-c")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Key expiry, YYYY-MM-DD.")] = (
        None
    ),
    read_only: ReadOnly = False,
    project: Projects = None,
    manage_agents: ManageAgents = False,
    json_: Json = False,
) -> None:
    """Register an agent and issue its first API key (shown once), with its scopes."""
    cmd = build(
        RegisterAgent,
        handle=handle,
        name=name,
        agent_type=agent_type,
        capabilities=split_tags(capabilities),
        expires_at=parse_date(expires, "--expires") if expires else None,
        **_scopes(read_only, project, manage_agents),
    )
    issued = call(lambda s: workers.register_agent(s.db, s.actor, cmd))
    if json_:
        emit_json(issued)
        return
    success(f"Registered agent [bold]{issued.worker.handle}[/] (add it to a project: member add)")
    show_key(issued)


@agent_app.command("list")
def agent_list(json_: Json = False) -> None:
    """The agents, deactivated ones included."""
    agents = WorkerFilter(type=WorkerType.AGENT)
    found = call(lambda s: workers.list_workers(s.db, s.actor, agents))
    show(found, json_, worker_table(found, title="Agents"))


@agent_app.command("keys")
def agent_keys(handle: Handle, json_: Json = False) -> None:
    """An agent's API keys (prefixes only; keys are never shown again)."""
    keys = call(lambda s: workers.list_api_keys(s.db, s.actor, handle))
    show(keys, json_, key_table(keys, handle))


@agent_app.command("new-key")
def agent_new_key(
    handle: Handle,
    name: Annotated[str, typer.Option("--name", "-n", help="Label for the key.")] = "default",
    expires: Annotated[str | None, typer.Option("--expires", help="YYYY-MM-DD")] = None,
    read_only: ReadOnly = False,
    project: Projects = None,
    manage_agents: ManageAgents = False,
    json_: Json = False,
) -> None:
    """Issue another API key for an agent (shown once), with its scopes."""
    expiry = parse_date(expires, "--expires") if expires else None
    scopes = _scopes(read_only, project, manage_agents)

    async def work(s: Session) -> IssuedKey:
        return await workers.create_api_key(s.db, s.actor, handle, name, expiry, **scopes)

    issued = call(work)
    if json_:
        emit_json(issued)
    else:
        show_key(issued)


@agent_app.command("revoke")
def agent_revoke(handle: Handle, key_id: KeyId, json_: Json = False) -> None:
    """Revoke one of an agent's keys (it stops working at once)."""
    key = call(lambda s: workers.revoke_api_key(s.db, s.actor, handle, key_id))
    answer(key, json_, f"Revoked key {key.id} ({key.display_prefix}…) of {escape(handle)}")


@agent_app.command("rotate")
def agent_rotate(
    handle: Handle,
    key_id: KeyId,
    read_only: Annotated[
        bool | None,
        typer.Option("--read-only/--read-write", help="New scope (default: as the old key)."),
    ] = None,
    project: Projects = None,
    manage_agents: Annotated[
        bool | None,
        typer.Option("--manage-agents/--no-manage-agents", help="Default: as the old key."),
    ] = None,
    json_: Json = False,
) -> None:
    """Replace a key with a new one in one step (the old one stops working); scopes kept
    unless given."""
    scopes = {
        k: v
        for k, v in {
            "read_only": read_only,
            "projects": project or None,
            "manage_agents": manage_agents,
        }.items()
        if v is not None
    }
    issued = call(lambda s: workers.rotate_api_key(s.db, s.actor, handle, key_id, **scopes))
    if json_:
        emit_json(issued)
        return
    success(f"Revoked key {key_id}; issued key {issued.key.id}")
    show_key(issued)


@agent_app.command("deactivate")
def agent_deactivate(handle: Handle, json_: Json = False) -> None:
    """Switch an agent off: all its keys are revoked; it can no longer be assigned or claim."""
    done = call(lambda s: workers.deactivate_agent(s.db, s.actor, handle))
    if json_:
        emit_json(done)
    elif not done.changed:
        note(f"{handle} was already deactivated: nothing changed")
    else:
        revoked = len(done.revoked_keys)
        success(f"Deactivated {escape(handle)}: {revoked} key(s) revoked; its history stays")


@agent_app.command("reactivate")
def agent_reactivate(
    handle: Handle,
    name: Annotated[str, typer.Option("--name", "-n", help="Label for the new key.")] = "default",
    expires: Annotated[str | None, typer.Option("--expires", help="YYYY-MM-DD")] = None,
    json_: Json = False,
) -> None:
    """Switch a deactivated agent back on with a new API key (shown once)."""
    expiry = parse_date(expires, "--expires") if expires else None
    issued = call(lambda s: workers.reactivate_agent(s.db, s.actor, handle, name, expiry))
    if json_:
        emit_json(issued)
        return
    success(f"Reactivated [bold]{escape(handle)}[/]")
    show_key(issued)


def register(app: typer.Typer) -> None:
    app.add_typer(worker_app, name="worker")
    app.add_typer(agent_app, name="agent")
