"""One attempt's session: the computation it runs under, decided from its config and
device (:mod:`smoothbench.compute.decisions`) and reconciled with what the run's checkpoint
recorded, the backend started with it, and the model built and compiled.

:func:`set_up_session` is the training job's one step between reading the prepared data
and resuming the checkpoint (:mod:`smoothbench.train.loop`); :func:`attempt_record` is
what the attempt records in the run's ``attempts``: where it ran, its computation
(:data:`smoothbench.settings.ROUNDING_KEYS`), its device, ``XLA_FLAGS``, and its code
and library versions (:func:`smoothbench.compute.software.attempt_provenance`), so that a run
whose attempts differ says so (:mod:`smoothbench.results.provenance`).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from smoothbench.compute import backends, decisions, onednn, software
from smoothbench.compute.decisions import Computation
from smoothbench.settings import ComputeSettings, RunSettings
from smoothbench.train.checkpoint import (
    CheckpointError,
    Progress,
    belongs_to,
    read_checkpoint_state,
)
from smoothbench.train.network import build_for_training, describe_method

# What the backend reads when it starts, so settled (and reconciled with the run's
# checkpoint) before Keras is imported; the precision and XLA wait for the GPUs it sees.
EARLY_KEYS = ("backend", "deterministic", "onednn")


def earlier_attempts(checkpoint: Path, fingerprints: dict) -> list[dict]:
    """The attempts recorded in a checkpoint that this job will resume ([] otherwise)."""
    if not checkpoint.exists():
        return []
    try:
        state = read_checkpoint_state(checkpoint)
    except CheckpointError:
        return []  # resume() says why
    if not belongs_to(state, fingerprints):
        return []  # resume() discards it
    return state.get("attempts", [])


@dataclasses.dataclass
class Session:
    """One attempt's computation (and why each value), device and model."""

    computation: Computation
    device: str
    classifier: Any
    model: Any  # what fit() trains (Label Smoothing++ wraps the network)
    optimizer: Any  # the Adam whose variables the checkpoint holds
    parameters: int
    gpu: bool = False  # whether the backend computes on GPUs (CUDA versions recorded)

    @property
    def backend(self) -> str:
        return self.computation.backend

    @property
    def precision(self) -> str:
        return self.computation.precision

    @property
    def jit_compile(self) -> bool:
        return self.computation.jit_compile

    @property
    def deterministic(self) -> bool:
        return self.computation.deterministic


def set_up_session(
    settings: RunSettings,
    compute: ComputeSettings,
    mean: np.ndarray,
    log: Callable[[str], None] = print,
    recorded: dict | None = None,
) -> Session:
    """Decide the computation from the config and the device alone
    (:func:`smoothbench.compute.decisions.decide`; ``recorded``: what the run's checkpoint
    was trained under, which a resumed run keeps or stops on), start the backend with
    its threads, check that a job given GPUs sees them (``compute.gpus_given``, set by
    the job's adapter), seed Keras, and build and compile the model with its optimizer."""
    run = f"{settings.experiment} {describe_method(settings)} seed={settings.seed}"
    # The backend, op determinism and oneDNN are settled before Keras is imported ...
    early = decisions.reconcile(
        decisions.decide(compute),
        recorded,
        compute,
        run,
        keys=EARLY_KEYS,
    )
    backends.select_backend(early.backend)
    onednn.set_environment(early.onednn, early.backend)
    backends.prepare_environment(
        early.backend, compute.gpus_given, compute.runs_per_gpu
    )
    # XLA_FLAGS say what the attempt records (a user's contrary flag is overwritten)
    note = backends.agree_xla_determinism(early.deterministic, early.backend)
    if note:
        log(note)
    backends.configure_backend(
        compute.threads_per_job,
        early.deterministic,
        grow_memory=compute.runs_per_gpu > 1,
    )
    onednn.check_tensorflow_agrees(early.onednn, early.backend)
    accelerators = backends.visible_accelerators()
    # No silent CPU: a job given GPUs that its backend cannot see stops here.
    warning = backends.check_gpus_visible(
        compute.gpus_given, accelerators, early.backend, compute.cpu_fallback
    )
    if warning:
        log(warning)
    # ... the precision and XLA once the backend tells what GPUs it sees.
    pinned = dataclasses.replace(
        compute,
        backend=early.backend,
        deterministic=early.deterministic,
        onednn=early.onednn,
    )
    capabilities = backends.gpu_compute_capabilities(accelerators)
    decided = decisions.decide(pinned, capabilities)
    decided = dataclasses.replace(
        decided,
        reasons=tuple(
            (key, early.reason(key) if key in EARLY_KEYS else why)
            for key, why in decided.reasons
        ),
    )
    # a resumed run keeps its recorded values of the keys left to auto (any GPU kind
    # that supports them), else stops here
    chosen = decisions.reconcile(
        decided, recorded, compute, run, capabilities=capabilities
    )
    backends.set_tf32(chosen.tf32)
    from smoothbench.models.resnet import (
        count_parameters,
    )  # imports Keras: after the backend is chosen

    classifier, model, optimizer = build_for_training(
        settings,
        mean,
        chosen.precision,
        chosen.jit_compile,
        compute.steps_per_execution,
    )
    return Session(
        computation=chosen,
        device=backends.describe_accelerators(accelerators),
        classifier=classifier,
        model=model,
        optimizer=optimizer,
        parameters=count_parameters(classifier),
        gpu=bool(capabilities),
    )


def attempt_record(progress: Progress, session: Session) -> dict:
    """Where and how this attempt runs, for metrics.json's ``attempts``: when and on
    which host and job, its computation (the :data:`ROUNDING_KEYS`), its ``device``,
    the ``XLA_FLAGS`` it ran with, its code (``code_version``, ``code_commit``,
    ``code_dirty``) and library ``versions``. An attempt written before a key existed
    lacks it: :data:`smoothbench.compute.decisions.UNRECORDED` says how the resume check reads
    it, :func:`smoothbench.results.provenance.run_provenance` how the tables do."""
    in_progress = progress.in_progress
    return {
        "started_at_epoch": len(progress.rows),
        "started_at_step": in_progress["steps_done"] if in_progress else 0,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        **session.computation.as_dict(),
        "onednn_isa": onednn.instruction_set(session.computation.onednn),
        "device": session.device,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        **software.attempt_provenance(session.backend, session.gpu),
    }
