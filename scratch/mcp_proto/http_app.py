"""Parent Starlette app with REST-ish routes + MCP (stateless, JSON) mounted at /mcp,
bearer auth via a custom TokenVerifier, RFC 9728 metadata, DNS-rebinding settings.

Run standalone: uv run python scratch/mcp_proto/http_app.py  (serves on 127.0.0.1:8765)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from server_def import build_server  # noqa: E402

TOKENS = {
    "agent-key-1": AccessToken(
        token="agent-key-1", client_id="worker:agent-7", subject="agent-7",
        scopes=["taskflow"], claims={"kind": "agent"},
    ),
    "noscope": AccessToken(token="noscope", client_id="worker:x", scopes=[]),
}


class StaticTokenVerifier(TokenVerifier):  # structural Protocol; subclassing is optional
    async def verify_token(self, token: str) -> AccessToken | None:
        # Real impl: verify Better Auth JWT via JWKS or look up API key hash. Return None -> 401.
        return TOKENS.get(token)


def build_app(base_url: str = "http://127.0.0.1:8765") -> Starlette:
    mcp = build_server(
        token_verifier=StaticTokenVerifier(),
        auth=AuthSettings(
            issuer_url="https://auth.example.com",  # the Better Auth server (authorization_servers)
            resource_server_url=f"{base_url}/mcp",  # -> /.well-known/oauth-protected-resource/mcp
            required_scopes=["taskflow"],  # missing scope -> 403 insufficient_scope
            validate_token_resource=False,  # we check audience ourselves; silences a deprecation warning
        ),
    )
    mcp_app = mcp.streamable_http_app(
        streamable_http_path="/mcp",  # route path *inside* the returned Starlette
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "taskflow.example.com"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "https://taskflow.example.com"],
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Starlette does NOT run a mounted sub-app's lifespan: run the session manager here.
        async with mcp.session_manager.run():
            yield

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def rest_tasks(request: Request) -> JSONResponse:
        return JSONResponse({"tasks": []})

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/api/v1/tasks", rest_tasks),
            # Catch-all LAST: the MCP sub-app owns /mcp and /.well-known/oauth-protected-resource/mcp.
            Mount("/", app=mcp_app),
        ],
        lifespan=lifespan,
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build_app(), host="127.0.0.1", port=8765, log_level="warning")
