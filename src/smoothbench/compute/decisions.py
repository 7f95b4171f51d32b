"""How a training job computes, decided from its config and its device alone.

The computation keys of :class:`smoothbench.settings.ComputeSettings` (backend,
precision, jit_compile, deterministic, tf32, onednn: ``ROUNDING_KEYS``) change a run's float
rounding, so the promise is: **the same config gives the same computation on any
machine of the same kind**.
:func:`decide` is a pure function of the config's values, ``$KERAS_BACKEND`` and what
the device *is* (the CUDA compute capabilities of the GPUs the backend sees); it never
reads how fast anything is. ``auto`` is :mod:`smoothbench.compute.backends`'s fixed rule:

- backend: ``$KERAS_BACKEND`` where it is set, else TensorFlow;
- deterministic: on, except under TensorFlow with ``jit_compile: true`` (Keras does
  not combine TensorFlow's op determinism with XLA);
- jit_compile: on under JAX, off under PyTorch, off under TensorFlow when op
  determinism is on (so off by default), else on;
- precision: mixed_bfloat16 on GPUs of compute capability 8.0 and newer,
  mixed_float16 on 7.x, float32 on older GPUs and on the CPU;
- tf32: off (float32 is IEEE float32 on every GPU, as on the CPU);
- onednn: on where TensorFlow runs on an x86-64 CPU, else off
  (:mod:`smoothbench.compute.onednn`).

On an x86-64 CPU that is TensorFlow, float32, no XLA, op determinism, oneDNN on: the
settings of every earlier result of this project, with oneDNN, which TensorFlow had
already turned on by itself on AVX-512 VNNI/BF16 CPUs. Measuring what is fastest on a
machine is a command, ``smoothbench-tune`` (:mod:`smoothbench.tools.tune_candidates`), which writes
a compute block for a second config file; no training job measures.

A run is computed one way from its first epoch to its last: :func:`reconcile` compares
what a job decided with what the run's checkpoint recorded, and either keeps the
recorded settings (for each key the config leaves to auto, on a device that supports
the recorded value: a retry that lands on another kind of GPU of a mixed partition
keeps the run's precision) or stops before training, naming what differs. A key an
attempt did not record (one written by an earlier version) reads as the value that
version computed with (:data:`UNRECORDED`), so it is checked too.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Mapping

from smoothbench.compute.backends import (
    BACKENDS,
    AccelerationError,
    precision_supported,
    resolve_jit_compile,
    resolve_precision,
    resolve_tf32,
)
from smoothbench.compute.onednn import resolve_onednn, tensorflow_default
from smoothbench.settings import ROUNDING_KEYS, ComputeSettings

# What an attempt that does not record a key computed with: the value of the versions
# that wrote it. Before the keys were recorded every run was TensorFlow, float32, no XLA
# and op determinism (their defaults); TF32 was left to the backends, which allow it;
# oneDNN to TensorFlow, whose default depends on the CPU (unrecorded_value).
UNRECORDED = {
    "backend": "tensorflow",
    "precision": "float32",
    "jit_compile": False,
    "deterministic": True,
    "tf32": True,
}


def unrecorded_value(key: str, attempt: Mapping) -> object:
    """What an attempt that does not record ``key`` computed with. oneDNN: TensorFlow's
    own default on this machine's CPU (a run resumes as it began, not under the new
    rule), and off under another backend."""
    if key == "onednn":
        return tensorflow_default(attempt.get("backend", UNRECORDED["backend"]))
    return UNRECORDED[key]


class ComputationMismatchError(AccelerationError, RuntimeError):
    """A resumed run whose config now gives other computation settings than it began with."""


@dataclasses.dataclass(frozen=True)
class Computation:
    """How one attempt computes, and why each value (config key, or auto's rule)."""

    backend: str
    precision: str
    jit_compile: bool
    deterministic: bool
    tf32: bool
    onednn: bool
    reasons: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict:
        """The :data:`ROUNDING_KEYS`' values, as metrics.json's attempts and the
        checkpoint record them."""
        return {key: getattr(self, key) for key in ROUNDING_KEYS}

    def reason(self, key: str) -> str:
        return dict(self.reasons).get(key, "")


def choose_backend(
    compute: ComputeSettings, environment: Mapping[str, str] | None = None
) -> str:
    """compute.backend, or for auto ``$KERAS_BACKEND`` (else tensorflow). Pure: it
    neither imports nor checks that the backend is installed
    (:func:`smoothbench.compute.backends.select_backend` does, in the job)."""
    environment = os.environ if environment is None else environment
    if compute.backend != "auto":
        name = compute.backend
    else:
        name = environment.get("KERAS_BACKEND") or "tensorflow"
    if name not in BACKENDS:
        where = (
            "config key 'compute.backend'"
            if compute.backend != "auto"
            else "environment variable KERAS_BACKEND"
        )
        raise AccelerationError(
            f"{where}: {name!r} is not one of {', '.join(BACKENDS)}"
        )
    return name


def choose_determinism(compute: ComputeSettings, backend: str) -> tuple[bool, str]:
    """(op determinism, why): known before the backend starts, as it must be."""
    if compute.deterministic is True or compute.deterministic is False:
        return compute.deterministic, "compute.deterministic"
    if backend == "tensorflow" and compute.jit_compile is True:
        return (
            False,
            "auto: compute.jit_compile true under TensorFlow excludes op determinism",
        )
    return True, "auto: on"


def decide(
    compute: ComputeSettings,
    capabilities: tuple[tuple[int, int], ...] | list = (),
    environment: Mapping[str, str] | None = None,
    machine: str | None = None,
) -> Computation:
    """The computation of a job: a function of ``compute``, ``$KERAS_BACKEND`` (in
    ``environment``), the CUDA compute capabilities of the GPUs its backend sees (none
    on the CPU) and the CPU's architecture (``machine``, default this one's), and of
    nothing else."""
    backend = choose_backend(compute, environment)
    deterministic, deterministic_reason = choose_determinism(compute, backend)
    precision, precision_reason = resolve_precision(
        compute.precision, list(capabilities)
    )
    jit_compile, jit_reason = resolve_jit_compile(
        compute.jit_compile, backend, bool(capabilities), deterministic
    )
    tf32, tf32_reason = resolve_tf32(compute.tf32)
    onednn, onednn_reason = resolve_onednn(compute.onednn, backend, machine)
    backend_reason = (
        "compute.backend"
        if compute.backend != "auto"
        else (
            "auto: $KERAS_BACKEND"
            if (os.environ if environment is None else environment).get("KERAS_BACKEND")
            else "auto: tensorflow"
        )
    )
    return Computation(
        backend=backend,
        precision=precision,
        jit_compile=jit_compile,
        deterministic=deterministic,
        tf32=tf32,
        onednn=onednn,
        reasons=(
            ("backend", backend_reason),
            ("precision", precision_reason),
            ("jit_compile", jit_reason),
            ("deterministic", deterministic_reason),
            ("tf32", tf32_reason),
            ("onednn", onednn_reason),
        ),
    )


def recorded_computation(attempts: list[dict]) -> dict | None:
    """What a run's last recorded attempt computed with (the checkpoint's attempts):
    each of the :data:`ROUNDING_KEYS`, a key the attempt does not record read as
    :data:`UNRECORDED` (listed in ``unrecorded``), and ``measured`` true when an
    earlier version's compute.tune chose it; None when there is no attempt."""
    if not attempts:
        return None
    last = attempts[-1]
    return {
        key: last[key] if key in last else unrecorded_value(key, last)
        for key in ROUNDING_KEYS
    } | {
        "measured": bool(last.get("tuned")),
        "unrecorded": tuple(key for key in ROUNDING_KEYS if key not in last),
    }


def differences(recorded: Mapping, decided: Mapping) -> dict[str, tuple]:
    """key -> (recorded, decided) for each computation key that differs."""
    return {
        key: (recorded[key], decided[key])
        for key in ROUNDING_KEYS
        if key in recorded and key in decided and recorded[key] != decided[key]
    }


def supports(computation: Computation, capabilities) -> dict[str, bool]:
    """key -> whether this job can compute under ``computation``'s value of it: a
    backend that is installed, a precision whose tensor cores every GPU has
    (:func:`smoothbench.compute.backends.precision_supported`), XLA that Keras combines
    with the determinism; TF32, oneDNN under TensorFlow (the other backends never use
    it) and the determinism always."""
    return {
        "backend": importlib.util.find_spec(computation.backend) is not None,
        "precision": precision_supported(computation.precision, list(capabilities)),
        "jit_compile": not (
            computation.jit_compile
            and computation.backend == "tensorflow"
            and computation.deterministic
        ),
        "deterministic": True,
        "tf32": True,
        "onednn": not computation.onednn or computation.backend == "tensorflow",
    }


def reconcile(
    decided: Computation,
    recorded: dict | None,
    compute: ComputeSettings,
    run: str,
    keys: tuple[str, ...] = ROUNDING_KEYS,
    capabilities=(),
) -> Computation:
    """The computation a resumed run continues with: ``decided`` when it is what the
    checkpoint recorded (or nothing was recorded); the recorded value of each key that
    differs where the config leaves that key to auto and this device supports it
    (:func:`supports`, on the GPUs of ``capabilities``; a run begun under an earlier
    version's measured choice keeps it regardless); else
    :class:`ComputationMismatchError`, naming what differs and the two ways on. Only
    ``keys`` are compared (the backend and determinism are settled before the backend
    starts, the rest after). Nothing is deleted either way."""
    if recorded is None:
        return decided
    differing = {
        key: value
        for key, value in differences(recorded, decided.as_dict()).items()
        if key in keys
    }
    if not differing:
        return decided
    auto = [key for key in differing if getattr(compute, key) == "auto"]
    kept = dataclasses.replace(decided, **{key: recorded[key] for key in auto})
    supported = supports(kept, capabilities)
    if recorded.get("measured"):
        supported = dict.fromkeys(supported, True)
    stopping = {
        key: value
        for key, value in differing.items()
        if key not in auto or not supported[key]
    }
    if not stopping:
        reasons = dict(decided.reasons)
        for key in differing:
            reasons[key] = "kept from the run's earlier attempts" + (
                ", which an earlier version's measured auto chose"
                if recorded.get("measured")
                else f" (compute.{key} is auto and this device supports it)"
            )
        return dataclasses.replace(kept, reasons=tuple(reasons.items()))
    raise ComputationMismatchError(_mismatch(decided, recorded, stopping, run))


def _mismatch(decided: Computation, recorded: dict, stopping: dict, run: str) -> str:
    """Why a resume stops: each key, its two values and why each; the ways on."""
    unrecorded = recorded.get("unrecorded", ())

    def was_text(key, was):
        return f"{was!r} in the checkpoint" + (
            " (not recorded there: the value of the version that wrote it)"
            if key in unrecorded
            else ""
        )

    listed = "; ".join(
        f"{key}: {was_text(key, was)}, {now!r} now ({decided.reason(key)})"
        for key, (was, now) in stopping.items()
    )
    give_back = ", ".join(
        f"compute.{key}: {str(was).lower() if isinstance(was, bool) else was}"
        for key, (was, _) in stopping.items()
    )
    return (
        f"{run}: its checkpoint was trained under other computation settings than this "
        f"job gives now ({listed}). A run is computed one way from its first epoch to its "
        f"last, so it does not resume. Either give the recorded settings back ({give_back}, "
        "in the config or with --config; a precision needs a GPU with its tensor cores, "
        "docs/clusters.md), or retire the run (move its folder aside) to train it anew "
        "under the new settings. Nothing was trained and the checkpoint is kept"
    )
