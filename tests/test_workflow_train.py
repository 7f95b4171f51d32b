"""The training stage through the real Snakefile: planning, the demo, real images, resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import (
    DEMO_RESULTS,
    FASHION_MNIST_DIR,
    REPOSITORY,
    SNAKEMAKE,
    copy_of_demo,
    run_workflow,
)

from smoothbench import run_record
from smoothbench.data import array_store
from smoothbench.pipeline.ownership import OWNER_FILE
from smoothbench.study import load_study_file
from smoothbench.train import checkpoint

pytestmark = pytest.mark.workflow

HISTORY_VALUES = ("epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy")


def train_jobs(output: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """(experiment, method~value, seed) -> resources of every train / train_lspp job in a dry run's output."""
    jobs = {}
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", output):
        if not re.search(r"^rule train(_lspp)?:", block, re.MULTILINE):
            continue
        wildcards = dict(
            re.findall(
                r"(\w+)=([^,\s]+)", re.search(r"wildcards: (.*)", block).group(1)
            )
        )
        resources = dict(
            re.findall(
                r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", block).group(1)
            )
        )
        run = f"{wildcards['method']}~{wildcards['value']}"
        jobs[(wildcards["experiment"], run, wildcards["seed"])] = resources
    return jobs


def test_the_paper_study_plans_one_train_job_per_run_with_its_resources(tmp_path):
    process = run_workflow(tmp_path, None, "--dry-run")
    assert process.returncode == 0, process.stdout
    jobs = train_jobs(process.stdout)
    study = load_study_file(REPOSITORY / "config.yaml")
    assert set(jobs) == {
        (run.experiment, f"gamma~{run.gamma_text}", str(run.seed))
        for run in study.runs()
    }
    assert len(jobs) == 108
    assert all(resources["gpu"] == "1" for resources in jobs.values())
    a, cifar = (
        jobs[("imagenet12_a", "gamma~0.9", "0")],
        jobs[("cifar10", "gamma~0.5", "0")],
    )
    assert a["mem_mb"] == "32000" and a["runtime"] == "2880"
    assert cifar["mem_mb"] == "8000" and cifar["runtime"] == "720"
    assert ("mnist", "gamma~0.1", "0") not in jobs and (
        "daimlerpedcls",
        "gamma~0.5",
        "0",
    ) not in jobs


def test_the_demo_runs_offline_end_to_end_and_trains_every_run(demo):
    workdir, _ = demo
    manifest, _ = array_store.open_prepared(
        workdir / DEMO_RESULTS / "prepared" / "digits"
    )
    assert (
        manifest["splits"]["train"]["count"] + manifest["splits"]["validation"]["count"]
        == 1797
    )
    study = load_study_file(REPOSITORY / "config" / "demo.yaml")
    runs = study.runs()
    assert len(runs) == 14  # (5 gammas + alpha + LS++) x 2 seeds
    for run in runs:
        folder = workdir / run.folder(study.runs_folder)
        metrics = json.loads((folder / "metrics.json").read_text())
        history = run_record.read_history(folder / "history.csv")
        assert [row["epoch"] for row in history] == list(range(8))
        assert (metrics["method"], metrics["value"], metrics["seed"]) == (
            run.method,
            run.value,
            run.seed,
        )
        assert metrics["epochs"] == 8
        assert metrics["best_val_accuracy"] > 0.8, metrics  # 10 classes: chance is 0.1
        assert not (folder / "checkpoint").exists()
        assert (folder / "c_matrix.npy").exists() == (run.method == "lspp")
        where = f"digits/{run.method}~{run.value_text}/seed~{run.seed}"
        log = (workdir / DEMO_RESULTS / "logs" / "train" / f"{where}.log").read_text()
        assert "epoch 7 of 0..7  lr" in log and "done: best val_accuracy" in log
        # a CPU job's log starts with smoothbench's own lines, none of TensorFlow's
        # CUDA probing (workflow_support.logged)
        lines = log.splitlines()
        head = lines[
            : next(i for i, line in enumerate(lines) if line.startswith("digits "))
        ]
        assert head[0].endswith("not a SLURM job") and len(head) <= 3, head
        assert not [line for line in head if re.match(r"[IWEF]\d{4} |WARNING: ", line)]
        assert "cuInit" not in log and "cudart_stub" not in log and "absl" not in log
        assert (
            workdir / DEMO_RESULTS / "benchmarks" / "train" / f"{where}.tsv"
        ).exists()


