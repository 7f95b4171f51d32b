"""One training run of the paper's protocol: resumable, reproducible, loud on failure.

``train(settings, compute, prepared_folder, run_folder)`` trains one
(experiment, method at a value, seed) and writes, in ``run_folder``:

- ``history.csv``: one row per epoch, ``epoch,lr,loss,accuracy,val_loss,val_accuracy,
  val_ece,val_nll,val_brier,val_confidence,seconds`` (0-based epochs, as the paper's
  schedule counts them; accuracies are fractions; ``loss`` includes the weight decay,
  ``val_loss`` is the method's loss on the validation split without it; the calibration
  columns are :mod:`smoothbench.train.calibration`'s);
- ``c_matrix.npy`` (Label Smoothing++ only): the learned K x K matrix C at the end;
- ``metrics.json``: the numbers a table needs (best validation accuracy and its epoch,
  calibration at the best and the final epoch with reliability bins, ...) and where they
  came from (settings, prepared data, software, device). Written last: a run folder
  without it is not finished.

While it runs, ``run_folder/checkpoint/`` holds the checkpoint a job killed at any
moment resumes from, and a finished run is written whole to ``run_folder/.finished/``
before its outputs are published: :mod:`smoothbench.train.checkpoint`. This module is the
loop; the rest is in its own module: the network (:mod:`smoothbench.train.network`),
checkpoints within an epoch and SIGTERM (:mod:`smoothbench.train.interruption`),
``history.csv``'s rows and ``metrics.json``'s content (:mod:`smoothbench.train.outputs`),
the code and software that ran (:mod:`smoothbench.compute.software`).

The shuffle order of every epoch depends only on (seed, epoch) (:mod:`smoothbench.data.batches`),
the initial weights and augmentation on the seed; with ``compute.deterministic`` the
same seed gives the same numbers on the same machine.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from smoothbench import run_record
from smoothbench.compute import decisions
from smoothbench.data import array_store
from smoothbench.errors import SmoothbenchError
from smoothbench.run_record import (
    CALIBRATION_KEYS,
    CHECKPOINT_FILE,
    CHECKPOINT_FOLDER,
    PROGRESS_FILE,
    write_history,
)
from smoothbench.settings import ComputeSettings, RunSettings
from smoothbench.train import versions
from smoothbench.train.checkpoint import (
    CHECKPOINT_FORMAT,
    Progress,
    data_fingerprint,
    republish_finished,
    resume,
    save_checkpoint,
    settings_fingerprint,
)
from smoothbench.train.interruption import (
    TrainingStopped,
    mid_epoch_checkpoints,
    stop_on_sigterm,
)
from smoothbench.train.network import describe_method, validation_loss
from smoothbench.train.outputs import finish, history_row
from smoothbench.train.progress import (
    EpochReporter,
    TensorBoardLog,
    epoch_label,
    report_status,
    run_eta,
)
from smoothbench.train.progress import keras_callback as progress_callback
from smoothbench.train.session import (
    Session,
    attempt_record,
    earlier_attempts,
    set_up_session,
)


class TrainingDivergedError(SmoothbenchError, RuntimeError):
    """The loss became NaN or infinite."""


class NothingToRepublishError(SmoothbenchError, RuntimeError):
    """A job planned to republish a finished version (given no GPU) found none."""


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


def check_manifest(manifest: dict, settings: RunSettings | dict, folder: Path) -> None:
    """Refuse prepared data that is not the dataset, K or image shape the run expects."""
    settings = RunSettings.from_dict(settings)
    where = Path(folder) / array_store.MANIFEST_NAME
    expected = {
        "dataset": settings.dataset,
        "num_classes": settings.num_classes,
        "image_shape": list(settings.image_shape),
    }
    for key, value in expected.items():
        if manifest.get(key) != value:
            raise array_store.PreparedDataError(
                f"{where}: {key} is {manifest.get(key)!r}, but experiment {settings.experiment!r} expects {value!r}; "
                "the prepared data does not belong to this config - delete the folder and prepare again"
            )


def train(
    settings: RunSettings | dict,
    compute: ComputeSettings,
    prepared_folder: Path | str,
    run_folder: Path | str,
    log: Callable[[str], None] = say,
    log_file: Path | str | None = None,
    republish_only: bool = False,
) -> dict:
    """Train one run (see the module docstring); return its metrics.

    The steps: keep what the run folder holds of other settings or data, and take back
    a kept version of these (:func:`smoothbench.train.versions.set_aside_others`); republish
    the run when it already finished (:func:`republish_finished`);
    else open the prepared data, set up the backend and the model
    (:func:`set_up_session`, under the computation the config gives and the checkpoint
    recorded), resume from the checkpoint (:func:`resume`), train the epochs left
    (:func:`train_epochs`) and write the outputs (:func:`finish`).
    """
    settings = RunSettings.from_dict(settings)
    prepared_folder, run_folder = Path(prepared_folder), Path(run_folder)
    started = time.perf_counter()
    fingerprints = {
        "format": CHECKPOINT_FORMAT,
        "settings": settings_fingerprint(settings.as_dict()),
        "data": data_fingerprint(array_store.read_manifest(prepared_folder)),
    }
    versions.set_aside_others(run_folder, fingerprints, settings.method, log)
    metrics = republish_finished(settings, run_folder, fingerprints, log)
    if metrics is not None:
        return metrics
    if republish_only:
        raise NothingToRepublishError(
            f"{run_folder}: planning found this run's finished version and gave its job no "
            "GPU to republish it, but it is gone now (retired or deleted since); nothing "
            "was trained. Run the workflow again: it plans the run to train on a GPU"
        )
    report_status(run_folder, "starting", log, epochs=settings.epochs)
    checkpoint = run_folder / CHECKPOINT_FOLDER / CHECKPOINT_FILE
    log_keeper = versions.LogKeeper(log_file, checkpoint.parent)
    # status.json says what happens (smoothbench-status reads it); an error is recorded.
    try:
        manifest, arrays = array_store.open_prepared(
            prepared_folder, verify_checksums=compute.verify_checksums
        )
        check_manifest(manifest, settings, prepared_folder)
        session = set_up_session(
            settings,
            compute,
            np.asarray(arrays["mean"]),
            log,
            recorded=decisions.recorded_computation(
                earlier_attempts(checkpoint, fingerprints)
            ),
        )
        # A job killed while writing leaves a temporary file; one job runs per folder at a time.
        for stale in [*run_folder.glob(".*.tmp"), *checkpoint.parent.glob(".*.tmp")]:
            stale.unlink(missing_ok=True)
        progress = resume(checkpoint, session, fingerprints, settings, log)
        progress.attempts.append(attempt_record(progress, session))
        versions.write_version_file(checkpoint.parent, settings.as_dict(), fingerprints)
        train_epochs(
            settings, compute, session, arrays, checkpoint, progress, log, log_keeper
        )
    except TrainingStopped as stop:
        report_status(run_folder, "stopped", log, reason=str(stop))
        log_keeper.save(checkpoint.parent)
        raise
    except KeyboardInterrupt:
        # Ctrl-C (or a test's stand-in for a kill): the checkpoint resumes it
        report_status(run_folder, "stopped", log, reason="interrupted (Ctrl-C)")
        raise
    except BaseException as error:
        report_status(
            run_folder, "failed", log, error=f"{type(error).__name__}: {error}"
        )
        raise
    return finish(
        settings,
        session,
        progress,
        manifest,
        prepared_folder,
        run_folder,
        started,
        log,
        kept_files=({run_record.TRAIN_LOG_FILE: log_keeper.write} if log_file else {}),
    )


def train_epochs(
    settings: RunSettings,
    compute: ComputeSettings,
    session: Session,
    arrays: dict,
    checkpoint: Path,
    progress: Progress,
    log,
    log_keeper: versions.LogKeeper | None = None,
) -> None:
    """Train the epochs left, a checkpoint at each epoch's end (and within an epoch
    every ``compute.checkpoint_minutes``, and on SIGTERM), the training log so far kept
    beside it (``log_keeper``)."""
    import keras

    from smoothbench.data.batches import ArrayBatches

    start_epoch = len(progress.rows)
    run_folder = checkpoint.parent.parent
    validation = ArrayBatches(
        arrays["validation_images"],
        arrays["validation_labels"],
        compute.evaluation_batch_size,
    )
    log(
        f"{settings.experiment} {describe_method(settings)} seed={settings.seed}: {settings.model_name} "
        f"({session.parameters:,} parameters) on {session.device} with Keras {keras.__version__} ({session.backend}); "
        f"{len(arrays['train_labels'])} training / {len(validation.labels)} validation images; "
        f"epochs {start_epoch}..{settings.epochs - 1} to train (epochs count from 0, as in history.csv)"
    )
    log(
        f"precision {session.precision} ({session.computation.reason('precision')}); "
        f"XLA {'on' if session.jit_compile else 'off'} ({session.computation.reason('jit_compile')}); "
        f"op determinism {'on' if session.deterministic else 'off'}; "
        f"oneDNN {'on' if session.computation.onednn else 'off'} ({session.computation.reason('onednn')})"
        + (
            f"; {compute.steps_per_execution} steps per call (compute.steps_per_execution)"
            if compute.steps_per_execution > 1
            else ""
        )
    )
    every_seconds = 60.0 * compute.checkpoint_minutes
    tensorboard = (
        TensorBoardLog(run_folder / run_record.TENSORBOARD_FOLDER, session.model)
        if compute.tensorboard
        else None
    )
    with stop_on_sigterm() as stop_requested:
        try:
            for epoch in range(start_epoch, settings.epochs):
                row, seconds = train_epoch(
                    settings,
                    session,
                    arrays,
                    validation,
                    epoch,
                    checkpoint,
                    progress,
                    every_seconds,
                    stop_requested,
                    log,
                    compute.progress_seconds,
                )
                if tensorboard is not None:
                    tensorboard.epoch_end(row)
                if log_keeper is not None:
                    log_keeper.save(checkpoint.parent)
                _report_epoch_end(
                    run_folder,
                    settings,
                    progress,
                    compute.progress_seconds,
                    log,
                )
                log(
                    f"{epoch_label(epoch, settings.epochs)}  lr {row['lr']:.3g}  loss {row['loss']:.4f}  "
                    f"accuracy {row['accuracy']:.4f}  val_loss {row['val_loss']:.4f}  "
                    f"val_accuracy {row['val_accuracy']:.4f}  {seconds:.1f} s"
                )
        finally:
            if tensorboard is not None:
                with contextlib.suppress(Exception):  # never hide the error in flight
                    tensorboard.close()


def _report_epoch_end(
    run_folder: Path,
    settings: RunSettings,
    progress: Progress,
    progress_seconds: float,
    log,
) -> None:
    """status.json after an epoch: the epochs done, the last validation accuracy, the
    run's ETA at the mean seconds of the epochs done so far, and how long until the
    next word (a progress line's interval, or without them an epoch), by which
    smoothbench-status tells a silent job from a stalled one."""
    rows = progress.rows
    done_seconds = [row["seconds"] for row in rows]
    left = settings.epochs - len(rows)
    report_status(
        run_folder,
        "running",
        log,
        epoch=min(len(rows), settings.epochs - 1),
        epochs=settings.epochs,
        epochs_done=len(rows),
        step=0,
        steps=None,
        images_per_second=None,
        epoch_eta_seconds=None,
        run_eta_seconds=round(run_eta(0.0, left, done_seconds, 0.0), 1),
        val_accuracy=rows[-1]["val_accuracy"],
        interval_seconds=round(
            progress_seconds if progress_seconds > 0 else max(done_seconds), 1
        ),
    )


def train_epoch(
    settings: RunSettings,
    session: Session,
    arrays: dict,
    validation,
    epoch: int,
    checkpoint: Path,
    progress: Progress,
    every_seconds: float,
    stop_requested: Callable[[], bool],
    log: Callable[[str], None] = say,
    progress_seconds: float = 0,
) -> tuple[dict, float]:
    """One epoch (the rest of it, after a mid-epoch checkpoint), its validation, and
    the epoch-end checkpoint; returns its history row and its seconds."""
    import keras

    from smoothbench.data.batches import ArrayBatches, epoch_order

    model, optimizer = session.model, session.optimizer
    train_images, train_labels = arrays["train_images"], arrays["train_labels"]
    batch_size = settings.batch_size
    steps = math.ceil(len(train_labels) / batch_size)
    rate = learning_rate_at(epoch, settings.learning_rate, settings.schedule)
    optimizer.learning_rate.assign(rate)
    in_progress = progress.in_progress
    resumed = in_progress if in_progress and in_progress["epoch"] == epoch else None
    steps_before = resumed["steps_done"] if resumed else 0
    order = epoch_order(len(train_labels), settings.seed, epoch)[
        steps_before * batch_size :
    ]
    batches = ArrayBatches(train_images, train_labels, batch_size, order=order)
    epoch_start = time.perf_counter()
    seconds_before = resumed["seconds"] if resumed else 0.0

    def save_mid_epoch(done, metric_values):
        position = {
            "epoch": epoch,
            "steps_done": done,
            "steps": steps,
            "seconds": seconds_before + time.perf_counter() - epoch_start,
        }
        save_checkpoint(
            checkpoint, model, optimizer, progress.state(position), metric_values
        )

    if resumed:
        # The epoch's metric totals go back in before its first batch; Keras builds the
        # accuracy metric lazily, so build it now, as Keras itself does under a
        # distribution strategy (shapes only: no variable changes).
        model._symbolic_build(data_batch=batches[0])
    checkpoints = mid_epoch_checkpoints(
        model,
        save_mid_epoch,
        every_seconds,
        steps_before,
        steps,
        resumed["metric_values"] if resumed else None,
        stop_requested,
    )
    reporter = EpochReporter(
        log=log,
        run_folder=checkpoint.parent.parent,
        epoch=epoch,
        epochs=settings.epochs,
        steps=steps,
        steps_before=steps_before,
        batch_size=batch_size,
        every_seconds=progress_seconds,
        done_seconds=[row["seconds"] for row in progress.rows],
        last_val_accuracy=(
            progress.rows[-1]["val_accuracy"] if progress.rows else None
        ),
    )
    result = model.fit(
        batches,
        initial_epoch=epoch,
        epochs=epoch + 1,
        verbose=0,
        callbacks=[
            keras.callbacks.TerminateOnNaN(),
            checkpoints,
            progress_callback(reporter, steps_before),
        ],
        shuffle=False,  # the order is epoch_order(seed, epoch); Keras would reshuffle batches with the global RNG
    )
    progress.in_progress = None
    if checkpoints.stopped_at is not None:
        raise TrainingStopped(
            f"{settings.experiment} {describe_method(settings)} seed={settings.seed}: stopped by SIGTERM at step "
            f"{checkpoints.stopped_at} of {steps} of epoch {epoch}; checkpoint saved in {checkpoint.parent}, "
            "the next attempt resumes there"
        )
    logs = {key: float(values[-1]) for key, values in result.history.items()}
    summary = validate(settings, model, validation, logs)
    seconds = seconds_before + time.perf_counter() - epoch_start
    if not all(math.isfinite(logs.get(key, math.nan)) for key in ("loss", "val_loss")):
        raise TrainingDivergedError(
            f"{settings.experiment} {describe_method(settings)} seed={settings.seed}: the loss became "
            f"{logs.get('loss', math.nan)} in epoch {epoch} (learning rate {rate:g}); no metrics were written. "
            f"The checkpoint of the last finite epoch, if any, is in {checkpoint.parent}"
        )
    # validate gives None only without val_loss in logs, which the check above refuses
    assert summary is not None
    row = history_row(epoch, rate, logs, seconds)
    rows, calibration = progress.rows, progress.calibration
    rows.append(row)
    calibration["final_epoch"] = {"epoch": epoch, **summary}
    if calibration["best_epoch"] is None or row["val_accuracy"] > max(
        r["val_accuracy"] for r in rows[:-1]
    ):
        # the first epoch reaching the best accuracy
        calibration["best_epoch"] = {"epoch": epoch, **summary}
    save_checkpoint(checkpoint, model, optimizer, progress.state())
    write_history(checkpoint.parent / PROGRESS_FILE, rows)
    return row, seconds


def validate(settings: RunSettings, model, validation, logs: dict) -> dict | None:
    """One inference pass over the validation split: adds ``val_loss`` (the method's
    loss) and the calibration columns to ``logs`` and returns the calibration summary;
    None (and ``logs`` unchanged) when the outputs are not finite."""
    from smoothbench.train.calibration import calibration_summary

    logits = model.predict(validation, verbose=0)
    if not np.all(np.isfinite(logits)):
        return None
    summary = calibration_summary(logits, validation.labels)
    logs["val_loss"] = validation_loss(settings, model, logits, validation.labels)
    logs.update({f"val_{key}": summary[key] for key in CALIBRATION_KEYS})
    return summary
