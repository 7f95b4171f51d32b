"""Every finished version of a run is kept: an everyday --config override trains the
overridden runs beside the finished ones, going back republishes them without training,
and an override killed mid-epoch resumes where it stopped when it is applied again
(smoothbench.train.versions, through the real workflow)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import kill_when, run_workflow, workflow_command

from smoothbench import run_record
from smoothbench.pipeline.plan_summary import rerun_warning
from smoothbench.train.versions import changed_keys, kept_versions, version_key

pytestmark = pytest.mark.workflow

EPOCHS = 2
CONFIG = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1",
        "depth": 8,
        "epochs": EPOCHS,
        "batch_size": 64,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"horizontal_flip": False},
        "gammas": [1.0],
    },
    # a checkpoint every few batches: a kill lands on one within an epoch
    "compute": {"threads_per_job": 2, "checkpoint_minutes": 0.002},
    "experiments": {"digits": {}},
}
RUN = Path("results") / "runs" / "digits" / "gamma~1.0" / "seed~0"
LOG = Path("results") / "logs" / "train" / "digits" / "gamma~1.0" / "seed~0.log"
TARGET = str(RUN / run_record.METRICS_FILE)


def _override(epochs: int) -> list[str]:
    return ["--config", f"protocol={{epochs: {epochs}}}"]


def _run(workdir: Path, *arguments: str) -> str:
    process = run_workflow(workdir, CONFIG, "--cores", "2", TARGET, *arguments)
    assert process.returncode == 0, process.stdout[-4000:]
    return process.stdout


def _files(workdir: Path) -> dict[str, bytes]:
    return {
        name: (workdir / RUN / name).read_bytes()
        for name in (run_record.METRICS_FILE, run_record.HISTORY_FILE)
    }


def _epochs(workdir: Path) -> int:
    return json.loads((workdir / RUN / run_record.METRICS_FILE).read_text())["epochs"]


def _kill_mid_epoch(workdir: Path, epochs: int) -> None:
    """Start the override and SIGKILL the whole workflow once the run has finished an
    epoch (and so checkpoints within the next one)."""
    configfile = workdir / "config.test.yaml"
    progress = workdir / RUN / run_record.CHECKPOINT_FOLDER / run_record.PROGRESS_FILE
    kill_when(
        workflow_command(
            workdir, configfile, "--cores", "2", TARGET, *_override(epochs)
        ),
        workdir,
        lambda: progress.exists() and len(run_record.read_history(progress)) >= 1,
        "finished epoch",
    )
    unlock = workflow_command(workdir, configfile, "--unlock")
    subprocess.run(unlock, cwd=workdir, capture_output=True, check=True)


def test_an_override_and_back_keeps_every_finished_version(tmp_path):
    workdir = tmp_path / "study"
    _run(workdir)
    original = _files(workdir)
    assert _epochs(workdir) == EPOCHS

    # An everyday override: the run trains anew, the finished version is kept.
    said = _run(workdir, *_override(EPOCHS + 1))
    assert f"epochs {EPOCHS} -> {EPOCHS + 1}" in said, said[-3000:]
    assert _epochs(workdir) == EPOCHS + 1
    kept = kept_versions(workdir / RUN)
    assert [(v["state"], v["settings"]["epochs"]) for v in kept] == [
        ("finished", EPOCHS)
    ]
    assert (Path(kept[0]["folder"]) / ".finished" / run_record.TRAIN_LOG_FILE).exists()

    # Back to the original config: taken back and republished, nothing trained.
    plan = run_workflow(workdir, CONFIG, "--cores", "2", TARGET, "--dry-run").stdout
    assert "digits" in plan and "take back" in plan
    said = _run(workdir)
    log = (workdir / LOG).read_text()
    assert "already finished: republished" in log and "epoch 1/" not in log, log
    assert _files(workdir) == original
    assert [v["settings"]["epochs"] for v in kept_versions(workdir / RUN)] == [
        EPOCHS + 1
    ]

    # A second override, killed mid-epoch; back to the original: nothing changes.
    _kill_mid_epoch(workdir, EPOCHS + 2)
    assert not (workdir / RUN / run_record.METRICS_FILE).exists()
    _run(workdir)
    assert "republished" in (workdir / LOG).read_text()
    assert _files(workdir) == original
    states = sorted(v["state"] for v in kept_versions(workdir / RUN))
    assert states == ["finished", "unfinished"]

    # The second override again: it resumes from its kept checkpoint.
    _run(workdir, *_override(EPOCHS + 2))
    log = (workdir / LOG).read_text()
    assert "took back the unfinished version" in log and "resuming from" in log, log
    assert " 0 of " not in log.split("resuming from", 1)[1].splitlines()[0]
    assert _epochs(workdir) == EPOCHS + 2
    attempts = json.loads((workdir / RUN / run_record.METRICS_FILE).read_text())[
        "attempts"
    ]
    assert len(attempts) == 2
    # three versions on disk: the published one and two kept
    assert len(kept_versions(workdir / RUN)) == 2
    _run(workdir)
    assert _files(workdir) == original

    # listed with what differs and their size, then pruned: the published one stays
    listing = _tool(workdir, "smoothbench-status", "--versions")
    assert f"epochs {EPOCHS + 1} (now {EPOCHS})" in listing, listing
    assert f"epochs {EPOCHS + 2} (now {EPOCHS})" in listing, listing
    assert "2 kept version(s)" in listing and " kB" in listing
    pruned = _tool(workdir, "smoothbench-retire", "--kept-versions")
    assert "moves its 2 kept versions only" in pruned, pruned
    assert not (workdir / RUN / run_record.VERSIONS_FOLDER).exists()
    [moved] = (workdir / "results" / "retired").glob("*/runs/digits/*/seed~0/.versions")
    assert len(list(moved.iterdir())) == 2
    assert _files(workdir) == original
    assert "no kept versions" in _tool(workdir, "smoothbench-status", "--versions")


def _tool(workdir: Path, name: str, *arguments: str) -> str:
    import sys

    process = subprocess.run(
        [
            str(Path(sys.executable).with_name(name)),
            "--configfile",
            "config.test.yaml",
            *arguments,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    return process.stdout


def test_sizes_in_words():
    from smoothbench.train.versions import size_text

    assert [size_text(n) for n in (812, 14_200, 3_300_000, 1.2e9)] == [
        "812 B",
        "14.2 kB",
        "3.3 MB",
        "1.2 GB",
    ]


def test_changed_keys_and_version_keys():
    assert changed_keys({"epochs": 8, "a": {"b": 1}}, {"epochs": 3, "a": {"b": 1}}) == {
        "epochs": (8, 3)
    }
    one = {"format": 2, "settings": "s", "data": "d"}
    assert version_key(one) == version_key(dict(one))
    assert version_key(one) != version_key({**one, "data": "e"})


def test_planning_warns_about_unsafe_rerun_triggers():
    assert rerun_warning({"mtime", "params", "input"}, True) is None
    warning = rerun_warning({"mtime", "params", "input", "code"}, True)
    assert "code" in warning and "smoothbench-profile" in warning
    assert "rerun-incomplete" in rerun_warning({"mtime"}, False)
