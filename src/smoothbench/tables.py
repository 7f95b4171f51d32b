"""The paper's Tables 1-3 regenerated from the runs, beside the paper's own numbers.

Every number comes from a run's ``metrics.json`` (its ``best_val_accuracy``: the best
validation accuracy over the epochs, the paper's metric); the tidy ``.csv`` files
name the file each value was read from. The paper's own numbers, and Table 3's
formula that its rows and ours share, are :mod:`smoothbench.paper`'s; the text formats
(Markdown, LaTeX, HTML) are :mod:`smoothbench.rendering`'s; the files a run leaves are
read through :mod:`smoothbench.run_record`.

Layout as the paper prints it: data sets as rows, gamma as columns (Table 1: gamma
<= 0.5, Table 2: gamma > 0.5), best validation accuracy in percent with two decimals,
'-' where gamma <= 1/K or the cell was not run. With several seeds a cell shows
``mean ± std`` (sample standard deviation over seeds) and the csv keeps every seed.
Table 3: the best mean over gamma, the gamma(s) giving it, the mean at gamma = 1 and
diff % = (best - base) / best x 100, the formula twelve of the paper's thirteen rows
follow; a best gamma whose gain over gamma = 1 is within seed noise (the paired
differences of :mod:`smoothbench.analysis`, computed once for both) is marked.

The report's front page (:func:`write_front_page`) sets Table 3 beside the paper's
where an experiment trains on the paper row's data set, embeds the accuracy-vs-gamma
figure, and replays the paper's Table 3 from its Tables 1-2 on every study.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from smoothbench import run_record, storage
from smoothbench.methods import METHODS, gamma_in_range, gamma_range_text
from smoothbench.paper import (
    DEFAULT_TOLERANCE,
    PAPER,
    TABLE_GAMMAS,
    best_versus_baseline,
    check_paper_arithmetic,
    is_paper_row,
    paper_cells,
    paper_row_labels,
    same_gamma,
)
from smoothbench.rendering import (
    format_cell,
    render_front_page,
    render_html,
    render_latex,
    render_markdown,
    value_cell,
)
from smoothbench.run_record import (
    CALIBRATION_COLUMNS,
    METRICS_FILE,
    ResultsError,
    format_value,
)
from smoothbench.study import Study

TABLE1_LAST_GAMMA = 0.5
TABLE_NAMES = ("table1", "table2", "table3")
# Beyond the paper (smoothbench.analysis): seeds, methods, calibration.
ANALYSIS_NAMES = ("paired_differences", "methods", "calibration")
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
)
# Table 3 marks a best gamma whose gain over gamma = 1 is within seed noise (the paired
# differences' verdict, smoothbench.analysis): the mark and the note that explains it.
NOISE_MARK = "†"
NOISE_NOTE = (
    f"{NOISE_MARK} after a γ best: its gain over γ = 1 is within seed noise, the 95 % interval of its paired "
    "difference (Gains over γ = 1, paired by seed) contains 0: the seeds cannot tell it from γ = 1. "
    "With one seed there is no interval and no mark; and no mark does not make a gain hold: the best of "
    "several γ is picked after the fact (see the paired table)."
)
FRONT_PAGE_FIGURE_CAPTION = (
    "Best validation accuracy (%) against γ, one panel per data set (the plot "
    "accuracy_vs_gamma.png; the report lists it with its full caption)."
)
RUN_COLUMNS = [
    "row",
    "experiment",
    "dataset",
    "num_classes",
    "model",
    "epochs",
    "method",
    "value",
    "gamma",
    "seed",
    "best_val_accuracy_percent",
    "best_epoch",
    *CALIBRATION_COLUMNS,
    "calibration_epoch",
    "metrics_file",
]


# ---------------------------------------------------------------- reading runs


def _differences(recorded, expected, key: str = "") -> list[str]:
    """``key: A in the file, B in the config`` for every setting that differs (1 and 1.0
    are one number; true is not 1)."""
    if isinstance(recorded, dict) and isinstance(expected, dict):
        found = []
        for name in sorted(set(recorded) | set(expected), key=str):
            inner = f"{key}.{name}" if key else str(name)
            if name not in recorded:
                found.append(
                    f"{inner}: absent in the file, {expected[name]!r} in the config"
                )
            elif name not in expected:
                found.append(
                    f"{inner}: {recorded[name]!r} in the file, absent in the config"
                )
            else:
                found += _differences(recorded[name], expected[name], inner)
        return found
    if (
        isinstance(recorded, list)
        and isinstance(expected, list)
        and len(recorded) == len(expected)
        and any(isinstance(item, dict) for item in expected)
    ):
        return [
            found
            for index, (one, two) in enumerate(zip(recorded, expected))
            for found in _differences(one, two, f"{key}[{index}]")
        ]
    return (
        []
        if _same(recorded, expected)
        else [f"{key}: {recorded!r} in the file, {expected!r} in the config"]
    )


def _same(one, two) -> bool:
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(
            _same(one[name], two[name]) for name in one
        )
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(map(_same, one, two))
    return isinstance(one, bool) == isinstance(two, bool) and one == two


def _check_settings(
    path: Path, payload: dict, study: Study, method: str, value_text: str
) -> None:
    """Refuse a run file trained under other settings than the config gives its run (a
    run left by another config, e.g. 3 epochs where the config now has 8)."""
    expected = study.train_settings(
        payload["experiment"], method, value_text, payload["seed"]
    )
    retrain = (
        "it was trained under another config: delete its run folder and run the workflow again to "
        "retrain it under this one, or make the tables with the config it was trained with"
    )
    recorded = payload.get("settings")
    if not isinstance(recorded, dict):
        found = (
            "has no 'settings'"
            if recorded is None
            else f"'settings' is {recorded!r}, not an object"
        )
        raise ResultsError(
            f"{path}: {found}, so nothing shows which config it was trained under; delete its run folder and run "
            "the workflow again to retrain it"
        )
    differences = _differences(recorded, expected)
    if differences:
        listed = "; ".join(differences)
        raise ResultsError(
            f"{path}: its settings differ from what the config gives this run ({listed}); {retrain}"
        )
    if payload["epochs"] != expected["epochs"]:
        raise ResultsError(
            f"{path}: 'epochs' is {payload['epochs']} (epochs trained), but its settings and the config have "
            f"{expected['epochs']}; the file is not a finished run's metrics.json: retrain it"
        )


def read_run_metrics(
    path: Path | str, study: Study, calibration_epoch: str = "best"
) -> dict:
    """One run's table values from its ``metrics.json``, checked against the study.

    The file must name an experiment, method, value and seed of the study; when it lies
    in the sweep's path grammar (``.../{method}~V/seed~S/metrics.json``) its folder must
    agree, and the settings it was trained with (its ``settings``) must be the ones the
    config gives that run (:meth:`Study.train_settings`), so a run left by another config
    never counts as finished. Calibration (ECE, NLL, Brier, confidence) is read at
    ``calibration_epoch`` ('best': the epoch of the best accuracy, or 'final'); NaN where
    the file has no calibration section, and an error naming the file where a value in
    it is malformed or not finite.
    """
    path = Path(path)
    payload = run_record.read_metrics(path)
    method = payload["method"]
    name = payload["experiment"]
    if name not in study.experiments:
        raise ResultsError(
            f"{path}: experiment {name!r} is not in config key 'experiments' ({', '.join(study.experiments)})"
        )
    experiment = study.experiments[name]
    if method not in experiment.methods:
        raise ResultsError(
            f"{path}: experiment {name!r} does not train method {method!r} in this config (config key 'methods')"
        )
    value = payload["value"]
    value_text = format_value(value)
    known = [format_value(known_value) for known_value in experiment.methods[method]]
    if value_text not in known:
        K = experiment.dataset.num_classes
        why = (
            f"gamma must lie in {gamma_range_text(K)}; "
            if method == "gamma" and not gamma_in_range(value, K)
            else ""
        )
        raise ResultsError(
            f"{path}: {method} {value} is outside experiment {name!r}'s grid ({why}the config has {', '.join(known)})"
        )
    if payload["seed"] not in study.seeds:
        raise ResultsError(
            f"{path}: seed {payload['seed']} is not in config key 'seeds' ({study.seeds})"
        )
    run_record.check_ranges_and_folder(path, payload)
    _check_settings(path, payload, study, method, value_text)
    measured = run_record.read_calibration(path, payload, calibration_epoch)
    return {
        "experiment": name,
        "dataset": experiment.dataset.name,
        "num_classes": experiment.dataset.num_classes,
        "model": experiment.model_name,
        "epochs": payload["epochs"],
        "method": method,
        "value": float(value),
        "gamma": float(value) if method == "gamma" else math.nan,
        "seed": payload["seed"],
        "best_val_accuracy_percent": round(100 * payload["best_val_accuracy"], 5),
        "best_epoch": payload["best_epoch"],
        **{
            key: float(measured[key]) if key in measured else math.nan
            for key in CALIBRATION_COLUMNS
        },
        "calibration_epoch": measured.get("epoch", math.nan),
        "metrics_file": str(path),
    }


def collect_runs(
    study: Study, metrics_files, calibration_epoch: str = "best"
) -> pd.DataFrame:
    """Every run's table values (one row per file), in the study's experiment and method order."""
    records, seen = [], {}
    for path in metrics_files:
        record = read_run_metrics(path, study, calibration_epoch)
        key = (
            record["experiment"],
            record["method"],
            format_value(record["value"]),
            record["seed"],
        )
        if key in seen:
            raise ResultsError(
                f"{path}: the same run as {seen[key]} (experiment {key[0]}, {key[1]} {key[2]}, seed {key[3]})"
            )
        seen[key] = path
        records.append(record)
    labels = row_labels(study)
    frame = pd.DataFrame.from_records(
        records, columns=[column for column in RUN_COLUMNS if column != "row"]
    )
    frame.insert(0, "row", frame["experiment"].map(labels))
    order = {name: index for index, name in enumerate(study.experiments)}
    method_order = {method: index for index, method in enumerate(METHODS)}

    def sort_key(column):
        if column.name == "experiment":
            return column.map(order)
        return column.map(method_order) if column.name == "method" else column

    frame = frame.sort_values(["experiment", "method", "value", "seed"], key=sort_key)
    return frame.reset_index(drop=True)


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


def row_labels(study: Study) -> dict[str, str]:
    """experiment -> the label its row gets: the paper's (``ImageN.(a)``) or its own name."""
    known = paper_row_labels()
    return {name: known.get(name, name) for name in study.experiments}


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
    from smoothbench import analysis

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
    from smoothbench import analysis

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


