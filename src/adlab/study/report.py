"""The study report: summary.csv, report.md and one self-contained report.html.

Both documents are rendered from the same list of blocks (headings, paragraphs, tables, figures),
so they always say the same thing. Every user-given string is escaped in the HTML.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from adlab import io
from adlab.errors import DataError
from adlab.rundir import flat_metrics, read_history
from adlab.study import stats
from adlab.tasks import TASKS, get_task

SIGNIFICANCE_LEVEL = 0.05


@dataclass
class Heading:
    level: int  # 1, 2, 3
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list]
    bold: list[list[bool]]  # which cells hold their column's best value


@dataclass
class Figure:
    path: Path  # relative to the study folder
    caption: str


Block = Heading | Paragraph | Table | Figure


@dataclass
class RunResult:
    name: str
    group: str
    seed: int | None
    task: str
    path: Path
    metrics: dict


def collect(out: Path, study) -> list[RunResult]:
    """Finished runs of the study, planned runs first, then fusions."""
    results = []
    planned = [(r.name, r.group, r.seed) for r in study.runs]
    for step in study.spec.fusion:
        for seed in study.spec.seeds or [None]:
            planned.append((step.name + ("" if seed is None else f"-seed={seed}"), step.name, seed))
    for name, group, seed in planned:
        path = out / "runs" / name
        if not (path / "metrics.json").is_file():
            continue
        config = io.read_yaml_mapping(path / "config.yaml", "run config", DataError)
        task = "classify" if config.get("task") == "fuse" else config.get("task", "classify")  # a fused run
        if task not in TASKS:
            raise DataError(f"{path / 'config.yaml'}: unknown task {str(task)[:40]!r}")
        results.append(RunResult(name, group, seed, task, path, io.read_json_mapping(path / "metrics.json",
                                                                                      "metrics file")))
    return results


def write_report(out: Path, study, sections: list[tuple[str, list[str]]] | None = None) -> Path:
    """sections: (title, run names) to report separately; default one section with every run."""
    out = Path(out)
    results = collect(out, study)
    for r in results:  # every run file is read (and checked) before the first report file is written
        _predictions(r)
        read_history(r.path / "history.csv")
    _write_summary_csv(out / "summary.csv", results)
    blocks = build_blocks(out, study, results, sections)
    io.write_text(out / "report.md", render_markdown(blocks))
    io.write_text(out / "report.html", render_html(blocks, study.name, out))
    return out / "report.md"


def _write_summary_csv(path: Path, results: list[RunResult]) -> None:
    keys = []
    for r in results:
        for key, value in r.metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in keys:
                keys.append(key)
    rows = ([r.name, r.group, "" if r.seed is None else r.seed, r.task] + [r.metrics.get(k, "") for k in keys]
            for r in results)
    io.write_csv(path, ["run", "group", "seed", "task", *keys], rows)


# --- content ---------------------------------------------------------------------------------------

def build_blocks(out: Path, study, results: list[RunResult],
                 sections: list[tuple[str, list[str]]] | None = None) -> list[Block]:
    blocks: list[Block] = [Heading(1, f"Study: {study.name}")]
    blocks.append(Paragraph(f"{len(results)} finished runs in {out.name}/runs. Study file: {study.path.name}. "
                        f"Best value per column in bold."))
    if not results:
        return blocks + [Paragraph("No finished runs yet.")]
    for title, names in sections or [("", [r.name for r in results])]:
        chosen = [r for r in results if r.name in names]
        if title:
            blocks.append(Heading(2, title))
        for task in [t for t in TASKS if any(r.task == t for r in chosen)]:
            blocks += _task_blocks(out, task, [r for r in chosen if r.task == task], study, title)
    if getattr(study.spec, "reference", None):
        blocks += _reference_blocks(study.spec.reference, results)
    return blocks


def _reference_blocks(reference, results: list[RunResult]) -> list[Block]:
    """The published figures beside adlab's, and whether each lies outside adlab's own seed-to-seed spread."""
    scale = 100.0 if reference.scale == "percent" else 1.0
    digits = 2 if reference.scale == "percent" else 4  # an MSE of 0.021 needs its decimals
    unit = " (percent)" if reference.scale == "percent" else ""
    groups = _groups(results)
    rows, unknown_spread = [], False
    for group, figures in reference.runs.items():
        for key, published in figures.items():
            values = [flat_metrics(m.metrics).get(key) for m in groups.get(group, [])]
            values = [v * scale for v in values if isinstance(v, (int, float))]
            if not values:
                rows.append([group, key, f"{published:.{digits}f}", "not measured", "", "", ""])
                continue
            mean = float(np.mean(values))
            spread = stats.single_run_range(values)
            if spread is None:
                unknown_spread = True
                verdict, shown = "one seed: unknown", ""
            elif spread[0] == spread[1]:  # every seed gave the same figure: no spread to judge by
                verdict, shown = "no spread across seeds", f"[{spread[0]:.{digits}f}, {spread[1]:.{digits}f}]"
            else:
                verdict = "outside" if not spread[0] <= published <= spread[1] else "inside"
                shown = f"[{spread[0]:.{digits}f}, {spread[1]:.{digits}f}]"
            rows.append([group, key, f"{published:.{digits}f}",
                         f"{mean:.{digits}f}" + (f" (n={len(values)})" if len(values) > 1 else ""),
                         f"{mean - published:+.{digits}f}", shown, verdict])
    text = (f"Source: {reference.source}. The published figure beside adlab's{unit}: adlab's mean over seeds, "
            "the difference adlab - published, and the range where one more adlab run would land with 95% "
            "probability (a t prediction interval from the seeds). 'outside': the published figure is not within "
            "adlab's own seed-to-seed spread, so the difference is more than chance of the seed.")
    if unknown_spread:
        text += " With one seed the spread is unknown: add `seeds: [0, 1, 2]` to the study to judge the differences."
    blocks: list[Block] = [Heading(2, "Against the published figures"), Paragraph(text),
                           Table(["run", "metric", "published", "adlab", "difference", "adlab 95% range",
                                  "published figure vs adlab's spread"], rows, [[False] * 7 for _ in rows])]
    if reference.note:
        blocks.append(Paragraph(reference.note))
    return blocks


def _task_blocks(out: Path, task: str, results: list[RunResult], study, section: str = "") -> list[Block]:
    tag = _slug(section) + "_" if section else ""
    spec = get_task(task).report
    columns = [(k, better) for k, better in spec.columns if any(k in r.metrics for r in results)]
    level = 3 if section else 2
    blocks: list[Block] = [Heading(level, spec.title)]
    header = ["run", *[k for k, _ in columns]]
    rows = [[r.name, *[r.metrics.get(k) for k, _ in columns]] for r in results]
    blocks.append(Table(header, rows, _best_mask(rows, [None, *[b for _, b in columns]])))
    if spec.per_class:
        blocks += _per_class_blocks(spec.per_class, results)
    groups = _groups(results)
    if any(len(members) > 1 for members in groups.values()):
        blocks.append(Heading(3, "Across seeds (mean ± std, 95% interval of the mean)"))
        main = columns[0][0]
        srows = []
        for group, members in groups.items():
            values = [m.metrics[main] for m in members if m.metrics.get(main) is not None]
            if values:
                s = stats.summarize(values)
                srows.append([group, s.n, s.mean, s.std, f"[{s.ci_low:.4f}, {s.ci_high:.4f}]"])
        blocks.append(Table(["variant", "seeds", f"{main} mean", "std", "95% interval"], srows,
                       _best_mask(srows, [None, None, columns[0][1], None, None])))
        blocks.append(Figure(_bar_chart(out, f"{tag}{task}", main, groups, columns[0][1]),
                       f"{main} by variant (error bars: std)"))
    if spec.paired_test and len(groups) > 1:
        blocks += _significance_blocks(groups)
    curve = _curves(out, task, results, tag)
    if curve:
        blocks.append(Figure(curve, f"validation {spec.curve} per epoch"))
    blocks.append(Heading(3, "Figures"))
    for r in results:
        if r.seed not in (None, (study.spec.seeds or [None])[0]):
            continue
        for name in spec.figures:
            figure = r.path / "figures" / name
            if figure.is_file():
                blocks.append(Figure(figure.relative_to(out), f"{r.name}: {name.removesuffix('.png')}"))
    return blocks


def _per_class_blocks(key: str, results: list[RunResult]) -> list[Block]:
    """One column per class (the seeds' table C): where the headline hides a class the model never gets."""
    classes = list(dict.fromkeys(name for r in results if isinstance(r.metrics.get(key), dict)
                                 for name in r.metrics[key]))
    if not classes or len(classes) > 30:  # a table too wide to read: metrics.json keeps them all
        return []
    rows = [[r.name, *[(r.metrics.get(key) or {}).get(name) for name in classes]] for r in results]
    return [Heading(3, key.replace("_", " ").capitalize()),
            Table(["run", *classes], rows, _best_mask(rows, [None, *["max"] * len(classes)]))]


def _groups(results: list[RunResult]) -> dict[str, list[RunResult]]:
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    return groups


def _best_mask(rows: list[list], betters: list[str | None]) -> list[list[bool]]:
    """Which cells hold the best value of their column ('max', 'min', or None: no highlight)."""
    mask = [[False] * len(row) for row in rows]
    for j, better in enumerate(betters):
        if better is None:
            continue
        values = [row[j] for row in rows if isinstance(row[j], (int, float))]
        if not values:
            continue
        best = max(values) if better == "max" else min(values)
        for i, row in enumerate(rows):
            mask[i][j] = isinstance(row[j], (int, float)) and row[j] == best
    return mask


def _predictions(run: RunResult) -> np.ndarray | None:
    """(y_true, y_pred) columns of a run's predictions.csv."""
    path = run.path / "predictions.csv"
    if not path.is_file():
        return None
    try:
        return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, usecols=(1, 2))
    except (ValueError, IndexError):
        raise DataError(f"{path}: malformed predictions (expected numeric columns index, y_true, y_pred, ...)") from None


