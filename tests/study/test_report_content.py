"""The study report's content and its three renderings, on a study folder made by hand (no training):
the summary's sentences, pivots over the study's axes, bold only on a single best value, figures
coloured by variant on integer epochs, GitHub-clean Markdown, and a report.tex that compiles."""

import re
import shutil
import subprocess

import pytest
from handmade_study import make_study_folder

from adlab.study.blocks import Paragraph, Table
from adlab.study.render import md_escape, render_markdown
from adlab.study.report_content import best_mask

PDFLATEX = shutil.which("pdflatex")


@pytest.fixture
def study_folder(tmp_path):
    return make_study_folder(tmp_path)


def test_the_summary_says_the_best_its_test_and_what_went_wrong(study_folder):
    report = (study_folder / "report.md").read_text()
    summary = report.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert "best accuracy 0.9778 by lr=0.01-scheduler=step" in summary
    assert "significantly better than" in summary and "McNemar" in summary
    assert "lr=0.1-scheduler=none-seed=0 collapsed: it answers 'cat' for 100% of the test images" in summary
    assert "Not finished: lr=0.1-scheduler=step-seed=1" in summary
    assert report.index("## Summary") < report.index("## Classification")


def test_the_grid_is_pivoted_with_mean_and_std_over_seeds(study_folder):
    report = (study_folder / "report.md").read_text()
    pivot = report.split("### accuracy over the study's axes (mean ± std over seeds)", 1)[1].split("\n\n")[1]
    lines = pivot.splitlines()
    assert lines[0] == "| lr | scheduler=none | scheduler=step |"
    assert lines[3].startswith("| lr=0.01 | 0.7889 ± 0.0000 | **0.9778 ± 0.0000** |")
    assert lines[2].startswith("| lr=0.1 | 0.3333 ± 0.0000 | 0.7111 |")  # one seed left: no spread shown


def test_markdown_renders_cleanly_on_github(study_folder):
    report = (study_folder / "report.md").read_text()
    assert "&lt;" not in report and "&gt;" not in report  # GitHub would show the entity, not '<'
    assert "# Study: grid & 50%" in report
    assert "p < 0.05" in report
    assert md_escape("a|b *c* `d` [e](f) <g> 1 < 2") == "a\\|b \\*c\\* \\`d\\` [e]\\(f) \\<g> 1 < 2"
    tables = [line for line in report.splitlines() if line.startswith("|")]
    assert all(line.endswith("|") and line.count("|") - line.count("\\|") >= 3 for line in tables)


def test_bold_marks_only_a_single_best_value_as_shown():
    header = ["run", "accuracy", "loss", "time"]
    rows = [["a", 0.90, 0.5, 1.0], ["b", 0.95, 0.5, 1.0], ["c", 0.94999, 0.4, 1.0]]
    assert best_mask(rows, [None, "max", "min", "min"], header) == [
        [False, False, False, False],
        [False, False, False, False],  # 0.95 and 0.94999 both read 0.9500: a tie
        [False, False, True, False],
    ]  # the single lowest loss; the all-equal time column: nothing
    assert best_mask([["a", 0.9], ["b", 0.8]], [None, "max"], ["run", "accuracy"]) == [[False, True], [False, False]]
    markdown = render_markdown([Table(header, rows, best_mask(rows, [None, "max", "min", "min"], header))])
    assert markdown.count("**") == 2


def test_figures_give_each_variant_its_own_look_and_count_epochs_in_integers(study_folder):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adlab.study.report_figures import integer_epochs, variant_styles

    names = [f"v{i}" for i in range(30)]
    styles = variant_styles(names)
    assert len(set(styles.values())) == 30
    assert len({colour for colour, _ in variant_styles(names[:10]).values()}) == 10
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3, 4], [0, 1, 0, 1])
    integer_epochs(ax)
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 4]
    plt.close(fig)
    assert ticks and all(float(t).is_integer() for t in ticks)
    figures = sorted(p.name for p in (study_folder / "figures").iterdir())
    for stem in ("classify_confusion", "classify_losses", "classify_val_accuracy_curves", "classify_accuracy_bars"):
        assert f"{stem}.png" in figures and f"{stem}.pdf" in figures  # PNG for HTML/Markdown, PDF for LaTeX


def test_html_is_autoescaped_and_holds_the_summary_first(study_folder):
    html = (study_folder / "report.html").read_text()
    assert "<title>grid &amp; 50%</title>" in html
    assert html.index('<ul class="summary">') < html.index("<h2>Classification</h2>")
    assert html.count('class="table-wrap"') >= 4


