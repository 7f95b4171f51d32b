"""The study through `snakemake --profile profiles/slurm` on a real single-node SLURM
cluster (.ci/slurm-cluster.sh: slurmctld, slurmd, slurmdbd with MariaDB, munge).

These tests start (or reconfigure) that cluster themselves, which needs root on Debian:
they run when SMOOTHBENCH_SLURM_TESTS=1, as .ci/run sets it on such machines, and are
skipped elsewhere with that reason.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import DEMO_RESULTS, REPOSITORY, demo_command

from smoothbench import run_record
from smoothbench.train.checkpoint import read_checkpoint_state

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.skipif(
        os.environ.get("SMOOTHBENCH_SLURM_TESTS") != "1",
        reason="SLURM integration tests need a throwaway cluster: run as root on Debian with "
        "SMOOTHBENCH_SLURM_TESTS=1 (.ci/run does)",
    ),
]

CLUSTER_SCRIPT = REPOSITORY / ".ci" / "slurm-cluster.sh"
# sacct reads only this session's jobs: the throwaway cluster's accounting database
# outlives it, and job ids start again from 1, so a second .ci/run on one machine
# would find the first run's jobs under the same ids.
SINCE = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
PROFILE = REPOSITORY / "profiles" / "slurm"
# Seconds before Snakemake's first status check of a job (40 by default: too slow for tests).
FAST = [
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--slurm-keep-successful-logs",
]


def start_cluster(gpus: int, shards: int = 0) -> None:
    """Start the cluster, or reconfigure it to advertise ``gpus`` fake GPUs, each split
    into ``shards`` shards (SLURM's shard GRES) when given."""
    process = subprocess.run(
        [str(CLUSTER_SCRIPT), "start"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "SMOOTHBENCH_SLURM_GPUS": str(gpus),
            "SMOOTHBENCH_SLURM_SHARDS": str(shards),
        },
    )
    assert process.returncode == 0, process.stdout + process.stderr


def through_slurm(
    workdir: Path, *arguments: str, config: Path | None = None, **options
) -> subprocess.CompletedProcess:
    command = demo_command(workdir, "--profile", str(PROFILE), *FAST, *arguments)
    if config is not None:
        command[command.index("--configfile") + 1] = str(config)
    return subprocess.run(command, capture_output=True, text=True, **options)


def _sacct(jobs: str, fields: str, *flags: str) -> str:
    """sacct's ``fields`` (comma-separated) of ``jobs`` (comma-separated ids) of this
    session, a line per job, '|'-separated; ``flags``: sacct's own, such as -D."""
    return subprocess.run(
        ["sacct", "-S", SINCE, "-n", "-X", *flags, "-P", "-o", fields, "-j", jobs],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def slurm_demo(tmp_path_factory):
    """Four of the demo's runs through the SLURM profile (seed 0: gammas 0.9 and 1.0, alpha,
    LS++): every rule the profile sends to SLURM, two jobs at a time on the two GPUs, and
    every run has its twin in the local demo to compare with."""
    start_cluster(gpus=2)
    workdir = tmp_path_factory.mktemp("slurm_demo")
    config = yaml.safe_load((REPOSITORY / "config" / "demo.yaml").read_text())
    config["seeds"] = [0]
    config["gamma_grid"] = {**config.get("gamma_grid", {}), "min_numerator": 9}
    config["compute"]["gpus_per_job"] = 1  # a GPU per job, as the paper's study asks
    config["compute"]["cpu_fallback"] = True  # the test cluster's GPUs are fake
    (workdir / "demo_seed0.yaml").write_text(yaml.safe_dump(config))
    process = through_slurm(workdir, config=workdir / "demo_seed0.yaml", timeout=1500)
    assert process.returncode == 0, process.stdout[-5000:] + process.stderr[-5000:]
    return workdir


def test_the_demo_through_the_slurm_profile_matches_a_local_run(slurm_demo, request):
    # The local demo only once the SLURM one is trained: pytest would set the
    # session-wide fixture up first, and this worker would wait idle while another
    # trains it, instead of training its SLURM runs meanwhile.
    demo = request.getfixturevalue("demo")
    workdir = slurm_demo
    logs = workdir / DEMO_RESULTS / "logs"
    train_logs = sorted((logs / "train" / "digits").glob("*~*/seed~*.log"))
    assert [
        log.relative_to(logs / "train" / "digits").as_posix() for log in train_logs
    ] == [
        f"{run}/seed~0.log"
        for run in ("alpha~0.1", "gamma~0.9", "gamma~1.0", "lspp~0.1")
    ]
    job_ids = set()
    for log in train_logs:
        text = log.read_text()
        match = re.search(r"SLURM job (\d+)", text.splitlines()[0])
        assert match, text[:500]
        job_ids.add(match.group(1))
        # compute.gpus_per_job: 1 reached SLURM
        assert "GPUs chosen by SLURM: CUDA_VISIBLE_DEVICES='" in text
        run = DEMO_RESULTS / "runs" / "digits" / log.parent.name / "seed~0"
        metrics = json.loads((workdir / run / "metrics.json").read_text())
        assert metrics["attempts"][-1]["slurm_job_id"] == match.group(1)
        # Same seed, same machine: each run's numbers are the local demo's twin's.
        local = json.loads((demo[0] / run / "metrics.json").read_text())
        assert (metrics["best_val_accuracy"], metrics["best_epoch"]) == (
            local["best_val_accuracy"],
            local["best_epoch"],
        ), run
        ours, theirs = (
            pd.read_csv(folder / run / "history.csv").drop(columns="seconds")
            for folder in (workdir, demo[0])
        )
        assert ours.equals(theirs), run
    assert len(job_ids) == 4
    # SLURM's own per-job logs (the profile's slurm-logdir, shared by the studies) exist
    # for train (and prepare) only
    slurm_logs = workdir / "results" / "logs" / "slurm"
    assert sorted(path.name for path in slurm_logs.iterdir()) == [
        "rule_prepare",
        "rule_train",
        "rule_train_lspp",
    ]
    # download, aggregation and plots ran on the submit host
    for local in [
        logs / "download" / "digits.log",
        logs / "aggregate.log",
        logs / "plots" / "summary.log",
    ]:
        assert "not a SLURM job" in local.read_text().splitlines()[0], local
    accounted = _sacct(",".join(sorted(job_ids)), "JobID,State").split()
    assert sorted(accounted) == sorted(f"{job}|COMPLETED" for job in job_ids)
    # Table 2 lists one line per run: the SLURM study's lines are the local demo's seed-0 lines.
    ours = pd.read_csv(workdir / DEMO_RESULTS / "tables" / "table2.csv").drop(
        columns=["metrics_file"], errors="ignore"
    )
    local = pd.read_csv(demo[0] / DEMO_RESULTS / "tables" / "table2.csv").drop(
        columns=["metrics_file"], errors="ignore"
    )
    local = local[(local["seed"] == 0) & local["gamma"].isin([0.9, 1.0])].reset_index(
        drop=True
    )
    assert len(ours) == 2 and ours.equals(local), (ours, local)


# The tests of one training job ask Snakemake for that run's files only: what follows
# training (tables, plots) runs on the submit host and is tested by the demo above.
def run_target(method: str, value: float) -> str:
    """A digits run's metrics.json, seed 0, in the default results folder: a target."""
    folder = run_record.run_folder("results/runs", "digits", method, value, 0)
    return f"{folder}/{run_record.METRICS_FILE}"


ONE_RUN = run_target("gamma", 0.9)

CANCEL_CONFIG = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1",
        "depth": 20,
        "epochs": 10,
        "batch_size": 32,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"shift": 0.1, "horizontal_flip": False},
        "gammas": [0.9],
    },
    "compute": {
        "threads_per_job": 2,
        "gpus_per_job": 1,
        "cpu_fallback": True,
        "progress_seconds": 0.5,
    },
    "experiments": {"digits": {}},
}


