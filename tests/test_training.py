"""The training loop in-process: schedule, batches, checkpoints, failures."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from smoothbench import files, run_record
from smoothbench.compute import backends, software
from smoothbench.data import array_store
from smoothbench.data.batches import ArrayBatches, epoch_order
from smoothbench.data.preparation import prepare
from smoothbench.study import load_study
from smoothbench.train import checkpoint, interruption, loop, network, versions

PAPER_SCHEDULE = [
    {"after_epoch": 80, "factor": 1e-1},
    {"after_epoch": 120, "factor": 1e-2},
    {"after_epoch": 160, "factor": 1e-3},
    {"after_epoch": 180, "factor": 5e-4},
]
TINY = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1",
        "depth": 8,
        "epochs": 2,
        "batch_size": 128,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"horizontal_flip": False},
    },
    "methods": {"lspp": {"values": [0.1], "experiments": "all"}},
    "compute": {"threads_per_job": 2},
    "experiments": {"digits": {"gammas": [1.0, 0.9]}},
}


@pytest.mark.parametrize(
    "epoch, expected",
    [
        (0, 1e-3),
        (80, 1e-3),
        (81, 1e-4),
        (120, 1e-4),
        (121, 1e-5),
        (160, 1e-5),
        (161, 1e-6),
        (180, 1e-6),
        (181, 5e-7),
        (199, 5e-7),
    ],
)
def test_the_papers_schedule_on_zero_based_epochs(epoch, expected):
    assert loop.learning_rate_at(epoch, 1e-3, PAPER_SCHEDULE) == pytest.approx(
        expected, rel=1e-12
    )


def test_epoch_order_depends_only_on_seed_and_epoch():
    first = epoch_order(100, seed=3, epoch=7)
    assert sorted(first) == list(range(100))
    np.testing.assert_array_equal(first, epoch_order(100, seed=3, epoch=7))
    assert not np.array_equal(first, epoch_order(100, seed=3, epoch=8))
    assert not np.array_equal(first, epoch_order(100, seed=4, epoch=7))


def test_batches_follow_the_order_and_cover_every_example_once():
    images = np.arange(10 * 2 * 2 * 1, dtype=np.uint8).reshape(10, 2, 2, 1)
    labels = np.arange(10, dtype=np.int32)
    order = epoch_order(10, 0, 0)
    batches = ArrayBatches(images, labels, 4, order=order)
    assert len(batches) == 3
    seen = np.concatenate([batches[index][1] for index in range(len(batches))])
    np.testing.assert_array_equal(seen, order)
    image_batch, label_batch = batches[2]
    assert image_batch.shape == (2, 2, 2, 1) and image_batch.dtype == np.uint8
    np.testing.assert_array_equal(image_batch, images[label_batch])


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    study = load_study(TINY)
    folder = tmp_path_factory.mktemp("prepared") / "digits"
    prepare(study.data_settings("digits"), folder)
    return study, folder


def _settings(study, gamma="1.0", method="gamma", **changes):
    settings = study.train_settings("digits", method, gamma, 0)
    settings.update(changes)
    return settings


def test_a_run_writes_history_and_metrics_and_removes_its_checkpoint(digits, tmp_path):
    study, prepared = digits
    metrics = loop.train(
        _settings(study),
        study.compute_settings(),
        prepared,
        tmp_path,
        log=lambda message: None,
    )
    history = run_record.read_history(tmp_path / "history.csv")
    assert list(history[0]) == list(run_record.HISTORY_COLUMNS)
    assert [row["epoch"] for row in history] == [0, 1]
    assert all(0 <= row["val_accuracy"] <= 1 and row["seconds"] > 0 for row in history)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in (
        "dataset",
        "gamma",
        "seed",
        "num_classes",
        "model",
        "params",
        "epochs",
        "best_val_accuracy",
        "best_epoch",
        "final_val_accuracy",
        "train_seconds",
    ):
        assert key in saved, key
    assert saved["best_val_accuracy"] == max(row["val_accuracy"] for row in history)
    assert history[saved["best_epoch"]]["val_accuracy"] == saved["best_val_accuracy"]
    assert saved["final_val_accuracy"] == history[-1]["val_accuracy"]
    assert (
        saved["model"] == "resnet_v1-8"
        and saved["num_classes"] == 10
        and saved["epochs"] == 2
    )
    assert saved["prepared_data"]["manifest_sha256"] == files.sha256_of_file(
        prepared / "manifest.json"
    )
    assert not (tmp_path / "checkpoint").exists()


def test_a_checkpoint_restores_every_variable_and_the_state(digits, tmp_path):
    import keras

    study, prepared = digits
    _, arrays = array_store.open_prepared(prepared)
    settings = _settings(study)
    keras.utils.set_random_seed(1)
    _, model = network.build_model(settings, np.asarray(arrays["mean"]))
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    for variable in model.trainable_variables[:3]:
        variable.assign(variable + 1.0)
    optimizer.iterations.assign(41)
    path = tmp_path / "checkpoint" / "state.npz"
    checkpoint.save_checkpoint(path, model, optimizer, {"history": [1, 2]})
    keras.utils.set_random_seed(2)
    _, other = network.build_model(settings, np.asarray(arrays["mean"]))
    other_optimizer = keras.optimizers.Adam()
    other_optimizer.build(other.trainable_variables)
    assert checkpoint.restore_checkpoint(path, other, other_optimizer) == {
        "history": [1, 2]
    }
    for saved, restored in zip(
        model.variables + optimizer.variables,
        other.variables + other_optimizer.variables,
    ):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(saved), keras.ops.convert_to_numpy(restored)
        )
    assert int(keras.ops.convert_to_numpy(other_optimizer.iterations)) == 41
    assert not list(path.parent.glob(".*.tmp"))


def test_a_checkpoint_from_other_settings_is_kept_not_resumed(digits, tmp_path):
    study, prepared = digits
    compute = study.compute_settings()
    settings = _settings(study, epochs=1)
    messages = []
    import keras

    _, arrays = array_store.open_prepared(prepared)
    _, model = network.build_model(settings, np.asarray(arrays["mean"]))
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    state = {
        "format": checkpoint.CHECKPOINT_FORMAT,
        "fingerprint": checkpoint.settings_fingerprint(settings),
        "history": [],
        "attempts": [],
    }
    # A checkpoint left by a run of gamma 1.0, found by a job of gamma 0.9 in the same folder.
    checkpoint.save_checkpoint(
        tmp_path / run_record.CHECKPOINT_FOLDER / run_record.CHECKPOINT_FILE,
        model,
        optimizer,
        state,
    )
    other = _settings(study, gamma="0.9", epochs=1)
    loop.train(other, compute, prepared, tmp_path, log=messages.append)
    assert any("kept" in message and ".versions" in message for message in messages)
    assert not any("resuming" in message for message in messages)
    assert json.loads((tmp_path / "metrics.json").read_text())["gamma"] == 0.9
    # the other settings' checkpoint is kept (smoothbench.train.versions), not deleted
    [kept] = versions.kept_versions(tmp_path)
    assert kept["state"] == "unfinished"
    assert (Path(kept["folder"]) / run_record.CHECKPOINT_FOLDER / "state.npz").exists()


def test_a_job_planned_to_republish_trains_nothing_when_the_version_is_gone(
    digits, tmp_path
):
    """A job given no GPU because planning found the run finished refuses to train on
    the CPU when the finished version went away since."""
    study, prepared = digits
    settings = _settings(study, epochs=1)
    with pytest.raises(loop.NothingToRepublishError, match="Run the workflow again"):
        loop.train(
            settings, study.compute_settings(), prepared, tmp_path, republish_only=True
        )
    assert not (tmp_path / run_record.CHECKPOINT_FOLDER / "state.npz").exists()


def test_a_diverging_loss_stops_the_run_without_metrics(digits, tmp_path):
    study, prepared = digits
    settings = _settings(study, epochs=3)
    settings["optimizer"] = {**settings["optimizer"], "learning_rate": 1e12}
    with pytest.raises(loop.TrainingDivergedError, match="the loss became (nan|inf)"):
        loop.train(
            settings,
            study.compute_settings(),
            prepared,
            tmp_path,
            log=lambda message: None,
        )
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "history.csv").exists()


def test_prepared_data_of_another_dataset_fails_before_training(digits, tmp_path):
    study, prepared = digits
    settings = _settings(study, num_classes=47, dataset="dtd", image_shape=[72, 72, 3])
    with pytest.raises(
        array_store.PreparedDataError,
        match=r"manifest.json: dataset is 'digits', but experiment 'digits' expects 'dtd'",
    ):
        loop.train(
            settings,
            study.compute_settings(),
            prepared,
            tmp_path,
            log=lambda message: None,
        )
    # nothing but the status that smoothbench-status shows: failed, and why
    assert [path.relative_to(tmp_path) for path in tmp_path.rglob("*")] == [
        run_record.status_path(".").parent,
        run_record.status_path("."),
    ]
    status = run_record.read_run_status(tmp_path)
    assert status["state"] == "failed" and "expects 'dtd'" in status["error"]


def test_corrupted_prepared_data_fails_before_training(digits, tmp_path):
    study, prepared = digits
    copy = tmp_path / "digits"
    shutil.copytree(prepared, copy)
    data = bytearray((copy / "train_images.npy").read_bytes())
    data[-1] ^= 0xFF
    (copy / "train_images.npy").write_bytes(bytes(data))
    with pytest.raises(array_store.PreparedDataError, match="sha256"):
        loop.train(
            _settings(study),
            study.compute_settings(),
            copy,
            tmp_path / "run",
            log=lambda message: None,
        )
    assert run_record.read_run_status(tmp_path / "run")["state"] == "failed"
    assert [path.name for path in (tmp_path / "run").rglob("*")] == [
        run_record.CHECKPOINT_FOLDER,
        run_record.STATUS_FILE,
    ]


@pytest.mark.parametrize("method, value", [("gamma", "0.9"), ("lspp", "0.1")])
def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_numbers(
    digits, tmp_path, monkeypatch, method, value
):
    study, prepared = digits
    settings = _settings(study, gamma=value, method=method, epochs=4)
    settings["augmentation"] = {
        "shift": 0.1,
        "horizontal_flip": True,
    }  # the augmentation RNG must resume too
    compute = study.compute_settings()
    loop.train(
        settings, compute, prepared, tmp_path / "whole", log=lambda message: None
    )

    save = checkpoint.save_checkpoint
    saved = []

    def save_then_die_after_two_epochs(*arguments, **keywords):
        save(*arguments, **keywords)
        saved.append(1)
        if len(saved) == 2:
            raise KeyboardInterrupt  # stands in for a kill between epochs 2 and 3

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        loop.train(
            settings, compute, prepared, tmp_path / "resumed", log=lambda message: None
        )
    monkeypatch.setattr(loop, "save_checkpoint", save)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    stale = tmp_path / "resumed" / "checkpoint" / ".state.npz.killed-mid-write.tmp"
    stale.write_bytes(b"half a checkpoint")
    messages = []
    loop.train(settings, compute, prepared, tmp_path / "resumed", log=messages.append)
    assert any(
        "resuming from" in message and "2 of 4 epochs done" in message
        for message in messages
    )
    whole = run_record.read_history(tmp_path / "whole" / "history.csv")
    resumed = run_record.read_history(tmp_path / "resumed" / "history.csv")
    assert [row["epoch"] for row in resumed] == [0, 1, 2, 3]
    for row_whole, row_resumed in zip(whole, resumed):
        del row_whole["seconds"], row_resumed["seconds"]
        assert row_resumed == row_whole
    metrics = {
        name: json.loads((tmp_path / name / "metrics.json").read_text())
        for name in ("whole", "resumed")
    }
    assert [
        attempt["started_at_epoch"] for attempt in metrics["resumed"]["attempts"]
    ] == [0, 2]
    assert metrics["resumed"]["calibration"] == metrics["whole"]["calibration"]
    if method == "lspp":  # the learned matrix resumes with the network
        np.testing.assert_array_equal(
            np.load(tmp_path / "resumed" / "c_matrix.npy"),
            np.load(tmp_path / "whole" / "c_matrix.npy"),
        )
    assert not stale.exists() and not (tmp_path / "resumed" / "checkpoint").exists()


def _without_seconds(rows: list[dict]) -> list[dict]:
    return [
        {key: value for key, value in row.items() if key != "seconds"} for row in rows
    ]


def assert_resumed_as_whole(folder: Path, method: str) -> dict[str, dict]:
    """The run trained in ``folder``/resumed has the numbers of ``folder``/whole: its
    history (less the seconds), calibration and best accuracy, and Label Smoothing++'s
    matrix C. Returns both metrics.json, by name."""
    whole, resumed = (
        _without_seconds(run_record.read_history(folder / name / "history.csv"))
        for name in ("whole", "resumed")
    )
    assert resumed == whole
    metrics = {
        name: json.loads((folder / name / "metrics.json").read_text())
        for name in ("whole", "resumed")
    }
    for key in ("calibration", "best_val_accuracy", "best_epoch"):
        assert metrics["resumed"][key] == metrics["whole"][key], key
    if method == "lspp":
        np.testing.assert_array_equal(
            np.load(folder / "resumed" / "c_matrix.npy"),
            np.load(folder / "whole" / "c_matrix.npy"),
        )
    return metrics


def _outputs(folder, settings) -> dict[str, bytes]:
    return {
        name: (folder / name).read_bytes()
        for name in run_record.output_names(settings["method"])
    }


@pytest.mark.parametrize("method, value", [("gamma", "0.9"), ("lspp", "0.1")])
def test_a_run_killed_after_it_finished_is_republished_not_retrained(
    digits, tmp_path, method, value
):
    study, prepared = digits
    settings, compute = (
        _settings(study, gamma=value, method=method, epochs=1),
        study.compute_settings(),
    )
    loop.train(settings, compute, prepared, tmp_path, log=lambda message: None)
    finished = _outputs(tmp_path, settings)
    record = tmp_path / run_record.FINISHED_FOLDER
    assert (
        _outputs(record, settings) == finished
        and not (tmp_path / "checkpoint").exists()
    )
    # Snakemake's --rerun-incomplete deletes the outputs of a job killed before it was
    # recorded as finished, then runs it again.
    for name in finished:
        (tmp_path / name).unlink()
    messages = []
    metrics = loop.train(settings, compute, prepared, tmp_path, log=messages.append)
    assert len(messages) == 1 and "already finished: republished" in messages[0], (
        messages
    )
    assert _outputs(tmp_path, settings) == finished
    assert metrics == json.loads(finished["metrics.json"])
    # Other settings are another run: trained, and its own record replaces this one.
    messages.clear()
    other = _settings(study, gamma=value, method=method, epochs=2)
    loop.train(other, compute, prepared, tmp_path, log=messages.append)
    assert not any("republished" in message for message in messages)
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 2
    assert json.loads((record / "metrics.json").read_text())["epochs"] == 2


def test_every_instant_of_finishing_is_safe(digits, tmp_path, monkeypatch):
    """A kill (KeyboardInterrupt here) at each step of writing the outputs: the next
    attempt finishes with the same outputs and never trains an epoch again."""
    study, prepared = digits
    settings, compute = _settings(study, epochs=1), study.compute_settings()
    loop.train(
        settings, compute, prepared, tmp_path / "whole", log=lambda message: None
    )
    reference = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    history = _without_seconds(
        run_record.read_history(tmp_path / "whole" / "history.csv")
    )
    # (what is patched, which of its calls after the last epoch is the kill): atomic_file
    # writes history, metrics and fingerprint into .finished/'s staging folder (calls
    # 1-3), then publishes history (4) and metrics (5); the first rmtree after the epoch
    # runs once .finished/ is in place.
    steps = {
        "while .finished/ is written": ("files.write_json_atomic", 1),
        "after .finished/, before the checkpoint is deleted": ("shutil.rmtree", 1),
        "after history.csv, before metrics.json is published": (
            "files.atomic_file",
            5,
        ),
    }
    for case, (target, calls_before_kill) in steps.items():
        folder = tmp_path / case.replace(" ", "_").replace("/", "").replace(",", "")
        # One epoch trained and checkpointed, then the kill while finishing.
        module, name = target.split(".")
        owner = files if module == "files" else shutil
        original = getattr(owner, name)
        calls = []

        def killed(
            *arguments,
            _original=original,
            _calls=calls,
            _limit=calls_before_kill,
            **keywords,
        ):
            if "epoch 0 of 0..0  lr" in " ".join(seen):
                _calls.append(1)
                if len(_calls) == _limit:
                    raise KeyboardInterrupt(case)
            return _original(*arguments, **keywords)

        seen = []
        monkeypatch.setattr(owner, name, killed)
        with pytest.raises(KeyboardInterrupt):
            loop.train(settings, compute, prepared, folder, log=seen.append)
        monkeypatch.setattr(owner, name, original)
        assert not (folder / "metrics.json").exists(), case
        assert (folder / "history.csv").exists() == case.startswith("after history"), (
            case
        )
        assert (folder / "checkpoint").exists() != case.startswith("after history"), (
            case
        )
        messages = []
        metrics = loop.train(settings, compute, prepared, folder, log=messages.append)
        assert not any(message.startswith("epoch ") for message in messages), (
            case,
            messages,
        )
        assert (
            _without_seconds(run_record.read_history(folder / "history.csv")) == history
        ), case
        for key in ("best_val_accuracy", "best_epoch", "epochs", "settings"):
            assert metrics[key] == reference[key], (case, key)
        assert not (folder / "checkpoint").exists() and not list(
            folder.glob(".*.tmp")
        ), case


def test_metrics_record_the_code_that_ran(digits, tmp_path):
    import subprocess

    study, prepared = digits
    loop.train(
        _settings(study, epochs=1),
        study.compute_settings(),
        prepared,
        tmp_path,
        log=lambda message: None,
    )
    code = json.loads((tmp_path / "metrics.json").read_text())["software"][
        "smoothbench"
    ]
    package = Path(software.__file__).resolve().parents[1]
    assert (
        code["source"] == str(package)
        and code["version"] == __import__("smoothbench").__version__
    )
    head = subprocess.run(
        ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode == 0:  # a git checkout (CI's clean clone is one)
        assert code["commit"] == head.stdout.strip() and isinstance(code["dirty"], bool)
    else:
        assert code["commit"] is None and code["dirty"] is None


def test_the_data_fingerprint_is_the_arrays_content_only(digits):
    _, prepared = digits
    manifest = array_store.read_manifest(prepared)
    fingerprint = checkpoint.data_fingerprint(manifest)
    assert (
        checkpoint.data_fingerprint({**manifest, "tfds_version": "other", "note": "x"})
        == fingerprint
    )
    changed = json.loads(json.dumps(manifest))
    changed["arrays"]["train_images"]["sha256"] = "0" * 64
    assert checkpoint.data_fingerprint(changed) != fingerprint


@pytest.mark.parametrize("method, value", [("gamma", "0.9"), ("lspp", "0.1")])
def test_a_run_killed_within_an_epoch_resumes_at_that_step_with_the_uninterrupted_numbers(
    digits, tmp_path, monkeypatch, method, value
):
    study, prepared = digits
    settings = _settings(study, gamma=value, method=method, epochs=2)
    settings["augmentation"] = {
        "shift": 0.1,
        "horizontal_flip": True,
    }  # the augmentation RNG must resume mid-epoch
    compute = dataclasses.replace(study.compute_settings(), checkpoint_minutes=0)
    loop.train(
        settings, compute, prepared, tmp_path / "whole", log=lambda message: None
    )

    save, seen = checkpoint.save_checkpoint, []

    def save_then_die_within_epoch_1(path, model, optimizer, state, metric_values=None):
        save(path, model, optimizer, state, metric_values)
        progress = state.get("epoch_in_progress")
        seen.append(progress)
        if progress and progress["epoch"] == 1 and progress["steps_done"] == 5:
            raise KeyboardInterrupt  # stands in for a kill in the middle of epoch 1

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die_within_epoch_1)
    every_batch = dataclasses.replace(compute, checkpoint_minutes=1e-9)
    with pytest.raises(KeyboardInterrupt):
        loop.train(
            settings,
            every_batch,
            prepared,
            tmp_path / "resumed",
            log=lambda message: None,
        )
    monkeypatch.setattr(loop, "save_checkpoint", save)
    steps = seen[-1]["steps"]
    assert [
        progress["steps_done"]
        for progress in seen
        if progress and progress["epoch"] == 0
    ] == list(range(1, steps))
    messages = []
    loop.train(settings, compute, prepared, tmp_path / "resumed", log=messages.append)
    assert any(
        f"1 of 2 epochs done, and 5 of {steps} steps of epoch 1" in message
        for message in messages
    ), messages
    metrics = assert_resumed_as_whole(tmp_path, method)
    assert [
        (attempt["started_at_epoch"], attempt["started_at_step"])
        for attempt in metrics["resumed"]["attempts"]
    ] == [(0, 0), (1, 5)]


def test_sigterm_saves_a_checkpoint_after_the_batch_in_progress_and_stops(
    digits, tmp_path, monkeypatch
):
    import signal

    study, prepared = digits
    settings = _settings(study, epochs=2)
    compute = dataclasses.replace(study.compute_settings(), checkpoint_minutes=0)
    loop.train(
        settings, compute, prepared, tmp_path / "whole", log=lambda message: None
    )
    save = checkpoint.save_checkpoint

    def save_then_sigterm_after_epoch_0(
        path, model, optimizer, state, metric_values=None
    ):
        save(path, model, optimizer, state, metric_values)
        if len(state["history"]) == 1 and "epoch_in_progress" not in state:
            # a scheduler's time limit, during validation's wrap-up
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(loop, "save_checkpoint", save_then_sigterm_after_epoch_0)
    with pytest.raises(
        interruption.TrainingStopped,
        match=r"stopped by SIGTERM at step 1 of \d+ of epoch 1; checkpoint saved",
    ):
        loop.train(
            settings, compute, prepared, tmp_path / "stopped", log=lambda message: None
        )
    monkeypatch.setattr(loop, "save_checkpoint", save)
    # the handler is the run's only
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert not (tmp_path / "stopped" / "metrics.json").exists()
    messages = []
    loop.train(settings, compute, prepared, tmp_path / "stopped", log=messages.append)
    assert any(
        "and 1 of" in message and "steps of epoch 1" in message for message in messages
    ), messages
    whole, stopped = (
        _without_seconds(run_record.read_history(tmp_path / name / "history.csv"))
        for name in ("whole", "stopped")
    )
    assert stopped == whole


def test_a_job_given_a_gpu_that_its_backend_cannot_see_stops_before_training(
    digits, tmp_path
):
    """No silent CPU: given a GPU (here a claimed slot) on this CPU-only machine, the
    job refuses, says why and what to do, and leaves no metrics; with
    compute.cpu_fallback it trains on the CPU and says so."""
    study, prepared = digits
    settings = _settings(study, epochs=1)
    given = "the Snakemake resource gpu=1 (compute.gpus_per_job); GPU slot 0"
    compute = dataclasses.replace(study.compute_settings(), gpus_given=given)
    with pytest.raises(backends.GpuNotVisibleError) as caught:
        loop.train(
            settings, compute, prepared, tmp_path / "refused", log=lambda _: None
        )
    message = str(caught.value)
    for part in (
        f"was given GPUs ({given})",
        "its Keras backend, tensorflow, sees none",
        "CPU-only tensorflow",
        "make setup GPU=1",
        "compute.gpus_per_job: 0",
        "compute.cpu_fallback: true",
        "no metrics.json was written",
    ):
        assert part in message, (part, message)
    assert not (tmp_path / "refused" / "metrics.json").exists()
    # nothing trained: no checkpoint, only the status that says why
    assert [path.name for path in (tmp_path / "refused" / "checkpoint").iterdir()] == [
        run_record.STATUS_FILE
    ]
    status = run_record.read_run_status(tmp_path / "refused")
    assert status["state"] == "failed" and "GpuNotVisibleError" in status["error"]
    lines = []
    metrics = loop.train(
        settings,
        dataclasses.replace(compute, cpu_fallback=True),
        prepared,
        tmp_path / "anyway",
        log=lines.append,
    )
    assert (
        metrics["device"] == "CPU" and (tmp_path / "anyway" / "metrics.json").exists()
    )
    assert any(
        line.startswith("WARNING: this training job was given GPUs") for line in lines
    )


def test_progress_lines_within_each_epoch_a_status_and_tensorboard(digits, tmp_path):
    study, prepared = digits
    compute = dataclasses.replace(
        study.compute_settings(), progress_seconds=1e-9, tensorboard=True
    )
    lines = []
    statuses = []
    original = run_record.write_run_status

    def recording(folder, state, **fields):
        statuses.append((state, fields.get("epoch"), fields.get("step")))
        original(folder, state, **fields)

    run_record.write_run_status = recording
    try:
        metrics = loop.train(
            _settings(study), compute, prepared, tmp_path, log=lines.append
        )
    finally:
        run_record.write_run_status = original
    steps = -(-len(np.load(prepared / "train_labels.npy")) // 128)
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    # each epoch: a line after every step but the last, then the epoch's own line
    for epoch in (0, 1):
        mine = [
            line for line in epoch_lines if line.startswith(f"epoch {epoch} of 0..1")
        ]
        assert [line.split("  ")[1] for line in mine[:-1]] == [
            f"step {step}/{steps}" for step in range(1, steps)
        ], mine
        assert "images/s" in mine[0] and "run ETA" in mine[0]
        assert mine[-1].split("  ")[1].startswith("lr ")
    assert f"at epoch {metrics['best_epoch']} of 0..1" in lines[-1]
    assert statuses[0][0] == "starting" and ("running", 1, 0) in statuses
    assert ("running", 0, steps - 1) in statuses
    assert run_record.read_run_status(tmp_path) is None  # gone with the checkpoint
    events = {
        path.parent.name for path in (tmp_path / "tensorboard").rglob("events.out.*")
    }
    assert events == {"train", "validation"}


def test_a_job_that_fails_says_so_in_its_status(digits, tmp_path, monkeypatch):
    study, prepared = digits

    def broken(*arguments, **keywords):
        raise RuntimeError("a disk on fire")

    monkeypatch.setattr(loop, "train_epochs", broken)
    with pytest.raises(RuntimeError, match="a disk on fire"):
        loop.train(
            _settings(study), study.compute_settings(), prepared, tmp_path, log=print
        )
    status = run_record.read_run_status(tmp_path)
    assert status["state"] == "failed"
    assert status["error"] == "RuntimeError: a disk on fire"
    assert status["pid"] > 0 and not (tmp_path / "metrics.json").exists()
