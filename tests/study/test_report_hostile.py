"""Damaged run files and hostile names against `adlab report`, `adlab fuse` and `adlab table`
(issue 28), through the real CLI.

Refused cases: exit 2, one `adlab: error:` line naming the file (and the key), no traceback, and no
file under the working folder created, changed or deleted (the `cli` fixture). Accepted cases: the
report says what it found plainly, and every name is shown as written in report.md, report.html,
report.tex and the figures.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from adlab import ownership

VARIANTS = "variants: {a: {}, b: {train.seed: 1}}\n"


def make_study(cli, runs, text: str = VARIANTS, folder: str = "st", names=("a", "b")) -> Path:
    """A study folder adlab made (marker, study.yaml) holding copies of the two session runs."""
    out = cli.root / folder
    ownership.prepare_output(out, "study", False)
    (out / "study.yaml").write_text("config: {data: {name: digits}}\n" + text, encoding="utf-8")
    for name, run in zip(names, runs, strict=True):
        shutil.copytree(run.path, out / "runs" / name)
    return out


@pytest.fixture
def study(cli, digits_run, digits_run_b) -> Path:
    return make_study(cli, (digits_run, digits_run_b))


@pytest.fixture
def pair(cli_runs):
    return cli_runs  # two finished runs under the working folder (tests/conftest.py)


def edit_metrics(run: Path, change) -> None:
    path = run / "metrics.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def sparse(path: Path, size: int = 6 * 2**30) -> None:
    """A 6 GB file that costs no disk: read whole, it would take 6 GB of memory."""
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def listing(root: Path) -> dict:
    """Every entry under `root` by type, size, mode and modification time: the `cli` fixture's
    snapshot without reading files (it would read a 6 GB sparse file whole, and wait on a FIFO)."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            entries[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return entries


def refused_unread(cli, *args, names=()) -> str:
    """cli.refused for a working folder holding files it must not read: exit 2, one line naming
    `names`, no traceback, nothing under the working folder created, changed or deleted."""
    before = listing(cli.root)
    code, out, err = cli.run(*args)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("adlab: error: "), (code, err[-2000:])
    assert "Traceback" not in out + err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    assert listing(cli.root) == before
    return lines[0]


def report_text(study: Path) -> tuple[str, str, str]:
    return tuple((study / name).read_text(encoding="utf-8") for name in ("report.md", "report.html", "report.tex"))


# --- damaged metrics.json ---------------------------------------------------------------------------

DAMAGED_METRICS = {
    "accuracy_text": (lambda m: m.update(accuracy="0.97"), "accuracy"),
    "accuracy_list": (lambda m: m.update(accuracy=[0.97]), "accuracy"),
    "accuracy_bool": (lambda m: m.update(accuracy=True), "accuracy"),
    "accuracy_huge_integer": (lambda m: m.update(accuracy=10**400), "accuracy"),
    "ragged_confusion_matrix": (lambda m: m["confusion_matrix"][0].pop(), "confusion_matrix"),
    "confusion_matrix_text": (lambda m: m.update(confusion_matrix="[[1]]"), "confusion_matrix"),
    "confusion_matrix_text_cells": (lambda m: m["confusion_matrix"][0].__setitem__(0, "x"), "confusion_matrix"),
    "confusion_matrix_negative": (lambda m: m["confusion_matrix"][0].__setitem__(0, -1), "confusion_matrix"),
    "confusion_matrix_empty": (lambda m: m.update(confusion_matrix=[]), "confusion_matrix"),
    "integer_class_names": (lambda m: m.update(class_names=list(range(10))), "class_names"),
    "class_names_text": (lambda m: m.update(class_names="0123456789"), "class_names"),
    "per_class_text": (lambda m: m["per_class_accuracy"].update({"3": "high"}), "per_class_accuracy.3"),
    "per_class_list": (lambda m: m.update(per_class_accuracy=[1, 2]), "per_class_accuracy"),
}


@pytest.mark.parametrize("case", DAMAGED_METRICS)
def test_report_refuses_a_damaged_metrics_json_naming_the_key(cli, study, case):
    change, key = DAMAGED_METRICS[case]
    edit_metrics(study / "runs" / "a", change)
    cli.refused("report", "st", names=(str(Path("runs") / "a" / "metrics.json"), f"{key}:"))


