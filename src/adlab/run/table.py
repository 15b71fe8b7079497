"""A Markdown table of chosen metrics across finished runs (for READMEs and notes)."""

from __future__ import annotations

from pathlib import Path

from adlab.errors import AdlabError
from adlab.formatting import format_number
from adlab.io import read_json_mapping
from adlab.rundir import flat_metrics


def metrics_table(runs: list[str | Path], keys: list[str]) -> str:
    """`keys` are metrics.json keys; a per-class mapping (per_class_accuracy) stands for one column
    per class, or name one class as per_class_accuracy.Car. A key no run has is an error."""
    found = []
    for run in runs:
        path = Path(run) / "metrics.json"
        if not path.is_file():
            raise AdlabError(f"{path}: not found (unfinished run?)")
        found.append((Path(run).name, flat_metrics(read_json_mapping(path, "metrics file"))))
    known = list(dict.fromkeys(k for _, metrics in found for k in metrics))
    columns = []
    for key in keys:
        expanded = [k for k in known if k == key or k.startswith(key + ".")]
        if not expanded:
            raise AdlabError(f"--metrics: unknown metric {key!r} (these runs have: {', '.join(known)})")
        columns += [k for k in expanded if k not in columns]
    lines = ["| run | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, metrics in found:
        lines.append(f"| {name} | " + " | ".join(format_number(metrics.get(k), k) for k in columns) + " |")
    return "\n".join(lines)
