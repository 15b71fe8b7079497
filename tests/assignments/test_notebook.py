"""examples/colab_assignment_a.ipynb, the Colab notebook of assignment A: valid nbformat 4 JSON of plain Python
(no shell or magic lines, so it runs as a script), its install cell's two paths, and, in its smoke size, every
code cell run in order on the CPU with a CIFAR-10 stand-in, as Colab would run them (Jupyter is not needed:
the cells are exec'd in one namespace, with IPython.display replaced by a recorder)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from checks import snapshot

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "colab_assignment_a.ipynb"

# Runs the notebook's code cells in order in one namespace; what the cells display is written to argv[2].
RUNNER = r"""
import json
import sys
import types


class Shown:
    def __init__(self, data):
        self.data = data


class HTML(Shown):
    pass


class Markdown(Shown):
    pass


displayed = []


def display(*objects):
    displayed.extend({"kind": type(o).__name__, "data": o.data} for o in objects)


ipython = types.ModuleType("IPython")
ipython.display = types.ModuleType("IPython.display")
ipython.display.HTML, ipython.display.Markdown, ipython.display.display = HTML, Markdown, display
sys.modules["IPython"], sys.modules["IPython.display"] = ipython, ipython.display

notebook = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = {"__name__": "__main__"}
for index, cell in enumerate(notebook["cells"]):
    if cell["cell_type"] == "code":
        print(f"--- cell {index}", flush=True)
        exec(compile("".join(cell["source"]), f"<cell {index}>", "exec"), namespace)
json.dump(displayed, open(sys.argv[2], "w", encoding="utf-8"))
"""


def load_notebook() -> dict:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def cell(tag: str) -> str:
    found = [c for c in load_notebook()["cells"] if tag in c["metadata"].get("tags", [])]
    assert len(found) == 1, tag
    return "".join(found[0]["source"])


def test_the_notebook_is_nbformat_4_json_of_plain_python():
    notebook = load_notebook()
    assert notebook["nbformat"] == 4 and isinstance(notebook["nbformat_minor"], int)
    assert notebook["metadata"]["kernelspec"]["name"] == "python3" and notebook["metadata"]["accelerator"] == "GPU"
    ids = [c["id"] for c in notebook["cells"]]
    assert len(set(ids)) == len(ids)
    for c in notebook["cells"]:
        assert c["cell_type"] in ("markdown", "code") and isinstance(c["metadata"], dict)
        assert isinstance(c["source"], list) and all(isinstance(line, str) for line in c["source"])
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None  # shipped without outputs
            source = "".join(c["source"])
            assert not [line for line in source.splitlines() if line.lstrip().startswith(("!", "%"))]
            compile(source, c["id"], "exec")
    text = "".join("".join(c["source"]) for c in notebook["cells"])
    assert "Runtime > Change runtime type > GPU" in text
    assert 'sh(*ADLAB, "study", STUDY, "--out", OUT, "--plan", *SET_ARGS)' in text
    assert 'STUDY_FILE = Path("studies") / "a_cifar10_lr.yaml"' in text and 'OUT = "runs/a"' in text


def install_namespace(monkeypatch, tmp_path, adlab_repo: str, importable: bool) -> tuple[dict, list]:
    """The settings and helper cells run, then `sh` replaced by a recorder (a `git clone` makes a clone
    holding the study file); adlab importable or not."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADLAB_REPO", raising=False)
    namespace: dict = {}
    exec(cell("settings").replace('ADLAB_REPO = ""', f"ADLAB_REPO = {adlab_repo!r}"), namespace)
    exec(cell("helpers"), namespace)
    commands = []

    def record(*args, echo=True):
        commands.append([str(a) for a in args])
        if args[:2] == ("git", "clone"):
            (Path(args[-1]) / "studies").mkdir(parents=True)
            (Path(args[-1]) / "studies" / "a_cifar10_lr.yaml").write_text("name: a_cifar10_lr\n")
        return ""

    namespace["sh"] = record
    if not importable:
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "adlab" else real(name, *a))
    return namespace, commands


def test_without_adlab_an_empty_adlab_repo_is_one_clear_message(monkeypatch, tmp_path):
    namespace, commands = install_namespace(monkeypatch, tmp_path, "", importable=False)
    with pytest.raises(
        ValueError,
        match=r"ADLAB_REPO is empty: adlab is not on PyPI. Set ADLAB_REPO in the first code "
        r"cell to the git URL of your copy",
    ):
        exec(cell("install"), namespace)
    assert commands == [] and list(tmp_path.iterdir()) == []


def test_without_adlab_the_repository_is_cloned_and_installed(monkeypatch, tmp_path):
    url = "https://github.com/someone/adlab.git"
    namespace, commands = install_namespace(monkeypatch, tmp_path, url, importable=False)
    exec(cell("install"), namespace)
    clone = tmp_path / "adlab"
    assert commands == [
        ["git", "clone", "--depth", "1", url, str(clone)],
        [sys.executable, "-m", "pip", "install", "--quiet", str(clone)],
    ]
    assert namespace["STUDY"] == clone / "studies" / "a_cifar10_lr.yaml"