def _significance_blocks(groups: dict[str, list[RunResult]]) -> list[Block]:
    """For each set of variants scored on the same test images: the best against each other one,
    paired by seed."""
    preds = {m.name: _predictions(m) for members in groups.values() for m in members}
    clusters: dict[bytes, list[str]] = {}
    for group, members in groups.items():
        p = preds[members[0].name]
        if p is not None:
            clusters.setdefault(p[:, 0].tobytes(), []).append(group)
    blocks: list[Block] = []
    for names in clusters.values():
        if len(names) > 1:
            blocks += _compare_with_best({g: groups[g] for g in names}, preds)
    return blocks


def _compare_with_best(groups: dict[str, list[RunResult]], preds: dict) -> list[Block]:
    def mean_accuracy(members):
        return float(np.mean([m.metrics["accuracy"] for m in members]))

    best = max(groups, key=lambda g: mean_accuracy(groups[g]))
    rows = []
    for group, members in groups.items():
        if group == best:
            continue
        vectors = []
        for a in groups[best]:
            for b in members:
                pa, pb = preds[a.name], preds[b.name]
                # paired tests need the same test images: same length and the same true labels in order
                if a.seed == b.seed and pa is not None and pb is not None and pa.shape == pb.shape \
                        and np.array_equal(pa[:, 0], pb[:, 0]):
                    vectors.append((pa[:, 0] == pa[:, 1], pb[:, 0] == pb[:, 1]))
        if not vectors:
            continue
        right_best = np.concatenate([x for x, _ in vectors])
        right_other = np.concatenate([y for _, y in vectors])
        test = stats.mcnemar_exact(right_best, right_other)
        boot = stats.paired_bootstrap(stats.accuracy_difference(right_best, right_other), len(right_best),
                                      resamples=1000)
        significant = test.p_value < SIGNIFICANCE_LEVEL and boot.significant
        rows.append([group, f"{boot.difference:+.4f}", f"[{boot.ci_low:+.4f}, {boot.ci_high:+.4f}]",
                     f"{test.only_a_correct} / {test.only_b_correct}", f"{test.p_value:.3g}",
                     "yes" if significant else "no"])
    if not rows:
        return []
    return [Heading(3, f"Is the best variant ({best}) really better?"),
            Paragraph("Accuracy difference best - variant on the same test images (paired by seed), its 95% paired "
                  "bootstrap interval, the discordant pairs (only best right / only variant right) and McNemar's "
                  f"exact p-value. Significant: p < {SIGNIFICANCE_LEVEL} and an interval excluding 0."),
            Table(["variant", "difference", "95% interval", "discordant", "p (McNemar)", "significant"], rows,
             [[False] * 6 for _ in rows])]


