"""`taskflow demo`: the story of a human and an agent working one task tree, told step by step.

It runs on whatever database the settings name (the embedded one by default, so it works right
after `uv sync`), uses only core services, and makes the agent act through the same
Authenticator that MCP and REST use: with an API key, not as a trusted insider. Names are
reused or made unique, so the demo can be run again and again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from taskflow.cli.output import out
from taskflow.cli.render import audit_table, task_tree
from taskflow.cli.session import Session, call
from taskflow.core.actor import Actor
from taskflow.core.auth.identity import local_actor
from taskflow.core.domain import AgentType, ApprovalPolicy, Priority, Role, Via, WorkerType
from taskflow.core.errors import Conflict, TaskFlowError, Unauthenticated
from taskflow.core.schemas import (
    AddMember,
    AuditFilter,
    CreateHuman,
    CreateProject,
    CreateTask,
    IssuedKey,
    RegisterAgent,
    SubtaskSpec,
)
from taskflow.core.services import history, projects, task_queries, tasks, workers, workflow

HUMAN, HUMAN_NAME = "@demo-sarah", "Sarah Chen"
LEAD, LEAD_NAME = "@demo-ann", "Ann Lee"  # runs the agent; separation of duties keeps her off
AGENT, AGENT_NAME = "@demo-claude", "Claude Code"
PAUSE_SECONDS = 0.8


@dataclass
class Teller:
    """Prints the story; pauses between steps unless --fast."""

    console: Console
    fast: bool
    step_no: int = 0

    async def step(self, title: str, why: str) -> None:
        if self.step_no and not self.fast:
            await asyncio.sleep(PAUSE_SECONDS)
        self.step_no += 1
        self.console.print()
        self.console.rule(f"[bold]{self.step_no}. {title}[/]", align="left")
        self.console.print(f"[dim]{why}[/]")

    def did(self, who: Actor, what: str) -> None:
        style = "magenta" if who.is_agent else "cyan"
        self.console.print(f"  [{style}]{who.handle}[/] {what}")

    def refused(self, who: Actor, what: str, error: TaskFlowError) -> None:
        self.console.print(f"  [{'magenta' if who.is_agent else 'cyan'}]{who.handle}[/] {what}")
        self.console.print(f"    [red]refused ({error.code}):[/] {escape(str(error))}")


async def _human(s: Session, handle: str = HUMAN, name: str = HUMAN_NAME) -> Actor:
    try:
        return await local_actor(s.db, handle, Via.CLI)
    except Unauthenticated:
        worker = await workers.create_human(s.db, CreateHuman(handle=handle, name=name))
        return Actor(worker.id, worker.handle, WorkerType.HUMAN, via=Via.CLI)


async def _agent_key(s: Session, ann: Actor) -> IssuedKey:
    """Register the agent, or (on a re-run) give the existing one a fresh key."""
    try:
        cmd = RegisterAgent(
            handle=AGENT,
            name=AGENT_NAME,
            agent_type=AgentType.CLAUDE,
            capabilities=["coding", "testing", "reviewing"],
        )
        return await workers.register_agent(s.db, ann, cmd)
    except Conflict:
        return await workers.create_api_key(s.db, ann, AGENT, name="demo")


async def _project(s: Session, sarah: Actor) -> str:
    for n in range(1, 100):
        slug = "demo" if n == 1 else f"demo-{n}"
        cmd = CreateProject(
            slug=slug,
            name="TaskFlow 2.0 launch (demo)",
            description="Made by `taskflow demo`",
            approval_policy=ApprovalPolicy.REVIEW_REQUIRED,
        )
        try:
            return (await projects.create_project(s.db, sarah, cmd)).slug
        except Conflict:
            continue
    raise Conflict("no free demo project slug: delete old ones with `taskflow project delete`")


async def _team(t: Teller, s: Session) -> tuple[Actor, Actor, Actor, IssuedKey]:
    await t.step("Meet the team", "Humans and an AI agent: all are workers, all are audited.")
    sarah = await _human(s)
    t.did(sarah, f"({HUMAN_NAME}, human) is here")
    ann = await _human(s, LEAD, LEAD_NAME)
    issued = await _agent_key(s, ann)
    t.did(ann, f"registers agent {AGENT} and gets its API key {issued.key.display_prefix}…")
    claude = await s.runtime.auth.authenticate(issued.api_key, Via.CLI, "demo")
    t.did(claude, "signs in with that key, through the same Authenticator MCP and REST use")
    return sarah, ann, claude, issued


async def _tree(t: Teller, s: Session, sarah: Actor, claude: Actor, slug: str) -> dict[str, int]:
    await t.step(
        "A project and a task tree three levels deep",
        "The project requires review: only an approval by someone else completes a task.",
    )
    for member in (claude.handle, LEAD):
        await projects.add_member(s.db, sarah, slug, AddMember(handle=member, role=Role.MEMBER))
    t.did(sarah, f"creates project [bold]{slug}[/] and adds {claude.handle} and {LEAD}")
    root = await tasks.create_task(
        s.db,
        sarah,
        CreateTask(
            title="Launch TaskFlow 2.0",
            project=slug,
            priority=Priority.HIGH,
            subtasks=[
                SubtaskSpec(title="Build the REST API", priority=Priority.HIGH),
                SubtaskSpec(title="Write the user guide"),
            ],
        ),
    )
    api, guide = root.subtree
    code, _ = await tasks.add_subtasks(
        s.db,
        sarah,
        api.id,
        [
            SubtaskSpec(title="Implement /tasks endpoints", priority=Priority.CRITICAL),
            SubtaskSpec(title="Add cursor pagination", priority=Priority.LOW),
        ],
    )
    quickstart, _ = await tasks.add_subtasks(
        s.db,
        sarah,
        guide.id,
        [
            SubtaskSpec(title="Quickstart page", assignee=sarah.handle),
            SubtaskSpec(title="Screenshots", priority=Priority.LOW),
        ],
    )
    t.did(sarah, "breaks the launch down (subtasks are added all or nothing):")
    t.console.print(task_tree(await task_queries.get_task(s.db, sarah, root.task.id)))
    return {"root": root.task.id, "code": code.id, "quickstart": quickstart.id}


async def _agent_works(
    t: Teller, s: Session, claude: Actor, slug: str, ids: dict[str, int]
) -> None:
    await t.step(
        "The agent claims work",
        "claim takes the most urgent open leaf task atomically (FOR UPDATE SKIP LOCKED).",
    )
    task = await workflow.claim_next(s.db, claude, slug)
    t.did(claude, f"claims #{task.id} [bold]{escape(task.title)}[/] ({task.priority})")
    await workflow.progress(s.db, claude, task.id, 60, "endpoints done, tests next")
    t.did(claude, "reports 60%: endpoints done, tests next")
    try:
        await workflow.complete(s.db, claude, task.id)
    except TaskFlowError as exc:
        t.refused(claude, "tries to mark it completed", exc)
    await workflow.progress(s.db, claude, task.id, 100, "all endpoints and tests written")
    await workflow.request_review(s.db, claude, task.id)
    t.did(claude, "reports 100% and asks for a review")
    ids["claimed"] = task.id


async def _review(
    t: Teller, s: Session, sarah: Actor, ann: Actor, claude: Actor, ids: dict[str, int]
) -> None:
    task_id = ids["claimed"]
    await t.step(
        "Review: a rejection, then an approval", "Reviews go both ways between humans and agents."
    )
    reason = "The 404 path has no test"
    await workflow.reject(s.db, sarah, task_id, reason)
    t.did(sarah, f"rejects #{task_id}: [italic]{reason}[/] (back to in_progress)")
    await workflow.progress(s.db, claude, task_id, 100, "added the 404 test")
    await workflow.request_review(s.db, claude, task_id)
    t.did(claude, "adds the test and asks again")
    try:
        await workflow.approve(s.db, ann, task_id)
    except TaskFlowError as exc:
        t.refused(ann, "tries to approve the work of the agent she registered", exc)
    await workflow.approve(s.db, sarah, task_id, "Looks good")
    t.did(sarah, f"approves #{task_id}: completed")
    mine = ids["quickstart"]
    await workflow.start(s.db, sarah, mine)
    await workflow.progress(s.db, sarah, mine, 100, "draft ready")
    await workflow.request_review(s.db, sarah, mine)
    t.did(sarah, f"finishes the Quickstart page (#{mine}) and asks for a review")
    try:
        await workflow.approve(s.db, sarah, mine)
    except TaskFlowError as exc:
        t.refused(sarah, "tries to approve her own work", exc)
    await workflow.approve(s.db, claude, mine, "Clear and short")
    t.did(claude, f"approves #{mine}")


async def _results(t: Teller, s: Session, sarah: Actor, slug: str, root_id: int) -> bool:
    await t.step("Where things stand", "A parent's progress is rolled up from its subtree on read.")
    t.console.print(task_tree(await task_queries.get_task(s.db, sarah, root_id)))
    await t.step("The audit trail", "Every change, by whom, through which surface, in one log.")
    page = await history.list_audit(s.db, sarah, AuditFilter(project=slug, limit=200))
    t.console.print(audit_table(list(reversed(page.items)), f"Audit trail of {slug}"))
    await t.step("Verify the chain", "Each entry's hash covers the one before it: edits show.")
    result = await history.verify_log(s.db, sarah)
    if result.ok:
        t.console.print(
            f"  [green]✓ intact:[/] {result.entries_checked} entries in "
            f"{result.chains_checked} chains; digest [bold]{result.digest}[/]"
        )
    else:
        t.console.print(f"  [red]✗ broken:[/] {result.problems[0]}")
    return result.ok


async def _cleanup(t: Teller, s: Session, sarah: Actor, slug: str, issued: IssuedKey) -> None:
    await workers.revoke_api_key(s.db, sarah, AGENT, issued.key.id)
    await projects.delete_project(s.db, sarah, slug)
    t.console.print()
    t.console.print(
        f"[dim]Cleaned up: project {slug} deleted and the demo key revoked. Their audit "
        "entries stay (the log is append-only). Keep the project with --no-cleanup.[/]"
    )


async def story(s: Session, console: Console, fast: bool, cleanup: bool) -> bool:
    """The whole demo; returns whether the audit chain verified."""
    t = Teller(console, fast)
    console.print(
        Panel(
            "Humans and AI agents as equal, auditable workers: one task tree, one workflow, "
            "one hash-chained audit log.",
            title="[bold]TaskFlow demo[/]",
            title_align="left",
        )
    )
    sarah, ann, claude, issued = await _team(t, s)
    slug = await _project(s, sarah)
    ids = await _tree(t, s, sarah, claude, slug)
    await _agent_works(t, s, claude, slug, ids)
    await _review(t, s, sarah, ann, claude, ids)
    ok = await _results(t, s, sarah, slug, ids["root"])
    if cleanup:
        await _cleanup(t, s, sarah, slug, issued)
    else:
        console.print(f"\n[dim]Kept project {slug}: act in it with TASKFLOW_TOKEN=<agent key>.[/]")
    return ok


def run_demo(*, fast: bool, cleanup: bool) -> None:
    """Run the story on the configured database; exit 1 if the audit chain does not verify."""
    import typer

    console = out()
    ok = call(lambda s: story(s, console, fast, cleanup), auth=False)
    if not ok:
        raise typer.Exit(1)
