#!/usr/bin/env python
"""Training throughput: smoothbench's training step and input pipeline against the way
the paper's recipe fed Keras (legacy ``ImageDataGenerator`` into ``model.fit``).

For each configuration (model, depth, image shape) every variant trains the same ResNet
at batch 32 on the same synthetic uint8 images. Each measurement is a fresh process;
the variants take turns, ``--rounds`` times, so that a slow spell of a shared machine
hits all of them alike. The script prints and writes (``results/benchmarks/throughput.csv``,
one line per process):

- images/s after warm-up (the first ``--warmup`` steps, compilation included, are not
  timed): the median of ``--repeats`` timed windows of ``--steps`` steps; the summary
  takes the median over rounds and gives each variant's ratio to the baseline, all
  measured side by side in this one run;
- the input-wait share: 1 - (time of the same steps fed from arrays already in memory) /
  (time fed by the variant's own input pipeline), i.e. the share of step time the
  pipeline adds (Keras fetches batches inside its step function, so callbacks cannot
  see the wait directly);
- the peak resident memory of the process (and of the GPU, where there is one).

Variants (``--variants``):

- ``baseline``: float32 images mean-subtracted up front on the host, augmented image by
  image by ``ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
  horizontal_flip=True, fill_mode="nearest").flow(...)``, the same classifier, Keras'
  categorical cross-entropy with ``label_smoothing`` on one-hot labels; TensorFlow,
  float32, no XLA.
- ``ours``: uint8 batches from :class:`smoothbench.data.batches.ArrayBatches`, mean subtraction,
  padding and augmentation inside the model (:func:`smoothbench.train.network.build_model`),
  eq. 7's loss on logits, with a training job's default settings on this machine
  (TensorFlow, ``deterministic: true``, ``auto`` precision - mixed on recent GPUs,
  float32 on a CPU - and so no XLA: :mod:`smoothbench.compute.backends`).
- ``ours-xla``: ``ours`` with ``deterministic: false``, so that ``auto`` turns XLA on;
- ``ours-bfloat16``: ``ours`` with ``mixed_bfloat16`` forced on (what ``auto`` chooses on
  a recent GPU; measured to show whether it pays on this device);
- ``ours-jax``: ``ours`` under ``KERAS_BACKEND=jax`` (XLA always; when JAX is installed).
- ``ours-tuned`` (with ``--compute compute.yaml``): ``ours`` under the compute block that
  ``smoothbench-tune`` wrote for this machine, beside ``ours`` in the same run.

Run: ``python benchmarks/benchmark_training.py`` or ``make benchmark`` (every
configuration and variant: hours on 2 CPU cores, where bfloat16 is emulated);
``--quick`` measures ResNet-20 v1 on 32x32x3 only (16 minutes on 2 cores with every
variant, 5 without ``ours-bfloat16``); ``--configurations`` and ``--variants`` pick
others.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "src"))

CONFIGURATIONS = [
    # steps: timed steps per window, chosen so a window takes 5-15 s on a 2-core CPU
    {
        "name": "resnet_v1-20 32x32x3",
        "model": "resnet_v1",
        "depth": 20,
        "shape": [32, 32, 3],
        "steps": 20,
    },
    {
        "name": "resnet_v2-83 32x32x3",
        "model": "resnet_v2",
        "depth": 83,
        "shape": [32, 32, 3],
        "steps": 8,
    },
    {
        "name": "resnet_v2-83 72x72x3",
        "model": "resnet_v2",
        "depth": 83,
        "shape": [72, 72, 3],
        "steps": 3,
    },
]
# deterministic: compute.deterministic (TensorFlow's op determinism, which excludes XLA).
# "onednn": TensorFlow's oneDNN kernels (compute.onednn): None leaves
# TF_ENABLE_ONEDNN_OPTS unset (TensorFlow's own default on this CPU), "auto" is the
# training job's rule (smoothbench.compute.onednn.resolve_onednn), True/False set it.
VARIANTS = {
    "baseline": {"backend": "tensorflow", "deterministic": False, "onednn": None},
    # what a training job trains with: compute auto's fixed rule (main() resolves it)
    "ours": {"auto": True},
    # what a training job trains with under the block of --compute FILE (as
    # smoothbench-tune writes it): only with --compute
    "ours-tuned": {"auto": True},
    # TensorFlow float32 without XLA, with op determinism: auto's rule on the CPU, with
    # oneDNN off (the default before compute.onednn, and TensorFlow's on AVX2 CPUs) ...
    "reference": {
        "backend": "tensorflow",
        "precision": "float32",
        "jit_compile": False,
        "deterministic": True,
        "onednn": False,
    },
    # ... and on (auto's rule on an x86-64 CPU since compute.onednn)
    "reference-onednn": {
        "backend": "tensorflow",
        "precision": "float32",
        "jit_compile": False,
        "deterministic": True,
        "onednn": True,
    },
    "ours-xla": {
        "backend": "tensorflow",
        "precision": "float32",
        "jit_compile": True,
        "deterministic": False,
        "onednn": "auto",
    },
    "ours-bfloat16": {
        "backend": "tensorflow",
        "precision": "mixed_bfloat16",
        "jit_compile": False,
        "deterministic": True,
        "onednn": "auto",
    },
    "ours-jax": {
        "backend": "jax",
        "precision": "float32",
        "jit_compile": True,
        "deterministic": True,
        "onednn": False,
    },
}
RESULT_PREFIX = "RESULT "  # a --child process's measurement line
COLUMNS = [
    "configuration",
    "variant",
    "round",
    "model",
    "depth",
    "image_shape",
    "batch_size",
    "timed_steps",
    "repeats",
    "images_per_second",
    "window_images_per_second",
    "input_wait_share",
    "peak_rss_mb",
    "peak_device_mb",
    "device",
    "backend",
    "precision",
    "jit_compile",
    "keras",
    "threads",
    "baseline_kind",
    "deterministic",
    "onednn",
    "steps_per_execution",
]
CEILING_COLUMNS = [
    "configuration",
    "precision",
    "onednn",
    "convolutions",
    "mflop_per_image",
    "gflops_without_xla",
    "gflops_with_xla",
    "images_per_second",
]


def _settings(configuration: dict, batch_size: int, num_classes: int) -> dict:
    return {
        "experiment": "benchmark",
        "dataset": "synthetic",
        "num_classes": num_classes,
        "image_shape": configuration["shape"],
        "model": configuration["model"],
        "depth": configuration["depth"],
        "pooling": "fixed_8x8",
        "min_image_size": 32,
        "epochs": 1,
        "batch_size": batch_size,
        "optimizer": {"name": "adam", "learning_rate": 1e-3, "schedule": []},
        "augmentation": {"shift": 0.1, "horizontal_flip": True},
        "mean_subtraction": True,
        "method": "gamma",
        "value": 0.9,
        "seed": 0,
    }


def onednn_environment(environment: dict, backend: str, requested) -> dict:
    """``environment`` with TF_ENABLE_ONEDNN_OPTS as a variant asks: unset (None),
    the training job's rule ("auto") or on/off."""
    from smoothbench.compute import onednn

    environment = dict(environment)
    environment.pop(onednn.VARIABLE, None)
    if requested is not None and backend == "tensorflow":
        if requested == "auto":
            requested, _ = onednn.resolve_onednn("auto", backend)
        environment[onednn.VARIABLE] = "1" if requested else "0"
    return environment


