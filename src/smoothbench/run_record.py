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
:mod:`smoothbench.train.checkpoint`); and ``.versions/``, every version of the run trained
under other settings or data, kept (:mod:`smoothbench.train.versions`).

``metrics.json`` follows :data:`METRICS_SCHEMA`: :func:`write_metrics` refuses a record
that does not, and :func:`read_metrics` checks a file against it once, for every reader
(:mod:`smoothbench.results.collection`), naming the file and the key at fault.
"""

from __future__ import annotations

import csv
import json
import math
from decimal import Decimal
from pathlib import Path

import jsonschema

from smoothbench import files
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
# Every other version of the run (other settings or data), finished or not, kept:
# .versions/{key}/.finished/ and .versions/{key}/checkpoint/ (smoothbench.train.versions).
VERSIONS_FOLDER = ".versions"
TRAIN_LOG_FILE = "train.log"  # a version's training log, in its checkpoint and record
VERSION_FILE = "version.json"  # an unfinished version's settings, in its checkpoint
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
# The calibration measured at an epoch (smoothbench.train.calibration), in metrics.json and
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
    with files.atomic_file(path) as stream:
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
# progress line and epoch end (smoothbench.train.loop) and read by smoothbench-status.
# The folder goes when the run finishes, so a run with metrics.json has no status.
#   starting  the job is setting up (data, backend, model)
#   running   training; "updated" says when it last spoke
#   stopped   stopped by SIGTERM after a checkpoint (a time limit, scancel, a preemption)
#   failed    stopped by an error, named in "error"
# A job killed outright (SIGKILL, a node lost) cannot say so: its status stays
# "running" and grows old; smoothbench.tools.status calls it stalled.
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
    with files.atomic_file(status_path(run_folder)) as stream:
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
                # a bin holding examples has their mean confidence and accuracy
                "if": {"required": ["count"], "properties": {"count": {"minimum": 1}}},
                "then": {
                    "required": ["confidence", "accuracy"],
                    "properties": {"confidence": _NUMBER, "accuracy": _NUMBER},
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


def _is_finite_number(checker, value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _is_integer(checker, value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Writing checks the schema with JSON Schema's own types, so a diverged network's NaN is
# still recorded; reading takes numbers as JSON has them: finite (no NaN, no Infinity),
# and an integer is an int (3, not 3.0).
_WRITE_VALIDATOR = jsonschema.Draft202012Validator(METRICS_SCHEMA)
_READ_VALIDATOR = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _is_finite_number, "integer": _is_integer}
    ),
)(METRICS_SCHEMA)
_TYPE_NAMES = {
    "number": "a finite number",
    "integer": "an integer",
    "string": "a string",
    "object": "an object",
    "array": "an array",
    "boolean": "true or false",
    "null": "null",
}
RETRAIN = "retrain the run: delete its run folder and run the workflow again"


def _key(path) -> str:
    """``calibration.best_epoch.bins[0].count`` from a schema error's path."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def schema_error_text(error) -> str:
    """What a schema error says, naming the key: ``has no 'settings'``, ``'seed' is '0',
    expected an integer``."""
    key = _key(error.absolute_path)
    if error.validator == "required":
        missing = next(
            name for name in error.validator_value if name not in error.instance
        )
        return f"has no {(f'{key}.' if key else '') + missing!r}"
    bounds = error.schema
    if error.validator == "type":
        kinds = error.validator_value
        kinds = [kinds] if isinstance(kinds, str) else kinds
        reason = "expected " + " or ".join(_TYPE_NAMES[kind] for kind in kinds)
        if isinstance(error.instance, float) and key.startswith("calibration."):
            reason += (
                " (a non-finite calibration comes from non-finite validation outputs, so that epoch's "
                "accuracy is in doubt too)"
            )
    elif error.validator in ("minimum", "maximum") and {"minimum", "maximum"} <= set(
        bounds
    ):
        reason = f"expected a number in [{bounds['minimum']}, {bounds['maximum']}]"
    elif error.validator == "minimum":
        reason = f"expected at least {error.validator_value}"
    elif error.validator == "maximum":
        reason = f"expected at most {error.validator_value}"
    elif error.validator == "minItems":
        reason = f"expected at least {error.validator_value} item(s)"
    elif error.validator == "enum":
        reason = f"not one of {', '.join(map(str, error.validator_value))}"
    else:
        reason = error.message
    return f"{(key or '<top level>')!r} is {error.instance!r}, {reason}"


def check_metrics(
    metrics: dict, where: str = METRICS_FILE, reading: bool = False
) -> None:
    """Raise ResultsError naming ``where`` and the key where ``metrics`` breaks
    :data:`METRICS_SCHEMA` (``reading``: with finite numbers and integers that are ints,
    and the advice to retrain)."""
    validator = _READ_VALIDATOR if reading else _WRITE_VALIDATOR
    error = jsonschema.exceptions.best_match(validator.iter_errors(metrics))
    if error is not None:
        advice = f"; {RETRAIN}" if reading else ""
        raise ResultsError(
            f"{where}: {schema_error_text(error)}{advice} (smoothbench.run_record.METRICS_SCHEMA)"
        )


def write_metrics(path: Path, metrics: dict) -> None:
    """metrics.json, checked against the schema first and written atomically."""
    check_metrics(metrics, str(path))
    files.write_json_atomic(path, metrics)


def read_metrics(path: Path | str) -> dict:
    """A run's metrics.json, checked once, against :data:`METRICS_SCHEMA` (finite
    numbers); ResultsError names the file and the key otherwise. The checks that relate
    keys to each other and to the folder are :func:`check_epochs_and_folder`'s, the
    study's own (is this a run of the config?) :mod:`smoothbench.results.collection`'s."""
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
    check_metrics(payload, str(path), reading=True)
    return payload


def check_epochs_and_folder(path: Path, payload: dict) -> None:
    """best_epoch is one of the epochs, and a file in the path grammar lies in the folder
    of the run it names (what the schema cannot say: one key against another)."""
    if not payload["best_epoch"] < payload["epochs"]:
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
    """The ``calibration.{calibration_epoch}_epoch`` section of a file :func:`read_metrics`
    checked, refused where it measured another epoch than the accuracy it sits beside."""
    key = f"calibration.{calibration_epoch}_epoch"
    measured = payload["calibration"][f"{calibration_epoch}_epoch"]
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
    return measured
