"""One training run of the paper's protocol: resumable, reproducible, loud on failure.

``train(settings, compute, prepared_folder, run_folder)`` trains one
(experiment, method at a value, seed) and writes, in ``run_folder``:

- ``history.csv``: one row per epoch, ``epoch,lr,loss,accuracy,val_loss,val_accuracy,
  val_ece,val_nll,val_brier,val_confidence,seconds`` (0-based epochs, as the paper's
  schedule counts them; accuracies are fractions; ``loss`` includes the weight decay,
  ``val_loss`` is the method's loss on the validation split without it; the calibration
  columns are :mod:`smoothbench.calibration`'s);
- ``c_matrix.npy`` (Label Smoothing++ only): the learned K x K matrix C at the end;
- ``metrics.json``: the numbers a table needs (best validation accuracy and its epoch,
  calibration at the best and the final epoch with reliability bins, ...) and where they
  came from (settings, prepared data, software, device). Written last: a run folder
  without it is not finished.

While it runs, ``run_folder/checkpoint/`` holds ``state.npz`` (every model and
optimizer variable, the epoch and the history so far), rewritten atomically at each
epoch end, and ``progress.csv``. A job killed at any moment - SIGKILL, a scheduler's
SIGTERM - and started again resumes after its last finished epoch; the checkpoint is
deleted once the outputs are written. The checkpoint carries a fingerprint of the
settings: one left by different settings is discarded, never resumed.

The shuffle order of every epoch depends only on (seed, epoch) (:mod:`smoothbench.data`),
the initial weights and augmentation on the seed; with ``compute.deterministic`` the
same seed gives the same numbers on the same machine.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from smoothbench import acceleration, storage
from smoothbench.errors import SmoothbenchError
from smoothbench.shapes import padded_shape, padding_to

HISTORY_COLUMNS = (
    "epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy",
    "val_ece", "val_nll", "val_brier", "val_confidence", "seconds",
)
CALIBRATION_KEYS = ("accuracy", "ece", "nll", "brier", "confidence")
CHECKPOINT_FOLDER = "checkpoint"
CHECKPOINT_FILE = "state.npz"
PROGRESS_FILE = "progress.csv"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
C_MATRIX_FILE = "c_matrix.npy"
CHECKPOINT_FORMAT = 2


class TrainingDivergedError(SmoothbenchError, RuntimeError):
    """The loss became NaN or infinite."""


class CheckpointError(SmoothbenchError, RuntimeError):
    """A checkpoint that cannot be resumed."""


def say(message: str) -> None:
    """Print a progress line now (stdout is a log file under Snakemake, block-buffered otherwise)."""
    print(message, flush=True)


def learning_rate_at(epoch: int, learning_rate: float, schedule: list[dict]) -> float:
    """The paper's step schedule on the 0-based ``epoch``: the last step with epoch > after_epoch wins.

    With the paper's steps (80: x0.1, 120: x0.01, 160: x0.001, 180: x0.0005) and 1e-3:
    epochs 0-80 give 1e-3, 81-120 1e-4, 121-160 1e-5, 161-180 1e-6, 181- 5e-7.
    """
    factor = 1.0
    for step in schedule:
        if epoch > step["after_epoch"]:
            factor = step["factor"]
    return learning_rate * factor


def settings_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def check_manifest(manifest: dict, settings: dict, folder: Path) -> None:
    """Refuse prepared data that is not the dataset, K or image shape the run expects."""
    where = Path(folder) / storage.MANIFEST_NAME
    expected = {
        "dataset": settings["dataset"],
        "num_classes": settings["num_classes"],
        "image_shape": list(settings["image_shape"]),
    }
    for key, value in expected.items():
        if manifest.get(key) != value:
            raise storage.PreparedDataError(
                f"{where}: {key} is {manifest.get(key)!r}, but experiment {settings['experiment']!r} expects {value!r}; "
                "the prepared data does not belong to this config - delete the folder and prepare again"
            )


def configure_backend(threads: int, deterministic: bool) -> str:
    """Thread pools and determinism of the Keras backend in use; returns the backend's name.

    Must run before the backend has built anything (a fresh process, as Snakemake's).
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # already initialised: keep its pools
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        if deterministic:
            tf.config.experimental.enable_op_determinism()
    elif backend == "jax" and deterministic:
        os.environ.setdefault("XLA_FLAGS", "--xla_gpu_deterministic_ops=true")
    return backend


def _variables(model, optimizer) -> list:
    return list(model.variables) + list(optimizer.variables)


def save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    """Every model and optimizer variable plus ``state`` (JSON) in one .npz, replaced atomically."""
    import keras

    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"variable_{index:05d}": keras.ops.convert_to_numpy(variable) for index, variable in enumerate(_variables(model, optimizer))}
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    with storage.atomic_file(path, "wb") as stream:
        np.savez(stream, **arrays)


