"""What every endpoint shares: problem documents, auth challenges, request ids, malformed input,
idempotency keys, ETags, CORS, health, and 503 when a dependency is down."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskflow.core.actor import Actor
from taskflow.core.auth.identity import Authenticator
from taskflow.core.auth.jwt import JwtVerifier
from taskflow.core.auth.keys import generate_api_key
from taskflow.core.db import Database
from taskflow.core.models import Task
from taskflow.core.runtime import Runtime
from taskflow.http.app import create_api
from tests.conftest import _admin_dsn, database_url_for
from tests.http.conftest import (
    BASE_URL,
    ORIGIN,
    Agent,
    assert_audited,
    assert_problem,
    audit_count,
    settings_for,
)

DEAD_URL = "postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none"


async def _count_tasks(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(Task)) or 0)


# ---------------------------------------------------------------- auth


async def test_missing_token_is_401_with_a_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/projects")
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == 'Bearer realm="taskflow"'


@pytest.mark.parametrize(
    "authorization",
    ["Bearer tf_notarealkey", "Basic dXNlcjpwYXNz", "Bearer", "Bearer eyJhbGciOiJub25lIn0.e30."],
)
async def test_bad_credentials_are_401_invalid_token(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.get("/api/me", headers={"Authorization": authorization})
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_no_auth_mode_acts_as_the_local_user_only_from_loopback(
    runtime: Runtime, owner: Actor, db: Database
) -> None:
    app = create_api(runtime, local_handle="@sarah")
    local = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    remote = httpx.ASGITransport(app=app, client=("192.0.2.7", 5000))
    async with httpx.AsyncClient(transport=local, base_url=BASE_URL) as http:
        me = await http.get("/api/me")
        assert me.json()["handle"] == "@sarah"
        created = await http.post("/api/projects/web/tasks", json={"title": "Local"})
        entry = await assert_audited(db, created, "created", "@sarah")
        assert entry.actor_type == "human"
    async with httpx.AsyncClient(transport=remote, base_url=BASE_URL) as http:
        assert_problem(await http.get("/api/me"), 401)
    document = (
        await httpx.AsyncClient(transport=local, base_url=BASE_URL).get("/openapi.json")
    ).json()
    assert {} in document["security"]  # the token is optional in this mode


async def test_auth_server_down_is_503(db: Database) -> None:
    settings = settings_for(None, auth_server_url="http://127.0.0.1:1")
    runtime = Runtime(settings, db, Authenticator(db, JwtVerifier.from_settings(settings)))
    key = ed25519.Ed25519PrivateKey.generate()
    token = pyjwt.encode({"sub": "u1"}, key, algorithm="EdDSA", headers={"kid": "k1"})
    transport = httpx.ASGITransport(app=create_api(runtime))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        response = await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 503, "unavailable")
    assert response.headers["retry-after"]
    await runtime.auth.verifier.jwks.aclose()  # type: ignore[union-attr]


# ---------------------------------------------------------------- health


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_database_down_gives_503_not_500() -> None:
    db = Database.from_url(DEAD_URL, pool_size=1)
    runtime = Runtime(settings_for(DEAD_URL), db, Authenticator(db, None))
    transport = httpx.ASGITransport(app=create_api(runtime))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        assert (await http.get("/health")).status_code == 200  # liveness needs no database
        assert_problem(await http.get("/health/ready"), 503, "unavailable")
        key, _ = generate_api_key()  # well-formed, so it must be looked up
        api = await http.get("/api/me", headers={"Authorization": f"Bearer {key}"})
        assert_problem(api, 503, "unavailable")
        assert api.headers["retry-after"]
        assert "nobody" not in api.text  # no connection details leak
    await db.close()


async def test_not_ready_until_migrated(pg_server_url: str) -> None:
    name = "tf_http_unmigrated"
    admin = await asyncpg.connect(_admin_dsn(pg_server_url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"CREATE DATABASE {name}")
        url = database_url_for(pg_server_url, name)
        db = Database.from_url(url, pool_size=1)
        runtime = Runtime(settings_for(url), db, Authenticator(db, None))
        transport = httpx.ASGITransport(app=create_api(runtime))
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            problem = assert_problem(await http.get("/health/ready"), 503)
        assert "migrations" in problem["detail"]
        await db.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


# ---------------------------------------------------------------- request ids


async def test_request_id_is_the_servers_and_the_clients_is_kept_beside_it(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    response = await as_bot.post(
        "/api/projects/web/tasks", json={"title": "Traced"}, headers={"X-Request-ID": "frontend-42"}
    )
    assert len(response.headers["x-request-id"]) == 32  # the server's own (decision 65)
    assert response.headers["x-client-request-id"] == "frontend-42"
    entry = await assert_audited(db, response, "created", "@bot")
    assert entry.client_request_id == "frontend-42"
    generated = await as_bot.get("/api/me")
    assert len(generated.headers["x-request-id"]) == 32
    assert "x-client-request-id" not in generated.headers
    unsafe = await as_bot.get("/api/me", headers={"X-Request-ID": "x" * 500})
    assert unsafe.headers["x-request-id"] != "x" * 500  # replaced, never stored as sent
    assert "x-client-request-id" not in unsafe.headers
    missing = await as_bot.get("/api/nope", headers={"X-Request-ID": "r-1"})
    problem = assert_problem(missing, 404)
    assert problem["request_id"] == missing.headers["x-request-id"] != "r-1"


# ---------------------------------------------------------------- malformed requests


async def test_malformed_requests_are_4xx_problems(as_bot: httpx.AsyncClient, db: Database) -> None:
    before = (await audit_count(db), await _count_tasks(db))
    url = "/api/projects/web/tasks"
    json_headers = {"Content-Type": "application/json"}
    assert_problem(await as_bot.post(url, content=b'{"title": ', headers=json_headers), 400)
    assert_problem(await as_bot.post(url, content=b"\xff\xfe", headers=json_headers), 400)
    assert_problem(await as_bot.post(url, content=b"[" * 5000, headers=json_headers), 400)
    assert_problem(await as_bot.post(url, content=b'{"title": NaN}', headers=json_headers), 422)
    assert_problem(
        await as_bot.post(url, content=b"title=x", headers={"Content-Type": "text/plain"}), 415
    )
    assert_problem(await as_bot.post(url, content=b"{}", headers={}), 415)  # no content type
    assert_problem(await as_bot.post(url, json=["not", "an", "object"]), 422)
    assert_problem(await as_bot.post(url, json={"title": 7}), 422)
    assert_problem(await as_bot.post(url, json={"title": "x\u0000y"}), 422)
    assert_problem(await as_bot.post(url, json={"title": "x", "parent_id": 2**70}), 422)
    too_big = {"title": "x", "description": "y" * (1024 * 1024)}
    assert_problem(await as_bot.post(url, json=too_big), 413)
    assert_problem(
        await as_bot.post(url, json={"title": "x", "due_date": "9999-12-31T23:00-05:00"}), 422
    )
    assert (await audit_count(db), await _count_tasks(db)) == before


async def test_unknown_route_and_wrong_method(as_bot: httpx.AsyncClient) -> None:
    assert_problem(await as_bot.get("/api/nothing-here"), 404, "not-found")
    wrong = await as_bot.delete("/api/projects")
    assert_problem(wrong, 405, "method-not-allowed")
    assert "GET" in wrong.headers["allow"]


async def test_a_bug_is_a_logged_500_problem_without_internals(
    runtime: Runtime, bot: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Request) -> Response:
        """An endpoint with a bug."""
        raise KeyError("secret internal detail")

    extra = [Route("/api/broken", broken, methods=["GET"])]
    transport = httpx.ASGITransport(app=create_api(runtime, extra_routes=extra))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        with caplog.at_level(logging.ERROR, logger="taskflow.http"):
            origin = runtime.settings.origins[0]
            response = await http.get("/api/broken", headers={**bot.headers, "Origin": origin})
    problem = assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text
    assert problem["request_id"] in caplog.text and "KeyError" in caplog.text
    # A frontend can read the 500 (CORS) and quote its request id (the header, as on any answer).
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["x-request-id"] == problem["request_id"]


# ---------------------------------------------------------------- idempotency


async def test_idempotent_retry_replays_the_first_answer(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    headers = {"Idempotency-Key": "create-launch-1"}
    first = await as_bot.post("/api/projects/web/tasks", json={"title": "Launch"}, headers=headers)
    retry = await as_bot.post("/api/projects/web/tasks", json={"title": "Launch"}, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["etag"] == first.headers["etag"]
    assert await _count_tasks(db) == 1
    assert await assert_audited(db, first, "created", "@bot")
    assert not [e for e in await _entries_for(db, retry)]  # the replay wrote nothing


async def _entries_for(db: Database, response: httpx.Response) -> list:
    from tests.http.conftest import audit_for

    return await audit_for(db, response)


async def test_same_key_other_body_or_endpoint_is_refused(
    as_bot: httpx.AsyncClient, db: Database
) -> None:
    headers = {"Idempotency-Key": "k-7"}
    await as_bot.post("/api/projects/web/tasks", json={"title": "A"}, headers=headers)
    other_body = await as_bot.post("/api/projects/web/tasks", json={"title": "B"}, headers=headers)
    assert assert_problem(other_body, 422)["errors"][0]["location"] == "header"
    other_path = await as_bot.post(
        "/api/projects/default/tasks", json={"title": "A"}, headers=headers
    )
    assert_problem(other_path, 422)
    assert_problem(
        await as_bot.post(
            "/api/projects/web/tasks", json={"title": "A"}, headers={"Idempotency-Key": "has space"}
        ),
        400,
    )
    assert await _count_tasks(db) == 1


async def test_a_failed_request_does_not_burn_its_key(as_bot: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "k-fail"}
    refused = await as_bot.post(
        "/api/projects/web/tasks", json={"title": "x", "assignee": "@no"}, headers=headers
    )
    assert_problem(refused, 422)
    # the same request, fixed, goes through under a new key; the failed key was released
    again = await as_bot.post(
        "/api/projects/web/tasks", json={"title": "x", "assignee": "@no"}, headers=headers
    )
    assert_problem(again, 422)
    assert "idempotency" not in again.json()["detail"]


async def test_concurrent_duplicates_create_once(as_bot: httpx.AsyncClient, db: Database) -> None:
    headers = {"Idempotency-Key": "k-race"}
    responses = await asyncio.gather(
        *(
            as_bot.post("/api/projects/web/tasks", json={"title": "Once"}, headers=headers)
            for _ in range(6)
        )
    )
    codes = [r.status_code for r in responses]
    assert set(codes) <= {201, 409} and 201 in codes
    assert len({r.json()["task"]["id"] for r in responses if r.status_code == 201}) == 1
    assert await _count_tasks(db) == 1


# ---------------------------------------------------------------- ETag / If-Match


async def test_etag_forms_accepted_by_if_match(as_bot: httpx.AsyncClient) -> None:
    created = await as_bot.post("/api/projects/web/tasks", json={"title": "E"})
    url = f"/api/tasks/{created.json()['task']['id']}"
    etag = (await as_bot.get(url)).headers["etag"]
    assert etag == '"1"'
    assert (
        await as_bot.put(url, json={"title": "E2"}, headers={"If-Match": etag})
    ).status_code == 200
    assert (
        await as_bot.put(url, json={"title": "E3"}, headers={"If-Match": 'W/"2"'})
    ).status_code == 200
    assert (
        await as_bot.put(url, json={"title": "E4"}, headers={"If-Match": "*"})
    ).status_code == 200
    assert_problem(
        await as_bot.put(url, json={"title": "E5"}, headers={"If-Match": '"1", "4"'}), 400
    )


# ---------------------------------------------------------------- CORS


async def test_cors_preflight_and_exposed_headers(as_bot: httpx.AsyncClient) -> None:
    preflight = await as_bot.options(
        "/api/projects/web/tasks",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "idempotency-key" in preflight.headers["access-control-allow-headers"].lower()
    denied = await as_bot.options(
        "/api/projects",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in denied.headers
    simple = await as_bot.get("/api/projects/web", headers={"Origin": ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ORIGIN
    assert "etag" in simple.headers["access-control-expose-headers"].lower()


async def test_non_ascii_digits_are_refused_not_a_500(as_bot: httpx.AsyncClient) -> None:
    """ "²".isdigit() is True but int("²") fails: such input once reached the database as a 500."""
    for url in ("/api/tasks?project=²", "/api/audit?project=²", "/api/audit?cursor=²"):
        response = await as_bot.get(url)
        assert response.status_code in (404, 422), (url, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    created = await as_bot.post("/api/projects/²/tasks", json={"title": "x"})
    assert created.status_code in (404, 422) and created.json()["detail"], created.text


# ---------------------------------------------------------------- same site


async def test_local_mode_refuses_cross_site_requests(
    runtime: Runtime, owner: Actor, db: Database
) -> None:
    """`serve --no-auth` acts as the local user for any loopback request, so a page on another
    site must not be able to send one: a form post, a foreign Origin, a rebinding Host."""
    app = create_api(runtime, local_handle="@sarah")
    local = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=local, base_url=BASE_URL) as http:
        made = await http.post("/api/projects/web/tasks", json={"title": "Mine"})
        task_id = made.json()["task"]["id"]
        before = await _count_tasks(db), await audit_count(db)
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        evil = {"Origin": "http://evil.example"}
        foreign = await http.post(f"/api/tasks/{task_id}/block", headers={**evil, **form})
        assert "evil.example" in assert_problem(foreign, 403)["detail"]
        same_page_form = await http.post(f"/api/tasks/{task_id}/block", headers=form)
        assert "JSON" in assert_problem(same_page_form, 415)["detail"]
        rebound = await http.get("/api/me", headers={"Host": "evil.example"})
        assert "ALLOWED_HOSTS" in assert_problem(rebound, 421)["detail"]
        assert (await _count_tasks(db), await audit_count(db)) == before
        own_page = {"Origin": "http://127.0.0.1:8000"}  # a page the server itself serves
        assert (await http.get("/api/me", headers=own_page)).status_code == 200
        blocked = await http.post(f"/api/tasks/{task_id}/block", headers=own_page)
        assert blocked.json()["status"] == "blocked", "the same request, sent from this site"
