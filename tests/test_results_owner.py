"""A runs folder belongs to the checkout (or study folder) it lies in, wherever the two
are copied or moved together; two checkouts sharing a folder outside both are still
refused (smoothbench.pipeline.ownership)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from conftest import SNAKEMAKE, TINY_STUDY, checkout_copy

from smoothbench.pipeline import ownership


def _checkout(folder):
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text("")
    return str(folder.resolve())


def test_a_runs_folder_moves_and_copies_with_its_checkout(tmp_path):
    old = _checkout(tmp_path / "old")
    runs = tmp_path / "old" / "results" / "runs"
    ownership.claim(runs, old)
    shutil.copytree(tmp_path / "old", tmp_path / "copy", symlinks=True)
    shutil.move(tmp_path / "old", tmp_path / "moved")
    for name in ("copy", "moved"):
        place = str((tmp_path / name).resolve())
        folder = tmp_path / name / "results" / "runs"
        assert ownership.check_owner(folder, place)["checkout"] == old
        ownership.claim(folder, place)  # the first job rewrites the mark
        mark = ownership.read_owner(folder)
        assert (mark["checkout"], mark["moved_from"]) == (place, old)
    # another checkout pointing at the copy's folder is refused, naming its owner
    other = _checkout(tmp_path / "other")
    with pytest.raises(ownership.ResultsOwnerError, match="belongs to the checkout"):
        ownership.check_owner(tmp_path / "copy" / "results" / "runs", other)


def test_a_symlink_to_a_shared_folder_is_judged_by_its_mark(tmp_path):
    shared = tmp_path / "shared" / "runs"
    ownership.claim(shared, _checkout(tmp_path / "first"))
    second = tmp_path / "second"
    place = _checkout(second)
    (second / "results").symlink_to(tmp_path / "shared")
    with pytest.raises(ownership.ResultsOwnerError, match="belongs to the checkout"):
        ownership.check_owner(second / "results" / "runs", place)


def test_a_results_folder_that_is_a_file_is_said_to_be_a_file(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(ownership.ResultsOwnerError) as error:
        ownership.check_owner(tmp_path / "results" / "runs", "/somewhere")
    assert f"{tmp_path / 'results'} is a file, not a folder" in str(error.value)
    assert "results_folder" in str(error.value)


def test_an_installed_package_is_not_its_site_packages(tmp_path, monkeypatch):
    """Outside a checkout the identity is the working (study) folder."""
    monkeypatch.delenv(ownership.SOURCE_VARIABLE, raising=False)
    monkeypatch.setattr(
        ownership,
        "__file__",
        str(tmp_path / "site-packages" / "smoothbench" / "x.py"),
    )
    monkeypatch.chdir(tmp_path)
    assert ownership.checkout_identity() == str(tmp_path.resolve())


STUDY = {**TINY_STUDY, "protocol": {**TINY_STUDY["protocol"], "gammas": [1.0]}}


@pytest.mark.workflow
def test_a_finished_project_copied_with_cp_a_plans_nothing_to_train(tmp_path):
    project = checkout_copy(
        tmp_path / "project",
        ("workflow", "envs", "src", "profiles", "config", "Snakefile", "config.yaml"),
    )
    (project / "study.yaml").write_text(yaml.safe_dump(STUDY))
    target = "results/runs/digits/gamma~1.0/seed~0/metrics.json"

    def snakemake(folder, *arguments):
        return subprocess.run(
            [
                SNAKEMAKE,
                target,
                "--cores",
                "2",
                "--configfile",
                "study.yaml",
                *arguments,
            ],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=900,
        )

    process = snakemake(project)
    assert process.returncode == 0, process.stderr[-3000:]
    subprocess.run(["cp", "-a", str(project), str(tmp_path / "copy")], check=True)
    process = snakemake(tmp_path / "copy", "--dry-run")
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Nothing to be done" in process.stdout + process.stderr, process.stderr
    # and a real run there trains nothing either
    process = snakemake(tmp_path / "copy")
    assert process.returncode == 0, process.stderr[-3000:]
    assert "rule train" not in process.stdout + process.stderr