def read_checkpoint_state(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return json.loads(archive["state"].tobytes().decode())
    except Exception as error:
        raise CheckpointError(f"{path}: unreadable checkpoint ({error}); delete it to start the run over") from None


def restore_checkpoint(path: Path, model, optimizer) -> dict:
    """Load variables saved by :func:`save_checkpoint` into ``model`` and ``optimizer``; return the state."""
    variables = _variables(model, optimizer)
    try:
        with np.load(path, allow_pickle=False) as archive:
            state = json.loads(archive["state"].tobytes().decode())
            names = sorted(name for name in archive.files if name.startswith("variable_"))
            if len(names) != len(variables):
                raise CheckpointError(
                    f"{path}: holds {len(names)} variables, the model and optimizer have {len(variables)}; "
                    "it was written by another version of the code - delete it to start the run over"
                )
            for name, variable in zip(names, variables):
                value = archive[name]
                if tuple(value.shape) != tuple(variable.shape):
                    raise CheckpointError(
                        f"{path}: variable {variable.path} has shape {tuple(variable.shape)}, the checkpoint "
                        f"{tuple(value.shape)} - delete it to start the run over"
                    )
                variable.assign(value)
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{path}: unreadable checkpoint ({error}); delete it to start the run over") from None
    return state


def _write_history(path: Path, rows: list[dict]) -> None:
    with storage.atomic_file(path) as stream:
        writer = csv.DictWriter(stream, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row[key] for key in HISTORY_COLUMNS})


def read_history(path: Path | str) -> list[dict]:
    """history.csv as a list of dicts with numbers (epoch int, the rest float)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{key: (int(value) if key == "epoch" else float(value)) for key, value in row.items()} for row in rows]


def _software() -> dict:
    import keras

    versions = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__}
    backend = keras.backend.backend()
    if backend in acceleration.BACKENDS and backend in sys.modules:  # each backend's package has its name
        versions[backend] = getattr(sys.modules[backend], "__version__", "?")
    return versions


def build_model(settings: dict, mean: np.ndarray):
    """(classifier, training model) for ``settings``; the training model takes uint8 images."""
    from smoothbench.models import build_resnet, build_training_model

    image_shape = tuple(settings["image_shape"])
    classifier = build_resnet(
        settings["model"],
        settings["depth"],
        padded_shape(image_shape, settings["min_image_size"]),
        settings["num_classes"],
        settings["pooling"],
    )
    model = build_training_model(
        classifier,
        image_shape,
        mean,
        padding=padding_to(image_shape, settings["min_image_size"]),
        subtract_mean=settings["mean_subtraction"],
        shift=settings["augmentation"]["shift"],
        horizontal_flip=settings["augmentation"]["horizontal_flip"],
    )
    return classifier, model


def describe_method(settings: dict) -> str:
    """``gamma=0.9``, ``alpha=0.1``, ``lspp alpha=0.1``: a run's method as logs print it."""
    method, value = settings["method"], settings["value"]
    return f"{method}={value}" if method in ("gamma", "alpha") else f"{method} alpha={value}"


