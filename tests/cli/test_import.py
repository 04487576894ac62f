"""`taskflow import`: a Phase 1 store comes over whole, exactly once, or not at all."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from taskflow.core import phase1
from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Via, WorkerType
from taskflow.core.errors import ValidationFailed
from taskflow.core.services import importer
from tests.cli.conftest import Cli, snapshot

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "phase1"


def utc(naive: str) -> datetime:
    return datetime.fromisoformat(naive).replace(tzinfo=UTC)


def sample_data() -> dict[str, Any]:
    return json.loads((SAMPLE / "data.json").read_text())


async def rows(db: Database, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def test_sample_store_is_reproduced_exactly(sarah: Cli, db: Database) -> None:
    assert SAMPLE.is_dir(), SAMPLE
    data = sample_data()
    result = await sarah.ok("import", SAMPLE)
    assert "Imported" in result.stdout
    assert "taskflow audit verify" in result.stdout

    projects = {
        p["slug"]: p
        for p in await rows(
            db,
            "SELECT p.slug, p.name, p.description, w.handle AS owner FROM projects p "
            "JOIN workers w ON w.id = p.owner_id",
        )
    }
    for p in data["projects"]:
        assert p["slug"] in projects
    # `demo` is new (the importer owns it); `default` existed (init) and was merged into.
    demo = projects["demo"]
    assert (demo["name"], demo["description"], demo["owner"]) == (
        "Demo Project",
        "Demonstration of human-agent parity",
        "@sarah",
    )

    workers = {w["handle"]: w for w in await rows(db, "SELECT * FROM workers")}
    for w in data["workers"]:
        got = workers[w["id"]]
        assert (got["type"], got["agent_type"], list(got["capabilities"])) == (
            w["type"],
            w["agent_type"],
            w["capabilities"],
        )
        if w["id"] != "@sarah":  # @sarah existed already (init) and was matched
            assert got["name"] == w["name"] and got["created_at"] == utc(w["created_at"])

    tasks = {
        t["id"]: t
        for t in await rows(
            db,
            "SELECT t.*, p.slug, a.handle AS assignee, c.handle AS creator FROM tasks t "
            "JOIN projects p ON p.id = t.project_id LEFT JOIN workers a ON a.id = t.assignee_id "
            "JOIN workers c ON c.id = t.created_by_id",
        )
    }
    assert set(tasks) == {t["id"] for t in data["tasks"]}  # Phase 1 ids kept
    for t in data["tasks"]:
        got = tasks[t["id"]]
        assert got["title"] == t["title"] and got["description"] == t["description"]
        assert (got["status"], got["priority"], got["progress_percent"]) == (
            t["status"],
            t["priority"],
            t["progress_percent"],
        )
        assert (got["slug"], got["assignee"], got["creator"], got["parent_id"]) == (
            t["project_slug"],
            t["assigned_to"],
            t["created_by"],
            t["parent_id"],
        )
        assert list(got["tags"]) == t["tags"] and got["recurrence"] == t["recurrence"]
        assert got["created_at"] == utc(t["created_at"])
        assert got["updated_at"] == utc(t["updated_at"])

    history = await rows(db, "SELECT * FROM audit_log WHERE via = 'import' ORDER BY id")
    from_phase1 = [e for e in history if e["action"] != "imported" and "audit_id" in str(e)]
    by_source = {e["details"]["phase1"]["audit_id"]: e for e in from_phase1}
    assert set(by_source) == {a["id"] for a in data["audit_logs"]}
    for a in data["audit_logs"]:
        got = by_source[a["id"]]
        assert (got["action"], got["actor_handle"], got["actor_type"]) == (
            a["action"],
            a["actor_id"],
            a["actor_type"],
        )
        assert got["created_at"] == utc(a["timestamp"])
        assert (got["entity_type"], got["task_id"]) == ("task", a["task_id"])
        context = {k: v for k, v in got["details"].items() if k != "phase1"}
        assert context == a["context"]
        assert got["actor_id"] == workers[a["actor_id"]]["id"]

    imported = [e for e in history if e["action"] == "imported"]
    originals = (
        {("worker", w["id"]): w for w in data["workers"]}
        | {("project", p["slug"]): p for p in data["projects"]}
        | {("task", t["id"]): t for t in data["tasks"]}
    )
    seen = set()
    for e in imported:
        record = e["details"]["phase1"]
        key = (
            e["entity_type"],
            record.get("slug") if e["entity_type"] == "project" else record["id"],
        )
        assert originals[key] == record  # the record exactly as Phase 1 wrote it
        assert e["actor_handle"] == "@sarah" and e["via"] == "import"
        seen.add(key)
    assert seen == set(originals)

    # Phase 1 workers may work on the imported projects; a task's history reads in order.
    members = await sarah.json("member", "list", "-p", "demo")
    assert {m["handle"]: m["role"] for m in members} == {
        "@sarah": "owner",
        "@ada": "member",
        "@claude-code": "member",
    }
    trail = await sarah.json("audit", "task", "1")
    assert [e["action"] for e in trail] == [
        "created",
        "started",
        "progressed",
        "completed",
        "imported",
    ]
    assert (await sarah.json("audit", "verify"))["ok"] is True


async def test_second_import_changes_nothing(sarah: Cli, db: Database) -> None:
    first = await sarah.json("import", SAMPLE / "data.json")
    assert first["tasks_imported"] == 2 and first["audit_entries_imported"] == 8
    assert first["workers_created"] == ["@ada", "@claude-code"]
    assert first["workers_matched"] == ["@sarah"]
    assert first["projects_created"] == ["demo"] and first["projects_merged"] == ["default"]
    before = await snapshot(db)
    again = await sarah.json("import", SAMPLE)
    assert again["already_imported"] == sample_data_count()
    assert again["tasks_imported"] == 0 and again["audit_entries_imported"] == 0
    assert await snapshot(db) == before
    result = await sarah.ok("import", SAMPLE)
    assert "Nothing new" in result.stdout
    assert await snapshot(db) == before


def sample_data_count() -> int:
    data = sample_data()
    return sum(len(data[k]) for k in ("projects", "workers", "tasks", "audit_logs"))


def write_store(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    store = tmp_path / "copy" / ".taskflow"
    store.mkdir(parents=True)
    shutil.copy(SAMPLE / "config.json", store / "config.json")
    body = data if isinstance(data, str) else json.dumps(data, indent=2)
    (store / "data.json").write_text(body)
    return store


def _corrupt_status(data: dict[str, Any]) -> None:
    data["tasks"][1]["status"] = "done"


def _corrupt_assignee(data: dict[str, Any]) -> None:
    data["tasks"][0]["assigned_to"] = "@ghost"


def _corrupt_timestamp(data: dict[str, Any]) -> None:
    data["audit_logs"][5]["timestamp"] = "yesterday"


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (_corrupt_status, "tasks[1].status"),
        (_corrupt_assignee, "tasks[0].assigned_to: no worker @ghost"),
        (_corrupt_timestamp, "audit_logs[5].timestamp"),
    ],
)
async def test_corrupted_copy_is_refused_with_line_and_field(
    sarah: Cli, db: Database, tmp_path: Path, corrupt: Any, expected: str
) -> None:
    data = sample_data()
    corrupt(data)
    store = write_store(tmp_path, data)
    text_lines = (store / "data.json").read_text().splitlines()
    before = await snapshot(db)
    err = await sarah.refused("import", store)
    assert expected in err and "Nothing was imported" in err
    line = int(err.split(" line ")[1].split(",")[0])
    field = expected.split(": ")[0].split(".")[-1]
    assert f'"{field}"' in text_lines[line - 1]  # the line named holds the field at fault
    assert await snapshot(db) == before


async def test_invalid_json_names_line_and_column(sarah: Cli, db: Database, tmp_path: Path) -> None:
    body = (SAMPLE / "data.json").read_text().replace('"status": "completed"', '"status" "x"', 1)
    store = write_store(tmp_path, body)
    before = await snapshot(db)
    err = await sarah.refused("import", store)
    assert "data.json line" in err and "column" in err and "not valid JSON" in err
    err = await sarah.refused("import", tmp_path / "nowhere")
    assert "no Phase 1 store" in err
    assert await snapshot(db) == before


async def test_refusal_found_midway_writes_nothing(cli: Cli, db: Database) -> None:
    """The store is valid, but @claude-code is a human here: found after rows were written."""
    await cli.ok("init", "--user", "@lead")
    await cli.ok("worker", "add", "@claude-code", "-t", "human", "-n", "Not an agent")
    before = await snapshot(db)
    err = await cli.refused("import", SAMPLE)
    assert "@claude-code exists here as a human" in err
    assert await snapshot(db) == before


def rich_store() -> dict[str, Any]:
    """Nesting three deep, a deleted task, a reused id, a dangling parent, a store-level entry."""
    w = "2026-01-01T10:00:00"
    actor = {"actor_type": "human", "actor_id": "@pat"}

    def task(i: int, title: str, **kw: Any) -> dict[str, Any]:
        base = {
            "id": i,
            "title": title,
            "description": "",
            "status": "pending",
            "priority": "medium",
            "progress_percent": 0,
            "project_slug": "web",
            "assigned_to": None,
            "parent_id": None,
            "tags": [],
            "due_date": None,
            "recurrence": None,
            "created_by": "@pat",
            "created_at": w,
            "updated_at": w,
        }
        return base | kw

    def entry(i: int, task_id: int | None, action: str, **ctx: Any) -> dict[str, Any]:
        return {
            "id": i,
            "task_id": task_id,
            "project_slug": "web",
            **actor,
            "action": action,
            "context": ctx,
            "timestamp": f"2026-01-0{1 + i // 10}T10:{i:02d}:00",
        }

    return {
        "projects": [{"slug": "web", "name": "Web", "description": None}],
        "workers": [
            {
                "id": "@pat",
                "type": "human",
                "name": "Pat",
                "agent_type": None,
                "capabilities": [],
                "created_at": w,
            },
            {
                "id": "@bot",
                "type": "agent",
                "name": "Bot",
                "agent_type": "custom",
                "capabilities": ["x"],
                "created_at": w,
            },
        ],
        "tasks": [
            task(1, "Root", due_date="2026-03-01"),
            task(2, "Child", parent_id=1, assigned_to="@bot"),
            task(3, "Grandchild", parent_id=2, status="in_progress", progress_percent=40),
            task(5, "Orphan", parent_id=4),
            task(6, "Second life of 6"),
        ],
        "audit_logs": [
            entry(1, 1, "created"),
            entry(2, 2, "subtask_created", parent_id=1),
            entry(3, 3, "subtask_created", parent_id=2),
            entry(4, 4, "created"),
            entry(5, 5, "subtask_created", parent_id=4),
            entry(6, 4, "deleted", title="Gone"),
            entry(7, 6, "created"),
            entry(8, 6, "deleted"),
            entry(9, 6, "created"),
            entry(10, 3, "progressed", progress_percent=40, note="on it"),
            entry(11, None, "exported", target="backup"),
        ],
    }


async def test_nesting_renumbering_and_deleted_histories(
    sarah: Cli, db: Database, tmp_path: Path
) -> None:
    # Tasks 1 and 2 already exist here, so Phase 1's 1 and 2 must be renumbered.
    await sarah.ok("add", "Existing one")
    await sarah.ok("add", "Existing two")
    store = write_store(tmp_path, rich_store())
    report = await sarah.json("import", store)
    renumbered = {int(k): v for k, v in report["tasks_renumbered"].items()}
    assert set(renumbered) == {1, 2}
    assert report["tasks_imported"] == 5 and report["audit_entries_imported"] == 11
    assert report["deleted_task_histories"] == 2  # task 4, and the first life of task 6
    new = {1: renumbered[1], 2: renumbered[2], 3: 3, 5: 5, 6: 6}
    tree = await sarah.json("show", new[1], "--tree")
    assert [(n["id"], n["parent_id"], n["depth"]) for n in tree["subtree"]] == [
        (new[2], new[1], 1),
        (3, new[2], 2),
    ]
    assert tree["task"]["due_date"].startswith("2026-03-01")
    orphan = (await sarah.json("show", 5))["task"]
    assert orphan["parent_id"] is None
    # Each task's own history is on its (possibly new) id, oldest first, then `imported`.
    grandchild = await sarah.json("audit", "task", 3)
    assert [e["action"] for e in grandchild] == ["subtask_created", "progressed", "imported"]
    assert grandchild[1]["details"]["note"] == "on it"
    live_six = await sarah.json("audit", "task", 6)
    assert [(e["action"], e["details"]["phase1"].get("audit_id")) for e in live_six] == [
        ("created", 9),
        ("imported", None),
    ]
    entries = await rows(db, "SELECT * FROM audit_log WHERE via = 'import' ORDER BY id")
    first_six = [e for e in entries if e["details"].get("phase1", {}).get("audit_id") in (7, 8)]
    gone_four = [e for e in entries if e["details"].get("phase1", {}).get("audit_id") in (4, 6)]
    assert len({e["entity_id"] for e in first_six}) == 1
    assert first_six[0]["entity_id"] not in (6, *new.values())
    assert [e["action"] for e in gone_four] == ["created", "deleted"]
    assert gone_four[0]["entity_id"] == 4  # id 4 was free: kept for its history
    store_level = [e for e in entries if e["action"] == "exported"]
    assert store_level and store_level[0]["details"]["target"] == "backup"
    orphan = next(e for e in entries if e["action"] == "imported" and e["entity_id"] == 5)
    orphan_note = orphan["details"]
    assert orphan_note["detached_from_missing_parent"] == 4
    assert report["tasks_detached"] == [5] and report["tasks_moved"] == []
    # New tasks never collide with imported or reserved ids.
    created = await sarah.json("add", "After import")
    taken = {e["entity_id"] for e in entries if e["entity_type"] == "task"} | set(new.values())
    assert created["task"]["id"] not in taken
    assert (await sarah.json("audit", "verify"))["ok"] is True
    before = await snapshot(db)
    assert (await sarah.json("import", store))["already_imported"] == 19
    assert await snapshot(db) == before


async def test_import_service_reports_progress_and_big_stores(db: Database, tmp_path: Path) -> None:
    from taskflow.core.schemas import CreateHuman
    from taskflow.core.services import workers

    me = await workers.create_human(db, CreateHuman(handle="@me", name="Me"))
    actor = Actor(me.id, me.handle, WorkerType.HUMAN, via=Via.CLI)
    data = rich_store()
    template = data["tasks"][0]
    data["tasks"] += [
        {**copy.deepcopy(template), "id": i, "title": f"Bulk {i}", "parent_id": 1}
        for i in range(100, 500)
    ]
    path = write_store(tmp_path, data)
    source = phase1.load(path)
    assert source.store.record_count > 300  # the CLI shows a progress bar for this one
    done: list[int] = []
    report = await importer.import_phase1(db, actor, source, done.append)
    assert sum(done) == source.store.record_count
    assert report.tasks_imported == 405 and report.changed
    async with db.engine.connect() as conn:  # analyzed: plans count the imported rows
        planned = await conn.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'tasks'"))
    assert planned >= 405
    again: list[int] = []
    second = await importer.import_phase1(db, actor, source, again.append)
    assert not second.changed and sum(again) == source.store.record_count


def test_loader_refuses_cycles_and_duplicates(tmp_path: Path) -> None:
    data = rich_store()
    data["tasks"][0]["parent_id"] = 3  # 1 -> 3 -> 2 -> 1
    with pytest.raises(ValidationFailed, match=r"tasks\[0\]\.parent_id: task 1's parents loop"):
        phase1.load(write_store(tmp_path / "a", data))
    data = rich_store()
    data["workers"].append(dict(data["workers"][0]))
    with pytest.raises(ValidationFailed, match=r"workers\[2\]: duplicate worker id '@pat'"):
        phase1.load(write_store(tmp_path / "b", data))
    data = rich_store()
    data["workers"][1]["agent_type"] = None
    with pytest.raises(ValidationFailed, match=r"workers\[1\]\.agent_type: an agent needs"):
        phase1.load(write_store(tmp_path / "c", data))


async def test_big_store_through_the_cli(sarah: Cli, tmp_path: Path) -> None:
    data = rich_store()
    data["tasks"] += [
        {**copy.deepcopy(data["tasks"][0]), "id": i, "title": f"Bulk {i}"} for i in range(100, 420)
    ]
    result = await sarah.ok("import", write_store(tmp_path, data))  # with the progress bar
    assert "Tasks" in result.stdout and "325" in result.stdout
    assert len(await sarah.json("list", "-p", "web")) == 325


# ------------------------------------------------------------------ a fresh install's first command


def config_of(cli: Cli) -> dict[str, Any]:
    return json.loads((cli.data_dir / "config.json").read_text())


async def test_fresh_install_adopts_the_stores_user_then_imports_losslessly_once(
    cli: Cli, db: Database
) -> None:
    """No `init`: the store's config.json names @sarah, who becomes the local user."""
    data = sample_data()
    assert not (cli.data_dir / "config.json").exists()
    result = await cli.ok("import", SAMPLE)
    lines = result.stdout.splitlines()
    assert "Created human worker @sarah (from the store's config.json)" in lines[0]
    assert "as after `taskflow init`" in result.stdout and "Imported" in result.stdout
    assert config_of(cli) == {"current_user": "@sarah", "default_project": "default"}

    # Lossless: every Phase 1 record as Phase 1 wrote it, @sarah and `default` included.
    workers = {w["handle"]: w for w in await rows(db, "SELECT * FROM workers")}
    assert set(workers) == {w["id"] for w in data["workers"]}
    for w in data["workers"]:
        got = workers[w["id"]]
        assert (got["name"], got["type"], got["agent_type"], list(got["capabilities"])) == (
            w["name"],
            w["type"],
            w["agent_type"],
            w["capabilities"],
        )
        assert got["created_at"] == utc(w["created_at"])
    projects = {
        p["slug"]: p
        for p in await rows(
            db,
            "SELECT p.slug, p.name, p.description, w.handle AS owner FROM projects p "
            "JOIN workers w ON w.id = p.owner_id",
        )
    }
    assert projects == {
        p["slug"]: {**p, "owner": "@sarah"} for p in data["projects"]
    }  # `default` made from the store's record, as init makes it, then merged into
    tasks = {t["id"]: t for t in await sarah_tasks(cli)}
    assert set(tasks) == {t["id"] for t in data["tasks"]}
    for t in data["tasks"]:
        got = tasks[t["id"]]
        assert (got["title"], got["status"], got["assignee"], got["created_by"]) == (
            t["title"],
            t["status"],
            t["assigned_to"],
            t["created_by"],
        )
    # Work times come from the history: task 1 started at entry 3, completed at entry 5.
    assert tasks[1]["started_at"] == iso(data["audit_logs"][2]["timestamp"])
    assert tasks[1]["completed_at"] == iso(data["audit_logs"][4]["timestamp"])
    assert tasks[2]["started_at"] == iso(data["audit_logs"][5]["timestamp"])
    assert tasks[1]["project_id"] == tasks[2]["project_id"]
    assert tasks[2]["assignee_id"] == workers["@claude-code"]["id"]
    history = await rows(db, "SELECT details FROM audit_log WHERE via = 'import'")
    assert {e["details"]["phase1"]["audit_id"] for e in history if "audit_id" in str(e)} == {
        a["id"] for a in data["audit_logs"]
    }
    assert (await cli.json("audit", "verify"))["ok"] is True

    # Idempotent: the second run (now as the local user) changes nothing.
    before = await snapshot(db)
    again = await cli.json("import", SAMPLE)
    assert not again["tasks_imported"] and again["local_user"] is None
    assert again["already_imported"] == sample_data_count()
    assert "Nothing new" in (await cli.ok("import", SAMPLE)).stdout
    assert await snapshot(db) == before
    assert config_of(cli)["current_user"] == "@sarah"


