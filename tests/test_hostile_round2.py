"""Hostile round two (issue 28), the lead's share: output paths that land outside where they seem to,
report into a user folder, a network too large for memory. Each refused case: exit 2, one line,
nothing under the working folder changed (the `cli` fixture compares listings before and after).
The other shares: tests/study/test_queue_hostile.py, tests/study/test_report_hostile.py,
tests/test_hostile_inputs.py, tests/test_ownership.py."""

from __future__ import annotations

import pytest

from adlab import ownership

FAST = ["--set", "train.epochs=1", "--set", "train.progress_bar=false", "--set", "train.batch_size=64",
        "--set", "model.cnn.conv_channels=[8]", "--set", "model.cnn.convs_per_block=1",
        "--set", "model.cnn.hidden=[16]"]


@pytest.fixture
def user_folder(cli):
    folder = cli.root / "userdir"
    folder.mkdir()
    (folder / "thesis.txt").write_text("three years of work\n")
    return folder


@pytest.fixture
def config(cli):
    path = cli.root / "c.yaml"
    path.write_text("data:\n  name: digits\ntrain:\n  epochs: 1\n  progress_bar: false\n")
    return path


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
    study.write_text("config:\n  data: {name: digits}\nprepare:\n"
                     "  - synth-scenes: {out: '{out}/data/../../userdir', images: 4}\nvariants:\n  a: {}\n")
    line = cli.refused("study", study, "--out", "st", names=("s.yaml", "prepare[0]", "leaves the study folder"))
    assert "{out}/data/../../userdir" in line


def test_out_may_only_start_a_prepare_path(cli):
    study = cli.root / "s.yaml"
    study.write_text("config:\n  data: {name: digits}\nprepare:\n"
                     "  - synth-scenes: {out: 'x/{out}', images: 4}\nvariants:\n  a: {}\n")
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
    line = cli.refused("train", config, "--out", "big", *FAST,
                       "--set", "model.cnn.conv_channels=[100000,100000]", "--set", "model.cnn.convs_per_block=1",
                       names=("c.yaml", "out of memory", "GiB"))
    assert "batch_size" in line


def test_an_image_size_no_machine_holds_is_refused_by_the_schema(cli, config):
    cli.refused("train", config, "--out", "big", *FAST, "--set", "data.image_size=100000",
                names=("c.yaml", "data.image_size", "4096"))
