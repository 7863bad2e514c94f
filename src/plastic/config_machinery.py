"""The config's generic machinery: constraints declared on the fields, coercion of JSON/TOML/`--set` values to the
annotated types, nested updates, `--set KEY=VALUE` parsing, and each field's docstring for `--describe-config`.

Nothing here knows a field of `plastic.config`: a field states its allowed values where it is declared, with
`choice(default, allowed)` or `within(default, "> 0" | ">= 0" | "[0, 1]")`, and `check_constraints` reads them.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from dataclasses import field
from typing import Any

# The ranges a numeric field may declare; the error reads "must be <text>", e.g. "must be in [0, 1]".
_RANGES = {"> 0": (lambda v: v > 0, "> 0"), ">= 0": (lambda v: v >= 0, ">= 0"),
           "[0, 1]": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]")}


def choice(default: Any, allowed: tuple[str, ...], **metadata: Any) -> Any:
    """A field whose value must be one of `allowed` (checked by `check_constraints` after the domain's defaults)."""
    return field(default=default, metadata={"choices": tuple(allowed), **metadata})


def within(default: Any, allowed: str, **metadata: Any) -> Any:
    """A numeric field in the range `allowed` ("> 0", ">= 0" or "[0, 1]"); None (resolved per domain) passes."""
    if allowed not in _RANGES:
        raise ValueError(f"unknown range {allowed!r}; allowed: {', '.join(_RANGES)}")
    return field(default=default, metadata={"range": allowed, **metadata})


def leaves(config: Any, prefix: str = "") -> list[tuple[str, dataclasses.Field, Any, type]]:
    """Every non-section field, depth first in declaration order: (dotted key, Field, value, owning class)."""
    rows = []
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        if dataclasses.is_dataclass(value):
            rows.extend(leaves(value, f"{prefix}{spec.name}."))
        else:
            rows.append((f"{prefix}{spec.name}", spec, value, type(config)))
    return rows


def check_constraints(config: Any) -> None:
    """Raise ValueError naming the first field outside its declared choices, then the first outside its range (in
    the order "> 0", ">= 0", "[0, 1]")."""
    rows = leaves(config)
    for key, spec, value, _ in rows:
        allowed = spec.metadata.get("choices")
        if allowed is not None and value not in allowed:
            raise ValueError(f"config key {key!r} = {value!r}; allowed: {', '.join(allowed)}")
    for name, (holds, text) in _RANGES.items():
        for key, spec, value, _ in rows:
            if spec.metadata.get("range") == name and value is not None and not holds(value):
                raise ValueError(f"config key {key!r} = {value!r} must be {text}")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring literal under each field of the dataclass `cls` (CleanRL's style), by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for statement, following in zip(body, body[1:]):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def describe(config: Any) -> list[str]:
    """One line per key: `key = value  # the field's doc` (its lines joined)."""
    lines = []
    for key, spec, value, owner in leaves(config):
        doc = " ".join(field_docs(owner).get(spec.name, "").split())
        lines.append(f"{key} = {value!r}" + (f"  # {doc}" if doc else ""))
    return lines


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert `value` (from JSON/TOML or a `--set` string) to the annotated type, or raise naming `key`."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = options[0]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ValueError(f"config key {key!r}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"config key {key!r}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                try:
                    number = float(value)
                except ValueError:
                    number = None
                if number is not None and number.is_integer():
                    return int(number)
        raise ValueError(f"config key {key!r}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"config key {key!r}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"config key {key!r}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {annotation!r} for {key!r}")


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def update(config: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Set nested fields from a (possibly nested) dict; unknown keys and bad values raise ValueError."""
    fields = _fields(type(config))
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise ValueError(f"unknown config key {key!r}; valid keys here: {', '.join(sorted(fields))}")
        hint = fields[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"config key {key!r} is a section; set its fields as {key}.FIELD=VALUE")
            update(getattr(config, name), value, prefix=f"{key}.")
        else:
            setattr(config, name, _coerce(value, hint, key))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["sam.rho=0.05", "steps=1000"]` -> nested dict of strings (types are coerced by `update`)."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r} conflicts with another --set of {part!r}")
        node[parts[-1]] = value.strip()
    return nested


def get(config: Any, key: str) -> Any:
    """The value at a dotted key ("sam.rho"); None where a part is missing."""
    for part in key.split("."):
        config = getattr(config, part, None)
    return config


def put(config: Any, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        config = getattr(config, part)
    setattr(config, last, value)


def flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as {dotted key: value}."""
    rows: dict[str, Any] = {}
    for key, value in values.items():
        rows.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return rows
