"""JSON Schemas of the core's pydantic models, trimmed for a model's context.

An agent pays for every byte of `tools/list` in every conversation, so the schemas the SDK
generates are compacted here: no auto-generated `title`s, `null` folded into `type`, no
`"default": null` (nor a flag's `"default": false`: off unless sent), and `$defs` used once
inlined where they are used. The core models stay the single source of field names, limits
and descriptions.
"""

from __future__ import annotations

from typing import Any

_REF = "#/$defs/"


# Keys that only annotate: kept for inputs (they guide the caller), dropped from output schemas,
# which a client uses to parse answers (timestamps are plainly ISO 8601, and a stricter
# `additionalProperties` would only make old clients reject answers from a newer server).
_INPUT_ONLY = frozenset({"description", "default", "examples", "additionalProperties", "format"})


# `format` is dropped from inputs: due dates accept a bare date as well as a date-time (the
# descriptions say so), and a strict `date-time` would tell a model otherwise.
_OUTPUT_ONLY = frozenset({"examples", "format"})


def compact(schema: dict[str, Any] | None, *, output: bool = False) -> dict[str, Any] | None:
    """A smaller, equivalent JSON Schema (see the module docstring)."""
    if schema is None:
        return None
    defs = schema.get("$defs", {})
    uses = _count_refs(schema)
    inlined = {name for name in defs if uses.get(name, 0) <= 1}
    drop = _INPUT_ONLY if output else _OUTPUT_ONLY
    out = _walk(schema, defs, inlined, drop)
    kept = {name: out["$defs"][name] for name in out.get("$defs", {}) if name not in inlined}
    if kept:
        out["$defs"] = kept
    else:
        out.pop("$defs", None)
    _describe_once(out, set())
    return out


def _describe_once(node: Any, seen: set[str]) -> None:
    """Keep a description only where it first appears in one schema (a subtask's `due_date`
    means what the task's `due_date` means)."""
    if isinstance(node, list):
        for item in node:
            _describe_once(item, seen)
    elif isinstance(node, dict):
        text = node.get("description")
        if isinstance(text, str):
            if text in seen:
                del node["description"]
            seen.add(text)
        for value in node.values():
            _describe_once(value, seen)


def _count_refs(node: Any, counts: dict[str, int] | None = None) -> dict[str, int]:
    counts = {} if counts is None else counts
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF):
            name = ref.removeprefix(_REF)
            counts[name] = counts.get(name, 0) + 1
        for value in node.values():
            _count_refs(value, counts)
    elif isinstance(node, list):
        for value in node:
            _count_refs(value, counts)
    return counts


def _walk(node: Any, defs: dict[str, Any], inlined: set[str], drop: frozenset[str]) -> Any:
    if isinstance(node, list):
        return [_walk(item, defs, inlined, drop) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF) and ref.removeprefix(_REF) in inlined:
        target = _walk(defs[ref.removeprefix(_REF)], defs, inlined, drop)
        siblings = {k: _walk(v, defs, inlined, drop) for k, v in node.items() if k != "$ref"}
        return {**target, **siblings}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "default" and (
            value is None or (value is False and node.get("type") == "boolean")
        ):
            continue  # no default, or a flag that is off unless sent
        if key in drop:
            continue
        if key == "type" and value == "string" and "enum" in node:
            continue  # implied by the enum's values
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: _walk(sub, defs, inlined, drop) for name, sub in value.items()}
        else:
            out[key] = _walk(value, defs, inlined, drop)
    return _fold_null(out)


def _fold_null(node: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [{type: X, ...}, {type: null}]` becomes `{type: [X, null], ...}`; enums gain null."""
    arms = node.get("anyOf")
    if not isinstance(arms, list) or len(arms) != 2 or {"type": "null"} not in arms:
        return node
    other = arms[0] if arms[1] == {"type": "null"} else arms[1]
    kind = other.get("type")
    if "$ref" in other or "const" in other or not (isinstance(kind, str) or "enum" in other):
        return node
    merged = {**other, **{k: v for k, v in node.items() if k != "anyOf"}}
    if isinstance(kind, str):
        merged["type"] = [kind, "null"]
    if "enum" in other:
        merged["enum"] = [*other["enum"], None]
    return merged