@pytest.mark.parametrize(
    "case",
    [
        "accuracy_text",
        "ragged_confusion_matrix",
        "confusion_matrix_text",
        "confusion_matrix_text_cells",
        "integer_class_names",
        "class_names_text",
    ],
)
def test_fuse_refuses_a_damaged_metrics_json_naming_the_key(cli, pair, case):
    change, key = DAMAGED_METRICS[case]
    edit_metrics(pair[1], change)
    cli.refused("fuse", *pair, "--out", "fused", names=(str(pair[1] / "metrics.json"), key))


@pytest.mark.parametrize("value", [float("nan"), None, float("inf"), 1.5])
def test_fuse_refuses_an_accuracy_adlab_never_writes(cli, pair, value):
    edit_metrics(pair[0], lambda m: m.update(accuracy=value))
    cli.refused("fuse", *pair, "--out", "fused", names=(str(pair[0] / "metrics.json"), "accuracy"))


@pytest.mark.parametrize(
    "value, said", [(float("nan"), "accuracy is NaN"), (float("inf"), "accuracy is infinite"), (None, "no accuracy")]
)
def test_a_nan_or_missing_accuracy_is_said_first_and_left_out_of_every_best(cli, study, value, said):
    edit_metrics(study / "runs" / "a", lambda m: m.update(accuracy=value))
    cli.succeeds("report", "st", outputs=("st",))
    md, page, tex = report_text(study)
    summary = md.split("## Summary", 1)[1].split("##", 1)[0]
    first = summary.strip().splitlines()[0]
    assert first.startswith("- a: ") and said in first and "metrics.json" in first, first
    assert "best accuracy" in summary and "by b" in summary  # a's accuracy takes part in nothing
    row = next(line for line in md.splitlines() if line.startswith("| a |"))
    assert row.split("|")[2].strip() in ("nan", "inf", "-")
    assert said in page and said in tex


def test_a_nan_in_another_column_is_said_too_and_never_bold(cli, study):
    edit_metrics(study / "runs" / "b", lambda m: m.update(macro_f1=float("nan")))
    cli.succeeds("report", "st", outputs=("st",))
    md = report_text(study)[0]
    assert "- b: macro\\_f1 is NaN in runs/b/metrics.json" in md or "- b: macro_f1 is NaN in runs/b/metrics.json" in md
    header = next(line for line in md.splitlines() if line.startswith("| run |")).split("|")
    column = [c.strip() for c in header].index("macro_f1")
    cells = [line.split("|")[column].strip() for line in md.splitlines() if line.startswith(("| a |", "| b |"))]
    assert cells[1] == "nan" and "**" not in cells[0]  # a is the only number left: nothing to be best against


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[1, 2]", "JSON object"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ('{"accuracy": 0.9', "not valid JSON"),
        ("\x00\x01", "NUL"),
    ],
)
@pytest.mark.parametrize("command", ["report", "table", "fuse"])
def test_a_metrics_json_that_is_no_object_is_one_line_everywhere(cli, study, command, text, problem):
    (study / "runs" / "a" / "metrics.json").write_text(text)
    runs = [study / "runs" / "a", study / "runs" / "b"]
    args = {
        "report": ["report", "st"],
        "table": ["table", *runs, "--metrics", "accuracy"],
        "fuse": ["fuse", *runs, "--out", "fused"],
    }[command]
    line = cli.refused(*args, names=("metrics.json",))
    assert problem in line


# --- memory bombs and files that are no files ---------------------------------------------------------


@pytest.mark.parametrize("name", ["metrics.json", "predictions.csv", "history.csv"])
@pytest.mark.parametrize("command", ["report", "table", "fuse"])
def test_a_6_gb_sparse_run_file_is_refused_before_it_is_read(cli, study, command, name):
    sparse(study / "runs" / "b" / name)
    runs = [study / "runs" / "a", study / "runs" / "b"]
    args = {
        "report": ["report", "st"],
        "table": ["table", *runs, "--metrics", "accuracy"],
        "fuse": ["fuse", *runs, "--out", "fused"],
    }[command]
    if command == "table" and name != "metrics.json" or command == "fuse" and name == "history.csv":
        code, _, err = cli.run(*args)  # a file the command does not read
        assert code == 0 and err == "", err
        return
    line = refused_unread(cli, *args, names=(name, "6,442,450,944 bytes", "too large"))
    assert "at most" in line


