"""A small study (prepare, train, tables, plots) SIGKILLed at many instants until it
completes: nothing is lost, nothing is retrained, nothing half-written looks finished."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import workflow_command

from smoothbench import run_record
from smoothbench.settings import COMPUTATION_KEYS
from smoothbench.train.outputs import FINAL_STATE_FILE, KEEP_FINAL_STATE_VARIABLE

pytestmark = pytest.mark.workflow

CONFIG = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1",
        "depth": 8,
        "epochs": 4,
        "batch_size": 64,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"shift": 0.1, "horizontal_flip": False},
        "optimizer": {"schedule": [{"after_epoch": 2, "factor": 0.1}]},
        "gammas": [1.0, 0.9],
    },
    # a checkpoint after every batch or so: kills land within epochs too
    "compute": {"threads_per_job": 1, "checkpoint_minutes": 0.002},
    "experiments": {"digits": {}},
}
RUNS = {
    gamma: Path("results") / "runs" / "digits" / f"gamma~{gamma}" / "seed~0"
    for gamma in ("1.0", "0.9")
}
# Every run keeps its final checkpoint (.finished/final_state.npz), so that the killed
# study's runs are compared with the uninterrupted study's variable by variable.
ENVIRONMENT = {**os.environ, KEEP_FINAL_STATE_VARIABLE: "1"}
# Tables whose every cell comes from the runs' files (no wall-clock column).
COMPARED_TABLES = ("table1.csv", "table2.csv", "table3.csv")


def _command(workdir: Path, *arguments: str) -> list[str]:
    import yaml

    path = workdir / "config.test.yaml"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(CONFIG))
    return workflow_command(workdir, path, "--cores", "2", *arguments)


def _values(history_path: Path) -> list[dict]:
    return [
        {key: value for key, value in row.items() if key != "seconds"}
        for row in run_record.read_history(history_path)
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("whole")
    started = time.monotonic()
    process = subprocess.run(
        _command(workdir),
        cwd=workdir,
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    return workdir, max(time.monotonic() - started, 10.0)


def _check_nothing_looks_finished_that_is_not(
    workdir: Path, reference: Path, first_seen: dict
) -> None:
    """Every file under a final name is whole; a run's outputs, once seen, never change."""
    for gamma, run in RUNS.items():
        metrics_path = workdir / run / "metrics.json"
        if metrics_path.exists():
            metrics = json.loads(metrics_path.read_text())  # whole JSON, or this raises
            assert _values(workdir / run / "history.csv") == _values(
                reference / run / "history.csv"
            ), gamma
            # Republished, never retrained: the very same record (its 'finished' time included).
            assert first_seen.setdefault(gamma, metrics) == metrics, (
                f"gamma {gamma} was trained again"
            )
        record = workdir / run / run_record.FINISHED_FOLDER / "metrics.json"
        if gamma in first_seen and record.exists():
            assert json.loads(record.read_text()) == first_seen[gamma], gamma
    tables = workdir / "results" / "tables"
    for path in tables.glob("*.csv") if tables.exists() else ():
        # whole (a table may have no rows: Table 1 holds gamma <= 0.5 only)
        pd.read_csv(path)
    for path in (workdir / "results").rglob("*.json"):
        if ".snakemake" not in path.parts:
            json.loads(path.read_text())