# ---------------------------------------------------------------- the comparison


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


# ---------------------------------------------------------------- writing everything


def _write(path: Path, text: str) -> None:
    with storage.atomic_file(path) as stream:
        stream.write(text)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with storage.atomic_file(path) as stream:
        frame.to_csv(stream, index=False, lineterminator="\n")


def _seed_note(cells: pd.DataFrame) -> str:
    counts = sorted(set(cells["seeds"])) if len(cells) else [0]
    if counts == [1]:
        return "One seed per cell, as in the paper."
    return (
        f"Seeds per cell: {', '.join(map(str, counts))}; cells show mean ± sample standard deviation over "
        "seeds (a single seed shows no ±); the csv lists every seed."
    )


def finished_runs(study: Study, runs_root: Path | str) -> tuple[list[Path], list]:
    """The metrics.json of every finished run of the study under ``runs_root``, and the
    runs (:class:`smoothbench.study.Run`) that have none yet."""
    finished, unfinished = [], []
    for run in study.runs():
        path = Path(run.folder(str(runs_root))) / METRICS_FILE
        (finished if path.is_file() else unfinished).append(
            path if path.is_file() else run
        )
    return finished, unfinished


TABLE3_TITLE = "Table 3: the best accuracy over γ against γ = 1"
TABLE3_HEADER = ["Data set", "Best", "γ best", "Acc. γ = 1", "diff %"]
TABLE3_NOTES = (
    "diff % = (best - base) / best x 100, base = the accuracy at γ = 1 ('-' where γ = 1 was not run).",
    "γ best lists every γ that reaches the best value.",
    NOISE_NOTE,
)


