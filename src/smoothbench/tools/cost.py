"""``smoothbench-cost``: the estimated GPU-hours of a study before it runs, per experiment,
per dataset and in total (``--per-run``: every job too), from the benchmark's throughput
or a stated one, else at the paper's own rates (see :mod:`smoothbench.tools.cost_estimate`).

    smoothbench-cost [--configfile config.yaml ...] [--config KEY=VALUE ...]
                     [--throughput results/benchmarks/throughput.csv | --paper-rates]
                     [--rate resnet_v2-83@72=900 ...] [--per-run] [--csv FILE]
"""

from __future__ import annotations

import sys
from pathlib import Path

from smoothbench.config import ConfigError
from smoothbench.errors import SmoothbenchError
from smoothbench.tools.command_line import (
    add_study_arguments,
    study_from_arguments,
    tool_parser,
    user_error,
)


def main(argv: list[str] | None = None) -> int:
    """``smoothbench-cost``: the bill of a study before it runs."""
    parser = tool_parser(
        "smoothbench-cost",
        "Estimate the GPU-hours of the training jobs a config plans, before they run: per\n"
        "experiment, per dataset and in total (--per-run lists every job too), priced at\n"
        "the benchmark's measured throughput where there is one (results/benchmarks/\n"
        "throughput.csv or --throughput), at stated rates (--rate), else at the paper's own\n"
        "rates (a GTX 1080 Ti and two P100s); it says which rates it used. Each job is\n"
        "rounded once and the subtotals and the total are sums of those figures, so they\n"
        "add up as printed.",
        [
            "smoothbench-cost                          # measured throughput, else the paper's rates",
            "smoothbench-cost --paper-rates            # the paper's rates, even where measured",
            "smoothbench-cost --rate resnet_v1-20@32=1430 --rate resnet_v2-83@72=154",
            "smoothbench-cost --configfile config/demo.yaml --rate resnet_v1-20@32=1430 --per-run",
            "smoothbench-cost --configfile config.yaml mine.yaml --config 'protocol={epochs: 100}'",
        ],
    )
    add_study_arguments(parser)
    # where benchmarks/benchmark_training.py writes
    benchmark_csv = Path("results/benchmarks/throughput.csv")
    sources = parser.add_mutually_exclusive_group()
    sources.add_argument(
        "--throughput",
        help=f"a benchmark CSV, measured (default: {benchmark_csv} when it exists, "
        "else the paper's rates)",
    )
    sources.add_argument(
        "--paper-rates",
        action="store_true",
        help="price at the paper's own rates (docs/cost.md) even where a benchmark CSV exists",
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
        help="how many times faster evaluation runs than training (default: smoothbench.tools.cost_estimate.DEFAULT_EVALUATION_SPEEDUP, 3)",
    )
    parser.add_argument(
        "--prepared",
        help="prepared data, for split sizes when present (default: the config's "
        "results_folder/prepared)",
    )
    # not --runs: in smoothbench-tables that names the runs folder
    parser.add_argument(
        "--per-run",
        action="store_true",
        help="also print every job above the subtotals (the CSV always has them)",
    )
    parser.add_argument(
        "--csv",
        help="also write the bill to this CSV: every job, then the experiments, the datasets "
        "and the total (column level)",
    )
    arguments = parser.parse_args(argv)
    from smoothbench import files
    from smoothbench.tools import cost_estimate

    try:
        study = study_from_arguments(arguments)
        # measured where there is a file (never measured here, unasked), stated rates
        # over it; without a file, the paper's rates for every network not stated
        throughput = arguments.throughput or (
            benchmark_csv
            if benchmark_csv.is_file() and not arguments.paper_rates
            else None
        )
        stated = [cost_estimate.parse_rate(text) for text in arguments.rate]
        if throughput:
            rates = cost_estimate.read_benchmark(throughput, arguments.variant) + stated
        else:
            rates = cost_estimate.with_paper_rates(stated)
        speedup = (
            cost_estimate.DEFAULT_EVALUATION_SPEEDUP
            if arguments.evaluation_speedup is None
            else arguments.evaluation_speedup
        )
        prepared = arguments.prepared or study.prepared_folder
        bill = cost_estimate.summarize(
            cost_estimate.plan(study, rates, prepared, speedup)
        )
    except (OSError, SmoothbenchError, ConfigError) as error:
        return user_error("smoothbench-cost", error)
    print(cost_estimate.render(bill, per_run=arguments.per_run))
    if arguments.csv:
        import csv

        with files.atomic_file(Path(arguments.csv)) as handle:
            writer = csv.DictWriter(
                handle,
                fieldnames=cost_estimate.csv_fields(bill),
                restval="",
                lineterminator="\n",
            )
            writer.writeheader()
            writer.writerows(cost_estimate.csv_rows(bill))
    return 0


if __name__ == "__main__":
    sys.exit(main())
