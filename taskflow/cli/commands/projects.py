"""`taskflow project ...` and `taskflow member ...`: projects and who may work in them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.markup import escape

from taskflow.cli.output import answer, emit_json, fail, out, show
from taskflow.cli.params import Json, build
from taskflow.cli.render import member_table, project_table
from taskflow.cli.session import Session, call
from taskflow.core.domain import ApprovalPolicy, Role
from taskflow.core.schemas import AddMember, CreateProject, MemberOut, UpdateProject
from taskflow.core.services import projects

project_app = typer.Typer(help="Projects: add, list, show, edit, delete.", no_args_is_help=True)
member_app = typer.Typer(help="Project members and their roles.", no_args_is_help=True)
_T = TypeVar("_T")

Slug = Annotated[str, typer.Argument(help="Project slug, e.g. web-app.")]
Handle = Annotated[str, typer.Argument(help="Worker handle, e.g. @claude-code.")]
MemberProject = Annotated[
    str | None, typer.Option("--project", "-p", help="Project slug (default: yours).")
]


def _in_project(
    project: str | None, verb: Callable[..., Awaitable[_T]], *args: object
) -> tuple[str, _T]:
    """Run a member verb on `project`, or the configured default one. The slug comes back too:
    only the session knows the default, and the messages name the project."""

    async def work(s: Session) -> tuple[str, _T]:
        slug = project or s.config.default_project
        return slug, await verb(s.db, s.actor, slug, *args)

    return call(work)


def _show_member(member: MemberOut, slug: str, json_: bool) -> None:
    """`member add` and `member role` both answer with the member's role as it now is."""
    answer(member, json_, f"{member.handle} is now {member.role} of {escape(slug)}")


@project_app.command("add")
def add(
    slug: Slug,
    name: Annotated[str, typer.Argument(help="Display name.")],
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    approval: Annotated[
        ApprovalPolicy | None,
        typer.Option("--approval", help="none (default) or review_required."),
    ] = None,
    json_: Json = False,
) -> None:
    """Create a project (you become its owner)."""
    cmd = build(
        CreateProject, slug=slug, name=name, description=description, approval_policy=approval
    )
    project = call(lambda s: projects.create_project(s.db, s.actor, cmd))
    answer(
        project, json_, f"Created project [bold]{escape(project.slug)}[/] ({escape(project.name)})"
    )


@project_app.command("list")
def list_(json_: Json = False) -> None:
    """The projects you are a member of."""
    found = call(lambda s: projects.list_projects(s.db, s.actor))
    if json_:
        emit_json(found)
    elif not found:
        out().print("[dim]No projects yet: taskflow project add SLUG NAME[/]")
    else:
        out().print(project_table(found))


@project_app.command("show")
def show_(slug: Slug, json_: Json = False) -> None:
    """One project, with your role in it."""
    project = call(lambda s: projects.get_project(s.db, s.actor, slug))
    show(project, json_, project_table([project]))


@project_app.command("edit")
def edit(
    slug: Slug,
    name: Annotated[str | None, typer.Option("--name", "-n")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    approval: Annotated[ApprovalPolicy | None, typer.Option("--approval")] = None,
    open_subtasks: Annotated[
        bool | None,
        typer.Option(
            "--allow-open-subtasks/--parents-finish-last",
            help="Whether a task may be completed while its subtasks are open (owners only).",
        ),
    ] = None,
    recur_subtasks: Annotated[
        bool | None,
        typer.Option(
            "--recur-subtasks/--no-recur-subtasks",
            help="Whether a recurring task's next occurrence copies its subtasks.",
        ),
    ] = None,
    lease: Annotated[
        int | None, typer.Option("--lease", help="A claim's default lease, in seconds.")
    ] = None,
    json_: Json = False,
) -> None:
    """Rename, describe, set the claim lease, or change the settings (the policies: owners only)."""
    cmd = build(
        UpdateProject,
        name=name,
        description=description,
        approval_policy=approval,
        allow_open_subtasks=open_subtasks,
        recur_subtasks=recur_subtasks,
        lease_seconds=lease,
    )
    if not cmd.model_fields_set:
        fail(
            "nothing to change: give --name, --description, --lease, --approval, "
            "--allow-open-subtasks/--parents-finish-last or --recur-subtasks/--no-recur-subtasks",
            2,
        )
    project = call(lambda s: projects.update_project(s.db, s.actor, slug, cmd))
    answer(project, json_, f"Updated project [bold]{escape(project.slug)}[/]")


@project_app.command("delete")
def delete(
    slug: Slug,
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask.")] = False,
    json_: Json = False,
) -> None:
    """Delete a project and all its tasks (the audit trail stays)."""
    if not force and not typer.confirm(f"Delete project {slug} and all its tasks?"):
        fail("not deleted")
    project_id = call(lambda s: projects.delete_project(s.db, s.actor, slug))
    answer(
        {"deleted": slug, "id": project_id},
        json_,
        f"Deleted project {escape(slug)} (its audit trail stays)",
    )


@member_app.command("list")
def members(project: MemberProject = None, json_: Json = False) -> None:
    """Who is in a project, with which role."""
    slug, found = _in_project(project, projects.list_members)
    show(found, json_, member_table(found, slug))


@member_app.command("add")
def member_add(
    handle: Handle,
    project: MemberProject = None,
    role: Annotated[Role, typer.Option("--role", "-r", help="Their role.")] = Role.MEMBER,
    json_: Json = False,
) -> None:
    """Add a worker to a project (admins and owners)."""
    slug, member = _in_project(
        project, projects.add_member, build(AddMember, handle=handle, role=role)
    )
    _show_member(member, slug, json_)


@member_app.command("remove")
def member_remove(handle: Handle, project: MemberProject = None, json_: Json = False) -> None:
    """Remove a worker from a project."""
    slug, _ = _in_project(project, projects.remove_member, handle)
    answer(
        {"removed": handle, "project": slug},
        json_,
        f"{handle} is no longer a member of {escape(slug)}",
    )


@member_app.command("role")
def member_role(
    handle: Handle,
    role: Annotated[Role, typer.Argument(help="owner, admin, member or viewer.")],
    project: MemberProject = None,
    json_: Json = False,
) -> None:
    """Change a member's role."""
    slug, member = _in_project(
        project, projects.change_role, build(AddMember, handle=handle, role=role)
    )
    _show_member(member, slug, json_)


def register(app: typer.Typer) -> None:
    app.add_typer(project_app, name="project")
    app.add_typer(member_app, name="member")