def table_frames(
    study: Study,
    metrics_files,
    tolerance: float = DEFAULT_TOLERANCE,
    calibration_epoch: str = "best",
) -> dict:
    """Everything the tables and the front page show, read from the run files once:
    the runs (all methods, and eq. 7's), the cells, the paired differences, Table 3
    (marked where its best gamma is within seed noise) and the comparisons with the
    paper."""
    from smoothbench import analysis

    all_runs = collect_runs(study, metrics_files, calibration_epoch)
    runs = all_runs[all_runs["method"] == "gamma"].reset_index(drop=True)
    cells = summarize_cells(runs)
    paired = analysis.paired_differences(all_runs, study)
    table3 = mark_seed_noise(
        best_versus_baseline(cells, list(study.experiments)), paired
    )
    return {
        "all_runs": all_runs,
        "runs": runs,
        "cells": cells,
        "paired_differences": paired,
        "table3": table3,
        "comparison": compare_cells(cells, study),
        "comparison_table3": compare_table3(table3, study, tolerance),
    }


def write_tables(
    study: Study,
    metrics_files,
    folder: Path | str,
    tolerance: float = DEFAULT_TOLERANCE,
    status: str | None = None,
    calibration_epoch: str = "best",
) -> dict:
    """Read every run and write ``OUTPUT_FILES`` into ``folder``; return the frames.

    ``status``, when given, is added to every table's notes (e.g. that some runs of the
    study have not finished). Calibration is read at ``calibration_epoch`` ('best' or 'final').
    """
    folder = Path(folder)
    frames = table_frames(study, metrics_files, tolerance, calibration_epoch)
    all_runs, runs, cells = frames["all_runs"], frames["runs"], frames["cells"]
    ours3, paired = frames["table3"], frames["paired_differences"]
    dash = "'-': gamma <= 1/K (no smoothing possible) or not run in this study."
    metric = "Best validation accuracy (%) over the epochs, per data set and gamma (eq. 7 targets)."
    seeds = _seed_note(cells) + (f" {status}" if status else "")

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
        in_table = runs[
            [(gamma <= TABLE1_LAST_GAMMA) == (number == 1) for gamma in runs["gamma"]]
        ]
        _write_csv(folder / f"table{number}.csv", in_table)
        _write(
            folder / f"table{number}.md", render_markdown(title, header, rows, notes)
        )
        _write(
            folder / f"table{number}.tex",
            render_latex(
                f"{title}. {metric} {dash}",
                f"tab:smoothbench-table{number}",
                header,
                rows,
            ),
        )
        _write(
            folder / f"table{number}.html", render_html([(title, header, rows, notes)])
        )

    rows3 = table3_rows(ours3, study, paired)
    notes3 = [*TABLE3_NOTES, seeds]
    table3_csv = ours3.copy()
    table3_csv.insert(0, "row", table3_csv["experiment"].map(row_labels(study)))
    _write_csv(folder / "table3.csv", table3_csv.round(5))
    _write(
        folder / "table3.md",
        render_markdown(TABLE3_TITLE, TABLE3_HEADER, rows3, notes3),
    )
    _write(
        folder / "table3.tex",
        render_latex(
            f"{TABLE3_TITLE}. {TABLE3_NOTES[0]} {NOISE_NOTE}",
            "tab:smoothbench-table3",
            TABLE3_HEADER,
            rows3,
        ),
    )
    _write(
        folder / "table3.html",
        render_html([(TABLE3_TITLE, TABLE3_HEADER, rows3, notes3)]),
    )

    compared, against = frames["comparison"], frames["comparison_table3"]
    _write_csv(folder / "comparison.csv", compared)
    _write_csv(folder / "comparison_table3.csv", against.round(5))
    sections = comparison_sections(compared, against, tolerance, study)
    _write(
        folder / "comparison.md",
        "".join(render_markdown(*section) + "\n" for section in sections),
    )
    _write(folder / "comparison.html", render_html(sections))
    return frames | write_analysis(
        study, all_runs, paired, folder, calibration_epoch, seeds
    )


