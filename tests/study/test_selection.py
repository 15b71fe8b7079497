"""adlab study --only and --quick: part of a study, or its quick version, said in the report; a run that starts
from another gets it (of the same seed); workers and --resume carry the choice as they carry --set."""

import json

import pytest

from adlab.errors import ConfigError
from adlab.study.selection import split_names
from adlab.study.spec import load_study, study_options

STUDY = """name: s
config: {data: {name: digits}, train: {epochs: 1, batch_size: 64, progress_bar: false, num_threads: 1}}
variants:
  pre: {data.classes: [0, 1, 2, 3, 4]}
  fine: {data.classes: [5, 6, 7, 8, 9], model.weights: "{out}/runs/pre"}
  other: {train.lr: 0.01}
  "conv_channels=8,16": {model.cnn.conv_channels: [8, 16]}
fusion:
  - {name: both, runs: [other, "conv_channels=8,16"]}
sections:
  Transfer: [pre, fine]
  Other: [other, "conv_channels=8,16", both]
reference:
  source: a course report
  runs: {fine: {accuracy: 95.0}, other: {accuracy: 90.0}}
quick:
  set: {train.epochs: 1, train.batch_size: 32}
  seeds: [0, 1]
  only: [Transfer]
  note: one epoch instead of twenty
"""


@pytest.fixture
def study_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    return path


def names(study):
    return [run.name for run in study.runs]


def test_only_a_run_brings_the_run_it_starts_from(study_file):
    study = load_study(study_file, overrides=['study.only="fine"'])
    assert names(study) == ["pre", "fine"]
    assert study.spec.fusion == [] and study.spec.sections == {"Transfer": ["pre", "fine"]}
    assert list(study.spec.reference.runs) == ["fine"]  # the published figures of what is left


def test_only_takes_names_with_commas_sections_and_fusions(study_file):
    assert names(load_study(study_file, overrides=['study.only="other,conv_channels=8,16"'])) == [
        "other",
        "conv_channels=8,16",
    ]
    assert names(load_study(study_file, overrides=['study.only="both"'])) == ["other", "conv_channels=8,16"]
    study = load_study(study_file, overrides=['study.only="Other"'])
    assert names(study) == ["other", "conv_channels=8,16"] and [f.name for f in study.spec.fusion] == ["both"]
    assert split_names("a,b,c=1,2", ["a", "b", "c=1,2"]) == ["a", "b", "c=1,2"]


def test_an_unknown_name_or_study_option_is_one_line(study_file):
    with pytest.raises(ConfigError, match="--only: no run, variant or section 'nope' \\(known: pre, fine"):
        load_study(study_file, overrides=['study.only="nope"'])
    with pytest.raises(ConfigError, match="study options are study.quick"):
        study_options(["study.fast=true"])
    bare = study_file.with_name("bare.yaml")
    bare.write_text("config: {data: {name: digits}}\n")
    with pytest.raises(ConfigError, match="--quick: the study has no quick: block"):
        load_study(bare, overrides=["study.quick=true"])


def test_quick_applies_its_settings_seeds_and_runs_and_the_commands_set_wins(study_file):
    study = load_study(study_file, overrides=["study.quick=true", "train.batch_size=16"])
    assert names(study) == ["pre-seed=0", "pre-seed=1", "fine-seed=0", "fine-seed=1"]
    fine1 = next(run for run in study.runs if run.name == "fine-seed=1")
    assert fine1.config.train.batch_size == 16 and fine1.config.train.epochs == 1
    assert fine1.config.model.weights == "{out}/runs/pre-seed=1"  # the pretraining of the same seed
    said = study.settings_said()
    assert said == (
        "This study was run as its quick version (--quick: train.epochs=1, train.batch_size=32; seeds "
        "0, 1; one epoch instead of twenty), in part (--only Transfer, and the runs they start from), "
        "with --set train.batch_size=16."
    )


def test_a_quick_study_says_so_at_the_top_and_beside_the_published_figures(study_file, tmp_path, cli):
    out = tmp_path / "out"
    cli.succeeds("study", str(study_file), "--out", str(out), "--quick", "--only", "fine", outputs=())
    report = (out / "report.md").read_text()
    top = report.split("## ")[0]
    assert "This study was run as its quick version (--quick: train.epochs=1" in top
    assert "in part (--only fine, and the runs they start from)" in top  # the quick block's own only gave way
    reference = report.split("## Against the published figures")[1]
    assert "The published figures come from the full setup" in reference
    assert "\\`" not in report and "finished runs in" in report  # escaped once; 4 runs, a plural
    assert json.loads((out / "study.json").read_text())["set"] == ["study.quick=true", 'study.only="fine"']
    # the report again, and the status, read the choice from the study folder
    (out / "report.md").unlink()
    cli.succeeds("report", str(out), outputs=())
    again = (out / "report.md").read_text()
    assert again.replace("study file study.yaml", "study file s.yaml") == report  # the copy in the study folder
    status = cli.succeeds("study", str(study_file), "--out", str(out), "--status")
    assert "4 of 4 runs done" in status
    # resuming needs the same choice: it made these runs
    message = cli.refused("study", str(study_file), "--out", str(out), "--resume")
    assert "--set" in message
