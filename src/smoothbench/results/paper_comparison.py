"""This study beside the paper: its Tables 1-2 cell by cell, and its Table 3 as
printed, recomputed from its Tables 1-2 (:func:`smoothbench.results.paper_numbers.check_paper_arithmetic`)
and set beside ours, for the experiments that train on a paper row's data set
(:func:`smoothbench.results.paper_numbers.is_paper_row`). :mod:`smoothbench.results.paper_tables` writes them
(comparison.csv, comparison_table3.csv, comparison.md and .html) and
:mod:`smoothbench.results.front_page` sets Table 3 beside the paper's.
"""

from __future__ import annotations

import pandas as pd

from smoothbench.results.collection import row_labels
from smoothbench.results.paper_numbers import (
    PAPER,
    check_paper_arithmetic,
    is_paper_row,
    paper_cells,
)
from smoothbench.results.rendering import format_cell
from smoothbench.run_record import format_value
from smoothbench.study import Study


def _of_paper_rows(frame: pd.DataFrame, study: Study) -> pd.Series:
    """A boolean mask of ``frame``'s rows whose experiment is a paper row (a mask, not
    a list: an empty list would select no columns of an empty frame)."""
    return (
        frame["experiment"]
        .map(lambda name: is_paper_row(name, study.experiments[name].dataset.name))
        .astype(bool)
    )


def compare_cells(cells: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Every (experiment, gamma) in both the paper's Tables 1-2 and our runs, for the
    experiments that train on the data set of the paper's row (:func:`is_paper_row`)."""
    cells = cells[_of_paper_rows(cells, study)]
    paper = paper_cells()[["row", "experiment", "gamma", "mean_percent"]]
    paper = paper.assign(gamma_text=paper["gamma"].map(format_value)).drop(
        columns="gamma"
    )
    ours = cells.assign(gamma_text=cells["gamma"].map(format_value))
    both = ours.merge(
        paper, on=["experiment", "gamma_text"], suffixes=("", "_paper"), sort=False
    )
    compared = pd.DataFrame(
        {
            "row": both["row"],
            "experiment": both["experiment"],
            "gamma": both["gamma"],
            "paper_percent": both["mean_percent_paper"],
            "ours_percent": both["mean_percent"].round(5),
            "ours_std_percent": both["std_percent"].round(5),
            "seeds": both["seeds"],
            "difference_points": (
                both["mean_percent"] - both["mean_percent_paper"]
            ).round(5),
            "ours_model": [
                study.experiments[name].model_name for name in both["experiment"]
            ],
            "ours_epochs": [
                study.experiments[name].epochs for name in both["experiment"]
            ],
        }
    )
    return compared.reset_index(drop=True)


def compare_table3(ours: pd.DataFrame, study: Study, tolerance: float) -> pd.DataFrame:
    """The paper's printed Table 3, the same recomputed from its Tables 1-2, and ours
    beside it where our experiment trains on the paper row's data set."""
    check = check_paper_arithmetic(tolerance)
    ours = ours[_of_paper_rows(ours, study)]
    ours = ours.rename(
        columns={
            column: f"ours_{column}"
            for column in ours.columns
            if column != "experiment"
        }
    )
    return check.merge(ours, on="experiment", how="left")


def not_in_paper_notes(study: Study) -> list[str]:
    """One note per experiment whose data set is not the paper's row of that name (or
    no row at all): what it trains on, from the registry, so no reader takes it for a
    paper row (scikit-learn's 8x8 digits are not the paper's MNIST)."""
    labels = row_labels(study)
    return [
        f"{labels[name]}: {experiment.dataset.description or experiment.dataset.name}; not one of the "
        "paper's data sets, so no paper number stands beside it."
        for name, experiment in study.experiments.items()
        if not is_paper_row(name, experiment.dataset.name)
    ]


def comparison_sections(
    compared: pd.DataFrame, against: pd.DataFrame, tolerance: float, study: Study
) -> list:
    """The comparison as (title, header, rows, notes) sections."""
    header = [
        "Data set",
        "γ",
        "paper",
        "ours",
        "ours − paper",
        "seeds",
        "our model, epochs",
    ]
    rows = [
        [
            record.row,
            f"{record.gamma:.2f}",
            format_cell(record.paper_percent),
            format_cell(record.ours_percent, record.ours_std_percent),
            f"{record.difference_points:+.2f}",
            str(record.seeds),
            f"{record.ours_model}, {record.ours_epochs}",
        ]
        for record in compared.itertuples()
    ]
    notes = [
        f"Best validation accuracy (%): the paper's Tables 1-2 ({PAPER}) and this study's runs, for every "
        "(data set, γ) in both. The paper ran one seed per cell."
    ]
    if not rows:
        notes.append(
            "No data set of this study is in the paper's tables, so there is nothing to compare cell by cell; "
            "the paper's own Table 3, recomputed from its Tables 1-2, is checked below."
        )
    notes += not_in_paper_notes(study)
    header3 = [
        "Data set",
        "printed best",
        "printed γ = 1",
        "printed diff %",
        "recomputed diff %",
        "paper's arithmetic",
        "our best (γ)",
        "our γ = 1",
        "our diff %",
    ]
    rows3 = []
    for record in against.itertuples():
        holds = (
            "holds"
            if record.holds
            else (
                f"NO: {record.diff_percent_printed:.2f} printed, {record.diff_percent_recomputed:.2f} from Tables 1-2 "
                f"((best - base) / base gives {record.diff_over_base_percent:.2f})"
            )
        )
        ours_best = (
            "-"
            if pd.isna(record.ours_best_percent)
            else (
                f"{format_cell(record.ours_best_percent, record.ours_best_std_percent)} ({record.ours_best_gamma})"
            )
        )
        rows3.append(
            [
                record.row,
                format_cell(record.best_percent_printed),
                format_cell(record.baseline_percent_printed),
                format_cell(record.diff_percent_printed),
                format_cell(record.diff_percent_recomputed),
                holds,
                ours_best,
                format_cell(
                    record.ours_baseline_percent, record.ours_baseline_std_percent
                ),
                format_cell(record.ours_diff_percent),
            ]
        )
    broken = [record.row for record in against.itertuples() if not record.holds]
    notes3 = [
        "Printed: the paper's Table 3. Recomputed: Table 3 computed from the paper's Tables 1-2 with "
        "diff % = (best - base) / best x 100, as this project computes its own.",
        f"The paper's arithmetic holds where every printed value is within {tolerance:g} points of the recomputed one. "
        + (
            f"It does not hold for: {', '.join(broken)}."
            if broken
            else "It holds on every row."
        ),
    ]
    return [
        ("Comparison with the paper: Tables 1-2, cell by cell", header, rows, notes),
        ("Comparison with the paper: Table 3", header3, rows3, notes3),
    ]
