"""Hostile round two (issue 28), the lead's share: output paths that land outside where they seem to,
report into a user folder, a network too large for memory. Each refused case: exit 2, one line,
nothing under the working folder changed (the `cli` fixture compares listings before and after).
The other shares: tests/study/test_queue_hostile.py, tests/study/test_report_hostile.py,
tests/test_hostile_inputs.py, tests/test_ownership.py."""

from __future__ import annotations

import shutil

import pytest

from adlab import ownership
from checks import FAST


@pytest.fixture
def user_folder(cli):
    folder = cli.root / "userdir"
    folder.mkdir()
    (folder / "thesis.txt").write_text("three years of work\n")
    return folder


@pytest.fixture
def config(cli_config):
    return cli_config  # tests/conftest.py


def test_canonical_takes_dotdot_after_a_missing_folder_as_mkdir_p_will(cli, user_folder):
    assert ownership.canonical("missing/../userdir") == ownership.canonical("userdir")
    assert str(ownership.canonical("missing/../userdir")) == "userdir"
    assert ownership.canonical(cli.root / "a" / ".." / "b") == cli.root.resolve() / "b"  # absolute stays absolute


def test_canonical_follows_an_existing_symlink_before_dotdot(cli, user_folder):
    (cli.root / "deep" / "er").mkdir(parents=True)
    (cli.root / "link").symlink_to(cli.root / "deep" / "er")
    # the kernel takes link/.. as deep/, not as the working folder: so must the ownership decision
    assert ownership.canonical("link/../x") == ownership.canonical("deep/x")


def test_a_prepare_step_may_not_leave_the_study_folder(cli, user_folder):
    study = cli.root / "s.yaml"
    study.write_text(
        "config:\n  data: {name: digits}\nprepare:\n"
        "  - synth-scenes: {out: '{out}/data/../../userdir', images: 4}\nvariants:\n  a: {}\n"
    )
    line = cli.refused("study", study, "--out", "st", names=("s.yaml", "prepare[0]", "leaves the study folder"))
    assert "{out}/data/../../userdir" in line


def test_out_may_only_start_a_prepare_path(cli):
    study = cli.root / "s.yaml"
    study.write_text(
        "config:\n  data: {name: digits}\nprepare:\n  - synth-scenes: {out: 'x/{out}', images: 4}\nvariants:\n  a: {}\n"
    )
    cli.refused("study", study, "--out", "st", names=("s.yaml", "may only start the path"))


def test_report_refuses_a_user_folder_that_merely_holds_a_study_yaml(cli, user_folder):
    (user_folder / "study.yaml").write_text("variants:\n  a: {}\n")
    (user_folder / "report.md").write_text("my own report\n")
    cli.refused("report", "userdir", names=("userdir", "not a study folder adlab made"))


def test_report_refuses_missing_dotdot_into_a_user_folder(cli, user_folder):
    (user_folder / "study.yaml").write_text("variants:\n  a: {}\n")
    cli.refused("report", "missing/../userdir", names=("userdir",))
    assert not (cli.root / "missing").exists()


def test_generate_never_replaces_a_user_file_through_a_missing_folder(cli, user_folder, digits_run):
    (user_folder / "figure.png").write_bytes(b"\x89PNG user figure")
    line = cli.refused("generate", digits_run.path, "--out", "missing/../userdir/figure.png", "--overwrite")
    assert line.startswith("adlab: error: ")
    assert not (cli.root / "missing").exists()


def test_train_through_a_missing_folder_into_a_new_one_lands_there_and_makes_nothing_else(cli, config):
    cli.succeeds("train", config, "--out", "missing/../newrun", "--quiet", *FAST, outputs=("newrun",))
    assert (cli.root / "newrun" / "metrics.json").is_file()
    assert not (cli.root / "missing").exists()


def test_a_network_too_large_for_memory_is_one_line(cli, config):
    line = cli.refused(
        "train",
        config,
        "--out",
        "big",
        *FAST,
        "--set",
        "model.cnn.conv_channels=[100000,100000]",
        "--set",
        "model.cnn.convs_per_block=1",
        names=("c.yaml", "out of memory", "GiB"),
    )
    assert "batch_size" in line


def test_an_image_size_no_machine_holds_is_refused_by_the_schema(cli, config):
    cli.refused(
        "train",
        config,
        "--out",
        "big",
        *FAST,
        "--set",
        "data.image_size=100000",
        names=("c.yaml", "data.image_size", "4096"),
    )


# --- search ------------------------------------------------------------------------------------------


def test_a_search_objective_that_no_run_logs_is_refused_before_any_trial(cli):
    search = cli.root / "se.yaml"
    search.write_text(
        "name: s\nconfig:\n  data: {name: digits}\nobjective: {metric: no_such, direction: maximize}\n"
        "space:\n  train.lr: {low: 0.001, high: 0.01}\ntrials: 1\n"
    )
    line = cli.refused("search", search, "--out", "s", names=("se.yaml", "objective.metric", "'no_such'"))
    assert "val_accuracy" in line


