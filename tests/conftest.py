"""Shared fixtures: small, fast digits runs trained once per test session."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from checks import chromium, snapshot

os.environ.setdefault("MPLBACKEND", "Agg")

# --- budgets and real components --------------------------------------------------------------------------
# Every test has a budget (pytest-timeout; the default, 300 s, is in pyproject.toml); tests marked slow
# get SLOW_TIMEOUT unless they ask for their own with @pytest.mark.timeout(seconds).
SLOW_TIMEOUT = 1500

# Components `make setup` installs (as root: Debian packages; anyone: adlab's extras). A test that needs
# one says so with @pytest.mark.requires("name", ...) or the `require` fixture: skipped where it is
# missing, but with CI=true (as .ci/run runs) a missing one FAILS the test, so CI cannot go green
# without the browser, LaTeX or real-data tests.
CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _missing_pdflatex() -> str | None:
    if shutil.which("pdflatex") is None:
        return "pdflatex not found (Debian's texlive-latex-base)"
    found = (
        subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True)
        if shutil.which("kpsewhich")
        else None
    )
    if found is None or found.returncode != 0 or not found.stdout.strip():
        return "LaTeX's booktabs.sty not found (Debian's texlive-latex-recommended)"
    return None


def _missing_fashion_mnist() -> str | None:
    from adlab.data.idx import find_idx
    from adlab.data.sources import DEBIAN_FASHION_MNIST

    if find_idx(DEBIAN_FASHION_MNIST, "train-images-idx3-ubyte") is None:
        return f"Fashion-MNIST not found in {DEBIAN_FASHION_MNIST} (Debian's dataset-fashion-mnist)"
    return None


def _missing_modules(extra: str, *modules: str) -> str | None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"needs adlab[{extra}] ({', '.join(missing)} missing)" if missing else None


def _missing_mlflow_cli() -> str | None:
    if shutil.which("mlflow", path=os.path.dirname(sys.executable)) is None:
        return "mlflow's CLI not found beside this Python (adlab[track])"
    return None


COMPONENTS = {
    "chromium": lambda: None if chromium() else "Debian's chromium not found",
    "pdflatex": _missing_pdflatex,
    "fashion-mnist": _missing_fashion_mnist,
    "detect": lambda: _missing_modules("detect", "ultralytics", "pycocotools"),
    "track": lambda: _missing_modules("track", "mlflow", "tensorboard"),
    "mlflow-cli": _missing_mlflow_cli,
    "cluster": lambda: _missing_modules("cluster", "psycopg"),
    "timm": lambda: _missing_modules("timm", "timm", "huggingface_hub"),
    "srun": lambda: None if shutil.which("srun") else "SLURM's srun not found (Debian's slurm-wlm)",
}


def missing_component(name: str) -> str | None:
    """Why component `name` is not usable here, or None when it is."""
    return COMPONENTS[name]()


def require(*names: str) -> None:
    """Skip the calling test for a missing component, or fail it when CI=true."""
    for name in names:
        problem = missing_component(name)
        if problem:
            if CI:
                pytest.fail(
                    f"CI=true and a component is missing: {problem} (make setup installs it as root)", pytrace=False
                )
            pytest.skip(f"{problem} (make setup installs it as root; with CI=true this fails)")


@pytest.fixture(name="require")
def require_fixture():
    """`require("fashion-mnist")` inside a test, where the need is known only part-way through."""
    return require


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "requires(*components): needs these of "
        + ", ".join(COMPONENTS)
        + " (skipped where missing; a failure with CI=true)",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker in item.iter_markers("requires"):
            unknown = [name for name in marker.args if name not in COMPONENTS]
            if unknown:
                raise pytest.UsageError(f"{item.nodeid}: unknown component(s) {unknown}")
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


def pytest_runtest_setup(item):
    for marker in item.iter_markers("requires"):
        require(*marker.args)


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
def cli_config(cli):
    """c.yaml in the cli's working folder: a 1-epoch digits run."""
    path = cli.root / "c.yaml"
    path.write_text("data:\n  name: digits\ntrain:\n  epochs: 1\n  progress_bar: false\n")
    return path


@pytest.fixture
def cli_runs(cli, digits_run, digits_run_b):
    """Two finished runs, copied under the cli's working folder so its checksum listing covers them."""
    import shutil

    a, b = cli.root / "run_a", cli.root / "run_b"
    shutil.copytree(digits_run.path, a)
    shutil.copytree(digits_run_b.path, b)
    return a, b


@pytest.fixture
def cli(tmp_path, capsys, monkeypatch):
    """A Cli whose working folder is tmp_path/work (tmp_path itself stays free for other fixtures)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return Cli(work, capsys)
