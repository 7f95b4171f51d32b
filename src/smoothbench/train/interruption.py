"""Stopping a run cleanly: checkpoints within an epoch, and SIGTERM.

Within an epoch a run saves a checkpoint every ``compute.checkpoint_minutes``
(:func:`mid_epoch_checkpoints`, a Keras callback); a SIGTERM (a scheduler's time
limit, a preemption, scancel) asks for one more after the batch in progress and then
stops the run (:func:`stop_on_sigterm`, :class:`TrainingStopped`): the next attempt
resumes at that step (:mod:`smoothbench.train.checkpoint`).
"""

from __future__ import annotations

import contextlib
import time

from smoothbench.errors import SmoothbenchError
from smoothbench.train.checkpoint import CheckpointError


class TrainingStopped(SmoothbenchError, RuntimeError):
    """SIGTERM (a scheduler's time limit, a preemption, scancel) stopped the run after a checkpoint."""


def mid_epoch_checkpoints(
    model,
    save,
    every_seconds: float,
    steps_before: int,
    steps: int,
    metric_values,
    stop_requested,
):
    """A Keras callback: every ``every_seconds`` within an epoch (and at once when
    ``stop_requested()``) call ``save(steps_done, metric_values)`` after a batch; on a
    stop request it also stops fit. ``metric_values`` (from a checkpoint) are put back
    into the epoch's metrics when the epoch begins."""
    import keras

    class MidEpochCheckpoints(keras.callbacks.Callback):
        stopped_at = None

        def on_epoch_begin(self, epoch, logs=None):
            self.last = time.perf_counter()
            if metric_values:
                variables = model.metrics_variables
                if len(variables) != len(metric_values):
                    raise CheckpointError(
                        f"the checkpoint holds {len(metric_values)} metric values, the model has {len(variables)}; "
                        "delete it to start the run over"
                    )
                for variable, value in zip(variables, metric_values):
                    variable.assign(value)

        def on_train_batch_end(self, batch, logs=None):
            done = steps_before + batch + 1
            stop = stop_requested()
            if done >= steps or not (
                stop
                or (
                    every_seconds > 0
                    and time.perf_counter() - self.last >= every_seconds
                )
            ):
                return  # the epoch's end writes its own checkpoint
            if hasattr(model, "jax_state_sync"):
                model.jax_state_sync()  # JAX keeps the variables outside the model during fit
            save(
                done,
                [
                    keras.ops.convert_to_numpy(variable)
                    for variable in model.metrics_variables
                ],
            )
            self.last = time.perf_counter()
            if stop:
                self.stopped_at = done
                model.stop_training = True

    return MidEpochCheckpoints()


@contextlib.contextmanager
def stop_on_sigterm():
    """While the block runs, SIGTERM asks for a stop (see ``requested``) instead of
    killing the process: the run saves a checkpoint after the batch in progress."""
    import signal
    import threading

    requested = {"signal": None}

    def handler(number, frame):
        requested["signal"] = number

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield lambda: requested["signal"] is not None
    finally:
        signal.signal(signal.SIGTERM, previous)
