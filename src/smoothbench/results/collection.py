"""Every finished run of a study in one tidy table, ``runs.csv``: the one place where
the results stage finds, reads and checks the runs' ``metrics.json``.

Rule ``collect_runs`` writes ``{results_folder}/runs.csv`` (:func:`write_runs_table`)
from every run's ``metrics.json``, each checked once: against
:data:`smoothbench.run_record.METRICS_SCHEMA` (:func:`smoothbench.run_record.read_metrics`),
then against the study (an experiment, method, value and seed of the config, trained
under the settings the config gives the run: ``==`` on the ``settings`` dict). The
tables, the summary plots and the front page read runs.csv (:func:`read_runs_table`),
never a metrics.json; the per-run figures that need more than a number (training
curves: history.csv; reliability: the bins of metrics.json) find their runs in it and
read those files through :mod:`smoothbench.run_record` too.

One row per run, in the study's experiment and method order, then by value and seed;
the columns are :data:`RUNS_COLUMNS` (results/README.md says what each is). The
``metrics_file`` column names the file every number of its row came from.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from smoothbench import run_record
from smoothbench.methods import (
    METHODS,
    equivalent_gamma,
    gamma_in_range,
    gamma_range_text,
)
from smoothbench.results.paper_numbers import paper_row_labels
from smoothbench.results.provenance import (
    COMPUTE_COLUMNS,
    MIXED_COLUMN,
    NUMERICS_COLUMNS,
    run_provenance,
)
from smoothbench.results.rendering import write_csv
from smoothbench.run_record import (
    CALIBRATION_COLUMNS,
    METRICS_FILE,
    ResultsError,
    format_value,
)
from smoothbench.study import Study

RUNS_FILE = "runs.csv"
# The columns of table1.csv and table2.csv (Tables 1-2's runs), in their order.
TABLE_COLUMNS = [
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
# How a run was computed (COMPUTE_COLUMNS), by which code, and the rest of what changes
# its numbers (NUMERICS_COLUMNS: TF32, device, XLA_FLAGS, library versions), each the
# values of its attempts joined by '+', and where its attempts differ (MIXED_COLUMN):
# from its metrics.json's attempts, read by smoothbench.results.provenance.run_provenance.
RUNS_COLUMNS = [
    "row",
    "experiment",
    "dataset",
    "num_classes",
    "model",
    "epochs",
    "method",
    "value",
    "gamma",
    "equivalent_gamma",
    "seed",
    "best_val_accuracy",
    "best_val_accuracy_percent",
    "final_val_accuracy",
    "best_epoch",
    *CALIBRATION_COLUMNS,
    "calibration_epoch",
    "params",
    "train_seconds",
    *COMPUTE_COLUMNS,
    "code_commit",
    "code_dirty",
    "code_version",
    *NUMERICS_COLUMNS,
    MIXED_COLUMN,
    "run_folder",
    "metrics_file",
]
_TEXT_COLUMNS = [
    "row",
    "experiment",
    "dataset",
    "model",
    "method",
    *COMPUTE_COLUMNS,
    "code_commit",
    "code_dirty",
    "code_version",
    *NUMERICS_COLUMNS,
    MIXED_COLUMN,
    "run_folder",
    "metrics_file",
]
_INTEGER_COLUMNS = ["num_classes", "epochs", "seed", "best_epoch", "calibration_epoch"]
_NUMBER_COLUMNS = [
    "value",
    "gamma",
    "equivalent_gamma",
    "best_val_accuracy",
    "best_val_accuracy_percent",
    "final_val_accuracy",
    *CALIBRATION_COLUMNS,
    "train_seconds",
]
_ABSENT = object()


def row_labels(study: Study) -> dict[str, str]:
    """experiment -> the label its row gets: the paper's (``ImageN.(a)``) or its own name."""
    known = paper_row_labels()
    return {name: known.get(name, name) for name in study.experiments}


def finished_runs(study: Study, runs_root: Path | str) -> tuple[list[Path], list]:
    """The metrics.json of every finished run of the study under ``runs_root``, and the
    runs (:class:`smoothbench.study.Run`) that have none yet."""
    # metrics.json paths and Runs, filled by one append through either list
    finished: list = []
    unfinished: list = []
    for run in study.runs():
        path = Path(run.folder(str(runs_root))) / METRICS_FILE
        (finished if path.is_file() else unfinished).append(
            path if path.is_file() else run
        )
    return finished, unfinished


# ---------------------------------------------------------------- one run


def _check_in_study(path: Path, payload: dict, study: Study) -> str:
    """Refuse a file whose experiment, method, value or seed the config does not have;
    return the value as the path grammar writes it."""
    name, method, value = payload["experiment"], payload["method"], payload["value"]
    if name not in study.experiments:
        raise ResultsError(
            f"{path}: experiment {name!r} is not in config key 'experiments' ({', '.join(study.experiments)})"
        )
    experiment = study.experiments[name]
    if method not in experiment.methods:
        raise ResultsError(
            f"{path}: experiment {name!r} does not train method {method!r} in this config (config key 'methods')"
        )
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
    return value_text


