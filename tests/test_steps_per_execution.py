"""compute.steps_per_execution: several training steps per call into the backend, and
not one number changed by it; checkpoints, progress lines and resume at its pace."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("keras")

from test_training import TINY, _settings, assert_resumed_as_whole

from smoothbench.data import array_store
from smoothbench.data.batches import ArrayBatches, epoch_order
from smoothbench.data.preparation import prepare
from smoothbench.settings import RunSettings
from smoothbench.study import load_study
from smoothbench.train import checkpoint, loop, network


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """test_training's prepared digits (TINY), for this module."""
    study = load_study(TINY)
    folder = tmp_path_factory.mktemp("prepared") / "digits"
    prepare(study.data_settings("digits"), folder)
    return study, folder


def _variables_after_an_epoch(study, prepared, steps_per_execution: int) -> list:
    import keras

    _, arrays = array_store.open_prepared(prepared)
    settings = RunSettings.from_dict(_settings(study, gamma="0.9"))
    _, model, _ = network.build_for_training(
        settings,
        np.asarray(arrays["mean"]),
        "float32",
        False,
        steps_per_execution,
    )
    labels = arrays["train_labels"]
    batches = ArrayBatches(
        arrays["train_images"],
        labels,
        settings.batch_size,
        order=epoch_order(len(labels), settings.seed, 0),
    )
    model.fit(batches, epochs=1, verbose=0, shuffle=False)
    return [
        keras.ops.convert_to_numpy(variable)
        for variable in model.variables + model.optimizer.variables
    ]


def test_steps_per_execution_changes_no_variable(digits):
    """12 steps (1437 images at batch 128) one per call, and five per call (the last
    call two): every variable of the model and the optimizer equal to the last bit."""
    study, prepared = digits
    one = _variables_after_an_epoch(study, prepared, 1)
    five = _variables_after_an_epoch(study, prepared, 5)
    assert len(one) == len(five) > 0
    for first, second in zip(one, five):
        assert first.dtype == second.dtype
        np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("method, value", [("gamma", "0.9"), ("lspp", "0.1")])
def test_checkpoints_and_progress_at_its_pace_and_the_very_same_numbers(
    digits, tmp_path, monkeypatch, method, value
):
    """A run of 5 steps per call, killed within epoch 1 after a mid-epoch checkpoint,
    resumed with 3 per call (the setting changes no number, so a resume may change it):
    its history and calibration are those of a run of one step per call."""
    study, prepared = digits
    settings = _settings(study, gamma=value, method=method, epochs=2)
    settings["augmentation"] = {"shift": 0.1, "horizontal_flip": True}
    compute = dataclasses.replace(study.compute_settings(), checkpoint_minutes=0)
    loop.train(settings, compute, prepared, tmp_path / "whole", log=lambda line: None)

    save, seen = checkpoint.save_checkpoint, []

    def save_then_die_within_epoch_1(path, model, optimizer, state, metric_values=None):
        save(path, model, optimizer, state, metric_values)
        progress = state.get("epoch_in_progress")
        seen.append(progress)
        if progress and progress["epoch"] == 1 and progress["steps_done"] == 10:
            raise KeyboardInterrupt  # stands in for a kill in the middle of epoch 1

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die_within_epoch_1)
    five_per_call = dataclasses.replace(
        compute, checkpoint_minutes=1e-9, progress_seconds=1e-9, steps_per_execution=5
    )
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        loop.train(
            settings, five_per_call, prepared, tmp_path / "resumed", log=lines.append
        )
    monkeypatch.setattr(loop, "save_checkpoint", save)
    steps = seen[-1]["steps"]
    assert steps == 12
    # a checkpoint after each call of 5 steps, none within one
    assert [p["steps_done"] for p in seen if p and p["epoch"] == 0] == [5, 10]
    progress_steps = [
        int(line.split(" step ")[1].split("/")[0]) for line in lines if " step " in line
    ]
    assert progress_steps and all(done % 5 == 0 for done in progress_steps), lines
    assert any(
        "5 steps per call (compute.steps_per_execution)" in line for line in lines
    )

    three_per_call = dataclasses.replace(compute, steps_per_execution=3)
    messages: list[str] = []
    loop.train(
        settings, three_per_call, prepared, tmp_path / "resumed", log=messages.append
    )
    assert any(
        f"1 of 2 epochs done, and 10 of {steps} steps of epoch 1" in message
        for message in messages
    ), messages
    assert_resumed_as_whole(tmp_path, method)
