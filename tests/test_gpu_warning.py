"""No silent CPU: a study whose training jobs ask for no GPU, planned on a machine with
NVIDIA GPUs, says so loudly while Snakemake plans, naming compute.gpus_per_job
(smoothbench.pipeline.jobs.gpu_warning, called by workflow/rules/common.smk). The
machine's GPUs are a fake ``nvidia-smi`` first on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPOSITORY, demo_command

from smoothbench.pipeline.jobs import gpu_warning
from smoothbench.study import load_study_file, load_study_files

DEMO = REPOSITORY / "config" / "demo.yaml"
LISTING = "GPU 0: NVIDIA H200 (UUID: GPU-0a1b2c3d-0000-0000-0000-000000000000)\n"


def _listing(stdout: str, returncode: int = 0):
    def run(command, **keywords):
        assert command == ["nvidia-smi", "-L"] and keywords["timeout"] <= 30
        return subprocess.CompletedProcess(command, returncode, stdout, "")

    return run


def _which(name):
    return f"/usr/bin/{name}"


def test_a_cpu_study_on_a_gpu_machine_is_warned_about():
    warning = gpu_warning(
        load_study_file(DEMO), _which, _listing(LISTING * 2), environment={}
    )
    assert "compute.gpus_per_job" in warning
    assert "2 NVIDIA GPU(s)" in warning
    assert "--config 'compute={gpus_per_job: 1}'" in warning
    assert "--configfile config.yaml mine.yaml" in warning


def test_no_warning_without_gpus_or_when_jobs_ask_for_one():
    demo = load_study_file(DEMO)
    assert gpu_warning(demo, lambda name: None, _listing(LISTING), {}) is None
    # nvidia-smi without a GPU (its driver's "No devices were found", status 6)
    assert gpu_warning(demo, _which, _listing("", 6), {}) is None
    assert gpu_warning(demo, _which, _listing("", 0), {}) is None

    def broken(command, **keywords):
        raise subprocess.TimeoutExpired(command, keywords["timeout"])

    assert gpu_warning(demo, _which, broken, {}) is None
    # the GPUs hidden on purpose
    for hidden in ("", "-1"):
        assert (
            gpu_warning(
                demo, _which, _listing(LISTING), {"CUDA_VISIBLE_DEVICES": hidden}
            )
            is None
        )
    # the paper's study asks for a GPU per job
    paper = load_study_files([REPOSITORY / "config.yaml"])
    assert gpu_warning(paper, _which, _listing(LISTING), {}) is None


def _fake_nvidia_smi(folder: Path, listing: str, status: int = 0) -> dict:
    """An environment whose PATH starts with a fake nvidia-smi printing ``listing``."""
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '%s' '{listing}'\nexit {status}\n")
    script.chmod(0o755)
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CUDA_VISIBLE_DEVICES",)
    }
    environment["PATH"] = f"{folder}{os.pathsep}{environment['PATH']}"
    return environment


def _dry_run(workdir: Path, environment: dict, *arguments: str):
    process = subprocess.run(
        demo_command(workdir, "--dry-run", *arguments),
        capture_output=True,
        text=True,
        env=environment,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    return process


@pytest.mark.workflow
def test_a_dry_run_of_the_demo_on_a_gpu_machine_warns_on_stderr(tmp_path):
    environment = _fake_nvidia_smi(tmp_path / "bin", LISTING)
    process = _dry_run(tmp_path / "work", environment)
    assert "WARNING: this machine has 1 NVIDIA GPU(s)" in process.stderr
    assert "compute.gpus_per_job is 0 for every experiment" in process.stderr
    assert process.stderr.count("WARNING: this machine has") == 1
    # asked for a GPU: no warning
    process = _dry_run(
        tmp_path / "work", environment, "--config", "compute={gpus_per_job: 1}"
    )
    assert "compute.gpus_per_job" not in process.stderr


@pytest.mark.workflow
def test_a_dry_run_of_the_demo_without_gpus_says_nothing(tmp_path):
    environment = _fake_nvidia_smi(
        tmp_path / "bin", "No devices were found\\n", status=6
    )
    process = _dry_run(tmp_path / "work", environment)
    assert "compute.gpus_per_job" not in process.stdout + process.stderr
