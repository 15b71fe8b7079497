"""The bad-input catalogue, round 2: every case a new user hit (issue 14), through the real CLI.

Each refused case: exit 2, one `adlab: error:` line naming the file or key, no traceback, and not
one file under the working folder created, changed or deleted (the `cli` fixture compares a
checksum listing before and after). Folder data sets and detection tools have their own
catalogues beside their tests (tests/data, tests/detection).
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
import torch

from adlab.errors import Interrupted
from checks import FAST


class MarkerOnLoad:
    """Unpickling this would create `path`: the code a weights_only load must never run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def config(cli_config):
    return cli_config  # tests/conftest.py


@pytest.fixture
def runs(cli_runs):
    return cli_runs  # two finished runs under the working folder (tests/conftest.py)


def study_file(cli, text: str) -> Path:
    path = cli.root / "s.yaml"
    path.write_text(
        "config:\n  data: {name: digits}\n  train: {epochs: 1, progress_bar: false}\n"
        "  model: {cnn: {conv_channels: [8], convs_per_block: 1, hidden: [16]}}\n" + text
    )
    return path


# --- files deleted or outputs mixed ---------------------------------------------------------------


def test_overwrite_refuses_a_folder_that_merely_holds_a_config_yaml(cli, config):
    (cli.root / "p").mkdir()
    (cli.root / "p" / "config.yaml").write_text("a: 1\n")
    (cli.root / "p" / "t.tex").write_text("x")
    line = cli.refused("train", config, "--out", "p", "--overwrite", *FAST, names=("p",))
    assert "not made by adlab" in line


@pytest.mark.parametrize("out", [".", "..", "../.."])
def test_the_working_folder_and_its_parents_are_never_an_output(cli, config, out):
    (cli.root / "config.yaml").write_text("a: 1\n")
    line = cli.refused("train", config, "--out", out, "--overwrite", *FAST)
    assert "working directory" in line


def test_overwrite_replaces_an_adlab_run_and_only_with_the_flag(cli, config):
    cli.succeeds("train", config, "--out", "r", "--quiet", *FAST, outputs=("r",))
    assert json.loads((cli.root / "r" / ".adlab.json").read_text())["kind"] == "run"
    line = cli.refused("train", config, "--out", "r", *FAST, names=("r", "--overwrite"))
    assert "already exists" in line
    cli.succeeds("train", config, "--out", "r", "--overwrite", "--quiet", *FAST, outputs=("r",))


def test_a_run_never_replaces_another_kind_of_adlab_folder(cli, config, runs):
    cli.succeeds("evaluate", runs[0], "--out", "ev", outputs=("ev",))
    line = cli.refused("train", config, "--out", "ev", "--overwrite", *FAST, names=("ev",))
    assert "holds an evaluation, not a run" in line


@pytest.mark.parametrize("name", ["/tmp/x/p", "../../../esc", "a/b", "<img src=x onerror=alert(1)>", "x" * 300])
def test_fusion_names_are_refused_not_rewritten(cli, name):
    path = study_file(
        cli,
        f"variants:\n  a: {{train.seed: 1}}\n  b: {{train.seed: 2}}\n"
        f"fusion:\n  - {{name: {json.dumps(name)}, runs: [a, b]}}\n",
    )
    cli.refused("study", path, "--out", "st", names=(str(path), "fusion.0.name"))


def test_fusion_named_like_a_run_is_refused(cli):
    path = study_file(
        cli, "variants:\n  a: {train.seed: 1}\n  b: {train.seed: 2}\nfusion:\n  - {name: a, runs: [a, b]}\n"
    )
    line = cli.refused("study", path, "--out", "st", names=(str(path), "fusion 'a'"))
    assert "already used by a run" in line


@pytest.mark.parametrize("name", ["../../x", "/abs/run", "x" * 300, "a\\b", ".hidden"])
def test_run_names_are_refused_not_rewritten(cli, config, name):
    cli.refused("train", config, "--set", f"name={name}", *FAST, names=("name:",))


def test_variant_and_study_names_are_checked(cli):
    path = study_file(cli, "variants:\n  ../up: {train.seed: 1}\n")
    cli.refused("study", path, names=(str(path), "variants"))
    path = study_file(cli, "name: ../../elsewhere\n")
    cli.refused("study", path, names=(str(path), "name"))


def test_evaluate_never_writes_into_another_run(cli, runs):
    a, b = runs
    line = cli.refused("evaluate", a, "--out", b, names=(str(b),))
    assert "holds a run, not an evaluation" in line


