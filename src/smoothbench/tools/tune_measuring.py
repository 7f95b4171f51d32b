"""The measuring processes of ``smoothbench-tune`` (:mod:`smoothbench.tools.tune_candidates`): each
runs as ``python -m smoothbench.tools.tune_measuring MODE JOB`` in a process of its own, since
the Keras backend is chosen once per process, and prints one result line per candidate.

- ``--measure``: for each candidate setting, the first half of the resume check (two
  steps, the variables saved as a checkpoint saves them, two more steps, a hash of the
  variables), then the images/s of training on synthetic images of the run's shape;
- ``--resume-check``: a fresh process restores the saved variables and trains the same
  two steps; its hash must equal the first process's to the last bit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

from smoothbench.compute import backends, onednn
from smoothbench.settings import COMPUTATION_KEYS, RunSettings
from smoothbench.train import checkpoint, network

CHECK_STEPS = 2  # steps before and after the saved state of the resume check
# batches of synthetic images: an epoch of the timing, and the same images in both
# halves of the resume check
SYNTHETIC_BATCHES = 64
RESULT_PREFIX = "TUNING "  # a child process's result line


@dataclasses.dataclass(frozen=True)
class Choice:
    """One way to compute a training step."""

    backend: str
    precision: str
    jit_compile: bool
    deterministic: bool

    def label(self) -> str:
        return (
            f"{self.backend} {self.precision} XLA {'on' if self.jit_compile else 'off'}"
            f"{', deterministic' if self.deterministic else ''}"
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Choice:
        return cls(**{key: data[key] for key in COMPUTATION_KEYS})


REFERENCE = Choice("tensorflow", "float32", False, True)


def _variables_hash(model, optimizer) -> str:
    import keras
    import numpy as np

    digest = hashlib.sha256()
    for variable in list(model.variables) + list(optimizer.variables):
        digest.update(
            np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes()
        )
    return digest.hexdigest()


def _build(settings, choice: Choice):
    """(model, optimizer) as a training job builds them under ``choice``."""
    import numpy as np

    mean = np.full(tuple(settings.image_shape), 0.5, dtype=np.float32)
    _, model, optimizer = network.build_for_training(
        settings, mean, choice.precision, choice.jit_compile
    )
    return model, optimizer


def _synthetic(settings, batches: int):
    import numpy as np

    rng = np.random.default_rng(0)
    count = settings.batch_size * batches
    images = rng.integers(0, 256, size=(count, *settings.image_shape), dtype=np.uint8)
    labels = rng.integers(0, settings.num_classes, size=count).astype(np.int32)
    return images, labels


def _fit_steps(model, images, labels, batch_size, first: int, steps: int):
    """Train batches first..first+steps-1 of (images, labels), in order, fed as a
    training job feeds them (:class:`smoothbench.data.batches.ArrayBatches`)."""

    from smoothbench.data.batches import (
        ArrayBatches,
    )  # imports Keras: after the backend is chosen

    start, stop = first * batch_size, (first + steps) * batch_size
    model.fit(
        ArrayBatches(images[start:stop], labels[start:stop], batch_size),
        epochs=1,
        shuffle=False,
        verbose=0,
    )


def _start_child(job: dict):

    settings = RunSettings.from_dict(job["settings"])
    choices = [Choice.from_dict(choice) for choice in job["choices"]]
    backend = backends.select_backend(choices[0].backend)
    # oneDNN as a training job of the study would set it (compute.onednn's rule)
    enabled, _ = onednn.resolve_onednn(job["compute"].get("onednn", "auto"), backend)
    onednn.set_environment(enabled, backend)
    backends.prepare_environment(backend, job["compute"].get("gpus_given"))
    backends.configure_backend(
        job["compute"]["threads_per_job"], choices[0].deterministic
    )
    return settings, choices


def _set_determinism(choice: Choice) -> None:
    """TensorFlow's op determinism for the next model built in this process."""
    if choice.backend != "tensorflow":
        return
    from tensorflow.python.framework import config

    if choice.deterministic:
        config.enable_op_determinism()
    else:
        config.disable_op_determinism()


def child_measure(job: dict) -> None:
    """Each choice of ``job``: the resume check's first half, then images/s."""
    settings, choices = _start_child(job)
    import keras

    from smoothbench.data.batches import (
        ArrayBatches,
    )  # imports Keras: after the backend is chosen

    device = backends.describe_accelerators(backends.visible_accelerators())
    batch = settings.batch_size
    images, labels = _synthetic(settings, SYNTHETIC_BATCHES)
    for index, choice in enumerate(choices):
        try:
            _set_determinism(choice)
            model, optimizer = _build(settings, choice)
            began = time.perf_counter()
            _fit_steps(model, images, labels, batch, 0, CHECK_STEPS)
            first_step = time.perf_counter() - began
            state_file = (
                Path(job["scratch"]) / f"{choice.backend}-{index}-{os.getpid()}.npz"
            )
            checkpoint.save_checkpoint(state_file, model, optimizer, {"tuning": True})
            _fit_steps(model, images, labels, batch, CHECK_STEPS, CHECK_STEPS)
            digest = _variables_hash(model, optimizer)
            ends: list[float] = []

            class Clock(keras.callbacks.Callback):
                def on_train_batch_end(self, step, logs=None):
                    float(logs["loss"])  # wait for the step (dispatch is asynchronous)
                    ends.append(time.perf_counter())
                    if len(ends) > 5 and ends[-1] - ends[1] >= job["seconds"]:
                        self.model.stop_training = True

            model.fit(
                ArrayBatches(images, labels, batch),  # as a training job feeds it
                epochs=1000,
                shuffle=False,
                verbose=0,
                callbacks=[Clock()],
            )
            steps = [later - earlier for earlier, later in zip(ends[1:], ends[2:])]
            step = statistics.median(steps)
            print(
                RESULT_PREFIX
                + json.dumps(
                    choice.as_dict()
                    | {
                        "images_per_second": round(batch / step, 2),
                        "timed_steps": len(steps),
                        "first_step_seconds": round(first_step / CHECK_STEPS, 2),
                        "device": device,
                        "hash": digest,
                        "state_file": str(state_file),
                    }
                ),
                flush=True,
            )
        except (
            Exception
        ) as error:  # one candidate that cannot run is not the job's failure
            print(f"{choice.label()}: {type(error).__name__}: {error}", file=sys.stderr)
        finally:
            keras.backend.clear_session()


def child_resume_check(job: dict) -> None:
    """Restore the saved state into a fresh model and train the same steps again."""
    settings, choices = _start_child(job)

    choice = choices[0]
    model, optimizer = _build(settings, choice)
    checkpoint.restore_checkpoint(Path(job["state"]), model, optimizer)
    images, labels = _synthetic(settings, SYNTHETIC_BATCHES)
    _fit_steps(model, images, labels, settings.batch_size, CHECK_STEPS, CHECK_STEPS)
    print(
        RESULT_PREFIX
        + json.dumps(choice.as_dict() | {"hash": _variables_hash(model, optimizer)}),
        flush=True,
    )


def main(argv=None) -> int:
    """A measuring process (``python -m smoothbench.tools.tune_measuring --measure JOB``)."""
    argv = sys.argv[1:] if argv is None else argv
    mode, job = argv[0], json.loads(argv[1])
    {"--measure": child_measure, "--resume-check": child_resume_check}[mode](job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