@pytest.mark.requires("pdflatex")  # with booktabs
def test_report_tex_compiles_with_booktabs_and_pdf_figures(study_folder):
    tex = (study_folder / "report.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\usepackage{booktabs}" in tex
    assert re.search(r"\\includegraphics\[[^]]*type=pdf[^]]*\]\{\\detokenize\{figures/classify_confusion\}\}", tex)
    assert r"grid \& 50\%" in tex and r"$\pm$" in tex
    proc = subprocess.run(
        [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=study_folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (study_folder / "report.pdf").stat().st_size > 20_000  # the figures are in it


def test_paragraphs_are_plain_text_in_every_format():
    from adlab.study.render import render_tex

    text = "50% of runs_x & p < 0.05 # {1} ~2"
    markdown = render_markdown([Paragraph(text)])
    assert markdown.strip() == text  # nothing GitHub would misread
    tex = render_tex([Paragraph(text)], "t", ".")
    assert r"50\% of runs\_x \& p \textless{} 0.05 \# \{1\} \textasciitilde{}2" in tex


def test_autoencoders_are_compared_image_by_image(tmp_path):
    """AE vs VAE on the same test images: Wilcoxon's signed-rank test on per-image reconstruction errors
    and McNemar's test on the linear probe's answers, both in the summary."""
    import json

    import numpy as np

    from adlab.study.report import write_report
    from adlab.study.spec import load_study

    path = tmp_path / "study.yaml"
    path.write_text(
        "config: {task: autoencode, data: {name: digits}, train: {epochs: 2}}\n"
        "variants: {ae: {model.name: ae}, vae: {model.name: vae}}\n"
    )
    study = load_study(path)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    errors = {"ae": rng.random(400) * 0.02, "vae": None}
    errors["vae"] = errors["ae"] * 1.2 + 0.001  # worse on every image
    answers = {
        "ae": np.where(rng.random(400) < 0.70, y, (y + 1) % 3),
        "vae": np.where(rng.random(400) < 0.85, y, (y + 1) % 3),
    }
    for name in ("ae", "vae"):
        folder = tmp_path / "out" / "runs" / name
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("task: autoencode\ndata: {name: digits}\n")
        (folder / "metrics.json").write_text(
            json.dumps(
                {"test_mse": float(errors[name].mean()), "latent_linear_accuracy": float((answers[name] == y).mean())}
            )
        )
        (folder / "history.csv").write_text("epoch,train_loss,val_loss,val_mse\n1,1.0,1.1,0.05\n2,0.5,0.6,0.03\n")
        rows = ["index,y_true,y_pred,mse"] + [
            f"{i},{t},{p},{e}" for i, (t, p, e) in enumerate(zip(y, answers[name], errors[name], strict=True))
        ]
        (folder / "predictions.csv").write_text("\n".join(rows) + "\n")
    write_report(tmp_path / "out", study)
    report = (tmp_path / "out" / "report.md").read_text()
    summary = report.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert re.search(
        r"best test_mse 0\.0\d+ by ae; significantly better than vae \(-0\.00307, p < 1e-16\) "
        r"\(Wilcoxon's signed-rank test on the same test images\)",
        summary,
    ), summary
    assert re.search(
        r"best latent_linear_accuracy 0\.8\d+ by vae; significantly better than ae \(\+0\.1\d+, "
        r"p = [0-9.e-]+\) \(McNemar's exact test",
        summary,
    ), summary
    assert "| vae | -0.00307 | [-0.00318, -0.00296] | 400 / 0 |" in report  # ae's error is lower on all 400 images
    assert "| ae | +0.1725 | [+0.1150, +0.2300] | 109 / 40 |" in report


def test_detectors_are_compared_by_the_objects_they_find_image_by_image(tmp_path):
    """mAP has no per-image value: the summary backs 'transfer beats scratch' with Wilcoxon's test on
    the share of each validation image's objects found, and says so."""
    import json

    from adlab.study.report import write_report
    from adlab.study.spec import load_study

    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [car]\n")
    path = tmp_path / "study.yaml"
    path.write_text(
        "config: {task: detect, model: {name: yolov8n}, data: {name: yolo, root: data.yaml}}\n"
        "variants: {scratch: {}, transfer: {}}\n"
    )
    study = load_study(path, check_configs=False)
    found = {"scratch": [0.0, 0.5, 0.0, 0.0, 0.5, 0.0] * 5, "transfer": [1.0, 0.5, 1.0, 0.5, 1.0, 1.0] * 5}
    for name, shares in found.items():
        folder = tmp_path / "out" / "runs" / name
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("task: detect\ndata: {name: yolo, root: data.yaml}\n")
        (folder / "metrics.json").write_text(json.dumps({"map50": 0.08 if name == "scratch" else 0.61}))
        (folder / "history.csv").write_text("epoch,train_loss,val_loss,val_map50\n1,3.0,3.1,0.01\n2,2.0,2.2,0.05\n")
        rows = ["index,y_true,y_pred,found50"] + [f"{i},2,1,{v}" for i, v in enumerate(shares)]
        (folder / "predictions.csv").write_text("\n".join(rows) + "\n")
    write_report(tmp_path / "out", study)
    report = (tmp_path / "out" / "report.md").read_text()
    assert re.search(
        r"best map50 0\.6100 by transfer; significantly better than scratch \(\+0\.667, p = [0-9.e-]+\) "
        r"\(Wilcoxon's signed-rank test on the share of each image's objects found",
        report,
    ), report
    assert "The difference in the share of each image's objects found" in report