def test_with_adlab_installed_nothing_is_installed(monkeypatch, tmp_path, capsys):
    namespace, commands = install_namespace(monkeypatch, tmp_path, "", importable=True)
    exec(cell("install"), namespace)
    assert commands == [] and "adlab is already installed: not installing it again" in capsys.readouterr().out
    installed_from = Path(importlib.util.find_spec("adlab").origin).resolve().parents[2]  # pip install -e: the checkout
    assert namespace["STUDY"] == installed_from / "studies" / "a_cifar10_lr.yaml" and namespace["STUDY"].is_file()


@pytest.mark.slow
def test_the_notebook_runs_assignment_a_in_its_smoke_size(tmp_path):
    from standins.cifar import write_cifar10

    write_cifar10(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "runner.py").write_text(RUNNER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "ADLAB_REPO"}
    env.update(
        ADLAB_DATA=str(tmp_path / "data"),
        ADLAB_NOTEBOOK_SMOKE="1",
        TORCH_HOME=str(tmp_path / "torch"),
        MPLBACKEND="Agg",
    )
    studies_before = snapshot(REPO / "studies")
    result = subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), str(NOTEBOOK), str(tmp_path / "shown.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    out = work / "runs" / "a"
    assert "adlab is already installed: not installing it again" in output
    assert "no GPU: the smoke run uses the CPU" in output
    assert "study a_cifar10_lr: 15 runs" in output and "nothing was written or downloaded (--plan)" in output
    assert "--set train.epochs=1 --set data.train_per_class=10 --set data.verify=false" in output
    assert "[15/15] lr=0.001-steplr-20epochs-seed=2: accuracy " in output
    assert sorted(p.name for p in (out / "runs").iterdir() if (p / "metrics.json").is_file()) == sorted(
        f"{v}-seed={s}"
        for v in (
            "lr=0.001-steplr",
            "lr=0.01-steplr",
            "lr=0.01-constant",
            "lr=0.00001-constant",
            "lr=0.001-steplr-20epochs",
        )
        for s in (0, 1, 2)
    )
    assert json.loads((out / "study.json").read_text())["set"] == [
        "train.epochs=1",
        "data.train_per_class=10",
        "data.verify=false",
    ]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert (
        "## Against the published figures" in report and "| lr=0.001-steplr | mean_class_accuracy | 79.95 | " in report
    )

    shown = json.loads((tmp_path / "shown.json").read_text())
    assert [s["kind"] for s in shown] == ["HTML", "Markdown"]
    assert shown[0]["data"] == (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Against the published figures</h2>" in shown[0]["data"]
    table = shown[1]["data"].splitlines()
    assert table[0] == "| run | accuracy | mean_class_accuracy | macro_f1 | macro_precision | macro_recall |"
    assert len(table) == 2 + 15

    with zipfile.ZipFile(work / "runs" / "a.zip") as archive:
        names = archive.namelist()
    assert "a/report.md" in names and "a/runs/lr=0.01-constant-seed=1/metrics.json" in names
    assert not [n for n in names if "/checkpoints/" in n]
    assert snapshot(REPO / "studies") == studies_before and not (work / "adlab").exists()


def _fake_installed(site: Path, name: str, version: str) -> None:
    """A distribution's metadata alone (pip's resolver reads nothing else)."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")


def _pip_install_report(tmp_path: Path, torch_version: str, torchvision_version: str) -> subprocess.CompletedProcess:
    """The notebook's own pip command, run with --dry-run --report in a virtual environment that sees this
    one's packages (as Colab's image holds its own), with torch and torchvision of the versions given in place
    of this environment's; offline
    (--no-index): whatever pip would have to download shows as a failure to resolve."""
    import sysconfig
    import venv

    env_dir = tmp_path / f"venv-{torch_version}"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # pip and every dependency
    _fake_installed(site, "torch", torch_version)  # found before this environment's own torch
    _fake_installed(site, "torchvision", torchvision_version)
    install = re.search(r'sh\(sys\.executable, "-m", "pip", "install", ([^)]*)\)', cell("install"))
    assert install, "the install cell's pip command"
    options = [a.strip().strip('"') for a in install.group(1).split(",")][:-1]  # its options, then CLONE
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # no find-links or extra index from a pip.conf: nothing to fetch from
    return subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            *options,
            "--dry-run",
            "--report",
            "-",
            "--no-index",
            "--no-build-isolation",
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.mark.slow
def test_the_notebooks_install_keeps_a_preinstalled_torch_that_suits_adlab(tmp_path):
    """Colab comes with torch and torchvision: installing adlab must not replace them (gigabytes, and its
    torchaudio left mismatched) when they are recent enough. The oldest torch adlab accepts is kept; an older
    one would be replaced."""
    import tomllib

    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    oldest = next(p for p in pins if p.startswith("torch>=")).removeprefix("torch>=")
    vision = next(p for p in pins if p.startswith("torchvision>=")).removeprefix("torchvision>=")
    kept = _pip_install_report(tmp_path, oldest, vision)
    assert kept.returncode == 0, kept.stderr[-3000:]
    report = json.loads(kept.stdout)
    assert [item["metadata"]["name"] for item in report["install"]] == ["adlab"]  # torch and the rest kept
    major, minor = (int(part) for part in oldest.split(".")[:2])
    older = _pip_install_report(tmp_path, f"{major}.{minor - 1}.0", vision)
    assert older.returncode != 0 and "torch" in older.stderr  # pip would have to fetch a newer torch
