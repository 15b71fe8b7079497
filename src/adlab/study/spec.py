"""Study files: a base config, a grid of axes over dotted keys, named regimes and variants, seeds,
and late-fusion steps, expanded into the list of runs to make.

    name: lr_study
    base: ../digits_cnn.yaml          # relative to this file (or `config:` inline, or both)
    grid:
      train.lr: [0.01, 0.001]
      train.scheduler: [null, step]
    regimes:                          # a named axis whose values set several keys together
      scratch:  {model.weights: null}
      finetune: {model.weights: runs/pre, model.freeze: false}
    variants:                         # extra named runs on the base config
      big_batch: {train.batch_size: 256}
    seeds: [0, 1, 2]
    fusion:
      - {name: fused, runs: [a, b], method: mean_prob}
    prepare:                          # data tools run once before the runs (adlab.study.prepare)
      - synth-scenes: {out: "{out}/data/scenes", images: 200}
    sections:                         # the report in parts: a title and its runs (and fusions)
      "Learning rate": [lr=0.01, lr=0.001]
    quick:                            # `--quick` (adlab.study.selection): minutes instead of hours
      set: {train.epochs: 2}
      seeds: [0]
      only: ["Learning rate"]

Paths in the study file (data.root, model.weights) are relative to it, those of the base config to
the base config, and `--set` values to the working directory; `{out}` is the study folder, and
`{out}/runs/X` in a study with seeds is X of the run's own seed.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from adlab.config import Config, Seed, load_config, parse_override, set_dotted, validate_config
from adlab.errors import ConfigError
from adlab.io import read_json_mapping, read_yaml_mapping
from adlab.names import generated_name, name_field
from adlab.paths import resolve_paths
from adlab.study.selection import Quick, quick_items, selected
from adlab.taskspec import fusing_task

MAX_RUNS = 10_000  # a study larger than this is a typo (or a YAML bomb), not a plan


def _check_keys(value: dict) -> dict:
    for key in value:  # each names a run folder
        name_field(key)
    return value


class FusionStep(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    runs: list[str]
    method: Literal[fusing_task().fusion_methods] = "mean_prob"  # type: ignore[valid-type]  # the registry's

    _safe_name = field_validator("name")(name_field)


class Reference(BaseModel):
    """Published figures to set beside the study's own (a course report, a paper)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    source: str  # where the figures come from, shown in the report
    scale: Literal["percent", "fraction"] = "percent"  # how the figures are written (metrics.json: fractions)
    runs: dict[str, dict[str, float]]  # run (variant or fusion) -> {metrics.json key: figure}
    note: str | None = None  # what differs in the setup, said under the table


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = None
    base: str | None = None
    config: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    regimes: dict[str, dict[str, Any]] = {}
    variants: dict[str, dict[str, Any]] = {}
    seeds: list[Seed] | None = None
    fusion: list[FusionStep] = []
    prepare: list[Any] = []  # checked by adlab.study.prepare.parse_steps
    sections: dict[str, list[str]] = {}
    reference: Reference | None = None
    quick: Quick | None = None  # adlab.study.selection: `adlab study FILE --quick`

    _safe_name = field_validator("name")(name_field)
    _safe_keys = field_validator("regimes", "variants")(_check_keys)


@dataclass
class PlannedRun:
    name: str  # folder name under runs/
    group: str  # the variant, the same across seeds
    seed: int | None
    overrides: dict[str, Any] = field(default_factory=dict)
    config: Config | None = None


