"""The state of a whole study, from its files alone (``smoothbench-status``).

Every planned run is one of:

- ``done``: its metrics.json exists (the best validation accuracy is shown);
- ``running``: its job wrote checkpoint/status.json recently (epoch, step, the last
  validation accuracy, the run's ETA);
- ``stalled``: its status says running, but has not been rewritten for longer than
  ``stale_minutes`` (and three progress intervals): the job was killed outright or
  hangs; run the workflow again and it resumes from its checkpoint;
- ``stopped``: SIGTERM stopped it after a checkpoint (a time limit, scancel, a
  preemption), or an older job left a checkpoint and no status; it resumes;
- ``failed``: its job stopped on an error, named with the job's log;
- ``waiting``: nothing of it exists yet.

Only files are read (the run folders and the job logs), never Snakemake's state or the
scheduler's, so it works wherever the study's folder is visible: a cluster's login node
with the shared file system, another machine over NFS, while the workflow runs.

Above the runs, the done runs' provenance
(:mod:`smoothbench.results.provenance`): their one code commit and compute setting, or
a warning that they mix commits, a dirty tree, backends, precisions, XLA or
deterministic settings, listing the runs concerned and what differs (at the top, where
a long table cannot scroll it out of sight).

The study's ETA is the training left, summed over runs (a running run's own ETA; for
the others, their epochs left at the mean seconds per epoch seen in that experiment),
divided by the runs training now.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from smoothbench import run_record
from smoothbench.results.provenance import run_provenance, text_lines
from smoothbench.study import Run, Study
from smoothbench.train.progress import epoch_label, format_duration

STATES = ("done", "running", "stalled", "stopped", "failed", "waiting")
DEFAULT_STALE_MINUTES = 15.0


@dataclasses.dataclass
class RunStatus:
    """One planned run as its files show it."""

    run: Run
    state: str
    epochs: int
    epochs_done: int = 0
    epoch: int | None = None  # the epoch in progress (running)
    step: int | None = None
    steps: int | None = None
    accuracy: float | None = None  # best (done) or last (otherwise) val_accuracy
    seconds_per_epoch: float | None = None
    eta_seconds: float | None = None  # training left in this run
    eta_from_pace: bool = False  # eta_seconds from its experiment's mean pace
    detail: str = ""  # the error of a failed run, where a stalled one ran, ...
    provenance: dict | None = None  # a done run's code and compute (provenance_summary)

    def as_dict(self) -> dict:
        return {
            "experiment": self.run.experiment,
            "method": self.run.method,
            "value": self.run.value_text,
            "seed": self.run.seed,
            **{
                field.name: getattr(self, field.name)
                for field in dataclasses.fields(self)
                if field.name != "run"
            },
        }


def _history(path: Path) -> list[dict]:
    try:
        return run_record.read_history(path)
    except (OSError, ValueError, KeyError):
        return []


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def run_status(
    study: Study, run: Run, now: float, stale_minutes: float = DEFAULT_STALE_MINUTES
) -> RunStatus:
    """What the files of ``run`` say, at wall-clock time ``now``."""
    epochs = study.experiments[run.experiment].epochs
    folder = Path(run.folder(study.runs_folder))
    metrics_path = folder / run_record.METRICS_FILE
    if metrics_path.exists():
        try:
            metrics = json.loads(metrics_path.read_text())
        except ValueError:
            metrics = {}
        metrics = metrics if isinstance(metrics, dict) else {}
        rows = _history(folder / run_record.HISTORY_FILE)
        return RunStatus(
            run,
            "done",
            epochs,
            epochs_done=len(rows) or epochs,
            accuracy=metrics.get("best_val_accuracy"),
            seconds_per_epoch=_mean([row["seconds"] for row in rows]),
            eta_seconds=0.0,
            provenance=run_provenance(metrics),
        )
    rows = _history(folder / run_record.CHECKPOINT_FOLDER / run_record.PROGRESS_FILE)
    found = RunStatus(
        run,
        "waiting",
        epochs,
        epochs_done=len(rows),
        accuracy=rows[-1]["val_accuracy"] if rows else None,
        seconds_per_epoch=_mean([row["seconds"] for row in rows]),
    )
    status = run_record.read_run_status(folder)
    if status is None:
        if rows or (folder / run_record.CHECKPOINT_FOLDER).exists():
            found.state, found.detail = "stopped", "a checkpoint and no status"
        return found
    state = status["state"]
    if state in ("starting", "running"):
        age = now - status["updated"]
        limit = max(60 * stale_minutes, 3 * (status.get("interval_seconds") or 0))
        if age > limit:
            found.state = "stalled"
            found.detail = (
                f"no word for {format_duration(age)} from {status.get('host')} "
                f"(pid {status.get('pid')}, SLURM job {status.get('slurm_job_id') or '-'})"
            )
            return found
        found.state = "running"
        found.epoch = status.get("epoch")
        found.step, found.steps = status.get("step"), status.get("steps")
        if status.get("val_accuracy") is not None:
            found.accuracy = status["val_accuracy"]
        found.epochs_done = max(found.epochs_done, status.get("epochs_done") or 0)
        if status.get("run_eta_seconds") is not None:
            found.eta_seconds = max(0.0, status["run_eta_seconds"] - age)
        if state == "starting":
            found.detail = "setting up"
        return found
    found.state = state  # stopped, failed
    found.detail = status.get("error") or status.get("reason") or ""
    return found


def study_status(
    study: Study,
    now: float | None = None,
    stale_minutes: float = DEFAULT_STALE_MINUTES,
) -> list[RunStatus]:
    """Every planned run's status; the ETA of each run not done, from its own
    (running) or from the mean seconds per epoch of its experiment's runs."""
    now = time.time() if now is None else now
    statuses = [run_status(study, run, now, stale_minutes) for run in study.runs()]
    pace: dict[str, list[float]] = {}
    for status in statuses:
        if status.seconds_per_epoch is not None:
            pace.setdefault(status.run.experiment, []).append(status.seconds_per_epoch)
    for status in statuses:
        seconds = _mean(pace.get(status.run.experiment, []))
        if status.eta_seconds is None and seconds is not None:
            status.eta_seconds = (status.epochs - status.epochs_done) * seconds
            status.eta_from_pace = True
    return statuses


