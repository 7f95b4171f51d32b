"""Which code and software a run ran with: smoothbench's version and commit
(:func:`code_provenance`), the versions of the libraries that compute its numbers
(:func:`library_versions`), both recorded by every attempt (:func:`attempt_provenance`),
and the whole software of the attempt that finished it, for its metrics.json
(:func:`software_versions`).

The commit is the package's own: its git checkout's HEAD when it runs from its checkout
(``src/smoothbench`` of the repository whose top level git names), else what the
installed distribution recorded (a VCS install's commit in ``direct_url.json``; a plain
install has its version only), never the HEAD of a repository the package merely sits
inside (a study repository's ``.venv``)."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from smoothbench import __version__
from smoothbench.compute import backends

PACKAGE = Path(__file__).resolve().parents[1]
# What an attempt records the version of, where present (metrics.json's attempts'
# ``versions``; runs.csv's ``{library}_version``): library -> its name in words.
LIBRARIES = {
    "keras": "Keras",
    "tensorflow": "TensorFlow",
    "jax": "JAX",
    "jaxlib": "jaxlib",
    "torch": "PyTorch",
    "cuda": "CUDA",
    "cudnn": "cuDNN",
}


def _git(folder: Path, *arguments: str) -> str | None:
    """git's answer in ``folder``, or None (no git, not a repository, an error)."""
    try:
        process = subprocess.run(
            ["git", "-C", str(folder), *arguments],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return process.stdout.strip() if process.returncode == 0 else None


def checkout_root(package: Path = PACKAGE) -> Path | None:
    """The git checkout that ``package`` is the ``src/smoothbench`` of; None for a
    package installed elsewhere, even inside another repository's folder."""
    root = package.parent.parent
    if package.parent.name != "src" or not (root / "pyproject.toml").is_file():
        return None
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return None
    return root


def installed_record(package: Path = PACKAGE) -> dict | None:
    """What pip recorded of the installed distribution that ``package`` is:
    ``direct_url.json`` (a VCS install's ``vcs_info.commit_id``), {} without one; None
    when no installed smoothbench is this folder."""
    try:
        distribution = importlib.metadata.distribution("smoothbench")
    except importlib.metadata.PackageNotFoundError:
        return None
    installed = Path(str(distribution.locate_file("smoothbench"))).resolve()
    if installed != package.resolve():
        return None
    try:
        record = json.loads(distribution.read_text("direct_url.json") or "{}")
    except ValueError:
        record = {}
    return record if isinstance(record, dict) else {}


def code_provenance(package: Path = PACKAGE) -> dict:
    """The smoothbench that runs: ``version``, the folder it was imported from
    (``source``), its ``commit`` and whether tracked files differ from it (``dirty``;
    None where unknown), and where the commit comes from (``origin``: 'git checkout',
    'VCS install', or 'install' with no commit)."""
    provenance = {
        "version": __version__,
        "source": str(package),
        "commit": None,
        "dirty": None,
        "origin": "install",
    }
    root = checkout_root(package)
    if root is not None:
        commit = _git(root, "rev-parse", "HEAD")
        if commit:
            status = _git(root, "status", "--porcelain", "--untracked-files=no")
            return provenance | {
                "commit": commit,
                "dirty": None if status is None else bool(status),
                "origin": "git checkout",
            }
        return provenance | {"origin": "checkout without git"}
    record = installed_record(package) or {}
    vcs = record.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("commit_id"):
        # pip installed that commit as it was: nothing uncommitted in it
        return provenance | {
            "commit": vcs["commit_id"],
            "dirty": False,
            "origin": "VCS install",
        }
    return provenance


def _cuda_text(number: int) -> str:
    """CUDA's version number (1000 major + 10 minor) as text: 12030 -> '12.3'."""
    return f"{number // 1000}.{number % 1000 // 10}"


def _cudnn_text(number: int) -> str:
    """cuDNN's version number as text: 8907 -> '8.9.7', 90100 -> '9.1.0'."""
    if number >= 90000:
        return f"{number // 10000}.{number % 10000 // 100}.{number % 100}"
    return f"{number // 1000}.{number % 1000 // 100}.{number % 100}"


def _gpu_libraries(backend: str) -> dict:
    """CUDA and cuDNN as the backend reports them (TensorFlow: those it was built
    with; JAX and PyTorch: those loaded); {} where it says nothing."""
    found = {}
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            build = tf.sysconfig.get_build_info()
            found = {
                "cuda": build.get("cuda_version"),
                "cudnn": build.get("cudnn_version"),
            }
        elif backend == "jax":
            from jax._src.lib import cuda_versions

            if cuda_versions is not None:
                found = {
                    "cuda": _cuda_text(cuda_versions.cuda_runtime_get_version()),
                    "cudnn": _cudnn_text(cuda_versions.cudnn_get_version()),
                }
        elif backend == "torch":
            import torch

            cudnn = torch.backends.cudnn.version()
            found = {
                "cuda": torch.version.cuda,
                "cudnn": _cudnn_text(cudnn) if cudnn else None,
            }
    except Exception:  # a backend without these answers: nothing recorded
        return {}
    return {name: str(value) for name, value in found.items() if value}


def library_versions(backend: str, gpu: bool) -> dict:
    """The versions of what computes a run's numbers: Keras, the backend's packages
    (tensorflow; jax and jaxlib; torch) and, on a GPU, CUDA and cuDNN; each where
    present."""
    import keras

    versions = {"keras": keras.__version__}
    packages = {
        "tensorflow": ["tensorflow"],
        "jax": ["jax", "jaxlib"],
        "torch": ["torch"],
    }
    for name in packages.get(backend, []):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
        versions[name] = str(version)
    if gpu:
        versions |= _gpu_libraries(backend)
    return versions


def attempt_provenance(backend: str, gpu: bool) -> dict:
    """What one attempt records of its code and software (metrics.json's attempts):
    ``code_version``, ``code_commit``, ``code_dirty`` (:func:`code_provenance`) and
    ``versions`` (:func:`library_versions`)."""
    code = code_provenance()
    return {
        "code_version": code["version"],
        "code_commit": code["commit"],
        "code_dirty": code["dirty"],
        "versions": library_versions(backend, gpu),
    }


def software_versions() -> dict:
    """metrics.json's ``software`` (the attempt that finished the run): Python, Keras,
    NumPy, the backend's package and smoothbench (:func:`code_provenance`)."""
    import keras

    versions = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    versions["smoothbench"] = code_provenance()
    backend = keras.backend.backend()
    # each backend's package has its name
    if backend in backends.BACKENDS and backend in sys.modules:
        versions[backend] = getattr(sys.modules[backend], "__version__", "?")
    return versions