def _onednn_state(backend: str) -> bool:
    """Whether this process's TensorFlow runs with oneDNN (False under another backend)."""
    from smoothbench.compute import onednn

    return backend == "tensorflow" and onednn.tensorflow_enabled()


def measure_peak(threads: int, repeats: int, size: int = 2048) -> dict:
    """The machine's practical peak: a large float32 matrix product (NumPy's BLAS, on
    ``threads`` threads, set by the parent's environment), best of ``repeats`` products
    after one warm-up; bfloat16 the same through TensorFlow where the CPU has bfloat16
    units (AVX-512 BF16 or AMX), else ''."""
    import numpy as np

    from smoothbench.compute import onednn

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    flop = 2 * size**3

    def best(multiply) -> float:
        multiply()
        times = []
        for _ in range(max(3, repeats)):
            began = time.perf_counter()
            multiply()
            times.append(time.perf_counter() - began)
        return flop / min(times) / 1e9

    float32 = best(lambda: a @ b)
    bfloat16: float | str = ""
    if onednn.cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        import tensorflow as tf

        x, y = (tf.constant(m, dtype=tf.bfloat16) for m in (a, b))
        bfloat16 = round(best(lambda: tf.linalg.matmul(x, y).numpy()), 1)
    return {
        "matrix_size": size,
        "threads": threads,
        "float32_gflops": round(float32, 1),
        "bfloat16_gflops": bfloat16,
    }


