"""Figures of the results stage, each written as PNG (for the report) and PDF (for papers).

- :func:`plot_accuracy_versus_gamma`: best validation accuracy against gamma, one panel
  per data set, ours (mean, error bar = std over seeds, a dot per seed) and the paper's
  on the same axes, with the uniform-alpha and LS++ runs where the study has them as
  markers at their equivalent gamma, 1 - alpha + alpha/K; the gamma axis spans the
  gammas drawn;
- :func:`plot_gain_over_baseline`: Table 3's diff % per data set as bars, ours beside
  the paper's (recomputed from its Tables 1-2);
- :func:`plot_training_curves`: loss and accuracy per epoch for one data set's gammas,
  training solid, validation dashed, each loss with its floor;
- :func:`plot_reliability`: reliability diagrams of one data set (accuracy against
  confidence per bin, seeds pooled, the share of examples per bin in a panel below):
  gamma = 1 against the best gamma, and the best uniform alpha and LS++ where the study
  ran them;
- :func:`plot_c_matrix`: Label Smoothing++'s learned matrix C as a heatmap with class
  names (the LS++ paper's Figure 3), averaged over seeds; the colours span the
  off-diagonal values, the zero diagonal is greyed.

Why the floor: with smoothed targets q the cross-entropy cannot fall below the entropy
H(q) = -gamma log gamma - (1 - gamma) log((1 - gamma) / (K - 1)), which grows as gamma
falls, so raw losses of different gammas are not comparable, and the training loss
(augmented images, BatchNorm in training mode, weights moving through the epoch) can
sit above the validation loss. The middle panel shows the loss above its floor on a
log scale, where the curves of all gammas and both splits can be read together.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no display
needed) and written atomically. The accuracy, reliability and C figures are built by
``*_figure`` functions that their ``plot_*`` save, so a test reads the figure's artists.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from smoothbench import storage
from smoothbench.methods import equivalent_gamma, target_entropy
from smoothbench.paper import best_versus_baseline, paper_cells
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
        with storage.atomic_file(path, "wb") as stream:
            figure.savefig(
                stream, format=suffix, dpi=150, metadata=metadata, bbox_inches="tight"
            )
        written.append(path)
    return written


def _figure(columns: int, rows: int, width: float = 3.2, height: float = 2.6):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


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
    runs: pd.DataFrame, paper: pd.DataFrame, labels: dict[str, str]
):
    """The accuracy-against-γ figure, unsaved (so a test can read its artists).

    ``runs``: :func:`smoothbench.tables.collect_runs`' rows, every method; γ runs make
    the curve, uniform α and LS++ runs (only where the study has some) stand as markers
    at their :func:`smoothbench.methods.equivalent_gamma` (the true class's target
    mass). LS++ at a γ where a γ or a uniform run also stands would hide behind it, so
    it is drawn :data:`LSPP_NUDGE` of the axis aside, to the freer side.
    """
    names = list(labels)
    columns, rows = _grid(len(names))
    figure, axes = _figure(columns, rows, width=3.6, height=3.8)
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
    figure.suptitle("Best validation accuracy against γ (γ = 1: plain cross-entropy)")
    return figure


def plot_accuracy_versus_gamma(
    runs: pd.DataFrame, paper: pd.DataFrame, labels: dict[str, str], stem: Path | str
) -> list[Path]:
    """One panel per experiment (in ``labels``' order): accuracy (%) against gamma."""
    return save_figure(accuracy_versus_gamma_figure(runs, paper, labels), stem)


def plot_gain_over_baseline(
    ours: pd.DataFrame, paper: pd.DataFrame, labels: dict[str, str], stem: Path | str
) -> list[Path]:
    """Table 3's diff % per data set: ours beside the paper's (recomputed from its Tables 1-2)."""
    names = list(labels)
    figure, axes = _figure(1, 1, width=max(4.0, 0.75 * len(names) + 2), height=3.4)
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
    for position, value in zip(positions, ours_values):
        if np.isnan(value):
            axis.annotate(
                "no γ = 1",
                (position - offset, 0),
                ha="center",
                va="bottom",
                fontsize="x-small",
                rotation=90,
            )
    axis.set_xlim(-0.75, len(names) - 0.25)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(
        positions, [labels[name] for name in names], rotation=30, ha="right"
    )
    axis.set_ylabel("gain over γ = 1 (diff %)")
    axis.set_title("Best γ against plain cross-entropy: (best - base) / best x 100")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize="small")
    return save_figure(figure, stem)