def test_evaluate_replaces_its_own_evaluation_only_when_asked(cli, runs):
    a, _ = runs
    cli.succeeds("evaluate", a, outputs=("run_a/evaluation",))
    assert (a / "evaluation" / "metrics.json").is_file()
    cli.refused("evaluate", a, names=("evaluation", "--overwrite"))
    cli.succeeds("evaluate", a, "--overwrite", outputs=("run_a/evaluation",))


def test_study_never_writes_into_a_folder_it_did_not_make(cli):
    (cli.root / "d").mkdir()
    (cli.root / "d" / "report.md").write_text("my report")
    (cli.root / "d" / "summary.csv").write_text("mine")
    path = study_file(cli, "variants:\n  a: {train.seed: 1}\n")
    cli.refused("study", path, "--out", "d", names=("d",))
    cli.refused("study", path, "--out", "d", "--resume", names=("d",))


def test_a_study_grid_bomb_is_refused_at_once(cli):
    levels = ["a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        levels.append(f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [" + ", ".join([f"*{prev}"] * 10) + "]")
    path = study_file(cli, "anchors:\n" + "\n".join("  " + line for line in levels) + "\ngrid:\n  train.lr: *i\n")
    line = cli.refused("study", path, names=(str(path),))
    assert "alias" in line
    assert len(line) < 400


def test_a_study_that_expands_to_too_many_runs_is_refused(cli):
    values = list(range(1, 101))
    path = study_file(cli, f"grid:\n  train.lr: {values}\n  train.epochs: {values}\nseeds: [0, 1]\n")
    line = cli.refused("study", path, names=(str(path), "20,000 runs"))
    assert len(line) < 300


# --- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.seed=-1", "train.seed"),
        ("train.seed=99999999999999", "train.seed"),
        ("data.split_seed=-1", "data.split_seed"),
        ("train.num_threads=1000000", "train.num_threads"),
        ("train.batch_size=100000000000", "train.batch_size"),
        ("train.lr=.inf", "train.lr"),
        ("train.lr=.nan", "train.lr"),
        ("train.epochs=true", "train.epochs"),
        ("train.epochs=2.5", "train.epochs"),
        ("model.cnn.dropout=.nan", "model.cnn.dropout"),
        ("data.augment.flip=1", "data.augment.flip"),
    ],
)
def test_values_are_strict_finite_and_in_range(cli, config, override, key):
    cli.refused("train", config, *FAST, "--set", override, "--out", "r", names=(key,))


def test_duplicate_yaml_keys_are_refused(cli):
    path = cli.root / "dup.yaml"
    path.write_text("train:\n  lr: 0.1\n  epochs: 1\n  lr: 0.01\n")
    line = cli.refused("train", path, *FAST, names=(str(path), "'lr' given twice", "line 4"))
    assert "first at line 2" in line


def test_duplicate_keys_in_a_study_file_are_refused(cli):
    path = study_file(cli, "seeds: [0]\nseeds: [1]\n")
    cli.refused("study", path, names=(str(path), "'seeds' given twice"))


# --- untrusted files ------------------------------------------------------------------------------


def test_weights_whose_state_dict_is_not_a_mapping(cli, config):
    torch.save({"state_dict": [1]}, cli.root / "w.ckpt")
    cli.refused("train", config, *FAST, "--set", "model.weights=w.ckpt", names=("w.ckpt", "state_dict"))


def test_evaluate_with_damaged_adlab_metadata(cli, runs):
    a, _ = runs
    ckpt = torch.load(a / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["adlab"]["data"] = {"bogus": 1}
    torch.save(ckpt, cli.root / "bogus.ckpt")
    cli.refused("evaluate", "bogus.ckpt", "--out", "ev", names=("bogus.ckpt", "adlab.data"))
    ckpt["adlab"]["data"] = dict(
        torch.load(a / "checkpoints" / "best.ckpt", weights_only=True)["adlab"]["data"], native_size=[8]
    )
    torch.save(ckpt, cli.root / "bogus2.ckpt")
    cli.refused("evaluate", "bogus2.ckpt", "--out", "ev", names=("bogus2.ckpt",))


def test_predict_with_a_raw_pickle_is_one_line(cli, runs):
    import pickle

    (cli.root / "raw.ckpt").write_bytes(pickle.dumps({"a": MarkerOnLoad(cli.root / "pwned")}))
    (cli.root / "img.png").write_bytes(b"")
    cli.refused("predict", "raw.ckpt", "img.png", names=("raw.ckpt",))
    assert not (cli.root / "pwned").exists()


def interrupted_copy(cli, runs) -> Path:
    """A run that looks interrupted after its last epoch: metrics.json gone, last.ckpt kept."""
    a, _ = runs
    (a / "metrics.json").unlink()
    return a


def test_resume_refuses_a_crafted_last_checkpoint_without_running_it(cli, runs):
    run = interrupted_copy(cli, runs)
    marker = cli.root / "pwned"
    torch.save({"state_dict": {}, "payload": MarkerOnLoad(marker)}, run / "checkpoints" / "last.ckpt")
    line = cli.refused("train", "--resume", run, names=("last.ckpt", "refused"))
    assert "weights_only=False" not in line and "will likely succeed" not in line
    assert not marker.exists()


def test_resume_refuses_a_truncated_last_checkpoint(cli, runs):
    run = interrupted_copy(cli, runs)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:3000])
    cli.refused("train", "--resume", run, names=("last.ckpt", "damaged"))


