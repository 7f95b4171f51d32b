"""How a training job computes: Keras backend, mixed precision and XLA compilation.

Three ``compute`` keys choose them (``src/smoothbench/schemas/config.schema.yaml``), each
``auto`` by default:

- ``backend``: ``tensorflow``, ``jax`` or ``torch``; ``auto`` keeps ``$KERAS_BACKEND``
  (Keras' own default, TensorFlow, when it is unset). It must be chosen before Keras
  is imported: :func:`select_backend` sets ``KERAS_BACKEND`` for the process.
- ``precision``: a Keras dtype policy, ``float32``, ``mixed_bfloat16`` or
  ``mixed_float16``. ``auto`` picks ``mixed_bfloat16`` on GPUs of compute capability
  8.0 and newer (A100, H100, RTX 30xx/40xx), ``mixed_float16`` on 7.x (V100, T4, RTX
  20xx: tensor cores without bfloat16) and ``float32`` elsewhere, the CPU included
  (bfloat16 arithmetic is emulated on most CPUs). The logits layer and the loss stay
  float32 (:mod:`smoothbench.models.resnet`); under ``mixed_float16`` Keras wraps the
  optimizer in a dynamic loss scale.
- ``tf32``: whether GPUs of compute capability 8.0 and newer may round float32
  matmuls and convolutions to TensorFloat-32 (10-bit mantissas), which TensorFlow and
  JAX do by default. ``auto`` is off, so that float32 means IEEE float32 on every
  device, as on the CPU (:func:`resolve_tf32`, set in the backend by :func:`set_tf32`).
- ``jit_compile``: XLA compilation of the training and evaluation steps. ``auto`` is on
  for JAX (its steps are always compiled; uncompiled JAX runs op by op); on for
  TensorFlow unless ``compute.deterministic`` asks for TensorFlow's op determinism, which
  Keras refuses to combine with XLA (XLA is faster on GPUs, and was 2.3x faster for
  ResNet-20 on the 2-core CPU we measured: ``benchmarks/README.md``); off for PyTorch
  (Keras' torch.compile path is experimental).

None of them changes the protocol: the same model, loss, optimizer and schedule, with
float rounding of a different order. Every attempt records what it used in
``metrics.json``. A deterministic run's ``XLA_FLAGS`` say so too: a user's
``--xla_gpu_deterministic_ops=false`` is overwritten, with a note in the log
(:func:`agree_xla_determinism`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

from smoothbench.errors import SmoothbenchError

BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# The oldest GPU (CUDA compute capability) with tensor cores for each mixed precision:
# auto picks it there, and a resumed run keeps it on any GPU at least as new.
PRECISION_CAPABILITY = {"mixed_bfloat16": (8, 0), "mixed_float16": (7, 0)}


class AccelerationError(SmoothbenchError, ValueError):
    """A backend, precision or compilation choice that cannot be honoured."""


def select_backend(requested: str = "auto") -> str:
    """Make ``requested`` (``compute.backend``) the process's Keras backend; return its name.

    Must run before Keras is imported. ``auto`` keeps ``$KERAS_BACKEND`` or Keras'
    default (tensorflow)."""
    if requested == "auto":
        name = os.environ.get("KERAS_BACKEND", "tensorflow")
    elif requested in BACKENDS:
        name = requested
    else:
        raise AccelerationError(
            f"config key 'compute.backend': {requested!r} is not one of auto, {', '.join(BACKENDS)}"
        )
    if name not in BACKENDS:
        raise AccelerationError(
            f"environment variable KERAS_BACKEND={name!r} is not one of {', '.join(BACKENDS)}"
        )
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise AccelerationError(
                f"config key 'compute.backend' asks for {name}, but Keras was already imported with {current} in this "
                "process; the backend must be chosen before Keras is imported"
            )
        return name
    # each backend's package has the backend's name
    if importlib.util.find_spec(name) is None:
        where = (
            "config key 'compute.backend'"
            if requested != "auto"
            else "environment variable KERAS_BACKEND"
        )
        raise AccelerationError(
            f"{where} asks for {name}, but the package {name!r} is not installed in this environment (pip install {name})"
        )
    os.environ["KERAS_BACKEND"] = name
    return name


def visible_accelerators() -> list[tuple[str, tuple[int, int] | None]]:
    """(name, CUDA compute capability or None) of each accelerator the Keras backend
    sees; [] on the CPU. The one place that asks each backend about its devices."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            found = []
            for device in tf.config.list_physical_devices("GPU"):
                details = tf.config.experimental.get_device_details(device)
                capability = details.get("compute_capability")
                found.append(
                    (
                        details.get("device_name", device.name),
                        tuple(capability) if capability else None,
                    )
                )
            return found
        if backend == "jax":
            import jax

            found = []
            for device in jax.devices():
                if device.platform == "cpu":
                    continue
                capability = (
                    getattr(device, "compute_capability", None)
                    if device.platform == "gpu"
                    else None
                )
                if capability is not None:
                    major, _, minor = str(capability).partition(".")
                    capability = (int(major), int(minor or 0))
                found.append((str(device.device_kind), capability))
            return found
        if backend == "torch":
            import torch

            return [
                (
                    torch.cuda.get_device_name(i),
                    tuple(torch.cuda.get_device_capability(i)),
                )
                for i in range(torch.cuda.device_count())
            ]
    except Exception:  # no accelerator runtime: the CPU
        return []
    return []