def plot_training_curves(
    label: str,
    histories: list[tuple[float, int, list[dict]]],
    num_classes: int,
    stem: Path | str,
) -> list[Path]:
    """Loss, loss above its floor, and accuracy per epoch for one experiment's gammas.

    ``histories``: (gamma, seed, rows of history.csv). Several seeds of a gamma are
    averaged epoch by epoch.
    """
    from matplotlib import colormaps

    by_gamma: dict[float, list[list[dict]]] = {}
    for gamma, _seed, rows in histories:
        by_gamma.setdefault(gamma, []).append(rows)
    gammas = sorted(by_gamma, reverse=True)
    colours = colormaps["viridis"](np.linspace(0, 0.9, max(len(gammas), 1)))
    figure, axes = _figure(3, 1, width=4.0, height=3.2)
    loss_axis, excess_axis, accuracy_axis = axes[0]
    seeds = max(len(runs) for runs in by_gamma.values()) if by_gamma else 0
    for colour, gamma in zip(colours, gammas):
        length = min(len(rows) for rows in by_gamma[gamma])
        epochs = np.arange(1, length + 1)

        def mean(key):
            return np.mean(
                [[row[key] for row in rows[:length]] for rows in by_gamma[gamma]],
                axis=0,
            )

        floor = target_entropy(gamma, num_classes)
        text = f"γ = {format_value(gamma)}"
        loss_axis.plot(epochs, mean("loss"), color=colour, label=text)
        loss_axis.plot(epochs, mean("val_loss"), color=colour, linestyle="--")
        loss_axis.axhline(floor, color=colour, linestyle=":", linewidth=0.8)
        excess_axis.plot(epochs, np.maximum(mean("loss") - floor, 1e-6), color=colour)
        excess_axis.plot(
            epochs,
            np.maximum(mean("val_loss") - floor, 1e-6),
            color=colour,
            linestyle="--",
        )
        accuracy_axis.plot(epochs, 100 * mean("accuracy"), color=colour)
        accuracy_axis.plot(
            epochs, 100 * mean("val_accuracy"), color=colour, linestyle="--"
        )
    loss_axis.set_title("loss (dotted: its floor H(q))")
    excess_axis.set_title("loss - H(q), log scale")
    excess_axis.set_yscale("log")
    accuracy_axis.set_title("accuracy (%)")
    for axis in axes[0]:
        axis.set_xlabel("epochs trained")
        axis.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    styles = [
        Line2D([], [], color="black", label="training"),
        Line2D([], [], color="black", linestyle="--", label="validation"),
    ]
    loss_axis.legend(fontsize="x-small", ncols=2)
    accuracy_axis.legend(handles=styles, fontsize="x-small", loc="lower right")
    averaged = f", mean of {seeds} seeds" if seeds > 1 else ""
    figure.suptitle(
        f"{label}: training (solid) and validation (dashed) per epoch{averaged}"
    )
    return save_figure(figure, stem)


# ---------------------------------------------------------------- what the rules call


def write_summary_plots(study, metrics_files, folder: Path | str) -> list[Path]:
    """``accuracy_vs_gamma`` and ``gain_over_baseline`` (.png, .pdf) from every run."""
    from smoothbench import tables

    folder = Path(folder)
    # every method: uniform alpha and LS++ stand on the accuracy figure at their gamma
    runs = tables.collect_runs(study, metrics_files)
    labels = tables.row_labels(study)
    paper = paper_cells()
    # the gain is the paper's (best gamma over gamma = 1): summarize_cells keeps gamma runs
    ours = best_versus_baseline(tables.summarize_cells(runs), list(study.experiments))
    theirs = best_versus_baseline(paper)
    return [
        *plot_accuracy_versus_gamma(runs, paper, labels, folder / "accuracy_vs_gamma"),
        *plot_gain_over_baseline(ours, theirs, labels, folder / "gain_over_baseline"),
    ]


def write_training_curves(
    study, experiment: str, metrics_files, stem: Path | str
) -> list[Path]:
    """One experiment's training curves from its runs' history.csv (beside each metrics.json)."""
    from smoothbench import tables
    from smoothbench.training import HISTORY_FILE, read_history

    runs = tables.collect_runs(study, metrics_files)
    wrong = runs[runs["experiment"] != experiment]
    if len(wrong):
        raise tables.ResultsError(
            f"{wrong['metrics_file'].iloc[0]}: not a run of experiment {experiment!r}"
        )
    runs = runs[
        runs["method"] == "gamma"
    ]  # curves against gamma, each with eq. 7's floor
    histories = []
    for record in runs.itertuples():
        path = Path(record.metrics_file).with_name(HISTORY_FILE)
        try:
            rows = read_history(path)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise tables.ResultsError(
                f"{path}: unreadable history ({error}); retrain the run"
            ) from None
        missing = {"loss", "accuracy", "val_loss", "val_accuracy"} - set(
            rows[0] if rows else ()
        )
        if not rows or missing:
            what = f"no column {', '.join(sorted(missing))}" if rows else "no epochs"
            raise tables.ResultsError(f"{path}: {what} in the history; retrain the run")
        histories.append((record.gamma, record.seed, rows))
    spec = study.experiments[experiment]
    return plot_training_curves(
        tables.row_labels(study)[experiment], histories, spec.dataset.num_classes, stem
    )


