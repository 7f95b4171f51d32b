"""The report's front page: Table 3 beside the paper's where an experiment trains on
the paper row's data set, the accuracy-vs-gamma figure embedded, and the paper's Table 3
replayed from its Tables 1-2 on every study. Its numbers are
:func:`smoothbench.results.paper_tables.table_frames`', from runs.csv, as the tables' are.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from smoothbench.results.collection import row_labels
from smoothbench.results.paper_comparison import not_in_paper_notes
from smoothbench.results.paper_numbers import DEFAULT_TOLERANCE, PAPER, is_paper_row
from smoothbench.results.paper_tables import (
    TABLE3_HEADER,
    TABLE3_NOTES,
    seed_note,
    table3_rows,
    table_frames,
)
from smoothbench.results.provenance import clean_text, warning_section
from smoothbench.results.rendering import format_cell, render_front_page, write_text
from smoothbench.study import Study

FRONT_PAGE_FIGURE_CAPTION = (
    "Best validation accuracy (%) against γ, one panel per data set (the plot "
    "accuracy_vs_gamma.png; the report lists it with its full caption)."
)


def front_page_sections(
    study: Study, frames: dict, tolerance: float = DEFAULT_TOLERANCE
) -> tuple[list, list]:
    """The front page's sections, (title, header, rows, notes) each: before the figure,
    Table 3 with the paper's Table 3 beside it where our experiment trains on the paper
    row's data set; after it, the paper's Table 3 replayed from its Tables 1-2, row by
    row, on every study (the demo's included: it reads only the paper's numbers)."""
    table3, paired = frames["table3"], frames["paired_differences"]
    against = frames["comparison_table3"].set_index("experiment")
    labels = row_labels(study)
    beside = [
        name
        for name, experiment in study.experiments.items()
        if is_paper_row(name, experiment.dataset.name) and name in against.index
    ]
    header = list(TABLE3_HEADER)
    rows = table3_rows(table3, study, paired)
    if beside:
        header += ["paper: best (γ)", "paper: diff %"]
        for name, row in zip(study.experiments, rows):
            if name in beside:
                record = against.loc[name]
                row += [
                    f"{format_cell(record['best_percent_recomputed'])} ({record['best_gamma_recomputed']})",
                    format_cell(record["diff_percent_printed"]),
                ]
            else:
                row += ["-", "-"]
    protocol = "; ".join(
        f"{labels[name]}: {experiment.model_name}, {experiment.epochs} epochs"
        for name, experiment in study.experiments.items()
    )
    notes = [
        *TABLE3_NOTES,
        seed_note(frames["cells"]),
        f"This study's protocol: {protocol}.",
    ]
    if beside:
        notes.append(
            "paper: its Table 3 as printed (diff %), with the best of its Tables 1-2 and the γ giving it; the "
            "paper ran one seed per cell."
        )
    notes += not_in_paper_notes(study)
    ours = (
        "Table 3: this study" + (" beside the paper" if beside else ""),
        header,
        rows,
        notes,
    )

    replayed = []
    for record in against.reset_index().itertuples():
        best, base = record.best_percent_recomputed, record.baseline_percent_recomputed
        check = "holds"
        if not record.holds:
            printed = ", ".join(
                f"{name} {getattr(record, f'{column}_printed'):.2f}"
                for name, column in (
                    ("best", "best_percent"),
                    ("base", "baseline_percent"),
                    ("diff %", "diff_percent"),
                )
                if abs(
                    getattr(record, f"{column}_printed")
                    - getattr(record, f"{column}_recomputed")
                )
                > tolerance + 1e-9
            )
            check = f"NO: printed {printed}; (best - base) / base gives {record.diff_over_base_percent:.2f}"
        replayed.append(
            [
                record.row,
                record.best_gamma_recomputed,
                f"({best:.2f} - {base:.2f}) / {best:.2f} x 100 = {record.diff_percent_recomputed:.2f}",
                format_cell(record.diff_percent_printed),
                check,
            ]
        )
    broken = [record.row for record in against.itertuples() if not record.holds]
    replay_notes = [
        f"From the paper's own numbers ({PAPER}): best = the best accuracy of its Tables 1-2 over γ, at the γ "
        "shown; base = its accuracy at γ = 1; diff % = (best - base) / best x 100, the formula this study's "
        "Table 3 uses. Every study shows this check; it reads no run.",
        f"holds: the printed best, base and diff % are each within {tolerance:g} points of the recomputed ones. "
        + (
            f"{len(replayed) - len(broken)} of {len(replayed)} rows hold; not: {', '.join(broken)}."
            if broken
            else f"All {len(replayed)} rows hold."
        ),
    ]
    replay = (
        "The paper's Table 3, replayed from its Tables 1-2",
        ["Data set", "γ best", "(best - base) / best x 100", "printed diff %", "check"],
        replayed,
        replay_notes,
    )
    return [ours], [replay]


def provenance_top(runs: pd.DataFrame) -> tuple[tuple, bool]:
    """The section at the top of the front page, and whether it warns: a mixed study's
    warning (what mixes, the runs concerned,
    :func:`smoothbench.results.provenance.warning_section`), else one short line
    naming the single commit and compute setting."""
    warning = warning_section(runs)
    if warning is not None:
        return warning, True
    return ("Provenance", [], [], [clean_text(runs)]), False


def write_front_page(
    study: Study,
    runs: pd.DataFrame,
    figure: Path | str | None,
    path: Path | str,
    tolerance: float = DEFAULT_TOLERANCE,
) -> str:
    """Write the report's front page to ``path`` (an HTML fragment that
    workflow/report/workflow.rst pastes into the report's landing page): Table 3 beside
    the paper, the figure ``figure`` (the accuracy-vs-gamma PNG, embedded) and the
    paper's Table 3 replayed; at its top, a warning where the runs mix code or compute
    settings (:func:`provenance_top`), else their one commit and setting. The numbers come from :func:`table_frames` of ``runs``
    (runs.csv, :func:`smoothbench.results.collection.read_runs_table`), as the tables' do.
    Returns the fragment."""
    frames = table_frames(study, runs, tolerance)
    before, after = front_page_sections(study, frames, tolerance)
    figure_png = Path(figure).read_bytes() if figure is not None else None
    top, warning = provenance_top(runs)
    text = render_front_page(
        before, figure_png, FRONT_PAGE_FIGURE_CAPTION, after, top, warning
    )
    write_text(Path(path), text)
    return text
