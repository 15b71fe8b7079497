"""A Markdown table of chosen metrics across finished runs (for READMEs and notes)."""

from __future__ import annotations

import os
from pathlib import Path

from adlab.errors import AdlabError
from adlab.formatting import format_number, md_escape
from adlab.io import read_json_mapping, read_yaml_mapping
from adlab.rundir import flat_metrics
from adlab.tasks import get_task
from adlab.taskspec import DEFAULT_TASK, TASKS, recorded_task


def default_metrics(runs: list[str | Path]) -> list[str]:
    """The table columns of the runs' tasks (each task's report columns, in the order the runs come): a
    classification, autoencoder, detection or segmentation run each gets its own task's numbers."""
    keys: list[str] = []
    for run in runs:
        path = Path(run) / "config.yaml"
        task = read_yaml_mapping(path, "run config", AdlabError).get("task") if os.path.lexists(path) else None
        task = recorded_task(task or DEFAULT_TASK)
        if task not in TASKS:
            raise AdlabError(f"{path}: task {task!r} is not one of adlab's ({', '.join(TASKS)})")
        keys += [key for key, _ in get_task(str(task)).report.columns if key not in keys]
    return keys


def metrics_table(runs: list[str | Path], keys: list[str] | None = None) -> str:
    """`keys` (default: default_metrics) are metrics.json keys; a per-class mapping (per_class_accuracy) stands
    for one column per class, or name one class as per_class_accuracy.Car. A key no run has is an error, and so is
    a key a run holds as something other than a number (a damaged metrics.json); NaN is shown as nan.
    Run and column names are escaped for Markdown."""
    chosen = bool(keys)  # asked for: each must exist; the defaults: those some run measured
    keys = keys or default_metrics(runs)
    found = []
    for run in runs:
        path = Path(run) / "metrics.json"
        if not os.path.lexists(path):
            raise AdlabError(f"{path}: not found (unfinished run?)")
        metrics = read_json_mapping(path, "metrics file")
        for key in keys:
            _check_value(path, key, metrics.get(key))
        found.append((Path(run).name, flat_metrics(metrics)))
    known = list(dict.fromkeys(k for _, metrics in found for k in metrics))
    columns = []
    for key in keys:
        expanded = [k for k in known if k == key or k.startswith(key + ".")]
        if not expanded and chosen:
            raise AdlabError(f"--metrics: unknown metric {key!r} (these runs have: {', '.join(known)[:400]})")
        columns += [k for k in expanded if k not in columns]
    lines = ["| run | " + " | ".join(md_escape(c) for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, metrics in found:
        lines.append(
            f"| {md_escape(name)} | " + " | ".join(md_escape(format_number(metrics.get(k), k)) for k in columns) + " |"
        )
    return "\n".join(lines)


def _check_value(path: Path, key: str, value) -> None:
    """A metric asked for is a number, null, or a mapping of names to numbers or null."""

    def number(v) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    if isinstance(value, dict):
        bad = next((name for name, inner in value.items() if not number(inner)), None)
        if bad is not None:
            raise AdlabError(
                f"{path}: {key}.{str(bad)[:40]}: expected a number, got "
                f"{type(value[bad]).__name__} (damaged or edited?)"
            )
    elif not number(value):
        raise AdlabError(f"{path}: {key}: expected a number, got {type(value).__name__} (damaged or edited?)")
