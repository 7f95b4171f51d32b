"""Write envs/*.yaml, the conda environments of `snakemake --software-deployment-method
conda`, from the lock files: the exact versions `make setup` installs and the tests
passed with, not ranges. `make lock` runs it after writing the locks; a test checks that
the environments still agree with them (tests/test_install.py).

- envs/smoothbench.yaml: the download, prepare and CPU training jobs: every runtime
  dependency of pyproject.toml (with JAX and TensorBoard) and what they need, from
  requirements/cpu.txt;
- envs/smoothbench-gpu.yaml: the same with each backend's CUDA libraries, from
  requirements/gpu.txt (the train rules use it when compute.gpus_per_job > 0);
- envs/smoothbench-results.yaml: the results rules (tables, plots), which import no
  TensorFlow or JAX: pandas, numpy, SciPy, jsonschema, PyYAML and matplotlib.

Plain Python, no third-party import: it runs before any environment exists.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)(\[[^\]]*\])?==(?P<version>[^\s;\\]+)")
# Direct dependencies that run the workflow or the tests, not the jobs.
NOT_IN_JOBS = {
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "pytest",
    "pytest-xdist",
    "snakefmt",
    "ruff",
    "setuptools",
}
RESULTS_ROOTS = {"pandas", "numpy", "scipy", "jsonschema", "pyyaml", "matplotlib"}
HEADER = (
    "# Conda environment for `snakemake --software-deployment-method conda`: {what}.\n"
    "# The exact versions of {lock} (the tests passed with them), written by `make lock`\n"
    "# (requirements/conda_environments.py). Do not edit by hand. The rules import\n"
    "# smoothbench itself from the checkout's src/ (or the installed package).\n"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> tuple[dict[str, str], dict[str, set[str]]]:
    """(name -> version, name -> the names that need it, 'pyproject' for a direct one)."""
    pins: dict[str, str] = {}
    needed_by: dict[str, set[str]] = {}
    current = None
    in_via = False
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonical(match["name"])
            pins[current] = match["version"]
            needed_by[current] = set()
            in_via = False
            continue
        text = line.strip()
        if current is None or not text.startswith("#"):
            continue
        text = text.lstrip("#").strip()
        if text.startswith("via"):
            in_via = True
            text = text[3:].strip()
        if in_via and text:
            needed_by[current].add(
                "pyproject" if "pyproject.toml" in text else canonical(text.split()[0])
            )
    return pins, needed_by


def closure(roots: set[str], needed_by: dict[str, set[str]]) -> set[str]:
    """``roots`` and every package that one of them needs, however indirectly."""
    chosen = set(roots)
    changed = True
    while changed:
        changed = False
        for name, parents in needed_by.items():
            if name not in chosen and parents & chosen:
                chosen.add(name)
                changed = True
    return chosen


def job_roots(needed_by: dict[str, set[str]]) -> set[str]:
    return {
        name
        for name, parents in needed_by.items()
        if "pyproject" in parents and name not in NOT_IN_JOBS
    }


def environment_text(
    what: str, lock: str, pins: dict[str, str], names: set[str]
) -> str:
    lines = [HEADER.format(what=what, lock=lock)]
    lines += [
        "channels:",
        "  - conda-forge",
        "  - nodefaults",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
    ]
    lines += [f"      - {name}=={pins[name]}" for name in sorted(names)]
    return "\n".join(lines) + "\n"


def environments(repository: Path = REPOSITORY) -> dict[str, str]:
    """file name under envs/ -> its text, from the lock files."""
    cpu_pins, cpu_needed_by = read_lock(repository / "requirements" / "cpu.txt")
    gpu_pins, gpu_needed_by = read_lock(repository / "requirements" / "gpu.txt")
    return {
        "smoothbench.yaml": environment_text(
            "the download, prepare and CPU training jobs",
            "requirements/cpu.txt",
            cpu_pins,
            closure(job_roots(cpu_needed_by), cpu_needed_by),
        ),
        "smoothbench-gpu.yaml": environment_text(
            "the training jobs on NVIDIA GPUs (each backend's CUDA libraries)",
            "requirements/gpu.txt",
            gpu_pins,
            closure(job_roots(gpu_needed_by), gpu_needed_by),
        ),
        "smoothbench-results.yaml": environment_text(
            "the results rules (tables, plots: no TensorFlow or JAX)",
            "requirements/cpu.txt",
            cpu_pins,
            closure(RESULTS_ROOTS, cpu_needed_by),
        ),
    }


def main() -> int:
    for name, text in environments().items():
        path = REPOSITORY / "envs" / name
        old = path.read_text() if path.exists() else None
        if old != text:
            path.write_text(text)
        print(f"envs/{name}: {'unchanged' if old == text else 'rewritten'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
