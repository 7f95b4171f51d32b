"""What `make setup` installs: the exact versions of the lock files in requirements/
(made from pyproject.toml by `make lock`), and the GPU extra that makes each backend see
NVIDIA GPUs from PyPI alone (pyproject.toml, requirements/, envs/, the Makefile). And
that a plain `pip install .` (not editable) gives working tools from any folder: the
wheel holds the schema and the paper's tables, the version is pyproject.toml's."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
from conftest import REPOSITORY

PYPROJECT = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
CPU_LOCK = REPOSITORY / "requirements" / "cpu.txt"
GPU_LOCK = REPOSITORY / "requirements" / "gpu.txt"
# A requirement line of a lock: `name==version`, then ` \` before its hash lines.
PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


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


def test_the_conda_environments_are_the_locks_exact_versions():
    """envs/*.yaml are what requirements/conda_environments.py writes from the lock
    files (make lock runs it): exact versions, TensorBoard included, a results
    environment without TensorFlow or JAX, and every runtime dependency of
    pyproject.toml in the jobs' environments."""
    spec = importlib.util.spec_from_file_location(
        "conda_environments", REPOSITORY / "requirements" / "conda_environments.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.environments(REPOSITORY)
    assert sorted(written) == sorted(
        path.name for path in (REPOSITORY / "envs").glob("*.yaml")
    )
    for name, text in written.items():
        assert (REPOSITORY / "envs" / name).read_text() == text, (
            f"envs/{name} differs from the lock files: run make lock"
        )
    lock = {
        "smoothbench.yaml": "cpu.txt",
        "smoothbench-gpu.yaml": "gpu.txt",
        "smoothbench-results.yaml": "cpu.txt",
    }
    for name, lock_file in lock.items():
        environment = yaml.safe_load(written[name])
        pip = next(i["pip"] for i in environment["dependencies"] if isinstance(i, dict))
        pins = _pins(REPOSITORY / "requirements" / lock_file)
        listed = {
            canonicalize_name(item.split("==")[0]): item.split("==")[1] for item in pip
        }
        assert all(pins[package] == version for package, version in listed.items()), (
            name
        )
        if name != "smoothbench-results.yaml":
            runtime = _names(PYPROJECT["project"]["dependencies"])
            wanted = {canonicalize_name(r) for r in runtime} - {
                "snakemake",
                "snakemake-executor-plugin-slurm",
            }
            assert wanted | {"jax", "tensorboard"} <= set(listed), (
                name,
                wanted - set(listed),
            )
    results = {
        item.split("==")[0]
        for item in yaml.safe_load(written["smoothbench-results.yaml"])["dependencies"][
            2
        ]["pip"]
    }
    assert {"pandas", "matplotlib", "scipy"} <= results
    assert not results & {"tensorflow", "jax", "keras", "jaxlib"}
    assert any(
        name.startswith("nvidia-")
        for name in yaml.safe_load(written["smoothbench-gpu.yaml"])["dependencies"][2][
            "pip"
        ]
    )


def _pins(lock: Path) -> dict[str, str]:
    """Normalized package name -> the exact version a lock file pins it to."""
    pins = {}
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            match = PIN.match(line)
            assert match, (lock.name, line)
            pins[canonicalize_name(match["name"])] = match["version"]
    return pins


def _requirements(*extras: str) -> list[Requirement]:
    """pyproject.toml's dependencies with the requirements of the given extras."""
    project = PYPROJECT["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


@pytest.mark.parametrize("lock", [CPU_LOCK, GPU_LOCK], ids=lambda lock: lock.name)
def test_each_lock_pins_every_package_exactly_with_its_hashes(lock):
    """pip installs a lock's files only when each is pinned with `==` and carries a
    sha256 (hash-checking mode): a `>=`, a URL or an editable line would let the
    versions drift again."""
    requirement_lines = 0
    lines = lock.read_text().splitlines()
    for number, line in enumerate(lines):
        if not line or line[0].isspace() or line.startswith("#"):
            continue
        requirement_lines += 1
        assert PIN.fullmatch(line.removesuffix(" \\")), (lock.name, line)
        assert lines[number + 1].strip().startswith("--hash=sha256:"), (lock.name, line)
    assert requirement_lines == len(_pins(lock)) > 100


def test_the_cpu_lock_pins_pyproject_and_both_backends():
    """Every requirement `make setup` asks for (the dependencies, the test and jax
    extras) is in the CPU lock at a version it allows: a requirement added or raised in
    pyproject.toml without `make lock` fails here."""
    pins = _pins(CPU_LOCK)
    for requirement in _requirements("test", "jax"):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in {CPU_LOCK.name}: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{CPU_LOCK.name} pins {name}=={pins[name]}, outside {requirement}: "
            "run make lock"
        )
    # both Keras backends the tests train with, and Keras itself
    assert {"tensorflow", "jax", "jaxlib", "keras"} <= set(pins)


def test_the_gpu_lock_shares_every_version_of_the_cpu_lock():
    """`make setup GPU=1` must train with the versions the CPU tests passed with: the
    GPU lock adds only the CUDA libraries of the gpu extra (made under the CPU lock as a
    constraint by `make lock`)."""
    cpu, gpu = _pins(CPU_LOCK), _pins(GPU_LOCK)
    assert set(cpu) <= set(gpu), set(cpu) - set(gpu)
    differing = {name: (cpu[name], gpu[name]) for name in cpu if cpu[name] != gpu[name]}
    assert not differing, differing
    own = set(gpu) - set(cpu)
    assert own, "the GPU lock holds no CUDA libraries"
    assert all(name.startswith(("nvidia-", "jax-cuda12-")) for name in own), own
    # both backends' CUDA libraries: TensorFlow's [and-cuda] and JAX's plugin
    assert {"jax-cuda12-plugin", "jax-cuda12-pjrt", "nvidia-cudnn-cu12"} <= own
    for requirement in _requirements("test", "jax", "gpu"):
        name = canonicalize_name(requirement.name)
        assert name in gpu, f"{name} is not in {GPU_LOCK.name}: run make lock"
        assert requirement.specifier.contains(gpu[name], prereleases=True), requirement


def test_the_installed_environment_matches_the_lock():
    """The environment the tests run in holds every package of the lock that
    `make setup` installed it from (the GPU lock where the GPU stamp is), at exactly
    that version, so that what passes here is what the lock reproduces elsewhere."""
    gpu_installed = (Path(sys.prefix) / ".installed-gpu").exists()
    lock = GPU_LOCK if gpu_installed else CPU_LOCK
    wrong = {}
    for name, version in _pins(lock).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = f"{installed} installed, {lock.name} pins {version}"
    assert not wrong, (
        f"{sys.prefix} differs from requirements/{lock.name} (make setup installs it): "
        f"{wrong}"
    )


def _planned_setup(*arguments: str, venv: Path | None = None) -> str:
    """The commands `make setup` would run (make -n), with the given make arguments."""
    return subprocess.run(
        ["make", "-n", "setup", *arguments]
        + ([f"VENV={venv}"] if venv is not None else []),
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MAKEFLAGS": ""},
    ).stdout


def test_make_setup_installs_the_lock_then_the_package_editable():
    for arguments, lock in (((), "cpu.txt"), (("GPU=1",), "gpu.txt")):
        planned = _planned_setup("-B", *arguments)
        assert f"pip install --quiet --require-hashes -r requirements/{lock}" in planned
        # the package itself, editable, without letting pip resolve anything newer
        assert "pip install --quiet --no-deps -e ." in planned
        assert "[test" not in planned, planned


def test_make_setup_reinstalls_when_its_lock_changes(tmp_path):
    """The stamp (.installed, .installed-gpu) depends on the lock it was installed
    from: `make -W FILE` plans as if FILE had just changed."""
    for stamp in (".installed", ".installed-gpu"):
        (tmp_path / stamp).touch()
    install = "--require-hashes -r requirements/"
    assert install + "cpu.txt" in _planned_setup(
        "-W", "requirements/cpu.txt", venv=tmp_path
    )
    assert install not in _planned_setup("-W", "requirements/gpu.txt", venv=tmp_path)
    assert install + "gpu.txt" in _planned_setup(
        "GPU=1", "-W", "requirements/gpu.txt", venv=tmp_path
    )
    assert install not in _planned_setup("GPU=1", venv=tmp_path)


def test_make_demo_ends_with_where_the_report_is_and_what_to_try_next(tmp_path):
    """The real `make demo` with a stand-in for the workflow (set up already; the
    demo's own run, which writes the report, is the demo fixture's): the workflow with
    the demo's config and no report flag, then three plain lines, the report's place,
    how to open it and what to try next."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()  # newer than pyproject.toml and the lock: no setup
    snakemake = venv / "bin" / "snakemake"
    snakemake.write_text('#!/bin/sh\necho "the workflow ran with: $*"\n')
    snakemake.chmod(0o755)
    process = subprocess.run(
        ["make", "demo", f"VENV={venv}"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        # as typed at a shell: not a sub-make of `make test` (whose MAKELEVEL would add
        # "make[1]: Leaving directory" after the demo's lines)
        env={
            key: value
            for key, value in os.environ.items()
            if key not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")
        },
        timeout=60,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    lines = process.stdout.strip().splitlines()
    assert lines[-4] == "the workflow ran with: --cores 2 --configfile config/demo.yaml"
    report, how, what_next = lines[-3:]
    assert report == "The demo's report: results/demo/report.html"
    assert how.startswith("Open it in a web browser") and (
        "xdg-open results/demo/report.html" in how
    )
    assert "snakemake -n plans the paper's study" in what_next
    assert "README.md, 'Your own study'" in what_next
    assert "**Your own study.**" in (REPOSITORY / "README.md").read_text()
    # the README's quick start, word for word
    readme = (REPOSITORY / "README.md").read_text()
    assert "\nmake demo    # " in readme and "\nmake test    # " in readme


# -- a non-editable install -----------------------------------------------------------

# The files a wheel is built from (pyproject.toml names the rest: readme, license).
WHEEL_SOURCES = ["pyproject.toml", "README.md", "LICENSE", "src/smoothbench"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """smoothbench installed from a wheel, not editable, into a fresh environment: a
    venv whose only other packages are the dependencies already installed here (a .pth
    line naming this environment's site-packages, whose own .pth files, the editable
    install of the checkout among them, it does not read). Built and installed with no
    network: the build backend of [build-system] is installed here (the test extra)."""
    folder = tmp_path_factory.mktemp("install")
    tree = folder / "tree"
    for name in WHEEL_SOURCES:
        source = REPOSITORY / name
        if source.is_dir():
            shutil.copytree(
                source,
                tree / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(source, tree / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        pip
        + ["wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--wheel-dir", str(folder / "dist"), str(tree)],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    (wheel,) = (folder / "dist").glob("smoothbench-*.whl")
    environment = folder / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True
    )
    (site_packages,) = (environment / "lib").glob("python3*/site-packages")
    (site_packages / "dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    subprocess.run(
        pip
        + ["--python", str(environment / "bin" / "python"), "install"]
        + ["--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return environment


def _outside(environment: Path, command: list[str], cwd: Path):
    """``command`` run from ``cwd``, far from the checkout, with nothing of it on
    PYTHONPATH."""
    variables = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "SMOOTHBENCH_SOURCE", "VIRTUAL_ENV")
    }
    variables["PATH"] = f"{environment / 'bin'}{os.pathsep}{variables['PATH']}"
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env=variables, timeout=300
    )


