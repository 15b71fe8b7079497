"""The bad-input catalogue: every mistake a user can make ends in exit code 2, one line on stderr
(`adlab: error: ...` naming the file or key), no traceback, and no file created, changed or
deleted (a checksum listing of the test's folder before and after). More cases, the ones users
hit: test_bad_input_catalogue.py, tests/data/test_bad_input_folder.py,
tests/detection/test_bad_input_detection.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from adlab.cli import EXIT_BAD_INPUT, main
from checks import FAST, grey_png, image_tree


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("data:\n  name: digits\ntrain:\n  epochs: 1\n  progress_bar: false\n")
    return path


def run_bad(capsys, tmp_path, config, *args: str) -> str:
    """Run `adlab train`, check the bad-input contract, return the one error line."""
    from checks import snapshot

    out_dir = tmp_path / "run"
    before = snapshot(tmp_path)
    code = main(["train", str(config), "--out", str(out_dir), *FAST, *args])
    assert snapshot(tmp_path) == before, "a refused run created, changed or deleted files"
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == EXIT_BAD_INPUT, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("adlab: error: ")
    assert "\x1b" not in lines[0], "terminal escape codes in the error line"
    assert "Traceback" not in captured.err + captured.out
    assert not out_dir.exists(), "a failed run left its run directory behind"
    return lines[0]


class MarkerOnLoad:
    """Unpickling this would create `path`: the code a weights_only load must never run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# --- configuration ------------------------------------------------------------------------------


def test_unknown_key_in_override(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "train.epoch=3")
    assert "'train.epoch'" in line
    assert "epochs" in line and "batch_size" in line and "optimizer" in line  # the valid keys


def test_unknown_key_in_file(capsys, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("data:\n  name: digits\nmodel:\n  nmae: cnn\n")
    line = run_bad(capsys, tmp_path, path)
    assert str(path) in line
    assert "'model.nmae'" in line
    assert "name" in line and "weights" in line


def test_unknown_top_level_key(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "trian.epochs=3")
    assert "'trian'" in line
    assert "train" in line and "data" in line and "model" in line


def test_wrong_type(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "train.epochs=abc")
    assert "train.epochs" in line
    assert "'abc'" in line
    assert "integer" in line


def test_invalid_literal_lists_choices(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "train.optimizer=rmsprop")
    assert "train.optimizer" in line
    assert "'rmsprop'" in line
    for choice in ("adam", "adamw", "sgd"):
        assert f"'{choice}'" in line


def test_out_of_range_value(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "data.val_fraction=1.5")
    assert "data.val_fraction" in line


def test_missing_config_file(capsys, tmp_path):
    missing = tmp_path / "nope.yaml"
    line = run_bad(capsys, tmp_path, missing)
    assert str(missing) in line
    assert "not found" in line


def test_invalid_yaml(capsys, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  name: digits\ntrain: [1, 2\n  epochs: 3\n")
    line = run_bad(capsys, tmp_path, path)
    assert str(path) in line
    assert "invalid YAML" in line
    assert "line" in line


def test_yaml_that_is_not_a_mapping(capsys, tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- data\n- train\n")
    line = run_bad(capsys, tmp_path, path)
    assert str(path) in line and "mapping" in line


def test_binary_config_file(capsys, tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81\x82 not text")
    line = run_bad(capsys, tmp_path, path)
    assert str(path) in line


def test_set_without_equals(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "train.epochs")
    assert "train.epochs" in line
    assert "key=value" in line


def test_set_into_a_scalar(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "train.epochs.value=3")
    assert "train.epochs" in line


# --- data ---------------------------------------------------------------------------------------


def test_folder_root_missing(capsys, tmp_path, config):
    root = tmp_path / "no-such-folder"
    line = run_bad(capsys, tmp_path, config, "--set", "data.name=folder", "--set", f"data.root={root}")
    assert str(root) in line
    assert "not found" in line


def test_folder_without_root(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "data.name=folder")
    assert "data.root" in line


def test_folder_with_empty_class_folder(capsys, tmp_path, config):
    root = tmp_path / "images"
    image_tree(root)
    (root / "c_empty").mkdir()
    line = run_bad(capsys, tmp_path, config, "--set", "data.name=folder", "--set", f"data.root={root}")
    assert "'c_empty'" in line
    assert str(root) in line


def test_folder_with_unreadable_image(capsys, tmp_path, config):
    root = tmp_path / "images"
    image_tree(root)
    bad = root / "b" / "corrupt.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    line = run_bad(capsys, tmp_path, config, "--set", "data.name=folder", "--set", f"data.root={root}")
    assert str(bad) in line


def test_folder_with_mixed_sizes(capsys, tmp_path, config):
    root = tmp_path / "images"
    image_tree(root)
    odd = root / "a" / "odd.png"
    grey_png(odd, size=(11, 9))
    line = run_bad(capsys, tmp_path, config, "--set", "data.name=folder", "--set", f"data.root={root}")
    assert str(odd) in line
    assert "data.image_size" in line


def test_unknown_class(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "data.classes=[3, eleven]")
    assert "data.classes" in line
    assert "'eleven'" in line
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in line


def test_class_id_out_of_range(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "data.classes=[3, 10]")
    assert "data.classes" in line and "10" in line


def test_class_listed_twice(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "data.classes=[3, '3']")
    assert "data.classes" in line and "twice" in line


def test_empty_class_list(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "data.classes=[]")
    assert "data.classes" in line


def test_a_single_class_cannot_be_classified(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "data.classes=[3]")
    assert line == "adlab: error: data.classes: 1 class(es) left; classification needs at least 2"


def test_too_large_test_fraction(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "data.test_fraction=0.999")
    assert "1797" in line


# --- model and weights --------------------------------------------------------------------------


def test_unknown_model(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "model.name=resnet81")
    assert "model.name" in line
    assert "'resnet81'" in line
    assert "resnet18" in line  # the close match


def test_weights_path_missing(capsys, tmp_path, config):
    missing = tmp_path / "nowhere.ckpt"
    line = run_bad(capsys, tmp_path, config, "--set", f"model.weights={missing}")
    assert str(missing) in line
    assert "not found" in line


def test_weights_file_is_not_a_checkpoint(capsys, tmp_path, config):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    line = run_bad(capsys, tmp_path, config, "--set", f"model.weights={junk}")
    assert str(junk) in line
    # never advise the unsafe load (torch's own first line says `weights_only=False` "will likely succeed")
    assert "set to `False`" not in line and "will likely succeed" not in line


def test_weights_file_truncated_checkpoint(capsys, tmp_path, config):
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(100, 100)}}, path)
    path.write_bytes(path.read_bytes()[:2000])
    line = run_bad(capsys, tmp_path, config, "--set", f"model.weights={path}")
    assert str(path) in line


def test_weights_with_pickled_code_are_refused_without_running_it(capsys, tmp_path, config):
    marker = tmp_path / "marker-created-on-unpickle"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": MarkerOnLoad(marker)}, evil)
    assert not marker.exists()  # saving did not run it
    try:
        line = run_bad(capsys, tmp_path, config, "--set", f"model.weights={evil}")
    finally:
        assert not marker.exists(), "loading the weights ran pickled code"
    assert str(evil) in line
    assert "refused" in line
    # says what was refused (torch: "Unsupported global: GLOBAL io.open"), not torch's generic preamble
    assert re.search(r"\bopen\b", line), line
    assert "set to `False`" not in line


def test_weights_without_tensors(capsys, tmp_path, config):
    path = tmp_path / "empty.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, path)
    line = run_bad(capsys, tmp_path, config, "--set", f"model.weights={path}")
    assert str(path) in line and "no tensors" in line


def test_weights_of_another_architecture(capsys, tmp_path, config):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"encoder.layer9.weight": torch.zeros(3, 3)}}, path)
    line = run_bad(capsys, tmp_path, config, "--set", f"model.weights={path}")
    assert str(path) in line


