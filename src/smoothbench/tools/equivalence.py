"""Do fast compute settings give the same science? ``smoothbench-equivalence``.

Trains one small study to convergence (``config/equivalence.yaml``: digits, 2 gammas x
7 seeds, 20 epochs) through the real workflow twice or more: once under the reference
settings (TensorFlow, float32, no XLA, op determinism, and TensorFlow's own Eigen
kernels, oneDNN off: one computation on every CPU, the one earlier results were trained
with on CPUs without AVX-512 VNNI/BF16) and once under each candidate: a named compute block (``--compute FILE``, as
``smoothbench-tune`` writes it, :mod:`smoothbench.tools.tune_candidates`), a candidate setting of this
machine by its label (``--setting``), or every candidate (``--all``). For each
candidate it pairs the runs by
(gamma, seed) and reports the mean difference in best validation accuracy (candidate -
reference, in percentage points) with its 95% Student-t interval. A candidate passes
when the interval lies within plus or minus config key ``equivalence_tolerance``
(default 0.5 points).

Writes ``{results_folder}/equivalence.csv`` (one row per candidate) and
``equivalence.md`` (the same as a table), and exits 1 unless every candidate passes.
A candidate whose mean difference is within the tolerance but whose interval is not is
``inconclusive``, with the number of pairs that would make its interval fit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from smoothbench.config import ConfigError
from smoothbench.results.analysis import student_half_width, student_interval
from smoothbench.settings import COMPUTATION_KEYS
from smoothbench.study import load_study
from smoothbench.tools import tune_candidates
from smoothbench.tools.command_line import (
    UsageError,
    add_study_arguments,
    config_from_arguments,
    tool_parser,
    user_error,
)

# oneDNN pinned off: compute auto turns it on for TensorFlow on x86-64 (every candidate
# then runs with it), so --setting auto weighs the default against TensorFlow's kernels.
REFERENCE = {**tune_candidates.REFERENCE.as_dict(), "onednn": False}
COLUMNS = [
    "candidate",
    "backend",
    "precision",
    "jit_compile",
    "deterministic",
    "pairs",
    "reference_mean",
    "candidate_mean",
    "mean_difference",
    "lower_95",
    "upper_95",
    "tolerance",
    "verdict",
    "pairs_needed",
    "reference_hours",
    "candidate_hours",
]


def workflow_folder() -> Path:
    """The checkout whose Snakefile trains each side: the one this package is imported
    from (its src/), else the current folder. The workflow is no part of an installed
    package, so an installed smoothbench-equivalence runs in a checkout."""
    for folder in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (folder / "Snakefile").is_file() and (folder / "workflow").is_dir():
            return folder
    raise UsageError(
        "it trains through the workflow (the Snakefile and "
        "workflow/ of a smoothbench checkout), which is not installed with the package: "
        "run it in a checkout"
    )


def side_config(config: dict, name: str, compute: dict) -> dict:
    """The study ``config`` under compute settings ``compute``, in a folder of its own."""
    side = json.loads(json.dumps(config))
    side["results_folder"] = str(Path(config["results_folder"]) / name)
    side.setdefault("compute", {}).update(compute)
    return side


def train_side(config: dict, cores: int, log) -> None:
    """Train every gamma run of ``config`` with the real workflow."""
    folder = Path(config["results_folder"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        str(Path(sys.executable).with_name("snakemake")),
        "--snakefile",
        str(workflow_folder() / "Snakefile"),
        "--configfile",
        str(path),
        "--cores",
        str(cores),
        "--until",
        "train",
    ]
    log(f"training {folder}: {' '.join(command)}")
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        raise SystemExit(f"the workflow failed for {folder}:\n{process.stderr[-4000:]}")


def best_accuracies(config: dict) -> dict[tuple, tuple[float, float]]:
    """(experiment, value, seed) -> (best validation accuracy in points, training hours)."""
    study = load_study(config)
    found = {}
    for run in study.runs("gamma"):
        folder = run.folder(study.runs_folder)
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
        found[run.experiment, run.value, run.seed] = (
            100 * metrics["best_val_accuracy"],
            metrics.get("train_seconds", math.nan) / 3600,
        )
    return found


PASS, INCONCLUSIVE, DIFFERS = "pass", "inconclusive", "FAIL"


def equivalence_verdict(
    mean: float, lower: float, upper: float, tolerance: float
) -> str:
    """``pass`` when the interval lies within ± ``tolerance``; ``FAIL`` when the mean
    difference itself lies outside (the setting moves the accuracy by more than the
    tolerance); ``inconclusive`` otherwise: the mean is within, but the pairs are too
    few or too noisy for the interval to fit (:func:`pairs_needed` says how many)."""
    if -tolerance <= lower and upper <= tolerance:
        return PASS
    return DIFFERS if abs(mean) > tolerance else INCONCLUSIVE


def pairs_needed(
    differences: list[float], tolerance: float, most: int = 1000
) -> int | str:
    """How many pairs would make the 95% interval fit within ± ``tolerance`` if the
    mean difference and its spread stayed as measured (a planning figure: add seeds,
    the runs already trained are kept); ``more than {most}`` beyond that."""
    count = len(differences)
    mean = sum(differences) / count
    spread = statistics.stdev(differences) if count > 1 else 0.0
    room = tolerance - abs(mean)
    for pairs in range(max(count, 2), most + 1):
        if student_half_width(spread, pairs) <= room:
            return pairs
    return f"more than {most}"


def compare(
    reference: dict, candidate: dict, tolerance: float, name: str, choice: dict
) -> dict:
    """One row of the table: the paired differences of ``candidate`` from ``reference``."""
    keys = sorted(reference)
    if sorted(candidate) != keys:
        raise SystemExit(f"{name}: its runs do not pair with the reference's")
    differences = [candidate[key][0] - reference[key][0] for key in keys]
    mean, lower, upper = student_interval(differences)
    verdict = equivalence_verdict(mean, lower, upper, tolerance)
    return {
        "candidate": name,
        **choice,
        "pairs": len(keys),
        "reference_mean": round(sum(reference[k][0] for k in keys) / len(keys), 3),
        "candidate_mean": round(sum(candidate[k][0] for k in keys) / len(keys), 3),
        "mean_difference": round(mean, 3),
        "lower_95": round(lower, 3),
        "upper_95": round(upper, 3),
        "tolerance": tolerance,
        "verdict": verdict,
        "pairs_needed": ""
        if verdict != INCONCLUSIVE
        else pairs_needed(differences, tolerance),
        "reference_hours": round(sum(reference[k][1] for k in keys), 4),
        "candidate_hours": round(sum(candidate[k][1] for k in keys), 4),
    }


def block_from_file(path: Path | str) -> dict:
    """The computation keys of the ``compute:`` block of a config file (what
    ``smoothbench-tune`` writes); the study-wide ones, since the equivalence study's
    own experiments are not the paper's."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    compute = config.get("compute") if isinstance(config, dict) else None
    section = compute or {}
    block = {key: section[key] for key in COMPUTATION_KEYS if key in section}
    if not block:
        raise UsageError(
            f"--compute {path}: no compute block with any of "
            f"{', '.join(COMPUTATION_KEYS)} in it (smoothbench-tune writes one)"
        )
    return {key: "auto" for key in COMPUTATION_KEYS} | block


