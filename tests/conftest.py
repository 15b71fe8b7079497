"""Shared fixtures: small, fast digits runs trained once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

FAST = {
    "data": {"name": "digits"},
    "model": {"name": "cnn", "conv_channels": [16, 32], "convs_per_block": 1, "hidden": [64]},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.003, "progress_bar": False},
}


def grey_png(path, value=0, size=(8, 8)):
    """A small grey PNG whose pixels depend on `value` (distinct images per class)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.arange(size[0] * size[1]).reshape(size[1], size[0]) + value) % 256
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)


def image_tree(root, classes=("a", "b"), per_class=12, digits=1):
    """An ImageFolder tree of grey PNGs: root/<class>/<i>.png (i zero-padded to `digits`)."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            grey_png(root / name / f"{i:0{digits}d}.png", 40 * c + i)


def assert_matches_scikit_learn(m: dict, y, p) -> None:
    """The headline classification metrics equal scikit-learn's on the same labels and predictions."""
    from sklearn import metrics as skm

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-6)
    assert m["mean_class_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p), abs=1e-6)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"), abs=1e-6)
    assert m["macro_precision"] == pytest.approx(skm.precision_score(y, p, average="macro", zero_division=0), abs=1e-6)
    assert m["macro_recall"] == pytest.approx(skm.recall_score(y, p, average="macro"), abs=1e-6)
    assert m["confusion_matrix"] == skm.confusion_matrix(y, p).tolist()


def fast_config(**sections) -> dict:
    """FAST with some sections' keys replaced, e.g. fast_config(model={"freeze": True})."""
    import copy

    config = copy.deepcopy(FAST)
    for section, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    return config


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A finished classification run on digits (shared, read-only)."""
    import adlab

    return adlab.train(fast_config(), out=tmp_path_factory.mktemp("runs") / "digits", verbose=False)


@pytest.fixture(scope="session")
def digits_run_b(tmp_path_factory):
    """A second, different run on the same test set (for fusion)."""
    import adlab

    config = fast_config(train={"seed": 1, "epochs": 2})
    return adlab.train(config, out=tmp_path_factory.mktemp("runs") / "digits_b", verbose=False)


# --- the bad-input contract, checked through the real CLI -----------------------------------------

def snapshot(root) -> dict:
    """Every entry under `root`: files by content hash and mode, links by target, folders by name."""
    import hashlib

    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                entries[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                entries[rel] = ("dir",)
            else:
                with open(path, "rb") as f:
                    entries[rel] = ("file", hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mode)
    return entries


class Cli:
    """`adlab` run in-process in a scratch working folder, with the bad-input contract as assertions."""

    def __init__(self, root, capsys):
        self.root = root
        self.capsys = capsys

    def run(self, *args: str) -> tuple[int, str, str]:
        from adlab.cli import main

        self.capsys.readouterr()
        code = main([str(a) for a in args])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def refused(self, *args: str, names: tuple[str, ...] = ()) -> str:
        """Exit 2, one `adlab: error:` line naming each of `names`, no traceback, and not one file
        under the working folder created, changed or deleted. Returns the line."""
        before = snapshot(self.root)
        code, out, err = self.run(*args)
        lines = err.splitlines()
        assert code == 2, f"exit {code}: {err[-3000:]}"
        assert len(lines) == 1, err[-3000:]
        assert lines[0].startswith("adlab: error: "), lines[0]
        assert "Traceback" not in out + err
        for name in names:
            assert str(name) in lines[0], (name, lines[0])
        after = snapshot(self.root)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"files changed by a refused command: {changed[:10]}"
        return lines[0]

    def succeeds(self, *args: str, outputs: tuple[str, ...] = ()) -> str:
        """Exit 0, and nothing changed under the working folder outside the `outputs` folders."""
        before = snapshot(self.root)
        code, out, err = self.run(*args)
        assert code == 0, err[-3000:]
        assert "Traceback" not in out + err
        after = snapshot(self.root)

        def inside(rel):
            return any(rel == o or rel.startswith(o.rstrip("/") + "/") for o in outputs)

        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and not inside(k))
        assert not changed, f"files changed outside {outputs}: {changed[:10]}"
        return out


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    """A Cli whose working folder is tmp_path/work (tmp_path itself stays free for other fixtures)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return Cli(work, capsys)