def test_the_wheel_holds_the_schema_the_paper_and_the_license(installed):
    wheel = next(installed.parent.glob("dist/smoothbench-*.whl"))
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "smoothbench/schemas/config.schema.yaml" in names
    assert (
        "smoothbench/tools/workflow_profile.yaml" in names
    )  # smoothbench-profile writes it
    assert {"smoothbench/results/paper/mezzini_tables_1_2.csv"} <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "Copyright (c) 2026 the smoothbench authors" in (
        (REPOSITORY / "LICENSE").read_text()
    )


def test_the_installed_package_is_the_one_imported(installed, tmp_path):
    process = _outside(
        installed,
        [
            "python",
            "-c",
            "import sys, smoothbench; print(smoothbench.__file__); "
            "print(smoothbench.__version__); print('\\n'.join(sys.path))",
        ],
        tmp_path,
    )
    assert process.returncode == 0, process.stderr
    imported, version, *path = process.stdout.splitlines()
    assert Path(imported).is_relative_to(installed)
    assert version == PYPROJECT["project"]["version"]
    source = REPOSITORY / "src"
    assert not any(entry and Path(entry) == source for entry in path), path


@pytest.mark.parametrize(
    "script", sorted(PYPROJECT["project"]["scripts"]), ids=lambda script: script
)
def test_each_installed_tool_prints_its_version_from_any_folder(
    installed, tmp_path, script
):
    process = _outside(installed, [script, "--version"], tmp_path)
    assert process.returncode == 0, process.stderr
    # no commit: the installed package is no git checkout
    assert process.stdout.strip() == f"{script} {PYPROJECT['project']['version']}"


