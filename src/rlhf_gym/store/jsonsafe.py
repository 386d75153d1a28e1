"""Values that are valid JSON on every backend: no NaN/Infinity, no lone surrogates, no NUL.

Python's ``json`` module reads ``NaN``, ``Infinity`` and ``"\\udfff"`` without complaint, but
PostgreSQL refuses them (and NUL in any text column), SQLite stores them as non-standard JSON, and
a UTF-8 encoder fails on them when the row is served later. So every string and number that enters
the store is checked here first, and refused with a message naming where it was.
"""

from __future__ import annotations

import math
import re
from typing import Any

_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class UnsafeValue(ValueError):
    """A value that cannot be stored and served as standard JSON; ``where`` names it."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where, self.why = where, why


def text_problem(s: str) -> str | None:
    """Why ``s`` cannot be stored as text (a NUL or a lone surrogate), or None when it can."""
    m = _BAD_CHARS.search(s)
    if m is None:
        return None
    ch = m.group()
    if ch == "\x00":
        return "contains a NUL character (\\u0000)"
    return f"contains a lone surrogate (\\u{ord(ch):04x}), which is not valid Unicode"


def check_json(value: Any, where: str = "value", max_depth: int = 64) -> None:
    """Raise :class:`UnsafeValue` naming the first string, key or number that is not storable JSON.

    Accepts what ``json.dumps(..., allow_nan=False)`` writes and every backend reads back unchanged:
    dicts with string keys, lists/tuples, finite floats, ints, bools, None and clean strings.
    """
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        v, path, depth = stack.pop()
        if depth > max_depth:
            raise UnsafeValue(path, f"nested deeper than {max_depth} levels")
        if v is None or isinstance(v, bool | int):
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                raise UnsafeValue(path, f"must be a finite number, got {v!r}")
        elif isinstance(v, str):
            why = text_problem(v)
            if why:
                raise UnsafeValue(path, why)
        elif isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise UnsafeValue(path, f"keys must be strings, got {type(k).__name__}")
                why = text_problem(k)
                if why:
                    raise UnsafeValue(f"{path} (a key)", why)
                stack.append((item, f"{path}.{k}", depth + 1))
        elif isinstance(v, list | tuple):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(v))
        else:
            raise UnsafeValue(path, f"{type(v).__name__} is not a JSON value")


def clean_json(value: Any) -> Any:
    """A copy with non-finite numbers made None and bad characters replaced by U+FFFD.

    Only for serving or exporting rows written before the checks existed (a bad old row must not
    stop the answers feed or an export); new rows are refused by :func:`check_json` instead.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _BAD_CHARS.sub("\ufffd", value) if _BAD_CHARS.search(value) else value
    if isinstance(value, dict):
        return {clean_json(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value