def iso(naive: str) -> str:
    """A Phase 1 time as TaskFlow's JSON writes it (UTC)."""
    return utc(naive).isoformat().replace("+00:00", "Z")


async def sarah_tasks(cli: Cli) -> list[dict[str, Any]]:
    return list(await cli.json("list"))


async def test_fresh_install_json_reports_the_local_user(cli: Cli) -> None:
    report = await cli.json("import", SAMPLE)
    local = report["local_user"]
    assert (local["user"]["handle"], local["user_created"], local["project"]) == (
        "@sarah",
        True,
        "default",
    )
    assert local["role"] == "owner" and report["projects_merged"] == ["default"]
    assert report["workers_matched"] == ["@sarah"]


async def test_user_option_overrides_the_stores_user(cli: Cli, db: Database) -> None:
    result = await cli.ok("import", SAMPLE, "--user", "@ada")
    assert "Created human worker @ada (from --user)" in result.stdout
    assert config_of(cli)["current_user"] == "@ada"
    ada = (await rows(db, "SELECT name, created_at FROM workers WHERE handle = '@ada'"))[0]
    assert ada == {"name": "Ada", "created_at": utc(sample_data()["workers"][0]["created_at"])}
    members = await cli.json("member", "list", "-p", "demo")
    assert {m["handle"]: m["role"] for m in members}["@ada"] == "owner"
    # Now that @ada is the local user, --user naming anyone else is refused; naming her is fine.
    before = await snapshot(db)
    err = await cli.refused("import", SAMPLE, "--user", "@sarah", code=2)
    assert "--user picks the local user on a fresh install" in err
    assert "Nothing new" in (await cli.ok("import", SAMPLE, "--user", "@ada")).stdout
    assert await snapshot(db) == before


