#!/usr/bin/env python
"""Training throughput: smoothbench's training step and input pipeline against the way
the paper's recipe fed Keras (legacy ``ImageDataGenerator`` into ``model.fit``).

For each configuration (model, depth, image shape) both variants train the same ResNet
at batch 32 on the same synthetic uint8 images, each in a fresh process, and the script
prints and writes (``results/benchmarks/throughput.csv``):

- images/s after warm-up (the first ``--warmup`` steps, compilation included, are not
  timed), and the ratio ours / baseline measured side by side in this one run;
- the input-wait share: 1 - (time of the same steps fed from arrays already in memory) /
  (time fed by the variant's own input pipeline), i.e. the share of step time the
  pipeline adds (Keras fetches batches inside its step function, so callbacks cannot
  see the wait directly);
- the peak resident memory of the process (and of the GPU, where there is one).

ours: uint8 batches from :class:`smoothbench.data.ArrayBatches`, mean subtraction,
padding and augmentation inside the model (:func:`smoothbench.training.build_model`),
eq. 7's loss on logits.
baseline: float32 images mean-subtracted up front on the host, augmented image by image
by ``ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
horizontal_flip=True, fill_mode="nearest").flow(...)``, the same classifier, Keras'
categorical cross-entropy with ``label_smoothing`` on one-hot labels.

Run: ``python benchmarks/benchmark_training.py`` (about 10 minutes on 2 CPU cores);
``--quick`` measures only ResNet-20 v1 on 32x32x3 with fewer steps.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "src"))

CONFIGURATIONS = [
    {"name": "resnet_v1-20 32x32x3", "model": "resnet_v1", "depth": 20, "shape": [32, 32, 3]},
    {"name": "resnet_v2-83 32x32x3", "model": "resnet_v2", "depth": 83, "shape": [32, 32, 3]},
    {"name": "resnet_v2-83 72x72x3", "model": "resnet_v2", "depth": 83, "shape": [72, 72, 3]},
]
VARIANTS = ("ours", "baseline")
COLUMNS = [
    "configuration", "variant", "model", "depth", "image_shape", "batch_size", "timed_steps", "images_per_second",
    "input_wait_share", "peak_rss_mb", "peak_device_mb", "device", "backend", "keras", "threads", "baseline_kind",
]


def _settings(configuration: dict, batch_size: int, num_classes: int) -> dict:
    return {
        "experiment": "benchmark", "dataset": "synthetic", "num_classes": num_classes,
        "image_shape": configuration["shape"], "model": configuration["model"], "depth": configuration["depth"],
        "pooling": "fixed_8x8", "min_image_size": 32, "epochs": 1, "batch_size": batch_size,
        "optimizer": {"name": "adam", "learning_rate": 1e-3, "schedule": []},
        "augmentation": {"shift": 0.1, "horizontal_flip": True}, "mean_subtraction": True,
        "method": "gamma", "value": 0.9, "seed": 0,
    }


def measure(configuration: dict, variant: str, batch_size: int, warmup: int, steps: int, threads: int) -> dict:
    """Train ``warmup + steps`` steps of one variant in this process and time the last ``steps``."""
    import numpy as np

    from smoothbench import training

    backend = training.configure_backend(threads, deterministic=False)
    import keras

    num_classes = 10
    settings = _settings(configuration, batch_size, num_classes)
    count = batch_size * (warmup + steps)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, *configuration["shape"]), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=count).astype(np.int32)
    mean = images.astype(np.float32).mean(axis=0) / 255.0
    keras.utils.set_random_seed(0)
    classifier, model = training.build_model(settings, mean)
    baseline_kind = ""
    if variant == "ours":
        from smoothbench.data import ArrayBatches

        model = training.compile_for_method(model, settings, keras.optimizers.Adam(1e-3))
        batches = ArrayBatches(images, labels, batch_size)
    else:
        try:
            from keras.src.legacy.preprocessing.image import ImageDataGenerator
            baseline_kind = "keras legacy ImageDataGenerator"
        except ImportError:  # pragma: no cover - Keras without its legacy namespace
            sys.exit("this Keras has no legacy ImageDataGenerator; install keras>=3 with keras.src.legacy")
        from smoothbench.losses import alpha_from_gamma
        from smoothbench.shapes import padding_to

        pad = padding_to(tuple(configuration["shape"]), 32)
        centred = images.astype(np.float32) / 255.0 - mean  # the example subtracts the mean up front
        if any(sum(side) for side in pad):
            centred = np.pad(centred, ((0, 0), *pad, (0, 0)))
        generator = ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True, fill_mode="nearest")
        one_hot = np.eye(num_classes, dtype=np.float32)[labels]
        batches = generator.flow(centred, one_hot, batch_size=batch_size, shuffle=True, seed=0)
        model = classifier
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=alpha_from_gamma(0.9, num_classes))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])

    ends: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    def timed(data, **options) -> float:
        """Seconds of the last ``steps`` of ``warmup + steps`` training steps on ``data``."""
        ends.clear()
        model.fit(data, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[Clock()], **options)
        return ends[-1] - ends[warmup - 1]

    span = timed(batches, shuffle=False)
    # The same steps on batches already in memory (Keras slices the arrays itself): what is
    # left when the input pipeline costs nothing. The rest of the time above is input wait.
    if variant == "ours":
        compute = timed(images, y=labels, batch_size=batch_size, shuffle=False)
    else:
        augmented_images, augmented_labels = zip(*(batches[index] for index in range(warmup + steps)))
        compute = timed(np.concatenate(augmented_images), y=np.concatenate(augmented_labels), batch_size=batch_size,
                        shuffle=False)
    waiting = max(0.0, span - compute)
    device_peak = ""
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            device_peak = round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)
    return {
        "configuration": configuration["name"], "variant": variant, "model": configuration["model"],
        "depth": configuration["depth"], "image_shape": "x".join(map(str, configuration["shape"])),
        "batch_size": batch_size, "timed_steps": steps, "images_per_second": round(steps * batch_size / span, 2),
        "input_wait_share": round(waiting / span, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_device_mb": device_peak, "device": training.describe_devices(), "backend": backend,
        "keras": keras.__version__, "threads": threads, "baseline_kind": baseline_kind,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(REPOSITORY / "results" / "benchmarks" / "throughput.csv"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation included)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="ResNet-20 v1 on 32x32x3 only, 15 timed steps")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.child:  # one measurement, in its own process so that peak memory is its own
        configuration, variant = json.loads(arguments.child)
        result = measure(configuration, variant, arguments.batch_size, arguments.warmup, arguments.steps, arguments.threads)
        print("RESULT " + json.dumps(result))
        return 0
    configurations = CONFIGURATIONS[:1] if arguments.quick else CONFIGURATIONS
    steps = 15 if arguments.quick else arguments.steps
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

    for configuration in configurations:
        for variant in VARIANTS:
            command = [sys.executable, __file__, "--child", json.dumps([configuration, variant]), "--batch-size",
                       str(arguments.batch_size), "--warmup", str(arguments.warmup), "--steps", str(steps),
                       "--threads", str(arguments.threads)]
            process = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
            if process.returncode != 0 or not lines:
                print(process.stdout[-2000:] + process.stderr[-3000:], file=sys.stderr)
                return 1
            result = json.loads(lines[-1][len("RESULT "):])
            results.append(result)
            write_csv()
            print(f"{result['configuration']:24} {variant:8} {result['images_per_second']:9.1f} img/s  "
                  f"input wait {100 * result['input_wait_share']:5.1f} %  peak RSS {result['peak_rss_mb']:8.0f} MB"
                  + (f"  peak device {result['peak_device_mb']} MB" if result["peak_device_mb"] != "" else ""), flush=True)
    print(f"\non {results[0]['device']} ({platform.processor() or platform.machine()}, {arguments.threads} threads), "
          f"Keras {results[0]['keras']} ({results[0]['backend']}), batch {arguments.batch_size}:")
    for configuration in configurations:
        ours, baseline = (next(r for r in results if r["configuration"] == configuration["name"] and r["variant"] == v)
                          for v in VARIANTS)
        print(f"  {configuration['name']:24} ours / baseline = {ours['images_per_second'] / baseline['images_per_second']:.2f}x")
    print(f"written: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