def gpu_compute_capabilities(
    accelerators: list[tuple[str, tuple[int, int] | None]],
) -> list[tuple[int, int]]:
    """The CUDA compute capabilities among :func:`visible_accelerators`' answer (GPUs only)."""
    return [capability for _, capability in accelerators if capability is not None]


def describe_accelerators(
    accelerators: list[tuple[str, tuple[int, int] | None]],
) -> str:
    """Their names, as logs and metrics.json give the device, or 'CPU'."""
    return ", ".join(name for name, _ in accelerators) or "CPU"


def resolve_precision(
    requested: str, capabilities: list[tuple[int, int]]
) -> tuple[str, str]:
    """(Keras dtype policy, why) for ``compute.precision`` on GPUs of ``capabilities``."""
    if requested in PRECISIONS:
        return requested, "compute.precision"
    if requested != "auto":
        raise AccelerationError(
            f"config key 'compute.precision': {requested!r} is not one of auto, {', '.join(PRECISIONS)}"
        )
    if not capabilities:
        return "float32", "auto: no GPU"
    oldest = min(capabilities)
    for policy, units in (("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")):
        if precision_supported(policy, capabilities):
            return (
                policy,
                f"auto: GPU compute capability {oldest[0]}.{oldest[1]} has {units} tensor cores",
            )
    return (
        "float32",
        f"auto: GPU compute capability {oldest[0]}.{oldest[1]} has no tensor cores",
    )


def precision_supported(policy: str, capabilities: list[tuple[int, int]]) -> bool:
    """Whether every GPU of ``capabilities`` has the tensor cores of ``policy`` (float32:
    every device, the CPU included; a mixed precision: no CPU)."""
    if policy not in PRECISION_CAPABILITY:
        return policy in PRECISIONS
    return bool(capabilities) and min(capabilities) >= PRECISION_CAPABILITY[policy]


