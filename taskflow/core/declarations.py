"""One declaration per operation: its command, its handler and how each surface reaches it.

A handler is declared where it is written, with `@declare(Command, ...)`. The declaration is the
only place that says what the operation is called on MCP, which REST method and path serve it,
which CLI command runs it, and whether it reads, destroys or may be repeated safely. The
dispatcher, the reachability checks and (as the surfaces move onto the kernel) the MCP tools and
REST routes are all built from `REGISTRY`; no surface keeps a list of its own.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_type_hints

from pydantic import BaseModel, ValidationError

from taskflow.core.actor import Actor, KeyCaller
from taskflow.core.errors import FieldProblem, InvalidInput, ValidationFailed
from taskflow.core.uow import UnitOfWork

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
Handler = Callable[[Any, UnitOfWork, Actor], Awaitable[Any]]
KeyHandler = Callable[[Any, UnitOfWork, KeyCaller], Awaitable[Any]]
"""Runs a command for a caller known only by an API key; None when it cannot (see `by_key`)."""
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class Route:
    """A REST route: method, Starlette path (fields of the command in braces) and success status.

    `name` is the OpenAPI operationId of an operation's further routes (the first is named after
    the operation), since each route needs its own. `body` names the one field a POST's whole
    JSON body is the value of (`POST /api/tasks/7/subtasks [{...}]`), where the body is not an
    object of fields.
    """

    method: Method
    path: str
    status: int = 200
    name: str | None = None
    body: str | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    """Everything about one operation that is not its code."""

    name: str
    command: type[BaseModel]
    handler: Handler
    summary: str
    toolset: str
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    mcp: str | None = None
    rest: Route | None = None
    cli: str | None = None
    routes: tuple[Route, ...] = ()
    """Every REST route serving the operation; `rest` is the first."""
    snapshot: bool = False
    """Run in one REPEATABLE READ snapshot (the dispatcher starts the transaction so)."""
    mcp_output: Any = None
    by_key: KeyHandler | None = None
    """The operation for a caller known only by an API key, checking the key in its own
    statement (one round trip instead of two); None when it declines (the command needs more
    than one statement) or wrote nothing (a key that does not open, no permission), and the
    surface then authenticates and dispatches as usual, which says why."""

    @property
    def mutating(self) -> bool:
        """Changes state, so it must write at least one audit entry."""
        return not self.read_only

    def output(self) -> Any:
        """The handler's return annotation: the answer's type for OpenAPI and MCP schemas."""
        return get_type_hints(self.handler)["return"]

    def parse(self, arguments: Mapping[str, Any]) -> BaseModel:
        """The command built from a surface's arguments, or `InvalidInput` naming each problem
        (arguments nested deeper than `MAX_DEPTH` are refused before anything reads them)."""
        if nested_too_deep(arguments, MAX_DEPTH):
            raise ValidationFailed(
                f"the arguments are nested more than {MAX_DEPTH} levels deep: no operation "
                "takes that; send a flatter value",
                field="arguments",
            )
        try:
            return self.command.model_validate(dict(arguments))
        except ValidationError as exc:
            raise InvalidInput(problems_of(self.command, exc)) from None


MAX_DEPTH = 32
"""How deeply a command's arguments may nest (objects and arrays); no command needs more than 4."""


def nested_too_deep(value: Any, limit: int) -> bool:
    """Whether `value` nests objects or arrays more than `limit` levels deep (a flat object is
    one level); iterative, so a hostile value cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, Mapping) else item
        if depth > limit:
            return True
        for child in children:
            if isinstance(child, Mapping | list):
                stack.append((child, depth + 1))
    return False


C = TypeVar("C", bound=BaseModel)


def make_command(command: type[C], **arguments: Any) -> C:
    """A command from plain arguments, refused as `InvalidInput` as a surface's would be (so a
    caller passing `bot` for `@bot` gets one clear refusal, never a pydantic traceback)."""
    try:
        return command(**arguments)
    except ValidationError as exc:
        raise InvalidInput(problems_of(command, exc)) from None


def problems_of(command: type[BaseModel], error: ValidationError) -> list[FieldProblem]:
    """Pydantic's errors as field problems; an unknown argument names the nearest valid one."""
    fields = list(command.model_fields)
    problems = []
    for err in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in err["loc"]) or "arguments"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = _unknown(str(err["loc"][-1]), fields)
        problems.append(FieldProblem(field=field, message=message, type=err["type"]))
    return problems