def _planned(workdir: Path, config: dict) -> list[str]:
    process = run_workflow(workdir, config, "--dry-run")
    assert process.returncode == 0, process.stdout
    return sorted(f"{wildcards}" for wildcards in train_jobs(process.stdout))


def test_only_settings_that_change_a_result_retrain(demo, tmp_path):
    # A copy: its dry runs write the config and Snakemake's records, and the demo is
    # shared with tests that may be reading it at the same time (pytest-xdist).
    workdir = copy_of_demo(demo, tmp_path / "demo")
    config = yaml.safe_load((REPOSITORY / "config" / "demo.yaml").read_text())
    # The demo ran from config/demo.yaml; this re-serialised copy lists its keys in
    # another (sorted) order, which must not count as a change.
    assert _planned(workdir, config) == []
    config["compute"].update(
        threads_per_job=1,
        evaluation_batch_size=64,
        verify_checksums=False,
        mem_mb=1000,
        backend="tensorflow",
        precision="mixed_bfloat16",
        jit_compile=False,
    )
    assert _planned(workdir, config) == []
    config["protocol"]["epochs"] = 9
    assert len(_planned(workdir, config)) == 14
    config["protocol"]["epochs"] = 8
    config["seeds"] = [0, 1, 2]
    expected = [f"gamma~{gamma}" for gamma in ("1.0", "0.9", "0.8", "0.7", "0.6")] + [
        "alpha~0.1",
        "lspp~0.1",
    ]
    assert _planned(workdir, config) == sorted(
        str(("digits", run, "2")) for run in expected
    )
    config["seeds"] = [0, 1]
    config["methods"]["lspp"]["values"] = [
        0.1,
        0.2,
    ]  # a new value trains only its own runs
    assert _planned(workdir, config) == sorted(
        str(("digits", "lspp~0.2", seed)) for seed in ("0", "1")
    )


