"""A workstation run with profiles/local: four training jobs on two (fake) GPU slots."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REPOSITORY, run_workflow

pytestmark = pytest.mark.workflow

FOUR_RUNS = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1",
        "depth": 20,
        "epochs": 2,
        "batch_size": 64,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"shift": 0.1, "horizontal_flip": False},
    },
    "gamma_grid": {"min_numerator": 7},
    "compute": {"gpus_per_job": 1, "threads_per_job": 1},
    "experiments": {"digits": {}},
}


def slot_intervals(log: str) -> list[tuple[str, float, float]]:
    claimed = re.search(r"GPU slot (\S+) claimed at ([\d.]+)", log)
    released = re.search(r"GPU slot (\S+) released at ([\d.]+)", log)
    assert claimed and released, log[-2000:]
    return [(claimed.group(1), float(claimed.group(2)), float(released.group(2)))]


def test_four_jobs_with_two_gpus_never_share_a_slot(tmp_path):
    environment = {
        "SMOOTHBENCH_GPU_SLOTS": "0,1",
        "SMOOTHBENCH_GPU_LOCK_DIR": str(tmp_path / "locks"),
    }
    process = run_workflow(
        tmp_path,
        FOUR_RUNS,
        "--profile",
        str(REPOSITORY / "profiles" / "local"),
        "--cores",
        "4",
        "--resources",
        "gpu=2",
        env=environment,
    )
    assert process.returncode == 0, process.stdout
    held = []
    for log in sorted(
        (tmp_path / "results" / "logs" / "train" / "digits").glob("gamma~*/seed~0.log")
    ):
        held += slot_intervals(log.read_text())
        metrics = json.loads(
            (
                tmp_path
                / "results"
                / "runs"
                / "digits"
                / log.parent.name
                / "seed~0"
                / "metrics.json"
            ).read_text()
        )
        assert metrics["attempts"][-1]["cuda_visible_devices"] == held[-1][0]
    assert len(held) == 4
    assert {slot for slot, _, _ in held} == {"0", "1"}
    for index, (slot, start, end) in enumerate(held):
        for other_slot, other_start, other_end in held[index + 1 :]:
            if slot == other_slot:
                assert end <= other_start or other_end <= start, (
                    f"slot {slot} held twice at once: {held}"
                )
    # two at a time: some pair of jobs overlapped, on different slots
    assert any(
        start < other_end and other_start < end
        for i, (_, start, end) in enumerate(held)
        for _, other_start, other_end in held[i + 1 :]
    )
    assert sorted(path.name for path in Path(tmp_path / "locks").iterdir()) == [
        "gpu0.lock",
        "gpu1.lock",
    ]
