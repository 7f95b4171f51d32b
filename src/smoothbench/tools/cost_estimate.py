"""The bill before the run: estimated GPU-hours of every planned training job.

hours of one run = epochs x (training images / training throughput + validation images /
evaluation throughput) / 3600, and GPU-hours = hours x ``compute.gpus_per_job`` (at
least 1: a CPU-only study is priced as device-hours) / ``compute.runs_per_gpu`` (N runs
sharing a GPU each pay 1/N of its hours; the throughput is still that of a run alone
unless a rate measured with N runs sharing the GPU is given, so a shared run's hours
are a lower bound). Throughput is images per second
of our training step at the run's model, depth and image side, from the benchmark's CSV
(``benchmarks/benchmark_training.py`` of a checkout writes
``results/benchmarks/throughput.csv``) or stated by hand (``--rate resnet_v2-83@72=900``);
without either, the paper's own rates (:data:`PAPER_RATES`: a GTX 1080 Ti and two
P100s, docs/cost.md), labelled as such. A side that was not measured is scaled
from the nearest measured side of the same network by pixel count (compute grows with
height x width); a network that was not measured at all is an error naming it.
Evaluation (inference only, larger batches) is taken as ``evaluation_speedup`` times
faster than training unless stated.

Split sizes come from the prepared data's manifest when it exists, else from the TFDS
catalog (visual_domain_decathlon 1.2.0, mnist, cifar10) or the digits split below.

The bill (:func:`summarize`) adds the jobs up per experiment, per dataset and in total.
Each job's GPU-hours is rounded once, to the bill's decimals, and every subtotal and the
total is the exact sum of those rounded figures: what is printed adds up as printed,
job rows to experiments, experiments to datasets and to the total.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
from pathlib import Path

from smoothbench.data import image_folder, own_datasets
from smoothbench.errors import SmoothbenchError
from smoothbench.models.shapes import padded_shape
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


# The rates our sources state, for a bill before anything is measured (docs/cost.md): the
# Keras example's 35 s per CIFAR-10 epoch (50,000 images) for ResNet-20 v1 on a GTX
# 1080 Ti, and the paper's 8,000 s per ImageNet epoch (1,232,167 images) for ResNet
# v2-83 on two P100s, rounded as docs/cost.md prints them.
PAPER_RATE_SOURCE = "the paper's rate"
PAPER_RATES = (
    Rate("resnet_v1-20", 32, 1430.0, f"{PAPER_RATE_SOURCE} (GTX 1080 Ti)"),
    Rate("resnet_v2-83", 72, 154.0, f"{PAPER_RATE_SOURCE} (2 x P100)"),
)
PAPER_RATES_NOTE = (
    "the paper's rates, not this machine's: resnet_v1-20@32 = 1,430 images/s (the Keras "
    "CIFAR-10 example's 35 s per epoch on a GTX 1080 Ti) and resnet_v2-83@72 = 154 "
    "images/s (the paper's 8,000 s per ImageNet epoch on two P100s), other sides scaled "
    "by pixel count; sources in docs/cost.md"
)


def benchmark_script() -> Path | None:
    """The throughput benchmark of the checkout this package runs from; None for an
    installed package, which has no benchmarks/ folder."""
    script = (
        Path(__file__).resolve().parents[3] / "benchmarks" / "benchmark_training.py"
    )
    return script if script.is_file() else None


def measure_advice() -> str:
    """How to price at the speed of one's own GPU, naming the benchmark script only
    where it exists (a checkout)."""
    script = benchmark_script()
    measure = (
        f"measure it there with python {script} and pass --throughput with the CSV it "
        "writes, or "
        if script
        else ""
    )
    return f"{measure}state images/s you measured with --rate NETWORK@SIDE=IMAGES_PER_SECOND"


def with_paper_rates(rates: list[Rate]) -> list[Rate]:
    """``rates`` (stated ones), and the paper's for every network they leave out."""
    stated = {rate.network for rate in rates}
    return [rate for rate in PAPER_RATES if rate.network not in stated] + list(rates)


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
        raise CostError(f"{path}: no {variant!r} rows; {measure_advice()}")
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
        script = benchmark_script()
        measure = f"measure it with python {script} or " if script else ""
        raise CostError(
            f"no throughput for {network} (measured or stated: {known}); {measure}pass "
            f"--rate {network}@{side}=IMAGES_PER_SECOND"
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
    spec = study.dataset(dataset)
    if spec.own:
        return _own_split_sizes(study, dataset)
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


def _own_split_sizes(study: Study, dataset: str) -> tuple[int, int, str]:
    """A study's own dataset before it is prepared: a folder's files, split as the
    prepare step splits them; a TFDS builder's split sizes where it is built."""
    spec = study.dataset(dataset)
    if spec.source == "folder":
        assert spec.folder is not None  # a dataset of source "folder" names its folder
        layout = image_folder.read_layout(
            spec.folder, f"datasets.{dataset}", spec.validation_fraction
        )
        assigned = image_folder.assign_splits(
            layout, spec.validation_fraction, spec.split_seed
        )
        train, validation = (len(assigned[role]) for role in ("train", "validation"))
        return train, validation, f"the image folder {spec.folder}"
    splits = own_datasets.builder_info(
        spec.tfds_name, study.data_settings(dataset)["tfds_data_dir"]
    ).splits
    try:
        sizes = [
            int(splits[split].num_examples)
            for split in (spec.train_split, spec.validation_split)
        ]
    except (KeyError, ValueError, TypeError):
        sizes = []
    if not sizes or not all(sizes):
        raise CostError(
            f"dataset {dataset!r} (TFDS {spec.tfds_name}): the sizes of splits {spec.train_split!r} and "
            f"{spec.validation_split!r} are known once it is built (slices once prepared): "
            "run the data stage first (snakemake --until prepare)"
        )
    return sizes[0], sizes[1], f"TFDS {spec.tfds_name} (built)"


def plan(
    study: Study,
    rates: list[Rate],
    prepared_root: Path | str | None = None,
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
                "dataset": experiment.dataset.name,
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


# A bill never shows fewer decimals of GPU-hours than this (0.01 h = 36 s).
MINIMUM_DECIMALS = 2
# ... nor so few that its smallest job keeps fewer significant digits than this (the
# demo's jobs take seconds: at 2 decimals each would be priced at 0.00).
SIGNIFICANT_DIGITS = 2
MAXIMUM_DECIMALS = 9


def bill_decimals(rows: list[dict]) -> int:
    """Decimals of GPU-hours for a bill: at least ``MINIMUM_DECIMALS``, more where the
    smallest job would otherwise keep fewer than ``SIGNIFICANT_DIGITS`` digits."""
    positive = [row["gpu_hours"] for row in rows if row["gpu_hours"] > 0]
    if not positive:
        return MINIMUM_DECIMALS
    smallest = min(positive)
    decimals = MINIMUM_DECIMALS
    while (
        round(smallest * 10**decimals) < 10 ** (SIGNIFICANT_DIGITS - 1)
        and decimals < MAXIMUM_DECIMALS
    ):
        decimals += 1
    return decimals


@dataclasses.dataclass(frozen=True)
class Subtotal:
    """The jobs of one experiment, one dataset or the whole study, and their GPU-hours."""

    level: str  # "experiment", "dataset" or "total"
    name: str  # the experiment's or the dataset's name; "total"
    dataset: str | None  # the experiment's dataset (experiment level only)
    runs: int
    units: int  # GPU-hours in units of 10**-decimals: integers add up exactly


@dataclasses.dataclass(frozen=True)
class Bill:
    """The plan's jobs, each rounded once, and the subtotals made of those rounded figures."""

    decimals: int
    runs: list[dict]  # plan()'s rows, exact
    run_units: list[int]  # each run's GPU-hours rounded, in units of 10**-decimals
    experiments: list[Subtotal]  # in the config's order
    datasets: list[Subtotal]  # in order of first appearance
    total: Subtotal

    def hours(self, units: int, grouping: bool = True) -> str:
        """``units`` as GPU-hours with the bill's decimals, from integers (no float)."""
        whole, fraction = divmod(units, 10**self.decimals)
        whole_text = f"{whole:,}" if grouping else str(whole)
        return f"{whole_text}.{fraction:0{self.decimals}d}"


def summarize(rows: list[dict], decimals: int | None = None) -> Bill:
    """The bill of ``plan()``'s rows: per experiment, per dataset, in total.

    Rounding each job once and summing integers is what makes every printed subtotal
    the sum of the figures above it; rounding each subtotal from the exact sums instead
    can leave them 0.01 off the printed total."""
    if decimals is None:
        decimals = bill_decimals(rows)
    run_units = [round(row["gpu_hours"] * 10**decimals) for row in rows]

    def grouped(key: str, level: str) -> list[Subtotal]:
        runs: dict[str, int] = {}
        units: dict[str, int] = {}
        datasets: dict[str, str] = {}
        for row, own in zip(rows, run_units):
            runs[row[key]] = runs.get(row[key], 0) + 1
            units[row[key]] = units.get(row[key], 0) + own
            datasets[row[key]] = row["dataset"]
        return [
            Subtotal(
                level,
                name,
                datasets[name] if level == "experiment" else None,
                runs[name],
                units[name],
            )
            for name in runs
        ]

    return Bill(
        decimals,
        rows,
        run_units,
        grouped("experiment", "experiment"),
        grouped("dataset", "dataset"),
        Subtotal("total", "total", None, len(rows), sum(run_units)),
    )


def render(bill: Bill, per_run: bool = False) -> str:
    """The bill as text: the jobs (``per_run``), the experiments, the datasets, the total."""
    width = max(
        [9] + [len(bill.hours(subtotal.units)) for subtotal in bill.experiments]
    )
    width = max(width, len(bill.hours(bill.total.units)))
    lines = []
    if per_run:
        lines.append(
            f"{'experiment':14} {'run':12} {'seed':>4} {'network':14} {'px':>3} {'epochs':>6} {'img/s':>8} {'GPU-h':>{width}}"
        )
        for row, units in zip(bill.runs, bill.run_units):
            lines.append(
                f"{row['experiment']:14} {row['method'] + '~' + row['value']:12} {row['seed']:>4} {row['network']:14} "
                f"{row['side']:>3} {row['epochs']:>6} {row['images_per_second']:>8.1f} {bill.hours(units):>{width}}"
            )
        lines.append("")
    # the network, side, epochs and throughput are the experiment's: its first job's
    first: dict[str, dict] = {}
    for row in bill.runs:
        first.setdefault(row["experiment"], row)
    lines.append(
        f"{'experiment':14} {'dataset':14} {'runs':>4} {'network':14} {'px':>3} {'epochs':>6} {'img/s':>8} {'GPU-h':>{width}}"
    )
    for subtotal in bill.experiments:
        row = first[subtotal.name]
        lines.append(
            f"{subtotal.name:14} {subtotal.dataset:14} {subtotal.runs:>4} {row['network']:14} "
            f"{row['side']:>3} {row['epochs']:>6} {row['images_per_second']:>8.1f} {bill.hours(subtotal.units):>{width}}"
        )
    lines.append("")
    lines.append(f"{'dataset':14} {'runs':>4} {'GPU-h':>{width}}")
    for subtotal in bill.datasets:
        lines.append(
            f"{subtotal.name:14} {subtotal.runs:>4} {bill.hours(subtotal.units):>{width}}"
        )
    lines.append("")
    lines.append(
        f"total: {bill.total.runs} training jobs, {bill.hours(bill.total.units)} GPU-hours"
    )
    sources = sorted({row["rate_source"] for row in bill.runs})
    lines.append("throughput from: " + "; ".join(sources))
    if any(source.startswith(PAPER_RATE_SOURCE) for source in sources):
        lines.append(f"rates used: {PAPER_RATES_NOTE}.")
        lines.append(
            f"To price at the speed of the GPU you will train on: {measure_advice()}."
        )
    return "\n".join(lines)


def csv_rows(bill: Bill) -> list[dict]:
    """The bill as CSV rows, ``level`` first: every job (``run``), then each experiment,
    each dataset and the total. ``gpu_hours`` is the printed, rounded figure on every row
    (so rows of one level add up to the total exactly); ``hours`` stays exact."""
    rows = [
        {"level": "run", **row, "runs": 1, "gpu_hours": bill.hours(units, False)}
        for row, units in zip(bill.runs, bill.run_units)
    ]
    for subtotal in [*bill.experiments, *bill.datasets, bill.total]:
        row = {"level": subtotal.level, "runs": subtotal.runs}
        if subtotal.level == "experiment":
            row.update(experiment=subtotal.name, dataset=subtotal.dataset)
        elif subtotal.level == "dataset":
            row["dataset"] = subtotal.name
        row["gpu_hours"] = bill.hours(subtotal.units, False)
        rows.append(row)
    return rows


def csv_fields(bill: Bill) -> list[str]:
    """The CSV's columns: ``level``, a job's columns (``plan()``'s keys), ``runs``."""
    return ["level", *bill.runs[0], "runs"]
