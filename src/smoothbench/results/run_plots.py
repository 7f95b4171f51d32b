"""The figures of one experiment's runs, each written as PNG (for the report) and PDF
(for papers); the runs are found in runs.csv (:mod:`smoothbench.results.collection`), and the
files a figure needs beyond its numbers are read through :mod:`smoothbench.run_record`:

- :func:`plot_training_curves`: loss and accuracy per epoch for one data set's gammas,
  training solid, validation dashed, each loss with its floor (the runs' history.csv);
- :func:`plot_reliability`: reliability diagrams of one data set (accuracy against
  confidence per bin, seeds pooled, the share of examples per bin in a panel below):
  gamma = 1 against the best gamma, and the best uniform alpha and LS++ where the study
  ran them (the bins of the runs' metrics.json);
- :func:`plot_c_matrix`: Label Smoothing++'s learned matrix C as a heatmap with class
  names (the LS++ paper's Figure 3), averaged over seeds; the colours span the
  off-diagonal values, the zero diagonal is greyed (the runs' c_matrix.npy).

Why the floor: with smoothed targets q the cross-entropy cannot fall below the entropy
H(q) = -gamma log gamma - (1 - gamma) log((1 - gamma) / (K - 1)), which grows as gamma
falls, so raw losses of different gammas are not comparable, and the training loss
(augmented images, BatchNorm in training mode, weights moving through the epoch) can
sit above the validation loss. The middle panel shows the loss above its floor on a
log scale, where the curves of all gammas and both splits can be read together.

The reliability and C figures are built by ``*_figure`` functions that their ``plot_*``
save, so a test reads the figure's artists; the figures are written atomically by
:func:`smoothbench.results.summary_plots.save_figure`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from smoothbench import run_record
from smoothbench.methods import target_entropy
from smoothbench.results import analysis
from smoothbench.results.collection import row_labels
from smoothbench.results.provenance import provenance_line
from smoothbench.results.summary_plots import (
    OURS_COLOR,
    PAPER_COLOR,
    SHARE_COLOR,
    new_figure,
    save_figure,
    set_title,
)
from smoothbench.run_record import (
    HISTORY_FILE,
    ResultsError,
    format_value,
    read_history,
)


def plot_training_curves(
    label: str,
    histories: list[tuple[float, int, list[dict]]],
    num_classes: int,
    stem: Path | str,
    provenance: str = "",
) -> list[Path]:
    """Loss, loss above its floor, and accuracy per epoch for one experiment's gammas;
    the ``provenance`` line under the title.

    ``histories``: (gamma, seed, rows of history.csv). Several seeds of a gamma are
    averaged epoch by epoch.
    """
    from matplotlib import colormaps

    by_gamma: dict[float, list[list[dict]]] = {}
    for gamma, _seed, rows in histories:
        by_gamma.setdefault(gamma, []).append(rows)
    gammas = sorted(by_gamma, reverse=True)
    colours = colormaps["viridis"](np.linspace(0, 0.9, max(len(gammas), 1)))
    figure, axes = new_figure(3, 1, width=4.0, height=3.2)
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
    set_title(
        figure,
        f"{label}: training (solid) and validation (dashed) per epoch{averaged}",
        provenance,
    )
    return save_figure(figure, stem)


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


def reliability_figure(
    label: str, curves: list[tuple[str, list[dict], float]], provenance: str = ""
):
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
    set_title(figure, f"{label}: reliability on the validation split", provenance, 10)
    return figure


def plot_reliability(
    label: str,
    curves: list[tuple[str, list[dict], float]],
    stem: Path | str,
    provenance: str = "",
) -> list[Path]:
    """:func:`reliability_figure`, written as PNG and PDF."""
    return save_figure(reliability_figure(label, curves, provenance), stem)


def off_diagonal_limits(matrix: np.ndarray) -> tuple[float, float]:
    """The colour range of C: its off-diagonal values only. The diagonal is zero by
    construction, and letting it into the scale squeezed the values that carry the
    information (0.10-0.13 on the demo) into the top of the colour map."""
    values = matrix[~np.eye(len(matrix), dtype=bool)]
    low, high = float(values.min()), float(values.max())
    return low, high


def c_matrix_figure(
    matrix: np.ndarray, class_names: list[str], title: str, provenance: str = ""
):
    """C as a heatmap, unsaved (so a test can read its colour limits): row = the true
    class, column = where its smoothing mass goes; the zero diagonal masked in grey."""
    from matplotlib import colormaps

    K = len(matrix)
    side = min(10.0, 2.5 + 0.35 * K)
    figure, axis = new_figure(1, 1, width=side, height=side * 0.85)
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
    set_title(figure, "", provenance)
    return figure


def plot_c_matrix(
    matrix: np.ndarray,
    class_names: list[str],
    title: str,
    stem: Path | str,
    provenance: str = "",
) -> list[Path]:
    """:func:`c_matrix_figure` (with the ``provenance`` line under it), written as PNG
    and PDF."""
    return save_figure(c_matrix_figure(matrix, class_names, title, provenance), stem)


# ---------------------------------------------------------------- what the rules call


def _experiment_runs(runs: pd.DataFrame, study, experiment: str) -> pd.DataFrame:
    if experiment not in study.experiments:
        raise ResultsError(
            f"no experiment {experiment!r} in config key 'experiments' ({', '.join(study.experiments)})"
        )
    return runs[runs["experiment"] == experiment]


def write_training_curves(
    study, experiment: str, runs: pd.DataFrame, stem: Path | str
) -> list[Path]:
    """One experiment's training curves: its gamma runs in ``runs`` (runs.csv), each
    from the history.csv beside its metrics.json."""
    own = _experiment_runs(runs, study, experiment)
    own = own[own["method"] == "gamma"]  # curves against gamma, each with eq. 7's floor
    histories = []
    for record in own.itertuples():
        path = Path(record.metrics_file).with_name(HISTORY_FILE)
        try:
            rows = read_history(path)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ResultsError(
                f"{path}: unreadable history ({error}); retrain the run"
            ) from None
        missing = {"loss", "accuracy", "val_loss", "val_accuracy"} - set(
            rows[0] if rows else ()
        )
        if not rows or missing:
            what = f"no column {', '.join(sorted(missing))}" if rows else "no epochs"
            raise ResultsError(f"{path}: {what} in the history; retrain the run")
        histories.append((record.gamma, record.seed, rows))
    spec = study.experiments[experiment]
    return plot_training_curves(
        row_labels(study)[experiment],
        histories,
        spec.dataset.num_classes,
        stem,
        provenance_line(own),
    )


def calibration_bins(path: Path | str, calibration_epoch: str = "best") -> list[dict]:
    """The reliability bins of one run at ``calibration_epoch``, from its metrics.json
    read and checked as runs.csv's rows are (:func:`smoothbench.run_record.read_metrics`)."""
    path = Path(path)
    payload = run_record.read_metrics(path)
    measured = run_record.read_calibration(path, payload, calibration_epoch)
    if "bins" not in measured:
        raise ResultsError(
            f"{path}: no calibration bins at the {calibration_epoch} epoch; retrain the run"
        )
    return measured["bins"]


