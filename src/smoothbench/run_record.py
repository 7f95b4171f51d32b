"""A run's record on disk, in one place: where a run lives (the path grammar), which
files its folder holds, and the format of each (``history.csv``, ``metrics.json``).

Training writes through this module, and the rules, the tables and the plots find and
read runs through it; nothing else spells a run's path or a file name.

Path grammar: ``{runs}/{experiment}/{method}~{value}/seed~{seed}/``, the value written
by :func:`format_value` (``0.9``, ``1.0``). A finished run's folder holds
``history.csv``, ``c_matrix.npy`` (Label Smoothing++ only) and, written last,
``metrics.json``; while it trains, ``checkpoint/`` (``state.npz``, ``progress.csv``,
``status.json``);
once finished, ``.finished/`` (the outputs and their fingerprints, see
:mod:`smoothbench.training`).

``metrics.json`` follows :data:`METRICS_SCHEMA`: :func:`write_metrics` refuses a record
that does not, and :func:`read_metrics` checks what a table reads from it, naming the
file and the key at fault.
"""

from __future__ import annotations

import csv
import json
import math
from decimal import Decimal
from pathlib import Path

import jsonschema

from smoothbench import storage
from smoothbench.errors import SmoothbenchError
from smoothbench.methods import METHODS

# The files of a run folder.
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
C_MATRIX_FILE = "c_matrix.npy"
CHECKPOINT_FOLDER = "checkpoint"
CHECKPOINT_FILE = "state.npz"
PROGRESS_FILE = "progress.csv"
STATUS_FILE = "status.json"
TENSORBOARD_FOLDER = "tensorboard"  # with compute.tensorboard
FINISHED_FOLDER = ".finished"
FINGERPRINT_FILE = "fingerprint.json"
# Each output's kind, as the rules name their outputs.
OUTPUT_KINDS = {
    "history": HISTORY_FILE,
    "c_matrix": C_MATRIX_FILE,
    "metrics": METRICS_FILE,
}

# history.csv: one row per 0-based epoch.
HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "val_ece",
    "val_nll",
    "val_brier",
    "val_confidence",
    "seconds",
)
# The calibration measured at an epoch (smoothbench.calibration), in metrics.json and
# history.csv (as val_<key>).
CALIBRATION_KEYS = ("accuracy", "ece", "nll", "brier", "confidence")
CALIBRATION_COLUMNS = ["ece", "nll", "brier", "confidence"]


class ResultsError(SmoothbenchError, ValueError):
    """A run file the tables cannot use; the message names the file."""


# ---------------------------------------------------------------- the path grammar


def format_value(value: float) -> str:
    """Path-safe decimal text with at least one decimal: 0.9 -> '0.9', 1 -> '1.0', 1e-05 -> '0.00001'."""
    text = format(Decimal(repr(float(value))), "f")
    if "." not in text:
        text += ".0"
    return text


def run_folder(
    runs_root: str, experiment: str, method: str, value: float | str, seed: int | str
) -> str:
    """``{runs_root}/{experiment}/{method}~{value}/seed~{seed}`` (a float value is
    written by :func:`format_value`; text, e.g. a wildcard, is kept as given)."""
    text = value if isinstance(value, str) else format_value(value)
    return f"{runs_root}/{experiment}/{method}~{text}/seed~{seed}"


def run_folder_pattern(runs_root: str) -> str:
    """The grammar with Snakemake wildcards: ``{runs_root}/{experiment}/{method}~{value}/seed~{seed}``."""
    return run_folder(runs_root, "{experiment}", "{method}", "{value}", "{seed}")


def train_log(
    logs_root: str, experiment: str, method: str, value: float | str, seed: int | str
) -> str:
    """A training job's log: ``{logs_root}/{experiment}/{method}~{value}/seed~{seed}.log``."""
    return run_folder(logs_root, experiment, method, value, seed) + ".log"


def train_log_pattern(logs_root: str) -> str:
    """:func:`train_log` with Snakemake wildcards."""
    return train_log(logs_root, "{experiment}", "{method}", "{value}", "{seed}")


def output_names(method: str) -> list[str]:
    """A finished run's files, metrics.json last (it marks the run finished)."""
    return [HISTORY_FILE, *([C_MATRIX_FILE] if method == "lspp" else []), METRICS_FILE]


