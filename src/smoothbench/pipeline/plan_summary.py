"""The plan in one screen, said while planning (a dry run too), before any job starts.

Per experiment: how many runs the study has, how many are finished under the current
config, how many a job will take back from a kept version or resume, how many will
train, and how many finished runs the current config replaces, with the keys that
changed (``epochs 8 -> 3``); replaced versions are kept in each run folder's
``.versions/`` (:mod:`smoothbench.train.versions`). Below it, the warnings about devices:
GPUs asked for that this machine does not have (and no cluster executor runs the
jobs), or GPUs here that no job asks for (:func:`smoothbench.pipeline.jobs.gpu_warning`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from smoothbench.data import array_store
from smoothbench.train.checkpoint import data_fingerprint
from smoothbench.train.versions import RunPlan, plan_run

ACTIONS = ("finished", "take back", "resume", "train")


def prepared_fingerprint(prepared_folder: Path | str) -> str | None:
    """The data fingerprint of a prepared dataset, None while it is not prepared."""
    try:
        return data_fingerprint(array_store.read_manifest(Path(prepared_folder)))
    except Exception:  # not prepared yet (or refused by the jobs that read it)
        return None


def plan_runs(
    study, settings_of: Callable, prepared_folder_of: Callable
) -> dict[str, RunPlan]:
    """run folder -> :class:`RunPlan` of every run of ``study``; ``settings_of(run)``
    gives a run's job params, ``prepared_folder_of(dataset)`` its prepared folder."""
    fingerprints: dict[str, str | None] = {}
    plans = {}
    for run in study.runs():
        dataset = study.experiments[run.experiment].dataset.name
        if dataset not in fingerprints:
            fingerprints[dataset] = prepared_fingerprint(prepared_folder_of(dataset))
        folder = run.folder(study.runs_folder)
        plans[folder] = plan_run(folder, settings_of(run), fingerprints[dataset])
    return plans


def _value(value) -> str:
    return "unset" if value is None else str(value)


def summary(study, plans: Mapping[str, RunPlan], warnings: Sequence[str] = ()) -> str:
    """The plan as a few lines of text (see the module docstring)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    changes: dict[str, Counter] = defaultdict(Counter)
    for run in study.runs():
        plan = plans[run.folder(study.runs_folder)]
        counts[run.experiment][plan.action] += 1
        if plan.replaces:
            counts[run.experiment]["replaced"] += 1
            change = ", ".join(
                f"{key} {_value(old)} -> {_value(new)}"
                for key, (old, new) in plan.replaces.items()
                if key not in ("experiment",)
            )
            changes[run.experiment][change] += 1
    width = max([len("experiment"), *map(len, counts)])
    header = (
        f"  {'experiment':<{width}}  runs  finished  take back  resume  train  replaced"
    )
    lines = [f"smoothbench plan for {study.runs_folder}:", header]
    total: Counter[str] = Counter()
    for name, count in counts.items():
        total.update(count)
        lines.append(_row(name, count, width))
    if len(counts) > 1:
        lines.append(_row("all", total, width))
    if total["replaced"]:
        lines.append(
            f"{total['replaced']} finished run(s) were trained under other settings or data; "
            "their jobs train or take back the current config's version, and each replaced "
            "version is kept in its run folder's .versions/ (going back to it trains nothing):"
        )
        for name, by_change in changes.items():
            for change, number in by_change.items():
                lines.append(f"  {name}: {number} run(s): {change}")
    lines.extend(warnings)
    return "\n".join(lines)


def _row(name: str, count: Counter, width: int) -> str:
    runs = sum(count[action] for action in ACTIONS)
    return (
        f"  {name:<{width}}  {runs:>4}  {count['finished']:>8}  {count['take back']:>9}  "
        f"{count['resume']:>6}  {count['train']:>5}  {count['replaced']:>8}"
    )


def missing_gpu_warning(
    study, gpus_here: int | None, cluster_executor: bool, dry_run: bool = False
) -> str | None:
    """A warning when a job asks for more GPUs than this machine has and no cluster
    executor will run it elsewhere (it could not start here). A dry run does not know
    its executor (Snakemake plans it as "dryrun"): it says so."""
    if cluster_executor or gpus_here is None:
        return None
    asked = max(
        (study.compute_settings(name).gpus_per_job for name in study.experiments),
        default=0,
    )
    if asked <= gpus_here:
        return None
    unless = (
        "; unless a cluster executor runs them (a dry run cannot tell)"
        if dry_run
        else ""
    )
    return (
        f"WARNING: training jobs ask for {asked} GPU(s) each (config key "
        f"compute.gpus_per_job), and this machine has {gpus_here} (nvidia-smi -L): "
        f"they cannot train here{unless}. Run on a GPU machine, with --executor slurm "
        "(docs/clusters.md), or on the CPU: --config 'compute={gpus_per_job: 0}'"
    )


# What keeps finished runs safe (profiles/default, smoothbench/tools/workflow_profile.yaml):
# no rerun on a code or environment change, and a killed job run again.
UNSAFE_TRIGGERS = ("code", "software_env")


def rerun_warning(triggers: set[str], rerun_incomplete: bool) -> str | None:
    """A warning when Snakemake runs under rerun triggers that would resubmit finished
    runs (a code or software-environment change), or without rerun-incomplete (a
    killed job's files would block the next run): the workflow profile was not read,
    as in a study folder without ``profiles/default``. It names the fix."""
    unsafe = sorted(trigger for trigger in UNSAFE_TRIGGERS if trigger in triggers)
    if not unsafe and rerun_incomplete:
        return None
    problems = []
    if unsafe:
        problems.append(
            f"rerun triggers {', '.join(unsafe)} are on (every finished run's job is "
            "submitted again after an update of the code or its environment)"
        )
    if not rerun_incomplete:
        problems.append(
            "rerun-incomplete is off (a killed job's files block the next run)"
        )
    return (
        "WARNING: Snakemake runs without smoothbench's workflow profile: "
        + "; ".join(problems)
        + ". In a study folder of your own, write it once with `smoothbench-profile` "
        "there (it writes profiles/default/config.yaml, read on every run), or give "
        "--rerun-triggers mtime params input --rerun-incomplete"
    )
