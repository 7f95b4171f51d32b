"""Mixed precision, XLA and the JAX backend in real training jobs (a few minutes on 2 CPU cores).

- Each precision / XLA switch trains the paper's ResNet-20 v1 for two epochs on
  scikit-learn's real 8x8 handwritten digits (pooled globally, as the demo does): the
  loss stays finite and the last epoch's training accuracy stays within noise of the
  reference run's (TensorFlow, float32, no XLA, op determinism), the noise being
  what a second seed of the reference moves it by plus
  three binomial standard errors of a difference over the training images.
  The work is small on purpose: bfloat16 and float16 are emulated on most CPUs, at a
  cost that differs about tenfold between machines of one kind (float16 on 4,000
  32 px images took 98 s on one and over 900 s on another), so each switch trains about
  1/20 of that (2 x 1,437 images of 8x8 pixels) and finishes within a minute or two even
  where emulation is slowest.
  Real Fashion-MNIST at the paper's 32 px is trained in test_workflow_train.py.
- One short job per installed Keras backend runs through the workflow with
  ``compute.backend`` set, Label Smoothing++ included (it overrides ``compute_loss``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest
from conftest import run_workflow

from smoothbench import run_record
from smoothbench.compute.onednn import resolve_onednn
from smoothbench.data.preparation import prepare
from smoothbench.study import load_study

SWITCH_CONFIG = {
    "data": {"download": False},
    # The paper's ResNet-20 v1 at batch 32 with Adam 1e-3, on 8x8 digits pooled globally.
    "protocol": {
        "model": "resnet_v1",
        "depth": 20,
        "epochs": 2,
        "batch_size": 32,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"shift": 0.1, "horizontal_flip": False},
        "gammas": [0.9],
    },
    "seeds": [0, 1],
    "compute": {"gpus_per_job": 0, "threads_per_job": 2},
    "experiments": {"digits": {}},
}
TRAIN_ONE = """
import dataclasses, json, sys
from smoothbench.study import load_study
from smoothbench.train.loop import train
config, compute, seed, prepared, run = json.loads(sys.argv[1])
study = load_study(config)
settings = study.train_settings("digits", "gamma", "0.9", seed)
train(settings, dataclasses.replace(study.compute_settings(), **compute), prepared, run)
"""


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("switches")
    prepared = workdir / "prepared" / "digits"
    prepare(load_study(SWITCH_CONFIG).data_settings("digits"), prepared)
    return workdir, prepared


def _train(digits, name: str, compute: dict, seed: int = 0) -> dict:
    workdir, prepared = digits
    run = workdir / "runs" / name
    arguments = json.dumps([SWITCH_CONFIG, compute, seed, str(prepared), str(run)])
    # A hang guard only: each of these jobs takes seconds to a minute or two.
    process = subprocess.run(
        [sys.executable, "-c", TRAIN_ONE, arguments],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert process.returncode == 0, process.stdout + process.stderr[-4000:]
    metrics = json.loads((run / run_record.METRICS_FILE).read_text())
    metrics["history"] = run_record.read_history(run / run_record.HISTORY_FILE)
    metrics["log"] = process.stdout
    return metrics


# TensorFlow, float32, no XLA, op determinism: what compute auto gives on the CPU.
REFERENCE = {
    "backend": "tensorflow",
    "precision": "float32",
    "jit_compile": False,
    "deterministic": True,
}


@pytest.fixture(scope="module")
def default_runs(digits):
    """The reference compute settings (TensorFlow, float32, no XLA, op determinism), seeds 0 and 1."""
    return [_train(digits, f"reference-seed{seed}", REFERENCE, seed) for seed in (0, 1)]


def test_the_reference_is_deterministic_float32_without_xla(default_runs):
    attempt = default_runs[0]["attempts"][-1]
    assert (
        attempt["backend"],
        attempt["precision"],
        attempt["jit_compile"],
        attempt["deterministic"],
    ) == ("tensorflow", "float32", False, True)
    assert (
        "precision float32 (compute.precision); XLA off (compute.jit_compile); op determinism on"
        in default_runs[0]["log"]
    )
    # oneDNN by auto's rule, with its reason, on the same line
    enabled, reason = resolve_onednn("auto", "tensorflow")
    assert attempt["onednn"] is enabled
    assert f"; oneDNN {'on' if enabled else 'off'} ({reason})" in default_runs[0]["log"]


def test_the_default_is_auto_s_fixed_rule_bit_for_bit(
    digits, default_runs, monkeypatch
):
    """Every compute key auto, on the CPU: the reference's computation, so the very
    same numbers as the run trained with the reference's keys written out."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    run = _train(digits, "auto", {})
    attempt = run["attempts"][-1]
    assert {key: attempt[key] for key in REFERENCE} == REFERENCE
    assert "tuned" not in attempt
    assert "precision float32 (auto: no GPU)" in run["log"]
    reference = default_runs[0]
    for ours, theirs in zip(run["history"], reference["history"], strict=True):
        assert {k: v for k, v in ours.items() if k != "seconds"} == {
            k: v for k, v in theirs.items() if k != "seconds"
        }