def eta_range(statuses: list[RunStatus]) -> tuple[float, float]:
    """The training left (seconds, over the runs whose pace is known) if every run
    projected from its experiment's pace went at the fastest or at the slowest pace
    seen in that experiment: how far the study's ETA may be off, from the spread of
    the paces measured so far."""
    paces: dict[str, list[float]] = {}
    for status in statuses:
        if status.seconds_per_epoch is not None:
            paces.setdefault(status.run.experiment, []).append(status.seconds_per_epoch)
    fastest = slowest = 0.0
    for status in statuses:
        if status.state == "done" or status.eta_seconds is None:
            continue
        own = paces.get(status.run.experiment)
        if status.eta_from_pace and own:
            left = status.epochs - status.epochs_done
            fastest += left * min(own)
            slowest += left * max(own)
        else:
            fastest += status.eta_seconds
            slowest += status.eta_seconds
    return fastest, slowest


def timed_epochs(statuses: list[RunStatus]) -> int:
    """The epochs whose seconds the paces come from."""
    return sum(
        status.epochs_done
        for status in statuses
        if status.seconds_per_epoch is not None
    )


def summary(statuses: list[RunStatus]) -> dict:
    """Counts per state, the training left (seconds, over the runs whose pace is
    known) and the study's ETA at the current parallelism."""
    counts = {state: 0 for state in STATES}
    for status in statuses:
        counts[status.state] += 1
    open_runs = [status for status in statuses if status.state != "done"]
    known = [
        status.eta_seconds for status in open_runs if status.eta_seconds is not None
    ]
    left = sum(known)
    running = counts["running"]
    fastest, slowest = eta_range(statuses)
    return {
        "runs": len(statuses),
        "counts": counts,
        "training_left_seconds": round(left, 1),
        "runs_without_pace": len(open_runs) - len(known),
        "study_eta_seconds": round(left / running, 1) if running else None,
        # the study's ETA at the fastest and the slowest pace seen per experiment
        "study_eta_range_seconds": (
            [round(fastest / running, 1), round(slowest / running, 1)]
            if running
            else None
        ),
        "timed_epochs": timed_epochs(statuses),
    }