def test_the_installed_tools_read_the_papers_config_from_any_folder(
    installed, tmp_path
):
    paper = str(REPOSITORY / "config.yaml")
    rates = ["--rate", "resnet_v2-83@72=900", "--rate", "resnet_v1-20@32=1430"]
    process = _outside(
        installed, ["smoothbench-cost", "--configfile", paper, *rates], tmp_path
    )
    assert process.returncode == 0, process.stderr
    assert "total: 108 training jobs" in process.stdout
    # with an override: the schema's types and defaults come from the wheel
    process = _outside(
        installed,
        [
            "smoothbench-status",
            "--configfile",
            paper,
            "--config",
            "seeds=[0,1]",
            "--json",
        ],
        tmp_path,
    )
    assert process.returncode == 0, process.stderr
    runs = json.loads(process.stdout)["runs"]
    assert len(runs) == 2 * 108 and {run["seed"] for run in runs} == {0, 1}
    process = _outside(
        installed,
        ["smoothbench-cost", "--configfile", paper, "--config", "seeds=[zero]", *rates],
        tmp_path,
    )
    assert process.returncode == 2
    assert process.stderr.startswith("smoothbench-cost: error: ")
    assert "config key 'seeds[0]'" in process.stderr


def test_the_installed_equivalence_tool_asks_for_a_checkout(installed, tmp_path):
    """It trains through the Snakefile, which no wheel holds: it says so, before
    anything else."""
    process = _outside(installed, ["smoothbench-equivalence", "--all"], tmp_path)
    assert process.returncode != 0
    assert "run it in a checkout" in process.stderr


