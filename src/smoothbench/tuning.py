"""Measured compute choices: what ``auto`` means on the machine that trains.

Which compute settings train fastest changes from one machine to the next (XLA was
2.5x faster on one 2-core CPU and 0.8x on another; bfloat16 pays where the CPU has
bfloat16 units and costs 4x where it emulates them), so ``auto`` is not a fixed rule
but a measurement. The first training job of each *kind* - (network, depth, image
shape, pooling, batch size) on one *device* (CPU model and threads, or GPU model) -
times every candidate setting the config leaves open, in processes of its own, on
synthetic images of the run's shape:

- the backends installed (TensorFlow, JAX), or the one ``compute.backend`` names;
- float32, and a mixed precision where the device has the units for it (bfloat16 on
  CPUs with AVX-512 BF16 or AMX and on GPUs; float16 on GPUs), or the one
  ``compute.precision`` names;
- XLA off and on under TensorFlow (always on under JAX), or what ``compute.jit_compile``
  says; TensorFlow's op determinism with XLA off (Keras does not combine the two), or
  what ``compute.deterministic`` says.

It keeps the fastest candidate that **resumes bit-exactly**: each candidate trains two
steps, saves its variables the way a checkpoint does, trains two more; a fresh process
restores the saved variables and trains the same two steps, and its variables must be
equal to the last bit. A candidate must beat the reference (TensorFlow, float32, no
XLA, op determinism: the settings every earlier result was trained with) by more than
:data:`MARGIN`, so that timing noise does not pick for it. The record - the device,
the software, every candidate's images/s, the check, the choice - is written to
``{tuning folder}/{device}/{kind}.json`` (:func:`record_path`) and every later job of
that kind on that device reads it instead of measuring: one job measures while the
others wait on a lock file beside it. Delete the file to measure again.

A resumed run keeps the choice of its earlier attempts on the same device, so that it
ends as an uninterrupted run would. Explicit settings always win: a key set to
anything but ``auto`` removes the others from the candidates, and with every key
explicit nothing is measured. ``compute.tune: false`` gives ``auto`` the fixed rule of
:mod:`smoothbench.acceleration` instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
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

from smoothbench import storage
from smoothbench.acceleration import BACKENDS, AccelerationError

TUNING_FORMAT = 1
# share by which a candidate must beat the reference's images/s to be chosen over it
MARGIN = 0.03
CHECK_STEPS = 2  # steps before and after the saved state of the resume check
# batches of synthetic images: an epoch of the timing, and the same images in both
# halves of the resume check
SYNTHETIC_BATCHES = 64
RESULT_PREFIX = "TUNING "  # a child process's result line
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
COMPUTE_KEYS = ("backend", "precision", "jit_compile", "deterministic")


class TuningError(AccelerationError):
    """No candidate could be measured, or a tuning record that cannot be read."""


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
        return cls(**{key: data[key] for key in COMPUTE_KEYS})


REFERENCE = Choice("tensorflow", "float32", False, True)


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


def device_description(compute: dict) -> dict:
    """What the cache of measured choices is keyed on besides the work: the GPUs a job
    was given, or the CPU and the job's threads."""
    cpu = cpu_description()
    gpus = gpu_names(compute.get("gpus_given"))
    if gpus:
        name = f"{len(gpus)}x {gpus[0]}"
    else:
        name = f"{cpu['model']} {cpu['flags_digest']}, {compute['threads_per_job']} threads"
    return {
        "name": name,
        "gpus": gpus,
        "cpu": cpu,
        "threads": compute["threads_per_job"],
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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def record_path(
    folder: Path | str, device: dict, work: dict, compute: dict | None = None
) -> Path:
    """Where the measured choice for ``work`` on ``device`` is kept; compute keys set to
    anything but auto (which narrow the candidates) are part of the name."""
    shape = "x".join(map(str, work["image_shape"]))
    fixed = "".join(
        f"-{key}={str(compute[key]).lower()}"
        for key in COMPUTE_KEYS
        if compute and compute.get(key, "auto") != "auto"
    )
    name = (
        f"{work['model']}-{work['depth']}-{shape}-{work['pooling']}-min{work['min_image_size']}-"
        f"batch{work['batch_size']}{fixed}.json"
    )
    return Path(folder) / _slug(device["name"]) / name


def installed_backends() -> list[str]:
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def software_versions(backends) -> dict:
    versions = {}
    for name in ["keras", *backends]:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def candidates(compute: dict, device: dict) -> list[Choice]:
    """Every choice the config leaves open on this device, the reference first when it
    is one of them."""
    requested = compute.get("backend", "auto")
    if requested != "auto":
        backends = [requested]
    elif os.environ.get("KERAS_BACKEND"):  # the user's own pick, as before tuning
        backends = [os.environ["KERAS_BACKEND"]]
    else:
        backends = [name for name in installed_backends() if name != "torch"]
    on_gpu = bool(device["gpus"])
    if compute.get("precision", "auto") != "auto":
        precisions = [compute["precision"]]
    else:
        precisions = ["float32"]
        features = set(device["cpu"]["features"])
        if on_gpu or features & {"avx512_bf16", "amx_bf16"}:
            precisions.append("mixed_bfloat16")
        if on_gpu:
            precisions.append("mixed_float16")
    requested_jit = compute.get("jit_compile", "auto")
    requested_determinism = compute.get("deterministic", "auto")
    found = []
    for backend in backends:
        if backend == "jax":
            jits = [True]
        elif backend == "torch":
            jits = [False]
        else:
            jits = [False, True]
        if requested_jit != "auto":
            jits = [requested_jit]
        for precision in precisions:
            for jit in jits:
                if requested_determinism != "auto":
                    deterministic = requested_determinism
                else:  # TensorFlow's op determinism excludes XLA
                    deterministic = not (backend == "tensorflow" and jit)
                if backend == "tensorflow" and jit and deterministic:
                    continue  # refused when the config is read; never a candidate
                found.append(Choice(backend, precision, jit, deterministic))
    found.sort(key=lambda choice: choice != REFERENCE)
    return found


def _lock(path: Path):
    """An exclusive lock on ``path`` (a file beside the record), held until closed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def read_record(path: Path) -> dict | None:
    """The tuning record at ``path``, or None when there is none or it is out of date
    (another format, or other software: it is then measured again)."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise TuningError(
            f"{path}: unreadable tuning record ({error}); delete it to measure again"
        ) from None
    if record.get("format") != TUNING_FORMAT:
        return None
    software = record.get("software") or {}
    if software != software_versions([name for name in software if name != "keras"]):
        return None
    return record


