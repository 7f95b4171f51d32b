"""Command-line helpers for people and scripts.

``smoothbench-data``: around the data stage.

    smoothbench-data datasets            the registry: K, splits, source
    smoothbench-data sources NAME        the files an air-gapped user must fetch for NAME
    smoothbench-data verify FOLDER       check a prepared dataset against its manifest

``smoothbench-tables``: the tables of the runs finished so far, while a study still runs
(the workflow's rule ``aggregate`` waits for every run).

    smoothbench-tables [--configfile config.yaml] [--runs results/runs] [--output results/tables_interim]

``smoothbench-cost``: the estimated GPU-hours of every planned training job and in total,
from the benchmark's throughput or a stated one (see :mod:`smoothbench.cost`).

    smoothbench-cost [--configfile config.yaml] [--throughput results/benchmarks/throughput.csv]
                     [--rate resnet_v2-83@72=900 ...] [--csv FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smoothbench.config import ConfigError
from smoothbench.errors import SmoothbenchError
from smoothbench.registry import DATASETS, get_dataset
from smoothbench.storage import PreparedDataError, open_prepared
from smoothbench.study import load_study_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smoothbench-data", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("datasets", help="list the known datasets")
    sources = commands.add_parser("sources", help="list the source files of a dataset")
    sources.add_argument("name")
    verify = commands.add_parser("verify", help="check a prepared dataset folder")
    verify.add_argument("folder")
    arguments = parser.parse_args(argv)

    if arguments.command == "datasets":
        for spec in DATASETS.values():
            print(
                f"{spec.name:14s} K={spec.num_classes:<5d} {spec.train_split}/{spec.validation_split:10s} {spec.description}"
            )
    elif arguments.command == "sources":
        spec = get_dataset(arguments.name)
        if not spec.source_urls:
            print(f"{spec.name} needs no download ({spec.source})")
        for url in spec.source_urls:
            print(url)
        if spec.note:
            print(f"# {spec.note}", file=sys.stderr)
    elif arguments.command == "verify":
        try:
            manifest, arrays = open_prepared(arguments.folder)
        except PreparedDataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        shapes = ", ".join(
            f"{name} {list(array.shape)}" for name, array in arrays.items()
        )
        print(f"{manifest['dataset']}: ok (K={manifest['num_classes']}; {shapes})")
    return 0


def tables_main(argv: list[str] | None = None) -> int:
    """``smoothbench-tables``: Tables 1-3 and the comparison from the finished runs only."""
    parser = argparse.ArgumentParser(
        prog="smoothbench-tables",
        description="Write Tables 1-3 and the comparison with the paper from the runs finished so far "
        "('-' marks unfinished cells). The workflow's own results/tables/ is left alone.",
    )
    parser.add_argument(
        "--configfile",
        default="config.yaml",
        help="the study's config (default: config.yaml)",
    )
    parser.add_argument(
        "--runs", default="results/runs", help="the runs folder (default: results/runs)"
    )
    parser.add_argument(
        "--output",
        default="results/tables_interim",
        help="where to write (default: results/tables_interim)",
    )
    arguments = parser.parse_args(argv)
    from smoothbench import tables

    if Path(arguments.output).resolve() == (
        Path(arguments.runs).resolve().parent / "tables"
    ):
        print(
            f"error: {arguments.output} is the workflow's own tables folder; choose another --output",
            file=sys.stderr,
        )
        return 2
    try:
        study = load_study_file(arguments.configfile)
        finished, unfinished = tables.finished_runs(study, arguments.runs)
        total = len(finished) + len(unfinished)
        if not finished:
            print(
                f"error: none of the {total} runs of {arguments.configfile} has finished under {arguments.runs}",
                file=sys.stderr,
            )
            return 1
        status = f"Interim: {len(finished)} of {total} runs finished; '-' also marks the unfinished ones."
        chosen = study.config["tables"]
        tables.write_tables(
            study,
            finished,
            arguments.output,
            chosen["paper_check_tolerance"],
            status,
            chosen["calibration_epoch"],
        )
    except (OSError, SmoothbenchError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"{len(finished)} of {total} runs finished; tables written to {arguments.output}/"
    )
    for run in unfinished[:10]:
        print(
            f"  unfinished: {run.experiment} {run.method}={run.value_text} seed={run.seed}"
        )
    if len(unfinished) > 10:
        print(f"  ... and {len(unfinished) - 10} more")
    return 0


def cost_main(argv: list[str] | None = None) -> int:
    """``smoothbench-cost``: the bill of a study before it runs."""
    parser = argparse.ArgumentParser(
        prog="smoothbench-cost",
        description="Estimated GPU-hours of every training job the config plans, and the total.",
    )
    parser.add_argument(
        "--configfile",
        default="config.yaml",
        help="the study's config (default: config.yaml)",
    )
    # where benchmarks/benchmark_training.py writes
    benchmark_csv = Path("results/benchmarks/throughput.csv")
    parser.add_argument(
        "--throughput",
        help=f"a benchmark CSV (default: {benchmark_csv} when it exists)",
    )
    parser.add_argument(
        "--variant",
        default="ours",
        help="the benchmark variant to price with (default: ours, the training jobs' default settings; "
        "ours-jax for compute.backend: jax)",
    )
    parser.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="NETWORK@SIDE=IMAGES_PER_SECOND",
        help="a stated training throughput, e.g. resnet_v2-83@72=900 (repeatable; wins over the CSV)",
    )
    parser.add_argument(
        "--evaluation-speedup",
        type=float,
        default=None,
        help="how many times faster evaluation runs than training (default: smoothbench.cost.DEFAULT_EVALUATION_SPEEDUP, 3)",
    )
    parser.add_argument(
        "--prepared",
        default="results/prepared",
        help="prepared data, for split sizes when present",
    )
    parser.add_argument("--csv", help="also write every job's estimate to this CSV")
    arguments = parser.parse_args(argv)
    from smoothbench import cost, storage

    try:
        study = load_study_file(arguments.configfile)
        rates = []
        throughput = arguments.throughput or (
            benchmark_csv if benchmark_csv.is_file() else None
        )
        if throughput:
            rates += cost.read_benchmark(throughput, arguments.variant)
        rates += [cost.parse_rate(text) for text in arguments.rate]
        if not rates:
            raise cost.CostError(
                "no throughput: run benchmarks/benchmark_training.py first, or pass --throughput or --rate"
            )
        speedup = (
            cost.DEFAULT_EVALUATION_SPEEDUP
            if arguments.evaluation_speedup is None
            else arguments.evaluation_speedup
        )
        rows = cost.plan(study, rates, arguments.prepared, speedup)
    except (OSError, SmoothbenchError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(cost.render(rows))
    if arguments.csv:
        import csv

        with storage.atomic_file(Path(arguments.csv)) as handle:
            writer = csv.DictWriter(
                handle, fieldnames=list(rows[0]), lineterminator="\n"
            )
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