def test_the_installed_cost_tool_answers_at_the_papers_rates_from_an_empty_folder(
    installed, tmp_path
):
    """No benchmark file and no --rate, outside any checkout: the paper's own rates,
    said so, exit 0; and its advice names no script the wheel lacks."""
    process = _outside(
        installed,
        ["smoothbench-cost", "--configfile", str(REPOSITORY / "config.yaml")],
        tmp_path,
    )
    assert process.returncode == 0, process.stderr
    assert "total: 108 training jobs, 2,127.03 GPU-hours" in process.stdout
    assert "rates used: the paper's rates, not this machine's" in process.stdout
    assert "benchmark" not in process.stdout + process.stderr
    assert list(tmp_path.iterdir()) == []


def test_installed_inside_another_git_repository_it_reports_its_own_version(
    installed, tmp_path
):
    """A study repository holding the environment (its .venv): the package records its
    own version and no commit, never that repository's HEAD."""
    repository = installed.parent
    git = ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@t"]
    if not (repository / ".git").exists():
        subprocess.run([*git, "init", "-q"], check=True)
        (repository / "study.yaml").write_text("seeds: [0]\n")
        subprocess.run([*git, "add", "study.yaml"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "a study"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    process = _outside(
        installed,
        [
            "python",
            "-c",
            "import json; from smoothbench.compute.software import code_provenance; "
            "print(json.dumps(code_provenance()))",
        ],
        repository,
    )
    assert process.returncode == 0, process.stderr
    recorded = json.loads(process.stdout)
    assert recorded["commit"] != head and recorded["commit"] is None, recorded
    assert recorded["version"] == PYPROJECT["project"]["version"]
