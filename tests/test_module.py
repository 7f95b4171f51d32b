"""smoothbench used as a Snakemake module of a study folder of one's own (the layout
snakedeploy sets up: config/config.yaml and workflow/Snakefile with `module` and
`use rule *`): the study's config, the study's results/, and the package imported from
the checkout (a local module) or from the installation (a copy of the workflow without
the package beside it, as a module fetched from GitHub is)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pandas as pd
import pytest
import yaml
from conftest import REPOSITORY, SNAKEMAKE, TINY_STUDY, checkout_copy, kill_when

pytestmark = pytest.mark.workflow

STUDY = TINY_STUDY


def _study_folder(folder, workflow_snakefile) -> None:
    (folder / "config").mkdir(parents=True)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(STUDY))
    (folder / "workflow").mkdir()
    (folder / "workflow" / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        "module smoothbench:\n"
        f'    snakefile: "{workflow_snakefile}"\n'
        "    config: config\n\n\n"
        "use rule * from smoothbench\n"
    )


def _run(folder) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, "--cores", "2"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_study_folder_of_its_own_uses_the_checkout_as_a_module(tmp_path):
    """A checkout elsewhere than the installed package's (a copy of this one): its own
    src/ is what the workflow and the jobs import, so it owns the runs folder."""
    checkout = checkout_copy(tmp_path / "checkout")
    study = tmp_path / "lab-study"
    _study_folder(study, checkout / "workflow" / "Snakefile")
    process = _run(study)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    results = study / "results"  # the study's own folder, the schema's default
    table = pd.read_csv(results / "tables" / "table2.csv")
    assert len(table) == 2 and set(table["experiment"]) == {"digits"}
    runs = pd.read_csv(results / "runs.csv")
    assert sorted(runs["value"]) == [0.9, 1.0]
    log = (
        results / "logs" / "train" / "digits" / "gamma~0.9" / "seed~0.log"
    ).read_text()
    assert "done: best val_accuracy" in log
    # the checkout's package ran the jobs (each job checks it imported it), and the
    # checkout owns the study's runs folder, not the installed package's
    owner = json.loads((results / "runs" / ".owner.json").read_text())
    assert owner["checkout"] == str(checkout.resolve())


def test_a_fetched_copy_of_the_workflow_imports_the_installed_package(tmp_path):
    """A module fetched from GitHub has the workflow's files but not src/ beside them:
    the rules then import the installed smoothbench (here the test environment's)."""
    vendored = tmp_path / "vendored"
    for folder in ("workflow", "envs"):
        shutil.copytree(REPOSITORY / folder, vendored / folder, symlinks=False)
    assert not (vendored / "src").exists()
    study = tmp_path / "lab-study"
    _study_folder(study, vendored / "workflow" / "Snakefile")
    process = _run(study)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert (study / "results" / "tables" / "table2.csv").exists()
    assert (study / "results" / "runs.csv").exists()
    # the installed package ran it (here the test environment's, from this checkout)
    owner = json.loads((study / "results" / "runs" / ".owner.json").read_text())
    assert owner["checkout"] == str(REPOSITORY.resolve())


def test_a_study_folder_with_the_profile_survives_an_update_and_a_kill(tmp_path):
    """With `smoothbench-profile` run once in the study folder, an update of the
    workflow's code plans no training job, and a killed run resumes; without it,
    planning warns and names the fix."""
    import sys
    from pathlib import Path

    from smoothbench import run_record

    checkout = checkout_copy(tmp_path / "checkout")
    study = tmp_path / "lab-study"
    _study_folder(study, checkout / "workflow" / "Snakefile")
    plain = subprocess.run(
        [SNAKEMAKE, "--cores", "2", "--dry-run"],
        cwd=study,
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "runs without smoothbench's workflow profile" in plain.stderr
    assert "smoothbench-profile" in plain.stderr
    tool = str(Path(sys.executable).with_name("smoothbench-profile"))
    subprocess.run([tool, str(study)], check=True, capture_output=True)
    config = yaml.safe_load((study / "config" / "config.yaml").read_text())
    config["protocol"]["epochs"] = 3
    config["compute"]["checkpoint_minutes"] = 0.002
    (study / "config" / "config.yaml").write_text(yaml.safe_dump(config))

    # a kill mid-study, once the first run has a checkpoint within its second epoch
    runs = study / "results" / "runs" / "digits"

    def an_epoch_done():
        progress = list(runs.glob(f"*/seed~0/checkpoint/{run_record.PROGRESS_FILE}"))
        return bool(progress) and bool(run_record.read_history(progress[0]))

    kill_when([SNAKEMAKE, "--cores", "2"], study, an_epoch_done, "finished epoch")
    subprocess.run([SNAKEMAKE, "--unlock"], cwd=study, check=True, capture_output=True)
    said = subprocess.run(
        [SNAKEMAKE, "--dry-run"], cwd=study, capture_output=True, text=True
    )
    assert "runs without smoothbench's workflow profile" not in said.stderr
    process = _run(study)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    logs = [
        path.read_text()
        for path in (study / "results" / "logs" / "train").rglob("*.log")
    ]
    assert any("resuming from" in log for log in logs), logs

    # an update of the workflow's code: nothing to train, in a dry run and for real
    module = checkout / "src" / "smoothbench" / "train" / "losses.py"
    module.write_text(module.read_text() + "\n# an update\n")
    dry = subprocess.run(
        [SNAKEMAKE, "--dry-run"], cwd=study, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = dry.stdout + dry.stderr
    assert "rule train" not in planned and "rule train_lspp" not in planned, planned[
        -3000:
    ]