def _bar_chart(out: Path, task: str, key: str, groups: dict, better: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adlab.io import save_figure

    names = list(groups)
    values = [[m.metrics[key] for m in groups[g] if m.metrics.get(key) is not None] for g in names]
    means = [np.mean(v) if v else np.nan for v in values]
    errs = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 3.6))
    ax.bar(range(len(names)), means, yerr=errs, capsize=4, color="#4c72b0")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    low = np.nanmin([m - e for m, e in zip(means, errs)])
    high = np.nanmax([m + e for m, e in zip(means, errs)])
    pad = (high - low) * 0.5 + 1e-3
    ax.set_ylim(max(0.0, low - pad) if better == "max" else 0.0, high + pad)
    ax.set(ylabel=key, title=f"{key} ({'higher' if better == 'max' else 'lower'} is better)")
    ax.grid(axis="y", alpha=0.3)
    path = out / "figures" / f"{task}_{key}_bars.png"
    save_figure(fig, path)
    return path.relative_to(out)


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _curves(out: Path, task: str, results: list[RunResult], tag: str = "") -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adlab.io import save_figure

    key = get_task(task).report.curve
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for r in results:
        rows = read_history(r.path / "history.csv")
        points = [(row["epoch"], row.get(key)) for row in rows if row.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", ms=2.5, lw=1.2, label=r.name)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="epoch", ylabel=key, title=f"Validation {key}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    path = out / "figures" / f"{tag}{task}_{key}_curves.png"
    save_figure(fig, path)
    return path.relative_to(out)


# --- rendering -------------------------------------------------------------------------------------

def _cell(value, column: str = "") -> str:
    from adlab.formatting import format_number  # the one number format (also adlab table, run summaries)

    return format_number(value, column)


def render_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + _md_escape(block.text), ""]
        elif isinstance(block, Paragraph):
            lines += [_md_escape(block.text), ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_md_escape(h) for h in block.header) + " |")
            lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(block.header))) + "|")
            for row, bold in zip(block.rows, block.bold):
                cells = [(f"**{_md_escape(_cell(v, h))}**" if b else _md_escape(_cell(v, h)))
                         for v, b, h in zip(row, bold, block.header)]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        elif isinstance(block, Figure):
            lines += [f"![{_md_escape(block.caption)}]({quote(Path(block.path).as_posix(), safe='/=,+')})", ""]
    return "\n".join(lines)


def _md_escape(text) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_html(blocks: list[Block], title: str, root: Path) -> str:
    e = html.escape
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{e(str(block.text))}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{e(str(block.text))}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{e(str(h))}</th>" for h in block.header)
            trs = []
            for row, bold in zip(block.rows, block.bold):
                cells = "".join(f"<td>{'<strong>' if b else ''}{e(_cell(v, h))}{'</strong>' if b else ''}</td>"
                                for v, b, h in zip(row, bold, block.header))
                trs.append(f"<tr>{cells}</tr>")
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(trs)}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode((root / block.path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{e(str(block.caption))}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{e(str(block.caption))}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:14px}"
             "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}"
             "figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:13px}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def rerender(out: str | Path) -> Path:
    """`adlab report DIR`: the report again from a study folder's runs (e.g. after more finished)."""
    from adlab.errors import AdlabError
    from adlab.study.spec import load_study, section_runs

    from adlab import ownership

    out = Path(out)
    if not (out / "study.yaml").is_file() or ownership.marker_kind(out) not in ("study", "demo", None):
        raise AdlabError(f"{out}: not a study folder (no study.yaml)")
    study = load_study(out / "study.yaml", check_configs=False)
    return write_report(out, study, sections=section_runs(study))
