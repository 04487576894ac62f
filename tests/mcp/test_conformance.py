"""The official MCP conformance suite (npm @modelcontextprotocol/conformance) against TaskFlow.

It runs the scenarios that apply to a product server (docs/mcp.md says why the others do not)
against a local-mode server: no token needed, as the DNS-rebinding scenario requires ("localhost
servers running without HTTPS and without authentication").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskflow.core.actor import Actor
from taskflow.core.db import Database
from tests.better_auth import NODE_DIR, ensure_node_modules, node_env
from tests.mcp.conftest import settings_for
from tests.mcp.live import mcp_test_app, runtime_for, serving
from tests.mcp.test_http_typescript import run_node

CONFORMANCE = (
    NODE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
)
SCENARIOS = ("server-initialize", "ping", "tools-list", "dns-rebinding-protection")


def checks_of(output_dir: Path) -> list[dict[str, object]]:
    files = sorted(output_dir.rglob("checks.json"))
    assert files, f"the suite wrote no checks.json under {output_dir}"
    return [check for f in files for check in json.loads(f.read_text())]


async def test_conformance_scenarios(
    db: Database, db_url: str, owner: Actor, tmp_path: Path
) -> None:
    ensure_node_modules()

    def build(base: str):  # type: ignore[no-untyped-def]
        config = settings_for(db_url, taskflow_public_url=base)
        return mcp_test_app(runtime_for(db, config), local_handle=owner.handle)

    results: dict[str, list[dict[str, object]]] = {}
    async with serving(build) as base:
        for scenario in SCENARIOS:
            out = tmp_path / scenario
            await run_node(
                str(CONFORMANCE),
                "server",
                "--url",
                f"{base}/mcp",
                "--scenario",
                scenario,
                "-o",
                str(out),
                env=node_env(),
                limit=120,
            )
            results[scenario] = checks_of(out)

    for scenario, checks in results.items():
        assert checks, scenario
        failed = [c for c in checks if c.get("status") not in ("SUCCESS", "INFO")]
        assert not failed, f"{scenario}: {json.dumps(failed, indent=1)}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_names_exist(scenario: str) -> None:
    """Guards against a renamed scenario silently running nothing."""
    assert scenario in CONFORMANCE.read_text()
