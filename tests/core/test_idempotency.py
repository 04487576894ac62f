"""Idempotency keys, beyond what the kernel tests show (tests/core/test_kernel.py): keys belong
to one worker, have a bounded length, and expire after 24 hours."""

from __future__ import annotations

import pytest

from taskflow.core.dispatcher import dispatch
from taskflow.core.errors import ValidationFailed
from taskflow.core.schemas import CreateProject
from tests.conftest import make_human
from tests.core.conftest import scalar, snapshot, sql


async def test_keys_are_per_worker(db, owner) -> None:
    member = await make_human(db, "@mike")
    mine = await dispatch(db, owner, CreateProject(slug="mine", name="Mine"), idempotency_key="k")
    theirs = await dispatch(
        db, member, CreateProject(slug="theirs", name="Theirs"), idempotency_key="k"
    )
    assert (mine.replayed, theirs.replayed) == (False, False)
    assert theirs.value.slug == "theirs", "another worker's key is not a replay of mine"


async def test_a_key_over_255_characters_is_refused_and_changes_nothing(db, owner) -> None:
    before = await snapshot(db)
    with pytest.raises(ValidationFailed, match="too long"):
        await dispatch(db, owner, CreateProject(slug="long", name="L"), idempotency_key="k" * 256)
    assert await snapshot(db) == before


async def test_an_expired_key_runs_again(db, owner) -> None:
    await dispatch(db, owner, CreateProject(slug="first", name="First"), idempotency_key="k")
    await sql(db, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    again = await dispatch(db, owner, CreateProject(slug="second", name="S"), idempotency_key="k")
    assert not again.replayed and again.value.slug == "second"
    assert await scalar(db, "SELECT count(*) FROM idempotency_keys") == 1, "the old one is gone"