def resolve_tf32(requested) -> tuple[bool, str]:
    """(whether float32 matmuls and convolutions may use TF32, why) for ``compute.tf32``."""
    if requested is True or requested is False:
        return requested, "compute.tf32"
    if requested != "auto":
        raise AccelerationError(
            f"config key 'compute.tf32': {requested!r} is not one of auto, true, false"
        )
    return False, "auto: off, so float32 is IEEE float32 on every device"


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 for float32 matmuls and convolutions in the Keras backend
    in use: TensorFlow's ``enable_tensor_float_32_execution``, JAX's
    ``jax_default_matmul_precision`` ('tensorfloat32' or 'float32'), PyTorch's
    ``allow_tf32`` flags. Effective on GPUs of compute capability 8.0 and newer only."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(enabled)
    elif backend == "jax":
        import jax

        jax.config.update(
            "jax_default_matmul_precision", "tensorfloat32" if enabled else "float32"
        )
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def tf32_enabled() -> bool | None:
    """Whether the backend in use lets float32 matmuls use TF32, as it reports it."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.experimental.tensor_float_32_execution_enabled())
    if backend == "jax":
        import jax

        # jax.config exposes its options as attributes that its stubs do not list
        precision = getattr(jax.config, "jax_default_matmul_precision")  # noqa: B009
        return precision in (None, "tensorfloat32")
    if backend == "torch":
        import torch

        return bool(torch.backends.cuda.matmul.allow_tf32)
    return None


def resolve_jit_compile(
    requested, backend: str, has_gpu: bool, deterministic: bool | str
) -> tuple[bool, str]:
    """(whether to XLA-compile, why) for ``compute.jit_compile`` (auto, true or false)."""
    if requested is True or requested is False:
        if requested and backend == "tensorflow" and deterministic is True:
            raise AccelerationError(
                "config keys 'compute.jit_compile' (true) and 'compute.deterministic' (true) do not go together "
                "under TensorFlow: Keras turns XLA off while op determinism is on. Set one of them to false (or "
                "jit_compile: auto)"
            )
        return requested, "compute.jit_compile"
    if requested != "auto":
        raise AccelerationError(
            f"config key 'compute.jit_compile': {requested!r} is not one of auto, true, false"
        )
    if backend == "jax":
        return True, "auto: JAX always compiles"
    if backend == "torch":
        return False, "auto: off under PyTorch"
    if deterministic is not False:  # true, or auto under the fixed rule
        return (
            False,
            "auto: compute.deterministic asks for TensorFlow's op determinism, which Keras does not combine with XLA",
        )
    return (
        True,
        f"auto: TensorFlow on the {'GPU' if has_gpu else 'CPU'}, faster with XLA",
    )


JAX_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"
_DETERMINISM_FLAG_NAME = JAX_DETERMINISM_FLAG.split("=")[0]


def agree_xla_determinism(
    deterministic: bool, backend: str, environment=None
) -> str | None:
    """Make ``XLA_FLAGS`` say what a deterministic run records: under JAX append
    :data:`JAX_DETERMINISM_FLAG` (the user's other flags, a cluster's included, are
    kept); under any backend overwrite a value of that flag that turns it off (the run
    would record ``deterministic: true`` while XLA's kernels are not). Return the note
    to log when a user's value was overwritten; a run that is not deterministic is left
    as it is."""
    environment = os.environ if environment is None else environment
    if not deterministic:
        return None
    flags = environment.get("XLA_FLAGS", "").split()
    ours = [flag for flag in flags if flag.split("=")[0] == _DETERMINISM_FLAG_NAME]
    contrary = [
        flag for flag in ours if flag.partition("=")[2].lower() not in ("", "true", "1")
    ]
    if contrary:
        kept = [flag for flag in flags if flag not in contrary]
        environment["XLA_FLAGS"] = " ".join(
            kept
            if any(flag not in contrary for flag in ours)
            else [*kept, JAX_DETERMINISM_FLAG]
        )
        return (
            f"note: XLA_FLAGS had {' '.join(contrary)}, but this run is deterministic "
            f"(compute.deterministic); it runs with {JAX_DETERMINISM_FLAG} instead, as its "
            "attempt records (set compute.deterministic: false to run XLA's "
            "non-deterministic kernels)"
        )
    if backend == "jax" and not ours:
        environment["XLA_FLAGS"] = " ".join([*flags, JAX_DETERMINISM_FLAG])
    return None


# Packages that TensorFlow and Keras import at their own import whenever they are
# installed, each inside ``try: ... except ImportError``, for features a training job
# never uses: Keras' scikit-learn wrappers, pandas inputs and matplotlib image galleries,
# TensorFlow Lite's JAX conversion. This environment has them all (scikit-learn brings
# the demo's digits, pandas and matplotlib make the tables and plots, JAX is a backend),
# and they were a third of a training job's TensorFlow import (docs/speed.md).
OPTIONAL_AT_IMPORT = ("sklearn", "pandas", "matplotlib", "jax")


def import_keras():
    """Import Keras, and with it its backend, without :data:`OPTIONAL_AT_IMPORT`
    (except the backend itself: JAX under ``KERAS_BACKEND=jax``); returns the module.

    While Keras is imported those packages read as not installed, so the imports that
    only offer features around them skip them; afterwards they import as usual, for
    whatever asks for them later. Nothing the job computes with is among them, so a
    step computes the same either way (tests/test_acceleration.py). A package already
    imported stays as it is."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    held_back = [
        name
        for name in OPTIONAL_AT_IMPORT
        if name != backend and name not in sys.modules
    ]
    for name in held_back:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import keras
    finally:
        for name in held_back:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return keras