@dataclass
class Study:
    path: Path
    spec: StudySpec
    runs: list[PlannedRun]
    prepare: list = field(default_factory=list)  # (tool, step) pairs, see adlab.study.prepare
    quick: bool = False  # run with its quick: block (--quick)
    only: list[str] | None = None  # run in part (--only)
    overrides: list[str] = field(default_factory=list)  # the --set items every run got, the quick block's first

    def settings_said(self) -> str:
        """How this study was run when not as its file says: '' or a sentence for the report's top."""
        quick = self.spec.quick
        parts = []
        if self.quick and quick is not None:
            what = ", ".join(quick_items(quick, str(self.path))) or "no other settings"
            seeds = f"; seeds {', '.join(map(str, quick.seeds))}" if quick.seeds else ""
            parts.append(f"as its quick version (--quick: {what}{seeds}{'; ' + quick.note if quick.note else ''})")
        if self.only:
            parts.append(f"in part (--only {', '.join(self.only)}, and the runs they start from)")
        own = self.overrides[len(quick_items(quick, "")) if self.quick and quick is not None else 0 :]
        if own:
            parts.append("with " + " ".join(f"--set {item}" for item in own))
        return f"This study was run {', '.join(parts)}." if parts else ""

    @property
    def name(self) -> str:
        return self.spec.name or self.path.stem


def read_spec_file(path: Path, model: type[BaseModel], kind: str):
    """A study or search file read and validated; the first problem as one line naming the key."""
    raw = read_yaml_mapping(path, kind)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{path}: unknown key '{key}' (valid: {', '.join(model.model_fields)})") from None
        raise ConfigError(f"{path}: {key}: {err['msg'].removeprefix('Value error, ')}") from None


def load_study(path: str | Path, check_configs: bool = True, overrides: list[str] | None = None) -> Study:
    """Parse and expand a study file; with `check_configs`, every run's config is validated too.
    overrides: `key=value` items (`adlab study --set`) applied to every run, after its own settings."""
    from adlab.study.prepare import parse_steps

    path = Path(path)
    spec = read_spec_file(path, StudySpec, "study file")
    steps = parse_steps(path, spec.prepare)
    options, overrides = study_options(overrides or [])
    quick, only = bool(options.get("quick")), options.get("only")
    if quick:
        overrides = quick_items(spec.quick, str(path)) + overrides  # the command's own --set items win
        assert spec.quick is not None  # quick_items refuses a study without one
        spec = spec.model_copy(update={"seeds": spec.quick.seeds or spec.seeds})
        only = only or spec.quick.only
    extra = [parse_override(item) for item in overrides]
    planned = (
        max(1, len(spec.regimes))
        * _product(len(v) for v in spec.grid.values())
        * (1 if spec.grid or spec.regimes else 0)
        + len(spec.variants)
        or 1
    ) * len(spec.seeds or [None])
    if planned > MAX_RUNS:
        raise ConfigError(f"{path}: the study expands to {planned:,} runs (at most {MAX_RUNS:,}); shorten the grid")
    runs = expand(spec)
    if check_configs:
        base = _base_config(path, spec)
        seeded = {run.group for run in runs if run.seed is not None}
        for run in runs:
            run.config = _validated(path, base, run, extra, seeded)
    _check_fusion(path, spec, runs)
    _check_sections(path, spec, runs)
    if only:
        keep = selected(runs, spec.sections, spec.fusion, only, str(path))
        runs = [run for run in runs if run.name in keep]
        spec = _keeping(spec, {run.group for run in runs})
    return Study(path, spec, runs, steps, quick, only, overrides)


SETTINGS = "study.json"  # in a study folder: the study file and the --set items the study was started with


def recorded_overrides(out: Path) -> list[str]:
    """The --set items (--quick and --only among them) a study folder's study was started with; [] for none."""
    path = Path(out) / SETTINGS
    if not path.is_file():
        return []
    items = read_json_mapping(path, "study settings").get("set") or []
    if not (isinstance(items, list) and all(isinstance(item, str) for item in items)):
        raise ConfigError(f"{path}: set: expected a list of --set items (damaged or edited?)")
    return items


def study_options(items: list[str]) -> tuple[dict[str, Any], list[str]]:
    """({quick: bool, only: [names]}, the other items): `--quick` and `--only a,b` travel as the --set items
    study.quick=true and study.only=[a, b], so workers, SLURM jobs and --resume get them as they get --set."""
    options: dict[str, Any] = {}
    rest = []
    for item in items:
        key, value = parse_override(item)
        if not key.startswith("study."):
            rest.append(item)
        elif key == "study.quick" and isinstance(value, bool):
            options["quick"] = value
        elif key == "study.only" and isinstance(value, (list, str)) and value:
            texts = [value] if isinstance(value, str) else value
            if not all(isinstance(text, str) and text.strip() for text in texts):
                raise ConfigError(f"--set {item}: study.only is a list of run, variant or section names")
            options["only"] = options.get("only", []) + texts
        else:
            raise ConfigError(f"--set {item}: study options are study.quick (true/false) and study.only (names)")
    return options, rest


