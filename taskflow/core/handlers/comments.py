"""Comments on tasks: append-only Markdown revisions by workers, with `@handle` mentions.

A comment is written by a member of the task's project and audited (`commented`) on its own
chain (`comment:<id>`) with the task and project as its scope, so it shows in the task's audit
trail and reaches the feed. An edit, by its author only, is a new revision (`comment_edited`):
the old text stays, in the table and in the log. `@handle`s naming members of the project are
recorded as mentions (worker ids on the revision, handles in the entry's `mentions`), which is
how a mention reaches the mentioned worker's feed (`mine`) and their work summary.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import Field
from sqlalchemy import text

from taskflow.core.actor import Actor
from taskflow.core.declarations import Route, declare
from taskflow.core.domain import AuditAction, Role
from taskflow.core.errors import Forbidden, NotFound, ValidationFailed
from taskflow.core.handlers import task_rows as rows
from taskflow.core.handlers.tasks import BIGINT_MAX, TaskId
from taskflow.core.schemas import Model
from taskflow.core.uow import UnitOfWork

TOOLSET = "feed"
ENTITY = "comment"
MENTION = re.compile(r"(?<![\w@])@[a-z0-9_-]+")

Body = Annotated[str, Field(min_length=1, max_length=20_000, description="Markdown text")]


class AddComment(Model):
    task_id: TaskId
    body: Body


class EditComment(Model):
    comment_id: Annotated[int, Field(ge=1, le=BIGINT_MAX, description="The comment's id")]
    body: Body


class ListComments(Model):
    task_id: TaskId
    history: bool = Field(default=False, description="Every revision, not just the latest")


class CommentOut(Model):
    id: int = Field(description="The comment's id (its first revision's)")
    task_id: int
    author: str
    body: str
    mentions: list[str] = Field(default_factory=list)
    revision: int
    created_at: datetime = Field(description="When this revision was written")


_MEMBERS = text(
    "SELECT w.id, w.handle FROM workers w JOIN project_members m ON m.worker_id = w.id "
    "WHERE m.project_id = :project AND w.handle = ANY(:handles)"
)
_INSERT = text(
    """
    WITH n AS (SELECT nextval(pg_get_serial_sequence('comments', 'id')) AS id)
    INSERT INTO comments (id, comment_id, revision, task_id, project_id, author_id, body,
                          mentions)
    SELECT n.id, coalesce(:comment_id, n.id), :revision, :task_id, :project_id, :author_id,
           :body, :mentions
    FROM n
    RETURNING id, comment_id, revision, created_at
    """
)


def _clean(body: str) -> str:
    if not body.strip():
        raise ValidationFailed("a comment needs some text", field="body")
    return body


async def _mentions(uow: UnitOfWork, project_id: int, body: str) -> list[tuple[int, str]]:
    """The members of the project the body names by `@handle`, in order of first mention."""
    named = list(dict.fromkeys(MENTION.findall(body)))
    if not named:
        return []
    found = dict(
        (h, i)
        for i, h in await uow.session.execute(_MEMBERS, {"project": project_id, "handles": named})
    )
    return [(found[h], h) for h in named if h in found]


async def _write(
    uow: UnitOfWork,
    actor: Actor,
    *,
    task_id: int,
    project_id: int,
    body: str,
    comment_id: int | None,
    revision: int,
) -> CommentOut:
    mentioned = await _mentions(uow, project_id, body)
    row = (
        (
            await uow.session.execute(
                _INSERT,
                {
                    "comment_id": comment_id,
                    "revision": revision,
                    "task_id": task_id,
                    "project_id": project_id,
                    "author_id": actor.worker_id,
                    "body": body,
                    "mentions": [i for i, _ in mentioned],
                },
            )
        )
        .mappings()
        .one()
    )
    handles = [h for _, h in mentioned]
    details = {"comment_id": row["comment_id"], "revision": row["revision"], "body": body}
    if handles:
        details["mentions"] = handles
    await uow.record(
        actor,
        entity_type=ENTITY,
        entity_id=row["comment_id"],
        project_id=project_id,
        task_id=task_id,
        action=AuditAction.COMMENTED if revision == 1 else AuditAction.COMMENT_EDITED,
        details=details,
    )
    return CommentOut(
        id=row["comment_id"],
        task_id=task_id,
        author=actor.handle,
        body=body,
        mentions=handles,
        revision=row["revision"],
        created_at=row["created_at"],
    )


@declare(
    AddComment,
    toolset=TOOLSET,
    mcp="add_comment",
    rest=Route("POST", "/api/tasks/{task_id}/comments", status=201),
    cli="comment",
)
async def add_comment(cmd: AddComment, uow: UnitOfWork, actor: Actor) -> CommentOut:
    """Comment on a task (Markdown); @handles of members are mentioned and see it in their feed."""
    body = _clean(cmd.body)
    task = await rows.lock_task(uow.session, actor, cmd.task_id, Role.MEMBER)
    return await _write(
        uow,
        actor,
        task_id=task.id,
        project_id=task.row["project_id"],
        body=body,
        comment_id=None,
        revision=1,
    )


_LATEST = text(
    """
    SELECT c.comment_id, c.revision, c.task_id, c.project_id, c.author_id, m.role
    FROM comments c
    LEFT JOIN project_members m ON m.project_id = c.project_id AND m.worker_id = :me
    WHERE c.comment_id = :comment_id
    ORDER BY c.revision DESC LIMIT 1
    """
)


@declare(
    EditComment,
    toolset=TOOLSET,
    mcp="edit_comment",
    rest=Route("POST", "/api/comments/{comment_id}/revisions", status=201),
    cli="edit-comment",
)
async def edit_comment(cmd: EditComment, uow: UnitOfWork, actor: Actor) -> CommentOut:
    """Edit your own comment: a new revision; the earlier text is kept (history=true shows it)."""
    body = _clean(cmd.body)
    found = (
        (await uow.session.execute(_LATEST, {"comment_id": cmd.comment_id, "me": actor.worker_id}))
        .mappings()
        .first()
    )
    if found is None or found["role"] is None:
        raise NotFound(f"comment {cmd.comment_id} not found", entity="comment")
    if found["author_id"] != actor.worker_id:
        raise Forbidden(f"comment {cmd.comment_id} is not yours: only its author edits it")
    task = await rows.lock_task(uow.session, actor, found["task_id"], Role.MEMBER)
    return await _write(
        uow,
        actor,
        task_id=task.id,
        project_id=found["project_id"],
        body=body,
        comment_id=found["comment_id"],
        revision=found["revision"] + 1,
    )


_LIST = text(
    """
    SELECT c.comment_id, c.revision, c.task_id, c.body, c.created_at, w.handle AS author,
           ARRAY(SELECT mw.handle FROM workers mw WHERE mw.id = ANY(c.mentions)
                 ORDER BY array_position(c.mentions, mw.id)) AS mentions
    FROM comments c JOIN workers w ON w.id = c.author_id
    WHERE c.task_id = :task_id
      AND (:history OR c.revision = (SELECT max(r.revision) FROM comments r
                                     WHERE r.comment_id = c.comment_id))
    ORDER BY c.comment_id, c.revision
    """
)


async def comments_of(uow: UnitOfWork, task_id: int, history: bool = False) -> list[CommentOut]:
    """The task's comments, oldest first (the caller checked the task is visible)."""
    result = await uow.session.execute(_LIST, {"task_id": task_id, "history": history})
    return [
        CommentOut(
            id=r["comment_id"],
            task_id=r["task_id"],
            author=r["author"],
            body=r["body"],
            mentions=list(r["mentions"]),
            revision=r["revision"],
            created_at=r["created_at"],
        )
        for r in result.mappings()
    ]


_VISIBLE = text(
    "SELECT 1 FROM tasks t JOIN project_members m ON m.project_id = t.project_id "
    "AND m.worker_id = :me WHERE t.id = :task_id"
)


@declare(
    ListComments,
    toolset=TOOLSET,
    read_only=True,
    mcp="list_comments",
    rest=Route("GET", "/api/tasks/{task_id}/comments"),
    cli="comments",
)
async def list_comments(cmd: ListComments, uow: UnitOfWork, actor: Actor) -> list[CommentOut]:
    """A task's comments, oldest first, each at its latest revision (history=true: every one)."""
    seen = await uow.session.scalar(_VISIBLE, {"me": actor.worker_id, "task_id": cmd.task_id})
    if seen is None:
        raise rows.not_found(cmd.task_id)
    return await comments_of(uow, cmd.task_id, cmd.history)
