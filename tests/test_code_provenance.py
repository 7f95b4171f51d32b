"""The commit a run records is smoothbench's own: its checkout's HEAD when it runs from
its git checkout, else what the installed distribution recorded (a VCS install's
commit, or no commit and the version), never the HEAD of a repository the package
merely sits inside (a study repository's .venv)."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPOSITORY

from smoothbench import __version__
from smoothbench.compute import software

VCS_COMMIT = "89abcdef" * 5


def _git(folder: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *arguments],
        capture_output=True,
        text=True,
        check=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
            "HOME": str(folder),
            "PATH": "/usr/bin:/bin",
        },
    ).stdout.strip()


@pytest.fixture()
def study_repository(tmp_path) -> Path:
    """A study's own git repository, with one commit."""
    study = tmp_path / "study"
    study.mkdir()
    _git(study, "init", "-q")
    (study / "config.yaml").write_text("seeds: [0]\n")
    _git(study, "add", "config.yaml")
    _git(study, "commit", "-q", "-m", "study")
    return study


def _copy_package(site_packages: Path) -> Path:
    package = site_packages / "smoothbench"
    shutil.copytree(
        REPOSITORY / "src" / "smoothbench",
        package,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return package


def test_from_its_checkout_the_checkouts_head():
    found = software.code_provenance()
    assert found["commit"] == _git(REPOSITORY, "rev-parse", "HEAD")
    assert found["origin"] == "git checkout" and isinstance(found["dirty"], bool)
    assert found["version"] == __version__
    assert software.checkout_root() == REPOSITORY


def test_installed_inside_a_study_repository_it_never_reports_the_studys_head(
    study_repository,
):
    site_packages = study_repository / ".venv/lib/python3.11/site-packages"
    package = _copy_package(site_packages)
    assert _git(package, "rev-parse", "HEAD")  # git itself answers the study's HEAD
    found = software.code_provenance(package)
    assert found["commit"] is None and found["dirty"] is None
    assert found["origin"] == "install" and found["version"] == __version__
    # a source tree that is no checkout of its own, inside the study's
    tree = study_repository / "vendor" / "smoothbench"
    shutil.copytree(package, tree / "src" / "smoothbench")
    shutil.copy2(REPOSITORY / "pyproject.toml", tree / "pyproject.toml")
    assert software.checkout_root(tree / "src" / "smoothbench") is None
    assert software.code_provenance(tree / "src" / "smoothbench")["commit"] is None


def test_a_vcs_install_records_the_commit_pip_installed(study_repository, monkeypatch):
    site_packages = study_repository / ".venv/lib/python3.11/site-packages"
    package = _copy_package(site_packages)
    dist_info = site_packages / "smoothbench-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Name: smoothbench\nVersion: 0.1.0\n")
    direct_url = {
        "url": "https://example.org/smoothbench.git",
        "vcs_info": {"vcs": "git", "commit_id": VCS_COMMIT},
    }
    (dist_info / "direct_url.json").write_text(json.dumps(direct_url))
    installed = importlib.metadata.PathDistribution(dist_info)
    monkeypatch.setattr(
        software.importlib.metadata, "distribution", lambda name: installed
    )
    found = software.code_provenance(package)
    assert (found["commit"], found["dirty"], found["origin"]) == (
        VCS_COMMIT,
        False,
        "VCS install",
    )
    # a plain install (a wheel, a folder): no commit, its version says which code
    (dist_info / "direct_url.json").write_text(json.dumps({"url": "file:///x"}))
    assert software.code_provenance(package)["commit"] is None
    # another installed smoothbench than the one imported is not asked
    assert software.installed_record(REPOSITORY / "src" / "smoothbench") is None


def test_library_versions_are_the_backends_own():
    import keras

    backend = keras.backend.backend()
    versions = software.library_versions(backend, gpu=False)
    assert versions["keras"] == keras.__version__
    assert versions[backend] == importlib.metadata.version(backend)
    assert "cuda" not in versions and "cudnn" not in versions
    assert set(versions) <= set(software.LIBRARIES)
    assert software._cuda_text(12030) == "12.3"
    assert software._cudnn_text(8907) == "8.9.7"
    assert software._cudnn_text(90100) == "9.1.0"
