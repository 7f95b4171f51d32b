"""``smoothbench-tune``: the command around :mod:`smoothbench.tools.tune_candidates`. It finds the
study's kinds of run, measures each on this machine, and writes the ``compute:`` block
(with every measurement as comments, and the evidence as JSON beside it) that a user
passes as a second config file: ``snakemake --configfile config.yaml compute.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import yaml

from smoothbench import files
from smoothbench.config import ConfigError
from smoothbench.settings import RunSettings
from smoothbench.tools.command_line import (
    add_study_arguments,
    study_from_arguments,
    tool_parser,
    user_error,
)
from smoothbench.tools.tune_candidates import Choice, measure, work_description


def kinds_of_run(study, experiments: list[str] | None = None) -> list[dict]:
    """The study's kinds of run (:func:`work_description`, and the compute keys the
    config fixes for them), each with a run's settings to measure with, its
    experiments and its number of runs, the kind with the most runs first."""
    kinds: dict[str, dict] = {}
    for name in experiments or list(study.experiments):
        runs = [run for run in study.runs() if run.experiment == name]
        first = runs[0]
        settings = study.run_settings(name, first.method, first.value_text, first.seed)
        compute = study.compute_settings(name)
        key = json.dumps(
            [work_description(settings), compute.requested()], sort_keys=True
        )
        kind = kinds.setdefault(
            key,
            {"settings": settings, "compute": compute, "experiments": [], "runs": 0},
        )
        kind["experiments"].append(name)
        kind["runs"] += len(runs)
    return sorted(kinds.values(), key=lambda kind: -kind["runs"])


def kind_label(settings: RunSettings) -> str:
    shape = "x".join(map(str, settings.image_shape))
    return f"{settings.model_name} on {shape} images, batch {settings.batch_size}"


def compute_block(kinds: list[dict]) -> dict:
    """The ``compute:`` block: the pick of the kind with the most runs study-wide, and
    ``experiments.NAME`` entries for the experiments of a kind whose pick differs."""
    study_wide = kinds[0]["record"]["chosen"]
    block: dict = dict(study_wide)
    own = {
        name: dict(kind["record"]["chosen"])
        for kind in kinds[1:]
        if kind["record"]["chosen"] != study_wide
        for name in kind["experiments"]
    }
    if own:
        block["experiments"] = own
    return {"compute": block}


def block_text(
    kinds: list[dict],
    configfiles: list[str],
    evidence: Path,
    overrides: list[str] | None = None,
) -> str:
    """The YAML file: what was measured, as comments, then the block. ``overrides``:
    the study's ``--config`` values, passed again after this file."""
    device = kinds[0]["record"]["device"]
    config = f" --config {' '.join(overrides)}" if overrides else ""
    lines = [
        "# Compute settings measured by smoothbench-tune on "
        f"{kinds[0]['record']['measured_at']} ({device['name']}; "
        f"CPU features: {', '.join(device['cpu']['features']) or 'none listed'})",
        f"# for the study of {' '.join(configfiles)}{config}. Pass it after the study's config:",
        f"#   snakemake --configfile {' '.join(configfiles)} <this file>{config}",
        "# or paste the block into your config. Every run trained under it records what it",
        "# used in metrics.json; a run begun under other settings does not resume under these.",
        f"# The whole evidence: {evidence.name}",
    ]
    for kind in kinds:
        record = kind["record"]
        lines.append("#")
        lines.append(
            f"# {kind_label(kind['settings'])} ({kind['runs']} runs: "
            f"{', '.join(kind['experiments'])}), {record['rounds']} "
            f"round{'s' if record['rounds'] != 1 else ''}:"
        )
        for result in record["candidates"]:
            ratio = result.get("over_reference_median")
            lines.append(
                f"#   {Choice.from_dict(result).label()}: {result['images_per_second']:.1f} images/s"
                + (f", {ratio:.2f}x the reference" if ratio else "")
            )
        checked = "; ".join(
            f"{Choice.from_dict(check['choice']).label()}: "
            + ("bit-exact" if check["bit_exact"] else "NOT bit-exact")
            for check in record["resume_checks"]
        )
        lines.append(f"#   resume check: {checked}")
        lines.append(f"#   chosen: {Choice.from_dict(record['chosen']).label()}")
    return (
        "\n".join(lines) + "\n" + yaml.safe_dump(compute_block(kinds), sort_keys=False)
    )


def main(argv: list[str] | None = None) -> int:
    """``smoothbench-tune``: measure this machine, write a compute block."""
    parser = tool_parser(
        "smoothbench-tune",
        "Measure which compute settings (backend, precision, XLA, op determinism) train\n"
        "each kind of run of a study fastest on this machine, keeping only settings that\n"
        "resume bit-exactly, and write them as a compute block for a second config file.\n"
        "No training job measures: without this file, compute auto is a fixed rule.",
        [
            "smoothbench-tune                                   # config.yaml -> compute.yaml",
            "smoothbench-tune --configfile config/demo.yaml --output demo-compute.yaml",
            "smoothbench-tune --list        # the study's kinds of run; then: snakemake --configfile config.yaml compute.yaml",
        ],
    )
    add_study_arguments(parser)
    parser.add_argument("--output", default="compute.yaml")
    parser.add_argument(
        "--experiments",
        nargs="+",
        metavar="NAME",
        help="measure these experiments' kinds only (default: every experiment)",
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="timing of each candidate, per round"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of timing, taking turns"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="threads of each measuring process (default: compute.threads_per_job, at "
        "most this machine's CPUs, as Snakemake caps a job at --cores)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the kinds of run and stop"
    )
    arguments = parser.parse_args(argv)
    try:
        study = study_from_arguments(arguments)
    except (OSError, ConfigError) as error:
        return user_error("smoothbench-tune", error)
    unknown = [
        name for name in arguments.experiments or [] if name not in study.experiments
    ]
    if unknown:
        parser.error(
            f"--experiments {unknown[0]}: no such experiment (the study has "
            f"{', '.join(study.experiments)})"
        )
    kinds = kinds_of_run(study, arguments.experiments)
    for kind in kinds:
        print(
            f"{kind_label(kind['settings'])}: {kind['runs']} runs ({', '.join(kind['experiments'])})",
            flush=True,
        )
    if arguments.list:
        return 0
    log = lambda message: print(message, flush=True)  # noqa: E731
    for kind in kinds:
        compute = kind["compute"]
        # as a job under snakemake --cores: no more threads than this machine has
        threads = arguments.threads or min(compute.threads_per_job, os.cpu_count() or 1)
        compute = dataclasses.replace(compute, threads_per_job=threads)
        if compute.gpus_per_job > 0:
            compute = dataclasses.replace(
                compute, gpus_given=f"compute.gpus_per_job={compute.gpus_per_job}"
            )
        log(f"measuring {kind_label(kind['settings'])}")
        kind["record"] = measure(
            kind["settings"], compute, log, arguments.seconds, arguments.rounds
        )
    output = Path(arguments.output)
    evidence = output.with_name(output.stem + ".evidence.json")
    files.write_json_atomic(
        evidence,
        {
            "configfiles": arguments.configfile,
            "config": arguments.config,
            "kinds": [
                {
                    "experiments": kind["experiments"],
                    "runs": kind["runs"],
                    "record": kind["record"],
                }
                for kind in kinds
            ],
        },
    )
    with files.atomic_file(output, "w") as stream:
        stream.write(
            block_text(kinds, arguments.configfile, evidence, arguments.config)
        )
    print(f"wrote {output} (evidence: {evidence})")
    print(output.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