def candidates_to_check(
    config: dict,
    every: bool,
    labels: list[str] | None = None,
    compute_files: list[str] | None = None,
) -> list[tuple[str, dict]]:
    """(name, compute keys) of the settings to compare with the reference: the blocks
    of ``compute_files``; with ``every``, each candidate of this machine; with
    ``labels``, the candidates of those labels (:meth:`smoothbench.tools.tune_candidates.Choice.label`;
    ``auto``: compute auto's fixed rule here)."""
    found = [(str(path), block_from_file(path)) for path in compute_files or []]
    if not every and not labels:
        if not found:
            raise UsageError(
                "name what to check: --compute FILE (a compute "
                "block, as smoothbench-tune writes it), --setting LABEL, or --all"
            )
        return found
    study = load_study(config)
    compute = study.compute_settings()
    device = tune_candidates.device_description(compute)
    # every computation key of ComputeSettings takes "auto"
    all_auto: dict[str, Any] = dict.fromkeys(COMPUTATION_KEYS, "auto")
    here = {
        choice.label(): choice.as_dict()
        for choice in tune_candidates.candidates(
            dataclasses.replace(compute, **all_auto),
            device,
        )
        if choice != tune_candidates.REFERENCE
    }
    unknown = [label for label in labels or [] if label not in here and label != "auto"]
    if unknown:
        raise UsageError(
            f"--setting {unknown[0]!r}: not a candidate on "
            f"{device['name']}; the candidates: "
            + "; ".join(repr(label) for label in here)
        )
    auto = ("auto", dict.fromkeys(COMPUTATION_KEYS, "auto"))
    if every:
        return found + list(here.items())
    assert labels is not None  # neither every nor labels returned above
    return found + [
        auto if label == "auto" else (label, here[label]) for label in labels
    ]


