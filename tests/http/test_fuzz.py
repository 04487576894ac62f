"""schemathesis against /openapi.json on a real server: no 5xx, no answer that breaks the schema.

The data is seeded so that generated ids and slugs often hit real projects and tasks (ids start
at 1 in a fresh database), and the agent's API key authenticates every request. The run uses
schemathesis's Python API: a hypothesis strategy per operation, in positive and negative mode,
each response checked for server errors, status codes, content types, headers and body schema.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis import checks as sc

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from taskflow.core.domain import Role
from taskflow.core.schemas import CreateTask, SubtaskSpec
from taskflow.core.services import tasks
from tests.http.conftest import Agent, register_agent
from tests.http.live import live_server

MIN_REQUESTS = 1000
STREAMING = "/api/events"
# Existing ids, slugs and handles (see _seed) to put into paths; `{}` keeps the generated ones.
KNOWN_VALUES = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "project": st.sampled_from(["web", "default"]),
            "task_id": st.integers(min_value=1, max_value=30),
            "handle": st.sampled_from(["@helper", "@sarah"]),
            "key_id": st.integers(min_value=1, max_value=4),
            "entry_id": st.integers(min_value=1, max_value=60),
        }
    ),
)
EXAMPLES_PER_OPERATION = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 10}

POSITIVE_CHECKS = [
    sc.not_a_server_error,
    sc.status_code_conformance,
    sc.content_type_conformance,
    sc.response_headers_conformance,
    sc.response_schema_conformance,
]
NEGATIVE_CHECKS = [*POSITIVE_CHECKS, sc.negative_data_rejection]


async def _seed(db: Database, owner: Actor, bot: Agent) -> None:
    """A few tasks, some nested, in both projects, so that small ids exist; @bot's own agent
    @helper (whose keys @bot may revoke and rotate, unlike its own, which the run needs)."""
    await register_agent(db, bot.actor, "@helper", project_role=Role.MEMBER)
    for i in range(12):
        await tasks.create_task(
            db,
            owner,
            CreateTask(
                title=f"task {i}",
                project="web" if i % 2 else "default",
                subtasks=[SubtaskSpec(title=f"sub {i}.{j}") for j in range(i % 3)],
            ),
        )


def _run_operation(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    statuses: Counter[str],
    failures: list[str],
) -> None:
    """Generate cases for one operation in one mode; record each status and any failure."""
    checks = POSITIVE_CHECKS if mode.is_positive else NEGATIVE_CHECKS

    @settings(
        max_examples=EXAMPLES_PER_OPERATION[mode],
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), known=KNOWN_VALUES)
    def run(case: Any, known: dict[str, Any]) -> None:
        if mode.is_positive and case.path_parameters:
            # Half the time, aim at things that exist instead of random ids and slugs.
            for name in case.path_parameters:
                if name in known:
                    case.path_parameters[name] = known[name]
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        statuses[str(response.status_code)] += 1
        statuses[f"{operation.label} {response.status_code}"] += 1
        if response.status_code == 413:
            # A body over 1 MiB is refused before it is read; schemathesis does not list 413
            # among the statuses that count as rejecting negative data.
            assert not mode.is_positive or len(response.request.body or b"") > 2**20
            return
        case.validate_response(response, checks=checks, headers=headers)

    try:
        run()
    except Unsatisfiable:
        pass  # negative mode on an operation with no inputs: nothing invalid to send
    except Exception as exc:
        failures.append(f"{operation.label} [{mode}]: {exc}"[:4000])


def _fuzz(base_url: str, token: str) -> tuple[Counter[str], list[str]]:
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # The SSE stream answers for as long as the client stays: each case would wait out its
    # timeout. tests/prod/test_feed_live.py holds it to its contract (and its refusals).
    operations = [op for op in operations if op.path != STREAMING]
    # Deleting projects or tasks early would leave later operations nothing to find.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        for mode in EXAMPLES_PER_OPERATION:
            _run_operation(operation, mode, base_url, headers, statuses, failures)
    return statuses, failures


@pytest.mark.timeout(600)
async def test_schemathesis_finds_no_server_error_or_schema_violation(
    db: Database, db_url: str, owner: Actor, bot: Agent
) -> None:
    await _seed(db, owner, bot)
    env = {"DATABASE_URL": db_url, "ALLOWED_ORIGINS": "http://localhost:3000"}
    started = time.monotonic()
    with live_server(env) as server:
        statuses, failures = await asyncio.to_thread(_fuzz, server.base_url, bot.token)
        logs = server.logs()
    elapsed = time.monotonic() - started
    total = sum(v for k, v in statuses.items() if k.isdigit())
    print(f"schemathesis: {total} requests in {elapsed:.0f}s, statuses {dict(statuses)}")
    assert not failures, "\n\n".join(failures)
    assert "Traceback" not in logs, logs[-5000:]
    assert total >= MIN_REQUESTS
    assert not any(code.startswith("5") for code in statuses)
    assert statuses["200"] + statuses["201"] + statuses["204"] > 100  # not only refusals