def _keeping(spec: StudySpec, groups: set[str]) -> StudySpec:
    """The spec's fusions, sections and published figures of the kept variants only."""
    fusion = [step for step in spec.fusion if all(name in groups for name in step.runs)]
    kept = groups | {step.name for step in fusion}
    sections = {title: [n for n in names if n in kept] for title, names in spec.sections.items()}
    reference = spec.reference
    if reference is not None:
        runs = {name: figures for name, figures in reference.runs.items() if name in kept}
        reference = reference.model_copy(update={"runs": runs}) if runs else None
    return spec.model_copy(
        update={"fusion": fusion, "sections": {t: n for t, n in sections.items() if n}, "reference": reference}
    )


def _base_config(path: Path, spec: StudySpec) -> dict:
    raw: dict = {}
    if spec.base:
        base_path = (path.parent / spec.base) if not Path(spec.base).is_absolute() else Path(spec.base)
        if not base_path.is_file():
            raise ConfigError(f"{path}: base config {base_path} not found")
        # its keys as written, not as validated: an old flat model key (model.conv_channels) must
        # move to the family of each run's own model.name, which a variant may change (e3ec244 moved
        # it to the base's family once, and a cnn variant over an autoencoder base lost it)
        raw = resolve_paths(read_yaml_mapping(base_path), base_path.parent, str(base_path))
        validate_config(raw, str(base_path))  # a bad base is refused here, naming its file (raw unchanged)
    return merge_dicts(raw, spec.config)


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def merge_dicts(base: dict, extra: dict) -> dict:
    """`extra` laid over `base`, recursively for nested sections; each value is set as an override
    is (config.set_dotted), so an old-style key replaces its new spelling in the base and back."""
    out = copy.deepcopy(base)
    for key, value in _leaves(out, extra):
        set_dotted(out, key, value)
    return out


