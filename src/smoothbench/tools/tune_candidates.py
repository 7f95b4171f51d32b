"""``smoothbench-tune``: measure which compute settings train fastest on this machine,
and write them as a ``compute:`` block for a second config file.

Which settings train fastest changes from one machine to the next (XLA was 2.4x faster
on one 2-core CPU and 0.6x on another; bfloat16 pays where the CPU has bfloat16 units
and costs 4x where it emulates them). A training job never measures: its computation
follows from its config alone (:mod:`smoothbench.compute.decisions`). This command measures
instead, once, for each *kind* of run of a study - (network, depth, image shape,
pooling, batch size) - on this machine, timing every candidate setting the config
leaves open, in processes of its own, on synthetic images of the run's shape:

- the backends installed (TensorFlow, JAX), or the one ``compute.backend`` names;
- float32, and a mixed precision where the device has the units for it (bfloat16 on
  CPUs with AVX-512 BF16 or AMX and on GPUs; float16 on GPUs), or the one
  ``compute.precision`` names;
- XLA off and on under TensorFlow (always on under JAX), or what ``compute.jit_compile``
  says; TensorFlow's op determinism with XLA off (Keras does not combine the two), or
  what ``compute.deterministic`` says.

The candidates are timed in rounds taking turns (every other round backwards), and it
keeps the fastest that **resumes bit-exactly**: each candidate trains two steps, saves
its variables the way a checkpoint does, trains two more; a fresh process restores
the saved variables and trains the same two steps, and its variables must be equal to
the last bit. A candidate must beat the reference (TensorFlow, float32, no XLA, op
determinism: what ``auto`` gives on the CPU) by more than :data:`MARGIN` in the median
of the rounds, so that timing noise does not pick for it.

It writes a YAML file (``compute.yaml`` by default) holding the ``compute:`` block -
study-wide keys for the kind with the most runs, ``compute.experiments.NAME`` keys for
experiments of a kind whose pick differs - with every measurement as comments, and
the whole evidence in a JSON file beside it. Pass it after the study's config
(``snakemake --configfile config.yaml compute.yaml``) or paste it; check it with
``smoothbench-equivalence --compute compute.yaml``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from smoothbench.compute.backends import BACKENDS, AccelerationError
from smoothbench.settings import ComputeSettings, RunSettings
from smoothbench.tools.tune_measuring import (
    REFERENCE,
    RESULT_PREFIX,
    Choice,
)

TUNING_FORMAT = 1
# share by which a candidate must beat the reference's images/s to be chosen over it
MARGIN = 0.03
# CPU features that decide what is fast (AVX-512, bfloat16 dot products, AMX tiles)
CPU_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
)


class TuningError(AccelerationError):
    """No candidate could be measured, or a tuning record that cannot be read."""


def cpu_description() -> dict:
    """The CPU's model name, logical CPUs and the :data:`CPU_FEATURES` it reports."""
    name, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if found:
            name = found.group(1).strip()
        found = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
        if found:
            flags = set(found.group(1).split())
    return {
        "model": name,
        "logical_cpus": os.cpu_count() or 1,
        "features": [feature for feature in CPU_FEATURES if feature in flags],
        # told apart where a hypervisor hides the model ("AMD EPYC")
        "flags_digest": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[
            :8
        ],
    }


def gpu_names(gpus_given: str | None) -> list[str]:
    """Names of the GPUs a job was given (nvidia-smi's, in CUDA_VISIBLE_DEVICES' order
    when it lists indices); [] for a job given none, and where nvidia-smi is missing
    (no NVIDIA driver: the job trains on the CPU, with compute.cpu_fallback, or stops)."""
    if not gpus_given:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    names = {}
    for line in listing.splitlines():
        index, _, name = line.partition(",")
        names[index.strip()] = name.strip()
    visible = [
        part.strip()
        for part in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        if part.strip()
    ]
    chosen = [names[index] for index in visible if index in names]
    return chosen or list(names.values())


def device_description(compute: ComputeSettings) -> dict:
    """What the cache of measured choices is keyed on besides the work: the GPUs a job
    was given, or the CPU and the job's threads."""
    cpu = cpu_description()
    gpus = gpu_names(compute.gpus_given)
    if gpus:
        name = f"{len(gpus)}x {gpus[0]}"
    else:
        name = (
            f"{cpu['model']} {cpu['flags_digest']}, {compute.threads_per_job} threads"
        )
    return {
        "name": name,
        "gpus": gpus,
        "cpu": cpu,
        "threads": compute.threads_per_job,
    }