def write_analysis(
    study: Study,
    runs: pd.DataFrame,
    paired: pd.DataFrame,
    folder: Path,
    calibration_epoch: str,
    seeds_note: str,
) -> dict:
    """paired_differences (``paired``, computed once by :func:`table_frames`, Table 3's
    noise mark reads it too), methods and calibration (.csv, .md, .html) from every
    run of every method."""
    from smoothbench import analysis

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
        seeds_note,
    ]
    if not rows:
        notes.insert(
            0,
            "No run pairs with γ = 1 in this study (γ = 1 was not run), so there is no paired difference.",
        )
    _write_csv(
        folder / "paired_differences.csv",
        paired.assign(row=paired["experiment"].map(labels)).round(5),
    )
    _write(
        folder / "paired_differences.md", render_markdown(title, header, rows, notes)
    )
    _write(
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
        seeds_note,
    ]
    _write_csv(
        folder / "methods.csv",
        methods.assign(
            row=methods["experiment"].map(labels) if len(methods) else []
        ).round(6),
    )
    _write(folder / "methods.md", render_markdown(title, header, rows, notes))
    _write(folder / "methods.html", render_html([(title, header, rows, notes)]))

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
        seeds_note,
    ]
    _write_csv(
        folder / "calibration.csv",
        calibration.assign(row=calibration["experiment"].map(labels)).round(6),
    )
    _write(folder / "calibration.md", render_markdown(title, header, rows, notes))
    _write(folder / "calibration.html", render_html([(title, header, rows, notes)]))
    return {
        "paired_differences": paired,
        "methods": methods,
        "calibration": calibration,
    }


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


# ---------------------------------------------------------------- the report's front page


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
        _seed_note(frames["cells"]),
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


def write_front_page(
    study: Study,
    metrics_files,
    figure: Path | str | None,
    path: Path | str,
    tolerance: float = DEFAULT_TOLERANCE,
    calibration_epoch: str = "best",
) -> str:
    """Write the report's front page to ``path`` (an HTML fragment that
    workflow/report/workflow.rst pastes into the report's landing page): Table 3 beside
    the paper, the figure ``figure`` (the accuracy-vs-gamma PNG, embedded) and the
    paper's Table 3 replayed. The numbers come from :func:`table_frames`, as the tables'
    do. Returns the fragment."""
    frames = table_frames(study, metrics_files, tolerance, calibration_epoch)
    before, after = front_page_sections(study, frames, tolerance)
    figure_png = Path(figure).read_bytes() if figure is not None else None
    text = render_front_page(before, figure_png, FRONT_PAGE_FIGURE_CAPTION, after)
    _write(Path(path), text)
    return text
