"""/openapi.json: a valid OpenAPI 3.1 document covering every route, that openapi-typescript turns
into types a frontend can use (no `unknown` request or response bodies for tasks and projects)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import schemathesis
from starlette.applications import Starlette
from starlette.routing import Route

from tests.better_auth import NODE_DIR, ensure_node_modules, node_env, node_executable

TYPED_TAGS = {"projects", "workers", "tasks", "workflow"}  # REST tags name the aggregate


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict:
    response = await client.get("/openapi.json")  # public: no token needed
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


def test_document_is_valid_openapi_31(document: dict) -> None:
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI 3.1 meta-schema


def test_every_route_is_documented(document: dict, api: Starlette) -> None:
    routed = {
        (method.lower(), route.path)
        for route in api.routes
        if isinstance(route, Route) and route.path != "/openapi.json"
        for method in (route.methods or ())
        if method != "HEAD"
    }
    documented = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert routed == documented


def test_operations_describe_errors_security_and_bodies(document: dict) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    problem = document["components"]["responses"]["NotFound"]["content"]
    assert problem["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    operation_ids = set()
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            operation_ids.add(op["operationId"])
            if path.startswith("/api/"):
                assert "security" not in op  # the global bearer requirement applies
                assert {"401", "404", "422"} <= set(op["responses"])
            else:
                assert op["security"] == []
            if method in ("post", "put", "patch") and "requestBody" in op:
                assert "application/json" in op["requestBody"]["content"]
            if method == "post" and path.startswith("/api/"):
                assert any(p["name"] == "Idempotency-Key" for p in op["parameters"])
    assert len(operation_ids) == sum(len(ops) for ops in document["paths"].values())
    create = document["paths"]["/api/projects/{project}/tasks"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateTaskBody"
    }
    assert "ETag" in create["responses"]["201"]["headers"]
    put = document["paths"]["/api/tasks/{task_id}"]["put"]
    assert any(p["name"] == "If-Match" for p in put["parameters"])
    assert "412" in put["responses"]
    listing = document["paths"]["/api/projects/{project}/tasks"]["get"]
    names = {p["name"] for p in listing["parameters"] if p["in"] == "query"}
    assert {"status", "assignee", "tags", "sort", "reverse", "limit", "cursor"} <= names


def _operation_blocks(ts: str) -> dict[str, str]:
    """Each operation's text in openapi-typescript's `operations` interface, by operationId."""
    body = ts.split("export interface operations {", 1)[1]
    parts = re.split(r"^    (\w+): \{$", body, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.timeout(180)
def test_the_event_stream_documents_how_to_resume(document: dict) -> None:
    events = document["paths"]["/api/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    params = {(p["in"], p["name"]) for p in events["parameters"]}
    assert ("header", "Last-Event-ID") in params and ("query", "after") in params


def test_openapi_typescript_generates_typed_bodies(document: dict, tmp_path: Path) -> None:
    ensure_node_modules()
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document))
    out = tmp_path / "api.ts"
    cli = NODE_DIR / "node_modules" / "openapi-typescript" / "bin" / "cli.js"
    result = subprocess.run(
        [str(node_executable()), str(cli), str(spec), "-o", str(out)],
        capture_output=True,
        text=True,
        env=node_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()
    blocks = _operation_blocks(out.read_text())
    typed = [
        op["operationId"]
        for ops in document["paths"].values()
        for op in ops.values()
        if TYPED_TAGS & set(op["tags"])
    ]
    assert len(typed) > 25
    for operation_id in typed:
        block = blocks[operation_id]
        # header maps are open-ended by design; bodies must all be named schemas
        text = block.replace("[name: string]: unknown;", "")
        assert "unknown" not in text, f"{operation_id} has an untyped body:\n{block}"
    assert 'components["schemas"]["TaskDetail"]' in blocks["get_task"]
    assert 'components["schemas"]["ProjectOut"][]' in blocks["list_projects"]
    assert 'components["schemas"]["IssuedKey"]' in blocks["register_agent"]