def configure_backend(
    threads: int, deterministic: bool, grow_memory: bool = False
) -> str:
    """Thread pools and determinism of the Keras backend in use, and with
    ``grow_memory`` (several runs per GPU) TensorFlow's memory growth; returns the
    backend's name. Imports Keras (:func:`import_keras`) if nothing did before.

    Must run before the backend has built anything (a fresh process, as Snakemake's).
    """
    keras = import_keras()

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
    agree_xla_determinism(deterministic, backend)  # the job logs its note first
    return backend


def apply_precision(policy: str) -> None:
    """Make ``policy`` Keras' global dtype policy; layers built afterwards follow it."""
    import keras

    keras.config.set_dtype_policy(policy)


class GpuNotVisibleError(AccelerationError, RuntimeError):
    """A training job was given GPUs that its Keras backend cannot see."""


def check_gpus_visible(
    given: str | None,
    accelerators: list[tuple[str, tuple[int, int] | None]],
    backend: str,
    cpu_fallback: bool = False,
) -> str | None:
    """Refuse to train on the CPU a job that was given GPUs (``given``: what it was
    given, in words; None when it was given none) but whose backend sees none. With
    ``cpu_fallback`` (config key compute.cpu_fallback) return the warning to log
    instead; None when there is nothing to say."""
    if not given or accelerators:
        return None
    cause = (
        f"this training job was given GPUs ({given}), but its Keras backend, {backend}, sees none. "
        f"The likely cause: a CPU-only {backend} (plain `pip install {backend}` brings no CUDA "
        "libraries): install the GPU extra (`make setup GPU=1`, or `pip install -r requirements/gpu.txt`), "
        "and check that `nvidia-smi` lists the GPU. To train on the CPU on purpose, set config key "
        "compute.gpus_per_job: 0"
    )
    if cpu_fallback:
        return f"WARNING: {cause}; compute.cpu_fallback is true, so it trains on the CPU anyway"
    raise GpuNotVisibleError(
        f"{cause} (or compute.cpu_fallback: true to train on the CPU anyway). Nothing was "
        "trained and no metrics.json was written"
    )


def prepare_environment(
    backend: str, gpus_given: str | None, runs_per_gpu: int = 1
) -> None:
    """Environment variables the backend reads when it starts (call before Keras is
    imported): with several runs per GPU, JAX allocates GPU memory as it needs it
    instead of 75% of the GPU at once (TensorFlow's memory growth is set once it is
    imported: configure_backend); on a job given no GPU,
    TensorFlow's C++ start-up lines about the missing CUDA driver ('failed call to
    cuInit', logged as errors) are not printed. A value already set is kept."""
    if runs_per_gpu > 1 and backend == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if not gpus_given and backend == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
