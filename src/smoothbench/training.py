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
SIGTERM - and started again resumes after its last finished epoch. The checkpoint
carries a fingerprint of the settings and of the prepared data's content: one left by
different settings or data is discarded, never resumed.

A finished run is first written whole to ``run_folder/.finished/`` (with the same
fingerprints), then the checkpoint is deleted, then the outputs are copied into
``run_folder``, ``metrics.json`` last. A job started again on a run whose
``.finished/`` matches its settings and data republishes those files in a second
instead of training: a kill between the last output and Snakemake's own bookkeeping
(which then deletes the "incomplete" outputs) costs nothing. Delete the run folder to
train it again on purpose.

The shuffle order of every epoch depends only on (seed, epoch) (:mod:`smoothbench.data`),
the initial weights and augmentation on the seed; with ``compute.deterministic`` the
same seed gives the same numbers on the same machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from smoothbench import acceleration, run_record, storage
from smoothbench.errors import SmoothbenchError
from smoothbench.progress import (
    EpochReporter,
    TensorBoardLog,
    epoch_label,
    report_status,
    run_eta,
)
from smoothbench.progress import keras_callback as progress_callback
from smoothbench.run_record import (
    C_MATRIX_FILE,
    CALIBRATION_KEYS,
    CHECKPOINT_FILE,
    CHECKPOINT_FOLDER,
    FINGERPRINT_FILE,
    FINISHED_FOLDER,
    HISTORY_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
    output_names,
    read_history,  # noqa: F401  (re-exported: smoothbench.training.read_history)
    write_history,
    write_metrics,
)
from smoothbench.shapes import padded_shape, padding_to
from smoothbench.study import RunSettings

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


