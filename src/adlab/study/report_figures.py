"""The study report's own figures: bars over variants, validation curves, and small multiples
(confusion matrices, loss curves) titled by variant.

Each figure is written twice, as PNG (HTML and Markdown) and as PDF (report.tex); the functions
return the PNG's path relative to the study folder. One colour per variant (its seeds share it),
from a qualitative palette, and epochs on integer ticks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import numpy as np

from adlab import io
from adlab.formatting import figure_text as _t  # every name drawn: 'f$^$' as written, never mathtext
from adlab.rundir import read_history
from adlab.study.stats import finite_number

GRID_COLUMNS = 4  # small multiples per row: four stay readable on a page and on a screen


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def variant_styles(names: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, line style) per variant: tab10 up to 10 variants, tab20 up to 20, then the 20 colours
    again with other line styles, so no two variants are drawn alike."""
    import matplotlib

    colormap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    assert isinstance(colormap, matplotlib.colors.ListedColormap)  # tab10 and tab20 are lists of colours
    # matplotlib types .colors as any array-like; tab10's and tab20's are tuples of RGB tuples
    palette = cast("tuple[tuple[float, float, float], ...]", colormap.colors)
    styles = ["-", "--", ":", "-."]
    return {
        name: (matplotlib.colors.to_hex(palette[i % len(palette)]), styles[(i // len(palette)) % len(styles)])
        for i, name in enumerate(names)
    }


def integer_epochs(ax) -> None:
    """Epochs are counted: ticks at 1, 2, 3 ..., never 1.25."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def save(fig, out: Path, stem: str) -> Path:
    """figures/STEM.pdf and figures/STEM.png in the study folder; the PNG's relative path. The figures
    are laid out by matplotlib's constrained layout when made, so saving needs no 'tight' bounding
    box (which draws every figure once more: seconds for a grid of confusion matrices)."""
    path = out / "figures" / f"{stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = fig.get_layout_engine()
    if engine is not None:  # lay the figure out once, not once per file
        engine.execute(fig)
        fig.set_layout_engine("none")
    io.save_figure(fig, path.with_suffix(".pdf"), tight=False, close=False)
    io.save_figure(fig, path, dpi=110, tight=False)
    return path.relative_to(out)


def bar_chart(out: Path, stem: str, key: str, groups: dict, better: str | None) -> Path:
    plt = _pyplot()
    names = list(groups)
    values = [[float(m.metrics[key]) for m in groups[g] if finite_number(m.metrics.get(key))] for g in names]
    means = [np.mean(v) if v else np.nan for v in values]
    errs = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values]
    colours = variant_styles(names)
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 3.4), layout="constrained")
    ax.bar(range(len(names)), means, yerr=errs, capsize=3, color=[colours[n][0] for n in names])
    ax.set_xticks(range(len(names)), [_t(n) for n in names], rotation=30, ha="right", fontsize=8)
    low = np.nanmin([m - e for m, e in zip(means, errs, strict=True)])
    high = np.nanmax([m + e for m, e in zip(means, errs, strict=True)])
    pad = (high - low) * 0.5 + 1e-3
    ax.set_ylim(max(0.0, low - pad) if better == "max" else 0.0, high + pad)
    ax.set(
        ylabel=_t(key),
        title=_t(f"{key} by variant, mean ± std over seeds ({'higher' if better == 'max' else 'lower'} is better)"),
    )
    ax.title.set_fontsize(10)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, out, stem)


def curves(out: Path, stem: str, key: str, results) -> Path | None:
    """The validation metric per epoch, every run, coloured by variant (seeds share the colour)."""
    plt = _pyplot()
    groups = list(dict.fromkeys(r.group for r in results))
    styles = variant_styles(groups)
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    labelled = set()
    for r in results:
        points = [
            (row["epoch"], row[key]) for row in read_history(r.path / "history.csv") if finite_number(row.get(key))
        ]
        if not points:
            continue
        colour, style = styles[r.group]
        ax.plot(
            *zip(*points, strict=True),
            color=colour,
            ls=style,
            lw=1.3,
            marker="o",
            ms=2,
            label=None if r.group in labelled else _t(r.group),
        )
        labelled.add(r.group)
    if not labelled:
        plt.close(fig)
        return None
    integer_epochs(ax)
    ax.set(xlabel="epoch", ylabel=_t(key), title=_t(f"Validation {key} per epoch"))
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, ncol=1 if len(labelled) <= 16 else 2
    )
    return save(fig, out, stem)


def _grid(plt, count: int, width: float = 2.7, height: float = 2.5):
    columns = min(GRID_COLUMNS, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def confusion_grid(out: Path, stem: str, results) -> Path | None:
    """One confusion matrix per variant (its first seed), rows normalised to the true class: the
    diagonal is each class's accuracy. Titled by variant, one shared colour scale."""
    chosen = first_seed_each(r for r in results if isinstance(r.metrics.get("confusion_matrix"), list))
    if not chosen:
        return None
    plt = _pyplot()
    longest = max(len(str(n)) for r in chosen for n in r.metrics.get("class_names") or ["0"])
    side = (4.2 if len(chosen) == 1 else 3.0) + 0.05 * min(longest, 16)  # room for the class names
    fig, axes = _grid(plt, len(chosen), width=side + (0.9 if len(chosen) == 1 else 0.0), height=side)
    image = None
    for ax, r in zip(axes, chosen, strict=True):
        counts = np.asarray(r.metrics["confusion_matrix"], dtype=float)
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        names = [str(n) for n in r.metrics.get("class_names") or range(len(rates))]
        ticks = range(len(names)) if len(names) <= 12 else []
        ax.set_xticks(ticks, [_t(_shortened(names[i])) for i in ticks], rotation=90, fontsize=7)
        ax.set_yticks(ticks, [_t(_shortened(names[i])) for i in ticks], fontsize=7)
        if len(names) <= 10 and len(chosen) <= 6:  # numbers stay legible (and quick to draw) on a few panels
            for (i, j), value in np.ndenumerate(rates):
                if value >= 0.005:
                    ax.text(
                        j,
                        i,
                        f"{value:.2f}"[1:] if value < 1 else "1",
                        ha="center",
                        va="center",
                        fontsize=6.5 if len(names) <= 6 else 5.5,
                        color="white" if value > 0.6 else "black",
                    )
        accuracy = r.metrics.get("accuracy")
        ax.set_title(
            _t(wrapped(r.group)) + (f"\naccuracy {accuracy:.3f}" if finite_number(accuracy) else ""), fontsize=7
        )
    fig.supylabel("true class", fontsize=8)
    fig.supxlabel("predicted class", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="share of the true class")
    return save(fig, out, stem)


def loss_grid(out: Path, stem: str, results) -> Path | None:
    """Training and validation loss per epoch, one panel per variant (all its seeds), same y scale."""
    groups: dict[str, list] = {}
    for r in results:
        rows = read_history(r.path / "history.csv")
        if any(finite_number(row.get("train_loss")) for row in rows):
            groups.setdefault(r.group, []).append(rows)
    if not groups:
        return None
    plt = _pyplot()
    one = len(groups) == 1  # a single panel gets the width of a figure of its own
    fig, axes = _grid(plt, len(groups), width=5.5 if one else 2.7, height=3.4 if one else 2.2)
    top = 0.0
    for ax, (group, histories) in zip(axes, groups.items(), strict=True):
        for i, rows in enumerate(histories):
            for key, colour in (("train_loss", "#1f77b4"), ("val_loss", "#d62728")):
                points = [(row["epoch"], row[key]) for row in rows if finite_number(row.get(key))]
                if points:
                    ax.plot(
                        *zip(*points, strict=True),
                        color=colour,
                        lw=1.1,
                        alpha=0.9 if i == 0 else 0.45,
                        label=key.replace("_", " ") if i == 0 else None,
                    )
                    top = max(top, float(np.nanpercentile([p[1] for p in points], 95)))
        integer_epochs(ax)
        ax.set_title(_t(wrapped(group)), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.set_ylim(0, top * 1.15 or None)
    axes[0].legend(fontsize=7, frameon=False)
    axes[0].set_xlabel("epoch", fontsize=7)
    units = {LOSS_UNITS.get(r.task, "") for r in results}
    axes[0].set_ylabel(f"loss ({units.pop()})" if len(units) == 1 and "" not in units else "loss", fontsize=7)
    seeds = any(len(histories) > 1 for histories in groups.values())
    fig.suptitle("Loss per epoch" + (" (lighter lines: other seeds)" if seeds else ""), fontsize=9)
    return save(fig, out, stem)


# what each task's training loss is, for the axis of the loss panels (an autoencoder's loss is summed over the
# pixels of an image, where its MSE metric is per pixel)
LOSS_UNITS = {
    "classify": "cross-entropy per image",
    "autoencode": "summed over an image's pixels, per image",
    "segment": "cross-entropy per pixel",
}


def _shortened(name: str, limit: int = 14) -> str:
    """A class name for a tick label: whole up to `limit` characters, else cut with an ellipsis."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def wrapped(name: str, width: int = 28) -> str:
    """A variant's name on lines of at most `width` characters, broken after its '-' separators, so the
    titles of neighbouring small multiples never run into each other."""
    lines, line = [], ""
    for part in re.split(r"(?<=-)", name):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join(lines + [line])


def first_seed_each(results) -> list:
    """The first run (seed) of each variant, in the results' order."""
    seen, chosen = set(), []
    for r in results:
        if r.group not in seen:
            seen.add(r.group)
            chosen.append(r)
    return chosen