def _leaves(base: Any, extra: dict, prefix: str = ""):
    """(dotted key, value) of `extra`, descending into sections that `base` has too."""
    for key, value in extra.items():
        inner = base.get(key) if isinstance(base, dict) else None
        if isinstance(value, dict) and isinstance(inner, dict):
            yield from _leaves(inner, value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def expand(spec: StudySpec) -> list[PlannedRun]:
    """Every run of the study, in a stable order: regimes x grid, then variants, each x seeds."""
    # a grid point's name is made from its values (made safe by generated_name); a variant's is the
    # user's own, checked by names.name_field when the file is read and kept exactly as written
    points = [(generated_name(group), overrides) for group, overrides, _ in _grid_points(spec)]
    points += list(spec.variants.items())
    if not points:
        points = [("base", {})]
    runs = []
    for group, overrides in points:
        seeds: list[int | None] = list(spec.seeds) if spec.seeds else [None]
        for seed in seeds:
            name = group if seed is None else f"{group}-seed={seed}"
            extra = {} if seed is None else {"train.seed": seed}
            runs.append(PlannedRun(name, group, seed, {**overrides, **extra}))
    names = [r.name for r in runs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"study: run names collide ({', '.join(duplicates)}); rename a variant")
    return runs


def _grid_points(spec: StudySpec) -> list[tuple[str, dict, dict[str, str]]]:
    """(variant name, its overrides, its value on each axis) for regimes x grid."""
    keys = list(spec.grid)
    short = _short_names(keys)
    points = []
    regimes: list[tuple[str | None, dict]] = list(spec.regimes.items()) or [(None, {})]
    if spec.grid or spec.regimes:
        for (regime, regime_overrides), values in itertools.product(regimes, itertools.product(*spec.grid.values())):
            grid = {short[k]: _text(v) for k, v in zip(keys, values, strict=True)}
            name = "-".join(([regime] if regime else []) + [f"{axis}={text}" for axis, text in grid.items()])
            axes = ({"regime": regime} if regime else {}) | grid
            points.append((name, {**regime_overrides, **dict(zip(keys, values, strict=True))}, axes))
    return points


def grid_axes(spec: StudySpec) -> dict[str, dict[str, str]]:
    """Each grid variant (as its runs' group name) -> its value on each axis of the study, for pivots."""
    return {generated_name(group): axes for group, _, axes in _grid_points(spec)}


def _short_names(keys: list[str]) -> dict[str, str]:
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return str(value["name"]) if "name" in value else ",".join(f"{k}{_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _validated(
    path: Path,
    base: dict,
    run: PlannedRun,
    extra: list[tuple[str, Any]],
    seeded: frozenset[str] | set[str] = frozenset(),
) -> Config:
    raw = copy.deepcopy(base)
    try:
        for key, value in run.overrides.items():
            set_dotted(raw, key, value)
        _same_seed(raw, run, seeded)
        resolve_paths(raw, path.parent, str(path))
        for key, value in extra:
            set_dotted(raw, key, value)
        resolve_paths(raw, Path.cwd(), "--set")
        return load_config(raw)
    except ConfigError as exc:
        message = str(exc).removeprefix("config: ")
        raise ConfigError(f"{path}: run '{run.name}': {message}") from None


_STUDY_RUN = re.compile(r"\{out\}/runs/([^/]+)(.*)")


def _same_seed(raw: dict, run: PlannedRun, seeded: frozenset[str] | set[str]) -> None:
    """In a study with seeds, `{out}/runs/pre` (a run starting from another's weights or data) means that run's
    folder of the same seed: fine-seed=1 starts from pre-seed=1."""
    if run.seed is None:
        return
    for section, key in (("model", "weights"), ("data", "root")):
        value = (raw.get(section) or {}).get(key) if isinstance(raw.get(section), dict) else None
        match = _STUDY_RUN.fullmatch(value) if isinstance(value, str) else None
        if match and match.group(1) in seeded:
            raw[section][key] = f"{{out}}/runs/{match.group(1)}-seed={run.seed}{match.group(2)}"


def _check_fusion(path: Path, spec: StudySpec, runs: list[PlannedRun]) -> None:
    groups = {r.group for r in runs}
    names = [step.name for step in spec.fusion]
    for step in spec.fusion:
        if step.name in groups or names.count(step.name) > 1:
            raise ConfigError(
                f"{path}: fusion '{step.name}': the name is already used by "
                f"{'a run' if step.name in groups else 'another fusion'}; give it its own name"
            )
        missing = [name for name in step.runs if name not in groups]
        if missing:
            raise ConfigError(
                f"{path}: fusion '{step.name}': unknown run {missing[0]!r} (runs: {', '.join(sorted(groups))})"
            )
        if len(step.runs) < 2:
            raise ConfigError(f"{path}: fusion '{step.name}' needs at least two runs")


def _check_sections(path: Path, spec: StudySpec, runs: list[PlannedRun]) -> None:
    known = list(dict.fromkeys([r.group for r in runs] + [step.name for step in spec.fusion]))
    named = [(f"sections.{title}", names) for title, names in spec.sections.items()]
    if spec.reference:
        named.append(("reference.runs", list(spec.reference.runs)))
    for key, names in named:
        missing = [name for name in names if name not in known]
        if missing:
            raise ConfigError(f"{path}: {key}: unknown run {missing[0]!r} (runs: {', '.join(known)})")


def section_runs(study: Study) -> list[tuple[str, list[str]]] | None:
    """The report's sections as (title, run folder names), seeds and fusions included; None: one section."""
    if not study.spec.sections:
        return None
    seeds: list[int | None] = list(study.spec.seeds) if study.spec.seeds else [None]
    folder = {r.group: [x.name for x in study.runs if x.group == r.group] for r in study.runs}
    for step in study.spec.fusion:
        folder[step.name] = [step.name + ("" if s is None else f"-seed={s}") for s in seeds]
    return [(title, [f for name in names for f in folder[name]]) for title, names in study.spec.sections.items()]
