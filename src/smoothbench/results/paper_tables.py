"""The paper's Tables 1-3 regenerated from the runs, beside the paper's own numbers.

Every number comes from ``runs.csv`` (:mod:`smoothbench.results.collection`: one row per run,
read and checked from its ``metrics.json`` once), the accuracy its
``best_val_accuracy``: the best validation accuracy over the epochs, the paper's
metric; the tidy ``.csv`` files name the file each value was read from. The paper's own
numbers, and Table 3's formula that its rows and ours share, are
:mod:`smoothbench.results.paper_numbers`'s; the comparison with them :mod:`smoothbench.results.paper_comparison`'s;
the tables beyond the paper :mod:`smoothbench.results.extra_tables`'; the text formats
(Markdown, LaTeX, HTML) :mod:`smoothbench.results.rendering`'s.

Layout as the paper prints it: data sets as rows, gamma as columns (Table 1: gamma
<= 0.5, Table 2: gamma > 0.5), best validation accuracy in percent with two decimals,
'-' where gamma <= 1/K or the cell was not run. With several seeds a cell shows
``mean ± std`` (sample standard deviation over seeds) and the csv keeps every seed.
Table 3: the best mean over gamma, the gamma(s) giving it, the mean at gamma = 1 and
diff % = (best - base) / best x 100, the formula twelve of the paper's thirteen rows
follow; a best gamma whose gain over gamma = 1 is within seed noise (the paired
differences of :mod:`smoothbench.results.analysis`, computed once for both) is marked.

The report's front page (:mod:`smoothbench.results.front_page`) shows Table 3 from the same
frames (:func:`table_frames`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from smoothbench.methods import gamma_in_range
from smoothbench.results.collection import TABLE_COLUMNS, row_labels
from smoothbench.results.extra_tables import ANALYSIS_NAMES, write_analysis
from smoothbench.results.paper_comparison import (
    compare_cells,
    compare_table3,
    comparison_sections,
)
from smoothbench.results.paper_numbers import (
    DEFAULT_TOLERANCE,
    TABLE_GAMMAS,
    best_versus_baseline,
    same_gamma,
)
from smoothbench.results.provenance import (
    PROVENANCE_FILES,
    provenance_line,
)
from smoothbench.results.provenance_files import write_provenance
from smoothbench.results.rendering import (
    format_cell,
    render_html,
    render_latex,
    render_markdown,
    write_csv,
    write_text,
)
from smoothbench.run_record import format_value
from smoothbench.study import Study

TABLE1_LAST_GAMMA = 0.5
TABLE_NAMES = ("table1", "table2", "table3")
OUTPUT_FILES = (
    *(
        f"{name}.{suffix}"
        for name in TABLE_NAMES
        for suffix in ("csv", "md", "tex", "html")
    ),
    "comparison.csv",
    "comparison_table3.csv",
    "comparison.md",
    "comparison.html",
    *(
        f"{name}.{suffix}"
        for name in ANALYSIS_NAMES
        for suffix in ("csv", "md", "html")
    ),
    *PROVENANCE_FILES,
)
# Table 3 marks a best gamma whose gain over gamma = 1 is within seed noise (the paired
# differences' verdict, smoothbench.results.analysis): the mark and the note that explains it.
NOISE_MARK = "†"
NOISE_NOTE = (
    f"{NOISE_MARK} after a γ best: its gain over γ = 1 is within seed noise, the 95 % interval of its paired "
    "difference (Gains over γ = 1, paired by seed) contains 0: the seeds cannot tell it from γ = 1. "
    "With one seed there is no interval and no mark; and no mark does not make a gain hold: the best of "
    "several γ is picked after the fact (see the paired table)."
)


def summarize_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, gamma) of eq. 7's runs: mean and sample std over seeds, in percent."""
    runs = runs[runs["method"] == "gamma"] if "method" in runs else runs
    grouped = runs.groupby(["experiment", "gamma"], sort=False)[
        "best_val_accuracy_percent"
    ]
    cells = grouped.agg(
        mean_percent="mean",
        std_percent=lambda values: values.std(ddof=1),
        seeds="count",
    )
    return cells.reset_index()


# ---------------------------------------------------------------- layout


def table_gammas(study: Study, number: int) -> list[float]:
    """The columns of Table ``number``: the paper's, plus the study's other gammas in range."""
    studied = {
        gamma
        for experiment in study.experiments.values()
        for gamma in experiment.gammas
    }
    columns = {format_value(gamma): gamma for gamma in TABLE_GAMMAS[number]}
    for gamma in studied:
        if (gamma <= TABLE1_LAST_GAMMA) == (number == 1):
            columns.setdefault(format_value(gamma), gamma)
    return sorted(columns.values())