def measure(
    configuration: dict,
    variant: str,
    batch_size: int,
    warmup: int,
    steps: int,
    repeats: int,
    threads: int,
) -> dict:
    """Train ``warmup + steps x repeats`` steps of one variant in this process; time each window of ``steps``."""
    import numpy as np

    from smoothbench.compute import backends
    from smoothbench.settings import RunSettings
    from smoothbench.train import network

    choice = VARIANTS[variant]
    backend = backends.configure_backend(threads, deterministic=choice["deterministic"])
    import keras

    if backend != choice["backend"]:
        sys.exit(
            f"variant {variant} needs Keras backend {choice['backend']}, got {backend}"
        )
    accelerators = backends.visible_accelerators()
    capabilities = backends.gpu_compute_capabilities(accelerators)
    if variant == "baseline":
        precision, jit_compile = "float32", False
    else:  # auto, as a training job resolves it (smoothbench.compute.decisions.decide)
        precision, _ = backends.resolve_precision(choice["precision"], capabilities)
        jit_compile, _ = backends.resolve_jit_compile(
            choice["jit_compile"], backend, bool(capabilities), choice["deterministic"]
        )
    num_classes = 10
    settings = _settings(configuration, batch_size, num_classes)
    # compute.steps_per_execution: Keras calls back once per call of N steps, so the
    # windows start and end at call boundaries
    per_call = int(choice.get("steps_per_execution", 1))
    warmup = max(per_call, math.ceil(warmup / per_call) * per_call)
    steps = math.ceil(steps / per_call) * per_call
    total_steps = warmup + steps * repeats
    count = batch_size * total_steps
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, *configuration["shape"]), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=count).astype(np.int32)
    mean = images.astype(np.float32).mean(axis=0) / 255.0
    baseline_kind = ""
    if variant != "baseline":
        from smoothbench.data.batches import ArrayBatches

        # as a training job builds it (seeded, compiled, the optimizer's variables built)
        _, model, _ = network.build_for_training(
            RunSettings.from_dict(settings), mean, precision, jit_compile, per_call
        )
        batches = ArrayBatches(images, labels, batch_size)
    else:
        try:
            from keras.src.legacy.preprocessing.image import ImageDataGenerator

            baseline_kind = "keras legacy ImageDataGenerator"
        except ImportError:  # pragma: no cover - Keras without its legacy namespace
            sys.exit(
                "this Keras has no legacy ImageDataGenerator; install keras>=3 with keras.src.legacy"
            )
        from smoothbench.models.shapes import padding_to
        from smoothbench.train.losses import alpha_from_gamma

        pad = padding_to(tuple(configuration["shape"]), 32)
        # the example subtracts the mean up front
        centred = images.astype(np.float32) / 255.0 - mean
        if any(sum(side) for side in pad):
            centred = np.pad(centred, ((0, 0), *pad, (0, 0)))
        generator = ImageDataGenerator(
            width_shift_range=0.1,
            height_shift_range=0.1,
            horizontal_flip=True,
            fill_mode="nearest",
        )
        one_hot = np.eye(num_classes, dtype=np.float32)[labels]
        batches = generator.flow(
            centred, one_hot, batch_size=batch_size, shuffle=True, seed=0
        )
        # the example's network alone, compiled its own way (no augmentation layers)
        keras.utils.set_random_seed(settings["seed"])
        model, _ = network.build_model(RunSettings.from_dict(settings), mean)
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=alpha_from_gamma(0.9, num_classes)
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=loss,
            metrics=["accuracy"],
            jit_compile=False,
        )

    ends: dict[int, float] = {}  # step (the last of a call) -> when it ended

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            # wait for the step (JAX and TensorFlow dispatch asynchronously)
            float(logs["loss"])
            ends[batch] = time.perf_counter()

    def timed(data, **options) -> list[float]:
        """Seconds of each window of ``steps`` steps after the first ``warmup`` steps on ``data``."""
        ends.clear()
        model.fit(
            data,
            epochs=1,
            steps_per_epoch=total_steps,
            verbose=0,
            callbacks=[Clock()],
            **options,
        )
        return [
            ends[warmup + (r + 1) * steps - 1] - ends[warmup + r * steps - 1]
            for r in range(repeats)
        ]

    windows = timed(batches, shuffle=False)
    # The same steps on batches already in memory (Keras slices the arrays itself): what is
    # left when the input pipeline costs nothing. The rest of the time above is input wait.
    if variant != "baseline":
        compute = timed(images, y=labels, batch_size=batch_size, shuffle=False)
    else:
        augmented_images, augmented_labels = zip(
            *(batches[index] for index in range(total_steps))
        )
        compute = timed(
            np.concatenate(augmented_images),
            y=np.concatenate(augmented_labels),
            batch_size=batch_size,
            shuffle=False,
        )
    span, compute_span = statistics.median(windows), statistics.median(compute)
    device_peak = ""
    if capabilities and backend == "tensorflow":
        import tensorflow as tf

        device_peak = round(
            tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1
        )
    elif capabilities and backend == "jax":
        import jax

        device_peak = round(
            jax.devices()[0].memory_stats().get("peak_bytes_in_use", 0) / 2**20, 1
        )
    return {
        "configuration": configuration["name"],
        "variant": variant,
        "model": configuration["model"],
        "depth": configuration["depth"],
        "image_shape": "x".join(map(str, configuration["shape"])),
        "batch_size": batch_size,
        "timed_steps": steps,
        "repeats": repeats,
        "images_per_second": round(steps * batch_size / span, 2),
        "window_images_per_second": " ".join(
            f"{steps * batch_size / window:.1f}" for window in windows
        ),
        "input_wait_share": round(max(0.0, 1 - compute_span / span), 4),
        "peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
        "peak_device_mb": device_peak,
        "device": backends.describe_accelerators(accelerators),
        "backend": backend,
        "precision": precision,
        "jit_compile": jit_compile,
        "keras": keras.__version__,
        "threads": threads,
        "baseline_kind": baseline_kind,
        "deterministic": choice["deterministic"],
        "onednn": _onednn_state(backend),
        "steps_per_execution": per_call,
    }


