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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
        fig.savefig(
            tmp,
            dpi=dpi,
            bbox_inches="tight" if tight else None,
            format=fmt,
            metadata={"Software": FIGURE_SOFTWARE} if fmt == "png" else None,
        )
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
                    None, None, f"more than {MAX_YAML_ALIASES} alias references (*name)", self.peek_event().start_mark
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}  # key -> the line it was first given on
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (first at line {seen[key] + 1})", key_node.start_mark
                    )
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
            None, None, f"aliases (*name) expand the document past {MAX_YAML_VALUES:,} values", None
        )
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


# --- bounded reads of run files -------------------------------------------------------------------
# Run files are read whole, so each kind has a size cap well above what a real run writes: a file
# past it (a damaged or crafted one, a sparse 6 GB file) is refused before a byte is read.

MAX_JSON_BYTES = 64 * 2**20
"""metrics.json, env.json and other JSON adlab writes: a few kB. The largest real one is a
classification metrics.json of many classes: a 1000-class confusion matrix is 10^6 counts of at most
~6 characters with their separators, about 6 MB, plus per-class accuracies (~40 kB); 64 MiB is ten
times that."""

MAX_PREDICTIONS_BYTES = 2 * 2**30
"""predictions.csv: index, y_true, y_pred and one probability per class, each written with 6
significant digits ('1.23456e-05', 11 characters and a comma: 12 bytes at most). 100,000 test images
x 1,000 classes is 10^8 probabilities, at most 1.2 GB (about 1.0 GB in practice); 2 GiB leaves room
for that and refuses the 6 GB of a crafted file."""

MAX_HISTORY_BYTES = 64 * 2**20
"""history.csv: one row per epoch of about ten numbers (~200 bytes): 10,000 epochs are 2 MB."""

MAX_CSV_COLUMNS = 100_000
"""history.csv has about ten columns, predictions.csv 3 + one per class."""


def file_kind(mode: int) -> str:
    """What a path that is not a regular file is, from its st_mode, for one-line refusals."""
    import stat

    return (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )


def bounded_read(path: str | os.PathLike, limit: int, what: str = "file", error: type | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or one error naming the file: missing,
    not a regular file (a FIFO or /dev/zero, even through a symlink, would block or never end), or
    larger than `limit` (checked before reading, and at most limit + 1 bytes are ever read)."""
    import stat

    from adlab.errors import DataError

    error = error or DataError
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: {what} is a folder, not a file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: {what} is not a regular file")
        if info.st_size > limit:
            raise error(f"{path}: {what} of {info.st_size:,} bytes is too large (at most {limit:,}; damaged?)")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 2**24))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:  # it grew while read
        raise error(f"{path}: {what} is too large (more than {limit:,} bytes; damaged?)")
    return b"".join(chunks)


def bounded_text(path: str | os.PathLike, limit: int, what: str = "file", error: type | None = None) -> str:
    """A UTF-8 text file read with bounded_read; binary content (NUL bytes, not UTF-8) is one error."""
    from adlab.errors import DataError

    error = error or DataError
    data = bounded_read(path, limit, what, error)
    if b"\x00" in data:
        raise error(f"{path}: {what} is not a text file (it holds NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (a binary or damaged file? byte {exc.start:,})") from None


def bounded_csv(
    path: str | os.PathLike,
    limit: int,
    what: str = "file",
    error: type | None = None,
    max_columns: int = MAX_CSV_COLUMNS,
) -> list[list[str]]:
    """The rows of a CSV text file read with bounded_text; a row wider than `max_columns`, or text
    the csv module cannot parse, is one error naming the file."""
    from adlab.errors import DataError

    error = error or DataError
    text = bounded_text(path, limit, what, error)
    rows = []
    try:
        for row in csv.reader(io.StringIO(text, newline="")):
            if len(row) > max_columns:
                raise error(f"{path}: {what} has a row of {len(row):,} columns (at most {max_columns:,}; damaged?)")
            rows.append(row)
    except csv.Error as exc:
        raise error(f"{path}: {what} is not valid CSV: {exc}") from None
    return rows


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file of at most MAX_JSON_BYTES (see read_json_mapping for files to check)."""
    return json.loads(bounded_text(path, MAX_JSON_BYTES, "JSON file"))


def read_json_mapping(path: str | os.PathLike, what: str = "file", limit: int = MAX_JSON_BYTES) -> dict:
    """A JSON file adlab wrote earlier (metrics.json, env.json), read as untrusted input: a missing,
    cut-short, oversized, binary or edited file is one DataError naming it."""
    from adlab.errors import DataError

    path = Path(path)
    text = bounded_text(path, limit, what)
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise DataError(
            f"{path}: {what} is not valid JSON (cut short or edited?): {str(exc).splitlines()[0]}"
        ) from None
    except RecursionError:
        raise DataError(f"{path}: {what} is nested too deeply") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: {what} should hold a JSON object, not {type(data).__name__}")
    return data
