"""Shared fixtures: small, fast digits runs trained once per test session."""

from __future__ import annotations

import os

import pytest
from checks import snapshot

os.environ.setdefault("MPLBACKEND", "Agg")

FAST = {
    "data": {"name": "digits"},
    "model": {"name": "cnn", "cnn": {"conv_channels": [16, 32], "convs_per_block": 1, "hidden": [64]}},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.003, "progress_bar": False},
}


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
