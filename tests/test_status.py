"""smoothbench-status: a finished, a half-finished and a failed study, from files only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPOSITORY

from smoothbench import run_record
from smoothbench.study import load_study
from smoothbench.tools import status
from smoothbench.train.progress import format_duration

EPOCHS = 4


def _study(tmp_path, gammas=(1.0, 0.9, 0.8, 0.7, 0.6)):
    config = {
        "results_folder": str(tmp_path / "study"),
        "data": {"download": False},
        "protocol": {"epochs": EPOCHS},
        "experiments": {"digits": {"gammas": list(gammas)}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return load_study(config)


def _rows(count, seconds=30.0, accuracy=0.5):
    return [
        {
            "epoch": epoch,
            "lr": 1e-3,
            "loss": 1.0,
            "accuracy": accuracy,
            "val_loss": 1.0,
            "val_accuracy": accuracy + epoch / 100,
            "val_ece": 0.1,
            "val_nll": 1.0,
            "val_brier": 0.5,
            "val_confidence": 0.6,
            "seconds": seconds,
        }
        for epoch in range(count)
    ]


def _folder(study, gamma):
    run = next(run for run in study.runs() if run.value == gamma)
    return Path(run.folder(study.runs_folder))


def _finish(study, gamma, seconds=30.0):
    folder = _folder(study, gamma)
    rows = _rows(EPOCHS, seconds)
    run_record.write_history(folder / run_record.HISTORY_FILE, rows)
    (folder / run_record.METRICS_FILE).write_text(
        json.dumps({"best_val_accuracy": rows[-1]["val_accuracy"]})
    )


def _checkpoint_progress(study, gamma, epochs_done, seconds=30.0):
    folder = _folder(study, gamma)
    run_record.write_history(
        folder / run_record.CHECKPOINT_FOLDER / run_record.PROGRESS_FILE,
        _rows(epochs_done, seconds),
    )
    return folder


def _by_value(statuses):
    return {item.run.value: item for item in statuses}


def test_a_finished_study(tmp_path):
    study = _study(tmp_path, gammas=(1.0, 0.9))
    _finish(study, 1.0)
    _finish(study, 0.9)
    statuses = status.study_status(study)
    assert [item.state for item in statuses] == ["done", "done"]
    assert statuses[0].accuracy == 0.53 and statuses[0].seconds_per_epoch == 30.0
    text = status.render(study, statuses, 0.0)
    assert "the study's training is done" in text and "runs: 2 done" in text


def test_a_half_finished_study_with_etas(tmp_path):
    study = _study(tmp_path)
    now = 10_000.0
    _finish(study, 1.0, seconds=40.0)
    running = _checkpoint_progress(study, 0.9, 1, seconds=20.0)
    run_record.write_run_status(
        running,
        "running",
        epoch=1,
        epochs=EPOCHS,
        epochs_done=1,
        step=5,
        steps=10,
        val_accuracy=0.51,
        run_eta_seconds=100.0,
        interval_seconds=60,
        host="node7",
    )
    # its status was written 30 s before now
    payload = json.loads(run_record.status_path(running).read_text())
    payload["updated"] = now - 30
    run_record.status_path(running).write_text(json.dumps(payload))
    stalled = _checkpoint_progress(study, 0.8, 2)
    run_record.write_run_status(stalled, "running", epoch=2, host="node3", pid=42)
    payload = json.loads(run_record.status_path(stalled).read_text())
    payload["updated"] = now - 3600
    run_record.status_path(stalled).write_text(json.dumps(payload))
    _checkpoint_progress(study, 0.7, 3)  # an older job's checkpoint, no status
    statuses = _by_value(status.study_status(study, now))
    assert {value: item.state for value, item in statuses.items()} == {
        1.0: "done",
        0.9: "running",
        0.8: "stalled",
        0.7: "stopped",
        0.6: "waiting",
    }
    assert (statuses[0.9].epoch, statuses[0.9].step, statuses[0.9].steps) == (1, 5, 10)
    assert statuses[0.9].eta_seconds == 70.0  # its own ETA, 30 s older now
    assert statuses[0.9].accuracy == 0.51
    assert "no word for 1 h 00 min from node3 (pid 42" in statuses[0.8].detail
    # the others: epochs left at the experiment's mean seconds per epoch (40, 20, 30, 30)
    pace = (40.0 + 20.0 + 30.0 + 30.0) / 4
    assert statuses[0.8].eta_seconds == 2 * pace
    assert statuses[0.7].eta_seconds == 1 * pace
    assert statuses[0.6].eta_seconds == EPOCHS * pace
    totals = status.summary(list(statuses.values()))
    assert totals["counts"] == {
        "done": 1,
        "running": 1,
        "stalled": 1,
        "stopped": 1,
        "failed": 0,
        "waiting": 1,
    }
    left = 70.0 + 7 * pace
    assert totals["training_left_seconds"] == left
    assert totals["study_eta_seconds"] == left  # one run trains now
    text = status.render(study, list(statuses.values()), now)
    assert "epoch 1 of 0..3 step 5/10" in text
    # one run: "1 run", and how sure the ETA is, from the paces seen (20 to 40 s/epoch)
    assert totals["study_eta_range_seconds"] == [70.0 + 7 * 20, 70.0 + 7 * 40]
    assert totals["timed_epochs"] == 4 + 1 + 2 + 3
    assert "runs training" not in text
    lines = text.splitlines()
    assert lines[-2] == (
        "at 1 run training at once, the study ends in about " + format_duration(left)
    )
    assert lines[-1] == (
        "  how sure: projected from 10 timed epochs, with 1 run training at once until "
        "the end; at the fastest and the slowest pace seen per experiment, "
        f"{format_duration(70.0 + 7 * 20)} to {format_duration(70.0 + 7 * 40)}"
    )


def test_a_failed_run_names_its_error_and_its_log(tmp_path):
    study = _study(tmp_path, gammas=(1.0, 0.9))
    _finish(study, 1.0)
    failed = _folder(study, 0.9)
    run_record.write_run_status(
        failed, "failed", error="GpuNotVisibleError: the job was given GPU 0 ..."
    )
    log = Path(
        run_record.train_log(f"{study.logs_folder}/train", "digits", "gamma", 0.9, 0)
    )
    log.parent.mkdir(parents=True)
    log.write_text("Traceback ...\n")
    statuses = status.study_status(study)
    assert statuses[1].state == "failed"
    text = status.render(study, statuses, 0.0)
    assert f"{failed}: failed: GpuNotVisibleError: the job was given GPU 0 ..." in text
    assert f"(log: {log})" in text
    assert "runs: 1 done, 1 failed" in text
    # no pace measured for a run with no epoch: the ETA comes from the done run's
    assert statuses[1].eta_seconds == EPOCHS * 30.0


def test_the_command_line_tool_and_its_watch_mode(tmp_path):
    study = _study(tmp_path, gammas=(1.0,))
    _finish(study, 1.0)
    environment = os.environ | {"PYTHONPATH": str(REPOSITORY / "src")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "smoothbench.tools.status",
            "--configfile",
            str(tmp_path / "config.yaml"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    payload = json.loads(result.stdout)
    assert payload["summary"]["counts"]["done"] == 1
    assert payload["runs"][0]["state"] == "done"
    printed, naps = [], []
    shows = iter([("first", False), ("second", False), ("third", True)])
    status.watch(lambda: next(shows), 5.0, printed.append, sleep=naps.append)
    assert [text.split("\x1b[H")[1] for text in printed] == [
        "first\n",
        "second\n",
        "third\n",
    ]
    assert naps == [5.0, 5.0]  # stops once the study is done
