"""The study report: summary.csv, report.md, one self-contained report.html and report.tex.

The content is built once as blocks (adlab.study.report_content) and rendered by templates
(adlab.study.render), so the three documents always say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adlab import io
from adlab.errors import DataError
from adlab.rundir import read_history
from adlab.study.blocks import Block, Bullets, Figure, Gallery, Heading, Paragraph, Table  # noqa: F401 (the report's API)
from adlab.study.render import cell as _cell, render_html, render_markdown, render_tex  # noqa: F401
from adlab.study.report_content import build_blocks, per_class_blocks, reference_blocks  # noqa: F401
from adlab.tasks import TASKS


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
    """Finished runs of the study, planned runs first, then fusions."""
    results = []
    for name, group, seed in planned_runs(study):
        path = out / "runs" / name
        if not (path / "metrics.json").is_file():
            continue
        config = io.read_yaml_mapping(path / "config.yaml", "run config", DataError)
        task = "classify" if config.get("task") == "fuse" else config.get("task", "classify")  # a fused run
        if task not in TASKS:
            raise DataError(f"{path / 'config.yaml'}: unknown task {str(task)[:40]!r}")
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        test_set = f"{data.get('name')}|{data.get('root')}|{data.get('classes')}"
        results.append(RunResult(name, group, seed, task, path, io.read_json_mapping(path / "metrics.json",
                                                                                      "metrics file"), test_set,
                                 read_predictions(path)))
    return results


def read_predictions(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The per-image columns of a run's predictions.csv (y_true, y_pred and measures such as mse;
    not the class probabilities), or None when the run wrote none."""
    path = run_dir / "predictions.csv"
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().strip().split(",")
    except UnicodeDecodeError:
        raise DataError(f"{path}: malformed predictions (not a text file)") from None
    wanted = [i for i, name in enumerate(header) if i > 0 and not name.startswith("p_")]
    if header[:3] != ["index", "y_true", "y_pred"]:
        raise DataError(f"{path}: malformed predictions (expected columns index, y_true, y_pred, ...)")
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, usecols=wanted)
    except (ValueError, IndexError):
        raise DataError(f"{path}: malformed predictions (non-numeric values or rows of different lengths)") from None
    return {header[i]: data[:, j] for j, i in enumerate(wanted)}


def write_report(out: Path, study, sections: list[tuple[str, list[str]]] | None = None) -> Path:
    """sections: (title, run names) to report separately; default one section with every run."""
    out = Path(out)
    results = collect(out, study)  # every run file is read (and checked) before the first report file is written
    for r in results:
        read_history(r.path / "history.csv")
    finished = {r.name for r in results}
    missing = [name for name, _, _ in planned_runs(study) if name not in finished]
    _write_summary_csv(out / "summary.csv", results)
    blocks = build_blocks(out, study, results, sections, missing)
    io.write_text(out / "report.md", render_markdown(blocks))
    io.write_text(out / "report.html", render_html(blocks, study.name, out))
    io.write_text(out / "report.tex", render_tex(blocks, study.name, out))
    return out / "report.md"


def _write_summary_csv(path: Path, results: list[RunResult]) -> None:
    keys = []
    for r in results:
        for key, value in r.metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in keys:
                keys.append(key)
    rows = ([r.name, r.group, "" if r.seed is None else r.seed, r.task] + [r.metrics.get(k, "") for k in keys]
            for r in results)
    io.write_csv(path, ["run", "group", "seed", "task", *keys], rows)


def rerender(out: str | Path) -> Path:
    """`adlab report DIR`: the report again from a study folder's runs (e.g. after more finished)."""
    from adlab.errors import AdlabError
    from adlab.study.spec import load_study, section_runs

    from adlab import ownership

    out = ownership.canonical(out)
    kind = ownership.marker_kind(out)
    legacy = kind is None and (out / "runs").is_dir()  # a study folder of an adlab before the marker
    if out.is_symlink() or not (out / "study.yaml").is_file() or not (kind in ("study", "demo") or legacy):
        raise AdlabError(f"{out}: not a study folder adlab made (no study marker, or no study.yaml); "
                         "refusing to write a report into it")
    study = load_study(out / "study.yaml", check_configs=False)
    return write_report(out, study, sections=section_runs(study))