def output_files(folder: str, method: str) -> dict[str, str]:
    """kind ("history", "c_matrix", "metrics") -> path of one run's outputs, metrics last."""
    names = output_names(method)
    return {
        kind: f"{folder}/{name}" for kind, name in OUTPUT_KINDS.items() if name in names
    }


def parse_run_folder(folder: Path | str) -> dict | None:
    """``{"runs_root", "experiment", "method", "value_text", "seed"}`` of a folder in the
    grammar; None for a folder outside it."""
    folder = Path(folder)
    if len(folder.parents) < 3 or not folder.name.startswith("seed~"):
        return None
    method, _, value_text = folder.parent.name.partition("~")
    if method not in METHODS:
        return None
    return {
        "runs_root": str(folder.parents[2]),
        "experiment": folder.parents[1].name,
        "method": method,
        "value_text": value_text,
        "seed": folder.name.removeprefix("seed~"),
    }


# ---------------------------------------------------------------- history.csv


def write_history(path: Path, rows: list[dict]) -> None:
    with storage.atomic_file(path) as stream:
        writer = csv.DictWriter(stream, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row[key] for key in HISTORY_COLUMNS})


def read_history(path: Path | str) -> list[dict]:
    """history.csv as a list of dicts with numbers (epoch int, the rest float)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {
            key: (int(value) if key == "epoch" else float(value))
            for key, value in row.items()
        }
        for row in rows
    ]


# ---------------------------------------------------------------- status.json

# What a training job says of itself in checkpoint/status.json, rewritten at each
# progress line and epoch end (smoothbench.training) and read by smoothbench-status.
# The folder goes when the run finishes, so a run with metrics.json has no status.
#   starting  the job is setting up (data, backend, model)
#   running   training; "updated" says when it last spoke
#   stopped   stopped by SIGTERM after a checkpoint (a time limit, scancel, a preemption)
#   failed    stopped by an error, named in "error"
# A job killed outright (SIGKILL, a node lost) cannot say so: its status stays
# "running" and grows old; smoothbench.status calls it stalled.
RUN_STATES = ("starting", "running", "stopped", "failed")


def status_path(run_folder: Path | str) -> Path:
    return Path(run_folder) / CHECKPOINT_FOLDER / STATUS_FILE


def write_run_status(run_folder: Path | str, state: str, **fields) -> None:
    """Rewrite the run's status.json (atomically): ``state`` (one of RUN_STATES), the
    wall-clock time it was written (``updated``, seconds since the epoch) and ``fields``
    (epoch, step, steps, images_per_second, ETAs, ... as training knows them)."""
    import time

    if state not in RUN_STATES:
        raise ValueError(f"unknown run state {state!r}; one of {', '.join(RUN_STATES)}")
    payload = {"state": state, "updated": round(time.time(), 3), **fields}
    with storage.atomic_file(status_path(run_folder)) as stream:
        json.dump(payload, stream, indent=1, sort_keys=True)
        stream.write("\n")


def read_run_status(run_folder: Path | str) -> dict | None:
    """The run's status.json, or None when there is none (or it cannot be read: it is
    advisory, rewritten often, and never a result)."""
    try:
        payload = json.loads(status_path(run_folder).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("state") not in RUN_STATES:
        return None
    return payload


# ---------------------------------------------------------------- metrics.json

_NUMBER = {"type": "number"}
_CALIBRATION_AT_EPOCH = {
    "type": "object",
    "required": ["epoch", *CALIBRATION_KEYS],
    "properties": {
        "epoch": {"type": "integer", "minimum": 0},
        **{key: _NUMBER for key in CALIBRATION_KEYS},
        "bins": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["lower", "upper", "count"],
                "properties": {
                    "lower": _NUMBER,
                    "upper": _NUMBER,
                    "count": {"type": "integer", "minimum": 0},
                    # null in an empty bin
                    "confidence": {"type": ["number", "null"]},
                    "accuracy": {"type": ["number", "null"]},
                },
            },
        },
    },
}
# The contract of a finished run's metrics.json, as training writes it.
METRICS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "smoothbench metrics.json: one finished training run",
    "type": "object",
    "required": [
        "experiment",
        "dataset",
        "method",
        "value",
        "seed",
        "num_classes",
        "model",
        "epochs",
        "best_val_accuracy",
        "best_epoch",
        "final_val_accuracy",
        "train_seconds",
        "epoch_numbering",
        "attempts",
        "settings",
        "software",
        "prepared_data",
        "calibration",
    ],
    "properties": {
        "experiment": {"type": "string", "description": "the config's experiment name"},
        "dataset": {"type": "string"},
        "method": {"enum": list(METHODS)},
        "value": {
            "type": "number",
            "description": "gamma, or alpha for alpha and lspp",
        },
        "seed": {"type": "integer"},
        "num_classes": {"type": "integer", "minimum": 2},
        "model": {
            "type": "string",
            "description": "family and depth, e.g. resnet_v1-20",
        },
        "params": {"type": "integer"},
        "epochs": {"type": "integer", "minimum": 1, "description": "epochs trained"},
        "best_val_accuracy": {"type": "number", "minimum": 0, "maximum": 1},
        "best_epoch": {"type": "integer", "minimum": 0, "description": "0-based"},
        "final_val_accuracy": {"type": "number", "minimum": 0, "maximum": 1},
        "train_seconds": {"type": "number", "minimum": 0},
        "epoch_numbering": {"type": "string"},
        "attempts": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "settings": {
            "type": "object",
            "description": "what the run's result depends on",
        },
        "software": {"type": "object"},
        "prepared_data": {"type": "object"},
        "calibration": {
            "type": "object",
            "required": ["best_epoch", "final_epoch"],
            "properties": {
                "best_epoch": _CALIBRATION_AT_EPOCH,
                "final_epoch": _CALIBRATION_AT_EPOCH,
            },
        },
        "c_matrix_file": {"const": C_MATRIX_FILE},
    },
}
# What a table reads from metrics.json (the rest is provenance), and the Python types
# each value must have, from the schema.
TABLE_KEYS = (
    "experiment",
    "value",
    "seed",
    "best_val_accuracy",
    "best_epoch",
    "epochs",
)
_PYTHON_TYPES = {"string": (str,), "number": (int, float), "integer": (int,)}
REQUIRED_METRICS = {
    key: _PYTHON_TYPES[METRICS_SCHEMA["properties"][key]["type"]] for key in TABLE_KEYS
}


def _is_number(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def check_metrics(metrics: dict, where: str = METRICS_FILE) -> None:
    """Raise ResultsError naming the key where ``metrics`` breaks :data:`METRICS_SCHEMA`."""
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(METRICS_SCHEMA).iter_errors(metrics)
    )
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "<top level>"
        raise ResultsError(
            f"{where}: {key!r}: {error.message} (smoothbench.run_record.METRICS_SCHEMA)"
        )


def write_metrics(path: Path, metrics: dict) -> None:
    """metrics.json, checked against the schema first and written atomically."""
    check_metrics(metrics, str(path))
    storage.write_json_atomic(path, metrics)


def _check_type(path: Path, payload: dict, key: str) -> None:
    kinds = REQUIRED_METRICS[key]
    if key not in payload:
        raise ResultsError(
            f"{path}: has no {key!r}, so it is not a finished run's metrics.json; "
            "delete the run folder and run the workflow again to retrain it"
        )
    value = payload[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        expected = " or ".join(kind.__name__ for kind in kinds)
        raise ResultsError(
            f"{path}: {key!r} is {value!r}, expected a finite {expected}"
        )


def read_metrics(path: Path | str) -> dict:
    """A run's metrics.json, with every value a table reads checked (types, ranges, the
    folder it lies in); ResultsError names the file otherwise. The study's own checks
    (is this a run of the config?) are :func:`smoothbench.tables.read_run_metrics`'."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(
            f"{path}: missing; this run has not finished (run the workflow to train it)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultsError(
            f"{path}: not valid JSON ({error}); delete it and run the workflow again to retrain this run"
        ) from None
    if not isinstance(payload, dict):
        raise ResultsError(
            f"{path}: expected a JSON object, found {type(payload).__name__}"
        )
    method = payload.get("method", "gamma")
    if method not in METHODS:
        raise ResultsError(
            f"{path}: method {method!r} is not one of {', '.join(METHODS)}"
        )
    payload["method"] = method
    if method == "gamma" and "value" not in payload and "gamma" in payload:
        # eq. 7's value may be given as 'gamma' alone
        payload["value"] = payload["gamma"]
    for key in REQUIRED_METRICS:
        _check_type(path, payload, key)
    return payload