def _train_until_two_epochs(tmp_path: Path, config: Path):
    """Start CANCEL_CONFIG's run (config) through the SLURM profile and wait until two of
    its epochs are checkpointed: (the workflow process, its run folder, its train log)."""
    command = demo_command(tmp_path, "--profile", str(PROFILE), *FAST, ONE_RUN)
    command[command.index("--configfile") + 1] = str(config)
    # a file, not a pipe: nobody reads a pipe meanwhile
    output = open(tmp_path / "snakemake.out", "w+")
    workflow = subprocess.Popen(
        command, stdout=output, stderr=subprocess.STDOUT, text=True
    )
    run = tmp_path / "results" / "runs" / "digits" / "gamma~0.9" / "seed~0"
    progress = run / "checkpoint" / "progress.csv"
    log = (
        tmp_path / "results" / "logs" / "train" / "digits" / "gamma~0.9" / "seed~0.log"
    )
    deadline = time.monotonic() + 600
    while not (progress.exists() and len(run_record.read_history(progress)) >= 2):
        assert workflow.poll() is None, (tmp_path / "snakemake.out").read_text()[-3000:]
        assert time.monotonic() < deadline, "no two epochs within 600 s"
        time.sleep(0.2)
    # While the job runs, its SLURM log already holds progress lines from within the
    # epochs (what tail -f shows), and smoothbench-status, reading the files only,
    # shows the run training.
    assert re.search(
        r"epoch \d+ of 0\.\.\d+  step \d+/\d+  [\d,]+ images/s  epoch ETA .*  run ETA ",
        log.read_text(),
    ), log.read_text()[-3000:]
    shown = subprocess.run(
        [
            str(Path(sys.executable).parent / "smoothbench-status"),
            "--configfile",
            str(config),
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    (only,) = json.loads(shown.stdout)["runs"]
    assert only["state"] == "running" and only["epochs_done"] >= 2, only
    return workflow, run, log


def test_a_cancelled_training_job_is_resubmitted_and_resumes(tmp_path):
    start_cluster(gpus=2)
    config = tmp_path / "cancel.yaml"
    config.write_text(json.dumps(CANCEL_CONFIG))
    workflow, run, log = _train_until_two_epochs(tmp_path, config)
    first_job = re.search(r"SLURM job (\d+)", log.read_text()).group(1)
    subprocess.run(["scancel", first_job], check=True)
    workflow.wait(timeout=900)
    assert workflow.returncode == 0, (tmp_path / "snakemake.out").read_text()[-5000:]

    history = run_record.read_history(run / "history.csv")
    assert [row["epoch"] for row in history] == list(range(10))
    metrics = json.loads((run / "metrics.json").read_text())
    attempts = metrics["attempts"]
    assert len(attempts) == 2 and attempts[0]["slurm_job_id"] == first_job
    assert (
        attempts[1]["slurm_job_id"] != first_job
        and attempts[1]["started_at_epoch"] >= 2
    )
    assert re.search(
        r"resuming from .*checkpoint/state.npz: \d+ of 10 epochs done", log.read_text()
    )
    state = _sacct(first_job, "State")
    assert state.startswith("CANCELLED"), state


def test_a_preempted_training_job_is_requeued_by_slurm_and_resumes_from_its_checkpoint(
    tmp_path, demo
):
    """A job of the higher-tier partition 'urgent' (.ci/slurm-cluster.sh) takes the whole
    node while the training job runs: SLURM preempts the training job (SIGTERM: it saves
    a checkpoint after the batch in progress), requeues it under the same job id, and
    runs it again once the node is free. Snakemake waits for that same job: one
    submission, one finished run with exactly its epochs."""
    epoch_seconds, overhead = _demo_speed(demo)
    # about 30 s of training: time to preempt it
    epochs = max(12, math.ceil(30 / epoch_seconds))
    start_cluster(gpus=2)
    config = tmp_path / "preempt.yaml"
    config.write_text(
        json.dumps(
            {
                **CANCEL_CONFIG,
                "protocol": {**CANCEL_CONFIG["protocol"], "epochs": epochs},
            }
        )
    )
    workflow, run, log = _train_until_two_epochs(tmp_path, config)
    job = re.search(r"SLURM job (\d+)", log.read_text()).group(1)
    urgent = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--partition=urgent",
            "--exclusive",
            "--mem=100",
            "--time=2",
            "--output=/dev/null",
            "--wrap",
            "sleep 15",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    urgent_job = urgent.stdout.strip().split(";")[0]
    # SLURM makes a requeued job wait about two minutes before it may start again; once the
    # urgent job is done, let it start at once (as an administrator may), to save the test
    # that wait. What is tested - requeued, resumed, waited for - is the same.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and workflow.poll() is None:
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True
        ).stdout.split("\n")
        states = dict(line.split() for line in queue if line.strip())
        if urgent_job not in states and states.get(job) == "PENDING":
            subprocess.run(
                ["scontrol", "update", f"JobId={job}", "StartTime=now"],
                capture_output=True,
                text=True,
            )
            break
        time.sleep(0.5)
    workflow.wait(timeout=900)
    snakemake_output = (tmp_path / "snakemake.out").read_text()
    assert workflow.returncode == 0, snakemake_output[-5000:]

    history = run_record.read_history(run / "history.csv")
    assert [row["epoch"] for row in history] == list(range(epochs))
    attempts = json.loads((run / "metrics.json").read_text())["attempts"]
    starts = [
        (attempt["started_at_epoch"], attempt["started_at_step"])
        for attempt in attempts
    ]
    assert len(attempts) == 2 and {attempt["slurm_job_id"] for attempt in attempts} == {
        job
    }, attempts
    # Resumed where the preemption stopped it, within an epoch: the SIGTERM checkpoint (the
    # periodic one, every compute.checkpoint_minutes = 10, cannot have been taken yet).
    assert (2, 0) <= starts[1] < (epochs, 0) and starts[1][1] > 0, starts
    # Snakemake submitted the training run once and waited for SLURM's requeued job. (It
    # says "A Job preemption occured!" only when one of its status checks falls in the
    # moment the job is PREEMPTED before SLURM requeues it: at most once, not always.)
    assert snakemake_output.count("A Job preemption  occured!") <= 1, snakemake_output[
        -5000:
    ]
    assert len(re.findall(r"rule train:", snakemake_output)) == 1
    states = _sacct(job, "JobID,State,Start,End", "-D").split()
    urgent_state = _sacct(urgent_job, "State,Start,End")
    print(
        f"training job {job}, sacct -D: {states}; urgent job {urgent_job}: {urgent_state}; attempts started at {starts}"
    )
    assert [state.split("|")[1] for state in states] == ["PREEMPTED", "COMPLETED"], (
        states
    )
    assert urgent_state.startswith("COMPLETED"), urgent_state


def _demo_speed(demo) -> tuple[float, float]:
    """(seconds per epoch after the first, seconds a job spends outside its epochs: start-up,
    data, model), medians over the local demo's gamma runs, which train the network of
    CANCEL_CONFIG on the same data, on this machine, in this session. The demo trains two
    runs of one thread at a time, CANCEL_CONFIG one run of two threads: on a 2-core
    machine of CI's kind their epochs took the same time (1.71 s against 1.74 s,
    2026-12-07); the tests sized from them keep a margin for the difference."""
    runs = demo[0] / DEMO_RESULTS / "runs" / "digits"
    epochs, overheads = [], []
    for history_file in sorted(runs.glob("gamma~*/seed~*/history.csv")):
        history = run_record.read_history(history_file)
        epochs += [row["seconds"] for row in history[1:]]
        where = history_file.parent.relative_to(runs)
        benchmark = (
            demo[0] / DEMO_RESULTS / "benchmarks" / "train" / "digits" / f"{where}.tsv"
        )
        wall = float(pd.read_csv(benchmark, sep="\t")["s"].iloc[0])
        overheads.append(wall - sum(row["seconds"] for row in history))
    assert epochs and overheads, f"no demo runs under {runs}"
    return statistics.median(epochs), statistics.median(overheads)


def test_a_training_job_stopped_by_its_time_limit_resumes_in_the_next_attempt(
    tmp_path, demo
):
    """The first attempt's limit is L minutes (compute.runtime_minutes; 1, unless this
    machine's job start-up, measured on the demo, asks for more): slurmctld, which
    enforces limits every 30 s, stops it 60 x L to 60 x L + 30 s in (SIGTERM: it
    checkpoints the batch in progress). Snakemake submits the job again (the profile's
    retries) with 2 x L (runtime_grows_with_attempt), and that attempt resumes where the
    first stopped.

    The run is sized never to finish: ten times the first attempt's longest time in
    epochs at the local demo's speed (the demo may have trained beside another
    pytest-xdist worker's load, this run alone). So the test need not wait for a
    second attempt to train the rest: once it has checkpointed an epoch of its own,
    the workflow is interrupted, and what it leaves looks unfinished. That a resubmitted
    job trains a run to its end is the cancel and preemption tests' claim."""
    epoch_seconds, overhead = _demo_speed(demo)
    # long enough to start up (overhead, which includes no first-epoch trace) and take steps
    limit = max(1, math.ceil((1.25 * overhead + 15) / 60))
    epochs = max(100, math.ceil(10 * (60 * limit + 30) / epoch_seconds))
    start_cluster(gpus=2)
    config = tmp_path / "time_limit.yaml"
    config.write_text(
        json.dumps(
            {
                **CANCEL_CONFIG,
                "protocol": {**CANCEL_CONFIG["protocol"], "epochs": epochs},
                "compute": {
                    **CANCEL_CONFIG["compute"],
                    "runtime_minutes": limit,
                    "runtime_grows_with_attempt": True,
                },
            }
        )
    )
    command = demo_command(tmp_path, "--profile", str(PROFILE), *FAST, ONE_RUN)
    command[command.index("--configfile") + 1] = str(config)
    output = open(tmp_path / "snakemake.out", "w+")  # a file: nobody reads a pipe
    workflow = subprocess.Popen(
        command, stdout=output, stderr=subprocess.STDOUT, text=True
    )
    run = tmp_path / "results" / "runs" / "digits" / "gamma~0.9" / "seed~0"
    state_file = run / "checkpoint" / "state.npz"
    log = (
        tmp_path / "results" / "logs" / "train" / "digits" / "gamma~0.9" / "seed~0.log"
    )
    jobs: list[str] = []
    attempts: list[dict] = []
    try:
        deadline = time.monotonic() + 600
        # until the second job has checkpointed an epoch (Snakemake empties a job's log
        # when it submits it again: its first line names the job)
        while len(attempts) < 2 or attempts[1].get("slurm_job_id") != jobs[-1]:
            assert workflow.poll() is None, (tmp_path / "snakemake.out").read_text()[
                -5000:
            ]
            assert time.monotonic() < deadline, (
                jobs,
                attempts,
                log.read_text()[-3000:] if log.exists() else "no log",
            )
            time.sleep(0.5)
            if log.exists():
                # a whole first line only: "SLURM job 3" may be half of "SLURM job 36"
                found = re.search(r"SLURM job (\d+)\n", log.read_text()[:500])
                if found and found.group(1) not in jobs:
                    jobs.append(found.group(1))
            if len(jobs) >= 2 and state_file.exists():
                with contextlib.suppress(Exception):  # mid-write: read it again
                    attempts = read_checkpoint_state(state_file)["attempts"]
        resumed = log.read_text()
    finally:
        workflow.send_signal(signal.SIGINT)  # Snakemake cancels its SLURM jobs
        try:
            workflow.wait(timeout=120)
        finally:
            if workflow.poll() is None:
                workflow.kill()
            for job in jobs:
                subprocess.run(["scancel", job], capture_output=True)
    # two jobs, the first stopped by its limit of L, the second given 2 x L
    assert len(jobs) == 2, jobs
    assert _sacct(jobs[0], "State,Timelimit") == f"TIMEOUT|00:{limit:02d}:00", jobs
    assert _sacct(jobs[1], "Timelimit") == f"00:{2 * limit:02d}:00", jobs
    # the second attempt began where the first stopped (its SIGTERM checkpoint, or an
    # epoch's end): not at the start
    assert attempts[0]["slurm_job_id"] == jobs[0], attempts
    starts = [(a["started_at_epoch"], a["started_at_step"]) for a in attempts]
    assert starts[0] == (0, 0) < starts[1] < (epochs, 0), starts
    assert re.search(
        rf"resuming from .*checkpoint/state.npz: {starts[1][0]} of {epochs} epochs done",
        resumed,
    ), resumed[-3000:]
    # interrupted, the run looks unfinished: a checkpoint, no metrics
    assert state_file.exists() and not (run / "metrics.json").exists()
    print(
        f"{epochs} epochs of {epoch_seconds:.2f} s (demo); jobs {jobs}; "
        f"attempts started at (epoch, step) {starts}"
    )


def test_asking_for_a_gpu_on_a_cluster_without_gpus_fails_with_slurms_error(tmp_path):
    start_cluster(gpus=0)
    config = yaml.safe_load((REPOSITORY / "config" / "demo.yaml").read_text())
    config["compute"]["gpus_per_job"] = 1
    (tmp_path / "one_gpu.yaml").write_text(yaml.safe_dump(config))
    try:
        # an error, not a hang: a hang times out
        process = through_slurm(tmp_path, config=tmp_path / "one_gpu.yaml", timeout=600)
        assert process.returncode != 0
        assert (
            "Invalid generic resource (gres) specification"
            in process.stdout + process.stderr
        )
        # nothing trained
        assert not list(tmp_path.glob("results/demo/runs/**/metrics.json"))
        assert (tmp_path / DEMO_RESULTS).exists()  # where the demo writes
    finally:
        start_cluster(gpus=2)


SHARE_CONFIG = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1",
        "depth": 8,
        "epochs": 3,
        "batch_size": 64,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"horizontal_flip": False},
        "gammas": [1.0, 0.9],
    },
    "methods": {"lspp": {"values": [0.1], "experiments": "all"}},
    "compute": {
        "threads_per_job": 1,
        "gpus_per_job": 1,
        "runs_per_gpu": 2,
        "cpu_fallback": True,  # the test cluster's GPUs are fake
    },
    "experiments": {"digits": {}},
}


