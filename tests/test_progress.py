"""Progress within an epoch: the lines a job logs, its status.json, TensorBoard."""

from __future__ import annotations

import json

import pytest

from smoothbench import run_record
from smoothbench.train.progress import (
    EpochReporter,
    epoch_label,
    format_duration,
    run_eta,
)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.4, "0 s"),
        (12, "12 s"),
        (276, "4 min 36 s"),
        (3 * 3600 + 7 * 60 + 20, "3 h 07 min"),
        (53 * 3600, "2 d 05 h"),
        (None, "?"),
        (float("inf"), "?"),
        (-1, "?"),
    ],
)
def test_durations_read_as_a_person_would_say_them(seconds, text):
    assert format_duration(seconds) == text


def test_epochs_are_named_from_zero_as_in_history_csv():
    assert epoch_label(0, 8) == "epoch 0 of 0..7"
    assert epoch_label(7, 8) == "epoch 7 of 0..7"


def test_the_run_eta_uses_the_epochs_done_once_there_are_some():
    assert run_eta(10.0, 3, [], 40.0) == 10.0 + 3 * 40.0
    assert run_eta(10.0, 3, [20.0, 30.0], 40.0) == 10.0 + 3 * 25.0


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _reporter(tmp_path, clock, lines, **changes):
    arguments = {
        "log": lines.append,
        "run_folder": tmp_path,
        "epoch": 2,
        "epochs": 5,
        "steps": 100,
        "steps_before": 0,
        "batch_size": 32,
        "every_seconds": 10.0,
        "done_seconds": [50.0, 70.0],
        "last_val_accuracy": 0.5,
        "clock": clock,
    }
    return EpochReporter(**(arguments | changes))


def test_a_progress_line_every_interval_with_pace_and_etas(tmp_path):
    clock, lines = Clock(), []
    reporter = _reporter(tmp_path, clock, lines)
    clock.now += 5
    assert reporter.step(10) is None and not lines  # before the interval is up
    clock.now += 5  # 10 s for 20 steps of 32 images: 64 images/s, 0.5 s per step
    line = reporter.step(20)
    assert line == lines[-1]
    assert line.startswith("epoch 2 of 0..4  step 20/100  64 images/s")
    # 80 steps left at 0.5 s: 40 s; then 2 epochs at the mean of the done ones (60 s)
    assert "epoch ETA 40 s" in line and "run ETA 2 min 40 s" in line
    status = run_record.read_run_status(tmp_path)
    assert status["state"] == "running"
    assert (status["epoch"], status["step"], status["steps"]) == (2, 20, 100)
    assert status["images_per_second"] == 64.0
    assert status["run_eta_seconds"] == 160.0 and status["val_accuracy"] == 0.5
    clock.now += 4
    assert reporter.step(30) is None  # the interval counts from the last line
    clock.now += 6  # 20 steps in 10 s since the last line
    assert "step 40/100  64 images/s" in reporter.step(40)
    clock.now += 60
    assert reporter.step(100) is None  # the epoch's own line follows its last step
    assert len(lines) == 2


def test_a_resumed_epoch_paces_only_the_steps_it_trained(tmp_path):
    clock, lines = Clock(), []
    reporter = _reporter(tmp_path, clock, lines, steps_before=60, done_seconds=[])
    clock.now += 10
    line = reporter.step(80)  # 20 steps in 10 s; 20 left: 10 s; 2 epochs of 50 s
    assert "step 80/100  64 images/s" in line
    assert "epoch ETA 10 s" in line and "run ETA 1 min 50 s" in line


def test_no_progress_lines_when_the_interval_is_zero(tmp_path):
    clock, lines = Clock(), []
    reporter = _reporter(tmp_path, clock, lines, every_seconds=0)
    clock.now += 1000
    assert reporter.step(50) is None and not lines
    assert run_record.read_run_status(tmp_path) is None


def test_a_status_file_that_cannot_be_read_is_no_status(tmp_path):
    path = run_record.status_path(tmp_path)
    path.parent.mkdir()
    path.write_text("{not json")
    assert run_record.read_run_status(tmp_path) is None
    path.write_text(json.dumps({"state": "dancing"}))
    assert run_record.read_run_status(tmp_path) is None
    with pytest.raises(ValueError, match="unknown run state 'dancing'"):
        run_record.write_run_status(tmp_path, "dancing")
