"""A run's checkpoint and its ``.finished/`` record: what they hold and how they are
written, read and resumed.

While a run trains, ``run_folder/checkpoint/`` holds ``state.npz`` (every model and
optimizer variable, the epoch and the history so far), rewritten atomically at each
epoch end, and ``progress.csv``. A job killed at any moment - SIGKILL, a scheduler's
SIGTERM - and started again resumes after its last finished epoch. The checkpoint
carries a fingerprint of the settings and of the prepared data's content: one left by
different settings or data is never resumed; it is kept, with a finished record of
other settings, in the run folder's ``.versions/`` (:mod:`smoothbench.train.versions`).

A finished run is first written whole to ``run_folder/.finished/`` (with the same
fingerprints), then the checkpoint is deleted, then the outputs are copied into
``run_folder``, ``metrics.json`` last. A job started again on a run whose
``.finished/`` matches its settings and data republishes those files in a second
instead of training: a kill between the last output and Snakemake's own bookkeeping
(which then deletes the "incomplete" outputs) costs nothing. To train it again on
purpose, retire it (``smoothbench-retire``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from smoothbench import files
from smoothbench.errors import SmoothbenchError
from smoothbench.run_record import (
    CHECKPOINT_FOLDER,
    FINGERPRINT_FILE,
    FINISHED_FOLDER,
    METRICS_FILE,
    TRAIN_LOG_FILE,
    output_names,
)
from smoothbench.settings import RunSettings

CHECKPOINT_FORMAT = 2


class CheckpointError(SmoothbenchError, RuntimeError):
    """A checkpoint that cannot be resumed."""


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """sha256 of a run's settings: the dict of :meth:`RunSettings.as_dict` (a job's
    params), not a RunSettings, which json.dumps cannot write."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def data_fingerprint(manifest: dict) -> str:
    """sha256 of what the prepared data is: the dataset and every array's sha256."""
    content = {"dataset": manifest.get("dataset"), "arrays": manifest.get("arrays")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def finished_record(run_folder: Path, fingerprints: dict) -> Path | None:
    """``run_folder/.finished`` when it holds this run's outputs for these fingerprints."""
    record = run_folder / FINISHED_FOLDER
    try:
        recorded = json.loads((record / FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if recorded == fingerprints else None


def write_finished_record(
    run_folder: Path, fingerprints: dict, writers: dict[str, Callable]
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
        for name, write in writers.items():
            write(staging / name)
        files.write_json_atomic(staging / FINGERPRINT_FILE, fingerprints)
        if record.exists():
            shutil.rmtree(record)
        os.replace(staging, record)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def publish(record: Path, run_folder: Path, names: list[str]) -> None:
    """Copy the finished files into ``run_folder``, each atomically, metrics.json last."""
    for name in names:
        with (
            open(record / name, "rb") as source,
            files.atomic_file(run_folder / name, "wb") as target,
        ):
            shutil.copyfileobj(source, target)


def _variables(model, optimizer) -> list:
    return list(model.variables) + list(optimizer.variables)


def loss_scale_variables(model, optimizer) -> list:
    """The variables of the optimizer ``model`` trains with beyond ``optimizer``'s own:
    under mixed_float16, Keras' loss scale wrapper (its dynamic scale, step counter,
    iterations). A resumed run restores them too, so it goes on exactly as the
    uninterrupted run does; none under the other precisions."""
    outer = getattr(model, "optimizer", None)
    if outer is None or outer is optimizer:
        return []
    inner = {id(variable) for variable in optimizer.variables}
    return [variable for variable in outer.variables if id(variable) not in inner]


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
    for index, variable in enumerate(loss_scale_variables(model, optimizer)):
        arrays[f"loss_scale_{index:05d}"] = keras.ops.convert_to_numpy(variable)
    for index, value in enumerate(metric_values or []):
        arrays[f"metric_{index:05d}"] = np.asarray(value)
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    with files.atomic_file(path, "wb") as stream:
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
    """Load variables saved by :func:`save_checkpoint` into ``model`` and ``optimizer``
    (and the loss scale's, where the checkpoint has them: one written before they were
    saved resumes with a fresh loss scale, as before); return the state."""
    variables = _variables(model, optimizer)
    loss_scale = loss_scale_variables(model, optimizer)
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
            saved = sorted(
                name for name in archive.files if name.startswith("loss_scale_")
            )
            if saved and len(saved) != len(loss_scale):
                raise CheckpointError(
                    f"{path}: holds {len(saved)} loss scale variables, the optimizer has "
                    f"{len(loss_scale)}; it was trained under another precision"
                )
            for name, variable in zip(saved, loss_scale):
                variable.assign(archive[name])
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


def belongs_to(state: dict, fingerprints: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's state was written by this run: this checkpoint format,
    these settings and this prepared data (a checkpoint of before the data fingerprint
    was recorded counts as this data's)."""
    return (
        state.get("fingerprint") == fingerprints["settings"]
        and state.get("format") == CHECKPOINT_FORMAT
        and state.get("data_fingerprint", fingerprints["data"]) == fingerprints["data"]
    )


def resume(
    checkpoint: Path, session, fingerprints: dict, settings: RunSettings, log
) -> Progress:
    """The progress of the checkpoint, its variables restored into the session's model
    and optimizer (``session``: a :class:`smoothbench.train.session.Session`); a fresh
    Progress when there is none, or when it was written with other settings or other
    prepared data (it is deleted then)."""
    progress = Progress(fingerprints)
    if not checkpoint.exists():
        return progress
    state = read_checkpoint_state(checkpoint)
    if not belongs_to(state, fingerprints):
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


def republish_finished(
    settings: RunSettings, run_folder: Path, fingerprints: dict, log
) -> dict | None:
    """The metrics of a run whose ``.finished/`` record matches these fingerprints,
    after publishing its files again (nothing is trained); None otherwise."""
    record = finished_record(run_folder, fingerprints)
    if record is None:
        return None
    names = output_names(settings.method)
    shutil.rmtree(run_folder / CHECKPOINT_FOLDER, ignore_errors=True)
    publish(record, run_folder, names)
    metrics = json.loads((run_folder / METRICS_FILE).read_text())
    kept_log = record / TRAIN_LOG_FILE
    log(
        f"already finished: republished {', '.join(names)} from {record} "
        f"(same settings and data; best val_accuracy {metrics['best_val_accuracy']:.4f}); nothing retrained"
        + (f"; its training log: {kept_log}" if kept_log.exists() else "")
    )
    return metrics
