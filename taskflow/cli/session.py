"""One command's trip to the core: settings, database, who is acting, then one unit of work.

Settings are read fresh for every command (never cached), so `DATABASE_URL` and
`TASKFLOW_DATA_DIR` set by a test or a script take effect at once. Who acts:
1. a bearer token (`TASKFLOW_TOKEN`, else the one saved by `taskflow login`), resolved by the
   core Authenticator exactly as MCP and REST resolve theirs;
2. otherwise, in local mode (no auth server configured), the user chosen at `taskflow init`.

The interactive session (`taskflow interactive`) instead keeps one runtime and one event loop
open for all its lines (`keep_runtime`): settings are read, the database started and connected
and the schema checked once. Who acts is still resolved for every command (one query), so a
`login`, an `init --user` or a revoked key counts from the next line on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import uuid4

from pydantic import ValidationError
from rich.markup import escape

from taskflow.cli.local_state import LocalConfig, load_config, load_token
from taskflow.cli.output import USAGE, fail, note
from taskflow.core import embedded
from taskflow.core.actor import Actor
from taskflow.core.auth import identity
from taskflow.core.bootstrap import open_runtime
from taskflow.core.config import Settings
from taskflow.core.db import Database
from taskflow.core.declarations import REGISTRY
from taskflow.core.domain import Via, WorkerType
from taskflow.core.errors import TaskFlowError
from taskflow.core.runtime import Runtime

T = TypeVar("T")

NOBODY = Actor(worker_id=0, handle="@nobody", type=WorkerType.HUMAN, via=Via.CLI)
"""The actor of commands that act as nobody in particular (db status, demo, login)."""


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and `.env`), read now; bad values are a usage error."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"]).upper()
        fail(f"invalid setting {name}: {first['msg']}", USAGE)


@dataclass
class Session:
    """What a command's work function receives."""

    settings: Settings
    runtime: Runtime
    config: LocalConfig
    actor: Actor

    @property
    def db(self) -> Database:
        return self.runtime.db


def token_source(settings: Settings) -> tuple[str | None, str]:
    """The bearer token to use and where it came from."""
    if settings.taskflow_token:
        return settings.taskflow_token, "TASKFLOW_TOKEN"
    saved = load_token(settings.data_dir)
    return saved, "taskflow login" if saved else "none"


SIGN_IN = (
    "sign in first: `taskflow login` (paste a Better Auth token or an agent API key), "
    "or set TASKFLOW_TOKEN"
)
NO_LOCAL_USER = "no local user yet: run `taskflow init --user @you` first (or `taskflow login`)"


async def resolve_actor(runtime: Runtime, config: LocalConfig, request_id: str) -> Actor:
    """The saved or given token, else (local mode only) the user chosen at `taskflow init`."""
    token, _ = token_source(runtime.settings)
    local = runtime.local_mode
    return await identity.resolve_actor(
        runtime.auth,
        Via.CLI,
        token=token,
        request_id=request_id,
        local_handle=config.current_user if local else None,
        missing=NO_LOCAL_USER if local else SIGN_IN,
    )


LEFT_RUNNING_MARKER = ".embedded-notice-shown"
"""In the data dir once the user was told the embedded PostgreSQL keeps running."""


def _notice(settings: Settings) -> Callable[[embedded.Started], None]:
    """Say in one line that the embedded server was restarted after a crash; that it is left
    running, once per data dir (it stops by itself after TASKFLOW_EMBEDDED_IDLE_MINUTES unused,
    `taskflow db stop` stops it now)."""

    def say(started: embedded.Started) -> None:
        if started.recovered:
            note(escape(embedded.recovered_line(settings.data_dir)))
        marker = settings.data_dir / LEFT_RUNNING_MARKER
        if started.started and not marker.exists():
            note(escape(embedded.left_running_line(settings.taskflow_embedded_idle_minutes)))
            marker.touch()

    return say