@pytest.mark.parametrize("name", ["metrics.json", "predictions.csv", "history.csv"])
def test_a_run_file_linked_to_dev_zero_or_a_fifo_is_refused_not_read_forever(cli, study, name):
    for kind in ("dev_zero", "fifo"):
        path = study / "runs" / "a" / name
        path.unlink()
        if kind == "dev_zero":
            path.symlink_to("/dev/zero")
        else:
            os.mkfifo(path)
        refused_unread(cli, "report", "st", names=(name, "not a regular file"))
    if name != "history.csv":
        refused_unread(
            cli,
            "fuse",
            study / "runs" / "a",
            study / "runs" / "b",
            "--out",
            "fused",
            names=(name, "not a regular file"),
        )


# --- predictions.csv and history.csv -------------------------------------------------------------------

BINARY = {
    "random": os.urandom(4096),
    "nul": b"index,y_true,y_pred,p_0\n\x00\x00\x00\n",
    "latin1": "index,y_true,y_pred,p_0,p_1\n0,1,1,0.5,0.5\né\n".encode("latin-1"),
}


@pytest.mark.parametrize("kind", BINARY)
@pytest.mark.parametrize("command", ["report", "fuse"])
def test_a_binary_predictions_csv_is_one_line(cli, study, command, kind):
    (study / "runs" / "b" / "predictions.csv").write_bytes(BINARY[kind])
    args = (
        ["report", "st"]
        if command == "report"
        else ["fuse", study / "runs" / "a", study / "runs" / "b", "--out", "fused"]
    )
    line = cli.refused(*args, names=("predictions.csv",))
    assert "text" in line


@pytest.mark.parametrize(
    "text, problem",
    [
        ("index,y_true,y_pred,p_0,p_1\n", "no rows"),
        ("index,y_true,y_pred,p_0,p_1\n0,nan,1,0.5,0.5\n", "finite"),
        ("index,y_true,y_pred,p_0,p_1\n0,1\n", "different lengths"),
        ("a,b\n1,2\n", "index, y_true, y_pred"),
    ],
)
def test_report_refuses_a_malformed_predictions_csv(cli, study, text, problem):
    (study / "runs" / "a" / "predictions.csv").write_text(text)
    line = cli.refused("report", "st", names=("predictions.csv",))
    assert problem in line


def test_a_diverged_history_is_drawn_without_warnings(cli, study):
    """inf and NaN losses are what a diverged run writes: the report is made, the points left out of the
    curves, and nothing (no numpy warning) is printed on stderr."""
    (study / "runs" / "a" / "history.csv").write_text(
        "epoch,train_loss,val_loss,val_accuracy\n1,inf,1.0,0.5\n2,nan,-inf,0.6\n3,0.5,0.6,inf\n"
    )
    code, out, err = cli.run("report", "st")
    assert code == 0 and err == "", err
    assert (study / "figures" / "classify_losses.png").is_file()


@pytest.mark.parametrize(
    "text, problem",
    [
        (",".join(["epoch"] + [f"c{i}" for i in range(5000)]) + "\n" + ",".join(["1"] * 5001) + "\n", "5,001 columns"),
        ("epoch,train_loss\n1,0.5\n2\n", "different lengths"),
        ("epoch,train_loss,train_loss\n1,0.5,0.4\n", "repeated column"),
        ("epoch,train_loss\n1,high\n", "numeric"),
        ("epoch,train_loss\n,0.5\n", "epoch"),
        ("epoch,train_loss\n1,0.5\n\x00", "NUL"),
    ],
)
def test_report_refuses_a_damaged_history_csv(cli, study, text, problem):
    (study / "runs" / "b" / "history.csv").write_text(text)
    line = cli.refused("report", "st", names=("history.csv",))
    assert problem in line


# --- adlab table -------------------------------------------------------------------------------------


def test_table_refuses_a_metric_that_is_not_a_number_and_shows_nan_as_nan(cli, pair):
    edit_metrics(pair[0], lambda m: m.update(accuracy="0.97"))
    cli.refused("table", *pair, "--metrics", "accuracy", names=("metrics.json", "accuracy", "str"))
    edit_metrics(pair[0], lambda m: m["per_class_accuracy"].update({"3": [1]}))
    cli.refused("table", *pair, "--metrics", "per_class_accuracy", names=("per_class_accuracy.3",))
    edit_metrics(pair[0], lambda m: m.update(accuracy=float("nan")))
    out = cli.succeeds("table", *pair, "--metrics", "accuracy")
    assert "| run_a | nan |" in out


