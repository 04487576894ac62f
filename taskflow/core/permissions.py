"""Who may do what in a project: the rules, apart from the queries that look roles up.

A project the caller is not a member of answers "not found", never "forbidden": its existence
is not the caller's business. So does a project the caller's API key is not limited to
(`taskflow.core.scopes`). `taskflow.core.services.access` looks projects and roles up with
SQLAlchemy; the plain listing (`taskflow.core.handlers.task_list`) with one driver statement;
both judge what they found here.
"""

from __future__ import annotations

from taskflow.core.actor import Actor
from taskflow.core.domain import Role, role_at_least
from taskflow.core.errors import Forbidden, NextStep, NotFound

_WHAT_ROLE_ALLOWS = {
    Role.VIEWER: "read",
    Role.MEMBER: "work on tasks",
    Role.ADMIN: "manage members and settings",
    Role.OWNER: "delete the project or change its approval policy",
}


def project_not_found(ref: str | int) -> NotFound:
    return NotFound(
        f"project {ref!r} not found, or you are not a member: list your projects, or ask its "
        "owner to add you",
        entity="project",
        next_step=NextStep("list_projects"),
    )


def check_role(role: Role | None, needed: Role, where: str, ref: str | int) -> Role:
    """Raise NotFound for non-members and Forbidden when the role is too low."""
    if role is None:
        raise project_not_found(ref)
    if not role_at_least(role, needed):
        raise Forbidden(
            f"you are a {role} of project {where}; to {_WHAT_ROLE_ALLOWS[needed]} you need to be "
            f"{needed} or higher: ask an admin of the project",
            role=str(role),
            needed=str(needed),
        )
    return role


def role_in_found(
    actor: Actor, ref: str | int, project_id: int, slug: str, role: str | None, needed: Role
) -> Role:
    """The caller's role in a project a lookup found by `ref`, checked against `needed`: not
    found when the caller's key may not see it or the caller is no member, forbidden when the
    role is too low. Every project lookup ends here, whatever ran its query."""
    if not actor.scopes.sees(project_id):
        raise project_not_found(ref)
    return check_role(Role(role) if role else None, needed, slug, ref)


def visible(actor: Actor, project_id: int) -> bool:
    """Whether the caller's key lets it see the project at all (membership aside)."""
    return actor.scopes.sees(project_id)