def test_a_study_killed_at_any_instant_loses_and_retrains_nothing(
    uninterrupted, tmp_path
):
    reference, whole_seconds = uninterrupted
    workdir = tmp_path / "killed"
    rng = random.Random(20261201)
    first_seen: dict[str, dict] = {}
    # Kills at instants chosen two ways: at random within the first quarter of the
    # study's length measured uninterrupted (start-up, DAG building, the jobs' first
    # seconds), and right after a file appears (the narrow windows, such as the one
    # between a run's metrics.json and Snakemake's own record of the job).
    events = [
        (
            "a run's first checkpoint",
            lambda: any(
                (workdir / run / "checkpoint" / "state.npz").exists()
                for run in RUNS.values()
            ),
        ),
        (
            "a run's metrics.json",
            lambda: any(
                (workdir / run / "metrics.json").exists() for run in RUNS.values()
            ),
        ),
        (
            "the other run's metrics.json",
            lambda: all(
                (workdir / run / "metrics.json").exists() for run in RUNS.values()
            ),
        ),
        ("a table", lambda: (workdir / "results" / "tables" / "table1.csv").exists()),
        ("a plot", lambda: any((workdir / "results" / "plots").rglob("*.png"))),
    ]
    # The windows that matter most, each of which must be hit: a checkpoint, and
    # metrics.json of each run (a table or a plot may already stand, half the outputs of
    # a killed rule, when its turn comes).
    windows = {name for name, _ in events[:3]}
    # Whatever the machine's speed, no window is left behind unkilled: a window not hit
    # yet is watched in every attempt, a random one included, and the first file of one
    # to appear (absent when its attempt began) ends that attempt with a kill right after
    # it. A window's file cannot appear but in a watched attempt, so the study cannot
    # finish before each window was hit. Three random kills come first (the study is
    # then far from its end), then the two ways alternate until the study finishes.
    hit: set[str] = set()
    kills: list[str] = []
    random_kills = 0
    for attempt in range(40):
        pending = [(name, happened) for name, happened in events if name not in hit]
        armed = {name for name, happened in pending if not happened()}
        wait_for_a_file = (
            random_kills >= 3 and kills[-1].startswith("at ") and bool(armed)
        )
        watched = [
            (name, happened)
            for name, happened in pending
            if wait_for_a_file or name in windows
        ]

        def appeared(watched=watched, armed=armed) -> list[str]:
            """The watched files that appeared in this attempt (absent when seen last)."""
            appeared = []
            for name, happened in watched:
                if not happened():
                    armed.add(name)
                elif name in armed:
                    appeared.append(name)
            return appeared

        workflow = subprocess.Popen(
            _command(workdir),
            cwd=workdir,
            env=ENVIRONMENT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Once every event was hit after enough kills, the study may finish: an attempt
        # that its machine's load makes slower than a random kill then still ends it.
        finishing = not pending and random_kills >= 3 and len(kills) >= 6
        if wait_for_a_file or finishing:
            delay = 4 * whole_seconds + 120
        else:
            # short enough that the windows' kills, not luck, carry the study forward
            delay = rng.uniform(0, whole_seconds / 4)
        deadline = time.monotonic() + delay
        fired: list[str] = []
        while not fired and workflow.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
            fired = appeared()
        if workflow.poll() is not None:
            assert workflow.returncode == 0, (
                f"attempt {attempt} failed by itself (exit {workflow.returncode})"
            )
            break
        os.killpg(workflow.pid, signal.SIGKILL)
        workflow.wait()
        # a file that appeared between the last look and the kill: right after it too
        fired = fired or appeared()
        if fired:
            hit.update(fired)
            kills.append("right after " + " and ".join(fired))
        elif wait_for_a_file:
            kills.append(f"after {delay:.0f} s waiting for {sorted(armed)}")
        else:
            random_kills += 1
            kills.append(f"at {delay:.1f} s")
        _check_nothing_looks_finished_that_is_not(workdir, reference, first_seen)
        # A killed Snakemake leaves its lock, as after a crash: the README's --unlock.
        subprocess.run(
            _command(workdir, "--unlock"), cwd=workdir, capture_output=True, check=True
        )
    else:
        pytest.fail(f"the study did not finish in 40 attempts; kills: {kills}")

    _check_nothing_looks_finished_that_is_not(workdir, reference, first_seen)
    assert len(kills) >= 6 and sum(kill.startswith("at ") for kill in kills) >= 3, kills
    # The windows that matter most were hit: a checkpoint, and metrics.json of each run.
    for name, _ in events[:3]:
        assert name in hit, (name, kills)
    for gamma, run in RUNS.items():
        assert _values(workdir / run / "history.csv") == _values(
            reference / run / "history.csv"
        ), gamma
        assert not (workdir / run / "checkpoint").exists()
    # Every variable of each run's final state equals the uninterrupted run's, exactly
    # (the history above agrees to the 7 digits a float32 holds; this to the last bit).
    for gamma, run in RUNS.items():
        final = [
            np.load(study / run / run_record.FINISHED_FOLDER / FINAL_STATE_FILE)
            for study in (workdir, reference)
        ]
        names = [
            sorted(n for n in archive.files if n.startswith("variable_"))
            for archive in final
        ]
        assert names[0] == names[1] and names[0], gamma
        for name in names[0]:
            assert np.array_equal(final[0][name], final[1][name]), (gamma, name)
    # The compute keys are auto: every attempt of every run computed the same way, the
    # uninterrupted study's, and a run SIGKILLed after its first checkpoint resumed
    # (several attempts) to the uninterrupted history above.
    resumed = within_an_epoch = 0
    uninterrupted_attempt = json.loads(
        (reference / RUNS["1.0"] / "metrics.json").read_text()
    )["attempts"][0]
    computation = {key: uninterrupted_attempt[key] for key in COMPUTATION_KEYS}
    for run in RUNS.values():
        attempts = json.loads((workdir / run / "metrics.json").read_text())["attempts"]
        for attempt in attempts:
            assert {key: attempt[key] for key in COMPUTATION_KEYS} == computation, run
        resumed += len(attempts) > 1
        within_an_epoch += sum(attempt["started_at_step"] > 0 for attempt in attempts)
    assert resumed >= 1, "no run was resumed after a SIGKILL"
    # the mid-epoch checkpoint exercised: a kill within an epoch, resumed at its step
    assert within_an_epoch >= 1, "no attempt resumed within an epoch"
    print(
        f"computation: {computation}; {resumed} run(s) resumed, "
        f"{within_an_epoch} attempt(s) within an epoch"
    )
    for name in COMPARED_TABLES:
        ours, theirs = (
            pd.read_csv(workdir / "results" / "tables" / name),
            pd.read_csv(reference / "results" / "tables" / name),
        )
        pd.testing.assert_frame_equal(ours, theirs)
    # Snakemake agrees the study is complete, and nothing is left half-written.
    process = subprocess.run(
        _command(workdir, "--dry-run"), cwd=workdir, capture_output=True, text=True
    )
    assert (
        process.returncode == 0
        and "Nothing to be done" in process.stdout + process.stderr
    ), process.stdout
    leftovers = [
        path
        for path in (workdir / "results").rglob("*")
        if path.name.endswith(".tmp") or ".staging-" in path.name
    ]
    assert not leftovers, leftovers
    print(f"{len(kills)} kills: {kills}")