def _progress_text(status: RunStatus) -> str:
    if status.state == "running" and status.epoch is not None:
        text = epoch_label(status.epoch, status.epochs)
        if status.steps:
            text += f" step {status.step}/{status.steps}"
        return text
    return f"{status.epochs_done}/{status.epochs} epochs"


def provenance_frame(statuses: list[RunStatus]) -> pd.DataFrame:
    """The done runs with their provenance, as runs.csv has them, for
    :mod:`smoothbench.results.provenance`."""
    return pd.DataFrame.from_records(
        [
            {
                "experiment": status.run.experiment,
                "method": status.run.method,
                "value": status.run.value,
                "seed": status.run.seed,
                **status.provenance,
            }
            for status in statuses
            if status.state == "done" and status.provenance is not None
        ]
    )


def render(study: Study, statuses: list[RunStatus], now: float) -> str:
    """The done runs' provenance (first: a warning listing the runs concerned where
    they mix commits, a dirty tree or compute settings), the table of runs, the
    failures with their logs, and the summary."""
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now))
    lines = [f"{study.results_folder}: {len(statuses)} planned runs, at {when}"]
    provenance = text_lines(provenance_frame(statuses))
    lines += ["", *provenance] if provenance else []
    lines += [
        "",
        f"{'experiment':16} {'run':12} {'seed':>4}  {'state':8} {'progress':28} "
        f"{'val_acc':>7} {'s/epoch':>8}  {'ETA':>12}",
    ]
    for status in statuses:
        run = status.run
        accuracy = "" if status.accuracy is None else f"{status.accuracy:.4f}"
        pace = (
            ""
            if status.seconds_per_epoch is None
            else f"{status.seconds_per_epoch:.1f}"
        )
        eta = "" if status.state == "done" else format_duration(status.eta_seconds)
        lines.append(
            f"{run.experiment:16} {run.method + '~' + run.value_text:12} {run.seed:>4}  "
            f"{status.state:8} {_progress_text(status):28} {accuracy:>7} {pace:>8}  {eta:>12}"
        )
    lines.append(
        "val_acc: the best epoch's (done) or the last epoch's; epochs count from 0, "
        "as in history.csv"
    )
    troubles = [s for s in statuses if s.state in ("failed", "stalled", "stopped")]
    if troubles:
        lines += [
            "",
            "needing a look (run the workflow again to resume or retry them):",
        ]
        for status in troubles:
            run = status.run
            log = run_record.train_log(
                f"{study.logs_folder}/train",
                run.experiment,
                run.method,
                run.value,
                run.seed,
            )
            lines.append(
                f"  {run.folder(study.runs_folder)}: {status.state}: {status.detail}"
                f"{f' (log: {log})' if Path(log).exists() else ''}"
            )
    totals = summary(statuses)
    counts = ", ".join(
        f"{count} {state}" for state, count in totals["counts"].items() if count
    )
    lines += ["", f"runs: {counts}"]
    if totals["counts"]["done"] == totals["runs"]:
        lines.append("the study's training is done")
    else:
        known = totals["runs_without_pace"] < totals["runs"] - totals["counts"]["done"]
        left = "training left: " + (
            format_duration(totals["training_left_seconds"]) if known else "unknown"
        )
        if totals["runs_without_pace"]:
            left += (
                f" ({'and ' if known else ''}{totals['runs_without_pace']} runs of "
                "experiments with no epoch done yet: smoothbench-cost estimates those)"
            )
        lines.append(left)
        if totals["study_eta_seconds"] is not None:
            lines += eta_lines(totals)
    return "\n".join(lines)