async def test_user_option_may_name_someone_the_store_lacks(cli: Cli) -> None:
    result = await cli.ok("import", SAMPLE, "-u", "@newcomer")
    assert "Created human worker @newcomer" in result.stdout
    assert len(await cli.json("list", "-p", "demo")) == 2  # the new local user sees the import


async def test_store_without_current_user_needs_the_user_option(
    cli: Cli, db: Database, tmp_path: Path
) -> None:
    store = write_store(tmp_path, sample_data())
    (store / "config.json").write_text(json.dumps({"current_user": None}))
    before = await snapshot(db)
    err = await cli.refused("import", store)
    assert "names no current user" in err and "pass --user @you" in err
    assert await snapshot(db) == before
    assert not (cli.data_dir / "config.json").exists()
    (store / "config.json").unlink()  # no config.json at all: the same answer
    assert "pass --user @you" in await cli.refused("import", store)
    report = await cli.json("import", store, "--user", "@sarah")
    assert report["local_user"]["user"]["handle"] == "@sarah"


async def test_fresh_install_refusals_change_nothing(cli: Cli, db: Database) -> None:
    before = await snapshot(db)
    err = await cli.refused("import", SAMPLE, "--user", "@claude-code")
    assert "@claude-code is an agent in this Phase 1 store" in err
    err = await cli.refused("import", SAMPLE, "--user", "Sarah", code=2)
    assert "--user: invalid handle" in err
    assert await snapshot(db) == before
    assert not (cli.data_dir / "config.json").exists()