def accuracy_rows(
    cells: pd.DataFrame, study: Study, gammas: list[float]
) -> list[list[str]]:
    """Table 1 or 2 as text rows: label, then one cell per gamma ('-': impossible or not run)."""
    labels = row_labels(study)
    rows = []
    for name, experiment in study.experiments.items():
        own = cells[cells["experiment"] == name]
        row = [labels[name]]
        for gamma in gammas:
            cell = own[[same_gamma(value, gamma) for value in own["gamma"]]]
            if cell.empty or not gamma_in_range(gamma, experiment.dataset.num_classes):
                row.append("-")
            else:
                row.append(
                    format_cell(
                        cell["mean_percent"].iloc[0], cell["std_percent"].iloc[0]
                    )
                )
        rows.append(row)
    return rows


def best_gamma_verdicts(
    experiment: str, best_gamma: str, paired: pd.DataFrame
) -> dict[str, str]:
    """gamma text -> what the paired differences say of its gain over gamma = 1, for
    each best gamma of one Table 3 row (``best_gamma``, as best_versus_baseline joins
    ties): the paired table's verdict, 'the base itself' for gamma = 1, '' where the
    paired table has no row (gamma = 1 not run)."""
    own = paired[(paired["experiment"] == experiment) & (paired["method"] == "gamma")]
    verdicts = dict(zip(own["value"].map(format_value), own["verdict"]))
    return {
        text: "the base itself"
        if same_gamma(float(text), 1.0)
        else verdicts.get(text, "")
        for text in best_gamma.split(", ")
    }


