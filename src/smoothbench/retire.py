"""Retrain runs on purpose, losing nothing: ``smoothbench-retire``.

A finished run is never trained again by the workflow unless its settings or its data
change. To train some again anyway - after a code change, under another precision, to
check a number - retire them: each chosen run folder is moved, whole (metrics.json,
history.csv, the ``.finished/`` record, a checkpoint), into

    {results_folder}/retired/{date and time}/runs/{experiment}/{method}~{value}/seed~{seed}

beside a ``retired.json`` that lists the runs and why they were retired. The next
workflow run finds their outputs missing and trains them anew; the old numbers stay on
disk, under the same path grammar, so ``smoothbench-tables --runs
{results_folder}/retired/{date}/runs`` tabulates them for a comparison.

Runs are chosen by experiment, method, value and seed, and by provenance: trained by a
commit other than the checkout's HEAD (or from a dirty tree), or with any attempt under
another precision than the one named. Only runs of the study are touched; nothing is
moved with ``--dry-run``.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

from smoothbench import run_record, storage
from smoothbench.cli import add_study_arguments, study_from_arguments, tool_parser
from smoothbench.config import ConfigError
from smoothbench.provenance import code_provenance
from smoothbench.provenance_summary import run_provenance
from smoothbench.study import Run, Study

RETIRED_FOLDER = "retired"
RETIRED_RECORD = "retired.json"


def _metrics(folder: Path) -> dict | None:
    try:
        return json.loads((folder / run_record.METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None


def why_retire(
    run: Run,
    folder: Path,
    experiments: list[str] | None = None,
    methods: list[str] | None = None,
    values: list[str] | None = None,
    seeds: list[int] | None = None,
    other_commit: str | None = None,
    other_precision: str | None = None,
) -> str | None:
    """Why ``run`` (with its files in ``folder``) is chosen, in words; None when it is
    not (or has no files to move). The filters all have to match."""
    if not folder.exists():
        return None
    if experiments and run.experiment not in experiments:
        return None
    if methods and run.method not in methods:
        return None
    if values and run.value_text not in values:
        return None
    if seeds and run.seed not in seeds:
        return None
    reasons = ["chosen by name"]
    metrics = _metrics(folder)
    provenance = run_provenance(metrics or {})  # one reader of a run's provenance
    if other_commit is not None:
        commit = provenance["code_commit"]
        dirty = "True" in provenance["code_dirty"].split("+")
        if metrics is None or (commit == other_commit and not dirty):
            return None
        reasons = [
            f"trained by commit {commit or 'unknown'}{' (dirty tree)' if dirty else ''}, "
            f"not {other_commit}"
        ]
    if other_precision is not None:
        precisions = provenance["precision"]
        if metrics is None or precisions.split("+") == [other_precision]:
            return None
        reasons.append(
            f"trained under {precisions or 'an unrecorded precision'}, not {other_precision}"
        )
    if metrics is None:
        reasons.append("unfinished (its checkpoint moves with it)")
    return "; ".join(reasons)


def choose(study: Study, **filters) -> list[tuple[Run, Path, str]]:
    """(run, its folder, why) of every run of the study that the filters choose."""
    chosen = []
    for run in study.runs():
        folder = Path(run.folder(study.runs_folder))
        why = why_retire(run, folder, **filters)
        if why is not None:
            chosen.append((run, folder, why))
    return chosen


def retire(
    study: Study,
    chosen: list[tuple[Run, Path, str]],
    when: datetime.datetime | None = None,
) -> Path:
    """Move each chosen run folder, whole, under a dated folder of retired runs, and
    write its ``retired.json``; return the dated folder. Each move is one rename on the
    same file system, so a run is either still in place or retired, never half."""
    when = when or datetime.datetime.now(datetime.UTC)
    stamp = when.strftime("%Y-%m-%dT%H%M%S")
    target = Path(study.results_folder) / RETIRED_FOLDER / stamp
    record = {
        "retired": when.isoformat(timespec="seconds"),
        "results_folder": study.results_folder,
        "runs": [],
    }
    for run, folder, why in chosen:
        destination = Path(run.folder(str(target / "runs")))
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, destination)
        for parent in (
            folder.parent,
            folder.parent.parent,
        ):  # {method}~{value}, experiment
            try:
                parent.rmdir()  # only when the move left it empty
            except OSError:
                break
        record["runs"].append(
            {
                "experiment": run.experiment,
                "method": run.method,
                "value": run.value,
                "seed": run.seed,
                "from": str(folder),
                "to": str(destination),
                "why": why,
            }
        )
        storage.write_json_atomic(target / RETIRED_RECORD, record)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser(
        "smoothbench-retire",
        "Move chosen runs of a study, whole, into a dated folder of retired runs, so that\n"
        "the next workflow run trains them again and the old numbers can still be compared.",
        [
            "smoothbench-retire --experiments svhn --dry-run",
            "smoothbench-retire --other-commit          # runs trained by another commit than HEAD",
            "smoothbench-retire --other-precision float32 --configfile config.yaml compute.yaml",
            "smoothbench-retire --method gamma --values 0.9 --seeds 0 1",
        ],
    )
    add_study_arguments(parser)
    parser.add_argument("--experiments", nargs="+", metavar="NAME")
    parser.add_argument("--methods", nargs="+", metavar="METHOD")
    parser.add_argument(
        "--values", nargs="+", metavar="VALUE", help="as in run paths: 0.9, 1.0"
    )
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED")
    parser.add_argument(
        "--other-commit",
        action="store_true",
        help="only runs trained by a commit other than this checkout's HEAD, or from a "
        "dirty tree",
    )
    parser.add_argument(
        "--other-precision",
        metavar="PRECISION",
        help="only runs with an attempt under another precision than this one",
    )
    parser.add_argument("--dry-run", action="store_true", help="list, move nothing")
    arguments = parser.parse_args(argv)
    try:
        study = study_from_arguments(arguments)
    except (OSError, ConfigError) as error:
        parser.exit(1, f"smoothbench-retire: error: {error}\n")
    filters = {
        "experiments": arguments.experiments,
        "methods": arguments.methods,
        "values": arguments.values,
        "seeds": arguments.seeds,
        "other_precision": arguments.other_precision,
    }
    if arguments.experiments:
        unknown = [
            name for name in arguments.experiments if name not in study.experiments
        ]
        if unknown:
            parser.error(
                f"--experiments {unknown[0]}: no such experiment (the study has "
                f"{', '.join(study.experiments)})"
            )
    if arguments.other_commit:
        head = code_provenance()["commit"]  # the checkout this smoothbench runs from
        if head is None:
            parser.error(
                "--other-commit: this smoothbench does not run from a git checkout"
            )
        filters["other_commit"] = head
    if not any(filters.values()):
        parser.error(
            "choose the runs: --experiments, --methods, --values, --seeds, --other-commit "
            "or --other-precision (retiring every run of a study takes naming it)"
        )
    chosen = choose(study, **filters)
    for _, folder, why in chosen:
        print(f"{folder}: {why}")
    if not chosen:
        print("no run of the study matches; nothing moved")
        return 0
    if arguments.dry_run:
        print(f"{len(chosen)} run(s) would be retired (--dry-run: nothing moved)")
        return 0
    target = retire(study, chosen)
    print(
        f"retired {len(chosen)} run(s) into {target} (see {RETIRED_RECORD}); the next "
        "workflow run trains them again"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
