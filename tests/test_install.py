"""What `make setup` installs: the dependencies, and the GPU extra that makes each
backend see NVIDIA GPUs from PyPI alone (pyproject.toml, envs/, the Makefile)."""

from __future__ import annotations

import re
import subprocess

import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
from conftest import REPOSITORY

PYPROJECT = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())


def _names(requirements) -> dict[str, str]:
    """requirement name (with its extras) -> the requirement text."""
    return {
        re.match(r"[A-Za-z0-9_.-]+(\[[^]]*\])?", text).group(0): text
        for text in requirements
    }


def test_the_gpu_extra_names_both_backends_with_their_cuda_libraries():
    gpu = _names(PYPROJECT["project"]["optional-dependencies"]["gpu"])
    assert set(gpu) == {"tensorflow[and-cuda]", "jax[cuda12]"}
    # the same lower bounds as the CPU install
    plain = _names(PYPROJECT["project"]["dependencies"]) | _names(
        PYPROJECT["project"]["optional-dependencies"]["jax"]
    )
    assert (
        gpu["tensorflow[and-cuda]"].split(">=")[1] == plain["tensorflow"].split(">=")[1]
    )
    assert gpu["jax[cuda12]"].split(">=")[1] == plain["jax"].split(">=")[1]


def test_the_conda_environments_match_pyproject():
    for name, extra in (("smoothbench.yaml", []), ("smoothbench-gpu.yaml", ["gpu"])):
        environment = yaml.safe_load((REPOSITORY / "envs" / name).read_text())
        pip = next(
            item["pip"]
            for item in environment["dependencies"]
            if isinstance(item, dict)
        )
        wanted = _names(PYPROJECT["project"]["dependencies"])
        for other in extra:
            for requirement, text in _names(
                PYPROJECT["project"]["optional-dependencies"][other]
            ).items():
                wanted.pop(requirement.split("[")[0], None)
                wanted[requirement] = text
        listed = _names(pip)
        # snakemake and its plugin run the workflow; the environment runs the jobs
        missing = (
            set(wanted) - set(listed) - {"snakemake", "snakemake-executor-plugin-slurm"}
        )
        assert not missing, (name, missing)
        for requirement in set(wanted) & set(listed):
            assert listed[requirement] == wanted[requirement], (name, requirement)


def test_make_setup_gpu_installs_the_gpu_extra():
    def planned(*arguments):
        return subprocess.run(
            ["make", "-n", "-B", "setup", *arguments],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert 'pip install --quiet -e ".[test,gpu]"' in planned("GPU=1")
    assert 'pip install --quiet -e ".[test]"' in planned()
