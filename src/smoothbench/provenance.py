"""Which code and software a run ran with, for its metrics.json: smoothbench's version,
folder and git commit (:func:`code_provenance`), and the versions of Python, Keras,
NumPy and the backend (:func:`software_versions`)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from smoothbench import __version__, acceleration


def code_provenance() -> dict:
    """The smoothbench that runs: version, the folder it was imported from, and - in a
    git checkout - its commit and whether tracked files differ from it (dirty)."""
    package = Path(__file__).resolve().parent
    provenance = {
        "version": __version__,
        "source": str(package),
        "commit": None,
        "dirty": None,
    }
    try:
        commit = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if commit.returncode == 0:
            status = subprocess.run(
                [
                    "git",
                    "-C",
                    str(package),
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            provenance["commit"] = commit.stdout.strip()
            provenance["dirty"] = (
                bool(status.stdout.strip()) if status.returncode == 0 else None
            )
    except (OSError, subprocess.TimeoutExpired):
        pass  # no git: version and source still say which code ran
    return provenance


def software_versions() -> dict:
    """metrics.json's ``software``: Python, Keras, NumPy, the backend's package and
    smoothbench (:func:`code_provenance`)."""
    import keras

    versions = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    versions["smoothbench"] = code_provenance()
    backend = keras.backend.backend()
    # each backend's package has its name
    if backend in acceleration.BACKENDS and backend in sys.modules:
        versions[backend] = getattr(sys.modules[backend], "__version__", "?")
    return versions
