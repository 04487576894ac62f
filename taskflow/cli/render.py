"""Rich tables, panels and trees for the core's output models.

Everything a user typed (titles, names, notes) goes through `Text`, never markup, so a title
such as "[urgent] fix" prints as written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from taskflow.core.schemas import (
    ApiKeyOut,
    AuditEntryOut,
    MemberOut,
    ProjectOut,
    TaskDetail,
    TaskNode,
    TaskOut,
    WorkerOut,
)

STATUS_STYLE = {
    "pending": "white",
    "in_progress": "yellow",
    "review": "magenta",
    "completed": "green",
    "blocked": "red",
}
PRIORITY_STYLE = {"low": "dim", "medium": "cyan", "high": "yellow", "critical": "bold red"}


def when(value: datetime | None, *, seconds: bool = False) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def day(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else ""


def status(value: str) -> Text:
    return Text(value, style=STATUS_STYLE.get(value, ""))


def priority(value: str) -> Text:
    return Text(value, style=PRIORITY_STYLE.get(value, ""))


def bar(percent: int, width: int = 10) -> Text:
    filled = round(percent / 100 * width)
    style = "green" if percent >= 100 else "yellow" if percent else "dim"
    return Text("█" * filled + "░" * (width - filled), style=style) + Text(f" {percent:>3}%")


def _table(title: str | None) -> Table:
    """Compact tables: no vertical rules, so titles keep their width on 80 columns."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )


def task_table(tasks: Sequence[TaskOut], title: str | None = None) -> Table:
    """Columns with nothing to show (no tags, no due dates, one project) are left out."""
    table = _table(title)
    optional = {
        "Project": len({t.project for t in tasks}) > 1,
        "Due": any(t.due_date for t in tasks),
        "Tags": any(t.tags for t in tasks),
    }
    table.add_column("ID", justify="right", style="bold", no_wrap=True)
    table.add_column("Title", overflow="fold", min_width=16)
    for name in ("Status", "Priority", "Done", "Assignee"):
        table.add_column(name, no_wrap=True, justify="right" if name == "Done" else "left")
    for name, shown in optional.items():
        if shown:
            table.add_column(name, no_wrap=name != "Tags", overflow="fold")
    for t in tasks:
        cells: list[RenderableType] = [
            str(t.id),
            Text(t.title),
            status(t.status),
            priority(t.priority),
            Text(f"{t.progress_percent}%", style="green" if t.progress_percent == 100 else ""),
            Text(t.assignee or "-"),
        ]
        if optional["Project"]:
            cells.append(Text(t.project))
        if optional["Due"]:
            cells.append(day(t.due_date))
        if optional["Tags"]:
            cells.append(Text(", ".join(t.tags)))
        table.add_row(*cells)
    return table


def task_panel(task: TaskOut, subtasks: int = 0) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, RenderableType]] = [
        ("Status", status(task.status)),
        ("Priority", priority(task.priority)),
        ("Progress", bar(task.progress_percent)),
        ("Project", Text(task.project)),
        ("Assignee", Text(task.assignee or "-")),
        ("Created by", Text(task.created_by)),
        ("Parent", Text(str(task.parent_id) if task.parent_id else "-")),
        ("Tags", Text(", ".join(task.tags) or "-")),
        ("Due", Text(day(task.due_date) or "-")),
        ("Created", Text(when(task.created_at))),
        ("Updated", Text(when(task.updated_at))),
        ("Version", Text(str(task.version))),
    ]
    if isinstance(task, TaskNode) and subtasks:
        rows.insert(3, ("Rolled up", bar(task.rolled_up_progress)))
        rows.append(("Subtasks", Text(f"{subtasks} direct (show --tree to see the subtree)")))
    if task.recurrence:
        legacy = " (legacy Phase 1 text: does not recur)" if task.recurrence_legacy else ""
        rows.append(("Recurrence", Text(task.recurrence + legacy)))
    if task.reviewer:
        rows.append(("Reviewer", Text(task.reviewer)))
    if task.blocked_by:
        waits = ", ".join(f"#{b.id} ({'done' if b.done else 'open'})" for b in task.blocked_by)
        rows.append(("Waits for", Text(waits)))
    if task.required_capabilities:
        rows.append(("Needs", Text(", ".join(task.required_capabilities))))
    if task.lease_expires_at:
        rows.append(("Lease until", Text(when(task.lease_expires_at))))
    for label, value in rows:
        grid.add_row(label, value)
    body: list[RenderableType] = [grid]
    if task.description:
        body += [Text(""), Text(task.description)]
    title = Text.assemble((f"#{task.id} ", "bold"), Text(task.title, style="bold"))
    return Panel(Group(*body), title=title, title_align="left", expand=False)


def _node_label(node: TaskNode) -> Text:
    label = Text.assemble(
        (f"#{node.id} ", "bold"),
        Text(node.title),
        "  ",
        status(node.status),
        "  ",
        bar(node.rolled_up_progress, 8),
    )
    if node.assignee:
        label.append(f"  {node.assignee}", style="cyan")
    return label


def task_tree(detail: TaskDetail) -> Tree:
    """A page of the subtree with each node's rolled-up progress (the flat depth-first list,
    rebuilt as a tree)."""
    root = Tree(_node_label(detail.task), guide_style="dim")
    branches: dict[int, Tree] = {detail.task.id: root}
    for node in detail.subtree:
        parent = branches.get(node.parent_id or -1)
        label = _node_label(node)
        if parent is None:  # a later page: its parent was on an earlier one
            parent = root
            label.append(f"  (under #{node.parent_id})", style="dim")
        branches[node.id] = parent.add(label)
    return root