@pytest.mark.parametrize(
    "compute, precision, jit_compile",
    [
        (REFERENCE | {"jit_compile": True, "deterministic": False}, "float32", True),
        (REFERENCE | {"precision": "mixed_bfloat16"}, "mixed_bfloat16", False),
        # Keras adds a dynamic loss scale
        (REFERENCE | {"precision": "mixed_float16"}, "mixed_float16", False),
    ],
    ids=["xla", "mixed_bfloat16", "mixed_float16"],
)
def test_a_switch_keeps_the_training_accuracy_within_noise(
    digits, default_runs, compute, precision, jit_compile
):
    run = _train(digits, f"{precision}-{jit_compile}", compute)
    attempt = run["attempts"][-1]
    assert (attempt["precision"], attempt["jit_compile"]) == (precision, jit_compile)
    assert all(
        math.isfinite(row["loss"]) and math.isfinite(row["val_loss"])
        for row in run["history"]
    )
    # The last epoch's training accuracy (over every training image): after two short epochs
    # the validation accuracy mostly measures how far BatchNorm's moving statistics lag.
    images = run["prepared_data"]["train_examples"]
    default, other_seed = (r["history"][-1]["accuracy"] for r in default_runs)
    accuracy = run["history"][-1]["accuracy"]
    # Noise: the default's own seed-to-seed change, plus 3 standard errors of the difference
    # of two accuracies measured on the same number of images.
    tolerance = abs(default - other_seed) + 3 * math.sqrt(
        2 * default * (1 - default) / images
    )
    assert default > 0.5, default_runs[0][
        "history"
    ]  # chance is 0.10: the default learned
    assert abs(accuracy - default) <= tolerance, (
        f"{precision}, XLA {jit_compile}: training accuracy {accuracy:.4f} vs the default's {default:.4f} "
        f"(seed 1: {other_seed:.4f}); noise allows {tolerance:.4f}"
    )
    print(
        f"{precision}, XLA {jit_compile}: {accuracy:.4f}; default {default:.4f}, seed 1 {other_seed:.4f}, "
        f"tolerance {tolerance:.4f}; validation {run['history'][-1]['val_accuracy']:.4f}; "
        f"{sum(row['seconds'] for row in run['history']):.1f} s of training"
    )


def _installed_backends() -> list[str]:
    # TensorFlow and JAX are both in the test extras, so CI must have them; PyTorch only when a user adds it.
    return ["tensorflow", "jax"] + (
        ["torch"] if importlib.util.find_spec("torch") else []
    )


DIGITS_CONFIG = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1",
        "depth": 8,
        "epochs": 3,
        "batch_size": 32,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"horizontal_flip": False},
        "gammas": [0.9],
    },
    "methods": {"lspp": {"values": [0.1], "experiments": "all"}},
    "compute": {"gpus_per_job": 0, "threads_per_job": 2},
    "experiments": {"digits": {}},
}


@pytest.mark.workflow
@pytest.mark.parametrize("backend", _installed_backends())
def test_a_training_job_runs_under_each_installed_backend(tmp_path, backend):
    config = json.loads(json.dumps(DIGITS_CONFIG))
    config["compute"]["backend"] = backend  # the rest auto: the fixed rule
    process = run_workflow(
        tmp_path, config, "--cores", "2", "--until", "train", "train_lspp"
    )
    assert process.returncode == 0, process.stdout
    study = load_study(config)
    runs = study.runs()
    assert {run.method for run in runs} == {"gamma", "lspp"}
    for run in runs:
        folder = tmp_path / run.folder(study.runs_folder)
        metrics = json.loads((folder / run_record.METRICS_FILE).read_text())
        assert (
            metrics["backend"] == backend
            and metrics["attempts"][-1]["backend"] == backend
        )
        # the rest of compute is auto: the fixed rule for this backend on the CPU
        attempt = metrics["attempts"][-1]
        assert attempt["precision"] == "float32" and attempt["deterministic"] is True
        assert attempt["jit_compile"] is (backend == "jax")
        assert backend in metrics["software"]
        history = run_record.read_history(folder / run_record.HISTORY_FILE)
        assert all(math.isfinite(row["loss"]) for row in history)
        assert history[-1]["loss"] < history[0]["loss"]
        # 10 classes: chance is 0.1
        assert metrics["best_val_accuracy"] > 0.5, (
            run,
            history,
        )
    log = (tmp_path / "results" / "logs" / "train").rglob("*.log")
    assert any(f"({backend})" in path.read_text() for path in log)
