"""What the study report says: per section and task, the runs table, pivots over the study's axes,
seeds, paired tests, per-class accuracy and figures; and at the top, a summary in sentences (the best
variant of each section and whether it is significantly better, runs that collapsed or did not finish).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adlab.formatting import plural
from adlab.rundir import flat_metrics
from adlab.study import report_figures as figures
from adlab.study import stats
from adlab.study.blocks import Block, Bullets, Figure, Gallery, Heading, Paragraph, Table
from adlab.study.spec import grid_axes
from adlab.study.stats import finite_number
from adlab.tasks import TASKS, get_task

SIGNIFICANCE_LEVEL = 0.05
# per-image measures that are not the metric they stand for (mAP has no per-image value)
MEASURES = {
    "found50": "the share of each image's objects found (IoU >= 0.5, confidence >= 0.25)",
    "iou": "each test image's mean IoU over the classes in its true or predicted mask",
}
COLLAPSE_SHARE = 0.9  # a classifier that gives one class to this share of the test images has collapsed


def build_blocks(
    out: Path,
    study,
    results: list,
    sections: list[tuple[str, list[str]]] | None = None,
    missing: list[str] | None = None,
) -> list[Block]:
    intro = (
        f"{plural(len(results), 'finished run')} in {out.name}/runs, from the study file {study.path.name}. "
        "In the tables, bold marks a column's single best value."
    )
    if not results:
        return [Heading(1, f"Study: {study.name}"), Paragraph(intro), Paragraph("No finished runs yet.")]
    summary: list[str] = not_a_number(out, results)
    body: list[Block] = []
    tags: set[str] = set()
    for title, names in sections or [("", [r.name for r in results])]:
        chosen = [r for r in results if r.name in names]
        if title:
            body.append(Heading(2, title))
        tag = _unique(_slug(title)[:40] or "section", tags) if title else ""
        for task in [t for t in TASKS if any(r.task == t for r in chosen)]:
            blocks, findings = _task_blocks(out, task, [r for r in chosen if r.task == task], study, title, tag)
            body += blocks
            label = title or get_task(task).report.title
            summary += [f"{label}: {finding}" for finding in findings]
    if missing:
        summary.append(
            f"Not finished: {', '.join(missing)} (no metrics.json; adlab study --resume or "
            "--workers continues the study, --status tells why)."
        )
    settings = study.settings_said() if hasattr(study, "settings_said") else ""
    head: list[Block] = [Heading(1, f"Study: {study.name}"), Paragraph(intro + (" " + settings if settings else ""))]
    if summary:
        head += [Heading(2, "Summary"), Bullets(summary)]
    if getattr(study.spec, "reference", None):
        body += reference_blocks(study.spec.reference, results, settings)
    return head + body


# --- one task's runs in one section ----------------------------------------------------------------


def not_a_number(out: Path, results: list) -> list[str]:
    """The summary's first sentences: each run whose metrics.json holds NaN or infinity in a column
    of the report (adlab writes a missing value as null: a damaged file or a diverged run), or no
    value for its headline metric. Such values are shown as they are and left out of every mean,
    best value and test, and the report says so before anything else."""
    said = []
    for r in results:
        spec = get_task(r.task).report
        odd = [k for k, _ in spec.columns if isinstance(r.metrics.get(k), float) and not math.isfinite(r.metrics[k])]
        absent = [k for k in spec.summary_keys if r.metrics.get(k) is None]
        where = (r.path / "metrics.json").relative_to(out) if r.path.is_relative_to(out) else r.path / "metrics.json"
        if odd:
            values = ", ".join(f"{k} is {_nan_text(r.metrics[k])}" for k in odd)
            said.append(
                f"{r.name}: {values} in {where} (not a number: a damaged file or a diverged run); left out "
                "of the means, best values and tests."
            )
        if absent:
            said.append(f"{r.name}: no {', '.join(absent)} in {where}; left out of the means, best values and tests.")
    return said


def _nan_text(value: float) -> str:
    return "NaN" if math.isnan(value) else ("infinite" if value > 0 else "minus infinite")


def _unique(tag: str, taken: set[str]) -> str:
    """`tag`, or `tag` with a number when an earlier section took it (two titles with the same slug)."""
    name, n = tag, 1
    while name in taken:
        n += 1
        name = f"{tag}_{n}"
    taken.add(name)
    return name


def _task_blocks(
    out: Path, task: str, results: list, study, section: str = "", section_tag: str = ""
) -> tuple[list[Block], list[str]]:
    tag = (section_tag or _slug(section)[:40]) + "_" + task if section else task
    spec = get_task(task).report
    columns = [(k, better) for k, better in spec.columns if any(k in r.metrics for r in results)]
    level = 3 if section else 2
    sub = min(level + 1, 4)
    blocks: list[Block] = [Heading(level, spec.title)]
    rows = [[r.name, *[r.metrics.get(k) for k, _ in columns]] for r in results]
    header = ["run", *[k for k, _ in columns]]
    blocks.append(Table(header, rows, best_mask(rows, [None, *[b for _, b in columns]], header)))
    groups = _groups(results)
    main, better = columns[0] if columns else (None, None)
    if main:
        blocks += _pivot_blocks(study, groups, main, better, sub)
    if main and any(len(members) > 1 for members in groups.values()):
        blocks += _seed_blocks(out, tag, groups, main, better, sub)
    comparisons = _paired_comparisons(groups, spec.paired, columns) if spec.paired and len(groups) > 1 else []
    blocks += _comparison_blocks(comparisons, sub)
    if spec.per_class:
        blocks += per_class_blocks(spec.per_class, groups, sub)
    blocks += _figure_blocks(out, tag, task, spec, results, sub)
    findings = []
    for key in spec.summary_keys:
        better_of_key = dict(spec.columns).get(key)
        if better_of_key and any(finite_number(r.metrics.get(key)) for r in results):
            findings += _findings(groups, key, better_of_key, [c for c in comparisons if c.key == key])
    findings += [_collapse_finding(r) for r in results if _collapsed(r)]
    return blocks, findings


def _groups(results: list) -> dict[str, list]:
    groups: dict[str, list] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    return groups


def _values(members: list, key: str) -> list[float]:
    return [float(m.metrics[key]) for m in members if finite_number(m.metrics.get(key))]


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def _pivot_blocks(study, groups: dict, key: str, better: str | None, level: int) -> list[Block]:
    """The study's grid as a table: the first axis that varies down, the others across, each cell the
    variant's mean ± std over seeds (seeds' tables: lr x scheduler, net x regime)."""
    axes = {g: a for g, a in grid_axes(study.spec).items() if g in groups and _values(groups[g], key)}
    if len(axes) < 3:
        return []
    names = list(next(iter(axes.values())))
    varying = [a for a in names if len({point[a] for point in axes.values()}) > 1]
    if len(varying) < 2:
        return []
    down, across = varying[0], varying[1:]
    row_values = list(dict.fromkeys(point[down] for point in axes.values()))
    col_values = list(dict.fromkeys(tuple(point[a] for a in across) for point in axes.values()))
    cell_of = {(point[down], tuple(point[a] for a in across)): g for g, point in axes.items()}
    rows, means = [], []
    for value in row_values:
        groups_in_row = [cell_of.get((value, combo)) for combo in col_values]
        rows.append([f"{down}={value}", *[_mean_std(_values(groups[g], key)) if g else "" for g in groups_in_row]])
        means.append([None, *[float(np.mean(_values(groups[g], key))) if g else None for g in groups_in_row]])
    header = [down, *[", ".join(f"{a}={v}" for a, v in zip(across, combo, strict=True)) for combo in col_values]]
    bold = _single_best([m for row in means for m in row[1:] if m is not None], means, better)
    seeds = max(len(members) for members in groups.values())
    return [
        Heading(level, f"{key} over the study's axes" + (" (mean ± std over seeds)" if seeds > 1 else "")),
        Table(header, rows, bold),
    ]


def _single_best(values: list[float], grid: list[list], better: str | None) -> list[list[bool]]:
    if not better or not values or len(set(values)) == 1:
        return [[False] * len(row) for row in grid]
    best = max(values) if better == "max" else min(values)
    unique = values.count(best) == 1
    return [[unique and v is not None and v == best for v in row] for row in grid]


def _seed_blocks(out: Path, tag: str, groups: dict, key: str, better: str | None, level: int) -> list[Block]:
    rows = []
    for group, members in groups.items():
        values = _values(members, key)
        if values:
            s = stats.summarize(values)
            rows.append([group, s.n, s.mean, s.std, f"[{s.ci_low:.4f}, {s.ci_high:.4f}]"])
    if not rows:  # no variant has a finite value to show
        return []
    header = ["variant", "seeds", f"{key} mean", "std", "95% interval"]
    return [
        Heading(level, "Across seeds (mean ± std, 95% interval of the mean)"),
        Table(header, rows, best_mask(rows, [None, None, better, None, None], header)),
        Figure(
            figures.bar_chart(out, f"{tag}_{key}_bars", key, groups, better),
            f"{key} by variant (error bars: std over seeds)",
        ),
    ]


def per_class_blocks(key: str, groups: dict, level: int = 3) -> list[Block]:
    """Accuracy of each class per variant (mean over seeds; the seeds' table C): where the headline
    hides a class the model never gets."""
    per_run = {
        g: [m.metrics[key] for m in members if isinstance(m.metrics.get(key), dict)] for g, members in groups.items()
    }
    classes = list(dict.fromkeys(c for maps in per_run.values() for m in maps for c in m))
    if not classes or len(classes) > 30:  # a table too wide to read: metrics.json keeps them all
        return []
    rows = []
    for group, maps in per_run.items():
        if maps:
            rows.append([group, *[_mean_or_none([m.get(c) for m in maps]) for c in classes]])
    seeds = max(len(maps) for maps in per_run.values())
    return [
        Heading(level, key.replace("_", " ").capitalize() + (" (mean over seeds)" if seeds > 1 else "")),
        Table(["variant", *classes], rows, best_mask(rows, [None, *["max"] * len(classes)], ["variant", *classes])),
    ]


def _mean_or_none(values: list) -> float | None:
    numbers = [v for v in values if finite_number(v)]
    return float(np.mean(numbers)) if numbers else None


def best_mask(rows: list[list], betters: list[str | None], header: list[str] | None = None) -> list[list[bool]]:
    """Which cells hold their column's single best value as shown ('max', 'min'; None: no highlight).
    A tie for the best at the digits shown, or a column where every value reads the same, highlights
    nothing: bold would claim a winner the table cannot show."""
    from adlab.study.render import cell

    mask = [[False] * len(row) for row in rows]
    for j, better in enumerate(betters):
        column = header[j] if header else ""
        shown = {
            i: float(cell(row[j], column))
            for i, row in enumerate(rows)
            if finite_number(row[j]) and _numeric(cell(row[j], column))
        }
        if better is None or len(set(shown.values())) < 2:
            continue
        best = max(shown.values()) if better == "max" else min(shown.values())
        if list(shown.values()).count(best) == 1:
            for i, value in shown.items():
                mask[i][j] = value == best
    return mask


def _numeric(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# --- paired tests ----------------------------------------------------------------------------------


@dataclass
class Comparison:
    key: str  # the metric compared
    best: str
    variant: str
    difference: float  # mean per-image measure, best - variant
    ci_low: float
    ci_high: float
    best_wins: int  # images where only the best is right (or where its error is lower)
    variant_wins: int
    p_value: float
    test: str
    measure: str = ""  # what the per-image values are, when they are not the metric itself

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE_LEVEL and (self.ci_low > 0 or self.ci_high < 0)


def _per_image(columns: dict[str, np.ndarray], measure: str) -> np.ndarray | None:
    if measure == "correct":
        return (columns["y_true"] == columns["y_pred"]).astype(float)
    return columns.get(measure)


def _paired_comparisons(
    groups: dict, paired: tuple[tuple[str, str], ...], columns: list[tuple[str, str]]
) -> list[Comparison]:
    """For each paired metric and each set of variants scored on the same test images: the best
    variant against each other one, paired by seed and image."""
    better_of = dict(columns)
    comparisons = []
    for key, measure in paired:
        if better_of.get(key) is None:
            continue
        for same_images in _test_sets(groups):
            if len(same_images) > 1:
                comparisons += _compare_with_best(same_images, key, measure, better_of[key])
    return comparisons


def _compare_with_best(groups: dict, key: str, measure: str, better: str) -> list[Comparison]:
    means = {g: np.mean(v) for g, members in groups.items() if (v := _values(members, key))}
    if len(means) < 2:
        return []
    best = (max if better == "max" else min)(means, key=means.__getitem__)
    comparisons = []
    for group in means:
        if group == best:
            continue
        pairs = []
        for a in groups[best]:
            for b in groups[group]:
                pa, pb = a.per_image, b.per_image
                # paired tests need the same test images: same length and the same true labels in order
                if (
                    a.seed == b.seed
                    and pa is not None
                    and pb is not None
                    and len(pa["y_true"]) == len(pb["y_true"])
                    and np.array_equal(pa["y_true"], pb["y_true"])
                ):
                    x, y = _per_image(pa, measure), _per_image(pb, measure)
                    if x is not None and y is not None:
                        pairs.append((x, y))
        if not pairs:
            continue
        x, y = np.concatenate([p for p, _ in pairs]), np.concatenate([q for _, q in pairs])
        boot = stats.paired_bootstrap(x, y, resamples=2000)
        if measure == "correct":
            mcnemar = stats.mcnemar_exact(x.astype(bool), y.astype(bool))
            wins, p, name = (mcnemar.only_a_correct, mcnemar.only_b_correct), mcnemar.p_value, "McNemar's exact test"
        else:
            ranks = stats.wilcoxon_paired(x, y) if better == "min" else stats.wilcoxon_paired(-x, -y)
            wins, p, name = (ranks.a_better, ranks.b_better), ranks.p_value, "Wilcoxon's signed-rank test"
        comparisons.append(
            Comparison(
                key, best, group, boot.difference, boot.ci_low, boot.ci_high, *wins, p, name, MEASURES.get(measure, "")
            )
        )
    return comparisons


def _comparison_blocks(comparisons: list[Comparison], level: int) -> list[Block]:
    blocks: list[Block] = []
    for key, best in dict.fromkeys((c.key, c.best) for c in comparisons):
        chosen = [c for c in comparisons if c.key == key and c.best == best]
        correct = chosen[0].test.startswith("McNemar")
        form = "+.4f" if correct else "+.3g"  # accuracies in four decimals; errors (0.0031) in three digits
        rows = [
            [
                c.variant,
                f"{c.difference:{form}}",
                f"[{c.ci_low:{form}}, {c.ci_high:{form}}]",
                f"{c.best_wins} / {c.variant_wins}",
                "< 1e-16" if c.p_value < 1e-16 else f"{c.p_value:.3g}",
                "yes" if c.significant else "no",
            ]
            for c in chosen
        ]
        what = (
            "the discordant pairs (only best right / only variant right) and McNemar's exact p-value"
            if correct
            else "the images where each does better (best / variant) and Wilcoxon's signed-rank p-value"
        )
        measure = chosen[0].measure
        blocks += [
            Heading(level, f"Is the best variant by {key} ({best}) really better?"),
            Paragraph(
                f"{'The difference in ' + measure if measure else key + ' difference'} best - variant on "
                "the same test images (paired by seed), its 95% "
                f"paired bootstrap interval, {what}. Significant: p < {SIGNIFICANCE_LEVEL} and an "
                "interval excluding 0."
            ),
            Table(
                ["variant", "difference", "95% interval", "wins best / variant", "p", "significant"],
                rows,
                [[False] * 6 for _ in rows],
            ),
        ]
    return blocks


# --- the summary's sentences -----------------------------------------------------------------------


def _test_sets(groups: dict) -> list[dict]:
    """The variants split by the images they were scored on (the same true labels in order, or the same
    data set in their configs): only variants on the same test images are compared."""
    sets: dict[object, dict] = {}
    for group, members in groups.items():
        first = members[0]
        identity = first.per_image["y_true"].tobytes() if first.per_image is not None else first.test_set
        sets.setdefault(identity, {})[group] = members
    return list(sets.values())


def _findings(groups: dict, key: str, better: str, comparisons: list[Comparison]) -> list[str]:
    sets = [s for s in _test_sets(groups) if len(s) > 1] or [groups]
    return [_finding(s, key, better, comparisons) for s in sets if any(_values(m, key) for m in s.values())]


def _finding(groups: dict, key: str, better: str, comparisons: list[Comparison]) -> str:
    """'best KEY VALUE by VARIANT; significantly better than ... / not significantly better than ...'."""
    means = {g: float(np.mean(v)) for g, members in groups.items() if (v := _values(members, key))}
    ranked = sorted(means, key=means.__getitem__, reverse=(better == "max"))
    best = ranked[0]
    if len(ranked) > 1 and len({round(v, 4) for v in means.values()}) == 1:
        return f"every variant ({', '.join(ranked)}) scores {key} {means[best]:.4f}: no difference to report."
    values = _values(groups[best], key)
    seeds = f", mean of {len(values)} seeds ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else ""
    text = f"best {key} {means[best]:.4f} by {best}{seeds}"
    if len(ranked) == 1:
        return text + "."
    mine = [c for c in comparisons if c.best == best and c.variant in groups]
    if mine:
        won = [c for c in mine if c.significant]
        open_ = [c for c in mine if not c.significant]
        if won:
            text += "; significantly better than " + _listed(won, max(c.p_value for c in won), "largest")
        if open_:
            text += "; not significantly better than " + _listed(open_, min(c.p_value for c in open_), "smallest")
        on = f" on {mine[0].measure}" if mine[0].measure else " on the same test images"
        return text + f" ({mine[0].test}{on})."
    second = ranked[1]
    text += f"; next {second} {means[second]:.4f}"
    a, b = _values(groups[best], key), _values(groups[second], key)
    if len(a) > 1 and len(b) > 1:
        from scipy.stats import ttest_ind

        p = float(ttest_ind(a, b, equal_var=False).pvalue)
        if np.isnan(p):
            return text + " (the seeds agree exactly: no test)."
        verdict = "significant" if p < SIGNIFICANCE_LEVEL else "not significant"
        return text + f" ({verdict}: Welch's t-test over seeds, {p_text(p)})."
    return text + " (one seed each and no per-image results: not tested; add seeds to the study to test it)."


def _listed(comparisons: list[Comparison], p: float, which: str) -> str:
    """Up to three variants with their difference and p; more as names with the telling p-value."""
    if len(comparisons) <= 3:
        return ", ".join(
            f"{c.variant} ({c.difference:{'+.4f' if c.test.startswith('McNemar') else '+.3g'}}, {p_text(c.p_value)})"
            for c in comparisons
        )
    return f"{len(comparisons)} variants ({', '.join(c.variant for c in comparisons)}; {which} {p_text(p)})"


def p_text(p: float) -> str:
    """'p = 0.021', or 'p < 1e-16' where the p-value is below what a double tells apart from 0."""
    return "p < 1e-16" if p < 1e-16 else f"p = {p:.2g}"


def _collapsed(run) -> tuple[str, float] | None:
    """(class, share) when a classifier gives one class to most test images that are not mostly that class."""
    matrix = run.metrics.get("confusion_matrix")
    if not isinstance(matrix, list) or not matrix:
        return None
    counts = np.asarray(matrix, dtype=float)
    total = counts.sum()
    if total == 0 or counts.shape[0] < 2:
        return None
    predicted, true = counts.sum(axis=0) / total, counts.sum(axis=1) / total
    top = int(np.argmax(predicted))
    if predicted[top] >= COLLAPSE_SHARE and true[top] < COLLAPSE_SHARE:
        names = run.metrics.get("class_names") or []
        return (str(names[top]) if top < len(names) else str(top)), float(predicted[top])
    return None


def _collapse_finding(run) -> str:
    collapsed = _collapsed(run)
    assert collapsed is not None  # called only for a run that collapsed
    name, share = collapsed
    return (
        f"{run.name} collapsed: it answers '{name}' for {share:.0%} of the test "
        f"{run.metrics.get('confusion_unit', 'images')} "
        "(a learning rate too high, or too few epochs, are the usual causes)."
    )


# --- figures ---------------------------------------------------------------------------------------


def _figure_blocks(out: Path, tag: str, task: str, spec, results: list, level: int) -> list[Block]:
    blocks: list[Block] = []
    curve = figures.curves(out, f"{tag}_{spec.curve}_curves", spec.curve, results)
    if curve:
        blocks.append(Figure(curve, f"validation {spec.curve} per epoch, one colour per variant"))
    losses = figures.loss_grid(out, f"{tag}_losses", results)
    if losses:
        blocks.append(Figure(losses, "training and validation loss per epoch, one panel per variant"))
    confusion = figures.confusion_grid(out, f"{tag}_confusion", results)
    if confusion:
        blocks.append(
            Figure(
                confusion,
                "confusion matrices (first seed of each variant), each row normalised to "
                "its true class: the diagonal is the class's accuracy",
            )
        )
    first_seed = figures.first_seed_each(results)
    for name in spec.figures:
        shown = [
            Figure((r.path / "figures" / name).relative_to(out), r.group, wide=False)
            for r in first_seed
            if (r.path / "figures" / name).is_file()
        ]
        if shown:
            blocks.append(Gallery(shown, name.removesuffix(".png").replace("_", " ") + " (first seed of each variant)"))
    if blocks:
        blocks.insert(0, Heading(level, "Figures"))
    return blocks


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# --- published figures -----------------------------------------------------------------------------


def reference_blocks(reference, results: list, settings: str = "") -> list[Block]:
    """The published figures beside adlab's, and whether each lies outside adlab's own seed-to-seed spread."""
    scale = 100.0 if reference.scale == "percent" else 1.0
    digits = 2 if reference.scale == "percent" else 4  # an MSE of 0.021 needs its decimals
    unit = " (percent)" if reference.scale == "percent" else ""
    groups = _groups(results)
    rows, unknown_spread = [], False
    for group, published_figures in reference.runs.items():
        for key, published in published_figures.items():
            measured = [flat_metrics(m.metrics).get(key) for m in groups.get(group, [])]
            values = [v * scale for v in measured if finite_number(v)]
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
            rows.append(
                [
                    group,
                    key,
                    f"{published:.{digits}f}",
                    f"{mean:.{digits}f}" + (f" (n={len(values)})" if len(values) > 1 else ""),
                    f"{mean - published:+.{digits}f}",
                    shown,
                    verdict,
                ]
            )
    text = (
        f"Source: {reference.source}. The published figure beside adlab's{unit}: adlab's mean over seeds, "
        "the difference adlab - published, and the range where one more adlab run would land with 95% "
        "probability (a t prediction interval from the seeds). 'outside': the published figure is not within "
        "adlab's own seed-to-seed spread, so the difference is more than chance of the seed."
    )
    if settings:
        text += f" {settings} The published figures come from the full setup: read the differences with that in mind."
    if unknown_spread:
        text += (
            " With one seed the spread is unknown: add the line seeds: [0, 1, 2] to the study file to judge the "
            "differences."
        )
    blocks: list[Block] = [
        Heading(2, "Against the published figures"),
        Paragraph(text),
        Table(
            [
                "run",
                "metric",
                "published",
                "adlab",
                "difference",
                "adlab 95% range",
                "published figure vs adlab's spread",
            ],
            rows,
            [[False] * 7 for _ in rows],
        ),
    ]
    if reference.note:
        blocks.append(Paragraph(reference.note))
    return blocks