def write_table(rows: list[dict], folder: Path) -> None:
    import csv

    def needed(row):
        return f": {row['pairs_needed']} pairs would fit" if row["pairs_needed"] else ""

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "equivalence.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| candidate | pairs | reference | candidate | difference (95% CI), points | verdict (±δ) | hours ref / cand |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['candidate']} | {row['pairs']} | {row['reference_mean']:.2f} | {row['candidate_mean']:.2f} | "
            f"{row['mean_difference']:+.2f} ({row['lower_95']:+.2f}, {row['upper_95']:+.2f}) | "
            f"{row['verdict']}{needed(row)} (±{row['tolerance']:g}) | {row['reference_hours']:.3f} / {row['candidate_hours']:.3f} |"
        )
    (folder / "equivalence.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = tool_parser(
        "smoothbench-equivalence",
        __doc__.split("\n\n")[0],
        [
            "smoothbench-equivalence --compute compute.yaml   # a block smoothbench-tune wrote",
            "smoothbench-equivalence --all           # every candidate setting of this machine",
            "smoothbench-equivalence --configfile my.yaml --cores 8 --compute compute.yaml",
            "smoothbench-equivalence --all --config 'seeds=[0,1,2,3,4,5,6,7,8,9]'",
        ],
    )
    add_study_arguments(
        parser, None, "config/equivalence.yaml of the checkout, the study to train"
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--all",
        action="store_true",
        help="every candidate setting of this machine, not only auto's pick",
    )
    parser.add_argument(
        "--compute",
        action="append",
        metavar="FILE",
        help="a config file whose compute block to check (as smoothbench-tune writes "
        "it); repeatable",
    )
    parser.add_argument(
        "--setting",
        action="append",
        metavar="LABEL",
        help="a candidate setting of this machine to check, by its label "
        "(e.g. 'tensorflow mixed_bfloat16 XLA off, deterministic'; 'auto': compute "
        "auto's fixed rule here); repeatable",
    )
    arguments = parser.parse_args(argv)
    # every user's error before any training: no checkout, a bad config, nothing to check
    try:
        checkout = workflow_folder()
        default = (
            [] if arguments.configfile else [checkout / "config" / "equivalence.yaml"]
        )
        config = config_from_arguments(arguments, default)
        study = load_study(config)
        to_check = candidates_to_check(
            config, arguments.all, arguments.setting, arguments.compute
        )
    except (OSError, ConfigError, UsageError) as error:
        return user_error("smoothbench-equivalence", error)
    tolerance = study.config["equivalence_tolerance"]
    log = lambda message: print(message, flush=True)  # noqa: E731
    reference_config = side_config(config, "reference", REFERENCE)
    train_side(reference_config, arguments.cores, log)
    reference = best_accuracies(reference_config)
    rows = []
    for name, compute in to_check:
        folder_name = tune_candidates.slug(name)
        candidate_config = side_config(config, folder_name, compute)
        train_side(candidate_config, arguments.cores, log)
        # what the candidate's runs computed with, from their own records
        candidate_study = load_study(candidate_config)
        first = next(iter(candidate_study.runs("gamma")))
        attempt = json.loads(
            (
                Path(first.folder(candidate_study.runs_folder)) / "metrics.json"
            ).read_text()
        )["attempts"][-1]
        choice = compute
        if "auto" in compute.values():  # what auto resolved to
            choice = {key: attempt[key] for key in COMPUTATION_KEYS}
        if name in (arguments.compute or []) or name == "auto":
            name = f"{name}: {tune_candidates.Choice.from_dict(choice).label()}"
        if "onednn" in attempt:  # the reference's is off
            name += f", oneDNN {'on' if attempt['onednn'] else 'off'}"
        rows.append(
            compare(
                reference, best_accuracies(candidate_config), tolerance, name, choice
            )
        )
        write_table(rows, Path(study.results_folder))
    print((Path(study.results_folder) / "equivalence.md").read_text())
    if any(row["verdict"] == INCONCLUSIVE for row in rows):
        print(
            "inconclusive: the mean difference is within the tolerance but the interval "
            "is not; add seeds to the config's seeds: (the runs already trained are "
            "kept) and run again"
        )
    return 0 if all(row["verdict"] == PASS for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