def _child_command(mode: str, job: dict) -> list[str]:
    return [sys.executable, "-m", "smoothbench.tuning", mode, json.dumps(job)]


def _run_child(mode: str, job: dict, backend: str, log) -> list[dict]:
    """Run one measuring process; its result lines (one per candidate)."""
    environment = {**os.environ, "KERAS_BACKEND": backend}
    source = str(Path(__file__).resolve().parents[1])
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


def _child_job(settings, compute: dict, choices, scratch: Path, **extra) -> dict:
    """What a measuring or resume-checking process is given: the run's settings, its
    threads and GPUs, the candidates, the scratch folder, and ``extra``."""
    return {
        "settings": settings.as_dict(),
        "compute": {key: compute[key] for key in ("threads_per_job",) if key in compute}
        | {"gpus_given": compute.get("gpus_given")},
        "choices": [choice.as_dict() for choice in choices],
        "scratch": str(scratch),
        **extra,
    }


def measure(
    settings,
    compute: dict,
    folder: Path,
    log: Callable[[str], None],
    seconds: float | None = None,
) -> dict:
    """Time every candidate, check the fastest resume bit-exactly, and return the record
    (not written; :func:`tune` writes it)."""
    device = device_description(compute)
    choices = candidates(compute, device)
    if not choices:
        raise TuningError(
            "config keys compute.backend, compute.precision, compute.jit_compile and compute.deterministic "
            "leave no setting to train with"
        )
    seconds = compute.get("tuning_seconds", 3.0) if seconds is None else seconds
    rounds = compute.get("tuning_rounds", 3)
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


def tune(
    settings, compute: dict, folder: Path | str, log: Callable[[str], None]
) -> tuple[dict, Path]:
    """The record for this run's kind and device: read, or measured and written (one
    job measures, the others of the kind wait on its lock)."""
    device = device_description(compute)
    path = record_path(folder, device, work_description(settings), compute)
    record = read_record(path)
    if record is not None:
        return record, path
    with contextlib.closing(_lock(path.with_suffix(".lock"))):
        record = read_record(path)  # another job may have measured it meanwhile
        if record is not None:
            return record, path
        log(
            f"tuning: measuring compute settings for this kind of run on {device['name']} (once; then {path})"
        )
        record = measure(settings, compute, Path(folder), log)
        with storage.atomic_file(path, "w") as stream:
            stream.write(json.dumps(record, indent=1) + "\n")
    return record, path


