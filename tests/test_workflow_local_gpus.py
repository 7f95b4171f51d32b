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
        "depth": 8,
        "epochs": 1,
        "batch_size": 64,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"shift": 0.1, "horizontal_flip": False},
    },
    "gamma_grid": {"min_numerator": 7},
    # the slots are fake: the jobs train on the CPU, and say so
    "compute": {"gpus_per_job": 1, "threads_per_job": 1, "cpu_fallback": True},
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


def test_a_job_given_a_gpu_it_cannot_see_fails_and_writes_no_metrics(tmp_path):
    """A workstation run with a (fake) GPU slot and this CPU-only TensorFlow: the job
    stops before training with the reason in its log, and no run looks finished."""
    config = json.loads(json.dumps(FOUR_RUNS))
    config["compute"]["cpu_fallback"] = False
    config["gamma_grid"] = {"min_numerator": 10}
    process = run_workflow(
        tmp_path,
        config,
        "--profile",
        str(REPOSITORY / "profiles" / "local"),
        "--cores",
        "2",
        "--resources",
        "gpu=1",
        "--until",
        "train",
        env={
            "SMOOTHBENCH_GPU_SLOTS": "0",
            "SMOOTHBENCH_GPU_LOCK_DIR": str(tmp_path / "locks"),
        },
    )
    assert process.returncode != 0, process.stdout[-3000:]
    log = (tmp_path / "results/logs/train/digits/gamma~1.0/seed~0.log").read_text()
    assert "GPU slot 0 claimed" in log
    assert "but its Keras backend, tensorflow, sees none" in log, log[-3000:]
    assert "compute.gpus_per_job: 0" in log
    assert not list(tmp_path.glob("results/runs/**/metrics.json"))
    assert not list(tmp_path.glob("results/runs/**/history.csv"))