# ------------------------------------------------------------------ messy Phase 1 stores


def messy_store() -> dict[str, Any]:
    """rich_store plus a second project whose tasks hang under `web` tasks, and a reopened task."""
    data = rich_store()
    data["projects"].append({"slug": "api", "name": "API", "description": "cross-project kids"})
    base = data["tasks"][0]
    data["tasks"] += [
        {**base, "id": 7, "title": "API child of web", "project_slug": "api", "parent_id": 1},
        {**base, "id": 8, "title": "API grandchild", "project_slug": "api", "parent_id": 7},
        {**base, "id": 9, "title": "API root", "project_slug": "api"},
        {**base, "id": 10, "title": "Reopened", "status": "review", "progress_percent": 90},
    ]
    stamp = "2026-01-05T09:{:02d}:00"
    data["audit_logs"] += [
        {
            "id": i,
            "task_id": 10,
            "project_slug": "web",
            "actor_type": "human",
            "actor_id": "@pat",
            "action": action,
            "context": {},
            "timestamp": stamp.format(i),
        }
        for i, action in [(12, "started"), (13, "completed"), (14, "started"), (15, "review")]
    ]
    return data


async def test_cross_project_and_orphaned_subtasks_are_recorded(
    sarah: Cli, db: Database, tmp_path: Path
) -> None:
    store = write_store(tmp_path, messy_store())
    report = await sarah.json("import", store)
    assert sorted(report["tasks_moved"]) == [7, 8] and report["tasks_detached"] == [5]
    text_report = await sarah.ok("import", write_store(tmp_path / "again", messy_store()))
    assert "Nothing new" in text_report.stdout  # the same store, copied elsewhere
    imported = {
        e["entity_id"]: e["details"]
        for e in await rows(
            db,
            "SELECT entity_id, details FROM audit_log WHERE action = 'imported' AND "
            "entity_type = 'task'",
        )
    }
    assert imported[7]["moved_from_project"] == "api" and imported[7]["to_parent_project"] == "web"
    assert imported[8]["moved_from_project"] == "api" and imported[8]["to_parent_project"] == "web"
    assert imported[5]["detached_from_missing_parent"] == 4
    assert not {"moved_from_project", "detached_from_missing_parent"} & set(imported[9])
    child = (await sarah.json("show", 7))["task"]
    assert (child["project"], child["parent_id"]) == ("web", 1)
    assert (await sarah.json("show", 9))["task"]["project"] == "api"
    orphan = (await sarah.json("show", 5))["task"]
    assert (orphan["parent_id"], orphan["parent_task_id"]) == (None, None)
    # A reopened task keeps its first start and has no completion time.
    reopened = (await sarah.json("show", 10))["task"]
    assert (reopened["started_at"], reopened["completed_at"]) == (iso("2026-01-05T09:12:00"), None)
    assert (await sarah.json("audit", "verify"))["ok"] is True


async def test_the_report_names_moved_and_detached_subtasks(sarah: Cli, tmp_path: Path) -> None:
    result = await sarah.ok("import", write_store(tmp_path, messy_store()))
    moved = next(line for line in result.stdout.splitlines() if "moved to their parent" in line)
    detached = next(line for line in result.stdout.splitlines() if "detached" in line)
    assert "2" in moved and "#7, #8" in moved
    assert "1" in detached and "#5" in detached