def open_keys(compute: dict) -> list[str]:
    """The compute keys left to ``auto``."""
    return [key for key in COMPUTE_KEYS if compute.get(key, "auto") == "auto"]


def tuning_folder(compute: dict, results_folder: Path | str = "results") -> Path:
    """Where measured choices are kept: config key compute.tuning_folder, else
    $SMOOTHBENCH_TUNING_FOLDER, else ``{results_folder}/tuning``."""
    return Path(
        compute.get("tuning_folder")
        or os.environ.get("SMOOTHBENCH_TUNING_FOLDER")
        or Path(results_folder) / "tuning"
    )


def worth_measuring(compute: dict, training_images: int | None) -> tuple[bool, str]:
    """Whether compute.tune asks a run that trains on ``training_images`` images
    (training examples x epochs; None: not known) to measure, and why not where not."""
    tune = compute.get("tune", "auto")
    if tune == "auto":
        threshold = compute["tune_from_images"]
        if training_images is not None and training_images >= threshold:
            return True, ""
        return False, (
            f"compute.tune auto: this run trains on {training_images} images, under "
            f"compute.tune_from_images ({threshold}), too few for measuring to pay for "
            "itself; auto is the fixed rule"
        )
    return bool(tune), "" if tune else "compute.tune false: auto is the fixed rule"


def choose(
    settings,
    compute: dict,
    earlier_attempts: list[dict],
    log,
    training_images: int | None = None,
) -> tuple[dict, dict | None]:
    """``compute`` with its ``auto`` keys replaced by measured values, and what was
    measured (device, choice, record, reason: an attempt's ``tuned`` in metrics.json).

    ``compute`` as it is and None when no key is auto, or compute.tune does not ask
    this run to measure (:func:`worth_measuring`; ``training_images``: training
    examples x epochs). ``earlier_attempts``: the attempts of the run's checkpoint; a
    resumed run keeps the choice of its last attempt on the same device."""
    if compute.get("backend", "auto") == "auto" and "keras" in sys.modules:
        # this process already runs Keras (a notebook, a test): its backend stays
        compute = compute | {"backend": sys.modules["keras"].backend.backend()}
    keys = open_keys(compute)
    if not keys:
        return compute, None
    measure_it, why_not = worth_measuring(compute, training_images)
    if not measure_it:
        log(why_not)
        return compute, None
    if (
        compute.get("gpus_given")
        and not compute.get("cpu_fallback")
        and not gpu_names(compute["gpus_given"])
    ):
        # given GPUs but no NVIDIA driver: the job stops before training, unmeasured
        return compute, None
    device = device_description(compute)["name"]
    for attempt in reversed(earlier_attempts):
        earlier = attempt.get("tuned")
        if earlier and earlier.get("device") == device:
            return compute | {key: earlier["choice"][key] for key in keys}, earlier | {
                "reason": f"measured ({earlier['record']}), kept from the run's earlier attempt"
            }
    record, path = tune(settings, compute, tuning_folder(compute), log)
    chosen = record["chosen"]
    speed = record.get("speed_over_reference")
    return compute | {key: chosen[key] for key in keys}, {
        "device": device,
        "choice": chosen,
        "record": str(path),
        "reason": "measured: the fastest that resumes bit-exactly"
        + (f", {speed:.2f}x the reference" if speed else "")
        + f" ({path})",
    }


# --- the measuring processes -------------------------------------------------------


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

    from smoothbench import network

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
    training job feeds them (:class:`smoothbench.data.ArrayBatches`)."""
    from smoothbench.data import ArrayBatches

    start, stop = first * batch_size, (first + steps) * batch_size
    model.fit(
        ArrayBatches(images[start:stop], labels[start:stop], batch_size),
        epochs=1,
        shuffle=False,
        verbose=0,
    )


def _start_child(job: dict):
    from smoothbench import acceleration, training
    from smoothbench.study import RunSettings

    settings = RunSettings.from_dict(job["settings"])
    choices = [Choice.from_dict(choice) for choice in job["choices"]]
    backend = acceleration.select_backend(choices[0].backend)
    acceleration.prepare_environment(backend, job["compute"].get("gpus_given"))
    training.configure_backend(
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

    from smoothbench import acceleration, checkpoint
    from smoothbench.data import ArrayBatches

    device = acceleration.describe_accelerators(acceleration.visible_accelerators())
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
    from smoothbench import checkpoint

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
    argv = sys.argv[1:] if argv is None else argv
    mode, job = argv[0], json.loads(argv[1])
    {"--measure": child_measure, "--resume-check": child_resume_check}[mode](job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