def work_description(settings) -> dict:
    """The part of a run's settings that decides the speed of its training step (the
    number of classes only sizes the last layer, so it is left out)."""
    return {
        "model": settings.model,
        "depth": settings.depth,
        "image_shape": list(settings.image_shape),
        "pooling": settings.pooling,
        "min_image_size": settings.min_image_size,
        "batch_size": settings.batch_size,
    }


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def installed_backends() -> list[str]:
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def software_versions(backends) -> dict:
    versions = {}
    for name in ["keras", *backends]:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def candidates(compute: ComputeSettings, device: dict) -> list[Choice]:
    """Every choice the config leaves open on this device, the reference first when it
    is one of them."""
    requested = compute.backend
    if requested != "auto":
        backends = [requested]
    elif os.environ.get("KERAS_BACKEND"):  # the user's own pick, as before tuning
        backends = [os.environ["KERAS_BACKEND"]]
    else:
        backends = [name for name in installed_backends() if name != "torch"]
    on_gpu = bool(device["gpus"])
    if compute.precision != "auto":
        precisions = [compute.precision]
    else:
        precisions = ["float32"]
        features = set(device["cpu"]["features"])
        if on_gpu or features & {"avx512_bf16", "amx_bf16"}:
            precisions.append("mixed_bfloat16")
        if on_gpu:
            precisions.append("mixed_float16")
    requested_jit = compute.jit_compile
    requested_determinism = compute.deterministic
    found = []
    for backend in backends:
        if backend == "jax":
            jits = [True]
        elif backend == "torch":
            jits = [False]
        else:
            jits = [False, True]
        if requested_jit != "auto":
            jits = [cast(bool, requested_jit)]  # the schema's true or false
        for precision in precisions:
            for jit in jits:
                if requested_determinism != "auto":
                    # the schema's true or false
                    deterministic = cast(bool, requested_determinism)
                else:  # TensorFlow's op determinism excludes XLA
                    deterministic = not (backend == "tensorflow" and jit)
                if backend == "tensorflow" and jit and deterministic:
                    continue  # refused when the config is read; never a candidate
                found.append(Choice(backend, precision, jit, deterministic))
    found.sort(key=lambda choice: choice != REFERENCE)
    return found


def _child_command(mode: str, job: dict) -> list[str]:
    return [
        sys.executable,
        "-m",
        "smoothbench.tools.tune_measuring",
        mode,
        json.dumps(job),
    ]


def _run_child(mode: str, job: dict, backend: str, log) -> list[dict]:
    """Run one measuring process; its result lines (one per candidate)."""
    environment = {**os.environ, "KERAS_BACKEND": backend}
    source = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(
        [source, *filter(None, [environment.get("PYTHONPATH")])]
    )
    process = subprocess.run(
        _child_command(mode, job), capture_output=True, text=True, env=environment
    )
    results = [
        json.loads(line[len(RESULT_PREFIX) :])
        for line in process.stdout.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]
    if process.returncode != 0:
        tail = (process.stderr or process.stdout).strip().splitlines()[-3:]
        log(
            f"tuning: a {backend} measuring process failed (exit {process.returncode}): {' | '.join(tail)}"
        )
    return results


def _child_job(
    settings, compute: ComputeSettings, choices, scratch: Path, **extra
) -> dict:
    """What a measuring or resume-checking process is given: the run's settings, its
    threads and GPUs, the candidates, the scratch folder, and ``extra``."""
    return {
        "settings": settings.as_dict(),
        "compute": {
            "threads_per_job": compute.threads_per_job,
            "gpus_given": compute.gpus_given,
        },
        "choices": [choice.as_dict() for choice in choices],
        "scratch": str(scratch),
        **extra,
    }


