"""Shared helpers: run the real Snakemake workflow in a scratch folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
# Where the demo writes (config/demo.yaml results_folder), relative to its workdir.
DEMO_RESULTS = Path("results") / "demo"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
FASHION_MNIST_DIR = Path(
    os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
)


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
    command = [
        *prefix,
        SNAKEMAKE,
        "--snakefile",
        str(REPOSITORY / "Snakefile"),
        "--directory",
        str(workdir),
    ]
    if config is not None:
        path = workdir / "config.test.yaml"
        path.write_text(yaml.safe_dump(config))
        command += ["--configfile", str(path)]
    else:
        command += ["--configfile", str(REPOSITORY / "config.yaml")]
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
    return [
        SNAKEMAKE,
        "--snakefile",
        str(REPOSITORY / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPOSITORY / "config" / "demo.yaml"),
        *arguments,
    ]


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The offline demo run once, as `make demo` runs it (report included):
    (working directory, seconds it took). Tests that change files copy it first."""
    workdir = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    report = workdir / DEMO_RESULTS / "report.html"
    process = subprocess.run(
        demo_command(
            workdir, "--cores", "2", "--report", str(report), "--report-after-run"
        ),
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    return workdir, time.monotonic() - started
