"""Command-line helpers for people and scripts.

``smoothbench-data``: around the data stage.

    smoothbench-data datasets            the registry: K, splits, source
    smoothbench-data sources NAME        the files an air-gapped user must fetch for NAME
    smoothbench-data verify FOLDER       check a prepared dataset against its manifest

``smoothbench-tables``: the tables of the runs finished so far, while a study still runs
(the workflow's rule ``aggregate`` waits for every run).

    smoothbench-tables [--configfile config.yaml ...] [--config KEY=VALUE ...] [--runs RESULTS/runs] [--output RESULTS/tables_interim]

(RESULTS: the config's results_folder, results/paper for config.yaml.)

``smoothbench-cost``: the estimated GPU-hours of a study before it runs, per experiment,
per dataset and in total (``--per-run``: every job too), from the benchmark's throughput
or a stated one, else at the paper's own rates (see :mod:`smoothbench.cost`).

    smoothbench-cost [--configfile config.yaml ...] [--config KEY=VALUE ...]
                     [--throughput results/benchmarks/throughput.csv | --paper-rates]
                     [--rate resnet_v2-83@72=900 ...] [--per-run] [--csv FILE]

Every tool takes ``--version`` (:func:`add_version_option`) and says in ``--help`` what it
does, with examples (:func:`tool_parser`). Every tool that reads a study takes its config
as Snakemake does (:func:`add_study_arguments`): ``--configfile`` with one file or several,
layered key by key, and ``--config KEY=VALUE ...`` over them, so that
``smoothbench-status --configfile config.yaml mine.yaml --config 'seeds=[0]'`` sees the
study that ``snakemake`` with the same options plans.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from smoothbench.config import ConfigError, merge_layers, read_config_files
from smoothbench.errors import SmoothbenchError
from smoothbench.registry import DATASETS, get_dataset
from smoothbench.storage import PreparedDataError, open_prepared
from smoothbench.study import Study, load_study


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


def add_study_arguments(
    parser: argparse.ArgumentParser,
    default: Sequence[str] | None = ("config.yaml",),
    default_text: str | None = None,
) -> None:
    """``--configfile FILE [FILE ...]`` and ``--config KEY=VALUE [...]``, as Snakemake's:
    the files layered in order, each later one updated into the earlier ones key by key
    (mappings recursively), then the ``--config`` values over them. ``default``: the
    files read without ``--configfile`` (None: the tool chooses them when it runs, as
    ``default_text`` says)."""
    parser.add_argument(
        "--configfile",
        nargs="+",
        default=list(default) if default else None,
        metavar="FILE",
        help="the study's config files, layered as Snakemake layers them: each later "
        "file updated into the earlier ones key by key, e.g. config.yaml mine.yaml "
        f"(default: {default_text or ' '.join(default or [])})",
    )
    parser.add_argument(
        "--config",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config values over the files, as Snakemake's --config takes them, e.g. "
        "'seeds=[0,1]' 'protocol={epochs: 3}' (a value is read as YAML)",
    )


def parse_config_entries(entries: Sequence[str]) -> dict:
    """``--config`` read by Snakemake's own rules (snakemake.cli.parse_config, which
    :func:`config_overrides` prefers): KEY=VALUE, the value an int, a float, True or
    False, else YAML read with the base loader (so nested values stay strings, typed by
    the schema: :func:`smoothbench.config.read_typed_strings`), an empty value None."""
    import re

    import yaml

    readers = (
        int,
        float,
        {"True": True, "False": False}.__getitem__,
        lambda text: yaml.load(text, Loader=yaml.BaseLoader),
    )
    config: dict = {}
    for entry in entries:
        key, separator, text = entry.partition("=")
        if not separator:
            raise ValueError(
                "Invalid config definition: Config entries have to be defined as name=value pairs."
            )
        if not re.match(r"[a-zA-Z_][\w-]*\w$", key):
            raise ValueError(
                "Invalid config definition: Config entry must start with a valid identifier."
            )
        value = None
        if text:
            value = text
            for read in readers:
                try:
                    value = read(text)
                    break
                except (ValueError, KeyError, yaml.YAMLError):
                    continue
        config = merge_layers(config, {key: value})
    return config


def config_overrides(entries: Sequence[str]) -> dict:
    """The config values of ``--config KEY=VALUE ...`` (ConfigError when one is not
    KEY=VALUE)."""
    if not entries:
        return {}
    try:
        from snakemake.cli import parse_config
    except ImportError:  # a Snakemake without it: the same rules, here
        parse_config = parse_config_entries
    try:
        return parse_config(list(entries))
    except ValueError as error:
        raise ConfigError(f"--config {' '.join(entries)}: {error}") from None


def config_from_arguments(
    arguments: argparse.Namespace, default: Sequence[str] = ("config.yaml",)
) -> dict:
    """The config of :func:`add_study_arguments`' options, before validation: the files
    (``default`` when the parser gave none) layered, then the ``--config`` values."""
    files = arguments.configfile or list(default)
    return merge_layers(read_config_files(files), config_overrides(arguments.config))


def study_from_arguments(
    arguments: argparse.Namespace, default: Sequence[str] = ("config.yaml",)
) -> Study:
    """The study :func:`config_from_arguments` names, validated and resolved, as
    Snakemake resolves it with the same ``--configfile`` and ``--config``."""
    return load_study(config_from_arguments(arguments, default))


def study_arguments_text(arguments: argparse.Namespace) -> str:
    """The study's options as a user writes them, for messages: ``config.yaml mine.yaml
    --config seeds=[0]``."""
    text = " ".join(arguments.configfile or [])
    if arguments.config:
        text += " --config " + " ".join(arguments.config)
    return text


def main(argv: list[str] | None = None) -> int:
    """``smoothbench-data``: the dataset registry, source files, prepared-data checks."""
    parser = tool_parser(
        "smoothbench-data",
        "Around the data stage: list the datasets the workflow knows (K, splits, source),\n"
        "the source files an air-gapped machine must fetch for one, or check a prepared\n"
        "dataset folder against its manifest.",
        [
            "smoothbench-data datasets",
            "smoothbench-data datasets --configfile mine.yaml   # with the study's own",
            "smoothbench-data sources mnist",
            "smoothbench-data verify results/demo/prepared/digits",
        ],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser(
        "datasets",
        help="list the known datasets (with a study's config, its own ones too)",
    )
    add_study_arguments(listing, default=None, default_text="the registry alone")
    sources = commands.add_parser("sources", help="list the source files of a dataset")
    sources.add_argument("name")
    verify = commands.add_parser("verify", help="check a prepared dataset folder")
    verify.add_argument("folder")
    arguments = parser.parse_args(argv)

    if arguments.command == "datasets":
        specs = DATASETS
        if arguments.configfile or arguments.config:
            try:
                specs = study_from_arguments(arguments).dataset_specs
            except (OSError, ConfigError) as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
        for spec in specs.values():
            print(
                f"{spec.name:14s} K={spec.num_classes:<5d} {spec.train_split}/{spec.validation_split:10s} {spec.description}"
            )
    elif arguments.command == "sources":
        try:
            spec = get_dataset(arguments.name)
        except KeyError as error:  # a study's own dataset has no registry source files
            print(
                f"error: {error.args[0]}; `sources` lists a registry dataset's files",
                file=sys.stderr,
            )
            return 1
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
            "smoothbench-tables --configfile config.yaml mine.yaml --config 'seeds=[0,1]'",
        ],
    )
    add_study_arguments(parser)
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
        study = study_from_arguments(arguments)
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
                f"error: none of the {total} runs of {study_arguments_text(arguments)} has finished under {arguments.runs}",
                file=sys.stderr,
            )
            return 1
        # Interim only while runs are missing: with every run finished, no such note
        status = (
            f"Interim: {len(finished)} of {total} runs finished; '-' also marks the unfinished ones."
            if unfinished
            else None
        )
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
        study = study_from_arguments(arguments)
        # measured where there is a file (never measured here, unasked), stated rates
        # over it; without a file, the paper's rates for every network not stated
        throughput = arguments.throughput or (
            benchmark_csv
            if benchmark_csv.is_file() and not arguments.paper_rates
            else None
        )
        stated = [cost.parse_rate(text) for text in arguments.rate]
        if throughput:
            rates = cost.read_benchmark(throughput, arguments.variant) + stated
        else:
            rates = cost.with_paper_rates(stated)
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
