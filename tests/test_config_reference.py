"""The config reference: one source (the pydantic field descriptions), rendered for the terminal and
as docs/config.md, which must not drift from it."""

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from adlab.cli import main
from adlab.config import (
    MODEL_FAMILIES,
    AugmentConfig,
    Config,
    DataConfig,
    ModelConfig,
    SchedulerConfig,
    TrainConfig,
    load_config,
)
from adlab.config_reference import DOCS_PATH, REGENERATE, format_value, keys, render_markdown, render_text, sections

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = (AugmentConfig, DataConfig, ModelConfig, *MODEL_FAMILIES.values(), SchedulerConfig, TrainConfig, Config)


def _all_sections(model=Config, seen=None):
    """Every section class reachable from Config (so a new section is checked too)."""
    seen = [] if seen is None else seen
    if model not in seen:
        seen.append(model)
        for field in model.model_fields.values():
            for sub in _models_in(field.annotation):
                _all_sections(sub, seen)
    return seen


def _models_in(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _dotted(mapping, prefix=""):
    for name, value in mapping.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from _dotted(value, key + ".")
        else:
            yield key


def test_docs_config_md_is_the_rendered_reference():
    path = ROOT / DOCS_PATH
    assert path.is_file(), f"{DOCS_PATH} is missing; generate it with `{REGENERATE}`"
    assert path.read_text(encoding="utf-8") == render_markdown(), (
        f"{DOCS_PATH} differs from the descriptions in src/adlab/config.py; regenerate it with `{REGENERATE}`"
    )


def test_docs_config_md_says_it_is_generated():
    head = (ROOT / DOCS_PATH).read_text(encoding="utf-8").splitlines()[:4]
    assert any("adlab config --describe --markdown" in line and "do not edit by hand" in line for line in head)


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.__name__)
def test_every_field_has_a_short_description(section):
    for name, field in section.model_fields.items():
        text = (field.description or "").strip()
        assert text, f"{section.__name__}.{name} has no description"
        assert len(text) <= 300, f"{section.__name__}.{name}: keep descriptions to a line or two"
    assert (section.__doc__ or "").strip(), f"{section.__name__} has no docstring"


def test_every_reachable_section_is_checked():
    assert set(_all_sections()) == set(SECTIONS)


def test_reference_covers_every_key():
    listed = [key.key for key in keys()]
    assert len(listed) == len(set(listed))
    full = load_config(overrides=["train.scheduler=step"]).to_dict()  # a scheduler, so its keys are dumped too
    assert set(_dotted(full)) <= set(listed)
    names = set(listed) | {section.prefix for section in sections()}
    for section in _all_sections():
        for name in section.model_fields:
            assert any(key.endswith(f".{name}") or key == name for key in names), name


def test_text_reference_lists_each_key_with_its_default_and_meaning():
    lines = render_text().splitlines()
    for key in keys():
        head = f"{key.key}: {format_value(key, key.default)}"
        assert head in lines, head
        start = lines.index(head)
        following = " ".join(line.strip() for line in lines[start + 1 : start + 8])
        assert " ".join(key.description.split())[:40] in following, key.key
    assert "train.lr: 0.001" in lines
    index = lines.index("data.name: digits")
    choices = " ".join(line.strip() for line in lines[index + 1 : index + 3])  # wrapped at the reference's width
    assert choices.startswith(
        "digits | fashion_mnist | mnist | cifar10 | eurosat | folder | yolo | masks | kitti_semantic | oxford_pet"
    )
    assert lines[lines.index("data.val_fraction: 0.1") + 1].strip() == "float, 0.0 <= x < 1.0"
    assert "train.scheduler: null" in lines and "train.scheduler.name: required" in lines
    assert "data.augment: false" in lines and "data.augment.crop_padding: 2" in lines


def test_markdown_rows_carry_key_type_default_and_meaning():
    text = render_markdown()
    assert "| `train.lr` | float; `x > 0.0` | `0.001` |" in text
    assert (
        "| `data.name` | `digits`, `fashion_mnist`, `mnist`, `cifar10`, `eurosat`, `folder`, `yolo`, `masks`, "
        "`kitti_semantic` or `oxford_pet` | `digits` |"
    ) in text
    for key in keys():
        assert f"| `{key.key}` |" in text, key.key
    assert [s.prefix for s in sections()] == [
        "",
        "data",
        "data.augment",
        "model",
        "model.cnn",
        "model.autoencoder",
        "model.unet",
        "train",
        "train.scheduler",
    ]
    assert "| `model.autoencoder.latent_dim` | int; `x >= 1` | `10` |" in text


def test_defaults_in_the_reference_read_back_as_the_real_defaults():
    defaults = Config().to_dict()
    for key in keys():
        if key.section is not None or key.key.startswith("train.scheduler."):
            continue
        node = defaults
        for part in key.key.split("."):
            node = node[part]
        assert yaml.safe_load(format_value(key, key.default)) == node, key.key


def test_cli_describe_prints_the_reference(capsys):
    assert main(["config", "--describe"]) == 0
    assert capsys.readouterr().out == render_text()
    assert main(["config", "--describe", "--markdown"]) == 0
    assert capsys.readouterr().out == (ROOT / DOCS_PATH).read_text(encoding="utf-8")


def test_cli_describe_shows_resolved_values_beside_the_defaults(capsys):
    assert main(["config", "configs/digits_cnn.yaml", "--set", "train.lr=0.5", "--describe"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "train.lr: 0.5    # default: 0.001" in lines
    assert "train.scheduler: cosine    # default: null" in lines
    assert "train.seed: 0" in lines  # unchanged: no default comment
    assert main(["config", "--set", "data.augment.flip=true", "--describe", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| key | type | default | value | meaning |" in out
    assert "| `data.augment.flip` | bool | `false` | **`true`** |" in out


def test_cli_config_without_describe_still_prints_yaml(capsys):
    assert main(["config", "--set", "train.lr=0.5"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["lr"] == 0.5


def test_cli_markdown_needs_describe(capsys):
    assert main(["config", "--markdown"]) == 2
    assert "--describe" in capsys.readouterr().err


def test_cli_describe_reports_a_bad_config_in_one_line(capsys):
    assert main(["config", "--describe", "--set", "train.lr=-1"]) == 2
    assert "train.lr" in capsys.readouterr().err
