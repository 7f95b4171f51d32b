"""The tables beyond the paper, from every run of every method: the paired differences
over seeds (gains over gamma = 1), the methods side by side, and calibration (each as
.csv, .md and .html); their numbers are :mod:`smoothbench.results.analysis`'."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from smoothbench.results.collection import row_labels
from smoothbench.results.rendering import (
    format_cell,
    render_html,
    render_markdown,
    value_cell,
    write_csv,
    write_text,
)
from smoothbench.run_record import format_value
from smoothbench.study import Study

# Beyond the paper (smoothbench.results.analysis): seeds, methods, calibration.
ANALYSIS_NAMES = ("paired_differences", "methods", "calibration")


def write_analysis(
    study: Study,
    runs: pd.DataFrame,
    paired: pd.DataFrame,
    folder: Path,
    calibration_epoch: str,
    seeds_note: str,
    provenance_note: str = "",
) -> dict:
    """paired_differences (``paired``, computed once by
    :func:`smoothbench.results.paper_tables.table_frames`: Table 3's noise mark reads it too), methods
    and calibration (.csv, .md, .html) from every run of every method (``runs``); each
    note list ends with ``seeds_note`` and ``provenance_note`` (under what code and
    compute the runs were made, where given)."""
    ending = [seeds_note, *([provenance_note] if provenance_note else [])]
    from smoothbench.results import analysis

    labels = row_labels(study)
    calibration = analysis.calibration_cells(runs)
    methods = analysis.methods_table(calibration, study)
    accuracy = {
        (r.experiment, r.method, format_value(r.value)): (
            r.accuracy_percent,
            r.accuracy_percent_std,
        )
        for r in calibration.itertuples()
    }

    header = [
        "Data set",
        "method",
        "seeds",
        "accuracy %",
        "γ = 1 %",
        "mean difference (points)",
        "95 % interval",
        "verdict",
    ]
    rows = []
    for r in paired.itertuples():
        ours, base = (
            accuracy[(r.experiment, r.method, format_value(r.value))],
            accuracy[(r.experiment, "gamma", "1.0")],
        )
        interval = (
            "-"
            if pd.isna(r.ci95_lower_points)
            else f"[{r.ci95_lower_points:+.2f}, {r.ci95_upper_points:+.2f}]"
        )
        rows.append(
            [
                labels[r.experiment],
                analysis.describe(r.method, r.value),
                str(r.seeds),
                format_cell(*ours),
                format_cell(*base),
                f"{r.mean_difference_points:+.2f}",
                interval,
                r.verdict,
            ]
        )
    title = "Gains over γ = 1, paired by seed"
    notes = [
        "Difference of best validation accuracy from γ = 1 (one-hot) trained with the same seed, in percentage "
        "points: mean over seeds and a 95 % Student-t interval (n - 1 degrees of freedom). 'gain holds': the "
        "whole interval is above 0; 'within seed noise': it contains 0.",
        *ending,
    ]
    if not rows:
        notes.insert(
            0,
            "No run pairs with γ = 1 in this study (γ = 1 was not run), so there is no paired difference.",
        )
    write_csv(
        folder / "paired_differences.csv",
        paired.assign(row=paired["experiment"].map(labels)).round(5),
    )
    write_text(
        folder / "paired_differences.md", render_markdown(title, header, rows, notes)
    )
    write_text(
        folder / "paired_differences.html", render_html([(title, header, rows, notes)])
    )

    header = [
        "Data set",
        "1-hot",
        "ECE",
        "uniform α (best α)",
        "ECE",
        "γ best (γ)",
        "ECE",
        "LS++ (α)",
        "ECE",
    ]
    rows = []
    for r in methods.itertuples():
        row = [labels[r.experiment]]
        for key in ("one_hot", "alpha", "gamma", "lspp"):
            value = None if key == "one_hot" else getattr(r, f"{key}_value")
            row.append(
                value_cell(
                    getattr(r, f"{key}_accuracy_percent"),
                    getattr(r, f"{key}_accuracy_percent_std"),
                    value,
                )
            )
            row.append(
                format_cell(getattr(r, f"{key}_ece"), getattr(r, f"{key}_ece_std"), 4)
            )
        rows.append(row)
    title = "Methods side by side: accuracy (%) and ECE"
    notes = [
        "Best validation accuracy (%) and expected calibration error (15 bins) on the validation split, mean ± "
        "std over seeds. Each method shows its value with the best mean accuracy; '-': not run. 1-hot is γ = 1; "
        "uniform α is q = (1 - α) onehot + α / K; LS++ is Label Smoothing++ (learned C).",
        f"Calibration is measured at the {calibration_epoch} epoch (config key tables.calibration_epoch).",
        *ending,
    ]
    write_csv(
        folder / "methods.csv",
        methods.assign(
            row=methods["experiment"].map(labels) if len(methods) else []
        ).round(6),
    )
    write_text(folder / "methods.md", render_markdown(title, header, rows, notes))
    write_text(folder / "methods.html", render_html([(title, header, rows, notes)]))

    header = [
        "Data set",
        "method",
        "seeds",
        "accuracy %",
        "ECE",
        "NLL",
        "Brier",
        "confidence",
    ]
    rows = [
        [
            labels[r.experiment],
            analysis.describe(r.method, r.value),
            str(r.seeds),
            format_cell(r.accuracy_percent, r.accuracy_percent_std),
            format_cell(r.ece, r.ece_std, 4),
            format_cell(r.nll, r.nll_std, 4),
            format_cell(r.brier, r.brier_std, 4),
            format_cell(r.confidence, r.confidence_std, 4),
        ]
        for r in calibration.itertuples()
    ]
    title = "Calibration on the validation split"
    notes = [
        "ECE: expected calibration error, 15 equal-width confidence bins; NLL: mean negative log-likelihood; "
        "Brier: mean squared distance of the probabilities from the one-hot label (0 best, 2 worst); confidence: "
        "mean top probability. Mean ± std over seeds.",
        f"Measured at the {calibration_epoch} epoch of each run (config key tables.calibration_epoch); "
        "'-': the run files hold no calibration.",
        *ending,
    ]
    write_csv(
        folder / "calibration.csv",
        calibration.assign(row=calibration["experiment"].map(labels)).round(6),
    )
    write_text(folder / "calibration.md", render_markdown(title, header, rows, notes))
    write_text(folder / "calibration.html", render_html([(title, header, rows, notes)]))
    return {
        "paired_differences": paired,
        "methods": methods,
        "calibration": calibration,
    }