def measure(
    settings: RunSettings,
    compute: ComputeSettings,
    log: Callable[[str], None],
    seconds: float = 3.0,
    rounds: int = 3,
) -> dict:
    """Time every candidate for ``seconds`` in each of ``rounds`` rounds, check the
    fastest resume bit-exactly, and return the record of one kind of run."""
    device = device_description(compute)
    choices = candidates(compute, device)
    if not choices:
        raise TuningError(
            "config keys compute.backend, compute.precision, compute.jit_compile and compute.deterministic "
            "leave no setting to train with"
        )
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="smoothbench-tuning-"))
    try:
        groups: dict[str, list[Choice]] = {}
        for choice in choices:  # one process per backend: it is chosen per process
            groups.setdefault(choice.backend, []).append(choice)
        by_round = []
        for round_index in range(rounds):
            # taking turns: every other round runs the processes and candidates backwards,
            # so that a slow spell of a shared machine does not fall on one candidate
            backwards = round_index % 2 == 1
            results = []
            for backend, group in (
                reversed(groups.items()) if backwards else groups.items()
            ):
                group = group[::-1] if backwards else group
                job = _child_job(settings, compute, group, scratch, seconds=seconds)
                log(
                    f"tuning: round {round_index + 1} of {rounds}: timing "
                    f"{', '.join(choice.label() for choice in group)} ({seconds:g} s each)"
                )
                results += _run_child("--measure", job, backend, log)
            by_round.append(results)
        measured = combine_rounds(by_round)
        for result in measured:
            log(
                f"tuning: {Choice.from_dict(result).label()}: {result['images_per_second']:.1f} images/s "
                f"(rounds: {', '.join(f'{speed:.1f}' for speed in result['rounds_images_per_second'])}; "
                f"first step {result['first_step_seconds']:.1f} s)"
            )
        if not measured:
            raise TuningError(
                f"tuning: none of {len(choices)} candidate settings could be measured in every round on "
                f"{device['name']} (the log above says why); set compute.backend, precision, jit_compile "
                "and deterministic explicitly, or compute.tune: false"
            )
        reference = next(
            (r for r in measured if Choice.from_dict(r) == REFERENCE), None
        )
        chosen, checks = None, []
        for result in preference_order(measured, reference):
            choice = Choice.from_dict(result)
            job = _child_job(
                settings, compute, [choice], scratch, state=result["state_file"]
            )
            check = _run_child("--resume-check", job, choice.backend, log)
            exact = bool(check) and check[0]["hash"] == result["hash"]
            checks.append({"choice": choice.as_dict(), "bit_exact": exact})
            log(
                f"tuning: resume check of {choice.label()}: "
                + (
                    "bit-exact"
                    if exact
                    else "NOT bit-exact (a resumed run would differ)"
                )
            )
            if exact:
                chosen = result
                break
        if chosen is None:
            raise TuningError(
                f"tuning: no candidate on {device['name']} resumed bit-exactly ({len(checks)} checked); "
                "set the compute keys explicitly (compute.deterministic: true keeps TensorFlow's op determinism)"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for result in measured:
        result.pop("state_file", None)
        result.pop("hash", None)
    return {
        "format": TUNING_FORMAT,
        "device": device,
        "seen_by_backend": chosen["device"],
        "work": work_description(settings),
        "software": software_versions(sorted({c.backend for c in choices})),
        "candidates": measured,
        "rounds": rounds,
        "resume_checks": checks,
        "margin": MARGIN,
        "chosen": Choice.from_dict(chosen).as_dict(),
        "speed_over_reference": chosen.get("over_reference_median"),
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"
        ),
        "host": socket.gethostname(),
        "seconds": round(time.perf_counter() - started, 1),
    }


def combine_rounds(by_round: list[list[dict]]) -> list[dict]:
    """One result per candidate measured in every round (a candidate that failed in one
    is left out): its first round's result with ``images_per_second`` the median over
    the rounds, ``rounds_images_per_second`` each round's, and, where the reference was
    measured, ``over_reference`` (its speed over the reference's, round by round: the
    two were timed minutes apart at most) and ``over_reference_median``."""
    keyed = [
        {Choice.from_dict(result): result for result in results} for results in by_round
    ]
    combined = []
    for choice, first in keyed[0].items():
        if not all(choice in results for results in keyed):
            continue
        speeds = [results[choice]["images_per_second"] for results in keyed]
        result = first | {
            "images_per_second": round(statistics.median(speeds), 2),
            "rounds_images_per_second": speeds,
        }
        if all(REFERENCE in results for results in keyed):
            ratios = [
                round(speed / results[REFERENCE]["images_per_second"], 3)
                for speed, results in zip(speeds, keyed)
            ]
            result |= {
                "over_reference": ratios,
                "over_reference_median": round(statistics.median(ratios), 3),
            }
        combined.append(result)
    return combined


def preference_order(measured: list[dict], reference: dict | None) -> list[dict]:
    """The order in which candidates are resume-checked, the first that passes being
    chosen: those faster than the reference by more than :data:`MARGIN` in the median
    of the rounds (each round's speed over the reference's of the same round: with 3
    rounds one lucky round cannot pick a setting, and with the order reversed every
    other round, a setting measured late in its process gains nothing), fastest
    (median) first; then the reference; then the rest, fastest first. Without a
    measured reference, fastest first."""
    by_speed = sorted(measured, key=lambda r: r["images_per_second"], reverse=True)
    if reference is None:
        return by_speed
    faster = [
        result
        for result in by_speed
        if result is not reference and result["over_reference_median"] > 1 + MARGIN
    ]
    rest = [r for r in by_speed if r is not reference and r not in faster]
    return [*faster, reference, *rest]