def project_table(projects: Iterable[ProjectOut]) -> Table:
    table = _table("Projects")
    for name in ("Slug", "Name", "Owner", "Your role", "Approval", "Description"):
        table.add_column(name, overflow="fold")
    for p in projects:
        table.add_row(
            Text(p.slug, style="bold"),
            Text(p.name),
            Text(p.owner),
            str(p.my_role or "-"),
            str(p.approval_policy),
            Text(p.description),
        )
    return table


def worker_table(workers: Iterable[WorkerOut], title: str = "Workers") -> Table:
    table = _table(title)
    for name in ("Handle", "Type", "Name", "Agent type", "Capabilities", "Created", "Active"):
        table.add_column(name, overflow="fold")
    for w in workers:
        table.add_row(
            Text(w.handle, style="bold"),
            Text(w.type, style="magenta" if w.type == "agent" else "cyan"),
            Text(w.name),
            str(w.agent_type or "-"),
            Text(", ".join(w.capabilities)),
            when(w.created_at),
            Text("yes") if w.active else Text(f"no, since {when(w.deactivated_at)}", style="red"),
        )
    return table


def member_table(members: Iterable[MemberOut], project: str) -> Table:
    table = _table(f"Members of {project}")
    for name in ("Handle", "Name", "Type", "Role", "Added"):
        table.add_column(name)
    for m in members:
        table.add_row(Text(m.handle, style="bold"), Text(m.name), m.type, m.role, when(m.added_at))
    return table


def scopes_text(key: ApiKeyOut) -> str:
    """A key's scopes in a few words: `read-only`, `projects: web, api`, `manage agents`."""
    parts = ["read-only" if key.read_only else "read-write"]
    if key.projects is not None:
        parts.append("projects: " + ", ".join(key.projects))
    if key.manage_agents:
        parts.append("manage agents")
    return "; ".join(parts)


def key_table(keys: Iterable[ApiKeyOut], agent: str) -> Table:
    table = _table(f"API keys of {agent}")
    for name in ("ID", "Name", "Prefix", "Scopes", "Created", "Expires", "Last used", "Revoked"):
        table.add_column(name)
    for k in keys:
        table.add_row(
            str(k.id),
            Text(k.name),
            k.display_prefix + "…",
            Text(scopes_text(k)),
            when(k.created_at),
            when(k.expires_at) or "never",
            when(k.last_used_at) or "-",
            Text(when(k.revoked_at), style="red") if k.revoked_at else Text("-"),
        )
    return table


def _summary(details: dict[str, Any]) -> str:
    """The few words of an entry's details a reader scans for."""
    parts = []
    if "progress_percent" in details:
        parts.append(f"{details['progress_percent']}%")
    for key in ("reason", "note", "member", "to", "assignee", "agent"):
        if details.get(key):
            parts.append(f"{key}: {details[key]}")
    changes = details.get("changes")
    if isinstance(changes, dict):
        for name, change in list(changes.items())[:3]:
            if isinstance(change, dict) and "new" in change and not name.endswith("_id"):
                parts.append(f"{name} → {change['new']}")
    if details.get("source") == "phase1":
        parts.append("Phase 1 record")
    elif "phase1" in details:
        parts.append("from Phase 1")
    return ", ".join(parts)


def audit_table(entries: Iterable[AuditEntryOut], title: str = "Audit trail") -> Table:
    """One entry per row; the details' gist sits under the action so 80 columns suffice."""
    table = _table(title)
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("When (UTC)", no_wrap=True)
    table.add_column("Actor", no_wrap=True)
    table.add_column("Action", overflow="fold", min_width=20)
    table.add_column("On", no_wrap=True)
    table.add_column("Via", no_wrap=True)
    for e in entries:
        actor_style = "magenta" if e.actor_type == "agent" else "cyan"
        action = Text(e.action, style="bold")
        gist = _summary(e.details)
        if gist:
            action.append("\n" + gist, style="dim")
        table.add_row(
            str(e.id),
            e.created_at.strftime("%m-%d %H:%M:%S"),
            Text(e.actor, style=actor_style),
            action,
            f"{e.entity_type} {e.entity_id}",
            e.via,
        )
    return table


def audit_panel(entry: AuditEntryOut) -> Panel:
    import json

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in (
        ("Action", entry.action),
        ("Entity", f"{entry.entity_type} {entry.entity_id} (entry {entry.seq} of its chain)"),
        ("Actor", f"{entry.actor} ({entry.actor_type})"),
        ("Via", entry.via),
        ("When", when(entry.created_at, seconds=True) + " UTC"),
        ("Project id", str(entry.project_id or "-")),
        ("Task id", str(entry.task_id or "-")),
        ("Request", entry.request_id or "-"),
        ("Client's request", entry.client_request_id or "-"),
        ("API key", (entry.actor_key + "…") if entry.actor_key else "-"),
    ):
        grid.add_row(label, Text(value))
    details = Text(json.dumps(entry.details, indent=2, ensure_ascii=False, default=str))
    return Panel(
        Group(grid, Text(""), details), title=f"Audit entry {entry.id}", title_align="left"
    )
