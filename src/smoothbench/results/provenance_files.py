"""The provenance files of a study's tables (``provenance.csv``, ``.md``, ``.html``):
its runs grouped by the code and computation they ran under
(:mod:`smoothbench.results.provenance` groups them and words them).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from smoothbench.results.provenance import (
    MIXED_COLUMN,
    PROVENANCE_COLUMNS,
    clean_text,
    is_mixed,
    provenance_groups,
    setting_text,
    warning_section,
)
from smoothbench.results.rendering import (
    render_html,
    render_markdown,
    write_csv,
    write_text,
)


def provenance_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """provenance.csv: one row per group (1: the most runs) with its
    :data:`PROVENANCE_COLUMNS`, its run count and experiments, and whether the study
    mixes."""
    groups = provenance_groups(runs)
    mixed = is_mixed(groups)
    return pd.DataFrame.from_records(
        [
            {
                "group": index,
                **group.setting,
                "runs": group.count,
                "experiments": "; ".join(dict.fromkeys(group.runs["experiment"])),
                "mixed": mixed,
            }
            for index, group in enumerate(groups, start=1)
        ],
        columns=[
            "group",
            *PROVENANCE_COLUMNS,
            MIXED_COLUMN,
            "runs",
            "experiments",
            "mixed",
        ],
    )


def write_provenance(runs: pd.DataFrame, folder: Path | str) -> pd.DataFrame:
    """:data:`PROVENANCE_FILES` in ``folder``: the groups (csv), and as md and html the
    groups and, for a mixed study, the warning with the runs concerned."""
    folder = Path(folder)
    frame = provenance_frame(runs)
    write_csv(folder / "provenance.csv", frame)
    groups = provenance_groups(runs)
    header = ["group", "runs", "computed under", "experiments"]
    rows = [
        [
            str(r.group),
            str(r.runs),
            setting_text(groups[r.group - 1].setting),
            r.experiments,
        ]
        for r in frame.itertuples()
    ]
    notes = [
        "Runs with one code commit, tree state and version, backend, precision, XLA, deterministic, TF32 "
        "and oneDNN setting, oneDNN instruction set, device, XLA_FLAGS and library versions form a group (1: the most runs); runs.csv gives every "
        "run's. "
        + (clean_text(runs) if not is_mixed(groups) else "The runs mix: see below."),
    ]
    sections = [
        ("Provenance: the code and compute behind the tables", header, rows, notes)
    ]
    warning = warning_section(runs, listed=len(runs))
    if warning:
        sections.append(warning)
    write_text(
        folder / "provenance.md",
        "".join(render_markdown(*section) + "\n" for section in sections),
    )
    write_text(folder / "provenance.html", render_html(sections))
    return frame
