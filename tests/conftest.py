"""Shared helpers: run the real Snakemake workflow in a scratch folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
# The report a run that completes its study writes at its end (10-35 s each) is made
# by the tests of the report only (REPORT_ON): the others skip it.
os.environ["SMOOTHBENCH_REPORT"] = "0"
# Tests that train in this process import TensorFlow before any job could set oneDNN:
# start it as compute.onednn's auto rule does (smoothbench.compute.onednn), so that a
# job here finds TensorFlow as it would have set it. Jobs in subprocesses set their own.
if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    from smoothbench.compute.onednn import VARIABLE, resolve_onednn

    os.environ[VARIABLE] = "1" if resolve_onednn("auto", "tensorflow")[0] else "0"
REPORT_ON = {"SMOOTHBENCH_REPORT": "1"}
# The environment before any test ran: what a shared fixture's workflow runs under,
# whichever test (or pytest-xdist worker) happens to ask for it first; tests that train
# in this process set variables of their own (TensorFlow's logging, for one).
STARTING_ENVIRONMENT = dict(os.environ)
# Where the demo writes (config/demo.yaml results_folder), relative to its workdir.
DEMO_RESULTS = Path("results") / "demo"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
FASHION_MNIST_DIR = Path(
    os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
)


# The test files that take longest, longest first, as measured on 2 cores under two
# pytest-xdist workers (each file's time in all, SLURM tests included, 2026-12-07):
# make test hands out files in this order (--no-loadscope-reorder), so that the long
# ones start early and short files fill the end, instead of a long file starting last
# and running alone. Files not named follow in their usual order. A file missing from
# the list costs time, never a result.
LONGEST_FIRST = [
    "test_slurm.py",  # 834 s
    "test_workflow_train.py",  # 524 s
    "test_retire.py",  # 536 s, most of it the demo fixture's training
    "test_acceleration_training.py",  # 380 s
    "test_training.py",  # 254 s
    "test_gpu_check.py",  # 246 s
    "test_workflow_data.py",  # 237 s
    "test_kill_anywhere.py",  # 203 s
    "test_module.py",  # 194 s
    "test_own_datasets.py",  # 191 s
    "test_tuning.py",  # 164 s
    "test_workflow_local_gpus.py",  # 161 s
    "test_resume_computation.py",  # 115 s
    "test_versions.py",  # 105 s
]


def pytest_collection_modifyitems(config, items):
    """Put the files of LONGEST_FIRST first, in its order (a stable sort: the tests of a
    file keep theirs)."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# A one-dataset study small enough to train in seconds (digits, ResNet-8, 1 epoch).
TINY_STUDY = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1",
        "depth": 8,
        "epochs": 1,
        "batch_size": 128,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"horizontal_flip": False},
        "gammas": [1.0, 0.9],
    },
    "compute": {"threads_per_job": 2},
    "experiments": {"digits": {}},
}


def checkout_copy(folder: Path, names=("workflow", "envs", "src")) -> Path:
    """A copy of this checkout's ``names`` (folders or files, links kept) and its
    pyproject.toml in ``folder``: another checkout of the same code."""
    for name in names:
        source = REPOSITORY / name
        if source.is_dir():
            shutil.copytree(
                source,
                folder / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        else:
            shutil.copy2(source, folder / name)
    shutil.copy2(REPOSITORY / "pyproject.toml", folder / "pyproject.toml")
    return folder


def workflow_command(
    workdir: Path, configfile: Path | None, *arguments: str, prefix=()
) -> list[str]:
    """The command that runs the repository's Snakefile in ``workdir`` with
    ``configfile`` (None: the shipped config.yaml) and ``arguments``."""
    return [
        *prefix,
        SNAKEMAKE,
        "--snakefile",
        str(REPOSITORY / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile or REPOSITORY / "config.yaml"),
        *arguments,
    ]


def kill_when(command: list[str], cwd: Path, ready, what: str, timeout=600) -> None:
    """Start ``command`` in a session of its own and SIGKILL all of it as soon as
    ``ready()`` is true (polled every 50 ms); fail if it ends first or ``what`` does not
    happen within ``timeout`` seconds."""
    import signal

    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert process.poll() is None, f"it finished before {what}"
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout} s")
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_workflow(
    workdir: Path,
    config: dict | None,
    *arguments: str,
    timeout: int = 900,
    env=None,
    prefix=(),
):
    """Run the repository's Snakefile with ``workdir`` as working directory.

    ``config`` is written to ``workdir/config.test.yaml`` and passed with --configfile
    (None: the shipped config.yaml). Returns the CompletedProcess (output merged).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    path = None
    if config is not None:
        path = workdir / "config.test.yaml"
        path.write_text(yaml.safe_dump(config))
    command = workflow_command(workdir, path, prefix=prefix)
    return subprocess.run(
        command + list(arguments),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def demo_command(workdir: Path, *arguments: str) -> list[str]:
    """`make demo`'s Snakemake command, with ``workdir`` as the working directory."""
    return workflow_command(workdir, REPOSITORY / "config" / "demo.yaml", *arguments)


def demo_output(workdir: Path) -> Path:
    """Where the demo fixture keeps what its run printed, beside its working directory."""
    return workdir.with_name(workdir.name + "-output.txt")


def copy_of_demo(demo, destination: Path) -> Path:
    """A copy of the finished demo (files, times and Snakemake's records) at
    ``destination``, to change or run the workflow in: the demo itself is shared
    between tests (and pytest-xdist workers) and stays as it is."""
    shutil.copytree(demo[0], destination, symlinks=True)
    return destination


def _train_demo(workdir: Path) -> tuple[int, float]:
    """Run the offline demo in ``workdir`` as `make demo` runs it: (its exit status,
    the seconds it took); what it printed goes to demo_output(workdir)."""
    started = time.monotonic()
    process = subprocess.run(
        demo_command(workdir, "--cores", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**STARTING_ENVIRONMENT, **REPORT_ON},
    )
    demo_output(workdir).write_text(process.stdout)
    return process.returncode, time.monotonic() - started


def _finished_demo(workdir: Path, returncode: int, seconds: float):
    assert returncode == 0, demo_output(workdir).read_text()
    return workdir, seconds


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The offline demo run once, as `make demo` runs it (the workflow writes the
    report itself, at its end): (working directory, seconds it took); what it printed
    is in demo_output(workdir), stdout and stderr as one. Tests must not change it: one
    that runs the workflow in it, even a dry run, copies it first.

    Under pytest-xdist (make test runs 2 workers) the workers share one demo: the first
    to ask trains it under a lock in the run's common temporary folder, the others wait
    for it and read where it is."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        workdir = tmp_path_factory.mktemp("demo")
        return _finished_demo(workdir, *_train_demo(workdir))
    import fcntl
    import json

    shared = tmp_path_factory.getbasetemp().parent  # the run's, above each worker's
    record = shared / "demo.json"
    with open(shared / "demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not record.is_file():  # the first worker to ask: train it
            workdir = shared / "demo"
            if workdir.exists():  # left by a worker that died while training it
                shutil.rmtree(workdir)
            workdir.mkdir()
            returncode, seconds = _train_demo(workdir)
            record.write_text(json.dumps([str(workdir), returncode, seconds]))
        workdir, returncode, seconds = json.loads(record.read_text())
    return _finished_demo(Path(workdir), returncode, seconds)