def _copy_checkout(destination: Path) -> Path:
    """The files a user's checkout holds (what git tracks), copied with their links."""

    destination.mkdir(parents=True)
    for name in (
        "Snakefile",
        "config.yaml",
        "workflow",
        "src",
        "profiles",
        "config",
        "envs",
    ):
        source = REPOSITORY / name
        if source.is_dir():
            shutil.copytree(
                source,
                destination / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        else:
            shutil.copy2(source, destination / name)
    return destination


def _plan(checkout: Path, workdir: Path, *arguments: str) -> list[str]:
    """Every job a dry run of the demo plans, as 'rule' or 'rule (wildcards)'."""
    command = [
        SNAKEMAKE,
        "--snakefile",
        str(checkout / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(checkout / "config" / "demo.yaml"),
        "--dry-run",
        *arguments,
    ]
    process = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    assert process.returncode == 0, process.stdout + process.stderr
    jobs = []
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", process.stdout):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.MULTILINE)
        if rule and rule.group(1) != "all":
            wildcards = re.search(r"wildcards: (.*)", block)
            jobs.append(
                rule.group(1) + (f" ({wildcards.group(1)})" if wildcards else "")
            )
    return sorted(jobs)


def test_nothing_done_to_the_checkout_replans_a_finished_run(demo, tmp_path):
    """Touching, pulling, editing comments or preparing the same data again retrains
    nothing, with or without a profile; only other settings or other data do."""
    checkout = _copy_checkout(tmp_path / "checkout")
    workdir = copy_of_demo(demo, tmp_path / "work")
    # A copy of the checkout is another checkout: it may not train into the demo's runs
    # folder until it takes the folder over on purpose, by deleting the mark.
    marker = workdir / DEMO_RESULTS / "runs" / OWNER_FILE
    assert json.loads(marker.read_text())["checkout"] == str(REPOSITORY.resolve())
    refused = subprocess.run(
        [
            SNAKEMAKE,
            "--snakefile",
            str(checkout / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(checkout / "config" / "demo.yaml"),
            "--dry-run",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    said = " ".join((refused.stdout + refused.stderr).split())
    assert f"belongs to the checkout {REPOSITORY.resolve()}" in said, said
    assert f"delete {marker}" in said
    marker.unlink()
    # The paper's tables are inputs by absolute path: in a checkout at another place the
    # results stage (and only it) is made again once.
    command = [
        SNAKEMAKE,
        "--snakefile",
        str(checkout / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(checkout / "config" / "demo.yaml"),
        "--cores",
        "2",
    ]
    process = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    assert process.returncode == 0, process.stdout + process.stderr
    assert "rule train" not in process.stdout + process.stderr
    profiles = [
        (),
        ("--profile", str(checkout / "profiles" / "local")),
        ("--profile", str(checkout / "profiles" / "slurm")),
    ]
    for profile in profiles:
        assert _plan(checkout, workdir, *profile) == [], profile

    # A git pull or checkout: every file of the checkout and the data gets a new mtime.
    later = time.time()  # newer than every output of the finished demo
    for path in [
        *checkout.rglob("*"),
        *(workdir / DEMO_RESULTS / "prepared").rglob("*"),
        *(workdir / DEMO_RESULTS / "downloads").rglob("*"),
    ]:
        if path.is_file() and not path.is_symlink():
            os.utime(path, (later, later))
    for profile in profiles:
        assert _plan(checkout, workdir, *profile) == [], profile

    # An edited comment in the train adapter and in the training module: the cheap results
    # stage follows the code's content, training does not.
    for path in (
        checkout / "workflow" / "scripts" / "train.py",
        checkout / "src" / "smoothbench" / "train" / "loop.py",
    ):
        path.write_text(path.read_text() + "\n# a comment\n")
    planned = _plan(checkout, workdir)
    assert planned and not [
        job for job in planned if job.startswith(("train", "prepare", "download"))
    ], planned
    assert "aggregate" in planned

    # The same data prepared again: a new manifest and new arrays, with the same content.
    process = subprocess.run(
        [*command, "--forcerun", "prepare", "--until", "prepare"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert "rule prepare" in process.stdout + process.stderr
    assert not [
        job for job in _plan(checkout, workdir) if job.startswith(("train", "prepare"))
    ]

    # Other data (a manifest whose arrays differ) retrains every run on it.
    manifest_path = workdir / DEMO_RESULTS / "prepared" / "digits" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["arrays"]["train_labels"]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    assert (
        len([job for job in _plan(checkout, workdir) if job.startswith("train")]) == 14
    )


def test_resnet20_learns_real_fashion_mnist_images_in_two_epochs(tmp_path):
    assert (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(), (
        f"{FASHION_MNIST_DIR} lacks Fashion-MNIST: `apt-get install dataset-fashion-mnist`"
    )
    config = {
        "data": {
            "tfds_data_dir": str(tmp_path / "tfds"),
            "download": False,
            "source_dirs": {"fashion_mnist": str(FASHION_MNIST_DIR)},
            "splits": {
                "fashion_mnist": {"train": "train[:6000]", "validation": "test[:1000]"}
            },
        },
        # The paper's ResNet-20 v1 recipe: 28x28 padded to 32, fixed 8x8 pool, batch 32, Adam 1e-3.
        "protocol": {"model": "resnet_v1", "depth": 20, "epochs": 2, "gammas": [0.9]},
        "compute": {"threads_per_job": 2},
        "experiments": {"fashion_mnist": {}},
    }
    process = run_workflow(tmp_path, config, "--cores", "2")
    assert process.returncode == 0, process.stdout
    folder = tmp_path / "results" / "runs" / "fashion_mnist" / "gamma~0.9" / "seed~0"
    metrics = json.loads((folder / "metrics.json").read_text())
    history = run_record.read_history(folder / "history.csv")
    assert metrics["params"] == 274_154  # ResNet-20 v1 on 32x32x1, K = 10
    assert (
        metrics["prepared_data"]["train_examples"] == 6000
        and metrics["prepared_data"]["mock_data"] is False
    )
    # Chance is 0.10. After 2 epochs the training accuracy is ~0.75; the validation accuracy
    # lags (BatchNorm's moving statistics trail the fast-moving weights early on) and swings
    # with the rounding: 0.543 with oneDNN's kernels on an AVX2 CPU, above 0.55 without.
    # 4x chance says it learned, not how a kernel rounds.
    assert history[-1]["accuracy"] > 0.65, history
    assert metrics["best_val_accuracy"] > 0.40, history
    assert history[-1]["loss"] < history[0]["loss"]


RESUME_CONFIG = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1",
        "depth": 8,
        "epochs": 8,
        "batch_size": 32,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"horizontal_flip": True},
        "optimizer": {"schedule": [{"after_epoch": 4, "factor": 0.1}]},
        "gammas": [0.8],
    },
    "compute": {"threads_per_job": 2},
    "experiments": {"digits": {}},
}
RUN = Path("results") / "runs" / "digits" / "gamma~0.8" / "seed~0"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    process = run_workflow(workdir, RESUME_CONFIG, "--cores", "2")
    assert process.returncode == 0, process.stdout
    return run_record.read_history(workdir / RUN / "history.csv")


def _training_process(session: int) -> int | None:
    """PID of the train script's Python process inside the workflow's session."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if ".train.py" in command and os.getsid(int(entry.name)) == session:
                return int(entry.name)
        except (OSError, ProcessLookupError):
            continue
    return None


@pytest.mark.parametrize(
    "how", ["SIGKILL to the whole workflow", "SIGTERM to the training job"]
)
def test_a_killed_job_resumes_from_its_last_epoch(tmp_path, uninterrupted, how):
    config_path = tmp_path / "config.test.yaml"
    config_path.write_text(yaml.safe_dump(RESUME_CONFIG))
    command = [
        SNAKEMAKE,
        "--snakefile",
        str(REPOSITORY / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(config_path),
        "--cores",
        "2",
    ]
    workflow = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    progress = tmp_path / RUN / "checkpoint" / "progress.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (
        progress.exists() and len(run_record.read_history(progress)) >= 2
    ):
        assert workflow.poll() is None, "the workflow ended before it could be killed"
        time.sleep(0.05)
    assert progress.exists(), "no epoch finished within 300 s"
    if how.startswith("SIGKILL"):
        os.killpg(workflow.pid, signal.SIGKILL)
    else:
        pid = _training_process(workflow.pid)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
    workflow.wait(timeout=120)
    assert not (tmp_path / RUN / "metrics.json").exists()
    done_before = len(run_record.read_history(progress))
    assert 2 <= done_before < 8
    # where the checkpoint left off: its epochs done, and the steps of an epoch in
    # progress (SIGTERM saves one after the batch in progress)
    state = checkpoint.read_checkpoint_state(
        tmp_path / RUN / "checkpoint" / run_record.CHECKPOINT_FILE
    )
    left_off = (
        len(state["history"]),
        (state.get("epoch_in_progress") or {}).get("steps_done", 0),
    )
    assert left_off[0] >= done_before

    # a killed Snakemake leaves its lock behind, as after a crash
    if how.startswith("SIGKILL"):
        subprocess.run(
            [*command, "--unlock"], cwd=tmp_path, capture_output=True, check=True
        )
    process = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert process.returncode == 0, process.stdout + process.stderr

    history = run_record.read_history(tmp_path / RUN / "history.csv")
    assert [row["epoch"] for row in history] == list(range(8))
    metrics = json.loads((tmp_path / RUN / "metrics.json").read_text())
    attempts = metrics["attempts"]
    assert [attempt["started_at_epoch"] for attempt in attempts][0] == 0
    # continued exactly where the checkpoint left off, not an epoch or a step earlier
    assert (
        attempts[-1]["started_at_epoch"],
        attempts[-1]["started_at_step"],
    ) == left_off
    log = (
        tmp_path / "results" / "logs" / "train" / "digits" / "gamma~0.8" / "seed~0.log"
    ).read_text()
    assert re.search(r"resuming from .*checkpoint/state.npz: \d+ of 8 epochs done", log)
    assert not (tmp_path / RUN / "checkpoint").exists()
    # Same seed, same machine: the resumed run's numbers are the uninterrupted run's.
    for resumed, reference in zip(history, uninterrupted):
        assert {key: resumed[key] for key in HISTORY_VALUES} == {
            key: reference[key] for key in HISTORY_VALUES
        }
