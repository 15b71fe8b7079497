"""The config reference, rendered from the pydantic models in `adlab.config`.

The field descriptions and section docstrings in `adlab.config` are the one source of every key's
meaning; this module walks the models and prints, section by section, each dotted key with its
type or choices, bounds, default and description: plain text for the terminal
(`adlab config --describe`) and Markdown for docs/config.md (`adlab config --describe --markdown`).
Given a resolved config, each key also shows its value.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from adlab.config import _SHORTHAND_KEY, Config, _section_type

DOCS_PATH = "docs/config.md"
REGENERATE = f"adlab config --describe --markdown > {DOCS_PATH}"
WIDTH = 100

_MISSING = object()  # a key whose section is null in the resolved config (train.scheduler.* without a scheduler)


@dataclass(frozen=True)
class Key:
    """One settable key."""

    key: str  # dotted, as for --set
    alternatives: tuple[tuple[str, bool], ...]  # (text, is_literal_value): types and choices
    bounds: str  # e.g. '0 <= x < 1', or ''
    default: Any  # PydanticUndefined where the key is required
    description: str
    section: type[BaseModel] | None = None  # the section this key holds (data.augment, train.scheduler)


@dataclass(frozen=True)
class Section:
    """A section of the config: its dotted prefix ('' at the top level), title, docstring and keys."""

    prefix: str
    title: str
    doc: str
    keys: tuple[Key, ...]


def sections(model: type[BaseModel] = Config) -> list[Section]:
    """Every section of `model`, depth first, each followed by the sections inside it."""
    return _walk(model, "", "top level")


def keys(model: type[BaseModel] = Config) -> list[Key]:
    """Every dotted key of `model`, in reference order."""
    return [key for section in sections(model) for key in section.keys]


def _shorthand(dotted: str) -> str | None:
    """The key a scalar stands for when given for the section `dotted` (all shorthands are two deep)."""
    parts = tuple(dotted.split("."))
    return _SHORTHAND_KEY.get(parts) if len(parts) == 2 else None


def _walk(model: type[BaseModel], prefix: str, title: str) -> list[Section]:
    own: list[Key] = []
    nested: list[Section] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        sub = _section_type(field.annotation)
        shorthand = _shorthand(dotted)
        if sub is not None and shorthand is None:
            nested.extend(_walk(sub, dotted, f"{dotted}: {field.description}" if field.description else dotted))
            continue
        alternatives = _alternatives(field.annotation)
        if sub is not None:  # a scalar may stand for the section: its shorthand key's type comes first
            alternatives = _alternatives(sub.model_fields[shorthand].annotation) + alternatives
            nulls = [alt for alt in alternatives if alt == ("null", True)]
            alternatives = [alt for alt in alternatives if alt != ("null", True)] + nulls[:1]
            nested.extend(_walk(sub, dotted, dotted))
        own.append(
            Key(dotted, tuple(alternatives), _bounds(field.metadata), field.default, field.description or "", sub)
        )
    doc = textwrap.dedent(model.__doc__ or "").strip()
    doc = " ".join(doc.split())
    return [Section(prefix, title, doc, tuple(own)), *nested]


def _alternatives(annotation: Any) -> list[tuple[str, bool]]:
    """The types and literal choices an annotation accepts, null last."""
    origin = get_origin(annotation)
    if annotation is type(None):
        return [("null", True)]
    if origin is Literal:
        return [(_scalar(value), True) for value in get_args(annotation)]
    if origin is Union or (origin is not None and type(annotation).__name__ == "UnionType"):
        found = [alt for arg in get_args(annotation) for alt in _alternatives(arg)]
        return [alt for alt in found if alt != ("null", True)] + [alt for alt in found if alt == ("null", True)][:1]
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        bounds = _bounds([m for item in extra for m in (item.metadata if isinstance(item, FieldInfo) else [item])])
        return [(f"{text} ({bounds})" if bounds else text, literal) for text, literal in _alternatives(inner)]
    if origin is list:
        (inner,) = get_args(annotation) or (Any,)
        parts = _alternatives(inner)
        text = " | ".join(t for t, _ in parts)
        return [(f"list of ({text})" if len(parts) > 1 else f"list of {text}", False)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("mapping", False)]
    return [(getattr(annotation, "__name__", str(annotation)), False)]


def _bounds(metadata: list) -> str:
    """'0 <= x < 1', 'x > 0', ... from pydantic's Ge/Gt/Le/Lt constraints."""
    lower = upper = ""
    for item in metadata:
        for attr, op in (("ge", "<="), ("gt", "<")):
            if getattr(item, attr, None) is not None:
                lower = f"{_scalar(getattr(item, attr))} {op} "
        for attr, op in (("le", "<="), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                upper = f" {op} {_scalar(getattr(item, attr))}"
    if lower and upper:
        return f"{lower}x{upper}"
    if lower:
        value, op = lower.split()
        return f"x {'>=' if op == '<=' else '>'} {value}"
    if upper:
        return f"x{upper}"
    return ""


def _scalar(value: Any) -> str:
    """A value as YAML writes it in flow style: null, true, 0.001, [32, 64], {name: step}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in value.items()) + "}"
    return str(value)


def format_value(key: Key, value: Any) -> str:
    """A key's default or resolved value as it is written in a config (a section by its shorthand if it can)."""
    if value is PydanticUndefined:
        return "required"
    if value is _MISSING:
        return "unset"
    if isinstance(value, BaseModel):
        short = _shorthand(key.key)
        if short is not None and value == type(value).model_validate({short: getattr(value, short)}):
            return _scalar(getattr(value, short))
        return _scalar(value.model_dump(mode="json"))
    return _scalar(value)


def type_text(key: Key) -> str:
    """'float, 0 <= x < 1'; 'digits | mnist | ...'."""
    text = " | ".join(t for t, _ in key.alternatives)
    return f"{text}, {key.bounds}" if key.bounds else text


def resolved(config: Config, dotted: str) -> Any:
    """The value of a dotted key in a resolved config (_MISSING under a null section)."""
    node: Any = config
    for part in dotted.split("."):
        if node is None:
            return _MISSING
        node = getattr(node, part)
    return node


def _values(config: Config | None) -> dict[str, tuple[str, bool]]:
    """Per key: (its value as text, whether it differs from the default); empty without a config."""
    if config is None:
        return {}
    out = {}
    for key in keys():
        value = format_value(key, resolved(config, key.key))
        default = format_value(key, key.default)
        out[key.key] = (value, default != "required" and value != default)
    return out


def render_text(config: Config | None = None, width: int = WIDTH) -> str:
    """The reference for the terminal; with `config`, each key shows its value (and the default where it differs)."""
    values = _values(config)
    lines = [
        "adlab config reference: every key (dotted, as for --set), its type or choices, default and meaning.",
        "Every key has a default, so an empty file is a valid config.",
    ]
    if config is None:
        lines.append("Each key is shown as `key: default`; `adlab config FILE --describe` shows FILE's values.")
    else:
        lines.append(
            "Each key is shown as `key: value` as resolved (defaults + file + --set), with "
            "`# default: ...` where it differs."
        )
    wrap = textwrap.TextWrapper(
        width=width, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False, break_long_words=False
    )
    for section in sections():
        lines += ["", f"[{section.title}]"]
        if section.doc:
            lines += textwrap.wrap(section.doc, width=width, break_on_hyphens=False)
        for key in section.keys:
            if config is None:
                head = f"{key.key}: {format_value(key, key.default)}"
            else:
                value, changed = values[key.key]
                head = f"{key.key}: {value}"
                if changed:
                    head += f"    # default: {format_value(key, key.default)}"
            lines += ["", head]
            lines += wrap.wrap(type_text(key))
            lines += wrap.wrap(key.description)
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


def _md_value(text: str) -> str:
    return text if text in ("required", "unset") else _code(text)


def _md_type(key: Key) -> str:
    parts = [_code(t) if literal else _cell(t) for t, literal in key.alternatives]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
    return f"{text}; {_code(key.bounds)}" if key.bounds else text


def render_markdown(config: Config | None = None) -> str:
    """The reference as Markdown: docs/config.md exactly when `config` is None; with one, a value column."""
    values = _values(config)
    lines = [
        "# Config reference",
        "",
        f"_Generated by `adlab config --describe --markdown` from the field descriptions in `src/adlab/config.py`; "
        f"do not edit by hand (regenerate: `{REGENERATE}`)._",
        "",
        "Every key has a default, so an empty file is a valid config. Set keys in a YAML file (each section a "
        "nested mapping) or with `--set dotted.key=value`; unknown keys and wrong types are errors. "
        "`adlab config [FILE] [--set ...]` prints the resolved config, and `adlab config --describe` this "
        "reference (with FILE's values when given one).",
    ]
    for section in sections():
        heading = f"`{section.prefix}`" if section.prefix else "Top level"
        title = section.title.split(": ", 1)
        lines += ["", f"## {heading}" + (f": {title[1]}" if len(title) == 2 and section.prefix else ""), ""]
        if section.doc:
            lines += [section.doc, ""]
        header = "| key | type | default |" + (" value |" if config is not None else "") + " meaning |"
        lines += [header, "|---" * header.count(" |") + "|"]
        for key in section.keys:
            row = f"| {_code(key.key)} | {_md_type(key)} | {_md_value(format_value(key, key.default))} |"
            if config is not None:
                value, changed = values[key.key]
                row += f" {'**' + _md_value(value) + '**' if changed else _md_value(value)} |"
            lines.append(row + f" {_cell(key.description)} |")
    return "\n".join(lines) + "\n"
