"""The results stage's summary figures, each written as PNG (for the report) and PDF
(for papers), from runs.csv (:mod:`smoothbench.results.collection`):

- :func:`plot_accuracy_versus_gamma`: best validation accuracy against gamma, one panel
  per data set, ours (mean, error bar = std over seeds, a dot per seed) and the paper's
  on the same axes, with the uniform-alpha and LS++ runs where the study has them as
  markers at their equivalent gamma, 1 - alpha + alpha/K; the gamma axis spans the
  gammas drawn;
- :func:`plot_gain_over_baseline`: Table 3's diff % per data set as bars, ours beside
  the paper's (recomputed from its Tables 1-2), ours with Table 3's uncertainty: the
  95 % interval of the paired gain as an error bar and the best γ above the bar, marked
  † where that gain is within seed noise.

The figures of one experiment's runs (training curves, reliability, LS++'s C) are
:mod:`smoothbench.results.run_plots`'.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no display
needed) and written atomically (:func:`save_figure`). The accuracy figure is built by
:func:`accuracy_versus_gamma_figure`, which :func:`plot_accuracy_versus_gamma` saves, so
a test reads the figure's artists.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from smoothbench import files
from smoothbench.methods import equivalent_gamma
from smoothbench.results.analysis import paired_differences
from smoothbench.results.collection import row_labels
from smoothbench.results.paper_numbers import best_versus_baseline, paper_cells
from smoothbench.results.paper_tables import (
    NOISE_MARK,
    marked_best_gamma,
    summarize_cells,
)
from smoothbench.results.provenance import provenance_line
from smoothbench.run_record import format_value

FORMATS = ("png", "pdf")
OURS_COLOR = "#1f5fa8"
PAPER_COLOR = "#c2410c"
# method -> (colour, marker, legend name, where its marker stands on the gamma axis)
OTHER_METHODS = {
    "alpha": ("#15803d", "D", "uniform α", ", at γ = 1 - α + α/K"),
    "lspp": ("#7e22ce", "^", "LS++ α", ", at γ = 1 - α"),
}
# LS++ beside uniform alpha of the same alpha: this share of the gamma axis to the right
LSPP_NUDGE = 0.025
SHARE_COLOR = "#0f766e"


def save_figure(figure, stem: Path | str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically (no timestamps: same input, same bytes)."""
    stem = Path(stem)
    written = []
    for suffix in FORMATS:
        # not with_suffix: a stem may hold a dot (lspp~0.1)
        path = stem.parent / f"{stem.name}.{suffix}"
        metadata = {"CreationDate": None} if suffix == "pdf" else {}
        with files.atomic_file(path, "wb") as stream:
            figure.savefig(
                stream, format=suffix, dpi=150, metadata=metadata, bbox_inches="tight"
            )
        written.append(path)
    return written


