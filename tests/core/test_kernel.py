"""The kernel: one declaration per operation, and one unit of work per call.

The dispatcher opens the transaction, the handler works inside it, and the idempotency answer is
stored in that same transaction, so a repeated key replays the committed answer, a failed call
leaves nothing behind (not even its key), and two concurrent calls with one key apply once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from taskflow.core import handlers
from taskflow.core.declarations import REGISTRY
from taskflow.core.dispatcher import dispatch
from taskflow.core.errors import Conflict, InvalidInput, ValidationFailed
from taskflow.core.handlers import projects as ops
from taskflow.core.schemas import CreateProject
from tests.core.conftest import scalar, snapshot


def test_every_declared_command_refuses_unknown_fields() -> None:
    assert REGISTRY, "no operation is declared"
    for operation in REGISTRY.values():
        assert operation.command.model_config.get("extra") == "forbid", operation.name
    with pytest.raises(ValidationError, match="projct"):
        ops.GetProject(project="web", projct="web")


def test_the_registry_loads_every_module_that_declares_operations() -> None:
    """Reading `REGISTRY` imports `handlers.MODULES`: a declaring module left out of that list
    would be missing from every surface's catalog (unless something else imported it)."""
    folder = Path(handlers.__file__).parent
    declaring = {p.stem for p in folder.glob("*.py") if "@declare(" in p.read_text()}
    assert declaring == set(handlers.MODULES)
    assert {op.handler.__module__.rsplit(".", 1)[1] for op in REGISTRY.values()} == declaring


def test_declarations_name_each_surface_once() -> None:
    create = REGISTRY["create_project"]
    assert create.rest is not None and (create.rest.method, create.rest.path) == (
        "POST",
        "/api/projects",
    )
    assert create.mcp == "create_project" and create.cli == "project add"
    assert create.summary == "Create a project; you become its owner."
    assert REGISTRY["get_project"].read_only and REGISTRY["get_project"].idempotent
    assert REGISTRY["delete_project"].destructive and REGISTRY["delete_project"].mutating


async def test_a_repeated_key_replays_the_committed_answer(db, owner) -> None:
    cmd = CreateProject(slug="once", name="Once")
    first = await dispatch(db, owner, cmd, idempotency_key="k-1")
    before = await snapshot(db)
    again = await dispatch(db, owner, cmd, idempotency_key="k-1")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.value == first.value, "the replay is the first answer, typed the same"
    assert await snapshot(db) == before, "a replay writes nothing"


async def test_a_key_reused_for_another_request_is_refused(db, owner) -> None:
    await dispatch(db, owner, CreateProject(slug="one", name="One"), idempotency_key="k-2")
    before = await snapshot(db)
    with pytest.raises(ValidationFailed, match="different request"):
        await dispatch(db, owner, CreateProject(slug="two", name="Two"), idempotency_key="k-2")
    assert await snapshot(db) == before


async def test_a_refused_call_leaves_neither_change_nor_key(db, owner) -> None:
    before = await snapshot(db)
    with pytest.raises(Conflict, match="already exists"):
        await dispatch(db, owner, CreateProject(slug="web", name="Dup"), idempotency_key="k-3")
    assert await snapshot(db) == before, "the key's reservation rolled back with the change"
    made = await dispatch(db, owner, CreateProject(slug="web2", name="Ok"), idempotency_key="k-3")
    assert not made.replayed and made.value.slug == "web2"


async def test_concurrent_calls_with_one_key_apply_once(db, owner) -> None:
    cmd = CreateProject(slug="race", name="Race")
    outcomes = await asyncio.gather(
        *(dispatch(db, owner, cmd, idempotency_key="k-4") for _ in range(5))
    )
    assert sorted(o.replayed for o in outcomes) == [False, True, True, True, True]
    assert len({o.value.id for o in outcomes}) == 1
    assert await scalar(db, "SELECT count(*) FROM projects WHERE slug = 'race'") == 1
    created = "SELECT count(*) FROM audit_log WHERE action = 'created' AND entity_type = 'project'"
    assert await scalar(db, created) == 3, "default, web and race: one entry for race"


async def test_a_change_that_changes_nothing_writes_nothing(db, owner) -> None:
    web = (await dispatch(db, owner, ops.GetProject(project="web"))).value
    before = await snapshot(db)
    same = await dispatch(db, owner, ops.UpdateProject(project="web", name=web.name))
    assert same.value.version == web.version
    assert await snapshot(db) == before


async def test_read_only_operations_ignore_the_key(db, owner) -> None:
    await dispatch(db, owner, ops.ListProjects(), idempotency_key="k-5")
    assert await scalar(db, "SELECT count(*) FROM idempotency_keys") == 0


def test_unknown_arguments_are_refused_naming_the_nearest_valid_one() -> None:
    update = REGISTRY["update_project"]
    with pytest.raises(InvalidInput) as info:
        update.parse({"project": "web", "nmae": "Web"})
    (problem,) = info.value.problems
    assert (problem.field, problem.type) == ("nmae", "extra_forbidden")
    assert problem.message == "unknown argument 'nmae': did you mean 'name'?"
    with pytest.raises(InvalidInput, match="this operation accepts project") as far:
        REGISTRY["get_project"].parse({"project": "web", "zzz": 1})
    assert far.value.status == 422


def test_bad_values_name_their_field() -> None:
    with pytest.raises(InvalidInput) as info:
        REGISTRY["create_project"].parse({"slug": "Not A Slug", "name": ""})
    assert {p.field for p in info.value.problems} == {"slug", "name"}