def check_ranges_and_folder(path: Path, payload: dict) -> None:
    """The accuracy is a fraction, best_epoch one of the epochs, and a file in the path
    grammar lies in the folder of the run it names."""
    accuracy = payload["best_val_accuracy"]
    if not 0 <= accuracy <= 1:
        raise ResultsError(
            f"{path}: best_val_accuracy {accuracy} is not a fraction in [0, 1]"
        )
    if not 0 <= payload["best_epoch"] < payload["epochs"]:
        raise ResultsError(
            f"{path}: best_epoch {payload['best_epoch']} is not one of its {payload['epochs']} epochs"
        )
    parsed = parse_run_folder(path.parent)
    if parsed is not None and len(path.parents) > 3:
        belongs = Path(
            run_folder(
                parsed["runs_root"],
                payload["experiment"],
                payload["method"],
                float(payload["value"]),
                payload["seed"],
            )
        )
        if belongs != path.parent:
            raise ResultsError(
                f"{path}: the file says experiment {payload['experiment']}, {payload['method']} "
                f"{format_value(payload['value'])}, seed {payload['seed']} but lies in "
                f"{path.parents[2].name}/{path.parent.parent.name}/{path.parent.name}; it was moved or copied by hand"
            )


def read_calibration(path: Path, payload: dict, calibration_epoch: str) -> dict:
    """The ``calibration.{calibration_epoch}_epoch`` section, every field checked; {} where
    the file holds no calibration at all (the tables show '-' there and say so)."""
    calibration = payload.get("calibration")
    if calibration is None:
        return {}
    if not isinstance(calibration, dict):
        raise ResultsError(
            f"{path}: 'calibration' is {calibration!r}, expected an object"
        )
    key = f"calibration.{calibration_epoch}_epoch"
    measured = calibration.get(f"{calibration_epoch}_epoch")
    if not isinstance(measured, dict):
        found = (
            f"has no {key!r}"
            if measured is None
            else f"{key!r} is {measured!r}, expected an object"
        )
        raise ResultsError(
            f"{path}: {found}; retrain the run (or set config key tables.calibration_epoch)"
        )
    for name in ("epoch", *CALIBRATION_COLUMNS):
        if name not in measured:
            raise ResultsError(f"{path}: has no '{key}.{name}'; retrain the run")
        value = measured[name]
        if not _is_number(value):
            why = (
                (
                    " (a non-finite calibration comes from non-finite validation outputs, so that epoch's accuracy "
                    "is in doubt too)"
                )
                if isinstance(value, float)
                else ""
            )
            raise ResultsError(
                f"{path}: '{key}.{name}' is {value!r}, expected a finite number{why}; retrain the run"
            )
    epoch = measured["epoch"]
    reported = (
        payload["best_epoch"] if calibration_epoch == "best" else payload["epochs"] - 1
    )
    if epoch != reported:
        which = "best_epoch" if calibration_epoch == "best" else "the last epoch"
        raise ResultsError(
            f"{path}: '{key}.epoch' is {epoch!r}, but {which} is {reported}: the calibration does not describe "
            "the network whose accuracy the file reports; retrain the run"
        )
    bins = measured.get("bins")
    if bins is not None:
        if not isinstance(bins, list) or not bins:
            raise ResultsError(
                f"{path}: '{key}.bins' is {bins!r}, expected a list of reliability bins"
            )
        for index, row in enumerate(bins):
            where = f"{key}.bins[{index}]"
            if not isinstance(row, dict):
                raise ResultsError(f"{path}: '{where}' is {row!r}, expected an object")
            count = row.get("count")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ResultsError(
                    f"{path}: '{where}.count' is {count!r}, expected a count of examples"
                )
            for name in (
                "lower",
                "upper",
                *(("confidence", "accuracy") if count else ()),
            ):
                if not _is_number(row.get(name)):
                    raise ResultsError(
                        f"{path}: '{where}.{name}' is {row.get(name)!r}, expected a finite number"
                    )
    return measured
