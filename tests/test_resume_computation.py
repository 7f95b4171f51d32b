"""A run is computed one way from its first epoch to its last: a resume whose config now
gives another computation stops before training, naming what differs, and keeps the
checkpoint; a run begun under an earlier version's measured choice resumes under it."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("keras")

from test_training import TINY as TRAINING_TINY

from smoothbench import run_record
from smoothbench.compute.decisions import ComputationMismatchError
from smoothbench.data.preparation import prepare
from smoothbench.results import provenance
from smoothbench.study import load_study
from smoothbench.train import checkpoint, loop

# test_training's tiny digits study, gamma 0.9 only
TINY = {key: value for key, value in TRAINING_TINY.items() if key != "methods"} | {
    "experiments": {"digits": {"gammas": [0.9]}}
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    study = load_study(TINY)
    folder = tmp_path_factory.mktemp("prepared") / "digits"
    prepare(study.data_settings("digits"), folder)
    return study, folder


def _killed_after_first_epoch(study, prepared, run_folder, monkeypatch) -> None:
    """Train until the first epoch's checkpoint, then stop as a kill would."""
    save = checkpoint.save_checkpoint

    def save_then_die(*arguments, **keywords):
        save(*arguments, **keywords)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        loop.train(
            study.train_settings("digits", "gamma", "0.9", 0),
            dataclasses.replace(study.compute_settings(), checkpoint_minutes=0),
            prepared,
            run_folder,
            log=lambda _: None,
        )
    monkeypatch.setattr(loop, "save_checkpoint", save)


def test_a_resume_under_another_precision_stops_and_keeps_the_checkpoint(
    digits, tmp_path, monkeypatch
):
    study, prepared = digits
    run = tmp_path / "run"
    _killed_after_first_epoch(study, prepared, run, monkeypatch)
    state = run / run_record.CHECKPOINT_FOLDER / run_record.CHECKPOINT_FILE
    kept = state.read_bytes()
    settings = study.train_settings("digits", "gamma", "0.9", 0)
    other = dataclasses.replace(study.compute_settings(), precision="mixed_bfloat16")
    with pytest.raises(ComputationMismatchError) as error:
        loop.train(settings, other, prepared, run, log=lambda _: None)
    message = str(error.value)
    assert "precision: 'float32' in the checkpoint, 'mixed_bfloat16' now" in message
    assert "compute.precision: float32" in message and "retire the run" in message
    assert state.read_bytes() == kept  # never deleted, never touched
    assert not (run / "metrics.json").exists()
    # the recorded settings given back: it resumes, one computation throughout
    metrics = loop.train(
        settings, study.compute_settings(), prepared, run, log=lambda _: None
    )
    assert [attempt["started_at_epoch"] for attempt in metrics["attempts"]] == [0, 1]
    assert {attempt["precision"] for attempt in metrics["attempts"]} == {"float32"}


