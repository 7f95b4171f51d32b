"""TensorFlow's oneDNN CPU kernels, as part of a run's computation (``compute.onednn``).

TensorFlow decides by itself, at its first import, whether its convolutions, matrix
products and other CPU ops run through oneDNN: on Linux x86-64 it turns oneDNN on by
default only on CPUs with AVX-512 VNNI, AVX-512 BF16, AVX-VNNI or AMX, and leaves it off
on AVX2-only CPUs (laptops, many workstations and cluster CPU nodes). oneDNN's kernels
round differently (TensorFlow says so at import), and on an AVX2 CPU they made the
reference computation 2.8x to 3.2x faster (benchmarks/README.md). So the switch is a
computation key like the precision: decided by a fixed rule from what the device is,
never from a timing (:func:`resolve_onednn`), set before TensorFlow is imported
(``TF_ENABLE_ONEDNN_OPTS``, overwritten: :func:`set_environment`), read back once
TensorFlow has started (:func:`check_tensorflow_agrees`), recorded by each attempt with
the instruction set oneDNN dispatches to (:func:`instruction_set`), and kept by a resumed
run like every other computation key (:mod:`smoothbench.compute.decisions`).

The fixed rule (``auto``): on wherever TensorFlow runs on an x86-64 CPU, off on other
CPUs (where TensorFlow's oneDNN build differs) and under the other backends, which do
not use it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from smoothbench.errors import SmoothbenchError

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
X86_64 = ("x86_64", "amd64")
# TensorFlow's own default on Linux x86-64 (tensorflow/core/util/util.cc, IsMKLEnabled):
# on where the CPU has one of these, off elsewhere.
TENSORFLOW_DEFAULT_FLAGS = frozenset(
    {"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8"}
)
# The instruction sets oneDNN's x86 kernels are written for, best first, with the
# /proc/cpuinfo flags each needs (oneDNN's names: dnnl::cpu_isa).
INSTRUCTION_SETS = (
    ("avx512_core_amx", {"amx_tile", "amx_bf16", "avx512_bf16", "avx512f"}),
    ("avx512_core_bf16", {"avx512_bf16", "avx512_vnni", "avx512f", "avx512bw"}),
    ("avx512_core_vnni", {"avx512_vnni", "avx512f", "avx512bw", "avx512vl"}),
    ("avx512_core", {"avx512f", "avx512bw", "avx512vl", "avx512dq"}),
    ("avx2_vnni", {"avx_vnni", "avx2", "fma"}),
    ("avx2", {"avx2", "fma"}),
    ("avx", {"avx"}),
    ("sse41", {"sse4_1"}),
)


class OneDnnError(SmoothbenchError, RuntimeError):
    """TensorFlow started with oneDNN in another state than the computation says."""


def cpu_flags(cpuinfo: Path | str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (Linux), empty where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def is_x86_64(machine: str | None = None) -> bool:
    return (platform.machine() if machine is None else machine).lower() in X86_64


def resolve_onednn(
    requested: bool | str, backend: str, machine: str | None = None
) -> tuple[bool, str]:
    """(whether TensorFlow's oneDNN kernels are on, why) for ``compute.onednn``: a
    function of the config, the backend and the CPU's architecture only."""
    if requested not in (True, False, "auto"):
        raise OneDnnError(
            f"config key 'compute.onednn': {requested!r} is not one of auto, true, false"
        )
    if backend != "tensorflow":
        if requested is True:
            raise OneDnnError(
                f"config key 'compute.onednn': true, but the backend is {backend}: "
                "oneDNN is TensorFlow's (set it to auto or false)"
            )
        return False, f"auto: off, {backend} does not use TensorFlow's oneDNN"
    if requested is True or requested is False:
        return requested, "compute.onednn"
    if is_x86_64(machine):
        return True, "auto: on, TensorFlow on an x86-64 CPU"
    return False, "auto: off, not an x86-64 CPU"


def tensorflow_default(
    backend: str, flags: frozenset[str] | None = None, machine: str | None = None
) -> bool:
    """Whether TensorFlow turns oneDNN on by itself on this machine: what a run trained
    before compute.onednn existed computed with (it never set the variable)."""
    if backend != "tensorflow" or not is_x86_64(machine):
        return False
    flags = cpu_flags() if flags is None else flags
    return bool(flags & TENSORFLOW_DEFAULT_FLAGS)


def instruction_set(enabled: bool, flags: frozenset[str] | None = None) -> str:
    """The instruction set oneDNN's kernels dispatch to on this CPU (its best that the
    CPU has; ``ONEDNN_MAX_CPU_ISA`` caps it where set), '' when oneDNN is off."""
    if not enabled:
        return ""
    flags = cpu_flags() if flags is None else flags
    best = next((name for name, needs in INSTRUCTION_SETS if needs <= flags), "unknown")
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return f"{best} (capped: {cap})" if cap else best


def set_environment(enabled: bool, backend: str) -> None:
    """Tell TensorFlow, before its first import, whether to use oneDNN. Overwrites a
    value already set (a site's own value would otherwise win silently; the attempt
    records what it ran)."""
    if backend == "tensorflow":
        os.environ[VARIABLE] = "1" if enabled else "0"


def tensorflow_enabled() -> bool:
    """Whether the TensorFlow of this process runs with oneDNN, as it reports it."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def check_tensorflow_agrees(enabled: bool, backend: str) -> None:
    """Stop when TensorFlow started with oneDNN in another state than decided (it was
    imported before :func:`set_environment`, by code that ran earlier in the process)."""
    if backend != "tensorflow":
        return
    actual = tensorflow_enabled()
    if actual != enabled:
        raise OneDnnError(
            f"TensorFlow runs with oneDNN {'on' if actual else 'off'}, but this run's "
            f"computation says {'on' if enabled else 'off'} (compute.onednn): TensorFlow "
            f"was imported before the job could set {VARIABLE}, which it reads once. "
            "Start the job in a fresh process (as the workflow does); nothing was trained"
        )
