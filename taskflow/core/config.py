"""Settings, read once from the environment (and `.env`); `.env.example` documents each one."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob TaskFlow has. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL. Unset: an embedded PostgreSQL under the data directory.",
    )
    database_pooled: bool | None = Field(
        default=None,
        description="Behind PgBouncer/Neon pooler (transaction mode)? None: detect from the URL.",
    )
    database_direct_url: str | None = Field(
        default=None,
        description="A direct (unpooled) URL for the feed's one LISTEN connection, when "
        "DATABASE_URL is a transaction-mode pooler. Unset there: the feed polls.",
    )
    feed_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the feed reads the audit log when it cannot LISTEN.",
    )
    feed_recheck_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often an open event stream or MCP resource subscription re-checks "
        "its caller's credentials (a revoked key or a deactivated agent ends it).",
    )
    taskflow_data_dir: Path | None = Field(default=None, description="Where local state lives.")
    taskflow_embedded_idle_minutes: float = Field(
        default=30.0,
        ge=0,
        description="Stop the embedded PostgreSQL after this long unused (0: never).",
    )
    taskflow_lease_sweep_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How often `taskflow serve` releases expired claim leases (0: never).",
    )
    auth_server_url: str | None = Field(default=None, description="Better Auth base URL.")
    auth_jwks_url: str | None = Field(default=None, description="JWKS URL override.")
    auth_issuer: str | None = Field(default=None, description="Expected `iss`.")
    auth_audience: str | None = Field(default=None, description="Expected `aud`.")
    auth_jwks_ttl_seconds: float = 300.0
    auth_jwks_refetch_cooldown_seconds: float = Field(
        default=30.0, description="An unknown token key id is looked for once per this long."
    )
    auth_jwks_min_refetch_seconds: float = Field(
        default=2.0, description="The key set is fetched at most once per this long."
    )
    auth_leeway_seconds: float = 30.0
    allowed_origins: str = Field(default="", description="Comma-separated CORS origins.")
    allowed_hosts: str = Field(
        default="127.0.0.1:*,localhost:*,[::1]:*",
        description="Comma-separated Host values REST and MCP accept (DNS-rebinding protection).",
    )
    taskflow_public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL clients reach the server at; MCP's RFC 9728 resource is {url}/mcp.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO",
        description="The served process's log level (TaskFlow's own loggers and uvicorn's).",
    )
    taskflow_access_log: bool = Field(
        default=False, description="`taskflow serve` writes one access line per request."
    )
    taskflow_housekeeping: bool = Field(
        default=True,
        description="`taskflow serve` delivers webhooks and writes due-date reminders.",
    )
    webhook_poll_seconds: float = Field(
        default=2.0, gt=0, description="How often the housekeeper looks for webhook deliveries due."
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long a receiver has to answer one delivery."
    )
    webhook_allow_private_urls: bool = Field(
        default=False,
        description="Deliver webhooks to loopback, private and link-local addresses too "
        "(development, tests, a receiver inside the network); off: public addresses only.",
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, description="Attempts per delivery; then it failed, its hook disabled."
    )
    webhook_retry_base_seconds: float = Field(
        default=30.0, gt=0, description="Wait before the first retry; doubled for each further one."
    )
    webhook_retry_max_seconds: float = Field(
        default=3600.0, gt=0, description="The longest wait between two attempts."
    )
    reminder_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often the housekeeper writes due_soon/overdue events."
    )
    rate_limit_writes_per_minute: float = Field(
        default=1200, ge=0, description="Writes per worker per minute (0: unlimited)."
    )
    rate_limit_reads_per_minute: float = Field(
        default=6000, ge=0, description="Reads per worker per minute (0: unlimited)."
    )
    rate_limit_burst_seconds: float = Field(
        default=10, gt=0, description="A worker may spend this many seconds' worth at once."
    )
    rate_limit_sync_seconds: float = Field(
        default=1.0, gt=0, description="How often a process shares its buckets via PostgreSQL."
    )
    http_request_timeout_seconds: float = Field(
        default=15.0,
        ge=0,
        description="A request's headers and body must arrive within this long (0: no limit).",
    )
    database_migration_url: str | None = Field(
        default=None,
        description="The schema owner's URL, for migrations; unset: DATABASE_URL migrates too.",
    )
    taskflow_token: str | None = Field(default=None, description="Bearer token for the CLI.")
    taskflow_api_key: str | None = Field(default=None, description="Agent key for MCP stdio.")
    taskflow_max_agents_per_worker: int = Field(
        default=50, ge=0, description="Active agents one worker may have registered at once."
    )
    taskflow_max_keys_per_agent: int = Field(
        default=10, ge=1, description="Unrevoked, unexpired API keys one agent may hold."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def data_dir(self) -> Path:
        """The directory for the embedded database and CLI state."""
        if self.taskflow_data_dir is not None:
            return self.taskflow_data_dir
        return Path(user_data_dir("taskflow", appauthor=False))

    @property
    def issuer(self) -> str | None:
        return self.auth_issuer or self.auth_server_url

    @property
    def audience(self) -> str | None:
        return self.auth_audience or self.auth_server_url

    @property
    def jwks_url(self) -> str | None:
        if self.auth_jwks_url:
            return self.auth_jwks_url
        if self.auth_server_url:
            return self.auth_server_url.rstrip("/") + "/api/auth/jwks"
        return None

    @property
    def origins(self) -> list[str]:
        """`ALLOWED_ORIGINS`: the browser origins (the frontend) CORS lets read answers."""
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def hosts(self) -> list[str]:
        """`ALLOWED_HOSTS`: the Host values REST and MCP answer (`name:*` = any port)."""
        return [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]

    @property
    def trusted_origins(self) -> list[str]:
        """Origins whose pages may send requests: `ALLOWED_ORIGINS`, and pages served by an
        allowed host itself (same site). Any other page's request is refused (CSRF, DNS
        rebinding)."""
        served = [f"{scheme}://{host}" for host in self.hosts for scheme in ("http", "https")]
        return list(dict.fromkeys([*self.origins, *served]))


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings` instead."""
    return Settings()