def eta_lines(totals: dict) -> list[str]:
    """The study's ETA (:func:`summary`'s totals) and how sure it is: a projection
    from the epochs timed so far at the parallelism of now, within the range the
    fastest and the slowest pace seen per experiment give."""
    running = totals["counts"]["running"]
    runs = "run" if running == 1 else "runs"
    fastest, slowest = totals["study_eta_range_seconds"]
    epochs = totals["timed_epochs"]
    basis = (
        f"projected from {epochs} timed epoch{'' if epochs == 1 else 's'}, with "
        f"{running} {runs} training at once until the end"
    )
    if format_duration(fastest) == format_duration(slowest):
        spread = "the runs timed so far keep one pace; more epochs make it surer"
    else:
        spread = (
            f"at the fastest and the slowest pace seen per experiment, "
            f"{format_duration(fastest)} to {format_duration(slowest)}"
        )
    if totals["runs_without_pace"]:
        spread += "; runs without a pace yet are not counted"
    return [
        f"at {running} {runs} training at once, the study ends in about "
        f"{format_duration(totals['study_eta_seconds'])}",
        f"  how sure: {basis}; {spread}",
    ]


def watch(
    show: Callable[[], tuple[str, bool]],
    every_seconds: float,
    write: Callable[[str], object],  # its result is ignored
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
) -> None:
    """Print ``show()``'s text every ``every_seconds`` (the screen cleared first) until
    it says the study is done, Ctrl-C, or ``rounds`` prints."""
    count = 0
    while True:
        text, finished = show()
        write("\x1b[2J\x1b[H" + text + "\n")
        count += 1
        if finished or (rounds is not None and count >= rounds):
            return
        sleep(every_seconds)


def main(argv: list[str] | None = None) -> int:
    """smoothbench-status: see the module docstring."""
    import sys

    from smoothbench.tools.command_line import (
        add_study_arguments,
        study_from_arguments,
        tool_parser,
        user_error,
    )

    parser = tool_parser(
        "smoothbench-status",
        "Every planned run of a study as done, running (epoch and step), stalled,\n"
        "stopped, failed or waiting, with its validation accuracy, seconds per epoch and\n"
        "ETA, and the ETA of the whole study. Reads only the study's files, so it works\n"
        "from any machine that sees them (a cluster's login node), while the workflow runs.",
        [
            "smoothbench-status --configfile config/demo.yaml",
            "smoothbench-status --watch 60    # the paper's study, every minute",
            "smoothbench-status --configfile config.yaml mine.yaml --config 'seeds=[0]'",
        ],
    )
    add_study_arguments(parser)  # as given to snakemake
    parser.add_argument(
        "--watch",
        type=float,
        metavar="SECONDS",
        help="print again every SECONDS until the study's training is done (Ctrl-C stops)",
    )
    parser.add_argument(
        "--stale-minutes",
        type=float,
        default=DEFAULT_STALE_MINUTES,
        help="a running job silent for longer is shown as stalled (default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object: every run and the summary"
    )
    parser.add_argument(
        "--versions",
        action="store_true",
        help="list the runs' kept versions (other settings or data than the current "
        "config's) with what differs and their size",
    )
    arguments = parser.parse_args(argv)
    try:
        study = study_from_arguments(arguments)
    except (OSError, ValueError) as error:
        return user_error("smoothbench-status", error)
    if arguments.versions:
        from smoothbench.train.versions import render_kept

        print(render_kept(study))
        return 0

    def show() -> tuple[str, bool]:
        now = time.time()
        statuses = study_status(study, now, arguments.stale_minutes)
        if arguments.json:
            text = json.dumps(
                {
                    "results_folder": study.results_folder,
                    "runs": [status.as_dict() for status in statuses],
                    "summary": summary(statuses),
                },
                indent=1,
            )
        else:
            text = render(study, statuses, now)
        return text, all(status.state == "done" for status in statuses)

    if arguments.watch:
        try:
            watch(show, arguments.watch, sys.stdout.write)
        except KeyboardInterrupt:
            return 0
    else:
        print(show()[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