def new_figure(columns: int, rows: int, width: float = 3.2, height: float = 2.6):
    """A figure of ``rows`` x ``columns`` panels (axes always a 2-D array)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


def set_title(figure, title: str, provenance: str = "", fontsize=None) -> None:
    """``title`` above the figure (none if empty) and, as a footnote under it, smaller
    and wrapped to the figure's width, the line saying under what code and compute its
    runs were made (:func:`smoothbench.results.provenance.provenance_line`)."""
    if title:
        figure.suptitle(title, fontsize=fontsize)
    if provenance:
        width = max(50, int(18 * figure.get_figwidth()))
        figure.supxlabel(
            textwrap.fill(provenance, width), fontsize="small", color="#444444"
        )


def _grid(count: int, max_columns: int = 4) -> tuple[int, int]:
    columns = min(max_columns, max(count, 1))
    return columns, math.ceil(max(count, 1) / columns)


def gamma_axis_limits(
    gammas, margin_fraction: float = 0.1, min_margin: float = 0.025
) -> tuple[float, float]:
    """The γ axis spans the γ values drawn plus a small margin, so no part of a panel is
    empty (a fixed 0.05-1.05 left the demo's γ 0.6-1.0 in one half of it)."""
    values = [float(gamma) for gamma in gammas if np.isfinite(gamma)]
    if not values:
        return 0.05, 1.05
    low, high = min(values), max(values)
    margin = max(margin_fraction * (high - low), min_margin)
    return low - margin, high + margin


def _mean_and_std(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    return (
        frame.groupby(by)["best_val_accuracy_percent"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )


def _seed_text(seeds: int) -> str:
    return f" (mean ± std, {seeds} seeds)" if seeds > 1 else ""


def _values_text(values) -> str:
    return ", ".join(format_value(value) for value in sorted(set(values)))


def _with_equivalent_gamma(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with the column ``equivalent``: where each stands on the γ axis."""
    return runs.assign(
        equivalent=[
            equivalent_gamma(method, value, classes)
            for method, value, classes in zip(
                runs["method"], runs["value"], runs["num_classes"]
            )
        ]
    )


def _draw_other_method(
    axis, runs: pd.DataFrame, method: str, nudge: float = 0.0
) -> None:
    """Uniform α or LS++ (``runs``: that method's, with ``equivalent``) as markers at
    their equivalent γ plus ``nudge``, mean ± std over seeds and a dot per seed, like
    the γ curve."""
    summary = _mean_and_std(runs, "equivalent")
    seeds = int(summary["count"].max())
    colour, marker, name, where = OTHER_METHODS[method]
    nudged = " (nudged aside)" if nudge else ""
    axis.errorbar(
        summary["equivalent"] + nudge,
        summary["mean"],
        yerr=summary["std"].fillna(0),
        color=colour,
        marker=marker,
        markersize=6,
        markerfacecolor="white" if method == "lspp" else colour,
        markeredgewidth=1.4,
        capsize=3,
        linestyle="none",
        zorder=4,
        # the seeds are in the γ curve's entry: the study trains every run with them
        label=f"{name} = {_values_text(runs['value'])}{where}{nudged}",
    )
    if seeds > 1:
        axis.scatter(
            runs["equivalent"] + nudge,
            runs["best_val_accuracy_percent"],
            color=colour,
            marker=marker,
            s=8,
            alpha=0.4,
            zorder=3,
        )


def accuracy_versus_gamma_figure(
    runs: pd.DataFrame,
    paper: pd.DataFrame,
    labels: dict[str, str],
    provenance: str = "",
):
    """The accuracy-against-γ figure, unsaved (so a test can read its artists), with
    the ``provenance`` line under its title.

    ``runs``: runs.csv's rows (:mod:`smoothbench.results.collection`), every method; γ runs make
    the curve, uniform α and LS++ runs (only where the study has some) stand as markers
    at their :func:`smoothbench.methods.equivalent_gamma` (the true class's target
    mass). LS++ at a γ where a γ or a uniform run also stands would hide behind it, so
    it is drawn :data:`LSPP_NUDGE` of the axis aside, to the freer side.
    """
    names = list(labels)
    columns, rows = _grid(len(names))
    figure, axes = new_figure(columns, rows, width=3.6, height=3.8)
    for index, name in enumerate(names):
        axis = axes.flat[index]
        own = runs[runs["experiment"] == name]
        gamma_runs = own[own["method"] == "gamma"]
        others = _with_equivalent_gamma(own[own["method"].isin(OTHER_METHODS)])
        theirs = paper[paper["experiment"] == name].sort_values("gamma")
        low, high = gamma_axis_limits(
            [*gamma_runs["gamma"], *others["equivalent"], *theirs["gamma"]]
        )
        summary = _mean_and_std(gamma_runs, "gamma")
        seeds = int(summary["count"].max()) if len(summary) else 0
        axis.errorbar(
            summary["gamma"],
            summary["mean"],
            yerr=summary["std"].fillna(0),
            color=OURS_COLOR,
            marker="o",
            markersize=4,
            capsize=3,
            label="ours, γ" + _seed_text(seeds),
        )
        if seeds > 1:
            axis.scatter(
                gamma_runs["gamma"],
                gamma_runs["best_val_accuracy_percent"],
                color=OURS_COLOR,
                s=8,
                alpha=0.4,
                zorder=3,
            )
        taken = {
            *gamma_runs["gamma"].round(9),
            *others.loc[others["method"] == "alpha", "equivalent"].round(9),
        }
        for method in OTHER_METHODS:
            of_method = others[others["method"] == method]
            if not len(of_method):
                continue  # not run: no marker, no legend entry
            nudge = 0.0
            if method == "lspp" and taken & set(of_method["equivalent"].round(9)):
                # aside, to the side farther from every other point drawn
                step = LSPP_NUDGE * (high - low)
                nudge = max(
                    (step, -step),
                    key=lambda offset: min(
                        abs(x + offset - other)
                        for x in of_method["equivalent"]
                        for other in taken
                    ),
                )
            _draw_other_method(axis, of_method, method, nudge)
        if len(theirs):
            axis.plot(
                theirs["gamma"],
                theirs["mean_percent"],
                color=PAPER_COLOR,
                marker="s",
                markersize=4,
                linestyle="--",
                label="paper",
            )
        axis.set_title(labels[name])
        axis.set_xlabel("γ (uniform α: 1 - α + α/K; LS++: 1 - α)")
        axis.set_ylabel("best val. accuracy (%)")
        axis.set_xlim(low, high)
        axis.grid(alpha=0.3)
        # under the panel: inside it the legend hid the points
        axis.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.22))
    for axis in axes.flat[len(names) :]:
        axis.set_visible(False)
    set_title(
        figure,
        "Best validation accuracy against γ (γ = 1: plain cross-entropy)",
        provenance,
    )
    return figure


def plot_accuracy_versus_gamma(
    runs: pd.DataFrame,
    paper: pd.DataFrame,
    labels: dict[str, str],
    stem: Path | str,
    provenance: str = "",
) -> list[Path]:
    """One panel per experiment (in ``labels``' order): accuracy (%) against gamma."""
    return save_figure(
        accuracy_versus_gamma_figure(runs, paper, labels, provenance), stem
    )


# The gain figure's footnote: its error bars and its mark are Table 3's (smoothbench.results.paper_tables).
GAIN_NOTE = (
    "Error bars: the 95 % interval of the best γ's gain over γ = 1, paired by seed, in "
    f"diff %. {NOISE_MARK}: within seed noise (the interval contains 0), as in Table 3."
)


def gain_interval(
    experiment: str, best_gamma: str, best_percent: float, paired: pd.DataFrame
) -> tuple[float, float] | None:
    """The 95 % interval of the gain of an experiment's best gamma(s) over gamma = 1, in
    diff % (the paired interval in points / best x 100, as diff % divides the gain by
    the best); None where a best gamma has none (one seed, gamma = 1 itself the best)."""
    own = paired[(paired["experiment"] == experiment) & (paired["method"] == "gamma")]
    bounds = dict(
        zip(
            own["value"].map(format_value),
            zip(own["ci95_lower_points"], own["ci95_upper_points"]),
        )
    )
    found = [bounds.get(gamma) for gamma in best_gamma.split(", ")]
    if not found or None in found or best_percent <= 0:
        return None
    pairs = cast(list[tuple[float, float]], found)  # no None in it: checked above
    lower, upper = min(low for low, _ in pairs), max(high for _, high in pairs)
    if not (np.isfinite(lower) and np.isfinite(upper)):
        return None
    return lower / best_percent * 100, upper / best_percent * 100


def gain_over_baseline_figure(
    ours: pd.DataFrame,
    paper: pd.DataFrame,
    labels: dict[str, str],
    provenance: str = "",
    paired: pd.DataFrame | None = None,
):
    """Table 3's diff % per data set, ours beside the paper's (recomputed from its
    Tables 1-2), unsaved (so a test can read its artists). With ``paired`` (the paired
    differences, :func:`smoothbench.results.analysis.paired_differences`), as Table 3 has them:
    each of our bars carries the 95 % interval of its gain as an error bar, and is
    labelled with its best γ, marked † where that gain is within seed noise."""
    names = list(labels)
    footnote = " ".join(
        part for part in (GAIN_NOTE if paired is not None else "", provenance) if part
    )
    figure_width = max(4.0, 0.75 * len(names) + 2)
    # the panel keeps its height however long the footnote under it (set_title's wrap)
    footnote_lines = len(textwrap.wrap(footnote, max(50, int(18 * figure_width))))
    figure, axes = new_figure(
        1, 1, width=figure_width, height=3.4 + 0.16 * footnote_lines
    )
    axis = axes[0, 0]
    positions = np.arange(len(names))
    width = 0.38

    def values(frame):
        lookup = dict(zip(frame["experiment"], frame["diff_percent"]))
        return np.array([lookup.get(name, np.nan) for name in names], dtype=float)

    ours_values, paper_values = values(ours), values(paper)
    with_paper = not np.all(np.isnan(paper_values))
    offset = width / 2 if with_paper else 0.0
    axis.bar(
        positions - offset,
        np.nan_to_num(ours_values),
        width,
        color=OURS_COLOR,
        label="ours",
    )
    if with_paper:
        axis.bar(
            positions + offset,
            np.nan_to_num(paper_values),
            width,
            color=PAPER_COLOR,
            label="paper (from its Tables 1-2)",
        )
    records = {record.experiment: record for record in ours.itertuples()}
    for position, value, name in zip(positions, ours_values, names):
        if np.isnan(value):
            axis.annotate(
                "no γ = 1",
                (position - offset, 0),
                ha="center",
                va="bottom",
                fontsize="x-small",
                rotation=90,
            )
            continue
        if paired is None or name not in records:
            continue
        record = records[name]
        top = max(value, 0.0)
        interval = gain_interval(name, record.best_gamma, record.best_percent, paired)
        if interval is not None:
            lower, upper = interval
            axis.errorbar(
                position - offset,
                value,
                yerr=[[max(value - lower, 0.0)], [max(upper - value, 0.0)]],
                fmt="none",
                ecolor="black",
                elinewidth=1,
                capsize=3,
                zorder=4,
            )
            top = max(top, upper)
        axis.annotate(
            "γ " + marked_best_gamma(name, record.best_gamma, paired),
            (position - offset, top),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="x-small",
        )
    axis.set_xlim(-0.75, len(names) - 0.25)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(
        positions, [labels[name] for name in names], rotation=30, ha="right"
    )
    axis.set_ylabel("gain over γ = 1 (diff %)")
    axis.set_title("Best γ against plain cross-entropy: (best - base) / best x 100")
    axis.grid(axis="y", alpha=0.3)
    axis.margins(y=0.12)  # room for the labels above the bars
    axis.legend(fontsize="small")
    set_title(figure, "", footnote)
    return figure


def plot_gain_over_baseline(
    ours: pd.DataFrame,
    paper: pd.DataFrame,
    labels: dict[str, str],
    stem: Path | str,
    provenance: str = "",
    paired: pd.DataFrame | None = None,
) -> list[Path]:
    """Table 3's diff % per data set: ours beside the paper's (recomputed from its
    Tables 1-2), with Table 3's interval and † where ``paired`` is given."""
    return save_figure(
        gain_over_baseline_figure(ours, paper, labels, provenance, paired), stem
    )


# ---------------------------------------------------------------- what the rule calls


def write_summary_plots(study, runs: pd.DataFrame, folder: Path | str) -> list[Path]:
    """``accuracy_vs_gamma`` and ``gain_over_baseline`` (.png, .pdf) from ``runs``
    (runs.csv: every run, every method; uniform alpha and LS++ stand on the accuracy
    figure at their gamma), each titled with under what code and compute its runs were
    made."""
    folder = Path(folder)
    labels = row_labels(study)
    paper = paper_cells()
    # the gain is the paper's (best gamma over gamma = 1): summarize_cells keeps gamma runs
    ours = best_versus_baseline(summarize_cells(runs), list(study.experiments))
    theirs = best_versus_baseline(paper)
    # its interval and mark as Table 3's: the differences paired by seed
    paired = paired_differences(runs, study)
    drawn = provenance_line(runs[runs["experiment"].isin(labels)])
    gammas = provenance_line(runs[runs["method"] == "gamma"])
    return [
        *plot_accuracy_versus_gamma(
            runs, paper, labels, folder / "accuracy_vs_gamma", drawn
        ),
        *plot_gain_over_baseline(
            ours, theirs, labels, folder / "gain_over_baseline", gammas, paired
        ),
    ]