def test_imagenet_weights_for_cnn(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "model.weights=imagenet")
    assert "model.weights" in line
    assert "cnn" in line


def test_imagenet_weights_for_unknown_model(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "model.name=resnet81", "--set", "model.weights=imagenet")
    assert "model.name" in line
    assert "'resnet81'" in line


def test_model_too_large_for_8x8_input(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "model.name=alexnet")
    assert "alexnet" in line
    assert "1x8x8" in line
    assert "data.image_size" in line


# --- trainer settings ---------------------------------------------------------------------------


def test_invalid_precision(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "train.precision=abc")
    assert "train." in line and "'abc'" in line


def test_unavailable_accelerator(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "train.accelerator=tpu")
    assert "train.accelerator" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_accelerator_without_a_gpu(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "train.accelerator=gpu")
    assert "train.accelerator" in line


def test_devices_not_a_count(capsys, tmp_path, config):
    line = run_bad(capsys, tmp_path, config, "--set", "train.accelerator=cpu", "--set", "train.devices=abc")
    assert line == (
        "adlab: error: train.accelerator/devices/strategy/precision: `devices` selected with "
        "`CPUAccelerator` should be an int > 0."
    )


def test_module_entry_point_is_safe_to_import(tmp_path):
    """`python -m adlab` must not run the CLI when its module is imported again, as
    multiprocessing's spawn start method does (as `__mp_main__`) in every worker process."""
    import subprocess
    import sys

    code = "import runpy; runpy.run_module('adlab', run_name='__mp_main__'); print('imported')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("imported")


# --- run directory --------------------------------------------------------------------------------


def test_existing_run_directory_is_not_replaced(capsys, tmp_path, config):
    out_dir = tmp_path / "existing"
    out_dir.mkdir()
    (out_dir / "precious.txt").write_text("keep me")
    code = main(["train", str(config), "--out", str(out_dir), *FAST])
    captured = capsys.readouterr()
    assert code == EXIT_BAD_INPUT
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("adlab: error: ")
    assert str(out_dir) in lines[0]
    assert (out_dir / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in out_dir.iterdir()) == ["precious.txt"]


def test_overwrite_refuses_a_folder_that_is_not_a_run(capsys, tmp_path, config):
    out_dir = tmp_path / "not-a-run"
    out_dir.mkdir()
    (out_dir / "precious.txt").write_text("keep me")
    code = main(["train", str(config), "--out", str(out_dir), "--overwrite", *FAST])
    captured = capsys.readouterr()
    assert code == EXIT_BAD_INPUT
    assert len(captured.err.splitlines()) == 1
    assert (out_dir / "precious.txt").read_text() == "keep me"


def test_config_command_reports_bad_keys_too(capsys):
    code = main(["config", "--set", "train.optimiser=adam"])
    captured = capsys.readouterr()
    assert code == EXIT_BAD_INPUT
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "'train.optimiser'" in lines[0]
    assert captured.out == ""


def test_a_good_run_still_works(capsys, tmp_path, config):
    """The contract's other side: the same fixtures with valid input train and write a run."""
    out_dir = tmp_path / "run"
    code = main(["train", str(config), "--out", str(out_dir), "--quiet", *FAST, "--set", "data.classes=[0, 1]"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "adlab: error" not in captured.err
    assert (out_dir / "metrics.json").is_file()