def mark_seed_noise(table3: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """Table 3 with what the paired differences say of its best gamma:
    ``best_gain_verdict`` (the paired verdict; per gamma, 'g: verdict; ...', where tied
    best gammas have different ones) and ``best_within_seed_noise``: True where the
    interval of every best gamma contains 0 (the row names a best gamma its seeds
    cannot tell from gamma = 1), False where one has an interval clear of 0, and empty
    (unknown) where one has no interval (one seed, no gamma = 1 run)."""
    from smoothbench.results import analysis

    verdicts = [
        best_gamma_verdicts(record.experiment, record.best_gamma, paired)
        for record in table3.itertuples()
    ]
    texts = [
        next(iter(set(found.values())))
        if len(set(found.values())) == 1
        else "; ".join(f"{gamma}: {verdict}" for gamma, verdict in found.items())
        for found in verdicts
    ]
    decided = (analysis.GAIN_HOLDS, analysis.LOSS_HOLDS)

    def within_noise(found: dict) -> bool | None:
        values = set(found.values())
        if not values or not values <= {analysis.WITHIN_NOISE, *decided}:
            return None  # a best gamma without an interval
        return values == {analysis.WITHIN_NOISE}

    noise = pd.array([within_noise(found) for found in verdicts], dtype="boolean")
    return table3.assign(best_gain_verdict=texts, best_within_seed_noise=noise)


def marked_best_gamma(experiment: str, best_gamma: str, paired: pd.DataFrame) -> str:
    """Table 3's γ best cell: every best gamma, NOISE_MARK after each whose gain over
    gamma = 1 is within seed noise."""
    from smoothbench.results import analysis

    return ", ".join(
        gamma + (NOISE_MARK if verdict == analysis.WITHIN_NOISE else "")
        for gamma, verdict in best_gamma_verdicts(
            experiment, best_gamma, paired
        ).items()
    )


def table3_rows(
    table3: pd.DataFrame, study: Study, paired: pd.DataFrame
) -> list[list[str]]:
    """Table 3 as text rows: label, best, γ best (marked where within seed noise), the
    accuracy at gamma = 1 and diff %."""
    labels = row_labels(study)
    rows = []
    for name in study.experiments:
        own = table3[table3["experiment"] == name]
        if own.empty:
            rows.append([labels[name], "-", "-", "-", "-"])
            continue
        record = own.iloc[0]
        rows.append(
            [
                labels[name],
                format_cell(record["best_percent"], record["best_std_percent"]),
                marked_best_gamma(name, record["best_gamma"], paired),
                format_cell(record["baseline_percent"], record["baseline_std_percent"]),
                format_cell(record["diff_percent"]),
            ]
        )
    return rows


# ---------------------------------------------------------------- writing everything


def seed_note(cells: pd.DataFrame) -> str:
    counts = sorted(set(cells["seeds"])) if len(cells) else [0]
    if counts == [1]:
        return "One seed per cell, as in the paper."
    return (
        f"Seeds per cell: {', '.join(map(str, counts))}; cells show mean ± sample standard deviation over "
        "seeds (a single seed shows no ±); the csv lists every seed."
    )


TABLE3_TITLE = "Table 3: the best accuracy over γ against γ = 1"
TABLE3_HEADER = ["Data set", "Best", "γ best", "Acc. γ = 1", "diff %"]
TABLE3_NOTES = (
    "diff % = (best - base) / best x 100, base = the accuracy at γ = 1 ('-' where γ = 1 was not run).",
    "γ best lists every γ that reaches the best value as printed (two decimals).",
    NOISE_NOTE,
)


def table_frames(
    study: Study, runs: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE
) -> dict:
    """Everything the tables and the front page show, from ``runs`` (runs.csv,
    :func:`smoothbench.results.collection.read_runs_table`): the runs (all methods, and eq. 7's
    with the columns of table1.csv), the cells, the paired differences, Table 3 (marked
    where its best gamma is within seed noise) and the comparisons with the paper."""
    from smoothbench.results import analysis

    gamma_runs = runs.loc[runs["method"] == "gamma", TABLE_COLUMNS]
    gamma_runs = gamma_runs.reset_index(drop=True)
    cells = summarize_cells(gamma_runs)
    paired = analysis.paired_differences(runs, study)
    table3 = mark_seed_noise(
        best_versus_baseline(cells, list(study.experiments)), paired
    )
    return {
        "all_runs": runs,
        "runs": gamma_runs,
        "cells": cells,
        "paired_differences": paired,
        "table3": table3,
        "comparison": compare_cells(cells, study),
        "comparison_table3": compare_table3(table3, study, tolerance),
    }


def write_tables(
    study: Study,
    runs: pd.DataFrame,
    folder: Path | str,
    tolerance: float = DEFAULT_TOLERANCE,
    status: str | None = None,
    calibration_epoch: str = "best",
) -> dict:
    """Write ``OUTPUT_FILES`` into ``folder`` from ``runs`` (runs.csv, every run of the
    study that has finished); return the frames.

    ``status``, when given, is added to every table's notes (e.g. that some runs of the
    study have not finished). ``calibration_epoch`` ('best' or 'final') is the one
    runs.csv was read at; the notes name it. Every table's md, tex and html say under
    what code and compute its runs were made
    (:func:`smoothbench.results.provenance.provenance_line`); provenance.csv, .md and
    .html list the groups of runs, and the runs concerned where they mix.
    """
    folder = Path(folder)
    frames = table_frames(study, runs, tolerance)
    all_runs, runs, cells = frames["all_runs"], frames["runs"], frames["cells"]
    ours3, paired = frames["table3"], frames["paired_differences"]
    dash = "'-': gamma <= 1/K (no smoothing possible) or not run in this study."
    metric = "Best validation accuracy (%) over the epochs, per data set and gamma (eq. 7 targets)."
    seeds = seed_note(cells) + (f" {status}" if status else "")
    gamma_all = all_runs[all_runs["method"] == "gamma"]

    for number in (1, 2):
        gammas = table_gammas(study, number)
        header = ["Data set", *(f"γ = {gamma:.2f}" for gamma in gammas)]
        rows = accuracy_rows(cells, study, gammas)
        title = f"Table {number}: best validation accuracy (%), γ {'≤ 0.5' if number == 1 else '> 0.5'}"
        notes = [
            metric,
            dash,
            seeds,
            f"Source: {len(runs)} run files (metrics.json), listed in table{number}.csv.",
        ]
        in_table = [
            (gamma <= TABLE1_LAST_GAMMA) == (number == 1) for gamma in runs["gamma"]
        ]
        provenance = provenance_line(gamma_all[in_table])
        notes += [provenance] if provenance else []
        write_csv(folder / f"table{number}.csv", runs[in_table])
        write_text(
            folder / f"table{number}.md", render_markdown(title, header, rows, notes)
        )
        write_text(
            folder / f"table{number}.tex",
            render_latex(
                f"{title}. {metric} {dash} {provenance}".rstrip(),
                f"tab:smoothbench-table{number}",
                header,
                rows,
            ),
        )
        write_text(
            folder / f"table{number}.html", render_html([(title, header, rows, notes)])
        )

    rows3 = table3_rows(ours3, study, paired)
    provenance = provenance_line(gamma_all)
    notes3 = [*TABLE3_NOTES, seeds, *([provenance] if provenance else [])]
    table3_csv = ours3.copy()
    table3_csv.insert(0, "row", table3_csv["experiment"].map(row_labels(study)))
    write_csv(folder / "table3.csv", table3_csv.round(5))
    write_text(
        folder / "table3.md",
        render_markdown(TABLE3_TITLE, TABLE3_HEADER, rows3, notes3),
    )
    write_text(
        folder / "table3.tex",
        render_latex(
            f"{TABLE3_TITLE}. {TABLE3_NOTES[0]} {NOISE_NOTE} {provenance}".rstrip(),
            "tab:smoothbench-table3",
            TABLE3_HEADER,
            rows3,
        ),
    )
    write_text(
        folder / "table3.html",
        render_html([(TABLE3_TITLE, TABLE3_HEADER, rows3, notes3)]),
    )

    compared, against = frames["comparison"], frames["comparison_table3"]
    write_csv(folder / "comparison.csv", compared)
    write_csv(folder / "comparison_table3.csv", against.round(5))
    sections = comparison_sections(compared, against, tolerance, study)
    for _, _, _, notes in sections:
        notes += [provenance] if provenance else []
    write_text(
        folder / "comparison.md",
        "".join(render_markdown(*section) + "\n" for section in sections),
    )
    write_text(folder / "comparison.html", render_html(sections))
    write_provenance(all_runs, folder)
    return frames | write_analysis(
        study,
        all_runs,
        paired,
        folder,
        calibration_epoch,
        seeds,
        provenance_line(all_runs),
    )