async def open_for_cli(settings: Settings, *, migrate: bool = True) -> Runtime:
    """The shared bootstrap, with the embedded server left running for the next command
    (starting it on every command would cost about a second); failures are `Unavailable`."""
    return await open_runtime(
        settings, migrate=migrate, pool_size=2, keep_running=True, notice=_notice(settings)
    )


async def _work_on(
    runtime: Runtime,
    work: Callable[[Session], Awaitable[T]],
    auth: bool,
    project: str | None = None,
) -> T:
    """One command on an open runtime: its config, who acts, then the work."""
    config = load_config(runtime.settings.data_dir)
    if project is not None:
        config.default_project = project
    request_id = f"cli-{uuid4().hex[:12]}"
    actor = await resolve_actor(runtime, config, request_id) if auth else NOBODY
    return await work(Session(runtime.settings, runtime, config, actor))


async def _run(
    settings: Settings,
    work: Callable[[Session], Awaitable[T]],
    auth: bool,
    migrate: bool,
) -> T:
    runtime = await open_for_cli(settings, migrate=migrate)
    try:
        return await _work_on(runtime, work, auth)
    finally:
        await runtime.close()


@dataclass
class Kept:
    """A runtime held open across commands, with the event loop its connections live on."""

    runner: asyncio.Runner
    runtime: Runtime
    project: str | None = None
    """The session's current project (`use`): every command's default project."""

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def run(self, work: Callable[[Session], Awaitable[T]], auth: bool = True) -> T:
        return self.runner.run(_work_on(self.runtime, work, auth, self.project))

    def handle(self) -> str | None:
        """Who commands act as right now, or None when nobody is signed in."""
        config = load_config(self.settings.data_dir)
        try:
            actor = self.runner.run(resolve_actor(self.runtime, config, "cli-prompt"))
        except TaskFlowError:
            return None
        return actor.handle


_kept: Kept | None = None


def refusal(exc: TaskFlowError) -> str:
    """The core's message, with its next step as the command to type (`taskflow start 8`)."""
    step = exc.next_step
    declared = REGISTRY.get(step.operation) if step is not None else None
    if step is None or declared is None or declared.cli is None:
        return str(exc)
    words = [f"taskflow {declared.cli}"]
    flags = _options_of(declared.cli)
    for name, value in step.arguments.items():
        flag = flags.get(name)
        words.append(f"{flag} {value}" if flag else str(value))
    return f"{exc} (next: {' '.join(words)})"


def _options_of(path: str) -> dict[str, str]:
    """A command's options by parameter name (`to` -> `--to`); its other parameters are
    positional, typed as values, as `taskflow agent keys @bot` takes its handle."""
    import typer

    from taskflow.cli.app import app  # imported here: the app imports this module

    command: Any = typer.main.get_command(app)
    for word in path.split():
        command = command.commands[word]
    return {
        param.name: param.opts[0]
        for param in command.params
        if param.param_type_name == "option" and param.name
    }


@contextmanager
def keep_runtime(settings: Settings) -> Iterator[Kept]:
    """Open one runtime that every `call` in this block reuses, and close it at the end.

    A refusal to open (no database) is a `TaskFlowError`, raised before the block runs.
    """
    global _kept
    with asyncio.Runner() as runner:
        runtime = runner.run(open_for_cli(settings))
        runner.run(runtime.db.open_pool())  # a one-shot read never needs the engine; a session will
        _kept = Kept(runner, runtime)
        try:
            yield _kept
        finally:
            _kept = None
            runner.run(runtime.close())


def call(
    work: Callable[[Session], Awaitable[T]],
    *,
    auth: bool = True,
    migrate: bool = True,
    settings: Settings | None = None,
) -> T:
    """Run one unit of work; a refusal from the core ends the command with one red line.

    Inside `keep_runtime` the kept runtime does the work, unless the command asked for other
    settings (`init --path`), which get a runtime of their own as outside.
    """
    kept = _kept
    try:
        if kept is not None and settings in (None, kept.settings):
            return kept.run(work, auth)
        return asyncio.run(_run(settings or load_settings(), work, auth, migrate))
    except TaskFlowError as exc:
        fail(refusal(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
