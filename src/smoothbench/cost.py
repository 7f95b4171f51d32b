"""The bill before the run: estimated GPU-hours of every planned training job.

hours of one run = epochs x (training images / training throughput + validation images /
evaluation throughput) / 3600, and GPU-hours = hours x ``compute.gpus_per_job`` (at
least 1: a CPU-only study is priced as device-hours) / ``compute.runs_per_gpu`` (N runs
sharing a GPU each pay 1/N of its hours; the throughput is still that of a run alone
unless a rate measured with N runs sharing the GPU is given, so a shared run's hours
are a lower bound). Throughput is images per second
of our training step at the run's model, depth and image side, from the benchmark's CSV
(``benchmarks/benchmark_training.py`` writes ``results/benchmarks/throughput.csv``) or
stated by hand (``--rate resnet_v2-83@72=900``). A side that was not measured is scaled
from the nearest measured side of the same network by pixel count (compute grows with
height x width); a network that was not measured at all is an error naming it.
Evaluation (inference only, larger batches) is taken as ``evaluation_speedup`` times
faster than training unless stated.

Split sizes come from the prepared data's manifest when it exists, else from the TFDS
catalog (visual_domain_decathlon 1.2.0, mnist, cifar10) or the digits split below.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
from pathlib import Path

from smoothbench.errors import SmoothbenchError
from smoothbench.registry import get_dataset
from smoothbench.shapes import padded_shape
from smoothbench.study import Study

# (training, validation) examples of the registry's default splits. Decathlon: the TFDS
# catalog of visual_domain_decathlon 1.2.0 (train / validation); MNIST and CIFAR-10:
# train / test; Fashion-MNIST the same; digits: 1,797 images, 20 % held out stratified (our prepare step).
SPLIT_SIZES = {
    "aircraft": (3334, 3333),
    "cifar100": (40000, 10000),
    "daimlerpedcls": (23520, 5880),
    "dtd": (1880, 1880),
    "gtsrb": (31367, 7842),
    "imagenet12": (1232167, 49000),
    "omniglot": (17853, 6492),
    "svhn": (47217, 26040),
    "ucf101": (7585, 1952),
    "vgg-flowers": (1020, 1020),
    "mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "fashion_mnist": (60000, 10000),
    "digits": (1437, 360),
}
DEFAULT_EVALUATION_SPEEDUP = 3.0


class CostError(SmoothbenchError, ValueError):
    """A job the estimate cannot price; the message names what is missing."""


@dataclasses.dataclass(frozen=True)
class Rate:
    network: str  # e.g. resnet_v2-83
    side: int  # image side in pixels (after padding)
    images_per_second: float
    source: str


def parse_rate(text: str) -> Rate:
    """``resnet_v2-83@72=900`` -> Rate('resnet_v2-83', 72, 900.0, 'stated')."""
    try:
        key, value = text.split("=")
        network, side = key.split("@")
        rate = Rate(network, int(side), float(value), "stated")
    except ValueError:
        raise CostError(
            f"--rate {text!r}: expected NETWORK@SIDE=IMAGES_PER_SECOND, e.g. resnet_v2-83@72=900"
        ) from None
    if rate.images_per_second <= 0:
        raise CostError(f"--rate {text!r}: images per second must be positive")
    return rate


def read_benchmark(path: Path | str, variant: str = "ours") -> list[Rate]:
    """One rate per network and image side from a benchmark CSV: the median images/s of
    its ``variant`` rows (``ours``: the training jobs' default settings), over rounds."""
    measured: dict[tuple[str, int], list[dict]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("variant") == variant:
                side = int(row["image_shape"].split("x")[0])
                measured.setdefault(
                    (f"{row['model']}-{row['depth']}", side), []
                ).append(row)
    if not measured:
        raise CostError(
            f"{path}: no {variant!r} rows; run benchmarks/benchmark_training.py to measure"
        )
    return [
        Rate(
            network,
            side,
            statistics.median(float(row["images_per_second"]) for row in rows),
            f"{Path(path).name} ({rows[0]['device']}, {variant}, median of {len(rows)})",
        )
        for (network, side), rows in measured.items()
    ]


def rate_for(rates: list[Rate], network: str, side: int) -> tuple[float, str]:
    """Images/s of ``network`` at ``side``: measured, or scaled by pixels from the nearest measured side."""
    own = [rate for rate in rates if rate.network == network]
    if not own:
        known = (
            ", ".join(sorted({f"{rate.network}@{rate.side}" for rate in rates}))
            or "none"
        )
        raise CostError(
            f"no throughput for {network} (measured or stated: {known}); run benchmarks/benchmark_training.py "
            f"with it or pass --rate {network}@{side}=IMAGES_PER_SECOND"
        )
    exact = [rate for rate in own if rate.side == side]
    if exact:
        return exact[-1].images_per_second, exact[-1].source
    nearest = min(own, key=lambda rate: abs(rate.side - side))
    return nearest.images_per_second * (
        nearest.side / side
    ) ** 2, f"{nearest.source}, scaled from {nearest.side}px"


def split_sizes(
    study: Study, dataset: str, prepared_root: Path | str | None
) -> tuple[int, int, str]:
    """(training, validation) examples of ``dataset`` and where the numbers come from."""
    if prepared_root is not None:
        manifest = Path(prepared_root) / dataset / "manifest.json"
        if manifest.is_file():
            splits = json.loads(manifest.read_text())["splits"]
            return (
                splits["train"]["count"],
                splits["validation"]["count"],
                str(manifest),
            )
    spec = get_dataset(dataset)
    if study.splits(dataset) != {
        "train": spec.train_split,
        "validation": spec.validation_split,
    }:
        raise CostError(
            f"config key 'data.splits.{dataset}' chooses its own splits and {dataset} is not prepared yet: "
            "prepare it first (snakemake --until prepare) so that the estimate reads the split sizes"
        )
    if dataset not in SPLIT_SIZES:
        raise CostError(
            f"no split sizes known for dataset {dataset!r}; prepare it first"
        )
    train, validation = SPLIT_SIZES[dataset]
    return (
        train,
        validation,
        "TFDS catalog" if dataset != "digits" else "prepare step (80/20)",
    )


def plan(
    study: Study,
    rates: list[Rate],
    prepared_root: Path | str | None = "results/prepared",
    evaluation_speedup: float = DEFAULT_EVALUATION_SPEEDUP,
) -> list[dict]:
    """One row per planned training run with its estimated hours and GPU-hours."""
    rows = []
    gpus = max(1, study.config["compute"]["gpus_per_job"])
    runs_per_gpu = study.config["compute"]["runs_per_gpu"]
    for run in study.runs():
        experiment = study.experiments[run.experiment]
        side = padded_shape(experiment.image_shape, experiment.min_image_size)[0]
        network = experiment.model_name
        images_per_second, source = rate_for(rates, network, side)
        train, validation, sizes_from = split_sizes(
            study, experiment.dataset.name, prepared_root
        )
        seconds = experiment.epochs * (
            train / images_per_second
            + validation / (images_per_second * evaluation_speedup)
        )
        hours = seconds / 3600
        rows.append(
            {
                "experiment": run.experiment,
                "method": run.method,
                "value": run.value_text,
                "seed": run.seed,
                "network": network,
                "side": side,
                "epochs": experiment.epochs,
                "train_images": train,
                "validation_images": validation,
                "images_per_second": round(images_per_second, 2),
                "rate_source": source,
                "sizes_source": sizes_from,
                "hours": hours,
                "gpus": gpus,
                "runs_per_gpu": runs_per_gpu,
                "gpu_hours": hours * gpus / runs_per_gpu,
            }
        )
    return rows


def render(rows: list[dict]) -> str:
    """The plan as a text table and its total."""
    lines = [
        f"{'experiment':14} {'run':12} {'seed':>4} {'network':14} {'px':>3} {'epochs':>6} {'img/s':>8} {'GPU-h':>9}"
    ]
    for row in rows:
        lines.append(
            f"{row['experiment']:14} {row['method'] + '~' + row['value']:12} {row['seed']:>4} {row['network']:14} "
            f"{row['side']:>3} {row['epochs']:>6} {row['images_per_second']:>8.1f} {row['gpu_hours']:>9.2f}"
        )
    total = sum(row["gpu_hours"] for row in rows)
    lines.append(f"total: {len(rows)} training jobs, {total:,.1f} GPU-hours")
    sources = sorted({row["rate_source"] for row in rows})
    lines.append("throughput from: " + "; ".join(sources))
    return "\n".join(lines)