def pooled_bins(bin_lists: list[list[dict]]) -> list[dict]:
    """Reliability bins of several runs (seeds) pooled: counts add, confidence and accuracy
    are count-weighted means."""
    pooled = []
    for rows in zip(*bin_lists):
        count = sum(row["count"] for row in rows)
        pooled.append(
            {
                "lower": rows[0]["lower"],
                "upper": rows[0]["upper"],
                "count": count,
                "confidence": sum(
                    row["count"] * row["confidence"] for row in rows if row["count"]
                )
                / count
                if count
                else None,
                "accuracy": sum(
                    row["count"] * row["accuracy"] for row in rows if row["count"]
                )
                / count
                if count
                else None,
            }
        )
    return pooled


def reliability_figure(label: str, curves: list[tuple[str, list[dict], float]]):
    """Reliability diagrams, unsaved (so a test can read its artists): one column per
    (name, pooled bins, ECE). Above, accuracy per confidence bin as filled bars, the
    bin's mean confidence as an outline (outline above the bar: overconfident; below:
    underconfident) and the diagonal of perfect calibration; below, in a panel of its
    own, the share of examples per bin as bars, which a line on the 0-1 accuracy axis
    left unreadable (most bins hold a few percent)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.0 * len(curves), 4.3), layout="constrained")
    axes = figure.subplots(
        2,
        len(curves),
        squeeze=False,
        sharex="col",
        sharey="row",
        gridspec_kw={"height_ratios": [3, 1.1]},
    )
    for column, (name, bins, ece) in enumerate(curves):
        axis, share_axis = axes[0, column], axes[1, column]
        total = sum(row["count"] for row in bins) or 1
        filled = [row for row in bins if row["count"]]
        width = bins[0]["upper"] - bins[0]["lower"]
        axis.bar(
            [row["lower"] for row in filled],
            [row["accuracy"] for row in filled],
            width=width,
            align="edge",
            color=OURS_COLOR,
            edgecolor="white",
            label="accuracy",
        )
        axis.bar(
            [row["lower"] for row in filled],
            [row["confidence"] for row in filled],
            width=width,
            align="edge",
            fill=False,
            edgecolor=PAPER_COLOR,
            linewidth=1.2,
            label="mean confidence",
        )
        axis.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1)
        share_axis.bar(
            [row["lower"] for row in bins],
            [100 * row["count"] / total for row in bins],
            width=width,
            align="edge",
            color=SHARE_COLOR,
            edgecolor="white",
            linewidth=0.5,
            label="share of examples",
        )
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_title(f"{name}\nECE {ece:.4f}", fontsize=9)
        share_axis.set_xlabel("confidence")
        share_axis.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("examples (%)", color=SHARE_COLOR)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[1, 0].legend(fontsize=7, loc="upper left")
    figure.suptitle(f"{label}: reliability on the validation split", fontsize=10)
    return figure


def plot_reliability(
    label: str, curves: list[tuple[str, list[dict], float]], stem: Path | str
) -> list[Path]:
    """:func:`reliability_figure`, written as PNG and PDF."""
    return save_figure(reliability_figure(label, curves), stem)


def off_diagonal_limits(matrix: np.ndarray) -> tuple[float, float]:
    """The colour range of C: its off-diagonal values only. The diagonal is zero by
    construction, and letting it into the scale squeezed the values that carry the
    information (0.10-0.13 on the demo) into the top of the colour map."""
    values = matrix[~np.eye(len(matrix), dtype=bool)]
    low, high = float(values.min()), float(values.max())
    return low, high


def c_matrix_figure(matrix: np.ndarray, class_names: list[str], title: str):
    """C as a heatmap, unsaved (so a test can read its colour limits): row = the true
    class, column = where its smoothing mass goes; the zero diagonal masked in grey."""
    from matplotlib import colormaps

    K = len(matrix)
    side = min(10.0, 2.5 + 0.35 * K)
    figure, axis = _figure(1, 1, width=side, height=side * 0.85)
    axis = np.ravel(axis)[0]
    diagonal = np.eye(K, dtype=bool)
    low, high = off_diagonal_limits(matrix)
    colour_map = colormaps["viridis"].with_extremes(bad="#d4d4d4")
    image = axis.imshow(
        np.ma.masked_array(matrix, mask=diagonal),
        cmap=colour_map,
        vmin=low,
        vmax=high if high > low else low + 1e-9,
    )
    colour_bar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    colour_bar.set_label("share of the smoothing mass (off-diagonal)", fontsize=8)
    if K <= 40:
        names = (
            [str(name) for name in class_names]
            if len(class_names) == K
            else [str(k) for k in range(K)]
        )
        axis.set_xticks(range(K), names, rotation=90, fontsize=7)
        axis.set_yticks(range(K), names, fontsize=7)
        if K <= 12:
            middle = (low + high) / 2
            for row in range(K):
                for column in range(K):
                    value = matrix[row, column]
                    axis.text(
                        column,
                        row,
                        "0" if row == column else f"{value:.3f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        # dark text on viridis' light (high) end and on the grey
                        color="black" if row == column or value > middle else "white",
                    )
    axis.set_xlabel("class receiving the smoothing mass")
    axis.set_ylabel("true class")
    axis.set_title(f"{title}\ndiagonal (grey) is 0 by construction", fontsize=9)
    return figure


def plot_c_matrix(
    matrix: np.ndarray, class_names: list[str], title: str, stem: Path | str
) -> list[Path]:
    """:func:`c_matrix_figure`, written as PNG and PDF."""
    return save_figure(c_matrix_figure(matrix, class_names, title), stem)


def write_reliability(
    study,
    experiment: str,
    metrics_files,
    stem: Path | str,
    calibration_epoch: str = "best",
) -> list[Path]:
    """One experiment's reliability diagrams from its runs' metrics.json: gamma = 1, the best
    gamma, and the best uniform alpha and LS++ value where run (best by mean accuracy)."""
    import json

    from smoothbench import analysis, tables

    runs = tables.collect_runs(study, metrics_files, calibration_epoch)
    runs = runs[runs["experiment"] == experiment]
    cells = analysis.calibration_cells(runs)
    chosen = []
    baseline = analysis.baseline_rows(cells)
    if len(baseline):
        chosen.append(("one-hot (γ = 1)", baseline.iloc[0]))
    for method, exclude in (("gamma", True), ("alpha", False), ("lspp", False)):
        best = analysis.best_of_method(
            cells, experiment, method, exclude_baseline=exclude
        )
        if best is not None:
            chosen.append((f"best {analysis.describe(method, best['value'])}", best))
    curves = []
    for name, cell in chosen:
        files = runs[
            (runs["method"] == cell["method"]) & (runs["value"] == cell["value"])
        ]["metrics_file"]
        bin_lists = []
        for path in files:
            calibration = json.loads(Path(path).read_text()).get("calibration") or {}
            measured = calibration.get(f"{calibration_epoch}_epoch")
            if not measured or "bins" not in measured:
                raise tables.ResultsError(
                    f"{path}: no calibration bins at the {calibration_epoch} epoch; retrain the run"
                )
            bin_lists.append(measured["bins"])
        curves.append((name, pooled_bins(bin_lists), float(cell["ece"])))
    if not curves:
        raise tables.ResultsError(
            f"experiment {experiment!r}: no runs to draw a reliability diagram from"
        )
    return plot_reliability(tables.row_labels(study)[experiment], curves, stem)


def write_c_matrix(
    study,
    experiment: str,
    value_text: str,
    matrix_files,
    manifest_file,
    stem: Path | str,
) -> list[Path]:
    """The mean over seeds of one (experiment, LS++ alpha)'s learned C, with the class names
    from the prepared data's manifest."""
    import json

    from smoothbench import tables

    K = study.experiments[experiment].dataset.num_classes
    matrices = []
    for path in matrix_files:
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise tables.ResultsError(
                f"{path}: unreadable C matrix ({error}); retrain the run"
            ) from None
        if matrix.shape != (K, K):
            raise tables.ResultsError(
                f"{path}: C has shape {matrix.shape}, expected ({K}, {K}) for {experiment}"
            )
        matrices.append(matrix)
    names = json.loads(Path(manifest_file).read_text()).get("class_names") or [
        str(k) for k in range(K)
    ]
    label = tables.row_labels(study)[experiment]
    title = f"{label}: learned C of LS++ (α = {value_text}), mean of {len(matrices)} seed(s)"
    return plot_c_matrix(np.mean(matrices, axis=0), names, title, stem)