def _rewrite_state(path, change) -> None:
    """The checkpoint with its JSON state changed by ``change`` (variables as they were)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    state = json.loads(arrays["state"].tobytes().decode())
    change(state)
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def test_a_run_begun_under_a_measured_choice_resumes_under_it(
    digits, tmp_path, monkeypatch
):
    """A checkpoint of an earlier version whose measured auto chose bfloat16: with the
    keys still auto, the run resumes under it (not auto's rule now) and says so."""
    study, prepared = digits
    run = tmp_path / "run"
    _killed_after_first_epoch(study, prepared, run, monkeypatch)
    state = run / run_record.CHECKPOINT_FOLDER / run_record.CHECKPOINT_FILE
    measured = {
        "backend": "tensorflow",
        "precision": "mixed_bfloat16",
        "jit_compile": False,
        "deterministic": True,
    }

    def as_if_measured(state):
        state["attempts"][-1] |= measured | {
            "tuned": {"choice": measured, "reason": "measured", "device": "CPU"}
        }

    _rewrite_state(state, as_if_measured)
    messages = []
    metrics = loop.train(
        study.train_settings("digits", "gamma", "0.9", 0),
        study.compute_settings(),
        prepared,
        run,
        log=messages.append,
    )
    last = metrics["attempts"][-1]
    assert {key: last[key] for key in measured} == measured
    assert any("kept from the run's earlier attempts" in line for line in messages)


def test_an_attempt_of_an_earlier_version_still_gets_the_resume_check(
    digits, tmp_path, monkeypatch
):
    """A checkpoint whose attempt predates the TF32 key and per-attempt provenance: the
    missing TF32 reads as what that version used (on), so a config that now turns it
    off stops the resume; left to auto, the run keeps it, and its attempts, one without
    a commit and one with, are reported as mixed."""
    study, prepared = digits
    run = tmp_path / "run"
    _killed_after_first_epoch(study, prepared, run, monkeypatch)
    state = run / run_record.CHECKPOINT_FOLDER / run_record.CHECKPOINT_FILE
    new_keys = ("tf32", "device", "xla_flags", "versions")
    new_keys += ("code_version", "code_commit", "code_dirty")

    def as_if_written_before(state):
        for key in new_keys:
            state["attempts"][-1].pop(key)

    _rewrite_state(state, as_if_written_before)
    kept = state.read_bytes()
    settings = study.train_settings("digits", "gamma", "0.9", 0)
    off = dataclasses.replace(study.compute_settings(), tf32=False)
    with pytest.raises(ComputationMismatchError) as error:
        loop.train(settings, off, prepared, run, log=lambda _: None)
    assert "tf32: True in the checkpoint (not recorded there" in str(error.value)
    assert state.read_bytes() == kept
    metrics = loop.train(
        settings, study.compute_settings(), prepared, run, log=lambda _: None
    )
    first, second = metrics["attempts"]
    assert "tf32" not in first and second["tf32"] is True
    assert second["code_commit"] and second["device"] == "CPU"
    read = provenance.run_provenance(metrics)
    assert read["tf32"] == "True"
    assert read["code_commit"] == f"unknown+{second['code_commit']}"
    assert "code_commit" in read["mixed_attempts"]
    assert provenance.run_commits(metrics) == {
        "unknown",
        second["code_commit"],
    }


def _keep_last_saved_variables(monkeypatch) -> dict:
    """Every checkpoint the loop saves is read back; the last one's arrays are kept."""
    save, kept = checkpoint.save_checkpoint, {}

    def save_and_keep(path, *arguments, **keywords):
        save(path, *arguments, **keywords)
        with np.load(path, allow_pickle=False) as archive:
            kept.clear()
            kept.update(
                {
                    name: archive[name]
                    for name in archive.files
                    if name.startswith(("variable_", "loss_scale_"))
                }
            )

    monkeypatch.setattr(loop, "save_checkpoint", save_and_keep)
    return kept


def test_mixed_float16_killed_within_an_epoch_resumes_to_the_very_same_weights(
    digits, tmp_path, monkeypatch
):
    """Under mixed_float16 Keras scales the loss dynamically; the scale and its step
    counter are checkpointed with the weights, so a run killed in the middle of an
    epoch and resumed ends with every variable equal, bit for bit, to the
    uninterrupted run's."""
    study, prepared = digits
    settings = study.train_settings("digits", "gamma", "0.9", 0)
    compute = dataclasses.replace(
        study.compute_settings(), precision="mixed_float16", checkpoint_minutes=0
    )
    whole = _keep_last_saved_variables(monkeypatch)
    loop.train(settings, compute, prepared, tmp_path / "whole", log=lambda _: None)
    whole = dict(whole)
    assert any(name.startswith("loss_scale_") for name in whole)

    save, saves = checkpoint.save_checkpoint, []

    def save_then_die_within_epoch_one(path, *arguments, **keywords):
        save(path, *arguments, **keywords)
        state = checkpoint.read_checkpoint_state(path)
        saves.append(state.get("epoch_in_progress"))
        if state.get("epoch_in_progress", {}).get("epoch") == 1:
            raise KeyboardInterrupt  # a kill after a mid-epoch checkpoint of epoch 1

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die_within_epoch_one)
    every_batch = dataclasses.replace(compute, checkpoint_minutes=1e-9)
    with pytest.raises(KeyboardInterrupt):
        loop.train(
            settings, every_batch, prepared, tmp_path / "resumed", log=lambda _: None
        )
    assert saves[-1]["epoch"] == 1 and 0 < saves[-1]["steps_done"] < saves[-1]["steps"]
    resumed = _keep_last_saved_variables(monkeypatch)
    messages = []
    metrics = loop.train(
        settings, every_batch, prepared, tmp_path / "resumed", log=messages.append
    )
    assert any("steps of epoch 1" in line for line in messages), messages
    assert [attempt["precision"] for attempt in metrics["attempts"]] == [
        "mixed_float16"
    ] * 2
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert np.array_equal(whole[name], resumed[name]), name


