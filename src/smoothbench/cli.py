"""Command-line helpers for people and scripts.

``smoothbench-data``: around the data stage.

    smoothbench-data datasets            the registry: K, splits, source
    smoothbench-data sources NAME        the files an air-gapped user must fetch for NAME
    smoothbench-data verify FOLDER       check a prepared dataset against its manifest

``smoothbench-tables``: the tables of the runs finished so far, while a study still runs
(the workflow's rule ``aggregate`` waits for every run).

    smoothbench-tables [--configfile config.yaml] [--runs RESULTS/runs] [--output RESULTS/tables_interim]

(RESULTS: the config's results_folder, results/paper for config.yaml.)

``smoothbench-cost``: the estimated GPU-hours of a study before it runs, per experiment,
per dataset and in total (``--per-run``: every job too), from the benchmark's throughput
or a stated one (see :mod:`smoothbench.cost`).

    smoothbench-cost [--configfile config.yaml] [--throughput results/benchmarks/throughput.csv]
                     [--rate resnet_v2-83@72=900 ...] [--per-run] [--csv FILE]

Every tool takes ``--version`` (:func:`add_version_option`) and says in ``--help`` what it
does, with examples (:func:`tool_parser`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from smoothbench.config import ConfigError
from smoothbench.errors import SmoothbenchError
from smoothbench.registry import DATASETS, get_dataset
from smoothbench.storage import PreparedDataError, open_prepared
from smoothbench.study import load_study_file


def version_text(prog: str) -> str:
    """``<prog> <version>``, and the commit when the package is imported from a git
    checkout: the same provenance a run records in its metrics.json
    (:func:`smoothbench.provenance.code_provenance`)."""
    from smoothbench.provenance import code_provenance

    provenance = code_provenance()
    text = f"{prog} {provenance['version']}"
    if provenance["commit"]:
        changes = ", with uncommitted changes" if provenance["dirty"] else ""
        text += f" (commit {provenance['commit'][:12]}{changes})"
    return text


class _VersionAction(argparse.Action):
    """argparse's own ``action="version"`` takes its text when the parser is built: this
    one asks git only when ``--version`` is given."""

    def __init__(self, option_strings: Sequence[str], dest: str, **keywords) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="print the tool's name, smoothbench's version and (in a git checkout) its commit, then exit",
            **keywords,
        )

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text(parser.prog))
        parser.exit()


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` a ``--version`` that prints :func:`version_text` and exits 0."""
    parser.add_argument("--version", action=_VersionAction)


def tool_parser(
    prog: str, description: str, examples: Sequence[str]
) -> argparse.ArgumentParser:
    """The parser of one console script: its own description, its examples as the
    epilog (kept as written), and ``--version``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {example}" for example in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``smoothbench-data``: the dataset registry, source files, prepared-data checks."""
    parser = tool_parser(
        "smoothbench-data",
        "Around the data stage: list the datasets the workflow knows (K, splits, source),\n"
        "the source files an air-gapped machine must fetch for one, or check a prepared\n"
        "dataset folder against its manifest.",
        [
            "smoothbench-data datasets",
            "smoothbench-data sources mnist",
            "smoothbench-data verify results/demo/prepared/digits",
        ],
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
    parser = tool_parser(
        "smoothbench-tables",
        "Write Tables 1-3 and the comparison with the paper from the runs finished so far,\n"
        "while a study still runs ('-' marks unfinished cells). The workflow's own\n"
        "tables (the study's results_folder/tables/) are left alone.",
        [
            "smoothbench-tables",
            "smoothbench-tables --configfile config/demo.yaml --output /tmp/tables",
        ],
    )
    parser.add_argument(
        "--configfile",
        default="config.yaml",
        help="the study's config (default: config.yaml)",
    )
    parser.add_argument(
        "--runs", help="the runs folder (default: the config's results_folder/runs)"
    )
    parser.add_argument(
        "--output",
        help="where to write (default: the config's results_folder/tables_interim)",
    )
    arguments = parser.parse_args(argv)
    from smoothbench import runs_table, tables

    try:
        study = load_study_file(arguments.configfile)
    except (OSError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    arguments.runs = arguments.runs or study.runs_folder
    arguments.output = arguments.output or f"{study.results_folder}/tables_interim"
    if Path(arguments.output).resolve() == (
        Path(arguments.runs).resolve().parent / "tables"
    ):
        print(
            f"error: {arguments.output} is the workflow's own tables folder; choose another --output",
            file=sys.stderr,
        )
        return 2
    try:
        finished, unfinished = runs_table.finished_runs(study, arguments.runs)
        total = len(finished) + len(unfinished)
        if not finished:
            print(
                f"error: none of the {total} runs of {arguments.configfile} has finished under {arguments.runs}",
                file=sys.stderr,
            )
            return 1
        status = f"Interim: {len(finished)} of {total} runs finished; '-' also marks the unfinished ones."
        chosen = study.config["tables"]
        # as the workflow does: runs.csv first (every file checked), the tables from it
        runs_file = Path(arguments.output) / runs_table.RUNS_FILE
        runs_table.write_runs_table(
            study, finished, runs_file, chosen["calibration_epoch"]
        )
        tables.write_tables(
            study,
            runs_table.read_runs_table(runs_file),
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
    parser = tool_parser(
        "smoothbench-cost",
        "Estimate the GPU-hours of the training jobs a config plans, before they run: per\n"
        "experiment, per dataset and in total (--per-run lists every job too), priced at\n"
        "the benchmark's throughput or at stated rates. Each job is rounded once and the\n"
        "subtotals and the total are sums of those figures, so they add up as printed.",
        [
            "smoothbench-cost                          # with results/benchmarks/throughput.csv",
            "smoothbench-cost --rate resnet_v1-20@32=1430 --rate resnet_v2-83@72=154",
            "smoothbench-cost --configfile config/demo.yaml --rate resnet_v1-20@32=1430 --per-run",
        ],
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
        prepared = arguments.prepared or study.prepared_folder
        bill = cost.summarize(cost.plan(study, rates, prepared, speedup))
    except (OSError, SmoothbenchError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(cost.render(bill, per_run=arguments.per_run))
    if arguments.csv:
        import csv

        with storage.atomic_file(Path(arguments.csv)) as handle:
            writer = csv.DictWriter(
                handle,
                fieldnames=cost.csv_fields(bill),
                restval="",
                lineterminator="\n",
            )
            writer.writeheader()
            writer.writerows(cost.csv_rows(bill))
    return 0


if __name__ == "__main__":
    sys.exit(main())
