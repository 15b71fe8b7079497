"""Study files: expansion, validation, running, resuming after an interruption, the report."""

import csv
import json
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

import adlab
from adlab.errors import AdlabError, ConfigError
from adlab.study.spec import load_study

BASE = """
data: {name: digits}
model: {name: cnn, cnn: {conv_channels: [8, 16], convs_per_block: 1, hidden: [32]}}
train: {epochs: 2, batch_size: 64, lr: 0.003, progress_bar: false}
"""


@pytest.fixture
def base(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(BASE)
    return path


def write(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_grid_regimes_variants_and_seeds_expand(base, tmp_path):
    study = load_study(
        write(
            tmp_path,
            """
base: base.yaml
grid: {train.lr: [0.01, 0.001], model.name: [cnn]}
regimes: {a: {train.optimizer: sgd}, b: {train.optimizer: adam}}
variants: {wide: {model.hidden: [64]}}
seeds: [0, 1]
""",
        )
    )
    names = [r.name for r in study.runs]
    assert len(names) == (2 * 2 + 1) * 2 and len(set(names)) == len(names)
    assert "a-lr=0.01-name=cnn-seed=0" in names and "wide-seed=1" in names
    run = next(r for r in study.runs if r.name == "b-lr=0.001-name=cnn-seed=1")
    assert run.config.train.optimizer == "adam" and run.config.train.lr == 0.001 and run.config.train.seed == 1
    assert run.group == "b-lr=0.001-name=cnn"


def test_bad_axes_are_one_line_errors(base, tmp_path):
    with pytest.raises(ConfigError, match=r"run 'lr=abc'.*train.lr"):
        load_study(write(tmp_path, "base: base.yaml\ngrid: {train.lr: [abc]}\n"))
    with pytest.raises(ConfigError, match="unknown key 'train.lrr'"):
        load_study(write(tmp_path, "base: base.yaml\ngrid: {train.lrr: [0.1]}\n"))
    with pytest.raises(ConfigError, match="unknown key 'grids'"):
        load_study(write(tmp_path, "base: base.yaml\ngrids: {}\n"))
    with pytest.raises(ConfigError, match="fusion 'f': unknown run 'nope'"):
        load_study(write(tmp_path, "base: base.yaml\nvariants: {a: {}, b: {}}\nfusion: [{name: f, runs: [a, nope]}]\n"))
    with pytest.raises(ConfigError, match="base config .* not found"):
        load_study(write(tmp_path, "base: missing.yaml\n"))


def test_study_runs_fuses_reports_and_resumes(base, tmp_path, capsys):
    path = write(
        tmp_path,
        """
name: tiny
base: base.yaml
variants:
  adam: {train.optimizer: adam}
  sgd: {train.optimizer: sgd, train.lr: 0.05}
seeds: [0, 1]
fusion: [{name: both, runs: [adam, sgd], method: mean_prob}]
""",
    )
    out = tmp_path / "out"
    adlab.run_study(path, out=out, verbose=True)
    printed = capsys.readouterr().out
    assert re.search(r"\[1/4\] adam-seed=0: accuracy 0\.\d{4}; done in \d+ s", printed) and "about" in printed
    for name in ("adam-seed=0", "adam-seed=1", "sgd-seed=0", "sgd-seed=1", "both-seed=0", "both-seed=1"):
        assert (out / "runs" / name / "metrics.json").is_file(), name
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows][:4] == ["adam-seed=0", "adam-seed=1", "sgd-seed=0", "sgd-seed=1"]
    accuracy = json.loads((out / "runs" / "adam-seed=0" / "metrics.json").read_text())["accuracy"]
    assert float(rows[0]["accuracy"]) == pytest.approx(accuracy)
    report = (out / "report.md").read_text()
    assert "| adam-seed=0 |" in report and "95% interval" in report and "McNemar" in report
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 3

    # an interrupted study: one run lost its metrics (killed mid-way), another never started
    (out / "runs" / "sgd-seed=1" / "metrics.json").unlink()
    fused = out / "runs" / "both-seed=0" / "metrics.json"
    fused_metrics = json.loads(fused.read_text())
    fused.write_text(json.dumps({**fused_metrics, "accuracy": 0.0}))  # a fusion of members since remade
    kept = (out / "runs" / "adam-seed=0" / "metrics.json").stat().st_mtime_ns
    with pytest.raises(AdlabError, match="--resume"):
        adlab.run_study(path, out=out, verbose=False)
    adlab.run_study(path, out=out, resume=True, verbose=True)
    printed = capsys.readouterr().out
    assert "adam-seed=0: finished earlier, kept" in printed and re.search(
        r"sgd-seed=1: accuracy [.0-9]+; done", printed
    )
    assert (out / "runs" / "adam-seed=0" / "metrics.json").stat().st_mtime_ns == kept
    assert (out / "runs" / "sgd-seed=1" / "metrics.json").is_file()
    assert json.loads(fused.read_text())["accuracy"] == fused_metrics["accuracy"]  # fused again, never kept stale


def test_html_report_escapes_user_strings(base, tmp_path):
    from adlab.study.report import Heading, Table, render_html

    html = render_html(
        [Heading(1, "<script>alert(1)</script>"), Table(["a<b"], [["x&y"]], [[False]])], "t<i>tle", tmp_path
    )
    assert "<script>" not in html and "&lt;script&gt;" in html and "x&amp;y" in html and "t&lt;i&gt;tle" in html


CLI = [sys.executable, "-c", "import sys; from adlab.cli import main; sys.exit(main())"]


def study_process_after_epochs(path, out, run: str, epochs: int, **popen) -> subprocess.Popen:
    """`adlab study PATH --out OUT` in its own process, returned once run `run` has finished `epochs` epochs."""
    process = subprocess.Popen(CLI + ["study", str(path), "--out", str(out)], stdout=subprocess.DEVNULL, **popen)
    history = out / "runs" / run / "history.csv"
    deadline = time.monotonic() + 300
    while (not history.is_file() or len(history.read_text().splitlines()) <= epochs) and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


@pytest.mark.slow
def test_a_killed_study_continues_the_interrupted_run_from_its_checkpoint(base, tmp_path):
    path = write(
        tmp_path,
        """
name: killed
base: base.yaml
variants:
  short: {}
  long: {train.epochs: 30, train.scheduler: cosine}
""",
    )
    out = tmp_path / "out"
    process = study_process_after_epochs(path, out, "long", 3, stderr=subprocess.DEVNULL)
    process.send_signal(signal.SIGKILL)  # three epochs into the second run
    process.wait()
    assert (out / "runs" / "short" / "metrics.json").is_file()
    assert not (out / "runs" / "long" / "metrics.json").exists()

    # the rest in fresh processes too: the same threads as the killed one, no state from other tests
    printed = subprocess.run(
        CLI + ["study", str(path), "--out", str(out), "--resume"], capture_output=True, text=True, check=True
    ).stdout
    assert "short: finished earlier, kept" in printed and "long: resuming from its last checkpoint" in printed
    resumed = json.loads((out / "runs" / "long" / "metrics.json").read_text())
    subprocess.run(
        CLI + ["train", str(out / "runs" / "long" / "config.yaml"), "--out", str(tmp_path / "fresh")],
        capture_output=True,
        check=True,
    )
    fresh = json.loads((tmp_path / "fresh" / "metrics.json").read_text())
    assert {k: v for k, v in resumed.items() if k != "train_seconds"} == {
        k: v for k, v in fresh.items() if k != "train_seconds"
    }


@pytest.mark.slow
def test_sigterm_during_a_study_advises_the_study_command_which_finishes_it(base, tmp_path):
    path = write(
        tmp_path,
        """
name: stopped
base: base.yaml
variants:
  short: {}
  long: {train.epochs: 8}
fusion:
  - {name: both, runs: [short, long]}
""",
    )
    out = tmp_path / "out"
    process = study_process_after_epochs(path, out, "long", 2, stderr=subprocess.PIPE, text=True)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 143
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "continue the study with: adlab study" in lines[0], err[-2000:]
    assert "adlab train --resume" not in err
    advised = shlex.split(lines[0].split("continue the study with: ", 1)[1])
    assert advised[:2] == ["adlab", "study"] and "--resume" in advised
    subprocess.run(CLI + advised[1:], capture_output=True, text=True, check=True)
    assert (out / "runs" / "both" / "metrics.json").is_file() and (out / "report.md").is_file()