JAX_RESUME = """
import dataclasses, json, sys
import numpy as np
from smoothbench.train import checkpoint, loop
from smoothbench.data.preparation import prepare
from smoothbench.study import load_study
config, folder = json.loads(sys.argv[1]), sys.argv[2]
study = load_study(config)
prepared = f"{folder}/prepared"
prepare(study.data_settings("digits"), prepared)
settings = study.train_settings("digits", "gamma", "0.9", 0)
compute = dataclasses.replace(study.compute_settings(), checkpoint_minutes=1e-9)
save, kept, state = checkpoint.save_checkpoint, {}, {"die": False}
def save_and_keep(path, *arguments, **keywords):
    save(path, *arguments, **keywords)
    with np.load(path) as archive:
        kept.clear()
        kept.update({n: archive[n] for n in archive.files if n.startswith("variable_")})
    saved = checkpoint.read_checkpoint_state(path)
    if state["die"] and (saved.get("epoch_in_progress") or {}).get("epoch") == 1:
        raise KeyboardInterrupt
loop.save_checkpoint = save_and_keep
loop.train(settings, compute, prepared, f"{folder}/whole", log=lambda _: None)
whole = dict(kept)
state["die"] = True
try:
    loop.train(settings, compute, prepared, f"{folder}/resumed", log=lambda _: None)
    raise SystemExit("not killed")
except KeyboardInterrupt:
    pass
state["die"] = False
metrics = loop.train(settings, compute, prepared, f"{folder}/resumed", log=lambda _: None)
starts = [(a["started_at_epoch"], a["started_at_step"], a["backend"]) for a in metrics["attempts"]]
same = sorted(whole) == sorted(kept) and all(np.array_equal(whole[n], kept[n]) for n in whole)
print("RESULT " + json.dumps({"starts": starts, "same": same, "variables": len(whole)}))
"""


def test_a_jax_run_killed_within_an_epoch_resumes_to_the_very_same_weights(tmp_path):
    """The other backend a user's machine may get: JAX (compiled), in a process of its
    own, killed after a mid-epoch checkpoint of epoch 1 and resumed there; every
    variable equals the uninterrupted run's."""
    config = TINY | {"compute": {"threads_per_job": 2, "backend": "jax"}}
    process = subprocess.run(
        [sys.executable, "-c", JAX_RESUME, json.dumps(config), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
        timeout=900,
    )
    assert process.returncode == 0, process.stdout + process.stderr[-4000:]
    result = json.loads(process.stdout.split("RESULT ", 1)[1])
    (first, second) = result["starts"]
    assert first == [0, 0, "jax"] and second[0] == 1 and second[1] > 0, result
    assert second[2] == "jax" and result["variables"] > 0
    assert result["same"], result