def test_table_escapes_run_and_column_names_for_markdown(cli, pair):
    odd = cli.root / "*x*_[y](z)"
    pair[0].rename(odd)
    edit_metrics(odd, lambda m: m["per_class_accuracy"].update({"c|d": 0.5}))
    out = cli.succeeds("table", odd, pair[1], "--metrics", "per_class_accuracy.c|d")
    assert "| \\*x\\*\\_[y]\\(z) |" in out and "per\\_class\\_accuracy.c\\|d" not in out  # intraword _ stays
    assert "per_class_accuracy.c\\|d" in out


# --- hostile names -----------------------------------------------------------------------------------


def test_mathtext_names_are_drawn_as_written(cli, pair):
    """'f$^$' passes the name sanitiser; as a class name or a fusion name it must not reach
    matplotlib's mathtext (which fails on it)."""
    for run in pair:
        edit_metrics(run, lambda m: m.update(class_names=["f$^$"] + m["class_names"][1:]))
    cli.succeeds("fuse", *pair, "--out", "f$^$", outputs=("f$^$",))
    assert (cli.root / "f$^$" / "figures" / "confusion_matrix.png").is_file()
    metrics = json.loads((cli.root / "f$^$" / "metrics.json").read_text())
    assert metrics["class_names"][0] == "f$^$"  # escaped only where drawn


def test_mathtext_names_as_variants_fusions_and_classes_in_a_report(cli, digits_run, digits_run_b):
    out = make_study(
        cli,
        (digits_run, digits_run_b),
        "variants: {f$^$: {}, b: {train.seed: 1}}\nseeds: null\nfusion: [{name: 'g$_$', runs: ['f$^$', b]}]\n",
        names=("f$^$", "b"),
    )
    for name in ("f$^$", "b"):
        edit_metrics(out / "runs" / name, lambda m: m.update(class_names=["$\\frac$"] + m["class_names"][1:]))
    cli.succeeds("fuse", out / "runs" / "f$^$", out / "runs" / "b", "--out", out / "runs" / "g$_$", outputs=("st",))
    cli.succeeds("report", "st", outputs=("st",))
    md = (out / "report.md").read_text()
    assert "Not finished" not in md and "| f$^$ |" in md and "| g$\\_$ |" in md


HOSTILE = ["_[x](y)_", "&amp;#{%}^~$", "``a``", "[x]", "~~s~~", "#h", "a b", "résumé&co", "f$^$"]


def test_names_with_markup_specials_are_shown_as_written_in_every_format(cli, digits_run, digits_run_b):
    variants = "variants: {" + ", ".join(json.dumps(n) + ": {}" for n in HOSTILE) + "}\n"
    out = make_study(cli, [digits_run] * len(HOSTILE), variants, names=HOSTILE)
    edit_metrics(
        out / "runs" / HOSTILE[0],
        lambda m: m.update(
            class_names=["<b>&c", "|x|", "\\input{/etc/hostname}", *m["class_names"][3:]],
            per_class_accuracy={"<b>&c": 1.0, "|x|": 0.5},
        ),
    )
    cli.succeeds("report", "st", outputs=("st",))
    md, page, tex = report_text(out)
    # HTML: every name is text, exactly as written (no element made from it)
    texts = _html_texts(page)
    for name in HOSTILE + ["<b>&c", "|x|"]:
        assert any(name in t for t in texts), name
    assert "<b>&c" not in page and "&lt;b&gt;&amp;c" in page
    # Markdown: each runs-table row has its 8 cells (no '|' leaked) and the names escaped
    lines = md.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| run |")))
    table = lines[start : lines.index("", start)]
    assert len(table) == 2 + len(HOSTILE)
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 9 for row in table), table
    assert "| \\_[x]\\(y)\\_ |" in md and "\\&amp;#{%}^~$" in md
    assert "| a b |" in md and "| résumé&co |" in md
    # LaTeX: specials as commands, \input printed not run
    assert "\\textbackslash{}input\\{/etc/hostname\\}" in tex or "input" not in tex.split("\\begin{document}")[1]
    assert "\\&amp;\\#\\{\\%\\}\\textasciicircum{}\\textasciitilde{}\\$" in tex
    if shutil.which("pdflatex"):
        log = _pdflatex(out)
        assert "/etc/hostname" not in log