def check_settings(path: Path, payload: dict, study: Study, value_text: str) -> None:
    """Refuse a run file trained under other settings than the config gives its run (a
    run left by another config, e.g. 3 epochs where the config now has 8): its
    ``settings`` must equal :meth:`Study.run_settings`' dict; the error names every
    setting that differs, with both values."""
    expected = study.run_settings(
        payload["experiment"], payload["method"], value_text, payload["seed"]
    ).as_dict()
    recorded = payload["settings"]
    if recorded != expected:
        differences = "; ".join(
            f"{key}: "
            + (
                "absent in the file"
                if recorded.get(key, _ABSENT) is _ABSENT
                else f"{recorded[key]!r} in the file"
            )
            + (
                ", absent in the config"
                if expected.get(key, _ABSENT) is _ABSENT
                else f", {expected[key]!r} in the config"
            )
            for key in sorted(recorded.keys() | expected.keys())
            if recorded.get(key, _ABSENT) != expected.get(key, _ABSENT)
        )
        raise ResultsError(
            f"{path}: its settings differ from what the config gives this run ({differences}); it was trained "
            "under another config: delete its run folder and run the workflow again to retrain it under this "
            "one, or make the tables with the config it was trained with"
        )
    if payload["epochs"] != expected["epochs"]:
        raise ResultsError(
            f"{path}: 'epochs' is {payload['epochs']} (epochs trained), but its settings and the config have "
            f"{expected['epochs']}; the file is not a finished run's metrics.json: retrain it"
        )


def read_run(path: Path | str, study: Study, calibration_epoch: str = "best") -> dict:
    """One run's row of runs.csv from its ``metrics.json``, checked against the schema
    and the study.

    The file must name an experiment, method, value and seed of the study; when it lies
    in the sweep's path grammar (``.../{method}~V/seed~S/metrics.json``) its folder must
    agree, and the settings it was trained with must be the ones the config gives that
    run, so a run left by another config never counts as finished. Calibration (ECE,
    NLL, Brier, confidence) is read at ``calibration_epoch`` ('best': the epoch of the
    best accuracy, or 'final').
    """
    path = Path(path)
    payload = run_record.read_metrics(path)
    value_text = _check_in_study(path, payload, study)
    run_record.check_epochs_and_folder(path, payload)
    check_settings(path, payload, study, value_text)
    measured = run_record.read_calibration(path, payload, calibration_epoch)
    experiment = study.experiments[payload["experiment"]]
    method, value = payload["method"], float(payload["value"])
    return {
        "experiment": experiment.name,
        "dataset": experiment.dataset.name,
        "num_classes": experiment.dataset.num_classes,
        "model": experiment.model_name,
        "epochs": payload["epochs"],
        "method": method,
        "value": value,
        "gamma": value if method == "gamma" else math.nan,
        "equivalent_gamma": round(
            equivalent_gamma(method, value, experiment.dataset.num_classes), 12
        ),
        "seed": payload["seed"],
        "best_val_accuracy": float(payload["best_val_accuracy"]),
        "best_val_accuracy_percent": round(100 * payload["best_val_accuracy"], 5),
        "final_val_accuracy": float(payload["final_val_accuracy"]),
        "best_epoch": payload["best_epoch"],
        **{key: float(measured[key]) for key in CALIBRATION_COLUMNS},
        "calibration_epoch": measured["epoch"],
        "params": payload.get("params"),
        "train_seconds": float(payload["train_seconds"]),
        # how it was computed and by which code (commit, dirty), where recorded
        **run_provenance(payload),
        "run_folder": str(path.parent),
        "metrics_file": str(path),
    }


# ---------------------------------------------------------------- every run


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each column's type, the same whether built or read back."""
    return frame.astype(
        {
            **{column: str for column in _TEXT_COLUMNS},
            **{column: "int64" for column in _INTEGER_COLUMNS},
            **{column: "float64" for column in _NUMBER_COLUMNS},
            "params": "Int64",
        }
    )


def collect_runs(
    study: Study, metrics_files, calibration_epoch: str = "best"
) -> pd.DataFrame:
    """Every run's row (one per file, :data:`RUNS_COLUMNS`), in the study's experiment
    and method order, then by value and seed; two files of one run are refused."""
    records = []
    seen: dict[tuple, Path | str] = {}  # run -> the first metrics file of it
    for path in metrics_files:
        record = read_run(path, study, calibration_epoch)
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
    frame = pd.DataFrame.from_records(
        records, columns=[column for column in RUNS_COLUMNS if column != "row"]
    )
    frame.insert(0, "row", frame["experiment"].map(row_labels(study)))
    order = {name: index for index, name in enumerate(study.experiments)}
    method_order = {method: index for index, method in enumerate(METHODS)}

    def sort_key(column):
        if column.name == "experiment":
            return column.map(order)
        return column.map(method_order) if column.name == "method" else column

    frame = frame.sort_values(["experiment", "method", "value", "seed"], key=sort_key)
    return _typed(frame.reset_index(drop=True))


def write_runs_table(
    study: Study, metrics_files, path: Path | str, calibration_epoch: str = "best"
) -> pd.DataFrame:
    """Check every run file (:func:`collect_runs`), then write runs.csv atomically to
    ``path`` (nothing is written when a file is refused); return the table."""
    runs = collect_runs(study, metrics_files, calibration_epoch)
    write_csv(Path(path), runs)
    return runs


def _number(text: str) -> float:
    return float(text) if text else math.nan


def read_runs_table(path: Path | str) -> pd.DataFrame:
    """runs.csv as :func:`collect_runs` built it: the same columns, types and numbers
    (each read back exactly by ``float``, on every pandas), text kept as text (an
    experiment named ``NA`` too)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [column for column in RUNS_COLUMNS if column not in frame]
        if missing:
            raise ValueError(f"no column {', '.join(missing)}")
        frame = frame[RUNS_COLUMNS].assign(
            **{column: frame[column].map(_number) for column in _NUMBER_COLUMNS},
            params=pd.array(
                [int(text) if text else None for text in frame["params"]],
                dtype="Int64",
            ),
        )
        return _typed(frame)
    except (OSError, ValueError) as error:
        raise ResultsError(
            f"{path}: unreadable runs table ({error}); delete it and run the workflow again"
        ) from None