def test_every_task_names_the_validation_columns_its_history_has():
    from adlab.tasks import TASKS, get_task
    from adlab.tasks.detect.train import HISTORY

    assert get_task("detect").val_columns == [c for c in HISTORY if c.startswith("val_") and c != "val_loss"]
    for name in TASKS:
        assert all(c.startswith("val_") for c in get_task(name).val_columns), name


def test_an_interrupted_search_names_the_search_command_that_continues_it(cli, monkeypatch):
    import adlab.run.train
    from adlab.errors import Interrupted

    def cut_short(*args, out, **kwargs):
        raise Interrupted(f"SIGTERM after 1 of 2 epochs; continue with: adlab train --resume {out}", 143)

    monkeypatch.setattr(adlab.run.train, "train", cut_short)
    search = cli.root / "se.yaml"
    search.write_text(
        "name: s\nconfig:\n  data: {name: digits}\nspace:\n  train.lr: {low: 0.001, high: 0.01}\n"
        "trials: 1\npruning: false\n"
    )
    code, out, err = cli.run("search", search, "--out", "s")
    assert code == 143
    assert err.splitlines() == [
        f"adlab: SIGTERM after 1 of 2 epochs; continue the search with: adlab search {search} --out s"
    ]


# --- names that matplotlib would read as mathtext -------------------------------------------------


def test_an_autoencoder_named_like_mathtext_draws_its_figures_as_written(cli, tmp_path):
    import adlab

    config = {
        "name": "f$^$",
        "task": "autoencode",
        "data": {"name": "digits"},
        "model": {"name": "ae", "autoencoder": {"latent_dim": 2, "conv_channels": [4]}},
        "train": {"epochs": 1, "progress_bar": False},
    }
    run = adlab.train(config, out=tmp_path / "ae", verbose=False)
    assert (run.path / "figures" / "loss_curves.png").stat().st_size > 0
    assert (run.path / "figures" / "latent_pca.png").stat().st_size > 0


def test_detection_figures_draw_class_and_file_names_as_written(tmp_path):
    import torch

    from adlab.tasks.detect.figures import predictions_over_truth
    from checks import grey_png

    grey_png(tmp_path / "a$^$.png", size=(32, 32))
    boxes = torch.tensor([[2.0, 2.0, 20.0, 20.0]])
    sample = (
        tmp_path / "a$^$.png",
        {"boxes": boxes, "scores": torch.tensor([0.9]), "labels": torch.tensor([0])},
        {"boxes": boxes, "labels": torch.tensor([0])},
    )
    predictions_over_truth([sample], ["c$^$"], tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


# --- a run's checkpoints ------------------------------------------------------------------------------


def test_evaluate_never_scores_another_checkpoint_in_place_of_a_damaged_scored_one(cli, digits_run):
    shutil.copytree(digits_run.path, cli.root / "run")
    best = cli.root / "run" / "checkpoints" / "best.ckpt"
    best.unlink()
    best.symlink_to("/dev/zero")
    cli.refused("evaluate", "run", "--out", "ev", names=("best.ckpt", "not a checkpoint file"))


def test_a_missing_scored_checkpoint_is_said_when_another_stands_in(cli, digits_run):
    shutil.copytree(digits_run.path, cli.root / "run")
    (cli.root / "run" / "checkpoints" / "best.ckpt").unlink()
    code, out, err = cli.run("evaluate", "run", "--out", "ev")
    assert code == 0, err
    assert "best.ckpt: missing; using run/checkpoints/last.ckpt" in err
    assert "last.ckpt" in (cli.root / "ev" / "evaluation.yaml").read_text()


def test_an_evaluation_records_the_sha256_of_the_checkpoint_it_scored(cli, digits_run):
    import hashlib

    import yaml

    shutil.copytree(digits_run.path, cli.root / "run")
    cli.succeeds("evaluate", "run", "--out", "ev", outputs=("ev",))
    record = yaml.safe_load((cli.root / "ev" / "evaluation.yaml").read_text())
    checkpoint = cli.root / "run" / "checkpoints" / "best.ckpt"
    assert record["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


@pytest.mark.parametrize("out_exists", [False, True])
def test_a_prepare_step_refused_on_its_input_leaves_no_study_folder(cli, out_exists):
    (cli.root / "bad.yaml").write_text("this: is not a YOLO data.yaml\n")
    if out_exists:
        (cli.root / "st").mkdir()  # an empty folder of the user's stays, empty
    study = cli.root / "s.yaml"
    study.write_text(
        "config:\n  data: {name: digits}\nprepare:\n"
        "  - filter: {data: bad.yaml, keep: [Car], out: '{out}/data/cars'}\nvariants:\n  a: {}\n"
    )
    cli.refused("study", study, "--out", "st", names=("bad.yaml",))
    assert (cli.root / "st").exists() == out_exists
    assert not out_exists or not any((cli.root / "st").iterdir())
