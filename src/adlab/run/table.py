"""A Markdown table of chosen metrics across finished runs (for READMEs and notes)."""

from __future__ import annotations

from pathlib import Path

from adlab.errors import AdlabError
from adlab.formatting import format_number
from adlab.io import read_json_mapping


def metrics_table(runs: list[str | Path], keys: list[str]) -> str:
    lines = ["| run | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for run in runs:
        path = Path(run) / "metrics.json"
        if not path.is_file():
            raise AdlabError(f"{path}: not found (unfinished run?)")
        metrics = read_json_mapping(path, "metrics file")
        cells = [format_number(metrics.get(k), k) for k in keys]
        lines.append(f"| {Path(run).name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

