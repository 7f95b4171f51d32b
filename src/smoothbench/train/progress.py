"""What a training job tells while it trains: a progress line within each epoch, the
run's ``status.json`` (:mod:`smoothbench.run_record`), and, when asked, TensorBoard.

Epochs are counted from 0 everywhere, in the logs as in ``history.csv``,
``metrics.json`` and the schedule's ``after_epoch``: a run of 8 epochs trains epochs
0..7, and a log line says ``epoch 3 of 0..7``.

A progress line, every ``compute.progress_seconds`` within an epoch::

    epoch 3 of 0..199  step 1200/1563  2,310 images/s  epoch ETA 9 s  run ETA 1 h 02 min

The images/s are those of the last interval; the epoch's ETA is the steps left at that
pace; the run's ETA adds the epochs left at the mean seconds of the epochs done (their
validation included), or at this epoch's pace before any is done.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from smoothbench import run_record


def format_duration(seconds: float | None) -> str:
    """``12 s``, ``4 min 36 s``, ``3 h 07 min``, ``2 d 05 h``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


def epoch_label(epoch: int, epochs: int) -> str:
    """``epoch 3 of 0..7``: the one way logs name an epoch (counted from 0)."""
    return f"epoch {epoch} of 0..{epochs - 1}"


_warned_folders: set[str] = set()


def report_status(
    run_folder: Path, state: str, log: Callable[[str], None] | None = None, **fields
) -> None:
    """Rewrite the run's status.json (:func:`smoothbench.run_record.write_run_status`)
    with where it is written from. The status is advisory: a failed write (an NFS
    hiccup, a full quota) is logged once per run and never stops training, nor hides
    the error being reported."""
    try:
        run_record.write_run_status(run_folder, state, **fields, **where())
    except OSError as error:
        if log is not None and str(run_folder) not in _warned_folders:
            _warned_folders.add(str(run_folder))
            log(
                f"warning: could not write the run's status ({error}); training goes on"
            )


def where() -> dict:
    """The host, process and SLURM job a status file was written from."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def run_eta(
    epoch_eta: float, epochs_after: int, done_seconds: list[float], epoch_pace: float
) -> float:
    """Seconds until the run ends: this epoch's ``epoch_eta`` plus ``epochs_after``
    epochs at the mean of ``done_seconds`` (the epochs done), or at ``epoch_pace``
    (this epoch's seconds at its current pace) before any epoch is done."""
    per_epoch = sum(done_seconds) / len(done_seconds) if done_seconds else epoch_pace
    return epoch_eta + epochs_after * per_epoch


class EpochReporter:
    """Progress within one epoch: :meth:`step` is called after every batch and, every
    ``every_seconds``, logs a progress line and rewrites the run's status.json."""

    def __init__(
        self,
        *,
        log: Callable[[str], None],
        run_folder: Path,
        epoch: int,
        epochs: int,
        steps: int,
        steps_before: int,
        batch_size: int,
        every_seconds: float,
        done_seconds: list[float],
        last_val_accuracy: float | None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.log, self.run_folder = log, run_folder
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.batch_size, self.every_seconds = batch_size, every_seconds
        self.done_seconds, self.last_val_accuracy = done_seconds, last_val_accuracy
        self.clock = clock
        self.started = self.last = clock()
        self.steps_before = self.steps_at_last = steps_before

    def step(self, done: int) -> str | None:
        """After a batch: ``done`` steps of the epoch are done. Returns the line logged,
        if any."""
        now = self.clock()
        if self.every_seconds <= 0 or now - self.last < self.every_seconds:
            return None
        if done >= self.steps:
            return None  # the epoch's own line follows
        images_per_second = (
            (done - self.steps_at_last) * self.batch_size / max(now - self.last, 1e-9)
        )
        seconds_per_step = (now - self.started) / max(done - self.steps_before, 1)
        epoch_eta = (self.steps - done) * seconds_per_step
        eta = run_eta(
            epoch_eta,
            self.epochs - self.epoch - 1,
            self.done_seconds,
            self.steps * seconds_per_step,
        )
        line = (
            f"{epoch_label(self.epoch, self.epochs)}  step {done}/{self.steps}  "
            f"{images_per_second:,.0f} images/s  epoch ETA {format_duration(epoch_eta)}  "
            f"run ETA {format_duration(eta)}"
        )
        self.log(line)
        report_status(
            self.run_folder,
            "running",
            self.log,
            epoch=self.epoch,
            epochs=self.epochs,
            epochs_done=self.epoch,
            step=done,
            steps=self.steps,
            images_per_second=round(images_per_second, 2),
            epoch_eta_seconds=round(epoch_eta, 1),
            run_eta_seconds=round(eta, 1),
            val_accuracy=self.last_val_accuracy,
            interval_seconds=self.every_seconds,
        )
        self.last, self.steps_at_last = now, done
        return line


def keras_callback(reporter: EpochReporter, steps_before: int):
    """A Keras callback that calls ``reporter.step`` after every training batch."""
    import keras

    class ProgressLines(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            reporter.step(steps_before + batch + 1)

    return ProgressLines()


class TensorBoardLog:
    """Keras' own TensorBoard callback, fed once per epoch with the run's history row
    (train loss and accuracy, and the validation loss, accuracy and calibration that
    smoothbench measures itself), under ``folder``/train and ``folder``/validation.
    One event file per attempt; ``tensorboard --logdir <results>/runs`` shows every run
    by its folder."""

    def __init__(self, folder: Path, model):
        import keras

        if keras.backend.backend() != "tensorflow":
            # tf.summary would start TensorFlow on the GPU beside the backend's own
            # allocation: TensorFlow writes the events from the CPU instead
            import tensorflow as tf

            with contextlib.suppress(RuntimeError):  # already started: nothing to do
                tf.config.set_visible_devices([], "GPU")
        self.callback = keras.callbacks.TensorBoard(
            log_dir=str(folder),
            write_graph=False,
            write_steps_per_second=False,
            update_freq="epoch",
            profile_batch=0,
        )
        self.callback.set_model(model)
        self.callback.on_train_begin()

    def epoch_end(self, row: dict) -> None:
        logs = {
            key: value
            for key, value in row.items()
            if key not in ("epoch", "lr", "seconds")
        }
        logs["seconds"] = row["seconds"]
        self.callback.on_epoch_end(row["epoch"], logs)

    def close(self) -> None:
        self.callback.on_train_end()