def measure_ceiling(
    configuration: dict, precision: str, batch_size: int, threads: int, repeats: int
) -> dict:
    """The convolution-bound rate: every convolution of the network alone (forward, and
    the gradients of its input and kernel), at the same batch and precision, timed one
    at a time under TensorFlow with and without XLA; the faster sum bounds a step."""
    import numpy as np

    from smoothbench.compute import backends
    from smoothbench.train import network

    backends.configure_backend(threads, deterministic=False)
    import keras
    import tensorflow as tf

    keras.config.set_dtype_policy(precision)
    settings = _settings(configuration, batch_size, 10)
    mean = np.zeros(configuration["shape"], dtype=np.float32)
    classifier, _ = network.build_model(settings, mean)
    dtype = (
        tf.bfloat16
        if precision == "mixed_bfloat16"
        else (tf.float16 if precision == "mixed_float16" else tf.float32)
    )
    convolutions = [
        layer
        for layer in classifier._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Conv2D)
    ]
    rng = np.random.default_rng(0)
    totals = {False: 0.0, True: 0.0}
    flop = 0.0
    for layer in convolutions:
        height, width, channels = layer.input.shape[1:]
        kernel = layer.kernel.shape
        strides = layer.strides
        out_height = -(-height // strides[0])
        out_width = -(-width // strides[1])
        # forward 2 flop per multiply-add; the two gradients twice that again
        flop += (
            3
            * 2
            * out_height
            * out_width
            * kernel[0]
            * kernel[1]
            * kernel[2]
            * kernel[3]
        )
        inputs = tf.constant(
            rng.standard_normal((batch_size, height, width, channels)), dtype=dtype
        )
        weights = tf.constant(rng.standard_normal(tuple(kernel)) * 0.1, dtype=dtype)
        for xla in (False, True):

            @tf.function(jit_compile=xla)
            def step(x, k):
                with tf.GradientTape() as tape:
                    tape.watch([x, k])
                    y = tf.nn.conv2d(
                        x, k, strides=list(strides), padding=layer.padding.upper()
                    )
                    total = tf.reduce_sum(tf.cast(y, tf.float32))
                return tape.gradient(total, [x, k])

            for _ in range(2):  # compile, warm up
                [g.numpy() for g in step(inputs, weights)]
            times = []
            for _ in range(max(3, repeats)):
                began = time.perf_counter()
                [g.numpy() for g in step(inputs, weights)]
                times.append(time.perf_counter() - began)
            totals[xla] += statistics.median(times)
    best = min(totals.values())
    return {
        "configuration": configuration["name"],
        "precision": precision,
        "onednn": _onednn_state("tensorflow"),
        "convolutions": len(convolutions),
        "mflop_per_image": round(flop / 1e6, 1),
        "gflops_without_xla": round(flop * batch_size / totals[False] / 1e9, 1),
        "gflops_with_xla": round(flop * batch_size / totals[True] / 1e9, 1),
        "images_per_second": round(batch_size / best, 1),
    }


def ours_choice(compute_file: str | None) -> dict:
    """What a training job trains with: compute auto's fixed rule
    (:func:`smoothbench.compute.decisions.decide`), or with ``compute_file`` the ``compute:``
    block of that config file (what smoothbench-tune writes), its study-wide keys. The
    backend and op determinism are settled here; the precision and XLA, which depend on
    the GPUs the backend sees, in the measuring process."""
    from smoothbench.compute import decisions
    from smoothbench.config import validate_config
    from smoothbench.settings import COMPUTATION_KEYS, ComputeSettings

    block: dict = {}
    found: dict | None = None
    if compute_file:
        found = (yaml.safe_load(Path(compute_file).read_text()) or {}).get("compute")
        block = {key: found[key] for key in COMPUTATION_KEYS if key in (found or {})}
    config = validate_config({"experiments": {"digits": {}}, "compute": block})
    compute = ComputeSettings.from_config(config["compute"])
    backend = decisions.choose_backend(compute)
    deterministic, _ = decisions.choose_determinism(compute, backend)
    from smoothbench.compute.onednn import resolve_onednn

    onednn, _ = resolve_onednn(
        (found or {}).get("onednn", "auto") if compute_file else "auto", backend
    )
    choice = compute.requested() | {
        "backend": backend,
        "deterministic": deterministic,
        "onednn": onednn,
    }
    print(
        f"ours = {choice} ({'the compute block of ' + compute_file if compute_file else 'compute auto'})",
        flush=True,
    )
    return choice


def child_command(
    configuration: dict,
    variant: str,
    steps: int,
    batch_size: int,
    warmup: int,
    repeats: int,
    threads: int,
) -> list[str]:
    """The command that measures one variant in a process of its own (``--child``);
    its result is the line :func:`child_result` reads."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        json.dumps([configuration, variant, steps, VARIANTS[variant]]),
        "--batch-size",
        str(batch_size),
        "--warmup",
        str(warmup),
        "--repeats",
        str(repeats),
        "--threads",
        str(threads),
    ]


def child_result(stdout: str) -> dict | None:
    """The measurement a ``--child`` process printed (its last RESULT line), or None."""
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(lines[-1][len(RESULT_PREFIX) :]) if lines else None


def available_variants() -> list[str]:
    """Every variant whose backend is installed."""
    return [
        name
        for name, choice in VARIANTS.items()
        if name != "ours-tuned"  # only with --compute
        and ("auto" in choice or importlib.util.find_spec(choice["backend"]))
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output",
        default=str(REPOSITORY / "results" / "benchmarks" / "throughput.csv"),
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="untimed steps first (compilation included)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help="timed steps per window (default: per configuration, 3 to 20)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed windows per process; their median counts",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="processes per variant, taking turns with the others",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=sorted(VARIANTS),
        help="default: every installed one",
    )
    parser.add_argument(
        "--configurations",
        nargs="+",
        type=int,
        choices=range(len(CONFIGURATIONS)),
        help="indices into: "
        + "; ".join(f"{i} {c['name']}" for i, c in enumerate(CONFIGURATIONS)),
    )
    parser.add_argument(
        "--quick", action="store_true", help="ResNet-20 v1 on 32x32x3 only"
    )
    parser.add_argument(
        "--no-ceiling",
        action="store_true",
        help="do not measure the convolution-bound rate",
    )
    parser.add_argument(
        "--compute",
        metavar="FILE",
        help="also measure ours-tuned: training under the compute block of this config "
        "file (as smoothbench-tune writes it), beside ours (compute auto's fixed rule)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling", help=argparse.SUPPRESS)
    parser.add_argument("--peak", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.peak:
        print(
            RESULT_PREFIX
            + json.dumps(measure_peak(arguments.threads, arguments.repeats))
        )
        return 0
    # one measurement, in its own process so that peak memory is its own
    if arguments.ceiling:
        configuration, precision = json.loads(arguments.ceiling)
        result = measure_ceiling(
            configuration,
            precision,
            arguments.batch_size,
            arguments.threads,
            arguments.repeats,
        )
        print(RESULT_PREFIX + json.dumps(result))
        return 0
    if arguments.child:
        configuration, variant, steps, choice = json.loads(arguments.child)
        VARIANTS[variant] = choice
        result = measure(
            configuration,
            variant,
            arguments.batch_size,
            arguments.warmup,
            steps,
            arguments.repeats,
            arguments.threads,
        )
        print(RESULT_PREFIX + json.dumps(result))
        return 0
    indices = (
        [0]
        if arguments.quick
        else (arguments.configurations or range(len(CONFIGURATIONS)))
    )
    configurations = [CONFIGURATIONS[index] for index in indices]
    variants = arguments.variants or available_variants()
    if arguments.compute and "ours-tuned" not in variants:
        variants = [*variants, "ours-tuned"]
    if "ours-tuned" in variants and not arguments.compute:
        parser.error("variant ours-tuned needs --compute FILE")
    if "baseline" not in variants:
        variants = ["baseline", *variants]  # every ratio is to the baseline
    results = []
    output = Path(arguments.output)

    def write_csv():  # after every measurement, atomically: an interrupted run keeps what it measured
        output.parent.mkdir(parents=True, exist_ok=True)
        temporary = output.with_name(f".{output.name}.tmp")
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(results)
        os.replace(temporary, output)

    from smoothbench.tools.tune_candidates import (
        cpu_description,
    )  # the CPU's features, as tune sees them

    cpu = cpu_description()
    print(
        f"CPU: {cpu['model']}, {cpu['logical_cpus']} logical CPUs; features: "
        + ", ".join(
            f"{feature} {'yes' if feature in cpu['features'] else 'no'}"
            for feature in ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
        ),
        flush=True,
    )
    # the physical yardstick, in the same run: a large float32 matrix product
    threads_text = str(arguments.threads)
    process = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--peak",
            "--threads",
            threads_text,
            "--repeats",
            str(arguments.repeats),
        ],
        capture_output=True,
        text=True,
        env=onednn_environment(
            {
                **os.environ,
                "OPENBLAS_NUM_THREADS": threads_text,
                "OMP_NUM_THREADS": threads_text,
                "MKL_NUM_THREADS": threads_text,
            },
            "tensorflow",
            "auto",
        ),
    )
    peak = child_result(process.stdout)
    if process.returncode != 0 or peak is None:
        print(process.stdout[-2000:] + process.stderr[-3000:], file=sys.stderr)
        return 1
    print(
        f"peak: {peak['float32_gflops']} GFLOP/s float32 ({peak['matrix_size']}x"
        f"{peak['matrix_size']} matrix product, {arguments.threads} threads)"
        + (
            f", {peak['bfloat16_gflops']} GFLOP/s bfloat16"
            if peak["bfloat16_gflops"]
            else ""
        ),
        flush=True,
    )
    ceilings: dict[tuple[str, str], dict] = {}
    chosen: dict[str, dict] = {}
    for configuration in configurations:
        steps = arguments.steps or configuration["steps"]
        resolved = dict(VARIANTS)
        if "ours" in variants:
            resolved["ours"] = chosen[configuration["name"]] = ours_choice(None)
        if "ours-tuned" in variants:
            resolved["ours-tuned"] = ours_choice(arguments.compute)
        for round_number in range(1, arguments.rounds + 1):
            for variant in variants:
                VARIANTS[variant] = resolved[variant]
                command = child_command(
                    configuration,
                    variant,
                    steps,
                    arguments.batch_size,
                    arguments.warmup,
                    arguments.repeats,
                    arguments.threads,
                )
                environment = onednn_environment(
                    {**os.environ, "KERAS_BACKEND": resolved[variant]["backend"]},
                    resolved[variant]["backend"],
                    resolved[variant].get("onednn", "auto"),
                )
                process = subprocess.run(
                    command, capture_output=True, text=True, env=environment
                )
                measured = child_result(process.stdout)
                if process.returncode != 0 or measured is None:
                    print(
                        process.stdout[-2000:] + process.stderr[-3000:], file=sys.stderr
                    )
                    return 1
                result = {
                    **measured,
                    "round": round_number,
                }
                results.append(result)
                write_csv()
                print(
                    f"{result['configuration']:22} {variant:14} round {round_number}  "
                    f"{result['images_per_second']:8.1f} img/s (windows {result['window_images_per_second']})  "
                    f"input wait {100 * result['input_wait_share']:5.1f} %  peak RSS {result['peak_rss_mb']:6.0f} MB"
                    + (
                        f"  peak device {result['peak_device_mb']} MB"
                        if result["peak_device_mb"] != ""
                        else ""
                    ),
                    flush=True,
                )
        if arguments.no_ceiling or importlib.util.find_spec("tensorflow") is None:
            continue
        for precision in sorted(
            {
                r["precision"]
                for r in results
                if r["configuration"] == configuration["name"]
            }
        ):
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--ceiling",
                json.dumps([configuration, precision]),
                "--batch-size",
                str(arguments.batch_size),
                "--threads",
                str(arguments.threads),
                "--repeats",
                str(arguments.repeats),
            ]
            process = subprocess.run(
                command,
                capture_output=True,
                text=True,
                # TensorFlow's convolutions as a training job runs them (oneDNN: auto)
                env=onednn_environment(
                    {**os.environ, "KERAS_BACKEND": "tensorflow"}, "tensorflow", "auto"
                ),
            )
            measured = child_result(process.stdout)
            if process.returncode != 0 or measured is None:
                print(process.stdout[-2000:] + process.stderr[-3000:], file=sys.stderr)
                return 1
            ceilings[configuration["name"], precision] = measured
            print(
                f"{configuration['name']:22} ceiling {precision:14} {measured['images_per_second']:8.1f} img/s: "
                f"{measured['convolutions']} convolutions, {measured['mflop_per_image']} MFLOP per image "
                f"(forward and backward), {measured['gflops_without_xla']} GFLOP/s without XLA, "
                f"{measured['gflops_with_xla']} with",
                flush=True,
            )
    if ceilings:
        ceiling_output = output.with_name(output.stem + "-ceiling.csv")
        with open(ceiling_output, "w", newline="") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=CEILING_COLUMNS, lineterminator="\n"
            )
            writer.writeheader()
            writer.writerows(ceilings.values())
    peak_output = output.with_name(output.stem + "-peak.csv")
    with open(peak_output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(peak), lineterminator="\n")
        writer.writeheader()
        writer.writerow(peak)
    print(
        f"\non {results[0]['device']} ({cpu['model']}, {arguments.threads} threads), "
        f"Keras {results[0]['keras']}, batch {arguments.batch_size}; medians over {arguments.rounds} rounds; "
        f"peak {peak['float32_gflops']} GFLOP/s float32"
        + (f", {peak['bfloat16_gflops']} bfloat16" if peak["bfloat16_gflops"] else "")
        + ":"
    )
    for configuration in configurations:
        rows = [r for r in results if r["configuration"] == configuration["name"]]

        def median_of(variant, key):
            return statistics.median(r[key] for r in rows if r["variant"] == variant)

        baseline = median_of("baseline", "images_per_second")
        for variant in variants:
            speed = median_of(variant, "images_per_second")
            settings = next(r for r in rows if r["variant"] == variant)
            ceiling = ceilings.get((configuration["name"], settings["precision"]))
            share = ""
            if ceiling:
                # the convolutions' arithmetic at this speed, against the peak
                gflops = speed * ceiling["mflop_per_image"] / 1000
                yardstick = (
                    peak["bfloat16_gflops"]
                    if settings["precision"] == "mixed_bfloat16"
                    and peak["bfloat16_gflops"]
                    else peak["float32_gflops"]
                )
                share = (
                    f"  {100 * speed / ceiling['images_per_second']:5.1f} % of the {settings['precision']} ceiling"
                    f"  {gflops:5.1f} GFLOP/s of convolution = {100 * gflops / yardstick:5.1f} % of the peak"
                )
            print(
                f"  {configuration['name']:22} {variant:14} {speed:8.1f} img/s  {speed / baseline:5.2f}x baseline  "
                f"input wait {100 * median_of(variant, 'input_wait_share'):5.1f} %  "
                f"peak RSS {median_of(variant, 'peak_rss_mb'):6.0f} MB{share}  "
                f"({settings['backend']}, {settings['precision']}, XLA {'on' if settings['jit_compile'] else 'off'}"
                f"{', deterministic' if settings.get('deterministic') else ''}"
                f", oneDNN {'on' if settings.get('onednn') else 'off'})"
            )
    print(f"written: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
