"""Atomic file output: write to a temporary name in the same folder, then rename.

An interrupted run never leaves a half-written file behind, only the old one or the new one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import yaml


def printer(verbose: bool) -> Callable[..., None]:
    """`print` for a command's progress lines, or a function that prints nothing."""
    return print if verbose else _quiet


def _quiet(*args, **kwargs) -> None:
    pass


_NOTICED: set[str] = set()


def notice(text: str) -> None:
    """A one-line notice on stderr (a key that moved, a path read the old way), once per process."""
    if text not in _NOTICED:
        _NOTICED.add(text)
        print(f"notice: {text}", file=sys.stderr)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results should read like any other file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:  # a failed write() names no file: a full disk should name the one it hit
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=True)
    # Keep lists of numbers (confusion-matrix rows) on one line: readable and diff-friendly.
    text = re.sub(r"\[\s+([-0-9.eE,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    write_text(path, text + "\n")


def write_yaml(path: str | os.PathLike, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


FIGURE_SOFTWARE = "adlab"  # the PNG 'Software' text of every figure adlab writes: how it knows its own


def save_figure(fig, path: str | os.PathLike, dpi: int = 120, tight: bool = True, close: bool = True) -> None:
    """Save a matplotlib figure atomically and close it. tight=False for a figure laid out when made
    (a 'tight' bounding box draws it once more); close=False to save it again in another format."""
    import matplotlib.pyplot as plt

    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None, format=fmt,
                    metadata={"Software": FIGURE_SOFTWARE} if fmt == "png" else None)
    if close:
        plt.close(fig)


def made_by_adlab(png: str | os.PathLike) -> bool:
    """Whether an image file is a figure adlab wrote (its PNG 'Software' text)."""
    from PIL import Image

    try:
        with Image.open(png) as img:
            return img.format == "PNG" and getattr(img, "text", {}).get("Software") == FIGURE_SOFTWARE
    except Exception:  # not an image at all: certainly not ours
        return False


MAX_YAML_BYTES = 10 * 2**20  # configs, studies and data.yaml files are a few kB
MAX_YAML_ALIASES = 1000  # anchors are for reuse, not for multiplying a document (a "billion laughs" bomb)


class StrictYamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently) and more than MAX_YAML_ALIASES alias references."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.constructor.ConstructorError(
                    None, None, f"more than {MAX_YAML_ALIASES} alias references (*name)", self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (first at line {seen[key] + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            except TypeError:  # an unhashable key: PyYAML's own error follows
                break
        return super().construct_mapping(node, deep)


MAX_YAML_VALUES = 100_000  # values in a document once its aliases are expanded


def load_yaml_text(text: str):
    """YAML text parsed safely and strictly (see StrictYamlLoader); a document whose aliases
    expand it past MAX_YAML_VALUES values is refused before anything walks the expansion."""
    loader = StrictYamlLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if getattr(loader, "_aliases", 0) and _expanded_size(data, {}, MAX_YAML_VALUES) > MAX_YAML_VALUES:
        raise yaml.constructor.ConstructorError(
            None, None, f"aliases (*name) expand the document past {MAX_YAML_VALUES:,} values", None)
    return data


def _expanded_size(value, memo: dict, cap: int) -> int:
    """Number of values in `value` with shared sub-objects counted each time they appear
    (memoised by identity, so a bomb is measured without being expanded); stops past `cap`."""
    if not isinstance(value, (list, dict)):
        return 1
    if id(value) in memo:
        return memo[id(value)]
    memo[id(value)] = cap + 1  # a cycle (`&a [*a]`) counts as too large
    children = value.values() if isinstance(value, dict) else value
    total = 1
    for child in children:
        total += _expanded_size(child, memo, cap)
        if total > cap:
            break
    memo[id(value)] = total
    return total


def read_yaml_mapping(path: str | os.PathLike, what: str = "config file", error: type | None = None) -> dict:
    """A YAML file whose top level is a mapping (empty file: {}), or one clear error naming the file."""
    from adlab.errors import ConfigError

    error = error or ConfigError
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise error(f"{path}: {what} of {path.stat().st_size:,} bytes is too large (at most {MAX_YAML_BYTES:,})")
    try:
        raw = load_yaml_text(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise error(f"{path}: invalid YAML: nested too deeply") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    return raw


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_json_mapping(path: str | os.PathLike, what: str = "file") -> dict:
    """A JSON file adlab wrote earlier (metrics.json, env.json), read as untrusted input: a missing,
    cut-short or edited file is one DataError naming it."""
    from adlab.errors import DataError

    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise DataError(f"{path}: {what} is not valid JSON (cut short or edited?): {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise DataError(f"{path}: {what} is nested too deeply") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: {what} should hold a JSON object, not {type(data).__name__}")
    return data
