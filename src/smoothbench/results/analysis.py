"""Beyond the paper's tables: is a gain over gamma = 1 more than seed noise, how do the
methods compare, and what does smoothing do to calibration.

- :func:`paired_differences`: for every (method, value) of an experiment, the per-seed
  difference of its best validation accuracy from gamma = 1 (one-hot) *of the same
  seed*, its mean and a 95 % Student-t interval over the seeds (n - 1 degrees of freedom).
  The gain "holds" when the whole interval lies above 0; one seed gives no interval,
  and seeds that all differ by the same amount (common with a small validation split,
  whose accuracies move in steps of 1/n) give no spread to judge noise by.
- :func:`calibration_cells`: per (experiment, method, value), mean and sample std over
  seeds of accuracy, ECE, NLL, Brier and mean confidence (read at the epoch that
  ``tables.calibration_epoch`` names).
- :func:`methods_table`: per experiment, one-hot / uniform alpha / gamma best / LS++
  side by side (accuracy and ECE), the best value of each method chosen by mean accuracy,
  as the LS++ paper's tables set methods side by side.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from smoothbench.methods import METHODS
from smoothbench.run_record import format_value
from smoothbench.study import Study

METHOD_LABELS = {"gamma": "γ (eq. 7)", "alpha": "uniform α", "lspp": "LS++ α"}
CALIBRATION_METRICS = ["accuracy_percent", "ece", "nll", "brier", "confidence"]
# paired_differences' verdicts; Table 3 marks a best gamma whose gain is WITHIN_NOISE.
GAIN_HOLDS = "gain holds"
LOSS_HOLDS = "loss holds"
WITHIN_NOISE = "within seed noise"


def _is_baseline(method: str, value: float) -> bool:
    return method == "gamma" and format_value(value) == "1.0"


def baseline_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` (runs or cells, with method and value columns) at gamma = 1 (one-hot)."""
    return frame[
        [
            _is_baseline(method, value)
            for method, value in zip(frame["method"], frame["value"])
        ]
    ]


def describe(method: str, value: float) -> str:
    """``γ = 0.9``, ``uniform α = 0.1``, ``LS++ α = 0.1``."""
    return f"{METHOD_LABELS[method].split(' (')[0]} = {format_value(value)}"


def student_interval(
    differences: list[float], level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, lower, upper) of a Student-t interval for the mean; NaN bounds for one value."""
    n = len(differences)
    mean = sum(differences) / n
    if n < 2:
        return mean, math.nan, math.nan
    std = math.sqrt(sum((value - mean) ** 2 for value in differences) / (n - 1))
    half = student_half_width(std, n, level)
    return mean, mean - half, mean + half


def student_half_width(std: float, n: int, level: float = 0.95) -> float:
    """Half the width of the Student-t interval of a mean of ``n`` values of spread ``std``."""
    return stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)


def paired_differences(runs: pd.DataFrame, study: Study) -> pd.DataFrame:
    """One row per (experiment, method, value) other than gamma = 1: the paired
    difference over the seeds both it and gamma = 1 ran, in percentage points."""
    rows = []
    for name in study.experiments:
        own = runs[runs["experiment"] == name]
        baseline = baseline_rows(own)
        base = dict(zip(baseline["seed"], baseline["best_val_accuracy_percent"]))
        if not base:
            continue
        for (method, value), group in own.groupby(["method", "value"], sort=False):
            if _is_baseline(method, value):
                continue
            paired = [
                (accuracy - base[seed])
                for seed, accuracy in zip(
                    group["seed"], group["best_val_accuracy_percent"]
                )
                if seed in base
            ]
            if not paired:
                continue
            mean, lower, upper = student_interval(paired)
            if math.isnan(lower):
                verdict = "one seed: no interval"
            elif lower == upper:
                verdict = (
                    "same difference on every seed: no spread to estimate noise from"
                )
            elif lower > 0:
                verdict = GAIN_HOLDS
            elif upper < 0:
                verdict = LOSS_HOLDS
            else:
                verdict = WITHIN_NOISE
            rows.append(
                {
                    "experiment": name,
                    "method": method,
                    "value": value,
                    "seeds": len(paired),
                    "mean_difference_points": mean,
                    "ci95_lower_points": lower,
                    "ci95_upper_points": upper,
                    "verdict": verdict,
                }
            )
    columns = [
        "experiment",
        "method",
        "value",
        "seeds",
        "mean_difference_points",
        "ci95_lower_points",
        "ci95_upper_points",
        "verdict",
    ]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    order = {method: index for index, method in enumerate(METHODS)}
    if len(frame):
        frame["_order"] = frame["method"].map(order)
        frame = frame.sort_values(
            ["_order", "value"], ascending=[True, False], kind="stable"
        )
        frame = frame.sort_values(
            "experiment",
            key=lambda c: c.map(list(study.experiments).index),
            kind="stable",
        )
        frame = frame.drop(columns="_order")
    return frame.reset_index(drop=True)


def calibration_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, method, value): mean and sample std over seeds of accuracy (%),
    ECE, NLL, Brier and confidence."""
    frame = runs.assign(accuracy_percent=runs["best_val_accuracy_percent"])
    grouped = frame.groupby(["experiment", "method", "value"], sort=False)
    means = grouped[CALIBRATION_METRICS].mean()
    stds = grouped[CALIBRATION_METRICS].std(ddof=1).add_suffix("_std")
    counts = grouped["seed"].count().rename("seeds")
    return pd.concat([means, stds, counts], axis=1).reset_index()


def best_of_method(
    cells: pd.DataFrame, experiment: str, method: str, exclude_baseline: bool = False
) -> pd.Series | None:
    """The (method, value) cell of ``experiment`` with the best mean accuracy (first on ties, by value order)."""
    own = cells[(cells["experiment"] == experiment) & (cells["method"] == method)]
    if exclude_baseline:
        own = own[[not _is_baseline(method, value) for value in own["value"]]]
    if own.empty:
        return None
    return own.loc[own["accuracy_percent"].idxmax()]


def methods_table(cells: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Per experiment: one-hot (gamma = 1), the best uniform alpha, the best gamma and the
    best LS++ alpha, each with its accuracy (mean, std over seeds) and ECE."""
    rows = []
    for name in study.experiments:
        own = cells[cells["experiment"] == name]
        if own.empty:
            continue
        baseline = baseline_rows(own)
        chosen = {
            "one_hot": baseline.iloc[0] if len(baseline) else None,
            "alpha": best_of_method(cells, name, "alpha"),
            "gamma": best_of_method(cells, name, "gamma"),
            "lspp": best_of_method(cells, name, "lspp"),
        }
        row: dict[str, str | float] = {"experiment": name}
        for key, cell in chosen.items():
            row[f"{key}_value"] = math.nan if cell is None else cell["value"]
            for metric in ("accuracy_percent", "ece"):
                row[f"{key}_{metric}"] = math.nan if cell is None else cell[metric]
                row[f"{key}_{metric}_std"] = (
                    math.nan if cell is None else cell[f"{metric}_std"]
                )
        rows.append(row)
    return pd.DataFrame.from_records(rows)