def write_reliability(
    study,
    experiment: str,
    runs: pd.DataFrame,
    stem: Path | str,
    calibration_epoch: str = "best",
) -> list[Path]:
    """One experiment's reliability diagrams: gamma = 1, the best gamma, and the best
    uniform alpha and LS++ value where run (best by mean accuracy, from ``runs``:
    runs.csv), each from the bins of its runs' metrics.json."""
    own = _experiment_runs(runs, study, experiment)
    cells = analysis.calibration_cells(own)
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
    curves, drawn = [], []
    for name, cell in chosen:
        found = own[(own["method"] == cell["method"]) & (own["value"] == cell["value"])]
        bin_lists = [
            calibration_bins(path, calibration_epoch) for path in found["metrics_file"]
        ]
        curves.append((name, pooled_bins(bin_lists), float(cell["ece"])))
        drawn.append(found)
    if not curves:
        raise ResultsError(
            f"experiment {experiment!r}: no runs to draw a reliability diagram from"
        )
    drawn = pd.concat(drawn).drop_duplicates("metrics_file")
    return plot_reliability(
        row_labels(study)[experiment], curves, stem, provenance_line(drawn)
    )


def write_c_matrix(
    study,
    experiment: str,
    value_text: str,
    matrix_files,
    manifest_file,
    stem: Path | str,
    runs: pd.DataFrame | None = None,
) -> list[Path]:
    """The mean over seeds of one (experiment, LS++ alpha)'s learned C, with the class names
    from the prepared data's manifest; with ``runs`` (runs.csv), the title says under
    what code and compute those LS++ runs were made."""
    K = study.experiments[experiment].dataset.num_classes
    matrices = []
    for path in matrix_files:
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ResultsError(
                f"{path}: unreadable C matrix ({error}); retrain the run"
            ) from None
        if matrix.shape != (K, K):
            raise ResultsError(
                f"{path}: C has shape {matrix.shape}, expected ({K}, {K}) for {experiment}"
            )
        matrices.append(matrix)
    names = json.loads(Path(manifest_file).read_text()).get("class_names") or [
        str(k) for k in range(K)
    ]
    label = row_labels(study)[experiment]
    title = f"{label}: learned C of LS++ (α = {value_text}), mean of {len(matrices)} seed(s)"
    provenance = ""
    if runs is not None:
        own = _experiment_runs(runs, study, experiment)
        own = own[
            (own["method"] == "lspp") & own["value"].map(format_value).eq(value_text)
        ]
        provenance = provenance_line(own)
    return plot_c_matrix(np.mean(matrices, axis=0), names, title, stem, provenance)
