"""The study report: summary.csv, report.md, one self-contained report.html and report.tex.

The content is built once as blocks (adlab.study.report_content) and rendered by templates
(adlab.study.render), so the three documents always say the same thing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adlab import io
from adlab.errors import DataError
from adlab.rundir import read_history
from adlab.study.blocks import Block, Bullets, Figure, Gallery, Heading, Paragraph, Table  # noqa: F401 (the report's API)
from adlab.study.render import cell as _cell  # noqa: F401
from adlab.study.render import render_html, render_markdown, render_tex
from adlab.study.report_content import build_blocks, per_class_blocks, reference_blocks  # noqa: F401
from adlab.tasks import TASKS, get_task
from adlab.taskspec import DEFAULT_TASK, recorded_task


@dataclass
class RunResult:
    name: str
    group: str
    seed: int | None
    task: str
    path: Path
    metrics: dict
    test_set: str = ""  # the data the run was scored on (name, root, classes): runs compared must share it
    per_image: dict[str, np.ndarray] | None = None  # predictions.csv's columns, for paired tests


def planned_runs(study) -> list[tuple[str, str, int | None]]:
    """(folder name, variant, seed) of every run and fusion the study makes, in the study's order."""
    planned = [(r.name, r.group, r.seed) for r in study.runs]
    for step in study.spec.fusion:
        for seed in study.spec.seeds or [None]:
            planned.append((step.name + ("" if seed is None else f"-seed={seed}"), step.name, seed))
    return planned


def collect(out: Path, study) -> list[RunResult]:
    """Finished runs of the study, planned runs first, then fusions. Every run file is read as
    untrusted input (bounded, and checked where the report relies on its shape)."""
    results = []
    for name, group, seed in planned_runs(study):
        path = out / "runs" / name
        if not os.path.lexists(path / "metrics.json"):
            continue
        config = io.read_yaml_mapping(path / "config.yaml", "run config", DataError)
        task = recorded_task(config.get("task", DEFAULT_TASK))
        if not isinstance(task, str) or task not in TASKS:
            raise DataError(f"{path / 'config.yaml'}: unknown task {str(task)[:40]!r}")
        data = config.get("data")
        data = data if isinstance(data, dict) else {}
        test_set = f"{data.get('name')}|{data.get('root')}|{data.get('classes')}"
        metrics = io.read_json_mapping(path / "metrics.json", "metrics file")
        check_metrics(path / "metrics.json", metrics, get_task(task).report)
        results.append(RunResult(name, group, seed, task, path, metrics, test_set, read_predictions(path)))
    return results


def _is_number(value) -> bool:
    """A JSON number that is a float too (not a bool, not an integer past a float's range)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def check_metrics(path: Path, metrics: dict, spec) -> None:
    """The parts of a metrics.json the report reads have the shape adlab writes: its table columns
    numbers (or null: not measured), the per-class mapping names -> numbers, class_names text, the
    confusion matrix a square table of counts, one row per class. Else one DataError naming the key.
    (A NaN passes: the report says plainly which run has one, see report_content.not_a_number.)"""

    def bad(key: str, problem: str):
        return DataError(f"{path}: {key}: {problem} (damaged or edited?)")

    for key, _ in spec.columns:
        value = metrics.get(key)
        if value is not None and not _is_number(value):
            raise bad(key, f"expected a number, got {_kind(value)}")
    if spec.per_class and metrics.get(spec.per_class) is not None:
        mapping = metrics[spec.per_class]
        if not isinstance(mapping, dict):
            raise bad(spec.per_class, f"expected a mapping of class -> number, got {type(mapping).__name__}")
        for name, value in mapping.items():
            if value is not None and not _is_number(value):
                raise bad(f"{spec.per_class}.{str(name)[:40]}", f"expected a number, got {_kind(value)}")
    names = metrics.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise bad("class_names", "expected a list of class names (text)")
    matrix = metrics.get("confusion_matrix")
    if matrix is not None:
        size = len(matrix) if isinstance(matrix, list) else 0
        if not (size and all(isinstance(row, list) and len(row) == size for row in matrix)):
            raise bad("confusion_matrix", "expected a square table of counts (one row and column per class)")
        if not all(_is_number(v) and math.isfinite(v) and v >= 0 for row in matrix for v in row):
            raise bad("confusion_matrix", "expected counts (numbers of images, 0 or more)")
        if names is not None and len(names) != size:
            raise bad("confusion_matrix", f"{size} rows for {len(names)} class_names")


def _kind(value) -> str:
    return "a number too large" if isinstance(value, int) and not isinstance(value, bool) else type(value).__name__


def read_predictions(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The per-image columns of a run's predictions.csv (y_true, y_pred and measures such as mse;
    not the class probabilities), or None when the run wrote none."""
    path = run_dir / "predictions.csv"
    if not os.path.lexists(path):
        return None
    text = io.bounded_text(path, io.MAX_PREDICTIONS_BYTES, "predictions file")
    lines = text.splitlines()
    header = lines[0].strip().split(",") if lines else []
    if header[:3] != ["index", "y_true", "y_pred"]:
        raise DataError(f"{path}: malformed predictions (expected columns index, y_true, y_pred, ...)")
    if len(header) > io.MAX_CSV_COLUMNS:
        raise DataError(f"{path}: malformed predictions ({len(header):,} columns)")
    wanted = [i for i, name in enumerate(header) if i > 0 and not name.startswith("p_")]
    if len(lines) < 2:
        raise DataError(f"{path}: malformed predictions (a header and no rows)")
    try:
        data = np.loadtxt(lines[1:], delimiter=",", ndmin=2, usecols=wanted)
    except (ValueError, IndexError):
        raise DataError(f"{path}: malformed predictions (non-numeric values or rows of different lengths)") from None
    if not np.isfinite(data[:, :2]).all():
        raise DataError(f"{path}: malformed predictions (y_true and y_pred must be finite numbers)")
    return {header[i]: data[:, j] for j, i in enumerate(wanted)}