def settings_fingerprint(settings: RunSettings) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def data_fingerprint(manifest: dict) -> str:
    """sha256 of what the prepared data is: the dataset and every array's sha256."""
    content = {"dataset": manifest.get("dataset"), "arrays": manifest.get("arrays")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _finished_record(run_folder: Path, fingerprints: dict) -> Path | None:
    """``run_folder/.finished`` when it holds this run's outputs for these fingerprints."""
    record = run_folder / FINISHED_FOLDER
    try:
        recorded = json.loads((record / FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if recorded == fingerprints else None


def _write_finished_record(
    run_folder: Path, fingerprints: dict, files: dict[str, Callable]
) -> Path:
    """Write every output (name -> writer(path)) into ``run_folder/.finished`` at once.

    The files are written into a staging folder that is renamed into place whole,
    fingerprint included: ``.finished`` is either absent or complete."""
    record = run_folder / FINISHED_FOLDER
    for stale in run_folder.glob(f"{FINISHED_FOLDER}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(
        tempfile.mkdtemp(dir=run_folder, prefix=f"{FINISHED_FOLDER}.staging-")
    )
    umask = os.umask(0)
    os.umask(umask)
    # mkdtemp creates 0700; honour the umask as the outputs do
    os.chmod(staging, 0o777 & ~umask)
    try:
        for name, write in files.items():
            write(staging / name)
        storage.write_json_atomic(staging / FINGERPRINT_FILE, fingerprints)
        if record.exists():
            shutil.rmtree(record)
        os.replace(staging, record)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def _publish(record: Path, run_folder: Path, names: list[str]) -> None:
    """Copy the finished files into ``run_folder``, each atomically, metrics.json last."""
    for name in names:
        with (
            open(record / name, "rb") as source,
            storage.atomic_file(run_folder / name, "wb") as target,
        ):
            shutil.copyfileobj(source, target)


def check_manifest(manifest: dict, settings: RunSettings | dict, folder: Path) -> None:
    """Refuse prepared data that is not the dataset, K or image shape the run expects."""
    settings = RunSettings.from_dict(settings)
    where = Path(folder) / storage.MANIFEST_NAME
    expected = {
        "dataset": settings.dataset,
        "num_classes": settings.num_classes,
        "image_shape": list(settings.image_shape),
    }
    for key, value in expected.items():
        if manifest.get(key) != value:
            raise storage.PreparedDataError(
                f"{where}: {key} is {manifest.get(key)!r}, but experiment {settings.experiment!r} expects {value!r}; "
                "the prepared data does not belong to this config - delete the folder and prepare again"
            )


def configure_backend(
    threads: int, deterministic: bool, grow_memory: bool = False
) -> str:
    """Thread pools and determinism of the Keras backend in use, and with
    ``grow_memory`` (several runs per GPU) TensorFlow's memory growth; returns the
    backend's name.

    Must run before the backend has built anything (a fresh process, as Snakemake's).
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # already initialised: keep its pools
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        if grow_memory:
            for gpu in tf.config.list_physical_devices("GPU"):
                with contextlib.suppress(RuntimeError):  # already initialised
                    tf.config.experimental.set_memory_growth(gpu, True)
        if deterministic:
            tf.config.experimental.enable_op_determinism()
    elif backend == "jax" and deterministic:
        os.environ.setdefault("XLA_FLAGS", "--xla_gpu_deterministic_ops=true")
    return backend


def _variables(model, optimizer) -> list:
    return list(model.variables) + list(optimizer.variables)


def save_checkpoint(
    path: Path, model, optimizer, state: dict, metric_values: list | None = None
) -> None:
    """Every model and optimizer variable plus ``state`` (JSON) in one .npz, replaced atomically.

    ``metric_values`` (mid-epoch checkpoints): the running totals of the epoch's training
    metrics, so that a resumed epoch reports the mean over all its batches."""
    import keras

    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        f"variable_{index:05d}": keras.ops.convert_to_numpy(variable)
        for index, variable in enumerate(_variables(model, optimizer))
    }
    for index, value in enumerate(metric_values or []):
        arrays[f"metric_{index:05d}"] = np.asarray(value)
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    with storage.atomic_file(path, "wb") as stream:
        np.savez(stream, **arrays)


def read_checkpoint_state(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return json.loads(archive["state"].tobytes().decode())
    except Exception as error:
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({error}); delete it to start the run over"
        ) from None


def restore_checkpoint(path: Path, model, optimizer) -> dict:
    """Load variables saved by :func:`save_checkpoint` into ``model`` and ``optimizer``; return the state."""
    variables = _variables(model, optimizer)
    try:
        with np.load(path, allow_pickle=False) as archive:
            state = json.loads(archive["state"].tobytes().decode())
            names = sorted(
                name for name in archive.files if name.startswith("variable_")
            )
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
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({error}); delete it to start the run over"
        ) from None
    return state


def read_checkpoint_metrics(path: Path) -> list[np.ndarray]:
    """The running metric totals a mid-epoch checkpoint holds (none at an epoch end)."""
    with np.load(path, allow_pickle=False) as archive:
        return [
            archive[name]
            for name in sorted(
                name for name in archive.files if name.startswith("metric_")
            )
        ]


class TrainingStopped(SmoothbenchError, RuntimeError):
    """SIGTERM (a scheduler's time limit, a preemption, scancel) stopped the run after a checkpoint."""


def _mid_epoch_checkpoints(
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
def _stop_on_sigterm():
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


def code_provenance() -> dict:
    """The smoothbench that runs: version, the folder it was imported from, and - in a
    git checkout - its commit and whether tracked files differ from it (dirty)."""
    from smoothbench import __version__

    package = Path(__file__).resolve().parent
    provenance = {
        "version": __version__,
        "source": str(package),
        "commit": None,
        "dirty": None,
    }
    try:
        commit = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if commit.returncode == 0:
            status = subprocess.run(
                [
                    "git",
                    "-C",
                    str(package),
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            provenance["commit"] = commit.stdout.strip()
            provenance["dirty"] = (
                bool(status.stdout.strip()) if status.returncode == 0 else None
            )
    except (OSError, subprocess.TimeoutExpired):
        pass  # no git: version and source still say which code ran
    return provenance


def _software() -> dict:
    import keras

    versions = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    versions["smoothbench"] = code_provenance()
    backend = keras.backend.backend()
    # each backend's package has its name
    if backend in acceleration.BACKENDS and backend in sys.modules:
        versions[backend] = getattr(sys.modules[backend], "__version__", "?")
    return versions


def build_model(settings: RunSettings | dict, mean: np.ndarray):
    """(classifier, training model) for ``settings``; the training model takes uint8 images."""
    settings = RunSettings.from_dict(settings)
    from smoothbench.models import build_resnet, build_training_model

    image_shape = tuple(settings.image_shape)
    classifier = build_resnet(
        settings.model,
        settings.depth,
        padded_shape(image_shape, settings.min_image_size),
        settings.num_classes,
        settings.pooling,
    )
    model = build_training_model(
        classifier,
        image_shape,
        mean,
        padding=padding_to(image_shape, settings.min_image_size),
        subtract_mean=settings.mean_subtraction,
        shift=settings.augmentation["shift"],
        horizontal_flip=settings.augmentation["horizontal_flip"],
    )
    return classifier, model


def describe_method(settings: RunSettings | dict) -> str:
    """``gamma=0.9``, ``alpha=0.1``, ``lspp alpha=0.1``: a run's method as logs print it."""
    settings = RunSettings.from_dict(settings)
    method, value = settings.method, settings.value
    return (
        f"{method}={value}"
        if method in ("gamma", "alpha")
        else f"{method} alpha={value}"
    )


def compile_for_method(
    model, settings: RunSettings | dict, optimizer, jit_compile="auto"
):
    """``model`` compiled with the loss of ``settings.method``; Label Smoothing++ wraps it
    in :class:`smoothbench.losses.LabelSmoothingPlusPlusModel` (its C is a weight of the
    wrapper). ``jit_compile`` is Keras' (:mod:`smoothbench.acceleration` resolves it).
    Returns the model to train; under ``mixed_float16`` its ``optimizer`` is Keras' loss
    scale wrapper around ``optimizer``."""
    settings = RunSettings.from_dict(settings)
    import keras

    from smoothbench.losses import FixedTargetCrossEntropy, LabelSmoothingPlusPlusModel

    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    if settings.method == "lspp":
        from smoothbench.models import L2_WEIGHT

        model = LabelSmoothingPlusPlusModel(
            model,
            settings.num_classes,
            settings.value,
            # C's weight decay is the convolutions' l2 (assumption #20)
            matrix_l2=L2_WEIGHT if settings.weight_decay_on_c else 0.0,
            name="label_smoothing_plus_plus",
        )
        model.compile(optimizer=optimizer, metrics=[accuracy], jit_compile=jit_compile)
    else:
        model.compile(
            optimizer=optimizer,
            loss=FixedTargetCrossEntropy(settings.method, settings.value),
            metrics=[accuracy],
            jit_compile=jit_compile,
        )
    return model


def validation_loss(settings: RunSettings | dict, model, logits, labels) -> float:
    """The method's loss (without weight decay) of ``logits`` against ``labels``."""
    settings = RunSettings.from_dict(settings)
    import keras

    from smoothbench import losses

    if settings.method == "lspp":
        network, matrix = losses.label_smoothing_plus_plus_terms(
            labels, logits, model.target_matrix.logits, settings.value
        )
        values = (network + matrix) / 2.0
    else:
        targets = losses.fixed_targets(
            labels, settings.num_classes, settings.method, settings.value
        )
        values = losses.target_cross_entropy(targets, logits)
    return float(np.mean(keras.ops.convert_to_numpy(values)))


def train(
    settings: RunSettings | dict,
    compute: dict,
    prepared_folder: Path | str,
    run_folder: Path | str,
    log: Callable[[str], None] = say,
) -> dict:
    """Train one run (see the module docstring); return its metrics.

    The steps: republish the run when it already finished (:func:`republish_finished`);
    else open the prepared data, set up the backend and the model
    (:func:`set_up_session`), resume from the checkpoint (:func:`resume`), train the
    epochs left (:func:`train_epochs`) and write the outputs (:func:`finish`).
    """
    settings = RunSettings.from_dict(settings)
    prepared_folder, run_folder = Path(prepared_folder), Path(run_folder)
    started = time.perf_counter()
    fingerprints = {
        "format": CHECKPOINT_FORMAT,
        "settings": settings_fingerprint(settings.as_dict()),
        "data": data_fingerprint(storage.read_manifest(prepared_folder)),
    }
    metrics = republish_finished(settings, run_folder, fingerprints, log)
    if metrics is not None:
        return metrics
    report_status(run_folder, "starting", log, epochs=settings.epochs)
    # status.json says what happens (smoothbench-status reads it); an error is recorded.
    try:
        manifest, arrays = storage.open_prepared(
            prepared_folder, verify_checksums=compute["verify_checksums"]
        )
        check_manifest(manifest, settings, prepared_folder)
        checkpoint = run_folder / CHECKPOINT_FOLDER / CHECKPOINT_FILE
        session = set_up_session(
            settings,
            compute,
            np.asarray(arrays["mean"]),
            log,
            earlier_attempts=_earlier_attempts(checkpoint, fingerprints),
            training_images=manifest["splits"]["train"]["count"] * settings.epochs,
        )
        # A job killed while writing leaves a temporary file; one job runs per folder at a time.
        for stale in [*run_folder.glob(".*.tmp"), *checkpoint.parent.glob(".*.tmp")]:
            stale.unlink(missing_ok=True)
        progress = resume(checkpoint, session, fingerprints, settings, log)
        progress.attempts.append(attempt_record(progress, session))
        train_epochs(settings, compute, session, arrays, checkpoint, progress, log)
    except TrainingStopped as stop:
        report_status(run_folder, "stopped", log, reason=str(stop))
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
        settings, session, progress, manifest, prepared_folder, run_folder, started, log
    )


def republish_finished(
    settings: RunSettings, run_folder: Path, fingerprints: dict, log
) -> dict | None:
    """The metrics of a run whose ``.finished/`` record matches these fingerprints,
    after publishing its files again (nothing is trained); None otherwise."""
    record = _finished_record(run_folder, fingerprints)
    if record is None:
        return None
    names = output_names(settings.method)
    shutil.rmtree(run_folder / CHECKPOINT_FOLDER, ignore_errors=True)
    _publish(record, run_folder, names)
    metrics = json.loads((run_folder / METRICS_FILE).read_text())
    log(
        f"already finished: republished {', '.join(names)} from {record} "
        f"(same settings and data; best val_accuracy {metrics['best_val_accuracy']:.4f}); nothing retrained"
    )
    return metrics


def _earlier_attempts(checkpoint: Path, fingerprints: dict) -> list[dict]:
    """The attempts recorded in a checkpoint that this job will resume ([] otherwise)."""
    if not checkpoint.exists():
        return []
    try:
        state = read_checkpoint_state(checkpoint)
    except CheckpointError:
        return []  # resume() says why
    if state.get("fingerprint") != fingerprints["settings"]:
        return []
    return state.get("attempts", [])


@dataclasses.dataclass
class Session:
    """One attempt's backend, compute choices (and why) and model."""

    backend: str
    precision: str
    precision_reason: str
    jit_compile: bool
    jit_reason: str
    deterministic: bool
    tuned: (
        dict | None
    )  # the measured choice: device, choice, record (smoothbench.tuning)
    device: str
    classifier: Any
    model: Any  # what fit() trains (Label Smoothing++ wraps the network)
    optimizer: Any  # the Adam whose variables the checkpoint holds
    parameters: int


def set_up_session(
    settings: RunSettings,
    compute: dict,
    mean: np.ndarray,
    log=say,
    earlier_attempts: list[dict] | None = None,
    training_images: int | None = None,
) -> Session:
    """Choose the backend, threads, precision and XLA (measured, where they are auto:
    :mod:`smoothbench.tuning`), check that a job given GPUs sees them
    (``compute["gpus_given"]``, set by the job's adapter), seed Keras, and build and
    compile the model with its optimizer. ``training_images`` (training examples x
    epochs) decides whether compute.tune auto measures."""
    from smoothbench import tuning

    open_keys = tuning.open_keys(compute)
    compute, tuned = tuning.choose(
        settings, compute, earlier_attempts or [], log, training_images
    )
    chosen = acceleration.select_backend(compute.get("backend", "auto"))
    deterministic = compute.get("deterministic", "auto")
    if deterministic == "auto":  # compute.tune false: the fixed rule
        deterministic = not (
            chosen == "tensorflow" and compute.get("jit_compile") is True
        )
    gpus_given = compute.get("gpus_given")
    runs_per_gpu = compute.get("runs_per_gpu", 1)
    acceleration.prepare_environment(chosen, gpus_given, runs_per_gpu)
    backend = configure_backend(
        compute["threads_per_job"],
        deterministic,
        grow_memory=runs_per_gpu > 1,
    )

    from smoothbench.models import count_parameters

    accelerators = acceleration.visible_accelerators()
    # No silent CPU: a job given GPUs that its backend cannot see stops here.
    warning = acceleration.check_gpus_visible(
        gpus_given, accelerators, backend, compute.get("cpu_fallback", False)
    )
    if warning:
        log(warning)
    capabilities = acceleration.gpu_compute_capabilities(accelerators)
    precision, precision_reason = acceleration.resolve_precision(
        compute.get("precision", "auto"), capabilities
    )
    jit_compile, jit_reason = acceleration.resolve_jit_compile(
        compute.get("jit_compile", "auto"),
        backend,
        bool(capabilities),
        deterministic,
    )
    if tuned:  # what was auto is measured, not the fixed rule
        if "precision" in open_keys:
            precision_reason = "auto: measured"
        if "jit_compile" in open_keys:
            jit_reason = "auto: measured"
    classifier, model, optimizer = build_for_training(
        settings, mean, precision, jit_compile
    )
    return Session(
        backend=backend,
        precision=precision,
        precision_reason=precision_reason,
        jit_compile=jit_compile,
        jit_reason=jit_reason,
        deterministic=deterministic,
        tuned=tuned,
        device=acceleration.describe_accelerators(accelerators),
        classifier=classifier,
        model=model,
        optimizer=optimizer,
        parameters=count_parameters(classifier),
    )


def build_for_training(settings: RunSettings, mean, precision: str, jit_compile: bool):
    """(classifier, model, optimizer) of a run, seeded, compiled and with the
    optimizer's variables built, as every training job (and every measurement of
    :mod:`smoothbench.tuning`) starts."""
    import keras

    acceleration.apply_precision(precision)  # before any layer is built
    keras.utils.set_random_seed(settings.seed)
    classifier, model = build_model(settings, mean)
    optimizer = keras.optimizers.Adam(learning_rate=settings.learning_rate)
    model = compile_for_method(model, settings, optimizer, jit_compile=jit_compile)
    # Under mixed_float16 model.optimizer wraps `optimizer` in a loss scale; the checkpoint
    # holds `optimizer`'s variables only, so a run may resume under another precision.
    model.optimizer.build(model.trainable_variables)
    return classifier, model, optimizer


@dataclasses.dataclass
class Progress:
    """What a checkpoint holds besides the variables: the epochs done (history rows),
    the attempts, the calibration so far, and where a mid-epoch checkpoint stopped."""

    fingerprints: dict
    rows: list = dataclasses.field(default_factory=list)
    attempts: list = dataclasses.field(default_factory=list)
    calibration: dict = dataclasses.field(
        default_factory=lambda: {"best_epoch": None, "final_epoch": None}
    )
    # a mid-epoch checkpoint's epoch, steps done, seconds and metric totals
    in_progress: dict | None = None

    def state(self, epoch_in_progress: dict | None = None) -> dict:
        """The checkpoint's JSON state."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprints["settings"],
            "data_fingerprint": self.fingerprints["data"],
            "history": self.rows,
            "attempts": self.attempts,
            "calibration": self.calibration,
        }
        if epoch_in_progress is not None:
            state["epoch_in_progress"] = epoch_in_progress
        return state


def resume(
    checkpoint: Path, session: Session, fingerprints: dict, settings: RunSettings, log
) -> Progress:
    """The progress of the checkpoint, its variables restored into the session's model
    and optimizer; a fresh Progress when there is none, or when it was written with
    other settings or other prepared data (it is deleted then)."""
    progress = Progress(fingerprints)
    if not checkpoint.exists():
        return progress
    state = read_checkpoint_state(checkpoint)
    if (
        state.get("fingerprint") != fingerprints["settings"]
        or state.get("format") != CHECKPOINT_FORMAT
        or state.get("data_fingerprint", fingerprints["data"]) != fingerprints["data"]
    ):
        log(
            f"discarding {checkpoint}: it was written with other settings or other prepared data"
        )
        shutil.rmtree(checkpoint.parent)
        return progress
    state = restore_checkpoint(checkpoint, session.model, session.optimizer)
    progress.rows, progress.attempts = state["history"], state["attempts"]
    progress.calibration = state["calibration"]
    progress.in_progress = in_progress = state.get("epoch_in_progress")
    within = ""
    if in_progress:
        in_progress["metric_values"] = read_checkpoint_metrics(checkpoint)
        within = f", and {in_progress['steps_done']} of {in_progress['steps']} steps of epoch {in_progress['epoch']}"
    log(
        f"resuming from {checkpoint}: {len(progress.rows)} of {settings.epochs} epochs done{within}"
    )
    return progress


def attempt_record(progress: Progress, session: Session) -> dict:
    """Where and how this attempt runs, for metrics.json's ``attempts``."""
    in_progress = progress.in_progress
    return {
        "started_at_epoch": len(progress.rows),
        "started_at_step": in_progress["steps_done"] if in_progress else 0,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "backend": session.backend,
        "precision": session.precision,
        "jit_compile": session.jit_compile,
        "deterministic": session.deterministic,
        "tuned": session.tuned,
    }


def train_epochs(
    settings: RunSettings,
    compute: dict,
    session: Session,
    arrays: dict,
    checkpoint: Path,
    progress: Progress,
    log,
) -> None:
    """Train the epochs left, a checkpoint at each epoch's end (and within an epoch
    every ``compute.checkpoint_minutes``, and on SIGTERM)."""
    import keras

    from smoothbench.data import ArrayBatches

    start_epoch = len(progress.rows)
    run_folder = checkpoint.parent.parent
    validation = ArrayBatches(
        arrays["validation_images"],
        arrays["validation_labels"],
        compute["evaluation_batch_size"],
    )
    log(
        f"{settings.experiment} {describe_method(settings)} seed={settings.seed}: {settings.model_name} "
        f"({session.parameters:,} parameters) on {session.device} with Keras {keras.__version__} ({session.backend}); "
        f"{len(arrays['train_labels'])} training / {len(validation.labels)} validation images; "
        f"epochs {start_epoch}..{settings.epochs - 1} to train (epochs count from 0, as in history.csv)"
    )
    log(
        f"precision {session.precision} ({session.precision_reason}); "
        f"XLA {'on' if session.jit_compile else 'off'} ({session.jit_reason}); "
        f"op determinism {'on' if session.deterministic else 'off'}"
    )
    if session.tuned:
        log(f"compute settings {session.tuned['reason']}")
    every_seconds = 60.0 * compute.get("checkpoint_minutes", 10)
    tensorboard = (
        TensorBoardLog(run_folder / run_record.TENSORBOARD_FOLDER, session.model)
        if compute.get("tensorboard", False)
        else None
    )
    with _stop_on_sigterm() as stop_requested:
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
                    compute.get("progress_seconds", 60),
                )
                if tensorboard is not None:
                    tensorboard.epoch_end(row)
                _report_epoch_end(
                    run_folder,
                    settings,
                    progress,
                    compute.get("progress_seconds", 60),
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

    from smoothbench.data import ArrayBatches, epoch_order

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
    checkpoints = _mid_epoch_checkpoints(
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
    from smoothbench.calibration import calibration_summary

    logits = model.predict(validation, verbose=0)
    if not np.all(np.isfinite(logits)):
        return None
    summary = calibration_summary(logits, validation.labels)
    logs["val_loss"] = validation_loss(settings, model, logits, validation.labels)
    logs.update({f"val_{key}": summary[key] for key in CALIBRATION_KEYS})
    return summary


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
    session: Session,
    progress: Progress,
    manifest: dict,
    prepared_folder: Path,
    run_folder: Path,
    started: float,
    log,
) -> dict:
    """Write the outputs whole into ``.finished/``, delete the checkpoint, publish the
    outputs (metrics.json last); return the metrics."""
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
    files = {HISTORY_FILE: lambda path: write_history(path, rows)}
    if settings.method == "lspp":
        matrix = keras.ops.convert_to_numpy(
            session.model.target_matrix.matrix()
        ).astype(np.float32)

        def write_matrix(path):
            with storage.atomic_file(path, "wb") as stream:
                np.save(stream, matrix)

        files[C_MATRIX_FILE] = write_matrix
        metrics["c_matrix_file"] = C_MATRIX_FILE
    files[METRICS_FILE] = lambda path: write_metrics(path, metrics)
    # Finished whole in .finished/ first; from here a kill at any instant costs nothing.
    record = _write_finished_record(run_folder, progress.fingerprints, files)
    shutil.rmtree(run_folder / CHECKPOINT_FOLDER, ignore_errors=True)
    _publish(record, run_folder, output_names(settings.method))
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
        "software": _software(),
        "prepared_data": {
            "folder": str(prepared_folder),
            "manifest_sha256": storage.sha256_of_file(
                Path(prepared_folder) / storage.MANIFEST_NAME
            ),
            "train_examples": manifest["splits"]["train"]["count"],
            "validation_examples": manifest["splits"]["validation"]["count"],
            "validation_split": manifest["splits"]["validation"]["split"],
            "mock_data": manifest.get("mock_data", False),
        },
        "settings": settings.as_dict(),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
