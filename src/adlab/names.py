"""The one sanitiser for user strings that become file or folder names (runs, variants, fusions,
studies, searches, class folders).

A name is refused, never rewritten: a silently changed name would put results where the user does
not look, and a name like `../x` or `/tmp/x` must never reach a path join.
"""

from __future__ import annotations

import hashlib
import re

from adlab.errors import ConfigError

MAX_NAME_BYTES = 120  # file systems allow 255 bytes; runs add suffixes such as '-seed=12'
_FORBIDDEN = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f]')  # separators, Windows-reserved, HTML-special, control


def name_problem(value: object) -> str | None:
    """Why `value` cannot be a file name, or None if it can."""
    if not isinstance(value, str):
        return f"expected a text name, got {type(value).__name__}"
    if not value.strip():
        return "empty name"
    if value.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", value):
        return f"{value[:60]!r} is an absolute path, not a name"
    if ".." in value:
        return f"{value[:60]!r} contains '..'"
    bad = _FORBIDDEN.search(value)
    if bad:
        return (
            f'{value[:60]!r} contains {bad.group()!r} (not allowed in names: / \\ < > : " | ? * or control characters)'
        )
    if value != value.strip():
        return f"{value[:60]!r} starts or ends with a space"
    if value in (".",) or value.startswith("."):
        return f"{value[:60]!r} starts with '.' (hidden or special folder)"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{value[:60]!r} is not valid UTF-8 text"
    if size > MAX_NAME_BYTES:
        return f"name of {size} bytes is too long (at most {MAX_NAME_BYTES})"
    return None


def check_name(value: object, key: str, error: type[Exception] = ConfigError) -> str:
    """`value` itself if it is a safe file name; else one error naming `key`."""
    problem = name_problem(value)
    if problem:
        raise error(f"{key}: {problem}")
    return value  # type: ignore[return-value]


def name_field(value):
    """A pydantic field validator: the name unchanged, or a ValueError saying why it cannot be one."""
    problem = None if value is None else name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def generated_name(text: str) -> str:
    """A folder name made by adlab from values (study grid points): unsafe characters become '_',
    and an over-long name keeps its start and gains a short hash, so distinct points stay distinct."""
    safe = re.sub(r"[^A-Za-z0-9._=+,-]+", "_", text).replace("..", "_").lstrip(".") or "run"
    if len(safe) > MAX_NAME_BYTES - 20:
        digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        safe = f"{safe[: MAX_NAME_BYTES - 32]}~{digest}"
    return safe
