"""``smoothbench-tables``: the tables of the runs finished so far, while a study still runs
(the workflow's rule ``aggregate`` waits for every run).

    smoothbench-tables [--configfile config.yaml ...] [--config KEY=VALUE ...] [--runs RESULTS/runs] [--output RESULTS/tables_interim]

(RESULTS: the config's results_folder, results/paper for config.yaml.)
"""

from __future__ import annotations

from pathlib import Path

from smoothbench.config import ConfigError
from smoothbench.errors import SmoothbenchError
from smoothbench.tools.command_line import (
    add_study_arguments,
    study_arguments_text,
    study_from_arguments,
    tool_parser,
    user_error,
)


def main(argv: list[str] | None = None) -> int:
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
    from smoothbench.results import collection, paper_tables

    try:
        study = study_from_arguments(arguments)
    except (OSError, ConfigError) as error:
        return user_error("smoothbench-tables", error)
    arguments.runs = arguments.runs or study.runs_folder
    arguments.output = arguments.output or f"{study.results_folder}/tables_interim"
    if Path(arguments.output).resolve() == (
        Path(arguments.runs).resolve().parent / "tables"
    ):
        return user_error(
            "smoothbench-tables",
            f"{arguments.output} is the workflow's own tables folder; choose another --output",
        )
    try:
        finished, unfinished = collection.finished_runs(study, arguments.runs)
        total = len(finished) + len(unfinished)
        if not finished:
            return user_error(
                "smoothbench-tables",
                f"none of the {total} runs of {study_arguments_text(arguments)} has finished under {arguments.runs}",
            )
        # Interim only while runs are missing: with every run finished, no such note
        status = (
            f"Interim: {len(finished)} of {total} runs finished; '-' also marks the unfinished ones."
            if unfinished
            else None
        )
        chosen = study.config["tables"]
        # as the workflow does: runs.csv first (every file checked), the tables from it
        runs_file = Path(arguments.output) / collection.RUNS_FILE
        collection.write_runs_table(
            study, finished, runs_file, chosen["calibration_epoch"]
        )
        paper_tables.write_tables(
            study,
            collection.read_runs_table(runs_file),
            arguments.output,
            chosen["paper_check_tolerance"],
            status,
            chosen["calibration_epoch"],
        )
    except (OSError, SmoothbenchError, ConfigError) as error:
        return user_error("smoothbench-tables", error)
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