def compile_for_method(model, settings: dict, optimizer, jit_compile="auto"):
    """``model`` compiled with the loss of ``settings['method']``; Label Smoothing++ wraps it
    in :class:`smoothbench.losses.LabelSmoothingPlusPlusModel` (its C is a weight of the
    wrapper). ``jit_compile`` is Keras' (:mod:`smoothbench.acceleration` resolves it).
    Returns the model to train; under ``mixed_float16`` its ``optimizer`` is Keras' loss
    scale wrapper around ``optimizer``."""
    import keras

    from smoothbench.losses import FixedTargetCrossEntropy, LabelSmoothingPlusPlusModel

    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    if settings["method"] == "lspp":
        model = LabelSmoothingPlusPlusModel(model, settings["num_classes"], settings["value"], name="label_smoothing_plus_plus")
        model.compile(optimizer=optimizer, metrics=[accuracy], jit_compile=jit_compile)
    else:
        model.compile(optimizer=optimizer, loss=FixedTargetCrossEntropy(settings["method"], settings["value"]),
                      metrics=[accuracy], jit_compile=jit_compile)
    return model


def validation_loss(settings: dict, model, logits, labels) -> float:
    """The method's loss (without weight decay) of ``logits`` against ``labels``."""
    import keras

    from smoothbench import losses

    if settings["method"] == "lspp":
        network, matrix = losses.label_smoothing_plus_plus_terms(labels, logits, model.target_matrix.logits, settings["value"])
        values = (network + matrix) / 2.0
    else:
        targets = losses.fixed_targets(labels, settings["num_classes"], settings["method"], settings["value"])
        values = losses.target_cross_entropy(targets, logits)
    return float(np.mean(keras.ops.convert_to_numpy(values)))