def write_report(out: Path, study, sections: list[tuple[str, list[str]]] | None = None) -> Path:
    """sections: (title, run names) to report separately; default one section with every run."""
    out = Path(out)
    results = collect(out, study)  # every run file is read (and checked) before the first report file is written
    for r in results:
        read_history(r.path / "history.csv")
        _check_figures(r.path / "figures", get_task(r.task).report.figures)
    finished = {r.name for r in results}
    missing = [name for name, _, _ in planned_runs(study) if name not in finished]
    blocks = build_blocks(out, study, results, sections, missing)
    documents = {
        "report.md": render_markdown(blocks),
        "report.html": render_html(blocks, study.name, out),
        "report.tex": render_tex(blocks, study.name, out),
    }  # all three made before one is written
    _write_summary_csv(out / "summary.csv", results)
    for name, text in documents.items():
        io.write_text(out / name, text)
    return out / "report.md"


MAX_FIGURE_BYTES = 64 * 2**20  # a run's PNG figure is 20-500 kB; report.html inlines each one


def _check_figures(folder: Path, names: list[str]) -> None:
    """The run figures the report shows (report.html inlines them): regular files of a sensible size."""
    for name in names:
        figure = folder / name
        if figure.is_file() and figure.stat().st_size > MAX_FIGURE_BYTES:
            raise DataError(
                f"{figure}: figure of {figure.stat().st_size:,} bytes is too large "
                f"(at most {MAX_FIGURE_BYTES:,}; damaged?)"
            )


def _write_summary_csv(path: Path, results: list[RunResult]) -> None:
    keys = []
    for r in results:
        for key, value in r.metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in keys:
                keys.append(key)
    rows = (
        [r.name, r.group, "" if r.seed is None else r.seed, r.task] + [r.metrics.get(k, "") for k in keys]
        for r in results
    )
    io.write_csv(path, ["run", "group", "seed", "task", *keys], rows)


def rerender(out: str | Path) -> Path:
    """`adlab report DIR`: the report again from a study folder's runs (e.g. after more finished)."""
    from adlab import ownership
    from adlab.errors import AdlabError
    from adlab.study.spec import load_study, recorded_overrides, section_runs

    out = ownership.canonical(out)
    kind = ownership.marker_kind(out)
    legacy = kind is None and (out / "runs").is_dir()  # a study folder of an adlab before the marker
    if out.is_symlink() or not (out / "study.yaml").is_file() or not (kind in ("study", "demo") or legacy):
        raise AdlabError(
            f"{out}: not a study folder adlab made (no study marker, or no study.yaml); "
            "refusing to write a report into it"
        )
    study = load_study(out / "study.yaml", check_configs=False, overrides=recorded_overrides(out))
    return write_report(out, study, sections=section_runs(study))
