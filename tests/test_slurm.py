"""The study through `snakemake --profile profiles/slurm` on a real single-node SLURM
cluster (ci/slurm-cluster.sh: slurmctld, slurmd, slurmdbd with MariaDB, munge).

These tests start (or reconfigure) that cluster themselves, which needs root on Debian:
they run when SMOOTHBENCH_SLURM_TESTS=1, as .ci/run sets it on such machines, and are
skipped elsewhere with that reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from smoothbench import training
from conftest import REPOSITORY, demo_command

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.skipif(
        os.environ.get("SMOOTHBENCH_SLURM_TESTS") != "1",
        reason="SLURM integration tests need a throwaway cluster: run as root on Debian with "
        "SMOOTHBENCH_SLURM_TESTS=1 (.ci/run does)",
    ),
]

CLUSTER_SCRIPT = REPOSITORY / "ci" / "slurm-cluster.sh"
PROFILE = REPOSITORY / "profiles" / "slurm"
# Seconds before Snakemake's first status check of a job (40 by default: too slow for tests).
FAST = ["--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs"]


def start_cluster(gpus: int) -> None:
    """Start the cluster, or reconfigure it to advertise ``gpus`` fake GPUs."""
    process = subprocess.run(
        [str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, env={**os.environ, "SMOOTHBENCH_SLURM_GPUS": str(gpus)}
    )
    assert process.returncode == 0, process.stdout + process.stderr


def through_slurm(workdir: Path, *arguments: str, config: Path | None = None, **options) -> subprocess.CompletedProcess:
    command = demo_command(workdir, "--profile", str(PROFILE), *FAST, *arguments)
    if config is not None:
        command[command.index("--configfile") + 1] = str(config)
    return subprocess.run(command, capture_output=True, text=True, **options)


@pytest.fixture(scope="module")
def slurm_demo(tmp_path_factory):
    start_cluster(gpus=2)
    workdir = tmp_path_factory.mktemp("slurm_demo")
    process = through_slurm(workdir, timeout=1500)
    assert process.returncode == 0, process.stdout[-5000:] + process.stderr[-5000:]
    return workdir


def test_the_demo_through_the_slurm_profile_matches_a_local_run(slurm_demo, demo):
    workdir = slurm_demo
    logs = workdir / "results" / "logs"
    train_logs = sorted((logs / "train" / "digits").glob("gamma~*/seed~0.log"))
    assert len(train_logs) == 5
    job_ids = set()
    for log in train_logs:
        text = log.read_text()
        match = re.search(r"SLURM job (\d+)", text.splitlines()[0])
        assert match, text[:500]
        job_ids.add(match.group(1))
        assert "GPUs chosen by SLURM: CUDA_VISIBLE_DEVICES='" in text  # the profile's gpu: 1 reached SLURM
        metrics = json.loads((workdir / "results" / "runs" / "digits" / log.parent.name / "seed~0" / "metrics.json").read_text())
        assert metrics["attempts"][-1]["slurm_job_id"] == match.group(1)
    assert len(job_ids) == 5
    # SLURM's own per-job logs exist for train (and prepare) only
    assert sorted(path.name for path in (logs / "slurm").iterdir()) == ["rule_prepare", "rule_train", "rule_train_lspp"]
    # download, aggregation and plots ran on the submit host
    for local in [logs / "download" / "digits.log", logs / "aggregate.log", logs / "plots" / "summary.log"]:
        assert "not a SLURM job" in local.read_text().splitlines()[0], local
    accounted = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(sorted(job_ids))],
                               capture_output=True, text=True, check=True).stdout.split()
    assert sorted(accounted) == sorted(f"{job}|COMPLETED" for job in job_ids)
    # the same tables as the local run of the same config (same seed, same machine)
    for name in ("table2.csv", "table3.csv", "methods.csv", "calibration.csv"):
        ours = pd.read_csv(workdir / "results" / "tables" / name)
        local = pd.read_csv(demo[0] / "results" / "tables" / name)
        assert ours.drop(columns=["metrics_file"], errors="ignore").equals(local.drop(columns=["metrics_file"], errors="ignore")), name


CANCEL_CONFIG = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1", "depth": 20, "epochs": 10, "batch_size": 32, "pooling": "global", "min_image_size": 0,
        "augmentation": {"shift": 0.1, "horizontal_flip": False},
        "gammas": [0.9],
    },
    "compute": {"threads_per_job": 2},
    "experiments": {"digits": {}},
}


def test_a_cancelled_training_job_is_resubmitted_and_resumes(tmp_path):
    start_cluster(gpus=2)
    config = tmp_path / "cancel.yaml"
    config.write_text(json.dumps(CANCEL_CONFIG))
    command = demo_command(tmp_path, "--profile", str(PROFILE), *FAST)
    command[command.index("--configfile") + 1] = str(config)
    output = open(tmp_path / "snakemake.out", "w+")  # a file, not a pipe: nobody reads a pipe meanwhile
    workflow = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
    run = tmp_path / "results" / "runs" / "digits" / "gamma~0.9" / "seed~0"
    progress = run / "checkpoint" / "progress.csv"
    log = tmp_path / "results" / "logs" / "train" / "digits" / "gamma~0.9" / "seed~0.log"
    deadline = time.monotonic() + 600
    while not (progress.exists() and len(training.read_history(progress)) >= 2):
        assert workflow.poll() is None, (tmp_path / "snakemake.out").read_text()[-3000:]
        assert time.monotonic() < deadline, "no two epochs within 600 s"
        time.sleep(0.2)
    first_job = re.search(r"SLURM job (\d+)", log.read_text()).group(1)
    subprocess.run(["scancel", first_job], check=True)
    workflow.wait(timeout=900)
    assert workflow.returncode == 0, (tmp_path / "snakemake.out").read_text()[-5000:]

    history = training.read_history(run / "history.csv")
    assert [row["epoch"] for row in history] == list(range(10))
    metrics = json.loads((run / "metrics.json").read_text())
    attempts = metrics["attempts"]
    assert len(attempts) == 2 and attempts[0]["slurm_job_id"] == first_job
    assert attempts[1]["slurm_job_id"] != first_job and attempts[1]["started_at_epoch"] >= 2
    assert re.search(r"resuming from .*checkpoint/state.npz: \d+ of 10 epochs done", log.read_text())
    state = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", first_job], capture_output=True, text=True).stdout
    assert state.startswith("CANCELLED"), state


# The first attempt gets 1 minute (SLURM stops it 60 to 90 s in: slurmctld checks time
# limits every 30 s); 150 epochs take about 200 s on a 2-core CI machine, so even one twice
# as fast cannot finish in the first attempt. Later attempts get 2, 3, 4 minutes
# (runtime_grows_with_attempt), which leaves room on a machine twice as slow.
TIME_LIMIT_CONFIG = {
    **CANCEL_CONFIG,
    "protocol": {**CANCEL_CONFIG["protocol"], "epochs": 150},
    "compute": {"threads_per_job": 2, "runtime_minutes": 1, "runtime_grows_with_attempt": True},
}


def test_a_training_job_stopped_by_its_time_limit_resumes_in_the_next_attempt(tmp_path):
    start_cluster(gpus=2)
    config = tmp_path / "time_limit.yaml"
    config.write_text(json.dumps(TIME_LIMIT_CONFIG))
    process = through_slurm(tmp_path, config=config, timeout=1200)
    assert process.returncode == 0, process.stdout[-5000:] + process.stderr[-3000:]
    run = tmp_path / "results" / "runs" / "digits" / "gamma~0.9" / "seed~0"
    assert [row["epoch"] for row in training.read_history(run / "history.csv")] == list(range(150))
    attempts = json.loads((run / "metrics.json").read_text())["attempts"]
    assert len(attempts) >= 2, attempts
    starts = [attempt["started_at_epoch"] for attempt in attempts]
    assert starts[0] == 0 and all(earlier < later < 150 for earlier, later in zip(starts, starts[1:])), starts
    for number, attempt in enumerate(attempts, start=1):
        state = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State,Timelimit", "-j", attempt["slurm_job_id"]],
                               capture_output=True, text=True).stdout.strip()
        # every attempt but the last was stopped by its limit, which grew by a minute per attempt
        expected_state = "COMPLETED" if number == len(attempts) else "TIMEOUT"
        assert state == f"{expected_state}|00:0{number}:00", (number, state)


def test_asking_for_a_gpu_on_a_cluster_without_gpus_fails_with_slurms_error(tmp_path):
    start_cluster(gpus=0)
    try:
        started = time.monotonic()
        process = through_slurm(tmp_path, timeout=600)
        assert process.returncode != 0
        assert "Invalid generic resource (gres) specification" in process.stdout + process.stderr
        assert time.monotonic() - started < 300  # an error, not a hang
        assert not list(tmp_path.glob("results/runs/**/metrics.json"))  # nothing trained
    finally:
        start_cluster(gpus=2)
