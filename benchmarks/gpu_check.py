#!/usr/bin/env python
"""The GPU check: what smoothbench does on one NVIDIA GPU, in under 8 minutes.

Made for a GPU machine with JAX (and no TensorFlow): everything runs under
``KERAS_BACKEND=jax``. It needs Keras, jsonschema and PyYAML besides JAX (carry them as
wheels where they are missing: benchmarks/README.md, "The GPU check").

1. Throughput (:mod:`benchmark_training`'s ``ours-jax`` measurement, each in its own
   process): ResNet-20 v1 at 32 px and ResNet v2-83 at 32 and 72 px, alone and with 4
   and 8 processes sharing the GPU at once (each with JAX's on-demand memory, as
   ``compute.runs_per_gpu`` sets it). Shared rows give each process's own images/s and
   the sum over the processes. ResNet-20 is measured again, alone and 8 at once, with
   ``--steps-per-execution`` steps per call (``compute.steps_per_execution``; variants
   ``ours-jax-spe8``, ``ours-jax-spe8-shared8``): at batch 32 a GPU step takes
   milliseconds, and Python's work between steps is a large share of it.
2. One real training job: Fashion-MNIST (Debian's ``dataset-fashion-mnist`` files,
   read without TensorFlow and prepared with :func:`smoothbench.data.preparation.prepare_arrays`),
   ResNet-20 v1 for ``--epochs`` epochs through :func:`smoothbench.train.loop.train`,
   given the GPU (so it refuses the CPU); its best validation accuracy must reach
   ``--min-accuracy``.

It writes ``--output`` (a CSV in benchmark_training.py's columns, plus
``runs_sharing`` and ``total_images_per_second``; variants ``ours-jax`` and
``ours-jax-shared4``/``-shared8``, so that ``smoothbench-cost --throughput FILE
--variant ours-jax`` prices with it) and ``--summary`` (JSON: the device, each figure,
a CIFAR-10 epoch of ResNet-20 v1 derived from its throughput, the training job's
accuracy and seconds per epoch). Each step stops at ``--budget-seconds`` and says what
it left out. ``--smoke`` shrinks everything to check the script itself on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "src"))
sys.path.insert(0, str(REPOSITORY / "benchmarks"))

import benchmark_training  # noqa: E402  (its configurations, columns and measurement)

SHARING = (1, 4, 8)
CIFAR10_IMAGES = (50000, 10000)  # train, test
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "validation": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def device_name() -> str:
    """The GPU as nvidia-smi names it, else what JAX sees."""
    try:
        listing = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,memory.total,driver_version",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if listing.returncode == 0 and listing.stdout.strip():
            return listing.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "no nvidia-smi (CPU?)"


def measure_together(
    configuration: dict, processes: int, arguments, steps_per_execution: int = 1
) -> list[dict]:
    """``processes`` measurements of ``configuration`` at once, one process each."""
    steps = arguments.steps or configuration["steps"]
    variant = "ours-jax"
    if steps_per_execution > 1:
        variant = f"ours-jax-spe{steps_per_execution}"
        benchmark_training.VARIANTS[variant] = {
            **benchmark_training.VARIANTS["ours-jax"],
            "steps_per_execution": steps_per_execution,
        }
    command = benchmark_training.child_command(
        configuration,
        variant,
        steps,
        32,
        arguments.warmup,
        arguments.repeats,
        max(1, (os.cpu_count() or 1) // processes),
    )
    environment = {**os.environ, "KERAS_BACKEND": "jax"}
    if (
        processes > 1
    ):  # what compute.runs_per_gpu > 1 sets (smoothbench.compute.backends)
        environment["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    running = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(processes)
    ]
    results = []
    for process in running:
        stdout, stderr = process.communicate(timeout=arguments.budget_seconds)
        measured = benchmark_training.child_result(stdout)
        if process.returncode != 0 or measured is None:
            raise RuntimeError(
                f"{configuration['name']} x{processes}: {stderr[-3000:]}"
            )
        results.append(measured)
    total = round(sum(result["images_per_second"] for result in results), 2)
    for result in results:
        result["variant"] = (
            variant if processes == 1 else f"{variant}-shared{processes}"
        )
        result["runs_sharing"] = processes
        result["total_images_per_second"] = total
    return results


def read_idx(path: Path):
    """An idx file (MNIST's format, gzipped) as a NumPy array."""
    import numpy as np

    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dimensions = data[3]
    shape = [
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions)
    ]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def train_fashion_mnist(arguments, workdir: Path) -> dict:
    """Prepare Fashion-MNIST from its idx files and train ResNet-20 v1 on the GPU."""
    import numpy as np

    from smoothbench.data.preparation import prepare_arrays
    from smoothbench.study import load_study
    from smoothbench.train.loop import train

    source = Path(arguments.fashion_mnist)
    arrays = {}
    for role, (images, labels) in FASHION_FILES.items():
        pixels = read_idx(source / images)[..., None]
        targets = read_idx(source / labels).astype(np.int32)
        if arguments.smoke:
            pixels, targets = pixels[:512], targets[:512]
        arrays[role] = (np.ascontiguousarray(pixels), targets)
    names = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    prepared = workdir / "prepared"
    prepare_arrays("fashion_mnist", arrays, names, prepared)
    study = load_study(
        {
            "protocol": {
                "model": "resnet_v1",
                "depth": 20,
                "epochs": arguments.epochs,
                "augmentation": {"horizontal_flip": False},
                "gammas": [0.9],
            },
            "compute": {
                "gpus_per_job": 1,
                "backend": "jax",
                "threads_per_job": os.cpu_count() or 1,
            },
            "experiments": {"fashion_mnist": {}},
        }
    )
    settings = study.train_settings("fashion_mnist", "gamma", "0.9", 0)
    compute = dataclasses.replace(
        study.compute_settings("fashion_mnist"),
        gpus_given=None if arguments.smoke else "the GPU check's one GPU",
    )
    started = time.perf_counter()
    metrics = train(
        settings,
        compute,
        prepared,
        workdir / "run",
        log=lambda line: print("  " + line, flush=True),
    )
    return {
        "dataset": "fashion_mnist",
        "network": metrics["model"],
        "epochs": metrics["epochs"],
        "train_images": metrics["prepared_data"]["train_examples"],
        "best_val_accuracy": metrics["best_val_accuracy"],
        "train_seconds": metrics["train_seconds"],
        "seconds_per_epoch": round(metrics["train_seconds"] / metrics["epochs"], 2),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "device": metrics["device"],
        "precision": metrics["attempts"][-1]["precision"],
        "jit_compile": metrics["attempts"][-1]["jit_compile"],
        "backend": metrics["attempts"][-1]["backend"],
        "deterministic": metrics["attempts"][-1]["deterministic"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", default=str(REPOSITORY / "results" / "benchmarks" / "gpu_check.csv")
    )
    parser.add_argument(
        "--summary",
        default=str(REPOSITORY / "results" / "benchmarks" / "gpu_check.json"),
    )
    parser.add_argument(
        "--fashion-mnist",
        default=os.environ.get(
            "FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"
        ),
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-accuracy", type=float, default=0.85)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--budget-seconds", type=float, default=400, help="for the throughput part"
    )
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=8,
        help="steps per call for ResNet-20's second measurement (1: none)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, to check the script on a CPU"
    )
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.warmup, arguments.steps, arguments.repeats, arguments.epochs = (
            1,
            2,
            1,
            1,
        )
        arguments.min_accuracy = 0.0
        # JAX compiles the N steps of a call together: 2 checks the path at a toy cost
        arguments.steps_per_execution = min(arguments.steps_per_execution, 2)
    started = time.monotonic()
    summary = {"device": device_name(), "throughput": [], "left_out": []}
    print(f"device: {summary['device']}", flush=True)
    rows = []
    configurations = (
        benchmark_training.CONFIGURATIONS[:1]
        if arguments.smoke
        else benchmark_training.CONFIGURATIONS
    )
    sharing = (1, 2) if arguments.smoke else SHARING
    # ResNet-20 first, then again with several steps per call (alone and with the most
    # runs sharing), then the larger networks, so that a budget cut leaves those out
    plan = [(configurations[0], processes, 1) for processes in sharing]
    if arguments.steps_per_execution > 1:
        plan += [
            (configurations[0], processes, arguments.steps_per_execution)
            for processes in (sharing[0], sharing[-1])
        ]
    plan += [
        (configuration, processes, 1)
        for configuration in configurations[1:]
        for processes in sharing
    ]
    for configuration, processes, per_call in plan:
        if time.monotonic() - started > arguments.budget_seconds:
            summary["left_out"].append(
                f"{configuration['name']} x{processes}"
                + (f", {per_call} steps per call" if per_call > 1 else "")
                + ": past --budget-seconds"
            )
            continue
        results = measure_together(configuration, processes, arguments, per_call)
        rows += results
        line = {
            "configuration": configuration["name"],
            "runs_sharing": processes,
            "steps_per_execution": per_call,
            "images_per_second_each": [
                result["images_per_second"] for result in results
            ],
            "total_images_per_second": results[0]["total_images_per_second"],
            "peak_device_mb": [result["peak_device_mb"] for result in results],
            "precision": results[0]["precision"],
            "jit_compile": results[0]["jit_compile"],
        }
        summary["throughput"].append(line)
        print(json.dumps(line), flush=True)
    alone = next(
        (
            row
            for row in rows
            if row["configuration"] == benchmark_training.CONFIGURATIONS[0]["name"]
            and row["variant"] == "ours-jax"
        ),
        None,
    )
    if alone:
        rate = alone["images_per_second"]
        # derived: training at the measured rate, evaluation 3x faster (smoothbench.tools.cost_estimate)
        summary["cifar10_epoch_seconds_resnet20_v1"] = round(
            CIFAR10_IMAGES[0] / rate + CIFAR10_IMAGES[1] / (3 * rate), 2
        )
    output = Path(arguments.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    columns = [*benchmark_training.COLUMNS, "runs_sharing", "total_images_per_second"]
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(
            {"round": 1, **row, "device": summary["device"]} for row in rows
        )
    with tempfile.TemporaryDirectory() as workdir:
        summary["training"] = train_fashion_mnist(arguments, Path(workdir))
    print(json.dumps(summary["training"]), flush=True)
    summary["seconds"] = round(time.monotonic() - started, 1)
    Path(arguments.summary).write_text(json.dumps(summary, indent=2) + "\n")
    accuracy = summary["training"]["best_val_accuracy"]
    if accuracy < arguments.min_accuracy:
        print(
            f"FAILED: Fashion-MNIST best val_accuracy {accuracy:.4f} < {arguments.min_accuracy}",
            file=sys.stderr,
        )
        return 1
    print(
        f"gpu check: passed in {summary['seconds']} s; {output} and {arguments.summary} written",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
