"""Which folders adlab may replace: only those it made.

Every folder adlab creates (run, fused run, study, search, evaluation, demo, data-tool output)
carries a marker file naming its kind. `--overwrite` replaces only a folder whose marker has the
kind the command makes; a folder without a marker is the user's and is never written into unless
it is empty. The working directory and its parents are never an output folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from adlab.errors import AdlabError

MARKER = ".adlab.json"
# markers of earlier adlab versions, still recognised: file name -> kind
LEGACY_MARKERS = {".adlab-output.json": "data", "demo.json": "demo"}
ARTICLE = {
    "run": "a run",
    "fused-run": "a fused run",
    "study": "a study",
    "search": "a search",
    "evaluation": "an evaluation",
    "demo": "a demo",
    "data": "a data-tool output",
}


def read_marker(folder: Path) -> dict | None:
    """The marker's record ({"kind": ..., ...}), or None where the folder has no readable marker."""
    folder = Path(folder)
    for name, kind in ((MARKER, None), *LEGACY_MARKERS.items()):
        path = folder / name
        if not path.is_file() or path.is_symlink():
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        if kind is not None:
            return {"kind": kind, "legacy": True}
        return record if isinstance(record.get("kind"), str) else None
    return None


def marker_kind(folder: Path) -> str | None:
    record = read_marker(folder)
    return record["kind"] if record else None


def write_marker(folder: Path, kind: str, **record) -> None:
    from adlab import __version__, io

    io.write_json(Path(folder) / MARKER, {"kind": kind, "adlab": __version__, **record})


def canonical(folder: str | Path) -> Path:
    """The folder that writing to `folder` will really reach, decided before anything is made.

    `missing/../userdir` does not resolve while `missing` is absent, yet once `mkdir -p` has made it
    the same path reaches `userdir`: judged as written, a user's folder would pass as new. realpath
    follows the symlinks of the parts that exist and takes `..` after a missing part as `mkdir -p`
    will make it. A relative path stays relative to the working directory when it lands inside it,
    so messages name the folder as the user would."""
    given = os.path.expanduser(os.fspath(folder))
    real = Path(os.path.realpath(given))
    cwd = Path(os.path.realpath(os.getcwd()))
    if os.path.isabs(given) or real == cwd or cwd not in real.parents:
        return real
    return real.relative_to(cwd)


def refuse_protected(folder: Path) -> None:
    """The working directory, its parents and the home folder are never output folders."""
    resolved = Path(folder).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise AdlabError(f"{folder}: is the working directory or one of its parents; give an output folder of its own")
    if resolved == Path.home().resolve():
        raise AdlabError(f"{folder}: is the home folder; give an output folder of its own")


def _holds(folder: Path, kind: str, legacy_files: tuple[str, ...] = ()) -> bool:
    """Whether `folder` already holds adlab's output of this kind (False: absent or empty); an
    error naming the folder if it is not adlab's or holds another kind. Writes nothing."""
    if Path(folder).expanduser().is_symlink():
        raise AdlabError(f"{folder}: exists and is not a folder (a symbolic link)")
    refuse_protected(folder)  # resolves as canonical does; the message names the folder as given
    folder = canonical(folder)
    if folder.exists() and not folder.is_dir():
        raise AdlabError(f"{folder}: exists and is not a folder")
    if not folder.is_dir() or not any(folder.iterdir()):
        return False
    found = marker_kind(folder)
    if found is None and legacy_files and all((folder / f).exists() for f in legacy_files):
        return True  # made by an adlab version before the marker
    if found is None:
        raise AdlabError(
            f"{folder}: folder is not empty and was not made by adlab; refusing to write into it "
            "(choose another output folder)"
        )
    if found != kind:
        raise AdlabError(
            f"{folder}: holds {ARTICLE.get(found, found)}, not {ARTICLE.get(kind, kind)}; choose another output folder"
        )
    return True


def check_output(folder: Path, kind: str, overwrite: bool, flag: str = "--overwrite") -> bool:
    """Whether `folder` holds an earlier adlab output of this kind to be replaced (only with
    `overwrite`); an error naming the folder if it must not be touched. Writes nothing."""
    if not _holds(Path(folder), kind):
        return False
    if not overwrite:
        raise AdlabError(
            f"{folder}: {ARTICLE.get(kind, kind)} already exists here "
            f"(use {flag} to replace it, or choose another output folder)"
        )
    return True


def prepare_output(folder: Path, kind: str, overwrite: bool, flag: str = "--overwrite", **record) -> Path:
    """Create `folder` with its marker, replacing an earlier output of the same kind if allowed;
    returns the folder as `canonical` reaches it (write there, not through the path as given)."""
    replace = check_output(folder, kind, overwrite, flag)
    folder = canonical(folder)
    if replace:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_marker(folder, kind, **record)
    return folder


def adopt_or_create(folder: Path, kind: str, legacy_files: tuple[str, ...] = ()) -> bool:
    """A folder adlab keeps adding to (a study, a search): create it with its marker, or continue
    one with that marker (or an earlier adlab's, recognised by `legacy_files`). Returns whether
    the folder already held that kind. Never deletes anything."""
    existed = _holds(folder, kind, legacy_files)
    folder = canonical(folder)
    if not existed or marker_kind(folder) is None:
        folder.mkdir(parents=True, exist_ok=True)
        write_marker(folder, kind, **({"adopted": True} if existed else {}))
    return existed