def train(
    settings: dict,
    compute: dict,
    prepared_folder: Path | str,
    run_folder: Path | str,
    log: Callable[[str], None] = say,
) -> dict:
    """Train one run (see the module docstring); return its metrics."""
    prepared_folder, run_folder = Path(prepared_folder), Path(run_folder)
    started = time.perf_counter()
    manifest, arrays = storage.open_prepared(prepared_folder, verify_checksums=compute["verify_checksums"])
    check_manifest(manifest, settings, prepared_folder)
    acceleration.select_backend(compute.get("backend", "auto"))
    backend = configure_backend(compute["threads_per_job"], compute["deterministic"])

    import keras

    from smoothbench.calibration import calibration_summary
    from smoothbench.data import ArrayBatches, epoch_order
    from smoothbench.models import count_parameters

    accelerators = acceleration.visible_accelerators()
    capabilities = acceleration.gpu_compute_capabilities(accelerators)
    precision, precision_reason = acceleration.resolve_precision(compute.get("precision", "auto"), capabilities)
    jit_compile, jit_reason = acceleration.resolve_jit_compile(
        compute.get("jit_compile", "auto"), backend, bool(capabilities), compute["deterministic"]
    )
    acceleration.apply_precision(precision)  # before any layer is built
    seed = settings["seed"]
    keras.utils.set_random_seed(seed)
    classifier, model = build_model(settings, np.asarray(arrays["mean"]))
    optimizer = keras.optimizers.Adam(learning_rate=settings["optimizer"]["learning_rate"])
    model = compile_for_method(model, settings, optimizer, jit_compile=jit_compile)
    # Under mixed_float16 model.optimizer wraps `optimizer` in a loss scale; the checkpoint
    # holds `optimizer`'s variables only, so a run may resume under another precision.
    model.optimizer.build(model.trainable_variables)
    parameters = count_parameters(classifier)

    fingerprint = settings_fingerprint(settings)
    checkpoint = run_folder / CHECKPOINT_FOLDER / CHECKPOINT_FILE
    # A job killed while writing leaves a temporary file; one job runs per folder at a time.
    for stale in [*run_folder.glob(".*.tmp"), *checkpoint.parent.glob(".*.tmp")]:
        stale.unlink(missing_ok=True)
    rows: list[dict] = []
    attempts: list[dict] = []
    calibration = {"best_epoch": None, "final_epoch": None}
    if checkpoint.exists():
        state = read_checkpoint_state(checkpoint)
        if state.get("fingerprint") != fingerprint or state.get("format") != CHECKPOINT_FORMAT:
            log(f"discarding {checkpoint}: it was written with other settings")
            shutil.rmtree(checkpoint.parent)
        else:
            state = restore_checkpoint(checkpoint, model, optimizer)
            rows, attempts, calibration = state["history"], state["attempts"], state["calibration"]
            log(f"resuming from {checkpoint}: {len(rows)} of {settings['epochs']} epochs done")
    start_epoch = len(rows)
    attempts.append(
        {
            "started_at_epoch": start_epoch,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "backend": backend,
            "precision": precision,
            "jit_compile": jit_compile,
        }
    )
    device = acceleration.describe_accelerators(accelerators)
    train_images, train_labels = arrays["train_images"], arrays["train_labels"]
    validation = ArrayBatches(arrays["validation_images"], arrays["validation_labels"], compute["evaluation_batch_size"])
    log(
        f"{settings['experiment']} {describe_method(settings)} seed={seed}: {settings['model']}-{settings['depth']} "
        f"({parameters:,} parameters) on {device} with Keras {keras.__version__} ({backend}); "
        f"{len(train_labels)} training / {len(validation.labels)} validation images; "
        f"epochs {start_epoch}..{settings['epochs'] - 1}"
    )
    log(f"precision {precision} ({precision_reason}); XLA {'on' if jit_compile else 'off'} ({jit_reason})")

    for epoch in range(start_epoch, settings["epochs"]):
        rate = learning_rate_at(epoch, settings["optimizer"]["learning_rate"], settings["optimizer"]["schedule"])
        optimizer.learning_rate.assign(rate)
        batches = ArrayBatches(train_images, train_labels, settings["batch_size"], order=epoch_order(len(train_labels), seed, epoch))
        epoch_start = time.perf_counter()
        result = model.fit(
            batches,
            initial_epoch=epoch,
            epochs=epoch + 1,
            verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN()],
            shuffle=False,  # the order is epoch_order(seed, epoch); Keras would reshuffle batches with the global RNG
        )
        logs = {key: float(values[-1]) for key, values in result.history.items()}
        # Validation: one inference pass gives accuracy, the method's loss and calibration.
        logits = model.predict(validation, verbose=0)
        if np.all(np.isfinite(logits)):
            summary = calibration_summary(logits, validation.labels)
            logs["val_loss"] = validation_loss(settings, model, logits, validation.labels)
            logs.update({f"val_{key}": summary[key] for key in CALIBRATION_KEYS})
        seconds = time.perf_counter() - epoch_start
        if not all(math.isfinite(logs.get(key, math.nan)) for key in ("loss", "val_loss")):
            raise TrainingDivergedError(
                f"{settings['experiment']} {describe_method(settings)} seed={seed}: the loss became "
                f"{logs.get('loss', math.nan)} in epoch {epoch} (learning rate {rate:g}); no metrics were written. "
                f"The checkpoint of the last finite epoch, if any, is in {checkpoint.parent}"
            )
        row = {
            "epoch": epoch,
            "lr": rate,
            # float32 metrics: 7 significant digits is all they hold
            "loss": float(f"{logs['loss']:.7g}"),
            "accuracy": float(f"{logs['accuracy']:.7g}"),
            "val_loss": float(f"{logs['val_loss']:.7g}"),
            "val_accuracy": float(f"{logs['val_accuracy']:.7g}"),
            **{f"val_{key}": float(f"{logs[f'val_{key}']:.7g}") for key in CALIBRATION_KEYS if key != "accuracy"},
            "seconds": round(seconds, 3),
        }
        rows.append(row)
        calibration["final_epoch"] = {"epoch": epoch, **summary}
        if calibration["best_epoch"] is None or row["val_accuracy"] > max(r["val_accuracy"] for r in rows[:-1]):
            calibration["best_epoch"] = {"epoch": epoch, **summary}  # the first epoch reaching the best accuracy
        state = {"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "history": rows, "attempts": attempts,
                 "calibration": calibration}
        save_checkpoint(checkpoint, model, optimizer, state)
        _write_history(checkpoint.parent / PROGRESS_FILE, rows)
        log(
            f"epoch {epoch + 1}/{settings['epochs']}  lr {rate:.3g}  loss {row['loss']:.4f}  "
            f"accuracy {row['accuracy']:.4f}  val_loss {row['val_loss']:.4f}  "
            f"val_accuracy {row['val_accuracy']:.4f}  {seconds:.1f} s"
        )

    metrics = summarize(settings, rows, attempts, parameters, manifest, prepared_folder, device, backend)
    metrics["calibration"] = {"bins": len(calibration["final_epoch"]["bins"]), **calibration}
    metrics["wall_seconds_last_attempt"] = round(time.perf_counter() - started, 3)
    _write_history(run_folder / HISTORY_FILE, rows)
    if settings["method"] == "lspp":
        with storage.atomic_file(run_folder / C_MATRIX_FILE, "wb") as stream:
            np.save(stream, keras.ops.convert_to_numpy(model.target_matrix.matrix()).astype(np.float32))
        metrics["c_matrix_file"] = C_MATRIX_FILE
    storage.write_json_atomic(run_folder / METRICS_FILE, metrics)
    shutil.rmtree(checkpoint.parent, ignore_errors=True)
    log(
        f"done: best val_accuracy {metrics['best_val_accuracy']:.4f} at epoch {metrics['best_epoch']}, "
        f"final {metrics['final_val_accuracy']:.4f}, {metrics['train_seconds']:.0f} s of training"
    )
    return metrics


