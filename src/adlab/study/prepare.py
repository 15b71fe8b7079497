"""A study's data preparation steps: the `adlab data` tools, run once before the study's runs.

    prepare:
      - kitti-to-yolo: {images: kitti/training/image_2, labels: kitti/training/label_2,
                        out: "{out}/data/kitti", classes: [Car, Pedestrian, Cyclist]}
      - filter: {data: "{out}/data/kitti/data.yaml", keep: [Car], out: "{out}/data/cars"}

`{out}` is the study folder; other relative paths are relative to the study file. A step's output
records the step (STEP_FILE); a later run of the study (--resume, or another study) keeps an output
made by the very same step and refuses one made otherwise, so nothing is rebuilt or replaced unasked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adlab import io, ownership
from adlab.config import Seed
from adlab.errors import ConfigError, DataError

STEP_FILE = ".adlab-step.json"  # in a step's output: the step that made it


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    out: str = Field(description="the new data folder ({out}: the study folder)")

    def run(self, paths: Callable[[str], Path]) -> dict:
        """Make the step's output; a summary of what was made (each tool's own)."""
        raise NotImplementedError


class SynthScenes(_Step):
    images: int = Field(ge=1)
    classes: list[str] | None = None
    size: list[int] = Field([384, 128], min_length=2, max_length=2, description="width and height in pixels")
    seed: Seed = 0
    source: str = "auto"
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    objects: list[int] = Field(
        [1, 6], min_length=2, max_length=2, description="fewest and most objects tried per image"
    )
    masks: bool = Field(False, description="also write masks/ and classes.yaml (a data set for task segment)")

    def run(self, paths: Callable[[str], Path]) -> dict:
        from adlab.detection.synth import synth_scenes

        return synth_scenes(
            paths(self.out),
            self.images,
            classes=self.classes,
            size=(self.size[0], self.size[1]),  # exactly two: the field's min/max_length
            seed=self.seed,
            source=self.source,
            val_fraction=self.val_fraction,
            objects=(self.objects[0], self.objects[1]),
            masks=self.masks,
        )


class KittiToYolo(_Step):
    images: str
    labels: str
    classes: list[str]
    rename: dict[str, str] = {}
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    seed: Seed = 0
    skip_bad: bool = False

    def run(self, paths: Callable[[str], Path]) -> dict:
        from adlab.detection.kitti import kitti_to_yolo

        return kitti_to_yolo(
            paths(self.images),
            paths(self.labels),
            paths(self.out),
            self.classes,
            rename=self.rename or None,
            val_fraction=self.val_fraction,
            seed=self.seed,
            skip_bad=self.skip_bad,
        )


class Filter(_Step):
    data: str
    keep: list[str]
    drop_empty: bool = False

    def run(self, paths: Callable[[str], Path]) -> dict:
        from adlab.detection.tools import filter_classes

        return filter_classes(paths(self.data), self.keep, paths(self.out), drop_empty=self.drop_empty)


class Crops(_Step):
    data: str
    size: int = Field(128, ge=4)
    pad: float = Field(0.0, ge=0.0)
    min_size: int = Field(8, ge=1)
    skip_bad: bool = False

    def run(self, paths: Callable[[str], Path]) -> dict:
        from adlab.detection.tools import make_crops

        return make_crops(
            paths(self.data),
            paths(self.out),
            size=self.size,
            pad=self.pad,
            min_size=self.min_size,
            skip_bad=self.skip_bad,
        )


TOOLS: dict[str, type[_Step]] = {
    "synth-scenes": SynthScenes,
    "kitti-to-yolo": KittiToYolo,
    "filter": Filter,
    "crops": Crops,
}


def parse_steps(origin: Path, raw: Any) -> list[tuple[str, _Step]]:
    """`prepare:` validated: a list of {tool: arguments}; the first problem as one line."""
    if not isinstance(raw, list):
        raise ConfigError(f"{origin}: prepare: need a list of steps such as - synth-scenes: {{out: ..., images: 80}}")
    steps = []
    for index, item in enumerate(raw):
        where = f"{origin}: prepare[{index}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(
                f"{where}: need one tool and its arguments, e.g. filter: {{data: ..., keep: [Car], "
                f"out: ...}} (tools: {', '.join(TOOLS)})"
            )
        ((tool, arguments),) = item.items()
        if tool not in TOOLS:
            raise ConfigError(f"{where}: unknown tool {str(tool)[:40]!r} (tools: {', '.join(TOOLS)})")
        try:
            steps.append((tool, TOOLS[tool].model_validate(arguments if arguments is not None else {})))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "arguments"
            if err["type"] == "extra_forbidden":
                raise ConfigError(
                    f"{where}: {tool}: unknown key '{key}' (valid: {', '.join(TOOLS[tool].model_fields)})"
                ) from None
            raise ConfigError(f"{where}: {tool}.{key}: {err['msg'].removeprefix('Value error, ')}") from None
        _check_inside_study(where, tool, steps[-1][1].out)
    return steps


def _check_inside_study(where: str, tool: str, out: str) -> None:
    """A step's output under `{out}` stays in the study folder: `{out}/data/../../x` would be a
    folder outside it, perhaps the user's. Judged on the text, before any folder exists."""
    if "{out}" not in out:
        return
    if not out.startswith("{out}") or out.count("{out}") > 1:
        raise ConfigError(f"{where}: {tool}.out: {out[:80]!r}: {{out}} may only start the path")
    inside = os.path.normpath("/study" + out[len("{out}") :])
    if inside != "/study" and not inside.startswith("/study/"):
        raise ConfigError(f"{where}: {tool}.out: {out[:80]!r} leaves the study folder; keep '..' out of it")


def path_resolver(study_file: Path, out: Path) -> Callable[[str], Path]:
    """`{out}` is the study folder; any other relative path is relative to the study file."""

    def resolve(text: str) -> Path:
        if "{out}" in text:
            return ownership.canonical(text.replace("{out}", str(out)))
        path = Path(text).expanduser()
        return ownership.canonical(path if path.is_absolute() else study_file.parent / path)

    return resolve


def run_steps(steps: list[tuple[str, _Step]], study_file: Path, out: Path, say: Callable[..., None]) -> None:
    paths = path_resolver(study_file, out)
    for index, (tool, step) in enumerate(steps, start=1):
        target = paths(step.out)
        record = {"tool": tool, **step.model_dump(mode="json")}
        label = f"prepare [{index}/{len(steps)}] {tool} -> {target}"
        if _made_by(target, record):
            say(f"{label}: made earlier by this step, kept")
            continue
        summary = step.run(paths)
        io.write_json(target / STEP_FILE, record)
        say(f"{label}: {_short(summary)}")


def _made_by(target: Path, record: dict) -> bool:
    """Whether `target` holds the output of exactly this step; an error if it holds anything else."""
    if not target.exists():
        return False
    if ownership.marker_kind(target) != "data":
        return False  # the tool itself refuses a folder that is not its own, with its usual line
    try:
        earlier = json.loads((target / STEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if earlier == record:
        return True
    raise DataError(
        f"{target}: holds a data set made {'by another step' if earlier else 'outside this study'}; "
        "remove it or give this step another out"
    )


def _short(summary: dict) -> str:
    parts = []
    for key, value in summary.items():
        if isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
            parts.append(f"{key} {sum(value.values())}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key} {value}")
    return ", ".join(parts) or "done"
