"""Checks shared by the evaluator's rule tables (``[page_rules]``, ``[warning_rules]``): flags,
counts and non-negative numbers by their declared type, and an unknown key named with the known
ones. Each table adds its own range checks after these."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def check_scalar_fields(obj: Any, table: str) -> None:
    """``bool`` fields must be booleans, ``int`` fields integers >= 1, ``float`` fields finite
    numbers >= 0 (stored as floats); a ``ValueError`` names ``table.field``. For a frozen
    dataclass's ``__post_init__``."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.type in ("bool", bool):
            if not isinstance(value, bool):
                raise ValueError(f"{table}.{f.name}: must be true or false, got {value!r}")
        elif f.type in ("int", int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{table}.{f.name}: must be an integer >= 1, got {value!r}")
        elif f.type in ("float", float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{table}.{f.name}: must be a finite number >= 0, got {value!r}")
            object.__setattr__(obj, f.name, float(value))


def table_from_mapping(cls: type[T], raw: Any, table: str) -> T:
    """``cls`` from the configuration file's ``[table]``; an unknown key is an error naming the known ones."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{table}: must be a table, got {type(raw).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{table}: unknown key {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
    return cls(**dict(raw))


__all__ = ["check_scalar_fields", "table_from_mapping"]