def _unknown(name: str, fields: list[str]) -> str:
    nearest = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
    if nearest:
        return f"unknown argument {name!r}: did you mean {nearest[0]!r}?"
    accepted = ", ".join(fields) or "none"
    return f"unknown argument {name!r}: this operation accepts {accepted}"


class Registry(Mapping[str, Operation]):
    """Every declared operation by name, in declaration order: complete whenever it is read.

    Operations register as their handler modules are imported. Reading the registry imports
    them all first (`taskflow.core.handlers.load_all`), so a surface listing every operation
    sees every one; a process that runs one known command (a plain CLI read) imports only that
    command's module, and never the SQLAlchemy the others load.
    """

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}
        self._loaded = False

    def _all(self) -> dict[str, Operation]:
        if not self._loaded:
            self._loaded = True  # first: a module read while loading sees what is there so far
            from taskflow.core import handlers

            try:
                handlers.load_all()
            except BaseException:
                self._loaded = False  # a module that failed to import: try again next read
                raise
        return self._ops

    def __getitem__(self, name: str) -> Operation:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def _add(self, operation: Operation) -> None:
        if operation.name in self._ops:
            raise ValueError(f"operation {operation.name!r} is declared twice")
        self._ops[operation.name] = operation


REGISTRY = Registry()
_BY_COMMAND: dict[type[BaseModel], Operation] = {}


def declare(
    command: type[BaseModel],
    *,
    toolset: str,
    read_only: bool = False,
    destructive: bool = False,
    idempotent: bool = False,
    mcp: str | None = None,
    rest: Route | tuple[Route, ...] | None = None,
    cli: str | None = None,
    name: str | None = None,
    snapshot: bool = False,
    mcp_output: Any = None,
    by_key: KeyHandler | None = None,
) -> Callable[[H], H]:
    """Register the decorated handler as the operation that runs `command`.

    The operation's name is the handler's name unless given; its summary is the first line of the
    handler's docstring, which is what MCP tool descriptions and OpenAPI summaries show. `rest`
    may name several routes (a trail read per project, per task and overall); the first is the
    operation's own (`Operation.rest`), all are in `Operation.routes`. `snapshot=True` runs the
    handler in one REPEATABLE READ snapshot, for reads that must see one moment of the database.
    `mcp_output` is a compact projection of the answer that MCP tools return instead (read off
    the answer's attributes, or by the type's `of`), so `tools/list` stays small. `by_key` is
    the operation's one-statement form for a caller known only by an API key (`Operation.by_key`).
    """
    routes = rest if isinstance(rest, tuple) else (rest,) if rest is not None else ()

    def register(handler: H) -> H:
        op_name = name or handler.__name__
        if command in _BY_COMMAND:
            raise ValueError(f"{command.__name__} already belongs to {_BY_COMMAND[command].name}")
        if command.model_config.get("extra") != "forbid":
            raise ValueError(f"{command.__name__} must refuse unknown fields (extra='forbid')")
        doc = (handler.__doc__ or "").strip()
        operation = Operation(
            name=op_name,
            command=command,
            handler=handler,
            summary=doc.splitlines()[0] if doc else op_name.replace("_", " "),
            toolset=toolset,
            read_only=read_only,
            destructive=destructive,
            idempotent=idempotent or read_only,
            mcp=mcp,
            rest=routes[0] if routes else None,
            cli=cli,
            routes=routes,
            snapshot=snapshot,
            mcp_output=mcp_output,
            by_key=by_key,
        )
        REGISTRY._add(operation)
        _BY_COMMAND[command] = operation
        return handler

    return register


def operation_for(command: BaseModel) -> Operation:
    """The declaration that runs this command (a command without one is a programming error)."""
    return operation_for_command(type(command))


def operation_for_command(command: type[BaseModel]) -> Operation:
    """The declaration of a command class (to parse raw arguments into it). A command defined
    apart from its handler (in `schemas`) is found once every handler module is loaded."""
    found = _BY_COMMAND.get(command)
    if found is None:
        REGISTRY._all()
        found = _BY_COMMAND.get(command)
    if found is None:
        raise LookupError(f"no operation is declared for {command.__name__}")
    return found