def _html_texts(page: str) -> list[str]:
    texts: list[str] = []

    class Texts(html.parser.HTMLParser):
        def handle_starttag(self, tag, attrs):
            assert tag in {
                "html",
                "head",
                "meta",
                "title",
                "style",
                "body",
                "h1",
                "h2",
                "h3",
                "h4",
                "p",
                "ul",
                "li",
                "div",
                "table",
                "thead",
                "tbody",
                "tr",
                "th",
                "td",
                "strong",
                "wbr",
                "figure",
                "img",
                "figcaption",
            }, tag

        def handle_data(self, data):
            texts.append(data)

    Texts(convert_charrefs=True).feed(page)
    return texts


def _pdflatex(folder: Path) -> str:
    """report.tex compiled without shell escape (as a student would); its log on one line. Fails on any error."""
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "report.tex"],
        cwd=folder,
        capture_output=True,
        timeout=120,
    )
    log = (folder / "report.log").read_text(encoding="utf-8", errors="replace")
    assert result.returncode == 0, "\n".join(line for line in log.splitlines() if line.startswith("!"))[:2000]
    return log.replace("\n", "")  # TeX wraps its log at 79 characters


@pytest.mark.skipif(not shutil.which("pdflatex"), reason="pdflatex not installed")
def test_report_tex_with_a_hebrew_and_emoji_title_compiles_and_reads_no_file(cli, study):
    text = (study / "study.yaml").read_text(encoding="utf-8")
    (study / "study.yaml").write_text(
        "name: 'מחקר 😀 ü'\n" + text + "sections:\n  '\\input{/etc/hostname} \\write18{touch pwned} %{#': [a]\n"
        "  'שלום ^^5cinput': [b]\n"
        "reference:\n  source: '\\openin\\x=/etc/hostname \\include{/etc/hostname} ^^5cinput{/etc/hostname}'\n"
        '  runs: {a: {accuracy: 97.0}}\n  note: "line one\\n\\nline two"\n',
        encoding="utf-8",
    )
    cli.succeeds("report", "st", outputs=("st",))
    tex = (study / "report.tex").read_text(encoding="utf-8")
    assert "\\fbox{\\scriptsize U+05DE}" in tex and "\\fbox{\\scriptsize U+1F600}" in tex and "ü" in tex
    log = _pdflatex(study)
    assert "/etc/hostname" not in log and not (study / "pwned").exists()
    pdf = (study / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")


@pytest.mark.skipif(not shutil.which("pdflatex"), reason="pdflatex not installed")
def test_report_tex_compiles_with_run_folders_named_with_tex_specials(cli, digits_run):
    names = ["p%q", "x#y", "c{d", "e}f", "t~u", "d$e", "[s]", "x}^^5cinput^^7b^^2fetc^^2fhostname^^7d", "a b"]
    variants = "variants: {" + ", ".join(json.dumps(n) + ": {}" for n in names) + "}\n"
    out = make_study(cli, [digits_run] * len(names), variants, names=names)
    cli.succeeds("report", "st", outputs=("st",))
    log = _pdflatex(out)
    assert "/etc/hostname" not in log


# --- study files: sections, variants, references --------------------------------------------------------


def test_variant_names_are_kept_exactly_not_rewritten(cli, digits_run, digits_run_b):
    from adlab.study.spec import load_study

    out = make_study(
        cli,
        (digits_run, digits_run_b),
        "variants: {'a b': {}, 'résumé&co': {train.seed: 1}}\n",
        names=("a b", "résumé&co"),
    )
    assert [r.name for r in load_study(out / "study.yaml", check_configs=False).runs] == ["a b", "résumé&co"]
    cli.succeeds("report", "st", outputs=("st",))
    md = (out / "report.md").read_text()
    assert "Not finished" not in md and "| a b |" in md and "| résumé&co |" in md


@pytest.mark.parametrize("name", ["a/b", "../x", "a|b", ".hidden", "x" * 200, " a"])
def test_an_unsafe_variant_name_is_refused_naming_the_study_file_and_the_name(cli, name):
    path = cli.root / "s.yaml"
    path.write_text("config: {data: {name: digits}}\nvariants: {" + json.dumps(name) + ": {}}\n")
    line = cli.refused("study", path, "--plan", names=(str(path), "variants"))
    assert name[:20].strip() in line or "bytes" in line


def test_long_multiline_and_markdown_section_titles_are_escaped_and_kept_apart(cli, study):
    long = "L" * 300
    text = (study / "study.yaml").read_text()
    (study / "study.yaml").write_text(
        text + f"sections:\n  {long}: [a]\n  \"# x\\n- y | z\": [b]\n  '# X - Y | Z': [a, b]\n"
    )
    cli.succeeds("report", "st", outputs=("st",))
    md = (study / "report.md").read_text()
    assert f"## {long}\n" in md
    assert "## \\# x - y \\| z\n" in md  # one line: no list item, no heading mark read as such
    assert all(len(p.name.encode()) < 120 for p in (study / "figures").iterdir())
    confusion = sorted(p.name for p in (study / "figures").glob("*_confusion.png"))
    assert len(confusion) == 3, confusion  # 'x y z' and 'X Y Z' make the same slug: two files, not one


def test_one_finished_run_is_one_run(cli, study):
    shutil.rmtree(study / "runs" / "b")
    cli.succeeds("report", "st", outputs=("st",))
    md = (study / "report.md").read_text()
    assert "1 finished run in" in md and "1 finished runs" not in md


@pytest.mark.parametrize(
    "reference, key",
    [
        ("  source: x\n  runs: {a: {accuracy: .nan}}\n", "reference"),
        ("  source: x\n  runs: {zz: {accuracy: 90}}\n", "reference.runs"),
        ("  source: x\n  runs: {a: {accuracy: '90'}}\n", "reference"),
        ("  source: [x]\n  runs: {a: {accuracy: 90}}\n", "reference.source"),
        ("  source: x\n  scale: permille\n  runs: {a: {accuracy: 90}}\n", "reference.scale"),
    ],
)
def test_a_hostile_reference_block_is_one_line(cli, study, reference, key):
    text = (study / "study.yaml").read_text()
    (study / "study.yaml").write_text(text + "reference:\n" + reference)
    cli.refused("report", "st", names=("study.yaml", key))


def test_reference_text_with_markup_is_shown_as_written(cli, study):
    text = (study / "study.yaml").read_text()
    (study / "study.yaml").write_text(
        text + 'reference:\n  source: "<script>x</script> [a]: http://e | *b*"\n'
        "  runs: {a: {accuracy: 1.0e+308, 'p|q': 1}}\n  note: \"# n\\n- m\"\n"
    )
    cli.succeeds("report", "st", outputs=("st",))
    md, page, tex = report_text(study)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "\\<script>x\\</script> [a]: http://e \\| \\*b\\*" in md and "\n\\# n - m\n" in md
    assert "| a | p\\|q |" in md


@pytest.mark.skipif(not shutil.which("pdflatex"), reason="pdflatex not installed")
def test_gallery_figures_of_run_folders_with_tex_specials_are_included_and_read_no_other_file(tmp_path):
    """Autoencoder and detection reports show each run's own figures (runs/NAME/figures/x.png): the
    path in report.tex is the folder's name character for character, never a comment (%), a group
    ({ }) or a command (^^5c is a backslash to TeX)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adlab.study.blocks import Figure, Gallery
    from adlab.study.render import render_tex

    names = ["p%q", "x#y", "c{d", "e}f", "t~u", "d$e", "[s]", "a b", "é&ü", "x}^^5cinput^^7b^^2fetc^^2fhostname^^7d"]
    for name in names:
        folder = tmp_path / "runs" / name / "figures"
        folder.mkdir(parents=True)
        fig = plt.figure(figsize=(1, 1))
        fig.savefig(folder / "x.png")
        plt.close(fig)
    blocks = [Gallery([Figure(Path("runs") / name / "figures" / "x.png", name, wide=False) for name in names], "odd")]
    (tmp_path / "report.tex").write_text(render_tex(blocks, "t", tmp_path), encoding="utf-8")
    flat = _pdflatex(tmp_path)
    assert "/etc/hostname" not in flat
    for name in names:
        assert f"<runs/{name}/figures/x.png" in flat or f"<./runs/{name}/figures/x.png" in flat, name