def _equivalent_gamma(settings: dict) -> dict:
    """``gamma`` for gamma runs; for alpha runs the gamma of the same targets; for LS++
    the gamma its targets start from (1 - alpha)."""
    from smoothbench.losses import gamma_from_alpha

    method, value = settings["method"], settings["value"]
    if method == "gamma":
        return {"gamma": value}
    if method == "alpha":
        return {"equivalent_gamma": round(gamma_from_alpha(value, settings["num_classes"]), 12)}
    return {"initial_equivalent_gamma": round(1.0 - value, 12)}


def summarize(settings, rows, attempts, parameters, manifest, prepared_folder, device, backend) -> dict:
    """metrics.json's content, from the history and the run's context."""
    accuracies = [row["val_accuracy"] for row in rows]
    best_epoch = int(np.argmax(accuracies))  # the first epoch reaching the best value
    return {
        "experiment": settings["experiment"],
        "dataset": settings["dataset"],
        "method": settings["method"],
        "value": settings["value"],
        **_equivalent_gamma(settings),
        "seed": settings["seed"],
        "num_classes": settings["num_classes"],
        "model": f"{settings['model']}-{settings['depth']}",
        "params": parameters,
        "epochs": len(rows),
        "best_val_accuracy": accuracies[best_epoch],
        "best_epoch": best_epoch,
        "final_val_accuracy": accuracies[-1],
        "best_val_loss": min(row["val_loss"] for row in rows),
        "final_loss": rows[-1]["loss"],
        "train_seconds": round(sum(row["seconds"] for row in rows), 3),
        "epoch_numbering": "0-based (the schedule's epoch)",
        "attempts": attempts,
        "device": device,
        "backend": backend,
        "software": _software(),
        "prepared_data": {
            "folder": str(prepared_folder),
            "manifest_sha256": storage.sha256_of_file(Path(prepared_folder) / storage.MANIFEST_NAME),
            "train_examples": manifest["splits"]["train"]["count"],
            "validation_examples": manifest["splits"]["validation"]["count"],
            "validation_split": manifest["splits"]["validation"]["split"],
            "mock_data": manifest.get("mock_data", False),
        },
        "settings": settings,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
