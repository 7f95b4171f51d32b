"""What a run leaves behind: a row of ``history.csv`` per epoch (:func:`history_row`),
and at the end ``metrics.json``'s content (:func:`summarize`), written with the other
outputs through the ``.finished/`` record (:func:`finish`,
:mod:`smoothbench.train.checkpoint`). The files' formats are :mod:`smoothbench.run_record`'s.
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
from pathlib import Path

import numpy as np

from smoothbench import files
from smoothbench.compute.software import software_versions
from smoothbench.data import array_store
from smoothbench.run_record import (
    C_MATRIX_FILE,
    CALIBRATION_KEYS,
    CHECKPOINT_FILE,
    CHECKPOINT_FOLDER,
    HISTORY_FILE,
    METRICS_FILE,
    output_names,
    write_history,
    write_metrics,
)
from smoothbench.settings import RunSettings
from smoothbench.train.checkpoint import Progress, publish, write_finished_record
from smoothbench.train.progress import epoch_label

# The test suite's switch (not a config key): keep each run's final checkpoint as
# .finished/final_state.npz.
KEEP_FINAL_STATE_VARIABLE = "SMOOTHBENCH_TEST_KEEP_FINAL_STATE"
FINAL_STATE_FILE = "final_state.npz"


def history_row(epoch: int, rate: float, logs: dict, seconds: float) -> dict:
    """One row of history.csv (run_record.HISTORY_COLUMNS)."""
    return {
        "epoch": epoch,
        "lr": rate,
        # float32 metrics: 7 significant digits is all they hold
        "loss": float(f"{logs['loss']:.7g}"),
        "accuracy": float(f"{logs['accuracy']:.7g}"),
        "val_loss": float(f"{logs['val_loss']:.7g}"),
        "val_accuracy": float(f"{logs['val_accuracy']:.7g}"),
        **{
            f"val_{key}": float(f"{logs[f'val_{key}']:.7g}")
            for key in CALIBRATION_KEYS
            if key != "accuracy"
        },
        "seconds": round(seconds, 3),
    }


def finish(
    settings: RunSettings,
    session,
    progress: Progress,
    manifest: dict,
    prepared_folder: Path,
    run_folder: Path,
    started: float,
    log,
    kept_files: dict | None = None,
) -> dict:
    """Write the outputs whole into ``.finished/``, delete the checkpoint, publish the
    outputs (metrics.json last); return the metrics. ``session``: the
    :class:`smoothbench.train.session.Session` that trained the run; ``kept_files``: more
    files the record keeps but does not publish (name -> writer(path), e.g. the
    training log, :class:`smoothbench.train.versions.LogKeeper`)."""
    import keras

    rows, calibration = progress.rows, progress.calibration
    metrics = summarize(
        settings,
        rows,
        progress.attempts,
        session.parameters,
        manifest,
        prepared_folder,
        session.device,
        session.backend,
    )
    metrics["calibration"] = {
        "bins": len(calibration["final_epoch"]["bins"]),
        **calibration,
    }
    metrics["wall_seconds_last_attempt"] = round(time.perf_counter() - started, 3)
    writers = {
        **(kept_files or {}),
        HISTORY_FILE: lambda path: write_history(path, rows),
    }
    if settings.method == "lspp":
        matrix = keras.ops.convert_to_numpy(
            session.model.target_matrix.matrix()
        ).astype(np.float32)

        def write_matrix(path):
            with files.atomic_file(path, "wb") as stream:
                np.save(stream, matrix)

        writers[C_MATRIX_FILE] = write_matrix
        metrics["c_matrix_file"] = C_MATRIX_FILE
    writers[METRICS_FILE] = lambda path: write_metrics(path, metrics)
    if os.environ.get(KEEP_FINAL_STATE_VARIABLE):
        # tests only: the final checkpoint kept in .finished/, so that a resumed run's
        # every variable can be compared with an uninterrupted run's
        writers[FINAL_STATE_FILE] = lambda path: shutil.copyfile(
            run_folder / CHECKPOINT_FOLDER / CHECKPOINT_FILE, path
        )
    # Finished whole in .finished/ first; from here a kill at any instant costs nothing.
    record = write_finished_record(run_folder, progress.fingerprints, writers)
    shutil.rmtree(run_folder / CHECKPOINT_FOLDER, ignore_errors=True)
    publish(record, run_folder, output_names(settings.method))
    log(
        f"done: best val_accuracy {metrics['best_val_accuracy']:.4f} at "
        f"{epoch_label(metrics['best_epoch'], settings.epochs)}, "
        f"final {metrics['final_val_accuracy']:.4f}, {metrics['train_seconds']:.0f} s of training"
    )
    return metrics


def _equivalent_gamma(settings: RunSettings) -> dict:
    """``gamma`` for gamma runs; for alpha runs the gamma of the same targets; for LS++
    the gamma its targets start from (1 - alpha): :func:`smoothbench.methods.equivalent_gamma`."""
    from smoothbench.methods import equivalent_gamma

    method, value = settings.method, settings.value
    gamma = round(equivalent_gamma(method, value, settings.num_classes), 12)
    key = {
        "gamma": "gamma",
        "alpha": "equivalent_gamma",
        "lspp": "initial_equivalent_gamma",
    }
    return {key[method]: value if method == "gamma" else gamma}


def summarize(
    settings, rows, attempts, parameters, manifest, prepared_folder, device, backend
) -> dict:
    """metrics.json's content, from the history and the run's context."""
    accuracies = [row["val_accuracy"] for row in rows]
    best_epoch = int(np.argmax(accuracies))  # the first epoch reaching the best value
    return {
        "experiment": settings.experiment,
        "dataset": settings.dataset,
        "method": settings.method,
        "value": settings.value,
        **_equivalent_gamma(settings),
        "seed": settings.seed,
        "num_classes": settings.num_classes,
        "model": settings.model_name,
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
        "software": software_versions(),
        "prepared_data": {
            "folder": str(prepared_folder),
            "manifest_sha256": files.sha256_of_file(
                Path(prepared_folder) / array_store.MANIFEST_NAME
            ),
            "train_examples": manifest["splits"]["train"]["count"],
            "validation_examples": manifest["splits"]["validation"]["count"],
            "validation_split": manifest["splits"]["validation"]["split"],
            "mock_data": manifest.get("mock_data", False),
        },
        "settings": settings.as_dict(),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