def _intervals_overlap(intervals: list[tuple[str, str]]) -> bool:
    """Whether two of the (start, end) ISO times overlap."""
    ordered = sorted(intervals)
    return any(later[0] < earlier[1] for earlier, later in zip(ordered, ordered[1:]))


def test_runs_share_one_gpu_through_slurms_shard_gres(tmp_path):
    """compute.runs_per_gpu: 2 on a cluster whose one GPU has 2 shards, with the profile
    asking each training job for a shard (profiles/slurm's commented gres: shard:1): the
    jobs ask SLURM for no GPU of their own, hold a shard each, see the same GPU, and two
    of them train on it at once."""
    start_cluster(gpus=1, shards=2)
    try:
        profile = tmp_path / "profile"
        profile.mkdir()
        settings = yaml.safe_load((PROFILE / "config.yaml").read_text())
        settings["set-resources"] = {
            rule: {"gres": "shard:1"} for rule in ("train", "train_lspp")
        }
        (profile / "config.yaml").write_text(yaml.safe_dump(settings))
        config = tmp_path / "share.yaml"
        config.write_text(json.dumps(SHARE_CONFIG))
        runs = [
            run_target("gamma", 1.0),
            run_target("gamma", 0.9),
            run_target("lspp", 0.1),
        ]
        command = demo_command(tmp_path, "--profile", str(profile), *FAST, *runs)
        command[command.index("--configfile") + 1] = str(config)
        process = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert process.returncode == 0, process.stdout[-5000:] + process.stderr[-5000:]
        logs = sorted((tmp_path / "results" / "logs" / "train").rglob("*.log"))
        assert len(logs) == 3, logs  # gamma 1.0 and 0.9, LS++ 0.1
        job_ids = []
        for log in logs:
            text = log.read_text()
            job_ids.append(re.search(r"SLURM job (\d+)", text).group(1))
            # every job was given the one GPU, by SLURM, through its shard
            assert "GPUs chosen by SLURM: CUDA_VISIBLE_DEVICES='0'" in text, text[:2000]
        accounted = _sacct(",".join(job_ids), "JobID,AllocTRES,State,Start,End").split()
        rows = [line.split("|") for line in accounted]
        assert sorted(row[0] for row in rows) == sorted(job_ids), accounted
        for job, tres, state, _start, _end in rows:
            assert state == "COMPLETED", rows
            assert "gres/shard=1" in tres and "gres/gpu" not in tres, (job, tres)
        # two runs on the one GPU at the same time
        assert _intervals_overlap([(row[3], row[4]) for row in rows]), rows
        runs = tmp_path / "results" / "runs" / "digits"
        assert len(list(runs.glob("*/seed~0/metrics.json"))) == 3
        print("sacct:", *accounted, sep="\n  ")  # the record, in -s or a failure's log
    finally:
        start_cluster(gpus=2)