def test_resume_refuses_an_edited_config_naming_the_keys(cli, runs):
    run = interrupted_copy(cli, runs)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("lr: 0.003", "lr: 0.01"))
    cli.refused("train", "--resume", run, names=("config.yaml", "train.lr: 0.003 -> 0.01"))


def test_resume_refuses_a_folder_adlab_did_not_make(cli, config):
    (cli.root / "mine").mkdir()
    (cli.root / "mine" / "config.yaml").write_text("data: {name: digits}\n")
    cli.refused("train", "--resume", "mine", names=("mine", "not an adlab run"))


@pytest.mark.parametrize("damage", ["truncate", "list", "missing_classes"])
def test_damaged_metrics_json_in_table_fuse_and_report(cli, runs, damage):
    a, b = runs
    path = a / "metrics.json"
    if damage == "truncate":
        path.write_text(path.read_text()[:40])
    elif damage == "list":
        path.write_text("[1, 2]")
    else:
        metrics = json.loads(path.read_text())
        metrics["class_names"] = ["only one"]
        path.write_text(json.dumps(metrics))
    if damage != "missing_classes":
        cli.refused("table", a, b, names=("metrics.json",))
    cli.refused("fuse", a, b, "--out", "fused", names=("metrics.json",))


def test_non_numeric_predictions_in_fuse(cli, runs):
    a, b = runs
    lines = (a / "predictions.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",", ",x", 1)
    (a / "predictions.csv").write_text("\n".join(lines) + "\n")
    cli.refused("fuse", a, b, "--out", "fused", names=("predictions.csv",))


def test_damaged_run_files_in_report(cli):
    path = study_file(cli, "variants:\n  a: {train.seed: 1}\n  b: {train.seed: 2}\n")
    cli.succeeds("study", path, "--out", "st", outputs=("st",))
    (cli.root / "st" / "runs" / "a" / "metrics.json").write_text('{"accuracy": 0.9')
    cli.refused("report", "st", names=("metrics.json", "not valid JSON"))
    (cli.root / "st" / "runs" / "a" / "metrics.json").write_text("{}")
    csv = cli.root / "st" / "runs" / "b" / "predictions.csv"
    csv.write_text(csv.read_text().replace("\n1,", "\n1,abc", 1))
    cli.refused("report", "st", names=("predictions.csv",))


def test_report_markdown_links_are_escaped():
    from adlab.study.report import Figure, render_markdown

    text = render_markdown([Figure(Path("runs/<img src=x onerror=alert(1)>/figures/c m.png"), "<b>cap</b>")])
    assert re.search(r"(?<!\\)<[a-z/]", text) is None  # every tag-like '<' is escaped (GitHub shows it as text)
    assert "%3Cimg%20src%3Dx" in text or "%3Cimg%20src=x" in text
    assert "c%20m.png" in text


# --- the environment ------------------------------------------------------------------------------


@pytest.mark.parametrize("code, words", [(errno.EROFS, "Read-only file system"), (errno.ENOSPC, "No space left")])
def test_read_only_or_full_disk_is_one_line(cli, config, monkeypatch, code, words):
    import os

    import adlab.ownership

    def refuse(folder, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(folder))

    monkeypatch.setattr(adlab.ownership, "prepare_output", refuse)
    line = cli.refused("train", config, *FAST, "--out", "r", names=(words, "r"))
    assert "--out" in line


def test_a_closed_pipe_ends_quietly(cli, monkeypatch, capsys):
    import sys

    from adlab.cli import main

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["config"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_an_interrupted_study_advises_the_study_command(cli, monkeypatch):
    import adlab.study.runs

    def stopped(*args, **kwargs):
        raise Interrupted("SIGTERM after 1 of 3 epochs; continue with: adlab train --resume st/runs/a", 143)

    monkeypatch.setattr(adlab.study.runs, "train", stopped)  # the name a study's runs call
    path = study_file(cli, "variants:\n  a: {train.seed: 1}\n")
    code, _, err = cli.run("study", path, "--out", "st")
    assert code == 143
    assert err.strip().splitlines() == [
        f"adlab: SIGTERM after 1 of 3 epochs; continue the study with: adlab study {path} --out st --resume"
    ]
