"""Part of a study, or its quick version: `adlab study FILE --only NAME[,NAME]` and `--quick`.

`--only` keeps the runs named (a run's folder name, a variant with all its seeds, a fusion's members, or a
section's title; comma-separated, where a name's own commas are kept when it is a known name),
and the runs they start from (a run whose model.weights or data.root is `{out}/runs/<name>` needs that
run); fusions of kept runs stay, the sections and the published figures keep what is left.
`--quick` applies the study's `quick:` block: its `set` items (before the command's own --set, which
win), its `seeds`, and its `only`, when the command gives none.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from adlab.config import Seed
from adlab.errors import ConfigError

_RUN_PATH = re.compile(r"\{out\}/runs/([^/\"'\s]+)")


class Quick(BaseModel):
    """A study's quick version: the settings that reproduce its headline figures in minutes on a CPU."""

    model_config = ConfigDict(extra="forbid", strict=True)
    set: dict[str, Any] = {}  # dotted key -> value, as --set items applied to every run
    seeds: list[Seed] | None = None  # replaces the study's seeds
    only: list[str] | None = None  # the runs, variants or sections to run (default: all)
    note: str | None = None  # what the quick version leaves out, said in the report


def quick_items(quick: Quick | None, where: str) -> list[str]:
    """The quick block's `set` as --set items ("train.epochs=3")."""
    if quick is None:
        raise ConfigError(f"{where}: --quick: the study has no quick: block (its runs at full length only)")
    return [
        f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
        for key, value in quick.set.items()
    ]


def split_names(text: str, known: list[str]) -> list[str]:
    """`a,b` -> [a, b], where a name may hold commas itself (a grid run `conv_channels=16,32,32`): the longest
    known name at each place wins."""
    parts, names, i = text.split(","), [], 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            candidate = ",".join(parts[i:j]).strip()
            if candidate in known:
                names.append(candidate)
                i = j
                break
        else:
            names.append(parts[i].strip())  # unknown: selected() names it
            i += 1
    return [name for name in names if name]


def selected(runs: list, sections: dict[str, list[str]], fusions: list, only: list[str], where: str) -> set[str]:
    """The run folder names `only` asks for, with the runs they start from. `runs`: PlannedRun (name, group,
    config); `sections`: title -> variant or fusion names; `fusions`: steps with name and runs."""
    by_group: dict[str, list[str]] = {}
    for run in runs:
        by_group.setdefault(run.group, []).append(run.name)
    fused = {step.name: step.runs for step in fusions}
    known = [run.name for run in runs] + list(by_group) + list(fused) + list(sections)
    chosen: set[str] = set()
    for name in [name for text in only for name in split_names(text, known)]:
        if name in sections:
            groups = [g for member in sections[name] for g in fused.get(member, [member])]
        elif name in fused:
            groups = fused[name]
        elif name in by_group:
            groups = [name]
        elif any(run.name == name for run in runs):
            chosen.add(name)
            continue
        else:
            names = ", ".join(list(by_group) + list(sections))
            raise ConfigError(f"{where}: --only: no run, variant or section {name!r} (known: {names[:600]})")
        chosen.update(folder for group in groups for folder in by_group.get(group, []))
    # the runs a kept run starts from (a fine-tune's pretraining), and theirs
    config_of = {run.name: run.config for run in runs}
    overrides_of = {run.name: run.overrides for run in runs}
    todo = list(chosen)
    while todo:
        name = todo.pop()
        config = config_of.get(name)
        # its resolved config (a seed's own folder), or the settings as written where configs were not read
        text = config.model_dump_json() if config is not None else json.dumps(overrides_of.get(name, {}), default=str)
        for needed in _RUN_PATH.findall(text):
            for folder in by_group.get(needed, [needed] if needed in config_of else []):
                if folder not in chosen:
                    chosen.add(folder)
                    todo.append(folder)
    return chosen
