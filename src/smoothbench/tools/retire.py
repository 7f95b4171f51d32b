"""Retrain runs on purpose, losing nothing: ``smoothbench-retire``.

A finished run is never trained again by the workflow unless its settings or its data
change. To train some again anyway - after a code change, under another precision, to
check a number - retire them: each chosen run folder is moved, whole (metrics.json,
history.csv, the ``.finished/`` record, a checkpoint, and every kept earlier version of
the run under ``.versions/``), into

    {results_folder}/retired/{date and time}/runs/{experiment}/{method}~{value}/seed~{seed}

beside a ``retired.json`` that lists the runs and why they were retired. The next
workflow run finds their outputs missing and trains them anew; the old numbers stay on
disk, under the same path grammar, so ``smoothbench-tables --runs
{results_folder}/retired/{date}/runs`` tabulates them for a comparison.

Runs are chosen by experiment, method, value and seed, and by provenance: trained by a
commit other than the checkout's HEAD (or from a dirty tree), or with any attempt under
another precision or backend than the one named. The provenance filters read the run's
published (current) version only: its ``metrics.json``, never those of the kept
versions under ``.versions/`` (which move with the run all the same). Every filter has
to match; each run's reason names the filters and values that chose it.

Refused before anything moves:

- a filter value outside its known set: an experiment, method, value or seed the study
  does not have, a precision other than :data:`smoothbench.compute.backends.PRECISIONS`, a
  backend other than :data:`smoothbench.compute.backends.BACKENDS` (a typo would otherwise
  choose every finished run: under ``--other-precision fp32`` no run was trained
  under fp32);
- a chosen run that is training now, unless ``--include-training``: its
  ``checkpoint/status.json`` says starting or running and was rewritten within the
  stale limit of ``smoothbench-status`` (``--stale-minutes``, and three progress
  intervals). A *stalled* run - its status says running but has been silent for
  longer - is taken for a job killed outright, as ``smoothbench-status`` takes it: it is
  retired like any unfinished run, its reason saying that it is stalled.

Only runs of the study are touched; nothing is moved with ``--dry-run``.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from smoothbench import files, run_record
from smoothbench.compute.backends import BACKENDS, PRECISIONS
from smoothbench.compute.software import code_provenance
from smoothbench.config import ConfigError
from smoothbench.errors import SmoothbenchError
from smoothbench.results.provenance import run_provenance
from smoothbench.study import Run, Study
from smoothbench.tools.command_line import (
    add_study_arguments,
    study_from_arguments,
    tool_parser,
    user_error,
)
from smoothbench.tools.status import DEFAULT_STALE_MINUTES
from smoothbench.train.progress import format_duration
from smoothbench.train.versions import kept_versions, size_text

RETIRED_FOLDER = "retired"
RETIRED_RECORD = "retired.json"

# The filters whose known values are the study's own.
_STUDY_OPTIONS = ("--experiments", "--methods", "--values", "--seeds")


class RetireError(SmoothbenchError, ValueError):
    """A retirement refused before anything moved: an unknown filter value, or a run
    that is training now."""


def _metrics(folder: Path) -> dict | None:
    try:
        return json.loads((folder / run_record.METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None


def known_values(study: Study) -> dict[str, list[str]]:
    """The values each filter may take, by option: the study's experiments, methods,
    values and seeds; the precisions and backends smoothbench.compute.backends knows."""
    runs = study.runs()
    return {
        "--experiments": list(study.experiments),
        "--methods": list(dict.fromkeys(run.method for run in runs)),
        "--values": sorted({run.value_text for run in runs}, key=float),
        "--seeds": [str(seed) for seed in study.seeds],
        "--other-precision": list(PRECISIONS),
        "--other-backend": list(BACKENDS),
    }


def check_filters(
    study: Study,
    experiments: list[str] | None = None,
    methods: list[str] | None = None,
    values: list[str] | None = None,
    seeds: list[int] | None = None,
    other_commit: str | None = None,
    other_precision: str | None = None,
    other_backend: str | None = None,
) -> None:
    """Raise :class:`RetireError` for the first filter value outside its known set,
    naming the known ones."""
    given = {
        "--experiments": experiments or [],
        "--methods": methods or [],
        "--values": values or [],
        "--seeds": [str(seed) for seed in seeds or []],
        "--other-precision": [] if other_precision is None else [other_precision],
        "--other-backend": [] if other_backend is None else [other_backend],
    }
    known = known_values(study)
    for option, chosen in given.items():
        for value in chosen:
            if value not in known[option]:
                whose = "the study has" if option in _STUDY_OPTIONS else "known:"
                raise RetireError(
                    f"{option} {value}: unknown ({whose} {', '.join(known[option])}); "
                    "nothing moved"
                )


def training_now(
    folder: Path, now: float, stale_minutes: float = DEFAULT_STALE_MINUTES
) -> tuple[bool, str]:
    """(whether the run in ``folder`` is training now, what its status says).

    Training now: its ``checkpoint/status.json`` says starting or running and was
    rewritten within ``stale_minutes`` (and three progress intervals), the limit of
    :func:`smoothbench.tools.status.run_status`. Past it the run is stalled: (False, "stalled
    ...")."""
    status = run_record.read_run_status(folder)
    if status is None or status["state"] not in ("starting", "running"):
        return False, ""
    try:
        age = now - float(status["updated"])
    except (KeyError, TypeError, ValueError):
        return True, f"{status['state']} (its status.json gives no time: taken as live)"
    limit = max(60 * stale_minutes, 3 * (status.get("interval_seconds") or 0))
    where = f"on {status.get('host') or 'an unrecorded host'} (pid {status.get('pid')})"
    if age > limit:
        return False, f"stalled: its status has been silent for {format_duration(age)}"
    return True, f"{status['state']} {where}, last word {format_duration(age)} ago"


def why_retire(
    run: Run,
    folder: Path,
    experiments: list[str] | None = None,
    methods: list[str] | None = None,
    values: list[str] | None = None,
    seeds: list[int] | None = None,
    other_commit: str | None = None,
    other_precision: str | None = None,
    other_backend: str | None = None,
) -> str | None:
    """Why ``run`` (with its files in ``folder``) is chosen, in words: each filter that
    chose it with its value; None when it is not chosen (or has no files to move). The
    filters all have to match. The provenance filters read the published version's
    metrics.json only."""
    if not folder.exists():
        return None
    reasons = []
    for option, given, own in (
        ("--experiments", experiments, run.experiment),
        ("--methods", methods, run.method),
        ("--values", values, run.value_text),
        ("--seeds", seeds, run.seed),
    ):
        if given:
            if own not in given:
                return None
            reasons.append(f"{option} {own}")
    metrics = _metrics(folder)
    provenance = run_provenance(metrics or {})  # one reader of a run's provenance
    if other_commit is not None:
        commit = provenance["code_commit"]
        dirty = "True" in provenance["code_dirty"].split("+")
        if metrics is None or (commit == other_commit and not dirty):
            return None
        reasons.append(
            f"--other-commit: trained by commit {commit or 'unknown'}"
            f"{' (dirty tree)' if dirty else ''}, not {other_commit}"
        )
    for option, key, other in (
        ("--other-precision", "precision", other_precision),
        ("--other-backend", "backend", other_backend),
    ):
        if other is None:
            continue
        recorded = provenance[key]
        if metrics is None or recorded.split("+") == [other]:
            return None
        reasons.append(
            f"{option} {other}: trained under {recorded or f'an unrecorded {key}'}"
        )
    if metrics is None:
        reasons.append("unfinished (its checkpoint moves with it)")
    if not reasons:
        return "chosen by no filter (every run of the study)"
    return "chosen by " + "; ".join(reasons)


def choose(study: Study, **filters) -> list[tuple[Run, Path, str]]:
    """(run, its folder, why) of every run of the study that the filters choose.
    Raises :class:`RetireError` for a filter value outside its known set."""
    check_filters(study, **filters)
    chosen = []
    for run in study.runs():
        folder = Path(run.folder(study.runs_folder))
        why = why_retire(run, folder, **filters)
        if why is not None:
            chosen.append((run, folder, why))
    return chosen


def check_training(
    chosen: list[tuple[Run, Path, str]],
    include_training: bool = False,
    now: float | None = None,
    stale_minutes: float = DEFAULT_STALE_MINUTES,
) -> list[tuple[Run, Path, str]]:
    """``chosen``, each reason saying whether the run is training now or stalled.
    Raises :class:`RetireError` naming the runs training now, unless
    ``include_training``."""
    now = time.time() if now is None else now
    checked, training = [], []
    for run, folder, why in chosen:
        live, said = training_now(folder, now, stale_minutes)
        if live:
            training.append(f"  {folder}: {said}")
            why += f"; training now ({said}), included by --include-training"
        elif said:
            why += f"; {said}"
        checked.append((run, folder, why))
    if training and not include_training:
        raise RetireError(
            f"{len(training)} chosen run(s) are training now:\n"
            + "\n".join(training)
            + "\nnothing moved; let them finish (or stop them) first, or retire them "
            "anyway with --include-training (their jobs would go on writing into the "
            "old run folder)"
        )
    return checked


def retire(
    study: Study,
    chosen: list[tuple[Run, Path, str]],
    when: datetime.datetime | None = None,
    kept_only: bool = False,
) -> Path:
    """Move each chosen run folder, whole (with all its kept versions), under a dated
    folder of retired runs, and write its ``retired.json``; return the dated folder: a
    new one, ``{date and time}-2`` and so on where one of that second exists, so no
    retirement adds to or overwrites another's. Each move is one rename on the same
    file system, so a run is either still in place or retired, never half.
    ``kept_only``: move only each run's kept versions (its ``.versions/``), leaving the
    published version in place (pruning what the current config does not use)."""
    when = when or datetime.datetime.now(datetime.UTC)
    stamp = when.strftime("%Y-%m-%dT%H%M%S")
    target = Path(study.results_folder) / RETIRED_FOLDER / stamp
    for number in range(2, 10_000):  # a second retirement within the same second
        try:
            target.mkdir(parents=True)
            break
        except FileExistsError:
            target = target.with_name(f"{stamp}-{number}")
    else:
        raise RetireError(f"{target}: too many retirements within one second")
    record: dict[str, Any] = {
        "retired": when.isoformat(timespec="seconds"),
        "results_folder": study.results_folder,
        "runs": [],
    }
    for run, folder, why in chosen:
        versions = len(kept_versions(folder))
        destination = Path(run.folder(str(target / "runs")))
        if kept_only:
            destination.mkdir(parents=True, exist_ok=True)
            folder = folder / run_record.VERSIONS_FOLDER
            destination = destination / run_record.VERSIONS_FOLDER
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, destination)
        for parent in (
            [] if kept_only else [folder.parent, folder.parent.parent]
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
                "kept_versions": versions,
            }
        )
        files.write_json_atomic(target / RETIRED_RECORD, record)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser(
        "smoothbench-retire",
        "Move chosen runs of a study, whole, into a dated folder of retired runs, so that\n"
        "the next workflow run trains them again and the old numbers can still be compared.\n"
        "Refuses unknown filter values and runs that are training now, before moving any.",
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
        "dirty tree (read from the run's published metrics.json)",
    )
    parser.add_argument(
        "--other-precision",
        metavar="PRECISION",
        help="only runs with an attempt under another precision than this one, of "
        f"{', '.join(PRECISIONS)} (read from the run's published metrics.json)",
    )
    parser.add_argument(
        "--other-backend",
        metavar="BACKEND",
        help="only runs with an attempt under another backend than this one, of "
        f"{', '.join(BACKENDS)} (read from the run's published metrics.json)",
    )
    parser.add_argument(
        "--include-training",
        action="store_true",
        help="retire chosen runs that are training now too (refused without it)",
    )
    parser.add_argument(
        "--stale-minutes",
        type=float,
        default=DEFAULT_STALE_MINUTES,
        help="a run whose status has been silent for longer is stalled, not training, "
        "as in smoothbench-status (default: %(default)s)",
    )
    parser.add_argument(
        "--kept-versions",
        action="store_true",
        help="move only the chosen runs' kept versions (their .versions/: other settings "
        "or data than the current config's), leaving the published runs in place; "
        "without filters, every run's (smoothbench-status --versions lists them)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list, move nothing")
    arguments = parser.parse_args(argv)
    try:
        study = study_from_arguments(arguments)
    except (OSError, ConfigError) as error:
        return user_error("smoothbench-retire", error)
    filters = {
        "experiments": arguments.experiments,
        "methods": arguments.methods,
        "values": arguments.values,
        "seeds": arguments.seeds,
        "other_precision": arguments.other_precision,
        "other_backend": arguments.other_backend,
    }
    try:
        check_filters(study, **filters)
    except RetireError as error:
        parser.error(str(error))
    if arguments.other_commit:
        head = code_provenance()["commit"]  # the checkout this smoothbench runs from
        if head is None:
            parser.error(
                "--other-commit: this smoothbench does not run from a git checkout"
            )
        filters["other_commit"] = head
    if not any(filters.values()) and not arguments.kept_versions:
        parser.error(
            "choose the runs: --experiments, --methods, --values, --seeds, --other-commit, "
            "--other-precision or --other-backend (retiring every run of a study takes "
            "naming it)"
        )
    try:
        chosen = check_training(
            choose(study, **filters),
            arguments.include_training,
            stale_minutes=arguments.stale_minutes,
        )
    except RetireError as error:
        return user_error("smoothbench-retire", error)
    moves = "would move" if arguments.dry_run else "moves"
    if arguments.kept_versions:
        chosen = [choice for choice in chosen if kept_versions(choice[1])]
    for _, folder, why in chosen:
        kept = kept_versions(folder)
        versions = len(kept)
        if arguments.kept_versions:
            size = size_text(sum(version["bytes"] for version in kept))
            print(
                f"{folder}: {why}; {moves} its {versions} kept version"
                f"{'' if versions == 1 else 's'} only ({size}), not the published one"
            )
            continue
        print(
            f"{folder}: {why}; {moves} the run folder with all its kept versions "
            f"({versions} kept version{'' if versions == 1 else 's'})"
        )
    if not chosen:
        print("no run of the study matches; nothing moved")
        return 0
    if arguments.dry_run:
        print(f"{len(chosen)} run(s) would be retired (--dry-run: nothing moved)")
        return 0
    target = retire(study, chosen, kept_only=arguments.kept_versions)
    if arguments.kept_versions:
        print(
            f"moved the kept versions of {len(chosen)} run(s) into {target} (see "
            f"{RETIRED_RECORD}); the published runs stay, and going back to an old "
            "config trains those versions again (delete the folder to free the disk)"
        )
        return 0
    print(
        f"retired {len(chosen)} run(s) into {target} (see {RETIRED_RECORD}); the next "
        "workflow run trains them again"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
